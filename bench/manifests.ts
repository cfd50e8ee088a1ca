/**
 * The watched manifest source at cluster size, through the real controller
 * process (issue 7, defect 6): a generated directory of 2,000 namespaces,
 * 20,000 pods and 5,000 NetworkPolicies (one file per namespace, in 20
 * subdirectories), `bin/weir-controller --manifests DIR --state-dir TMP` started on it, and
 *
 *   first sync     spawn → the "source synced" log line (and the first revision)
 *   idle CPU       the controller's CPU time over 10 s of no changes, from 30 s after the
 *                  first revision (/proc/PID/stat),
 *                  with its RSS range over the same 10 s
 *   status         20 `weirctl status` calls (GetStatus, a new channel each, as
 *                  weirctl does) while idle: median and max
 *   edits          time from a file operation (write in place, rename over, create
 *                  in a new subdirectory, delete) to the revision it causes
 *
 * Runnable alone: node --import tsx bench/manifests.ts [--namespaces=2000]
 *   [--compare=DIR]  also run the controller of another checkout (built: npm run build
 *                    there) on the same directory first, as "before"
 *
 * Prints a report; exits non-zero when the controller reports a problem with
 * the generated manifests or an edit is not seen within 15 s (this checkout
 * only). Timings never fail the run.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { call, operatorClient } from '../cli/clients.js';
import { setConnectionFlags } from '../cli/config.js';
import type { StatusReply__Output } from '../shared/generated/weir/v1/StatusReply.js';
import type { Raw } from '../testing/cluster.js';
import { realisticCluster } from '../testing/random-cluster.js';
import { MachineLoad, median, table } from './measure.js';
import { ControllerProcess, checkBuild, processCpuMs, processMemoryMiB } from './program.js';
import { freePort } from '../testing/ports.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Result {
  readonly label: string;
  readonly syncMs: number | undefined;
  readonly firstRevisionMs: number | undefined;
  readonly idleCpuPercent: number | undefined;
  readonly rssMiB: readonly [number, number] | undefined;
  readonly statusMs: readonly number[];
  readonly statusFailures: number;
  readonly edits: ReadonlyArray<{ readonly op: string; readonly ms: number | undefined }>;
  readonly problems: number;
  readonly otherCpus: number | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes the cluster, one file per namespace (its Namespace, Pods and NetworkPolicies). */
export async function writeCluster(
  dir: string,
  namespaces: number,
): Promise<Record<string, number>> {
  let policy = 0;
  // Every fourth policy: 5,000 of the generator's 20,000 at 2,000 namespaces.
  const objects = realisticCluster(namespaces).objects.filter(
    (o) => o.kind !== 'NetworkPolicy' || policy++ % 4 === 0,
  );
  return writeNamespaceFiles(dir, objects);
}

/**
 * Writes objects one file per namespace (its Namespace and namespaced
 * objects), in 20 subdirectories; returns the count of each kind.
 */
export async function writeNamespaceFiles(
  dir: string,
  objects: readonly Raw[],
): Promise<Record<string, number>> {
  const byNamespace = new Map<string, Raw[]>();
  const counts: Record<string, number> = {};
  for (const o of objects) {
    const kind = String(o.kind);
    const meta = o.metadata as { name: string; namespace?: string };
    const ns = kind === 'Namespace' ? meta.name : meta.namespace!;
    counts[kind] = (counts[kind] ?? 0) + 1;
    const list = byNamespace.get(ns) ?? [];
    list.push(o);
    byNamespace.set(ns, list);
  }
  let i = 0;
  for (const [ns, list] of byNamespace) {
    const file = join(dir, `group-${String(i++ % 20).padStart(2, '0')}`, `${ns}.yaml`);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, list.map((o) => stringify(o)).join('---\n'));
  }
  return counts;
}

