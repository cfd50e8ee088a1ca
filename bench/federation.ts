/**
 * Federation (issue 15, docs/federation.md): 10 member clusters of 10,000
 * pods each, every member exporting all its namespaces and pods, so every
 * member's model holds 90,000 remote endpoints next to its own 10,000.
 *
 *   1. initial import   one member's model takes the other nine clusters'
 *                       exports (remote namespaces and endpoints) and
 *                       commits its spans
 *   2. policy change    a federated Admin ClusterNetworkPolicy whose peers
 *                       select every member's dev namespaces is changed at
 *                       its origin: how long until every member's model
 *                       holds it and every member's spans are committed
 *   3. remote pod start a new pod in one member, in a namespace those peers
 *                       select: how long until every other member's spans
 *                       hold it as a group member
 *
 * Baseline, measured in the same run on the same members: the same policy
 * change as a local (not federated) ClusterNetworkPolicy in one cluster, and
 * a local pod start in one cluster. Each member is fed through the model
 * events the importer gives it (remote-namespace, remote-endpoint,
 * imported-policy) and committed with the real SpanStore, in one process:
 * the cost a member controller pays, not the hub's or the network's. "Every
 * member" is the slowest member of one change (members work in parallel in
 * a real fleet), with the sum over members beside it (one core doing all).
 *
 * Runnable alone: node --import tsx bench/federation.ts [--clusters=10] [--pods=1000,10000] [--reps=10] [--quick]
 * (one size in this process, printing JSON: add --child --pods=N)
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  type ClusterNetworkPolicyObject,
  type KubeObject,
  type PodObject,
  readKubeObject,
} from '../controller/kube/objects.js';
import { endpointEntry, policyEntry } from '../controller/federation/entries.js';
import { exportedEntries } from '../controller/federation/offline.js';
import { FederationImporter } from '../controller/federation/importer.js';
import type { EntryRef } from '../controller/federation/link.js';
import { ClusterModel, type ModelEvent } from '../controller/model/cluster-model.js';
import pino from 'pino';
import { SpanStore } from '../controller/store/span-store.js';
import { type Endpoint, type LabelSelector, endpointKey } from '../shared/policy/types.js';
import { realisticCluster } from '../testing/random-cluster.js';
import { MachineLoad, int, ms, table } from './measure.js';
import { upsertAll } from './pipeline.js';

export interface FederationBenchOptions {
  readonly clusters?: number;
  readonly podsPerCluster?: number;
  readonly quick?: boolean;
  /** Changes timed per kind (default 10; --quick 5). */
  readonly reps?: number;
}

const FEDERATION = 'bench';
const SILENT = pino({ level: 'silent' });
const PODS_PER_NAMESPACE = 4;

interface Member {
  readonly cluster: string;
  readonly model: ClusterModel;
  readonly store: SpanStore;
  /** The member's importer, applying what it accepts to `model` (as in the controller). */
  readonly importer: FederationImporter;
  readonly objects: readonly KubeObject[];
}

/**
 * One change as a member receives it: a local object from its own source,
 * or an entry at the hub as the link delivers it (the JSON text the hub
 * holds, parsed again on each member, as NATS KV holds bytes).
 */
type Change =
  | { readonly local: ModelEvent }
  | { readonly ref: EntryRef; readonly text: string }
  | { readonly link: 'connected' | 'synced' };

function entry(ref: EntryRef, value: unknown): Change {
  return { ref, text: JSON.stringify(value) };
}

/**
 * One member's objects: the benchmarks' realistic cluster, its pods moved
 * into an address range of their own (10.<100+i>.0.0/16) so that members
 * never overlap, as federation requires.
 */
function memberObjects(i: number, pods: number): KubeObject[] {
  const c = realisticCluster(Math.max(4, Math.round(pods / PODS_PER_NAMESPACE)), 0xfed0 + i, {
    podsPerNamespace: PODS_PER_NAMESPACE,
  });
  const prefix = `10.${100 + i}.`;
  const out: KubeObject[] = [];
  for (const raw of c.objects) {
    const moved = JSON.parse(JSON.stringify(raw).replaceAll('"10.244.', `"${prefix}`)) as Record<
      string,
      unknown
    >;
    const r = readKubeObject(moved, 'bench');
    if (r.type !== 'object') throw new Error(`generated object refused: ${JSON.stringify(r)}`);
    out.push(r.object);
  }
  return out;
}

/** What a member exports (its exporter's entries: namespaces, pods, federated policies), as the hub holds them. */
function exportsOf(m: Member): Change[] {
  return exportedEntries(m.model).map((x) => entry(x.ref, x.value));
}

