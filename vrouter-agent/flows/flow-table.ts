/**
 * The vRouter flow table: every connection the node is deciding or has
 * decided, as a pair of entries — forward (the packet that opened it) and
 * reverse (its replies) — with one verdict.
 *
 *   packets ──▶ lookupBatch / accountBatch ──▶ hit: action, direction, index
 *                        │
 *                        └─▶ miss: the slow path evaluates policy, then
 *                            insert(key, verdict)   (or a 'hold' first, and
 *                            resolve(index, verdict) when the verdict lands)
 *   timer ──▶ expire(now): idle flows leave by protocol and TCP state
 *   owner ◀── takeRemoved(): what left, why, with its final counters
 *             (reportRemovals on); update(index, counters) mirrors another
 *             tracker's counters into a flow
 *
 * Two implementations with one contract: the native table (C++,
 * vrouter-agent/native/src/flow_table.cc) and the TypeScript one
 * (typescript-flow-table.ts), the fallback where the addon cannot load.
 * They are tested against each other, result by result.
 *
 * Zones. A zone is a u32 naming a local endpoint (vRouter keys flows by the
 * ingress interface). A packet is looked up in the zone of the local endpoint
 * that sent it or, for a packet from off the node, of the local endpoint it is
 * addressed to. A pair has a `zone` (its forward packets) and a `replyZone`
 * (its replies); they are equal unless both ends are endpoints on this node
 * (pod to pod: forward packets in the client's zone, replies in the server's).
 *
 * Keys and replies. A packet finds a flow when it equals the forward key in
 * `zone` (direction forward) or the reverse key in `replyZone` (direction
 * reverse). The reverse key swaps the addresses and the ports — except for
 * ICMP and ICMPv6 (protocols 1 and 58), whose port slots hold the echo
 * identifier and the echo-request type, the same both ways (see `icmpPorts`).
 * At most one flow matches any packet: insert refuses a key whose forward or
 * reverse packet already finds a flow. A flow from an address and port to
 * themselves matches forward.
 *
 * Times are milliseconds supplied by the caller (`nowMs`), never read from a
 * clock, so tests are deterministic; they only need to be monotonic.
 */
import type { Ip } from '../../shared/net/ip.js';
import { ValidationError, type Issue } from '../../shared/errors.js';

/** A packet's identity, as the table keys it. */
export interface FlowKey {
  /** u32: the zone the packet is looked up in (see Zones above). */
  readonly zone: number;
  /** IANA protocol number, 0..255. */
  readonly protocol: number;
  /** IPv4 as a number, IPv6 as a bigint; `src` and `dst` are of one family. */
  readonly src: Ip;
  readonly dst: Ip;
  /** 0..65535; ICMP: the echo identifier (see `icmpPorts`); 0 for protocols without ports. */
  readonly sport: number;
  /** 0..65535; ICMP: the echo-request type or the message type (see `icmpPorts`). */
  readonly dport: number;
}

export type FlowAction = 'allow' | 'deny' | 'hold';
/** Forward: the direction of the packet that opened the flow. */
export type FlowDirection = 'forward' | 'reverse';

/**
 * Why packets of a flow are dropped, or why a flow was refused. The table sets
 * none of these on entries itself: deny verdicts carry the caller's reason, and
 * refusals (`InsertResult`) carry one of `RefusalReason`.
 */
export type DropReason =
  | 'none'
  /** The source endpoint's egress policy denied it. */
  | 'policy-egress'
  /** The destination endpoint's ingress policy denied it. */
  | 'policy-ingress'
  /** A zone (endpoint) is at `maxFlowsPerZone`. */
  | 'flow-limit'
  /** The table is at `maxFlows` and nothing could be evicted. */
  | 'table-full'
  /** `maxHoldFlows` hold entries are waiting for verdicts. */
  | 'hold-limit'
  /** A hold entry got no verdict within `holdTimeoutSec`. */
  | 'hold-timeout';

export type RefusalReason = 'flow-limit' | 'table-full' | 'hold-limit';

/** A policy and a rule by id: u32, 0 for none (a separate module maps ids to names). */
export interface RuleRef {
  readonly policyId: number;
  readonly ruleId: number;
}

/**
 * A verdict, per policy gate: `egress` is the rule of the source endpoint's
 * egress policy that decided, `ingress` that of the destination's ingress
 * policy. Absent: 0/0 (no local endpoint on that side, or no rule).
 */
