/**
 * The kernel datapath ('nftables'): real packets, enforced by the node's
 * netfilter. The kernel's conntrack is the flow table's fast path; the agent
 * is its slow path and its mirror.
 *
 *   kernel: forward hook ─ established/related ─────────────────▶ accept (conntrack)
 *           new flow of a local pod ─▶ NFQUEUE ─┐
 *   native thread (nfqueue.cc):  batch ─▶ rule image ─▶ verdicts (one sendmsg)
 *           NF_ACCEPT + mark(rule ids) ─▶ stamp chain: ct mark = mark
 *           NF_DROP (denied)
 *   JS (this file):  decisions in batches ─▶ mirror flows (allowed, or deny flows with their reason)
 *                    conntrack events (new/update/destroy) ─▶ counters, TCP state, removal
 *                    loadTables ─▶ new image swapped into the thread; mirror re-evaluated;
 *                                  conntrack reconciled: denied connections deleted (they stop),
 *                                  the rest re-marked with their new rule ids
 *
 * The ruleset (kernel-ruleset.ts) is installed at create() in one transaction
 * that keeps the pod sets a previous agent left (so nothing passes
 * unqueued during a restart), and pod addresses follow attach/detach as
 * incremental set changes; the first loadTables removes addresses no
 * endpoint holds any more. Established connections are never flushed: an
 * agent restart does not touch conntrack.
 *
 * Zones are the agent's names for local endpoints, as in the userspace
 * datapath; the kernel needs none (interfaces and routing say where packets
 * go). Spoofing is the node's business (rp_filter): the kernel datapath does
 * not drop 'zone-mismatch'.
 */
import { InternalError, UnavailableError, ValidationError } from '../../shared/errors.js';
import { formatIp, tryParseIp, type Ip } from '../../shared/net/ip.js';
import type { Logger } from '../../shared/log.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { POLICY_RECORD_BYTES, VerdictCode, writePolicyRecord } from '../compile/policy-record.js';
import type { RuleCatalog } from '../compile/rule-catalog.js';
import { encodeRuleImage } from '../compile/rule-image.js';
import { nativeRuleEvaluator } from '../compile/verdict-engine.js';
import type { DropReason, TcpStateName } from '../flows/flow-table.js';
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
  type FlowCounters,
  type FlowEvent,
  type FlowVerdictView,
  type GateOutcome,
  type Reevaluation,
} from './datapath.js';
import { FlowEventHub } from './flow-events.js';
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
  readonly latency: {
    readonly count: number;
    readonly meanNs: number;
    readonly maxNs: number;
    readonly p50Ns: number;
    readonly p90Ns: number;
    readonly p99Ns: number;
  };
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

// --- the mirror -------------------------------------------------------------------------

const TCP_STATES: readonly (readonly TcpStateName[])[] = [
  [], // none
  ['synForward'], // syn-sent
  ['synForward', 'synReverse'], // syn-recv
  ['synForward', 'synReverse', 'ackForward', 'established'], // established
  ['established', 'finForward'], // fin-wait
  ['established', 'finReverse'], // close-wait
  ['established', 'finForward', 'finReverse'], // last-ack
  ['finForward', 'finReverse', 'closed'], // time-wait
  ['closed'], // close
  ['synForward'], // syn-sent2
];

interface MirrorFlow {
  index: number;
  key: string;
  family: 4 | 6;
  protocol: number;
  src: string;
  dst: string;
  srcIp: Ip;
  dstIp: Ip;
  sport: number;
  dport: number;
  firstSeenMs: number;
  lastSeenMs: number;
  verdict: FlowVerdictView;
  /** Present once conntrack reported it. */
  counters?: { fp: number; fb: number; rp: number; rb: number; tcp: number };
  /** A denied flow of the slow path (no conntrack entry): ages after `denyTimeoutMs` without a retry. */
  deny: boolean;
  retries: number;
}

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
  /** Most flows the mirror holds (default 262144); beyond, flows are enforced but not mirrored (counted). */
  readonly maxFlows?: number;
  /** How long a denied flow stays listed without a retry (default 30 s). */
  readonly denyTimeoutMs?: number;
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
    readonly deleted: number;
    readonly remarked: number;
    readonly failed: number;
  };
  readonly mirror: { readonly flows: number; readonly overflow: number; readonly syncs: number };
  readonly podAddresses: number;
}

