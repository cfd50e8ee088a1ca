/**
 * Verdict throughput on one core.
 *
 * Part one, helpers for bench/run.ts: the compiled evaluator
 * (RuleTables.allows, the hot path, and RuleTables.decide, the full verdict)
 * and the naive reference evaluator from testing/reference.ts as the
 * baseline; and a differential check that they agree.
 *
 * Part two, benchVerdicts() (also `node --import tsx bench/verdicts.ts
 * [--quick]`): first-packet verdicts per second of the native verdict engine
 * (vrouter-agent/compile, native/src/rule_eval.cc), batched, against
 * RuleTables.allows in the same run and on the same probes:
 *
 *   1. headline   a realistic generated cluster (testing/random-cluster.ts) with
 *                 at least 10,000 firewall rules; native at batch sizes 1 to
 *                 4,096; the TypeScript engine; target: native > 1 M/s
 *   2. scaling    10 to 100,000 rules in two shapes, built through the real
 *                 pipeline: "spread" (rules over many policies, each
 *                 selecting its own pods: the per-endpoint tables stay small)
 *                 and "concentrated" (every rule in policies selecting the
 *                 same pods: one table holds them all); native indexed and
 *                 linear, and RuleTables.allows
 *
 * Every engine's verdicts are checked against RuleTables.decide() on a
 * sample of the timed probes (not timed); a disagreement throws. Timings
 * never fail the run; the target is reported as met or not.
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { formatIp } from '../shared/net/ip.js';
import type { DirectionDecision, Packet, RuleTables } from '../shared/policy/rule-tables.js';
import type { ReferenceCluster } from '../testing/reference.js';
import { build, namespace, networkPolicy, pod, type Raw } from '../testing/cluster.js';
import {
  POLICY_RECORD_BYTES,
  RESULT_STRIDE,
  VerdictCode,
  encodePolicyRecords,
} from '../vrouter-agent/compile/policy-record.js';
import { encodeRuleImage } from '../vrouter-agent/compile/rule-image.js';
import {
  createVerdictEngine,
  verdictEngineStatus,
  type VerdictEngine,
} from '../vrouter-agent/compile/verdict-engine.js';
import { realisticCluster } from '../testing/random-cluster.js';
import {
  MachineLoad,
  acquireGc,
  int,
  median,
  mib,
  nowMs,
  ns,
  rate,
  table,
  cpuModel,
} from './measure.js';
import { runPipeline } from './pipeline.js';
import { seededRandom } from '../shared/random.js';
import { generateProbes } from './probes.js';

/** One timed pass of tables.allows over every probe; returns [ms, allowed]. */
function allowsPass(tables: RuleTables, probes: readonly Packet[], n: number): [number, number] {
  const t0 = nowMs();
  let allowed = 0;
  for (let i = 0; i < n; i++) if (tables.allows(probes[i]!)) allowed++;
  return [nowMs() - t0, allowed];
}

function decidePass(tables: RuleTables, probes: readonly Packet[], n: number): [number, number] {
  const t0 = nowMs();
  let allowed = 0;
  for (let i = 0; i < n; i++) if (tables.decide(probes[i]!).allowed) allowed++;
  return [nowMs() - t0, allowed];
}

export interface RateResult {
  /** Verdicts per second of each timed pass. */
  readonly rates: readonly number[];
  /** Verdicts per second of this process's CPU time (user + system), each pass: insensitive to time slicing on a busy machine. */
  readonly cpuRates: readonly number[];
  readonly probes: number;
  readonly allowed: number;
}

/**
 * Times `reps` passes over the first `n` probes (after one warm-up pass over
 * up to `warmup` of them). Every pass must count the same number of allowed
 * probes.
 */
export function timeCompiled(
  kind: 'allows' | 'decide',
  tables: RuleTables,
  probes: readonly Packet[],
  n: number,
  reps: number,
  warmup: number,
): RateResult {
  const pass = kind === 'allows' ? allowsPass : decidePass;
  pass(tables, probes, Math.min(warmup, n));
  const rates: number[] = [];
  const cpuRates: number[] = [];
  let allowed = -1;
  for (let r = 0; r < reps; r++) {
    const cpu0 = process.cpuUsage();
    const [t, a] = pass(tables, probes, n);
    const cpu = process.cpuUsage(cpu0);
    if (allowed >= 0 && a !== allowed)
      throw new Error(`${kind}: passes disagree (${a} vs ${allowed} allowed)`);
    allowed = a;
    rates.push((n / t) * 1000);
    cpuRates.push((n / (cpu.user + cpu.system)) * 1e6);
  }
  return { rates, cpuRates, probes: n, allowed };
}

