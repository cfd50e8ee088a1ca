/**
 * The real controller program at cluster size, end to end (issue 13):
 * `bin/weir-controller` as a process, fed by the Kubernetes source (the
 * faithful list/watch server, testing/fake-apiserver.ts, serving paginated
 * lists with `limit`/`continue` as kube-apiserver does) or by a manifest
 * directory, with 1,000 simulated agents (bench/sim-agents.ts: one gRPC
 * stream each, ACKing the hash of the span they hold) in a process of their
 * own. At 1×, 2×, 4× and 8× a cluster of Antrea's shape (4 pods and 3
 * NetworkPolicies per namespace; 8× is 25,000 namespaces), always over the
 * same 1,000 nodes:
 *
 *   cold start   spawn → every agent proven in sync (GetStatus: connected,
 *                in_sync, at the source's first revision or later), with
 *                the controller's CPU time and peak RSS (/proc) at that
 *                moment, and GetStatus answer times meanwhile (one a second)
 *   churn        (Kubernetes source) a minute of 100 pod events/s (50 pods
 *                created in existing namespaces with an existing pod's
 *                labels, 50 deleted) and 10 NetworkPolicy edits/s (a rule
 *                added to an existing policy, then removed): commit → ACK of
 *                every ACK the agents send (the commit's log line against the
 *                agent's ACK), the controller's CPU, and GetStatus answer
 *                times under that load
 *   idle         the controller's CPU over 10 s after the churn
 *
 * Runnable alone: node --import tsx bench/controller-scale.ts
 *   [--namespaces=3125,6250,12500,25000] [--agents=1000] [--sources=kube,manifests]
 *   [--churn-seconds=60] [--quick] (500..4000 namespaces, 200 agents, 20 s of churn)
 *
 * Exits non-zero when the controller reports a problem with the generated
 * objects, or agents are not in sync within 15 minutes. Timings never fail it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { call, operatorClient } from '../cli/clients.js';
import { setConnectionFlags } from '../cli/config.js';
import type { StatusReply__Output } from '../shared/generated/weir/v1/StatusReply.js';
import { type Raw, pod } from '../testing/cluster.js';
import { FakeApiServer, type Obj } from '../testing/fake-apiserver.js';
import { freePort } from '../testing/ports.js';
import { realisticCluster } from '../testing/random-cluster.js';
import { writeNamespaceFiles } from './manifests.js';
import { MachineLoad, int, median, ms, percentile, table } from './measure.js';
import { ControllerProcess, checkBuild, processCpuMs, processMemoryMiB } from './program.js';
import type { AckRecord } from './sim-agents.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IN_SYNC_TIMEOUT_MS = 15 * 60_000;

type SourceKind = 'kube' | 'manifests';

interface ColdStart {
  readonly source: SourceKind;
  readonly namespaces: number;
  readonly pods: number;
  readonly policies: number;
  readonly agents: number;
  /** spawn → "source synced". */
  readonly syncedMs: number | undefined;
  /** spawn → every agent in sync; undefined when not within the timeout. */
  readonly inSyncMs: number | undefined;
  readonly inSyncAgents: number;
  readonly cpuMs: number | undefined;
  readonly peakRssMiB: number | undefined;
  readonly status: StatusTimes;
  readonly problems: number;
  readonly otherCpus: number | undefined;
}

interface StatusTimes {
  readonly answers: readonly number[];
  readonly failures: number;
}

interface Churn {
  readonly seconds: number;
  readonly podEvents: number;
  readonly policyEdits: number;
  readonly revisions: number;
  readonly acks: number;
  readonly commitToAck: readonly number[];
  /** The controller's own time per commit (span store, then handing updates to the distributor). */
  readonly commitMs: readonly number[];
  readonly cpuPercent: number | undefined;
  readonly status: StatusTimes;
  readonly idleCpuPercent: number | undefined;
  readonly inSyncAfter: number;
}

interface SizeResult {
  readonly cold: ColdStart;
  readonly churn: Churn | undefined;
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** The simulated agents, forked once the controller listens. */
class SimAgents {
  private readonly acks: AckRecord[] = [];
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: { type: string; acks?: AckRecord[] }) => {
      if (m.type === 'acks') this.acks.push(...m.acks!);
    });
  }

  static async start(address: string, count: number): Promise<SimAgents> {
    const child = fork(
      fileURLToPath(new URL('./sim-agents.ts', import.meta.url)),
      [address, String(count), '--pad=4', '--no-sizes', '--reconnect', '--share-objects'],
      { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    const agents = new SimAgents(child);
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`simulated agents exited (${code})`)));
      const started = (m: { type: string }) => {
        if (m.type !== 'started') return;
        child.off('message', started);
        resolve();
      };
      child.on('message', started);
    });
    return agents;
  }

  /** Every ACK so far (node, revision, time). */
  async collect(): Promise<readonly AckRecord[]> {
    await new Promise<void>((resolve) => {
      const done = (m: { type: string }) => {
        if (m.type !== 'reported') return;
        this.child.off('message', done);
        resolve();
      };
      this.child.on('message', done);
      this.child.send({ type: 'report' });
    });
    const out = this.acks.splice(0);
    return out;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.removeAllListeners('exit');
    this.child.send({ type: 'stop' });
    await Promise.race([exited, sleep(5_000)]);
    this.child.kill('SIGKILL');
  }
}

