/**
 * ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2) as Weir reads
 * them: cluster-scoped policies of the Admin and Baseline tiers.
 *
 * Validation is what the upstream CRD does (its OpenAPI schema and its CEL
 * rules, deploy/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml,
 * network-policy-api v0.2.0 experimental channel), so a manifest that the
 * API server would refuse is refused here too, with every problem named by
 * object and field:
 *
 *   spec.tier               required, "Admin" | "Baseline"
 *   spec.priority           required, integer 0..1000
 *   spec.subject            required, exactly one of namespaces, pods
 *   spec.ingress/egress     at most 25 rules each
 *   rule.name               at most 100 characters
 *   rule.action             required, "Accept" | "Deny" | "Pass"
 *   rule.from/to            required, 1..25 peers, each exactly one field
 *   rule.protocols          1..25 when present, each exactly one of tcp,
 *                           udp, sctp, destinationNamedPort; tcp/udp/sctp
 *                           need destinationPort: exactly one of number
 *                           (1..65535) or range (start < end, both 1..65535)
 *   egress peer networks    1..25 CIDRs, no repeats (listType set), each at
 *                           most 43 characters and a CIDR (CEL isCIDR)
 *   egress rule (CEL)       no destinationNamedPort with a networks, nodes
 *                           or domainNames peer
 *
 * One thing the CRD accepts is refused: `domainNames` peers (experimental,
 * FQDN policy), which Weir cannot enforce; refusing the object keeps its
 * last valid version in force rather than enforcing part of it.
 */
import { parseCidr } from '../../shared/net/ip.js';
import { EVERYTHING } from '../../shared/policy/selector.js';
import {
  PROTOCOLS,
  type ClusterTier,
  type LabelSelector,
  type Labels,
  type Protocol,
  type Service,
} from '../../shared/policy/types.js';
import { describe, type Reader } from './common.js';

/** The limits of the CRD schema. */
export const CNP_LIMITS = {
  maxPriority: 1000,
  maxRules: 25,
  maxPeers: 25,
  maxProtocols: 25,
  maxNetworks: 25,
  maxRuleName: 100,
  maxCidrLength: 43,
} as const;

/**
 * The label that makes a ClusterNetworkPolicy federated (value "true"):
 * its origin member exports it and every other member of the federation
 * enforces it on its own pods (docs/federation.md).
 */
export const FEDERATED_LABEL = 'weir.io/federated';

/**
 * The namespace label naming the namespace's cluster. With federation on,
 * the cluster model sets it on every namespace, local and remote,
 * overriding whatever a member exported: a rule says which clusters it
 * means with a namespaceSelector on it, and a member cannot claim to be
 * another.
 */
export const CLUSTER_LABEL = 'weir.io/cluster';

export type CnpAction = 'Accept' | 'Deny' | 'Pass';

/** Pods by namespace and pod labels (a `namespaces` peer or subject is every pod of the namespaces). */
export interface CnpPods {
  readonly namespaceSelector: LabelSelector;
  readonly podSelector: LabelSelector;
}

export type CnpPeer =
  | ({ readonly kind: 'pods' } & CnpPods)
  /** Normalised CIDRs (host bits cleared), in the order written. */
  | { readonly kind: 'networks'; readonly cidrs: readonly string[] }
  | { readonly kind: 'nodes'; readonly selector: LabelSelector };

export interface CnpRule {
  /** Empty when the rule has no name. */
  readonly name: string;
  readonly action: CnpAction;
  readonly peers: readonly CnpPeer[];
  /** Empty: every protocol and port. */
  readonly protocols: readonly Service[];
}

export interface ClusterNetworkPolicyObject {
  readonly kind: 'ClusterNetworkPolicy';
  readonly name: string;
  readonly uid: string;
  readonly tier: ClusterTier;
  readonly priority: number;
  readonly subject: CnpPods;
  readonly ingress: readonly CnpRule[];
  readonly egress: readonly CnpRule[];
  /** Labelled FEDERATED_LABEL: "true": exported to, and enforced by, every member of the federation. */
  readonly federated: boolean;
  /** metadata.labels (FEDERATED_LABEL among them): what `weirctl policy list -l` selects on. */
  readonly labels: Labels;
}

const ACTIONS: readonly string[] = ['Accept', 'Deny', 'Pass'];
const PROTOCOL_FIELDS = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP' } as const;