export class KernelDatapath implements Datapath {
  readonly kind = 'nftables';
  readonly flowTable = {
    implementation: 'native' as const,
    reason: 'the kernel conntrack table, mirrored into the agent',
  };
  private current: RuleTables;
  private evaluator: NativeEvaluator;
  private catalogs = new Map<number, RuleCatalog>();
  private generation = 1;
  private readonly endpoints = new Map<
    number,
    AttachedEndpoint & { parsed: Ip[]; texts: string[] }
  >();
  private readonly zoneByIp = new Map<Ip, number>();
  private readonly flowsByKey = new Map<string, MirrorFlow>();
  private readonly slots: (MirrorFlow | undefined)[] = [];
  private readonly free: number[] = [];
  private readonly hub = new FlowEventHub();
  private readonly maxFlows: number;
  private readonly denyTimeoutMs: number;
  private timer: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private prunePending = true;
  private overflow = 0;
  private syncs = 0;
  private reconciles = 0;
  private ctDeleted = 0;
  private ctRemarked = 0;
  private ctFailed = 0;
  private inserted = 0;
  private removed = { aged: 0, closed: 0, evicted: 0, deleted: 0 };
  private peak = 0;
  private readonly drops: Record<DatapathDropReason, number> = Object.fromEntries(
    DATAPATH_DROP_REASONS.map((r) => [r, 0]),
  ) as Record<DatapathDropReason, number>;
  private flowsAllowed = 0;
  private flowsDenied = 0;
  private reeval = { loads: 0, checked: 0, unchanged: 0, rulesChanged: 0, denied: 0, allowed: 0 };
  private reconciling: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly options: KernelDatapathOptions,
    private readonly ruleset: KernelRuleset,
    private readonly queueMethod: { method: QueueMethod; reason: string },
    private readonly accounting: boolean,
    private readonly nfq: NativeNfQueue,
    private readonly ct: NativeConntrack,
    evaluator: NativeEvaluator,
    catalog: RuleCatalog,
  ) {
    this.current = options.tables;
    this.evaluator = evaluator;
    this.catalogs.set(this.generation, catalog);
    this.maxFlows = options.maxFlows ?? 1 << 18;
    this.denyTimeoutMs = options.denyTimeoutMs ?? 30_000;
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
    const { evaluator, catalog } = makeEvaluator(options.tables);
    // Late-bound: the datapath exists only once every part started.
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
      // Keep the pod sets a previous agent left: they are queued (decided) until attach/loadTables say otherwise.
      const kept = await ruleset.existingPods().catch(() => [] as string[]);
      await ruleset.install(method.method, kept);
      nfq.setEvaluator(evaluator, 1);
      nfq.start();
    } catch (err) {
      nfq.close();
      ct.close();
      evaluator.dispose();
      throw err instanceof UnavailableError
        ? err
        : new UnavailableError(`kernel datapath: ${(err as Error).message}`, { cause: err });
    }
    dp = new KernelDatapath(options, ruleset, method, accounting, nfq, ct, evaluator, catalog);
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
    // Connections a previous agent decided: mirror them now.
    void dp.sync();
    return dp;
  }

  get tables(): RuleTables {
    return this.current;
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
        deleted: this.ctDeleted,
        remarked: this.ctRemarked,
        failed: this.ctFailed,
      },
      mirror: { flows: this.flowsByKey.size, overflow: this.overflow, syncs: this.syncs },
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
    this.timer = setInterval(() => this.expire(), 1_000);
    this.timer.unref();
    const every = this.options.syncIntervalMs ?? 5_000;
    if (every > 0) {
      this.syncTimer = setInterval(() => void this.sync(), every);
      this.syncTimer.unref();
    }
  }

  // --- endpoints ------------------------------------------------------------------

  attach(endpoint: AttachedEndpoint): void {
    this.open();
    const issues = [];
    if (!Number.isInteger(endpoint.zone) || endpoint.zone < 0 || endpoint.zone > 0xffff_ffff)
      issues.push({ field: 'zone', message: `${endpoint.zone} is not a u32` });
    const other = this.endpoints.get(endpoint.zone);
    if (other !== undefined && other.endpoint !== endpoint.endpoint)
      issues.push({
        field: 'zone',
        message: `zone ${endpoint.zone} is attached to ${other.endpoint}`,
      });
    const parsed: Ip[] = [];
    const texts: string[] = [];
    for (const a of endpoint.ips) {
      const ip = typeof a === 'string' ? tryParseIp(a) : a;
      if (ip === undefined) {
        issues.push({ field: 'ips', message: `${JSON.stringify(a)} is not an IP address` });
        continue;
      }
      const holder = this.zoneByIp.get(ip);
      if (holder !== undefined && holder !== endpoint.zone)
        issues.push({ field: 'ips', message: `${formatIp(ip)} is held by zone ${holder}` });
      parsed.push(ip);
      texts.push(formatIp(ip));
    }
    if (issues.length > 0)
      throw new ValidationError(
        issues.map((i) => ({ object: `endpoint ${endpoint.endpoint}`, ...i })),
      );
    const before = other?.texts ?? [];
    for (const ip of other?.parsed ?? []) this.zoneByIp.delete(ip);
    for (const ip of parsed) this.zoneByIp.set(ip, endpoint.zone);
    this.endpoints.set(endpoint.zone, { ...endpoint, parsed, texts });
    this.ruleset
      .update(
        texts,
        before.filter((t) => !texts.includes(t)),
      )
      .catch((err: unknown) =>
        this.options.log.error(
          { err, endpoint: endpoint.endpoint },
          'could not add pod addresses to the weir table',
        ),
      );
  }

  detach(zone: number, nowMs = Date.now()): number {
    const e = this.endpoints.get(zone);
    if (e === undefined) return 0;
    this.endpoints.delete(zone);
    for (const ip of e.parsed) this.zoneByIp.delete(ip);
    this.ruleset
      .update([], e.texts)
      .catch((err: unknown) =>
        this.options.log.error(
          { err, endpoint: e.endpoint },
          'could not remove pod addresses from the weir table',
        ),
      );
    let n = 0;
    for (const f of [...this.flowsByKey.values()]) {
      if (!e.parsed.includes(f.srcIp) && !e.parsed.includes(f.dstIp)) continue;
      this.removeFlow(f, 'deleted');
      if (this.hub.watching)
        this.hub.publish({ type: 'closed', atMs: nowMs, flow: this.decode(f), cause: 'detached' });
      n++;
    }
    return n;
  }

  attached(): readonly AttachedEndpoint[] {
    return [...this.endpoints.values()].map(({ zone, endpoint, ips }) => ({ zone, endpoint, ips }));
  }

  // --- policy ---------------------------------------------------------------------

  loadTables(tables: RuleTables, nowMs = Date.now()): Reevaluation {
    this.open();
    const { evaluator, catalog } = makeEvaluator(tables);
    const previousEvaluator = this.evaluator;
    this.generation = (this.generation + 1) >>> 0 || 1;
    this.nfq.setEvaluator(evaluator, this.generation);
    this.evaluator = evaluator;
    this.current = tables;
    this.catalogs.set(this.generation, catalog);
    for (const g of [...this.catalogs.keys()])
      if (g !== this.generation && g !== this.generation - 1) this.catalogs.delete(g);
    // The mirror, decided again with the new image in one call.
    const flows = [...this.flowsByKey.values()];
    const out = this.evaluate(flows);
    const re = { checked: flows.length, unchanged: 0, rulesChanged: 0, denied: 0, allowed: 0 };
    for (let i = 0; i < flows.length; i++) {
      const f = flows[i]!;
      const previous = f.verdict;
      const next = this.verdictOf(out[3 * i]!, out[3 * i + 1]!, this.generation);
      f.verdict = next;
      if (previous.action !== next.action) {
        if (next.action === 'deny') re.denied++;
        else re.allowed++;
        if (this.hub.watching)
          this.hub.publish({ type: 'verdict', atMs: nowMs, flow: this.decode(f), previous });
      } else if (
        !sameGate(previous.egress, next.egress) ||
        !sameGate(previous.ingress, next.ingress)
      ) {
        re.rulesChanged++;
        if (this.hub.watching)
          this.hub.publish({ type: 're-evaluated', atMs: nowMs, flow: this.decode(f), previous });
      } else re.unchanged++;
    }
    this.reeval.loads++;
    this.reeval.checked += re.checked;
    this.reeval.unchanged += re.unchanged;
    this.reeval.rulesChanged += re.rulesChanged;
    this.reeval.denied += re.denied;
    this.reeval.allowed += re.allowed;
    // The kernel: connections the new policy denies are deleted (so they stop), the rest re-marked.
    this.reconciling = this.reconciling
      .then(() => this.ct.reconcile(evaluator))
      .then(
        (r) => {
          this.reconciles++;
          this.ctDeleted += r.deleted;
          this.ctRemarked += r.remarked;
          this.ctFailed += r.failed;
          if (r.deleted > 0 || r.failed > 0)
            this.options.log.info(
              { deleted: r.deleted, remarked: r.remarked, checked: r.checked, failed: r.failed },
              'conntrack reconciled with the new policy: denied connections deleted',
            );
        },
        (err: unknown) => this.options.log.error({ err }, 'conntrack reconcile failed'),
      )
      .finally(() => previousEvaluator.dispose());
    if (this.prunePending) {
      // The first policy after start: addresses a previous agent left that no endpoint holds now leave the sets.
      this.prunePending = false;
      const held = new Set([...this.endpoints.values()].flatMap((e) => e.texts));
      const stale = this.ruleset.addresses().filter((a) => !held.has(a));
      if (stale.length > 0)
        this.ruleset
          .update([], stale)
          .catch((err: unknown) =>
            this.options.log.error({ err }, 'could not prune stale pod addresses'),
          );
    }
    return re;
  }

  // --- what the kernel tells ----------------------------------------------------------

  /** Decisions of the verdict thread (64-byte records, nfqueue.cc). */
  private onDecisions(bytes: Uint8Array): void {
    if (this.closed) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const now = Date.now();
    for (let at = 0; at + DECISION_BYTES <= bytes.byteLength; at += DECISION_BYTES) {
      const family = bytes[at + 32]!;
      const verdict = bytes[at + 34]!;
      if (verdict === 3 || (family !== 4 && family !== 6)) {
        this.drops.malformed++;
        continue;
      }
      const protocol = bytes[at + 33]!;
      const sport = view.getUint16(at + 36, true);
      const dport = view.getUint16(at + 38, true);
      const src = addressAt(bytes, at, family);
      const dst = addressAt(bytes, at + 16, family);
      const key = flowKey(family, protocol, src, sport, dst, dport);
      const eg = view.getInt32(at + 40, true);
      const ing = view.getInt32(at + 44, true);
      const generation = view.getUint32(at + 52, true);
      if (verdict === 0) this.flowsAllowed++;
      else {
        this.flowsDenied++;
        this.drops[verdict === 1 ? 'policy-egress' : 'policy-ingress']++;
      }
      const existing = this.flowsByKey.get(key);
      if (existing !== undefined) {
        existing.lastSeenMs = now;
        if (existing.deny) existing.retries++;
        continue;
      }
      const f = this.addFlow(
        key,
        family,
        protocol,
        src,
        dst,
        sport,
        dport,
        now,
        this.verdictOf(eg, ing, generation),
      );
      if (f === undefined) continue;
      f.deny = verdict !== 0;
      if (this.hub.watching) this.hub.publish({ type: 'created', atMs: now, flow: this.decode(f) });
    }
  }

  /** Conntrack records (128 bytes, conntrack.cc). */
  private onConntrack(bytes: Uint8Array): void {
    if (this.closed) return;
    const now = Date.now();
    const unknown: MirrorFlow[] = [];
    for (let at = 0; at + CT_RECORD_BYTES <= bytes.byteLength; at += CT_RECORD_BYTES) {
      const r = readCtRecord(bytes, at);
      let f = this.flowsByKey.get(r.key);
      if (r.type === 3) {
        if (f === undefined) continue;
        f.counters = r.counters;
        if (f.verdict.action === 'deny') {
          // Deleted by a policy change: listed as denied until it ages.
          f.deny = true;
          f.lastSeenMs = now;
          continue;
        }
        const tcpClosed = r.protocol === 6 && r.counters.tcp >= 4 && r.counters.tcp <= 8;
        this.removeFlow(f, tcpClosed ? 'closed' : 'aged');
        if (this.hub.watching)
          this.hub.publish(
            tcpClosed
              ? { type: 'closed', atMs: now, flow: this.decode(f), cause: 'tcp' }
              : { type: 'aged', atMs: now, flow: this.decode(f) },
          );
        continue;
      }
      if (f === undefined) {
        // A connection this agent did not see decided (a previous agent's, or a missed decision).
        f = this.addFlow(r.key, r.family, r.protocol, r.src, r.dst, r.sport, r.dport, now, {
          action: 'allow',
          dropReason: 'none',
          egress: { kind: 'none' },
          ingress: { kind: 'none' },
        });
        if (f === undefined) continue;
        unknown.push(f);
      }
      if (
        r.type !== 4 ||
        r.counters.fp + r.counters.rp > (f.counters?.fp ?? 0) + (f.counters?.rp ?? 0)
      )
        f.lastSeenMs = now;
      if (r.type === 2 && r.protocol === 6)
        f.counters = { ...(f.counters ?? r.counters), tcp: r.counters.tcp };
      if (r.type === 4 || r.type === 1) f.counters = r.counters;
    }
    if (unknown.length > 0) {
      const out = this.evaluate(unknown);
      for (let i = 0; i < unknown.length; i++) {
        const f = unknown[i]!;
        f.verdict = this.verdictOf(out[3 * i]!, out[3 * i + 1]!, this.generation);
        if (this.hub.watching)
          this.hub.publish({ type: 'created', atMs: now, flow: this.decode(f) });
      }
    }
  }

  /** Refreshes counters from a dump and drops mirror flows conntrack no longer has (missed destroy events). */
  private async sync(): Promise<void> {
    if (this.closed) return;
    const started = Date.now();
    let bytes: Uint8Array;
    try {
      bytes = await this.ct.dump();
    } catch (err) {
      this.options.log.warn({ err }, 'conntrack dump failed');
      return;
    }
    if (this.closed) return;
    this.syncs++;
    const present = new Set<string>();
    for (let at = 0; at + CT_RECORD_BYTES <= bytes.byteLength; at += CT_RECORD_BYTES)
      present.add(readCtRecord(bytes, at).key);
    this.onConntrack(bytes);
    for (const f of [...this.flowsByKey.values()]) {
      if (f.deny || present.has(f.key) || f.firstSeenMs >= started - 2_000) continue;
      this.removeFlow(f, 'aged');
      if (this.hub.watching)
        this.hub.publish({ type: 'aged', atMs: Date.now(), flow: this.decode(f) });
    }
  }

  expire(nowMs = Date.now()): number {
    let n = 0;
    for (const f of [...this.flowsByKey.values()]) {
      if (!f.deny || nowMs - f.lastSeenMs < this.denyTimeoutMs) continue;
      this.removeFlow(f, 'aged');
      if (this.hub.watching) this.hub.publish({ type: 'aged', atMs: nowMs, flow: this.decode(f) });
      n++;
    }
    return n;
  }

  // --- the mirror table ------------------------------------------------------------------

  private addFlow(
    key: string,
    family: 4 | 6,
    protocol: number,
    src: Ip,
    dst: Ip,
    sport: number,
    dport: number,
    now: number,
    verdict: FlowVerdictView,
  ): MirrorFlow | undefined {
    if (this.flowsByKey.size >= this.maxFlows) {
      this.overflow++;
      return undefined;
    }
    const index = this.free.pop() ?? this.slots.length;
    const f: MirrorFlow = {
      index,
      key,
      family,
      protocol,
      src: formatIp(src),
      dst: formatIp(dst),
      srcIp: src,
      dstIp: dst,
      sport,
      dport,
      firstSeenMs: now,
      lastSeenMs: now,
      verdict,
      deny: false,
      retries: 0,
    };
    this.slots[index] = f;
    this.flowsByKey.set(key, f);
    this.inserted++;
    this.peak = Math.max(this.peak, this.flowsByKey.size);
    return f;
  }

  private removeFlow(f: MirrorFlow, cause: 'aged' | 'closed' | 'evicted' | 'deleted'): void {
    if (this.flowsByKey.get(f.key) !== f) return;
    this.flowsByKey.delete(f.key);
    this.slots[f.index] = undefined;
    this.free.push(f.index);
    this.removed[cause]++;
  }

  /** Decides flows' first packets with the image in force: out[3i..3i+2] as the evaluator writes. */
  private evaluate(flows: readonly MirrorFlow[]): Int32Array {
    const records = new Uint8Array(Math.max(1, flows.length) * POLICY_RECORD_BYTES);
    const view = new DataView(records.buffer);
    for (let i = 0; i < flows.length; i++) {
      const f = flows[i]!;
      const ported =
        f.protocol === 6 || f.protocol === 17 || f.protocol === 132 || f.protocol === 136;
      writePolicyRecord(view, i, {
        src: f.srcIp,
        dst: f.dstIp,
        protocol: f.protocol,
        dstPort: ported ? f.dport : 0,
      });
    }
    const out = new Int32Array(Math.max(1, flows.length) * 3);
    if (flows.length > 0) this.evaluator.evaluate(records, flows.length, out);
    return out;
  }

  private verdictOf(egress: number, ingress: number, generation: number): FlowVerdictView {
    const catalog = this.catalogs.get(generation) ?? this.catalogs.get(this.generation)!;
    const gate = (c: number): GateOutcome => {
      if (c === VerdictCode.ALLOW_DEFAULT) return { kind: 'default' };
      if (c === VerdictCode.ALLOW_NODE) return { kind: 'node' };
      if (c === VerdictCode.DENY) return { kind: 'deny' };
      const r = catalog.rule(c);
      return r === undefined ? { kind: 'none' } : { kind: 'rule', rule: r.id, policy: r.policy };
    };
    const eg = gate(egress);
    const ing = gate(ingress);
    const dropReason: DropReason =
      egress === VerdictCode.DENY
        ? 'policy-egress'
        : ingress === VerdictCode.DENY
          ? 'policy-ingress'
          : 'none';
    return {
      action: dropReason === 'none' ? 'allow' : 'deny',
      dropReason,
      egress: eg,
      ingress: ing,
    };
  }

  private decode(f: MirrorFlow): DecodedFlow {
    const srcZone = this.zoneByIp.get(f.srcIp);
    const dstZone = this.zoneByIp.get(f.dstIp);
    const zone = srcZone ?? dstZone ?? 0;
    const replyZone = dstZone ?? zone;
    const c = f.counters;
    const counters: FlowCounters | undefined =
      c === undefined
        ? undefined
        : {
            forward: { packets: c.fp, bytes: c.fb },
            reverse: { packets: c.rp, bytes: c.rb },
            lastSeenMs: f.lastSeenMs,
            tcpState: f.protocol === 6 ? (TCP_STATES[c.tcp] ?? []) : [],
          };
    return {
      ...f.verdict,
      index: f.index,
      zone,
      endpoint: this.endpoints.get(zone)?.endpoint,
      replyZone,
      replyEndpoint: this.endpoints.get(replyZone)?.endpoint,
      family: f.family,
      protocol: f.protocol,
      src: f.src,
      dst: f.dst,
      sport: f.sport,
      dport: f.dport,
      firstSeenMs: f.firstSeenMs,
      ...(counters === undefined ? {} : { counters }),
    };
  }

  flows(cursor = 0, limit = 100): DecodedFlowPage {
    if (!Number.isInteger(cursor) || cursor < 0)
      throw new ValidationError([{ field: 'cursor', message: `${cursor} is not a cursor` }]);
    const max = Math.min(Math.max(1, Math.floor(limit)), 10_000);
    const out: DecodedFlow[] = [];
    let i = cursor;
    for (; i < this.slots.length && out.length < max; i++) {
      const f = this.slots[i];
      if (f !== undefined) out.push(this.decode(f));
    }
    return { flows: out, next: i < this.slots.length ? i : undefined };
  }

  flow(index: number): DecodedFlow | undefined {
    const f = this.slots[index];
    return f === undefined ? undefined : this.decode(f);
  }

  events(options: EventOptions = {}): AsyncIterableIterator<FlowEvent> {
    const first = !this.hub.watching;
    const it = this.hub.subscribe(options.bufferSize ?? 4096, options.signal);
    void first;
    return it;
  }

  stats(): DatapathStats {
    const q = this.nfq.stats();
    const dropped = q.denied;
    return {
      packets: q.received,
      allowed: q.allowed,
      dropped,
      drops: { ...this.drops },
      allowedBy: { flow: 0, slowPath: q.allowed, related: 0, neighborDiscovery: 0, nonIp: 0 },
      slowPath: {
        evaluated: q.received,
        flowsAllowed: this.flowsAllowed,
        flowsDenied: this.flowsDenied,
      },
      fragments: { tracked: 0, firstFragments: 0, matched: 0 },
      reevaluation: { ...this.reeval },
      endpoints: this.endpoints.size,
      events: { watchers: this.hub.watchers, published: this.hub.published, lost: this.hub.lost },
      flowTable: {
        flows: this.flowsByKey.size,
        holds: 0,
        peakFlows: this.peak,
        maxFlows: this.maxFlows,
        zones: new Set(
          [...this.flowsByKey.values()].map(
            (f) => this.zoneByIp.get(f.srcIp) ?? this.zoneByIp.get(f.dstIp) ?? 0,
          ),
        ).size,
        inserted: this.inserted,
        removed:
          this.removed.aged + this.removed.closed + this.removed.evicted + this.removed.deleted,
        removedBy: { ...this.removed },
        refused: { 'flow-limit': 0, 'table-full': this.overflow, 'hold-limit': 0 },
        holdsCreated: 0,
        holdsResolved: 0,
        lookups: q.received,
        hits: 0,
        bytesAllocated: 0,
      },
    };
  }

  private open(): void {
    if (this.closed) throw new InternalError('kernel datapath: used after dispose');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
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
    this.hub.close();
  }
}

