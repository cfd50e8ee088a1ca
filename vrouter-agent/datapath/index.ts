/**
 * Datapaths: the contract the agent drives (datapath.ts) and the userspace
 * implementation (userspace-datapath.ts), whose slow path decides through a
 * VerdictEngine (compile/verdict-engine.ts).
 */
import { UserspaceDatapath, type UserspaceDatapathOptions } from './userspace-datapath.js';

export * from './datapath.js';
export { RawPacketBatch } from './raw-packets.js';
export { RULE_ID_DEFAULT, RULE_ID_DENY, RULE_ID_NODE, RULE_ID_NONE } from './rule-ids.js';
export { UserspaceDatapath, type UserspaceDatapathOptions } from './userspace-datapath.js';

export function createUserspaceDatapath(options: UserspaceDatapathOptions): UserspaceDatapath {
  return new UserspaceDatapath(options);
}
