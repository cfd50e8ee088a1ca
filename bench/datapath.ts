/**
 * Userspace datapath benchmark: `node --import tsx bench/datapath.ts [--quick]`,
 * or `benchDatapath()` from bench/run.ts.
 *
 *   policy    a generated cluster (testing/random-cluster.ts) sized to about
 *             10,000 firewall rules, compiled with every pod local and every
 *             pod attached as a zone: a pod-to-pod first packet is decided at
 *             both gates (the slow path's worst case)
 *   packets   Ethernet frames built from the verdict benchmark's probe mix
 *             (bench/probes.ts: pod to pod, pod to outside, outside to pod;
 *             TCP, UDP, SCTP), one distinct flow per probe
 *   1. parse         the packet decoder alone, per packet
 *   2. slow path     first packets into an empty flow table: decode, a fast
 *                    path miss, the policy evaluator, insert, account
 *   3. fast path     the same flows again, half of them replies: decode and
 *                    accountBatch only
 *   4. re-evaluation loading equal tables with every flow in the table
 *
 * Batches of 256 packets. Rows per flow table implementation (native, and
 * TypeScript) and, for the slow path, per evaluator (RuleTables, and the
 * native VerdictEngine when it loads). One core; the machine is shared, so
 * each section reports how busy the rest of it was. Timings never fail the
 * run; a verdict that disagrees with RuleTables.decide throws.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Ip } from '../shared/net/ip.js';
import type { Packet, RuleTables } from '../shared/policy/rule-tables.js';
import { build } from '../testing/cluster.js';
import {
  createVerdictEngine,
  nativeRuleEvaluator,
  type VerdictEngineFactory,
} from '../vrouter-agent/compile/verdict-engine.js';
import {
  createUserspaceDatapath,
  RawPacketBatch,
  verdictName,
  type UserspaceDatapath,
} from '../vrouter-agent/datapath/index.js';
import { nativeFlowTableAvailability, TcpFlag } from '../vrouter-agent/flows/index.js';
import { buildPacket, PacketDecoder } from '../vrouter-agent/packet/index.js';
import { realisticCluster } from '../testing/random-cluster.js';
import {
  acquireGc,
  cpuModel,
  int,
  MachineLoad,
  median,
  ms,
  nowMs,
  ns,
  rate,
  table,
} from './measure.js';
import { generateProbes } from './probes.js';

const BATCH = 256;
/** Namespaces for about 10,000 firewall rules (10 policies, ~11.5 rules per namespace). */
const NAMESPACES = 870;

export interface DatapathBenchOptions {
  /** Fewer flows and passes, for trying changes. */
  readonly quick?: boolean;
}

interface Traffic {
  /** First packets, one per flow, and their zones. */
  readonly first: Uint8Array[];
  readonly firstZones: number[];
  /** Established traffic over the same flows: forward packets and replies, alternating, with zones. */
  readonly established: Uint8Array[];
  readonly establishedZones: number[];
  /** RuleTables.decide's verdict of each first packet: 'allow', 'policy-egress' or 'policy-ingress'. */
  readonly expected: string[];
}

const PROTOCOL_NAME: Record<number, 'tcp' | 'udp' | 'sctp'> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

function traffic(
  tables: RuleTables,
  probes: readonly Packet[],
  zoneOf: ReadonlyMap<Ip, number>,
): Traffic {
  const t: Traffic = {
    first: [],
    firstZones: [],
    established: [],
    establishedZones: [],
    expected: [],
  };
  let sport = 1024;
  for (const p of probes) {
    const zone = zoneOf.get(p.src) ?? zoneOf.get(p.dst);
    if (zone === undefined || p.src === p.dst) continue;
    const protocol = PROTOCOL_NAME[p.protocol];
    if (protocol === undefined) continue;
    const s = 1024 + (sport++ % 64_000);
    const v = tables.decide(p);
    t.expected.push(v.allowed ? 'allow' : !v.egress.allowed ? 'policy-egress' : 'policy-ingress');
    t.first.push(
      buildPacket({
        src: p.src,
        dst: p.dst,
        protocol,
        sport: s,
        dport: p.dstPort,
        tcpFlags: TcpFlag.syn,
        payload: 0,
      }),
    );
    t.firstZones.push(zone);
    t.established.push(
      buildPacket({
        src: p.src,
        dst: p.dst,
        protocol,
        sport: s,
        dport: p.dstPort,
        tcpFlags: TcpFlag.ack,
        payload: 512,
      }),
    );
    t.establishedZones.push(zone);
    t.established.push(
      buildPacket({
        src: p.dst,
        dst: p.src,
        protocol,
        sport: p.dstPort,
        dport: s,
        tcpFlags: TcpFlag.ack,
        payload: 1024,
      }),
    );
    t.establishedZones.push(zoneOf.get(p.dst) ?? zone);
  }
  return t;
}

