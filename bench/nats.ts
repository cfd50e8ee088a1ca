/**
 * NATS against gRPC, in the same run: one change every node must hear (a
 * pod joins a group every span holds) to N simulated agents, through the
 * real Controller in this process, over gRPC streams (bench/sim-agents.ts)
 * and over NATS JetStream (bench/sim-nats-agents.ts: the real agent
 * transport, one connection per agent) with a local nats-server.
 *
 * Per transport and size: commit-to-ACK p50/p99 over changes × agents (the
 * ACK as the parent receives the agent process's notice; the IPC hop is the
 * same for both), the controller's CPU for the changes (this process;
 * nats-server's own CPU apart, from /proc), and the bytes the controller
 * wrote (its weir_controller_update_bytes_total: for gRPC every update on
 * every stream, for NATS the objects once plus each node's manifest).
 * Then flow events per second one agent's exporter publishes to JetStream.
 *
 * Runnable alone: node --import tsx bench/nats.ts [--quick] [--agents=1000,2000]
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { Controller } from '../controller/controller.js';
import { silentLogger } from '../shared/log.js';
import { compile } from '../shared/policy/compile.js';
import type { Datapath, DecodedFlow, FlowEvent } from '../vrouter-agent/datapath/index.js';
import { FlowExporter } from '../vrouter-agent/transport/nats-flows.js';
import { build, namespace, pod } from '../testing/cluster.js';
import { startNats } from '../testing/nats-server.js';
import { percentile } from './measure.js';
import { ScriptedSource, cluster, probePod } from './propagation.js';

const now = () => performance.timeOrigin + performance.now();
const CLUSTER = 'bench';

interface Result {
  transport: 'grpc' | 'nats';
  agents: number;
  syncMs: number;
  p50: number;
  p99: number;
  cpuMs: number;
  natsCpuMs: number;
  /** The simulated agents' process, for the changes. */
  agentsCpuMs: number;
  bytes: number;
  changes: number;
  /** Agents that did not ACK a change (their simulated connection was lost), most over the changes. */
  missed: number;
}

/** utime + stime of a process, in ms (Linux). */
function procCpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

