/**
 * An agent under a large span applying one small change (issue 13): a real
 * NodeAgent, fed through an in-process ControllerTransport, holding a span
 * of ~10,000 firewall rules (every pod of the benchmarks' realistic cluster
 * on the agent's node: ~8,600 local endpoints, each a zone) and 1,000,000
 * established flows in the userspace datapath (native flow table and
 * verdict engine when the addon loads), at 1×, 2×, 4× and 8×
 * (1.25k rules / 125k flows up to 10k rules / 1M flows).
 *
 * Two deltas, each as the controller would send it (the changed objects of
 * the span, diffed from the span before and after):
 *   - one pod: a pod on another node starts with the labels of an existing
 *     replica, so it joins that replica's address groups;
 *   - one policy: one NetworkPolicy's port changes.
 *
 * For each: time from delivery to ACK, the time the agent spent
 * re-evaluating flows and how many it re-evaluated, the longest event-loop
 * stall while flows were re-evaluated and over the whole update (a 1 ms
 * timer chain: a gap is the longest the loop did not get a turn), and the
 * CPU time. Each mode runs on a fresh agent with the same span and flows:
 * 'full' is the path every update took before (compile, then every flow
 * decided again in one synchronous call); 'incremental' re-evaluates only
 * the flows of endpoints whose compiled tables changed, in slices that give
 * the event loop a turn.
 *
 * Runnable alone: node --import tsx bench/agent-update.ts [--quick] [--scales=1,2,4,8]
 *   [--modes=full,incremental]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type {
  ControllerMessage,
  ControllerMessage__Output,
  SpanUpdate__Output,
} from '../shared/generated/weir/v1/index.js';
import { weirProto } from '../shared/grpc/proto.js';
import { silentLogger } from '../shared/log.js';
import type { Ip } from '../shared/net/ip.js';
import { snapshotToWire } from '../shared/wire/policy.js';
import { build, type Raw } from '../testing/cluster.js';
import { realisticCluster } from '../testing/random-cluster.js';
import { NodeAgent, type AgentOptions } from '../vrouter-agent/agent.js';
import { createVerdictEngine } from '../vrouter-agent/compile/verdict-engine.js';
import {
  createUserspaceDatapath,
  type Datapath,
  RawPacketBatch,
  type UserspaceDatapath,
} from '../vrouter-agent/datapath/index.js';
import { TcpFlag } from '../vrouter-agent/flows/index.js';
import { buildPacket } from '../vrouter-agent/packet/index.js';
import type {
  AgentHello,
  ControllerTransport,
  Delivery,
} from '../vrouter-agent/transport/transport.js';
import { acquireGc, GcMonitor, int, MachineLoad, ms, nowMs, table } from './measure.js';
import { generateProbes } from './probes.js';

const NODE = 'bench-node';
const OTHER_NODE = 'other-node';
/** Namespaces per 1×: ~1,250 firewall rules (11.6 per 10 namespaces in the realistic cluster). */
const NAMESPACES_PER_SCALE = 108;
const FLOWS_PER_SCALE = 125_000;

export type ReevaluationMode = 'full' | 'incremental';

