/**
 * The userspace datapath: the flow engine fed with packets the agent is
 * given, for environments without netfilter, for tests and for benchmarks.
 *
 *   raw packets + zones
 *     │ decode (packet/decode.ts) ── failure ──────────────▶ drop (truncated, malformed, ...)
 *     │   non-first fragment ── first fragment's ports? ─ no ▶ drop 'fragment'
 *     │   ICMP error ──▶ reversed quoted packet finds a flow? ─ yes ▶ that flow's verdict ('related')
 *     ▼
 *   packed flow records ──▶ accountBatch (fast path: one call per batch)
 *     │ hit ───────────────────────────────────────────────▶ the flow's verdict
 *     ▼ miss (slow path)
 *   zone check ── fails ─────────────────────────────────────▶ drop 'unknown-zone' / 'zone-mismatch'
 *   (unknownEndpoints 'deny': an endpoint the tables lack ──────▶ drop 'unknown-endpoint')
 *   VerdictEngine.evaluate (one call for the batch's misses; egress at a
 *     local source, ingress at a local destination, as RuleTables.decide)
 *   insert the flow pair (allow, or deny with the gate's drop reason) ── refused ─▶ drop 'flow-limit' / 'table-full'
 *   accountBatch again for the inserted ───────────────────────────▶ the flow's verdict
 *
 * Alongside the table, a FlowShadow (flow-shadow.ts) remembers each flow it
 * inserted: denied packets get their drop reason from it, and events name
 * flows the table removed on its own. Everything is synchronous: a batch, a
 * tables load (with its re-evaluation), an aging pass each run to the end
 * before anything else touches the table.
 */
import { performance } from 'node:perf_hooks';
import { ValidationError, InternalError, type Issue } from '../../shared/errors.js';
import { formatIp, tryParseIp, type Ip } from '../../shared/net/ip.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import {
  codeDenies,
  createVerdictEngine,
  type VerdictEngine,
  type VerdictEngineFactory,
} from '../compile/verdict-engine.js';
import {
  POLICY_RECORD_BYTES,
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VerdictCode,
  writePolicyRecord,
} from '../compile/policy-record.js';
import {
  createFlowTable,
  DROP_REASONS,
  ACTIONS,
  FLOW_KEY_RECORD_BYTES,
  isU32,
  RESULT_MISS,
  TcpState,
  tcpStateNames,
  type CreateFlowTableOptions,
  type DropReason,
  type FinalVerdict,
  type FlowEntry,
  type FlowKey,
  type FlowTable,
} from '../flows/index.js';
import {
  FRAGMENT_FIRST,
  FRAGMENT_LATER,
  Outcome,
  PacketDecoder,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
  readIp,
  type LinkType,
} from '../packet/decode.js';
import {
  DATAPATH_DROP_REASONS,
  dropVerdict,
  VERDICT_ALLOW,
  type AttachedEndpoint,
  type BatchVerdicts,
  type DatapathDropReason,
  type DatapathStats,
  type Datapath,
  type DecodedFlow,
  type DecodedFlowPage,
  type EventOptions,
  type FlowEvent,
  type FlowVerdictView,
  type RawPackets,
  type Reevaluation,
} from './datapath.js';
import { FlowEventHub } from './flow-events.js';
import { FlowShadow } from './flow-shadow.js';
import { FragmentTracker } from './fragments.js';
import { RuleIds, sameOutcome } from './rule-ids.js';