export function readClusterNetworkPolicy(
  r: Reader,
  raw: Record<string, unknown>,
): ClusterNetworkPolicyObject | undefined {
  const meta = r.metadata(raw, 'ClusterNetworkPolicy', false);
  if (meta === undefined) return undefined;
  const spec = r.record(raw.spec, 'spec');
  if (spec === undefined) {
    r.issue('spec', 'required');
    return undefined;
  }
  const before = r.issues.length;

  let tier: ClusterTier | undefined;
  if (spec.tier === undefined || spec.tier === null) r.issue('spec.tier', 'required');
  else if (spec.tier === 'Admin') tier = 'admin';
  else if (spec.tier === 'Baseline') tier = 'baseline';
  else
    r.issue(
      'spec.tier',
      `${describe(spec.tier)} is not supported (supported: "Admin", "Baseline")`,
    );

  let priority: number | undefined;
  if (spec.priority === undefined || spec.priority === null) r.issue('spec.priority', 'required');
  else {
    priority = r.integer(spec.priority, 'spec.priority');
    if (priority !== undefined && (priority < 0 || priority > CNP_LIMITS.maxPriority)) {
      r.issue('spec.priority', `${priority} is not between 0 and ${CNP_LIMITS.maxPriority}`);
      priority = undefined;
    }
  }

  let subject: CnpPods | undefined;
  const s = r.record(spec.subject, 'spec.subject');
  if (s === undefined) {
    if (spec.subject === undefined || spec.subject === null) r.issue('spec.subject', 'required');
  } else subject = readPodsOrNamespaces(r, s, 'spec.subject', ['namespaces', 'pods']);

  const ingress = readRules(r, spec.ingress, 'spec.ingress', 'from');
  const egress = readRules(r, spec.egress, 'spec.egress', 'to');
  if (r.issues.length > before || tier === undefined || priority === undefined || !subject)
    return undefined;
  return {
    kind: 'ClusterNetworkPolicy',
    name: meta.name,
    uid: meta.uid,
    tier,
    priority,
    subject,
    ingress,
    egress,
    federated: meta.labels[FEDERATED_LABEL] === 'true',
    labels: meta.labels,
  };
}

/** Fields of `rec` that are set (not absent, not null). */
function present(rec: Record<string, unknown>): string[] {
  return Object.keys(rec).filter((k) => rec[k] !== undefined && rec[k] !== null);
}

/**
 * The one field of `allowed` that `rec` sets (the CRD's minProperties =
 * maxProperties = 1), or undefined with the problem recorded at `field`.
 */
function exactlyOne(
  r: Reader,
  rec: Record<string, unknown>,
  field: string,
  allowed: readonly string[],
): string | undefined {
  const set = present(rec).filter((k) => allowed.includes(k));
  if (set.length === 1) return set[0];
  r.issue(
    field,
    set.length === 0
      ? `must set exactly one of ${allowed.join(', ')}`
      : `must set exactly one of ${allowed.join(', ')}, not ${set.join(' and ')}`,
  );
  return undefined;
}

/**
 * A subject or a peer of the pods kinds: exactly one of `allowed` set
 * (minProperties = maxProperties = 1 in the CRD). Other kinds of peer are
 * the caller's; this reads `namespaces` and `pods`.
 */
function readPodsOrNamespaces(
  r: Reader,
  rec: Record<string, unknown>,
  field: string,
  allowed: readonly string[],
): CnpPods | undefined {
  const kind = exactlyOne(r, rec, field, allowed);
  if (kind === 'namespaces') {
    const sel = r.selector(rec.namespaces, `${field}.namespaces`);
    return sel && { namespaceSelector: sel, podSelector: EVERYTHING };
  }
  if (kind === 'pods') {
    const pods = r.record(rec.pods, `${field}.pods`);
    if (pods === undefined) return undefined;
    if (pods.podSelector === undefined)
      r.issue(`${field}.pods.podSelector`, 'required (use {} to select every pod)');
    const podSelector = r.selector(pods.podSelector, `${field}.pods.podSelector`);
    // namespaceSelector is optional; absent or empty selects every namespace.
    const namespaceSelector =
      pods.namespaceSelector === undefined
        ? EVERYTHING
        : r.selector(pods.namespaceSelector, `${field}.pods.namespaceSelector`);
    if (podSelector === undefined || namespaceSelector === undefined) return undefined;
    return { namespaceSelector, podSelector };
  }
  return undefined;
}

