/**
 * Propagation of one policy change to 100 and to 1,000 simulated agents on
 * one machine: the real Controller (model, span store, distributor, gRPC
 * server) in this process, the agents in a child process (bench/sim-agents.ts).
 *
 * Measured per change: time from the change entering the controller to each
 * affected agent's ACK (p50/p99 over changes × agents), and the bytes each
 * agent received for it against the size of its whole span. Baseline in the
 * same run: the initial sync, where every agent receives its whole span as a
 * snapshot. After each change has reached its agents: the time of the first
 * operator status call (GetStatus over gRPC, what `weirctl status` calls),
 * and how many agents it proves in sync (every one, or the run fails).
 *
 * The same with 50 agents whose spans hold ~3,000 objects each (each
 * node's egress rules resolve a named port against 3,000 provider pods),
 * where the controller's per-node cost shows. Then, without agents: the
 * first status after a change every node hears, 1,000 such spans.
 *
 * Runnable alone: node --import tsx bench/propagation.ts [--quick]
 *   [--agents=N,...] [--large-span-agents=N] [--status-nodes=N] (0 or empty: skip)
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { operatorClient } from '../cli/clients.js';
import { setConnectionFlags } from '../cli/config.js';
import { Controller } from '../controller/controller.js';
import type { KubeModelEvent as ModelEvent } from '../controller/model/cluster-model.js';
import { readKubeObject, type KubeObject } from '../controller/kube/objects.js';
import type { ClusterSource, SourceEvent, SourceState } from '../controller/sources/source.js';
import type { StatusReply__Output } from '../shared/generated/weir/v1/index.js';
import { rootLogger, silentLogger } from '../shared/log.js';
import { namespace, networkPolicy, pod, type Raw } from '../testing/cluster.js';
import { percentile } from './measure.js';
import type { AckRecord } from './sim-agents.js';

const now = () => performance.timeOrigin + performance.now();

export class ScriptedSource implements ClusterSource {
  private sink: ((e: SourceEvent) => void) | undefined;
  constructor(private readonly initial: KubeObject[]) {}
  async start(sink: (e: SourceEvent) => void): Promise<void> {
    this.sink = sink;
    for (const object of this.initial) sink({ type: 'upsert', object });
    sink({ type: 'synced' });
  }
  emit(e: ModelEvent): void {
    this.sink?.(e);
  }
  state(): SourceState {
    return { kind: 'manifests', location: 'bench', synced: true, lastError: '' };
  }
  async [Symbol.asyncDispose](): Promise<void> {}
}

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(`bench object invalid: ${JSON.stringify(r)}`);
  return r.object;
}

/**
 * One namespace per 10 nodes, 10 pods per node (app a..e, tier by namespace),
 * per namespace: default-deny, an app-to-app allow with a named port, and an
 * allow from the monitoring namespace; plus one cluster-wide policy every node
 * enforces (ingress from namespaceSelector {} with app=probe).
 */
export function cluster(nodes: number, providers = 0): KubeObject[] {
  const raws: Raw[] = [namespace('monitoring', { team: 'platform' })];
  const namespaces = Math.max(1, nodes / 10);
  for (let n = 0; n < namespaces; n++) {
    const ns = `ns-${n}`;
    raws.push(namespace(ns, { team: `t${n % 7}` }));
    raws.push(networkPolicy(ns, 'deny', { podSelector: {} }));
    raws.push(
      networkPolicy(ns, 'a-to-b', {
        podSelector: { matchLabels: { app: 'b' } },
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'a' } } }], ports: [{ port: 'http' }] },
        ],
      }),
    );
    raws.push(
      networkPolicy(ns, 'from-monitoring', {
        podSelector: {},
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { team: 'platform' } } }],
            ports: [{ port: 9090 }],
          },
        ],
      }),
    );
  }
  raws.push(
    networkPolicy('monitoring', 'probes', {
      podSelector: {},
      ingress: [
        { from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'probe' } } }] },
      ],
    }),
  );
  let ip = 0;
  for (let node = 0; node < nodes; node++) {
    for (let k = 0; k < 10; k++) {
      const ns = `ns-${Math.floor(node / 10) % namespaces}`;
      const i = ip++;
      raws.push(
        pod(ns, `p-${node}-${k}`, {
          labels: { app: 'abcde'[k % 5]! },
          ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
          node: `node-${node}`,
          ports: [{ name: 'http', port: 8080 }],
        }),
      );
    }
    // A monitoring pod on every node keeps the monitoring policy everywhere.
  }
  if (providers > 0) {
    // Every namespace may reach the providers' named port: every node's span
    // holds every provider endpoint (named ports are resolved per node).
    raws.push(namespace('providers', { team: 'providers' }));
    for (let k = 0; k < providers; k++)
      raws.push(
        pod('providers', `provider-${k}`, {
          labels: { app: 'provider' },
          ips: [`10.200.${k >> 8}.${k & 255}`],
          node: `node-${k % nodes}`,
          ports: [{ name: 'metrics', port: 9100 }],
        }),
      );
    for (let n = 0; n < Math.max(1, nodes / 10); n++)
      raws.push(
        networkPolicy(`ns-${n}`, 'to-providers', {
          podSelector: {},
          policyTypes: ['Egress'],
          egress: [
            {
              to: [{ namespaceSelector: { matchLabels: { team: 'providers' } } }],
              ports: [{ port: 'metrics' }],
            },
          ],
        }),
      );
  }
  return raws.map(read);
}

