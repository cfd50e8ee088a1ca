/**
 * Which local endpoints' rule tables a recompile changed: the endpoints
 * whose flows the datapath must decide again after a delta, and the
 * addresses whose local endpoint changed (a flow to or from one is decided
 * by another gate now). Every other flow's verdict depends only on tables
 * that are equal, rule for rule, so it stands.
 *
 * Tables are compared by content, not identity (each compile builds new
 * objects): an endpoint's addresses, its node's addresses and, per
 * direction, the selecting policies and every rule's id, policy, tier,
 * action, peer ranges and ports, in order. compile() shares one rule object
 * between the endpoints a rule applies to, so each pair of rules is
 * compared once (memoized), and an endpoint costs a few lookups.
 */
import type { Ip } from '../../shared/net/ip.js';
import type { PrefixSet } from '../../shared/net/prefix-set.js';
import type { PortMatcher } from '../../shared/policy/port-matcher.js';
import type {
  CompiledEndpoint,
  CompiledRule,
  DirectionTable,
  RuleTables,
} from '../../shared/policy/rule-tables.js';

export interface TableChanges {
  /** Local endpoints (keys) added, removed, or whose tables or addresses differ. */
  readonly endpoints: ReadonlySet<string>;
  /** Addresses held by another local endpoint, or by one now and none before (or the reverse). */
  readonly ips: ReadonlySet<Ip>;
}

/** What changed from `before` to `after` for the flows of local endpoints. */
export function tableChanges(before: RuleTables, after: RuleTables): TableChanges {
  const same = new RuleComparison();
  const endpoints = new Set<string>();
  for (const [key, e] of after.endpoints) {
    const old = before.endpoints.get(key);
    if (old === undefined || !same.endpoint(old, e)) endpoints.add(key);
  }
  for (const key of before.endpoints.keys()) if (!after.endpoints.has(key)) endpoints.add(key);
  const ips = new Set<Ip>();
  for (const [ip, e] of after.byIp) if (before.byIp.get(ip)?.key !== e.key) ips.add(ip);
  for (const ip of before.byIp.keys()) if (!after.byIp.has(ip)) ips.add(ip);
  return { endpoints, ips };
}

class RuleComparison {
  /** Old rule → the new rules found equal to it, and those found different. */
  private readonly equal = new Map<CompiledRule, Set<CompiledRule>>();
  private readonly differ = new Map<CompiledRule, Set<CompiledRule>>();

  endpoint(a: CompiledEndpoint, b: CompiledEndpoint): boolean {
    return (
      sameList(a.ips, b.ips) &&
      samePrefixes(a.node, b.node) &&
      this.direction(a.egress, b.egress) &&
      this.direction(a.ingress, b.ingress)
    );
  }

  private direction(a: DirectionTable, b: DirectionTable): boolean {
    return (
      sameList(a.policies, b.policies) &&
      this.rules(a.rules, b.rules) &&
      sameList(a.adminPolicies, b.adminPolicies) &&
      this.rules(a.admin, b.admin) &&
      sameList(a.baselinePolicies, b.baselinePolicies) &&
      this.rules(a.baseline, b.baseline)
    );
  }

  private rules(a: readonly CompiledRule[], b: readonly CompiledRule[]): boolean {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!this.rule(a[i]!, b[i]!)) return false;
    return true;
  }

  private rule(a: CompiledRule, b: CompiledRule): boolean {
    if (a === b || this.equal.get(a)?.has(b)) return true;
    if (this.differ.get(a)?.has(b)) return false;
    const same =
      a.id === b.id &&
      a.policy === b.policy &&
      JSON.stringify(a.tier) === JSON.stringify(b.tier) &&
      a.action === b.action &&
      samePrefixes(a.peer, b.peer) &&
      samePorts(a.ports, b.ports);
    const memo = same ? this.equal : this.differ;
    let set = memo.get(a);
    if (set === undefined) {
      set = new Set();
      memo.set(a, set);
    }
    set.add(b);
    return same;
  }
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePrefixes(a: PrefixSet | null, b: PrefixSet | null): boolean {
  return a === null || b === null ? a === b : a.equals(b);
}

function sameInts(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePorts(a: PortMatcher | null, b: PortMatcher | null): boolean {
  if (a === null || b === null) return a === b;
  if (!sameInts(a.fixed, b.fixed)) return false;
  const x = a.byDestination;
  const y = b.byDestination;
  if (x === undefined || y === undefined) return x === y;
  if (x.size !== y.size) return false;
  for (const [ip, t] of x) {
    const u = y.get(ip);
    if (u === undefined || !sameInts(t, u)) return false;
  }
  return true;
}
