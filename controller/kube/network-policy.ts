/**
 * NetworkPolicies as Weir reads them. Validation follows the API server's own
 * rules (k8s.io/kubernetes pkg/apis/networking/validation).
 */
import { parseCidr, type Cidr } from '../../shared/net/ip.js';
import type { IpBlock, LabelSelector, Labels, Service } from '../../shared/policy/types.js';
import { describe, portNameProblem, type Reader } from './common.js';

export type PolicyPeer =
  | {
      readonly kind: 'selector';
      /** Absent: every pod (of the selected namespaces). */
      readonly podSelector: LabelSelector | undefined;
      /** Absent: the policy's own namespace. */
      readonly namespaceSelector: LabelSelector | undefined;
    }
  | { readonly kind: 'ipBlock'; readonly ipBlock: IpBlock };

export interface PolicyRule {
  /** Empty: every peer, inside or outside the cluster. */
  readonly peers: readonly PolicyPeer[];
  /** Empty: every protocol and port. */
  readonly ports: readonly Service[];
}

export interface NetworkPolicyObject {
  readonly kind: 'NetworkPolicy';
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** metadata.labels: what `weirctl policy list -l` selects on. */
  readonly labels: Labels;
  readonly podSelector: LabelSelector;
  /** policyTypes, explicit or defaulted as the API server does. */
  readonly ingressIsolation: boolean;
  readonly egressIsolation: boolean;
  /** Only meaningful when the matching isolation is on. */
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

export function readNetworkPolicy(
  r: Reader,
  raw: Record<string, unknown>,
): NetworkPolicyObject | undefined {
  const meta = r.metadata(raw, 'NetworkPolicy', true);
  if (meta === undefined) return undefined;
  const spec = r.record(raw.spec, 'spec');
  if (spec === undefined) {
    r.issue('spec', 'required');
    return undefined;
  }
  // podSelector is required by the API; an empty one selects every pod.
  if (spec.podSelector === undefined)
    r.issue('spec.podSelector', 'required (use {} to select every pod in the namespace)');
  const podSelector = r.selector(spec.podSelector, 'spec.podSelector') ?? { requirements: [] };
  const ingress = (r.array(spec.ingress, 'spec.ingress') ?? []).map((rule, i) =>
    readRule(r, rule, `spec.ingress[${i}]`, 'from'),
  );
  const egress = (r.array(spec.egress, 'spec.egress') ?? []).map((rule, i) =>
    readRule(r, rule, `spec.egress[${i}]`, 'to'),
  );

  let ingressIsolation = true;
  let egressIsolation = egress.length > 0;
  const types = r.array(spec.policyTypes, 'spec.policyTypes');
  if (types !== undefined && types.length > 0) {
    ingressIsolation = egressIsolation = false;
    const seen = new Set<string>();
    types.forEach((t, i) => {
      const f = `spec.policyTypes[${i}]`;
      if (t !== 'Ingress' && t !== 'Egress')
        r.issue(f, `${JSON.stringify(t)} is not supported (supported: "Ingress", "Egress")`);
      else if (seen.has(t)) r.issue(f, `duplicate value ${JSON.stringify(t)}`);
      else {
        seen.add(t);
        if (t === 'Ingress') ingressIsolation = true;
        else egressIsolation = true;
      }
    });
  }
  return {
    kind: 'NetworkPolicy',
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid,
    labels: meta.labels,
    podSelector,
    ingressIsolation,
    egressIsolation,
    ingress: ingress.filter((x): x is PolicyRule => x !== undefined),
    egress: egress.filter((x): x is PolicyRule => x !== undefined),
  };
}

function readRule(
  r: Reader,
  raw: unknown,
  field: string,
  peersKey: 'from' | 'to',
): PolicyRule | undefined {
  if (raw === null) return { peers: [], ports: [] };
  const rule = r.record(raw, field);
  if (rule === undefined) return undefined;
  const peers = (r.array(rule[peersKey], `${field}.${peersKey}`) ?? []).map((p, i) =>
    readPeer(r, p, `${field}.${peersKey}[${i}]`),
  );
  const ports = (r.array(rule.ports, `${field}.ports`) ?? []).map((p, i) =>
    readPort(r, p, `${field}.ports[${i}]`),
  );
  return {
    peers: peers.filter((x): x is PolicyPeer => x !== undefined),
    ports: ports.filter((x): x is Service => x !== undefined),
  };
}

function readPeer(r: Reader, raw: unknown, field: string): PolicyPeer | undefined {
  const peer = r.record(raw, field);
  if (peer === undefined) return undefined;
  const has = (k: string) => peer[k] !== undefined && peer[k] !== null;
  if (has('ipBlock')) {
    if (has('podSelector') || has('namespaceSelector')) {
      r.issue(field, 'may not specify both ipBlock and another peer');
      return undefined;
    }
    const ipBlock = readIpBlock(r, peer.ipBlock, `${field}.ipBlock`);
    return ipBlock && { kind: 'ipBlock', ipBlock };
  }
  if (!has('podSelector') && !has('namespaceSelector')) {
    r.issue(field, 'must specify a peer: podSelector, namespaceSelector or ipBlock');
    return undefined;
  }
  const podSelector = has('podSelector')
    ? r.selector(peer.podSelector, `${field}.podSelector`)
    : undefined;
  const namespaceSelector = has('namespaceSelector')
    ? r.selector(peer.namespaceSelector, `${field}.namespaceSelector`)
    : undefined;
  return { kind: 'selector', podSelector, namespaceSelector };
}

function readIpBlock(r: Reader, raw: unknown, field: string): IpBlock | undefined {
  const block = r.record(raw, field);
  if (block === undefined) return undefined;
  const text = r.string(block.cidr, `${field}.cidr`);
  if (text === undefined || text === '') {
    r.issue(`${field}.cidr`, 'required');
    return undefined;
  }
  const cidr = parseCidr(text);
  if (typeof cidr === 'string') {
    r.issue(`${field}.cidr`, `${JSON.stringify(text)} is not a valid CIDR: ${cidr}`);
    return undefined;
  }
  const except: Cidr[] = [];
  (r.array(block.except, `${field}.except`) ?? []).forEach((e, i) => {
    const f = `${field}.except[${i}]`;
    const t = r.string(e, f);
    if (t === undefined) return;
    const c = parseCidr(t);
    if (typeof c === 'string') r.issue(f, `${JSON.stringify(t)} is not a valid CIDR: ${c}`);
    else if (
      c.family !== cidr.family ||
      c.start < cidr.start ||
      c.end > cidr.end ||
      c.prefixLength <= cidr.prefixLength
    ) {
      r.issue(f, `${JSON.stringify(t)} must be a strict subset of cidr ${JSON.stringify(text)}`);
    } else except.push(c);
  });
  return { cidr: cidr.text, except: [...new Set(except.map((c) => c.text))] };
}

function readPort(r: Reader, raw: unknown, field: string): Service | undefined {
  const p = r.record(raw, field);
  if (p === undefined) return undefined;
  const protocol = r.protocol(p.protocol, `${field}.protocol`);
  const endPort =
    p.endPort === undefined || p.endPort === null
      ? undefined
      : r.integer(p.endPort, `${field}.endPort`);
  if (endPort !== undefined && (endPort < 1 || endPort > 65535))
    r.issue(`${field}.endPort`, `${endPort} is not between 1 and 65535`);
  const port = p.port;
  if (protocol === undefined) return undefined;
  if (port === undefined || port === null) {
    if (p.endPort !== undefined && p.endPort !== null)
      r.issue(`${field}.endPort`, 'may not be specified when port is not specified');
    return { protocol, port: { kind: 'all' } };
  }
  if (typeof port === 'number') {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      r.issue(`${field}.port`, `${port} is not between 1 and 65535`);
      return undefined;
    }
    if (endPort === undefined) return { protocol, port: { kind: 'range', start: port, end: port } };
    if (endPort < port) {
      r.issue(`${field}.endPort`, `${endPort} must be greater than or equal to port ${port}`);
      return undefined;
    }
    return { protocol, port: { kind: 'range', start: port, end: endPort } };
  }
  if (typeof port === 'string') {
    const bad = portNameProblem(port);
    if (bad !== undefined) {
      r.issue(`${field}.port`, `${JSON.stringify(port)} ${bad}`);
      return undefined;
    }
    if (p.endPort !== undefined && p.endPort !== null) {
      r.issue(
        `${field}.endPort`,
        `may not be specified when port is a named port (${JSON.stringify(port)})`,
      );
      return undefined;
    }
    return { protocol, port: { kind: 'named', name: port } };
  }
  r.issue(`${field}.port`, `must be a port number or a port name, not ${describe(port)}`);
  return undefined;
}
