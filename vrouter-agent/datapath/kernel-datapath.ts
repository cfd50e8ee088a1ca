/**
 * The kernel datapath ('nftables'): a thin driver of the flow engine
 * (flow-engine.ts) on real packets. The kernel's conntrack is the fast path;
 * the agent is the slow path, and the engine mirrors what the kernel holds.
 *
 *   kernel: forward and input hooks ─ established/related ─────▶ accept (conntrack)
 *           new flow of a local pod (input: one it sends to the node itself) ─▶ NFQUEUE ─┐
 *   native thread (nfqueue.cc):  batch ─▶ rule image ─▶ verdicts (one sendmsg)
 *           NF_ACCEPT + mark(rule ids) ─▶ stamp chain: ct mark = mark
 *           NF_DROP (denied)
 *   JS (this file): decisions, in batches ─▶ engine.decideFirstPacket (the flow, allowed or a
 *                                            deny flow with its reason; uncounted)
 *                   conntrack events ─────▶ engine.updateFlow (counters, TCP state, last seen) /
 *                                            engine.removeFlow ('closed' tcp, 'aged')
 *                   a dump every syncIntervalMs: counters, and flows whose destroy was lost
 *                   loadTables ───────────▶ engine.loadTables (re-evaluation); the new image
 *                                            swapped into the thread; conntrack reconciled:
 *                                            denied connections deleted (they stop), the rest
 *                                            re-marked with their new rule ids
 *
 * The ruleset (kernel-ruleset.ts) is installed at create() in one transaction
 * that keeps the pod sets a previous agent left (so nothing passes
 * unqueued during a restart), and pod addresses follow attach/detach as
 * incremental set changes; the first loadTables removes addresses no
 * endpoint holds any more. Established connections are never flushed: an
 * agent restart does not touch conntrack.
 *
 * Zones: the kernel needs none (interfaces and routing say where packets
 * go); flows are keyed in the engine's `zoneOf(src, dst)`. Spoofed sources
 * are the node's business (rp_filter), not this driver's.
 */
import { InternalError, UnavailableError } from '../../shared/errors.js';
import { formatIp, tryParseIp, type Ip } from '../../shared/net/ip.js';
import type { Logger } from '../../shared/log.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { encodeRuleImage } from '../compile/rule-image.js';
import { createVerdictEngine, nativeRuleEvaluator } from '../compile/verdict-engine.js';
import { TcpState, type CreateFlowTableOptions } from '../flows/index.js';
import { nativeAddon, nativeStatus } from '../native/loader.js';
import {
  DATAPATH_DROP_REASONS,
  type AttachedEndpoint,
  type Datapath,
  type DatapathDropReason,
  type DatapathStats,
  type DecodedFlow,
  type DecodedFlowPage,
  type EventOptions,
  type FlowEvent,
  type Reevaluation,
  type ReloadOptions,
} from './datapath.js';
import { type EngineReevaluation, FlowEngine } from './flow-engine.js';
import {
  detectQueueMethod,
  enableConntrackAccounting,
  KernelRuleset,
  MARK_DECIDED,
  MARK_TAG_MASK,
  runCommand,
  type CommandRunner,
  type FailMode,
  type QueueMethod,
} from './kernel-ruleset.js';

// --- the native parts ------------------------------------------------------------