async function run(transport: 'grpc' | 'nats', agents: number, changes: number): Promise<Result> {
  const nats = transport === 'nats' ? await startNats() : undefined;
  const source = new ScriptedSource(cluster(agents));
  const controller = new Controller({
    cluster: CLUSTER,
    source,
    listen: '127.0.0.1:0',
    log: silentLogger,
    commitIntervalMs: 1,
    // The simulated agents (sim-agents.ts) speak plain gRPC: TLS is not in these numbers.
    tls: undefined,
    ...(nats !== undefined ? { nats: { endpoint: { servers: [nats.urls] } } } : {}),
  });
  await controller.start();
  const acked = new Map<string, number>();
  /** Simulated gRPC agents whose stream a loaded machine dropped: they stay down (they would resync). */
  const lost = new Set<string>();
  const enough = () => Math.min(Math.ceil(agents * 0.99), agents - lost.size);
  const times: Array<{ revision: number; at: number }> = [];
  let onAck: (() => void) | undefined;
  const child = fork(
    fileURLToPath(
      new URL(transport === 'nats' ? './sim-nats-agents.ts' : './sim-agents.ts', import.meta.url),
    ),
    transport === 'nats'
      ? [nats!.urls, String(agents), CLUSTER]
      : [`127.0.0.1:${controller.port}`, String(agents)],
    {
      // WEIR_BENCH_CPU_PROF=DIR: the simulated agents' CPU profile (the controller's: node --cpu-prof).
      execArgv: [
        '--import',
        'tsx',
        ...(process.env.WEIR_BENCH_CPU_PROF
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env.WEIR_BENCH_CPU_PROF}`]
          : []),
      ],
      stdio: 'inherit',
    },
  );
  child.on(
    'message',
    (m: { type: string; node?: string; notices?: Array<{ node: string; revision: number }> }) => {
      if (m.type === 'lost' && m.node !== undefined) {
        lost.add(m.node);
        onAck?.();
      }
      if (m.type !== 'ack') return;
      const at = now();
      for (const n of m.notices!) {
        acked.set(n.node, Math.max(acked.get(n.node) ?? 0, n.revision));
        times.push({ revision: n.revision, at });
      }
      onAck?.();
    },
  );
  const wait = (pred: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (pred()) return resolve();
      const t = setTimeout(
        () => reject(new Error(`${transport} ${agents}: timed out: ${what}`)),
        // A loaded 2-core machine syncs 5,000 simulated agents in minutes.
        120_000 + agents * 60,
      );
      onAck = () => {
        if (!pred()) return;
        clearTimeout(t);
        onAck = undefined;
        resolve();
      };
    });
  const t0 = now();
  // Every agent but those whose connection the loaded simulation lost (at most 1%, counted below).
  await wait(() => acked.size >= enough(), 'initial sync');
  if (acked.size < agents) await new Promise((r) => setTimeout(r, 5_000));
  const syncMs = now() - t0;
  const bytes0 = (await controller.metrics.updateBytes.get()).values[0]?.value ?? 0;
  const cpu0 = process.cpuUsage();
  const natsCpu0 = nats ? procCpuMs(nats.servers[0]!.pid) : 0;
  const agentsCpu0 = procCpuMs(child.pid!);
  const latencies: number[] = [];
  let missed = agents - acked.size;
  for (let i = 0; i < changes; i++) {
    const before = controller.revision;
    const from = times.length;
    const start = now();
    source.emit(probePod(i));
    await new Promise<void>((resolve) => {
      const poll = () => (controller.revision > before ? resolve() : setTimeout(poll, 0));
      poll();
    });
    const revision = controller.revision;
    // Every agent but those whose connection the loaded simulation lost (at most 1%, counted).
    const heard = () => [...acked.values()].filter((r) => r >= revision).length;
    await wait(() => heard() >= enough(), `change ${i}`);
    await new Promise((r) => setTimeout(r, heard() === agents ? 0 : 2_000));
    missed = Math.max(missed, agents - heard());
    for (const t of times.slice(from)) if (t.revision >= revision) latencies.push(t.at - start);
  }
  const cpu = process.cpuUsage(cpu0);
  const natsCpuMs = nats ? procCpuMs(nats.servers[0]!.pid) - natsCpu0 : 0;
  const agentsCpuMs = procCpuMs(child.pid!) - agentsCpu0;
  const bytes = ((await controller.metrics.updateBytes.get()).values[0]?.value ?? 0) - bytes0;
  child.send({ type: 'stop' });
  await new Promise((r) => child.once('exit', r));
  await controller[Symbol.asyncDispose]();
  await nats?.[Symbol.asyncDispose]();
  return {
    transport,
    agents,
    syncMs,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMs: (cpu.user + cpu.system) / 1000,
    natsCpuMs,
    agentsCpuMs,
    bytes,
    changes,
    missed,
  };
}

/** A TCP flow to the pod a/x, allowed because nothing isolates it. */
const flow = (i: number): DecodedFlow =>
  ({
    index: i,
    zone: 1,
    endpoint: 'a/x',
    replyZone: 1,
    replyEndpoint: 'a/x',
    family: 4,
    protocol: 6,
    src: `10.1.${(i >> 8) & 255}.${i & 255}`,
    dst: '10.0.0.1',
    sport: 10_000 + (i % 50_000),
    dport: 80,
    firstSeenMs: i,
    action: 'allow',
    dropReason: 'none',
    egress: { kind: 'not-checked' },
    ingress: { kind: 'default' },
  }) as unknown as DecodedFlow;

/** Flow events one agent's exporter gets acknowledged per second, fed as fast as events() can give them. */
async function flowRate(events: number): Promise<{ perSecond: number; dropped: number }> {
  const nats = await startNats();
  const nc = await (await import('@nats-io/transport-node')).connect({ servers: nats.urls });
  const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(nc);
  await jsm.streams.add({ name: `WEIR_${CLUSTER}_FLOWS`, subjects: [`weir.${CLUSTER}.flows.*`] });
  await nc.close();
  const tables = compile(
    build([namespace('a'), pod('a', 'x', { ips: ['10.0.0.1'], node: 'n1' })]).snapshot,
    { isLocal: () => true },
  );
  const registry = new Registry();
  const exporter = new FlowExporter(
    { endpoint: { servers: [nats.urls] }, cluster: CLUSTER, node: 'n1', log: silentLogger },
    registry,
  );
  const datapath = {
    tables,
    events: async function* () {
      await new Promise((r) => setTimeout(r, 500)); // connected
      for (let i = 0; i < events; i++) {
        const e: FlowEvent = { type: 'created', atMs: i, flow: flow(i) };
        yield e;
        if (i % 256 === 0) await new Promise((r) => setImmediate(r));
      }
    },
  } as unknown as Datapath;
  const t0 = now();
  exporter.start(
    () => datapath,
    () => 0,
  );
  const count = async (name: string) =>
    (await registry.getSingleMetric(name)!.get()).values.reduce((s, v) => s + v.value, 0);
  for (;;) {
    const done =
      (await count('weir_agent_flow_events_published_total')) +
      (await count('weir_agent_flow_events_dropped_total'));
    if (done >= events) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = (now() - t0 - 500) / 1000;
  const published = await count('weir_agent_flow_events_published_total');
  const dropped = await count('weir_agent_flow_events_dropped_total');
  await exporter[Symbol.asyncDispose]();
  await nats[Symbol.asyncDispose]();
  return { perSecond: published / seconds, dropped };
}

export async function benchNats(options: {
  quick?: boolean;
  agents?: number[];
  transports?: ReadonlyArray<'grpc' | 'nats'>;
}): Promise<string> {
  const sizes = options.agents ?? (options.quick ? [200] : [1000, 2000, 5000]);
  const changes = options.quick ? 3 : 5;
  const out: string[] = [
    `  one change every node hears (a pod joins a group every span holds), ${changes} changes per run`,
    '  transport  agents  initial sync  commit→ACK p50    p99  controller CPU  nats-server CPU  agents CPU  bytes written  not ACKed',
  ];
  for (const agents of sizes)
    for (const transport of options.transports ?? (['grpc', 'nats'] as const)) {
      const r = await run(transport, agents, changes);
      const row = `  ${r.transport.padEnd(9)} ${String(r.agents).padStart(7)} ${`${(r.syncMs / 1000).toFixed(1)} s`.padStart(13)} ${`${r.p50.toFixed(0)} ms`.padStart(15)} ${`${r.p99.toFixed(0)} ms`.padStart(7)} ${`${r.cpuMs.toFixed(0)} ms`.padStart(15)} ${(r.transport === 'nats' ? `${r.natsCpuMs.toFixed(0)} ms` : '-').padStart(16)} ${`${r.agentsCpuMs.toFixed(0)} ms`.padStart(11)} ${`${(r.bytes / 1024).toFixed(0)} KiB`.padStart(14)} ${String(r.missed).padStart(10)}`;
      out.push(row);
      // As it comes: a later size that fails (or is killed) leaves the rows measured.
      process.stderr.write(`${row}  (load average ${loadavg()[0]!.toFixed(1)})\n`);
    }
  const f = await flowRate(options.quick ? 20_000 : 100_000);
  out.push(
    `  flow events one agent publishes to JetStream: ${f.perSecond.toFixed(0)}/s acknowledged (${f.dropped} dropped at the 1,024-in-flight bound)`,
  );
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const agents = process.argv
    .find((a) => a.startsWith('--agents='))
    ?.slice('--agents='.length)
    .split(',')
    .map(Number);
  const transports = process.argv
    .find((a) => a.startsWith('--transports='))
    ?.slice('--transports='.length)
    .split(',') as Array<'grpc' | 'nats'> | undefined;
  benchNats({ quick, agents, transports }).then(
    (s) => process.stdout.write(`${s}\n`),
    (err) => {
      process.stderr.write(`${err}\n`);
      process.exit(1);
    },
  );
}
