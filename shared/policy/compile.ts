/**
 * Compiles a policy snapshot into rule tables: per endpoint and direction,
 * the rules of every policy that selects it, tier by tier (Admin and
 * Baseline ClusterNetworkPolicies in the application policy set's order,
 * NetworkPolicies as a union), with address groups turned into
 * prefix sets (built once per group) and named ports resolved (ingress against
 * the endpoint itself, egress against every destination that declares them).
 */
import { type Ip, parseCidr, parseIp } from '../net/ip.js';
import { PrefixSet } from '../net/prefix-set.js';
import { InternalError } from '../errors.js';
import { CLASS_INDEX_BUDGET, type ClassIndex, PeerClasses, classIndex } from './peer-classes.js';
import { PortMatcher } from './port-matcher.js';
import {
  RuleTables,
  type CompiledEndpoint,
  type CompiledRule,
  type DirectionTable,
} from './rule-tables.js';
import {
  PROTOCOL_NUMBER,
  endpointKey,
  type AddressGroup,
  type Direction,
  type Endpoint,
  type FirewallPolicy,
  type FirewallRule,
  type GroupMember,
  type PolicySnapshot,
  type Protocol,
  type RuleEndpoint,
  type ServiceGroup,
  type Tier,
  tierOf,
} from './types.js';

export interface CompileOptions {
  /** Which endpoints get tables (an agent: those on its node). Default: all. */
  readonly isLocal?: (e: Endpoint) => boolean;
  /**
   * Admin and Baseline rule lists of at least this many rules get a peer
   * index (peer-classes.ts; default CLASS_INDEX_MIN_RULES; 0: every list;
   * Infinity: none). The verdicts are the same either way.
   */
  readonly classIndexMinRules?: number;
}

/** Cluster-tier lists shorter than this are scanned: a scan of a few rules beats an index. */
export const CLASS_INDEX_MIN_RULES = 16;

const NOT_ISOLATED: DirectionTable = Object.freeze({
  policies: [],
  rules: [],
  adminPolicies: [],
  admin: [],
  baselinePolicies: [],
  baseline: [],
  adminIndex: null,
  baselineIndex: null,
});

const NO_RULES: readonly CompiledRule[] = Object.freeze([]);

interface Selecting {
  readonly ingress: FirewallPolicy[];
  readonly egress: FirewallPolicy[];
  readonly adminIngress: FirewallPolicy[];
  readonly adminEgress: FirewallPolicy[];
  readonly baselineIngress: FirewallPolicy[];
  readonly baselineEgress: FirewallPolicy[];
}

export function compile(snapshot: PolicySnapshot, options: CompileOptions = {}): RuleTables {
  const c = new Compiler(snapshot);
  const isLocal = options.isLocal ?? (() => true);
  const local = snapshot.endpoints.filter(isLocal);

  // Policies selecting each local endpoint, per tier and direction, in APS order.
  const order = policyOrder(snapshot);
  const selecting = new Map<string, Selecting>();
  for (const e of local)
    selecting.set(endpointKey(e), {
      ingress: [],
      egress: [],
      adminIngress: [],
      adminEgress: [],
      baselineIngress: [],
      baselineEgress: [],
    });
  for (const policy of order) {
    const group = c.group(policy.appliedTo, policy.id);
    if (group.kind !== 'selector')
      throw new InternalError(
        `policy ${policy.id}: applied-to group ${group.id} is not a selector group`,
      );
    const tier = tierOf(policy);
    for (const m of group.members) {
      const s = selecting.get(m.endpoint);
      if (s === undefined) continue;
      if (tier === 'namespace') {
        if (policy.ingressIsolation) s.ingress.push(policy);
        if (policy.egressIsolation) s.egress.push(policy);
      } else if (tier === 'admin') {
        if (policy.ingressIsolation) s.adminIngress.push(policy);
        if (policy.egressIsolation) s.adminEgress.push(policy);
      } else {
        if (policy.ingressIsolation) s.baselineIngress.push(policy);
        if (policy.egressIsolation) s.baselineEgress.push(policy);
      }
    }
  }

  const drafts = local.map((e) => {
    const s = selecting.get(endpointKey(e))!;
    return {
      e,
      ingress: c.table(s.ingress, s.adminIngress, s.baselineIngress, 'ingress', e),
      egress: c.table(s.egress, s.adminEgress, s.baselineEgress, 'egress', e),
    };
  });
  const indexes = clusterIndexes(
    drafts.flatMap((d) => [d.ingress.admin, d.ingress.baseline, d.egress.admin, d.egress.baseline]),
    options.classIndexMinRules ?? CLASS_INDEX_MIN_RULES,
  );
  const indexed = (t: DirectionTable): DirectionTable => {
    const adminIndex = indexes.get(t.admin) ?? null;
    const baselineIndex = indexes.get(t.baseline) ?? null;
    return adminIndex === null && baselineIndex === null ? t : { ...t, adminIndex, baselineIndex };
  };
  const endpoints = new Map<string, CompiledEndpoint>();
  for (const { e, ingress, egress } of drafts) {
    const key = endpointKey(e);
    endpoints.set(key, {
      endpoint: e,
      key,
      ips: e.ips.map((ip) => c.ip(ip)),
      node: c.nodeSet(e),
      ingress: indexed(ingress),
      egress: indexed(egress),
    });
  }
  return new RuleTables(snapshot, endpoints);
}