interface NativeEvaluator {
  evaluate(records: Uint8Array, count: number, out: Int32Array): number;
  dispose(): void;
}
interface NfQueueStats {
  readonly received: number;
  readonly allowed: number;
  readonly denied: number;
  readonly malformed: number;
  readonly batches: number;
  readonly sendErrors: number;
  readonly recvErrors: number;
  readonly overruns: number;
  readonly decisionsLost: number;
  readonly running: boolean;
  /** From the read of a first packet to its verdict sent (the send includes the kernel's reinjection of accepted packets). */
  readonly latency: LatencyStats;
  /** From the read to the verdict decided (parse and evaluation). */
  readonly decideLatency: LatencyStats;
}
interface LatencyStats {
  readonly count: number;
  readonly meanNs: number;
  readonly maxNs: number;
  readonly p50Ns: number;
  readonly p90Ns: number;
  readonly p99Ns: number;
}
interface NativeNfQueue {
  setEvaluator(evaluator: NativeEvaluator, generation: number): void;
  start(): void;
  stats(): NfQueueStats;
  resetLatency(): void;
  close(): void;
}
interface ConntrackStats {
  readonly running: boolean;
  readonly events: number;
  readonly overruns: number;
  readonly decodeErrors: number;
  readonly recordsLost: number;
  readonly kernelFilter: boolean;
}
interface ReconcileResult {
  readonly checked: number;
  readonly deleted: number;
  readonly remarked: number;
  readonly unchanged: number;
  readonly failed: number;
  readonly records: Uint8Array;
}
interface NativeConntrack {
  start(): void;
  dump(): Promise<Uint8Array>;
  reconcile(evaluator: NativeEvaluator): Promise<ReconcileResult>;
  stats(): ConntrackStats;
  close(): void;
}
type NfQueueClass = new (o: {
  queue: number;
  failOpen: boolean;
  maxBatch?: number;
  onDecisions: (records: Uint8Array) => void;
}) => NativeNfQueue;
type ConntrackClass = new (o: { onEvents: (records: Uint8Array) => void }) => NativeConntrack;

const DECISION_BYTES = 64;
const CT_RECORD_BYTES = 128;

/** Whether this process can run the kernel datapath, and why not. */
export function kernelDatapathAvailability(): {
  readonly available: boolean;
  readonly reason: string;
} {
  if (process.platform !== 'linux') return { available: false, reason: 'not Linux (no netfilter)' };
  if (process.getuid?.() !== 0)
    return {
      available: false,
      reason: 'not root: NFQUEUE, conntrack and nftables need CAP_NET_ADMIN',
    };
  const addon = nativeAddon();
  if (addon === undefined) return { available: false, reason: nativeStatus().reason };
  if (typeof addon.NfQueue !== 'function' || typeof addon.Conntrack !== 'function')
    return {
      available: false,
      reason:
        'the native addon was built without the netfilter libraries (install libnetfilter-queue-dev libnetfilter-conntrack-dev libmnl-dev pkg-config, then npm run build:native)',
    };
  const ev = nativeRuleEvaluator();
  if (ev.evaluator === undefined) return { available: false, reason: ev.reason };
  return { available: true, reason: 'root, netfilter libraries and the native addon present' };
}

// --- the mark -------------------------------------------------------------------------

/** A gate code of the conntrack mark (nfqueue_verdict.h). */
export type MarkGate =
  | { readonly kind: 'none' }
  | { readonly kind: 'rule'; readonly index: number }
  | { readonly kind: 'node' }
  | { readonly kind: 'default' }
  | { readonly kind: 'overflow' };

/** Reads a conntrack mark Weir wrote; undefined when it is not Weir's. */
export function decodeMark(mark: number): { egress: MarkGate; ingress: MarkGate } | undefined {
  if ((mark & MARK_TAG_MASK) >>> 0 !== MARK_DECIDED) return undefined;
  const gate = (c: number): MarkGate =>
    c === 0
      ? { kind: 'none' }
      : c === 0x7ffc
        ? { kind: 'node' }
        : c === 0x7ffd
          ? { kind: 'default' }
          : c === 0x7fff
            ? { kind: 'overflow' }
            : { kind: 'rule', index: c - 1 };
  return { egress: gate((mark >>> 15) & 0x7fff), ingress: gate(mark & 0x7fff) };
}

// --- conntrack → the engine -------------------------------------------------------

/** Conntrack's TCP states (record byte 3) as the flow table's TcpState bits. */
const TCP_BITS: readonly number[] = [
  0, // none
  TcpState.synForward, // syn-sent
  TcpState.synForward | TcpState.synReverse, // syn-recv
  TcpState.synForward | TcpState.synReverse | TcpState.ackForward | TcpState.established, // established
  TcpState.established | TcpState.finForward, // fin-wait
  TcpState.established | TcpState.finReverse, // close-wait
  TcpState.established | TcpState.finForward | TcpState.finReverse, // last-ack
  TcpState.finForward | TcpState.finReverse | TcpState.closed, // time-wait
  TcpState.closed, // close
  TcpState.synForward, // syn-sent2
];