export interface ReferenceResult {
  /** Verdicts per second over the timed probes. */
  readonly rate: number;
  /** Probes timed (the first ones of the list). */
  readonly probes: number;
  readonly ms: number;
}

/**
 * Times the reference evaluator on as many of the first probes as fit in
 * about `budgetMs` (at least `minProbes`), after a short warm-up; it is
 * orders of magnitude slower than the compiled tables.
 */
export function timeReference(
  ref: ReferenceCluster,
  probes: readonly Packet[],
  budgetMs: number,
  minProbes: number,
): ReferenceResult {
  const one = (p: Packet) => ref.allows(p.src, p.dst, p.protocol, p.dstPort);
  // Warm up and calibrate on probes from the end of the list (not timed).
  const calib = Math.min(200, probes.length);
  let sink = 0;
  let t0 = nowMs();
  for (let i = probes.length - calib; i < probes.length; i++) if (one(probes[i]!)) sink++;
  t0 = nowMs();
  for (let i = probes.length - calib; i < probes.length; i++) if (one(probes[i]!)) sink++;
  const per = (nowMs() - t0) / calib;
  const n = Math.min(
    probes.length,
    Math.max(minProbes, Math.round(budgetMs / Math.max(per, 1e-6))),
  );
  t0 = nowMs();
  for (let i = 0; i < n; i++) if (one(probes[i]!)) sink++;
  const t = nowMs() - t0;
  if (sink < 0) throw new Error('unreachable');
  return { rate: (n / t) * 1000, probes: n, ms: t };
}

export interface Disagreement {
  readonly index: number;
  readonly packet: Packet;
  readonly compiled: boolean;
  readonly decided: boolean;
  readonly reference: boolean;
  readonly explanation: string;
}

export interface AgreementResult {
  readonly checked: number;
  readonly allowed: number;
  readonly denied: number;
  /** Probes whose verdict involved at least one isolated side (a rule or a deny decided). */
  readonly isolated: number;
  readonly disagreements: number;
  readonly examples: readonly Disagreement[];
  /** Distinct rules that allowed a probe, by kind of peer, and those with named ports. */
  readonly rulesUsed: {
    readonly any: number;
    readonly selector: number;
    readonly ipBlock: number;
    readonly namedPorts: number;
  };
}

/**
 * Compares the reference verdict with tables.allows and tables.decide on
 * `count` probes spread evenly over the list (not timed).
 */
export function checkAgreement(
  tables: RuleTables,
  ref: ReferenceCluster,
  probes: readonly Packet[],
  count: number,
): AgreementResult {
  const n = Math.min(count, probes.length);
  const stride = probes.length / n;
  let allowed = 0;
  let denied = 0;
  let isolated = 0;
  let disagreements = 0;
  const examples: Disagreement[] = [];
  const used = new Set<string>();
  for (let k = 0; k < n; k++) {
    const index = Math.floor(k * stride);
    const p = probes[index]!;
    const reference = ref.allows(p.src, p.dst, p.protocol, p.dstPort);
    const compiled = tables.allows(p);
    const verdict = tables.decide(p);
    if (verdict.egress.tier === 'namespace' || verdict.ingress.tier === 'namespace') isolated++;
    if (verdict.egress.rule !== undefined) used.add(verdict.egress.rule.id);
    if (verdict.ingress.rule !== undefined) used.add(verdict.ingress.rule.id);
    if (reference) allowed++;
    else denied++;
    if (compiled !== reference || verdict.allowed !== reference) {
      disagreements++;
      if (examples.length < 10) {
        examples.push({
          index,
          packet: p,
          compiled,
          decided: verdict.allowed,
          reference,
          explanation: `egress: ${describeDecision(verdict.egress)}; ingress: ${describeDecision(verdict.ingress)}`,
        });
      }
    }
  }
  return {
    checked: n,
    allowed,
    denied,
    isolated,
    disagreements,
    examples,
    rulesUsed: classifyRules(tables, used),
  };
}

function classifyRules(tables: RuleTables, ids: ReadonlySet<string>): AgreementResult['rulesUsed'] {
  const groupKind = new Map(tables.snapshot.addressGroups.map((g) => [g.id, g.kind]));
  const named = new Set(
    tables.snapshot.serviceGroups
      .filter((sg) => sg.services.some((s) => s.port.kind === 'named'))
      .map((sg) => sg.id),
  );
  const out = { any: 0, selector: 0, ipBlock: 0, namedPorts: 0 };
  for (const id of ids) {
    const r = tables.rules.get(id);
    if (r === undefined) continue;
    if ('any' in r.endpoint2) out.any++;
    else if (groupKind.get(r.endpoint2.addressGroup) === 'ipBlock') out.ipBlock++;
    else out.selector++;
    if (r.serviceGroup !== undefined && named.has(r.serviceGroup)) out.namedPorts++;
  }
  return out;
}