function endpointChange(cluster: string, e: Endpoint): Change {
  return entry(
    { kind: 'ep', cluster, name: endpointKey(e) },
    endpointEntry(cluster, { ...e, cluster }),
  );
}

/** The benchmark's federated policy: Admin, subject one team's namespaces, ingress denied from every member's `env` namespaces. */
function policy(env: string, federated: boolean): ClusterNetworkPolicyObject {
  return {
    kind: 'ClusterNetworkPolicy',
    name: 'bench-federated',
    uid: 'bench-federated',
    federated,
    labels: federated ? { 'weir.io/federated': 'true' } : {},
    tier: 'admin',
    priority: 5,
    subject: { namespaceSelector: equals('team', 'payments'), podSelector: ALL },
    ingress: [
      {
        name: 'no-env',
        action: 'Deny',
        peers: [
          {
            kind: 'pods',
            namespaceSelector: equals('env', env),
            podSelector: ALL,
          },
        ],
        protocols: [],
      },
    ],
    egress: [],
  };
}

const ALL: LabelSelector = { requirements: [] };
const equals = (key: string, value: string): LabelSelector => ({
  requirements: [{ key, operator: 'In', values: [value] }],
});

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Applies `events` to a member and commits its spans: the time one member
 * takes. Throws when no node's span changed: a change that reached no span
 * would be timed for nothing (the benchmark checks what it measures).
 */
function step(m: Member, changes: readonly Change[], what: string): number {
  const t0 = performance.now();
  for (const c of changes) {
    if ('local' in c) m.model.apply(c.local);
    else if ('link' in c) m.importer.handle({ type: c.link });
    else m.importer.handle({ type: 'put', ref: c.ref, value: JSON.parse(c.text) });
  }
  const commit = m.store.commit(Date.now());
  const t = performance.now() - t0;
  if (commit === undefined || commit.nodes.length === 0)
    throw new Error(`bench: ${what} changed no span of member ${m.cluster}`);
  return t;
}

interface Series {
  readonly slowest: number[];
  readonly sum: number[];
}

