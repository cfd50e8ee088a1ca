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
 * A span's hash (weir-span-v2) covers its cluster, its application policy
 * set and the multiset of its entries, an entry being an object's span key
 * and content hash:
 *
 *   element(key, hash) = SHA-256("<key> <hash>") read as a 256-bit
 *                        little-endian integer
 *   digest             = Σ element over the entries, mod 2^256
 *   span hash          = SHA-256("weir-span-v2", cluster, policy set hash,
 *                        digest), base64url
 *
 * The digest is a multiset hash in the additive form of Bellare and
 * Micciancio ("AdHash", 1997): it does not depend on the order of entries,
 * and adding, removing or replacing an entry costs one addition and/or one
 * subtraction of 256-bit numbers, so a holder of a span that changes keeps
 * its digest up to date in O(1) per changed entry (controller/store/
 * span-store.ts) and never rehashes or sorts a span.
 *
 * Why it proves sync: modelling SHA-256 as a random function, the digests of
 * two different sets of entries differ by a sum of independent uniform
 * 256-bit values with coefficients ±1, which is itself uniform: they are
 * equal with probability 2^-256. Any difference in content (an object more,
 * less or different, another policy set or cluster) is detected.
 *
 * Limits: it is a check against accidents (a bug, a stale or corrupt state,
 * another node's span), not an authenticator. An adversary free to choose
 * many entries can find two sets with equal sums (Wagner's generalized
 * birthday attack, 2002, is practical at 256 bits); a lattice hash such as
 * LtHash (Lewi et al. 2019: 1,024 16-bit lanes, 2 KiB per digest) resists
 * that, but costs ~1,000 lane additions and a 2 KiB XOF per entry, which at
 * 1,000 nodes x 3,000 entries is seconds of controller CPU, and buys nothing
 * here: the party that could construct such a span is whoever writes the
 * agent's in-force state, and it could as well report any hash it likes.
 * What an agent reports is trusted as far as the agent is; the channel's
 * authenticity is mTLS's job.
 *
 * An address group's members are a multiset of the same kind: its hash
 * covers its head (id, source, prefixes) and the sum of its members'
 * elements (SHA-256 of endpoint, addresses and named ports), so their order
 * is not part of it (no reader gives it a meaning) and a holder of a group
 * of thousands updates its hash in O(1) per member that changed.
 *
 * An object's hash covers its kind and identity (id, or namespace and name),
 * so it names its span key. Keys are Kubernetes names and ids built from
 * them: no spaces, no control characters.
 */
import * as crypto from 'node:crypto';
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
const ACTION = ['ACTION_UNSPECIFIED', 'ACTION_PASS', 'ACTION_DENY', 'ACTION_NEXT_TIER'];
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
  const tier = enumName(p.tier, TIER);
  const priority = Number(p.priority ?? 0);
  // A cluster policy's tier and priority decide its place in the policy set:
  // they are part of its content. Left out when unset (every NetworkPolicy),
  // so NetworkPolicy hashes are those of Weir before ClusterNetworkPolicy.
  const cluster = tier === 'TIER_UNSPECIFIED' && priority === 0 ? [] : [[tier, priority]];
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
      ...(r.name ? [r.name] : []),
    ]),
    ...cluster,
  ];
}

function canonicalAddressGroup(g: w.AddressGroup): unknown {
  const source = oneof(g, g.source, ['ipBlock', 'selector', 'nodeSelector']);
  return [
    'AddressGroup',
    g.id ?? '',
    source === 'ipBlock'
      ? ['ipBlock', g.ipBlock?.cidr ?? '', g.ipBlock?.except ?? []]
      : source === 'selector'
        ? ['selector', endpointSelector(g.selector)]
        : source === 'nodeSelector'
          ? ['nodes', labelSelector(g.nodeSelector)]
          : null,
    g.prefixes ?? [],
  ];
}

/**
 * A group member as its group's member digest takes it: the endpoint, its
 * addresses and its named ports (what an egress rule towards the group
 * resolves a named port against).
 */
