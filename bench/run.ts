/**
 * Weir policy-core benchmarks: `npm run bench`.
 *
 *   1. cluster      a generated cluster: 1,000 namespaces, 10,000 pods,
 *                   10,000 NetworkPolicies (testing/random-cluster.ts)
 *   2. pipeline     raw objects → validation → ClusterModel → snapshot() →
 *                   compile(), per phase; memory
 *   3. verdicts     verdicts per second on one core: tables.allows (hot
 *                   path), tables.decide (full verdict), and the naive
 *                   reference evaluator as the baseline; the compiled and
 *                   reference verdicts must agree (checked, not timed)
 *   4. scaling      the same at 100 / 1,000 / 10,000 / 20,000 policies
 *
 * Prints a report to stdout and writes nothing else. Exits non-zero when the
 * compiled evaluator disagrees with the reference or the generated objects
 * fail validation; timings never fail the run (targets are reported as met
 * or not).
 *
 * Each section ends with how busy the rest of the machine was (other
 * processes' CPU use from /proc/stat): on a shared machine, numbers taken
 * while it is CONTENDED are pessimistic.
 *
 *   5. native-verdicts  first-packet verdicts, native batched vs RuleTables
 *   6. flow-table       flow lookups with 1M flows, native vs a Map
 *   8. propagation      one change to 100 and 1,000 agents (gRPC, real controller)
 *   7. datapath         packets through the userspace datapath: fast and slow path
 *   9. kernel           real connections through the kernel datapath (root): connection rate
 *                       against no Weir table, first-packet latency, slow-path verdicts/s
 *  10. lab              real packets in a lab (root): new TCP connections/s and
 *                       established throughput between pods on two nodes, Weir with
 *                       10,000 rules vs no Weir
 *  11. cluster-policies 1,000 ClusterNetworkPolicies with 10,000 NetworkPolicies: pipeline and verdicts
 *  12. nats             one change to 1,000, 2,000 and 5,000 agents over NATS and over gRPC; flow events/s
 *  13. spans            raw objects to every node's span at 1×, 2×, 4×, 8× (up to Antrea's 25,000
 *                       namespaces, 100,000 pods, 75,000 policies): time, CPU, peak RSS
 *  14. federation       10 member clusters × 10,000 pods exported: a federated policy change and a
 *                       remote pod's start reaching every member's model and spans (p50/p99),
 *                       against the same change local to one cluster
 *  15. agent-update     an agent with 10,000 rules and 1,000,000 flows applying a one-pod and a
 *                       one-policy change, 1× to 8×: time to ACK, flows re-evaluated, longest
 *                       event-loop stall; the full path against the incremental one
 *  16. controller-scale the real controller program with 1,000 simulated agents at 1× to 8×
 *                       Antrea's shape: cold start to all in sync, churn (commit→ACK, status
 *                       answer times), idle CPU; Kubernetes source and manifest directory
 *
 * Options (after `npm run bench --`): --only=pipeline|verdicts|scaling|native-verdicts|flow-table|propagation|datapath|kernel|lab|cluster-policies|nats|spans|federation|agent-update|controller-scale,
 * --quick (fewer repetitions and probes, for trying changes),
 * --namespaces=N (size of the main cluster, default 1000),
 * --no-gc-between-runs (do not collect the heap between pipeline runs).
 */
