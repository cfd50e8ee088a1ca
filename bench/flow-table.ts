/**
 * Flow table benchmark: `node --import tsx bench/flow-table.ts [--quick]`, or
 * `benchFlowTable()` from bench/run.ts.
 *
 *   1. fill      1,000,000 flow pairs (80% IPv4, 20% IPv6; TCP, UDP, ICMP;
 *                1,000 zones) into the native table, the TypeScript table and
 *                a JavaScript Map baseline; insert rates and memory per flow
 *   2. lookups   1,000,000 uniformly random probes (half of them replies) —
 *                the worst case for caches — looked up in batches from packed
 *                records: native vs the TypeScript table vs the Map baseline,
 *                on one core; every result checked against the baseline
 *   3. scaling   lookup cost at 1,000 / 10,000 / 100,000 / 1,000,000 flows
 *
 * The Map baseline is what a JavaScript datapath would write: a Map from a key
 * string (zone, protocol, addresses, ports) to the flow, with one entry per
 * direction, the key built from each packet's fields. A second row gives the
 * Map its best case, the key strings built beforehand.
 *
 * Targets: >= 10 M lookups/s on one core with 1 M flows; >= 5x the Map
 * baseline; <= 128 bytes per flow (native memory / flow pairs). Timings never
 * fail the run; a wrong lookup result throws.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import {
  icmpPorts,
  NativeFlowTable,
  nativeFlowTableAvailability,
  FLOW_KEY_RECORD_BYTES,
  RESULT_MISS,
  TypeScriptFlowTable,
  writeFlowKey,
  type FlowKey,
  type FlowTable,
} from '../vrouter-agent/flows/index.js';
import { replyKey } from '../testing/flow-key.js';
import { acquireGc, int, median, mib, nowMs, ns, rate, table, cpuModel } from './measure.js';
import { seededRandom } from '../shared/random.js';

const TARGET_LOOKUPS_PER_S = 10_000_000;
const TARGET_VS_MAP = 5;
const TARGET_BYTES_PER_FLOW = 128;
const BATCH = 256;

export interface FlowTableBenchOptions {
  /** Fewer probes and passes, for trying changes. */
  readonly quick?: boolean;
}

/**
 * `n` flow keys, deterministic. Random over large spaces (sources in
 * 10.0.0.0/8's lower half, destinations in its upper half, 64 random bits of
 * IPv6), so duplicates are practically impossible; fill() throws if one
 * occurs.
 */