/** The probe's objects: a pod on a node, and a policy selecting it whose port each edit changes. */
const probeNamespace = () =>
  'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-probe}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: bench-probe, labels: {app: p}}\nspec: {nodeName: node-0}\nstatus: {phase: Running, podIP: 10.255.0.1}\n';
const probePolicy = (name: string, port: number) =>
  `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}, namespace: bench-probe}\nspec:\n  podSelector: {matchLabels: {app: p}}\n  ingress:\n  - ports: [{port: ${port}}]\n`;

async function runController(label: string, checkout: string, dir: string): Promise<Result> {
  checkBuild(label, checkout);
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  setConnectionFlags({ insecure: true });
  const load = new MachineLoad();
  const state = await mkdtemp(join(tmpdir(), 'weir-bench-state-'));
  // A checkout from before mutual TLS knows no --insecure; this one refuses to start without it or certificates.
  const tlsFlag = readFileSync(join(checkout, 'controller', 'main.ts'), 'utf8').includes(
    'TLS_FLAGS',
  )
    ? ['--insecure']
    : [];
  const controller = ControllerProcess.start(checkout, [
    '--manifests',
    dir,
    '--listen',
    address,
    '--state-dir',
    state,
    ...tlsFlag,
  ]);
  const t0 = controller.startedAt;
  const lines = controller.lines;
  const waitFor = controller.waitFor.bind(controller);
  const status = (timeoutMs = 5_000) => {
    const c = operatorClient(address);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, label, timeoutMs);
  };
  try {
    const synced = await waitFor((l) => l.msg === 'source synced', 600_000);
    const firstRevision = await waitFor((l) => l.msg === 'revision committed', 60_000);
    await sleep(30_000); // let start-up work (the heap settling after the first sync) pass
    const pid = controller.pid;
    const c0 = processCpuMs(pid);
    const w0 = Date.now();
    const rss: number[] = [];
    const statusMs: number[] = [];
    let statusFailures = 0;
    let problems = 0;
    // 10 s of no changes: status twice a second, RSS four times.
    for (let tick = 0; Date.now() - w0 < 10_000; tick++) {
      const r = processMemoryMiB(pid, 'VmRSS');
      if (r !== undefined) rss.push(r);
      if (tick % 2 === 0 && statusMs.length + statusFailures < 20) {
        const s0 = performance.now();
        try {
          const s = await status();
          statusMs.push(performance.now() - s0);
          problems = s.rejections.length;
        } catch {
          statusFailures++;
        }
      }
      await sleep(250);
    }
    const c1 = processCpuMs(pid);
    const idleCpuPercent =
      c0 !== undefined && c1 !== undefined ? ((c1 - c0) / (Date.now() - w0)) * 100 : undefined;

    // Edits: each causes one revision (the probe policy's node span changes).
    const edits: Array<{ op: string; ms: number | undefined }> = [];
    const probeDir = join(dir, 'bench-probe');
    await mkdir(probeDir, { recursive: true });
    const policyFile = join(probeDir, 'policy.yaml');
    await writeFile(join(probeDir, 'namespace.yaml'), probeNamespace());
    await writeFile(policyFile, probePolicy('probe', 1000));
    await waitFor((l) => l.msg === 'revision committed' && l.time >= Date.now() - 100, 15_000);
    await sleep(500);
    const edit = async (op: string, action: () => Promise<void>) => {
      const since = lines.length;
      await action();
      const done = Date.now();
      const seen = await waitFor((l) => l.msg === 'revision committed', 15_000, since);
      edits.push({ op, ms: seen ? Math.max(0, seen.time - done) : undefined });
      await sleep(300);
    };
    let port2 = 1000;
    for (let i = 0; i < 5; i++) {
      await edit('write in place', () => writeFile(policyFile, probePolicy('probe', ++port2)));
      await edit('rename over', async () => {
        await writeFile(join(probeDir, '.policy.yaml.tmp'), probePolicy('probe', ++port2));
        await rename(join(probeDir, '.policy.yaml.tmp'), policyFile);
      });
      const extra = join(probeDir, `new-${i}`, 'extra.yaml');
      await edit('create in a new subdirectory', async () => {
        await mkdir(dirname(extra), { recursive: true });
        await writeFile(extra, probePolicy(`extra-${i}`, 2000 + i));
      });
      await edit('delete', () => rm(extra));
    }
    await rm(probeDir, { recursive: true, force: true });
    return {
      label,
      syncMs: synced ? synced.time - t0 : undefined,
      firstRevisionMs: firstRevision ? firstRevision.time - t0 : undefined,
      idleCpuPercent,
      rssMiB: rss.length > 0 ? [Math.min(...rss), Math.max(...rss)] : undefined,
      statusMs,
      statusFailures,
      edits,
      problems,
      otherCpus: load.otherCpus(),
    };
  } finally {
    await controller.stop();
    await rm(state, { recursive: true, force: true });
  }
}