function readRules(r: Reader, raw: unknown, field: string, peersKey: 'from' | 'to'): CnpRule[] {
  const list = r.array(raw, field) ?? [];
  if (list.length > CNP_LIMITS.maxRules)
    r.issue(field, `has ${list.length} rules; at most ${CNP_LIMITS.maxRules} are allowed`);
  const out: CnpRule[] = [];
  list.slice(0, CNP_LIMITS.maxRules).forEach((x, i) => {
    const rule = readRule(r, x, `${field}[${i}]`, peersKey);
    if (rule !== undefined) out.push(rule);
  });
  return out;
}

function readRule(
  r: Reader,
  raw: unknown,
  field: string,
  peersKey: 'from' | 'to',
): CnpRule | undefined {
  const rule = r.record(raw, field);
  if (rule === undefined) {
    if (raw === null || raw === undefined) r.issue(field, 'must be an object, not null');
    return undefined;
  }
  const before = r.issues.length;
  const name = r.string(rule.name, `${field}.name`) ?? '';
  if (name.length > CNP_LIMITS.maxRuleName)
    r.issue(
      `${field}.name`,
      `is ${name.length} characters; at most ${CNP_LIMITS.maxRuleName} are allowed`,
    );
  let action: CnpAction | undefined;
  if (rule.action === undefined || rule.action === null) r.issue(`${field}.action`, 'required');
  else if (typeof rule.action === 'string' && ACTIONS.includes(rule.action))
    action = rule.action as CnpAction;
  else
    r.issue(
      `${field}.action`,
      `${describe(rule.action)} is not supported (supported: "Accept", "Deny", "Pass")`,
    );

  const peersField = `${field}.${peersKey}`;
  const rawPeers = r.array(rule[peersKey], peersField);
  if (rawPeers === undefined) {
    if (rule[peersKey] === undefined || rule[peersKey] === null)
      r.issue(peersField, 'required: at least one peer');
  } else if (rawPeers.length === 0) r.issue(peersField, 'must have at least one peer');
  else if (rawPeers.length > CNP_LIMITS.maxPeers)
    r.issue(peersField, `has ${rawPeers.length} peers; at most ${CNP_LIMITS.maxPeers} are allowed`);
  const peers: CnpPeer[] = [];
  (rawPeers ?? []).slice(0, CNP_LIMITS.maxPeers).forEach((p, j) => {
    const peer = readPeer(r, p, `${peersField}[${j}]`, peersKey === 'from' ? 'ingress' : 'egress');
    if (peer !== undefined) peers.push(peer);
  });

  const protocols: Service[] = [];
  let namedPort = false;
  const rawProtocols = r.array(rule.protocols, `${field}.protocols`);
  if (rawProtocols !== undefined) {
    if (rawProtocols.length === 0)
      r.issue(`${field}.protocols`, 'must have at least one entry when present');
    else if (rawProtocols.length > CNP_LIMITS.maxProtocols)
      r.issue(
        `${field}.protocols`,
        `has ${rawProtocols.length} entries; at most ${CNP_LIMITS.maxProtocols} are allowed`,
      );
    rawProtocols.slice(0, CNP_LIMITS.maxProtocols).forEach((p, k) => {
      const got = readProtocol(r, p, `${field}.protocols[${k}]`);
      if (got === undefined) return;
      if (got.named) namedPort = true;
      protocols.push(...got.services);
    });
  }
  // The CRD's CEL rule on egress rules: named ports exist only on pods.
  if (namedPort && peers.some((p) => p.kind !== 'pods'))
    r.issue(
      `${field}.protocols`,
      'destinationNamedPort cannot be used with a networks or nodes peer: only pods have named ports',
    );
  if (r.issues.length > before || action === undefined) return undefined;
  return { name, action, peers, protocols };
}

/** The peer fields of each direction (the CRD's ClusterNetworkPolicyIngressPeer and ClusterNetworkPolicyEgressPeer). */
const PEER_FIELDS = {
  ingress: ['namespaces', 'pods'],
  egress: ['namespaces', 'pods', 'nodes', 'networks', 'domainNames'],
} as const;