export interface UserspaceDatapathOptions {
  /** The rule tables in force at start (the agent's compiled span; an empty span allows everything). */
  readonly tables: RuleTables;
  /** What packets start with: 'ethernet' (default; 802.1Q/802.1ad tags allowed) or 'ip'. */
  readonly link?: LinkType;
  /** The flow table: implementation (default 'auto': native when the addon loads), size, limits, timeouts. */
  readonly flowTable?: CreateFlowTableOptions;
  /**
   * Makes the first-packet verdict engine for each tables load. Default: the
   * TypeScript engine, which asks RuleTables itself.
   */
  readonly verdictEngine?: VerdictEngineFactory;
  /**
   * Frames that are not IPv4 or IPv6 (ARP, LLDP, ...): NetworkPolicy does not
   * speak of them. Default 'deny' (counted as 'unknown-ethertype'): fail
   * closed; 'allow' passes them without a flow.
   */
  readonly nonIpAction?: 'allow' | 'deny';
  /**
   * IP protocols other than TCP, UDP, SCTP, ICMP and ICMPv6. Default
   * 'evaluate': they are keyed without ports and decided by policy (a rule
   * without ports admits every protocol, as Kubernetes requires); 'deny' drops
   * them as 'unknown-protocol'.
   */
  readonly otherProtocols?: 'evaluate' | 'deny';
  /**
   * IPv6 neighbour discovery and multicast listener messages (ICMPv6 130–137,
   * 143), without which IPv6 does not work on the link. Default 'allow':
   * passed without policy or flow, as Calico and Cilium do; 'policy' decides
   * them like any ICMPv6.
   */
  readonly neighborDiscovery?: 'allow' | 'policy';
  /**
   * First packets to or from an attached endpoint the rule tables do not know
   * (attached before its span arrived, or since removed from it). Default
   * 'decide': as RuleTables decides (that side is not enforced: fail open);
   * 'deny': dropped as 'unknown-endpoint', without a flow (fail closed).
   */
  readonly unknownEndpoints?: 'decide' | 'deny';
  /** How long a first fragment's ports are remembered for the rest of its datagram. Default 30 s (Linux's ipfrag_time). */
  readonly fragmentTimeoutSec?: number;
  /** First fragments remembered at once; the oldest goes beyond. Default 4096; 0 drops every non-first fragment. */
  readonly maxFragments?: number;
  /** Period of the aging timer (unref'd). Default 1000; 0: no timer, the caller calls `expire`. */
  readonly expireIntervalMs?: number;
  /**
   * Flow slots the timer ages per tick (`FlowTable.expire`'s maxScan). Default:
   * the whole table. While anyone watches events, each aging pass also walks
   * the table once to report the flows it removes with their final counters.
   */
  readonly expireScanFlows?: number;
  /** The datapath's clock in milliseconds, monotonic. Default: performance.timeOrigin + performance.now(). */
  readonly clock?: () => number;
  readonly log?: Logger;
}

const ND_TYPES = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);
const V_UNKNOWN_ZONE = dropVerdict('unknown-zone');
const V_ZONE_MISMATCH = dropVerdict('zone-mismatch');
const V_UNKNOWN_ENDPOINT = dropVerdict('unknown-endpoint');
const V_UNKNOWN_PROTOCOL = dropVerdict('unknown-protocol');
const V_UNKNOWN_ETHERTYPE = dropVerdict('unknown-ethertype');
const V_FRAGMENT = dropVerdict('fragment');
const OUTCOME_VERDICT: Record<number, number> = {
  [Outcome.truncated]: dropVerdict('truncated'),
  [Outcome.malformed]: dropVerdict('malformed'),
  [Outcome.unknownEthertype]: V_UNKNOWN_ETHERTYPE,
  [Outcome.unknownProtocol]: V_UNKNOWN_PROTOCOL,
  [Outcome.fragment]: V_FRAGMENT,
};
/** Flow table drop reason code → packet verdict code. 'none' (a hold entry, never made here) reads as hold-timeout. */
const REASON_VERDICT = Uint8Array.from(DROP_REASONS, (r) =>
  dropVerdict(r === 'none' ? 'hold-timeout' : r),
);
const ALLOW_CODE = ACTIONS.indexOf('allow');

function hasPorts(protocol: number): boolean {
  return protocol === PROTO_TCP || protocol === PROTO_UDP || protocol === PROTO_SCTP;
}

function isIcmp(protocol: number): boolean {
  return protocol === PROTO_ICMP || protocol === PROTO_ICMPV6;
}

function sameBytes(b: Uint8Array, x: number, y: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[x + i] !== b[y + i]) return false;
  return true;
}

/** A short copy without a subarray view (records are 32 and 48 bytes). */
function copy(from: Uint8Array, at: number, to: Uint8Array, into: number, n: number): void {
  for (let i = 0; i < n; i++) to[into + i] = from[at + i]!;
}

interface Zone {
  readonly endpoint: string;
  readonly ips: readonly Ip[];
}

export class UserspaceDatapath implements Datapath {
  readonly kind = 'userspace' as const;
  readonly flowTable: { readonly implementation: 'native' | 'typescript'; readonly reason: string };

  private readonly table: FlowTable;
  private readonly link: LinkType;
  private readonly makeEngine: VerdictEngineFactory;
  private engine: VerdictEngine;
  private ids: RuleIds;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly allowNonIp: boolean;
  private readonly denyOtherProtocols: boolean;
  private readonly allowNd: boolean;
  private readonly denyUnknownEndpoints: boolean;
  /** Attached zones whose endpoint the rule tables in force do not know. */
  private readonly unknownZones = new Set<number>();
  private readonly fragments: FragmentTracker;
  private readonly hub = new FlowEventHub();
  private readonly decoder = new PacketDecoder();
  private readonly zones = new Map<number, Zone>();
  private readonly zoneByIp = new Map<Ip, number>();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly expireScan: number;
  /** Idle time after which a flow may be expired (the smallest timeout): the expire walk's filter. */
  private readonly minTimeoutMs: number;
  private closed = false;