/** Runs packets [from, to) through the datapath in batches; returns the verdict names when asked. */
function feed(
  dp: UserspaceDatapath,
  packets: readonly Uint8Array[],
  zones: readonly number[],
  from: number,
  to: number,
  batch: RawPacketBatch,
  verdicts?: string[],
): void {
  for (let i = from; i < to; i += BATCH) {
    batch.clear();
    const end = Math.min(to, i + BATCH);
    for (let k = i; k < end; k++) batch.push(packets[k]!, zones[k]!);
    const v = dp.process(batch);
    if (verdicts !== undefined)
      for (let k = 0; k < v.count; k++) verdicts.push(verdictName(v.verdicts[k]!));
  }
}

export async function benchDatapath(options: DatapathBenchOptions = {}): Promise<string> {
  const quick = options.quick ?? false;
  const FLOWS = quick ? 50_000 : 200_000;
  const REPS = quick ? 2 : 5;
  const FAST_BUDGET_MS = quick ? 400 : 1500;
  const lines: string[] = [];
  const say = (s = '') => lines.push(s);
  const heading = (s: string) => say(`\n== ${s} ${'='.repeat(Math.max(0, 74 - s.length))}\n`);
  const gc = acquireGc();
  const native = nativeFlowTableAvailability();
  const nativeEngine = nativeRuleEvaluator();
  const loadNote = (load: MachineLoad) => {
    const other = load.otherCpus();
    if (other !== undefined)
      say(
        `\n  other processes kept ${other.toFixed(1)} of ${os.availableParallelism()} CPUs busy meanwhile${other >= 1 ? ' (CONTENDED: numbers are pessimistic)' : ''}`,
      );
  };

  heading('Userspace datapath');
  say(`  ${cpuModel()}, Node ${process.version}, one core`);
  say(
    `  flow tables: native ${native.available ? 'loaded' : `unavailable (${native.reason})`}; TypeScript`,
  );
  say(
    `  native verdict engine: ${nativeEngine.evaluator ? 'loaded' : `unavailable (${nativeEngine.reason})`}`,
  );

  const t0 = nowMs();
  const cluster = realisticCluster(NAMESPACES);
  const built = build(cluster.objects, 'bench');
  const tables = built.tables;
  const firewallRules = built.snapshot.policies.reduce((n, p) => n + p.rules.length, 0);
  const zoneOf = new Map<Ip, number>();
  let zone = 1;
  const attach: Array<{ zone: number; endpoint: string; ips: readonly Ip[] }> = [];
  for (const e of tables.endpoints.values()) {
    attach.push({ zone, endpoint: e.key, ips: e.ips });
    for (const ip of e.ips) zoneOf.set(ip, zone);
    zone++;
  }
  const tableSizes = [...tables.endpoints.values()].flatMap((e) => [
    e.egress.rules.length,
    e.ingress.rules.length,
  ]);
  const probes = generateProbes(cluster, Math.ceil(FLOWS * 1.1));
  const all = traffic(tables, probes, zoneOf);
  const n = Math.min(FLOWS, all.first.length);
  const allowedShare = all.expected.slice(0, n).filter((v) => v === 'allow').length / n;
  say(
    `  policy: ${int(cluster.namespaceCount)} namespaces, ${int(built.snapshot.policies.length)} NetworkPolicies, ${int(firewallRules)} firewall rules`,
  );
  say(
    `  local endpoints (all pods, each a zone): ${int(tables.endpoints.size)}; rules per endpoint and direction: median ${median(tableSizes)}, max ${Math.max(...tableSizes)}`,
  );
  say(
    `  traffic: ${int(n)} flows, ${(allowedShare * 100).toFixed(0)}% of them allowed (the rest are deny flows, dropped on the fast path);`,
  );
  say(
    `  first packets are ${all.first[0]!.length}-byte frames, established ones carry 512 (forward) and 1024 (reply) bytes; built in ${ms(nowMs() - t0)}`,
  );

  const make = (
    implementation: 'native' | 'typescript',
    verdictEngine?: VerdictEngineFactory,
  ): UserspaceDatapath => {
    const dp = createUserspaceDatapath({
      tables,
      expireIntervalMs: 0,
      flowTable: { implementation, maxFlows: 262_144, maxFlowsPerZone: 262_144 },
      ...(verdictEngine ? { verdictEngine } : {}),
    });
    for (const a of attach) dp.attach(a);
    return dp;
  };
  const impls = [...(native.available ? (['native'] as const) : []), 'typescript' as const];

  heading('1. Parse');
  let load = new MachineLoad();
  {
    const d = new PacketDecoder();
    const passes: number[] = [];
    let sink = 0;
    const WARMUP = 3;
    for (let r = 0; r < REPS + WARMUP; r++) {
      const start = nowMs();
      for (let i = 0; i < n; i++)
        sink += d.decode(all.established[i]!, all.established[i]!.length, 'ethernet');
      if (r >= WARMUP) passes.push(((nowMs() - start) * 1e6) / n);
    }
    const HOT = 1024;
    const hot: number[] = [];
    for (let r = 0; r < REPS + WARMUP; r++) {
      const start = nowMs();
      for (let k = 0; k < n; k++) {
        const f = all.established[k & (HOT - 1)]!;
        sink += d.decode(f, f.length, 'ethernet');
      }
      if (r >= WARMUP) hot.push(((nowMs() - start) * 1e6) / n);
    }
    if (sink !== 0) throw new Error('the benchmark frames should all decode');
    say(`  PacketDecoder.decode, ${WARMUP} warm-up passes, then ${REPS} (median; best pass):\n`);
    say(
      table([
        ['frames', 'per packet', 'packets/s', 'best pass'],
        [
          `${int(HOT)} frames, cycled (in cache: the decoder's own cost)`,
          ns(median(hot)),
          rate(1e9 / median(hot)),
          rate(1e9 / Math.min(...hot)),
        ],
        [
          `${int(n)} distinct frames (~${Math.round((n * 800) / 2 ** 20)} MiB: a cache miss per frame)`,
          ns(median(passes)),
          rate(1e9 / median(passes)),
          rate(1e9 / Math.min(...passes)),
        ],
      ]),
    );
    say(
      '\n  The rest of the benchmark feeds distinct frames, as a NIC ring refilled by DMA would: each first touch misses.',
    );
  }
  loadNote(load);

  heading('2. Slow path: first packets');
  say(
    `  ${int(n)} first packets of distinct flows into an empty table, batches of ${BATCH}; each pass a fresh datapath;`,
  );
  say(
    `  a warm-up pass, then ${REPS}: the median and the best. Every verdict checked against RuleTables.decide.\n`,
  );
  load = new MachineLoad();
  const slowRows: string[][] = [
    ['flow table', 'evaluator', 'first packets/s, median', 'best pass', 'per packet (median)'],
  ];
  const evaluators: Array<{ name: string; factory: VerdictEngineFactory | undefined }> = [
    { name: 'RuleTables', factory: undefined },
    ...(nativeEngine.evaluator
      ? [
          {
            name: 'native VerdictEngine',
            factory: (t: RuleTables) => createVerdictEngine(t, { implementation: 'native' }),
          },
        ]
      : []),
  ];
  const slowRate = new Map<string, number>();
  for (const impl of impls) {
    for (const ev of evaluators) {
      const rates: number[] = [];
      for (let r = 0; r <= REPS; r++) {
        const dp = make(impl, ev.factory);
        const batch = new RawPacketBatch();
        gc?.();
        const verdicts: string[] | undefined = r === 0 ? [] : undefined;
        const start = nowMs();
        feed(dp, all.first, all.firstZones, 0, n, batch, verdicts);
        const elapsed = nowMs() - start;
        if (verdicts !== undefined) {
          for (let i = 0; i < n; i++) {
            if (verdicts[i] !== all.expected[i])
              throw new Error(
                `${impl}/${ev.name}: first packet ${i} got ${verdicts[i]}, RuleTables.decide says ${all.expected[i]}`,
              );
          }
        }
        if (r > 0) rates.push((n * 1000) / elapsed);
        await dp[Symbol.asyncDispose]();
      }
      const m = median(rates);
      slowRate.set(`${impl}/${ev.name}`, m);
      slowRows.push([impl, ev.name, rate(m), rate(Math.max(...rates)), ns(1e9 / m)]);
    }
  }
  say(table(slowRows));
  loadNote(load);

  heading('3. Fast path: established flows');
  say(
    `  the ${int(n)} flows in the table, then their packets again (alternately forward and reply, 512/1024-byte payloads),`,
  );
  say(
    `  batches of ${BATCH}, a warm-up pass, then cycling for ${FAST_BUDGET_MS} ms per pass; the median of ${REPS} passes and the best.\n`,
  );
  load = new MachineLoad();
  const fastRows: string[][] = [
    ['flow table', 'packets/s, median', 'best pass', 'per packet', 'vs slow path'],
  ];
  const reeval: string[][] = [['flow table', 'flows', 'loadTables (equal tables)', 'per flow']];
  for (const impl of impls) {
    const dp = make(impl);
    const batch = new RawPacketBatch();
    feed(dp, all.first, all.firstZones, 0, n, batch);
    const verdicts: string[] = [];
    feed(dp, all.established, all.establishedZones, 0, 2 * n, batch, verdicts);
    for (let i = 0; i < 2 * n; i++) {
      if (verdicts[i] !== all.expected[i >> 1])
        throw new Error(
          `${impl}: established packet ${i} got ${verdicts[i]}, its flow's first packet ${all.expected[i >> 1]}`,
        );
    }
    const before = dp.stats().slowPath.evaluated;
    const rates: number[] = [];
    feed(dp, all.established, all.establishedZones, 0, 2 * n, batch);
    for (let r = 0; r < REPS; r++) {
      let done = 0;
      let offset = 0;
      const start = nowMs();
      let now = start;
      while (now - start < FAST_BUDGET_MS) {
        const to = Math.min(2 * n, offset + BATCH * 16);
        feed(dp, all.established, all.establishedZones, offset, to, batch);
        done += to - offset;
        offset = to >= 2 * n ? 0 : to;
        now = nowMs();
      }
      rates.push((done * 1000) / (now - start));
    }
    if (dp.stats().slowPath.evaluated !== before)
      throw new Error(`${impl}: established packets reached the slow path`);
    const m = median(rates);
    fastRows.push([
      impl,
      rate(m),
      rate(Math.max(...rates)),
      ns(1e9 / m),
      `${(m / slowRate.get(`${impl}/RuleTables`)!).toFixed(1)}x`,
    ]);
    gc?.();
    const start = nowMs();
    const result = dp.loadTables(tables);
    const elapsed = nowMs() - start;
    if (result.checked !== n || result.unchanged !== n)
      throw new Error(
        `${impl}: re-evaluating equal tables changed flows: ${JSON.stringify(result)}`,
      );
    reeval.push([impl, int(result.checked), ms(elapsed), ns((elapsed * 1e6) / n)]);
    await dp[Symbol.asyncDispose]();
  }
  say(table(fastRows));
  say('\n  every established packet took its flow verdict; none reached the slow path');
  loadNote(load);

  heading('4. Re-evaluation on a policy load');
  say(
    `  loadTables with every flow in the table: walk the table, decide each flow again, compare, rewrite ids where they changed.\n`,
  );
  say(table(reeval));

  say(
    '\n  What the numbers include: per packet, decoding the frame and packing a 48-byte flow record (fast path), plus',
  );
  say(
    '  zone checks, a policy record, the evaluator, FlowTable.insert and a second accountBatch (slow path). They do not',
  );
  say(
    '  include getting packets into the process (no sockets, no copies): this is the engine, not a NIC.',
  );
  say(
    `\n  load average at the end: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} CPUs (other processes share this machine)`,
  );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await benchDatapath({ quick: process.argv.includes('--quick') })}\n`);
}