function readPeer(
  r: Reader,
  raw: unknown,
  field: string,
  direction: 'ingress' | 'egress',
): CnpPeer | undefined {
  const fields = PEER_FIELDS[direction];
  const peer = r.record(raw, field);
  if (peer === undefined) {
    if (raw === null || raw === undefined)
      r.issue(field, `must set exactly one of ${fields.join(', ')}`);
    return undefined;
  }
  const kind = exactlyOne(r, peer, field, fields);
  if (kind === undefined) return undefined;
  if (kind === 'domainNames') {
    r.issue(
      `${field}.domainNames`,
      'is not supported by Weir (it cannot enforce policy by domain name); the last valid version of this policy stays in force',
    );
    return undefined;
  }
  if (kind === 'nodes') {
    const selector = r.selector(peer.nodes, `${field}.nodes`);
    return selector && { kind: 'nodes', selector };
  }
  if (kind === 'networks') {
    const f = `${field}.networks`;
    const list = r.array(peer.networks, f) ?? [];
    if (list.length === 0) r.issue(f, 'must have at least one CIDR');
    if (list.length > CNP_LIMITS.maxNetworks)
      r.issue(f, `has ${list.length} CIDRs; at most ${CNP_LIMITS.maxNetworks} are allowed`);
    const before = r.issues.length;
    const cidrs: string[] = [];
    const seen = new Set<string>();
    list.slice(0, CNP_LIMITS.maxNetworks).forEach((x, k) => {
      const t = r.string(x, `${f}[${k}]`);
      if (t === undefined) {
        if (x === null) r.issue(`${f}[${k}]`, 'must be a CIDR, not null');
        return;
      }
      if (t.length > CNP_LIMITS.maxCidrLength) {
        r.issue(
          `${f}[${k}]`,
          `is ${t.length} characters; at most ${CNP_LIMITS.maxCidrLength} are allowed`,
        );
        return;
      }
      if (seen.has(t)) {
        r.issue(`${f}[${k}]`, `duplicate value ${JSON.stringify(t)}`);
        return;
      }
      seen.add(t);
      const c = parseCidr(t);
      if (typeof c === 'string')
        r.issue(`${f}[${k}]`, `${JSON.stringify(t)} is not a valid CIDR: ${c}`);
      else cidrs.push(c.text);
    });
    if (r.issues.length > before || list.length === 0) return undefined;
    return { kind: 'networks', cidrs: [...new Set(cidrs)] };
  }
  const pods = readPodsOrNamespaces(r, peer, field, [kind]);
  return pods && { kind: 'pods', ...pods };
}

/** One protocols entry: services, and whether it is a named port. */
function readProtocol(
  r: Reader,
  raw: unknown,
  field: string,
): { services: Service[]; named: boolean } | undefined {
  const p = r.record(raw, field);
  if (p === undefined) {
    if (raw === null || raw === undefined)
      r.issue(field, 'must set exactly one of tcp, udp, sctp, destinationNamedPort');
    return undefined;
  }
  const kind = exactlyOne(r, p, field, ['tcp', 'udp', 'sctp', 'destinationNamedPort']);
  if (kind === undefined) return undefined;
  if (kind === 'destinationNamedPort') {
    const name = r.string(p.destinationNamedPort, `${field}.destinationNamedPort`);
    if (name === undefined) return undefined;
    if (name === '') {
      r.issue(`${field}.destinationNamedPort`, 'must not be empty');
      return undefined;
    }
    // A container port's name is unique per pod whatever its protocol: the
    // name matches on the protocol the pod declares it with.
    return {
      named: true,
      services: PROTOCOLS.map((protocol) => ({ protocol, port: { kind: 'named', name } })),
    };
  }
  const protocol: Protocol = PROTOCOL_FIELDS[kind as keyof typeof PROTOCOL_FIELDS];
  const f = `${field}.${kind}`;
  const body = r.record(p[kind], f);
  if (body === undefined) return undefined;
  if (body.destinationPort === undefined || body.destinationPort === null) {
    r.issue(`${f}.destinationPort`, 'required');
    return undefined;
  }
  const dp = r.record(body.destinationPort, `${f}.destinationPort`);
  if (dp === undefined) return undefined;
  const g = `${f}.destinationPort`;
  const which = present(dp).filter((k) => k === 'number' || k === 'range');
  if (which.length !== 1) {
    r.issue(
      g,
      which.length === 0
        ? 'must set exactly one of number, range'
        : 'must set number or range, not both',
    );
    return undefined;
  }
  if (which[0] === 'number') {
    const n = portNumber(r, dp.number, `${g}.number`);
    return n === undefined
      ? undefined
      : { named: false, services: [{ protocol, port: { kind: 'range', start: n, end: n } }] };
  }
  const range = r.record(dp.range, `${g}.range`);
  if (range === undefined) return undefined;
  const start = requiredPort(r, range.start, `${g}.range.start`);
  const end = requiredPort(r, range.end, `${g}.range.end`);
  if (start === undefined || end === undefined) return undefined;
  if (start >= end) {
    r.issue(`${g}.range`, `start ${start} must be less than end ${end}`);
    return undefined;
  }
  return { named: false, services: [{ protocol, port: { kind: 'range', start, end } }] };
}