  // Batch buffers, grown to the largest batch seen.
  private capacity = 0;
  private records = new Uint8Array(0);
  private results = new Int32Array(0);
  private recordPacket = new Int32Array(0);
  private misses = new Int32Array(0);
  private deferred = new Int32Array(0);
  private verdicts = new Uint8Array(0);
  private flowWords = new Int32Array(0);
  private policyRecords = new Uint8Array(0);
  private policyView = new DataView(this.policyRecords.buffer);
  private policyOut = new Int32Array(0);
  private pendingRecord = new Int32Array(0);
  private pendingReplyZone = new Uint32Array(0);
  private pendingSrc: Ip[] = [];
  private pendingDst: Ip[] = [];
  private accounted = new Uint8Array(0);
  private accountedPacket = new Int32Array(0);
  private accountedVerdict = new Uint8Array(0);
  private accountedResults = new Int32Array(0);

  private readonly shadow: FlowShadow;
  /** The table's removals, by cause, that events have accounted for. */
  private noticed = { aged: 0, closed: 0, evicted: 0 };

  // Counters.
  private packets = 0;
  private readonly verdictCounts = new Float64Array(DATAPATH_DROP_REASONS.length + 1);
  private readonly allowedBy = { flow: 0, slowPath: 0, related: 0, neighborDiscovery: 0, nonIp: 0 };
  private readonly slow = { evaluated: 0, flowsAllowed: 0, flowsDenied: 0 };
  private readonly fragmentCounts = { firstFragments: 0, matched: 0 };
  private readonly reevaluation = {
    loads: 0,
    checked: 0,
    unchanged: 0,
    rulesChanged: 0,
    denied: 0,
    allowed: 0,
  };

  constructor(options: UserspaceDatapathOptions) {
    const issues: Issue[] = [];
    const check = (field: string, ok: boolean, want: string) => {
      if (!ok)
        issues.push({ object: 'userspace datapath options', field, message: `must be ${want}` });
    };
    const o = options;
    check(
      'link',
      o.link === undefined || o.link === 'ethernet' || o.link === 'ip',
      "'ethernet' or 'ip'",
    );
    check(
      'nonIpAction',
      o.nonIpAction === undefined || o.nonIpAction === 'allow' || o.nonIpAction === 'deny',
      "'allow' or 'deny'",
    );
    check(
      'otherProtocols',
      o.otherProtocols === undefined ||
        o.otherProtocols === 'evaluate' ||
        o.otherProtocols === 'deny',
      "'evaluate' or 'deny'",
    );
    check(
      'neighborDiscovery',
      o.neighborDiscovery === undefined ||
        o.neighborDiscovery === 'allow' ||
        o.neighborDiscovery === 'policy',
      "'allow' or 'policy'",
    );
    check(
      'unknownEndpoints',
      o.unknownEndpoints === undefined ||
        o.unknownEndpoints === 'decide' ||
        o.unknownEndpoints === 'deny',
      "'decide' or 'deny'",
    );
    const fragmentTimeoutSec = o.fragmentTimeoutSec ?? 30;
    check(
      'fragmentTimeoutSec',
      Number.isFinite(fragmentTimeoutSec) && fragmentTimeoutSec >= 0,
      'a finite number of seconds, 0 or more',
    );
    const maxFragments = o.maxFragments ?? 4096;
    check(
      'maxFragments',
      Number.isInteger(maxFragments) && maxFragments >= 0,
      'an integer, 0 or more',
    );
    const interval = o.expireIntervalMs ?? 1000;
    check(
      'expireIntervalMs',
      Number.isFinite(interval) && interval >= 0,
      'a finite number of milliseconds, 0 or more',
    );
    const scan = o.expireScanFlows ?? Number.MAX_SAFE_INTEGER;
    check('expireScanFlows', Number.isInteger(scan) && scan > 0, 'a positive integer');
    if (issues.length > 0) throw new ValidationError(issues);

    this.link = o.link ?? 'ethernet';
    this.allowNonIp = o.nonIpAction === 'allow';
    this.denyOtherProtocols = o.otherProtocols === 'deny';
    this.allowNd = (o.neighborDiscovery ?? 'allow') === 'allow';
    this.denyUnknownEndpoints = o.unknownEndpoints === 'deny';
    this.fragments = new FragmentTracker(maxFragments, fragmentTimeoutSec * 1000);
    this.clock = o.clock ?? (() => performance.timeOrigin + performance.now());
    this.log = (o.log ?? silentLogger).child({ component: 'datapath', datapath: 'userspace' });
    this.makeEngine =
      o.verdictEngine ?? ((t) => createVerdictEngine(t, { implementation: 'typescript' }));
    const created = createFlowTable(o.flowTable);
    this.table = created.table;
    this.flowTable = { implementation: created.implementation, reason: created.reason };
    this.shadow = new FlowShadow(this.table.options.maxFlows);
    const t = this.table.options;
    this.minTimeoutMs =
      1000 *
      Math.min(
        t.tcpSynTimeoutSec,
        t.tcpEstablishedTimeoutSec,
        t.tcpClosingTimeoutSec,
        t.tcpClosedTimeoutSec,
        t.udpTimeoutSec,
        t.udpStreamTimeoutSec,
        t.icmpTimeoutSec,
        t.otherTimeoutSec,
        t.deniedTimeoutSec,
      );
    this.engine = this.makeEngine(o.tables);
    this.ids = new RuleIds(this.engine.catalog, o.tables);
    this.expireScan = scan;
    if (interval > 0) {
      this.timer = setInterval(() => this.tick(), interval);
      this.timer.unref();
    }
    this.log.debug(
      { flowTable: this.flowTable.implementation, reason: this.flowTable.reason },
      'userspace datapath ready',
    );
  }

