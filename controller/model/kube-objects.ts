/**
 * Kubernetes objects as Weir reads them: Namespaces, Pods and NetworkPolicies
 * validated and normalised from their API shape (JSON as the API server or a
 * manifest gives it). Validation follows the API server's own rules
 * (k8s.io/kubernetes pkg/apis/networking/validation) and reports every problem
 * with the object and field it concerns; a rejected object never stops the
 * others.
 */
import type { Issue } from '../../shared/errors.js';
import { parseCidr, type Cidr } from '../../shared/net/ip.js';
import { canonicalSelector } from '../../shared/policy/selector.js';
import {
  PROTOCOLS,
  type IpBlock,
  type LabelRequirement,
  type LabelSelector,
  type Labels,
  type NamedPort,
  type Operator,
  type Protocol,
  type Service,
} from '../../shared/policy/types.js';

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export interface NamespaceObject {
  readonly kind: 'Namespace';
  readonly name: string;
  readonly uid: string;
  /** Includes kubernetes.io/metadata.name, as the API server sets it. */
  readonly labels: Labels;
}

export interface PodObject {
  readonly kind: 'Pod';
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly hostNetwork: boolean;
  readonly phase: string;
  /** status.podIPs (or podIP), primary first. */
  readonly ips: readonly string[];
  readonly labels: Labels;
  /** Container ports that have names. */
  readonly ports: readonly NamedPort[];
}

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
  readonly podSelector: LabelSelector;
  /** policyTypes, explicit or defaulted as the API server does. */
  readonly ingressIsolation: boolean;
  readonly egressIsolation: boolean;
  /** Only meaningful when the matching isolation is on. */
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

export type KubeObject = NamespaceObject | PodObject | NetworkPolicyObject;

/** What reading one raw object gave: the object, or the reason it was skipped or rejected. */
export type ReadResult =
  | { readonly type: 'object'; readonly object: KubeObject }
  | { readonly type: 'ignored'; readonly note: string }
  | {
      readonly type: 'invalid';
      readonly issues: readonly Issue[];
      readonly identity?: ObjectIdentity;
    };

/** Which object, when a rejected one can still be named (so that its previous version can be withdrawn). */
export interface ObjectIdentity {
  readonly kind: KubeObject['kind'];
  /** Empty for namespaces. */
  readonly namespace: string;
  readonly name: string;
}

/** The kinds Weir reads, with the apiVersion it reads each at. */
export const READ_KINDS: Readonly<Record<string, string>> = {
  Namespace: 'v1',
  Pod: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
};

/** Validates one object of any kind. `source` names where it came from (a file, "kubernetes"). */
export function readKubeObject(raw: unknown, source?: string): ReadResult {
  if (!isRecord(raw)) return invalid({ source, message: 'not an object' });
  const kind = typeof raw.kind === 'string' ? raw.kind : undefined;
  const apiVersion = typeof raw.apiVersion === 'string' ? raw.apiVersion : undefined;
  const meta = isRecord(raw.metadata) ? raw.metadata : {};
  const label = `${kind ?? '(no kind)'} ${typeof meta.namespace === 'string' ? `${meta.namespace}/` : ''}${typeof meta.name === 'string' ? meta.name : '(no name)'}`;
  if (kind === undefined)
    return invalid({ source, object: label, field: 'kind', message: 'required' });
  const want = READ_KINDS[kind];
  if (want === undefined) return { type: 'ignored', note: `${kind} is not a kind Weir reads` };
  if (apiVersion !== want)
    return {
      type: 'ignored',
      note: `${kind} with apiVersion ${apiVersion ?? '(none)'} is not read (Weir reads ${want})`,
    };
  const r = new Reader(source);
  let object: KubeObject | undefined;
  if (kind === 'Namespace') object = readNamespace(r, raw);
  else if (kind === 'Pod') object = readPod(r, raw);
  else object = readNetworkPolicy(r, raw);
  if (r.issues.length > 0 || object === undefined) {
    // A name that is itself invalid does not identify an object (it may be a typo of one).
    const named = !r.issues.some(
      (i) => i.field === 'metadata.name' || i.field === 'metadata.namespace',
    );
    const name = named && typeof meta.name === 'string' && meta.name !== '' ? meta.name : undefined;
    const namespace =
      kind === 'Namespace'
        ? ''
        : typeof meta.namespace === 'string' && meta.namespace !== ''
          ? meta.namespace
          : 'default';
    return {
      type: 'invalid',
      issues: r.issues,
      ...(name ? { identity: { kind: kind as KubeObject['kind'], namespace, name } } : {}),
    };
  }
  return { type: 'object', object };
}

function invalid(issue: Issue): ReadResult {
  return { type: 'invalid', issues: [issue] };
}

// ---------------------------------------------------------------------------

function readNamespace(r: Reader, raw: Record<string, unknown>): NamespaceObject | undefined {
  const meta = r.metadata(raw, 'Namespace', false);
  if (meta === undefined) return undefined;
  // The API server sets this label on every namespace and no one can change it.
  return {
    kind: 'Namespace',
    name: meta.name,
    uid: meta.uid,
    labels: { ...meta.labels, [NAMESPACE_NAME_LABEL]: meta.name },
  };
}

