/**
 * Kernel datapath benchmark (root): `node --import tsx bench/kernel.ts
 * [--quick] [--json]`, or `benchKernel()` from bench/run.ts or the lab.
 *
 * One node namespace routing two pod namespaces (testing/netns.ts), real
 * sockets, in one run:
 *
 *   connections  new TCP connections per second web → api, in rounds that
 *                alternate no Weir table at all (the baseline) and the kernel
 *                datapath enforcing 10,000 rules on api's ingress (ipBlock /32
 *                rules, the admitting rule last); medians, and every round
 *                (the datapath runs in the node namespace: this file, --inner)
 *   latency      first-packet verdict latency inside the agent over those
 *                connections' SYNs: from the recvmmsg that read the packet to
 *                the sendmsg carrying its verdict (p50, p99, max), native
 *   capacity     slow-path verdicts per second: one UDP socket sends new
 *                flows (one port each) as fast as it can; verdicts counted
 *                by the queue thread between its first and last verdict
 *   throughput   an established flow's bulk throughput needs iperf3: reported
 *                as skipped when it is not installed
 *
 * Connections are sequential (one client): the rate is latency-bound, which
 * is what the slow path adds to. Prints a report (or, with --json, one JSON
 * object); timings never fail the run.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { silentLogger } from '../shared/log.js';
import { build, namespace, networkPolicy, node, pod, type Raw } from '../testing/cluster.js';
import { compile } from '../shared/policy/compile.js';
import { inNs, kernelSkipReason, NodeTopology, PEER_SCRIPT } from '../testing/netns.js';
import { KernelDatapath } from '../vrouter-agent/datapath/kernel-datapath.js';
import { emptySpanTables } from '../vrouter-agent/datapath/kernel-select.js';
import { nativeAddon } from '../vrouter-agent/native/loader.js';

export interface KernelBenchResult {
  readonly rules: number;
  readonly connections: number;
  /** Medians over rounds that alternate no Weir table and Weir; each round's rate in `rounds`. */
  readonly baseline: {
    readonly connectionsPerSecond: number;
    readonly failed: number;
    readonly rounds: readonly number[];
  };
  readonly weir: {
    readonly connectionsPerSecond: number;
    readonly failed: number;
    readonly queueMethod: string;
    readonly rounds: readonly number[];
  };
  /** Read → verdict sent (the send includes the kernel's reinjection of the accepted SYN). */
  readonly latency: Latency;
  /** Read → verdict decided (parse, evaluation, verdict built). */
  readonly decide: Latency;
  readonly capacity: {
    readonly verdicts: number;
    readonly verdictsPerSecond: number;
    readonly sent: number;
  };
  readonly throughput: string;
  readonly loadAverage: number;
}

interface Latency {
  readonly samples: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
}

const NODE = 'n1';
const SELF = fileURLToPath(import.meta.url);

function runIn(ns: string, args: string[], timeoutMs: number): Promise<string> {
  return inNs(ns, args, timeoutMs);
}

async function flood(
  ns: string,
  host: string,
  count: number,
): Promise<{ ok: number; failed: number; seconds: number }> {
  const out = await runIn(
    ns,
    [process.execPath, PEER_SCRIPT, 'flood', 'tcp', host, '8080', String(count), '3000'],
    300_000,
  );
  return JSON.parse(out.trim().split('\n').pop()!) as {
    ok: number;
    failed: number;
    seconds: number;
  };
}

/** api's ingress: `rules - 1` ipBlock rules that never match, then the one admitting web. */
function objects(web: { v4: string }, api: { v4: string }, rules: number): Raw[] {
  const never: Raw[] = [];
  for (let i = 0; i < rules - 1; i++)
    never.push({
      from: [{ ipBlock: { cidr: `172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}/32` } }],
      ports: [{ port: 1000 + (i % 5000) }],
    });
  return [
    namespace('prod', { env: 'prod' }),
    node(NODE, ['10.200.1.1', '10.200.2.1']),
    pod('prod', 'web', { labels: { app: 'web' }, ips: [web.v4], node: NODE }),
    pod('prod', 'api', { labels: { app: 'api' }, ips: [api.v4], node: NODE }),
    networkPolicy('prod', 'api-in', {
      podSelector: { matchLabels: { app: 'api' } },
      ingress: [
        ...never,
        { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 8080 }] },
        {
          from: [{ podSelector: { matchLabels: { app: 'web' } } }],
          ports: [{ protocol: 'UDP', port: 10000, endPort: 65535 }],
        },
      ],
    }),
  ];
}

