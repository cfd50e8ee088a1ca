/**
 * The flow engine: what every datapath driver shares, whatever moves the
 * packets. It owns the local endpoints (zones and the address → zone map),
 * the first-packet verdict (compile/verdict-engine.ts, egress at a local
 * source and ingress at a local destination, as RuleTables.decide), the flow
 * table (native or TypeScript), re-evaluation when rule tables load, aging,
 * the reads (`flows`, `flow`), the flow events and the engine's statistics.
 *
 *   driver (userspace-datapath.ts: parses packets; a kernel driver: reads
 *           NFQUEUE and conntrack events; neither touches the table itself)
 *     │ fast path      account(records) ─────────────▶ result words → verdictOf(result)
 *     │ first packets  decide(records, picks) ───────▶ zone check, policy, insert (+ account)
 *     │                decideFirstPacket(key) ───────▶ the same for one 5-tuple in a zone
 *     │ mirroring      findFlow(key) → updateFlow(index, counters) / removeFlow(index, cause)
 *     │ policy         loadTables(tables) ───────────▶ re-evaluation + the flows flipped to deny
 *     ▼
 *   FlowEngine ── events() ─▶ created / verdict / re-evaluated / closed / aged / evicted
 *
 * The contract for drivers:
 *
 * - Keys. A flow is keyed by its first packet's 5-tuple in a zone (FlowKey;
 *   flows/flow-table.ts explains zones, pairing and ICMP port slots). A driver
 *   that sees interfaces gives the zone it saw the packet in; one that does
 *   not (conntrack events) gets it from `zoneOf(src, dst)`: the zone of the
 *   local endpoint that sent it, else of the one it is addressed to.
 *
 * - First packets. `decide` (packed records, for a batch) and
 *   `decideFirstPacket` (one key) check the zone (the sender must be the
 *   zone's endpoint, or a non-local address sending to it: else
 *   'unknown-zone'/'zone-mismatch'), drop with 'unknown-endpoint' a flow of
 *   an endpoint the tables do not know when so configured, decide by policy
 *   and insert the flow pair: allowed, or denied with the gate's drop reason
 *   ('policy-egress' when both gates deny). A denied first packet leaves a
 *   deny flow, so its retries are dropped without evaluating again. An insert
 *   the table refuses is dropped as 'flow-limit' or 'table-full', without a
 *   flow. A key that already has a flow (either direction) takes that flow's
 *   verdict and creates nothing. The packet is counted on its flow when the
 *   caller passes it (records always carry one; `decideFirstPacket` counts
 *   only with `packet`).
 *
 * - Verdicts. Verdict codes are datapath.ts's (VERDICT_ALLOW, `dropVerdict`);
 *   a flow's verdict, with the policy and rule ids of each gate (RuleRef,
 *   valid with the tables in force until the next `loadTables`), is what the
 *   flow table holds. `verdictOf(result)` gives a fast-path hit's code.
 *
 * - Mirroring. A driver whose packets are counted elsewhere (conntrack) sets
 *   a flow's counters, TCP state and last-seen time with `updateFlow`
 *   (absolute values, as conntrack reports them), and ends it with
 *   `removeFlow(index, 'closed' | 'aged')`, which emits that event with the
 *   final counters. An index names a flow only while the flow lives: resolve
 *   it with `findFlow` in the same synchronous turn as the update.
 *
 * - Policy. `loadTables` is synchronous: every flow is decided again before
 *   it returns, so no verdict mixes old and new tables. It returns the counts
 *   and `deniedFlows`, the flows it flipped from allow to deny: the table
 *   drops their further packets; a kernel driver must also delete their
 *   connections from conntrack, which would otherwise carry them.
 *   `reloadTables` is the same walk sliced (a turn of the event loop every
 *   `sliceMs`), over only the affected flows when told which: first packets
 *   are decided by the new tables from the call on, existing flows keep
 *   their verdict until the walk reaches them (at most until it resolves).
 *   Rule and policy ids are stable across loads (rule-ids.ts), so a flow the
 *   walk skips keeps ids that still name its rules.
 *
 * - Aging. The engine ages its flows on its own timer (`expireIntervalMs`) or
 *   when `expire` is called; the `onAge` hook lets a driver age its own state
 *   (the userspace driver's fragments) in the same pass.
 *
 * - Events. Removals come from the flow table itself (`reportRemovals`, on
 *   only while someone watches): 'aged' and 'closed' (tcp) from aging or a
 *   packet, 'evicted' from an insert into a full table, each with its final
 *   counters; 'closed' (detached) from `detach`. Nothing is built while no
 *   one watches.
 *
 * Everything is synchronous and single-threaded: a call runs to its end
 * before anything else touches the table.
 */
import { performance } from 'node:perf_hooks';
import { InternalError, ValidationError, type Issue } from '../../shared/errors.js';
import { formatIp, tryParseIp, type Ip } from '../../shared/net/ip.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import {
  POLICY_RECORD_BYTES,
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VerdictCode,
  writePolicyRecord,
} from '../compile/policy-record.js';
import {
  codeDenies,
  createVerdictEngine,
  type VerdictEngine,
  type VerdictEngineFactory,
} from '../compile/verdict-engine.js';
import {
  ACTIONS,
  createFlowTable,
  DROP_REASONS,
  encodeResult,
  FLOW_KEY_RECORD_BYTES,
  isU32,
  RESULT_MISS,
  tcpStateNames,
  writeFlowKeyAt,
  type CreateFlowTableOptions,
  type DropReason,
  type FinalVerdict,
  type FlowCountersUpdate,
  type FlowEntry,
  type FlowHit,
  type FlowKey,
  type FlowTable,
  type FlowTableStats,
  type RemovedFlow,
  type RuleRef,
} from '../flows/index.js';
import { readIp } from '../packet/decode.js';
import {
  dropVerdict,
  VERDICT_ALLOW,
  verdictName,
  type AttachedEndpoint,
  type DatapathDropReason,
  type DecodedFlow,
  type DecodedFlowPage,
  type EventOptions,
  type FlowEvent,
  type FlowVerdictView,
  type AffectedFlows,
  type Reevaluation,
  type ReloadOptions,
} from './datapath.js';
import { FlowEventHub } from './flow-events.js';
import { RuleIdAllocator, RuleIds, sameOutcome } from './rule-ids.js';

