/**
 * The datapath contract: what the node agent drives, whatever moves the
 * packets. Every datapath is a thin driver of one flow engine
 * (flow-engine.ts: zones, first-packet verdicts, the flow table,
 * re-evaluation, aging, reads, events); the drivers differ in where packets
 * come from, and the contract has no packets in it:
 *
 *   kind 'userspace'  userspace-datapath.ts: given raw packets by its own
 *                     `process` (synthetic traffic, tests, benchmarks); it
 *                     parses them and decides every one.
 *   kind 'nftables'   the kernel forwards: conntrack carries established
 *                     traffic, new flows' first packets reach the driver
 *                     through NFQUEUE, and it mirrors conntrack's events
 *                     into the engine.
 *
 *   agent ── attach/detach(zone ↔ endpoint) ──┐
 *         ── loadTables(RuleTables) ──────────┤  re-evaluates every flow
 *         ── expire(now) (or its own timer) ──┤  flows age out
 *   introspect ◀── flows() / flow() / events() / stats()
 *
 * Zones. A zone is a u32 naming a local endpoint's interface (vRouter keys
 * flows by the ingress nexthop). Each packet comes with one: the zone of the
 * local endpoint that sent it or, for a packet from off the node, of the
 * local endpoint it is addressed to. A packet whose source is not an address
 * of its zone's endpoint must be addressed to that endpoint and come from an
 * address that no attached endpoint holds; anything else is dropped as
 * 'zone-mismatch' (spoofed, or handed over in the wrong zone). A packet from
 * one local endpoint to another is given once, in the sender's zone; its
 * replies come in the receiver's zone.
 *
 * Verdicts. A packet of an existing flow takes the flow's verdict; replies
 * find the flow through its reverse entry, so a connection's replies are
 * allowed whenever it is. The first packet of a flow is decided by the rule
 * tables exactly as `RuleTables.decide` decides: egress at the source when it
 * is a local endpoint, ingress at the destination when it is one, both when
 * both are (pod to pod on one node), and always allowed from an endpoint to
 * itself. A denied first packet creates a deny flow carrying the drop reason,
 * so its retries are dropped without evaluating policy again.
 */
import type { Ip } from '../../shared/net/ip.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import type {
  DirectionCounters,
  DropReason,
  FlowAction,
  FlowTableStats,
  TcpStateName,
} from '../flows/flow-table.js';

/** A local endpoint's interface. */
export interface AttachedEndpoint {
  /** u32, unique on the node. */
  readonly zone: number;
  /** "namespace/name", as RuleTables keys endpoints. */
  readonly endpoint: string;
  /** The addresses the endpoint sends from and is reached at (text or Ip); none may belong to another attached endpoint. */
  readonly ips: readonly (Ip | string)[];
}

/**
 * Why a packet was dropped. Each is counted in `DatapathStats.drops`.
 *
 * | reason            | the packet                                                                  |
 * |-------------------|-----------------------------------------------------------------------------|
 * | policy-egress     | its flow is denied by the source endpoint's egress policy                   |
 * | policy-ingress    | its flow is denied by the destination endpoint's ingress policy             |
 * | flow-limit        | is a new flow of a zone at `maxFlowsPerZone`                                |
 * | table-full        | is a new flow and the flow table is full with nothing evictable             |
 * | hold-limit        | (a slow path that holds packets: too many waiting; never in userspace)      |
 * | hold-timeout      | (a held flow got no verdict in time; never in userspace)                    |
 * | truncated         | ends before its headers or its IP length                                    |
 * | malformed         | has lengths or header fields that contradict each other                     |
 * | unknown-ethertype | is an Ethernet frame carrying neither IPv4 nor IPv6 (with nonIpAction deny) |
 * | unknown-protocol  | raw IP with a version other than 4 and 6; or an IP protocol other than TCP, |
 * |                   | UDP, SCTP, ICMP, ICMPv6 with `otherProtocols: 'deny'`                       |
 * | fragment          | a non-first fragment whose first fragment was not seen (or has aged), or a  |
 * |                   | first fragment too short to hold its transport header                       |
 * | unknown-zone      | came in a zone no endpoint is attached to                                   |
 * | zone-mismatch     | neither comes from its zone's endpoint nor from off the node to it          |
 * | unknown-endpoint  | is a first packet to or from an attached endpoint the rule tables do not   |
 * |                   | know (with `unknownEndpoints: 'deny'`)                                      |
 *
 * When both gates deny a flow, the reason is policy-egress (the first gate).
 * Non-first fragments whose first fragment was seen follow that fragment's
 * flow (and its verdict): the datapath remembers the ports of each first
 * fragment by (zone, addresses, protocol, IP id) for `fragmentTimeoutSec`,
 * as vRouter's fragment table does; fragments that arrive before their first
 * fragment are dropped rather than queued.
 */