function requiredPort(r: Reader, v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) {
    r.issue(field, 'required');
    return undefined;
  }
  return portNumber(r, v, field);
}

function portNumber(r: Reader, v: unknown, field: string): number | undefined {
  const n = r.integer(v, field);
  if (n === undefined) return undefined;
  if (n < 1 || n > 65535) {
    r.issue(field, `${n} is not between 1 and 65535`);
    return undefined;
  }
  return n;
}

/**
 * A ClusterNetworkPolicy as Kubernetes JSON: the inverse of
 * readClusterNetworkPolicy (read(write(x)) deep-equals x). The federation
 * exports policies in this form, so an importing member re-validates them
 * with the same reader, and an entry in the hub is a manifest a person can
 * read and apply.
 *
 * Forms are canonical: subjects and pods peers are written as `pods`
 * (a `namespaces` subject reads back the same: every pod of the
 * namespaces), selectors as matchExpressions, a port range of one port as
 * `number`, a named port (read as one service per protocol) as one
 * destinationNamedPort.
 */
export function writeClusterNetworkPolicy(o: ClusterNetworkPolicyObject): Record<string, unknown> {
  const metadata: Record<string, unknown> = { name: o.name };
  if (o.uid !== '') metadata.uid = o.uid;
  const labels = { ...o.labels, ...(o.federated ? { [FEDERATED_LABEL]: 'true' } : {}) };
  if (Object.keys(labels).length > 0) metadata.labels = labels;
  const spec: Record<string, unknown> = {
    tier: o.tier === 'admin' ? 'Admin' : 'Baseline',
    priority: o.priority,
    subject: { pods: writePods(o.subject) },
  };
  if (o.ingress.length > 0) spec.ingress = o.ingress.map((r) => writeRule(r, 'from'));
  if (o.egress.length > 0) spec.egress = o.egress.map((r) => writeRule(r, 'to'));
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata,
    spec,
  };
}

function writeSelector(s: LabelSelector): Record<string, unknown> {
  if (s.requirements.length === 0) return {};
  return {
    matchExpressions: s.requirements.map((r) =>
      r.operator === 'In' || r.operator === 'NotIn'
        ? { key: r.key, operator: r.operator, values: [...r.values] }
        : { key: r.key, operator: r.operator },
    ),
  };
}

function writePods(p: CnpPods): Record<string, unknown> {
  return {
    namespaceSelector: writeSelector(p.namespaceSelector),
    podSelector: writeSelector(p.podSelector),
  };
}

function writeRule(r: CnpRule, peersKey: 'from' | 'to'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (r.name !== '') out.name = r.name;
  out.action = r.action;
  out[peersKey] = r.peers.map((p) =>
    p.kind === 'pods'
      ? { pods: writePods(p) }
      : p.kind === 'nodes'
        ? { nodes: writeSelector(p.selector) }
        : { networks: [...p.cidrs] },
  );
  if (r.protocols.length > 0) out.protocols = writeProtocols(r.protocols);
  return out;
}

const PROTOCOL_FIELD: Readonly<Record<Protocol, string>> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

function writeProtocols(services: readonly Service[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < services.length; i++) {
    const s = services[i]!;
    if (s.port.kind === 'named') {
      // The reader expands one destinationNamedPort into one service per protocol, in PROTOCOLS order.
      out.push({ destinationNamedPort: s.port.name });
      i += PROTOCOLS.length - 1;
    } else if (s.port.kind === 'range')
      out.push({
        [PROTOCOL_FIELD[s.protocol]]: {
          destinationPort:
            s.port.start === s.port.end
              ? { number: s.port.start }
              : { range: { start: s.port.start, end: s.port.end } },
        },
      });
    // kind 'all' is never read from a ClusterNetworkPolicy (protocols absent: the rule has none).
  }
  return out;
}
