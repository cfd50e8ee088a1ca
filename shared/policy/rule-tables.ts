/**
 * Compiled rule tables and the one evaluator. Every verdict in Weir — the
 * agent's first-packet decision, `weirctl analyze`, `weirctl explain` — is
 * made here, from tables compiled by compile.ts.
 *
 *   packet (src, dst, protocol, port)
 *      │
 *      ├─ egress at src (when src is one of our endpoints), tier by tier:
 *      │     1. Admin (ClusterNetworkPolicy, by priority, name, rule order):
 *      │        the first rule whose peer holds dst and whose ports admit
 *      │        (protocol, port) decides: Accept → allow, Deny → deny,
 *      │        Pass → the rest of the Admin tier is skipped
 *      │     2. NetworkPolicy: isolated? → dst an address of src's own node?
 *      │        → allow (node); else first matching rule allows; none → deny
 *      │     3. Baseline (as Admin, for traffic nothing above decided)
 *      │     4. default: allow
 *      └─ ingress at dst (when dst is one of our endpoints), the same with src
 *
 * The connection is allowed when both sides allow it. Traffic from a pod to
 * its own address never leaves the pod and is always allowed.
 *
 * Traffic between a pod and its own node's addresses: the exemption belongs
 * to the NetworkPolicy tier alone, as Kubernetes documents it ("traffic to
 * and from the node where a Pod is running is always allowed"). When a
 * NetworkPolicy isolates the pod for the direction, that tier allows such
 * traffic (decision 'node', final: the Baseline tier never sees it); when
 * none isolates it, the tier does not decide and the Baseline tier, then the
 * default, decide as for any other peer. The Admin tier decides first either
 * way. Cluster policies can only match node addresses with egress `nodes`
 * and `networks` peers (v1alpha2 ingress peers are namespaces and pods,
 * which never hold a node address), so no tier can deny the kubelet's
 * probes (ingress from the pod's node); upstream's conformance suite
 * (CNPBaselineTierEgressNodePeers) expects a Baseline `nodes` Deny to deny
 * a pod's egress to its own node.
 */
import type { Ip } from '../net/ip.js';
import type { PrefixSet } from '../net/prefix-set.js';
import type { ClassIndex } from './peer-classes.js';
import type { PortMatcher } from './port-matcher.js';
import type {
  Direction,
  Endpoint,
  FirewallPolicy,
  FirewallRule,
  PolicySnapshot,
  RuleAction,
  Tier,
} from './types.js';

/** One rule as the datapath evaluates it. */
export interface CompiledRule {
  /** FirewallRule id: stable across restarts and recompiles. */
  readonly id: string;
  /** FirewallPolicy id. */
  readonly policy: string;
  /** The tier of its policy. */
  readonly tier: Tier;
  /** What a match does (FirewallRule.action). */
  readonly action: RuleAction;
  /** Addresses of the peer; null admits any address. */
  readonly peer: PrefixSet | null;
  /** Protocols and ports; null admits every protocol and port. */
  readonly ports: PortMatcher | null;
}

/** One endpoint, one direction. */
export interface DirectionTable {
  /** NetworkPolicies that select the endpoint for this direction; empty: not isolated. */
  readonly policies: readonly string[];
  /** Union of their rules, in policy order then rule order. */
  readonly rules: readonly CompiledRule[];
  /** Admin-tier ClusterNetworkPolicies whose subject holds the endpoint and that have rules for this direction, in tier order. */
  readonly adminPolicies: readonly string[];
  /** Their rules for this direction, in policy order then rule order (first match decides). */
  readonly admin: readonly CompiledRule[];
  /** The same for the Baseline tier. */
  readonly baselinePolicies: readonly string[];
  readonly baseline: readonly CompiledRule[];
  /** Peer indexes of `admin` and `baseline` (peer-classes.ts); null: scanned in order. */
  readonly adminIndex: ClassIndex | null;
  readonly baselineIndex: ClassIndex | null;
}

export interface CompiledEndpoint {
  readonly endpoint: Endpoint;
  readonly key: string;
  /** The addresses the endpoint owns (an address two endpoints claim is the last's by key). */
  readonly ips: readonly Ip[];
  /** The addresses of the endpoint's own node (Endpoint.nodeAddresses); null when none are known. */
  readonly node: PrefixSet | null;
  readonly ingress: DirectionTable;
  readonly egress: DirectionTable;
}

/** 'node': the NetworkPolicy tier isolates the endpoint and allows the peer, the endpoint's own node. */
export type DecidingTier = 'admin' | 'namespace' | 'baseline' | 'default' | 'node';