function generateKeys(n: number, seed: number): FlowKey[] {
  const rng = seededRandom(seed);
  const keys: FlowKey[] = [];
  const ports = [80, 443, 53, 8080, 5432, 6379, 9092, 3306];
  const v6 = () => (0xfd00n << 112n) | (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
  for (let i = 0; i < n; i++) {
    const zone = 1 + (i % 1000);
    const six = rng.chance(0.2);
    const p = rng.next();
    const protocol = p < 0.7 ? 6 : p < 0.95 ? 17 : six ? 58 : 1;
    const src = six ? v6() : 0x0a000000 + (rng.u32() & 0x7fffff);
    const dst = six ? v6() : 0x0a800000 + (rng.u32() & 0x7fffff);
    keys.push(
      protocol === 1 || protocol === 58
        ? { zone, protocol, src, dst, ...icmpPorts(six ? 128 : 8, rng.int(65536), six ? 6 : 4) }
        : { zone, protocol, src, dst, sport: 1024 + rng.int(64512), dport: rng.pick(ports) },
    );
  }
  return keys;
}

// ---- the Map baseline ---------------------------------------------------------

/** The key string a JavaScript datapath would build from a flow-key record. */
function mapKey(v: DataView, o: number): string {
  const family = v.getUint8(o + 9);
  const proto = v.getUint8(o + 8);
  const zone = v.getUint32(o, true);
  const sport = v.getUint16(o + 4, true);
  const dport = v.getUint16(o + 6, true);
  if (family === 4)
    return `${zone}|${proto}|${v.getUint32(o + 16)}|${v.getUint32(o + 32)}|${sport}|${dport}`;
  return `${zone}|${proto}|${v.getUint32(o + 16)}:${v.getUint32(o + 20)}:${v.getUint32(o + 24)}:${v.getUint32(o + 28)}|${v.getUint32(o + 32)}:${v.getUint32(o + 36)}:${v.getUint32(o + 40)}:${v.getUint32(o + 44)}|${sport}|${dport}`;
}

class MapBaseline {
  /** Key string → index * 2 + direction. */
  readonly map = new Map<string, number>();
  private readonly record = new Uint8Array(FLOW_KEY_RECORD_BYTES);
  private readonly view = new DataView(this.record.buffer);

  keyOf(k: FlowKey): string {
    writeFlowKey(this.record, 0, k);
    return mapKey(this.view, 0);
  }

  insert(k: FlowKey, index: number): void {
    this.map.set(this.keyOf(replyKey(k)), index * 2 + 1);
    this.map.set(this.keyOf(k), index * 2);
  }

  /** Results as index * 2 + direction, or -1. */
  lookupBatch(packets: Uint8Array, count: number, results: Int32Array): number {
    const v = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
    let hits = 0;
    for (let i = 0; i < count; i++) {
      const r = this.map.get(mapKey(v, i * FLOW_KEY_RECORD_BYTES));
      results[i] = r ?? -1;
      if (r !== undefined) hits++;
    }
    return hits;
  }

  lookupPrebuilt(
    keys: readonly string[],
    from: number,
    count: number,
    results: Int32Array,
  ): number {
    let hits = 0;
    for (let i = 0; i < count; i++) {
      const r = this.map.get(keys[from + i]!);
      results[i] = r ?? -1;
      if (r !== undefined) hits++;
    }
    return hits;
  }
}

// ---- measuring ------------------------------------------------------------------

interface Probes {
  readonly count: number;
  readonly packets: Uint8Array;
  /** For each probe, the flow's index * 2 + direction. */
  readonly expected: Int32Array;
}

function makeProbes(
  keys: readonly FlowKey[],
  indices: Int32Array,
  count: number,
  seed: number,
): Probes {
  const rng = seededRandom(seed);
  const packets = new Uint8Array(count * FLOW_KEY_RECORD_BYTES);
  const expected = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const j = rng.int(keys.length);
    const dir = rng.chance(0.5) ? 1 : 0;
    writeFlowKey(packets, i, dir ? replyKey(keys[j]!) : keys[j]!, 64 + rng.int(1400), 0x10);
    expected[i] = indices[j]! * 2 + dir;
  }
  return { count, packets, expected };
}

/** Batch views over the probes, made once so that timing excludes them. */
function batches(p: Probes, size: number, results: Int32Array): Array<[Uint8Array, Int32Array]> {
  const out: Array<[Uint8Array, Int32Array]> = [];
  for (let o = 0; o < p.count; o += size) {
    const n = Math.min(size, p.count - o);
    out.push([
      p.packets.subarray(o * FLOW_KEY_RECORD_BYTES, (o + n) * FLOW_KEY_RECORD_BYTES),
      results.subarray(o, o + n),
    ]);
  }
  return out;
}

interface Rate {
  /** Lookups per second: the median pass, and the best (what the core does when nothing else runs). */
  readonly rate: number;
  readonly best: number;
}

/** One warm-up pass, then `reps` timed passes. */
function timePasses(count: number, reps: number, pass: () => number): Rate & { hits: number } {
  let hits = pass();
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = nowMs();
    hits = pass();
    rates.push((count * 1000) / (nowMs() - t0));
  }
  return { rate: median(rates), best: Math.max(...rates), hits };
}

function timeTableBatches(
  t: FlowTable,
  p: Probes,
  size: number,
  reps: number,
  account = false,
): Rate & { results: Int32Array } {
  const results = new Int32Array(p.count);
  const views = batches(p, size, results);
  let now = 1;
  const r = timePasses(p.count, reps, () => {
    let h = 0;
    now++;
    if (account) for (const [pk, r] of views) h += t.accountBatch(pk, r.length, now, r);
    else for (const [pk, r] of views) h += t.lookupBatch(pk, r.length, r);
    return h;
  });
  return { rate: r.rate, best: r.best, results };
}

function timeMap(m: MapBaseline, p: Probes, reps: number): Rate & { results: Int32Array } {
  const results = new Int32Array(p.count);
  const views = batches(p, BATCH, results);
  const r = timePasses(p.count, reps, () => {
    let h = 0;
    for (const [pk, res] of views) h += m.lookupBatch(pk, res.length, res);
    return h;
  });
  return { rate: r.rate, best: r.best, results };
}