function readPod(r: Reader, raw: Record<string, unknown>): PodObject | undefined {
  const meta = r.metadata(raw, 'Pod', true);
  if (meta === undefined) return undefined;
  const spec = r.record(raw.spec, 'spec') ?? {};
  const status = r.record(raw.status, 'status') ?? {};
  const node = r.string(spec.nodeName, 'spec.nodeName') ?? '';
  const hostNetwork = r.boolean(spec.hostNetwork, 'spec.hostNetwork') ?? false;
  const phase = r.string(status.phase, 'status.phase') ?? '';

  const ips: string[] = [];
  const addIp = (v: unknown, field: string) => {
    const s = r.string(v, field);
    if (s === undefined || s === '') return;
    const c = parseCidr(`${s}/${s.includes(':') ? 128 : 32}`);
    if (typeof c === 'string' || c.hadHostBits)
      r.issue(field, `${JSON.stringify(s)} is not an IP address`);
    else if (!ips.includes(c.text.split('/')[0]!)) ips.push(c.text.split('/')[0]!);
  };
  addIp(status.podIP, 'status.podIP');
  (r.array(status.podIPs, 'status.podIPs') ?? []).forEach((p, i) => {
    const rec = r.record(p, `status.podIPs[${i}]`);
    if (rec !== undefined) addIp(rec.ip, `status.podIPs[${i}].ip`);
  });

  const ports: NamedPort[] = [];
  (r.array(spec.containers, 'spec.containers') ?? []).forEach((c, ci) => {
    const container = r.record(c, `spec.containers[${ci}]`);
    if (container === undefined) return;
    (r.array(container.ports, `spec.containers[${ci}].ports`) ?? []).forEach((p, pi) => {
      const f = `spec.containers[${ci}].ports[${pi}]`;
      const port = r.record(p, f);
      if (port === undefined) return;
      const number = r.integer(port.containerPort, `${f}.containerPort`);
      if (number === undefined) r.issue(`${f}.containerPort`, 'required');
      else if (number < 1 || number > 65535)
        r.issue(`${f}.containerPort`, `${number} is not between 1 and 65535`);
      const protocol = r.protocol(port.protocol, `${f}.protocol`);
      const name = r.string(port.name, `${f}.name`);
      if (name === undefined || name === '') return;
      const bad = portNameProblem(name);
      if (bad !== undefined) r.issue(`${f}.name`, `${JSON.stringify(name)} ${bad}`);
      else if (number !== undefined && protocol !== undefined)
        ports.push({ name, protocol, port: number });
    });
  });
  return {
    kind: 'Pod',
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid,
    node,
    hostNetwork,
    phase,
    ips,
    labels: meta.labels,
    ports,
  };
}

function readNetworkPolicy(
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

// ---------------------------------------------------------------------------
// Name rules, as apimachinery's validation defines them.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** IANA_SVC_NAME: 1-15 of [a-z0-9-], at least one letter, no leading, trailing or double hyphen. */
function portNameProblem(name: string): string | undefined {
  if (name.length > 15) return 'is not a valid port name: must be no more than 15 characters';
  if (!/^[-a-z0-9]+$/.test(name))
    return 'is not a valid port name: must contain only lower-case letters, digits and "-"';
  if (!/[a-z]/.test(name))
    return 'is not a valid port name: must contain at least one letter (numbers go in as numbers, without quotes)';
  if (name.startsWith('-') || name.endsWith('-') || name.includes('--'))
    return 'is not a valid port name: "-" may not start or end it, or appear twice in a row';
  return undefined;
}

function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (
    prefix !== undefined &&
    (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))
  ) {
    return 'prefix must be a DNS subdomain (lower-case letters, digits, "-" and ".")';
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return 'name part must be 1-63 characters: letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return undefined;
}

function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !QUALIFIED_NAME.test(value)) {
    return 'must be at most 63 characters: letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return undefined;
}

// ---------------------------------------------------------------------------

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** Reads fields of one object, collecting every problem with its field path. */
class Reader {
  readonly issues: Issue[] = [];
  private object: string | undefined;

  constructor(private readonly source: string | undefined) {}

  issue(field: string, message: string): void {
    this.issues.push({ source: this.source, object: this.object, field, message });
  }

  metadata(raw: Record<string, unknown>, kind: string, namespaced: boolean) {
    const meta = this.record(raw.metadata, 'metadata') ?? {};
    const name = this.string(meta.name, 'metadata.name') ?? '';
    const namespace = namespaced
      ? this.string(meta.namespace, 'metadata.namespace') || 'default'
      : '';
    this.object = `${kind} ${namespaced ? `${namespace}/` : ''}${name || '(no name)'}`;
    if (name === '') this.issue('metadata.name', 'required');
    else if (
      kind === 'Namespace'
        ? name.length > 63 || !DNS1123_LABEL.test(name)
        : name.length > 253 || !DNS1123_SUBDOMAIN.test(name)
    ) {
      this.issue(
        'metadata.name',
        `${JSON.stringify(name)} is not a valid name: lower-case letters, digits and "-"${kind === 'Namespace' ? '' : ' (and ".")'}`,
      );
    }
    if (namespaced && (namespace.length > 63 || !DNS1123_LABEL.test(namespace))) {
      this.issue(
        'metadata.namespace',
        `${JSON.stringify(namespace)} is not a valid namespace name`,
      );
    }
    const uid = this.string(meta.uid, 'metadata.uid') ?? '';
    const labels = this.labels(meta.labels, 'metadata.labels');
    if (this.issues.length > 0 && name === '') return undefined;
    return { name, namespace, uid, labels };
  }

