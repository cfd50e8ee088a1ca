/**
 * The live differential: the real controller (its manifest directory source
 * on a temporary directory) and three real agents (node-a, node-b, node-c)
 * as processes on loopback, driven through long random seeded sequences of
 * cluster changes; after every round each agent's per-direction decision is
 * compared with the offline analysis (`weirctl analyze`, cli/analysis.ts) for
 * every pod pair on a set of probes.
 *
 *   seed ─> RandomCluster ─changes─> files (in place, slowly in place, or
 *           │                        write-temp-and-rename; subdirectories;
 *           │                        processes stopped and started around
 *           │                        and between the writes) ─> canary last
 *           v
 *   sync proof: controller Explain shows this round's canary, the canary's
 *               node enforces it, then every agent connected and in sync
 *           v
 *   compare: egress at the source's node, ingress at the destination's node
 *            (the agent's own Evaluate) = analyse(the same directory)?
 *
 * What is compared. Every pod the analysis has as an endpoint on one of the
 * three nodes (the canary's aside), by each address it owns (an address two
 * pods claim belongs to the last by key, the controller's tie-break; the
 * loser is not asked about that address), against every other such pod, the
 * nodes' own addresses (Node objects are in cluster/nodes.yaml, for
 * node-local traffic) and two addresses outside the cluster; for each
 * address family a pair shares; on every probe of PROBES. A cell's decision
 * is what shared/policy/explain.ts says for that direction: enforced here or
 * not, the endpoint, allowed, the deciding tier, the isolating policies and
 * the rule that allowed it. Any difference is a disagreement; the first
 * failing round of a seed is asked again after 6 s, to tell a late update
 * ("cleared") from a stranded one ("persists"), and fails either way.
 *
 * The expected state. Kubernetes keeps the last valid version of an object
 * when an update is invalid; so must Weir. The generator's invalid edits
 * (a YAML syntax error, a value the API would refuse, a misspelt field)
 * leave the file frozen until it is repaired or deleted, and the analysis is
 * then run on a shadow directory holding the last valid versions (the same
 * directory in every other round). No controller restart happens while a
 * file is broken: a fresh controller cannot know a version it never read.
 *
 * The sync proof (why a comparison is never early). Each round first
 * deletes the previous round's canary policy file and writes the round's
 * files, then creates `00-canary-round-NNNNNN.yaml` by rename, in the root
 * of the directory, so that any read of the directory that lists it lists
 * and reads every other file after the writes completed. The proof is: (1)
 * the controller's Explain allows the canary probe on port
 * CANARY_PORT_BASE + round (the controller has read it); (2) the canary
 * destination's agent allows it too, at revision A (a committed revision
 * holds it: Explain may answer from the model before the commit); (3)
 * GetStatus at revision >= A shows every agent connected and in sync. A
 * source that reads only changed files must handle events in order for this
 * to hold; one that misses an event shows up as a disagreement, as it
 * should. There is no retry until agreement: a round that does not prove
 * sync within `syncTimeoutMs` is reported (with every agent's status) and
 * compared anyway, and ends the seed.
 *
 * Used by test/integration/live-differential.test.ts (a bounded number of
 * seeds in CI) and by `npm run soak` (this module run as a program).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { appendFile, mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { analyse } from '../cli/analysis.js';
import { agentClient, operatorClient } from '../cli/clients.js';
import { silentLogger } from '../shared/log.js';
import { CertificateFiles } from '../shared/tls/credentials.js';
import { TestPki } from './pki.js';
import type {
  AgentClient,
  AgentStatusReply__Output,
  ExplainReply__Output,
  OperatorClient,
  StatusReply__Output,
} from '../shared/generated/weir/v1/index.js';
import { familyOf, parseIp } from '../shared/net/ip.js';
import type { DirectionExplanation, Explanation } from '../shared/policy/explain.js';
import { type Probe, probe as probeTables, resolveTarget } from '../shared/policy/probe.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import { type SeededRandom, seededRandom } from '../shared/random.js';
import { freePort } from './ports.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const NODES = ['node-a', 'node-b', 'node-c'] as const;
export type NodeName = (typeof NODES)[number];
const CLUSTER = 'live';

/** Every probe is asked of every pair: numbers that named ports resolve to, ranges' insides, each protocol. */
export const PROBES: readonly Probe[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 5432 },
  { protocol: 'TCP', port: 8080 },
  { protocol: 'TCP', port: 9100 },
  { protocol: 'UDP', port: 53 },
  { protocol: 'SCTP', port: 9090 },
];

const NODE_ADDRESSES: Readonly<Record<NodeName, string>> = {
  'node-a': '10.240.0.1',
  'node-b': '10.240.0.2',
  'node-c': '10.240.0.3',
};
const EXTERNAL_ADDRESSES = ['192.0.2.10', '2001:db8::10'];

const CANARY_NAMESPACE = 'canary';
const CANARY_SRC = { name: 'src', ip: '10.250.0.1', node: 'node-a' as NodeName };
const CANARY_DST = { name: 'dst', ip: '10.250.0.2', node: 'node-c' as NodeName };
const CANARY_PORT_BASE = 20_000;
const canaryPolicyName = (round: number) => `round-${String(round).padStart(6, '0')}`;
const canaryFile = (round: number) => `00-${CANARY_NAMESPACE}-${canaryPolicyName(round)}.yaml`;

// --- options -------------------------------------------------------------------

export const CHANGE_KINDS = [
  'add-namespace',
  'relabel-namespace',
  'delete-namespace',
  'add-pod',
  'delete-pod',
  'relabel-pod',
  'move-pod',
  'reuse-address',
  'claim-address',
  'named-port',
  'finish-pod',
  'add-policy',
  'edit-policy',
  'delete-policy',
  'add-cluster-policy',
  'edit-cluster-policy',
  'reprioritize-cluster-policy',
  'delete-cluster-policy',
  'move-object',
  'touch-file',
  'invalid-edit',
  'repair-file',
  'delete-broken-file',
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];
export const DISRUPTIONS = ['restart-agent', 'restart-controller'] as const;
export type Disruption = (typeof DISRUPTIONS)[number];
/** Ways of writing a file: as editors and tools do. */
export const WRITE_MODES = ['in-place', 'slow-in-place', 'rename'] as const;
export type WriteMode = (typeof WRITE_MODES)[number];
export type Skippable = ChangeKind | Disruption | WriteMode;
export const SKIPPABLE: readonly Skippable[] = [...CHANGE_KINDS, ...DISRUPTIONS, ...WRITE_MODES];

export interface LiveOptions {
  readonly seed: number;
  /** Extra flags of the controller and the agents: the transport (e.g. --transport nats --nats URL). */
  readonly transportArgs?: { readonly controller: string[]; readonly agent: string[] };
  /**
   * The CA and certificates the programs use (a NATS behind transportArgs
   * must trust the same CA); default: a new one in the run directory.
   */
  readonly pki?: TestPki;
  /** Rounds of changes after the initial cluster (round 0). */
  readonly rounds: number;
  /** Changes per round, inclusive. */
  readonly minChanges?: number;
  readonly maxChanges?: number;
  /** Kinds of change, disruption or write not to make: for diagnosis only (CI skips nothing). */
  readonly skip?: ReadonlySet<Skippable>;
  /** How long a round may take to prove sync. */
  readonly syncTimeoutMs?: number;
  /** A seed ends after this many rounds with disagreements. */
  readonly maxFailingRounds?: number;
  /** Progress lines. */
  readonly progress?: (line: string) => void;
  /** Keep the run directory (manifests, state, logs) instead of removing it. */
  readonly keep?: boolean;
  /** Stops the run (between rounds) and the processes (at once): a test's signal. */
  readonly signal?: AbortSignal;
}

const DEFAULTS = {
  minChanges: 2,
  maxChanges: 6,
  syncTimeoutMs: 30_000,
  maxFailingRounds: 3,
};

/** The one command that replays a seed up to a round with the same options. */
export function reproduceCommand(o: LiveOptions, round: number): string {
  const parts = ['npm run soak --', `--seed ${o.seed}`, '--seeds 1', `--rounds ${round}`];
  const min = o.minChanges ?? DEFAULTS.minChanges;
  const max = o.maxChanges ?? DEFAULTS.maxChanges;
  if (min !== DEFAULTS.minChanges || max !== DEFAULTS.maxChanges)
    parts.push(`--changes ${min}-${max}`);
  if (o.skip && o.skip.size > 0) parts.push(`--skip ${[...o.skip].sort().join(',')}`);
  return parts.join(' ');
}

// --- the random cluster ----------------------------------------------------------

type Raw = Record<string, unknown>;
type Labels = Record<string, string>;
type Protocol = 'TCP' | 'UDP' | 'SCTP';

interface NamedPortSpec {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}
interface NamespaceSpec {
  readonly name: string;
  labels: Labels;
  file: string;
}
interface PodSpec {
  readonly namespace: string;
  readonly name: string;
  node: NodeName;
  labels: Labels;
  /** Primary first; at most one per family. */
  ips: string[];
  ports: NamedPortSpec[];
  phase: 'Running' | 'Succeeded';
  file: string;
}
interface PolicySpec {
  readonly namespace: string;
  readonly name: string;
  spec: Raw;
  file: string;
}
/** A ClusterNetworkPolicy (cluster-scoped: `namespace` is ''). */
interface ClusterPolicySpec {
  readonly kind: 'ClusterNetworkPolicy';
  readonly namespace: '';
  readonly name: string;
  spec: Raw;
  file: string;
}
/** A file whose content on disk is invalid: frozen (its objects keep their last valid version) until repaired or deleted. */
interface Broken {
  readonly how: string;
  readonly text: string;
}

const NAMESPACE_POOL = ['alpha', 'beta', 'gamma', 'delta'];
const POD_POOL = ['web', 'api', 'db', 'cache', 'worker', 'job'];
const POLICY_POOL = ['np-a', 'np-b', 'np-c', 'np-d', 'np-e', 'np-f'];
const CLUSTER_POLICY_POOL = ['cnp-a', 'cnp-b', 'cnp-c', 'cnp-d', 'cnp-e'];
/** Priorities drawn from a few values, so that policies of one tier often tie. */
const CNP_PRIORITIES = [0, 5, 5, 10, 10, 100, 1000];
/** Networks a cluster policy's egress names: pod ranges, nodes, the outside, whole families. */
const CNP_NETWORKS = [
  '10.244.0.0/16',
  '10.244.1.0/24',
  '10.244.2.0/28',
  '10.240.0.0/24',
  '10.240.0.2/32',
  '192.0.2.0/24',
  '0.0.0.0/0',
  'fd00:244::/32',
  'fd00:244:3::/48',
  '::/0',
];
/** Node labels (fixed: `nodes` peers select by them). */
const NODE_LABELS: Readonly<Record<NodeName, Labels>> = {
  'node-a': { zone: 'east', role: 'worker' },
  'node-b': { zone: 'west', role: 'worker' },
  'node-c': { zone: 'east', role: 'infra' },
};
const NODE_LABEL_VALUES: Readonly<Record<string, readonly string[]>> = {
  zone: ['east', 'west'],
  role: ['worker', 'infra'],
};
const POD_LABELS: Readonly<Record<string, readonly string[]>> = {
  app: ['web', 'api', 'db'],
  tier: ['front', 'back'],
  env: ['prod', 'dev'],
};
const NS_LABELS: Readonly<Record<string, readonly string[]>> = {
  team: ['red', 'blue'],
  env: ['prod', 'dev'],
};
/** Named ports and the numbers each may resolve to (some probed, some not: a change can flip a verdict). */
const NAMED_PORTS: ReadonlyArray<{ name: string; protocol: Protocol; ports: readonly number[] }> = [
  { name: 'http', protocol: 'TCP', ports: [80, 8080, 8081] },
  { name: 'metrics', protocol: 'TCP', ports: [9100, 9101] },
  { name: 'dns', protocol: 'UDP', ports: [53, 5353] },
  { name: 'db', protocol: 'TCP', ports: [5432, 5433] },
  { name: 'sctp-svc', protocol: 'SCTP', ports: [9090, 9091] },
];
const NUMERIC_PORTS = [80, 443, 5432, 8080, 9100, 53, 5353, 9090];
/** Ranges (endPort): each holds a probed port or none. */
const PORT_RANGES: ReadonlyArray<readonly [number, number]> = [
  [8000, 8100],
  [9000, 9200],
  [50, 60],
  [5000, 5500],
  [440, 450],
  [75, 85],
];
const HOSTS = 12;