import { benchAgentUpdate } from './agent-update.js';
import { benchControllerScale } from './controller-scale.js';
import { benchClusterPolicies } from './cluster-policies.js';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { Packet } from '../shared/policy/rule-tables.js';
import { ReferenceCluster } from '../testing/reference.js';
import { realisticCluster, type RealisticCluster } from '../testing/random-cluster.js';
import {
  GcMonitor,
  MachineLoad,
  acquireGc,
  heapUsed,
  int,
  max,
  maxRss,
  median,
  mib,
  min,
  ms,
  nowMs,
  ns,
  rate,
  table,
  cpuModel,
} from './measure.js';
import {
  PHASES,
  runPipeline,
  snapshotStats,
  splitObjects,
  timeModelPoliciesFirst,
  timeResnapshot,
  timeTranslation,
  type PhaseTimes,
  type PipelineResult,
  type UpsertTimes,
} from './pipeline.js';
import { policyMix } from './mix.js';
import { generateProbes } from './probes.js';
import { benchDatapath } from './datapath.js';
import { benchFlowTable } from './flow-table.js';
import { benchPropagation } from './propagation.js';
import { benchNats } from './nats.js';
import { benchSpans } from './spans.js';
import { benchFederation } from './federation.js';
import { benchKernel, formatKernelBench } from './kernel.js';
import { benchLab } from './lab.js';
import {
  benchVerdicts,
  checkAgreement,
  describePacket,
  timeCompiled,
  timeReference,
  type AgreementResult,
} from './verdicts.js';

const args = process.argv.slice(2);
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const quick = args.includes('--quick');
const enabled = (section: string) => only === undefined || only === section;

const MAIN_NAMESPACES = Number(
  args.find((a) => a.startsWith('--namespaces='))?.slice('--namespaces='.length) ?? 1000,
);
const PIPELINE_REPS = quick ? 2 : 5;
const PROBES = quick ? 200_000 : 1_000_000;
const ALLOWS_REPS = quick ? 2 : 5;
const DECIDE_REPS = quick ? 1 : 3;
const REFERENCE_BUDGET_MS = quick ? 1000 : 4000;
const AGREEMENT_SAMPLE = quick ? 5_000 : 20_000;
const SCALES = [10, 100, 1000, 2000];
const SCALE_PROBES = quick ? 100_000 : 300_000;
const SCALE_AGREEMENT = quick ? 1_000 : 5_000;

const TARGET_PIPELINE_MS = 2000;
const TARGET_VERDICTS_PER_S = 1_000_000;

const GC_BETWEEN_RUNS = !args.includes('--no-gc-between-runs');

const failures: string[] = [];
const gc = acquireGc();
const monitor = new GcMonitor();
const say = (s = '') => process.stdout.write(`${s}\n`);
const heading = (s: string) => say(`\n== ${s} ${'='.repeat(Math.max(0, 74 - s.length))}\n`);
const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
const contended: string[] = [];

/** Reports how busy the rest of the machine was during a section. */
function machineNote(section: string, load: MachineLoad): void {
  const other = load.otherCpus();
  if (other === undefined) return;
  const busy = other >= 0.25;
  say(
    `\n  machine: other processes kept ${other.toFixed(2)} of ${os.availableParallelism()} CPUs busy during this section${busy ? ' (CONTENDED: these numbers are pessimistic)' : ''}`,
  );
  if (busy) contended.push(`${section} (${other.toFixed(2)} CPUs)`);
}

/** The commit measured, and whether product code had uncommitted changes. */
function treeState(): string {
  try {
    const git = (...a: string[]) =>
      execFileSync('git', a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'shared', 'controller', 'testing')
      .split('\n')
      .filter((l) => l !== '').length;
    return `commit ${head}${dirty > 0 ? ` + uncommitted changes in ${dirty} product/testing paths` : ''}`;
  } catch {
    return 'commit unknown (not a git checkout)';
  }
}

function pipelineTable(runs: readonly PipelineRun[], first: PipelineRun): string {
  const rows = [['phase', 'median', 'min', 'max', 'GC pauses (median)', 'first (cold) run']];
  for (const p of PHASES) {
    const xs = runs.map((r) => r.times[p]);
    rows.push([
      p === 'total' ? 'total' : phaseLabel(p),
      ms(median(xs)),
      ms(min(xs)),
      ms(max(xs)),
      ms(median(runs.map((r) => r.gc[p]))),
      ms(first.times[p]),
    ]);
  }
  return table(rows);
}

