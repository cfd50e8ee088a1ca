/**
 * The values of the federation's entries (link.ts), written by the
 * exporter and read back, as untrusted input, by every other member's
 * importer. Objects travel in Kubernetes' own JSON form and are read with
 * the same readers as a member's own manifests (readKubeObject), so an
 * export can say nothing a member could not apply itself:
 *
 *   ns      { cluster, object: Namespace }
 *   ep      { cluster, object: Pod }          (metadata, named container ports, status.podIPs)
 *   cnp     { cluster, object: ClusterNetworkPolicy labelled weir.io/federated: "true" }
 *   member  MemberReport
 *
 * `cluster` must be the cluster of the entry's key: the hub's permissions
 * already keep a member to its own keys, and a value that names another
 * cluster is refused as well, so a copied entry cannot pass for another's.
 */
import { overlapCidr } from 'cidr-tools';
import { parseCidr } from '../../shared/net/ip.js';
import type { Endpoint, Labels } from '../../shared/policy/types.js';
import {
  FEDERATED_LABEL,
  writeClusterNetworkPolicy,
  type ClusterNetworkPolicyObject,
} from '../kube/cluster-network-policy.js';
import { isRecord } from '../kube/common.js';
import { readKubeObject } from '../kube/objects.js';
import type { EntryRef } from './link.js';

/** Limits on what one member may put in another's model (bounded inputs). */
export const FEDERATION_LIMITS = {
  /** Entries of one kind one remote member may have in force here. */
  entriesPerCluster: { ns: 10_000, ep: 200_000, cnp: 1_000, member: 1 },
  /** Remote members. */
  clusters: 256,
  /** Items listed in a member report's imported and rejected lists. */
  reportItems: 2_000,
  podCidrs: 64,
} as const;

export interface MemberReport {
  readonly cluster: string;
  readonly atUnixMs: number;
  readonly podCidrs: readonly string[];
  readonly exported: {
    readonly namespaces: number;
    readonly endpoints: number;
    readonly policies: number;
  };
  readonly imported: ReadonlyArray<{
    readonly origin: string;
    readonly name: string;
    readonly tier: string;
    readonly state: string;
    readonly agents: { readonly inSync: number; readonly total: number };
    readonly revision: number;
  }>;
  readonly rejected: ReadonlyArray<{
    readonly object: string;
    readonly problems: readonly string[];
  }>;
}

/** What an entry says, once read. */
export type EntryValue =
  | { readonly kind: 'ns'; readonly name: string; readonly labels: Labels }
  | { readonly kind: 'ep'; readonly endpoint: Endpoint }
  | { readonly kind: 'cnp'; readonly object: ClusterNetworkPolicyObject }
  | { readonly kind: 'member'; readonly report: MemberReport };

export type EntryRead =
  | { readonly ok: true; readonly value: EntryValue }
  /** Each problem names the field ("value.object.spec.tier: required"). */
  | { readonly ok: false; readonly problems: string[] };

// --- writing -------------------------------------------------------------------

export function namespaceEntry(cluster: string, name: string, labels: Labels): unknown {
  return { cluster, object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } } };
}

export function endpointEntry(cluster: string, e: Endpoint): unknown {
  return {
    cluster,
    object: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: e.name, namespace: e.namespace, uid: e.uid, labels: e.labels },
      spec: {
        containers: [
          {
            name: 'exported',
            ports: e.ports.map((p) => ({
              name: p.name,
              containerPort: p.port,
              protocol: p.protocol,
            })),
          },
        ],
      },
      status: { phase: 'Running', podIPs: e.ips.map((ip) => ({ ip })) },
    },
  };
}

export function policyEntry(cluster: string, o: ClusterNetworkPolicyObject): unknown {
  return { cluster, object: writeClusterNetworkPolicy(o) };
}

// --- reading -------------------------------------------------------------------

/** Reads an entry's value for its key; never throws. */
export function readEntry(ref: EntryRef, value: unknown): EntryRead {
  if (!isRecord(value)) return fail('value: must be a JSON object');
  if (ref.kind === 'member') return readMemberReport(ref, value);
  if (value.cluster !== ref.cluster)
    return fail(
      `value.cluster: ${JSON.stringify(value.cluster)} is not the cluster of its key (${JSON.stringify(ref.cluster)})`,
    );
  const r = readKubeObject(value.object, `federation ${ref.cluster}`);
  if (r.type === 'ignored') return fail(`value.object: ${r.note}`);
  if (r.type === 'invalid')
    return {
      ok: false,
      problems: r.issues.map((i) =>
        i.field === undefined
          ? `value.object: ${i.message}`
          : `value.object.${i.field}: ${i.message}`,
      ),
    };
  const o = r.object;
  if (ref.kind === 'ns') {
    if (o.kind !== 'Namespace') return fail(`value.object.kind: ${o.kind} is not Namespace`);
    if (o.name !== ref.name) return nameMismatch(o.name, ref.name);
    return { ok: true, value: { kind: 'ns', name: o.name, labels: o.labels } };
  }
  if (ref.kind === 'ep') {
    if (o.kind !== 'Pod') return fail(`value.object.kind: ${o.kind} is not Pod`);
    if (`${o.namespace}/${o.name}` !== ref.name)
      return nameMismatch(`${o.namespace}/${o.name}`, ref.name);
    if (o.ips.length === 0)
      return fail('value.object.status.podIPs: required (an exported pod has addresses)');
    if (o.hostNetwork)
      return fail('value.object.spec.hostNetwork: a host-network pod is not exported');
    return {
      ok: true,
      value: {
        kind: 'ep',
        endpoint: {
          cluster: ref.cluster,
          namespace: o.namespace,
          name: o.name,
          uid: o.uid,
          node: '',
          ips: o.ips,
          labels: o.labels,
          namespaceLabels: {},
          ports: o.ports,
          nodeAddresses: [],
        },
      },
    };
  }
  if (o.kind !== 'ClusterNetworkPolicy')
    return fail(`value.object.kind: ${o.kind} is not ClusterNetworkPolicy`);
  if (o.name !== ref.name) return nameMismatch(o.name, ref.name);
  if (!o.federated)
    return fail(
      `value.object.metadata.labels: ${FEDERATED_LABEL}: "true" required (only federated policies are exported)`,
    );
  return { ok: true, value: { kind: 'cnp', object: o } };
}

