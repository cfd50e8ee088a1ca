/**
 * Offline what-if analysis: manifests in, the same rule tables and evaluator
 * the agents use, verdicts out. Pods written without status.podIP get an
 * address for the analysis (from 240.0.0.0/4, which no network routes) so
 * that manifests written by hand can be analysed as they are.
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import type { PodObject } from '../controller/model/kube-objects.js';
import { readManifests } from '../controller/sources/manifests.js';
import type { Issue } from '../shared/errors.js';
import { familyOf, formatIp, parseIp, type Ip } from '../shared/net/ip.js';
import type { Probe } from '../shared/policy/probe.js';
import { compile } from '../shared/policy/compile.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import {
  PROTOCOL_NUMBER,
  endpointKey,
  type Endpoint,
  type PolicySnapshot,
  type Protocol,
} from '../shared/policy/types.js';

export const ANALYSIS_ADDRESS_BASE = 0xf0000000; // 240.0.0.0

export interface Analysis {
  readonly snapshot: PolicySnapshot;
  readonly tables: RuleTables;
  readonly issues: readonly Issue[];
  readonly notes: readonly string[];
}

export async function analyse(
  paths: readonly string[],
  options: { cluster?: string } = {},
): Promise<Analysis> {
  const read = await readManifests(paths);
  const notes = [...read.notes];
  const model = new ClusterModel({ cluster: options.cluster ?? 'local' });
  let next = ANALYSIS_ADDRESS_BASE + 1;
  const assigned: string[] = [];
  const hostNetwork: string[] = [];
  for (const o of read.objects) {
    let object = o;
    if (o.kind === 'Pod' && o.hostNetwork) hostNetwork.push(`${o.namespace}/${o.name}`);
    else if (
      o.kind === 'Pod' &&
      o.ips.length === 0 &&
      o.phase !== 'Succeeded' &&
      o.phase !== 'Failed'
    ) {
      object = { ...o, ips: [formatIp(next++)] } satisfies PodObject;
      assigned.push(`${o.namespace}/${o.name}=${object.ips[0]}`);
    }
    model.apply({ type: 'upsert', object });
  }
  if (assigned.length > 0) {
    notes.push(
      `${assigned.length} pod(s) have no status.podIP; the analysis gives them addresses in 240.0.0.0/4: ${assigned.join(', ')}`,
    );
  }
  if (hostNetwork.length > 0)
    notes.push(
      `host-network pods are not subject to NetworkPolicy and are left out: ${hostNetwork.join(', ')}`,
    );
  const snapshot = model.snapshot();
  return { snapshot, tables: compile(snapshot), issues: read.issues, notes };
}

export interface Matrix {
  readonly pods: readonly string[];
  readonly probes: ReadonlyArray<{
    readonly protocol: Protocol;
    readonly port: number;
    readonly allowed: Record<string, Record<string, boolean>>;
  }>;
}

/** Every pod to every pod; `namespaces`, when given, keeps the pods of those namespaces only (rows and columns). */
export function matrix(
  tables: RuleTables,
  probes: readonly Probe[],
  namespaces: readonly string[] = [],
): Matrix {
  const endpoints = [...tables.snapshot.endpoints]
    .filter((e) => namespaces.length === 0 || namespaces.includes(e.namespace))
    .sort((a, b) => (endpointKey(a) < endpointKey(b) ? -1 : 1));
  const pods = endpoints.map(endpointKey);
  return {
    pods,
    probes: probes.map(({ protocol, port }) => {
      const allowed: Record<string, Record<string, boolean>> = {};
      for (const from of endpoints) {
        const row: Record<string, boolean> = {};
        for (const to of endpoints) {
          const { src, dst } = addresses(from, to);
          row[endpointKey(to)] = tables.allows({
            src,
            dst,
            protocol: PROTOCOL_NUMBER[protocol],
            dstPort: port,
          });
        }
        allowed[endpointKey(from)] = row;
      }
      return { protocol, port, allowed };
    }),
  };
}

/** The destination's primary address, and a source address of the same family when the source has one. */
function addresses(from: Endpoint, to: Endpoint): { src: Ip; dst: Ip } {
  const dst = parseIp(to.ips[0]!);
  const fromIps = from.ips.map(parseIp);
  return { src: fromIps.find((ip) => familyOf(ip) === familyOf(dst)) ?? fromIps[0]!, dst };
}
