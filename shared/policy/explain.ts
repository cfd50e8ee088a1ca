/**
 * Explanations of verdicts, for people (`weirctl analyze probe`, `weirctl
 * explain`) and scripts (-o json). Built from a Verdict the evaluator returned
 * and the snapshot the tables came from; never a second evaluation.
 */
import { InternalError } from '../errors.js';
import { formatIp, type Ip } from '../net/ip.js';
import type { CompiledEndpoint, DirectionDecision, RuleTables, Verdict } from './rule-tables.js';
import { endpointSelectorText, selectorText } from './selector.js';
import type {
  AddressGroup,
  Direction,
  FirewallPolicy,
  FirewallRule,
  Service,
  ServiceGroup,
} from './types.js';

export interface PolicyRef {
  readonly id: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** ClusterNetworkPolicy only: "admin" or "baseline", and its priority. */
  readonly tier?: string;
  readonly priority?: number;
}

export interface RuleExplanation {
  readonly id: string;
  readonly policy: PolicyRef;
  /** Where the rule is in its policy, as a Kubernetes field path: "spec.ingress[0].from[1]". */
  readonly field: string;
  /** ClusterNetworkPolicy: the rule's name, when it has one. */
  readonly name?: string;
  /** "allow", "deny" or "pass" (ClusterNetworkPolicy Pass: the next tier decides). */
  readonly action: string;
  /** The peer, in words: "pods {app=db} in namespace prod", "10.0.0.0/8 except 10.1.0.0/16", "any address". */
  readonly peer: string;
  /** The ports, in words: "TCP/80, UDP/53", "any port". */
  readonly ports: string;
}

export interface DirectionExplanation {
  readonly direction: Direction;
  /** False when that end is not one of our endpoints: nothing is enforced there. */
  readonly enforced: boolean;
  /** "namespace/name" of the endpoint that decided. */
  readonly endpoint?: string;
  readonly allowed: boolean;
  /**
   * The tier that gave the verdict: "admin" or "baseline"
   * (ClusterNetworkPolicy), "namespace" (NetworkPolicy), "default" (no tier
   * decided) or "node" (NetworkPolicy isolates the pod, and that tier allows
   * the peer: the pod's own node).
   */
  readonly tier?: string;
  /** The policies that select the endpoint for this direction, Admin tier first, then NetworkPolicy, then Baseline. */
  readonly policies: readonly PolicyRef[];
  /** The rule that decided (allowed or denied) the traffic. */
  readonly rule?: RuleExplanation;
  /** ClusterNetworkPolicy rules with action Pass that handed the decision on, in order. */
  readonly passed?: readonly RuleExplanation[];
  /** One sentence. */
  readonly reason: string;
}

export interface Explanation {
  readonly allowed: boolean;
  readonly protocol: string;
  readonly port: number;
  readonly from: { readonly ip: string; readonly endpoint?: string };
  readonly to: { readonly ip: string; readonly endpoint?: string };
  readonly egress: DirectionExplanation;
  readonly ingress: DirectionExplanation;
  /** "IPv4" or "IPv6": the family explained, set when `families` is (and on its entries). */
  readonly family?: string;
  /**
   * Present when a probe checked more than one address family (two
   * dual-stack pods): each family's explanation, source's primary first.
   * Then `allowed` holds only when every family allows, and the other
   * fields explain the family that decided (the first that denies, else
   * the first).
   */
  readonly families?: readonly Explanation[];
}

/**
 * `scope` says what the tables cover, for the words used about addresses
 * outside them: the whole cluster (analysis, the controller) or one node's
 * endpoints (an agent).
 */
export function explain(
  tables: RuleTables,
  verdict: Verdict,
  probe: { src: Ip; dst: Ip; protocol: string; port: number },
  scope: 'cluster' | 'node' = 'cluster',
): Explanation {
  const from = tables.byIp.get(probe.src);
  const to = tables.byIp.get(probe.dst);
  const d = new Describer(tables, scope);
  const side = (ip: Ip, e: CompiledEndpoint | undefined) => ({
    ip: formatIp(ip),
    ...(e ? { endpoint: e.key } : {}),
  });
  if (verdict.self) {
    const reason = `${from!.key} is talking to itself: traffic to its own address never leaves the pod`;
    const same = (direction: Direction): DirectionExplanation => ({
      direction,
      enforced: false,
      endpoint: from!.key,
      allowed: true,
      policies: [],
      reason,
    });
    return {
      allowed: true,
      protocol: probe.protocol,
      port: probe.port,
      from: side(probe.src, from),
      to: side(probe.dst, to),
      egress: same('egress'),
      ingress: same('ingress'),
    };
  }
  return {
    allowed: verdict.allowed,
    protocol: probe.protocol,
    port: probe.port,
    from: side(probe.src, from),
    to: side(probe.dst, to),
    egress: d.direction(verdict.egress, formatIp(probe.src), formatIp(probe.dst)),
    ingress: d.direction(verdict.ingress, formatIp(probe.dst), formatIp(probe.src)),
  };
}

class Describer {
  private readonly groups: Map<string, AddressGroup>;
  private readonly services: Map<string, ServiceGroup>;

  constructor(
    private readonly tables: RuleTables,
    private readonly scope: 'cluster' | 'node',
  ) {
    this.groups = new Map(tables.snapshot.addressGroups.map((g) => [g.id, g]));
    this.services = new Map(tables.snapshot.serviceGroups.map((g) => [g.id, g]));
  }