export type FinalVerdict =
  | { readonly action: 'allow'; readonly egress?: RuleRef; readonly ingress?: RuleRef }
  | {
      readonly action: 'deny';
      readonly dropReason: DropReason;
      readonly egress?: RuleRef;
      readonly ingress?: RuleRef;
    };

/** A hold entry waits for a verdict (vRouter's HOLD): its packets are queued or dropped by the caller. */
export type FlowVerdict = FinalVerdict | { readonly action: 'hold' };

export type InsertResult =
  | { readonly outcome: 'created'; readonly index: number }
  /** A flow already matches the key or its reply; nothing changed. `direction`: the key's direction in that flow. */
  | { readonly outcome: 'exists'; readonly index: number; readonly direction: FlowDirection }
  | { readonly outcome: 'refused'; readonly reason: RefusalReason };

export interface FlowHit {
  /** The flow's index: stable while the flow lives, reused after it is removed. */
  readonly index: number;
  readonly direction: FlowDirection;
  readonly action: FlowAction;
}

/** TCP header flags, as packets carry them (`accountBatch`'s records, `account`). */
export const TcpFlag = { fin: 0x01, syn: 0x02, rst: 0x04, psh: 0x08, ack: 0x10 } as const;

/**
 * A flow's TCP state, as bits. Established: an ACK has been seen each way
 * (a handshake, or a connection picked up mid-stream) and no RST. Closed: FIN
 * both ways, or an RST. Bits are sticky. Tracked for allow and hold flows,
 * not for denied ones (their packets never reach the peer).
 */
export const TcpState = {
  synForward: 0x001,
  synReverse: 0x002,
  ackForward: 0x004,
  ackReverse: 0x008,
  established: 0x010,
  finForward: 0x020,
  finReverse: 0x040,
  rst: 0x080,
  closed: 0x100,
} as const;
export type TcpStateName = keyof typeof TcpState;

/** The names of the bits set in a TCP state, in bit order. */
export function tcpStateNames(bits: number): TcpStateName[] {
  return (Object.keys(TcpState) as TcpStateName[]).filter((name) => (bits & TcpState[name]) !== 0);
}

export interface DirectionCounters {
  /** Counted by `account`/`accountBatch`. Native counters are 48-bit (packets) and 64-bit (bytes) and wrap. */
  readonly packets: number;
  readonly bytes: number;
}

/** One flow pair in full. */
export interface FlowEntry {
  readonly index: number;
  /** The forward key; `key.zone` is the forward zone. */
  readonly key: FlowKey;
  readonly replyZone: number;
  readonly action: FlowAction;
  /** 'none' unless the verdict was deny. */
  readonly dropReason: DropReason;
  readonly egress: RuleRef;
  readonly ingress: RuleRef;
  readonly forward: DirectionCounters;
  readonly reverse: DirectionCounters;
  /** When the flow was inserted. */
  readonly firstSeenMs: number;
  /** The latest `nowMs` a packet of the flow was accounted at (or the insert). */
  readonly lastSeenMs: number;
  /** `TcpState` bits; 0 for other protocols. */
  readonly tcpState: number;
}

/**
 * Why the table removed a flow. 'aged': idle past its timeout (`expire`, or
 * found expired while making room); 'closed': a closed TCP flow, aged by
 * `tcpClosedTimeoutSec`, removed by a new SYN, or by its closing packet when
 * that timeout is 0; 'evicted': a live flow removed to make room for a new
 * one in a full table; 'deleted': by `remove`. As `stats().removedBy` counts.
 */
export type RemovalCause = 'aged' | 'closed' | 'evicted' | 'deleted';

export const REMOVAL_CAUSES: readonly RemovalCause[] = ['aged', 'closed', 'evicted', 'deleted'];

/** A flow the table removed: the entry as it was just before (final counters, TCP state, verdict). */
export interface RemovedFlow {
  readonly cause: RemovalCause;
  readonly entry: FlowEntry;
}

/**
 * What `update` sets on a flow: its counters, TCP state and last-seen time as
 * another tracker (conntrack) reports them, absolute, not added. Packets and
 * bytes are integers in [0, 2^53); native packet counters keep 48 bits.
 */