/** Deliveries handed over in process, answered by callbacks: the agent's side of a transport without a network. */
class InProcessTransport implements ControllerTransport {
  readonly peer = 'in-process';
  connected = true;
  private readonly queue: Delivery[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  deliver(d: Delivery): void {
    this.queue.push(d);
    this.wake?.();
  }

  async *updates(hello: () => AgentHello): AsyncIterable<Delivery> {
    hello();
    while (!this.closed) {
      const d = this.queue.shift();
      if (d !== undefined) {
        yield d;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    this.wake?.();
  }
}

/** A ControllerMessage through the wire codec: the __Output form the agent receives. */
function viaWire(update: NonNullable<ControllerMessage['update']>): SpanUpdate__Output {
  const method = (weirProto().definition['weir.v1.ControlPlane'] as grpc.ServiceDefinition)
    .Connect!;
  const bytes = method.responseSerialize({ update } satisfies ControllerMessage);
  return (method.responseDeserialize(bytes) as ControllerMessage__Output).update!;
}

/** The span (every pod on NODE unless it says otherwise) as the wire snapshot. */
function spanOf(objects: readonly Raw[]): ReturnType<typeof snapshotToWire> {
  return snapshotToWire(build(objects, 'bench').snapshot);
}

type WireSnapshot = ReturnType<typeof snapshotToWire>;

/** The delta from `a` to `b` as the controller sends it: changed and new objects, removed ids. */
function delta(a: WireSnapshot, b: WireSnapshot, revision: number): SpanUpdate__Output {
  const diff = <T>(
    xs: readonly T[] | undefined,
    ys: readonly T[] | undefined,
    id: (x: T) => string,
  ) => {
    const before = new Map((xs ?? []).map((x) => [id(x), JSON.stringify(x)]));
    const after = new Map((ys ?? []).map((y) => [id(y), y]));
    const changed = [...after]
      .filter(([k, y]) => before.get(k) !== JSON.stringify(y))
      .map(([, y]) => y);
    const removed = [...before.keys()].filter((k) => !after.has(k));
    return { changed, removed };
  };
  const p = diff(a.policies, b.policies, (x) => String(x.id));
  const g = diff(a.addressGroups, b.addressGroups, (x) => String(x.id));
  const s = diff(a.serviceGroups, b.serviceGroups, (x) => String(x.id));
  const e = diff(a.endpoints, b.endpoints, (x) => `${x.namespace}/${x.name}`);
  return viaWire({
    revision: String(revision),
    baseRevision: String(revision - 1),
    snapshot: false,
    cluster: b.cluster ?? '',
    policies: p.changed,
    addressGroups: g.changed,
    serviceGroups: s.changed,
    endpoints: e.changed,
    removedPolicies: p.removed,
    removedAddressGroups: g.removed,
    removedServiceGroups: s.removed,
    removedEndpoints: e.removed,
    applicationPolicySet: b.applicationPolicySet ?? null,
  });
}

interface Workload {
  readonly namespaces: number;
  readonly rules: number;
  readonly policies: number;
  readonly endpoints: number;
  readonly snapshot: SpanUpdate__Output;
  readonly podChange: SpanUpdate__Output;
  readonly policyChange: SpanUpdate__Output;
  readonly podChangeObjects: number;
  readonly policyChangeObjects: number;
  readonly probes: ReturnType<typeof generateProbes>;
}

const count = (u: SpanUpdate__Output) =>
  u.policies.length +
  u.addressGroups.length +
  u.serviceGroups.length +
  u.endpoints.length +
  u.removedPolicies.length +
  u.removedAddressGroups.length +
  u.removedServiceGroups.length +
  u.removedEndpoints.length;

function workload(scale: number, flows: number): Workload {
  const namespaces = NAMESPACES_PER_SCALE * scale;
  const cluster = realisticCluster(namespaces);
  const local = (o: Raw): Raw =>
    o.kind === 'Pod' ? { ...o, spec: { ...(o.spec as object), nodeName: NODE } } : o;
  const objects = cluster.objects.map(local);
  const base = spanOf(objects);
  const rules = (base.policies ?? []).reduce((n, p) => n + (p.rules?.length ?? 0), 0);

  // One pod: a replica of an application pod starts on another node.
  // A pod of an application namespace halfway down the list (not kube-dns, whose address every endpoint's DNS rule holds).
  const apps = objects.filter(
    (o) =>
      o.kind === 'Pod' &&
      ((o.metadata as { labels?: Record<string, string> }).labels?.app ?? '') !== '' &&
      (o.status as { podIP?: string }).podIP !== undefined &&
      (o.status as { phase?: string }).phase === 'Running' &&
      (o.spec as { hostNetwork?: boolean }).hostNetwork !== true,
  );
  const template = apps[Math.floor(apps.length / 2)]!;
  const replica = structuredClone(template) as Raw & {
    metadata: { name: string };
    spec: { nodeName: string };
    status: { podIP: string; podIPs: { ip: string }[] };
  };
  replica.metadata.name = `${replica.metadata.name}-replica`;
  replica.spec.nodeName = OTHER_NODE;
  replica.status.podIP = '10.250.0.7';
  replica.status.podIPs = [{ ip: '10.250.0.7' }];
  const withPod = spanOf([...objects, replica]);

  // One policy: the first numeric ingress port of a NetworkPolicy moves.
  const at = objects.findIndex((o) => {
    if (o.kind !== 'NetworkPolicy') return false;
    const port = (o.spec as { ingress?: { ports?: { port?: unknown }[] }[] }).ingress?.[0]
      ?.ports?.[0]?.port;
    return typeof port === 'number';
  });
  const changed = structuredClone(objects[at]!) as Raw & {
    spec: { ingress: { ports: { port: number }[] }[] };
  };
  changed.spec.ingress[0]!.ports[0]!.port += 1000;
  const withPolicy = spanOf([...objects.slice(0, at), changed, ...objects.slice(at + 1), replica]);

  const snapshot = viaWire({
    revision: '1',
    baseRevision: '0',
    snapshot: true,
    cluster: base.cluster ?? '',
    policies: base.policies ?? [],
    addressGroups: base.addressGroups ?? [],
    serviceGroups: base.serviceGroups ?? [],
    endpoints: base.endpoints ?? [],
    removedPolicies: [],
    removedAddressGroups: [],
    removedServiceGroups: [],
    removedEndpoints: [],
    applicationPolicySet: base.applicationPolicySet ?? null,
  });
  const podChange = delta(base, withPod, 2);
  const policyChange = delta(withPod, withPolicy, 3);
  return {
    namespaces,
    rules,
    policies: base.policies?.length ?? 0,
    endpoints: (base.endpoints ?? []).length,
    snapshot,
    podChange,
    policyChange,
    podChangeObjects: count(podChange),
    policyChangeObjects: count(policyChange),
    probes: generateProbes(cluster, Math.ceil(flows * 1.15)),
  };
}

const PROTOCOL_NAME: Record<number, 'tcp' | 'udp' | 'sctp'> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** Opens up to `flows` flows through the datapath (first packets in batches); returns how many it holds. */
function openFlows(dp: UserspaceDatapath, w: Workload, flows: number): number {
  const zoneOf = new Map<Ip, number>();
  for (const a of dp.attached()) for (const ip of a.ips) zoneOf.set(ip as Ip, a.zone);
  const batch = new RawPacketBatch();
  let sport = 1024;
  const target = () => dp.stats().flowTable.flows;
  for (const p of w.probes) {
    const zone = zoneOf.get(p.src) ?? zoneOf.get(p.dst);
    const protocol = PROTOCOL_NAME[p.protocol];
    if (zone === undefined || p.src === p.dst || protocol === undefined) continue;
    batch.push(
      buildPacket({
        src: p.src,
        dst: p.dst,
        protocol,
        sport: 1024 + (sport++ % 64_000),
        dport: p.dstPort,
        tcpFlags: TcpFlag.syn,
        payload: 0,
      }),
      zone,
    );
    if (batch.count === 256) {
      dp.process(batch);
      batch.clear();
      if (target() >= flows) break;
    }
  }
  if (batch.count > 0) dp.process(batch);
  return target();
}

/** Timestamps of a 1 ms timer chain: the gaps are the event loop's stalls. */
class LoopTicker {
  readonly ticks: number[] = [];
  private timer: NodeJS.Timeout | undefined;

  start(): void {
    const tick = () => {
      this.ticks.push(nowMs());
      this.timer = setTimeout(tick, 1);
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** The longest the loop went without a turn within [from, to] (from `from` to its first turn, then between turns). */
  longestGap(from: number, to: number): number {
    let longest = 0;
    let last = from;
    for (const t of this.ticks) {
      if (t < from) continue;
      longest = Math.max(longest, Math.min(t, to) - last);
      last = t;
      if (t > to) break;
    }
    return longest;
  }
}

interface Measured {
  readonly ackMs: number;
  readonly cpuMs: number;
  readonly reevalMs: number;
  /** The load's synchronous part: the verdict engine built for the new tables (and, full, every flow). */
  readonly loadSyncMs: number;
  readonly reevaluated: number;
  readonly stallInReevalMs: number;
  readonly stallMs: number;
  /** Garbage collection pauses that started while the walk ran (after the synchronous part). */
  readonly gcInWalkMs: number;
  readonly denied: number;
}

/** A policy load: called at `from`, returned (its synchronous part done: the new engine built, the first slice walked) at `returned`, done at `to`. */
interface Span {
  readonly from: number;
  readonly returned: number;
  readonly to: number;
}

/** The datapath with its policy loads timed (the agent calls it; the wrapper only watches). */
function timed(dp: Datapath, spans: Span[]): Datapath {
  return new Proxy(dp, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      if (prop === 'loadTables' || prop === 'reloadTables')
        return (...args: unknown[]) => {
          const from = nowMs();
          const out = (v as (...a: unknown[]) => unknown).apply(target, args);
          const returned = nowMs();
          if (out instanceof Promise)
            return out.finally(() => spans.push({ from, returned, to: nowMs() }));
          spans.push({ from, returned, to: returned });
          return out;
        };
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

async function deliver(t: InProcessTransport, update: SpanUpdate__Output): Promise<number> {
  const start = nowMs();
  return await new Promise<number>((resolve, reject) =>
    t.deliver({
      update,
      ack: () => resolve(nowMs() - start),
      nack: (error) => reject(new Error(`update ${update.revision} refused: ${error}`)),
    }),
  );
}

interface ScaleResult {
  readonly scale: number;
  readonly w: Omit<Workload, 'snapshot' | 'podChange' | 'policyChange' | 'probes'>;
  readonly flows: number;
  readonly setupMs: number;
  readonly modes: Array<{ mode: ReevaluationMode; pod: Measured; policy: Measured }>;
}

async function runScale(
  scale: number,
  flows: number,
  modes: readonly ReevaluationMode[],
): Promise<ScaleResult> {
  const t0 = nowMs();
  const w = workload(scale, flows);
  const gc = acquireGc();
  const results: ScaleResult['modes'] = [];
  const gcs = new GcMonitor();
  let held = 0;
  for (const mode of modes) {
    const dir = await mkdtemp(join(os.tmpdir(), 'weir-agent-bench-'));
    const transport = new InProcessTransport();
    const dp = createUserspaceDatapath({
      tables: build([], 'bench').tables,
      verdictEngine: (t) => createVerdictEngine(t),
      expireIntervalMs: 0,
      flowTable: { maxFlows: 1 << 21, maxFlowsPerZone: 1 << 21 },
    });
    const spans: Span[] = [];
    const options: AgentOptions = {
      node: NODE,
      controller: '',
      transport,
      stateDir: dir,
      tls: undefined,
      listen: '127.0.0.1:0',
      log: silentLogger,
      datapath: timed(dp, spans),
      reevaluation: mode,
    };
    const agent = new NodeAgent(options);
    try {
      await agent.start();
      await deliver(transport, w.snapshot);
      held = openFlows(dp, w, flows);
      const one = async (u: SpanUpdate__Output): Promise<Measured> => {
        gc?.();
        gcs.clear();
        const before = dp.stats().reevaluation;
        spans.length = 0;
        const ticker = new LoopTicker();
        ticker.start();
        const cpu0 = process.cpuUsage();
        const from = nowMs();
        const ackMs = await deliver(transport, u);
        const to = nowMs();
        const cpu = process.cpuUsage(cpu0);
        await new Promise((r) => setTimeout(r, 2));
        ticker.stop();
        await gcs.settle();
        const after = dp.stats().reevaluation;
        const span = spans.at(-1) ?? { from, returned: from, to: from };
        return {
          ackMs,
          cpuMs: (cpu.user + cpu.system) / 1000,
          reevalMs: span.to - span.from,
          loadSyncMs: span.returned - span.from,
          reevaluated: after.checked - before.checked,
          stallInReevalMs: ticker.longestGap(span.returned, span.to),
          stallMs: ticker.longestGap(from, to),
          denied: after.denied - before.denied,
          gcInWalkMs: gcs.pausedIn(span.returned, span.to),
        };
      };
      const pod = await one(w.podChange);
      const policy = await one(w.policyChange);
      results.push({ mode, pod, policy });
    } finally {
      await agent[Symbol.asyncDispose]();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const { snapshot: _s, podChange: _p, policyChange: _c, probes: _r, ...shape } = w;
  gcs.stop();
  return { scale, w: shape, flows: held, setupMs: nowMs() - t0, modes: results };
}

export interface AgentUpdateOptions {
  readonly quick?: boolean;
  readonly scales?: readonly number[];
  readonly modes?: readonly ReevaluationMode[];
}

export async function benchAgentUpdate(options: AgentUpdateOptions = {}): Promise<string> {
  const scales = options.scales ?? (options.quick ? [1, 2] : [1, 2, 4, 8]);
  const modes = options.modes ?? (['full', 'incremental'] as const);
  const flowsPer = options.quick ? FLOWS_PER_SCALE / 5 : FLOWS_PER_SCALE;
  const lines: string[] = [];
  const say = (s = '') => lines.push(s);
  const load = new MachineLoad();
  const results: ScaleResult[] = [];
  for (const s of scales) results.push(await runScale(s, flowsPer * s, modes));
  say(
    `  span: every pod of realisticCluster(${NAMESPACES_PER_SCALE}×scale) local to the agent; deltas diffed from the spans before and after`,
  );
  say(
    table([
      [
        'scale',
        'namespaces',
        'policies',
        'rules',
        'local endpoints',
        'flows',
        'pod delta objects',
        'policy delta objects',
        'setup',
      ],
      ...results.map((r) => [
        `${r.scale}×`,
        int(r.w.namespaces),
        int(r.w.policies),
        int(r.w.rules),
        int(r.w.endpoints),
        int(r.flows),
        int(r.w.podChangeObjects),
        int(r.w.policyChangeObjects),
        ms(r.setupMs),
      ]),
    ]),
  );
  say();
  const rows: string[][] = [
    [
      'scale',
      'change',
      'mode',
      'ACK',
      'CPU',
      'flows re-evaluated',
      'policy load',
      'of which synchronous',
      'longest stall after',
      'GC after',
      'longest stall',
      'flipped to deny',
    ],
  ];
  for (const r of results)
    for (const m of r.modes)
      for (const [change, x] of [
        ['one pod', m.pod],
        ['one policy', m.policy],
      ] as const)
        rows.push([
          `${r.scale}×`,
          change,
          m.mode,
          ms(x.ackMs),
          ms(x.cpuMs),
          int(x.reevaluated),
          ms(x.reevalMs),
          ms(x.loadSyncMs),
          x.reevalMs - x.loadSyncMs < 0.5 ? '-' : ms(x.stallInReevalMs),
          x.reevalMs - x.loadSyncMs < 0.5 ? '-' : ms(x.gcInWalkMs),
          ms(x.stallMs),
          int(x.denied),
        ]);
  say(table(rows));
  const growth: string[][] = [
    ['scale', ...modes.flatMap((m) => [`${m} pod ACK`, `${m} policy ACK`])],
  ];
  const first = results[0];
  for (const r of results)
    growth.push([
      `${r.scale}×`,
      ...r.modes.flatMap((m, i) => {
        const f = first!.modes[i]!;
        return [
          `${ms(m.pod.ackMs)} (${(m.pod.ackMs / f.pod.ackMs).toFixed(1)}×)`,
          `${ms(m.policy.ackMs)} (${(m.policy.ackMs / f.policy.ackMs).toFixed(1)}×)`,
        ];
      }),
    ]);
  say('\n  cost growth (ACK time, against 1×):\n');
  say(table(growth));
  const other = load.otherCpus();
  say(
    `\n  load average at the end: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} CPUs${other !== undefined ? `; other processes kept ${other.toFixed(1)} CPUs busy meanwhile` : ''}`,
  );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) =>
    process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const scales = arg('scales')?.split(',').map(Number);
  const modes = arg('modes')?.split(',') as ReevaluationMode[] | undefined;
  process.stdout.write(
    `${await benchAgentUpdate({ quick: process.argv.includes('--quick'), ...(scales ? { scales } : {}), ...(modes ? { modes } : {}) })}\n`,
  );
}