/** The benchmark in this process (its peak RSS is this process's). */
export function runFederation(options: FederationBenchOptions = {}): FederationResult {
  const clusterCount = options.clusters ?? 10;
  const pods = options.podsPerCluster ?? (options.quick ? 1000 : 10_000);
  const reps = options.reps ?? (options.quick ? 5 : 10);
  const progress = (what: string) =>
    process.stderr.write(`  federation bench, ${clusterCount} × ${pods}: ${what}\n`);
  const load = new MachineLoad();

  const tBuild = performance.now();
  const members: Member[] = [];
  for (let i = 0; i < clusterCount; i++) {
    const cluster = `c${i}`;
    const objects = memberObjects(i, pods);
    const model = new ClusterModel({ cluster, federation: { name: FEDERATION } });
    upsertAll(model, objects);
    const store = new SpanStore(model);
    store.commit(Date.now());
    const importer = new FederationImporter({
      cluster,
      federation: FEDERATION,
      apply: (e) => model.apply(e),
      log: SILENT,
    });
    members.push({ cluster, model, store, importer, objects });
  }
  const buildMs = performance.now() - tBuild;
  progress(`members built in ${ms(buildMs)}`);

  // The federated policy, at its origin (c0) and imported by every other member.
  const origin = members[0]!;
  const federatedChange = (env: string): Series => {
    const object = policy(env, true);
    const exported = entry(
      { kind: 'cnp', cluster: origin.cluster, name: object.name },
      policyEntry(origin.cluster, object),
    );
    const times = members.map((m) =>
      step(
        m,
        m === origin ? [{ local: { type: 'upsert', object } }] : [exported],
        `the federated policy (${env})`,
      ),
    );
    return { slowest: [Math.max(...times)], sum: [times.reduce((a, b) => a + b, 0)] };
  };
  // 1. Initial import: every member takes every other member's exports, with
  // the federated policy in force (without one, remote pods join no group
  // and no span changes: non-federated policies never see them).
  federatedChange('dev');
  const exports = new Map(members.map((m) => [m.cluster, exportsOf(m)]));
  const importMs: number[] = [];
  for (const m of members) {
    const listing: Change[] = [
      { link: 'connected' },
      ...members.filter((o) => o !== m).flatMap((o) => exports.get(o.cluster)!),
      { link: 'synced' },
    ];
    importMs.push(step(m, listing, 'the initial import'));
  }
  const remoteEndpoints = members[0]!.model.remoteEndpoints().length;
  progress(`initial import done (${int(remoteEndpoints)} remote endpoints per member)`);
  const podCount = members[0]!.model.endpointCount;

  // 2. The federated policy changed back and forth at its origin.
  const merge = (into: Series, s: Series) => {
    into.slowest.push(...s.slowest);
    into.sum.push(...s.sum);
  };
  const fed: Series = { slowest: [], sum: [] };
  for (let r = 0; r < reps; r++) merge(fed, federatedChange(r % 2 === 0 ? 'staging' : 'dev'));
  if (reps % 2 === 1) federatedChange('dev'); // ends selecting dev, for the pod starts below

  progress('federated policy changes done');
  // Baseline: the same change as a local policy of one cluster (c1), in the same run.
  const local = members[1]!;
  const base: Series = { slowest: [], sum: [] };
  const baseObject = (env: string) => ({
    ...policy(env, false),
    name: 'bench-local',
    uid: 'bench-local',
  });
  step(local, [{ local: { type: 'upsert', object: baseObject('dev') } }], 'the local policy');
  for (let r = 0; r < reps; r++) {
    const t = step(
      local,
      [{ local: { type: 'upsert', object: baseObject(r % 2 === 0 ? 'staging' : 'dev') } }],
      'the local policy',
    );
    base.slowest.push(t);
    base.sum.push(t);
  }

  // 3. A pod starts in c2, in a namespace the federated policy's peers select (env=dev).
  const home = members[2]!;
  const devNamespace = home.objects.find(
    (o) => o.kind === 'Namespace' && o.labels.env === 'dev',
  )?.name;
  const template = home.objects.find(
    (o): o is PodObject => o.kind === 'Pod' && o.namespace === devNamespace,
  );
  if (template === undefined) throw new Error('bench: no pod in an env=dev namespace of c2');
  const remoteStart: Series = { slowest: [], sum: [] };
  const localStart: Series = { slowest: [], sum: [] };
  for (let r = 0; r < reps; r++) {
    const pod: PodObject = {
      ...template,
      name: `bench-start-${r}`,
      uid: `bench-start-${r}`,
      ips: [`10.${100 + 2}.255.${r + 1}`],
    };
    // At home the pod is a local start: the baseline.
    const tHome = step(home, [{ local: { type: 'upsert', object: pod } }], 'a local pod start');
    localStart.slowest.push(tHome);
    localStart.sum.push(tHome);
    const e = home.model.endpoint(endpointKey(pod));
    if (e === undefined) throw new Error('bench: the started pod is not an endpoint');
    const times = members
      .filter((m) => m !== home)
      .map((m) => step(m, [endpointChange(home.cluster, e)], 'a remote pod start'));
    remoteStart.slowest.push(Math.max(...times));
    remoteStart.sum.push(times.reduce((a, b) => a + b, 0));
  }

  const sortedImport = [...importMs].sort((a, b) => a - b);
  const summary = (x: Series) => {
    const a = [...x.slowest].sort((p, q) => p - q);
    const b = [...x.sum].sort((p, q) => p - q);
    return {
      runs: a.length,
      p50: percentile(a, 50),
      p99: percentile(a, 99),
      sumP50: percentile(b, 50),
      sumP99: percentile(b, 99),
    };
  };
  return {
    clusters: clusterCount,
    podsPerCluster: podCount,
    remoteEndpoints,
    buildMs,
    importP50: percentile(sortedImport, 50),
    importMax: sortedImport.at(-1)!,
    federatedChange: summary(fed),
    localChange: summary(base),
    remoteStart: summary(remoteStart),
    localStart: summary(localStart),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    otherCpus: load.otherCpus() ?? Number.NaN,
  };
}

interface Timing {
  readonly runs: number;
  readonly p50: number;
  readonly p99: number;
  readonly sumP50: number;
  readonly sumP99: number;
}

export interface FederationResult {
  readonly clusters: number;
  readonly podsPerCluster: number;
  readonly remoteEndpoints: number;
  readonly buildMs: number;
  readonly importP50: number;
  readonly importMax: number;
  readonly federatedChange: Timing;
  readonly localChange: Timing;
  readonly remoteStart: Timing;
  readonly localStart: Timing;
  readonly peakRssMiB: number;
  readonly otherCpus: number;
}

function timingRow(name: string, t: Timing): string[] {
  return [name, String(t.runs), ms(t.p50), ms(t.p99), ms(t.sumP50), ms(t.sumP99)];
}