  get tables(): RuleTables {
    return this.engine.tables;
  }

  // --- endpoints ---------------------------------------------------------------

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

  private refreshUnknownZones(): void {
    this.unknownZones.clear();
    const known = this.engine.tables.endpoints;
    for (const [zone, z] of this.zones) if (!known.has(z.endpoint)) this.unknownZones.add(zone);
  }

  detach(zone: number, nowMs: number = this.clock()): number {
    this.open();
    const z = this.zones.get(zone);
    if (z === undefined) return 0;
    const doomed: FlowEntry[] = [];
    this.walk((e) => {
      if (e.key.zone === zone || e.replyZone === zone) doomed.push(e);
    });
    let removed = 0;
    for (const e of doomed) {
      if (this.hub.watching)
        this.hub.publish({ type: 'closed', atMs: nowMs, cause: 'detached', flow: this.decode(e) });
      if (this.table.remove(e.index)) removed++;
      this.shadow.forget(e.index);
    }
    this.zones.delete(zone);
    this.unknownZones.delete(zone);
    for (const ip of z.ips) this.zoneByIp.delete(ip);
    return removed;
  }

  attached(): readonly AttachedEndpoint[] {
    return [...this.zones].map(([zone, z]) => ({ zone, endpoint: z.endpoint, ips: z.ips }));
  }

  // --- policy ------------------------------------------------------------------

  loadTables(tables: RuleTables, nowMs: number = this.clock()): Reevaluation {
    this.open();
    const engine = this.makeEngine(tables);
    const ids = new RuleIds(engine.catalog, tables);
    const before = { engine: this.engine, ids: this.ids };
    this.engine = engine;
    this.ids = ids;
    before.engine[Symbol.dispose]();
    this.refreshUnknownZones();

    const r = { checked: 0, unchanged: 0, rulesChanged: 0, denied: 0, allowed: 0 };
    const live = new Uint8Array(this.shadow.capacity);
    const chunk: FlowEntry[] = [];
    const flush = () => {
      this.reevaluate(chunk, before.ids, nowMs, r);
      for (const e of chunk) if (e.index < live.length) live[e.index] = 1;
      chunk.length = 0;
    };
    this.walk((e) => {
      if (e.action === 'hold') return;
      chunk.push(e);
      if (chunk.length === 1024) flush();
    });
    flush();
    // Flows the table removed on its own leave the shadow now.
    this.shadow.retain(live);

    const total = this.reevaluation;
    total.loads++;
    total.checked += r.checked;
    total.unchanged += r.unchanged;
    total.rulesChanged += r.rulesChanged;
    total.denied += r.denied;
    total.allowed += r.allowed;
    this.log.debug(
      { endpoints: tables.endpoints.size, rules: engine.catalog.size, ...r },
      'rule tables loaded; flows re-evaluated',
    );
    return r;
  }

