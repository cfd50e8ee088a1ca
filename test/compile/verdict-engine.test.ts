/**
 * The native verdict engine against the reference (RuleTables.decide and
 * RuleTables.allows): per packet and per direction the same matched rule (the
 * same CompiledRule, so the same rule and policy id), the same default or
 * deny, the same not-ours; the same allowed and self bits. On random clusters
 * (every address pair, both families and mixed, named ports both ways,
 * ipBlock excepts, tables large enough to be indexed) and on a table of
 * targeted cases. The TypeScript engine runs the same checks, so a broken
 * comparison cannot pass silently for one of them only.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp, formatIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import {
  ALLOW_DEFAULT,
  DENY,
  type DirectionDecision,
  type DirectionResult,
  type Packet,
  type RuleTables,
  type Verdict,
} from '../../shared/policy/rule-tables.js';
import { PROTOCOL_NUMBER, type PolicySnapshot, type Protocol } from '../../shared/policy/types.js';
import {
  POLICY_RECORD_BYTES,
  PolicyRecordBatch,
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VERDICT_SELF,
  VerdictCode,
  encodePolicyRecords,
} from '../../vrouter-agent/compile/policy-record.js';
import type { RuleCatalog } from '../../vrouter-agent/compile/rule-catalog.js';
import {
  createVerdictEngine,
  directionResultOf,
  nativeRuleEvaluator,
  verdictEngineStatus,
  type VerdictEngine,
} from '../../vrouter-agent/compile/verdict-engine.js';
import { build, namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import {
  allProbes,
  randomCluster,
  realisticCluster,
  realisticClusterPolicies,
} from '../../testing/random-cluster.js';
import { seededRandom } from '../../shared/random.js';

const native = nativeRuleEvaluator();
const skipNative =
  native.evaluator === undefined ? `native addon not loaded: ${native.reason}` : false;

function describeCode(code: number, catalog: RuleCatalog): string {
  if (code >= 0) return `rule #${code} ${catalog.rule(code)?.id ?? '(not in catalog)'}`;
  return Object.entries(VerdictCode).find(([, v]) => v === code)?.[0] ?? `code ${code}`;
}

function describeDecision(d: DirectionDecision): string {
  if (d.endpoint === undefined) return 'NOT_LOCAL';
  if (d.tier === 'default') return 'ALLOW_DEFAULT';
  if (d.tier === 'node') return 'ALLOW_NODE';
  return d.rule === undefined ? 'DENY' : `rule ${d.rule.id}`;
}

/** Why `code` is not what the reference decided, or undefined when it is. */
function mismatch(code: number, d: DirectionDecision, catalog: RuleCatalog): string | undefined {
  const ok =
    d.endpoint === undefined
      ? code === VerdictCode.NOT_LOCAL
      : d.tier === 'default'
        ? code === VerdictCode.ALLOW_DEFAULT
        : d.tier === 'node'
          ? code === VerdictCode.ALLOW_NODE
          : d.rule === undefined
            ? code === VerdictCode.DENY
            : catalog.rule(code) === d.rule &&
              catalog.rule(code)?.id === d.rule.id &&
              catalog.rule(code)?.policy === d.rule.policy;
  return ok
    ? undefined
    : `${d.direction}: engine ${describeCode(code, catalog)}, reference ${describeDecision(d)}`;
}

function packetText(p: Packet): string {
  return `${formatIp(p.src)} -> ${formatIp(p.dst)} proto ${p.protocol} port ${p.dstPort}`;
}

/** The reference verdicts for a probe list, computed once and compared with every engine. */
interface Reference {
  readonly probes: readonly Packet[];
  readonly bytes: Uint8Array;
  readonly verdicts: readonly Verdict[];
  readonly allowed: number;
}

function reference(tables: RuleTables, probes: readonly Packet[]): Reference {
  const verdicts = probes.map((p) => tables.decide(p));
  let allowed = 0;
  verdicts.forEach((v, i) => {
    if (tables.allows(probes[i]!) !== v.allowed)
      assert.fail(`policy core: allows() and decide() disagree on ${packetText(probes[i]!)}`);
    if (v.allowed) allowed++;
  });
  return { probes, bytes: encodePolicyRecords(probes), verdicts, allowed };
}