function canonicalGroupMember(m: w.GroupMember): unknown {
  return [
    m.endpoint ?? '',
    m.ips ?? [],
    (m.ports ?? []).map((p) => [p.name ?? '', enumName(p.protocol, PROTOCOL), p.port ?? 0]),
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
    e.nodeAddresses ?? [],
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

/** SHA-256, one-shot where Node has it (20.12+: no Hash object per call). */
const oneShot = typeof crypto.hash === 'function';
const sha256 = (data: string): Buffer =>
  oneShot
    ? crypto.hash('sha256', data, 'buffer')
    : crypto.createHash('sha256').update(data).digest();
const sha256Text = (data: string): string =>
  oneShot
    ? crypto.hash('sha256', data, 'base64url')
    : crypto.createHash('sha256').update(data).digest('base64url');

const digest = (canonical: unknown): string => sha256Text(JSON.stringify(canonical));

/** Content hashes of single objects, as the span hash takes them. */
export const objectHash = {
  policy: (p: w.FirewallPolicy): string => digest(canonicalPolicy(p)),
  addressGroup: (g: w.AddressGroup): string => {
    const members = new SpanDigest();
    for (const m of g.members ?? []) members.add(groupMemberElement(m));
    return addressGroupHashOf(g, members);
  },
  serviceGroup: (g: w.ServiceGroup): string => digest(canonicalServiceGroup(g)),
  endpoint: (e: w.Endpoint): string => digest(canonicalEndpoint(e)),
  applicationPolicySet: (s: w.ApplicationPolicySet | null | undefined): string =>
    digest(canonicalPolicySet(s)),
} as const;

const LIMBS = 8;

/**
 * One entry's contribution to a span digest: SHA-256("<key> <hash>") as
 * eight little-endian 32-bit limbs, least significant first. Never mutated
 * (holders share them).
 */
export type SpanElement = Readonly<Uint32Array>;

export function spanElement(key: string, hash: string): SpanElement {
  const b = sha256(`${key} ${hash}`);
  const e = new Uint32Array(LIMBS);
  for (let i = 0; i < LIMBS; i++) e[i] = b.readUInt32LE(4 * i);
  return e;
}

/** The sum of a span's elements, mod 2^256; kept up to date as entries come and go. */
export class SpanDigest {
  private readonly limbs: Uint32Array;

  constructor(from?: SpanDigest) {
    this.limbs = from === undefined ? new Uint32Array(LIMBS) : from.limbs.slice();
  }

  add(e: SpanElement): this {
    let carry = 0;
    for (let i = 0; i < LIMBS; i++) {
      const s = this.limbs[i]! + e[i]! + carry;
      this.limbs[i] = s; // mod 2^32
      carry = s > 0xffffffff ? 1 : 0;
    }
    return this;
  }

  subtract(e: SpanElement): this {
    let borrow = 0;
    for (let i = 0; i < LIMBS; i++) {
      const s = this.limbs[i]! - e[i]! - borrow;
      this.limbs[i] = s; // mod 2^32
      borrow = s < 0 ? 1 : 0;
    }
    return this;
  }

  /** 64 hex digits, most significant first. */
  toString(): string {
    let out = '';
    for (let i = LIMBS - 1; i >= 0; i--) out += this.limbs[i]!.toString(16).padStart(8, '0');
    return out;
  }
}

/**
 * One member's contribution to its group's member digest: SHA-256 of its
 * canonical form, as a 256-bit number (as spanElement).
 */
export function groupMemberElement(m: w.GroupMember): SpanElement {
  const b = sha256(JSON.stringify(canonicalGroupMember(m)));
  const e = new Uint32Array(LIMBS);
  for (let i = 0; i < LIMBS; i++) e[i] = b.readUInt32LE(4 * i);
  return e;
}

/**
 * An address group's content hash from its head (`g`'s members are not
 * read) and the sum of its members' elements: what objectHash.addressGroup
 * computes, for a holder that keeps the sum up to date as members come,
 * change and go (controller/store/span-store.ts) instead of hashing a
 * group of thousands again for each.
 */
export function addressGroupHashOf(g: w.AddressGroup, members: SpanDigest): string {
  return digest([canonicalAddressGroup(g), members.toString()]);
}

/**
 * The span hash from its parts: the policy set's objectHash and the
 * entries' digest. O(1): what a holder of a maintained digest calls.
 */
export function spanHashOf(cluster: string, policySetHash: string, entries: SpanDigest): string {
  return sha256Text(
    `weir-span-v2\n${JSON.stringify(cluster)}\n${policySetHash}\n${entries.toString()}\n`,
  );
}

export interface SpanContent {
  readonly cluster: string;
  /** The span's application policy set; null when it has none. */
  readonly applicationPolicySet: w.ApplicationPolicySet | null | undefined;
  /** Every object of the span: [span key, objectHash of the object], in any order. */
  readonly entries: Iterable<readonly [string, string]>;
}

/**
 * The hash of a whole span, from scratch: O(entries), one SHA-256 each.
 * Two spans hash alike exactly when they hold the same content.
 */
export function spanHash(span: SpanContent): string {
  const d = new SpanDigest();
  for (const [key, hash] of span.entries) d.add(spanElement(key, hash));
  return spanHashOf(span.cluster, objectHash.applicationPolicySet(span.applicationPolicySet), d);
}

/** Elements by object, for holders of immutable objects that hash the same objects again and again. */
export type ElementMemo = WeakMap<object, SpanElement>;

interface Values<T> {
  values(): Iterable<T>;
}

/**
 * A span's objects, as a snapshot (arrays) or as an agent keeps them (maps
 * from key to object: only the values are read).
 */
export interface SpanObjects {
  readonly cluster?: string | null;
  readonly applicationPolicySet?: w.ApplicationPolicySet | null;
  readonly policies?: Values<w.FirewallPolicy> | null;
  readonly addressGroups?: Values<w.AddressGroup> | null;
  readonly serviceGroups?: Values<w.ServiceGroup> | null;
  readonly endpoints?: Values<w.Endpoint> | null;
}

/**
 * The hash of a span given by its objects (wire form, either type family):
 * O(objects) additions, plus an object hash and an element for each object
 * `memo` does not already hold. A memo is only sound for objects that are
 * never mutated once hashed.
 */
export function snapshotHash(s: SpanObjects, memo?: ElementMemo): string {
  const d = new SpanDigest();
  const each = <T extends object>(
    objects: Values<T> | null | undefined,
    key: (o: T) => string,
    hash: (o: T) => string,
  ) => {
    for (const o of objects?.values() ?? []) {
      let e = memo?.get(o);
      if (e === undefined) {
        e = spanElement(key(o), hash(o));
        memo?.set(o, e);
      }
      d.add(e);
    }
  };
  each(s.policies, spanKey.policy, objectHash.policy);
  each(s.addressGroups, spanKey.addressGroup, objectHash.addressGroup);
  each(s.serviceGroups, spanKey.serviceGroup, objectHash.serviceGroup);
  each(s.endpoints, spanKey.endpoint, objectHash.endpoint);
  return spanHashOf(s.cluster ?? '', objectHash.applicationPolicySet(s.applicationPolicySet), d);
}