export interface FlowCountersUpdate {
  readonly forward: DirectionCounters;
  readonly reverse: DirectionCounters;
  /** `TcpState` bits, 0..0x1ff, set as given (for any protocol and action). */
  readonly tcpState: number;
  /** Moves last seen forward, never back, as accounting does. */
  readonly lastSeenMs: number;
}

/** One page of `list`. */
export interface FlowPage {
  /** In index order. */
  readonly entries: FlowEntry[];
  /** Pass to the next `list` call; undefined when the table has been walked to its end. */
  readonly next: number | undefined;
}

export interface FlowTableStats {
  /** Flow pairs in the table now (holds included). */
  readonly flows: number;
  /** Hold entries in the table now. */
  readonly holds: number;
  readonly peakFlows: number;
  readonly maxFlows: number;
  /** Zones with at least one flow. */
  readonly zones: number;
  /** Pairs created since the table was made. */
  readonly inserted: number;
  /** Pairs removed, for any cause: the sum of `removedBy`. */
  readonly removed: number;
  readonly removedBy: {
    /** Idle past their timeout (`expire`, or found expired while making room). */
    readonly aged: number;
    /** Closed TCP flows (FIN both ways or RST): aged by `tcpClosedTimeoutSec`, or a new SYN on them. */
    readonly closed: number;
    /** Live flows removed to make room in a full table. */
    readonly evicted: number;
    /** By `remove`. */
    readonly deleted: number;
  };
  /** Inserts refused, by reason. */
  readonly refused: { readonly [R in RefusalReason]: number };
  readonly holdsCreated: number;
  /** Holds given a verdict by `resolve`. */
  readonly holdsResolved: number;
  /** Packets looked up or accounted, and how many found a flow. */
  readonly lookups: number;
  readonly hits: number;
  /** Memory the table holds for flows: native: its mapped regions; TypeScript: its typed arrays (the key Map is not counted). */
  readonly bytesAllocated: number;
}

/**
 * Options. Timeouts are idle times: a flow is expired once `nowMs -
 * lastSeenMs >= timeout` — except hold entries, which expire `holdTimeoutSec`
 * after they were inserted, traffic or not.
 */
export interface FlowTableOptions {
  /**
   * Flow pairs the table holds (its capacity, allocated up front by the native
   * table). Default 262144: vRouter's default table of 512K entries holds
   * 256K forward/reverse pairs. Native memory: about 123 bytes per pair.
   */
  readonly maxFlows?: number;
  /**
   * Flow pairs one zone may hold; a pair counts in its zone and, when
   * different, its reply zone. Default 65536: one endpoint can take at most a
   * quarter of the default table, so a flood from or to one pod cannot starve
   * the others. When a zone is full its new flows are refused ('flow-limit');
   * nothing is evicted for it.
   */
  readonly maxFlowsPerZone?: number;
  /** Hold entries at once; beyond it holds are refused ('hold-limit'). Default 8192, vRouter's. */
  readonly maxHoldFlows?: number;
  /**
   * How many flows a full table examines, from a clock hand over the indices,
   * to find one to evict for a new flow. Default 64 (conntrack's early drop
   * also looks at a bounded number). The lowest-ranked flow in the window goes
   * (the first of equals): expired, then closed TCP, denied, hold, and allowed
   * flows not yet established (TCP without an ACK each way, others without a
   * reply). Allowed established flows are never evicted. A window with nothing
   * evictable refuses the new flow ('table-full') rather than search on, so a
   * flood costs at most this many checks per packet; the hand moves on, and
   * the next window starts where this one ended. 0 never evicts.
   */
  readonly evictionScanFlows?: number;
  /**
   * TCP not yet established (SYN sent, SYN-ACK, no ACK both ways). Default 60 s:
   * conntrack's SYN_RECV; a handshake that needs longer is retried and then
   * re-created as a new flow by the slow path.
   */
  readonly tcpSynTimeoutSec?: number;
  /**
   * TCP established. Default 7440 s (2 h 4 min): RFC 5382 REQ-5's minimum for
   * NATs, sized so that TCP keepalives at Linux's default 2 h interval keep an
   * idle connection's flow. conntrack's 5 days keeps dead flows far too long;
   * vRouter's 180 s drops idle database and gRPC connections that then have to
   * be re-evaluated mid-stream.
   */
  readonly tcpEstablishedTimeoutSec?: number;
  /** TCP with a FIN one way (half-closed). Default 120 s: conntrack's FIN_WAIT and TIME_WAIT. */
  readonly tcpClosingTimeoutSec?: number;
  /**
   * TCP closed: FIN both ways or an RST. Default 10 s (conntrack's CLOSE): long
   * enough for the last ACK and retransmitted FINs to find the flow, far
   * shorter than TIME_WAIT, as vRouter evicts closed flows early. 0 removes the
   * flow with the packet that closes it. A SYN (without ACK) on a closed flow
   * removes it at once and misses, so the slow path sees the new connection.
   */
  readonly tcpClosedTimeoutSec?: number;
  /** UDP without a reply yet. Default 30 s: conntrack's nf_conntrack_udp_timeout. */
  readonly udpTimeoutSec?: number;
  /** UDP that has seen a reply. Default 120 s: conntrack's nf_conntrack_udp_timeout_stream. */
  readonly udpStreamTimeoutSec?: number;
  /** ICMP and ICMPv6. Default 30 s: conntrack's. */
  readonly icmpTimeoutSec?: number;
  /** Other protocols. Default 600 s: conntrack's generic timeout. */
  readonly otherTimeoutSec?: number;
  /**
   * Denied flows, any protocol. Default 30 s: retries of a refused connection
   * are dropped without re-evaluating policy, yet the entry goes soon after
   * they stop. Callers re-verdict affected flows on a policy change (`resolve`).
   */
  readonly deniedTimeoutSec?: number;
  /** Hold entries, from insertion. Default 5 s: vRouter audits unresolved hold entries away after 5 s. */
  readonly holdTimeoutSec?: number;
}