export interface FlowEngineOptions {
  /** The rule tables in force at start (the agent's compiled span; an empty span allows everything). */
  readonly tables: RuleTables;
  /** The flow table: implementation (default 'auto': native when the addon loads), size, limits, timeouts. */
  readonly flowTable?: CreateFlowTableOptions;
  /** Makes the first-packet verdict engine for each tables load. Default: the TypeScript engine, which asks RuleTables itself. */
  readonly verdictEngine?: VerdictEngineFactory;
  /**
   * First packets to or from an attached endpoint the rule tables do not know
   * (attached before its span arrived, or since removed from it). Default
   * 'decide': as RuleTables decides (that side is not enforced: fail open);
   * 'deny': dropped as 'unknown-endpoint', without a flow (fail closed).
   */
  readonly unknownEndpoints?: 'decide' | 'deny';
  /** Period of the aging timer (unref'd). Default 1000; 0: no timer, the caller calls `expire`. */
  readonly expireIntervalMs?: number;
  /** Flow slots the timer ages per tick (`FlowTable.expire`'s maxScan). Default: the whole table. */
  readonly expireScanFlows?: number;
  /** The engine's clock in milliseconds, monotonic. Default: performance.timeOrigin + performance.now(). */
  readonly clock?: () => number;
  /** Called at the start of every aging pass (timer or `expire`) with its time: the driver ages its own state. */
  readonly onAge?: (nowMs: number) => void;
  /** The driver's logger (already bound to its component). */
  readonly log?: Logger;
}

/** What `decideFirstPacket` decided. */
export interface FirstPacketDecision {
  /** 'allow', or why the packet is dropped. */
  readonly verdict: 'allow' | DatapathDropReason;
  /** The flow the packet belongs to now (created by this call or found), or undefined: dropped before a flow, or refused by the table. */
  readonly index: number | undefined;
  /** Whether this call created the flow pair. */
  readonly created: boolean;
  /** The zone replies come in (the receiver's between two local endpoints); undefined without a flow. */
  readonly replyZone: number | undefined;
  /** The deciding rule per gate, as the flow stores it (policyId/ruleId 0 without a flow). */
  readonly egress: RuleRef;
  readonly ingress: RuleRef;
}

/** A flow a policy load flipped from allow to deny, keyed as the table keys it. */
export interface DeniedFlow {
  readonly index: number;
  readonly key: FlowKey;
  readonly replyZone: number;
}

export interface EngineReevaluation extends Reevaluation {
  /** The flows this load flipped from allow to deny (`denied` of them), in index order. */
  readonly deniedFlows: readonly DeniedFlow[];
}

export interface FlowEngineStats {
  readonly slowPath: {
    /** First packets decided by policy. */
    readonly evaluated: number;
    readonly flowsAllowed: number;
    readonly flowsDenied: number;
  };
  readonly reevaluation: Reevaluation & { readonly loads: number };
  readonly endpoints: number;
  readonly events: { readonly watchers: number; readonly published: number; readonly lost: number };
  readonly flowTable: FlowTableStats;
}

const NO_RULE: RuleRef = Object.freeze({ policyId: 0, ruleId: 0 });
const V_UNKNOWN_ZONE = dropVerdict('unknown-zone');
const V_ZONE_MISMATCH = dropVerdict('zone-mismatch');
const V_UNKNOWN_ENDPOINT = dropVerdict('unknown-endpoint');
/** Flow table drop reason code → packet verdict code. 'none' (a hold entry, never made here) reads as hold-timeout. */
const REASON_VERDICT = Uint8Array.from(DROP_REASONS, (r) =>
  dropVerdict(r === 'none' ? 'hold-timeout' : r),
);
const REASON_CODE = new Map<DropReason, number>(DROP_REASONS.map((r, i) => [r, i]));
const ALLOW_CODE = ACTIONS.indexOf('allow');
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_SCTP = 132;

function hasPorts(protocol: number): boolean {
  return protocol === PROTO_TCP || protocol === PROTO_UDP || protocol === PROTO_SCTP;
}

/** A short copy without a subarray view (records are 32 and 48 bytes). */
function copy(from: Uint8Array, at: number, to: Uint8Array, into: number, n: number): void {
  for (let i = 0; i < n; i++) to[into + i] = from[at + i]!;
}

/** A turn of the event loop (I/O and timers run before it resolves). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function readZone(r: Uint8Array, o: number): number {
  return (r[o]! | (r[o + 1]! << 8) | (r[o + 2]! << 16) | (r[o + 3]! << 24)) >>> 0;
}

interface Zone {
  readonly endpoint: string;
  readonly ips: readonly Ip[];
}

/** The problems with a FlowEngine's own options, named under `object`. */
export function checkFlowEngineOptions(o: Partial<FlowEngineOptions>, object: string): Issue[] {
  const issues: Issue[] = [];
  const check = (field: string, ok: boolean, want: string) => {
    if (!ok) issues.push({ object, field, message: `must be ${want}` });
  };
  check(
    'unknownEndpoints',
    o.unknownEndpoints === undefined ||
      o.unknownEndpoints === 'decide' ||
      o.unknownEndpoints === 'deny',
    "'decide' or 'deny'",
  );
  const interval = o.expireIntervalMs ?? 1000;
  check(
    'expireIntervalMs',
    Number.isFinite(interval) && interval >= 0,
    'a finite number of milliseconds, 0 or more',
  );
  const scan = o.expireScanFlows ?? Number.MAX_SAFE_INTEGER;
  check('expireScanFlows', Number.isInteger(scan) && scan > 0, 'a positive integer');
  return issues;
}