/** Runs every probe through the engine in one batch and compares each result with decide() and allows(). */
function checkEngine(
  tables: RuleTables,
  engine: VerdictEngine,
  probes: readonly Packet[] | Reference,
  label: string,
): void {
  const ref = 'verdicts' in probes ? probes : reference(tables, probes);
  const n = ref.probes.length;
  const out = new Int32Array(n * RESULT_STRIDE).fill(0x5a5a5a5a);
  const allowedCount = engine.evaluate(ref.bytes, n, out);
  for (let i = 0; i < n; i++) {
    const v = ref.verdicts[i]!;
    const [eg, ing, flags] = [out[3 * i]!, out[3 * i + 1]!, out[3 * i + 2]!];
    const problems = [
      mismatch(eg, v.egress, engine.catalog),
      mismatch(ing, v.ingress, engine.catalog),
      ((flags & VERDICT_ALLOWED) !== 0) !== v.allowed
        ? `allowed: engine ${(flags & VERDICT_ALLOWED) !== 0}, decide ${v.allowed}`
        : undefined,
      ((flags & VERDICT_SELF) !== 0) !== v.self
        ? `self: engine ${(flags & VERDICT_SELF) !== 0}, decide ${v.self}`
        : undefined,
      (flags & ~(VERDICT_ALLOWED | VERDICT_SELF)) !== 0 ? `unknown flags ${flags}` : undefined,
    ].filter((x) => x !== undefined);
    if (problems.length > 0)
      assert.fail(
        `${label} [${engine.implementation}]: ${packetText(ref.probes[i]!)}: ${problems.join('; ')}`,
      );
  }
  assert.equal(
    allowedCount,
    ref.allowed,
    `${label} [${engine.implementation}]: evaluate() returned ${allowedCount} allowed, decide() allows ${ref.allowed}`,
  );
}