/**
 * Peer indexes of the distinct cluster-tier lists of at least `minRules`
 * rules, over one PeerClasses of all their peers; lists past the budget
 * stay unindexed.
 */
function clusterIndexes(
  lists: readonly (readonly CompiledRule[])[],
  minRules: number,
): Map<readonly CompiledRule[], ClassIndex> {
  const out = new Map<readonly CompiledRule[], ClassIndex>();
  const distinct = [...new Set(lists)].filter((l) => l.length > 0 && l.length >= minRules);
  if (distinct.length === 0) return out;
  const sets = new Map<PrefixSet, number>();
  for (const l of distinct)
    for (const r of l) if (r.peer !== null && !sets.has(r.peer)) sets.set(r.peer, sets.size);
  const classes = PeerClasses.of([...sets.keys()]);
  if (classes === undefined) return out;
  let used = 0;
  for (const l of distinct) {
    if (used + classes.count > CLASS_INDEX_BUDGET) break;
    const x = classIndex(
      classes,
      l.map((r) => r.peer),
      (s) => sets.get(s)!,
    );
    used += x.size;
    if (used > CLASS_INDEX_BUDGET) break;
    out.set(l, x);
  }
  return out;
}

/** Every policy the application policy set names, in its order; each must be in the tier it names. */
function policyOrder(snapshot: PolicySnapshot): FirewallPolicy[] {
  const byId = new Map(snapshot.policies.map((p) => [p.id, p]));
  const out: FirewallPolicy[] = [];
  for (const tier of snapshot.applicationPolicySet.tiers) {
    for (const id of tier.policies) {
      const p = byId.get(id);
      if (p === undefined)
        throw new InternalError(
          `application policy set names policy ${id}, which the snapshot lacks`,
        );
      if (tierOf(p) !== tier.tier)
        throw new InternalError(
          `application policy set puts policy ${id} in tier ${tier.tier}, but it is in tier ${tierOf(p)}`,
        );
      out.push(p);
    }
  }
  return out;
}

class Compiler {
  private readonly groups: Map<string, AddressGroup>;
  private readonly serviceGroups: Map<string, ServiceGroup>;
  private readonly prefixSets = new Map<string, PrefixSet>();
  /** Compiled rules by id (or, for ingress named ports, by id and the ports they resolved to). */
  private readonly shared = new Map<string, CompiledRule>();
  private readonly egressPorts = new Map<string, PortMatcher>();
  private namedPortIndex: Map<string, Array<[number, number, Ip]>> | undefined;
  private ownerIndex: Map<Ip, Endpoint> | undefined;
  private endpointsByKey: readonly Endpoint[] | undefined;
  /** Addresses parsed once per compile: a pod's address appears in many groups. */
  private readonly parsed = new Map<string, Ip>();
  /** Compiled rule lists by direction, ingress ports and policy ids (see table()). */
  private readonly lists = new Map<string, readonly CompiledRule[]>();
  /** Node address sets by their addresses: the endpoints of one node share one. */
  private readonly nodeSets = new Map<string, PrefixSet>();

  constructor(private readonly snapshot: PolicySnapshot) {
    this.groups = new Map(snapshot.addressGroups.map((g) => [g.id, g]));
    this.serviceGroups = new Map(snapshot.serviceGroups.map((g) => [g.id, g]));
  }

  ip(text: string): Ip {
    let ip = this.parsed.get(text);
    if (ip === undefined) {
      ip = parseIp(text);
      this.parsed.set(text, ip);
    }
    return ip;
  }

  /** The endpoint's node's addresses as a set; null when it has none. */
  nodeSet(e: Endpoint): PrefixSet | null {
    if (e.nodeAddresses.length === 0) return null;
    const key = e.nodeAddresses.join(',');
    let set = this.nodeSets.get(key);
    if (set === undefined) {
      set = PrefixSet.from(e.nodeAddresses.map((a) => this.ip(a)));
      this.nodeSets.set(key, set);
    }
    return set;
  }