/** The part that runs inside the node namespace: the datapath, the Weir flood, latency and capacity. */
async function inner(args: {
  web: string;
  webV4: string;
  api: string;
  apiV4: string;
  rules: number;
  connections: number;
  blast: number;
  rounds: number;
}): Promise<object> {
  const built = build(objects({ v4: args.webV4 }, { v4: args.apiV4 }, args.rules));
  if (built.issues.length > 0)
    throw new Error(`bench manifests: ${JSON.stringify(built.issues.slice(0, 3))}`);
  const tables = compile(built.snapshot, { isLocal: (e) => e.node === NODE });
  const make = async () => {
    const d = await KernelDatapath.create({
      tables: emptySpanTables(NODE),
      failMode: 'open',
      log: silentLogger,
      syncIntervalMs: 0,
    });
    d.attach({ zone: 1, endpoint: 'prod/web', ips: [args.webV4] });
    d.attach({ zone: 2, endpoint: 'prod/api', ips: [args.apiV4] });
    d.loadTables(tables);
    await d.settled();
    return d;
  };
  // Rounds of (no Weir table, then Weir) so that both see the same machine; medians reported.
  await flood(args.web, args.apiV4, 20);
  const baseline: number[] = [];
  const withWeir: number[] = [];
  let failedBaseline = 0;
  let failedWeir = 0;
  let dp: KernelDatapath | undefined;
  for (let round = 0; round < args.rounds; round++) {
    const b = await flood(args.web, args.apiV4, args.connections);
    baseline.push(b.ok / b.seconds);
    failedBaseline += b.failed;
    dp = await make();
    await flood(args.web, args.apiV4, 20);
    dp.resetLatency();
    const w = await flood(args.web, args.apiV4, args.connections);
    withWeir.push(w.ok / w.seconds);
    failedWeir += w.failed;
    if (round < args.rounds - 1) {
      await dp[Symbol.asyncDispose]();
      dp = undefined;
    }
  }
  if (dp === undefined) throw new Error('no rounds');
  try {
    const q = dp.status().nfqueue;
    const us = (l: typeof q.latency): Latency => ({
      samples: l.count,
      p50Us: l.p50Ns / 1000,
      p90Us: l.p90Ns / 1000,
      p99Us: l.p99Ns / 1000,
      maxUs: l.maxNs / 1000,
    });
    // Capacity: new UDP flows as fast as one socket sends them.
    const before = dp.status().nfqueue.received;
    let first = 0;
    let last = 0;
    let seen = before;
    const blast = execFileOut('ip', [
      'netns',
      'exec',
      args.web,
      process.execPath,
      PEER_SCRIPT,
      'blast',
      'udp',
      args.apiV4,
      '10000',
      String(args.blast),
    ]);
    const deadline = Date.now() + 60_000;
    let quietSince = 0;
    let blastOut: string | undefined;
    void blast.then((o) => {
      blastOut = o;
    });
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
      const r = dp.status().nfqueue.received;
      const t = performance.now();
      if (r > seen) {
        if (first === 0) first = t;
        last = t;
        seen = r;
        quietSince = t;
      } else if (blastOut !== undefined && quietSince > 0 && t - quietSince > 500) break;
    }
    await blast;
    const verdicts = seen - before;
    const sent =
      blastOut === undefined ? 0 : (JSON.parse(blastOut.trim()) as { sent: number }).sent;
    return {
      baseline: {
        connectionsPerSecond: median(baseline),
        failed: failedBaseline,
        rounds: baseline,
      },
      weir: {
        connectionsPerSecond: median(withWeir),
        failed: failedWeir,
        queueMethod: dp.status().queueMethod,
        rounds: withWeir,
      },
      latency: us(q.latency),
      decide: us(q.decideLatency),
      capacity: {
        verdicts,
        verdictsPerSecond: last > first ? (verdicts / (last - first)) * 1000 : 0,
        sent,
      },
    };
  } finally {
    await dp[Symbol.asyncDispose]();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function execFileOut(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { timeout: 120_000, maxBuffer: 1 << 20 }, (err, out, stderr) =>
      err ? reject(new Error(`${file}: ${stderr || err.message}`)) : resolve(String(out)),
    ),
  );
}

