/**
 * ClusterNetworkPolicies at scale (`npm run bench -- --only=cluster-policies`,
 * or `node --import tsx bench/cluster-policies.ts [--quick]`).
 *
 * A realistic generated cluster (testing/random-cluster.ts) with about
 * 10,000 NetworkPolicies, then the same cluster with 1,000
 * ClusterNetworkPolicies added (Admin and Baseline, priorities 0..1000,
 * subjects by namespace labels, peers by namespace labels, partner networks
 * and private ranges, Accept/Deny/Pass, TCP ports): the pipeline
 * (validate, model and translate, snapshot, compile the whole cluster) and
 * first-packet verdicts per second of the native engine (batch 4,096) and
 * RuleTables.allows, on the same probes. The baseline is the cluster
 * without cluster policies, measured in the same run. Every engine's
 * verdicts are checked against RuleTables.decide() on a sample first.
 * Targets: compile (the whole pipeline) under 2 s, native above 1 M/s.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Packet, RuleTables } from '../shared/policy/rule-tables.js';
import { realisticCluster, realisticClusterPolicies } from '../testing/random-cluster.js';
import {
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  encodePolicyRecords,
} from '../vrouter-agent/compile/policy-record.js';
import {
  createVerdictEngine,
  verdictEngineStatus,
} from '../vrouter-agent/compile/verdict-engine.js';
import { acquireGc, cpuModel, int, median, nowMs, rate } from './measure.js';
import { runPipeline, type PipelineResult } from './pipeline.js';
import { generateProbes } from './probes.js';

function rules(t: RuleTables): { np: number; cnp: number } {
  let np = 0;
  let cnp = 0;
  for (const p of t.snapshot.policies)
    if (p.kind === 'ClusterNetworkPolicy') cnp += p.rules.length;
    else np += p.rules.length;
  return { np, cnp };
}

/** CPU milliseconds (user + system) of this process so far. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Median verdicts/s of `passes` timed passes of fn over n probes: per
 * wall-clock second and per CPU second (the process's, which other work
 * on a shared machine inflates far less than the wall clock).
 */
function timed(passes: number, n: number, fn: () => void): { wall: number; cpu: number } {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < passes; i++) {
    const t0 = nowMs();
    const c0 = cpuMs();
    fn();
    wall.push(n / ((nowMs() - t0) / 1000));
    cpu.push(n / ((cpuMs() - c0) / 1000));
  }
  return { wall: median(wall), cpu: median(cpu) };
}

function measure(tables: RuleTables, probes: readonly Packet[], passes: number) {
  const engine = createVerdictEngine(tables);
  const bytes = encodePolicyRecords(probes);
  const n = probes.length;
  const out = new Int32Array(n * RESULT_STRIDE);
  // Checked before timing: every engine verdict equals decide() on a sample.
  const sample = Math.min(n, 50_000);
  engine.evaluate(bytes, sample, out);
  for (let i = 0; i < sample; i++) {
    const want = tables.decide(probes[i]!).allowed;
    if (((out[3 * i + 2]! & VERDICT_ALLOWED) !== 0) !== want)
      throw new Error(`engine and decide() disagree on probe ${i}`);
  }
  const BATCH = 4096;
  const native = timed(passes, n, () => {
    for (let at = 0; at < n; at += BATCH) {
      const c = Math.min(BATCH, n - at);
      engine.evaluate(bytes.subarray(at * 40), c, out);
    }
  });
  let allowed = 0;
  const allows = timed(passes, n, () => {
    allowed = 0;
    for (let i = 0; i < n; i++) if (tables.allows(probes[i]!)) allowed++;
  });
  const info = engine.info();
  engine[Symbol.dispose]();
  return { native, allows, allowed, implementation: engine.implementation, info };
}

