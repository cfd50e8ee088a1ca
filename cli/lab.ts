/**
 * `weirctl lab`: a Kubernetes cluster on one machine, from manifests, with
 * the real controller and one real agent per node (root only).
 *
 *   up     the lab's view of DIR (lab-view.ts), a netns per node and per pod
 *          (lab-net.ts), the controller watching the view, an agent in each
 *          node netns; ready when status proves every node in sync with the
 *          span computed here from the same view
 *   sync   brings the lab to DIR as it is now (pods and nodes added, moved,
 *          removed; the view rewritten) and waits for that proof again
 *   down   removes everything the lab made, by its record and by its names
 *
 * The controller listens on a unix socket in the lab's directory, which
 * every netns reaches (sockets are in the file system, not the network): no
 * address outside the lab's namespaces is made or used.
 *
 * Layout of a lab directory ($WEIR_LAB_ROOT/NAME, default /run/weir/lab):
 *   lab.json        the state record (lab-state.ts)
 *   cluster/        the view the controller watches
 *   controller/     the controller's state dir; controller.sock; agent-NODE.sock; *.log
 *   agent-NODE/     each agent's state dir
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterModel } from '../controller/model/cluster-model.js';
import { readManifests } from '../controller/sources/manifests.js';
import { SpanStore } from '../controller/store/span-store.js';
import { ErrorCode, UnavailableError, WeirError } from '../shared/errors.js';
import type { StatusReply__Output } from '../shared/generated/weir/v1/index.js';
import { silentLogger } from '../shared/log.js';
import { StateDirLock } from '../shared/state/lock.js';
import { prepareStateDir } from '../shared/state/state-dir.js';
import { CertificateFiles } from '../shared/tls/credentials.js';
import { CONTROLLER_URI, nodeUri, operatorUri } from '../shared/tls/identity.js';
import { issueCa, issueCert, readCaDir, writeCaDir, writeTlsDir } from '../shared/tls/issue.js';
import { call, operatorClient } from './clients.js';
import { UsageError } from './io.js';
import {
  deleteNetns,
  fabricNeighbours,
  fabricRoutes,
  ipBatch,
  listNetns,
  makeFabric,
  makeNode,
  makePod,
  removePod,
  run,
  syncRoutes,
  type NodeLink,
} from './lab-net.js';
import {
  LAB_NAME,
  netnsPrefix,
  newLabId,
  readState,
  saveState,
  type LabState,
} from './lab-state.js';
import { renderView, type View } from './lab-view.js';

export const DEFAULT_LAB_ROOT = '/run/weir/lab';
export const DEFAULT_SYNC_TIMEOUT_MS = 60_000;
const CLUSTER = 'local';

export interface LabOptions {
  /** The lab's name (default "default"). */
  readonly lab?: string;
  /** Where labs keep their directories (env WEIR_LAB_ROOT; default /run/weir/lab). */
  readonly root?: string;
  /** Progress for people (stderr). */
  readonly say?: (line: string) => void;
}

export interface UpOptions extends LabOptions {
  readonly dir: string;
  readonly nodes?: number;
  /** "auto" (the kernel datapath when the agent has it), "nftables" or "userspace". */
  readonly datapath?: string;
  readonly failMode?: string;
  readonly timeoutMs?: number;
  /** The web console's HOST:PORT on loopback (docs/console.md); none: no console. */
  readonly uiListen?: string;
}

export function labDir(o: LabOptions): string {
  const name = o.lab ?? 'default';
  if (!LAB_NAME.test(name))
    throw new UsageError(
      `--lab ${JSON.stringify(name)} is not a lab name (lower-case letters, digits and "-", at most 31)`,
    );
  return join(o.root ?? process.env.WEIR_LAB_ROOT ?? DEFAULT_LAB_ROOT, name);
}

/** Why the lab cannot run here, or undefined when it can. */
export async function labUnsupported(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'the lab needs root (it makes network namespaces)';
  try {
    await run(['ip', '-V']);
  } catch {
    return 'the lab needs iproute2 (ip) on PATH';
  }
  return undefined;
}

async function requireSupported(): Promise<void> {
  const why = await labUnsupported();
  if (why !== undefined) throw new UsageError(`weirctl lab: ${why}`);
}