function timeMapPrebuilt(m: MapBaseline, p: Probes, reps: number): Rate {
  const v = new DataView(p.packets.buffer, p.packets.byteOffset, p.packets.byteLength);
  const keys = Array.from({ length: p.count }, (_, i) => mapKey(v, i * FLOW_KEY_RECORD_BYTES));
  const results = new Int32Array(BATCH);
  return timePasses(p.count, reps, () => {
    let h = 0;
    for (let o = 0; o < p.count; o += BATCH)
      h += m.lookupPrebuilt(keys, o, Math.min(BATCH, p.count - o), results);
    return h;
  });
}

/** Checks table result words against the expected index * 2 + direction; throws on the first difference. */
function check(
  label: string,
  results: Int32Array,
  p: Probes,
  wordToPair: (r: number) => number,
): void {
  for (let i = 0; i < p.count; i++) {
    const got = results[i] === RESULT_MISS ? -1 : wordToPair(results[i]!);
    if (got !== p.expected[i])
      throw new Error(`${label}: probe ${i} gave ${got}, expected ${p.expected[i]}`);
  }
}

const nativeWordToPair = (r: number) => (r >> 3) * 2 + (r & 1);

function fill(t: FlowTable, keys: readonly FlowKey[]): { ms: number; indices: Int32Array } {
  const indices = new Int32Array(keys.length);
  const t0 = nowMs();
  for (let i = 0; i < keys.length; i++) {
    const r = t.insert(
      keys[i]!,
      { action: 'allow', egress: { policyId: 1, ruleId: i & 0xffff } },
      0,
    );
    if (r.outcome !== 'created')
      throw new Error(`${t.implementation}: insert ${i} ${JSON.stringify(r)}`);
    indices[i] = r.index;
  }
  return { ms: nowMs() - t0, indices };
}

function fillMap(keys: readonly FlowKey[], indices: Int32Array): { ms: number; map: MapBaseline } {
  const map = new MapBaseline();
  const t0 = nowMs();
  for (let i = 0; i < keys.length; i++) map.insert(keys[i]!, indices[i]!);
  return { ms: nowMs() - t0, map };
}