function v4(node: number, host: number): string {
  return `10.244.${node + 1}.${host + 2}`;
}
function v6(node: number, host: number): string {
  return `fd00:244:${node + 1}::${(host + 2).toString(16)}`;
}

function ipBlocks(r: SeededRandom): Raw {
  const n = 1 + r.int(3);
  return r.pick<Raw>([
    { cidr: '10.244.0.0/16' },
    { cidr: '10.244.0.0/16', except: [`10.244.${n}.0/24`] },
    { cidr: `10.244.${n}.0/24` },
    { cidr: `10.244.${n}.0/28`, except: [`10.244.${n}.4/30`] },
    { cidr: '0.0.0.0/0', except: ['10.244.0.0/16'] },
    { cidr: '192.0.2.0/24' },
    { cidr: '10.240.0.0/24' },
    { cidr: 'fd00:244::/32' },
    { cidr: `fd00:244:${n}::/48` },
    { cidr: '::/0', except: ['fd00:244::/32'] },
  ]);
}

/**
 * A cluster and the changes made to it, all from one seeded generator: the
 * same seed gives the same objects, files, changes, write orders, modes and
 * disruptions on every run (timing is the processes' own).
 */
export class RandomCluster {
  readonly namespaces = new Map<string, NamespaceSpec>();
  readonly pods = new Map<string, PodSpec>();
  readonly policies = new Map<string, PolicySpec>();
  readonly clusterPolicies = new Map<string, ClusterPolicySpec>();
  readonly broken = new Map<string, Broken>();
  /** Addresses of pods deleted or finished, most recent last: what a new pod is given when addresses are reused. */
  private readonly freed: string[] = [];
  /** Files as the controller last saw them (start of the round): an invalid edit replaces a version it read. */
  private roundStart = new Map<string, string>();
  /** Files to be written this round although their content is unchanged. */
  readonly touched = new Set<string>();
  readonly r: SeededRandom;

  constructor(
    seed: number,
    private readonly skip: ReadonlySet<Skippable> = new Set(),
  ) {
    this.r = seededRandom(seed);
    for (const ns of NAMESPACE_POOL.slice(0, 3)) this.addNamespace(ns);
    for (let i = 0; i < 10; i++) this.addPod();
    for (let i = 0; i < 5; i++) this.addPolicy();
    if (!skip.has('add-cluster-policy')) for (let i = 0; i < 2; i++) this.addClusterPolicy();
    this.roundStart = this.render(false);
  }

  // --- rendering ---------------------------------------------------------------

  /** Every file, path relative to the manifest directory → content; `real` puts broken files' invalid text in. */
  render(real: boolean, round = 0): Map<string, string> {
    const byFile = new Map<string, Raw[]>();
    const add = (file: string, o: Raw) => {
      const l = byFile.get(file);
      if (l === undefined) byFile.set(file, [o]);
      else l.push(o);
    };
    for (const ns of [...this.namespaces.values()].sort(byName)) add(ns.file, namespaceRaw(ns));
    for (const p of [...this.pods.values()].sort(byName)) add(p.file, podRaw(p));
    for (const p of [...this.policies.values()].sort(byName)) add(p.file, policyRaw(p));
    for (const p of [...this.clusterPolicies.values()].sort(byName))
      add(p.file, clusterPolicyRaw(p));
    const out = new Map<string, string>();
    for (const [file, objects] of [...byFile].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const broken = real ? this.broken.get(file) : undefined;
      out.set(file, broken?.text ?? fileText(file, objects));
    }
    out.set('cluster/nodes.yaml', fileText('cluster/nodes.yaml', NODES.map(nodeRaw)));
    out.set('00-canary.yaml', fileText('00-canary.yaml', canaryObjects()));
    out.set(canaryFile(round), fileText(canaryFile(round), [canaryPolicy(round)]));
    return out;
  }

  /** Files a change may touch: not broken (frozen). */
  private free(file: string): boolean {
    return !this.broken.has(file);
  }

  // --- changes ---------------------------------------------------------------------

  /** Applies one random change; returns what it did, or undefined when none could be made. */
  change(): string | undefined {
    const r = this.r;
    const weights: Array<[ChangeKind, number]> = [
      ['add-namespace', this.namespaces.size < NAMESPACE_POOL.length ? 4 : 0],
      ['relabel-namespace', 6],
      ['delete-namespace', this.namespaces.size >= 2 ? 2 : 0],
      ['add-pod', this.pods.size < 14 ? 10 : 2],
      ['delete-pod', this.pods.size > 6 ? 6 : 2],
      ['relabel-pod', 8],
      ['move-pod', 6],
      ['reuse-address', 3],
      ['claim-address', 2],
      ['named-port', 8],
      ['finish-pod', 2],
      ['add-policy', this.policies.size < 10 ? 10 : 2],
      ['edit-policy', 12],
      // Often: deleting a policy that spans nodes with different policy sets is where spans go wrong.
      ['delete-policy', this.policies.size > 2 ? 9 : 1],
      ['add-cluster-policy', this.clusterPolicies.size < 4 ? 6 : 1],
      ['edit-cluster-policy', this.clusterPolicies.size > 0 ? 8 : 0],
      ['reprioritize-cluster-policy', this.clusterPolicies.size > 0 ? 4 : 0],
      ['delete-cluster-policy', this.clusterPolicies.size > 1 ? 4 : 0],
      ['move-object', 3],
      ['touch-file', 2],
      ['invalid-edit', this.broken.size < 2 ? 3 : 0],
      ['repair-file', this.broken.size > 0 ? 10 : 0],
      ['delete-broken-file', this.broken.size > 0 ? 1 : 0],
    ];
    const usable = weights.filter(([k, w]) => w > 0 && !this.skip.has(k));
    const total = usable.reduce((s, [, w]) => s + w, 0);
    for (let attempt = 0; attempt < 20 && total > 0; attempt++) {
      let x = r.int(total);
      let i = 0;
      while (x >= usable[i]![1]) x -= usable[i++]![1];
      const kind = usable[i]![0];
      const done = this.apply(kind);
      if (done !== undefined) return `${kind}: ${done}`;
    }
    return undefined;
  }

  private apply(kind: ChangeKind): string | undefined {
    switch (kind) {
      case 'add-namespace': {
        const name = this.r.pick(NAMESPACE_POOL.filter((n) => !this.namespaces.has(n)));
        return name === undefined ? undefined : this.addNamespace(name);
      }
      case 'relabel-namespace':
        return this.relabelNamespace();
      case 'delete-namespace':
        return this.deleteNamespace();
      case 'add-pod':
        return this.addPod();
      case 'delete-pod':
        return this.deletePod();
      case 'relabel-pod':
        return this.relabelPod();
      case 'move-pod':
        return this.movePod();
      case 'reuse-address':
        return this.addPod('reuse');
      case 'claim-address':
        return this.addPod('claim');
      case 'named-port':
        return this.changeNamedPort();
      case 'finish-pod':
        return this.finishPod();
      case 'add-policy':
        return this.addPolicy();
      case 'edit-policy':
        return this.editPolicy();
      case 'delete-policy':
        return this.deletePolicy();
      case 'add-cluster-policy':
        return this.addClusterPolicy();
      case 'edit-cluster-policy':
        return this.editClusterPolicy();
      case 'reprioritize-cluster-policy':
        return this.reprioritizeClusterPolicy();
      case 'delete-cluster-policy':
        return this.deleteClusterPolicy();
      case 'move-object':
        return this.moveObject();
      case 'touch-file':
        return this.touchFile();
      case 'invalid-edit':
        return this.invalidEdit();
      case 'repair-file':
        return this.repairFile();
      case 'delete-broken-file':
        return this.deleteBrokenFile();
    }
  }

  private labels(vocabulary: Readonly<Record<string, readonly string[]>>, p = 0.6): Labels {
    const out: Labels = {};
    for (const [k, values] of Object.entries(vocabulary))
      if (this.r.chance(p)) out[k] = this.r.pick(values);
    return out;
  }

  private addNamespace(name: string): string | undefined {
    const r = this.r;
    const file = r.pick(['cluster/namespaces.yaml', `${name}/namespace.yaml`, `${name}/ns.json`]);
    if (!this.free(file)) return undefined;
    const ns: NamespaceSpec = { name, labels: this.labels(NS_LABELS), file };
    this.namespaces.set(name, ns);
    return `namespace ${name} ${fmtLabels(ns.labels)} (${file})`;
  }

  private relabelNamespace(): string | undefined {
    const ns = this.pickFree([...this.namespaces.values()]);
    if (ns === undefined) return undefined;
    const before = fmtLabels(ns.labels);
    ns.labels = this.labels(NS_LABELS);
    return `namespace ${ns.name} ${before} -> ${fmtLabels(ns.labels)}`;
  }

  /** Deletes the namespace and, as the API server does, every object in it. */
  private deleteNamespace(): string | undefined {
    const ns = this.r.pick([...this.namespaces.values()]);
    if (ns === undefined) return undefined;
    const objects = [
      ...[...this.pods.values()].filter((p) => p.namespace === ns.name),
      ...[...this.policies.values()].filter((p) => p.namespace === ns.name),
    ];
    if (!this.free(ns.file) || objects.some((o) => !this.free(o.file))) return undefined;
    this.namespaces.delete(ns.name);
    for (const o of objects) {
      if ('ips' in o) {
        this.pods.delete(key(o));
        this.release(o);
      } else this.policies.delete(key(o));
    }
    return `namespace ${ns.name} with its ${objects.length} object(s)`;
  }

  private nodeIndex(): number {
    return this.r.int(NODES.length);
  }

  private taken(): Set<string> {
    return new Set([...this.pods.values()].filter(running).flatMap((p) => p.ips));
  }

  private release(p: PodSpec): void {
    this.freed.push(...p.ips);
    if (this.freed.length > 20) this.freed.splice(0, this.freed.length - 20);
  }

  /** Addresses for a pod on node `n`: fresh ones, recently freed ones, or ones a running pod holds. */
  private addresses(n: number, how: 'fresh' | 'reuse' | 'claim'): string[] | undefined {
    const r = this.r;
    const taken = this.taken();
    const dual = r.chance(0.3);
    if (how === 'reuse') {
      const freed = this.freed.filter((ip) => !taken.has(ip) && !ip.includes(':'));
      if (freed.length === 0) return undefined;
      const ip = freed[freed.length - 1 - r.int(Math.min(3, freed.length))]!;
      return [ip];
    }
    if (how === 'claim') {
      const holders = [...this.pods.values()].filter(running);
      if (holders.length === 0) return undefined;
      return [...r.pick(holders).ips];
    }
    const free = [...Array(HOSTS).keys()].filter((h) => !taken.has(v4(n, h)));
    if (free.length === 0) return this.addresses(n, 'claim');
    const h = r.pick(free);
    return dual && !taken.has(v6(n, h)) ? [v4(n, h), v6(n, h)] : [v4(n, h)];
  }