export type ResolvedFlowTableOptions = { readonly [K in keyof FlowTableOptions]-?: number };

export const FLOW_TABLE_DEFAULTS: ResolvedFlowTableOptions = {
  maxFlows: 262_144,
  maxFlowsPerZone: 65_536,
  maxHoldFlows: 8192,
  evictionScanFlows: 64,
  tcpSynTimeoutSec: 60,
  tcpEstablishedTimeoutSec: 7440,
  tcpClosingTimeoutSec: 120,
  tcpClosedTimeoutSec: 10,
  udpTimeoutSec: 30,
  udpStreamTimeoutSec: 120,
  icmpTimeoutSec: 30,
  otherTimeoutSec: 600,
  deniedTimeoutSec: 30,
  holdTimeoutSec: 5,
};

/** Flow indices must fit result words (index * 8 in an int32). */
export const MAX_FLOWS_LIMIT = 2 ** 27;

/** Fills in defaults; throws a ValidationError naming every bad option. */
export function resolveFlowTableOptions(options: FlowTableOptions = {}): ResolvedFlowTableOptions {
  const resolved = { ...FLOW_TABLE_DEFAULTS };
  const issues: Issue[] = [];
  for (const name of Object.keys(FLOW_TABLE_DEFAULTS) as Array<keyof FlowTableOptions>) {
    const value = options[name];
    if (value === undefined) continue;
    const isCount = !name.endsWith('Sec');
    const bad =
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < 0 ||
      (isCount && (!Number.isInteger(value) || value > MAX_FLOWS_LIMIT)) ||
      (name === 'maxFlows' && value < 1) ||
      (name === 'maxFlowsPerZone' && value < 1);
    if (bad) {
      const want = isCount
        ? `an integer between ${name.startsWith('maxFlows') ? 1 : 0} and ${MAX_FLOWS_LIMIT}`
        : 'a finite number of seconds, 0 or more';
      issues.push({
        object: 'flow table options',
        field: name,
        message: `must be ${want}, not ${String(value)}`,
      });
      continue;
    }
    resolved[name] = value;
  }
  if (issues.length > 0) throw new ValidationError(issues);
  return resolved;
}

/** Port slots for an ICMP or ICMPv6 message: echo requests and replies share (id, echo-request type), so a reply finds its request's flow. */
export function icmpPorts(
  type: number,
  id: number,
  family: 4 | 6,
): { sport: number; dport: number } {
  const [request, reply] = family === 4 ? [8, 0] : [128, 129];
  if (type === request || type === reply) return { sport: id, dport: request };
  return { sport: 0, dport: type };
}

/**
 * The flow table. Indices identify flows for `get`, `resolve` and `remove`;
 * an index is reused after its flow is removed, so hold on to one only while
 * the flow is known to live.
 */
