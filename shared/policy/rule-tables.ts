/**
 * Compiled rule tables and the one evaluator. Every verdict in Weir — the
 * agent's first-packet decision, `weirctl analyze`, `weirctl explain` — is
 * made here, from tables compiled by compile.ts.
 *
 *   packet (src, dst, protocol, port)
 *      │
 *      ├─ egress at src (when src is one of our endpoints)
 *      │     dst an address of src's own node? → allow (node: not subject
 *      │     to NetworkPolicy)
 *      │     namespace tier: isolated? → first rule whose peer holds dst and
 *      │     whose ports admit (protocol, port); none → deny
 *      │     not isolated → default tier: allow
 *      └─ ingress at dst (when dst is one of our endpoints), the same with src
 *
 * The connection is allowed when both sides allow it. Traffic from a pod to
 * its own address never leaves the pod and is always allowed. Traffic
 * between a pod and its own node's addresses is exempt from the NetworkPolicy
 * tier, as Kubernetes documents (kubelet probes come from the node); with
 * another node's addresses it is not. (Cluster-scoped tiers, when they come,
 * decide node traffic by their own rules.)
 */
import type { Ip } from '../net/ip.js';
import type { PrefixSet } from '../net/prefix-set.js';
import type { PortMatcher } from './port-matcher.js';
import type { Direction, Endpoint, FirewallPolicy, FirewallRule, PolicySnapshot } from './types.js';

/** One rule as the datapath evaluates it. */
export interface CompiledRule {
  /** FirewallRule id: stable across restarts and recompiles. */
  readonly id: string;
  /** FirewallPolicy id. */
  readonly policy: string;
  /** Addresses of the peer; null admits any address. */
  readonly peer: PrefixSet | null;
  /** Protocols and ports; null admits every protocol and port. */
  readonly ports: PortMatcher | null;
}

/** One endpoint, one direction. */
export interface DirectionTable {
  /** Policies that select the endpoint for this direction; empty: not isolated. */
  readonly policies: readonly string[];
  /** Union of their rules, in policy order then rule order. */
  readonly rules: readonly CompiledRule[];
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

/** 'node': exempt from the NetworkPolicy tier, the peer being the endpoint's own node. */
export type DecidingTier = 'namespace' | 'default' | 'node';

/** How one direction was decided. */
export interface DirectionDecision {
  readonly direction: Direction;
  /** The endpoint whose table decided; undefined when the address is not one of ours (nothing to enforce). */
  readonly endpoint: CompiledEndpoint | undefined;
  readonly allowed: boolean;
  /** Undefined when the address is not ours. */
  readonly tier: DecidingTier | undefined;
  /** The matching rule when a rule allowed it. */
  readonly rule: CompiledRule | undefined;
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
 * (allowed by it), ALLOW_DEFAULT (not isolated), ALLOW_NODE (the peer is an
 * address of the endpoint's own node: not subject to NetworkPolicy) or DENY
 * (isolated, no match).
 */
export const ALLOW_DEFAULT = Symbol('allow: not isolated');
export const ALLOW_NODE = Symbol('allow: between the pod and its own node');
export const DENY = Symbol('deny: isolated, no rule matched');
export type DirectionResult = CompiledRule | typeof ALLOW_DEFAULT | typeof ALLOW_NODE | typeof DENY;

/**
 * Evaluates one direction of one endpoint. `peer` is the other end's address;
 * `destination` is the packet's destination (the endpoint itself for ingress,
 * the peer for egress), against which egress named ports resolve.
 */
export function evaluateDirection(
  table: DirectionTable,
  peer: Ip,
  protocol: number,
  port: number,
  destination: Ip,
): DirectionResult {
  if (table.policies.length === 0) return ALLOW_DEFAULT;
  const rules = table.rules;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    if (r.peer !== null && !r.peer.has(peer)) continue;
    if (r.ports !== null && !r.ports.matches(protocol, port, destination)) continue;
    return r;
  }
  return DENY;
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
  egress(local: CompiledEndpoint, dst: Ip, protocol: number, port: number): DirectionResult {
    if (local.node?.has(dst)) return ALLOW_NODE;
    return evaluateDirection(local.egress, dst, protocol, port, dst);
  }

  /** Ingress at a local endpoint from `src`. */
  ingress(
    local: CompiledEndpoint,
    src: Ip,
    protocol: number,
    port: number,
    dst: Ip,
  ): DirectionResult {
    if (local.node?.has(src)) return ALLOW_NODE;
    return evaluateDirection(local.ingress, src, protocol, port, dst);
  }

  /** Allowed or not, without building an explanation (the hot path). */
  allows(p: Packet): boolean {
    const from = this.byIp.get(p.src);
    const to = this.byIp.get(p.dst);
    if (from !== undefined && from === to) return true;
    if (from !== undefined && this.egress(from, p.dst, p.protocol, p.dstPort) === DENY)
      return false;
    if (to !== undefined && this.ingress(to, p.src, p.protocol, p.dstPort, p.dst) === DENY)
      return false;
    return true;
  }

  /** The full verdict: both directions, the tier and rule that decided each. */
  decide(p: Packet): Verdict {
    const from = this.byIp.get(p.src);
    const to = this.byIp.get(p.dst);
    const self = from !== undefined && from === to;
    const egress = decision(
      'egress',
      self ? undefined : from,
      from && !self ? this.egress(from, p.dst, p.protocol, p.dstPort) : undefined,
    );
    const ingress = decision(
      'ingress',
      self ? undefined : to,
      to && !self ? this.ingress(to, p.src, p.protocol, p.dstPort, p.dst) : undefined,
    );
    return { allowed: self || (egress.allowed && ingress.allowed), self, egress, ingress };
  }
}

function decision(
  direction: Direction,
  endpoint: CompiledEndpoint | undefined,
  result: DirectionResult | undefined,
): DirectionDecision {
  if (endpoint === undefined || result === undefined)
    return { direction, endpoint: undefined, allowed: true, tier: undefined, rule: undefined };
  if (result === ALLOW_DEFAULT)
    return { direction, endpoint, allowed: true, tier: 'default', rule: undefined };
  if (result === ALLOW_NODE)
    return { direction, endpoint, allowed: true, tier: 'node', rule: undefined };
  if (result === DENY)
    return { direction, endpoint, allowed: false, tier: 'namespace', rule: undefined };
  return { direction, endpoint, allowed: true, tier: 'namespace', rule: result };
}