  labels(v: unknown, field: string): Labels {
    if (v === undefined || v === null) return {};
    const rec = this.record(v, field);
    if (rec === undefined) return {};
    const out: Record<string, string> = {};
    for (const [k, value] of Object.entries(rec)) {
      const f = `${field}[${JSON.stringify(k)}]`;
      const keyBad = labelKeyProblem(k);
      if (keyBad !== undefined) {
        this.issue(f, `label key ${JSON.stringify(k)}: ${keyBad}`);
        continue;
      }
      if (typeof value !== 'string') {
        this.issue(f, `label value must be a string, not ${describe(value)} (quote it in YAML)`);
        continue;
      }
      const valueBad = labelValueProblem(value);
      if (valueBad !== undefined) this.issue(f, `label value ${JSON.stringify(value)} ${valueBad}`);
      else out[k] = value;
    }
    return out;
  }

  selector(v: unknown, field: string): LabelSelector | undefined {
    if (v === null) return { requirements: [] };
    const rec = this.record(v, field);
    if (rec === undefined) return undefined;
    const before = this.issues.length;
    const requirements: LabelRequirement[] = [];
    for (const [key, value] of Object.entries(
      this.labels(rec.matchLabels, `${field}.matchLabels`),
    )) {
      requirements.push({ key, operator: 'In', values: [value] });
    }
    // biome-ignore lint/suspicious/useIterableCallbackReturn: `return this.issue(...)` ends one element's checks
    (this.array(rec.matchExpressions, `${field}.matchExpressions`) ?? []).forEach((e, i) => {
      const f = `${field}.matchExpressions[${i}]`;
      const expr = this.record(e, f);
      if (expr === undefined) return;
      const key = this.string(expr.key, `${f}.key`);
      if (key === undefined || key === '') return this.issue(`${f}.key`, 'required');
      const keyBad = labelKeyProblem(key);
      if (keyBad !== undefined) return this.issue(`${f}.key`, `${JSON.stringify(key)}: ${keyBad}`);
      const op = expr.operator;
      if (op !== 'In' && op !== 'NotIn' && op !== 'Exists' && op !== 'DoesNotExist') {
        return this.issue(
          `${f}.operator`,
          `${op === undefined ? 'required' : `${JSON.stringify(op)} is not valid`} (valid: "In", "NotIn", "Exists", "DoesNotExist")`,
        );
      }
      const values: string[] = [];
      (this.array(expr.values, `${f}.values`) ?? []).forEach((x, j) => {
        const s = this.string(x, `${f}.values[${j}]`);
        if (s === undefined) return;
        const bad = labelValueProblem(s);
        if (bad !== undefined) this.issue(`${f}.values[${j}]`, `${JSON.stringify(s)} ${bad}`);
        else values.push(s);
      });
      const operator: Operator = op;
      const needsValues = operator === 'In' || operator === 'NotIn';
      const given = Array.isArray(expr.values) ? expr.values.length : 0;
      if (needsValues && given === 0)
        return this.issue(`${f}.values`, `must be non-empty when operator is ${operator}`);
      if (!needsValues && given > 0)
        return this.issue(`${f}.values`, `must be empty when operator is ${operator}`);
      requirements.push({ key, operator, values });
    });
    if (this.issues.length > before) return undefined;
    return canonicalSelector(requirements);
  }

  protocol(v: unknown, field: string): Protocol | undefined {
    if (v === undefined || v === null) return 'TCP';
    if (typeof v === 'string' && (PROTOCOLS as readonly string[]).includes(v)) return v as Protocol;
    this.issue(field, `${describe(v)} is not supported (supported: "TCP", "UDP", "SCTP")`);
    return undefined;
  }

  record(v: unknown, field: string): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (isRecord(v)) return v;
    this.issue(field, `must be an object, not ${describe(v)}`);
    return undefined;
  }

  array(v: unknown, field: string): unknown[] | undefined {
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) return v;
    this.issue(field, `must be a list, not ${describe(v)}`);
    return undefined;
  }

  string(v: unknown, field: string): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    this.issue(field, `must be a string, not ${describe(v)}`);
    return undefined;
  }

  boolean(v: unknown, field: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    this.issue(field, `must be true or false, not ${describe(v)}`);
    return undefined;
  }

  integer(v: unknown, field: string): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    this.issue(field, `must be an integer, not ${describe(v)}`);
    return undefined;
  }
}