describe('random clusters', () => {
  const run = (
    engines: (t: RuleTables) => VerdictEngine[],
    seeds: number[],
    bigTables: boolean,
    clusterPolicies = false,
  ) => {
    let probes = 0;
    let indexed = 0;
    let rules = 0;
    /** Directions an isolating policy would have decided, exempt as traffic with the pod's own node. */
    let nodeExempt = 0;
    /** Directions decided by a cluster tier, by tier and outcome ("admin deny"), and after a Pass. */
    const tiers = new Map<string, number>();
    for (const seed of seeds) {
      const c = randomCluster(seed, { bigTables, clusterPolicies });
      const b = build(c.objects);
      assert.deepEqual(b.issues, [], `seed ${seed}: the generator made an invalid object`);
      const ps = allProbes(c);
      const ref = reference(b.tables, ps);
      for (const v of ref.verdicts)
        for (const d of [v.egress, v.ingress])
          if (d.tier === 'node' && d.endpoint![d.direction].policies.length > 0) nodeExempt++;
      for (const v of ref.verdicts)
        for (const d of [v.egress, v.ingress]) {
          const k = `${d.tier} ${d.allowed ? 'allow' : 'deny'}${d.passed.length > 0 ? ' after pass' : ''}`;
          tiers.set(k, (tiers.get(k) ?? 0) + 1);
        }
      for (const engine of engines(b.tables)) {
        checkEngine(b.tables, engine, ref, `seed ${seed}${bigTables ? ' (big tables)' : ''}`);
        const info = engine.info();
        if (typeof info.indexedTables === 'number') indexed += info.indexedTables;
        rules = Math.max(rules, engine.catalog.size);
        engine[Symbol.dispose]();
      }
      probes += ps.length;
    }
    return { probes, indexed, rules, nodeExempt, tiers };
  };

  test('native verdicts equal decide() per direction on 200 random clusters with ClusterNetworkPolicies of both tiers, linear and fully indexed tables', {
    skip: skipNative,
  }, () => {
    const seeds = Array.from({ length: 200 }, (_, i) => 5000 + i);
    const { probes, tiers } = run(
      (t) => [
        createVerdictEngine(t, { implementation: 'native' }),
        createVerdictEngine(t, {
          implementation: 'native',
          indexMinRules: 0,
          portIndexMinRules: 0,
        }),
      ],
      seeds,
      false,
      true,
    );
    assert.ok(probes > 1_000_000, `probed ${probes}`);
    for (const k of [
      'admin allow',
      'admin deny',
      'baseline allow',
      'baseline deny',
      'namespace allow after pass',
      'namespace deny after pass',
      'default allow after pass',
      'node allow after pass',
    ])
      assert.ok(
        (tiers.get(k) ?? 0) > 100,
        `only ${tiers.get(k) ?? 0} "${k}" decisions: ${[...tiers]}`,
      );
  });

  test('native verdicts equal decide() per direction on 300 random clusters, every address pair, linear and fully indexed tables', {
    skip: skipNative,
  }, () => {
    const seeds = Array.from({ length: 300 }, (_, i) => i + 1);
    const { probes, indexed, nodeExempt } = run(
      (t) => [
        createVerdictEngine(t, { implementation: 'native' }),
        createVerdictEngine(t, {
          implementation: 'native',
          indexMinRules: 0,
          portIndexMinRules: 0,
        }),
      ],
      seeds,
      false,
    );
    assert.ok(probes > 3_000_000, `probed ${probes}`);
    assert.ok(nodeExempt > 1000, `only ${nodeExempt} node-exempt decisions of isolated pods`);
    assert.ok(indexed > 600, `indexed ${indexed} tables`); // endpoints whose named ports resolve alike share tables
  });

  test('native verdicts equal decide() on 60 clusters whose tables hold dozens of rules: indexed by default, peer index only, port index everywhere, linear', {
    skip: skipNative,
  }, () => {
    const seeds = Array.from({ length: 60 }, (_, i) => 1000 + i);
    const { probes, indexed, rules } = run(
      (t) => [
        createVerdictEngine(t, { implementation: 'native' }),
        createVerdictEngine(t, {
          implementation: 'native',
          indexMinRules: 0,
          portIndexMinRules: 0xffff_ffff,
        }),
        createVerdictEngine(t, {
          implementation: 'native',
          indexMinRules: 0,
          portIndexMinRules: 1,
        }),
        createVerdictEngine(t, { implementation: 'native', indexMinRules: 0xffff_ffff }),
      ],
      seeds,
      true,
    );
    assert.ok(probes > 500_000, `probed ${probes}`);
    assert.ok(indexed > 60, `only ${indexed} tables were large enough to index`);
    assert.ok(rules > 100, `at most ${rules} rules in a cluster`);
  });

  test('TypeScript engine verdicts equal decide() on 40 random clusters', () => {
    run(
      (t) => [createVerdictEngine(t, { implementation: 'typescript' })],
      Array.from({ length: 40 }, (_, i) => 2000 + i),
      false,
    );
    run(
      (t) => [createVerdictEngine(t, { implementation: 'typescript' })],
      [3000, 3001, 3002],
      true,
    );
  });

  test('native and TypeScript engines write identical result arrays, invalid records included', {
    skip: skipNative,
  }, () => {
    for (let seed = 4000; seed < 4030; seed++) {
      const c = randomCluster(seed, { bigTables: seed % 3 === 0 });
      const b = build(c.objects);
      const ps = allProbes(c);
      const bytes = encodePolicyRecords(ps);
      // Break every 97th record: a bad family byte or non-zero IPv4 padding.
      for (let i = 0; i < ps.length; i += 97) {
        const at = i * POLICY_RECORD_BYTES;
        if (i % 2 === 0) bytes[at + 32 + ((i >> 1) % 2)] = [0, 5, 255][i % 3]!;
        else if (bytes[at + 32] === 4) bytes[at + 9] = 1;
        else bytes[at + 33] = 46;
      }
      const n = createVerdictEngine(b.tables, { implementation: 'native' });
      const t = createVerdictEngine(b.tables, { implementation: 'typescript' });
      const o1 = new Int32Array(ps.length * 3);
      const o2 = new Int32Array(ps.length * 3);
      assert.equal(
        n.evaluate(bytes, ps.length, o1),
        t.evaluate(bytes, ps.length, o2),
        `seed ${seed}: allowed counts`,
      );
      assert.deepEqual(o1, o2, `seed ${seed}`);
      assert.ok(o1.includes(VerdictCode.INVALID), `seed ${seed}: no record was invalid`);
      n[Symbol.dispose]();
    }
  });
});

// ---------------------------------------------------------------------------
// Targeted cases: a cluster, and probes with the per-direction codes expected.

