/**
 * The lab's view of a manifest directory: what the controller watches, and
 * what the lab builds namespaces from. The lab plays the scheduler and the
 * kubelet, so its view is DIR as an API server would hold it once those had
 * run: every file copied byte for byte, except that a Pod without
 * spec.nodeName gets the node the lab placed it on (kept across renders),
 * a Pod without addresses gets one from 240.0.0.0/4 (in the order and from
 * the base the offline analysis uses, so both name the same address), and
 * Node objects are made (zz-weir-lab-nodes.yaml) for nodes that pods name or
 * `--nodes N` asks for when DIR has none. A file that does not parse is
 * copied as it is, so the controller sees and reports what DIR holds.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { parseAllDocuments, stringify, type Document } from 'yaml';
import type { NodeObject } from '../controller/kube/node.js';
import type { KubeObject } from '../controller/kube/objects.js';
import type { PodObject } from '../controller/kube/pod.js';
import { listManifests, readManifests } from '../controller/sources/manifests.js';
import { ValidationError } from '../shared/errors.js';
import { formatIp } from '../shared/net/ip.js';
import { ANALYSIS_ADDRESS_BASE } from './analysis.js';

export const LAB_NODES_FILE = 'zz-weir-lab-nodes.yaml';
/** Nodes the lab makes when DIR names none and `--nodes` is not given. */
export const DEFAULT_NODES = 2;
/** At most this many nodes and pods in one lab: each is a netns and processes. */
export const MAX_NODES = 64;
export const MAX_PODS = 512;

export interface ViewNode {
  readonly name: string;
  /** InternalIP addresses, as the controller reads them. */
  readonly addresses: readonly string[];
  /** Made by the lab (no Node object in DIR). */
  readonly synthetic: boolean;
}

export interface ViewPod {
  /** "namespace/name" */
  readonly key: string;
  readonly node: string;
  readonly ips: readonly string[];
}

export interface View {
  readonly nodes: readonly ViewNode[];
  readonly pods: readonly ViewPod[];
  /** Pods the lab placed (no spec.nodeName in DIR): key → node. */
  readonly placement: Readonly<Record<string, string>>;
  readonly notes: readonly string[];
}

const podKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;
const networked = (p: PodObject) =>
  !p.hostNetwork && p.phase !== 'Succeeded' && p.phase !== 'Failed';

/**
 * Reads DIR, places and addresses its pods, writes the view into `viewDir`.
 * Invalid manifests fail with every problem (object and field): the lab
 * builds nothing from a directory the controller would only half take.
 */
export async function renderView(
  dir: string,
  viewDir: string,
  options: { nodes?: number; placement?: Readonly<Record<string, string>> } = {},
): Promise<View> {
  const read = await readManifests([dir]);
  const issues = [...read.issues];
  // The controller takes an empty file for one caught half-written and keeps
  // what it held last; the lab could then never prove sync with DIR as it is.
  for (const file of (await listManifests(dir)).files.keys())
    if ((await readFile(file, 'utf8')).trim() === '')
      issues.push({
        source: file,
        message:
          'empty: the controller keeps what this file held last in force; delete the file to remove its objects',
      });
  if (issues.length > 0) throw new ValidationError(issues);
  const objects = read.objects;
  const pods = objects.filter((o): o is PodObject => o.kind === 'Pod');
  const nodeObjects = objects.filter((o): o is NodeObject => o.kind === 'Node');
  if (pods.length > MAX_PODS)
    throw new ValidationError([
      { source: dir, message: `${pods.length} pods; a lab holds at most ${MAX_PODS}` },
    ]);

  // Nodes: DIR's, those pods name, or --nodes N (default 2) when there are none.
  const nodes = new Map<string, ViewNode>();
  for (const n of nodeObjects)
    nodes.set(n.name, {
      name: n.name,
      addresses: n.addresses.filter((a) => a.type === 'InternalIP').map((a) => a.address),
      synthetic: false,
    });
  const named = [...new Set(pods.map((p) => p.node).filter((n) => n !== ''))];
  const wanted = [...named.filter((n) => !nodes.has(n))];
  if (nodes.size === 0 && named.length === 0) {
    const n = options.nodes ?? DEFAULT_NODES;
    for (let i = 1; i <= n; i++) wanted.push(`node-${i}`);
  } else if (options.nodes !== undefined && nodes.size + wanted.length < options.nodes) {
    for (let i = 1; nodes.size + wanted.length < options.nodes; i++)
      if (!nodes.has(`node-${i}`) && !wanted.includes(`node-${i}`)) wanted.push(`node-${i}`);
  }
  const taken = new Set([
    ...pods.flatMap((p) => p.ips),
    ...[...nodes.values()].flatMap((n) => n.addresses),
  ]);
  let host = 1;
  for (const name of wanted) {
    let address: string;
    do address = `192.168.255.${host++}`;
    while (taken.has(address) && host < 255);
    nodes.set(name, { name, addresses: [address], synthetic: true });
  }
  if (nodes.size > MAX_NODES)
    throw new ValidationError([
      { source: dir, message: `${nodes.size} nodes; a lab holds at most ${MAX_NODES}` },
    ]);
  const missing = [...nodes.values()].filter((n) => n.addresses.length === 0);
  if (missing.length > 0)
    throw new ValidationError(
      missing.map((n) => ({
        object: `Node ${n.name}`,
        field: 'status.addresses',
        message: 'no InternalIP address: the lab cannot place the node on its fabric',
      })),
    );

  // Placement of unscheduled pods: kept from the last render, else the least loaded node.
  const names = [...nodes.keys()].sort();
  const load = new Map(names.map((n) => [n, 0]));
  for (const p of pods) if (p.node !== '') load.set(p.node, (load.get(p.node) ?? 0) + 1);
  const placement: Record<string, string> = {};
  for (const p of pods) {
    if (p.node !== '' || !networked(p)) continue;
    const kept = options.placement?.[podKey(p)];
    const node =
      kept !== undefined && nodes.has(kept)
        ? kept
        : names.reduce((best, n) => (load.get(n)! < load.get(best)! ? n : best), names[0]!);
    placement[podKey(p)] = node;
    load.set(node, load.get(node)! + 1);
  }
  // Addresses as the analysis gives them: in read order from 240.0.0.1.
  let next = ANALYSIS_ADDRESS_BASE + 1;
  const assigned: Record<string, string> = {};
  for (const p of pods)
    if (networked(p) && p.ips.length === 0) assigned[podKey(p)] = formatIp(next++);

  await writeView(
    dir,
    viewDir,
    placement,
    assigned,
    [...nodes.values()].filter((n) => n.synthetic),
  );

  const notes = [...read.notes];
  if (Object.keys(placement).length > 0)
    notes.push(
      `pods without spec.nodeName placed by the lab: ${Object.entries(placement)
        .map(([k, n]) => `${k}=${n}`)
        .join(', ')}`,
    );
  if (Object.keys(assigned).length > 0)
    notes.push(
      `pods without status.podIP addressed by the lab (as the analysis does): ${Object.entries(
        assigned,
      )
        .map(([k, ip]) => `${k}=${ip}`)
        .join(', ')}`,
    );
  return {
    nodes: [...nodes.values()],
    pods: pods.filter(networked).map((p) => ({
      key: podKey(p),
      node: p.node || placement[podKey(p)]!,
      ips: p.ips.length > 0 ? p.ips : [assigned[podKey(p)]!],
    })),
    placement,
    notes,
  };
}

