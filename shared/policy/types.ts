/**
 * The firewall object model as the code works with it (the wire form is in
 * proto/weir/v1/policy.proto; converters are in shared/wire/). Contrail's
 * vocabulary: endpoints carry labels (tags), address groups and service groups
 * are referenced by rules, rules live in firewall policies, policies sit in
 * tiers of the one application policy set.
 *
 * Everything here is immutable data. Ids are stable strings derived from the
 * object's origin and prefixed with the cluster name.
 */

/** The protocols NetworkPolicy speaks. Absent means TCP (Kubernetes' default). */
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];
/** IANA numbers, as packets carry them. */
export const PROTOCOL_NUMBER: Readonly<Record<Protocol, number>> = { TCP: 6, UDP: 17, SCTP: 132 };

export type Labels = Readonly<Record<string, string>>;

export type Operator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelRequirement {
  readonly key: string;
  readonly operator: Operator;
  /** Sorted and unique; empty for Exists and DoesNotExist. */
  readonly values: readonly string[];
}

/** All requirements must hold; none selects everything. */
export interface LabelSelector {
  /** Sorted by key, operator, values: equal selectors have equal lists. */
  readonly requirements: readonly LabelRequirement[];
}

export type NamespaceMatch =
  /** Exactly this namespace. */
  | { readonly name: string }
  /** Namespaces whose labels match (an empty selector: all of them). */
  | { readonly selector: LabelSelector };

/** A tag match: endpoints by namespace and pod labels (two separate spaces). */
export interface EndpointSelector {
  readonly namespace: NamespaceMatch;
  readonly pods: LabelSelector;
}

export interface NamedPort {
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
}

/** One running pod with addresses. */
export interface Endpoint {
  readonly cluster: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** Empty when unscheduled (offline analysis). */
  readonly node: string;
  /** Primary first. */
  readonly ips: readonly string[];
  readonly labels: Labels;
  readonly namespaceLabels: Labels;
  readonly ports: readonly NamedPort[];
  /**
   * The addresses of the node the pod runs on (its Node's InternalIP and
   * ExternalIP addresses). Traffic between the pod and these addresses is
   * not subject to NetworkPolicy (kubelet probes come from them); traffic
   * with another node's addresses is. Empty when the node or its Node
   * object is unknown: then nothing is exempt.
   */
  readonly nodeAddresses: readonly string[];
}

export function endpointKey(e: { namespace: string; name: string }): string {
  return `${e.namespace}/${e.name}`;
}

export interface GroupMember {
  /** endpointKey() of the member. */
  readonly endpoint: string;
  readonly ips: readonly string[];
  /**
   * The member's named container ports (empty for Nodes): what an egress
   * rule whose peer is this group resolves a named port against, so that a
   * node need not hold every destination pod to resolve it.
   */
  readonly ports: readonly NamedPort[];
}

export interface IpBlock {
  /** Normalised: no host bits. */
  readonly cidr: string;
  /** Normalised, each strictly inside `cidr`. */
  readonly except: readonly string[];
}

export type AddressGroup =
  | {
      readonly id: string;
      readonly kind: 'ipBlock';
      readonly ipBlock: IpBlock;
      /** `cidr` minus every `except`, as disjoint sorted prefixes. */
      readonly prefixes: readonly string[];
    }
  | {
      readonly id: string;
      readonly kind: 'selector';
      readonly selector: EndpointSelector;
      /** The endpoints the selector matches now, sorted by key. */
      readonly members: readonly GroupMember[];
    }
  | {
      readonly id: string;
      /** A ClusterNetworkPolicy `nodes` peer: Nodes by their labels. */
      readonly kind: 'nodes';
      /** An empty selector is every Node. */
      readonly nodeSelector: LabelSelector;
      /** The Nodes it matches now, sorted by name: `endpoint` is the Node's name, `ips` its addresses. */
      readonly members: readonly GroupMember[];
    };

export type ServicePort =
  | { readonly kind: 'all' }
  | { readonly kind: 'range'; readonly start: number; readonly end: number }
  | { readonly kind: 'named'; readonly name: string };