function describeDecision(d: DirectionDecision): string {
  if (d.endpoint === undefined) return 'not ours';
  const who = d.endpoint.key;
  if (d.tier === 'default') return `${who} not isolated → allow`;
  if (d.rule === undefined)
    return `${who} isolated by [${d.endpoint[d.direction].policies.join(', ')}], no rule matched → deny`;
  return `${who} allowed by rule ${d.rule.id}`;
}

export function describePacket(tables: RuleTables, p: Packet): string {
  const name = (ip: Packet['src']) => {
    const e = tables.byIp.get(ip);
    return e === undefined ? formatIp(ip) : `${formatIp(ip)} (${e.key})`;
  };
  const proto =
    p.protocol === 6
      ? 'TCP'
      : p.protocol === 17
        ? 'UDP'
        : p.protocol === 132
          ? 'SCTP'
          : String(p.protocol);
  return `${name(p.src)} → ${name(p.dst)} ${proto}/${p.dstPort}`;
}

// ===========================================================================
// Part two: the native verdict engine against RuleTables.allows.

const TARGET_NATIVE_PER_S = 1_000_000;
const HEADLINE_RULES = 10_000;
const BATCH = 4096;

export interface VerdictBenchOptions {
  /** Fewer probes, shorter timings, scaling up to 10,000 rules only. */
  readonly quick?: boolean;
}

function firewallRules(tables: RuleTables): number {
  return tables.snapshot.policies.reduce((n, p) => n + p.rules.length, 0);
}

/** Rules in the largest direction table of any endpoint. */
function largestTable(tables: RuleTables): number {
  let most = 0;
  for (const e of tables.endpoints.values())
    most = Math.max(most, e.ingress.rules.length, e.egress.rules.length);
  return most;
}

/**
 * Verdicts per second of `step(offset, n)`, which decides probes [offset,
 * offset + n): chunks of `chunk` cycling over `count` probes for about
 * `budgetMs`, after a warm-up chunk; the median of `runs` such runs.
 */
function timeBoxed(
  count: number,
  chunk: number,
  budgetMs: number,
  runs: number,
  step: (offset: number, n: number) => void,
): number {
  step(0, Math.min(chunk, count));
  const rates: number[] = [];
  for (let r = 0; r < runs; r++) {
    let done = 0;
    let offset = 0;
    const t0 = nowMs();
    let t = t0;
    while (t - t0 < budgetMs) {
      const n = Math.min(chunk, count - offset);
      step(offset, n);
      done += n;
      offset = offset + n >= count ? 0 : offset + n;
      t = nowMs();
    }
    rates.push((done / (t - t0)) * 1000);
  }
  return median(rates);
}

function engineStep(
  engine: VerdictEngine,
  bytes: Uint8Array,
  out: Int32Array,
): (offset: number, n: number) => void {
  return (offset, n) => {
    engine.evaluate(
      bytes.subarray(offset * POLICY_RECORD_BYTES, (offset + n) * POLICY_RECORD_BYTES),
      n,
      out.subarray(offset * RESULT_STRIDE, (offset + n) * RESULT_STRIDE),
    );
  };
}

function allowsStep(
  tables: RuleTables,
  probes: readonly Packet[],
): (offset: number, n: number) => void {
  let sink = 0;
  return (offset, n) => {
    for (let i = offset; i < offset + n; i++) if (tables.allows(probes[i]!)) sink++;
    if (sink < 0) throw new Error('unreachable');
  };
}

/**
 * Decides `sample` probes spread over the list with the engine and with
 * RuleTables.decide(), and throws at the first disagreement on either
 * direction's outcome (the same CompiledRule, default, deny or not ours) or
 * the verdict. Returns how many were checked.
 */