function report(results: readonly Result[]): string {
  const fmt = (ms: number | undefined) => (ms === undefined ? 'not seen' : `${Math.round(ms)} ms`);
  const rows: string[][] = [['', ...results.map((r) => r.label)]];
  rows.push(['first sync (spawn → source synced)', ...results.map((r) => fmt(r.syncMs))]);
  rows.push(['first revision committed', ...results.map((r) => fmt(r.firstRevisionMs))]);
  rows.push([
    'idle CPU over 10 s',
    ...results.map((r) =>
      r.idleCpuPercent === undefined ? '?' : `${r.idleCpuPercent.toFixed(1)}% of a core`,
    ),
  ]);
  rows.push([
    'RSS while idle',
    ...results.map((r) =>
      r.rssMiB ? `${Math.round(r.rssMiB[0])}-${Math.round(r.rssMiB[1])} MiB` : '?',
    ),
  ]);
  rows.push([
    'status (median / max of 20)',
    ...results.map(
      (r) =>
        `${r.statusMs.length ? `${Math.round(median(r.statusMs))} / ${Math.round(Math.max(...r.statusMs))} ms` : '-'}${r.statusFailures ? `, ${r.statusFailures} timed out (5 s)` : ''}`,
    ),
  ]);
  for (const op of ['write in place', 'rename over', 'create in a new subdirectory', 'delete']) {
    rows.push([
      `${op} → revision (each of 5)`,
      ...results.map((r) =>
        r.edits
          .filter((e) => e.op === op)
          .map((e) => (e.ms === undefined ? '>15s' : String(e.ms)))
          .join(', '),
      ),
    ]);
  }
  rows.push(['problems reported in status', ...results.map((r) => String(r.problems))]);
  rows.push([
    'other processes (CPUs busy)',
    ...results.map((r) => (r.otherCpus === undefined ? '?' : r.otherCpus.toFixed(2))),
  ]);
  return table(rows);
}

export async function benchManifests(
  options: { namespaces?: number; compare?: string } = {},
): Promise<{ text: string; ok: boolean }> {
  const namespaces = options.namespaces ?? 2000;
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-manifests-'));
  try {
    const counts = await writeCluster(dir, namespaces);
    const results: Result[] = [];
    if (options.compare) results.push(await runController('before', options.compare, dir));
    const after = await runController('this checkout', ROOT, dir);
    results.push(after);
    const ok =
      after.problems === 0 &&
      after.edits.every((e) => e.ms !== undefined) &&
      after.syncMs !== undefined;
    const text =
      `manifest source: ${counts.Namespace} namespaces, ${counts.Pod} pods, ${counts.NetworkPolicy} NetworkPolicies in ${namespaces} files\n` +
      report(results);
    return { text, ok };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string) =>
    process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const r = await benchManifests({
    namespaces: arg('namespaces') ? Number(arg('namespaces')) : undefined,
    compare: arg('compare'),
  });
  process.stdout.write(`${r.text}\n`);
  process.exitCode = r.ok ? 0 : 1;
}