export class FlowEngine implements AsyncDisposable {
  /** The flow table implementation in use, and why. */
  readonly flowTable: { readonly implementation: 'native' | 'typescript'; readonly reason: string };

  private readonly table: FlowTable;
  private readonly makeEngine: VerdictEngineFactory;
  private engine: VerdictEngine;
  private ids: RuleIds;
  /** Bumped by every load: a sliced walk that sees another load stops (the newer one covers every flow it would). */
  private loads = 0;
  /** Each flow's zone and reply zone by index, written at insert: the sliced walk's cheap filter (the table is checked before use). */
  private flowZones = new Uint32Array(0);
  private flowReplyZones = new Uint32Array(0);
  /** Above every index the engine has inserted at. */
  private indexLimit = 0;
  private readonly clock: () => number;
  private readonly onAge: ((nowMs: number) => void) | undefined;
  private readonly log: Logger;
  private readonly denyUnknownEndpoints: boolean;
  /** Attached zones whose endpoint the rule tables in force do not know. */
  private readonly unknownZones = new Set<number>();
  private readonly hub = new FlowEventHub();
  private readonly zones = new Map<number, Zone>();
  private readonly zoneByIp = new Map<Ip, number>();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly expireScan: number;
  /** Whether the table's removal report is on (it is while anyone watches events). */
  private reporting = false;
  /** A denied flow's drop reason (a DROP_REASONS position) by flow index: the fast path's answer without reading the entry. */
  private reasons = new Uint8Array(0);
  private closed = false;

  // Batch buffers, grown to the largest batch seen.
  private capacity = 0;
  private policyRecords = new Uint8Array(0);
  private policyView = new DataView(this.policyRecords.buffer);
  private policyOut = new Int32Array(0);
  private pendingPick = new Int32Array(0);
  private pendingReplyZone = new Uint32Array(0);
  private pendingSrc: Ip[] = [];
  private pendingDst: Ip[] = [];
  private accounted = new Uint8Array(0);
  private accountedPick = new Int32Array(0);
  private accountedVerdict = new Uint8Array(0);
  private accountedResults = new Int32Array(0);
  /** One record, its pick and outputs, for the single-key calls. */
  private readonly one = new Uint8Array(FLOW_KEY_RECORD_BYTES);
  private readonly oneView = new DataView(this.one.buffer);
  private readonly onePick = new Int32Array(1);
  private readonly oneVerdict = new Uint8Array(1);
  private readonly oneResult = new Int32Array(1);

  private readonly slow = { evaluated: 0, flowsAllowed: 0, flowsDenied: 0 };
  private readonly reevaluation = {
    loads: 0,
    checked: 0,
    unchanged: 0,
    rulesChanged: 0,
    denied: 0,
    allowed: 0,
  };

  constructor(options: FlowEngineOptions) {
    const o = options;
    const issues = checkFlowEngineOptions(o, 'flow engine options');
    if (issues.length > 0) throw new ValidationError(issues);
    this.denyUnknownEndpoints = o.unknownEndpoints === 'deny';
    this.clock = o.clock ?? (() => performance.timeOrigin + performance.now());
    this.onAge = o.onAge;
    this.log = o.log ?? silentLogger;
    this.makeEngine =
      o.verdictEngine ?? ((t) => createVerdictEngine(t, { implementation: 'typescript' }));
    const created = createFlowTable(o.flowTable);
    this.table = created.table;
    this.flowTable = { implementation: created.implementation, reason: created.reason };
    this.engine = this.makeEngine(o.tables);
    this.ids = new RuleIds(this.engine.catalog);
    this.expireScan = o.expireScanFlows ?? Number.MAX_SAFE_INTEGER;
    const interval = o.expireIntervalMs ?? 1000;
    if (interval > 0) {
      this.timer = setInterval(() => this.tick(), interval);
      this.timer.unref();
    }
  }

  /** The rule tables in force. */
  get tables(): RuleTables {
    return this.engine.tables;
  }

  /** The engine's clock: the default `nowMs` of every call. */
  now(): number {
    return this.clock();
  }

  // --- endpoints ---------------------------------------------------------------

  /** As `Datapath.attach`. */
  attach(a: AttachedEndpoint): void {
    this.open();
    const issues: Issue[] = [];
    const object = `endpoint ${String(a.endpoint)} (zone ${String(a.zone)})`;
    if (!isU32(a.zone)) issues.push({ object, field: 'zone', message: 'must be a u32' });
    if (typeof a.endpoint !== 'string' || a.endpoint === '')
      issues.push({ object, field: 'endpoint', message: 'must be "namespace/name"' });
    const existing = isU32(a.zone) ? this.zones.get(a.zone) : undefined;
    if (existing !== undefined && existing.endpoint !== a.endpoint) {
      issues.push({
        object,
        field: 'zone',
        message: `is attached to ${existing.endpoint}: detach it first`,
      });
    }
    const ips: Ip[] = [];
    (a.ips ?? []).forEach((raw, i) => {
      const ip = typeof raw === 'string' ? tryParseIp(raw) : raw;
      if (ip === undefined || (typeof ip !== 'number' && typeof ip !== 'bigint')) {
        issues.push({
          object,
          field: `ips[${i}]`,
          message: `${JSON.stringify(String(raw))} is not an IP address`,
        });
        return;
      }
      const holder = this.zoneByIp.get(ip);
      if (holder !== undefined && holder !== a.zone)
        issues.push({
          object,
          field: `ips[${i}]`,
          message: `${formatIp(ip)} is held by zone ${holder} (${this.zones.get(holder)?.endpoint})`,
        });
      ips.push(ip);
    });
    if (issues.length > 0) throw new ValidationError(issues);
    if (existing !== undefined) for (const ip of existing.ips) this.zoneByIp.delete(ip);
    this.zones.set(a.zone, { endpoint: a.endpoint, ips });
    for (const ip of ips) this.zoneByIp.set(ip, a.zone);
    if (this.engine.tables.endpoints.has(a.endpoint)) this.unknownZones.delete(a.zone);
    else this.unknownZones.add(a.zone);
  }