/** GetStatus over gRPC, as `weirctl status` calls it; with its wall time. */
async function timedStatus(port: number): Promise<{ ms: number; reply: StatusReply__Output }> {
  setConnectionFlags({ insecure: true });
  const client = operatorClient(`127.0.0.1:${port}`);
  const t0 = now();
  const reply = await new Promise<StatusReply__Output>((resolve, reject) =>
    client.GetStatus({}, { deadline: Date.now() + 60_000 }, (err, r) =>
      err || r === undefined ? reject(err ?? new Error('no reply')) : resolve(r),
    ),
  );
  const ms = now() - t0;
  client.close();
  return { ms, reply };
}

/** A probe pod every node's span must learn about (the monitoring policy's peer group). */
export const probePod = (i: number): ModelEvent => ({
  type: 'upsert',
  object: read(
    pod('monitoring', `probe-${i}`, {
      labels: { app: 'probe' },
      ips: [`172.16.${i >> 8}.${i & 255}`],
      node: 'node-0',
    }),
  ),
});

interface ChangeResult {
  readonly name: string;
  nodes: number;
  readonly latencies: number[];
  readonly bytes: number[];
  readonly spanBytes: number[];
  /** The first status call after each change reached its agents. */
  readonly statusMs: number[];
}

async function run(
  agents: number,
  changes: number,
  providers = 0,
): Promise<{ initial: ChangeResult; results: ChangeResult[] }> {
  const source = new ScriptedSource(cluster(agents, providers));
  const controller = new Controller({
    cluster: 'bench',
    source,
    listen: '127.0.0.1:0',
    log: process.env.BENCH_LOG ? rootLogger({ name: 'bench' }) : silentLogger,
    commitIntervalMs: 1,
    // The simulated agents (sim-agents.ts) speak plain gRPC: TLS is not in these numbers.
    tls: undefined,
  });
  await controller.start();
  const acks: AckRecord[] = [];
  /** ACK notices (node, revision) as they happen; times and sizes come with the report. */
  const notices: Array<{ node: string; revision: number }> = [];
  let onAcks: (() => void) | undefined;
  let onReported: (() => void) | undefined;
  const report = () =>
    new Promise<void>((resolve) => {
      onReported = resolve;
      child.send({ type: 'report' });
    });
  const child = fork(
    fileURLToPath(new URL('./sim-agents.ts', import.meta.url)),
    [`127.0.0.1:${controller.port}`, String(agents)],
    {
      execArgv: [
        '--import',
        'tsx',
        ...(process.env.SIM_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof2'] : []),
      ],
      stdio: 'inherit',
    },
  );
  child.on('exit', (code) => {
    if (code !== 0) process.stderr.write(`simulated agents exited with ${code}\n`);
  });
  child.on(
    'message',
    (m: {
      type: string;
      acks?: AckRecord[];
      notices?: Array<{ node: string; revision: number }>;
    }) => {
      if (m.type === 'acks') acks.push(...m.acks!);
      else if (m.type === 'reported') onReported?.();
      else if (m.type === 'ack') {
        notices.push(...m.notices!);
        onAcks?.();
      }
    },
  );
  const waitAcks = (pred: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (pred()) return resolve();
      const t = setTimeout(() => reject(new Error(`timed out: ${what}`)), 120_000);
      onAcks = () => {
        if (pred()) {
          clearTimeout(t);
          onAcks = undefined;
          resolve();
        }
      };
    });
  const started = now();
  await waitAcks(() => new Set(notices.map((a) => a.node)).size === agents, 'initial sync');
  await report();
  const snapshots = acks.filter((a) => a.snapshot);
  const initial: ChangeResult = {
    name: 'initial sync (connect + whole span)',
    nodes: agents,
    latencies: snapshots.map((a) => a.at - started),
    bytes: snapshots.map((a) => a.bytes),
    spanBytes: snapshots.map((a) => a.spanBytes),
    statusMs: [],
  };
  /**
   * Times the first status call, then requires it (or, should an ACK still
   * be on its way into the controller, a later one within 10 s) to prove
   * every agent in sync.
   */
  const proveInSync = async (r: ChangeResult, what: string) => {
    const first = await timedStatus(controller.port);
    r.statusMs.push(first.ms);
    let reply = first.reply;
    const deadline = now() + 10_000;
    const out = () => reply.agents.filter((a) => !a.inSync).map((a) => a.node);
    while ((out().length > 0 || reply.agents.length !== agents) && now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      reply = (await timedStatus(controller.port)).reply;
    }
    if (out().length > 0 || reply.agents.length !== agents)
      throw new Error(
        `${what}: ${reply.agents.length - out().length} of ${agents} agents in sync (not: ${out().slice(0, 5).join(', ')})`,
      );
  };
  await proveInSync(initial, 'initial sync');

  const results: ChangeResult[] = [];
  const measure = async (name: string, change: (i: number) => ModelEvent) => {
    const r: ChangeResult = {
      name,
      nodes: 0,
      latencies: [],
      bytes: [],
      spanBytes: [],
      statusMs: [],
    };
    for (let i = 0; i < changes; i++) {
      const from = acks.length;
      const noticed = notices.length;
      const before = controller.revision;
      const t0 = now();
      source.emit(change(i));
      // Wait for the commit, then for every node the store says changed to ACK.
      await new Promise<void>((resolve) => {
        const poll = () => (controller.revision > before ? resolve() : setTimeout(poll, 0));
        poll();
      });
      const revision = controller.revision;
      const expected = controller.model.nodes().filter(
        (n) =>
          (
            controller as unknown as {
              store: { span(n: string): { revision: number } | undefined };
            }
          ).store.span(n)?.revision === revision,
      ).length;
      await waitAcks(
        () => notices.slice(noticed).filter((a) => a.revision >= revision).length >= expected,
        `${name} #${i}`,
      );
      await report();
      const mine = acks.slice(from).filter((a) => a.revision >= revision);
      r.nodes = Math.max(r.nodes, mine.length);
      for (const a of mine) {
        r.latencies.push(a.at - t0);
        r.bytes.push(a.bytes);
        r.spanBytes.push(a.spanBytes);
      }
      await proveInSync(r, `${name} #${i}`);
    }
    results.push(r);
  };
  // Narrow: one namespace's policy changes its port (its ten nodes).
  await measure('one policy in one namespace', (i) => ({
    type: 'upsert',
    object: read(
      networkPolicy('ns-0', 'from-monitoring', {
        podSelector: {},
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { team: 'platform' } } }],
            ports: [{ port: 9000 + i }],
          },
        ],
      }),
    ),
  }));
  // Broad: a pod joins a group every node's span holds.
  await measure('a pod every node must learn about', probePod);

  child.send({ type: 'stop' });
  await new Promise((r) => child.once('exit', r));
  await controller[Symbol.asyncDispose]();
  return { initial, results };
}