export async function benchClusterPolicies(options: { quick?: boolean } = {}): Promise<string> {
  const quick = options.quick ?? false;
  const gc = acquireGc();
  const lines: string[] = [];
  const say = (s = '') => lines.push(s);
  const status = verdictEngineStatus();
  say('Weir benchmark: 1,000 ClusterNetworkPolicies next to ~10,000 NetworkPolicies');
  say(
    `node ${process.version}, ${os.availableParallelism()} CPUs (${cpuModel()}), load average ${os.loadavg()[0]!.toFixed(2)}; verdict engine ${status.implementation}${quick ? '; --quick' : ''}`,
  );
  const namespaces = quick ? 300 : 1000;
  const cnpCount = quick ? 300 : 1000;
  const cluster = realisticCluster(namespaces);
  const cnps = realisticClusterPolicies(cnpCount);
  const runs = quick ? 1 : 3;
  // The whole compile of each cluster (validate, model, snapshot, compile),
  // measured directly; baseline and cluster-policy runs alternate so that
  // changing load on a shared machine falls on both alike.
  const base: PipelineResult[] = [];
  const withCnp: PipelineResult[] = [];
  const cpu = new Map<PipelineResult[], number[]>([
    [base, []],
    [withCnp, []],
  ]);
  const all = [...cluster.objects, ...cnps];
  for (let i = 0; i < runs; i++)
    for (const [out, objects] of [
      [base, cluster.objects],
      [withCnp, all],
    ] as const) {
      gc?.();
      const c0 = cpuMs();
      out.push(runPipeline(objects));
      cpu.get(out)!.push(cpuMs() - c0);
    }
  for (const p of [...base, ...withCnp])
    if (p.rejected > 0) throw new Error(`the generator made an invalid object: ${p.firstIssue}`);
  const phase = (ps: PipelineResult[], k: keyof PipelineResult['times']) =>
    median(ps.map((p) => p.times[k]));
  const b = base[0]!.tables;
  const c = withCnp[0]!.tables;
  say(
    `cluster: ${int(namespaces)} namespaces, ${int(c.endpoints.size)} endpoints, ${int(b.snapshot.policies.length)} NetworkPolicies (${int(rules(b).np)} rules); ` +
      `+ ${int(cnpCount)} ClusterNetworkPolicies (${int(rules(c).cnp)} rules)`,
  );
  say();
  say(
    `pipeline, median of ${runs} runs (ms)  validate   model   snapshot   compile   total   CPU time`,
  );
  for (const [label, ps] of [
    ['NetworkPolicies only (baseline)', base],
    ['+ ClusterNetworkPolicies', withCnp],
  ] as const)
    say(
      `  ${label.padEnd(32)} ${phase(ps, 'validate').toFixed(0).padStart(8)} ${phase(ps, 'model').toFixed(0).padStart(7)} ${phase(ps, 'snapshot').toFixed(0).padStart(10)} ${phase(ps, 'compile').toFixed(0).padStart(9)} ${phase(ps, 'total').toFixed(0).padStart(7)} ${median(cpu.get(ps)!).toFixed(0).padStart(10)}`,
    );
  const total = phase(withCnp, 'total');
  say(
    `  target: the whole pipeline under 2,000 ms: ${total < 2000 ? 'MET' : 'NOT MET'} (${total.toFixed(0)} ms wall, ${median(cpu.get(withCnp)!).toFixed(0)} ms CPU; load average now ${os.loadavg()[0]!.toFixed(2)})`,
  );
  say();
  const probes = generateProbes(cluster, quick ? 300_000 : 1_000_000);
  const passes = quick ? 3 : 5;
  const mb = measure(b, probes, passes);
  const mc = measure(c, probes, passes);
  say(
    `verdicts, ${int(probes.length)} probes, median of ${passes} passes   ${mb.implementation} batch 4,096 (per CPU s)    RuleTables.allows (per CPU s)   allowed`,
  );
  for (const [label, m] of [
    ['NetworkPolicies only (baseline)', mb],
    ['+ ClusterNetworkPolicies', mc],
  ] as const)
    say(
      `  ${label.padEnd(38)} ${rate(m.native.wall).padStart(12)} (${rate(m.native.cpu)})    ${rate(m.allows.wall).padStart(16)} (${rate(m.allows.cpu)})   ${((100 * m.allowed) / probes.length).toFixed(1)}%`,
    );
  say(
    `  native tables with cluster policies: ${mc.info.tables} direction tables, ${mc.info.ruleLists ?? '?'} rule lists, ${mc.info.classIndexedTables ?? 0} cluster-tier lists indexed by ${mc.info.peerClasses ?? 0} peer classes, ${mc.info.indexedTables} other lists peer-indexed; index ${int(Number(mc.info.indexWords ?? 0))} words`,
  );
  say(
    `  target: native above 1 M verdicts/s: ${mc.native.wall > 1e6 ? 'MET' : 'NOT MET'} (${rate(mc.native.wall)} wall, ${rate(mc.native.cpu)} per CPU second; load average now ${os.loadavg()[0]!.toFixed(2)})`,
  );
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(await benchClusterPolicies({ quick: process.argv.includes('--quick') }));
}