  /** As `Datapath.detach`: each flow removed is reported as 'closed' (detached). */
  detach(zone: number, nowMs: number = this.clock()): number {
    this.open();
    const z = this.zones.get(zone);
    if (z === undefined) return 0;
    const doomed: number[] = [];
    this.walk((e) => {
      if (e.key.zone === zone || e.replyZone === zone) doomed.push(e.index);
    });
    let removed = 0;
    for (const index of doomed) {
      if (this.table.remove(index)) removed++;
      this.drain(nowMs, 'detached');
    }
    this.zones.delete(zone);
    this.unknownZones.delete(zone);
    for (const ip of z.ips) this.zoneByIp.delete(ip);
    return removed;
  }

  attached(): readonly AttachedEndpoint[] {
    return [...this.zones].map(([zone, z]) => ({ zone, endpoint: z.endpoint, ips: z.ips }));
  }

  /** The zone a packet from `src` to `dst` is keyed in: its local sender's, else its local receiver's; undefined when neither is attached. */
  zoneOf(src: Ip, dst: Ip): number | undefined {
    return this.zoneByIp.get(src) ?? this.zoneByIp.get(dst);
  }

  /**
   * The reply zone of a first packet from `src` to `dst` in `zone` — the
   * sender's zone when it is local, else that of the endpoint it is addressed
   * to — or, negated, the verdict code that drops it ('unknown-zone',
   * 'zone-mismatch').
   */
  replyZoneOf(zone: number, src: Ip, dst: Ip): number {
    if (!this.zones.has(zone)) return -V_UNKNOWN_ZONE;
    const from = this.zoneByIp.get(src);
    const to = this.zoneByIp.get(dst);
    if (from === zone) return to ?? zone;
    if (to === zone && from === undefined) return zone;
    return -V_ZONE_MISMATCH;
  }

  private refreshUnknownZones(): void {
    this.unknownZones.clear();
    const known = this.engine.tables.endpoints;
    for (const [zone, z] of this.zones) if (!known.has(z.endpoint)) this.unknownZones.add(zone);
  }

  // --- policy ------------------------------------------------------------------

  /**
   * Makes `tables` the tables in force: first packets are decided by them
   * from now on. Rule ids stay stable across loads (the allocator is kept)
   * until it is worn, when a new one starts and every flow must be decided
   * again (`fresh`).
   */
  private swap(tables: RuleTables): { previousIds: RuleIds; fresh: boolean } {
    const engine = this.makeEngine(tables);
    const before = { engine: this.engine, ids: this.ids };
    const worn = before.ids.allocator.worn(engine.catalog.size, tables.policies.size);
    const ids = new RuleIds(engine.catalog, worn ? new RuleIdAllocator() : before.ids.allocator);
    this.engine = engine;
    this.ids = ids;
    this.loads++;
    before.engine[Symbol.dispose]();
    this.refreshUnknownZones();
    return { previousIds: before.ids, fresh: worn };
  }

  /** As `Datapath.loadTables`, with the flows flipped to deny: every flow decided again before it returns. */
  loadTables(tables: RuleTables, nowMs: number = this.clock()): EngineReevaluation {
    this.open();
    const { previousIds } = this.swap(tables);
    const r = { checked: 0, unchanged: 0, rulesChanged: 0, denied: 0, allowed: 0 };
    const deniedFlows: DeniedFlow[] = [];
    const chunk: FlowEntry[] = [];
    const flush = () => {
      this.reevaluate(chunk, previousIds, nowMs, r, deniedFlows);
      chunk.length = 0;
    };
    this.walk((e) => {
      if (e.action === 'hold') return;
      chunk.push(e);
      if (chunk.length === 1024) flush();
    });
    flush();
    return this.loaded(tables, r, deniedFlows);
  }