  private namedPorts(): NamedPortSpec[] {
    const r = this.r;
    return NAMED_PORTS.filter(() => r.chance(0.4)).map((np) => ({
      name: np.name,
      port: r.pick(np.ports),
      // Sometimes the protocol a policy does not expect: names match by name and protocol.
      protocol: r.chance(0.15) ? r.pick<Protocol>(['TCP', 'UDP', 'SCTP']) : np.protocol,
    }));
  }

  private addPod(how: 'fresh' | 'reuse' | 'claim' = 'fresh'): string | undefined {
    const r = this.r;
    const ns = r.pick([...this.namespaces.keys()]);
    if (ns === undefined) return undefined;
    const name = r.pick(POD_POOL.filter((n) => !this.pods.has(`${ns}/${n}`)));
    if (name === undefined) return undefined;
    const n = this.nodeIndex();
    const ips = this.addresses(n, how);
    if (ips === undefined) return undefined;
    const file = r.pick([
      `${ns}/pods.yaml`,
      `${ns}/pods/${name}.yaml`,
      `${ns}/workloads-list.yaml`,
      `${ns}/pods/${name}.json`,
    ]);
    if (!this.free(file)) return undefined;
    const pod: PodSpec = {
      namespace: ns,
      name,
      node: NODES[n]!,
      labels: this.labels(POD_LABELS),
      ips,
      ports: this.namedPorts(),
      phase: 'Running',
      file,
    };
    this.pods.set(key(pod), pod);
    return `pod ${describePod(pod)} (${file})`;
  }

  private pickFree<T extends { file: string }>(xs: T[]): T | undefined {
    return this.r.pick(xs.filter((x) => this.free(x.file)));
  }

  private deletePod(): string | undefined {
    const p = this.pickFree([...this.pods.values()]);
    if (p === undefined) return undefined;
    this.pods.delete(key(p));
    if (running(p)) this.release(p);
    return `pod ${key(p)} ${p.ips.join(',')} on ${p.node}`;
  }

  private relabelPod(): string | undefined {
    const p = this.pickFree([...this.pods.values()]);
    if (p === undefined) return undefined;
    const before = fmtLabels(p.labels);
    p.labels = this.labels(POD_LABELS);
    return `pod ${key(p)} ${before} -> ${fmtLabels(p.labels)}`;
  }

  /** To another node: keeping its addresses (as a manifest may say) or with new ones from the new node's range. */
  private movePod(): string | undefined {
    const p = this.pickFree([...this.pods.values()].filter(running));
    if (p === undefined) return undefined;
    const from = p.node;
    const n = (NODES.indexOf(from) + 1 + this.r.int(NODES.length - 1)) % NODES.length;
    p.node = NODES[n]!;
    if (this.r.chance(0.5)) return `pod ${key(p)} ${from} -> ${p.node} keeping ${p.ips.join(',')}`;
    const old = p.ips;
    p.ips = [];
    const ips = this.addresses(n, 'fresh');
    if (ips === undefined || ips.length === 0) {
      p.ips = old;
      return `pod ${key(p)} ${from} -> ${p.node} keeping ${p.ips.join(',')}`;
    }
    p.ips = ips;
    this.freed.push(...old);
    return `pod ${key(p)} ${from} -> ${p.node}, ${old.join(',')} -> ${ips.join(',')}`;
  }

  private changeNamedPort(): string | undefined {
    const r = this.r;
    const p = this.pickFree([...this.pods.values()]);
    if (p === undefined) return undefined;
    const before = fmtPorts(p.ports);
    const np = r.pick(NAMED_PORTS);
    const i = p.ports.findIndex((x) => x.name === np.name);
    if (i < 0)
      p.ports = [...p.ports, { name: np.name, port: r.pick(np.ports), protocol: np.protocol }];
    else if (r.chance(0.3)) p.ports = p.ports.filter((_, j) => j !== i);
    else {
      const cur = p.ports[i]!;
      const port = r.pick(np.ports.filter((x) => x !== cur.port));
      p.ports = p.ports.map((x, j) => (j === i ? { ...x, port } : x));
    }
    return `pod ${key(p)} ports ${before} -> ${fmtPorts(p.ports)}`;
  }

  /** A pod that ran to completion: no longer an endpoint, its address free for another. */
  private finishPod(): string | undefined {
    const p = this.pickFree([...this.pods.values()].filter(running));
    if (p === undefined) return undefined;
    p.phase = 'Succeeded';
    this.release(p);
    return `pod ${key(p)} Succeeded (frees ${p.ips.join(',')})`;
  }

  private selector(vocabulary: Readonly<Record<string, readonly string[]>>): Raw {
    const r = this.r;
    const keys = Object.keys(vocabulary);
    const k = r.int(6);
    if (k === 0) return {};
    const s: Raw = {};
    if (k <= 3) {
      const labels: Labels = {};
      const key1 = r.pick(keys);
      labels[key1] = r.pick(vocabulary[key1]!);
      if (r.chance(0.3)) {
        const key2 = r.pick(keys);
        labels[key2] = r.pick(vocabulary[key2]!);
      }
      s.matchLabels = labels;
    }
    if (k >= 3) {
      s.matchExpressions = [...Array(1 + r.int(2))].map(() => {
        const key1 = r.pick(keys);
        const operator = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist']);
        const values = [...new Set([r.pick(vocabulary[key1]!), r.pick(vocabulary[key1]!)])].sort();
        return operator === 'In' || operator === 'NotIn'
          ? { key: key1, operator, values }
          : { key: key1, operator };
      });
    }
    return s;
  }

  private peer(): Raw {
    const k = this.r.int(10);
    if (k <= 2) return { podSelector: this.selector(POD_LABELS) };
    if (k <= 4) return { namespaceSelector: this.selector(NS_LABELS) };
    if (k <= 6)
      return {
        podSelector: this.selector(POD_LABELS),
        namespaceSelector: this.selector(NS_LABELS),
      };
    return { ipBlock: ipBlocks(this.r) };
  }

  private port(): Raw {
    const r = this.r;
    const p: Raw = {};
    const k = r.int(10);
    if (k <= 2) p.port = r.pick(NUMERIC_PORTS);
    else if (k <= 5) p.port = r.pick(NAMED_PORTS).name;
    else if (k <= 7) {
      const [start, end] = r.pick(PORT_RANGES);
      p.port = start;
      p.endPort = end;
    }
    // k 8, 9: every port of the protocol.
    if (r.chance(0.35) || k >= 8) p.protocol = r.pick(['TCP', 'UDP', 'SCTP']);
    return p;
  }

  private rules(peersKey: 'from' | 'to'): Raw[] {
    const r = this.r;
    return [...Array(r.int(4))].map(() => {
      if (r.chance(0.1)) return {};
      const rule: Raw = {};
      if (r.chance(0.8)) rule[peersKey] = [...Array(1 + r.int(2))].map(() => this.peer());
      if (r.chance(0.7)) rule.ports = [...Array(1 + r.int(2))].map(() => this.port());
      return rule;
    });
  }

  private policyTypes(spec: Raw): void {
    const types = this.r.pick([
      undefined,
      undefined,
      ['Ingress'],
      ['Egress'],
      ['Ingress', 'Egress'],
      ['Ingress', 'Egress'],
    ]);
    if (types === undefined) delete spec.policyTypes;
    else spec.policyTypes = types;
  }

  private policySpec(): Raw {
    const r = this.r;
    // Every pod of the namespace (default-deny and the like) a third of the time: such policies span nodes.
    const spec: Raw = { podSelector: r.chance(0.3) ? {} : this.selector(POD_LABELS) };
    if (r.chance(0.8)) spec.ingress = this.rules('from');
    if (r.chance(0.5)) spec.egress = this.rules('to');
    this.policyTypes(spec);
    return spec;
  }

  private addPolicy(): string | undefined {
    const r = this.r;
    const ns = r.pick([...this.namespaces.keys()]);
    if (ns === undefined) return undefined;
    const name = r.pick(POLICY_POOL.filter((n) => !this.policies.has(`${ns}/${n}`)));
    if (name === undefined) return undefined;
    const file = r.pick([
      `${ns}/policies.yaml`,
      `${ns}/policies/${name}.yaml`,
      `${ns}/policies/${name}.yml`,
      `${ns}/workloads-list.yaml`,
      `${ns}/policies/nested/${name}.json`,
    ]);
    if (!this.free(file)) return undefined;
    const p: PolicySpec = { namespace: ns, name, spec: this.policySpec(), file };
    this.policies.set(key(p), p);
    return `policy ${key(p)} ${JSON.stringify(p.spec)} (${file})`;
  }

  private editPolicy(): string | undefined {
    const r = this.r;
    const p = this.pickFree([...this.policies.values()]);
    if (p === undefined) return undefined;
    const spec: Raw = structuredClone(p.spec);
    const what = r.pick(['podSelector', 'ingress', 'egress', 'policyTypes', 'port', 'all']);
    if (what === 'podSelector') spec.podSelector = this.selector(POD_LABELS);
    else if (what === 'ingress') spec.ingress = this.rules('from');
    else if (what === 'egress') spec.egress = this.rules('to');
    else if (what === 'policyTypes') this.policyTypes(spec);
    else if (what === 'port') {
      const rules = [
        ...((spec.ingress as Raw[] | undefined) ?? []),
        ...((spec.egress as Raw[] | undefined) ?? []),
      ].filter((x) => Array.isArray(x.ports));
      if (rules.length === 0) return undefined;
      const rule = r.pick(rules);
      const ports = rule.ports as Raw[];
      ports[r.int(ports.length)] = this.port();
    }
    p.spec = what === 'all' ? this.policySpec() : spec;
    return `policy ${key(p)} ${what}: ${JSON.stringify(spec)}`;
  }

  private deletePolicy(): string | undefined {
    const p = this.pickFree([...this.policies.values()]);
    if (p === undefined) return undefined;
    this.policies.delete(key(p));
    return `policy ${key(p)} (${p.file})`;
  }

  // --- ClusterNetworkPolicies ---------------------------------------------------

  /**
   * A namespace selector for a cluster policy's subject: never the canary's
   * namespace (labelled purpose=canary), whose traffic is the sync proof.
   */
  private subjectNamespaces(): Raw {
    const s = this.selector(NS_LABELS);
    const expressions = (s.matchExpressions as Raw[] | undefined) ?? [];
    return {
      ...s,
      matchExpressions: [...expressions, { key: 'purpose', operator: 'DoesNotExist' }],
    };
  }

  private clusterPeer(egress: boolean): Raw {
    const r = this.r;
    const k = r.int(10);
    if (!egress || k < 6)
      return r.chance(0.4)
        ? { namespaces: this.selector(NS_LABELS) }
        : {
            pods: {
              namespaceSelector: this.selector(NS_LABELS),
              podSelector: this.selector(POD_LABELS),
            },
          };
    if (k < 9) return { networks: [...new Set([r.pick(CNP_NETWORKS), r.pick(CNP_NETWORKS)])] };
    return { nodes: this.selector(NODE_LABEL_VALUES) };
  }

  private clusterProtocols(named: boolean): Raw[] {
    const r = this.r;
    return [...Array(1 + r.int(2))].map(() => {
      if (named && r.chance(0.3)) return { destinationNamedPort: r.pick(NAMED_PORTS).name };
      const proto = r.pick(['tcp', 'udp', 'sctp']);
      if (r.chance(0.6)) return { [proto]: { destinationPort: { number: r.pick(NUMERIC_PORTS) } } };
      const [start, end] = r.pick(PORT_RANGES);
      return { [proto]: { destinationPort: { range: { start, end } } } };
    });
  }