function phaseLabel(p: Exclude<(typeof PHASES)[number], 'total'>): string {
  switch (p) {
    case 'validate':
      return 'validate (readKubeObject)';
    case 'model':
      return 'model (ClusterModel.apply upserts)';
    case 'snapshot':
      return 'snapshot()';
    case 'compile':
      return 'compile(snapshot)';
  }
}

interface PipelineRun {
  readonly times: PhaseTimes;
  readonly upserts: UpsertTimes;
  /** Main-thread GC pause time within each phase. */
  readonly gc: PhaseTimes;
}

/** One pipeline run, with the GC pauses that fell in each phase. */
async function pipelineRun(cluster: RealisticCluster): Promise<[PipelineRun, PipelineResult]> {
  monitor.clear();
  const result = runPipeline(cluster.objects);
  await monitor.settle();
  const [t0, t1, t2, t3, t4] = result.marks;
  const gcTimes: PhaseTimes = {
    validate: monitor.pausedIn(t0, t1),
    model: monitor.pausedIn(t1, t2),
    snapshot: monitor.pausedIn(t2, t3),
    compile: monitor.pausedIn(t3, t4),
    total: monitor.pausedIn(t0, t4),
  };
  if (result.rejected > 0)
    failures.push(
      `${result.rejected} generated objects were rejected by validation; first: ${result.firstIssue}`,
    );
  return [{ times: result.times, upserts: result.upserts, gc: gcTimes }, result];
}

/**
 * Runs the pipeline once cold and `reps` times warm; keeps the last result.
 * The previous run's result is dropped before each run (as a controller
 * replacing its tables would), and the heap is collected between runs.
 */
async function measurePipeline(
  cluster: RealisticCluster,
  reps: number,
): Promise<{ first: PipelineRun; runs: PipelineRun[]; last: PipelineResult }> {
  const [first, coldResult] = await pipelineRun(cluster);
  let last: PipelineResult | undefined = coldResult;
  const runs: PipelineRun[] = [];
  for (let r = 0; r < reps; r++) {
    last = undefined;
    if (GC_BETWEEN_RUNS) gc?.();
    const run = await pipelineRun(cluster);
    runs.push(run[0]);
    last = run[1];
  }
  return { first, runs, last };
}

function reportAgreement(
  label: string,
  a: AgreementResult,
  tables: PipelineResult['tables'],
): void {
  const line = `${label}: ${int(a.checked)} probes checked (${int(a.allowed)} allowed, ${int(a.denied)} denied; ${int(a.isolated)} hit an isolated endpoint): `;
  const u = a.rulesUsed;
  const coverage = `      rules that allowed a checked probe: ${int(u.any + u.selector + u.ipBlock)} distinct (peer any ${int(u.any)}, selector group ${int(u.selector)}, ipBlock ${int(u.ipBlock)}; ${int(u.namedPorts)} with named ports)`;
  if (a.disagreements === 0) {
    say(`  ${line}compiled and reference verdicts AGREE`);
    say(coverage);
    return;
  }
  say(`  ${line}${int(a.disagreements)} DISAGREEMENTS`);
  say(coverage);
  for (const d of a.examples) {
    say(`    #${d.index}: ${describePacket(tables, d.packet)}`);
    say(
      `      compiled allows=${d.compiled} decide=${d.decided}, reference=${d.reference}; ${d.explanation}`,
    );
  }
  failures.push(
    `${label}: ${a.disagreements} of ${a.checked} verdicts disagree with the reference`,
  );
}