/** How one direction was decided. */
export interface DirectionDecision {
  readonly direction: Direction;
  /** The endpoint whose table decided; undefined when the address is not one of ours (nothing to enforce). */
  readonly endpoint: CompiledEndpoint | undefined;
  readonly allowed: boolean;
  /** Undefined when the address is not ours. */
  readonly tier: DecidingTier | undefined;
  /** The rule that decided (allowed or denied), when a rule did. */
  readonly rule: CompiledRule | undefined;
  /** Rules with action Pass ('next-tier') that handed the decision on, in tier order. */
  readonly passed: readonly CompiledRule[];
}

export interface Verdict {
  readonly allowed: boolean;
  /** True when the packet goes from a pod to itself. */
  readonly self: boolean;
  readonly egress: DirectionDecision;
  readonly ingress: DirectionDecision;
}

export interface Packet {
  readonly src: Ip;
  readonly dst: Ip;
  /** IANA protocol number. */
  readonly protocol: number;
  /** Destination port (0 for protocols without ports). */
  readonly dstPort: number;
}

/**
 * Result of evaluating one direction without allocating: a compiled rule
 * (allowed or denied by it: its action says which; never a 'next-tier'
 * rule), ALLOW_DEFAULT (no tier decided), ALLOW_NODE (isolated by
 * NetworkPolicy, and the peer is an address of the endpoint's own node,
 * which that tier allows) or DENY (isolated by NetworkPolicy, no rule
 * matched).
 */
export const ALLOW_DEFAULT = Symbol('allow: no tier decided');
export const ALLOW_NODE = Symbol(
  'allow: isolated by NetworkPolicy, between the pod and its own node',
);
export const DENY = Symbol('deny: isolated, no rule matched');
export type DirectionResult = CompiledRule | typeof ALLOW_DEFAULT | typeof ALLOW_NODE | typeof DENY;

/** Whether a direction's result denies the traffic. */
export function denies(r: DirectionResult): boolean {
  return r === DENY || (typeof r === 'object' && r.action === 'deny');
}

/** The first rule of `rules` whose peer holds `peer` and whose ports admit the packet. */
function firstMatch(
  rules: readonly CompiledRule[],
  peer: Ip,
  protocol: number,
  port: number,
  destination: Ip,
): CompiledRule | undefined {
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.peer !== null && !r.peer.has(peer)) continue;
    if (r.ports !== null && !r.ports.matches(protocol, port, destination)) continue;
    return r;
  }
  return undefined;
}

/**
 * The same first match through the list's peer index: the lowest position
 * among the any-peer rules and the rules of the peer's class whose ports
 * admit the packet (their peers hold `peer` by construction).
 */
function firstIndexed(
  rules: readonly CompiledRule[],
  index: ClassIndex,
  peerClass: number,
  protocol: number,
  port: number,
  destination: Ip,
): CompiledRule | undefined {
  let best = rules.length;
  const any = index.anyPeer;
  for (let k = 0; k < any.length; k++) {
    const r = rules[any[k]!]!;
    if (r.ports === null || r.ports.matches(protocol, port, destination)) {
      best = any[k]!;
      break;
    }
  }
  const own = index.byClass[peerClass]!;
  for (let k = 0; k < own.length && own[k]! < best; k++) {
    const r = rules[own[k]!]!;
    if (r.ports === null || r.ports.matches(protocol, port, destination)) {
      best = own[k]!;
      break;
    }
  }
  return best < rules.length ? rules[best] : undefined;
}

/**
 * Evaluates one direction of one endpoint, tier by tier. `peer` is the other
 * end's address; `destination` is the packet's destination (the endpoint
 * itself for ingress, the peer for egress), against which egress named
 * ports resolve; `ownNode`: the peer is an address of the endpoint's own
 * node. `passed`, when given, collects the Pass rules that handed the
 * decision on (for explanations; the hot path passes nothing).
 */
export function evaluateDirection(
  table: DirectionTable,
  peer: Ip,
  protocol: number,
  port: number,
  destination: Ip,
  ownNode = false,
  passed?: CompiledRule[],
): DirectionResult {
  // The peer's class, looked up once when both cluster tiers' indexes share one PeerClasses.
  let peerClass = -1;
  let classedBy: ClassIndex['classes'] | undefined;
  if (table.admin.length > 0) {
    const x = table.adminIndex;
    if (x !== null) {
      peerClass = x.classes.classOf(peer);
      classedBy = x.classes;
    }
    const r =
      x === null
        ? firstMatch(table.admin, peer, protocol, port, destination)
        : firstIndexed(table.admin, x, peerClass, protocol, port, destination);
    if (r !== undefined) {
      if (r.action !== 'next-tier') return r;
      passed?.push(r);
    }
  }
  if (table.policies.length > 0) {
    if (ownNode) return ALLOW_NODE;
    const r = firstMatch(table.rules, peer, protocol, port, destination);
    if (r === undefined) return DENY;
    if (r.action !== 'next-tier') return r;
    passed?.push(r);
  }
  if (table.baseline.length > 0) {
    const x = table.baselineIndex;
    if (x !== null && x.classes !== classedBy) peerClass = x.classes.classOf(peer);
    const r =
      x === null
        ? firstMatch(table.baseline, peer, protocol, port, destination)
        : firstIndexed(table.baseline, x, peerClass, protocol, port, destination);
    if (r !== undefined) {
      if (r.action !== 'next-tier') return r;
      passed?.push(r);
    }
  }
  return ALLOW_DEFAULT;
}