  private clusterRules(egress: boolean): Raw[] {
    const r = this.r;
    return [...Array(1 + r.int(3))].map((_, i) => {
      const peers = [...Array(1 + r.int(2))].map(() => this.clusterPeer(egress));
      // The CRD refuses a named port next to networks or nodes peers.
      const named = peers.every((x) => x.namespaces !== undefined || x.pods !== undefined);
      return {
        ...(r.chance(0.7) ? { name: `r${i}` } : {}),
        action: r.pick(['Accept', 'Deny', 'Pass']),
        [egress ? 'to' : 'from']: peers,
        ...(r.chance(0.5) ? { protocols: this.clusterProtocols(named) } : {}),
      };
    });
  }

  private clusterPolicySpec(): Raw {
    const r = this.r;
    const spec: Raw = {
      tier: r.chance(0.5) ? 'Admin' : 'Baseline',
      priority: r.pick(CNP_PRIORITIES),
      subject: r.chance(0.4)
        ? { namespaces: this.subjectNamespaces() }
        : {
            pods: {
              namespaceSelector: this.subjectNamespaces(),
              podSelector: this.selector(POD_LABELS),
            },
          },
    };
    const ingress = r.chance(0.75);
    if (ingress) spec.ingress = this.clusterRules(false);
    if (!ingress || r.chance(0.6)) spec.egress = this.clusterRules(true);
    return spec;
  }

  private addClusterPolicy(): string | undefined {
    const r = this.r;
    const name = r.pick(CLUSTER_POLICY_POOL.filter((n) => !this.clusterPolicies.has(n)));
    if (name === undefined) return undefined;
    const file = r.pick([
      'cluster/cluster-policies.yaml',
      `cluster/cnp/${name}.yaml`,
      `cluster/cnp/${name}.json`,
    ]);
    if (!this.free(file)) return undefined;
    const p: ClusterPolicySpec = {
      kind: 'ClusterNetworkPolicy',
      namespace: '',
      name,
      spec: this.clusterPolicySpec(),
      file,
    };
    this.clusterPolicies.set(name, p);
    return `cluster policy ${name} ${JSON.stringify(p.spec)} (${file})`;
  }

  private editClusterPolicy(): string | undefined {
    const r = this.r;
    const p = this.pickFree([...this.clusterPolicies.values()]);
    if (p === undefined) return undefined;
    const spec: Raw = structuredClone(p.spec);
    const what = r.pick(['tier', 'subject', 'ingress', 'egress', 'action', 'order', 'all']);
    const rules = (d: 'ingress' | 'egress') => spec[d] as Raw[] | undefined;
    if (what === 'tier') spec.tier = spec.tier === 'Admin' ? 'Baseline' : 'Admin';
    else if (what === 'subject') spec.subject = this.clusterPolicySpec().subject;
    else if (what === 'ingress' || what === 'egress') {
      if (r.chance(0.2) && rules(what === 'ingress' ? 'egress' : 'ingress') !== undefined)
        delete spec[what];
      else spec[what] = this.clusterRules(what === 'egress');
    } else if (what === 'action' || what === 'order') {
      const d = r.pick((['ingress', 'egress'] as const).filter((x) => rules(x) !== undefined));
      const list = d === undefined ? undefined : rules(d);
      if (list === undefined) return undefined;
      if (what === 'action') {
        const rule = r.pick(list);
        rule.action = r.pick(['Accept', 'Deny', 'Pass'].filter((a) => a !== rule.action));
      } else {
        if (list.length < 2) return undefined;
        const i = r.int(list.length);
        const j = (i + 1 + r.int(list.length - 1)) % list.length;
        [list[i], list[j]] = [list[j]!, list[i]!];
      }
    }
    p.spec = what === 'all' ? this.clusterPolicySpec() : spec;
    return `cluster policy ${p.name} ${what}: ${JSON.stringify(p.spec)}`;
  }

  /** A priority change: often onto another policy's priority (a tie, decided by name). */
  private reprioritizeClusterPolicy(): string | undefined {
    const r = this.r;
    const p = this.pickFree([...this.clusterPolicies.values()]);
    if (p === undefined) return undefined;
    const others = [...this.clusterPolicies.values()].filter((o) => o !== p);
    const before = p.spec.priority;
    const tie = others.length > 0 && r.chance(0.5);
    p.spec = {
      ...p.spec,
      priority: tie ? r.pick(others).spec.priority : r.pick(CNP_PRIORITIES),
    };
    return `cluster policy ${p.name} priority ${before} -> ${p.spec.priority}${tie ? ' (a tie)' : ''}`;
  }

  private deleteClusterPolicy(): string | undefined {
    const p = this.pickFree([...this.clusterPolicies.values()]);
    if (p === undefined) return undefined;
    this.clusterPolicies.delete(p.name);
    return `cluster policy ${p.name} (${p.file})`;
  }

  /** An object moves to another file (another layout): it must not be withdrawn on the way. */
  private moveObject(): string | undefined {
    const r = this.r;
    const objects: Array<PodSpec | PolicySpec | NamespaceSpec | ClusterPolicySpec> = [
      ...this.pods.values(),
      ...this.policies.values(),
      ...this.namespaces.values(),
      ...this.clusterPolicies.values(),
    ];
    const o = this.pickFree(objects);
    if (o === undefined) return undefined;
    const ns = 'namespace' in o ? o.namespace : o.name;
    const candidates =
      'kind' in o
        ? [
            'cluster/cluster-policies.yaml',
            `cluster/cnp/${o.name}.yaml`,
            `cluster/cnp/${o.name}.json`,
          ]
        : 'ips' in o
          ? [`${ns}/pods.yaml`, `${ns}/pods/${o.name}.yaml`, `${ns}/workloads-list.yaml`]
          : 'spec' in o
            ? [`${ns}/policies.yaml`, `${ns}/policies/${o.name}.yml`, `${ns}/workloads-list.yaml`]
            : ['cluster/namespaces.yaml', `${ns}/namespace.yaml`];
    const to = r.pick(candidates.filter((f) => f !== o.file && this.free(f)));
    if (to === undefined) return undefined;
    const from = o.file;
    o.file = to;
    return `${'namespace' in o && o.namespace !== '' ? key(o) : o.name} ${from} -> ${to}`;
  }

  /** Rewrites a file with the same content: nothing may change. */
  private touchFile(): string | undefined {
    const file = this.r.pick([...this.render(false).keys()].filter((f) => this.free(f)));
    if (file === undefined) return undefined;
    this.touched.add(file);
    return file;
  }

  /**
   * Makes a file invalid, as a person or a tool might: its objects keep the
   * version last read (the model does not change), and the file is frozen.
   * Only a file the controller has read as it is now (not changed this round).
   */
  private invalidEdit(): string | undefined {
    const r = this.r;
    const now = this.render(false);
    const files = [...now.keys()].filter(
      (f) =>
        this.free(f) &&
        !f.startsWith('00-canary') &&
        f !== 'cluster/nodes.yaml' &&
        this.roundStart.get(f) === now.get(f),
    );
    const file = r.pick(files);
    if (file === undefined) return undefined;
    const text = now.get(file)!;
    const objects = this.objectsIn(file);
    const how = r.pick(['syntax', 'value', 'typo']);
    let broken: Broken | undefined;
    if (how === 'syntax') {
      broken = file.endsWith('.json')
        ? { how: 'JSON syntax error (last brace missing)', text: text.trimEnd().slice(0, -1) }
        : { how: 'YAML syntax error', text: text.replace('metadata:', 'metadata: {') };
    } else {
      const policies = objects.filter((o): o is PolicySpec | ClusterPolicySpec => 'spec' in o);
      const pods = objects.filter((o): o is PodSpec => 'ips' in o);
      const raws: Raw[] = objects.map((o) =>
        'kind' in o
          ? clusterPolicyRaw(o)
          : 'spec' in o
            ? policyRaw(o)
            : 'ips' in o
              ? podRaw(o)
              : namespaceRaw(o),
      );
      const target =
        policies.length > 0 ? r.pick(policies) : pods.length > 0 ? r.pick(pods) : undefined;
      if (target === undefined) return undefined;
      const raw = raws[objects.indexOf(target)]!;
      let what: string;
      if ('kind' in target) {
        const spec = raw.spec as Raw;
        if (how === 'value') {
          spec.priority = 1001;
          what = `cluster policy ${target.name} gets priority 1001 (above 1000)`;
        } else {
          spec.subjct = spec.subject;
          delete spec.subject;
          what = `cluster policy ${target.name} spec.subject misspelt "subjct"`;
        }
      } else if ('spec' in target) {
        const spec = raw.spec as Raw;
        if (how === 'value') {
          spec.ingress = [
            ...((spec.ingress as Raw[] | undefined) ?? []),
            { ports: [{ port: 9000, endPort: 8000 }] },
          ];
          what = `policy ${key(target)} gets endPort 8000 below port 9000`;
        } else if (spec.ingress !== undefined && r.chance(0.5)) {
          spec.ingres = spec.ingress;
          delete spec.ingress;
          what = `policy ${key(target)} spec.ingress misspelt "ingres"`;
        } else {
          spec.podSelectr = spec.podSelector;
          spec.podSelector = {};
          what = `policy ${key(target)} spec.podSelector misspelt "podSelectr" (an empty podSelector left)`;
        }
      } else {
        const spec = raw.spec as Raw;
        if (how === 'value') {
          ((raw.status as Raw).podIPs as Raw[])[0] = { ip: '10.244.300.1' };
          (raw.status as Raw).podIP = '10.244.300.1';
          what = `pod ${key(target)} gets address 10.244.300.1`;
        } else {
          spec.nodename = spec.nodeName;
          delete spec.nodeName;
          what = `pod ${key(target)} spec.nodeName misspelt "nodename"`;
        }
      }
      broken = { how: what, text: fileText(file, raws) };
    }
    this.broken.set(file, broken);
    return `${file}: ${broken.how}`;
  }

  private objectsIn(file: string): Array<NamespaceSpec | PodSpec | PolicySpec | ClusterPolicySpec> {
    return [
      ...[...this.namespaces.values()].sort(byName),
      ...[...this.pods.values()].sort(byName),
      ...[...this.policies.values()].sort(byName),
      ...[...this.clusterPolicies.values()].sort(byName),
    ].filter((o) => o.file === file);
  }

  private repairFile(): string | undefined {
    const file = this.r.pick([...this.broken.keys()]);
    if (file === undefined) return undefined;
    this.broken.delete(file);
    this.touched.add(file);
    return `${file} written valid again`;
  }

  /** Removing a file deletes its objects, whether or not it parses. */
  private deleteBrokenFile(): string | undefined {
    const file = this.r.pick([...this.broken.keys()]);
    if (file === undefined) return undefined;
    const objects = this.objectsIn(file);
    this.broken.delete(file);
    for (const o of objects) {
      if ('kind' in o) this.clusterPolicies.delete(o.name);
      else if ('ips' in o) {
        this.pods.delete(key(o));
        if (running(o)) this.release(o);
      } else if ('spec' in o) this.policies.delete(key(o));
      else this.namespaces.delete(o.name);
    }
    return `${file} removed with ${objects.map((o) => ('namespace' in o && o.namespace !== '' ? key(o) : o.name)).join(', ')}`;
  }

  /** Marks the start of a round: what the controller has read is the current valid state. */
  beginRound(): void {
    this.roundStart = this.render(false);
    this.touched.clear();
  }
}