  /**
   * As `loadTables`, but the walk gives the event loop a turn every
   * `sliceMs`, and decides again only the `affected` flows (all without it).
   * The new tables decide first packets from the call on; an existing flow
   * keeps its verdict until the walk reaches it, so a flow the new tables
   * deny may pass packets until then: at most the walk's duration, which
   * the promise's resolution ends (the agent ACKs only then). A load that
   * starts meanwhile supersedes this walk: it stops at its next turn and
   * resolves with what it did (the newer load decides every flow it would).
   */
  async reloadTables(tables: RuleTables, options: ReloadOptions = {}): Promise<EngineReevaluation> {
    this.open();
    const nowMs = options.nowMs ?? this.clock();
    const sliceMs = options.sliceMs ?? 4;
    const { previousIds, fresh } = this.swap(tables);
    const load = this.loads;
    const affected = fresh ? undefined : options.affected;
    const r = { checked: 0, unchanged: 0, rulesChanged: 0, denied: 0, allowed: 0 };
    const deniedFlows: DeniedFlow[] = [];
    const chunk: FlowEntry[] = [];
    const flush = () => {
      this.reevaluate(chunk, previousIds, nowMs, r, deniedFlows);
      chunk.length = 0;
    };
    const superseded = () => this.closed || this.loads !== load;
    if (affected === undefined || affected.ips.size > 0) {
      // Every flow, or every flow to or from an address: the table's own walk.
      let cursor: number | undefined = 0;
      while (cursor !== undefined) {
        const start = performance.now();
        do {
          const page = this.table.list(cursor, 256);
          for (const e of page.entries) {
            if (e.action === 'hold') continue;
            if (affected !== undefined && !FlowEngine.touches(e, affected)) continue;
            chunk.push(e);
          }
          flush();
          cursor = page.next;
        } while (cursor !== undefined && performance.now() - start < sliceMs);
        if (cursor === undefined) break;
        await turn();
        if (superseded()) return this.loaded(tables, r, deniedFlows);
      }
      return this.loaded(tables, r, deniedFlows);
    }
    // The flows of some zones: the zone arrays say which indices to read.
    const zones = affected.zones;
    let i = 0;
    while (i < this.indexLimit) {
      const start = performance.now();
      do {
        const end = Math.min(this.indexLimit, i + 4096);
        for (; i < end; i++) {
          if (!zones.has(this.flowZones[i]!) && !zones.has(this.flowReplyZones[i]!)) continue;
          const e = this.table.get(i);
          if (e === undefined || e.action === 'hold' || !FlowEngine.touches(e, affected)) continue;
          chunk.push(e);
          if (chunk.length === 256) flush();
        }
        flush();
      } while (i < this.indexLimit && performance.now() - start < sliceMs);
      if (i >= this.indexLimit) break;
      await turn();
      if (superseded()) return this.loaded(tables, r, deniedFlows);
    }
    return this.loaded(tables, r, deniedFlows);
  }

  private static touches(e: FlowEntry, a: AffectedFlows): boolean {
    return (
      a.zones.has(e.key.zone) ||
      a.zones.has(e.replyZone) ||
      a.ips.has(e.key.src) ||
      a.ips.has(e.key.dst)
    );
  }

  private loaded(
    tables: RuleTables,
    r: { -readonly [K in keyof Reevaluation]: number },
    deniedFlows: DeniedFlow[],
  ): EngineReevaluation {
    const total = this.reevaluation;
    total.loads++;
    total.checked += r.checked;
    total.unchanged += r.unchanged;
    total.rulesChanged += r.rulesChanged;
    total.denied += r.denied;
    total.allowed += r.allowed;
    this.log.debug(
      { endpoints: tables.endpoints.size, rules: this.engine.catalog.size, ...r },
      'rule tables loaded; flows re-evaluated',
    );
    return { ...r, deniedFlows };
  }

  private reevaluate(
    entries: readonly FlowEntry[],
    previousIds: RuleIds,
    nowMs: number,
    r: { -readonly [K in keyof Reevaluation]: number },
    deniedFlows: DeniedFlow[],
  ): void {
    const n = entries.length;
    if (n === 0) return;
    this.ensureBatch(n);
    for (let p = 0; p < n; p++) {
      const k = entries[p]!.key;
      writePolicyRecord(this.policyView, p, {
        src: k.src,
        dst: k.dst,
        protocol: k.protocol,
        dstPort: hasPorts(k.protocol) ? k.dport : 0,
      });
    }
    this.engine.evaluate(this.policyRecords, n, this.policyOut);
    const ids = this.ids;
    for (let p = 0; p < n; p++) {
      const e = entries[p]!;
      const verdict = this.verdictAt(p);
      r.checked++;
      const egress = verdict.egress!;
      const ingress = verdict.ingress!;
      const dropReason: DropReason = verdict.action === 'deny' ? verdict.dropReason : 'none';
      const actionChanged = verdict.action !== e.action;
      const sameIds =
        egress.policyId === e.egress.policyId &&
        egress.ruleId === e.egress.ruleId &&
        ingress.policyId === e.ingress.policyId &&
        ingress.ruleId === e.ingress.ruleId;
      const sameMeaning =
        sameOutcome(previousIds.outcome(e.egress.ruleId), ids.outcome(egress.ruleId)) &&
        sameOutcome(previousIds.outcome(e.ingress.ruleId), ids.outcome(ingress.ruleId));
      if (actionChanged || !sameIds || dropReason !== e.dropReason) {
        if (!this.table.resolve(e.index, verdict)) continue;
        this.setReason(e.index, dropReason);
      }
      if (actionChanged) {
        if (verdict.action === 'deny') {
          r.denied++;
          deniedFlows.push({ index: e.index, key: e.key, replyZone: e.replyZone });
        } else r.allowed++;
      } else if (sameMeaning) r.unchanged++;
      else r.rulesChanged++;
      if (this.hub.watching && (actionChanged || !sameMeaning)) {
        const previous: FlowVerdictView = {
          action: e.action,
          dropReason: e.dropReason,
          egress: previousIds.outcome(e.egress.ruleId),
          ingress: previousIds.outcome(e.ingress.ruleId),
        };
        const flow = this.decode({ ...e, action: verdict.action, dropReason, egress, ingress });
        this.hub.publish(
          actionChanged
            ? { type: 'verdict', atMs: nowMs, flow, previous }
            : { type: 're-evaluated', atMs: nowMs, flow, previous },
        );
      }
    }
  }

  /** The verdict in policyOut[p]. */
  private verdictAt(p: number): FinalVerdict {
    const out = this.policyOut;
    const eg = out[p * RESULT_STRIDE]!;
    const ing = out[p * RESULT_STRIDE + 1]!;
    if (eg === VerdictCode.INVALID || ing === VerdictCode.INVALID)
      throw new InternalError('the policy evaluator called a record the engine wrote invalid');
    const egress = this.ids.ref(eg);
    const ingress = this.ids.ref(ing);
    if ((out[p * RESULT_STRIDE + 2]! & VERDICT_ALLOWED) !== 0)
      return { action: 'allow', egress, ingress };
    return {
      action: 'deny',
      dropReason: codeDenies(eg, this.ids.catalog) ? 'policy-egress' : 'policy-ingress',
      egress,
      ingress,
    };
  }

