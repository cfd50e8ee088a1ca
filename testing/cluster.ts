/**
 * Fixture builders: Kubernetes objects in their API shape (as a manifest or
 * the API server gives them), and a one-call path through the real pipeline
 * (validation → cluster model → translation → compile) to rule tables.
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import { readKubeObject } from '../controller/kube/objects.js';
import type { Issue } from '../shared/errors.js';
import { parseIp, tryParseIp, type Ip } from '../shared/net/ip.js';
import { compile } from '../shared/policy/compile.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import { PROTOCOL_NUMBER, type PolicySnapshot, type Protocol } from '../shared/policy/types.js';

export type Raw = Record<string, unknown>;

export function namespace(name: string, labels: Record<string, string> = {}): Raw {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

/** A Node with status.addresses: "IP" (InternalIP), or [type, address] for others (ExternalIP, Hostname). */
export function node(
  name: string,
  addresses: ReadonlyArray<string | readonly [string, string]>,
  labels: Record<string, string> = {},
): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels },
    status: {
      addresses: addresses.map((a) =>
        typeof a === 'string' ? { type: 'InternalIP', address: a } : { type: a[0], address: a[1] },
      ),
    },
  };
}

export interface PodOptions {
  labels?: Record<string, string>;
  /** One or more addresses; the first is status.podIP. */
  ips?: string[];
  ports?: Array<{ name?: string; port: number; protocol?: string }>;
  node?: string;
  hostNetwork?: boolean;
  phase?: string;
}

export function pod(ns: string, name: string, o: PodOptions = {}): Raw {
  const ips = o.ips ?? [];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: o.labels ?? {} },
    spec: {
      ...(o.node ? { nodeName: o.node } : {}),
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: [
        {
          name: 'main',
          image: 'agnhost',
          ports: (o.ports ?? []).map((p) => ({
            ...(p.name ? { name: p.name } : {}),
            containerPort: p.port,
            ...(p.protocol ? { protocol: p.protocol } : {}),
          })),
        },
      ],
    },
    status: {
      phase: o.phase ?? 'Running',
      ...(ips[0] ? { podIP: ips[0] } : {}),
      podIPs: ips.map((ip) => ({ ip })),
    },
  };
}

export function networkPolicy(ns: string, name: string, spec: Raw): Raw {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns },
    spec,
  };
}

export function clusterNetworkPolicy(name: string, spec: Raw): Raw {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name },
    spec,
  };
}

export interface Built {
  readonly tables: RuleTables;
  readonly snapshot: PolicySnapshot;
  readonly issues: readonly Issue[];
}

/** Runs objects through validation, the model, translation and compilation. */
export function build(objects: readonly Raw[], cluster = 'test'): Built {
  const model = new ClusterModel({ cluster });
  const issues: Issue[] = [];
  for (const raw of objects) {
    const r = readKubeObject(raw, 'fixture');
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
    else if (r.type === 'invalid') issues.push(...r.issues);
  }
  const snapshot = model.snapshot();
  return { tables: compile(snapshot), snapshot, issues };
}

/** An address for "ns/pod" (its first of the given family, or primary) or a literal address. */
export function addressOf(tables: RuleTables, target: string, family?: 4 | 6): Ip {
  const literal = tryParseIp(target);
  if (literal !== undefined) return literal;
  const e = tables.endpoints.get(target);
  if (e === undefined) throw new Error(`fixture has no endpoint ${target}`);
  const ips = e.endpoint.ips.map(parseIp);
  return (
    (family === undefined
      ? undefined
      : ips.find((ip) => (typeof ip === 'number' ? 4 : 6) === family)) ?? ips[0]!
  );
}

/** Whether `from` may connect to `to` on "PROTO/port" (e.g. "TCP/80"). */
export function allows(
  tables: RuleTables,
  from: string,
  to: string,
  service: string,
  family?: 4 | 6,
): boolean {
  const [protocol, port] = service.split('/') as [Protocol, string];
  const dst = addressOf(tables, to, family);
  const src = addressOf(tables, from, typeof dst === 'number' ? 4 : 6);
  return tables.allows({ src, dst, protocol: PROTOCOL_NUMBER[protocol], dstPort: Number(port) });
}
