/**
 * Converters between the firewall object model (shared/policy/types.ts) and
 * its wire form (proto/weir/v1/policy.proto, generated types). The only place
 * that knows both; everything else works with one or the other.
 */
import { ValidationError, type Issue } from '../errors.js';
import { tryParseIp } from '../net/ip.js';
import type * as w from '../generated/weir/v1/index.js';
import type {
  AddressGroup,
  Direction,
  Endpoint,
  EndpointSelector,
  FirewallPolicy,
  FirewallRule,
  GroupMember,
  NamedPort,
  LabelSelector,
  Operator,
  PolicySnapshot,
  Protocol,
  RuleEndpoint,
  Service,
  ServiceGroup,
  Tier,
  ClusterTier,
  RuleAction,
} from '../policy/types.js';

const PROTOCOL_TO_WIRE = {
  TCP: 'PROTOCOL_TCP',
  UDP: 'PROTOCOL_UDP',
  SCTP: 'PROTOCOL_SCTP',
} as const;
const OPERATOR_TO_WIRE = {
  In: 'OPERATOR_IN',
  NotIn: 'OPERATOR_NOT_IN',
  Exists: 'OPERATOR_EXISTS',
  DoesNotExist: 'OPERATOR_DOES_NOT_EXIST',
} as const;
const DIRECTION_TO_WIRE = { ingress: 'DIRECTION_INGRESS', egress: 'DIRECTION_EGRESS' } as const;
const TIER_TO_WIRE = {
  admin: 'TIER_ADMIN',
  namespace: 'TIER_NAMESPACE',
  baseline: 'TIER_BASELINE',
} as const;
const ACTION_TO_WIRE = {
  pass: 'ACTION_PASS',
  deny: 'ACTION_DENY',
  'next-tier': 'ACTION_NEXT_TIER',
} as const;
const CLUSTER_TIER_TO_WIRE = { admin: 'TIER_ADMIN', baseline: 'TIER_BASELINE' } as const;

function invert<K extends string, V extends string>(
  m: Readonly<Record<K, V>>,
): ReadonlyMap<string, K> {
  return new Map(Object.entries(m).map(([k, v]) => [v as string, k as K]));
}
const PROTOCOL_FROM_WIRE = invert<Protocol, string>(PROTOCOL_TO_WIRE);
const OPERATOR_FROM_WIRE = invert<Operator, string>(OPERATOR_TO_WIRE);
const DIRECTION_FROM_WIRE = invert<Direction, string>(DIRECTION_TO_WIRE);
const TIER_FROM_WIRE = invert<Tier, string>(TIER_TO_WIRE);
const ACTION_FROM_WIRE = invert<RuleAction, string>(ACTION_TO_WIRE);
const CLUSTER_TIER_FROM_WIRE = invert<ClusterTier, string>(CLUSTER_TIER_TO_WIRE);
/** The bound of ClusterNetworkPolicy spec.priority. */
const MAX_PRIORITY = 1000;

// --- to the wire -------------------------------------------------------------

function selectorToWire(s: LabelSelector): w.LabelSelector {
  return {
    requirements: s.requirements.map((r) => ({
      key: r.key,
      operator: OPERATOR_TO_WIRE[r.operator],
      values: [...r.values],
    })),
  };
}

function endpointSelectorToWire(s: EndpointSelector): w.EndpointSelector {
  const pods = selectorToWire(s.pods);
  return 'name' in s.namespace
    ? { namespaceName: s.namespace.name, podSelector: pods }
    : { namespaceSelector: selectorToWire(s.namespace.selector), podSelector: pods };
}

function ruleEndpointToWire(e: RuleEndpoint): w.RuleEndpoint {
  return 'any' in e ? { any: true } : { addressGroup: e.addressGroup };
}

function serviceToWire(s: Service): w.Service {
  const protocol = PROTOCOL_TO_WIRE[s.protocol];
  if (s.port.kind === 'range') return { protocol, range: { start: s.port.start, end: s.port.end } };
  if (s.port.kind === 'named') return { protocol, namedPort: s.port.name };
  return { protocol };
}

export function endpointToWire(e: Endpoint): w.Endpoint {
  return {
    cluster: e.cluster,
    namespace: e.namespace,
    name: e.name,
    uid: e.uid,
    node: e.node,
    ips: [...e.ips],
    labels: { ...e.labels },
    namespaceLabels: { ...e.namespaceLabels },
    ports: e.ports.map(namedPortToWire),
    nodeAddresses: [...e.nodeAddresses],
  };
}

function namedPortToWire(p: NamedPort): w.NamedPort {
  return { name: p.name, protocol: PROTOCOL_TO_WIRE[p.protocol], port: p.port };
}

export function groupMemberToWire(m: GroupMember): w.GroupMember {
  return { endpoint: m.endpoint, ips: [...m.ips], ports: m.ports.map(namedPortToWire) };
}