  // --- the fast path -----------------------------------------------------------

  /**
   * Counts `count` flow-key records (flows/packed.ts) on their flows, one
   * table call for the batch: `results[i]` gets record i's result word, or
   * RESULT_MISS (no flow: decide it; or a SYN that ended a closed flow).
   * Returns the hits.
   */
  account(records: Uint8Array, count: number, nowMs: number, results: Int32Array): number {
    this.open();
    const hits = count > 0 ? this.table.accountBatch(records, count, nowMs, results) : 0;
    if (this.reporting) this.drain(nowMs);
    return hits;
  }

  /** A hit's verdict code: VERDICT_ALLOW, or the denied flow's drop code. */
  verdictOf(result: number): number {
    if (((result >> 1) & 3) === ALLOW_CODE) return VERDICT_ALLOW;
    return REASON_VERDICT[this.reasons[result >> 3] ?? 0]!;
  }

  /** The flow a packet belongs to, without counting it. */
  findFlow(key: FlowKey): FlowHit | undefined {
    this.open();
    return this.table.lookup(key);
  }

  // --- first packets -----------------------------------------------------------

  /**
   * The slow path for a batch: decides the flow-key records `picks[0..count)`
   * of `records` — those `account` missed: a record whose key has a flow is
   * counted on that flow, but only after a needless policy evaluation — inserts
   * their flow pairs and counts each record's packet on its flow. `verdicts[j]` gets pick j's
   * verdict code, `results[j]` its result word (RESULT_MISS without a flow).
   * Records of one flow in a batch share the first one's flow.
   */
  decide(
    records: Uint8Array,
    picks: Int32Array,
    count: number,
    nowMs: number,
    verdicts: Uint8Array,
    results: Int32Array,
  ): void {
    this.open();
    this.decideRecords(records, picks, count, nowMs, verdicts, results, true);
  }

  /**
   * Decides the first packet of a flow keyed by `key` (its zone included):
   * the flow's verdict when the key (or its reply) already has a flow, else
   * the zone checks and policy, and the new flow pair. With `packet`, the
   * packet is counted on the flow (bytes at L3, TcpFlag bits); without, the
   * flow is created uncounted (a connection learnt from conntrack).
   */
  decideFirstPacket(
    key: FlowKey,
    nowMs: number = this.clock(),
    packet?: { readonly bytes: number; readonly tcpFlags: number },
  ): FirstPacketDecision {
    this.open();
    writeFlowKeyAt(this.oneView, 0, key, packet?.bytes ?? 0, packet?.tcpFlags ?? 0);
    const result = this.oneResult;
    const hit =
      packet !== undefined
        ? this.account(this.one, 1, nowMs, result)
        : this.table.lookupBatch(this.one, 1, result);
    let created = false;
    let code: number;
    if (hit > 0) {
      code = this.verdictOf(result[0]!);
    } else {
      const before = this.slow.flowsAllowed + this.slow.flowsDenied;
      this.decideRecords(
        this.one,
        this.onePick,
        1,
        nowMs,
        this.oneVerdict,
        result,
        packet !== undefined,
      );
      code = this.oneVerdict[0]!;
      created = this.slow.flowsAllowed + this.slow.flowsDenied > before;
    }
    const r = result[0]!;
    const entry = r >= 0 ? this.table.get(r >> 3) : undefined;
    return {
      verdict: verdictName(code),
      index: entry?.index,
      created,
      replyZone: entry?.replyZone,
      egress: entry?.egress ?? NO_RULE,
      ingress: entry?.ingress ?? NO_RULE,
    };
  }