export interface KernelDatapathOptions {
  /** The rule tables in force at start. */
  readonly tables: RuleTables;
  readonly failMode: FailMode;
  readonly log: Logger;
  /** NFQUEUE number (default 100). */
  readonly queue?: number;
  /** nftables table name (default 'weir'). */
  readonly table?: string;
  /** Remove the table on dispose (default true: an orderly stop leaves nothing behind). */
  readonly removeOnClose?: boolean;
  /** The engine's flow table (default: native when the addon loads, 262144 flows, conntrack's timeouts); when full, flows are enforced by the kernel but not mirrored (counted as refused). */
  readonly flowTable?: CreateFlowTableOptions;
  /** Period of the conntrack dump that refreshes counters and repairs missed events (default 5 s; 0: none). */
  readonly syncIntervalMs?: number;
  /** Packets per verdict batch (default 64). */
  readonly maxBatch?: number;
  readonly run?: CommandRunner;
}

/** What the kernel side says about itself: status, metrics, logs. */
export interface KernelStatus {
  readonly queueMethod: QueueMethod;
  readonly queueMethodReason: string;
  readonly failMode: FailMode;
  readonly queue: number;
  readonly table: string;
  readonly accounting: boolean;
  readonly nfqueue: NfQueueStats;
  readonly conntrack: ConntrackStats & {
    readonly reconciles: number;
    /** Reconciles run again because a decision of an earlier image arrived after a load. */
    readonly staleReconciles: number;
    readonly deleted: number;
    readonly remarked: number;
    readonly failed: number;
  };
  readonly mirror: {
    readonly flows: number;
    /** Decisions and conntrack records of addresses no attached endpoint holds (not mirrored). */
    readonly unattached: number;
    readonly syncs: number;
  };
  readonly podAddresses: number;
}

export class KernelDatapath implements Datapath {
  readonly kind = 'nftables';
  /** The engine: endpoints, the mirrored flows, re-evaluation, aging, reads, events. */
  private readonly engine: FlowEngine;
  /** The image the queue thread and reconciles decide with (the engine keeps its own of the same tables). */
  private evaluator: NativeEvaluator;
  private generation = 1;
  private closed = false;
  private prunePending = true;
  private syncTimer: NodeJS.Timeout | undefined;
  private unattached = 0;
  private syncs = 0;
  private reconciles = 0;
  private ctDeleted = 0;
  private ctRemarked = 0;
  private ctFailed = 0;
  private readonly drops: Record<DatapathDropReason, number> = Object.fromEntries(
    DATAPATH_DROP_REASONS.map((r) => [r, 0]),
  ) as Record<DatapathDropReason, number>;
  private reconciling: Promise<unknown> = Promise.resolve();
  private staleReconcilePending = false;
  private staleReconciles = 0;

  private constructor(
    private readonly options: KernelDatapathOptions,
    private readonly ruleset: KernelRuleset,
    private readonly queueMethod: { method: QueueMethod; reason: string },
    private readonly accounting: boolean,
    private readonly nfq: NativeNfQueue,
    private readonly ct: NativeConntrack,
    evaluator: NativeEvaluator,
  ) {
    this.evaluator = evaluator;
    this.engine = new FlowEngine({
      tables: options.tables,
      verdictEngine: (t) => createVerdictEngine(t),
      flowTable: options.flowTable ?? {},
      log: options.log,
    });
  }

  get flowTable(): { readonly implementation: 'native' | 'typescript'; readonly reason: string } {
    return this.engine.flowTable;
  }