function verify(
  tables: RuleTables,
  engine: VerdictEngine,
  probes: readonly Packet[],
  sample: number,
  label: string,
): number {
  const n = Math.min(sample, probes.length);
  const picked = Array.from({ length: n }, (_, k) => probes[Math.floor((k * probes.length) / n)]!);
  const out = new Int32Array(n * RESULT_STRIDE);
  engine.evaluate(encodePolicyRecords(picked), n, out);
  const code = (d: DirectionDecision) =>
    d.endpoint === undefined
      ? VerdictCode.NOT_LOCAL
      : d.tier === 'default'
        ? VerdictCode.ALLOW_DEFAULT
        : d.tier === 'node'
          ? VerdictCode.ALLOW_NODE
          : d.rule === undefined
            ? VerdictCode.DENY
            : engine.catalog.indexOf(d.rule);
  for (let i = 0; i < n; i++) {
    const v = tables.decide(picked[i]!);
    const got = [out[3 * i], out[3 * i + 1], (out[3 * i + 2]! & 1) === 1];
    const want = [code(v.egress), code(v.ingress), v.allowed];
    if (got.some((g, k) => g !== want[k])) {
      throw new Error(
        `${label}: ${engine.implementation} engine disagrees with RuleTables.decide() on ${describePacket(tables, picked[i]!)}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`,
      );
    }
  }
  return n;
}

// ---- synthetic clusters for the scaling section -----------------------------

interface Synthetic {
  readonly objects: Raw[];
  readonly probes: Packet[];
}

const v4 = (a: number, b: number, c: number, d: number) =>
  ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;

/**
 * `rules` firewall rules over ceil(rules / 10) policies of 10 rules, each
 * policy selecting its own two pods (ten policies per namespace): every
 * endpoint's tables stay small however many rules the cluster holds. Peers
 * mix pod selectors across namespaces, namespace selectors, IPv4 blocks with
 * excepts and IPv6 blocks; ports mix named, numeric and ranges; every third
 * policy has egress rules to named ports of other pods.
 */
function spreadCluster(rules: number, probeCount: number): Synthetic {
  const rng = seededRandom(0x5a11 ^ rules);
  const P = Math.ceil(rules / 10);
  const objects: Raw[] = [];
  for (let k = 0; k < Math.ceil(P / 10); k++)
    objects.push(namespace(`ns${k}`, { team: `t${k % 24}` }));
  const pods: Array<{ v4: number; v6: bigint | undefined; http: number }> = [];
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < 2; j++) {
      const idx = 2 * i + j + 1;
      const a4 = v4(10, 16, 0, 0) + idx;
      const a6 = idx % 4 === 0 ? (0xfd00n << 112n) + BigInt(idx) : undefined;
      const http = 8080 + (idx % 3);
      pods.push({ v4: a4, v6: a6, http });
      const ips = [formatIp(a4), ...(a6 === undefined ? [] : [formatIp(a6)])];
      objects.push(
        pod(`ns${Math.floor(i / 10)}`, `p${i}-${j}`, {
          labels: { app: `a${i}` },
          ips,
          ports: [
            { name: 'http', port: http },
            { name: 'metrics', port: 9100 },
          ],
        }),
      );
    }
  }
  for (let i = 0; i < P; i++) {
    const count = Math.min(10, rules - 10 * i);
    const egressFrom = i % 3 === 0 && count > 3 ? count - 3 : count;
    const ingress: Raw[] = [];
    const egress: Raw[] = [];
    for (let k = 0; k < count; k++) {
      const other = `a${(i * 7 + k + 1) % P}`;
      if (k >= egressFrom) {
        egress.push({
          to: [{ podSelector: { matchLabels: { app: other } }, namespaceSelector: {} }],
          ports: [{ port: 'http' }],
        });
        continue;
      }
      const kind = (i + k) % 5;
      if (kind === 0)
        ingress.push({
          from: [{ podSelector: { matchLabels: { app: other } }, namespaceSelector: {} }],
          ports: [{ port: 'http' }],
        });
      else if (kind === 1)
        ingress.push({
          from: [
            {
              ipBlock: {
                cidr: `172.${16 + (i % 16)}.${(i >> 4) & 255}.0/24`,
                except: [`172.${16 + (i % 16)}.${(i >> 4) & 255}.0/28`],
              },
            },
          ],
          ports: [{ port: 443 }],
        });
      else if (kind === 2)
        ingress.push({
          from: [{ namespaceSelector: { matchLabels: { team: `t${(i + k) % 24}` } } }],
          ports: [{ port: 8000 + k, endPort: 8100 + k }],
        });
      else if (kind === 3)
        ingress.push({
          from: [{ podSelector: { matchLabels: { app: other } } }],
          ports: [{ protocol: 'UDP', port: 53 }],
        });
      else
        ingress.push({
          from: [{ ipBlock: { cidr: `fd10:${(i & 0xffff).toString(16)}::/64` } }],
          ports: [{ port: 'metrics' }],
        });
    }
    const spec: Raw = { podSelector: { matchLabels: { app: `a${i}` } }, ingress };
    if (egress.length > 0) Object.assign(spec, { egress, policyTypes: ['Ingress', 'Egress'] });
    objects.push(networkPolicy(`ns${Math.floor(i / 10)}`, `np${i}`, spec));
  }
  const probes: Packet[] = [];
  for (let n = 0; n < probeCount; n++) {
    const a = pods[rng.int(pods.length)]!;
    const b = pods[rng.int(pods.length)]!;
    const six = b.v6 !== undefined && rng.chance(0.25);
    const kind = rng.next();
    let src: number | bigint;
    if (six)
      src =
        kind < 0.15
          ? (0xfd10n << 112n) + (BigInt(rng.int(P) & 0xffff) << 96n) + 1n
          : (a.v6 ?? (0xfd00n << 112n) + 0xffffn);
    else
      src =
        kind < 0.1
          ? v4(172, 16 + rng.int(16), rng.int(256), rng.int(256))
          : kind < 0.15
            ? v4(8, 8, rng.int(256), rng.int(256))
            : a.v4;
    const dst = six ? b.v6! : b.v4;
    const [protocol, dstPort] = rng.weighted<readonly [number, number]>([
      [[6, b.http], 4],
      [[6, 9100], 2],
      [[6, 443], 2],
      [[17, 53], 1],
      [[6, 8000 + rng.int(120)], 2],
      [[6, 9999], 1],
    ]);
    probes.push({ src, dst, protocol, dstPort });
  }
  return { objects, probes };
}