function readMemberReport(ref: EntryRef, v: Record<string, unknown>): EntryRead {
  const problems: string[] = [];
  if (ref.name !== 'self')
    problems.push(`key: a member report is named "self", not ${JSON.stringify(ref.name)}`);
  if (v.cluster !== ref.cluster)
    problems.push(
      `value.cluster: ${JSON.stringify(v.cluster)} is not the cluster of its key (${JSON.stringify(ref.cluster)})`,
    );
  const at = v.atUnixMs;
  if (typeof at !== 'number' || !Number.isFinite(at) || at < 0)
    problems.push('value.atUnixMs: must be a time in milliseconds');
  const podCidrs: string[] = [];
  if (!Array.isArray(v.podCidrs)) problems.push('value.podCidrs: must be a list of CIDRs');
  else if (v.podCidrs.length > FEDERATION_LIMITS.podCidrs)
    problems.push(
      `value.podCidrs: ${v.podCidrs.length} CIDRs; at most ${FEDERATION_LIMITS.podCidrs}`,
    );
  else
    v.podCidrs.forEach((c, i) => {
      const parsed = typeof c === 'string' ? parseCidr(c) : 'not a string';
      if (typeof parsed === 'string') problems.push(`value.podCidrs[${i}]: ${parsed}`);
      else podCidrs.push(parsed.text);
    });
  const exported = isRecord(v.exported) ? v.exported : undefined;
  const count = (k: string) => {
    const n = exported?.[k];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      problems.push(`value.exported.${k}: must be a count`);
      return 0;
    }
    return n;
  };
  const counts = {
    namespaces: count('namespaces'),
    endpoints: count('endpoints'),
    policies: count('policies'),
  };
  const list = (field: 'imported' | 'rejected') => {
    const x = v[field];
    if (!Array.isArray(x)) {
      problems.push(`value.${field}: must be a list`);
      return [];
    }
    if (x.length > FEDERATION_LIMITS.reportItems) {
      problems.push(`value.${field}: ${x.length} items; at most ${FEDERATION_LIMITS.reportItems}`);
      return [];
    }
    return x;
  };
  const imported: Array<MemberReport['imported'][number]> = [];
  for (const [i, x] of list('imported').entries()) {
    const f = `value.imported[${i}]`;
    if (!isRecord(x) || !isRecord(x.agents)) {
      problems.push(`${f}: must be an object with agents`);
      continue;
    }
    const agents = x.agents;
    const s = (k: string): string => {
      if (typeof x[k] === 'string') return x[k] as string;
      problems.push(`${f}.${k}: must be a string`);
      return '';
    };
    const n = (o: Record<string, unknown>, k: string): number => {
      const v = o[k];
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
      problems.push(`${f}.${k}: must be a count`);
      return 0;
    };
    imported.push({
      origin: s('origin'),
      name: s('name'),
      tier: s('tier'),
      state: s('state'),
      agents: { inSync: n(agents, 'inSync'), total: n(agents, 'total') },
      revision: n(x, 'revision'),
    });
  }
  const rejected: Array<MemberReport['rejected'][number]> = [];
  for (const [i, x] of list('rejected').entries()) {
    if (!isRecord(x) || typeof x.object !== 'string' || !Array.isArray(x.problems))
      problems.push(`value.rejected[${i}]: must be { object, problems }`);
    else rejected.push({ object: x.object, problems: x.problems.map(String).slice(0, 100) });
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    value: {
      kind: 'member',
      report: {
        cluster: ref.cluster,
        atUnixMs: at as number,
        podCidrs,
        exported: counts,
        imported,
        rejected,
      },
    },
  };
}

/** Pairs of members whose pod CIDRs overlap (each pair once, sorted). */
export function podCidrOverlaps(
  members: ReadonlyArray<{ cluster: string; podCidrs: readonly string[] }>,
): string[] {
  const out: string[] = [];
  const sorted = [...members].sort((a, b) => (a.cluster < b.cluster ? -1 : 1));
  for (let i = 0; i < sorted.length; i++)
    for (let j = i + 1; j < sorted.length; j++)
      for (const x of sorted[i]!.podCidrs)
        for (const y of sorted[j]!.podCidrs) {
          let overlaps = false;
          try {
            overlaps = overlapCidr(x, y);
          } catch {
            overlaps = false; // mixed families never overlap
          }
          if (overlaps)
            out.push(
              `pod CIDR ${x} of ${sorted[i]!.cluster} overlaps ${y} of ${sorted[j]!.cluster}`,
            );
        }
  return out;
}

function fail(problem: string): EntryRead {
  return { ok: false, problems: [problem] };
}

function nameMismatch(got: string, want: string): EntryRead {
  return fail(
    `value.object.metadata.name: ${JSON.stringify(got)} is not the name of its key (${JSON.stringify(want)})`,
  );
}

/** The key of an entry at the hub (link.ts): `<kind>.<cluster>.<base64url(name)>`. */
export function entryKey(ref: EntryRef): string {
  return `${ref.kind}.${ref.cluster}.${Buffer.from(ref.name).toString('base64url')}`;
}
