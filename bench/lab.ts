/**
 * The lab on real packets: new TCP connections per second and the bulk
 * throughput of one established flow between two pods on two nodes (routed
 * through both node netns and the fabric), with Weir enforcing 10,000 rules
 * against the same lab with no Weir datapath in the kernel at all, in the
 * same run. Bulk throughput uses iperf3 when it is installed (Debian's
 * iperf3; .ci/run installs it), else a Node.js bulk sender, and says which.
 *
 * Targets (issue 9): connection rate at least 0.7x the baseline,
 * established throughput at least 0.95x.
 *
 * Root only (network namespaces); without the kernel datapath only the
 * baseline is measured, and the report says so.
 *
 * Runnable alone: node --import tsx bench/lab.ts [--quick]
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentDatapaths, labDown, labUnsupported, labUp } from '../cli/lab.js';
import type { LabState } from '../cli/lab-state.js';
import { namespace, networkPolicy, node, pod, type Raw } from '../testing/cluster.js';
import { writeManifests } from '../testing/lab.js';

const SERVER_IP = '10.88.2.1';
const PORT = 5201;
const RULES = 10_000;

const CLUSTER: Raw[] = [
  namespace('bench'),
  node('node-1', ['192.168.88.1']),
  node('node-2', ['192.168.88.2']),
  pod('bench', 'client', { labels: { app: 'client' }, ips: ['10.88.1.1'], node: 'node-1' }),
  pod('bench', 'server', { labels: { app: 'server' }, ips: [SERVER_IP], node: 'node-2' }),
];

/**
 * 10,000 rules on the server: 1,000 policies of 10 ipBlock rules each that
 * match nothing in the lab (the evaluator must still hold them all), and one
 * rule admitting the client.
 */
function rules(): Raw[] {
  const out: Raw[] = [];
  for (let p = 0; p < RULES / 10; p++)
    out.push(
      networkPolicy('bench', `rules-${p}`, {
        podSelector: { matchLabels: { app: 'server' } },
        ingress: Array.from({ length: 10 }, (_, r) => ({
          from: [{ ipBlock: { cidr: `172.${16 + (p >> 8)}.${p & 255}.${r}/32` } }],
          ports: [{ port: 1000 + r, protocol: 'TCP' }],
        })),
      }),
    );
  out.push(
    networkPolicy('bench', 'client-to-server', {
      podSelector: { matchLabels: { app: 'server' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }],
    }),
  );
  return out;
}

// Node.js programs run in the pods: a server that accepts and counts, and clients.
const SERVER = `
const net = require('node:net');
const s = net.createServer((c) => { c.on('error', () => {}); c.on('data', () => {}); c.on('end', () => c.end()); });
s.listen(${PORT}, '0.0.0.0', () => process.stdout.write('ready\\n'));
process.stdin.resume(); process.stdin.on('end', () => process.exit(0));
`;
const CONNECT_RATE = `
const net = require('node:net');
const [ip, port, ms, conc] = process.argv.slice(1);
const until = Date.now() + Number(ms);
let n = 0, failed = 0;
function one() {
  if (Date.now() >= until) return Promise.resolve();
  return new Promise((r) => {
    const c = net.connect({ host: ip, port: Number(port) });
    c.setTimeout(2000, () => { failed++; c.destroy(); r(); });
    c.on('connect', () => { n++; c.end(); });
    c.on('close', r);
    c.on('error', () => { failed++; r(); });
  }).then(one);
}
Promise.all(Array.from({ length: Number(conc) }, one)).then(() => process.stdout.write(JSON.stringify({ n, failed, ms: Number(ms) }) + '\\n'));
`;
const BULK = `
const net = require('node:net');
const [ip, port, ms] = process.argv.slice(1);
const buf = Buffer.alloc(1 << 20);
let bytes = 0, start = 0;
const c = net.connect({ host: ip, port: Number(port) }, () => {
  start = Date.now();
  const pump = () => { while (Date.now() - start < Number(ms)) { bytes += buf.length; if (!c.write(buf)) return c.once('drain', pump); } c.end(() => process.stdout.write(JSON.stringify({ bytes, ms: Date.now() - start }) + '\\n')); };
  pump();
});
c.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.message }) + '\\n'); });
`;

function inPod(netns: string, argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      'ip',
      ['netns', 'exec', netns, ...argv],
      { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 },
      (err, out, e) =>
        err ? reject(new Error(`${argv[0]} in ${netns}: ${e || err.message}`)) : resolve(out),
    ),
  );
}

async function hasIperf3(): Promise<boolean> {
  return new Promise((r) => execFile('iperf3', ['--version'], (err) => r(err === null)));
}

interface Result {
  readonly connPerSec: number;
  readonly failed: number;
  readonly gbps: number;
}