export type DatapathDropReason =
  | Exclude<DropReason, 'none'>
  | 'truncated'
  | 'malformed'
  | 'unknown-ethertype'
  | 'unknown-protocol'
  | 'fragment'
  | 'unknown-zone'
  | 'zone-mismatch'
  | 'unknown-endpoint';

export const DATAPATH_DROP_REASONS: readonly DatapathDropReason[] = [
  'policy-egress',
  'policy-ingress',
  'flow-limit',
  'table-full',
  'hold-limit',
  'hold-timeout',
  'truncated',
  'malformed',
  'unknown-ethertype',
  'unknown-protocol',
  'fragment',
  'unknown-zone',
  'zone-mismatch',
  'unknown-endpoint',
];

/** Per-packet verdict codes (the userspace driver's `BatchVerdicts.verdicts`, the engine's `decide`): 0 allowed, otherwise 1 + the drop reason's position in DATAPATH_DROP_REASONS. */
export const VERDICT_ALLOW = 0;

export function dropVerdict(reason: DatapathDropReason): number {
  const i = DATAPATH_DROP_REASONS.indexOf(reason);
  if (i < 0) throw new TypeError(`unknown drop reason ${JSON.stringify(reason)}`);
  return i + 1;
}

/** 'allow', or the drop reason of a verdict code. */
export function verdictName(code: number): 'allow' | DatapathDropReason {
  if (code === VERDICT_ALLOW) return 'allow';
  const r = DATAPATH_DROP_REASONS[code - 1];
  if (r === undefined) throw new TypeError(`unknown verdict code ${code}`);
  return r;
}

/** How one policy gate decided a flow. */
export type GateOutcome =
  /** Allowed by this rule of this policy (ids as the policy model names them). */
  | { readonly kind: 'rule'; readonly rule: string; readonly policy: string }
  /** The endpoint is not isolated in this direction: allowed by the default tier. */
  | { readonly kind: 'default' }
  /** Isolated and no rule matched: denied. */
  | { readonly kind: 'deny' }
  /** The peer is the endpoint's own node, which NetworkPolicy does not restrict: allowed. */
  | { readonly kind: 'node' }
  /** Not checked: no local endpoint on this side, or traffic from an endpoint to itself. */
  | { readonly kind: 'none' };

export interface FlowVerdictView {
  readonly action: FlowAction;
  /** 'none' unless denied. */
  readonly dropReason: DropReason;
  /** The source endpoint's egress gate. */
  readonly egress: GateOutcome;
  /** The destination endpoint's ingress gate. */
  readonly ingress: GateOutcome;
}

/**
 * What a flow table entry counts. Present when read from the table (`flows`,
 * `flow`) and in events about flows the table held or removed (their final
 * counters); absent in 'created' events (nothing counted yet).
 */
export interface FlowCounters {
  readonly forward: DirectionCounters;
  readonly reverse: DirectionCounters;
  readonly lastSeenMs: number;
  readonly tcpState: readonly TcpStateName[];
}

/** A flow pair as operators read it: zones named, addresses as text, rule ids as the policy model's. */
export interface DecodedFlow extends FlowVerdictView {
  /** The flow table index: stable while the flow lives, reused afterwards. */
  readonly index: number;
  /** The zone of the forward (first) packet, and its endpoint ("namespace/name"), undefined when detached. */
  readonly zone: number;
  readonly endpoint: string | undefined;
  /** The zone replies come in (differs from `zone` only between two local endpoints). */
  readonly replyZone: number;
  readonly replyEndpoint: string | undefined;
  readonly family: 4 | 6;
  readonly protocol: number;
  readonly src: string;
  readonly dst: string;
  /** Ports of the first packet; ICMP: the echo identifier and request type, or 0 and the type. */
  readonly sport: number;
  readonly dport: number;
  /** Datapath clock (`nowMs`) when the flow was created. */
  readonly firstSeenMs: number;
  readonly counters?: FlowCounters;
}

