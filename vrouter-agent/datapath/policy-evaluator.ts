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
import { InternalError } from '../../shared/errors.js';
import { ALLOW_DEFAULT, DENY, type DirectionResult, type RuleTables } from '../../shared/policy/rule-tables.js';
import { PACKET_RECORD_BYTES, PacketField, readAddress, RESULT_STRIDE, VERDICT_ALLOWED, VERDICT_SELF, VerdictCode } from '../compile/packet-batch.js';
import { RuleCatalog } from '../compile/rule-catalog.js';

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

/** The reference evaluator behind the batch seam. */
export function ruleTablesEvaluator(tables: RuleTables): PolicyEvaluator {
  const catalog = RuleCatalog.of(tables);
  const byIp = tables.byIp;
  const code = (r: DirectionResult): number => {
    if (r === ALLOW_DEFAULT) return VerdictCode.ALLOW_DEFAULT;
    if (r === DENY) return VerdictCode.DENY;
    const i = catalog.indexOf(r);
    if (i === undefined) throw new InternalError(`rule ${r.id} decided a packet but is not in the catalog`);
    return i;
  };
  return {
    tables,
    catalog,
    evaluate(packets: Uint8Array, count: number, out: Int32Array): number {
      if (packets.byteLength < count * PACKET_RECORD_BYTES || out.length < count * RESULT_STRIDE) throw new RangeError('evaluate: packets or out too short for count');
      const view = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
      let allowed = 0;
      for (let i = 0; i < count; i++) {
        const at = i * PACKET_RECORD_BYTES;
        const o = i * RESULT_STRIDE;
        const src = readAddress(view, at + PacketField.src, packets[at + PacketField.srcFamily]!);
        const dst = readAddress(view, at + PacketField.dst, packets[at + PacketField.dstFamily]!);
        if (src === undefined || dst === undefined) {
          out[o] = VerdictCode.INVALID;
          out[o + 1] = VerdictCode.INVALID;
          out[o + 2] = 0;
          continue;
        }
        const from = byIp.get(src);
        const to = byIp.get(dst);
        if (from !== undefined && from === to) {
          out[o] = VerdictCode.NOT_LOCAL;
          out[o + 1] = VerdictCode.NOT_LOCAL;
          out[o + 2] = VERDICT_ALLOWED | VERDICT_SELF;
          allowed++;
          continue;
        }
        const protocol = packets[at + PacketField.protocol]!;
        const port = view.getUint16(at + PacketField.dstPort, true);
        const eg = from === undefined ? VerdictCode.NOT_LOCAL : code(tables.egress(from, dst, protocol, port));
        const ing = to === undefined ? VerdictCode.NOT_LOCAL : code(tables.ingress(to, src, protocol, port, dst));
        const ok = eg !== VerdictCode.DENY && ing !== VerdictCode.DENY;
        out[o] = eg;
        out[o + 1] = ing;
        out[o + 2] = ok ? VERDICT_ALLOWED : 0;
        if (ok) allowed++;
      }
      return allowed;
    },
  };
}