function byName(a: { name: string; namespace?: string }, b: { name: string; namespace?: string }) {
  const ka = `${a.namespace ?? ''}/${a.name}`;
  const kb = `${b.namespace ?? ''}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
const key = (o: { namespace: string; name: string }) => `${o.namespace}/${o.name}`;
const running = (p: PodSpec) => p.phase === 'Running';
const fmtLabels = (l: Labels) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')}}`;
const fmtPorts = (ports: readonly NamedPortSpec[]) =>
  `[${ports.map((p) => `${p.name}=${p.protocol}/${p.port}`).join(',')}]`;
const describePod = (p: PodSpec) =>
  `${key(p)} on ${p.node} ${p.ips.join(',')} ${fmtLabels(p.labels)} ports ${fmtPorts(p.ports)}`;

function namespaceRaw(ns: { name: string; labels: Labels }): Raw {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.name, labels: ns.labels } };
}

function podRaw(p: Omit<PodSpec, 'file'>): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
    spec: {
      nodeName: p.node,
      containers: [
        {
          name: 'main',
          image: 'registry.k8s.io/e2e-test-images/agnhost:2.52',
          ports: p.ports.map((x) => ({
            name: x.name,
            containerPort: x.port,
            protocol: x.protocol,
          })),
        },
      ],
    },
    status: { phase: p.phase, podIP: p.ips[0], podIPs: p.ips.map((ip) => ({ ip })) },
  };
}

function policyRaw(p: { namespace: string; name: string; spec: Raw }): Raw {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: p.name, namespace: p.namespace },
    spec: structuredClone(p.spec),
  };
}

function clusterPolicyRaw(p: { name: string; spec: Raw }): Raw {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: p.name },
    spec: structuredClone(p.spec),
  };
}

function nodeRaw(node: NodeName): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node, labels: NODE_LABELS[node] },
    status: {
      addresses: [
        { type: 'InternalIP', address: NODE_ADDRESSES[node] },
        { type: 'Hostname', address: node },
      ],
    },
  };
}

function canaryObjects(): Raw[] {
  const pod = (c: typeof CANARY_SRC, role: string) =>
    podRaw({
      namespace: CANARY_NAMESPACE,
      name: c.name,
      node: c.node,
      labels: { role },
      ips: [c.ip],
      ports: [],
      phase: 'Running',
    });
  return [
    namespaceRaw({ name: CANARY_NAMESPACE, labels: { purpose: 'canary' } }),
    pod(CANARY_SRC, 'src'),
    pod(CANARY_DST, 'dst'),
  ];
}

/** Allows canary/src to canary/dst on CANARY_PORT_BASE + round only. */
function canaryPolicy(round: number): Raw {
  return policyRaw({
    namespace: CANARY_NAMESPACE,
    name: canaryPolicyName(round),
    spec: {
      podSelector: { matchLabels: { role: 'dst' } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { role: 'src' } } }],
          ports: [{ protocol: 'TCP', port: CANARY_PORT_BASE + round }],
        },
      ],
    },
  });
}

/** `.json`: one object, or a List; `-list.yaml`: a YAML List; otherwise multi-document YAML. */
function fileText(file: string, objects: readonly Raw[]): string {
  if (file.endsWith('.json')) {
    const doc =
      objects.length === 1 ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
    return `${JSON.stringify(doc, null, 2)}\n`;
  }
  if (file.endsWith('-list.yaml'))
    return stringify({ apiVersion: 'v1', kind: 'List', items: objects });
  return objects.map((o) => stringify(o)).join('---\n');
}

// --- writing files as users do --------------------------------------------------

export interface FileOp {
  readonly type: 'write' | 'delete' | 'remove-dir';
  readonly path: string;
  readonly text?: string;
  readonly mode?: WriteMode;
  /** Milliseconds to wait before this operation (0: straight after the previous one). */
  readonly pauseMs: number;
}

/**
 * The operations that take the directory from `before` to `after`, in a
 * random order with random write modes, pauses (so that some changes become
 * revisions of their own), and whole directories removed with `rm -r` when
 * nothing in them survives.
 */
function plan(
  r: SeededRandom,
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
  touched: ReadonlySet<string>,
  skip: ReadonlySet<Skippable>,
): FileOp[] {
  const modes = WRITE_MODES.filter((m) => !skip.has(m));
  const usable = modes.length > 0 ? modes : (['rename'] as WriteMode[]);
  const ops: FileOp[] = [];
  const pause = () => (r.chance(0.25) ? 20 + r.int(130) : 0);
  for (const [path, text] of after) {
    if (before.get(path) === text && !touched.has(path)) continue;
    const mode = r.chance(0.4) ? 'rename' : r.chance(0.3) ? 'slow-in-place' : 'in-place';
    ops.push({
      type: 'write',
      path,
      text,
      mode: usable.includes(mode) ? mode : r.pick(usable),
      pauseMs: pause(),
    });
  }
  const gone = [...before.keys()].filter((p) => !after.has(p));
  const dirs = new Set(gone.filter((p) => p.includes('/')).map((p) => p.split('/')[0]!));
  const removedDirs = new Set<string>();
  for (const d of [...dirs].sort()) {
    const survives = [...after.keys()].some((p) => p.startsWith(`${d}/`));
    if (!survives && r.chance(0.5)) removedDirs.add(d);
  }
  for (const p of gone) {
    if (removedDirs.has(p.split('/')[0]!)) continue;
    ops.push({ type: 'delete', path: p, pauseMs: pause() });
  }
  for (const d of removedDirs) ops.push({ type: 'remove-dir', path: d, pauseMs: pause() });
  // Fisher-Yates with the seeded generator.
  for (let i = ops.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [ops[i], ops[j]] = [ops[j]!, ops[i]!];
  }
  return ops;
}

let tempCounter = 0;

async function perform(dir: string, op: FileOp): Promise<void> {
  if (op.pauseMs > 0) await sleep(op.pauseMs);
  const path = join(dir, op.path);
  if (op.type === 'delete') return rm(path, { force: true });
  if (op.type === 'remove-dir') return rm(path, { recursive: true, force: true });
  await mkdir(dirname(path), { recursive: true });
  const text = op.text!;
  if (op.mode === 'rename') {
    const tmp = join(dirname(path), `.${op.path.split('/').pop()}.tmp${++tempCounter}`);
    await writeFile(tmp, text);
    await rename(tmp, path);
  } else if (op.mode === 'slow-in-place') {
    // Truncated, then written in two pieces: a reader may see it half-written.
    const fh = await open(path, 'w');
    try {
      const half = Math.floor(text.length / 2);
      await fh.write(text.slice(0, half));
      await sleep(5);
      await fh.write(text.slice(half));
    } finally {
      await fh.close();
    }
  } else await writeFile(path, text);
}

export async function writeTree(dir: string, files: ReadonlyMap<string, string>): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  for (const [p, text] of files) {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), text);
  }
}

// --- processes -----------------------------------------------------------------

interface LogLine {
  readonly msg?: string;
  readonly [k: string]: unknown;
}

/** Every child running now: killed when this process exits, whatever the harness was doing. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** One of Weir's programs from bin/, restartable; its stderr (JSON lines) kept in a file and the last lines in memory. */
class Program {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly recent: LogLine[] = [];
  private waiters: Array<(l: LogLine) => void> = [];
  starts = 0;

