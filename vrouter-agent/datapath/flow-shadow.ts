/**
 * The datapath's own record of each flow it inserted, by flow index, in
 * typed arrays grown by doubling (at most the table's maxFlows): the forward
 * key as a packed flow record, the reply zone, the verdict and its ids, the
 * creation time. About 80 bytes per flow, no objects.
 *
 * It answers what the flow table's result words do not: a denied packet's
 * drop reason on the fast path (without reading the entry), and, for events,
 * which flow used to live at an index the table has reused.
 *
 * Invariant: an index the table holds a flow at is live here with that
 * flow's key and verdict, because every insert and re-verdict goes through
 * the datapath. The converse does not hold: the table removes flows on its
 * own (aging, eviction, a SYN on a closed flow), so an index may be live here
 * after its flow is gone, until the index is reused or `retain` prunes it.
 */
import type { Ip } from '../../shared/net/ip.js';
import {
  ACTIONS,
  DROP_REASONS,
  FLOW_KEY_RECORD_BYTES,
  type DropReason,
  type FinalVerdict,
  type FlowAction,
} from '../flows/index.js';
import { readIp } from '../packet/decode.js';

const ALLOW_CODE = ACTIONS.indexOf('allow');
const DENY_CODE = ACTIONS.indexOf('deny');
const REASON_CODE = new Map<DropReason, number>(DROP_REASONS.map((r, i) => [r, i]));

/** A flow as the shadow knows it. */
export interface ShadowFlow {
  readonly zone: number;
  readonly replyZone: number;
  readonly family: 4 | 6;
  readonly protocol: number;
  readonly src: Ip;
  readonly dst: Ip;
  readonly sport: number;
  readonly dport: number;
  readonly action: FlowAction;
  readonly dropReason: DropReason;
  readonly egressRuleId: number;
  readonly ingressRuleId: number;
  readonly firstSeenMs: number;
}

export class FlowShadow {
  private size = 0;
  private record = new Uint8Array(0);
  private replyZone = new Uint32Array(0);
  private live = new Uint8Array(0);
  private action = new Uint8Array(0);
  private reason = new Uint8Array(0);
  /** 4 per flow: egress policy, egress rule, ingress policy, ingress rule. */
  private ids = new Uint32Array(0);
  private firstSeen = new Float64Array(0);

  constructor(private readonly maxFlows: number) {}

  /** Indices below this may be live. */
  get capacity(): number {
    return this.size;
  }

  isLive(index: number): boolean {
    return index < this.size && this.live[index] === 1;
  }

  /** Records the flow created at `index` from the flow record at byte `at` of `records`. */
  remember(
    index: number,
    records: Uint8Array,
    at: number,
    replyZone: number,
    verdict: FinalVerdict,
    nowMs: number,
  ): void {
    this.ensure(index);
    const o = index * FLOW_KEY_RECORD_BYTES;
    const r = this.record;
    for (let i = 0; i < FLOW_KEY_RECORD_BYTES; i++) r[o + i] = records[at + i]!;
    r.fill(0, o + 10, o + 16);
    this.replyZone[index] = replyZone;
    this.live[index] = 1;
    this.firstSeen[index] = nowMs;
    this.setVerdict(index, verdict);
  }

  setVerdict(index: number, verdict: FinalVerdict): void {
    if (index >= this.size) return;
    this.action[index] = verdict.action === 'allow' ? ALLOW_CODE : DENY_CODE;
    this.reason[index] = verdict.action === 'deny' ? REASON_CODE.get(verdict.dropReason)! : 0;
    const w = index * 4;
    this.ids[w] = verdict.egress?.policyId ?? 0;
    this.ids[w + 1] = verdict.egress?.ruleId ?? 0;
    this.ids[w + 2] = verdict.ingress?.policyId ?? 0;
    this.ids[w + 3] = verdict.ingress?.ruleId ?? 0;
  }

  forget(index: number): void {
    if (index < this.size) this.live[index] = 0;
  }

  /** Forgets every flow whose index `alive` does not mark (alive[index] === 1). */
  retain(alive: Uint8Array): void {
    for (let i = 0; i < this.size; i++) if (alive[i] !== 1) this.live[i] = 0;
  }

  /** A denied flow's drop reason as its position in the flow table's DROP_REASONS (0 'none' otherwise). */
  reasonCode(index: number): number {
    return this.reason[index] ?? 0;
  }

  read(index: number): ShadowFlow {
    const r = this.record;
    const o = index * FLOW_KEY_RECORD_BYTES;
    const family = r[o + 9]! as 4 | 6;
    const action = ACTIONS[this.action[index]!]!;
    return {
      zone: (r[o]! | (r[o + 1]! << 8) | (r[o + 2]! << 16) | (r[o + 3]! << 24)) >>> 0,
      replyZone: this.replyZone[index]!,
      family,
      protocol: r[o + 8]!,
      src: readIp(r, o + 16, family),
      dst: readIp(r, o + 32, family),
      sport: r[o + 4]! | (r[o + 5]! << 8),
      dport: r[o + 6]! | (r[o + 7]! << 8),
      action,
      dropReason: action === 'deny' ? DROP_REASONS[this.reason[index]!]! : 'none',
      egressRuleId: this.ids[index * 4 + 1]!,
      ingressRuleId: this.ids[index * 4 + 3]!,
      firstSeenMs: this.firstSeen[index]!,
    };
  }

  private ensure(index: number): void {
    if (index < this.size) return;
    const cap = Math.min(
      Math.max(1024, this.size * 2, index + 1),
      Math.max(this.maxFlows, index + 1),
    );
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(old: T, next: T): T => {
      next.set(old as never);
      return next;
    };
    this.record = grow(this.record, new Uint8Array(cap * FLOW_KEY_RECORD_BYTES));
    this.replyZone = grow(this.replyZone, new Uint32Array(cap));
    this.live = grow(this.live, new Uint8Array(cap));
    this.action = grow(this.action, new Uint8Array(cap));
    this.reason = grow(this.reason, new Uint8Array(cap));
    this.ids = grow(this.ids, new Uint32Array(cap * 4));
    this.firstSeen = grow(this.firstSeen, new Float64Array(cap));
    this.size = cap;
  }
}