/**
 * `rules` firewall rules in ceil(rules / 10) policies that all select the
 * same 64 server pods: each server's ingress table holds every rule. Peers
 * cycle through a distinct IPv4 /28 (some with an except), one client pod by
 * label, a distinct IPv6 /120, and a client namespace by label; each rule
 * has its own port. Probes come from inside a random rule's block (half on
 * that rule's port), from client pods, and from outside every block (denied
 * after the whole table).
 */
function concentratedCluster(rules: number, probeCount: number): Synthetic {
  const rng = seededRandom(0xc0c0 ^ rules);
  const SERVERS = 64;
  const CLIENT_NS = 16;
  const PER_NS = 16;
  const block4 = (r: number) => v4(100, 64, 0, 0) + r * 16;
  const block6 = (r: number) => (0xfd30n << 112n) + BigInt(r) * 256n;
  const portOf = (r: number) => 8000 + (r % 1000);
  const objects: Raw[] = [namespace('svc', { team: 'svc' })];
  const servers: Array<{ v4: number; v6: bigint | undefined }> = [];
  for (let s = 0; s < SERVERS; s++) {
    const a6 = s % 4 === 0 ? (0xfd20n << 112n) + BigInt(s + 1) : undefined;
    servers.push({ v4: v4(10, 200, 0, s + 1), v6: a6 });
    objects.push(
      pod('svc', `s${s}`, {
        labels: { app: 'svc' },
        ips: [formatIp(v4(10, 200, 0, s + 1)), ...(a6 === undefined ? [] : [formatIp(a6)])],
        ports: [{ name: 'http', port: 8080 }],
      }),
    );
  }
  const clients: number[] = [];
  for (let n = 0; n < CLIENT_NS; n++) {
    objects.push(namespace(`c${n}`, { team: `t${n}` }));
    for (let m = 0; m < PER_NS; m++) {
      clients.push(v4(10, 201, n, m + 1));
      objects.push(
        pod(`c${n}`, `p${m}`, {
          labels: { app: `c${n * PER_NS + m}` },
          ips: [formatIp(v4(10, 201, n, m + 1))],
        }),
      );
    }
  }
  for (let p = 0; p < Math.ceil(rules / 10); p++) {
    const ingress: Raw[] = [];
    for (let r = 10 * p; r < Math.min(rules, 10 * p + 10); r++) {
      const port = portOf(r);
      if (r % 4 === 0)
        ingress.push({
          from: [
            {
              ipBlock: {
                cidr: `${formatIp(block4(r))}/28`,
                except: r % 20 === 0 ? [`${formatIp(block4(r))}/30`] : [],
              },
            },
          ],
          ports: [{ port }],
        });
      else if (r % 4 === 1)
        ingress.push({
          from: [
            {
              podSelector: { matchLabels: { app: `c${r % (CLIENT_NS * PER_NS)}` } },
              namespaceSelector: {},
            },
          ],
          ports: [{ port }],
        });
      else if (r % 4 === 2)
        ingress.push({
          from: [{ ipBlock: { cidr: `${formatIp(block6(r))}/120` } }],
          ports: [{ port }, { protocol: 'UDP', port: 5000 }],
        });
      else
        ingress.push({
          from: [{ namespaceSelector: { matchLabels: { team: `t${r % CLIENT_NS}` } } }],
          ports: [{ port, endPort: port + 10 }],
        });
    }
    objects.push(
      networkPolicy('svc', `np${p}`, { podSelector: { matchLabels: { app: 'svc' } }, ingress }),
    );
  }
  const withV6 = servers.filter((s) => s.v6 !== undefined);
  const ruleOf = (residue: number) => {
    const blocks = Math.floor((rules - 1 - residue) / 4) + 1;
    return blocks > 0 ? residue + 4 * rng.int(blocks) : undefined;
  };
  const probes: Packet[] = [];
  for (let n = 0; n < probeCount; n++) {
    const kind = rng.next();
    const server = servers[rng.int(SERVERS)]!;
    let port = rng.chance(0.5) ? 8000 + rng.int(1000) : rng.pick([80, 443, 8080]);
    let protocol = 6;
    const r4 = ruleOf(0);
    const r6 = ruleOf(2);
    if (kind < 0.35 && r4 !== undefined) {
      if (rng.chance(0.5)) port = portOf(r4);
      probes.push({ src: block4(r4) + rng.int(16), dst: server.v4, protocol, dstPort: port });
    } else if (kind < 0.5 && r6 !== undefined) {
      if (rng.chance(0.5)) port = portOf(r6);
      else if (rng.chance(0.3)) [protocol, port] = [17, 5000];
      probes.push({
        src: block6(r6) + BigInt(rng.int(256)),
        dst: withV6[rng.int(withV6.length)]!.v6!,
        protocol,
        dstPort: port,
      });
    } else if (kind < 0.8) {
      probes.push({
        src: clients[rng.int(clients.length)]!,
        dst: server.v4,
        protocol,
        dstPort: port,
      });
    } else {
      probes.push({
        src: v4(8, rng.int(256), rng.int(256), rng.int(256)),
        dst: server.v4,
        protocol,
        dstPort: port,
      });
    }
  }
  return { objects, probes };
}