const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
/** A ratio to one decimal, or '-' when a side was not measured. */
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)}x` : '-');

// ---- the report -------------------------------------------------------------------

export async function benchFlowTable(options: FlowTableBenchOptions = {}): Promise<string> {
  const quick = options.quick ?? false;
  const lines: string[] = [];
  const say = (s = '') => lines.push(s);
  const heading = (s: string) => say(`\n== ${s} ${'='.repeat(Math.max(0, 74 - s.length))}\n`);
  const gc = acquireGc();
  const N = 1_000_000;
  const PROBES = quick ? 300_000 : 1_000_000;
  /** The JavaScript implementations take ~2 µs a lookup: fewer probes keep the run short, rates stay comparable. */
  const SLOW_PROBES = quick ? 100_000 : 250_000;
  const REPS = quick ? 3 : 7;
  const native = nativeFlowTableAvailability();

  say('Weir flow table benchmark');
  say(
    `node ${process.version} (${process.platform}/${process.arch}), ${os.availableParallelism()} CPUs (${cpuModel()}), ` +
      `load average ${os.loadavg()[0]!.toFixed(2)}; one thread; ${quick ? '--quick; ' : ''}native table: ${native.available ? 'yes' : 'NO'} (${native.reason})`,
  );

  heading(`1. Fill: ${int(N)} flow pairs`);
  const t0 = nowMs();
  const keys = generateKeys(N, 1);
  say(
    `  ${int(N)} distinct keys (80% IPv4 / 20% IPv6; 70% TCP, 25% UDP, 5% ICMP; 1,000 zones) generated in ${(nowMs() - t0).toFixed(0)} ms\n`,
  );

  gc?.();
  let nt: NativeFlowTable | undefined;
  let nativeFill: { ms: number; indices: Int32Array } | undefined;
  let nativeBytesPerFlow = NaN;
  if (native.available) {
    nt = new NativeFlowTable({ maxFlows: N, maxFlowsPerZone: N });
    nativeFill = fill(nt, keys);
    nativeBytesPerFlow = nt.stats().bytesAllocated / N;
  }
  const indices = nativeFill?.indices ?? Int32Array.from({ length: N }, (_, i) => i);

  gc?.();
  let heap0 = process.memoryUsage().heapUsed;
  const mapFill = fillMap(keys, indices);
  gc?.();
  const mapBytes = process.memoryUsage().heapUsed - heap0;

  gc?.();
  heap0 = process.memoryUsage().heapUsed;
  const tsTable = new TypeScriptFlowTable({ maxFlows: N, maxFlowsPerZone: N });
  const tsFill = fill(tsTable, keys);
  gc?.();
  const tsBytes = process.memoryUsage().heapUsed - heap0 + tsTable.stats().bytesAllocated;
  for (let i = 0; i < N; i += 9973) {
    if (tsFill.indices[i] !== indices[i])
      throw new Error(
        `TypeScript table put flow ${i} at ${tsFill.indices[i]}, native at ${indices[i]}`,
      );
  }

  say(
    table([
      ['table', 'fill time', 'inserts/s', 'memory', 'bytes per flow'],
      [
        'native (C++)',
        nativeFill ? `${nativeFill.ms.toFixed(0)} ms` : '-',
        nativeFill ? rate((N * 1000) / nativeFill.ms) : '-',
        native.available ? `${mib(nativeBytesPerFlow * N)} mapped, outside the heap` : '-',
        native.available ? nativeBytesPerFlow.toFixed(1) : '-',
      ],
      [
        'TypeScript table',
        `${tsFill.ms.toFixed(0)} ms`,
        rate((N * 1000) / tsFill.ms),
        `${mib(tsBytes)} heap + arrays${gc ? '' : ' (no gc: rough)'}`,
        (tsBytes / N).toFixed(0),
      ],
      [
        'Map baseline',
        `${mapFill.ms.toFixed(0)} ms`,
        rate((N * 1000) / mapFill.ms),
        `${mib(mapBytes)} heap${gc ? '' : ' (no gc: rough)'}`,
        (mapBytes / N).toFixed(0),
      ],
    ]),
  );
  say(
    '\n  Native bytes per flow: the flow records (112 B each) and the hash slots (8 B each, 4/3 per flow) mapped',
  );
  say(
    '  for maxFlows = 1,000,000 (all of it touched once the table is full), divided by the 1,000,000 flow pairs',
  );
  say(
    '  held; each pair is a forward and a reverse entry. TypeScript and Map: heap growth after a full gc.',
  );
  say('  Inserts are single slow-path calls (one key object packed and sent across per insert).');

  heading(`2. Lookups with ${int(N)} flows (one core)`);
  const probes = makeProbes(keys, indices, PROBES, 2);
  const slowProbes: Probes = {
    count: SLOW_PROBES,
    packets: probes.packets,
    expected: probes.expected,
  };
  say(
    `  ${int(PROBES)} probes (${int(SLOW_PROBES)} for the JavaScript implementations), uniformly random flows, half of them`,
  );
  say(
    `  replies; batches of ${BATCH} packed records unless noted; one warm-up pass, then ${REPS} timed passes: the median`,
  );
  say('  pass, and the best one (the core undisturbed by the other processes on this machine).\n');
  gc?.();
  const map = timeMap(mapFill.map, slowProbes, REPS);
  check('Map baseline', map.results, slowProbes, (r) => r);
  const mapPrebuilt = timeMapPrebuilt(mapFill.map, slowProbes, REPS);
  const ts = timeTableBatches(tsTable, slowProbes, BATCH, REPS);
  check('TypeScript table', ts.results, slowProbes, nativeWordToPair);
  const rows: string[][] = [
    ['implementation', 'lookups/s, median', 'best pass', 'per lookup', 'vs Map baseline'],
  ];
  const row = (label: string, r: Rate) =>
    rows.push([label, rate(r.rate), rate(r.best), ns(1e9 / r.rate), times(r.rate / map.rate)]);
  let nativeRate: Rate = { rate: NaN, best: NaN };
  if (nt) {
    const main = timeTableBatches(nt, probes, BATCH, REPS);
    check('native table', main.results, probes, nativeWordToPair);
    nativeRate = main;
    row(`native lookupBatch, batch ${BATCH}`, main);
    for (const size of [1, 16, 64, 1024]) {
      const count = size === 1 ? Math.min(PROBES, 200_000) : PROBES;
      const sub: Probes = { count, packets: probes.packets, expected: probes.expected };
      row(`native lookupBatch, batch ${size}`, timeTableBatches(nt, sub, size, REPS));
    }
    const single = {
      count: Math.min(PROBES, 100_000),
      packets: probes.packets,
      expected: probes.expected,
    };
    const pickRng = seededRandom(3);
    const singleKeys = Array.from({ length: single.count }, () => keys[pickRng.int(keys.length)]!);
    row(
      'native lookup(key), one call per packet',
      timePasses(single.count, REPS, () =>
        singleKeys.reduce((h, k) => h + (nt!.lookup(k) ? 1 : 0), 0),
      ),
    );
    const acc = timeTableBatches(nt, probes, BATCH, REPS, true);
    check('native accountBatch', acc.results, probes, nativeWordToPair);
    row(`native accountBatch, batch ${BATCH}`, acc);
  }
  row(`TypeScript table lookupBatch, batch ${BATCH}`, ts);
  row('Map baseline (key built per packet)', map);
  row('Map baseline, keys prebuilt (its best case)', mapPrebuilt);
  say(table(rows));
  say(
    `\n  every result checked: each probe found its own flow, in its direction, in every implementation`,
  );
  tsTable.close();

  heading('3. Scaling: lookup cost by table size (one core)');
  const scaleRows: string[][] = [
    [
      'flows',
      'native, batch 256 (best pass)',
      'Map baseline (best pass)',
      'native vs Map',
      'native bytes/flow',
    ],
  ];
  const scaling: Array<{ n: number; native: number; map: number }> = [];
  for (const n of [1_000, 10_000, 100_000, N]) {
    let nativeN = NaN;
    let mapN: number;
    let bytes = NaN;
    if (n === N) {
      nativeN = nativeRate.best;
      mapN = map.best;
      bytes = nativeBytesPerFlow;
    } else {
      const ks = keys.slice(0, n);
      let idx: Int32Array = Int32Array.from({ length: n }, (_, i) => i);
      if (native.available) {
        const t = new NativeFlowTable({ maxFlows: n, maxFlowsPerZone: n });
        idx = fill(t, ks).indices;
        const p = makeProbes(ks, idx, PROBES, 4);
        const r = timeTableBatches(t, p, BATCH, REPS);
        check(`native table at ${n}`, r.results, p, nativeWordToPair);
        nativeN = r.best;
        bytes = t.stats().bytesAllocated / n;
        t.close();
      }
      const m = fillMap(ks, idx).map;
      mapN = timeMap(m, makeProbes(ks, idx, SLOW_PROBES, 4), REPS).best;
    }
    scaling.push({ n, native: nativeN, map: mapN });
    scaleRows.push([
      int(n),
      `${ns(1e9 / nativeN)} (${rate(nativeN)})`,
      `${ns(1e9 / mapN)} (${rate(mapN)})`,
      times(nativeN / mapN),
      Number.isFinite(bytes) ? bytes.toFixed(1) : '-',
    ]);
  }
  say(table(scaleRows));
  const first = scaling[0]!;
  const last = scaling[scaling.length - 1]!;
  if (native.available) {
    say(
      `\n  native lookup cost grows ${times(first.native / last.native)} from 1,000 to 1,000,000 flows (cache and TLB misses: the`,
    );
    say(
      `  1 M-flow table is ~${mib(nativeBytesPerFlow * N)}, far beyond the caches); the Map baseline's grows ${times(first.map / last.map)}.`,
    );
  }
  nt?.close();

  heading('Targets (judged on median passes)');
  const nr = nativeRate.rate;
  say(
    `  >= ${rate(TARGET_LOOKUPS_PER_S)} lookups per core with 1 M flows: ${met(nr >= TARGET_LOOKUPS_PER_S)} (native, batch ${BATCH}: ${rate(nr)} median, ${rate(nativeRate.best)} best)`,
  );
  say(
    `  >= ${TARGET_VS_MAP}x the Map baseline: ${met(nr / map.rate >= TARGET_VS_MAP)} (${times(nr / map.rate)}; ${times(nr / mapPrebuilt.rate)} against the Map with prebuilt keys)`,
  );
  say(
    `  <= ${TARGET_BYTES_PER_FLOW} bytes per flow: ${met(nativeBytesPerFlow <= TARGET_BYTES_PER_FLOW)} (${Number.isFinite(nativeBytesPerFlow) ? nativeBytesPerFlow.toFixed(1) : '-'} bytes per flow pair)`,
  );
  if (!native.available)
    say('  (the native addon is not loaded: the native targets cannot be met in this run)');
  say(
    `\n  load average at the end: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} CPUs (other processes share this machine)`,
  );
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await benchFlowTable({ quick: process.argv.includes('--quick') })}\n`);
}