export class RuleTables {
  readonly snapshot: PolicySnapshot;
  /** Compiled endpoints by key ("namespace/name"). */
  readonly endpoints: ReadonlyMap<string, CompiledEndpoint>;
  /** Compiled endpoints by each of their addresses. */
  readonly byIp: ReadonlyMap<Ip, CompiledEndpoint>;
  readonly policies: ReadonlyMap<string, FirewallPolicy>;
  readonly rules: ReadonlyMap<string, FirewallRule>;

  constructor(snapshot: PolicySnapshot, endpoints: ReadonlyMap<string, CompiledEndpoint>) {
    this.snapshot = snapshot;
    this.endpoints = endpoints;
    const byIp = new Map<Ip, CompiledEndpoint>();
    // An address two endpoints claim belongs to the last by key (compile.ts resolves named ports the same way).
    for (const e of [...endpoints.values()].sort((a, b) => (a.key < b.key ? -1 : 1)))
      for (const ip of e.ips) byIp.set(ip, e);
    this.byIp = byIp;
    this.policies = new Map(snapshot.policies.map((p) => [p.id, p]));
    this.rules = new Map(snapshot.policies.flatMap((p) => p.rules.map((r) => [r.id, r] as const)));
  }

  /** Egress at a local endpoint towards `dst`. */
  egress(
    local: CompiledEndpoint,
    dst: Ip,
    protocol: number,
    port: number,
    passed?: CompiledRule[],
  ): DirectionResult {
    const own = local.node?.has(dst) === true;
    return evaluateDirection(local.egress, dst, protocol, port, dst, own, passed);
  }

  /** Ingress at a local endpoint from `src`. */
  ingress(
    local: CompiledEndpoint,
    src: Ip,
    protocol: number,
    port: number,
    dst: Ip,
    passed?: CompiledRule[],
  ): DirectionResult {
    const own = local.node?.has(src) === true;
    return evaluateDirection(local.ingress, src, protocol, port, dst, own, passed);
  }

  /** Allowed or not, without building an explanation (the hot path). */
  allows(p: Packet): boolean {
    const from = this.byIp.get(p.src);
    const to = this.byIp.get(p.dst);
    if (from !== undefined && from === to) return true;
    if (from !== undefined && denies(this.egress(from, p.dst, p.protocol, p.dstPort))) return false;
    if (to !== undefined && denies(this.ingress(to, p.src, p.protocol, p.dstPort, p.dst)))
      return false;
    return true;
  }

  /** The full verdict: both directions, the tier and rule that decided each. */
  decide(p: Packet): Verdict {
    const from = this.byIp.get(p.src);
    const to = this.byIp.get(p.dst);
    const self = from !== undefined && from === to;
    const egressPassed: CompiledRule[] = [];
    const ingressPassed: CompiledRule[] = [];
    const egress = decision(
      'egress',
      self ? undefined : from,
      from && !self ? this.egress(from, p.dst, p.protocol, p.dstPort, egressPassed) : undefined,
      egressPassed,
    );
    const ingress = decision(
      'ingress',
      self ? undefined : to,
      to && !self
        ? this.ingress(to, p.src, p.protocol, p.dstPort, p.dst, ingressPassed)
        : undefined,
      ingressPassed,
    );
    return { allowed: self || (egress.allowed && ingress.allowed), self, egress, ingress };
  }
}

function decision(
  direction: Direction,
  endpoint: CompiledEndpoint | undefined,
  result: DirectionResult | undefined,
  passed: readonly CompiledRule[],
): DirectionDecision {
  const base = { direction, passed, rule: undefined };
  if (endpoint === undefined || result === undefined)
    return { ...base, endpoint: undefined, allowed: true, tier: undefined };
  if (result === ALLOW_DEFAULT) return { ...base, endpoint, allowed: true, tier: 'default' };
  if (result === ALLOW_NODE) return { ...base, endpoint, allowed: true, tier: 'node' };
  if (result === DENY) return { ...base, endpoint, allowed: false, tier: 'namespace' };
  return { ...base, endpoint, allowed: result.action !== 'deny', tier: result.tier, rule: result };
}