  /**
   * Detects the queueing method, installs the ruleset, binds the queue and
   * subscribes to conntrack. Throws UnavailableError (naming what failed) and
   * leaves nothing running when any step fails.
   */
  static async create(options: KernelDatapathOptions): Promise<KernelDatapath> {
    const avail = kernelDatapathAvailability();
    if (!avail.available)
      throw new UnavailableError(`kernel datapath unavailable: ${avail.reason}`);
    const addon = nativeAddon()!;
    const run = options.run ?? runCommand;
    const log = options.log;
    const queue = options.queue ?? 100;
    const accounting = await enableConntrackAccounting();
    const method = await detectQueueMethod(run);
    const ruleset = new KernelRuleset({
      queue,
      failMode: options.failMode,
      log,
      run,
      ...(options.table === undefined ? {} : { table: options.table }),
    });
    const evaluator = makeEvaluator(options.tables);
    // Late-bound: records that arrive before the datapath exists wait in the native backlog.
    let dp: KernelDatapath | undefined;
    const ct = new (addon.Conntrack as ConntrackClass)({ onEvents: (r) => dp?.onConntrack(r) });
    const nfq = new (addon.NfQueue as NfQueueClass)({
      queue,
      failOpen: options.failMode === 'open',
      ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
      onDecisions: (r) => dp?.onDecisions(r),
    });
    try {
      ct.start();
      // Keep the pod sets a previous agent left: their flows stay queued (decided) until attach/loadTables say otherwise.
      const kept = await ruleset.existingPods().catch(() => [] as string[]);
      await ruleset.install(method.method, kept);
      nfq.setEvaluator(evaluator, 1);
      nfq.start();
      dp = new KernelDatapath(options, ruleset, method, accounting, nfq, ct, evaluator);
    } catch (err) {
      nfq.close();
      ct.close();
      evaluator.dispose();
      throw err instanceof UnavailableError
        ? err
        : new UnavailableError(`kernel datapath: ${(err as Error).message}`, { cause: err });
    }
    dp.startTimers();
    log.info(
      {
        queueMethod: method.method,
        reason: method.reason,
        failMode: options.failMode,
        queue,
        accounting,
      },
      'kernel datapath started',
    );
    return dp;
  }

  get tables(): RuleTables {
    return this.engine.tables;
  }

  status(): KernelStatus {
    return {
      queueMethod: this.queueMethod.method,
      queueMethodReason: this.queueMethod.reason,
      failMode: this.options.failMode,
      queue: this.options.queue ?? 100,
      table: this.ruleset.table,
      accounting: this.accounting,
      nfqueue: this.nfq.stats(),
      conntrack: {
        ...this.ct.stats(),
        reconciles: this.reconciles,
        staleReconciles: this.staleReconciles,
        deleted: this.ctDeleted,
        remarked: this.ctRemarked,
        failed: this.ctFailed,
      },
      mirror: {
        flows: this.engine.stats().flowTable.flows,
        unattached: this.unattached,
        syncs: this.syncs,
      },
      podAddresses: this.ruleset.addresses().length,
    };
  }

  /** One line for the agent's status: how packets reach the agent and what happens when it is away. */
  describe(): string {
    return `nftables table ${this.ruleset.table}, ${this.queueMethod.method} queue ${this.options.queue ?? 100}, fail-${this.options.failMode}`;
  }

  /** Resets the first-packet latency histogram (benchmarks). */
  resetLatency(): void {
    this.nfq.resetLatency();
  }

  /** Waits until the ruleset changes and conntrack reconciles asked for so far are done. */
  async settled(): Promise<void> {
    await this.ruleset.update([], []).catch(() => undefined);
    await this.reconciling;
  }

  private startTimers(): void {
    const every = this.options.syncIntervalMs ?? 5_000;
    if (every > 0) {
      this.syncTimer = setInterval(() => void this.sync(), every);
      this.syncTimer.unref();
    }
    // Connections a previous agent decided: mirrored now.
    void this.sync();
  }

  // --- endpoints ------------------------------------------------------------------

  attach(endpoint: AttachedEndpoint): void {
    this.open();
    const before = this.engine.attached().find((a) => a.zone === endpoint.zone);
    this.engine.attach(endpoint);
    const now = this.texts(this.engine.attached().find((a) => a.zone === endpoint.zone)?.ips ?? []);
    const was = before === undefined ? [] : this.texts(before.ips);
    this.ruleset
      .update(
        now,
        was.filter((t) => !now.includes(t)),
      )
      .catch((err: unknown) =>
        this.options.log.error(
          { err, endpoint: endpoint.endpoint },
          'could not add pod addresses to the weir table',
        ),
      );
  }

