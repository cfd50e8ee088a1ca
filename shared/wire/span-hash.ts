/**
 * Content hashes of span objects and of whole spans, computed from the wire
 * form (proto/weir/v1/policy.proto) so that the controller and an agent
 * compute the same value independently: the controller from the span it
 * computed for a node, the agent from the span it has in force. "In sync" is
 * the equality of the two.
 *
 * Canonical: a hash depends only on what the message means on the wire.
 * - Maps (labels) are taken sorted by key: their wire order is unspecified.
 * - Repeated fields keep their order: it is part of the message.
 * - A scalar left out (input form) equals its default (decoded form); enums
 *   given by number equal the same enum given by name.
 * - A oneof is read from its discriminator when present, otherwise from the
 *   member that is set; an absent LabelSelector is the empty one (every
 *   reader treats them alike).
 * Both the generated input types (what the controller builds) and the
 * decoded `__Output` types (what an agent holds) are accepted.
 *
 * A span's hash covers its cluster, its application policy set and every
 * object, each named by its span key; objects are taken in key order, so the
 * hash is independent of the order in which they were added. Keys are
 * Kubernetes names and ids built from them: no spaces, no control
 * characters.
 */
import { createHash } from 'node:crypto';
import type * as w from '../generated/weir/v1/index.js';

/** Span keys: "p:<policy id>", "g:<address group id>", "s:<service group id>", "e:<namespace/name>". */
export const spanKey = {
  policy: (p: w.FirewallPolicy): string => `p:${p.id ?? ''}`,
  addressGroup: (g: w.AddressGroup): string => `g:${g.id ?? ''}`,
  serviceGroup: (g: w.ServiceGroup): string => `s:${g.id ?? ''}`,
  endpoint: (e: w.Endpoint): string => `e:${e.namespace ?? ''}/${e.name ?? ''}`,
} as const;

const PROTOCOL: Readonly<Record<number, string>> = {
  0: 'PROTOCOL_UNSPECIFIED',
  1: 'PROTOCOL_ICMP',
  6: 'PROTOCOL_TCP',
  17: 'PROTOCOL_UDP',
  58: 'PROTOCOL_ICMPV6',
  132: 'PROTOCOL_SCTP',
};
const OPERATOR = [
  'OPERATOR_UNSPECIFIED',
  'OPERATOR_IN',
  'OPERATOR_NOT_IN',
  'OPERATOR_EXISTS',
  'OPERATOR_DOES_NOT_EXIST',
];
const DIRECTION = ['DIRECTION_UNSPECIFIED', 'DIRECTION_INGRESS', 'DIRECTION_EGRESS'];
const ACTION = ['ACTION_UNSPECIFIED', 'ACTION_PASS', 'ACTION_DENY'];
const TIER = ['TIER_UNSPECIFIED', 'TIER_ADMIN', 'TIER_NAMESPACE', 'TIER_BASELINE'];

function enumName(
  v: string | number | undefined,
  names: Readonly<Record<number, string>>,
): string | number {
  if (v === undefined) return names[0]!;
  if (typeof v === 'number') return names[v] ?? v;
  return v;
}

function oneof<K extends string>(
  m: Partial<Record<K, unknown>>,
  discriminator: string | undefined,
  members: readonly K[],
): K | undefined {
  if (discriminator !== undefined && (members as readonly string[]).includes(discriminator))
    return discriminator as K;
  return members.find((k) => m[k] !== undefined && m[k] !== null);
}

const sortedEntries = (m: Readonly<Record<string, string>> | undefined) =>
  Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

function labelSelector(s: w.LabelSelector | null | undefined): unknown {
  return (s?.requirements ?? []).map((r) => [
    r.key ?? '',
    enumName(r.operator, OPERATOR),
    r.values ?? [],
  ]);
}

function endpointSelector(s: w.EndpointSelector | null | undefined): unknown {
  if (s === null || s === undefined) return null;
  const ns =
    oneof(s, s.namespace, ['namespaceName', 'namespaceSelector']) === 'namespaceName'
      ? ['name', s.namespaceName ?? '']
      : ['selector', labelSelector(s.namespaceSelector)];
  return [s.cluster ?? '', ns, labelSelector(s.podSelector)];
}

function ruleEndpoint(e: w.RuleEndpoint | null | undefined): unknown {
  if (e === null || e === undefined) return null;
  const m = oneof(e, e.match, ['any', 'addressGroup']);
  if (m === 'any') return ['any', e.any ?? false];
  if (m === 'addressGroup') return ['group', e.addressGroup ?? ''];
  return null;
}

function canonicalPolicy(p: w.FirewallPolicy): unknown {
  return [
    'FirewallPolicy',
    p.id ?? '',
    p.kind ?? '',
    p.namespace ?? '',
    p.name ?? '',
    p.appliedTo ?? '',
    p.ingressIsolation ?? false,
    p.egressIsolation ?? false,
    (p.rules ?? []).map((r) => [
      r.id ?? '',
      enumName(r.direction, DIRECTION),
      ruleEndpoint(r.endpoint1),
      ruleEndpoint(r.endpoint2),
      r.serviceGroup ?? '',
      enumName(r.action, ACTION),
    ]),
  ];
}

