/**
 * The controller's path from raw Kubernetes objects to every node's span,
 * at 1×, 2×, 4× and 8× a cluster (issue 13): validation (readKubeObject) →
 * ClusterModel → SpanStore.commit() (each node's span: policies, groups,
 * service groups, endpoints, with their content hashes and span hashes).
 * This is what a controller computes before the first agent can be in sync,
 * without the source (parsing, listing) or the distribution.
 *
 * Each size runs in a child process of its own, so that its peak RSS is its
 * own. The cluster is the benchmarks' realistic generator
 * (testing/random-cluster.ts) in Antrea's published shape by default: 4
 * pods and 3 NetworkPolicies per namespace, 100 pods per node.
 *
 * Runnable alone: node --import tsx bench/spans.ts [--namespaces=3125,6250,12500,25000]
 *   [--pods=4] [--policies=3]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type KubeObject, readKubeObject } from '../controller/kube/objects.js';
import { ClusterModel } from '../controller/model/cluster-model.js';
import { SpanStore } from '../controller/store/span-store.js';
import { realisticCluster } from '../testing/random-cluster.js';
import { MachineLoad, int, ms, table } from './measure.js';
import { upsertAll } from './pipeline.js';

interface SizeResult {
  readonly namespaces: number;
  readonly pods: number;
  readonly policies: number;
  readonly nodes: number;
  readonly validateMs: number;
  readonly modelMs: number;
  readonly spansMs: number;
  readonly cpuMs: number;
  readonly peakRssMiB: number;
  readonly entries: number;
  readonly endpointsPerNode: number;
}

export interface SpansOptions {
  readonly namespaces?: readonly number[];
  readonly podsPerNamespace?: number;
  readonly policiesPerNamespace?: number;
  readonly quick?: boolean;
}

/** One size, in this process. */
function runSize(namespaces: number, pods: number, policies: number): SizeResult {
  const c = realisticCluster(namespaces, undefined, {
    podsPerNamespace: pods,
    policiesPerNamespace: policies,
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const objects: KubeObject[] = [];
  for (const r of c.objects) {
    const res = readKubeObject(r, 'bench');
    if (res.type === 'object') objects.push(res.object);
    else throw new Error(`generated object refused: ${JSON.stringify(res)}`);
  }
  const t1 = performance.now();
  const model = new ClusterModel({ cluster: 'bench' });
  upsertAll(model, objects);
  const t2 = performance.now();
  const store = new SpanStore(model);
  store.commit(Date.now());
  const t3 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  let entries = 0;
  let endpoints = 0;
  const nodes = store.nodes();
  for (const node of nodes) {
    const span = store.span(node)!;
    entries += span.entries.size;
    for (const k of span.entries.keys()) if (k.startsWith('e:')) endpoints++;
  }
  return {
    namespaces,
    pods: c.podCount,
    policies: c.policyCount,
    nodes: nodes.length,
    validateMs: t1 - t0,
    modelMs: t2 - t1,
    spansMs: t3 - t2,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    entries,
    endpointsPerNode: nodes.length > 0 ? endpoints / nodes.length : 0,
  };
}

const SELF = fileURLToPath(import.meta.url);

export function benchSpans(options: SpansOptions = {}): string {
  const pods = options.podsPerNamespace ?? 4;
  const policies = options.policiesPerNamespace ?? 3;
  const sizes =
    options.namespaces ?? (options.quick ? [500, 1000, 2000, 4000] : [3125, 6250, 12500, 25000]);
  const load = new MachineLoad();
  const results: SizeResult[] = [];
  for (const n of sizes) {
    const out = execFileSync(
      process.execPath,
      [
        '--max-old-space-size=12288',
        '--import',
        'tsx',
        SELF,
        `--child=${n}`,
        `--pods=${pods}`,
        `--policies=${policies}`,
      ],
      { encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    results.push(JSON.parse(out.trim().split('\n').at(-1)!) as SizeResult);
  }
  const first = results[0]!;
  const total = (r: SizeResult) => r.validateMs + r.modelMs + r.spansMs;
  const x = (a: number, b: number) => `${(a / b).toFixed(1)}×`;
  const rows = [
    [
      'namespaces',
      'pods',
      'policies',
      'nodes',
      'validate',
      'model',
      'spans',
      'total',
      'CPU',
      'peak RSS',
      'span entries',
      'endpoints/node',
      'size',
      'time',
    ],
    ...results.map((r) => [
      int(r.namespaces),
      int(r.pods),
      int(r.policies),
      int(r.nodes),
      ms(r.validateMs),
      ms(r.modelMs),
      ms(r.spansMs),
      ms(total(r)),
      ms(r.cpuMs),
      `${int(Math.round(r.peakRssMiB))} MiB`,
      int(r.entries),
      int(Math.round(r.endpointsPerNode)),
      x(r.pods, first.pods),
      x(total(r), total(first)),
    ]),
  ];
  const other = load.otherCpus();
  return [
    `  raw objects → every node's span, ${pods} pods and ${policies} NetworkPolicies per namespace (one child process per size)`,
    table(rows),
    `  other processes: ${other === undefined ? '?' : other.toFixed(2)} CPUs busy`,
  ].join('\n');
}

const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

if (process.argv[1] === SELF) {
  const child = arg('child');
  const pods = Number(arg('pods') ?? 4);
  const policies = Number(arg('policies') ?? 3);
  if (child !== undefined) console.log(JSON.stringify(runSize(Number(child), pods, policies)));
  else
    console.log(
      benchSpans({
        namespaces: arg('namespaces')?.split(',').map(Number),
        podsPerNamespace: pods,
        policiesPerNamespace: policies,
        quick: process.argv.includes('--quick'),
      }),
    );
}