export interface DecodedFlowPage {
  readonly flows: DecodedFlow[];
  /** Pass back as `cursor`; undefined at the end of the table. */
  readonly next: number | undefined;
}

/**
 * Flow events, for WatchFlows. Times are the datapath clock's. A subscriber
 * that falls `bufferSize` events behind loses the newest ones and is told so
 * by a 'lost' event in their place.
 */
export type FlowEvent =
  /** The slow path created a flow pair (allowed or denied) for a first packet. */
  | { readonly type: 'created'; readonly atMs: number; readonly flow: DecodedFlow }
  /** A policy load changed a flow's action (allow → deny ends it: its packets are dropped from then on; deny → allow). */
  | {
      readonly type: 'verdict';
      readonly atMs: number;
      readonly flow: DecodedFlow;
      readonly previous: FlowVerdictView;
    }
  /** A policy load kept a flow's action but a different rule or policy decides it now. */
  | {
      readonly type: 're-evaluated';
      readonly atMs: number;
      readonly flow: DecodedFlow;
      readonly previous: FlowVerdictView;
    }
  /** A TCP flow closed (FIN both ways or RST) and left the table, or the flow's endpoint was detached. */
  | {
      readonly type: 'closed';
      readonly atMs: number;
      readonly flow: DecodedFlow;
      readonly cause: 'tcp' | 'detached';
    }
  /** Idle past its timeout. */
  | { readonly type: 'aged'; readonly atMs: number; readonly flow: DecodedFlow }
  /** Removed to make room for a new flow in a full table (with its final counters). */
  | { readonly type: 'evicted'; readonly atMs: number; readonly flow: DecodedFlow }
  /** This subscriber fell behind and `count` events were dropped here. */
  | { readonly type: 'lost'; readonly count: number };

export type FlowEventType = FlowEvent['type'];

export interface EventOptions {
  /** Ends the stream. */
  readonly signal?: AbortSignal;
  /** Events held for a slow reader before newer ones are dropped. Default 4096. */
  readonly bufferSize?: number;
}

/** What a policy load did to the existing flows. */
export interface Reevaluation {
  /** Flows in the table, each decided again. */
  readonly checked: number;
  /** Same action, same deciding rules. */
  readonly unchanged: number;
  /** Same action, another rule or policy decides now (its ids are rewritten). */
  readonly rulesChanged: number;
  /** Allowed before, denied now: flipped to deny, so the rest of the connection is dropped. */
  readonly denied: number;
  /** Denied before, allowed now. */
  readonly allowed: number;
}

/**
 * The flows a policy load may change, as the caller knows from comparing
 * the tables (vrouter-agent/compile/table-changes.ts): those keyed in or
 * replying to one of `zones` (the local endpoints whose compiled tables
 * changed), and those to or from one of `ips` (addresses whose local
 * endpoint changed). Every other flow keeps its verdict and ids.
 */
export interface AffectedFlows {
  readonly zones: ReadonlySet<number>;
  readonly ips: ReadonlySet<Ip>;
}

export interface ReloadOptions {
  /** Only these flows are decided again; default every flow. */
  readonly affected?: AffectedFlows;
  /** The longest the walk runs before it gives the event loop a turn. Default 4 ms. */
  readonly sliceMs?: number;
  readonly nowMs?: number;
}

