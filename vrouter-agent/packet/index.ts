/**
 * Packets: the decoder the datapath runs per packet (decode.ts) and a builder
 * (build.ts). Tests read packets as immutable records through
 * testing/packet-record.ts, which wraps the same decoder.
 */
export * from './decode.js';
export * from './build.js';