export function addressGroupToWire(g: AddressGroup): w.AddressGroup {
  if (g.kind === 'nodes')
    return {
      id: g.id,
      nodeSelector: selectorToWire(g.nodeSelector),
      members: g.members.map(groupMemberToWire),
    };
  if (g.kind === 'ipBlock')
    return {
      id: g.id,
      ipBlock: { cidr: g.ipBlock.cidr, except: [...g.ipBlock.except] },
      prefixes: [...g.prefixes],
    };
  return {
    id: g.id,
    selector: endpointSelectorToWire(g.selector),
    members: g.members.map(groupMemberToWire),
  };
}

export function serviceGroupToWire(g: ServiceGroup): w.ServiceGroup {
  return { id: g.id, services: g.services.map(serviceToWire) };
}

function ruleToWire(r: FirewallRule): w.FirewallRule {
  return {
    id: r.id,
    direction: DIRECTION_TO_WIRE[r.direction],
    endpoint1: ruleEndpointToWire(r.endpoint1),
    endpoint2: ruleEndpointToWire(r.endpoint2),
    serviceGroup: r.serviceGroup ?? '',
    action: ACTION_TO_WIRE[r.action],
    name: r.name ?? '',
  };
}

export function firewallPolicyToWire(p: FirewallPolicy): w.FirewallPolicy {
  return {
    id: p.id,
    kind: p.kind,
    namespace: p.namespace,
    name: p.name,
    appliedTo: p.appliedTo,
    ingressIsolation: p.ingressIsolation,
    egressIsolation: p.egressIsolation,
    rules: p.rules.map(ruleToWire),
    ...(p.tier === undefined
      ? {}
      : { tier: CLUSTER_TIER_TO_WIRE[p.tier], priority: p.priority ?? 0 }),
  };
}

export function applicationPolicySetToWire(
  s: PolicySnapshot['applicationPolicySet'],
): w.ApplicationPolicySet {
  return {
    id: s.id,
    cluster: s.cluster,
    tiers: s.tiers.map((t) => ({ tier: TIER_TO_WIRE[t.tier], policies: [...t.policies] })),
  };
}

export function snapshotToWire(s: PolicySnapshot): w.PolicySnapshot {
  return {
    cluster: s.cluster,
    applicationPolicySet: applicationPolicySetToWire(s.applicationPolicySet),
    policies: s.policies.map(firewallPolicyToWire),
    addressGroups: s.addressGroups.map(addressGroupToWire),
    serviceGroups: s.serviceGroups.map(serviceGroupToWire),
    endpoints: s.endpoints.map(endpointToWire),
  };
}

// --- from the wire -----------------------------------------------------------