  constructor(
    readonly name: string,
    private readonly bin: string,
    private readonly args: readonly string[],
    private readonly log: WriteStream,
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the program and resolves once it logs `ready`. */
  async start(ready: string, timeoutMs = 30_000): Promise<void> {
    if (this.child !== undefined) throw new Error(`${this.name} is already running`);
    this.starts++;
    this.log.write(`${JSON.stringify({ harness: `start ${this.starts}`, at: Date.now() })}\n`);
    const child = spawn(process.execPath, [join(ROOT, 'bin', this.bin), ...this.args], {
      cwd: ROOT,
      env: { ...process.env, WEIR_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    children.add(child);
    child.on('error', (err) =>
      this.log.write(`${JSON.stringify({ harness: 'spawn failed', err: err.message })}\n`),
    );
    let buf = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      this.log.write(chunk);
      buf += chunk.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: text };
        }
        this.recent.push(line);
        if (this.recent.length > 200) this.recent.shift();
        for (const w of this.waiters) w(line);
      }
    });
    let exitCode: string | undefined;
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        exitCode = `${code ?? signal}`;
        children.delete(child);
        if (this.child === child) this.child = undefined;
        for (const w of this.waiters) w({ msg: `exited ${exitCode}` });
        resolve();
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`${this.name}: not ready within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const waiter = (l: LogLine) => {
        if (l.msg === ready) done();
        else if (exitCode !== undefined)
          done(new Error(`${this.name} exited (${exitCode}) before "${ready}": ${this.tail()}`));
      };
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        if (err) reject(err);
        else resolve();
      };
      this.waiters.push(waiter);
    });
  }

  /** SIGTERM (orderly, waits for the exit) or SIGKILL (a crash). */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }

  tail(n = 8): string {
    return this.recent
      .slice(-n)
      .map((l) => JSON.stringify(l))
      .join('\n');
  }
}

function unary<Res>(
  invoke: (options: { deadline: number }, cb: (err: Error | null, res?: Res) => void) => unknown,
  timeoutMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke({ deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else resolve(res as Res);
    });
  });
}

interface ProbeRequest {
  readonly from: string;
  readonly to: string;
  readonly protocol: string;
  readonly port: number;
}

/** The controller and the three agents, each restartable on its own port and state directory. */
class LiveSystem {
  readonly controller: Program;
  readonly agents = new Map<NodeName, Program>();
  private readonly agentClients = new Map<NodeName, AgentClient>();
  private readonly agentPorts = new Map<NodeName, number>();
  private readonly logs: WriteStream[] = [];

  private constructor(
    readonly dir: string,
    readonly address: string,
    ports: ReadonlyMap<NodeName, number>,
    transportArgs: LiveOptions['transportArgs'],
    /** Mutual TLS, as in production: the run's CA and certificates (testing/pki.ts). */
    private readonly pki: TestPki,
  ) {
    const logStream = (name: string) => {
      const s = createWriteStream(join(dir, 'logs', `${name}.log`), { flags: 'a' });
      this.logs.push(s);
      return s;
    };
    this.controller = new Program(
      'controller',
      'weir-controller',
      [
        '--manifests',
        join(dir, 'manifests'),
        '--listen',
        address,
        '--state-dir',
        join(dir, 'state', 'controller'),
        '--cluster',
        CLUSTER,
        '--tls-dir',
        pki.controller,
        ...(transportArgs?.controller ?? []),
      ],
      logStream('controller'),
    );
    for (const node of NODES) {
      const port = ports.get(node)!;
      this.agentPorts.set(node, port);
      this.agents.set(
        node,
        new Program(
          node,
          'weir-agent',
          [
            '--node',
            node,
            '--controller',
            address,
            '--state-dir',
            join(dir, 'state', node),
            '--listen',
            `127.0.0.1:${port}`,
            // Three agents share this host's network namespace: they must not
            // program its netfilter (the kernel datapath is tested in netns).
            '--datapath',
            'userspace',
            '--tls-dir',
            join(pki.dir, `node-${node}`),
            ...(transportArgs?.agent ?? []),
          ],
          logStream(node),
        ),
      );
    }
  }

  private get operatorTls(): CertificateFiles {
    const d = this.pki.operator('read-only');
    this.tls ??= new CertificateFiles(
      { cert: join(d, 'tls.crt'), key: join(d, 'tls.key'), ca: join(d, 'ca.crt') },
      { log: silentLogger },
    );
    return this.tls;
  }
  private tls: CertificateFiles | undefined;

  static async create(
    dir: string,
    transportArgs?: LiveOptions['transportArgs'],
    given?: TestPki,
  ): Promise<LiveSystem> {
    await mkdir(join(dir, 'logs'), { recursive: true });
    const address = `127.0.0.1:${await freePort()}`;
    const ports = new Map<NodeName, number>();
    for (const n of NODES) ports.set(n, await freePort());
    const pki = given ?? (await TestPki.create(join(dir, 'tls')));
    for (const n of NODES) await pki.node(n);
    return new LiveSystem(dir, address, ports, transportArgs, pki);
  }

  startController(): Promise<void> {
    return this.controller.start('controller serving');
  }

  async stopController(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    await this.controller.stop(signal);
  }

  async startAgent(node: NodeName): Promise<void> {
    await this.agents.get(node)!.start('agent API serving');
    this.agentClients.set(
      node,
      agentClient(`127.0.0.1:${this.agentPorts.get(node)}`, node, this.operatorTls),
    );
  }

  async stopAgent(node: NodeName, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.agentClients.get(node)?.close();
    this.agentClients.delete(node);
    await this.agents.get(node)!.stop(signal);
  }

  /** A fresh client per call: the controller restarts, and a channel's reconnect backoff would outlast it. */
  private async operator<Res>(
    f: (c: OperatorClient, o: { deadline: number }, cb: (e: Error | null, r?: Res) => void) => void,
  ): Promise<Res> {
    const c = operatorClient(this.address, this.operatorTls);
    try {
      return await unary<Res>((o, cb) => f(c, o, cb), 5_000);
    } finally {
      c.close();
    }
  }

  status(): Promise<StatusReply__Output> {
    return this.operator<StatusReply__Output>((c, o, cb) => c.GetStatus({}, o, cb));
  }

  async explain(req: ProbeRequest): Promise<{ revision: number; explanation: Explanation }> {
    const reply = await this.operator<ExplainReply__Output>((c, o, cb) => c.Explain(req, o, cb));
    return {
      revision: Number(reply.revision),
      explanation: JSON.parse(reply.explanationJson) as Explanation,
    };
  }

  async evaluate(
    node: NodeName,
    req: ProbeRequest,
  ): Promise<{ revision: number; explanation: Explanation }> {
    const c = this.agentClients.get(node);
    if (c === undefined) throw new Error(`${node} is not running`);
    const reply = await unary<ExplainReply__Output>((o, cb) => c.Evaluate(req, o, cb));
    return {
      revision: Number(reply.revision),
      explanation: JSON.parse(reply.explanationJson) as Explanation,
    };
  }

  agentStatus(node: NodeName): Promise<AgentStatusReply__Output> {
    const c = this.agentClients.get(node);
    if (c === undefined) return Promise.reject(new Error(`${node} is not running`));
    return unary<AgentStatusReply__Output>((o, cb) => c.GetAgentStatus({}, o, cb), 5_000);
  }

  async close(): Promise<void> {
    for (const c of this.agentClients.values()) c.close();
    this.agentClients.clear();
    await Promise.all([
      this.controller.stop('SIGKILL'),
      ...[...this.agents.values()].map((a) => a.stop('SIGKILL')),
    ]);
    await Promise.all(this.logs.map((s) => new Promise((resolve) => s.end(resolve))));
  }
}

// --- the sync proof ---------------------------------------------------------------

export interface SyncProof {
  readonly proven: boolean;
  /** What was waited for last, and what was seen. */
  readonly detail: string;
  readonly revision: number;
  readonly waitedMs: number;
  readonly status: StatusReply__Output | undefined;
}

function agentLine(a: StatusReply__Output['agents'][number]): string {
  return `${a.node || '(no node: pods without spec.nodeName)'}: ${a.connected ? 'connected' : 'NOT CONNECTED'}, applied ${a.appliedRevision}, span ${a.spanRevision}, ${a.inSync ? 'in sync' : 'NOT IN SYNC'}${a.pending ? ', update in flight' : ''}${a.lastError ? `, last error: ${a.lastError}` : ''}`;
}

async function proveSync(sys: LiveSystem, round: number, timeoutMs: number): Promise<SyncProof> {
  const t0 = Date.now();
  const end = t0 + timeoutMs;
  const canary: ProbeRequest = {
    from: CANARY_SRC.ip,
    to: CANARY_DST.ip,
    protocol: 'TCP',
    port: CANARY_PORT_BASE + round,
  };
  let detail = '';
  let status: StatusReply__Output | undefined;
  const poll = async <T>(what: string, check: () => Promise<T | undefined>) => {
    while (Date.now() < end) {
      try {
        const v = await check();
        if (v !== undefined) return v;
      } catch (err) {
        detail = `${what}: ${(err as Error).message}`;
      }
      await sleep(50);
    }
    return undefined;
  };
  // Allowed by this round's canary policy: not merely allowed (between rounds the
  // destination is not isolated, and everything is allowed).
  const byCanary = (d: DirectionExplanation) =>
    d.enforced &&
    d.allowed &&
    d.rule?.policy.namespace === CANARY_NAMESPACE &&
    d.rule.policy.name === canaryPolicyName(round);
  const fail = (): SyncProof => ({
    proven: false,
    detail,
    revision: Number(status?.revision ?? 0),
    waitedMs: Date.now() - t0,
    status,
  });

  const read = await poll('the controller to read the canary', async () => {
    const { revision, explanation } = await sys.explain(canary);
    detail = `the controller's Explain of the canary (TCP/${canary.port}) at revision ${revision}: ${describeDecision(decisionOf(explanation.ingress))}`;
    return byCanary(explanation.ingress) ? revision : undefined;
  });
  if (read === undefined) return fail();
  const applied = await poll(`${CANARY_DST.node} to enforce the canary`, async () => {
    const { revision, explanation } = await sys.evaluate(CANARY_DST.node, canary);
    detail = `${CANARY_DST.node}'s Evaluate of the canary (TCP/${canary.port}) at revision ${revision}: ${describeDecision(decisionOf(explanation.ingress))}`;
    return byCanary(explanation.ingress) ? revision : undefined;
  });
  if (applied === undefined) return fail();
  const synced = await poll('every agent in sync', async () => {
    status = await sys.status();
    const s = status;
    const agents = NODES.map((n) => s.agents.find((a) => a.node === n));
    detail = `status at revision ${s.revision} (the canary is in force at ${applied}): ${agents
      .map((a, i) => (a ? agentLine(a) : `${NODES[i]}: absent`))
      .join('; ')}`;
    const ok =
      Number(s.revision) >= applied &&
      s.source?.synced === true &&
      agents.every((a) => a?.connected && a.inSync);
    return ok ? Number(s.revision) : undefined;
  });
  if (synced === undefined) return fail();
  return { proven: true, detail, revision: synced, waitedMs: Date.now() - t0, status };
}

// --- the comparison ---------------------------------------------------------------

/** One side of a pair: a pod by one address it owns, a node's address, or an address outside the cluster. */
interface Peer {
  readonly label: string;
  readonly ip: string;
  readonly family: 4 | 6;
  /** Set for pods: the node whose agent enforces for it. */
  readonly node?: NodeName;
}

/** A direction's decision, as both sides are compared. */
interface Decision {
  readonly enforced: boolean;
  readonly endpoint: string;
  readonly allowed: boolean;
  readonly tier: string;
  readonly policies: readonly string[];
  readonly rule: string;
  /** ClusterNetworkPolicy Pass rules that handed the decision on, in order. */
  readonly passed: readonly string[];
}

function decisionOf(d: DirectionExplanation): Decision {
  const ref = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;
  return {
    enforced: d.enforced,
    endpoint: d.endpoint ?? '',
    allowed: d.allowed,
    tier: d.tier ?? '',
    policies: d.policies.map(ref),
    rule: d.rule ? `${ref(d.rule.policy)} ${d.rule.field}` : '',
    passed: (d.passed ?? []).map((x) => `${ref(x.policy)} ${x.field}`),
  };
}

function sameDecision(a: Decision, b: Decision): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function describeDecision(d: Decision): string {
  if (!d.enforced) return 'not enforced here';
  const verdict = d.allowed ? 'ALLOWED' : 'DENIED';
  const isolated = d.policies.length > 0 ? `isolated by ${d.policies.join(', ')}` : 'not isolated';
  const passed = d.passed.length > 0 ? `; passed by ${d.passed.join(', ')}` : '';
  return `${verdict} at ${d.endpoint} [${d.tier || '-'}] ${isolated}${d.rule ? `; rule ${d.rule}` : ''}${passed}`;
}

export interface Disagreement {
  readonly direction: 'egress' | 'ingress';
  readonly node: NodeName;
  readonly from: string;
  readonly to: string;
  readonly probe: string;
  readonly live: Decision;
  readonly offline: Decision;
  /** After the recheck (first failing round of a seed only): still different, or agreeing now. */
  recheck?: 'persists' | 'cleared';
}

export function describeDisagreement(d: Disagreement): string {
  return `${d.direction} at ${d.node}: ${d.from} -> ${d.to} ${d.probe}\n      agent:    ${describeDecision(d.live)}\n      analysis: ${describeDecision(d.offline)}${d.recheck ? `\n      recheck:  ${d.recheck}` : ''}`;
}

interface Cell {
  readonly direction: 'egress' | 'ingress';
  readonly node: NodeName;
  readonly from: Peer;
  readonly to: Peer;
  readonly probe: Probe;
  readonly offline: Decision;
}

/** Every cell the live system is asked about, with the analysis' answer. */
function cells(tables: RuleTables): Cell[] {
  const peers: Peer[] = [];
  for (const e of [...tables.endpoints.values()].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    const node = e.endpoint.node as NodeName;
    // The canary's pods are the sync proof, not cluster content: asking about them would cost a
    // fifth of every round's calls and test nothing the generated pods do not.
    if (!NODES.includes(node) || e.endpoint.namespace === CANARY_NAMESPACE) continue;
    const owned = new Set<4 | 6>();
    for (const text of e.endpoint.ips) {
      const ip = parseIp(text);
      const family = familyOf(ip);
      // The address belongs to another pod (the controller's tie-break), or the pod has one of this family already.
      if (tables.byIp.get(ip) !== e || owned.has(family)) continue;
      owned.add(family);
      peers.push({ label: `${e.key} (${text})`, ip: text, family, node });
    }
  }
  const others: Peer[] = [
    ...NODES.map((n) => ({
      label: `node ${n} (${NODE_ADDRESSES[n]})`,
      ip: NODE_ADDRESSES[n],
      family: 4 as const,
    })),
    ...EXTERNAL_ADDRESSES.map((ip) => ({
      label: `outside (${ip})`,
      ip,
      family: familyOf(parseIp(ip)),
    })),
  ];
  const out: Cell[] = [];
  const add = (from: Peer, to: Peer) => {
    const f = resolveTarget(tables, from.ip);
    const t = resolveTarget(tables, to.ip);
    if (typeof f === 'string' || typeof t === 'string')
      throw new Error(`unresolvable ${from.ip} or ${to.ip}`);
    for (const p of PROBES) {
      const x = probeTables(tables, f, t, p);
      if (from.node)
        out.push({
          direction: 'egress',
          node: from.node,
          from,
          to,
          probe: p,
          offline: decisionOf(x.egress),
        });
      if (to.node)
        out.push({
          direction: 'ingress',
          node: to.node,
          from,
          to,
          probe: p,
          offline: decisionOf(x.ingress),
        });
    }
  };
  for (const a of peers) {
    for (const b of peers)
      if (
        a !== b &&
        a.family === b.family &&
        a.node !== undefined &&
        b.label.split(' ')[0] !== a.label.split(' ')[0]
      )
        add(a, b);
    for (const o of others) {
      if (o.family !== a.family) continue;
      add(a, o);
      add(o, a);
    }
  }
  return out;
}