  detach(zone: number, nowMs?: number): number {
    this.open();
    const e = this.engine.attached().find((a) => a.zone === zone);
    if (e === undefined) return 0;
    const n = this.engine.detach(zone, nowMs);
    this.ruleset
      .update([], this.texts(e.ips))
      .catch((err: unknown) =>
        this.options.log.error(
          { err, endpoint: e.endpoint },
          'could not remove pod addresses from the weir table',
        ),
      );
    return n;
  }

  attached(): readonly AttachedEndpoint[] {
    return this.engine.attached();
  }

  private texts(ips: readonly (Ip | string)[]): string[] {
    return ips.map((a) => (typeof a === 'string' ? formatIp(tryParseIp(a) ?? 0) : formatIp(a)));
  }

  // --- policy ---------------------------------------------------------------------

  /**
   * The engine re-evaluates its flows (synchronously); the queue thread
   * decides with the new image from its next batch; then, asynchronously,
   * conntrack is reconciled: the connections the new tables deny are
   * deleted (they stop: their next packet is not a lone SYN, which the weir
   * table drops), the others re-marked with the rule ids that admit them now.
   * The flows the engine flipped to deny are the same connections, seen from
   * its side; the reconcile reads the kernel's own table, so it also catches
   * connections the mirror missed.
   */
  loadTables(tables: RuleTables, nowMs?: number): Reevaluation {
    this.open();
    const evaluator = makeEvaluator(tables);
    const previous = this.evaluator;
    const re = this.engine.loadTables(tables, nowMs);
    return this.loaded(evaluator, previous, re);
  }

  /**
   * As `loadTables`, the engine's walk sliced (and only over the affected
   * flows). NFQUEUE decides with the new image from the call on; conntrack
   * is reconciled once the walk is done.
   */
  async reloadTables(tables: RuleTables, options?: ReloadOptions): Promise<Reevaluation> {
    this.open();
    const evaluator = makeEvaluator(tables);
    const previous = this.evaluator;
    const walk = this.engine.reloadTables(tables, options);
    this.generation = (this.generation + 1) >>> 0 || 1;
    this.nfq.setEvaluator(evaluator, this.generation);
    this.evaluator = evaluator;
    return this.loaded(evaluator, previous, await walk, false);
  }

  private loaded(
    evaluator: NativeEvaluator,
    previous: NativeEvaluator,
    re: EngineReevaluation,
    swap = true,
  ): Reevaluation {
    if (swap) {
      this.generation = (this.generation + 1) >>> 0 || 1;
      this.nfq.setEvaluator(evaluator, this.generation);
      this.evaluator = evaluator;
    }
    this.reconciling = this.reconciling
      .then(() => this.reconcile(evaluator, re.deniedFlows.length))
      .finally(() => previous.dispose());
    if (this.prunePending) {
      // The first policy after start: addresses a previous agent left that no endpoint holds now leave the sets.
      this.prunePending = false;
      const held = new Set(this.engine.attached().flatMap((a) => this.texts(a.ips)));
      const stale = this.ruleset.addresses().filter((a) => !held.has(a));
      if (stale.length > 0)
        this.ruleset
          .update([], stale)
          .catch((err: unknown) =>
            this.options.log.error({ err }, 'could not prune stale pod addresses'),
          );
    }
    const { deniedFlows: _, ...counts } = re;
    return counts;
  }

  /** One conntrack reconcile with `evaluator` (alive until the reconcile after it), counted and logged. */
  private async reconcile(evaluator: NativeEvaluator, mirrorDenied: number): Promise<void> {
    try {
      const r = await this.ct.reconcile(evaluator);
      this.reconciles++;
      this.ctDeleted += r.deleted;
      this.ctRemarked += r.remarked;
      this.ctFailed += r.failed;
      if (r.deleted > 0 || r.failed > 0)
        this.options.log.info(
          {
            deleted: r.deleted,
            remarked: r.remarked,
            checked: r.checked,
            failed: r.failed,
            mirrorDenied,
          },
          'conntrack reconciled with the new policy: denied connections deleted',
        );
    } catch (err) {
      this.options.log.error({ err }, 'conntrack reconcile failed');
    }
  }