export interface FlowTable {
  /** Which implementation this is. */
  readonly implementation: 'native' | 'typescript';
  readonly options: ResolvedFlowTableOptions;

  /**
   * Adds a flow pair keyed by `key` (forward, in `key.zone`) and its reverse
   * (in `replyZone`, default `key.zone`), at `nowMs`, with zeroed counters and
   * TCP state. Checks, in order: an existing flow for the key or its reply
   * ('exists'); the hold cap for holds ('hold-limit'); the zone limits
   * ('flow-limit'); a full table, which evicts one flow if it can
   * ('table-full'). Refusals are counted in `stats().refused`.
   */
  insert(key: FlowKey, verdict: FlowVerdict, nowMs: number, replyZone?: number): InsertResult;

  /**
   * Sets the verdict of a live flow: resolves a hold entry into allow or deny,
   * or re-verdicts a flow after a policy change. False when `index` holds no flow.
   */
  resolve(index: number, verdict: FinalVerdict): boolean;

  /** Removes a flow pair. False when `index` holds no flow. */
  remove(index: number): boolean;

  /** The flow a packet belongs to, without counting it. */
  lookup(key: FlowKey): FlowHit | undefined;

  /**
   * Counts one packet of `bytes` (L3 length) on its flow: packets and bytes
   * in its direction, last seen, TCP state from `tcpFlags` (`TcpFlag` bits).
   * Undefined on a miss, or when the packet ends the flow (a SYN on a closed
   * TCP flow). A packet that closes a flow with `tcpClosedTimeoutSec` 0 still
   * returns its hit, though the flow is gone.
   */
  account(key: FlowKey, nowMs: number, bytes: number, tcpFlags?: number): FlowHit | undefined;

  /**
   * `lookup` for `count` flow-key records (packed.ts: `FLOW_KEY_RECORD_BYTES` each
   * from the start of `packets`), one call for the batch. `results[i]` gets
   * packet i's result word (`RESULT_MISS` or index/action/direction, see
   * packed.ts). Returns the number of hits.
   */
  lookupBatch(packets: Uint8Array, count: number, results: Int32Array): number;

  /** `account` for `count` flow-key records, in order, at one `nowMs`; results as `lookupBatch`. */
  accountBatch(packets: Uint8Array, count: number, nowMs: number, results: Int32Array): number;

  /**
   * Removes expired flows among up to `maxScan` flow slots (default: all),
   * continuing from where the previous call stopped, so a timer can age a large
   * table in slices. Returns the number removed.
   */
  expire(nowMs: number, maxScan?: number): number;

  /** One flow in full, or undefined when `index` holds none. */
  get(index: number): FlowEntry | undefined;

  /**
   * Up to `limit` (default 100, at most 10000) flows with index >= `cursor`
   * (default 0), in index order. Flows added behind the cursor while paging are
   * not seen; none is seen twice.
   */
  list(cursor?: number, limit?: number): FlowPage;

  /**
   * Sets a live flow's counters, TCP state and last seen from another tracker
   * (a kernel datapath mirrors conntrack's into the table). Removes nothing:
   * a flow mirrored as closed then ages by `tcpClosedTimeoutSec`. False when
   * `index` holds no flow.
   */
  update(index: number, counters: FlowCountersUpdate): boolean;

  /** Flow pairs counted against a zone. */
  zoneFlows(zone: number): number;

  /**
   * The removal report. Off (the default), the table keeps nothing of the
   * flows it removes. On, it keeps every flow it removes — by `expire`, by
   * `insert` making room (eviction, or an expired flow found on the way), by
   * `account`/`accountBatch` (a SYN on a closed flow; the closing packet with
   * `tcpClosedTimeoutSec` 0), by `remove` — with its cause, in removal
   * order, until `takeRemoved` hands them over. It keeps at most `maxFlows`
   * (later removals go unreported): no one call removes more, so an owner that
   * drains after each call that can remove loses none. Turning it off
   * discards what is kept.
   */
  reportRemovals(on: boolean): void;

  /** Removals kept by the report and not yet taken. */
  readonly pendingRemovals: number;

  /** Hands over (and forgets) the removals kept since the last call, oldest first. */
  takeRemoved(): RemovedFlow[];

  stats(): FlowTableStats;

  /** Releases the table's memory now (native) rather than at garbage collection; later calls throw. Idempotent. */
  close(): void;
}