export async function benchKernel(
  options: { quick?: boolean } = {},
): Promise<KernelBenchResult | { skipped: string }> {
  const skip = kernelSkipReason(nativeAddon());
  if (skip) return { skipped: skip };
  const quick = options.quick ?? false;
  const rules = quick ? 1_000 : 10_000;
  const connections = quick ? 200 : 1_000;
  const blastCount = quick ? 5_000 : 20_000;
  const rounds = quick ? 2 : 3;
  const topo = await NodeTopology.create(2);
  try {
    const [web, api] = topo.pods as [(typeof topo.pods)[0], (typeof topo.pods)[0]];
    await topo.serve(api, 'tcp', api.v4, 8080);
    const out = await runIn(
      topo.node,
      [
        process.execPath,
        '--import',
        'tsx',
        SELF,
        '--inner',
        JSON.stringify({
          web: web.ns,
          webV4: web.v4,
          api: api.ns,
          apiV4: api.v4,
          rules,
          connections,
          blast: blastCount,
          rounds,
        }),
      ],
      600_000,
    );
    const r = JSON.parse(out.trim().split('\n').pop()!) as Pick<
      KernelBenchResult,
      'baseline' | 'weir' | 'latency' | 'decide' | 'capacity'
    >;
    return {
      rules,
      connections,
      ...r,
      throughput: existsSync('/usr/bin/iperf3')
        ? 'iperf3 present: not measured by this section yet'
        : 'skipped: iperf3 is not installed (apt-get install iperf3)',
      loadAverage: os.loadavg()[0]!,
    };
  } finally {
    await topo[Symbol.asyncDispose]();
  }
}

export function formatKernelBench(r: KernelBenchResult | { skipped: string }): string {
  if ('skipped' in r) return `  skipped: ${r.skipped}`;
  const f = (n: number) => n.toFixed(1);
  const ratio = r.weir.connectionsPerSecond / r.baseline.connectionsPerSecond;
  return [
    `  ${r.connections} sequential TCP connections web → api; Weir enforcing ${r.rules} rules (queue: ${r.weir.queueMethod})`,
    `  new connections/s (median of ${r.weir.rounds.length} alternating rounds)   no Weir table: ${f(r.baseline.connectionsPerSecond)} [${r.baseline.rounds.map(f).join(', ')}]   Weir: ${f(r.weir.connectionsPerSecond)} [${r.weir.rounds.map(f).join(', ')}]   ratio ${ratio.toFixed(2)} (target ≥ 0.70: ${ratio >= 0.7 ? 'met' : 'NOT met'})` +
      (r.weir.failed + r.baseline.failed > 0
        ? `   failed: ${r.baseline.failed} / ${r.weir.failed}`
        : ''),
    `  first-packet verdict latency in the agent (${r.latency.samples} SYNs), read → verdict sent: p50 ${f(r.latency.p50Us)} µs, p90 ${f(r.latency.p90Us)} µs, p99 ${f(r.latency.p99Us)} µs, max ${f(r.latency.maxUs)} µs (target p99 < 100 µs: ${r.latency.p99Us < 100 ? 'met' : 'NOT met'})`,
    `    of which read → verdict decided (parse + evaluation): p50 ${f(r.decide.p50Us)} µs, p90 ${f(r.decide.p90Us)} µs, p99 ${f(r.decide.p99Us)} µs, max ${f(r.decide.maxUs)} µs; the rest is the send, which runs the kernel's reinjection of the SYN`,
    `  slow-path capacity: ${r.capacity.verdicts} verdicts of ${r.capacity.sent} new UDP flows sent, ${f(r.capacity.verdictsPerSecond)} verdicts/s`,
    `  established throughput: ${r.throughput}`,
    `  load average at the end: ${r.loadAverage.toFixed(2)} on ${os.availableParallelism()} CPUs (shared machine)`,
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--inner');
  if (i >= 0) {
    process.stdout.write(`${JSON.stringify(await inner(JSON.parse(process.argv[i + 1]!)))}\n`);
  } else {
    const r = await benchKernel({ quick: process.argv.includes('--quick') });
    process.stdout.write(
      process.argv.includes('--json') ? `${JSON.stringify(r)}\n` : `${formatKernelBench(r)}\n`,
    );
  }
}
