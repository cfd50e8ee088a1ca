/**
 * Which local endpoints' rule tables a recompile changed: the endpoints
 * whose flows the datapath must decide again after a delta, and the
 * addresses whose local endpoint changed (a flow to or from one is decided
 * by another gate now). Every other flow's verdict depends only on tables
 * that are equal, rule for rule, so it stands.
 *
 * Tables are compared by content, not identity (each compile builds new
 * objects): an endpoint's fingerprint covers its addresses, its node's
 * addresses and, per direction, the selecting policies and every rule's
 * id, policy, tier, action, peer ranges and ports, in order. Fingerprints
 * are memoized per object, so the tables in force are fingerprinted once.
 */
import { formatIp, type Ip } from '../../shared/net/ip.js';
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

export class TableFingerprints {
  private readonly endpoints = new WeakMap<CompiledEndpoint, string>();
  private readonly rules = new WeakMap<CompiledRule, string>();
  private readonly prefixes = new WeakMap<PrefixSet, string>();
  private readonly ports = new WeakMap<PortMatcher, string>();

  /** What changed from `before` to `after` for the flows of local endpoints. */
  changes(before: RuleTables, after: RuleTables): TableChanges {
    const endpoints = new Set<string>();
    for (const [key, e] of after.endpoints) {
      const old = before.endpoints.get(key);
      if (old === undefined || this.endpoint(old) !== this.endpoint(e)) endpoints.add(key);
    }
    for (const key of before.endpoints.keys()) if (!after.endpoints.has(key)) endpoints.add(key);
    const ips = new Set<Ip>();
    for (const [ip, e] of after.byIp) if (before.byIp.get(ip)?.key !== e.key) ips.add(ip);
    for (const ip of before.byIp.keys()) if (!after.byIp.has(ip)) ips.add(ip);
    return { endpoints, ips };
  }

  endpoint(e: CompiledEndpoint): string {
    let f = this.endpoints.get(e);
    if (f === undefined) {
      f = [
        e.ips.map(formatIp).join(','),
        e.node === null ? '-' : this.prefix(e.node),
        this.direction(e.egress),
        this.direction(e.ingress),
      ].join('\n');
      this.endpoints.set(e, f);
    }
    return f;
  }

  private direction(t: DirectionTable): string {
    return [
      t.policies.join(','),
      t.rules.map((r) => this.rule(r)).join(';'),
      t.adminPolicies.join(','),
      t.admin.map((r) => this.rule(r)).join(';'),
      t.baselinePolicies.join(','),
      t.baseline.map((r) => this.rule(r)).join(';'),
    ].join('|');
  }

  private rule(r: CompiledRule): string {
    let f = this.rules.get(r);
    if (f === undefined) {
      f = JSON.stringify([
        r.id,
        r.policy,
        r.tier,
        r.action,
        r.peer === null ? null : this.prefix(r.peer),
        r.ports === null ? null : this.port(r.ports),
      ]);
      this.rules.set(r, f);
    }
    return f;
  }

  private prefix(p: PrefixSet): string {
    let f = this.prefixes.get(p);
    if (f === undefined) {
      const { v4, v6 } = p.ranges();
      f = `${v4.join(',')}/${v6.join(',')}`;
      this.prefixes.set(p, f);
    }
    return f;
  }

  private port(m: PortMatcher): string {
    let f = this.ports.get(m);
    if (f === undefined) {
      const by = m.byDestination;
      f = `${m.fixed.join(',')}${
        by === undefined
          ? ''
          : `@${[...by]
              .map(([ip, t]) => `${formatIp(ip)}=${t.join(',')}`)
              .sort()
              .join(';')}`
      }`;
      this.ports.set(m, f);
    }
    return f;
  }
}