function makeEvaluator(tables: RuleTables): { evaluator: NativeEvaluator; catalog: RuleCatalog } {
  const n = nativeRuleEvaluator();
  if (n.evaluator === undefined) throw new UnavailableError(`kernel datapath: ${n.reason}`);
  const { image, catalog } = encodeRuleImage(tables);
  return { evaluator: new n.evaluator(image) as unknown as NativeEvaluator, catalog };
}

function sameGate(a: GateOutcome, b: GateOutcome): boolean {
  if (a.kind !== b.kind) return false;
  return a.kind !== 'rule' || (b.kind === 'rule' && a.rule === b.rule && a.policy === b.policy);
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

function flowKey(
  family: number,
  protocol: number,
  src: Ip,
  sport: number,
  dst: Ip,
  dport: number,
): string {
  return `${family}/${protocol}/${src}/${sport}/${dst}/${dport}`;
}

function readCtRecord(bytes: Uint8Array, at: number) {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, CT_RECORD_BYTES);
  const family = bytes[at + 1] === 6 ? 6 : 4;
  const protocol = bytes[at + 2]!;
  const src = addressAt(bytes, at + 16, family);
  const dst = addressAt(bytes, at + 32, family);
  const sport = view.getUint16(48, true);
  const dport = view.getUint16(50, true);
  return {
    type: bytes[at]!,
    family: family as 4 | 6,
    protocol,
    mark: view.getUint32(4, true),
    src,
    dst,
    sport,
    dport,
    key: flowKey(family, protocol, src, sport, dst, dport),
    counters: {
      fp: Number(view.getBigUint64(88, true)),
      fb: Number(view.getBigUint64(96, true)),
      rp: Number(view.getBigUint64(104, true)),
      rb: Number(view.getBigUint64(112, true)),
      tcp: bytes[at + 3]! === 255 ? 0 : bytes[at + 3]!,
    },
  };
}