export interface DatapathStats {
  /** Packets the datapath decided itself (userspace: every packet given to `process`; a kernel datapath: the first packets it was queued). */
  readonly packets: number;
  readonly allowed: number;
  readonly dropped: number;
  /** Dropped packets by reason; every reason is present. */
  readonly drops: Readonly<Record<DatapathDropReason, number>>;
  readonly allowedBy: {
    /** On a flow the packet found in the fast path. */
    readonly flow: number;
    /** By the slow path (a new flow, or one another packet of the batch just created). */
    readonly slowPath: number;
    /** ICMP errors quoting a packet of an allowed flow (as conntrack's RELATED). */
    readonly related: number;
    /** IPv6 neighbour discovery and MLD (with `neighborDiscovery: 'allow'`). */
    readonly neighborDiscovery: number;
    /** Frames that are not IP (with `nonIpAction: 'allow'`). */
    readonly nonIp: number;
  };
  readonly slowPath: {
    /** Packets that found no flow and were decided by policy. */
    readonly evaluated: number;
    readonly flowsAllowed: number;
    readonly flowsDenied: number;
  };
  readonly fragments: {
    /** First fragments whose ports are remembered now. */
    readonly tracked: number;
    readonly firstFragments: number;
    /** Non-first fragments that found their first fragment. */
    readonly matched: number;
  };
  readonly reevaluation: Reevaluation & { readonly loads: number };
  readonly endpoints: number;
  readonly events: { readonly watchers: number; readonly published: number; readonly lost: number };
  readonly flowTable: FlowTableStats;
}

export interface Datapath extends AsyncDisposable {
  /** Which driver moves the packets: 'userspace' (given packets by `process`, its own) or 'nftables' (the kernel, through NFQUEUE and conntrack). */
  readonly kind: 'userspace' | 'nftables';
  /** The flow table implementation in use, and why. */
  readonly flowTable: { readonly implementation: 'native' | 'typescript'; readonly reason: string };
  /** The rule tables in force. */
  readonly tables: RuleTables;

  /**
   * Attaches a local endpoint's interface. Policy comes from the rule tables
   * alone: until tables that know the endpoint load (a pod attached before
   * its span arrives), its flows are decided as RuleTables decides for an
   * address it does not hold (not enforced), unless the datapath is set to
   * drop them ('unknown-endpoint'). Re-attaching a zone to the same
   * endpoint replaces its addresses. Throws a ValidationError for a zone that
   * is not a u32, a zone attached to another endpoint (detach it first), an
   * address that is not one, or an address another zone holds.
   */
  attach(endpoint: AttachedEndpoint): void;

  /** Detaches a zone and removes every flow keyed in it (either side). Returns the flows removed; 0 when it was not attached. */
  detach(zone: number, nowMs?: number): number;

  /** The attached endpoints, by zone. */
  attached(): readonly AttachedEndpoint[];

  /**
   * Puts new rule tables in force and re-evaluates every flow in the table
   * against them, as Contrail's agent re-evaluates flows on a policy change:
   * flows the new tables deny are flipped to deny (their drop reason says
   * which gate), flows still allowed get the ids of the rules that allow them
   * now, denied flows the new tables allow are flipped to allow. Synchronous:
   * no packet is decided by a mix of old and new tables.
   */
  loadTables(tables: RuleTables, nowMs?: number): Reevaluation;

  /**
   * As `loadTables`, without stalling the event loop, and deciding again
   * only the flows `options.affected` names (every flow without it). The new
   * tables decide first packets at once; an existing flow keeps its verdict
   * until the walk reaches it (between turns of the event loop, each at most
   * `sliceMs`): a flow the new tables deny may pass packets until then, at
   * most the time until the promise resolves. Resolves once every flow it
   * re-evaluates has its new verdict: the tables are in force then.
   */
  reloadTables(tables: RuleTables, options?: ReloadOptions): Promise<Reevaluation>;

  /** Ages flows (and remembered fragments) idle past their timeouts; returns the flows removed. */
  expire(nowMs?: number): number;

  /** Up to `limit` (default 100, at most 10000) flows from `cursor` (default 0), decoded. */
  flows(cursor?: number, limit?: number): DecodedFlowPage;

  flow(index: number): DecodedFlow | undefined;

  /**
   * Flow events from now on, until the signal aborts, `return()` is called
   * (as `for await … break` does) or the datapath is disposed. Events are
   * only built while someone subscribes; the first subscriber costs one walk
   * of the table.
   */
  events(options?: EventOptions): AsyncIterableIterator<FlowEvent>;

  stats(): DatapathStats;
}