// ---- the report -------------------------------------------------------------

export async function benchVerdicts(options: VerdictBenchOptions = {}): Promise<string> {
  const quick = options.quick ?? false;
  const lines: string[] = [];
  const say = (s = '') => lines.push(s);
  const heading = (s: string) => say(`\n== ${s} ${'='.repeat(Math.max(0, 74 - s.length))}\n`);
  const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
  const gc = acquireGc();
  const status = verdictEngineStatus();
  const native = status.implementation === 'native';
  const load = new MachineLoad();
  const contention = (l: MachineLoad) => {
    const other = l.otherCpus();
    return other === undefined
      ? ''
      : `other processes kept ${other.toFixed(1)} of ${os.availableParallelism()} CPUs busy meanwhile${other > 0.5 ? ' (CONTENDED: numbers are pessimistic)' : ''}`;
  };

  say('Weir verdict engine benchmark: first-packet verdicts, native (batched) vs TypeScript');
  say(
    `node ${process.version} (${process.platform}/${process.arch}), ${os.availableParallelism()} CPUs (${cpuModel()}), ` +
      `load average ${os.loadavg()[0]!.toFixed(2)}; one thread; ${quick ? '--quick; ' : ''}verdict engine: ${status.implementation} (${status.reason})`,
  );
  if (!native)
    say(
      '  the native addon is not loaded: only the TypeScript rows can be measured (run npm run build:native)',
    );

  // ---- 1. headline ----
  heading(`1. ${int(HEADLINE_RULES)} rules loaded: a realistic cluster`);
  let namespaces = Math.ceil(HEADLINE_RULES / 11.6);
  let cluster = realisticCluster(namespaces);
  let pipeline = runPipeline(cluster.objects);
  for (let tries = 0; firewallRules(pipeline.tables) < HEADLINE_RULES && tries < 10; tries++) {
    namespaces += 4;
    cluster = realisticCluster(namespaces);
    pipeline = runPipeline(cluster.objects);
  }
  const tables = pipeline.tables;
  const PROBES = quick ? 300_000 : 1_000_000;
  const probes = generateProbes(cluster, PROBES);
  let t0 = nowMs();
  const bytes = encodePolicyRecords(probes);
  const packMs = nowMs() - t0;
  t0 = nowMs();
  const encoded = encodeRuleImage(tables);
  const encodeMs = nowMs() - t0;
  t0 = nowMs();
  const engine = createVerdictEngine(tables);
  const loadMs = nowMs() - t0;
  const ts = createVerdictEngine(tables, { implementation: 'typescript' });
  const info = engine.info();
  say(
    `  testing/random-cluster.ts at ${int(namespaces)} namespaces: ${int(tables.endpoints.size)} endpoints, ${int(tables.snapshot.policies.length)} NetworkPolicies, ` +
      `${int(firewallRules(tables))} firewall rules, ${int(engine.catalog.size)} compiled rules (ingress named ports compile per endpoint), ` +
      `largest table ${largestTable(tables)} rules; pipeline ${pipeline.times.total.toFixed(0)} ms`,
  );
  say(
    `  rule image: ${mib(encoded.image.byteLength)} encoded in ${encodeMs.toFixed(0)} ms; engine created (catalog + encode + native load) in ${loadMs.toFixed(0)} ms` +
      (native
        ? `; native tables ${mib(Number(info.nativeBytes))}, ${info.tables} distinct direction tables, ${info.indexedTables} indexed`
        : ''),
  );
  say(
    `  ${int(probes.length)} probes (bench/probes.ts), packed into 40-byte records in ${packMs.toFixed(0)} ms (${ns((packMs * 1e6) / probes.length)} per packet, not timed below)\n`,
  );

  const out = new Int32Array(probes.length * RESULT_STRIDE);
  const BUDGET = quick ? 250 : 700;
  const RUNS = quick ? 3 : 5;
  const rows = [['evaluator', 'verdicts/s', 'per verdict', 'vs allows']];
  const allowsRate = timeBoxed(probes.length, 1024, BUDGET, RUNS, allowsStep(tables, probes));
  let headlineNative = NaN;
  if (native) {
    for (const batch of [BATCH, 256, 16, 1]) {
      const r = timeBoxed(probes.length, batch, BUDGET, RUNS, engineStep(engine, bytes, out));
      if (batch === BATCH) headlineNative = r;
      rows.push([
        `native engine, batch ${int(batch)}`,
        rate(r),
        ns(1e9 / r),
        `${(r / allowsRate).toFixed(1)}x`,
      ]);
    }
  }
  const tsBatch = timeBoxed(probes.length, BATCH, BUDGET, RUNS, engineStep(ts, bytes, out));
  rows.push([
    `TypeScript engine, batch ${int(BATCH)}`,
    rate(tsBatch),
    ns(1e9 / tsBatch),
    `${(tsBatch / allowsRate).toFixed(1)}x`,
  ]);
  rows.push(['RuleTables.allows (reference)', rate(allowsRate), ns(1e9 / allowsRate), '1.0x']);
  say(table(rows));
  const checked =
    verify(tables, engine, probes, quick ? 20_000 : 100_000, 'headline') +
    verify(tables, ts, probes, 5_000, 'headline');
  say(
    `\n  ${int(checked)} verdicts checked against RuleTables.decide() (both directions' rule, default, deny, not ours; allowed): all agree`,
  );
  say(
    `  median of ${RUNS} runs of ~${BUDGET} ms each; native rows decide both directions in full (decide() semantics), allows() stops at the first deny`,
  );
  say(
    `  target: native above ${rate(TARGET_NATIVE_PER_S)} per core with ${int(HEADLINE_RULES)} rules: ${native ? met(headlineNative > TARGET_NATIVE_PER_S) : 'NOT MEASURED (no addon)'}${native ? ` (${rate(headlineNative)}, ${(headlineNative / allowsRate).toFixed(1)}x RuleTables.allows)` : ''}`,
  );
  say(`  ${contention(load)}`);
  engine[Symbol.dispose]();

  // ---- 2. scaling ----
  heading('2. How verdict cost grows with the rules loaded');
  const SCALE = quick ? [10, 100, 1_000, 10_000] : [10, 100, 1_000, 10_000, 100_000];
  const SCALE_PROBES = quick ? 50_000 : 200_000;
  const SCALE_BUDGET = quick ? 150 : 400;
  say(
    '  spread: ten rules per policy, each policy selecting its own pods (tables stay small); concentrated: every policy',
  );
  say(
    '  selects the same 64 servers (one ingress table holds every rule). Native "indexed" is the default engine (tables of',
  );
  say(
    '  32+ rules get a peer-address index, its long candidate lists a port index); "linear" forces the plain first-match',
  );
  say(
    `  scan ("=" where no table was large enough to index). Batch ${int(BATCH)}; median of 3 runs.\n`,
  );
  const scaleLoad = new MachineLoad();
  const growth = new Map<string, number[]>();
  const note = (key: string, perVerdictNs: number) => {
    const l = growth.get(key) ?? [];
    l.push(perVerdictNs);
    growth.set(key, l);
  };
  const srows = [
    [
      'shape',
      'rules',
      'endpoints',
      'largest table',
      'pipeline',
      'engine load',
      'image',
      'native indexed',
      'native linear',
      'allows',
      'native/allows',
    ],
  ];
  for (const shape of ['spread', 'concentrated'] as const) {
    for (const n of SCALE) {
      gc?.();
      let t = nowMs();
      const syn =
        shape === 'spread' ? spreadCluster(n, SCALE_PROBES) : concentratedCluster(n, SCALE_PROBES);
      const b = build(syn.objects, 'bench');
      const pipelineMs = nowMs() - t;
      if (b.issues.length > 0)
        throw new Error(
          `${shape} ${n}: generated objects failed validation: ${JSON.stringify(b.issues[0])}`,
        );
      t = nowMs();
      const e = createVerdictEngine(b.tables, { implementation: native ? 'native' : 'typescript' });
      const engineMs = nowMs() - t;
      const linear = native
        ? createVerdictEngine(b.tables, { implementation: 'native', indexMinRules: 0xffff_ffff })
        : undefined;
      const pbytes = encodePolicyRecords(syn.probes);
      const pout = new Int32Array(syn.probes.length * RESULT_STRIDE);
      const a = timeBoxed(syn.probes.length, 64, SCALE_BUDGET, 3, allowsStep(b.tables, syn.probes));
      const x = native
        ? timeBoxed(syn.probes.length, BATCH, SCALE_BUDGET, 3, engineStep(e, pbytes, pout))
        : NaN;
      const l = linear
        ? timeBoxed(syn.probes.length, 64, SCALE_BUDGET, 3, engineStep(linear, pbytes, pout))
        : NaN;
      verify(b.tables, e, syn.probes, 2_000, `${shape} ${n}`);
      if (linear) verify(b.tables, linear, syn.probes, 500, `${shape} ${n} linear`);
      const rules = firewallRules(b.tables);
      const einfo = e.info();
      note(`${shape} allows`, 1e9 / a);
      if (native) {
        note(`${shape} native`, 1e9 / x);
        note(`${shape} linear`, 1e9 / l);
      }
      srows.push([
        shape,
        int(rules),
        int(b.tables.endpoints.size),
        int(largestTable(b.tables)),
        `${pipelineMs.toFixed(0)} ms`,
        `${engineMs.toFixed(0)} ms`,
        typeof einfo.imageBytes === 'number' ? mib(einfo.imageBytes) : '-',
        native ? `${ns(1e9 / x)} (${rate(x)})` : '-',
        native ? (einfo.indexedTables === 0 ? '=' : `${ns(1e9 / l)} (${rate(l)})`) : '-',
        `${ns(1e9 / a)} (${rate(a)})`,
        native ? `${(x / a).toFixed(1)}x` : '-',
      ]);
      e[Symbol.dispose]();
      linear?.[Symbol.dispose]();
    }
  }
  say(table(srows));
  const from = SCALE[0]!;
  const to = SCALE[SCALE.length - 1]!;
  const grew = (key: string) => {
    const l = growth.get(key);
    return l === undefined || l.length < 2 ? '-' : `${(l[l.length - 1]! / l[0]!).toFixed(1)}x`;
  };
  say(`\n  per-verdict cost from ${int(from)} to ${int(to)} rules:`);
  say(
    `    spread:       native ${grew('spread native')}, RuleTables.allows ${grew('spread allows')} (tables stay small: the growth is cache misses over a larger cluster)`,
  );
  say(
    `    concentrated: native indexed ${grew('concentrated native')}, native linear ${grew('concentrated linear')}, RuleTables.allows ${grew('concentrated allows')} (first match over one table of every rule)`,
  );
  say(`  ${contention(scaleLoad)}`);

  heading('Target');
  say(
    `  first-packet verdicts with ${int(HEADLINE_RULES)} rules loaded, native batched, above ${rate(TARGET_NATIVE_PER_S)} per core: ${native ? `${met(headlineNative > TARGET_NATIVE_PER_S)} (${rate(headlineNative)})` : 'NOT MEASURED (no addon)'}`,
  );
  say(`  RuleTables.allows in the same run: ${rate(allowsRate)}`);
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${await benchVerdicts({ quick: process.argv.includes('--quick') })}\n`);
}
