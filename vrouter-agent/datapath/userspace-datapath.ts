/**
 * The userspace datapath: a thin driver of the flow engine (flow-engine.ts)
 * that is given raw packets — for environments without netfilter, for the
 * synthetic traffic path, tests and benchmarks. It parses, tracks fragments,
 * runs the fast path over the flow table through the engine, and hands the
 * misses to the engine's slow path.
 *
 *   raw packets + zones
 *     │ decode (packet/decode.ts) ── failure ──────────────▶ drop (truncated, malformed, ...)
 *     │   non-first fragment ── first fragment's ports? ─ no ▶ drop 'fragment'
 *     │   ICMP error ──▶ reversed quoted packet finds a flow? ─ yes ▶ that flow's verdict ('related')
 *     ▼
 *   packed flow records ──▶ engine.account (fast path: one table call per batch)
 *     │ hit ───────────────────────────────────────────────▶ the flow's verdict
 *     ▼ miss (slow path)
 *   engine.decide: zone check, policy (one evaluator call for the batch's
 *     misses), insert the flow pair, count the packet ─────▶ the flow's verdict, or
 *                                                             unknown-zone / zone-mismatch /
 *                                                             unknown-endpoint / flow-limit / table-full
 *
 * Everything is synchronous: a batch, a tables load (with its
 * re-evaluation), an aging pass each run to the end before anything else
 * touches the table. `process` is this driver's own: the Datapath interface
 * has no packets.
 */
import { ValidationError, InternalError, type Issue } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import type { VerdictEngineFactory } from '../compile/verdict-engine.js';
import {
  encodeResult,
  FLOW_KEY_RECORD_BYTES,
  RESULT_MISS,
  type CreateFlowTableOptions,
} from '../flows/index.js';
import {
  FRAGMENT_FIRST,
  FRAGMENT_LATER,
  Outcome,
  PacketDecoder,
  PROTO_ICMP,
  PROTO_ICMPV6,
  readIp,
  type LinkType,
} from '../packet/decode.js';
import {
  DATAPATH_DROP_REASONS,
  dropVerdict,
  VERDICT_ALLOW,
  type AttachedEndpoint,
  type DatapathDropReason,
  type DatapathStats,
  type Datapath,
  type DecodedFlow,
  type DecodedFlowPage,
  type EventOptions,
  type FlowEvent,
  type Reevaluation,
  type ReloadOptions,
} from './datapath.js';
import { checkFlowEngineOptions, FlowEngine } from './flow-engine.js';
import { FragmentTracker } from './fragments.js';

/**
 * Packets in: the first `count` of each list. Packet i is the first
 * `lengths[i]` bytes of `buffers[i]` (clamped to the buffer: a capture
 * shorter than the packet reads as truncated), starting at its Ethernet or IP
 * header as the datapath's `link` says, given in `zones[i]`.
 */
export interface RawPackets {
  readonly count: number;
  readonly buffers: ArrayLike<Uint8Array>;
  readonly lengths: ArrayLike<number>;
  readonly zones: ArrayLike<number>;
}

/**
 * Verdicts out, one per packet in input order. The arrays belong to the
 * datapath and are overwritten by its next `process` call: read or copy
 * them before that.
 */
export interface BatchVerdicts {
  readonly count: number;
  /** VERDICT_ALLOW or a drop code (`verdictName`). */
  readonly verdicts: Uint8Array;
  /**
   * The flow each packet was counted on, as a flow table result word
   * (flows/packed.ts: `decodeResult` gives index, action, direction), or
   * RESULT_MISS when it was counted on none (dropped before a flow, refused,
   * or an ICMP error allowed as related to a flow).
   */
  readonly flows: Int32Array;
  readonly allowed: number;
  readonly dropped: number;
}

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
   * the whole table.
   */
  readonly expireScanFlows?: number;
  /** The datapath's clock in milliseconds, monotonic. Default: performance.timeOrigin + performance.now(). */
  readonly clock?: () => number;
  readonly log?: Logger;
}