  private reevaluate(
    entries: readonly FlowEntry[],
    previousIds: RuleIds,
    nowMs: number,
    r: { -readonly [K in keyof Reevaluation]: number },
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
      const verdict = this.verdictOf(p);
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
        this.shadow.setVerdict(e.index, verdict);
      }
      if (actionChanged) {
        if (verdict.action === 'deny') r.denied++;
        else r.allowed++;
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
  private verdictOf(p: number): FinalVerdict {
    const out = this.policyOut;
    const eg = out[p * RESULT_STRIDE]!;
    const ing = out[p * RESULT_STRIDE + 1]!;
    if (eg === VerdictCode.INVALID || ing === VerdictCode.INVALID)
      throw new InternalError('the policy evaluator called a record the datapath wrote invalid');
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

  // --- packets -----------------------------------------------------------------

  process(packets: RawPackets, nowMs: number = this.clock()): BatchVerdicts {
    this.open();
    if (typeof nowMs !== 'number' || !Number.isFinite(nowMs))
      throw new TypeError(`nowMs ${String(nowMs)} is not a finite number`);
    const n = packets.count;
    if (!Number.isInteger(n) || n < 0) throw new TypeError(`count ${String(n)} is not a count`);
    this.ensureBatch(n);
    const d = this.decoder;
    const link = this.link;
    const verdicts = this.verdicts;
    const flowWords = this.flowWords;
    const recordPacket = this.recordPacket;
    const buffers = packets.buffers;
    const lengths = packets.lengths;
    const zones = packets.zones;
    let m = 0;
    let deferred = 0;
    for (let i = 0; i < n; i++) {
      const bytes = buffers[i];
      const zone = zones[i]!;
      if (!(bytes instanceof Uint8Array)) throw new TypeError(`packet ${i} is not a Uint8Array`);
      if (zone >>> 0 !== zone)
        throw new TypeError(`packet ${i}: zone ${String(zone)} is not a u32`);
      flowWords[i] = RESULT_MISS;
      verdicts[i] = VERDICT_ALLOW;
      const outcome = d.decode(bytes, lengths[i]!, link);
      if (outcome !== Outcome.ok) {
        if (outcome === Outcome.fragment && d.fragment === FRAGMENT_LATER) {
          const ports = this.fragments.find(
            FragmentTracker.key(
              zone,
              d.family,
              d.protocol,
              d.fragmentId,
              bytes,
              d.srcOffset,
              d.dstOffset,
            ),
            nowMs,
          );
          if (ports !== undefined) {
            this.fragmentCounts.matched++;
            this.writeRecord(
              m,
              zone,
              ports.sport,
              ports.dport,
              ports.protocol,
              0,
              d.l3Length,
              bytes,
              d.srcOffset,
              d.dstOffset,
              d.family,
            );
            recordPacket[m++] = i;
            continue;
          }
        }
        if (outcome === Outcome.unknownEthertype && this.allowNonIp) {
          this.allowedBy.nonIp++;
          continue;
        }
        verdicts[i] = OUTCOME_VERDICT[outcome]!;
        continue;
      }
      if (!d.hasPorts && this.denyOtherProtocols) {
        verdicts[i] = V_UNKNOWN_PROTOCOL;
        continue;
      }
      if (d.protocol === PROTO_ICMPV6 && this.allowNd && ND_TYPES.has(d.icmpType)) {
        this.allowedBy.neighborDiscovery++;
        continue;
      }
      if (d.inner) {
        this.deferred[deferred++] = i;
        continue;
      }
      this.writeRecord(
        m,
        zone,
        d.sport,
        d.dport,
        d.protocol,
        d.tcpFlags & 0x1f,
        d.l3Length,
        bytes,
        d.srcOffset,
        d.dstOffset,
        d.family,
      );
      if (d.fragment === FRAGMENT_FIRST) {
        this.fragmentCounts.firstFragments++;
        this.fragments.remember(
          FragmentTracker.key(
            zone,
            d.family,
            d.protocol,
            d.fragmentId,
            bytes,
            d.srcOffset,
            d.dstOffset,
          ),
          { protocol: d.protocol, sport: d.sport, dport: d.dport },
          nowMs,
        );
      }
      recordPacket[m++] = i;
    }

    // The fast path: every packet that has a flow is counted on it and takes its verdict.
    const results = this.results;
    const misses = this.misses;
    let missCount = 0;
    if (m > 0) this.table.accountBatch(this.records, m, nowMs, results);
    for (let k = 0; k < m; k++) {
      const r = results[k]!;
      if (r < 0) {
        misses[missCount++] = k;
        continue;
      }
      const i = recordPacket[k]!;
      flowWords[i] = r;
      const v = this.hitVerdict(r);
      verdicts[i] = v;
      if (v === VERDICT_ALLOW) this.allowedBy.flow++;
    }

    // ICMP errors: one sent back to the sender of a packet of a flow takes that flow's verdict (conntrack's
    // RELATED); others are decided as ICMP. The zone check comes first: the quote must not excuse the outer addresses.
    for (let j = 0; j < deferred; j++) {
      const i = this.deferred[j]!;
      const bytes = buffers[i]!;
      const zone = zones[i]!;
      d.decode(bytes, lengths[i]!, link);
      const family = d.family as 4 | 6;
      const replyZone = this.replyZoneOf(
        zone,
        readIp(bytes, d.srcOffset, family),
        readIp(bytes, d.dstOffset, family),
      );
      if (replyZone < 0) {
        verdicts[i] = -replyZone;
        continue;
      }
      if (sameBytes(bytes, d.dstOffset, d.innerSrcOffset, family === 4 ? 4 : 16)) {
        const protocol = d.innerProtocol;
        const icmp = isIcmp(protocol);
        const hit = this.table.lookup({
          zone,
          protocol,
          src: readIp(bytes, d.innerDstOffset, family),
          dst: readIp(bytes, d.innerSrcOffset, family),
          sport: icmp ? d.innerSport : d.innerDport,
          dport: icmp ? d.innerDport : d.innerSport,
        });
        if (hit !== undefined) {
          if (hit.action === 'allow') this.allowedBy.related++;
          else verdicts[i] = REASON_VERDICT[this.shadow.reasonCode(hit.index)]!;
          continue;
        }
      }
      this.writeRecord(
        m,
        zone,
        d.sport,
        d.dport,
        d.protocol,
        0,
        d.l3Length,
        bytes,
        d.srcOffset,
        d.dstOffset,
        family,
      );
      recordPacket[m] = i;
      misses[missCount++] = m++;
    }

    if (missCount > 0) this.slowPath(missCount, nowMs);

    let allowed = 0;
    const counts = this.verdictCounts;
    for (let i = 0; i < n; i++) {
      const v = verdicts[i]!;
      counts[v]!++;
      if (v === VERDICT_ALLOW) allowed++;
    }
    this.packets += n;
    return {
      count: n,
      verdicts: verdicts.subarray(0, n),
      flows: flowWords.subarray(0, n),
      allowed,
      dropped: n - allowed,
    };
  }

  /** A fast-path hit's verdict code. */
  private hitVerdict(result: number): number {
    if (((result >> 1) & 3) === ALLOW_CODE) return VERDICT_ALLOW;
    return REASON_VERDICT[this.shadow.reasonCode(result >> 3)]!;
  }

  /** Writes flow record `m`: addresses from `bytes` at the offsets, in network order, IPv4 zero-padded. */
  private writeRecord(
    m: number,
    zone: number,
    sport: number,
    dport: number,
    protocol: number,
    tcpFlags: number,
    l3Bytes: number,
    bytes: Uint8Array,
    srcOffset: number,
    dstOffset: number,
    family: number,
  ): void {
    const r = this.records;
    const o = m * FLOW_KEY_RECORD_BYTES;
    r[o] = zone & 255;
    r[o + 1] = (zone >>> 8) & 255;
    r[o + 2] = (zone >>> 16) & 255;
    r[o + 3] = zone >>> 24;
    r[o + 4] = sport & 255;
    r[o + 5] = sport >>> 8;
    r[o + 6] = dport & 255;
    r[o + 7] = dport >>> 8;
    r[o + 8] = protocol;
    r[o + 9] = family;
    r[o + 10] = tcpFlags;
    r[o + 11] = 0;
    r[o + 12] = l3Bytes & 255;
    r[o + 13] = (l3Bytes >>> 8) & 255;
    r[o + 14] = (l3Bytes >>> 16) & 255;
    r[o + 15] = l3Bytes >>> 24;
    if (family === 4) {
      r[o + 16] = bytes[srcOffset]!;
      r[o + 17] = bytes[srcOffset + 1]!;
      r[o + 18] = bytes[srcOffset + 2]!;
      r[o + 19] = bytes[srcOffset + 3]!;
      r[o + 32] = bytes[dstOffset]!;
      r[o + 33] = bytes[dstOffset + 1]!;
      r[o + 34] = bytes[dstOffset + 2]!;
      r[o + 35] = bytes[dstOffset + 3]!;
      r.fill(0, o + 20, o + 32);
      r.fill(0, o + 36, o + 48);
    } else {
      for (let i = 0; i < 16; i++) {
        r[o + 16 + i] = bytes[srcOffset + i]!;
        r[o + 32 + i] = bytes[dstOffset + i]!;
      }
    }
  }

  /**
   * The reply zone for a first packet in `zone`, or a drop verdict (as a
   * negative number): the sender's zone when it is local, else the zone of
   * the endpoint it is addressed to.
   */
  private replyZoneOf(zone: number, src: Ip, dst: Ip): number {
    if (!this.zones.has(zone)) return -V_UNKNOWN_ZONE;
    const from = this.zoneByIp.get(src);
    const to = this.zoneByIp.get(dst);
    if (from === zone) return to ?? zone;
    if (to === zone && from === undefined) return zone;
    return -V_ZONE_MISMATCH;
  }

  private slowPath(missCount: number, nowMs: number): void {
    const rec = this.records;
    const policy = this.policyRecords;
    const verdicts = this.verdicts;
    let q = 0;
    for (let j = 0; j < missCount; j++) {
      const k = this.misses[j]!;
      const o = k * FLOW_KEY_RECORD_BYTES;
      const zone = (rec[o]! | (rec[o + 1]! << 8) | (rec[o + 2]! << 16) | (rec[o + 3]! << 24)) >>> 0;
      const family = rec[o + 9]! as 4 | 6;
      const src = readIp(rec, o + 16, family);
      const dst = readIp(rec, o + 32, family);
      const replyZone = this.replyZoneOf(zone, src, dst);
      if (replyZone < 0) {
        verdicts[this.recordPacket[k]!] = -replyZone;
        continue;
      }
      if (
        this.denyUnknownEndpoints &&
        (this.unknownZones.has(zone) || this.unknownZones.has(replyZone))
      ) {
        verdicts[this.recordPacket[k]!] = V_UNKNOWN_ENDPOINT;
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
      this.pendingRecord[q] = k;
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
      const k = this.pendingRecord[p]!;
      const o = k * FLOW_KEY_RECORD_BYTES;
      const i = this.recordPacket[k]!;
      const verdict = this.verdictOf(p);
      const key: FlowKey = {
        zone: (rec[o]! | (rec[o + 1]! << 8) | (rec[o + 2]! << 16) | (rec[o + 3]! << 24)) >>> 0,
        protocol: rec[o + 8]!,
        src: this.pendingSrc[p]!,
        dst: this.pendingDst[p]!,
        sport: rec[o + 4]! | (rec[o + 5]! << 8),
        dport: rec[o + 6]! | (rec[o + 7]! << 8),
      };
      const replyZone = this.pendingReplyZone[p]!;
      const result = this.table.insert(key, verdict, nowMs, replyZone);
      if (result.outcome === 'refused') {
        verdicts[i] = dropVerdict(result.reason);
        continue;
      }
      if (result.outcome === 'created') {
        if (verdict.action === 'allow') this.slow.flowsAllowed++;
        else this.slow.flowsDenied++;
        this.remember(result.index, o, replyZone, verdict, nowMs);
        if (this.hub.watching)
          this.hub.publish({ type: 'created', atMs: nowMs, flow: this.summary(result.index) });
      }
      copy(rec, o, acc, a * FLOW_KEY_RECORD_BYTES, FLOW_KEY_RECORD_BYTES);
      this.accountedPacket[a] = i;
      this.accountedVerdict[a] =
        verdict.action === 'allow'
          ? VERDICT_ALLOW
          : dropVerdict(verdict.dropReason as DatapathDropReason);
      a++;
    }
    if (a === 0) return;
    const results = this.accountedResults;
    this.table.accountBatch(acc, a, nowMs, results);
    for (let b = 0; b < a; b++) {
      const r = results[b]!;
      const i = this.accountedPacket[b]!;
      let v: number;
      if (r >= 0) {
        this.flowWords[i] = r;
        v = this.hitVerdict(r);
      } else {
        // The flow left the table within this batch (evicted for a later one): the decision stands.
        v = this.accountedVerdict[b]!;
      }
      verdicts[i] = v;
      if (v === VERDICT_ALLOW) this.allowedBy.slowPath++;
    }
  }

  // --- the shadow ---------------------------------------------------------------

  /** Records a flow the slow path created at `index` from flow record `o`; reports what the index held before. */
  private remember(
    index: number,
    o: number,
    replyZone: number,
    verdict: FinalVerdict,
    nowMs: number,
  ): void {
    if (this.shadow.isLive(index) && this.hub.watching) this.reportRemoved(index, nowMs);
    this.shadow.remember(index, this.records, o, replyZone, verdict, nowMs);
  }

  /**
   * The flow the shadow holds at `index` left the table without us (its
   * index is being reused): an eviction, or an aging or TCP close the expire
   * walk did not see. The table's removal counters say which, as well as
   * they can.
   */
  private reportRemoved(index: number, nowMs: number): void {
    const by = this.table.stats().removedBy;
    const flow = this.summary(index);
    if (by.evicted > this.noticed.evicted) {
      this.noticed.evicted++;
      this.hub.publish({ type: 'evicted', atMs: nowMs, flow });
    } else if (by.closed > this.noticed.closed) {
      this.noticed.closed++;
      this.hub.publish({ type: 'closed', atMs: nowMs, cause: 'tcp', flow });
    } else {
      if (by.aged > this.noticed.aged) this.noticed.aged++;
      this.hub.publish({ type: 'aged', atMs: nowMs, flow });
    }
  }

  /** A flow as the shadow knows it (no counters). */
  private summary(index: number): DecodedFlow {
    const f = this.shadow.read(index);
    return {
      index,
      zone: f.zone,
      endpoint: this.zones.get(f.zone)?.endpoint,
      replyZone: f.replyZone,
      replyEndpoint: this.zones.get(f.replyZone)?.endpoint,
      family: f.family,
      protocol: f.protocol,
      src: formatIp(f.src),
      dst: formatIp(f.dst),
      sport: f.sport,
      dport: f.dport,
      action: f.action,
      dropReason: f.dropReason,
      egress: this.ids.outcome(f.egressRuleId),
      ingress: this.ids.outcome(f.ingressRuleId),
      firstSeenMs: f.firstSeenMs,
    };
  }

  // --- aging -------------------------------------------------------------------

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
    this.fragments.expire(nowMs);
    let candidates: FlowEntry[] | undefined;
    if (this.hub.watching) {
      candidates = [];
      const c = candidates;
      this.walk((e) => {
        if (nowMs - e.lastSeenMs >= this.minTimeoutMs || e.action === 'hold') c.push(e);
      });
    }
    const removed = this.table.expire(nowMs, maxScan);
    if (candidates !== undefined && removed > 0) {
      for (const e of candidates) {
        if (this.table.get(e.index) !== undefined) continue;
        this.shadow.forget(e.index);
        const flow = this.decode(e);
        if ((e.tcpState & TcpState.closed) !== 0) {
          this.noticed.closed++;
          this.hub.publish({ type: 'closed', atMs: nowMs, cause: 'tcp', flow });
        } else {
          this.noticed.aged++;
          this.hub.publish({ type: 'aged', atMs: nowMs, flow });
        }
      }
    }
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

  events(options: EventOptions = {}): AsyncIterableIterator<FlowEvent> {
    this.open();
    if (!this.hub.watching) this.reconcile();
    return this.hub.subscribe(options.bufferSize ?? 4096, options.signal);
  }

  /** Before the first watcher: forget shadow flows the table has removed, and the removals so far. */
  private reconcile(): void {
    const live = new Uint8Array(this.shadow.capacity);
    this.walk((e) => {
      if (e.index < live.length) live[e.index] = 1;
    });
    this.shadow.retain(live);
    const by = this.table.stats().removedBy;
    this.noticed = { aged: by.aged, closed: by.closed, evicted: by.evicted };
  }

  stats(): DatapathStats {
    this.open();
    const drops = Object.fromEntries(
      DATAPATH_DROP_REASONS.map((r, i) => [r, this.verdictCounts[i + 1]!]),
    ) as Record<DatapathDropReason, number>;
    const allowed = this.verdictCounts[VERDICT_ALLOW]!;
    return {
      packets: this.packets,
      allowed,
      dropped: this.packets - allowed,
      drops,
      allowedBy: { ...this.allowedBy },
      slowPath: { ...this.slow },
      fragments: { tracked: this.fragments.size, ...this.fragmentCounts },
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
    this.records = new Uint8Array(cap * FLOW_KEY_RECORD_BYTES);
    this.results = new Int32Array(cap);
    this.recordPacket = new Int32Array(cap);
    this.misses = new Int32Array(cap);
    this.deferred = new Int32Array(cap);
    this.verdicts = new Uint8Array(cap);
    this.flowWords = new Int32Array(cap);
    this.policyRecords = new Uint8Array(cap * POLICY_RECORD_BYTES);
    this.policyView = new DataView(this.policyRecords.buffer);
    this.policyOut = new Int32Array(cap * RESULT_STRIDE);
    this.pendingRecord = new Int32Array(cap);
    this.pendingReplyZone = new Uint32Array(cap);
    this.pendingSrc = new Array<Ip>(cap);
    this.pendingDst = new Array<Ip>(cap);
    this.accounted = new Uint8Array(cap * FLOW_KEY_RECORD_BYTES);
    this.accountedPacket = new Int32Array(cap);
    this.accountedVerdict = new Uint8Array(cap);
    this.accountedResults = new Int32Array(cap);
  }

  private open(): void {
    if (this.closed) throw new InternalError('the datapath is closed');
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