export interface Service {
  readonly protocol: Protocol;
  readonly port: ServicePort;
}

export interface ServiceGroup {
  readonly id: string;
  readonly services: readonly Service[];
}

export type Direction = 'ingress' | 'egress';
export const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

export type RuleEndpoint = { readonly any: true } | { readonly addressGroup: string };

/**
 * Contrail's rule actions plus the tier hand-off of ClusterNetworkPolicy:
 * 'pass' allows (Contrail's word; NetworkPolicy rules and CNP `Accept`),
 * 'deny' denies (CNP `Deny`), 'next-tier' ends the tier and lets the next
 * one decide (CNP `Pass`). The first rule of a tier that matches decides.
 */
export type RuleAction = 'pass' | 'deny' | 'next-tier';
export const RULE_ACTIONS: readonly RuleAction[] = ['pass', 'deny', 'next-tier'];

export interface FirewallRule {
  /** "<policy id>/<direction>/<rule index>[/<peer index>]". */
  readonly id: string;
  readonly direction: Direction;
  /** The policy's applied-to group. */
  readonly endpoint1: RuleEndpoint;
  /** The peer. */
  readonly endpoint2: RuleEndpoint;
  /** Absent: every protocol and port. */
  readonly serviceGroup?: string;
  readonly action: RuleAction;
  /** ClusterNetworkPolicy only: the rule's `name`, when it has one. */
  readonly name?: string;
}

export type Tier = 'admin' | 'namespace' | 'baseline';
/** The tiers, in evaluation order. */
export const TIERS: readonly Tier[] = ['admin', 'namespace', 'baseline'];
/** The tiers a ClusterNetworkPolicy can be in. */
export type ClusterTier = 'admin' | 'baseline';

export type PolicyKind = 'NetworkPolicy' | 'ClusterNetworkPolicy';

export interface FirewallPolicy {
  /** "<cluster>/np/<namespace>/<name>", or "<cluster>/cnp/<name>" for a ClusterNetworkPolicy. */
  readonly id: string;
  readonly kind: PolicyKind;
  /** Empty for a ClusterNetworkPolicy. */
  readonly namespace: string;
  readonly name: string;
  /** AddressGroup id of the endpoints the policy selects. */
  readonly appliedTo: string;
  /**
   * NetworkPolicy: whether it isolates its endpoints for the direction.
   * ClusterNetworkPolicy: whether it has rules for it (it never isolates).
   */
  readonly ingressIsolation: boolean;
  readonly egressIsolation: boolean;
  readonly rules: readonly FirewallRule[];
  /** ClusterNetworkPolicy only: its tier. Absent for a NetworkPolicy (tier 'namespace'). */
  readonly tier?: ClusterTier;
  /** ClusterNetworkPolicy only: spec.priority, 0..1000, lower first. */
  readonly priority?: number;
}

/** The tier a policy belongs to. */
export function tierOf(p: FirewallPolicy): Tier {
  return p.tier ?? 'namespace';
}

/**
 * The order of policies inside a cluster tier: by priority, then by name
 * (the tie-break between policies of one tier at one priority; upstream
 * leaves it to the implementation, Weir makes it deterministic and warns
 * about it), then by id.
 */
export function clusterPolicyOrder(a: FirewallPolicy, b: FirewallPolicy): number {
  const pa = a.priority ?? 0;
  const pb = b.priority ?? 0;
  if (pa !== pb) return pa - pb;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export interface ApplicationPolicySet {
  readonly id: string;
  readonly cluster: string;
  readonly tiers: readonly { readonly tier: Tier; readonly policies: readonly string[] }[];
}

/**
 * What rule tables are compiled from: the whole cluster (offline analysis) or
 * one node's span (an agent).
 */
export interface PolicySnapshot {
  readonly cluster: string;
  readonly applicationPolicySet: ApplicationPolicySet;
  readonly policies: readonly FirewallPolicy[];
  readonly addressGroups: readonly AddressGroup[];
  readonly serviceGroups: readonly ServiceGroup[];
  /** Endpoints to compile tables for, and those whose named ports egress rules resolve against. */
  readonly endpoints: readonly Endpoint[];
}