const ND_TYPES = new Set([130, 131, 132, 133, 134, 135, 136, 137, 143]);
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

function isIcmp(protocol: number): boolean {
  return protocol === PROTO_ICMP || protocol === PROTO_ICMPV6;
}

function sameBytes(b: Uint8Array, x: number, y: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[x + i] !== b[y + i]) return false;
  return true;
}

export class UserspaceDatapath implements Datapath {
  readonly kind = 'userspace' as const;
  readonly flowTable: { readonly implementation: 'native' | 'typescript'; readonly reason: string };
  /** The engine this driver feeds. */
  readonly engine: FlowEngine;

  private readonly link: LinkType;
  private readonly allowNonIp: boolean;
  private readonly denyOtherProtocols: boolean;
  private readonly allowNd: boolean;
  private readonly fragments: FragmentTracker;
  private readonly decoder = new PacketDecoder();
  private closed = false;

  // Batch buffers, grown to the largest batch seen.
  private capacity = 0;
  private records = new Uint8Array(0);
  private results = new Int32Array(0);
  private recordPacket = new Int32Array(0);
  private misses = new Int32Array(0);
  private missVerdicts = new Uint8Array(0);
  private missResults = new Int32Array(0);
  private deferred = new Int32Array(0);
  private verdicts = new Uint8Array(0);
  private flowWords = new Int32Array(0);

  // Counters.
  private packets = 0;
  private readonly verdictCounts = new Float64Array(DATAPATH_DROP_REASONS.length + 1);
  private readonly allowedBy = { flow: 0, slowPath: 0, related: 0, neighborDiscovery: 0, nonIp: 0 };
  private readonly fragmentCounts = { firstFragments: 0, matched: 0 };