  /**
   * A first packet the queue thread allowed with the image of an earlier load
   * (in flight while the tables changed) may have made a connection after
   * that load's reconcile read conntrack: one more reconcile, with the tables
   * in force, catches it. Coalesced: at most one waits.
   */
  private reconcileStale(): void {
    if (this.staleReconcilePending || this.closed) return;
    this.staleReconcilePending = true;
    this.reconciling = this.reconciling.then(() => {
      this.staleReconcilePending = false;
      this.staleReconciles++;
      return this.closed ? undefined : this.reconcile(this.evaluator, 0);
    });
  }

  // --- what the kernel tells ----------------------------------------------------------

  /**
   * Decisions of the verdict thread (64-byte records, nfqueue.cc), already
   * enforced: the engine records each first packet's flow (deciding it with
   * the same tables, so an allowed flow names its rules and a denied one
   * becomes a deny flow with its reason). Counters come from conntrack.
   */
  private onDecisions(bytes: Uint8Array): void {
    if (this.closed) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const now = this.engine.now();
    let stale = false;
    for (let at = 0; at + DECISION_BYTES <= bytes.byteLength; at += DECISION_BYTES) {
      const family = bytes[at + 32]!;
      const verdict = bytes[at + 34]!;
      if (verdict === 3 || (family !== 4 && family !== 6)) {
        this.drops.malformed++;
        continue;
      }
      if (verdict === 1) this.drops['policy-egress']++;
      else if (verdict === 2) this.drops['policy-ingress']++;
      else if (view.getUint32(at + 52, true) !== this.generation) stale = true;
      const src = addressAt(bytes, at, family);
      const dst = addressAt(bytes, at + 16, family);
      const zone = this.engine.zoneOf(src, dst);
      if (zone === undefined) {
        this.unattached++;
        continue;
      }
      this.engine.decideFirstPacket(
        {
          zone,
          protocol: bytes[at + 33]!,
          src,
          dst,
          sport: view.getUint16(at + 36, true),
          dport: view.getUint16(at + 38, true),
        },
        now,
      );
    }
    if (stale) this.reconcileStale();
  }

  /** Conntrack records (128 bytes, conntrack.cc): counters, TCP state and removal of the mirrored flows. */
  private onConntrack(bytes: Uint8Array, present?: Set<number>): void {
    if (this.closed) return;
    const now = this.engine.now();
    for (let at = 0; at + CT_RECORD_BYTES <= bytes.byteLength; at += CT_RECORD_BYTES) {
      const r = readCtRecord(bytes, at);
      const zone = this.engine.zoneOf(r.src, r.dst);
      if (zone === undefined) {
        this.unattached++;
        continue;
      }
      const key = {
        zone,
        protocol: r.protocol,
        src: r.src,
        dst: r.dst,
        sport: r.sport,
        dport: r.dport,
      };
      let hit = this.engine.findFlow(key);
      if (r.type === 3) {
        // Destroyed. A flow the policy now denies stays listed as denied until it ages.
        if (hit === undefined || hit.action === 'deny') continue;
        const tcpClosed = r.protocol === 6 && r.tcp >= 4 && r.tcp <= 8;
        this.engine.removeFlow(
          hit.index,
          tcpClosed ? 'closed' : 'aged',
          now,
          this.counters(hit.index, r, now),
        );
        continue;
      }
      // A connection the mirror lacks (a previous agent's, or a decision it missed): learnt uncounted.
      if (hit === undefined) {
        const d = this.engine.decideFirstPacket(key, now);
        if (d.index === undefined) continue;
        hit = {
          index: d.index,
          direction: 'forward',
          action: d.verdict === 'allow' ? 'allow' : 'deny',
        };
      }
      present?.add(hit.index);
      this.engine.updateFlow(hit.index, this.counters(hit.index, r, now));
    }
  }

  /** The counters to store: conntrack's (acct on) or the flow's own, the TCP state, and now. */
  private counters(index: number, r: ReturnType<typeof readCtRecord>, now: number) {
    const e = this.engine.flowEntry(index);
    const counted = r.fp + r.rp > 0;
    return {
      forward: counted ? { packets: r.fp, bytes: r.fb } : (e?.forward ?? { packets: 0, bytes: 0 }),
      reverse: counted ? { packets: r.rp, bytes: r.rb } : (e?.reverse ?? { packets: 0, bytes: 0 }),
      tcpState: r.protocol === 6 ? (TCP_BITS[r.tcp] ?? 0) : (e?.tcpState ?? 0),
      lastSeenMs: now,
    };
  }

