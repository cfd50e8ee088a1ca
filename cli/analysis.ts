/**
 * Offline what-if analysis: manifests in, the same rule tables and evaluator
 * the agents use, verdicts out. Pods written without status.podIP get an
 * address for the analysis (from 240.0.0.0/4, which no network routes) so
 * that manifests written by hand can be analysed as they are.
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import type { PodObject } from '../controller/kube/objects.js';
import { readManifests } from '../controller/sources/manifests.js';
import { ValidationError, type Issue } from '../shared/errors.js';
import { formatIp, parseIp, type Ip } from '../shared/net/ip.js';
import { familyName, probePairs, type Probe, type Target } from '../shared/policy/probe.js';
import { compile } from '../shared/policy/compile.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import {
  PROTOCOL_NUMBER,
  endpointKey,
  type Labels,
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

/** All of standard input, for `-f -`. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `paths`: files and directories; "-" is standard input (`options.stdin` instead, in tests). */
export async function analyse(
  paths: readonly string[],
  options: { cluster?: string; stdin?: string } = {},
): Promise<Analysis> {
  if (paths.filter((p) => p === '-').length > 1)
    throw new ValidationError([{ field: '-f', message: 'standard input ("-") can be read once' }]);
  const stdin = paths.includes('-') ? (options.stdin ?? (await readStdin())) : undefined;
  const read = await readManifests(paths, stdin === undefined ? {} : { stdin });
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
    /** Per pair: allowed only when every address family the two pods share allows it. */
    readonly allowed: Record<string, Record<string, boolean>>;
    /**
     * Only the pairs whose families disagree ({"IPv4": true, "IPv6": false}),
     * or that share no family ({}: they cannot connect, shown as denied).
     * Absent when there are none.
     */
    readonly families?: Record<string, Record<string, Partial<Record<'IPv4' | 'IPv6', boolean>>>>;
  }>;
}

/**
 * Every pod to every pod, in every address family the pair shares (dual-stack
 * pods are checked on IPv4 and on IPv6); `namespaces`, when given, keeps the
 * pods of those namespaces only (rows and columns).
 */
export function matrix(
  tables: RuleTables,
  probes: readonly Probe[],
  namespaces: readonly string[] = [],
  /** -l: only the pods whose labels it accepts. */
  selects: (labels: Labels) => boolean = () => true,
): Matrix {
  const endpoints = [...tables.snapshot.endpoints]
    .filter((e) => namespaces.length === 0 || namespaces.includes(e.namespace))
    .filter((e) => selects(e.labels))
    .sort((a, b) => (endpointKey(a) < endpointKey(b) ? -1 : 1));
  const pods = endpoints.map(endpointKey);
  const targets: Target[] = endpoints.map((e) => ({
    kind: 'pod',
    text: endpointKey(e),
    pod: endpointKey(e),
    ips: e.ips.map(parseIp),
  }));
  const pairs = targets.map((from) => targets.map((to) => sharedFamilies(from, to)));
  return {
    pods,
    probes: probes.map(({ protocol, port }) => {
      const allowed: Record<string, Record<string, boolean>> = {};
      const families: Record<
        string,
        Record<string, Partial<Record<'IPv4' | 'IPv6', boolean>>>
      > = {};
      endpoints.forEach((_, i) => {
        const row: Record<string, boolean> = {};
        pods.forEach((to, j) => {
          const perFamily: Partial<Record<'IPv4' | 'IPv6', boolean>> = {};
          for (const { src, dst } of pairs[i]![j]!) {
            perFamily[familyName(src) as 'IPv4' | 'IPv6'] = tables.allows({
              src,
              dst,
              protocol: PROTOCOL_NUMBER[protocol],
              dstPort: port,
            });
          }
          const verdicts = Object.values(perFamily);
          row[to] = verdicts.length > 0 && verdicts.every((v) => v);
          if (verdicts.length === 0 || verdicts.some((v) => v !== verdicts[0])) {
            families[pods[i]!] ??= {};
            families[pods[i]!]![to] = perFamily;
          }
        });
        allowed[pods[i]!] = row;
      });
      return Object.keys(families).length === 0
        ? { protocol, port, allowed }
        : { protocol, port, allowed, families };
    }),
  };
}

/** The address pairs of two pods, one per shared family; none when they share no family. */
function sharedFamilies(from: Target, to: Target): Array<{ src: Ip; dst: Ip }> {
  try {
    return probePairs(from, to);
  } catch (err) {
    if (err instanceof ValidationError) return [];
    throw err;
  }
}