const fmt = (x: number) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(0)) : '-');
const kib = (x: number) => `${(x / 1024).toFixed(1)} KiB`;

/**
 * The first status calls after a change every node hears, with no agents
 * connected (what status costs the controller, not what agents do): the
 * commit's time, then the first and the second GetStatus.
 */
async function statusRun(
  nodes: number,
  providers: number,
  changes: number,
): Promise<{ spanObjects: number; commitMs: number[]; firstMs: number[]; secondMs: number[] }> {
  const source = new ScriptedSource(cluster(nodes, providers));
  const controller = new Controller({
    cluster: 'bench',
    source,
    listen: '127.0.0.1:0',
    log: process.env.BENCH_LOG ? rootLogger({ name: 'bench' }) : silentLogger,
    commitIntervalMs: 1,
    // The simulated agents (sim-agents.ts) speak plain gRPC: TLS is not in these numbers.
    tls: undefined,
  });
  await controller.start();
  while (controller.revision === 0) await new Promise((r) => setTimeout(r, 10));
  const { reply } = await timedStatus(controller.port);
  const sizes = reply.agents.map((a) => a.spanObjects);
  const out = {
    spanObjects: percentile(sizes, 50),
    commitMs: [] as number[],
    firstMs: [] as number[],
    secondMs: [] as number[],
  };
  for (let i = 0; i < changes; i++) {
    const before = controller.revision;
    const t0 = now();
    source.emit(probePod(i));
    while (controller.revision === before) await new Promise((r) => setImmediate(r));
    out.commitMs.push(now() - t0);
    out.firstMs.push((await timedStatus(controller.port)).ms);
    out.secondMs.push((await timedStatus(controller.port)).ms);
  }
  await controller[Symbol.asyncDispose]();
  return out;
}