async function eachLimited<T>(items: readonly T[], limit: number, fn: (t: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    [...Array(Math.min(limit, items.length))].map(async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Asks each agent about its cells (one Evaluate per node, pair and probe, both directions from it). */
async function askAgents(sys: LiveSystem, cs: readonly Cell[]): Promise<Map<Cell, Decision>> {
  const calls = new Map<string, { node: NodeName; req: ProbeRequest; cells: Cell[] }>();
  for (const c of cs) {
    const k = `${c.node}|${c.from.ip}|${c.to.ip}|${c.probe.protocol}/${c.probe.port}`;
    let call = calls.get(k);
    if (call === undefined) {
      call = {
        node: c.node,
        req: { from: c.from.ip, to: c.to.ip, protocol: c.probe.protocol, port: c.probe.port },
        cells: [],
      };
      calls.set(k, call);
    }
    call.cells.push(c);
  }
  const out = new Map<Cell, Decision>();
  await eachLimited([...calls.values()], 24, async (call) => {
    const { explanation } = await sys.evaluate(call.node, call.req);
    for (const c of call.cells) out.set(c, decisionOf(explanation[c.direction]));
  });
  return out;
}

// --- a seed ---------------------------------------------------------------------

export interface RoundResult {
  readonly round: number;
  readonly changes: readonly string[];
  readonly disruption: string;
  readonly writes: number;
  readonly sync: SyncProof;
  readonly cells: number;
  /** Cells the analysis has decided by a ClusterNetworkPolicy tier or after a Pass: what the cluster policies exercised. */
  readonly clusterTierCells: number;
  readonly disagreements: readonly Disagreement[];
  /** Problems the offline analysis reported for the directory it read (the generator writes valid manifests, broken files aside). */
  readonly analysisIssues: readonly string[];
  readonly brokenFiles: readonly string[];
  readonly agentStatus: readonly string[];
  readonly ms: number;
}

export interface SeedResult {
  readonly options: LiveOptions;
  readonly rounds: readonly RoundResult[];
  /** Rounds with a disagreement, no proof of sync, or analysis issues. */
  readonly failing: readonly RoundResult[];
  readonly cells: number;
  readonly disagreements: number;
  readonly runDir: string;
  /** Set when the seed could not run at all (a process would not start). */
  readonly error?: string;
}

const failed = (r: RoundResult) =>
  !r.sync.proven || r.disagreements.length > 0 || r.analysisIssues.length > 0;

/** Runs one seed: starts the system, runs the rounds, stops everything; never throws for a disagreement. */
export async function runSeed(options: LiveOptions): Promise<SeedResult> {
  const skip = options.skip ?? new Set<Skippable>();
  const min = options.minChanges ?? DEFAULTS.minChanges;
  const max = options.maxChanges ?? DEFAULTS.maxChanges;
  const syncTimeoutMs = options.syncTimeoutMs ?? DEFAULTS.syncTimeoutMs;
  const maxFailing = options.maxFailingRounds ?? DEFAULTS.maxFailingRounds;
  const progress = options.progress ?? (() => {});
  const runDir = await mkdtemp(join(tmpdir(), `weir-live-${options.seed}-`));
  const manifests = join(runDir, 'manifests');
  const shadow = join(runDir, 'last-valid');
  const cluster = new RandomCluster(options.seed, skip);
  const rounds: RoundResult[] = [];
  let sys: LiveSystem | undefined;
  let error: string | undefined;
  let rechecked = false;
  const abort = () => void sys?.close();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    sys = await LiveSystem.create(runDir, options.transportArgs, options.pki);
    let onDisk: ReadonlyMap<string, string> = cluster.render(true, 0);
    await writeTree(manifests, onDisk);
    await sys.startController();
    await Promise.all(NODES.map((n) => sys!.startAgent(n)));
    for (let round = 0; round <= options.rounds; round++) {
      if (options.signal?.aborted)
        throw new Error(`stopped before round ${round}: ${options.signal.reason}`);
      const t0 = Date.now();
      const changes: string[] = [];
      let disruption = 'none';
      let writes = 0;
      if (round > 0) {
        const p = planRound(cluster, round, onDisk, { skip, min, max });
        changes.push(...p.changes);
        disruption = p.disruption.text;
        const d = p.disruption;
        const at =
          d.at === 'before' ? 0 : d.at === 'midway' ? Math.floor(p.body.length / 2) : p.body.length;
        // The previous canary goes first, this round's last (see the sync proof).
        await rm(join(manifests, canaryFile(round - 1)), { force: true });
        for (let i = 0; i <= p.body.length; i++) {
          if (i === at && d.kind !== 'none') await stopFor(sys, d);
          if (i < p.body.length) await perform(manifests, p.body[i]!);
        }
        await perform(manifests, p.canary);
        if (d.kind !== 'none') await startFor(sys, d);
        writes = p.body.length + 1;
        onDisk = p.files;
      }
      const sync = await proveSync(sys, round, syncTimeoutMs);
      // The analysis of the same directory, or of the last valid versions while a file is broken.
      let analysed = manifests;
      if (cluster.broken.size > 0) {
        await writeTree(shadow, cluster.render(false, round));
        analysed = shadow;
      }
      const tOffline = Date.now();
      const analysis = await analyse([analysed], { cluster: CLUSTER });
      const analysisIssues = analysis.issues.map((i) =>
        [i.source, i.object, i.field, i.message].filter(Boolean).join(': '),
      );
      const cs = cells(analysis.tables);
      const tLive = Date.now();
      const live = await askAgents(sys, cs);
      const liveMs = Date.now() - tLive;
      const offlineMs = tLive - tOffline;
      let disagreements: Disagreement[] = cs
        .filter((c) => !sameDecision(live.get(c)!, c.offline))
        .map((c) => ({
          direction: c.direction,
          node: c.node,
          from: c.from.label,
          to: c.to.label,
          probe: `${c.probe.protocol}/${c.probe.port}`,
          live: live.get(c)!,
          offline: c.offline,
        }));
      const agentStatus: string[] = [];
      if (disagreements.length > 0 || !sync.proven) {
        const s = await sys.status().catch(() => undefined);
        for (const a of s?.agents ?? []) agentStatus.push(`controller says ${agentLine(a)}`);
        for (const n of NODES) {
          const a = await sys.agentStatus(n).catch((e: Error) => e);
          agentStatus.push(
            a instanceof Error
              ? `${n} says: ${a.message}`
              : `${n} says: applied ${a.appliedRevision}, ${a.policies} policies, ${a.localEndpoints} local endpoints, ${a.controllerConnected ? 'connected' : 'not connected'}${a.lastError ? `, last error: ${a.lastError}` : ''}`,
          );
        }
      }
      if (disagreements.length > 0 && !rechecked) {
        // Diagnosis, not a retry: the round has failed whatever the recheck says. Longer than
        // the manifest source's 5 s rescan, so a late read shows as "cleared".
        rechecked = true;
        await sleep(6_000);
        const wrong = cs.filter((c) => !sameDecision(live.get(c)!, c.offline));
        const again = await askAgents(sys, wrong);
        disagreements = disagreements.map((d, i) => ({
          ...d,
          recheck: sameDecision(again.get(wrong[i]!)!, wrong[i]!.offline) ? 'cleared' : 'persists',
        }));
      }
      const result: RoundResult = {
        round,
        changes,
        disruption,
        writes,
        sync,
        cells: cs.length,
        clusterTierCells: cs.filter(
          (c) =>
            c.offline.tier === 'admin' ||
            c.offline.tier === 'baseline' ||
            c.offline.passed.length > 0,
        ).length,
        disagreements,
        analysisIssues,
        brokenFiles: [...cluster.broken.keys()],
        agentStatus,
        ms: Date.now() - t0,
      };
      rounds.push(result);
      if (result.disagreements.length > 0)
        await appendFile(
          join(runDir, 'disagreements.txt'),
          `seed ${options.seed} round ${round} (${reproduceCommand(options, round)}):\n${result.disagreements.map((d) => `  ${describeDisagreement(d)}`).join('\n')}\n`,
        );
      progress(
        `seed ${options.seed} round ${round}/${options.rounds}: ${changes.length} change(s), ${writes} write(s), disruption ${disruption}; ${sync.proven ? `in sync at revision ${sync.revision} after ${sync.waitedMs} ms` : 'NO PROOF OF SYNC'}; ${cs.length} cells (${result.clusterTierCells} decided by a cluster tier or after a Pass; analysis ${offlineMs} ms, agents ${liveMs} ms), ${disagreements.length} disagreement(s); ${result.ms} ms`,
      );
      if (!sync.proven) break;
      if (rounds.filter(failed).length >= maxFailing) break;
    }
  } catch (err) {
    error = (err as Error).stack ?? String(err);
  } finally {
    options.signal?.removeEventListener('abort', abort);
    await sys?.close();
    if (!options.keep && rounds.every((x) => !failed(x)) && error === undefined)
      await rm(runDir, { recursive: true, force: true });
  }
  return {
    options,
    rounds,
    failing: rounds.filter(failed),
    cells: rounds.reduce((s, x) => s + x.cells, 0),
    disagreements: rounds.reduce((s, x) => s + x.disagreements.length, 0),
    runDir,
    ...(error !== undefined ? { error } : {}),
  };
}

/** What one round does, decided by the seed alone: made before anything is written, so that a dry run shows it. */
export interface RoundPlan {
  readonly round: number;
  readonly changes: readonly string[];
  /** File operations in order; the previous canary's deletion (first) and this round's canary (last) are apart. */
  readonly body: readonly FileOp[];
  readonly canary: FileOp;
  readonly disruption: Disruptive;
  /** The directory after the round. */
  readonly files: ReadonlyMap<string, string>;
}

/** At most one disruption a round: an agent or the controller stopped before, between or after the writes, and started again after them. */
export type Disruptive =
  | { readonly kind: 'none'; readonly text: string; readonly at: 'after' }
  | {
      readonly kind: 'restart-agent';
      readonly node: NodeName;
      readonly signal: 'SIGTERM' | 'SIGKILL';
      readonly at: 'before' | 'midway' | 'after';
      readonly text: string;
    }
  | {
      readonly kind: 'restart-controller';
      readonly signal: 'SIGTERM' | 'SIGKILL';
      readonly at: 'before' | 'midway' | 'after';
      readonly text: string;
    };

/** Applies a round's changes to the cluster and plans its writes and its disruption. */
export function planRound(
  cluster: RandomCluster,
  round: number,
  onDisk: ReadonlyMap<string, string>,
  o: { skip: ReadonlySet<Skippable>; min: number; max: number },
): RoundPlan {
  const r = cluster.r;
  cluster.beginRound();
  const changes: string[] = [];
  const k = o.min + r.int(o.max - o.min + 1);
  for (let i = 0; i < k; i++) {
    const c = cluster.change();
    if (c !== undefined) changes.push(c);
  }
  const files = cluster.render(true, round);
  const ops = plan(r, onDisk, files, cluster.touched, o.skip);
  const canary = ops.find((x) => x.path === canaryFile(round))!;
  const body = ops.filter((x) => x.path !== canaryFile(round - 1) && x.path !== canaryFile(round));
  const disruption = pickDisruption(r, o.skip, cluster.broken.size > 0);
  return {
    round,
    changes,
    body,
    // Always by rename: the canary is never seen half-written.
    canary: { ...canary, mode: 'rename', pauseMs: 0 },
    disruption,
    files,
  };
}

function pickDisruption(
  r: SeededRandom,
  skip: ReadonlySet<Skippable>,
  broken: boolean,
): Disruptive {
  const x = r.next();
  const at = r.pick(['before', 'midway', 'after'] as const);
  const signal = r.chance(0.5) ? 'SIGKILL' : 'SIGTERM';
  const node = r.pick(NODES);
  if (x < 0.18 && !skip.has('restart-agent'))
    return {
      kind: 'restart-agent',
      node,
      signal,
      at,
      text: `restart-agent ${node} (${signal} ${at} the writes)`,
    };
  // Never while a file is broken: a fresh controller cannot know a version it never read.
  if (x >= 0.18 && x < 0.28 && !skip.has('restart-controller') && !broken)
    return {
      kind: 'restart-controller',
      signal,
      at,
      text: `restart-controller (${signal} ${at} the writes)`,
    };
  return { kind: 'none', text: 'none', at: 'after' };
}

function stopFor(sys: LiveSystem, d: Disruptive): Promise<void> {
  if (d.kind === 'restart-agent') return sys.stopAgent(d.node, d.signal);
  if (d.kind === 'restart-controller') return sys.stopController(d.signal);
  return Promise.resolve();
}

function startFor(sys: LiveSystem, d: Disruptive): Promise<void> {
  if (d.kind === 'restart-agent') return sys.startAgent(d.node);
  if (d.kind === 'restart-controller') return sys.startController();
  return Promise.resolve();
}

/** The rounds of a seed as they would run, without processes: `npm run soak -- --dry-run`. */
export function dryRun(o: LiveOptions): RoundPlan[] {
  const skip = o.skip ?? new Set<Skippable>();
  const cluster = new RandomCluster(o.seed, skip);
  let onDisk: ReadonlyMap<string, string> = cluster.render(true, 0);
  const plans: RoundPlan[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const p = planRound(cluster, round, onDisk, {
      skip,
      min: o.minChanges ?? DEFAULTS.minChanges,
      max: o.maxChanges ?? DEFAULTS.maxChanges,
    });
    plans.push(p);
    onDisk = p.files;
  }
  return plans;
}

function describePlan(p: RoundPlan): string {
  const ops = p.body.map((x) => `${x.type === 'write' ? x.mode : x.type} ${x.path}`).join(', ');
  return [
    `round ${p.round}: disruption ${p.disruption.text}`,
    ...p.changes.map((c) => `  - ${c}`),
    `  files: ${ops || '(none)'}; then the canary`,
  ].join('\n');
}

// --- reports --------------------------------------------------------------------

/**
 * Disagreements grouped by where they are decided (direction, node, the pod
 * whose table decides) and by the pair of answers, most cells first, with
 * examples: one wrong policy list shows as one group, not hundreds of cells.
 */
export function groupedDisagreements(ds: readonly Disagreement[], maxGroups = 10): string[] {
  const groups = new Map<string, Disagreement[]>();
  for (const d of ds) {
    const subject =
      d.live.endpoint || d.offline.endpoint || (d.direction === 'egress' ? d.from : d.to);
    const k = `${d.direction} at ${d.node} for ${subject}\n      agent:    ${describeDecision(d.live)}\n      analysis: ${describeDecision(d.offline)}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [d]);
    else g.push(d);
  }
  const sorted = [...groups].sort((a, b) => b[1].length - a[1].length);
  const lines = [`  ${ds.length} disagreeing cell(s) in ${groups.size} group(s):`];
  for (const [k, g] of sorted.slice(0, maxGroups)) {
    const examples = g
      .slice(0, 3)
      .map((d) => `${d.from} -> ${d.to} ${d.probe}`)
      .join('; ');
    const recheck = g.every((d) => d.recheck === undefined)
      ? ''
      : `\n      recheck:  ${g.filter((d) => d.recheck === 'persists').length} persist, ${g.filter((d) => d.recheck === 'cleared').length} cleared`;
    lines.push(`    ${k}${recheck}\n      ${g.length} cell(s), e.g. ${examples}`);
  }
  if (sorted.length > maxGroups)
    lines.push(`    ... and ${sorted.length - maxGroups} more group(s)`);
  return lines;
}

/** Everything needed to understand and reproduce a seed's failures; '' when it passed. */
export function formatFailures(s: SeedResult, maxGroups = 10): string {
  const lines: string[] = [];
  if (s.error) lines.push(`seed ${s.options.seed}: could not run: ${s.error}`);
  for (const r of s.failing) {
    lines.push(
      `seed ${s.options.seed} round ${r.round}: ${r.disagreements.length} of ${r.cells} cells disagree${r.sync.proven ? '' : '; NO PROOF OF SYNC'}`,
      `  reproduce: ${reproduceCommand(s.options, r.round)} (timing is the processes' own: add --repeat 10 if it passes)`,
      `  sync: ${r.sync.proven ? 'proven' : 'not proven'} after ${r.sync.waitedMs} ms: ${r.sync.detail}`,
      `  changes of round ${r.round} (disruption: ${r.disruption}):`,
      ...(r.round === 0 ? ['    - the initial cluster'] : r.changes.map((c) => `    - ${c}`)),
    );
    if (r.brokenFiles.length > 0)
      lines.push(`  broken files (last valid versions expected): ${r.brokenFiles.join(', ')}`);
    for (const i of r.analysisIssues) lines.push(`  analysis issue: ${i}`);
    for (const a of r.agentStatus) lines.push(`  ${a}`);
    if (r.disagreements.length > 0) lines.push(...groupedDisagreements(r.disagreements, maxGroups));
  }
  if (lines.length > 0)
    lines.push(
      `  every disagreeing cell: ${join(s.runDir, 'disagreements.txt')}; logs, manifests and state: ${s.runDir}`,
    );
  return lines.join('\n');
}

// --- npm run soak ------------------------------------------------------------------

const SOAK_USAGE = `usage: npm run soak -- [--seed N] [--seeds N] [--rounds N] [--changes MIN-MAX]
                      [--skip KIND,...] [--no-restarts] [--no-invalid-edits] [--keep]
                      [--max-failing-rounds N] [--sync-timeout-ms N] [--dry-run] [--repeat N]
  --seed N               the first seed (default 1; env WEIR_SOAK_SEED)
  --seeds N              how many seeds, from the first (default 5; env WEIR_SOAK_SEEDS)
  --rounds N             rounds of changes per seed (default 50; env WEIR_SOAK_ROUNDS)
  --changes MIN-MAX      changes per round (default ${DEFAULTS.minChanges}-${DEFAULTS.maxChanges})
  --skip KIND,...        for diagnosis: kinds of change, disruption or write not to make (env WEIR_SOAK_SKIP):
                         ${SKIPPABLE.join(', ')}
  --no-restarts          --skip restart-agent,restart-controller
  --no-invalid-edits     --skip invalid-edit
  --keep                 keep every run directory (manifests, state, logs), not only failing ones
  --dry-run              print each round's changes, writes and disruption; start nothing
  --repeat N             run each seed up to N times, until it fails: the changes are the seed's, the
                         timing is the processes' own, so a failure may need a few runs to show again
Exits 1 when any round disagrees or cannot prove sync.
`;

async function soak(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: 'string', default: process.env.WEIR_SOAK_SEED ?? '1' },
      seeds: { type: 'string', default: process.env.WEIR_SOAK_SEEDS ?? '5' },
      rounds: { type: 'string', default: process.env.WEIR_SOAK_ROUNDS ?? '50' },
      changes: { type: 'string' },
      skip: { type: 'string', default: process.env.WEIR_SOAK_SKIP ?? '' },
      'no-restarts': { type: 'boolean' },
      'no-invalid-edits': { type: 'boolean' },
      keep: { type: 'boolean' },
      'max-failing-rounds': { type: 'string' },
      'sync-timeout-ms': { type: 'string' },
      'dry-run': { type: 'boolean' },
      repeat: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(SOAK_USAGE);
    return 0;
  }
  const int = (text: string, flag: string, lowest = 0) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < lowest)
      throw new Error(`${flag} must be an integer >= ${lowest}, not ${JSON.stringify(text)}`);
    return n;
  };
  const skip = new Set<Skippable>();
  for (const k of values.skip!.split(',').filter(Boolean)) {
    if (!(SKIPPABLE as readonly string[]).includes(k))
      throw new Error(`--skip: ${JSON.stringify(k)} is not one of ${SKIPPABLE.join(', ')}`);
    skip.add(k as Skippable);
  }
  if (values['no-restarts']) for (const d of DISRUPTIONS) skip.add(d);
  if (values['no-invalid-edits']) skip.add('invalid-edit');
  let minChanges: number | undefined;
  let maxChanges: number | undefined;
  if (values.changes !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(values.changes);
    if (m === null || Number(m[1]) > Number(m[2]))
      throw new Error(`--changes must be MIN-MAX, not ${JSON.stringify(values.changes)}`);
    minChanges = Number(m[1]);
    maxChanges = Number(m[2]);
  }
  const first = int(values.seed!, '--seed');
  const seeds = int(values.seeds!, '--seeds', 1);
  const rounds = int(values.rounds!, '--rounds');
  if (values['dry-run']) {
    for (let seed = first; seed < first + seeds; seed++) {
      process.stdout.write(`seed ${seed}\n`);
      for (const p of dryRun({ seed, rounds, minChanges, maxChanges, skip }))
        process.stdout.write(`${describePlan(p)}\n`);
    }
    return 0;
  }
  const repeat = int(values.repeat!, '--repeat', 1);
  const results: SeedResult[] = [];
  const t0 = Date.now();
  for (let run = 0, seed = first; seed < first + seeds; run++) {
    if (run > 0) process.stdout.write(`seed ${seed}: run ${run + 1} of ${repeat}\n`);
    const result = await runSeed({
      seed,
      rounds,
      ...(minChanges !== undefined ? { minChanges, maxChanges } : {}),
      skip,
      keep: values.keep ?? false,
      ...(values['max-failing-rounds'] !== undefined
        ? { maxFailingRounds: int(values['max-failing-rounds'], '--max-failing-rounds', 1) }
        : {}),
      ...(values['sync-timeout-ms'] !== undefined
        ? { syncTimeoutMs: int(values['sync-timeout-ms'], '--sync-timeout-ms', 1) }
        : {}),
      progress: (line) => process.stdout.write(`${line}\n`),
    });
    results.push(result);
    const report = formatFailures(result);
    if (report) process.stdout.write(`${report}\n`);
    // The next seed after `repeat` runs, or at this seed's first failing run.
    if (run + 1 >= repeat || report) {
      seed++;
      run = -1;
    }
  }
  const failing = results.flatMap((s) => s.failing.map((r) => ({ s, r })));
  const errors = results.filter((s) => s.error);
  process.stdout.write(
    `\nsummary: ${seeds} seed(s) in ${results.length} run(s), ${results.reduce((n, s) => n + s.rounds.length, 0)} round(s), ${results.reduce((n, s) => n + s.cells, 0)} cells, ${results.reduce((n, s) => n + s.disagreements, 0)} disagreement(s), ${failing.length} failing round(s), ${errors.length} seed(s) that could not run; ${Math.round((Date.now() - t0) / 1000)} s\n`,
  );
  for (const { s, r } of failing)
    process.stdout.write(
      `  seed ${s.options.seed} round ${r.round}: ${r.disagreements.length} disagreement(s)${r.sync.proven ? '' : ', no proof of sync'}: ${reproduceCommand(s.options, r.round)}\n`,
    );
  return failing.length > 0 || errors.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  soak(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`${err.message}\n\n${SOAK_USAGE}`);
      process.exit(2);
    },
  );
}