  private decideRecords(
    rec: Uint8Array,
    picks: Int32Array,
    count: number,
    nowMs: number,
    verdicts: Uint8Array,
    results: Int32Array,
    countPackets: boolean,
  ): void {
    this.ensureBatch(count);
    const policy = this.policyRecords;
    let q = 0;
    for (let j = 0; j < count; j++) {
      results[j] = RESULT_MISS;
      const o = picks[j]! * FLOW_KEY_RECORD_BYTES;
      const zone = readZone(rec, o);
      const family = rec[o + 9]! as 4 | 6;
      const src = readIp(rec, o + 16, family);
      const dst = readIp(rec, o + 32, family);
      const replyZone = this.replyZoneOf(zone, src, dst);
      if (replyZone < 0) {
        verdicts[j] = -replyZone;
        continue;
      }
      if (
        this.denyUnknownEndpoints &&
        (this.unknownZones.has(zone) || this.unknownZones.has(replyZone))
      ) {
        verdicts[j] = V_UNKNOWN_ENDPOINT;
        continue;
      }
      const p = q * POLICY_RECORD_BYTES;
      copy(rec, o + 16, policy, p, 32);
      const protocol = rec[o + 8]!;
      const port = hasPorts(protocol) ? rec[o + 6]! | (rec[o + 7]! << 8) : 0;
      policy[p + 32] = family;
      policy[p + 33] = family;
      policy[p + 34] = protocol;
      policy[p + 35] = 0;
      policy[p + 36] = port & 255;
      policy[p + 37] = port >>> 8;
      policy[p + 38] = 0;
      policy[p + 39] = 0;
      this.pendingPick[q] = j;
      this.pendingReplyZone[q] = replyZone;
      this.pendingSrc[q] = src;
      this.pendingDst[q] = dst;
      q++;
    }
    if (q === 0) return;
    this.engine.evaluate(policy, q, this.policyOut);
    this.slow.evaluated += q;

    let a = 0;
    const acc = this.accounted;
    for (let p = 0; p < q; p++) {
      const j = this.pendingPick[p]!;
      const o = picks[j]! * FLOW_KEY_RECORD_BYTES;
      const verdict = this.verdictAt(p);
      const key: FlowKey = {
        zone: readZone(rec, o),
        protocol: rec[o + 8]!,
        src: this.pendingSrc[p]!,
        dst: this.pendingDst[p]!,
        sport: rec[o + 4]! | (rec[o + 5]! << 8),
        dport: rec[o + 6]! | (rec[o + 7]! << 8),
      };
      const replyZone = this.pendingReplyZone[p]!;
      const result = this.table.insert(key, verdict, nowMs, replyZone);
      if (this.reporting) this.drain(nowMs);
      if (result.outcome === 'refused') {
        verdicts[j] = dropVerdict(result.reason);
        continue;
      }
      const code =
        verdict.action === 'allow'
          ? VERDICT_ALLOW
          : dropVerdict(verdict.dropReason as DatapathDropReason);
      if (result.outcome === 'created') {
        this.setZones(result.index, key.zone, replyZone);
        if (verdict.action === 'allow') this.slow.flowsAllowed++;
        else this.slow.flowsDenied++;
        this.setReason(result.index, verdict.action === 'deny' ? verdict.dropReason : 'none');
        if (this.hub.watching)
          this.hub.publish({
            type: 'created',
            atMs: nowMs,
            flow: this.created(result.index, key, replyZone, verdict, nowMs),
          });
      }
      if (!countPackets) {
        const r =
          result.outcome === 'created'
            ? encodeResult(result.index, ACTIONS.indexOf(verdict.action), 0)
            : encodeResult(
                result.index,
                ACTIONS.indexOf(this.table.get(result.index)!.action),
                result.direction === 'reverse' ? 1 : 0,
              );
        results[j] = r;
        verdicts[j] = this.verdictOf(r);
        continue;
      }
      copy(rec, o, acc, a * FLOW_KEY_RECORD_BYTES, FLOW_KEY_RECORD_BYTES);
      this.accountedPick[a] = j;
      this.accountedVerdict[a] = code;
      a++;
    }
    if (a === 0) return;
    const accountedResults = this.accountedResults;
    this.table.accountBatch(acc, a, nowMs, accountedResults);
    if (this.reporting) this.drain(nowMs);
    for (let b = 0; b < a; b++) {
      const r = accountedResults[b]!;
      const j = this.accountedPick[b]!;
      if (r >= 0) {
        results[j] = r;
        verdicts[j] = this.verdictOf(r);
      } else {
        // The flow left the table within this batch (evicted for a later one): the decision stands.
        verdicts[j] = this.accountedVerdict[b]!;
      }
    }
  }

  private setZones(index: number, zone: number, replyZone: number): void {
    if (index >= this.flowZones.length) {
      let cap = Math.max(1024, this.flowZones.length);
      while (cap <= index) cap *= 2;
      const zones = new Uint32Array(cap);
      zones.set(this.flowZones);
      this.flowZones = zones;
      const replies = new Uint32Array(cap);
      replies.set(this.flowReplyZones);
      this.flowReplyZones = replies;
    }
    this.flowZones[index] = zone;
    this.flowReplyZones[index] = replyZone;
    if (index >= this.indexLimit) this.indexLimit = index + 1;
  }

  private setReason(index: number, reason: DropReason): void {
    if (index >= this.reasons.length) {
      let cap = Math.max(1024, this.reasons.length);
      while (cap <= index) cap *= 2;
      const grown = new Uint8Array(Math.min(cap, Math.max(this.table.options.maxFlows, index + 1)));
      grown.set(this.reasons);
      this.reasons = grown;
    }
    this.reasons[index] = REASON_CODE.get(reason) ?? 0;
  }

  // --- mirroring ---------------------------------------------------------------

  /**
   * Sets a live flow's counters, TCP state (TcpState bits) and last seen,
   * absolute, as another tracker (conntrack) reports them, in the flow's own
   * directions (forward: its first packet's). False when `index` holds no flow.
   */
  updateFlow(index: number, counters: FlowCountersUpdate): boolean {
    this.open();
    return this.table.update(index, counters);
  }

  /**
   * Ends a live flow the driver learnt has ended (a conntrack destroy):
   * 'closed' (a TCP connection that closed) or 'aged' (timed out), reported
   * as that event with the final counters (`final`, when given, set first).
   * False when `index` holds no flow.
   */
  removeFlow(
    index: number,
    cause: 'closed' | 'aged',
    nowMs: number = this.clock(),
    final?: FlowCountersUpdate,
  ): boolean {
    this.open();
    if (final !== undefined && !this.table.update(index, final)) return false;
    const removed = this.table.remove(index);
    this.drain(nowMs, cause);
    return removed;
  }

  // --- events ------------------------------------------------------------------

  /**
   * Publishes the table's kept removals. `deleted` says what a removal by
   * `remove` (the engine's own) was: a detach, or what the driver said.
   */
  private drain(nowMs: number, deleted: 'detached' | 'closed' | 'aged' = 'detached'): void {
    if (!this.reporting) return;
    if (!this.hub.watching) {
      // The last watcher left: stop the report (discarding what it kept).
      this.table.reportRemovals(false);
      this.reporting = false;
      return;
    }
    if (this.table.pendingRemovals === 0) return;
    for (const r of this.table.takeRemoved()) this.publishRemoval(r, nowMs, deleted);
  }

  private publishRemoval(
    r: RemovedFlow,
    atMs: number,
    deleted: 'detached' | 'closed' | 'aged',
  ): void {
    const flow = this.decode(r.entry);
    const cause = r.cause === 'deleted' ? deleted : r.cause;
    switch (cause) {
      case 'aged':
        this.hub.publish({ type: 'aged', atMs, flow });
        return;
      case 'closed':
        this.hub.publish({ type: 'closed', atMs, cause: 'tcp', flow });
        return;
      case 'detached':
        this.hub.publish({ type: 'closed', atMs, cause: 'detached', flow });
        return;
      case 'evicted':
        this.hub.publish({ type: 'evicted', atMs, flow });
        return;
    }
  }