  group(id: string, user: string): AddressGroup {
    const g = this.groups.get(id);
    if (g === undefined)
      throw new InternalError(`${user} references address group ${id}, which the snapshot lacks`);
    return g;
  }

  table(
    policies: readonly FirewallPolicy[],
    admin: readonly FirewallPolicy[],
    baseline: readonly FirewallPolicy[],
    direction: Direction,
    e: Endpoint,
  ): DirectionTable {
    if (policies.length === 0 && admin.length === 0 && baseline.length === 0) return NOT_ISOLATED;
    // Endpoints selected by the same policies share one list: cluster tiers
    // select many pods alike. Ingress rules resolve named ports against the
    // endpoint, so for ingress the endpoint's ports are part of the key.
    const ports =
      direction === 'ingress'
        ? e.ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(',')
        : '';
    const rulesOf = (list: readonly FirewallPolicy[]) => {
      if (list.length === 0) return NO_RULES;
      const key = `${direction}\u0000${ports}\u0000${list.map((p) => p.id).join('\u0000')}`;
      const known = this.lists.get(key);
      if (known !== undefined) return known;
      const rules: CompiledRule[] = [];
      for (const p of list) {
        for (const r of p.rules) if (r.direction === direction) rules.push(this.rule(p, r, e));
      }
      this.lists.set(key, rules);
      return rules;
    };
    return {
      policies: policies.map((p) => p.id),
      rules: rulesOf(policies),
      adminPolicies: admin.map((p) => p.id),
      admin: rulesOf(admin),
      baselinePolicies: baseline.map((p) => p.id),
      baseline: rulesOf(baseline),
      adminIndex: null,
      baselineIndex: null,
    };
  }

  private rule(policy: FirewallPolicy, r: FirewallRule, e: Endpoint): CompiledRule {
    const cached = this.shared.get(r.id);
    if (cached !== undefined) return cached;
    const peer = this.peer(r.endpoint2, r.id);
    const sg = r.serviceGroup === undefined ? undefined : this.serviceGroups.get(r.serviceGroup);
    if (r.serviceGroup !== undefined && sg === undefined)
      throw new InternalError(
        `rule ${r.id} references service group ${r.serviceGroup}, which the snapshot lacks`,
      );
    const tier: Tier = tierOf(policy);
    const action = r.action;
    const hasNamed = sg?.services.some((s) => s.port.kind === 'named');
    if (hasNamed && r.direction === 'ingress') {
      // Ingress named ports resolve against the endpoint: endpoints whose ports
      // resolve the same way share one compiled rule.
      const ports = ingressMatcher(sg!, e);
      const key = `${r.id}\u0000${ports.fixed.join(',')}`;
      let compiled = this.shared.get(key);
      if (compiled === undefined)
        compiled = { id: r.id, policy: policy.id, tier, action, peer, ports };
      this.shared.set(key, compiled);
      return compiled;
    }
    const ports =
      sg === undefined
        ? null
        : r.direction === 'egress'
          ? this.egressMatcher(sg, r.endpoint2)
          : ingressMatcher(sg, e);
    const compiled: CompiledRule = { id: r.id, policy: policy.id, tier, action, peer, ports };
    this.shared.set(r.id, compiled);
    return compiled;
  }

  private peer(p: RuleEndpoint, user: string): PrefixSet | null {
    if ('any' in p) return null;
    let set = this.prefixSets.get(p.addressGroup);
    if (set === undefined) {
      const g = this.group(p.addressGroup, `rule ${user}`);
      set =
        g.kind === 'ipBlock'
          ? PrefixSet.from(g.prefixes.map((text) => cidrOf(text, g.id)))
          : PrefixSet.from(g.members.flatMap((m) => m.ips.map((ip) => this.ip(ip))));
      this.prefixSets.set(p.addressGroup, set);
    }
    return set;
  }