/** Reads a decoded snapshot; anything a correct controller never sends is reported, all at once. */
export function snapshotFromWire(s: w.PolicySnapshot__Output): PolicySnapshot {
  const issues: Issue[] = [];
  const bad = (object: string, field: string, message: string) =>
    issues.push({ source: 'wire', object, field, message });
  function pick<T>(m: ReadonlyMap<string, T>, v: unknown, object: string, field: string): T {
    const r = m.get(String(v));
    if (r === undefined) bad(object, field, `unexpected value ${JSON.stringify(v)}`);
    return r as T;
  }
  const selector = (
    x: w.LabelSelector__Output | null | undefined,
    object: string,
    field: string,
  ): LabelSelector => ({
    requirements: (x?.requirements ?? []).map((r, i) => ({
      key: r.key,
      operator: pick(
        OPERATOR_FROM_WIRE,
        r.operator,
        object,
        `${field}.requirements[${i}].operator`,
      ),
      values: r.values,
    })),
  });
  const ruleEndpoint = (
    x: w.RuleEndpoint__Output | null,
    object: string,
    field: string,
  ): RuleEndpoint => {
    if (x?.match === 'any') return { any: true };
    if (x?.match === 'addressGroup' && x.addressGroup) return { addressGroup: x.addressGroup };
    bad(object, field, 'must be any or an address group');
    return { any: true };
  };

  const addresses = (list: readonly string[], object: string, field: string): string[] => {
    list.forEach((a, i) => {
      if (tryParseIp(a) === undefined)
        bad(object, `${field}[${i}]`, `${JSON.stringify(a)} is not an IP address`);
    });
    return [...list];
  };
  const namedPorts = (
    list: readonly w.NamedPort__Output[],
    object: string,
    field: string,
  ): NamedPort[] =>
    list.map((p, i) => ({
      name: p.name,
      protocol: pick(PROTOCOL_FROM_WIRE, p.protocol, object, `${field}[${i}].protocol`),
      port: p.port,
    }));
  const addressGroups = s.addressGroups.map((g): AddressGroup => {
    const object = `AddressGroup ${g.id}`;
    if (g.source === 'ipBlock' && g.ipBlock) {
      return {
        id: g.id,
        kind: 'ipBlock',
        ipBlock: { cidr: g.ipBlock.cidr, except: g.ipBlock.except },
        prefixes: g.prefixes,
      };
    }
    if (g.source === 'nodeSelector' && g.nodeSelector) {
      return {
        id: g.id,
        kind: 'nodes',
        nodeSelector: selector(g.nodeSelector, object, 'nodeSelector'),
        members: g.members.map((m) => ({
          endpoint: m.endpoint,
          ips: addresses(m.ips, object, 'members.ips'),
          ports: [],
        })),
      };
    }
    if (g.source !== 'selector' || !g.selector)
      bad(object, 'source', 'must be an ipBlock, a selector or a node selector');
    const sel = g.selector;
    const namespace: EndpointSelector['namespace'] =
      sel?.namespace === 'namespaceName'
        ? { name: sel.namespaceName ?? '' }
        : { selector: selector(sel?.namespaceSelector, object, 'selector.namespaceSelector') };
    return {
      id: g.id,
      kind: 'selector',
      selector: { namespace, pods: selector(sel?.podSelector, object, 'selector.podSelector') },
      members: g.members.map((m, i) => ({
        endpoint: m.endpoint,
        ips: m.ips,
        ports: namedPorts(m.ports ?? [], object, `members[${i}].ports`),
      })),
    };
  });

  const serviceGroups = s.serviceGroups.map(
    (g): ServiceGroup => ({
      id: g.id,
      services: g.services.map((x, i) => {
        const protocol = pick(
          PROTOCOL_FROM_WIRE,
          x.protocol,
          `ServiceGroup ${g.id}`,
          `services[${i}].protocol`,
        );
        if (x.port === 'range' && x.range)
          return { protocol, port: { kind: 'range', start: x.range.start, end: x.range.end } };
        if (x.port === 'namedPort' && x.namedPort)
          return { protocol, port: { kind: 'named', name: x.namedPort } };
        return { protocol, port: { kind: 'all' } };
      }),
    }),
  );

  const policies = s.policies.map((p): FirewallPolicy => {
    const object = `FirewallPolicy ${p.id}`;
    let cluster: { tier: ClusterTier; priority: number } | undefined;
    if (p.kind === 'ClusterNetworkPolicy') {
      const tier = pick(CLUSTER_TIER_FROM_WIRE, p.tier, object, 'tier');
      if (p.priority > MAX_PRIORITY)
        bad(object, 'priority', `${p.priority} is above ${MAX_PRIORITY}`);
      cluster = { tier, priority: p.priority };
    } else {
      if (p.kind !== 'NetworkPolicy')
        bad(object, 'kind', `unexpected value ${JSON.stringify(p.kind)}`);
      if (p.tier !== 'TIER_UNSPECIFIED' || p.priority !== 0)
        bad(object, 'tier', 'a NetworkPolicy has no tier or priority of its own');
    }
    return {
      ...(cluster ?? {}),
      id: p.id,
      kind: p.kind === 'ClusterNetworkPolicy' ? 'ClusterNetworkPolicy' : 'NetworkPolicy',
      namespace: p.namespace,
      name: p.name,
      appliedTo: p.appliedTo,
      ingressIsolation: p.ingressIsolation,
      egressIsolation: p.egressIsolation,
      rules: p.rules.map((r, i) => ({
        id: r.id,
        direction: pick(DIRECTION_FROM_WIRE, r.direction, object, `rules[${i}].direction`),
        endpoint1: ruleEndpoint(r.endpoint1, object, `rules[${i}].endpoint1`),
        endpoint2: ruleEndpoint(r.endpoint2, object, `rules[${i}].endpoint2`),
        ...(r.serviceGroup ? { serviceGroup: r.serviceGroup } : {}),
        action: pick(ACTION_FROM_WIRE, r.action, object, `rules[${i}].action`),
        ...(r.name ? { name: r.name } : {}),
      })),
    };
  });

  const endpoints = s.endpoints.map((e): Endpoint => {
    const object = `Endpoint ${e.namespace}/${e.name}`;
    return {
      cluster: e.cluster,
      namespace: e.namespace,
      name: e.name,
      uid: e.uid,
      node: e.node,
      ips: addresses(e.ips, object, 'ips'),
      labels: e.labels,
      namespaceLabels: e.namespaceLabels,
      ports: namedPorts(e.ports, object, 'ports'),
      nodeAddresses: addresses(e.nodeAddresses ?? [], object, 'nodeAddresses'),
    };
  });

  const aps = s.applicationPolicySet;
  const snapshot: PolicySnapshot = {
    cluster: s.cluster,
    applicationPolicySet: {
      id: aps?.id ?? '',
      cluster: aps?.cluster ?? s.cluster,
      tiers: (aps?.tiers ?? []).map((t, i) => ({
        tier: pick(TIER_FROM_WIRE, t.tier, 'ApplicationPolicySet', `tiers[${i}].tier`),
        policies: t.policies,
      })),
    },
    policies,
    addressGroups,
    serviceGroups,
    endpoints,
  };
  if (issues.length > 0) throw new ValidationError(issues);
  return snapshot;
}