/** The report of one size. */
export function formatFederation(r: FederationResult): string {
  return [
    `  ${r.clusters} clusters × ${int(r.podsPerCluster)} pods (${PODS_PER_NAMESPACE} per namespace), every member exporting everything: ${int(r.remoteEndpoints)} remote endpoints in each member's model`,
    `  built ${r.clusters} members (model + spans of their own pods) in ${ms(r.buildMs)}; initial import of the other ${r.clusters - 1} members' exports: p50 ${ms(r.importP50)}, max ${ms(r.importMax)} per member`,
    table([
      [
        'change reaching every member (model + committed spans)',
        'runs',
        'p50',
        'p99',
        'sum p50',
        'sum p99',
      ],
      timingRow(`federated CNP change (origin + ${r.clusters - 1} imports)`, r.federatedChange),
      timingRow('baseline: the same CNP, local to one cluster', r.localChange),
      timingRow(`remote pod start (${r.clusters - 1} members)`, r.remoteStart),
      timingRow('baseline: the pod start in its own cluster', r.localStart),
    ]),
    '  p50/p99: the slowest member of each change (members run in parallel); sum: all members on one core',
    `  peak RSS ${int(Math.round(r.peakRssMiB))} MiB; other processes: ${Number.isNaN(r.otherCpus) ? '?' : r.otherCpus.toFixed(2)} CPUs busy`,
  ].join('\n');
}

/** How the times grow with the members' size (one child process per size). */
export function formatGrowth(results: readonly FederationResult[]): string {
  const first = results[0]!;
  const x = (a: number, b: number) => `${(a / b).toFixed(1)}×`;
  return [
    '  growth: one child process per size',
    table([
      [
        'clusters',
        'pods/cluster',
        'remote endpoints/member',
        'initial import p50',
        'federated change p50',
        'local change p50',
        'remote pod start p50',
        'local pod start p50',
        'peak RSS',
        'size',
        'federated change',
      ],
      ...results.map((r) => [
        String(r.clusters),
        int(r.podsPerCluster),
        int(r.remoteEndpoints),
        ms(r.importP50),
        ms(r.federatedChange.p50),
        ms(r.localChange.p50),
        ms(r.remoteStart.p50),
        ms(r.localStart.p50),
        `${int(Math.round(r.peakRssMiB))} MiB`,
        x(r.podsPerCluster, first.podsPerCluster),
        x(r.federatedChange.p50, first.federatedChange.p50),
      ]),
    ]),
  ].join('\n');
}

const SELF = fileURLToPath(import.meta.url);

function child(
  clusters: number,
  pods: number,
  quick: boolean,
  reps: number | undefined,
): FederationResult {
  const out = execFileSync(
    process.execPath,
    [
      '--max-old-space-size=12288',
      '--import',
      'tsx',
      SELF,
      `--clusters=${clusters}`,
      `--pods=${pods}`,
      '--child',
      ...(quick ? ['--quick'] : []),
      ...(reps === undefined ? [] : [`--reps=${reps}`]),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(out.trim().split('\n').at(-1)!) as FederationResult;
}

/**
 * `npm run bench`: the full size (10 × 10,000; --quick: 10 × 1,000) and the
 * growth table below it, each size in a child process of its own so that
 * its heap and peak RSS are its own.
 */
export function benchFederation(
  options: FederationBenchOptions & { sizes?: readonly number[] } = {},
): string {
  const clusters = options.clusters ?? 10;
  const quick = options.quick ?? false;
  const sizes =
    options.sizes ??
    (options.podsPerCluster !== undefined
      ? [options.podsPerCluster]
      : quick
        ? [250, 500, 1000]
        : [1000, 2500, 5000, 10_000]);
  const results = sizes.map((pods) => child(clusters, pods, quick, options.reps));
  return [
    formatFederation(results.at(-1)!),
    ...(results.length > 1 ? [formatGrowth(results)] : []),
  ].join('\n');
}

const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

if (process.argv[1] === SELF) {
  const clusters = Number(arg('clusters') ?? 10);
  const quick = process.argv.includes('--quick');
  const pods = arg('pods');
  const reps = arg('reps') === undefined ? {} : { reps: Number(arg('reps')) };
  if (process.argv.includes('--child'))
    console.log(
      JSON.stringify(runFederation({ clusters, podsPerCluster: Number(pods), quick, ...reps })),
    );
  else
    console.log(
      benchFederation({
        clusters,
        quick,
        ...reps,
        ...(pods === undefined ? {} : { sizes: pods.split(',').map(Number) }),
      }),
    );
}