async function main(): Promise<void> {
  const started = nowMs();
  say('Weir policy-core benchmarks');
  say(
    `node ${process.version} (${process.platform}/${process.arch}), ${os.availableParallelism()} CPUs (${cpuModel()}), ` +
      `${mib(os.totalmem())} RAM; gc ${gc === undefined ? 'NOT available (heap figures are raw heapUsed deltas)' : 'available'}` +
      `${quick ? '; --quick' : ''}`,
  );
  say(`tree: ${treeState()}`);

  heading('1. Generated cluster');
  let t0 = nowMs();
  const cluster = realisticCluster(MAIN_NAMESPACES);
  const genMs = nowMs() - t0;
  say(
    `  ${int(cluster.namespaceCount)} namespaces, ${int(cluster.podCount)} pods, ${int(cluster.policyCount)} NetworkPolicies (${int(cluster.objects.length)} raw objects), generated in ${ms(genMs)} (seeded, deterministic)`,
  );

  let base: PipelineResult | undefined;
  let pipelineMedian = NaN;
  let pipelineCold = NaN;
  let mainTimes: PhaseTimes | undefined;
  if (enabled('pipeline') || enabled('verdicts') || enabled('scaling')) {
    heading('2. Pipeline: raw objects → rule tables');
    const load = new MachineLoad();
    if (gc) gc();
    const heapBefore = heapUsed();
    const rssBefore = maxRss();
    const m = await measurePipeline(cluster, enabled('pipeline') ? PIPELINE_REPS : 1);
    base = m.last;
    // Heap held by the last run's result alone (measured before anything else is built).
    if (gc) gc();
    const heapAfter = heapUsed();
    pipelineMedian = median(m.runs.map((r) => r.times.total));
    pipelineCold = m.first.times.total;
    mainTimes = medianTimes(m.runs.map((r) => r.times));
    const stats = snapshotStats(base.snapshot, base.tables);
    say(
      `  ${m.runs.length} timed runs after one cold run; each run starts from the raw objects with a fresh ClusterModel.\n`,
    );
    say(pipelineTable(m.runs, m.first));
    say(
      `\n  target: whole cluster translated and compiled in under ${ms(TARGET_PIPELINE_MS)}: ${met(pipelineMedian < TARGET_PIPELINE_MS)} (median total ${ms(pipelineMedian)}, cold run ${ms(m.first.times.total)})`,
    );
    const byKind = (u: (r: PipelineRun) => number) => ms(median(m.runs.map(u)));
    say(
      `  model phase by kind of object (median): ${int(cluster.namespaceCount)} namespaces ${byKind((r) => r.upserts.Namespace)}, ` +
        `${int(cluster.podCount)} pods ${byKind((r) => r.upserts.Pod)}, ${int(cluster.policyCount)} policies ${byKind((r) => r.upserts.NetworkPolicy)}`,
    );
    if (enabled('pipeline')) {
      const translation = median([0, 1, 2].map(() => timeTranslation(base!.objects)));
      const resnapshot = median([0, 1, 2].map(() => timeResnapshot(base!.model)));
      const reordered = [0, 1, 2].map(() => timeModelPoliciesFirst(base!.objects));
      say('\n  measured separately (median of 3):');
      say(
        `    translateNetworkPolicy alone over all ${int(stats.policies)} validated policies: ${ms(translation)}`,
      );
      say(`    snapshot() again on the same, unchanged model: ${ms(resnapshot)}`);
      say(
        `    model phase with policies upserted before pods (namespaces, policies, pods): ${ms(median(reordered.map((r) => r.total)))} ` +
          `(namespaces ${ms(median(reordered.map((r) => r.upserts.Namespace)))}, policies ${ms(median(reordered.map((r) => r.upserts.NetworkPolicy)))}, ` +
          `pods ${ms(median(reordered.map((r) => r.upserts.Pod)))})`,
      );
      const same = JSON.stringify(reordered[0]!.model.snapshot()) === JSON.stringify(base.snapshot);
      say(`    snapshot from that order is ${same ? 'identical' : 'DIFFERENT'} (checked)`);
      if (!same)
        failures.push(
          'the model built with policies before pods gives a different snapshot from the one built with pods first',
        );
    }
    const mix = policyMix(splitObjects(base.objects).policies);
    say('\n  policy mix (validated objects):');
    say(
      `    ${int(mix.policies)} policies: ${int(mix.ingressIsolating)} isolate ingress, ${int(mix.egressIsolating)} egress; ${int(mix.denyOnly)} deny-only (no rules); ` +
        `${int(mix.rules)} rules, ${int(mix.allowAllRules)} allow-all`,
    );
    say(
      `    ${int(mix.peers)} peers: ${int(mix.podSelectorPeers)} podSelector only, ${int(mix.namespaceSelectorPeers)} namespaceSelector ` +
        `(${int(mix.combinedPeers)} with a podSelector, ${int(mix.emptyNamespaceSelector)} \`{}\`, ${int(mix.namespaceMatchExpressions)} with set-based requirements), ` +
        `${int(mix.ipBlockPeers)} ipBlock (${int(mix.ipBlockWithExcept)} with except)`,
    );
    say(
      `    ports: ${int(mix.namedPorts)} named, ${int(mix.numericPorts)} numeric, ${int(mix.portRanges)} endPort ranges; ${int(mix.udp)} UDP, ${int(mix.sctp)} SCTP`,
    );
    say('\n  snapshot and tables:');
    say(
      `    ${int(stats.endpoints)} endpoints, ${int(stats.policies)} policies, ${int(stats.rules)} firewall rules, ` +
        `${int(stats.selectorGroups)} selector groups (${int(stats.groupMembers)} members, largest ${int(stats.largestGroup)}), ` +
        `${int(stats.ipBlockGroups)} ipBlock groups, ${int(stats.serviceGroups)} service groups`,
    );
    say(
      `    compiled: ${int(stats.ingressIsolated)} endpoints ingress-isolated, ${int(stats.egressIsolated)} egress-isolated; ` +
        `${int(stats.tableRules)} table rules in all, at most ${int(stats.maxTableRules)} in one endpoint direction`,
    );
    say('\n  memory:');
    say(
      `    heap retained by one model + snapshot + tables (${gc ? 'after a full gc' : 'heapUsed delta, no gc'}): ${mib(heapAfter - heapBefore)}` +
        `${gc ? '' : ' (includes garbage of the repeated runs)'}`,
    );
    say(
      `    peak RSS of the process (maxRSS): ${mib(maxRss())} after the pipeline runs (${mib(rssBefore)} before, with the raw objects generated)`,
    );
    machineNote('pipeline', load);
  }

  let probes: Packet[] = [];
  let compiledRate = NaN;
  if (base !== undefined && enabled('verdicts')) {
    heading('3. Verdicts per second (one core)');
    const load = new MachineLoad();
    t0 = nowMs();
    probes = generateProbes(cluster, PROBES);
    say(
      `  ${int(probes.length)} fixed pseudo-random probes (generated in ${ms(nowMs() - t0)}); one warm-up pass before timing.\n`,
    );
    const allows = timeCompiled('allows', base.tables, probes, probes.length, ALLOWS_REPS, 200_000);
    const decide = timeCompiled('decide', base.tables, probes, probes.length, DECIDE_REPS, 200_000);
    if (allows.allowed !== decide.allowed)
      failures.push(
        `allows() allowed ${allows.allowed} probes but decide() allowed ${decide.allowed}`,
      );
    const { namespaces, pods, policies } = splitObjects(base.objects);
    const ref = new ReferenceCluster(namespaces, pods, policies);
    const reference = timeReference(ref, probes, REFERENCE_BUDGET_MS, 1000);
    compiledRate = median(allows.rates);
    const rows = [
      [
        'evaluator',
        'probes',
        'passes',
        'median',
        'min',
        'max',
        'per CPU-second',
        'per verdict',
        'vs reference',
      ],
      [
        'tables.allows (hot path)',
        int(allows.probes),
        String(allows.rates.length),
        rate(compiledRate),
        rate(min(allows.rates)),
        rate(max(allows.rates)),
        rate(median(allows.cpuRates)),
        ns(1e9 / compiledRate),
        `${int(Math.round(compiledRate / reference.rate))}x`,
      ],
      [
        'tables.decide (full verdict)',
        int(decide.probes),
        String(decide.rates.length),
        rate(median(decide.rates)),
        rate(min(decide.rates)),
        rate(max(decide.rates)),
        rate(median(decide.cpuRates)),
        ns(1e9 / median(decide.rates)),
        `${int(Math.round(median(decide.rates) / reference.rate))}x`,
      ],
      [
        'ReferenceCluster (baseline)',
        int(reference.probes),
        '1',
        rate(reference.rate),
        '-',
        '-',
        '-',
        ns(1e9 / reference.rate),
        '1x',
      ],
    ];
    say(table(rows));
    say(
      "\n  median, min, max: wall-clock rate over the passes; per CPU-second: verdicts per second of this process's CPU time",
    );
    say(
      '  (the same as the wall-clock rate on an idle machine; less sensitive to other processes taking the CPU; decide() also pays for GC).',
    );
    say(
      `\n  allowed: ${int(allows.allowed)} of ${int(allows.probes)} probes (${((100 * allows.allowed) / allows.probes).toFixed(1)}%)`,
    );
    say(
      `  target: over ${rate(TARGET_VERDICTS_PER_S)} verdicts per second: ${met(compiledRate > TARGET_VERDICTS_PER_S)} with allows (median ${rate(compiledRate)}); decide: ${rate(median(decide.rates))}`,
    );
    say('');
    reportAgreement(
      'agreement',
      checkAgreement(base.tables, ref, probes, AGREEMENT_SAMPLE),
      base.tables,
    );
    machineNote('verdicts', load);
  }

  if (enabled('scaling')) {
    heading('4. Scaling with cluster size');
    const load = new MachineLoad();
    say(
      `  Same generator and per-namespace shape (10 pods, 10 policies per namespace); pipeline median of up to 5 runs;`,
    );
    say(`  allows over ${int(SCALE_PROBES)} probes (median of 3); reference timed for ~1 s.\n`);
    const rows = [
      [
        'policies',
        'pods',
        'validate',
        'model',
        'snapshot',
        'compile',
        'total',
        'allows',
        'per verdict',
        'reference',
        'speed-up',
      ],
    ];
    const agreements: Array<[string, AgreementResult, PipelineResult['tables']]> = [];
    for (const n of SCALES) {
      const c = n === MAIN_NAMESPACES ? cluster : realisticCluster(n);
      const reuse =
        n === MAIN_NAMESPACES &&
        base !== undefined &&
        mainTimes !== undefined &&
        enabled('pipeline');
      let times: PhaseTimes;
      let result: PipelineResult;
      if (reuse) {
        result = base!;
        times = mainTimes!;
      } else {
        const reps = n >= 2000 ? 3 : 5;
        const m = await measurePipeline(c, quick ? 1 : reps);
        result = m.last;
        times = medianTimes(m.runs.map((x) => x.times));
      }
      const p =
        n === MAIN_NAMESPACES && probes.length > 0
          ? probes.slice(0, SCALE_PROBES)
          : generateProbes(c, SCALE_PROBES);
      const a = timeCompiled('allows', result.tables, p, p.length, 3, 100_000);
      const { namespaces, pods, policies } = splitObjects(result.objects);
      const ref = new ReferenceCluster(namespaces, pods, policies);
      const reference = timeReference(ref, p, quick ? 300 : 1000, 500);
      const r = median(a.rates);
      rows.push([
        int(c.policyCount),
        int(c.podCount),
        ms(times.validate),
        ms(times.model),
        ms(times.snapshot),
        ms(times.compile),
        ms(times.total),
        rate(r),
        ns(1e9 / r),
        rate(reference.rate),
        `${int(Math.round(r / reference.rate))}x`,
      ]);
      if (n !== MAIN_NAMESPACES || probes.length === 0)
        agreements.push([
          `agreement at ${int(c.policyCount)} policies`,
          checkAgreement(result.tables, ref, p, SCALE_AGREEMENT),
          result.tables,
        ]);
    }
    say(table(rows));
    say('');
    for (const [label, a, tables] of agreements) reportAgreement(label, a, tables);
    machineNote('scaling', load);
  }

  // The agent's engines and the control plane, each against its own baseline.
  if (enabled('native-verdicts')) {
    heading('5. First-packet verdicts: native engine vs RuleTables');
    say(await benchVerdicts({ quick }));
  }
  if (enabled('flow-table')) {
    heading('6. Flow table: native vs a JavaScript Map');
    say(await benchFlowTable({ quick }));
  }
  if (enabled('datapath')) {
    heading('7. Userspace datapath: packets per second');
    say(await benchDatapath({ quick }));
  }
  if (enabled('propagation')) {
    heading('8. Propagation of one change to 100 and 1,000 agents');
    say(await benchPropagation({ quick }));
  }
  if (enabled('kernel')) {
    heading('9. Kernel datapath: real connections through nftables + NFQUEUE (root)');
    say(formatKernelBench(await benchKernel({ quick })));
  }
  if (enabled('lab')) {
    heading('10. The lab on real packets: connections/s and throughput, Weir vs no Weir');
    say(await benchLab({ quick }));
  }
  if (enabled('cluster-policies')) {
    heading('11. 1,000 ClusterNetworkPolicies next to 10,000 NetworkPolicies');
    say(await benchClusterPolicies({ quick }));
  }
  if (enabled('nats')) {
    heading(
      '12. NATS JetStream against gRPC: one change to 1,000, 2,000 and 5,000 agents; flow events',
    );
    say(await benchNats({ quick }));
  }
  if (enabled('spans')) {
    heading("13. Raw objects to every node's span, 1× to 8×");
    say(benchSpans({ quick }));
  }
  if (enabled('federation')) {
    heading('14. Federation: 10 clusters × 10,000 pods, a policy change and a remote pod start');
    say(benchFederation({ quick }));
  }
  if (enabled('agent-update')) {
    heading(
      '15. An agent with 10,000 rules and 1,000,000 flows: a one-pod and a one-policy change',
    );
    say(await benchAgentUpdate({ quick }));
  }
  if (enabled('controller-scale')) {
    heading('16. The real controller with 1,000 agents, 1× to 8×: cold start, churn, idle');
    const r = await benchControllerScale({ quick });
    say(r.text);
    if (!r.ok) failures.push('controller-scale: agents not in sync, or objects rejected');
  }

  heading('Summary');
  if (Number.isFinite(pipelineMedian))
    say(
      `  pipeline, ${int(cluster.policyCount)} policies: median ${ms(pipelineMedian)} — target < ${ms(TARGET_PIPELINE_MS)}: ${met(pipelineMedian < TARGET_PIPELINE_MS)} (cold first run ${ms(pipelineCold)}: ${met(pipelineCold < TARGET_PIPELINE_MS)})`,
    );
  if (Number.isFinite(compiledRate))
    say(
      `  verdicts, tables.allows: ${rate(compiledRate)} — target > ${rate(TARGET_VERDICTS_PER_S)}: ${met(compiledRate > TARGET_VERDICTS_PER_S)}`,
    );
  if (contended.length > 0)
    say(
      `  machine: other processes competed for CPU during ${contended.join(', ')}; rerun on a quiet machine for clean numbers`,
    );
  say(
    `  correctness: ${failures.length === 0 ? 'OK (no disagreement with the reference, no rejected objects)' : 'FAILED'}`,
  );
  for (const f of failures) say(`    FAIL: ${f}`);
  say(`  bench wall time: ${((nowMs() - started) / 1000).toFixed(1)} s; peak RSS ${mib(maxRss())}`);
  if (failures.length > 0) process.exitCode = 1;
  monitor.stop();
}

function medianTimes(runs: readonly PhaseTimes[]): PhaseTimes {
  const pick = (k: keyof PhaseTimes) => median(runs.map((r) => r[k]));
  return {
    validate: pick('validate'),
    model: pick('model'),
    snapshot: pick('snapshot'),
    compile: pick('compile'),
    total: pick('total'),
  };
}

main().catch((e: unknown) => {
  process.stderr.write(
    `bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  );
  process.exitCode = 1;
});