export async function benchPropagation(
  options: {
    quick?: boolean;
    agents?: readonly number[];
    /** Agents of the run whose spans hold ~3,000 objects each; 0: none. */
    largeSpanAgents?: number;
    /** 0: no status run. */
    statusNodes?: number;
  } = {},
): Promise<string> {
  const lines: string[] = [];
  const large = options.largeSpanAgents ?? 50;
  const runs = [
    ...(options.agents ?? [100, 1000]).map((agents) => ({ agents, providers: 0 })),
    ...(large > 0 ? [{ agents: large, providers: 3000 }] : []),
  ];
  for (const { agents, providers } of runs) {
    const { initial, results } = await run(agents, options.quick ? 5 : 20, providers);
    lines.push(
      `${agents} agents (${agents * 10 + providers} pods, ${agents / 10} namespaces${providers > 0 ? `, every span holds ${providers} provider endpoints` : ''}):`,
    );
    lines.push(
      `  ${'change'.padEnd(36)} ${'nodes'.padStart(5)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'bytes/agent (median)'.padStart(20)}  ${'whole span (median)'.padStart(19)}  ${'status ms (p50/max)'.padStart(19)}`,
    );
    for (const r of [initial, ...results]) {
      lines.push(
        `  ${r.name.padEnd(36)} ${String(r.nodes).padStart(5)}  ${fmt(percentile(r.latencies, 50)).padStart(7)}  ${fmt(percentile(r.latencies, 99)).padStart(7)}  ${kib(percentile(r.bytes, 50)).padStart(20)}  ${kib(percentile(r.spanBytes, 50)).padStart(19)}  ${`${fmt(percentile(r.statusMs, 50))} / ${fmt(percentile(r.statusMs, 100))}`.padStart(19)}`,
      );
    }
    const broad = results[1]!;
    lines.push(
      `  every agent proved in sync (in-force hash = span hash) after every change; status: the first GetStatus after it`,
    );
    lines.push(
      `  target p99 < 300 ms at 1,000 agents: ${agents === 1000 && providers === 0 ? (percentile(broad.latencies, 99) < 300 && percentile(results[0]!.latencies, 99) < 300 ? 'MET' : 'NOT MET') : 'n/a'}`,
    );
    lines.push('');
  }
  const nodes = options.statusNodes ?? 1000;
  if (nodes === 0) return lines.join('\n');
  const s = await statusRun(nodes, 3000, options.quick ? 3 : 10);
  lines.push(
    `status after a change every node hears, ${nodes} nodes, ${s.spanObjects} objects per span (median), no agents:`,
  );
  for (const [what, xs] of [
    ['commit', s.commitMs],
    ['first GetStatus', s.firstMs],
    ['second GetStatus', s.secondMs],
  ] as const)
    lines.push(
      `  ${what.padEnd(18)} p50 ${fmt(percentile(xs, 50)).padStart(6)} ms  max ${fmt(percentile(xs, 100)).padStart(6)} ms`,
    );
  lines.push(
    `  target: operator calls under 100 ms: ${percentile(s.firstMs, 100) < 100 ? 'MET' : 'NOT MET'}`,
  );
  lines.push('');
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const flag = (name: string) =>
    process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  process.stdout.write(
    `${await benchPropagation({
      quick: process.argv.includes('--quick'),
      agents: flag('agents')
        ?.split(',')
        .filter((x) => x !== '')
        .map(Number),
      largeSpanAgents:
        flag('large-span-agents') === undefined ? undefined : Number(flag('large-span-agents')),
      statusNodes: flag('status-nodes') === undefined ? undefined : Number(flag('status-nodes')),
    })}\n`,
  );
}