  /** As `Datapath.events`. */
  events(options: EventOptions = {}): AsyncIterableIterator<FlowEvent> {
    this.open();
    const first = !this.hub.watching;
    const stream = this.hub.subscribe(options.bufferSize ?? 4096, options.signal);
    if (first && this.hub.watching) {
      // Removals kept since the last watcher left were no one's: events start now.
      if (this.reporting) this.table.reportRemovals(false);
      this.table.reportRemovals(true);
      this.reporting = true;
    }
    return stream;
  }

  // --- aging -------------------------------------------------------------------

  /** Ages flows idle past their timeouts (and runs `onAge`); returns the flows removed. */
  expire(nowMs: number = this.clock()): number {
    return this.age(nowMs, Number.MAX_SAFE_INTEGER);
  }

  private tick(): void {
    if (this.closed) return;
    try {
      this.age(this.clock(), this.expireScan);
    } catch (err) {
      this.log.error({ err }, 'aging flows failed');
    }
  }

  private age(nowMs: number, maxScan: number): number {
    this.open();
    this.onAge?.(nowMs);
    const removed = this.table.expire(nowMs, maxScan);
    this.drain(nowMs);
    return removed;
  }

  // --- reading -----------------------------------------------------------------

  flows(cursor = 0, limit = 100): DecodedFlowPage {
    this.open();
    const page = this.table.list(cursor, limit);
    return { flows: page.entries.map((e) => this.decode(e)), next: page.next };
  }

  flow(index: number): DecodedFlow | undefined {
    this.open();
    const e = this.table.get(index);
    return e === undefined ? undefined : this.decode(e);
  }

  /** A flow as the table holds it (ids as u32 RuleRefs, addresses as Ip): what a driver stamps on a kernel connection. */
  flowEntry(index: number): FlowEntry | undefined {
    this.open();
    return this.table.get(index);
  }

  /** A flow just created, as events report it: nothing counted yet, so no counters. */
  private created(
    index: number,
    key: FlowKey,
    replyZone: number,
    verdict: FinalVerdict,
    nowMs: number,
  ): DecodedFlow {
    return {
      index,
      zone: key.zone,
      endpoint: this.zones.get(key.zone)?.endpoint,
      replyZone,
      replyEndpoint: this.zones.get(replyZone)?.endpoint,
      family: typeof key.src === 'number' ? 4 : 6,
      protocol: key.protocol,
      src: formatIp(key.src),
      dst: formatIp(key.dst),
      sport: key.sport,
      dport: key.dport,
      action: verdict.action,
      dropReason: verdict.action === 'deny' ? verdict.dropReason : 'none',
      egress: this.ids.outcome(verdict.egress?.ruleId ?? 0),
      ingress: this.ids.outcome(verdict.ingress?.ruleId ?? 0),
      firstSeenMs: nowMs,
    };
  }

  private decode(e: FlowEntry): DecodedFlow {
    const family = typeof e.key.src === 'number' ? 4 : 6;
    return {
      index: e.index,
      zone: e.key.zone,
      endpoint: this.zones.get(e.key.zone)?.endpoint,
      replyZone: e.replyZone,
      replyEndpoint: this.zones.get(e.replyZone)?.endpoint,
      family,
      protocol: e.key.protocol,
      src: formatIp(e.key.src),
      dst: formatIp(e.key.dst),
      sport: e.key.sport,
      dport: e.key.dport,
      action: e.action,
      dropReason: e.dropReason,
      egress: this.ids.outcome(e.egress.ruleId),
      ingress: this.ids.outcome(e.ingress.ruleId),
      firstSeenMs: e.firstSeenMs,
      counters: {
        forward: e.forward,
        reverse: e.reverse,
        lastSeenMs: e.lastSeenMs,
        tcpState: tcpStateNames(e.tcpState),
      },
    };
  }

  /** Every flow in the table, in index order. */
  private walk(visit: (e: FlowEntry) => void): void {
    let cursor: number | undefined = 0;
    while (cursor !== undefined) {
      const page = this.table.list(cursor, 10_000);
      for (const e of page.entries) visit(e);
      cursor = page.next;
    }
  }

  stats(): FlowEngineStats {
    this.open();
    return {
      slowPath: { ...this.slow },
      reevaluation: { ...this.reevaluation },
      endpoints: this.zones.size,
      events: { watchers: this.hub.watchers, published: this.hub.published, lost: this.hub.lost },
      flowTable: this.table.stats(),
    };
  }

  // --- lifecycle ---------------------------------------------------------------

  private ensureBatch(n: number): void {
    if (n <= this.capacity) return;
    let cap = Math.max(64, this.capacity);
    while (cap < n) cap *= 2;
    this.capacity = cap;
    this.policyRecords = new Uint8Array(cap * POLICY_RECORD_BYTES);
    this.policyView = new DataView(this.policyRecords.buffer);
    this.policyOut = new Int32Array(cap * RESULT_STRIDE);
    this.pendingPick = new Int32Array(cap);
    this.pendingReplyZone = new Uint32Array(cap);
    this.pendingSrc = new Array<Ip>(cap);
    this.pendingDst = new Array<Ip>(cap);
    this.accounted = new Uint8Array(cap * FLOW_KEY_RECORD_BYTES);
    this.accountedPick = new Int32Array(cap);
    this.accountedVerdict = new Uint8Array(cap);
    this.accountedResults = new Int32Array(cap);
  }

  private open(): void {
    if (this.closed) throw new InternalError('the flow engine is closed');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.hub.close();
    this.engine[Symbol.dispose]();
    this.table.close();
  }
}