  constructor(options: UserspaceDatapathOptions) {
    const object = 'userspace datapath options';
    const issues: Issue[] = [];
    const check = (field: string, ok: boolean, want: string) => {
      if (!ok) issues.push({ object, field, message: `must be ${want}` });
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
    issues.push(...checkFlowEngineOptions(o, object));
    if (issues.length > 0) throw new ValidationError(issues);

    this.link = o.link ?? 'ethernet';
    this.allowNonIp = o.nonIpAction === 'allow';
    this.denyOtherProtocols = o.otherProtocols === 'deny';
    this.allowNd = (o.neighborDiscovery ?? 'allow') === 'allow';
    const fragments = new FragmentTracker(maxFragments, fragmentTimeoutSec * 1000);
    this.fragments = fragments;
    const log = (o.log ?? silentLogger).child({ component: 'datapath', datapath: 'userspace' });
    this.engine = new FlowEngine({
      tables: o.tables,
      ...(o.flowTable !== undefined ? { flowTable: o.flowTable } : {}),
      ...(o.verdictEngine !== undefined ? { verdictEngine: o.verdictEngine } : {}),
      ...(o.unknownEndpoints !== undefined ? { unknownEndpoints: o.unknownEndpoints } : {}),
      ...(o.expireIntervalMs !== undefined ? { expireIntervalMs: o.expireIntervalMs } : {}),
      ...(o.expireScanFlows !== undefined ? { expireScanFlows: o.expireScanFlows } : {}),
      ...(o.clock !== undefined ? { clock: o.clock } : {}),
      log,
      onAge: (nowMs) => fragments.expire(nowMs),
    });
    this.flowTable = this.engine.flowTable;
    log.debug(
      { flowTable: this.flowTable.implementation, reason: this.flowTable.reason },
      'userspace datapath ready',
    );
  }

  get tables(): RuleTables {
    return this.engine.tables;
  }

  // --- the engine's, as the Datapath contract says --------------------------------

  attach(a: AttachedEndpoint): void {
    this.open();
    this.engine.attach(a);
  }

  detach(zone: number, nowMs?: number): number {
    this.open();
    return this.engine.detach(zone, nowMs);
  }

  attached(): readonly AttachedEndpoint[] {
    this.open();
    return this.engine.attached();
  }

  loadTables(tables: RuleTables, nowMs?: number): Reevaluation {
    this.open();
    const { deniedFlows: _, ...counts } = this.engine.loadTables(tables, nowMs);
    return counts;
  }

  async reloadTables(tables: RuleTables, options?: ReloadOptions): Promise<Reevaluation> {
    this.open();
    const { deniedFlows: _, ...counts } = await this.engine.reloadTables(tables, options);
    return counts;
  }

  expire(nowMs?: number): number {
    this.open();
    return this.engine.expire(nowMs);
  }

  flows(cursor?: number, limit?: number): DecodedFlowPage {
    this.open();
    return this.engine.flows(cursor, limit);
  }

  flow(index: number): DecodedFlow | undefined {
    this.open();
    return this.engine.flow(index);
  }

  events(options?: EventOptions): AsyncIterableIterator<FlowEvent> {
    this.open();
    return this.engine.events(options);
  }

  // --- packets -----------------------------------------------------------------

  process(packets: RawPackets, nowMs: number = this.engine.now()): BatchVerdicts {
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
    if (m > 0) this.engine.account(this.records, m, nowMs, results);
    for (let k = 0; k < m; k++) {
      const r = results[k]!;
      if (r < 0) {
        misses[missCount++] = k;
        continue;
      }
      const i = recordPacket[k]!;
      flowWords[i] = r;
      const v = this.engine.verdictOf(r);
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
      const replyZone = this.engine.replyZoneOf(
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
        const hit = this.engine.findFlow({
          zone,
          protocol,
          src: readIp(bytes, d.innerDstOffset, family),
          dst: readIp(bytes, d.innerSrcOffset, family),
          sport: icmp ? d.innerSport : d.innerDport,
          dport: icmp ? d.innerDport : d.innerSport,
        });
        if (hit !== undefined) {
          if (hit.action === 'allow') this.allowedBy.related++;
          else verdicts[i] = this.engine.verdictOf(encodeResult(hit.index, 1, 0));
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

    if (missCount > 0) {
      this.engine.decide(
        this.records,
        misses,
        missCount,
        nowMs,
        this.missVerdicts,
        this.missResults,
      );
      for (let j = 0; j < missCount; j++) {
        const i = recordPacket[misses[j]!]!;
        const v = this.missVerdicts[j]!;
        verdicts[i] = v;
        flowWords[i] = this.missResults[j]!;
        if (v === VERDICT_ALLOW) this.allowedBy.slowPath++;
      }
    }

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

  stats(): DatapathStats {
    this.open();
    const drops = Object.fromEntries(
      DATAPATH_DROP_REASONS.map((r, i) => [r, this.verdictCounts[i + 1]!]),
    ) as Record<DatapathDropReason, number>;
    const allowed = this.verdictCounts[VERDICT_ALLOW]!;
    const engine = this.engine.stats();
    return {
      packets: this.packets,
      allowed,
      dropped: this.packets - allowed,
      drops,
      allowedBy: { ...this.allowedBy },
      slowPath: engine.slowPath,
      fragments: { tracked: this.fragments.size, ...this.fragmentCounts },
      reevaluation: engine.reevaluation,
      endpoints: engine.endpoints,
      events: engine.events,
      flowTable: engine.flowTable,
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
    this.missVerdicts = new Uint8Array(cap);
    this.missResults = new Int32Array(cap);
    this.deferred = new Int32Array(cap);
    this.verdicts = new Uint8Array(cap);
    this.flowWords = new Int32Array(cap);
  }

  private open(): void {
    if (this.closed) throw new InternalError('the datapath is closed');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine[Symbol.asyncDispose]();
  }
}
