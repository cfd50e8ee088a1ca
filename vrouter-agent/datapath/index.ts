/**
 * Datapaths: the contract the agent drives (datapath.ts), the flow engine
 * every driver shares (flow-engine.ts, whose first packets are decided
 * through a VerdictEngine, compile/verdict-engine.ts), and the userspace
 * driver (userspace-datapath.ts).
 */
import { UserspaceDatapath, type UserspaceDatapathOptions } from './userspace-datapath.js';

export * from './datapath.js';
export { RawPacketBatch } from './raw-packets.js';
export { RULE_ID_DEFAULT, RULE_ID_DENY, RULE_ID_NODE, RULE_ID_NONE } from './rule-ids.js';
export {
  checkFlowEngineOptions,
  FlowEngine,
  type DeniedFlow,
  type EngineReevaluation,
  type FirstPacketDecision,
  type FlowEngineOptions,
  type FlowEngineStats,
} from './flow-engine.js';
export {
  UserspaceDatapath,
  type BatchVerdicts,
  type RawPackets,
  type UserspaceDatapathOptions,
} from './userspace-datapath.js';

export function createUserspaceDatapath(options: UserspaceDatapathOptions): UserspaceDatapath {
  return new UserspaceDatapath(options);
}