function canonicalAddressGroup(g: w.AddressGroup): unknown {
  const source = oneof(g, g.source, ['ipBlock', 'selector']);
  return [
    'AddressGroup',
    g.id ?? '',
    source === 'ipBlock'
      ? ['ipBlock', g.ipBlock?.cidr ?? '', g.ipBlock?.except ?? []]
      : source === 'selector'
        ? ['selector', endpointSelector(g.selector)]
        : null,
    g.prefixes ?? [],
    (g.members ?? []).map((m) => [m.endpoint ?? '', m.ips ?? []]),
  ];
}

function canonicalServiceGroup(g: w.ServiceGroup): unknown {
  return [
    'ServiceGroup',
    g.id ?? '',
    (g.services ?? []).map((s) => {
      const port = oneof(s, s.port, ['range', 'namedPort']);
      return [
        enumName(s.protocol, PROTOCOL),
        port === 'range'
          ? ['range', s.range?.start ?? 0, s.range?.end ?? 0]
          : port === 'namedPort'
            ? ['named', s.namedPort ?? '']
            : ['all'],
      ];
    }),
  ];
}

function canonicalEndpoint(e: w.Endpoint): unknown {
  return [
    'Endpoint',
    e.cluster ?? '',
    e.namespace ?? '',
    e.name ?? '',
    e.uid ?? '',
    e.node ?? '',
    e.ips ?? [],
    sortedEntries(e.labels),
    sortedEntries(e.namespaceLabels),
    (e.ports ?? []).map((p) => [p.name ?? '', enumName(p.protocol, PROTOCOL), p.port ?? 0]),
  ];
}

function canonicalPolicySet(s: w.ApplicationPolicySet | null | undefined): unknown {
  if (s === null || s === undefined) return null;
  return [
    'ApplicationPolicySet',
    s.id ?? '',
    s.cluster ?? '',
    (s.tiers ?? []).map((t) => [enumName(t.tier, TIER), t.policies ?? []]),
  ];
}

const digest = (canonical: unknown) =>
  createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');

/** Content hashes of single objects, as the span hash takes them. */
export const objectHash = {
  policy: (p: w.FirewallPolicy): string => digest(canonicalPolicy(p)),
  addressGroup: (g: w.AddressGroup): string => digest(canonicalAddressGroup(g)),
  serviceGroup: (g: w.ServiceGroup): string => digest(canonicalServiceGroup(g)),
  endpoint: (e: w.Endpoint): string => digest(canonicalEndpoint(e)),
  applicationPolicySet: (s: w.ApplicationPolicySet | null | undefined): string =>
    digest(canonicalPolicySet(s)),
} as const;

export interface SpanContent {
  readonly cluster: string;
  /** The span's application policy set; null when it has none. */
  readonly applicationPolicySet: w.ApplicationPolicySet | null | undefined;
  /** Every object of the span: [span key, objectHash of the object], in any order. */
  readonly entries: Iterable<readonly [string, string]>;
}

/** The hash of a whole span. Two spans hash alike exactly when they hold the same content. */
export function spanHash(span: SpanContent): string {
  // One line per object, "key hash", in code-unit order of the lines (keys
  // hold no spaces or control characters, so this is key order).
  const lines: string[] = [];
  for (const [key, hash] of span.entries) lines.push(`${key} ${hash}\n`);
  lines.sort();
  return createHash('sha256')
    .update(
      `weir-span-v1\n${JSON.stringify(span.cluster)}\n${objectHash.applicationPolicySet(span.applicationPolicySet)}\n`,
    )
    .update(lines.join(''))
    .digest('base64url');
}

/**
 * The hash of a span given as a snapshot (wire form, either type family).
 * `memo` may cache object hashes by object identity, for holders of
 * immutable objects that hash the same objects again and again.
 */
export function snapshotHash(s: w.PolicySnapshot, memo?: WeakMap<object, string>): string {
  const cached = <T extends object>(o: T, f: (o: T) => string): string => {
    if (memo === undefined) return f(o);
    let h = memo.get(o);
    if (h === undefined) {
      h = f(o);
      memo.set(o, h);
    }
    return h;
  };
  const entries: Array<readonly [string, string]> = [];
  for (const p of s.policies ?? []) entries.push([spanKey.policy(p), cached(p, objectHash.policy)]);
  for (const g of s.addressGroups ?? [])
    entries.push([spanKey.addressGroup(g), cached(g, objectHash.addressGroup)]);
  for (const g of s.serviceGroups ?? [])
    entries.push([spanKey.serviceGroup(g), cached(g, objectHash.serviceGroup)]);
  for (const e of s.endpoints ?? [])
    entries.push([spanKey.endpoint(e), cached(e, objectHash.endpoint)]);
  return spanHash({
    cluster: s.cluster ?? '',
    applicationPolicySet: s.applicationPolicySet,
    entries,
  });
}