  /**
   * An egress rule's ports. Named ports resolve at the destination: for a
   * selector-group peer, against its members (each address at the endpoint
   * that owns it when the snapshot holds that endpoint: an address two pods
   * claim; else at the member, its only claimant), otherwise against every
   * endpoint. Either way only where the peer can match.
   */
  private egressMatcher(sg: ServiceGroup, peer: RuleEndpoint): PortMatcher {
    const named = sg.services.some((s) => s.port.kind === 'named');
    const g = named && 'addressGroup' in peer ? this.groups.get(peer.addressGroup) : undefined;
    const members = g?.kind === 'selector' ? g.members : undefined;
    const key = members === undefined ? sg.id : `${sg.id}\u0000${g!.id}`;
    let m = this.egressPorts.get(key);
    if (m !== undefined) return m;
    const fixed: number[] = [];
    let byDestination: Map<Ip, number[]> | undefined;
    for (const s of sg.services) {
      const proto = PROTOCOL_NUMBER[s.protocol];
      if (s.port.kind === 'all') fixed.push(proto, 0, 65535);
      else if (s.port.kind === 'range') fixed.push(proto, s.port.start, s.port.end);
      else {
        byDestination ??= new Map();
        const resolved =
          members === undefined
            ? (this.namedPorts().get(`${s.port.name}/${s.protocol}`) ?? [])
            : this.membersNamedPort(members, s.port.name, s.protocol);
        for (const [p, port, ip] of resolved) {
          let list = byDestination.get(ip);
          if (list === undefined) {
            list = [];
            byDestination.set(ip, list);
          }
          list.push(p, port, port);
        }
      }
    }
    m = new PortMatcher(
      Int32Array.from(fixed),
      byDestination && new Map([...byDestination].map(([ip, l]) => [ip, Int32Array.from(l)])),
    );
    this.egressPorts.set(key, m);
    return m;
  }

  /** [protocol number, port, address] of a named port at a group's members' addresses. */
  private membersNamedPort(
    members: readonly GroupMember[],
    name: string,
    protocol: Protocol,
  ): Array<[number, number, Ip]> {
    const out: Array<[number, number, Ip]> = [];
    const owners = this.owners();
    const seen = new Set<Ip>();
    const proto = PROTOCOL_NUMBER[protocol];
    for (const member of members) {
      for (const text of member.ips) {
        const ip = this.ip(text);
        if (seen.has(ip)) continue;
        seen.add(ip);
        const at = owners.get(ip)?.ports ?? member.ports;
        for (const np of at)
          if (np.name === name && np.protocol === protocol) out.push([proto, np.port, ip]);
      }
    }
    return out;
  }

  /** Address → the endpoint it belongs to: of the endpoints claiming it, the last by key (as RuleTables.byIp). */
  private owners(): Map<Ip, Endpoint> {
    if (this.ownerIndex !== undefined) return this.ownerIndex;
    const owner = new Map<Ip, Endpoint>();
    for (const e of this.sortedEndpoints()) for (const ip of e.ips) owner.set(this.ip(ip), e);
    this.ownerIndex = owner;
    return owner;
  }

  private sortedEndpoints(): readonly Endpoint[] {
    this.endpointsByKey ??= [...this.snapshot.endpoints].sort((a, b) =>
      endpointKey(a) < endpointKey(b) ? -1 : 1,
    );
    return this.endpointsByKey;
  }

  /** "name/PROTOCOL" → [protocol number, port, address] for every endpoint declaring it. */
  private namedPorts(): Map<string, Array<[number, number, Ip]>> {
    if (this.namedPortIndex !== undefined) return this.namedPortIndex;
    const index = new Map<string, Array<[number, number, Ip]>>();
    // An address two endpoints claim (a pod's address reused before the old
    // pod is gone) belongs to the last by key, as RuleTables.byIp decides.
    const owner = this.owners();
    for (const e of this.sortedEndpoints()) {
      for (const np of e.ports) {
        const k = `${np.name}/${np.protocol}`;
        let list = index.get(k);
        if (list === undefined) {
          list = [];
          index.set(k, list);
        }
        for (const text of e.ips) {
          const ip = this.ip(text);
          if (owner.get(ip) === e) list.push([PROTOCOL_NUMBER[np.protocol], np.port, ip]);
        }
      }
    }
    this.namedPortIndex = index;
    return index;
  }
}

function ingressMatcher(sg: ServiceGroup, e: Endpoint): PortMatcher {
  const fixed: number[] = [];
  for (const s of sg.services) {
    const proto = PROTOCOL_NUMBER[s.protocol];
    if (s.port.kind === 'all') fixed.push(proto, 0, 65535);
    else if (s.port.kind === 'range') fixed.push(proto, s.port.start, s.port.end);
    else {
      const name = s.port.name;
      for (const np of e.ports)
        if (np.name === name && np.protocol === s.protocol) fixed.push(proto, np.port, np.port);
    }
  }
  return new PortMatcher(Int32Array.from(fixed), undefined);
}

function cidrOf(text: string, group: string) {
  const c = parseCidr(text);
  if (typeof c === 'string')
    throw new InternalError(`address group ${group}: prefix ${text}: ${c}`);
  return c;
}