/** The checkout's bin/ (from the sources or from dist/). */
function binDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'bin', 'weir-agent'))) return join(dir, 'bin');
    dir = dirname(dir);
  }
  throw new UnavailableError('cannot find bin/weir-agent beside weirctl');
}

/** The datapaths this checkout's agent offers (from its usage text). */
export async function agentDatapaths(): Promise<{ nftables: boolean; failMode: boolean }> {
  const usage = await new Promise<string>((resolve) =>
    execFile(
      process.execPath,
      [join(binDir(), 'weir-agent'), '--help'],
      { encoding: 'utf8', timeout: 30_000 },
      (_err, out) => resolve(out ?? ''),
    ),
  );
  return {
    nftables: /--datapath[^\n]*nftables/.test(usage),
    failMode: usage.includes('--fail-mode'),
  };
}

async function lock(dir: string, detail: string): Promise<StateDirLock> {
  try {
    return await StateDirLock.acquire(dir, {
      program: 'weirctl lab',
      detail,
      log: silentLogger,
      waitMs: 0,
      onCompromised: () => undefined,
    });
  } catch (err) {
    if (err instanceof WeirError && err.code !== ErrorCode.Internal)
      throw new UnavailableError(`the lab ${dir} is busy: ${err.message}`);
    throw err;
  }
}

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Whether pid is a process this lab started (its command line names the lab's directory). */
function ours(pid: number | undefined, dir: string): boolean {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

function startDetached(argv: readonly string[], log: string): number {
  const fd = openSync(log, 'a', 0o600);
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new UnavailableError(`cannot start ${argv.join(' ')}`);
  return child.pid;
}

export const controllerSocket = (dir: string) =>
  `unix:${join(dir, 'controller', 'controller.sock')}`;

// --- up ------------------------------------------------------------------------

export async function labUp(o: UpOptions): Promise<LabState> {
  await requireSupported();
  const say = o.say ?? (() => undefined);
  const dir = labDir(o);
  const manifests = resolve(o.dir);
  if (!existsSync(manifests)) throw new UsageError(`-f ${o.dir}: no such file or directory`);
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  await prepareStateDir(dir);
  const held = await lock(dir, `up ${manifests}`);
  try {
    const old = await readState(dir);
    if (old !== undefined)
      throw new UsageError(
        `the lab ${o.lab ?? 'default'} is up (from ${old.dir}): weirctl lab down${o.lab ? ` --lab ${o.lab}` : ''} first`,
      );
    const offered = await agentDatapaths();
    const wanted = o.datapath ?? 'auto';
    if (!['auto', 'nftables', 'userspace'].includes(wanted))
      throw new UsageError(
        `--datapath must be auto, nftables or userspace, not ${JSON.stringify(wanted)}`,
      );
    if (wanted === 'nftables' && !offered.nftables)
      throw new UsageError('--datapath nftables: this build of weir-agent has no kernel datapath');
    const datapath = wanted === 'userspace' || !offered.nftables ? 'userspace' : 'nftables';
    if (datapath === 'userspace')
      say(
        wanted === 'userspace'
          ? 'agents run the userspace datapath: probes show connections, not enforcement'
          : 'this weir-agent has no kernel datapath: agents run the userspace datapath, so probes show no enforcement',
      );
    const agentArgs = [
      ...(offered.nftables ? ['--datapath', datapath] : []),
      ...(o.failMode !== undefined ? ['--fail-mode', o.failMode] : []),
    ];
    const id = newLabId();
    const state: LabState = {
      version: 1,
      id,
      name: o.lab ?? 'default',
      dir: manifests,
      ...(o.nodes !== undefined ? { nodesOption: o.nodes } : {}),
      datapath,
      agentArgs,
      ...(o.uiListen !== undefined ? { uiListen: o.uiListen } : {}),
      createdAt: new Date().toISOString(),
      fabric: `${netnsPrefix(id)}fabric`,
      nextIndex: 1,
      nodes: {},
      pods: {},
      placement: {},
    };
    await saveState(dir, state);
    const view = await renderView(manifests, join(dir, 'cluster'), { nodes: o.nodes });
    for (const n of view.notes) say(`note: ${n}`);
    await makeFabric(state.fabric);
    await reconcile(dir, state, view, say);
    await startController(dir, state);
    await startAgents(dir, state);
    say(
      `lab ${state.name} (${id}): ${Object.keys(state.nodes).length} nodes, ${Object.keys(state.pods).length} pods, ${datapath} datapath; waiting for sync`,
    );
    await waitInSync(dir, state, o.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS);
    return state;
  } finally {
    await held.release();
  }
}

/**
 * The lab's certificates, in DIR/tls: its own CA (made once per lab), and
 * one certificate per program, issued when first needed; the lab's
 * directory is root's, as are the keys. Returns the certificate's --tls-dir.
 */
async function labCert(dir: string, name: string, uri: string): Promise<string> {
  const tls = join(dir, 'tls');
  const out = join(tls, name);
  if (existsSync(join(out, 'tls.crt'))) return out;
  if (!existsSync(join(tls, 'ca', 'ca.key')))
    await writeCaDir(join(tls, 'ca'), await issueCa({ name: 'weir-lab-ca' }));
  await writeTlsDir(
    out,
    await issueCert(await readCaDir(join(tls, 'ca')), { uri, commonName: name }),
  );
  return out;
}

/** Starts the controller on the view unless it runs (a killed one comes back from its state dir). */
async function startController(dir: string, state: LabState): Promise<void> {
  if (ours(state.controllerPid, dir)) return;
  await prepareStateDir(join(dir, 'controller'));
  // A killed controller leaves its socket behind; a new one cannot bind over it.
  await rm(controllerSocket(dir).slice('unix:'.length), { force: true });
  state.controllerPid = startDetached(
    [
      process.execPath,
      join(binDir(), 'weir-controller'),
      '--manifests',
      join(dir, 'cluster'),
      '--listen',
      controllerSocket(dir),
      '--state-dir',
      join(dir, 'controller'),
      '--cluster',
      CLUSTER,
      '--tls-dir',
      await labCert(dir, 'controller', CONTROLLER_URI),
      ...(state.uiListen !== undefined ? ['--ui-listen', state.uiListen] : []),
    ],
    join(dir, 'controller.log'),
  );
  await saveState(dir, state);
}

/** Starts the agent of every node that has none running. */
async function startAgents(dir: string, state: LabState): Promise<void> {
  for (const [name, node] of Object.entries(state.nodes)) {
    if (ours(node.agentPid, dir)) continue;
    // As the controller's: a killed agent leaves its socket behind.
    await rm(join(dir, `agent-${name}.sock`), { force: true });
    node.agentPid = startDetached(
      [
        'ip',
        'netns',
        'exec',
        node.netns,
        process.execPath,
        join(binDir(), 'weir-agent'),
        '--node',
        name,
        '--controller',
        controllerSocket(dir),
        '--state-dir',
        join(dir, `agent-${name}`),
        // A socket, not loopback: the controller (outside the node's netns) relays its flows.
        '--listen',
        `unix:${join(dir, `agent-${name}.sock`)}`,
        '--tls-dir',
        await labCert(dir, `node-${name}`, nodeUri(name)),
        ...state.agentArgs,
      ],
      join(dir, `agent-${name}.log`),
    );
    await saveState(dir, state);
  }
}

/**
 * Brings namespaces, links and routes from what the record says exists to
 * what the view needs: a pod whose node or addresses changed is made again;
 * nodes and pods gone are removed. The record is saved before each thing is
 * made, so a crash leaves nothing it does not name.
 */
async function reconcile(
  dir: string,
  state: LabState,
  view: View,
  say: (line: string) => void,
): Promise<void> {
  const prefix = netnsPrefix(state.id);
  const wantNodes = new Map(view.nodes.map((n) => [n.name, n]));
  const wantPods = new Map(view.pods.map((p) => [p.key, p]));
  // Pods that moved, changed addresses, or are gone; nodes that are gone or changed addresses.
  for (const [key, pod] of Object.entries(state.pods)) {
    const want = wantPods.get(key);
    const node = state.nodes[pod.node];
    const nodeChanged =
      node === undefined || String(wantNodes.get(pod.node)?.addresses) !== String(node.addresses);
    if (
      want !== undefined &&
      want.node === pod.node &&
      String(want.ips) === String(pod.ips) &&
      !nodeChanged
    )
      continue;
    if (node !== undefined)
      await removePod(node.netns, { netns: pod.netns, index: pod.index, ips: pod.ips });
    else await deleteNetns(pod.netns);
    delete state.pods[key];
    await saveState(dir, state);
  }
  for (const [name, node] of Object.entries(state.nodes)) {
    const want = wantNodes.get(name);
    if (want !== undefined && String(want.addresses) === String(node.addresses)) continue;
    say(`node ${name}: ${want === undefined ? 'gone' : 'addresses changed'}; removing its netns`);
    for (const [key, pod] of Object.entries(state.pods))
      if (pod.node === name) {
        await deleteNetns(pod.netns);
        delete state.pods[key];
      }
    if (ours(node.agentPid, dir)) process.kill(node.agentPid!, 'SIGKILL');
    await deleteNetns(node.netns);
    await rm(join(dir, `agent-${name}`), { recursive: true, force: true });
    delete state.nodes[name];
    await saveState(dir, state);
  }
  for (const n of view.nodes) {
    if (state.nodes[n.name] !== undefined) continue;
    const index = state.nextIndex++;
    state.nodes[n.name] = {
      index,
      netns: `${prefix}n${index}`,
      addresses: n.addresses,
      routes: [],
    };
    await saveState(dir, state);
    await makeNode(state.fabric, state.nodes[n.name]!);
  }
  for (const p of view.pods) {
    if (state.pods[p.key] !== undefined) continue;
    const index = state.nextIndex++;
    const pod = { index, netns: `${prefix}p${index}`, node: p.node, ips: p.ips };
    state.pods[p.key] = pod;
    await saveState(dir, state);
    await makePod(state.nodes[p.node]!.netns, pod);
  }
  state.placement = { ...view.placement };
  const links = new Map<string, NodeLink>(Object.entries(state.nodes));
  const pods = Object.values(state.pods);
  for (const [name, node] of Object.entries(state.nodes)) {
    const want = fabricRoutes(name, links, pods);
    await syncRoutes(node.netns, node.routes, want);
    await ipBatch(node.netns, fabricNeighbours(name, links));
    node.routes = want;
  }
  await saveState(dir, state);
}

// --- sync proof ------------------------------------------------------------------

/**
 * The span hash of every node, computed here from the view with the
 * controller's own model and span store: what each agent must report once
 * the controller has taken the view as it is now.
 */
export async function expectedHashes(
  viewDir: string,
  nodes: readonly string[],
): Promise<Map<string, string>> {
  const read = await readManifests([viewDir]);
  const model = new ClusterModel({ cluster: CLUSTER });
  for (const object of read.objects) model.apply({ type: 'upsert', object });
  const store = new SpanStore(model);
  store.commit(0);
  return new Map(nodes.map((n) => [n, store.spanHash(n)]));
}

export async function labStatus(dir: string): Promise<StatusReply__Output> {
  const address = controllerSocket(dir);
  const ops = await labCert(dir, 'operator', operatorUri('read-only', 'lab'));
  const client = operatorClient(
    address,
    new CertificateFiles(
      { cert: join(ops, 'tls.crt'), key: join(ops, 'tls.key'), ca: join(ops, 'ca.crt') },
      { log: silentLogger },
    ),
  );
  return call<object, StatusReply__Output>(
    client,
    client.GetStatus,
    {},
    `the lab's controller (${address})`,
    3_000,
  );
}

/** Waits until every node's agent reports the span computed from the view now. */
export async function waitInSync(dir: string, state: LabState, timeoutMs: number): Promise<void> {
  const want = await expectedHashes(join(dir, 'cluster'), Object.keys(state.nodes));
  const deadline = Date.now() + timeoutMs;
  let why = 'no answer from the controller yet';
  for (;;) {
    if (!ours(state.controllerPid, dir))
      throw new UnavailableError(`the lab's controller exited; see ${join(dir, 'controller.log')}`);
    const dead = Object.entries(state.nodes).filter(([, n]) => !ours(n.agentPid, dir));
    if (dead.length > 0)
      throw new UnavailableError(
        `the agent of ${dead.map(([n]) => n).join(', ')} exited; see ${dead.map(([n]) => join(dir, `agent-${n}.log`)).join(', ')}`,
      );
    try {
      const s = await labStatus(dir);
      const behind: string[] = [];
      if (!s.source?.synced)
        behind.push(
          `controller source not synced${s.source?.lastError ? ` (${s.source.lastError})` : ''}`,
        );
      for (const [node, hash] of want) {
        const a = s.agents.find((x) => x.node === node);
        if (a === undefined) behind.push(`${node}: not connected yet`);
        else if (!(a.connected && a.inSync && a.inForceHash === hash))
          behind.push(
            `${node}: ${!a.connected ? 'disconnected' : a.spanHash !== hash ? 'controller has not taken the manifests as they are now' : a.lastError || 'applying'}`,
          );
      }
      if (behind.length === 0) return;
      why = behind.join('; ');
    } catch (err) {
      why = (err as Error).message;
    }
    if (Date.now() >= deadline)
      throw new UnavailableError(`the lab did not prove sync within ${timeoutMs / 1000} s: ${why}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** Brings the lab to DIR as it is now and waits for the proof of sync. */
export async function labSync(
  o: LabOptions & { timeoutMs?: number },
): Promise<{ state: LabState; dir: string }> {
  await requireSupported();
  const dir = labDir(o);
  if (!existsSync(dir))
    throw new UsageError(`the lab ${o.lab ?? 'default'} is not up (weirctl lab up -f DIR)`);
  const held = await lock(dir, 'sync');
  try {
    const state = await readState(dir);
    if (state === undefined)
      throw new UsageError(`the lab ${o.lab ?? 'default'} is not up (weirctl lab up -f DIR)`);
    const view = await renderView(state.dir, join(dir, 'cluster'), {
      nodes: state.nodesOption,
      placement: state.placement,
    });
    for (const n of view.notes) o.say?.(`note: ${n}`);
    await reconcile(dir, state, view, o.say ?? (() => undefined));
    await startController(dir, state);
    await startAgents(dir, state);
    await waitInSync(dir, state, o.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS);
    return { state, dir };
  } finally {
    await held.release();
  }
}

// --- down ------------------------------------------------------------------------

/**
 * Removes the lab: its processes (those the record names and whatever runs
 * in its namespaces), every netns carrying its id, its directory. Works from
 * a record a crash left half-written, and is a no-op for a lab not up.
 */
export async function labDown(o: LabOptions): Promise<{ removed: number }> {
  await requireSupported();
  const dir = labDir(o);
  if (!existsSync(dir)) return { removed: 0 };
  const held = await lock(dir, 'down');
  let removed = 0;
  try {
    let state: LabState | undefined;
    try {
      state = await readState(dir);
    } catch (err) {
      o.say?.(`${(err as Error).message}`);
    }
    // Every process started for this lab names its directory on its command line.
    for (const pid of labProcesses(dir)) process.kill(pid, 'SIGKILL');
    if (state !== undefined) {
      const prefix = netnsPrefix(state.id);
      const named = new Set([
        state.fabric,
        ...Object.values(state.nodes).map((n) => n.netns),
        ...Object.values(state.pods).map((p) => p.netns),
      ]);
      for (const ns of await listNetns()) if (ns.startsWith(prefix)) named.add(ns);
      for (const ns of named) {
        await deleteNetns(ns);
        removed++;
      }
    }
  } finally {
    await held.release();
  }
  await rm(dir, { recursive: true, force: true });
  return { removed };
}

/** The processes whose command line names the lab's directory (never this one). */
function labProcesses(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a === dir || a.startsWith(`${dir}/`) || a.includes(`:${dir}/`)))
        pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

export async function requireState(o: LabOptions): Promise<{ state: LabState; dir: string }> {
  const dir = labDir(o);
  const state = await readState(dir);
  if (state === undefined)
    throw new UsageError(`the lab ${o.lab ?? 'default'} is not up (weirctl lab up -f DIR)`);
  return { state, dir };
}