/** GetStatus once a second until stopped, each answer timed (10 s deadline). */
class StatusPoller {
  readonly answers: number[] = [];
  failures = 0;
  last: StatusReply__Output | undefined;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly address: string) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const t0 = performance.now();
      try {
        const c = operatorClient(this.address);
        this.last = await call<object, StatusReply__Output>(c, c.GetStatus, {}, 'bench', 10_000);
        this.answers.push(performance.now() - t0);
        c.close();
      } catch {
        this.failures++;
      }
      await sleep(Math.max(0, 1_000 - (performance.now() - t0)));
    }
  }

  /** The answers so far, and start again from none. */
  take(): StatusTimes {
    const t = { answers: this.answers.splice(0), failures: this.failures };
    this.failures = 0;
    return t;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

const inSyncCount = (s: StatusReply__Output | undefined) =>
  s?.agents.filter((a) => a.connected && a.inSync).length ?? 0;

/** One size and one source: cold start, then (Kubernetes) a churn and idle. */
async function runSize(
  source: SourceKind,
  namespaces: number,
  agents: number,
  churnSeconds: number,
): Promise<SizeResult> {
  const c = realisticCluster(namespaces, undefined, {
    podsPerNamespace: 4,
    policiesPerNamespace: 3,
    nodes: agents,
  });
  const work = await mkdtemp(join(tmpdir(), 'weir-bench-scale-'));
  let api: FakeApiServer | undefined;
  let controller: ControllerProcess | undefined;
  let sims: SimAgents | undefined;
  let poller: StatusPoller | undefined;
  try {
    let sourceArgs: string[];
    if (source === 'kube') {
      api = await FakeApiServer.start();
      for (const o of c.objects) api.apply(o as Obj);
      api.compact();
      const kubeconfig = join(work, 'kubeconfig');
      await api.writeKubeConfig(kubeconfig);
      sourceArgs = ['--kubeconfig', kubeconfig];
    } else {
      const dir = join(work, 'manifests');
      await writeNamespaceFiles(dir, c.objects);
      sourceArgs = ['--manifests', dir];
    }
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    setConnectionFlags({ insecure: true });
    const load = new MachineLoad();
    controller = ControllerProcess.start(
      ROOT,
      [...sourceArgs, '--listen', address, '--insecure', '--state-dir', join(work, 'state')],
      [
        '--max-old-space-size=8192',
        // WEIR_BENCH_CPU_PROF=DIR: a CPU profile of the controller, written when it stops.
        ...(process.env.WEIR_BENCH_CPU_PROF
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env.WEIR_BENCH_CPU_PROF}`]
          : []),
      ],
    );
    while (!(await portOpen(port))) {
      if (controller.exited) throw new Error('the controller exited before listening');
      await sleep(20);
    }
    // The agents connect once the source has synced, as agents whose first
    // attempts met a controller busy listing would after their backoff
    // (1,000 HTTP/2 handshakes against an event loop busy with the list
    // stalled some simulated streams for good).
    await controller.waitFor((l) => l.msg === 'source synced', IN_SYNC_TIMEOUT_MS);
    sims = await SimAgents.start(address, agents);
    poller = new StatusPoller(address);
    const deadline = controller.startedAt + IN_SYNC_TIMEOUT_MS;
    let inSyncAt: number | undefined;
    while (Date.now() < deadline && !controller.exited) {
      const s = poller.last;
      if (s?.source?.synced && Number(s.revision) > 0 && inSyncCount(s) === agents) {
        inSyncAt = Date.now();
        break;
      }
      await sleep(50);
    }
    // The poller's last answer may be up to a second old: the time is when it was asked.
    const cold: ColdStart = {
      source,
      namespaces,
      pods: c.podCount,
      policies: c.policyCount,
      agents,
      syncedMs: lineTime(controller, 'source synced'),
      inSyncMs:
        inSyncAt === undefined
          ? undefined
          : inSyncAt - controller.startedAt - (poller.answers.at(-1) ?? 0) / 2,
      inSyncAgents: inSyncCount(poller.last),
      cpuMs: processCpuMs(controller.pid),
      peakRssMiB: processMemoryMiB(controller.pid, 'VmHWM'),
      status: poller.take(),
      problems: poller.last?.rejections.length ?? -1,
      otherCpus: load.otherCpus(),
    };
    if (inSyncAt === undefined || source !== 'kube' || churnSeconds <= 0)
      return { cold, churn: undefined };
    await sims.collect(); // the initial sync's ACKs
    const churn = await runChurn(c, api!, controller, sims, poller, churnSeconds);
    return { cold, churn };
  } finally {
    await poller?.stop();
    await sims?.stop();
    await controller?.stop();
    await api?.[Symbol.asyncDispose]();
    await rm(work, { recursive: true, force: true });
  }
}

const lineTime = (controller: ControllerProcess, msg: string) => {
  const l = controller.lines.find((x) => x.msg === msg);
  return l === undefined ? undefined : l.time - controller.startedAt;
};

async function runChurn(
  c: ReturnType<typeof realisticCluster>,
  api: FakeApiServer,
  controller: ControllerProcess,
  sims: SimAgents,
  poller: StatusPoller,
  seconds: number,
): Promise<Churn> {
  const policies = c.objects.filter((o) => o.kind === 'NetworkPolicy');
  const pods = c.objects
    .filter((o) => o.kind === 'Pod')
    .map((o) => {
      const meta = o.metadata as { namespace: string; labels: Record<string, string> };
      return {
        namespace: meta.namespace,
        labels: meta.labels,
        node: (o.spec as { nodeName: string }).nodeName,
      };
    });
  const nodes = [...new Set(pods.map((p) => p.node))] as string[];
  let seed = 0x5eed;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const live: Array<{ ns: string; name: string }> = [];
  const edited = new Map<number, Raw>();
  let created = 0;
  let podEvents = 0;
  let policyEdits = 0;
  const since = controller.lines.length;
  const cpu0 = processCpuMs(controller.pid);
  const t0 = Date.now();
  poller.take();
  // Ten ticks a second: 5 pods created, 5 deleted (once there are enough), one policy edit.
  for (let tick = 0; Date.now() - t0 < seconds * 1000; tick++) {
    const due = t0 + tick * 100;
    await sleep(Math.max(0, due - Date.now()));
    for (let k = 0; k < 5; k++) {
      const template = pods[random(pods.length)]!;
      const n = created++;
      // 10.250.0.0/15: outside the generator's pod range (10.244.0.0 + 512 per node).
      const ip = `10.${250 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
      const name = `churn-${n}`;
      api.apply(
        pod(template.namespace, name, {
          labels: template.labels,
          ips: [ip],
          node: nodes[random(nodes.length)]!,
        }) as Obj,
      );
      live.push({ ns: template.namespace, name });
      podEvents++;
    }
    while (live.length > 250) {
      const gone = live.shift()!;
      api.remove('Pod', gone.ns, gone.name);
      podEvents++;
    }
    const i = random(policies.length);
    const original = policies[i]!;
    const was = edited.get(i);
    if (was === undefined) {
      const spec = structuredClone(original.spec) as { ingress?: unknown[] };
      spec.ingress = [...(spec.ingress ?? []), { ports: [{ protocol: 'TCP', port: 30000 + i }] }];
      const next = { ...original, spec };
      api.apply(next as Obj);
      edited.set(i, next);
    } else {
      api.apply(original as Obj);
      edited.delete(i);
    }
    policyEdits++;
  }
  const wall = Date.now() - t0;
  const cpu1 = processCpuMs(controller.pid);
  const status = poller.take();
  // Let the last changes arrive, then 10 s of no change.
  await sleep(5_000);
  const i0 = processCpuMs(controller.pid);
  const w0 = Date.now();
  await sleep(10_000);
  const i1 = processCpuMs(controller.pid);
  const idleWall = Date.now() - w0;
  const acks = await sims.collect();
  const commits = new Map<number, number>();
  const commitMs: number[] = [];
  for (const l of controller.lines.slice(since))
    if (l.msg === 'revision committed') {
      commits.set(Number(l.revision), l.time);
      commitMs.push(Number(l.commitMs) + Number(l.sendMs));
    }
  const commitToAck: number[] = [];
  for (const a of acks) {
    const at = commits.get(a.revision);
    if (at !== undefined) commitToAck.push(a.at - at);
  }
  const pct = (a: number | undefined, b: number | undefined, w: number) =>
    a === undefined || b === undefined ? undefined : ((b - a) / w) * 100;
  return {
    seconds: wall / 1000,
    podEvents,
    policyEdits,
    revisions: commits.size,
    acks: acks.length,
    commitToAck,
    commitMs,
    cpuPercent: pct(cpu0, cpu1, wall),
    status,
    idleCpuPercent: pct(i0, i1, idleWall),
    inSyncAfter: inSyncCount(poller.last),
  };
}

const SELF = fileURLToPath(import.meta.url);
const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

export interface ControllerScaleOptions {
  readonly namespaces?: readonly number[];
  readonly agents?: number;
  readonly sources?: readonly SourceKind[];
  readonly churnSeconds?: number;
  readonly quick?: boolean;
}

const fmt = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : ms(x));
const pct = (x: number | undefined) => (x === undefined ? '?' : `${x.toFixed(1)}%`);
const statusText = (s: StatusTimes) =>
  s.answers.length === 0
    ? `none answered (${s.failures} failed)`
    : `${fmt(median(s.answers))} / ${fmt(percentile(s.answers, 99))} / ${fmt(Math.max(...s.answers))}${s.failures > 0 ? `, ${s.failures} failed` : ''}`;

export async function benchControllerScale(
  options: ControllerScaleOptions = {},
): Promise<{ text: string; ok: boolean }> {
  checkBuild('controller-scale', ROOT);
  const quick = options.quick ?? false;
  const sizes =
    options.namespaces ?? (quick ? [500, 1000, 2000, 4000] : [3125, 6250, 12500, 25000]);
  const agents = options.agents ?? (quick ? 200 : 1000);
  const sources = options.sources ?? ['kube', 'manifests'];
  const churnSeconds = options.churnSeconds ?? (quick ? 20 : 60);
  const results: SizeResult[] = [];
  for (const source of sources)
    for (const n of sizes) {
      process.stderr.write(`controller-scale: ${source}, ${int(n)} namespaces, ${agents} agents\n`);
      results.push(await runSize(source, n, agents, churnSeconds));
    }
  const ok = results.every((r) => r.cold.inSyncMs !== undefined && r.cold.problems === 0);
  const lines: string[] = [];
  for (const source of sources) {
    const rows = results.filter((r) => r.cold.source === source);
    const first = rows[0]!.cold;
    lines.push(
      `  cold start from ${source === 'kube' ? 'the Kubernetes API (paginated lists)' : 'a manifest directory'} to ${agents} agents proving sync`,
      table([
        [
          'namespaces',
          'pods',
          'policies',
          'source synced',
          'all in sync',
          'CPU',
          'peak RSS',
          'status p50 / p99 / max',
          'size',
          'time',
          'other CPUs',
        ],
        ...rows.map(({ cold: r }) => [
          int(r.namespaces),
          int(r.pods),
          int(r.policies),
          fmt(r.syncedMs),
          r.inSyncMs === undefined ? `not (${r.inSyncAgents} of ${agents})` : fmt(r.inSyncMs),
          fmt(r.cpuMs),
          r.peakRssMiB === undefined ? '?' : `${int(Math.round(r.peakRssMiB))} MiB`,
          statusText(r.status),
          `${(r.pods / first.pods).toFixed(1)}×`,
          r.inSyncMs !== undefined && first.inSyncMs !== undefined
            ? `${(r.inSyncMs / first.inSyncMs).toFixed(1)}×`
            : '–',
          r.otherCpus === undefined ? '?' : r.otherCpus.toFixed(2),
        ]),
      ]),
    );
    const churns = rows.filter((r) => r.churn !== undefined);
    if (churns.length > 0)
      lines.push(
        `  steady state: 100 pod events/s and 10 policy edits/s for ${churnSeconds} s, then 10 s idle`,
        table([
          [
            'namespaces',
            'pod events',
            'edits',
            'revisions',
            'commit p50 / max',
            'ACKs',
            'commit→ACK p50',
            'p99',
            'CPU (churn)',
            'status p50 / p99 / max',
            'idle CPU',
            'in sync after',
          ],
          ...churns.map(({ cold, churn: r }) => [
            int(cold.namespaces),
            int(r!.podEvents),
            int(r!.policyEdits),
            int(r!.revisions),
            `${fmt(percentile(r!.commitMs, 50))} / ${fmt(Math.max(...r!.commitMs))}`,
            int(r!.acks),
            fmt(percentile(r!.commitToAck, 50)),
            fmt(percentile(r!.commitToAck, 99)),
            pct(r!.cpuPercent),
            statusText(r!.status),
            pct(r!.idleCpuPercent),
            `${r!.inSyncAfter} of ${agents}`,
          ]),
        ]),
      );
  }
  return { text: lines.join('\n'), ok };
}

if (process.argv[1] === SELF) {
  const r = await benchControllerScale({
    namespaces: arg('namespaces')?.split(',').map(Number),
    agents: arg('agents') ? Number(arg('agents')) : undefined,
    sources: arg('sources')?.split(',') as SourceKind[] | undefined,
    churnSeconds: arg('churn-seconds') ? Number(arg('churn-seconds')) : undefined,
    quick: process.argv.includes('--quick'),
  });
  process.stdout.write(`${r.text}\n`);
  process.exitCode = r.ok ? 0 : 1;
}