  /**
   * Refreshes counters from a dump, and removes allowed mirrored flows that
   * conntrack no longer has (destroy events lost to an overrun) once they
   * are older than one period.
   */
  private async sync(): Promise<void> {
    if (this.closed) return;
    const started = this.engine.now();
    let bytes: Uint8Array;
    try {
      bytes = await this.ct.dump();
    } catch (err) {
      this.options.log.warn({ err }, 'conntrack dump failed');
      return;
    }
    if (this.closed) return;
    this.syncs++;
    const present = new Set<number>();
    this.onConntrack(bytes, present);
    const period = this.options.syncIntervalMs ?? 5_000;
    for (let cursor: number | undefined = 0; cursor !== undefined; ) {
      const page = this.engine.flows(cursor, 1000);
      for (const f of page.flows)
        if (f.action === 'allow' && !present.has(f.index) && f.firstSeenMs < started - period)
          this.engine.removeFlow(f.index, 'aged');
      cursor = page.next;
    }
  }

  expire(nowMs?: number): number {
    return this.engine.expire(nowMs);
  }

  flows(cursor?: number, limit?: number): DecodedFlowPage {
    return this.engine.flows(cursor, limit);
  }

  flow(index: number): DecodedFlow | undefined {
    return this.engine.flow(index);
  }

  events(options?: EventOptions): AsyncIterableIterator<FlowEvent> {
    return this.engine.events(options);
  }

  stats(): DatapathStats {
    const q = this.nfq.stats();
    const engine = this.engine.stats();
    return {
      packets: q.received,
      allowed: q.allowed,
      dropped: q.denied,
      drops: { ...this.drops },
      allowedBy: { flow: 0, slowPath: q.allowed, related: 0, neighborDiscovery: 0, nonIp: 0 },
      slowPath: engine.slowPath,
      fragments: { tracked: 0, firstFragments: 0, matched: 0 },
      reevaluation: engine.reevaluation,
      endpoints: engine.endpoints,
      events: engine.events,
      flowTable: engine.flowTable,
    };
  }

  private open(): void {
    if (this.closed) throw new InternalError('kernel datapath: used after dispose');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.syncTimer !== undefined) clearInterval(this.syncTimer);
    await this.reconciling.catch(() => undefined);
    this.nfq.close();
    this.ct.close();
    if (this.options.removeOnClose ?? true)
      await this.ruleset
        .remove()
        .catch((err: unknown) =>
          this.options.log.error({ err }, 'could not remove the weir table'),
        );
    this.evaluator.dispose();
    await this.engine[Symbol.asyncDispose]();
  }
}

function makeEvaluator(tables: RuleTables): NativeEvaluator {
  const n = nativeRuleEvaluator();
  if (n.evaluator === undefined) throw new UnavailableError(`kernel datapath: ${n.reason}`);
  return new n.evaluator(encodeRuleImage(tables).image) as unknown as NativeEvaluator;
}

function addressAt(bytes: Uint8Array, at: number, family: number): Ip {
  if (family === 4)
    return (
      ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0
    );
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

function readCtRecord(bytes: Uint8Array, at: number) {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, CT_RECORD_BYTES);
  const family = bytes[at + 1] === 6 ? 6 : 4;
  return {
    type: bytes[at]!,
    family: family as 4 | 6,
    protocol: bytes[at + 2]!,
    tcp: bytes[at + 3]! === 255 ? 0 : bytes[at + 3]!,
    mark: view.getUint32(4, true),
    src: addressAt(bytes, at + 16, family),
    dst: addressAt(bytes, at + 32, family),
    sport: view.getUint16(48, true),
    dport: view.getUint16(50, true),
    fp: Number(view.getBigUint64(88, true)),
    fb: Number(view.getBigUint64(96, true)),
    rp: Number(view.getBigUint64(104, true)),
    rb: Number(view.getBigUint64(112, true)),
  };
}