/** Expected direction outcome: 'default', 'deny', 'not-local', or a rule id. */
type Want = string;
type Probe = [
  from: string,
  to: string,
  service: string,
  egress: Want,
  ingress: Want,
  allowed: boolean,
];

interface Case {
  name: string;
  objects: Raw[];
  probes: Probe[];
  /** Compile tables only for these endpoints (an agent's node). */
  local?: string[];
}

const ns = (n: string) => namespace(n, { team: n });
const np = networkPolicy;
const R = (policy: string, rest: string) => `test/np/${policy}/${rest}`;

const cases: Case[] = [
  {
    name: 'with no policy both directions fall to the default tier, and outside addresses are not ours',
    objects: [ns('a'), pod('a', 'x', { ips: ['10.0.0.1'] }), pod('a', 'y', { ips: ['10.0.0.2'] })],
    probes: [
      ['a/x', 'a/y', 'TCP/80', 'default', 'default', true],
      ['8.8.8.8', 'a/y', 'UDP/53', 'not-local', 'default', true],
      ['a/x', '8.8.8.8', 'TCP/443', 'default', 'not-local', true],
      ['1.1.1.1', '8.8.8.8', 'TCP/443', 'not-local', 'not-local', true],
    ],
  },
  {
    name: 'an isolating policy without rules denies, and a pod still reaches itself',
    objects: [
      ns('a'),
      pod('a', 'x', { ips: ['10.0.0.1', 'fd00::1'] }),
      pod('a', 'y', { ips: ['10.0.0.2'] }),
      np('a', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    ],
    probes: [
      ['a/x', 'a/y', 'TCP/80', 'deny', 'deny', false],
      ['a/x', 'a/x', 'TCP/80', 'not-local', 'not-local', true],
      ['10.0.0.1', 'fd00::1', 'UDP/9', 'not-local', 'not-local', true],
      ['fd00::1', '10.0.0.1', 'UDP/9', 'not-local', 'not-local', true],
      ['8.8.8.8', 'a/x', 'TCP/80', 'not-local', 'deny', false],
    ],
  },
  {
    name: 'the first matching rule in policy order decides, and later matches are not reported',
    objects: [
      ns('a'),
      pod('a', 'x', { labels: { app: 'x' }, ips: ['10.0.0.1'] }),
      pod('a', 'y', { labels: { app: 'y' }, ips: ['10.0.0.2'] }),
      np('a', 'p1', {
        podSelector: { matchLabels: { app: 'x' } },
        ingress: [{ ports: [{ port: 443 }] }, { from: [{ podSelector: {} }] }],
      }),
      np('a', 'p2', { podSelector: {}, ingress: [{}] }),
    ],
    probes: [
      ['a/y', 'a/x', 'TCP/443', 'default', R('a/p1', 'ingress/0'), true],
      ['a/y', 'a/x', 'TCP/80', 'default', R('a/p1', 'ingress/1/0'), true],
      ['8.8.8.8', 'a/x', 'TCP/80', 'not-local', R('a/p2', 'ingress/0'), true],
      ['8.8.8.8', 'a/y', 'TCP/80', 'not-local', R('a/p2', 'ingress/0'), true],
    ],
  },
  {
    name: 'an ipBlock except carves addresses out of the allowed range, in both families',
    objects: [
      ns('a'),
      pod('a', 'x', { ips: ['10.0.0.1', 'fd00::1'] }),
      np('a', 'blocks', {
        podSelector: {},
        ingress: [
          {
            from: [
              { ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.1.0/24', '192.168.2.7/32'] } },
              { ipBlock: { cidr: 'fd01::/64', except: ['fd01::100/120'] } },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['192.168.0.9', 'a/x', 'TCP/80', 'not-local', R('a/blocks', 'ingress/0/0'), true],
      ['192.168.1.9', 'a/x', 'TCP/80', 'not-local', 'deny', false],
      ['192.168.2.7', 'a/x', 'TCP/80', 'not-local', 'deny', false],
      ['192.168.2.8', 'a/x', 'TCP/80', 'not-local', R('a/blocks', 'ingress/0/0'), true],
      ['192.168.255.255', '10.0.0.1', 'TCP/80', 'not-local', R('a/blocks', 'ingress/0/0'), true],
      ['fd01::ff', 'fd00::1', 'UDP/53', 'not-local', R('a/blocks', 'ingress/0/1'), true],
      ['fd01::100', 'fd00::1', 'UDP/53', 'not-local', 'deny', false],
      ['fd01::1ff', 'fd00::1', 'UDP/53', 'not-local', 'deny', false],
      ['fd01::200', 'fd00::1', 'UDP/53', 'not-local', R('a/blocks', 'ingress/0/1'), true],
      ['fd02::1', 'fd00::1', 'UDP/53', 'not-local', 'deny', false],
    ],
  },
  {
    name: 'egress named ports resolve per destination, ingress named ports against the endpoint itself',
    objects: [
      ns('a'),
      pod('a', 'client', { labels: { app: 'client' }, ips: ['10.0.0.1'] }),
      pod('a', 'web1', {
        labels: { app: 'web' },
        ips: ['10.0.0.2', 'fd00::2'],
        ports: [{ name: 'http', port: 8080 }],
      }),
      pod('a', 'web2', {
        labels: { app: 'web' },
        ips: ['10.0.0.3'],
        ports: [
          { name: 'http', port: 9090 },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
      }),
      np('a', 'out', {
        podSelector: { matchLabels: { app: 'client' } },
        policyTypes: ['Egress'],
        egress: [{ ports: [{ port: 'http' }, { port: 'dns', protocol: 'UDP' }] }],
      }),
      np('a', 'in', {
        podSelector: { matchLabels: { app: 'web' } },
        ingress: [{ ports: [{ port: 'http' }] }],
      }),
    ],
    probes: [
      ['a/client', 'a/web1', 'TCP/8080', R('a/out', 'egress/0'), R('a/in', 'ingress/0'), true],
      ['a/client', 'a/web1', 'TCP/9090', 'deny', 'deny', false],
      ['a/client', 'a/web2', 'TCP/9090', R('a/out', 'egress/0'), R('a/in', 'ingress/0'), true],
      ['a/client', 'a/web2', 'TCP/8080', 'deny', 'deny', false],
      ['a/client', 'a/web2', 'UDP/53', R('a/out', 'egress/0'), 'deny', false],
      ['a/client', 'a/web1', 'UDP/53', 'deny', 'deny', false],
      ['a/client', '8.8.8.8', 'TCP/8080', 'deny', 'not-local', false],
      ['8.8.8.8', 'fd00::2', 'TCP/8080', 'not-local', R('a/in', 'ingress/0'), true],
      ['a/web2', 'a/web1', 'TCP/8080', 'default', R('a/in', 'ingress/0'), true],
    ],
  },
  {
    name: 'port ranges are inclusive at both ends and specific to their protocol',
    objects: [
      ns('a'),
      pod('a', 'x', { ips: ['10.0.0.1'] }),
      np('a', 'range', {
        podSelector: {},
        ingress: [{ ports: [{ port: 80, endPort: 443 }, { protocol: 'UDP' }] }],
      }),
    ],
    probes: [
      ['8.8.8.8', 'a/x', 'TCP/79', 'not-local', 'deny', false],
      ['8.8.8.8', 'a/x', 'TCP/80', 'not-local', R('a/range', 'ingress/0'), true],
      ['8.8.8.8', 'a/x', 'TCP/443', 'not-local', R('a/range', 'ingress/0'), true],
      ['8.8.8.8', 'a/x', 'TCP/444', 'not-local', 'deny', false],
      ['8.8.8.8', 'a/x', 'SCTP/80', 'not-local', 'deny', false],
      ['8.8.8.8', 'a/x', 'UDP/0', 'not-local', R('a/range', 'ingress/0'), true],
      ['8.8.8.8', 'a/x', 'UDP/65535', 'not-local', R('a/range', 'ingress/0'), true],
      ['8.8.8.8', 'a/x', 'ICMP/0', 'not-local', 'deny', false],
    ],
  },
  {
    name: 'a v4-mapped IPv6 address is not the IPv4 address, and mixed-family packets are decided per side',
    objects: [
      ns('a'),
      pod('a', 'x', { ips: ['10.0.0.1'] }),
      pod('a', 'y', { ips: ['fd00::2'] }),
      np('a', 'v4only', {
        podSelector: {},
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }],
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }],
      }),
    ],
    probes: [
      ['::ffff:10.0.0.1', 'a/y', 'TCP/80', 'not-local', 'deny', false],
      ['10.0.0.9', 'a/x', 'TCP/80', 'not-local', R('a/v4only', 'ingress/0/0'), true],
      ['a/x', 'a/y', 'TCP/80', 'deny', R('a/v4only', 'ingress/0/0'), false],
      ['a/y', 'a/x', 'TCP/80', R('a/v4only', 'egress/0/0'), 'deny', false],
      ['a/x', '::ffff:8.8.8.8', 'TCP/80', 'deny', 'not-local', false],
      ['a/x', '8.8.8.8', 'TCP/80', R('a/v4only', 'egress/0/0'), 'not-local', true],
    ],
  },
  {
    name: 'on an agent only local endpoints are decided; the rest of the cluster is not ours',
    local: ['a/x'],
    objects: [
      ns('a'),
      pod('a', 'x', { ips: ['10.0.0.1'] }),
      pod('a', 'y', { ips: ['10.0.0.2'] }),
      np('a', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    ],
    probes: [
      ['10.0.0.2', '10.0.0.1', 'TCP/80', 'not-local', 'deny', false],
      ['10.0.0.1', '10.0.0.2', 'TCP/80', 'deny', 'not-local', false],
      ['10.0.0.2', '10.0.0.2', 'TCP/80', 'not-local', 'not-local', true],
    ],
  },
];

function fixture(c: Case): { tables: RuleTables; snapshot: PolicySnapshot } {
  const b = build(c.objects);
  assert.deepEqual(b.issues, []);
  if (c.local === undefined) return b;
  const local = new Set(c.local);
  return {
    snapshot: b.snapshot,
    tables: compile(b.snapshot, { isLocal: (e) => local.has(`${e.namespace}/${e.name}`) }),
  };
}

/** "ns/pod" (its first address of the family, else its primary) or a literal address. */
function address(snapshot: PolicySnapshot, target: string, family: 4 | 6 | undefined): Ip {
  if (!target.includes('/')) return parseIp(target);
  const e = snapshot.endpoints.find((x) => `${x.namespace}/${x.name}` === target);
  if (e === undefined) throw new Error(`no endpoint ${target}`);
  const ips = e.ips.map(parseIp);
  return (
    ips.find((ip) => family === undefined || (typeof ip === 'number' ? 4 : 6) === family) ?? ips[0]!
  );
}

function codeWanted(want: Want, catalog: RuleCatalog): (code: number) => boolean {
  if (want === 'default') return (c) => c === VerdictCode.ALLOW_DEFAULT;
  if (want === 'deny') return (c) => c === VerdictCode.DENY;
  if (want === 'not-local') return (c) => c === VerdictCode.NOT_LOCAL;
  return (c) => catalog.rule(c)?.id === want;
}

/** The DirectionResult the reference evaluator produced for a decision; undefined when not ours. */
function referenceResult(d: DirectionDecision): DirectionResult | undefined {
  if (d.endpoint === undefined) return undefined;
  if (d.tier === 'default') return ALLOW_DEFAULT;
  return d.rule ?? DENY;
}

describe('targeted cases', () => {
  const implementations = [
    ['typescript', false],
    ['native', skipNative],
  ] as const;
  for (const [implementation, skip] of implementations) {
    for (const c of cases) {
      test(`${c.name} [${implementation}]`, { skip }, () => {
        const { tables, snapshot } = fixture(c);
        const engine = createVerdictEngine(tables, { implementation });
        const batch = new PolicyRecordBatch(c.probes.length);
        const packets: Packet[] = [];
        for (const [from, to, service] of c.probes) {
          const [proto, port] = service.split('/') as [string, string];
          const protocol = proto === 'ICMP' ? 1 : PROTOCOL_NUMBER[proto as Protocol];
          const dst = address(snapshot, to, undefined);
          const src = address(snapshot, from, typeof dst === 'number' ? 4 : 6);
          const p = { src, dst, protocol, dstPort: Number(port) };
          packets.push(p);
          batch.push(p);
        }
        const allowed = batch.evaluate(engine);
        c.probes.forEach(([from, to, service, egress, ingress, ok], i) => {
          const what = `${from} -> ${to} ${service}`;
          assert.ok(
            codeWanted(egress, engine.catalog)(batch.egress(i)),
            `${what}: egress ${describeCode(batch.egress(i), engine.catalog)}, want ${egress}`,
          );
          assert.ok(
            codeWanted(ingress, engine.catalog)(batch.ingress(i)),
            `${what}: ingress ${describeCode(batch.ingress(i), engine.catalog)}, want ${ingress}`,
          );
          assert.equal(batch.allowed(i), ok, `${what}: allowed`);
          const v = tables.decide(packets[i]!);
          assert.equal(batch.allowed(i), v.allowed, `${what}: decide() says ${v.allowed}`);
          assert.equal(batch.self(i), v.self, `${what}: self`);
          assert.equal(
            directionResultOf(batch.egress(i), engine.catalog),
            referenceResult(v.egress),
            `${what}: egress as a DirectionResult`,
          );
          assert.equal(
            directionResultOf(batch.ingress(i), engine.catalog),
            referenceResult(v.ingress),
            `${what}: ingress as a DirectionResult`,
          );
        });
        assert.equal(allowed, c.probes.filter((p) => p[5]).length);
        checkEngine(tables, engine, packets, c.name);
        engine[Symbol.dispose]();
      });
    }
  }
});

test('the engine reports which implementation decides and why', () => {
  const b = build([ns('a'), pod('a', 'x', { ips: ['10.0.0.1'] })]);
  const ts = createVerdictEngine(b.tables, { implementation: 'typescript' });
  assert.equal(ts.implementation, 'typescript');
  assert.equal(ts.status.reason, 'requested');
  const status = verdictEngineStatus();
  const auto = createVerdictEngine(b.tables);
  assert.equal(auto.implementation, status.implementation);
  assert.equal(auto.status.reason, status.reason);
  assert.equal(auto.implementation, native.evaluator ? 'native' : 'typescript');
  assert.ok(status.reason.length > 0);
  if (native.evaluator === undefined)
    assert.throws(
      () => createVerdictEngine(b.tables, { implementation: 'native' }),
      /native verdict engine unavailable/,
    );
});

test('a hundred broad ClusterNetworkPolicies: every long cluster-tier list is peer-class indexed in both engines, and their verdicts equal decide()', {
  skip: skipNative,
}, () => {
  // Hundreds of cluster-tier rules per pod drawing their peers from a few
  // dozen shared selector groups: a per-list segment tree files every rule's
  // ranges and ran out of budget at bench size, leaving the lists scanned.
  const cluster = realisticCluster(100);
  const b = build([...cluster.objects, ...realisticClusterPolicies(100)]);
  assert.deepEqual(b.issues, []);
  const long = new Set<readonly unknown[]>();
  let longTables = 0;
  for (const e of b.tables.endpoints.values())
    for (const d of [e.ingress, e.egress])
      for (const [list, index] of [
        [d.admin, d.adminIndex],
        [d.baseline, d.baselineIndex],
      ] as const)
        if (list.length >= 32) {
          long.add(list);
          longTables++;
          assert.ok(
            index !== null && index !== undefined,
            `${e.key}: a ${list.length}-rule cluster-tier list is scanned`,
          );
        }
  assert.ok(long.size > 20, `only ${long.size} long cluster-tier lists`);
  const engine = createVerdictEngine(b.tables, { implementation: 'native' });
  const info = engine.info();
  // The image stores equal tables once: at least one class-indexed table per distinct long list.
  assert.ok(
    typeof info.classIndexedTables === 'number' && info.classIndexedTables >= long.size,
    `native: ${info.classIndexedTables} class-indexed tables for ${long.size} long lists (${longTables} directions)`,
  );
  const ips = [...b.tables.byIp.keys()];
  const r = seededRandom(7);
  const probes: Packet[] = [];
  for (let i = 0; i < 20_000; i++)
    probes.push({
      src: r.pick(ips),
      dst: r.pick(ips),
      protocol: r.pick([6, 6, 17]),
      dstPort: r.pick([80, 443, 5432, 8080, 9090, 53]),
    });
  const ref = reference(b.tables, probes);
  checkEngine(b.tables, engine, ref, 'realistic cluster with 100 cluster policies');
  engine[Symbol.dispose]();
});
