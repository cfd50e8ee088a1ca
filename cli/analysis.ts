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
import { familyOf, formatIp, parseIp, tryParseIp, type Ip } from '../shared/net/ip.js';
import { compile } from '../shared/policy/compile.js';
import { explain, type Explanation } from '../shared/policy/explain.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import { PROTOCOL_NUMBER, PROTOCOLS, endpointKey, type Endpoint, type PolicySnapshot, type Protocol } from '../shared/policy/types.js';

export const ANALYSIS_ADDRESS_BASE = 0xf0000000; // 240.0.0.0

export interface Analysis {
  readonly snapshot: PolicySnapshot;
  readonly tables: RuleTables;
  readonly issues: readonly Issue[];
  readonly notes: readonly string[];
}

export async function analyse(paths: readonly string[], options: { cluster?: string } = {}): Promise<Analysis> {
  const read = await readManifests(paths);
  const notes = [...read.notes];
  const model = new ClusterModel({ cluster: options.cluster ?? 'local' });
  let next = ANALYSIS_ADDRESS_BASE + 1;
  const assigned: string[] = [];
  const hostNetwork: string[] = [];
  for (const o of read.objects) {
    let object = o;
    if (o.kind === 'Pod' && o.hostNetwork) hostNetwork.push(`${o.namespace}/${o.name}`);
    else if (o.kind === 'Pod' && o.ips.length === 0 && o.phase !== 'Succeeded' && o.phase !== 'Failed') {
      object = { ...o, ips: [formatIp(next++)] } satisfies PodObject;
      assigned.push(`${o.namespace}/${o.name}=${object.ips[0]}`);
    }
    model.apply({ type: 'upsert', object });
  }
  if (assigned.length > 0) {
    notes.push(`${assigned.length} pod(s) have no status.podIP; the analysis gives them addresses in 240.0.0.0/4: ${assigned.join(', ')}`);
  }
  if (hostNetwork.length > 0) notes.push(`host-network pods are not subject to NetworkPolicy and are left out: ${hostNetwork.join(', ')}`);
  const snapshot = model.snapshot();
  return { snapshot, tables: compile(snapshot), issues: read.issues, notes };
}

export interface Probe {
  readonly protocol: Protocol;
  readonly port: number;
}

/** "TCP/80", "udp/53", "80" (TCP). */
export function parseProbe(text: string): Probe | string {
  const m = /^(?:([A-Za-z]+)\/)?([0-9]+)$/.exec(text.trim());
  const protocol = (m?.[1] ?? 'TCP').toUpperCase();
  const port = Number(m?.[2]);
  if (m === null || !(PROTOCOLS as readonly string[]).includes(protocol)) return `probe ${JSON.stringify(text)}: expected PROTOCOL/PORT with PROTOCOL one of TCP, UDP, SCTP (e.g. TCP/80)`;
  if (!(port >= 1 && port <= 65535)) return `probe ${JSON.stringify(text)}: port must be between 1 and 65535`;
  return { protocol: protocol as Protocol, port };
}

export interface Matrix {
  readonly pods: readonly string[];
  readonly probes: ReadonlyArray<{ readonly protocol: Protocol; readonly port: number; readonly allowed: Record<string, Record<string, boolean>> }>;
}

export function matrix(tables: RuleTables, probes: readonly Probe[]): Matrix {
  const endpoints = [...tables.snapshot.endpoints].sort((a, b) => (endpointKey(a) < endpointKey(b) ? -1 : 1));
  const pods = endpoints.map(endpointKey);
  return {
    pods,
    probes: probes.map(({ protocol, port }) => {
      const allowed: Record<string, Record<string, boolean>> = {};
      for (const from of endpoints) {
        const row: Record<string, boolean> = {};
        for (const to of endpoints) {
          const { src, dst } = addresses(from, to);
          row[endpointKey(to)] = tables.allows({ src, dst, protocol: PROTOCOL_NUMBER[protocol], dstPort: port });
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

/** Resolves "namespace/pod" or an address; returns an error message when neither. */
export function resolveTarget(tables: RuleTables, text: string): { ip: Ip; endpoint?: Endpoint } | string {
  const ip = tryParseIp(text);
  if (ip !== undefined) return { ip, endpoint: tables.byIp.get(ip)?.endpoint };
  const key = text.includes('/') ? text : `default/${text}`;
  const e = tables.endpoints.get(key);
  if (e === undefined) return `${JSON.stringify(text)} is neither an IP address nor a pod (namespace/name) with an address in the manifests`;
  return { ip: e.ips[0]!, endpoint: e.endpoint };
}

export function probe(tables: RuleTables, from: { ip: Ip; endpoint?: Endpoint }, to: { ip: Ip; endpoint?: Endpoint }, p: Probe): Explanation {
  let src = from.ip;
  // A pod probing an address of the other family speaks from its address of that family.
  if (from.endpoint && familyOf(src) !== familyOf(to.ip)) {
    src = from.endpoint.ips.map(parseIp).find((ip) => familyOf(ip) === familyOf(to.ip)) ?? src;
  }
  const verdict = tables.decide({ src, dst: to.ip, protocol: PROTOCOL_NUMBER[p.protocol], dstPort: p.port });
  return explain(tables, verdict, { src, dst: to.ip, protocol: p.protocol, port: p.port });
}