  /** `address`: this side's address; `peer`: the other side's. */
  direction(dec: DirectionDecision, address: string, peer: string): DirectionExplanation {
    const { direction } = dec;
    if (dec.endpoint === undefined) {
      return {
        direction,
        enforced: false,
        allowed: true,
        policies: [],
        reason:
          this.scope === 'cluster'
            ? `${address} is not a pod of the cluster: its ${direction} is not Weir's to check`
            : `${address} is not a pod on this node: its ${direction} is checked where it runs, if anywhere`,
      };
    }
    const e = dec.endpoint;
    const table = direction === 'ingress' ? e.ingress : e.egress;
    const policies = [...table.adminPolicies, ...table.policies, ...table.baselinePolicies].map(
      (id) => this.policyRef(id),
    );
    const passed = dec.passed.map((r) => this.rule(r.id, r.policy));
    const base = {
      direction,
      enforced: true,
      endpoint: e.key,
      allowed: dec.allowed,
      tier: dec.tier,
      policies,
      ...(passed.length > 0 ? { passed } : {}),
    };
    const before = passed.map((r) => `Pass by ${ruleText(r)}; then `).join('');
    if (dec.tier === 'default') {
      const what =
        passed.length > 0
          ? 'no further rule matched'
          : policies.length === 0
            ? `no policy selects ${e.key} for ${direction}`
            : `no rule of the ClusterNetworkPolicies that select ${e.key} matched for ${direction}`;
      return { ...base, reason: `${before}${what}: allowed by default` };
    }
    const names = () =>
      table.policies
        .map((id) => this.policyRef(id))
        .map((p) => `${p.namespace}/${p.name}`)
        .join(', ');
    if (dec.tier === 'node')
      return {
        ...base,
        reason: `${before}isolated for ${direction} by ${names()}; traffic between a pod and its own node is allowed by the NetworkPolicy tier: ${peer} is an address of node ${e.endpoint.node}, where ${e.key} runs`,
      };
    if (dec.rule === undefined) {
      return {
        ...base,
        reason: `${before}isolated for ${direction} by ${names()}; no rule matched`,
      };
    }
    const rule = this.rule(dec.rule.id, dec.rule.policy);
    return {
      ...base,
      rule,
      reason: `${before}${rule.action === 'deny' ? 'denied' : 'allowed'} by ${ruleText(rule)}`,
    };
  }

  policyRef(id: string): PolicyRef {
    const p = this.tables.policies.get(id);
    if (p === undefined) return { id, kind: 'unknown', namespace: '', name: id };
    return {
      id,
      kind: p.kind,
      namespace: p.namespace,
      name: p.name,
      ...(p.tier === undefined ? {} : { tier: p.tier, priority: p.priority ?? 0 }),
    };
  }

  rule(id: string, policyId: string): RuleExplanation {
    const r = this.tables.rules.get(id);
    const policy = this.tables.policies.get(policyId);
    if (r === undefined || policy === undefined)
      throw new InternalError(`compiled rule ${id} of ${policyId} is not in the snapshot`);
    return {
      id,
      policy: this.policyRef(policy.id),
      field: ruleField(policy, r),
      ...(r.name ? { name: r.name } : {}),
      action: r.action === 'pass' ? 'allow' : r.action === 'deny' ? 'deny' : 'pass',
      peer: this.peer(r),
      ports: this.ports(r),
    };
  }

  private peer(r: FirewallRule): string {
    if ('any' in r.endpoint2) return 'any address';
    const g = this.groups.get(r.endpoint2.addressGroup);
    if (g === undefined) return r.endpoint2.addressGroup;
    if (g.kind === 'selector') return endpointSelectorText(g.selector);
    if (g.kind === 'nodes')
      return g.nodeSelector.requirements.length === 0
        ? 'all nodes'
        : `nodes {${selectorText(g.nodeSelector)}}`;
    return g.ipBlock.except.length === 0
      ? g.ipBlock.cidr
      : `${g.ipBlock.cidr} except ${g.ipBlock.except.join(', ')}`;
  }

  private ports(r: FirewallRule): string {
    if (r.serviceGroup === undefined) return 'any protocol and port';
    const sg = this.services.get(r.serviceGroup);
    return sg === undefined ? r.serviceGroup : sg.services.map(serviceText).join(', ');
  }
}

export function serviceText(s: Service): string {
  const p = s.port;
  if (p.kind === 'all') return `${s.protocol}/any`;
  if (p.kind === 'named') return `${s.protocol}/${p.name}`;
  return `${s.protocol}/${p.start === p.end ? p.start : `${p.start}-${p.end}`}`;
}

/**
 * "spec.ingress[0].from[1]" from a rule id "<policy>/ingress/0/1";
 * "spec.egress[0].to[1].networks[2]" from a ClusterNetworkPolicy's
 * "<policy>/egress/0/1/2".
 */
function ruleField(policy: FirewallPolicy, r: FirewallRule): string {
  const [, index, peer, cidr] = r.id.slice(policy.id.length + 1).split('/');
  const peersKey = r.direction === 'ingress' ? 'from' : 'to';
  return `spec.${r.direction}[${index}]${peer === undefined ? '' : `.${peersKey}[${peer}]`}${cidr === undefined ? '' : `.networks[${cidr}]`}`;
}

/**
 * "admin ClusterNetworkPolicy X (priority 10) rule r (spec.ingress[0].from[0]; peer: …; ports: …)",
 * "NetworkPolicy ns/y spec.ingress[0] (peer: …; ports: …)".
 */
export function ruleText(r: RuleExplanation): string {
  const p = r.policy;
  const detail = `peer: ${r.peer}; ports: ${r.ports}`;
  if (p.kind === 'ClusterNetworkPolicy')
    return `${p.tier} ClusterNetworkPolicy ${p.name} (priority ${p.priority}) rule ${r.name ? `${JSON.stringify(r.name)} ` : ''}(${r.field}; ${detail})`;
  return `${p.kind} ${p.namespace}/${p.name} ${r.field} (${detail})`;
}
