/**
 * Packets: the decoder the datapath runs per packet (decode.ts), the record
 * and failures everyone else reads (parse.ts), and a builder (build.ts).
 */
export * from './decode.js';
export * from './parse.js';
export * from './build.js';
