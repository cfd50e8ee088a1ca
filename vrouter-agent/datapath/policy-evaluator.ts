/**
 * The slow path's policy seam: first packets in, per-gate decisions out, a
 * batch at a time, in the verdict engines' batch format
 * (compile/packet-batch.ts: 40-byte records in; egress code, ingress code and
 * flags out, codes being RuleCatalog indices or VerdictCode values).
 *
 * `ruleTablesEvaluator` decides with RuleTables.egress/ingress, the policy
 * core's reference evaluator, exactly as RuleTables.decide. A VerdictEngine
 * (compile/verdict-engine.ts: `createVerdictEngine(tables)`) has this shape
 * too, so the datapath's `evaluator` option can swap the native engine in.
 */
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import type { RuleCatalog } from '../compile/rule-catalog.js';
import { createVerdictEngine } from '../compile/verdict-engine.js';

export interface PolicyEvaluator {
  /** The tables decided from. */
  readonly tables: RuleTables;
  /** Rule index ↔ CompiledRule for the codes `evaluate` writes. */
  readonly catalog: RuleCatalog;
  /**
   * Decides records [0, count) of `packets` into out[3i .. 3i+2]: egress code
   * at the source, ingress code at the destination, flags
   * (VERDICT_ALLOWED | VERDICT_SELF). Returns how many are allowed.
   */
  evaluate(packets: Uint8Array, count: number, out: Int32Array): number;
  /** Releases what the evaluator holds (native memory); called when the datapath replaces or drops it. */
  [Symbol.dispose]?(): void;
}

export type PolicyEvaluatorFactory = (tables: RuleTables) => PolicyEvaluator;

/** The reference evaluator behind the batch seam: the TypeScript verdict engine, which asks RuleTables. */
export function ruleTablesEvaluator(tables: RuleTables): PolicyEvaluator {
  return createVerdictEngine(tables, { implementation: 'typescript' });
}
