/**
 * Explanations of verdicts, for people (`weirctl analyze probe`, `weirctl
 * explain`) and scripts (-o json). Built from a Verdict the evaluator returned
 * and the snapshot the tables came from; never a second evaluation.
 */
import { InternalError } from '../errors.js';
import { formatIp, type Ip } from '../net/ip.js';
import type { CompiledEndpoint, DirectionDecision, RuleTables, Verdict } from './rule-tables.js';
import { endpointSelectorText } from './selector.js';
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
}

export interface RuleExplanation {
  readonly id: string;
  readonly policy: PolicyRef;
  /** Where the rule is in its policy, as a Kubernetes field path: "spec.ingress[0].from[1]". */
  readonly field: string;
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
   * The tier that gave the verdict: "namespace" (NetworkPolicy), "default"
   * (nothing selects the pod) or "node" (the peer is the pod's own node,
   * which NetworkPolicy does not restrict).
   */
  readonly tier?: string;
  /** The policies that select the endpoint for this direction. */
  readonly policies: readonly PolicyRef[];
  /** The rule that allowed the traffic. */
  readonly rule?: RuleExplanation;
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
    const policies = (direction === 'ingress' ? e.ingress : e.egress).policies.map((id) =>
      this.policyRef(id),
    );
    const base = {
      direction,
      enforced: true,
      endpoint: e.key,
      allowed: dec.allowed,
      tier: dec.tier,
      policies,
    };
    if (dec.tier === 'default')
      return { ...base, reason: `no policy selects ${e.key} for ${direction}: allowed by default` };
    if (dec.tier === 'node')
      return {
        ...base,
        reason: `traffic between a pod and its own node is not subject to NetworkPolicy: ${peer} is an address of node ${e.endpoint.node}, where ${e.key} runs`,
      };
    const names = policies.map((p) => `${p.namespace}/${p.name}`).join(', ');
    if (dec.rule === undefined)
      return { ...base, reason: `isolated for ${direction} by ${names}; no rule matched` };
    const rule = this.rule(dec.rule.id, dec.rule.policy);
    return {
      ...base,
      rule,
      reason: `allowed by ${rule.policy.kind} ${rule.policy.namespace}/${rule.policy.name} ${rule.field} (peer: ${rule.peer}; ports: ${rule.ports})`,
    };
  }

  policyRef(id: string): PolicyRef {
    const p = this.tables.policies.get(id);
    return p
      ? { id, kind: p.kind, namespace: p.namespace, name: p.name }
      : { id, kind: 'unknown', namespace: '', name: id };
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
      peer: this.peer(r),
      ports: this.ports(r),
    };
  }

  private peer(r: FirewallRule): string {
    if ('any' in r.endpoint2) return 'any address';
    const g = this.groups.get(r.endpoint2.addressGroup);
    if (g === undefined) return r.endpoint2.addressGroup;
    if (g.kind === 'selector') return endpointSelectorText(g.selector);
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

/** "spec.ingress[0].from[1]" from a rule id "<policy>/ingress/0/1". */
function ruleField(policy: FirewallPolicy, r: FirewallRule): string {
  const [, index, peer] = r.id.slice(policy.id.length + 1).split('/');
  const peersKey = r.direction === 'ingress' ? 'from' : 'to';
  return `spec.${r.direction}[${index}]${peer === undefined ? '' : `.${peersKey}[${peer}]`}`;
}