async function measure(state: LabState, seconds: number, iperf: boolean): Promise<Result> {
  const client = state.pods['bench/client']!.netns;
  const server = state.pods['bench/server']!.netns;
  const srv = spawn('ip', ['netns', 'exec', server, process.execPath, '-e', SERVER], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((r) => srv.stdout!.once('data', () => r()));
  let rate: { n: number; failed: number; ms: number };
  try {
    rate = JSON.parse(
      await inPod(
        client,
        [
          process.execPath,
          '-e',
          CONNECT_RATE,
          SERVER_IP,
          String(PORT),
          String(seconds * 1000),
          '8',
        ],
        seconds * 1000 + 30_000,
      ),
    );
  } finally {
    srv.stdin!.end();
  }
  let gbps: number;
  if (iperf) {
    const s = spawn('ip', ['netns', 'exec', server, 'iperf3', '-s', '-1', '-p', String(PORT + 1)], {
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 500));
    try {
      const out = JSON.parse(
        await inPod(
          client,
          ['iperf3', '-c', SERVER_IP, '-p', String(PORT + 1), '-t', String(seconds), '-J'],
          seconds * 1000 + 30_000,
        ),
      );
      gbps = out.end.sum_received.bits_per_second / 1e9;
    } finally {
      s.kill();
    }
  } else {
    const s = spawn(
      'ip',
      [
        'netns',
        'exec',
        server,
        process.execPath,
        '-e',
        SERVER.replace(String(PORT), String(PORT + 1)),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    await new Promise<void>((r) => s.stdout!.once('data', () => r()));
    try {
      const out = JSON.parse(
        await inPod(
          client,
          [process.execPath, '-e', BULK, SERVER_IP, String(PORT + 1), String(seconds * 1000)],
          seconds * 1000 + 30_000,
        ),
      );
      if (out.error) throw new Error(`bulk transfer: ${out.error}`);
      gbps = (out.bytes * 8) / (out.ms / 1000) / 1e9;
    } finally {
      s.stdin!.end();
    }
  }
  return { connPerSec: rate.n / (rate.ms / 1000), failed: rate.failed, gbps };
}

interface Lab {
  readonly state: LabState;
  close(): Promise<void>;
}

async function startLab(policies: Raw[], datapath: 'nftables' | 'userspace'): Promise<Lab> {
  const root = await mkdtemp(join(tmpdir(), 'weir-bench-lab-'));
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-manifests-'));
  const close = async () => {
    await labDown({ lab: `bench-${datapath}`, root }).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await writeManifests(dir, 'cluster.yaml', CLUSTER);
    await writeManifests(dir, 'policies.yaml', policies);
    const state = await labUp({
      dir,
      lab: `bench-${datapath}`,
      root,
      datapath,
      timeoutMs: 180_000,
    });
    return { state, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/**
 * Both labs up at once, measured in alternation (baseline, Weir, baseline,
 * ...) so that the load of a shared machine falls on both alike; medians of
 * the rounds, each round's numbers printed.
 */
export async function benchLab(options: { quick?: boolean } = {}): Promise<string> {
  const why = await labUnsupported();
  if (why !== undefined) return `  not run: ${why}\n`;
  const seconds = options.quick ? 2 : 4;
  const rounds = options.quick ? 1 : 3;
  const iperf = await hasIperf3();
  const tool = iperf ? 'iperf3' : 'a Node.js bulk sender (iperf3 is not installed)';
  const kernel = (await agentDatapaths()).nftables;
  const lines = [
    `  two pods on two nodes (routed by both node netns and the fabric bridge); ${rounds} round(s) of ${seconds} s per measurement, alternating; bulk throughput by ${tool}; load before: ${load()}`,
  ];
  const baselineLab = await startLab([], 'userspace');
  const weirLab = kernel
    ? await startLab(rules(), 'nftables').catch(async (err) => {
        await baselineLab.close();
        throw err;
      })
    : undefined;
  const base: Result[] = [];
  const weir: Result[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      base.push(await measure(baselineLab.state, seconds, iperf));
      if (weirLab) weir.push(await measure(weirLab.state, seconds, iperf));
      lines.push(
        `  round ${r + 1}: baseline ${base[r]!.connPerSec.toFixed(0)} conn/s, ${base[r]!.gbps.toFixed(2)} Gbit/s` +
          (weirLab
            ? `; Weir ${weir[r]!.connPerSec.toFixed(0)} conn/s, ${weir[r]!.gbps.toFixed(2)} Gbit/s`
            : '') +
          `; load ${load()}`,
      );
    }
  } finally {
    await weirLab?.close();
    await baselineLab.close();
  }
  const b = {
    conn: median(base.map((x) => x.connPerSec)),
    gbps: median(base.map((x) => x.gbps)),
    failed: base.reduce((n, x) => n + x.failed, 0),
  };
  lines.push(
    `  baseline, no Weir datapath in the kernel: median ${b.conn.toFixed(0)} new TCP connections/s (8 at a time, ${b.failed} failed), ${b.gbps.toFixed(2)} Gbit/s established`,
  );
  if (!weirLab) {
    lines.push(
      '  Weir enforcing: not measured: this weir-agent has no kernel datapath (--datapath nftables)',
    );
    return `${lines.join('\n')}\n`;
  }
  const w = {
    conn: median(weir.map((x) => x.connPerSec)),
    gbps: median(weir.map((x) => x.gbps)),
    failed: weir.reduce((n, x) => n + x.failed, 0),
  };
  const connRatio = w.conn / b.conn;
  const bulkRatio = w.gbps / b.gbps;
  lines.push(
    `  Weir enforcing ${RULES.toLocaleString('en')} rules (nftables + NFQUEUE): median ${w.conn.toFixed(0)} new TCP connections/s (${w.failed} failed), ${w.gbps.toFixed(2)} Gbit/s established`,
    `  connection rate ${connRatio.toFixed(2)}x baseline (target >= 0.7: ${connRatio >= 0.7 ? 'met' : 'NOT met'}); established throughput ${bulkRatio.toFixed(2)}x (target >= 0.95: ${bulkRatio >= 0.95 ? 'met' : 'NOT met'})`,
  );
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(await benchLab({ quick: process.argv.includes('--quick') }));
}
