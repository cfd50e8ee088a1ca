/**
 * Offline what-if analysis: manifests in, the same rule tables and evaluator
 * the agents use, verdicts out. Pods written without status.podIP get an
 * address for the analysis (from 240.0.0.0/4, which no network routes) so
 * that manifests written by hand can be analysed as they are.
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import type { KubeObject, PodObject } from '../controller/kube/objects.js';
import { readManifests } from '../controller/sources/manifests.js';
import { ValidationError, type Issue } from '../shared/errors.js';
import { formatIp } from '../shared/net/ip.js';
import { compile } from '../shared/policy/compile.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import type { PolicySnapshot } from '../shared/policy/types.js';

export const ANALYSIS_ADDRESS_BASE = 0xf0000000; // 240.0.0.0

export interface Analysis {
  readonly snapshot: PolicySnapshot;
  readonly tables: RuleTables;
  readonly issues: readonly Issue[];
  readonly notes: readonly string[];
}

/** All of standard input, for `-f -`. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The objects of some manifests as the analysis applies them: pods without an address given one. */
export interface AnalysedObjects {
  readonly objects: readonly KubeObject[];
  readonly issues: readonly Issue[];
  readonly notes: readonly string[];
}

/**
 * Reads `paths` (with `stdin` for "-") and gives pods written without an
 * address one from `addresses`, a counter shared by every cluster of a
 * federated analysis so that no two clusters' pods get the same address.
 */
export async function analysedObjects(
  paths: readonly string[],
  stdin: string | undefined,
  addresses: { next: number },
): Promise<AnalysedObjects> {
  const read = await readManifests(paths, stdin === undefined ? {} : { stdin });
  const notes = [...read.notes];
  const assigned: string[] = [];
  const hostNetwork: string[] = [];
  const objects: KubeObject[] = [];
  for (const o of read.objects) {
    let object = o;
    if (o.kind === 'Pod' && o.hostNetwork) hostNetwork.push(`${o.namespace}/${o.name}`);
    else if (
      o.kind === 'Pod' &&
      o.ips.length === 0 &&
      o.phase !== 'Succeeded' &&
      o.phase !== 'Failed'
    ) {
      object = { ...o, ips: [formatIp(addresses.next++)] } satisfies PodObject;
      assigned.push(`${o.namespace}/${o.name}=${object.ips[0]}`);
    }
    objects.push(object);
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
  return { objects, issues: read.issues, notes };
}

/** `paths`: files and directories; "-" is standard input (`options.stdin` instead, in tests). */
export async function analyse(
  paths: readonly string[],
  options: { cluster?: string; stdin?: string } = {},
): Promise<Analysis> {
  if (paths.filter((p) => p === '-').length > 1)
    throw new ValidationError([{ field: '-f', message: 'standard input ("-") can be read once' }]);
  const stdin = paths.includes('-') ? (options.stdin ?? (await readStdin())) : undefined;
  const read = await analysedObjects(paths, stdin, { next: ANALYSIS_ADDRESS_BASE + 1 });
  const model = new ClusterModel({ cluster: options.cluster ?? 'local' });
  for (const object of read.objects) model.apply({ type: 'upsert', object });
  const snapshot = model.snapshot();
  return { snapshot, tables: compile(snapshot), issues: read.issues, notes: read.notes };
}

export { type Matrix, matrix } from '../shared/policy/matrix.js';