async function writeView(
  dir: string,
  viewDir: string,
  placement: Readonly<Record<string, string>>,
  assigned: Readonly<Record<string, string>>,
  synthetic: readonly ViewNode[],
): Promise<void> {
  await mkdir(viewDir, { recursive: true, mode: 0o700 });
  const listing = await listManifests(dir);
  const written = new Set<string>();
  for (const file of listing.files.keys()) {
    const rel = relative(dir, file);
    const text = await readFile(file, 'utf8');
    await writeAtomic(join(viewDir, rel), patch(text, file.endsWith('.json'), placement, assigned));
    written.add(rel);
  }
  if (synthetic.length > 0) {
    await writeAtomic(
      join(viewDir, LAB_NODES_FILE),
      `# Made by weirctl lab: nodes the manifests name but do not define.\n${stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: synthetic.map((n) => ({
          apiVersion: 'v1',
          kind: 'Node',
          metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name } },
          status: { addresses: n.addresses.map((address) => ({ type: 'InternalIP', address })) },
        })),
      })}`,
    );
    written.add(LAB_NODES_FILE);
  }
  // Files gone from DIR go from the view (the controller sees the deletion).
  for (const rel of await walk(viewDir)) if (!written.has(rel)) await rm(join(viewDir, rel));
}

/** The text with unscheduled or unaddressed pods filled in; the text itself when nothing changes. */
function patch(
  text: string,
  json: boolean,
  placement: Readonly<Record<string, string>>,
  assigned: Readonly<Record<string, string>>,
): string {
  let docs: Document.Parsed[];
  try {
    docs = parseAllDocuments(text, { uniqueKeys: false, merge: true }) as Document.Parsed[];
    if (!Array.isArray(docs) || docs.some((d) => d.errors.length > 0)) return text;
  } catch {
    return text;
  }
  let changed = false;
  const fill = (doc: Document.Parsed, at: unknown[]) => {
    if (doc.getIn([...at, 'kind']) !== 'Pod') return;
    const ns = String(doc.getIn([...at, 'metadata', 'namespace']) ?? '') || 'default';
    const key = `${ns}/${String(doc.getIn([...at, 'metadata', 'name']) ?? '')}`;
    const node = placement[key];
    if (node !== undefined && !doc.getIn([...at, 'spec', 'nodeName'])) {
      doc.setIn([...at, 'spec', 'nodeName'], node);
      changed = true;
    }
    const ip = assigned[key];
    if (ip !== undefined) {
      doc.setIn([...at, 'status', 'podIP'], ip);
      doc.setIn([...at, 'status', 'podIPs'], doc.createNode([{ ip }]));
      changed = true;
    }
  };
  for (const doc of docs) {
    fill(doc, []);
    const items = doc.getIn(['items']) as { items?: unknown[] } | undefined;
    if (doc.getIn(['kind']) === 'List' && Array.isArray(items?.items))
      for (let i = 0; i < items.items.length; i++) fill(doc, ['items', i]);
  }
  if (!changed) return text;
  if (json)
    return `${JSON.stringify(docs.length === 1 ? docs[0]!.toJS() : docs.map((d) => d.toJS()), null, 2)}\n`;
  return docs.map((d) => d.toString()).join('---\n');
}

/** Replaces a file whole (write beside, rename): the watching controller never reads half of one. */
async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    if ((await readFile(path, 'utf8')) === text) return;
  } catch {
    // not there yet
  }
  const tmp = `${path}.weir-lab-tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

async function walk(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, prefix), { withFileTypes: true }).catch(() => [])) {
    const rel = join(prefix, e.name);
    if (e.isDirectory()) out.push(...(await walk(root, rel)));
    else out.push(rel);
  }
  return out;
}

export type { KubeObject };
