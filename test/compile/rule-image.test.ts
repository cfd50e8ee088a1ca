/**
 * The rule image says exactly what the RuleTables it was encoded from say:
 * decoded back in TypeScript, every endpoint, address, table, rule, prefix
 * range and port entry matches the compiled objects (read through their
 * public API). And the encoder is deterministic and refuses values the
 * layout cannot hold.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InternalError } from '../../shared/errors.js';
import { parseCidr, parseIp, type Cidr, type Ip } from '../../shared/net/ip.js';
import { PrefixSet } from '../../shared/net/prefix-set.js';
import { PortMatcher } from '../../shared/policy/port-matcher.js';
import {
  RuleTables,
  type CompiledRule,
  type DirectionTable,
} from '../../shared/policy/rule-tables.js';
import type { PolicySnapshot } from '../../shared/policy/types.js';
import { RuleCatalog } from '../../vrouter-agent/compile/rule-catalog.js';
import {
  decodeRuleImage,
  RuleImageError,
  type DecodedRule,
  type DecodedTable,
} from '../../testing/rule-image-decoder.js';
import {
  HEADER_BYTES,
  Section,
  encodeRuleImage,
  prefixRanges,
  prefixRangesFromText,
} from '../../vrouter-agent/compile/rule-image.js';
import { build } from '../../testing/cluster.js';
import { randomCluster } from '../../testing/random-cluster.js';
import { seededRandom } from '../../shared/random.js';

function sameTable(
  decoded: DecodedTable,
  table: DirectionTable,
  catalog: RuleCatalog,
  where: string,
) {
  assert.equal(decoded.policyCount, table.policies.length, `${where}: policy count`);
  assert.equal(decoded.rules.length, table.rules.length, `${where}: rule count`);
  decoded.rules.forEach((index, k) => {
    assert.equal(
      catalog.rule(index),
      table.rules[k],
      `${where}: rule ${k} is catalog entry ${index}`,
    );
  });
}

function sameRule(decoded: DecodedRule, rule: CompiledRule, where: string) {
  assert.equal(decoded.id, rule.id, `${where}: id`);
  assert.equal(decoded.policy, rule.policy, `${where}: policy`);
  if (rule.peer === null) assert.equal(decoded.peer, null, `${where}: any peer`);
  else assert.deepEqual(decoded.peer, prefixRangesFromText(rule.peer), `${where}: peer ranges`);
  if (rule.ports === null) {
    assert.equal(decoded.ports, null, `${where}: any port`);
    return;
  }
  assert.ok(decoded.ports !== null, `${where}: ports`);
  assert.deepEqual(
    decoded.ports.fixed,
    Array.from(rule.ports.fixed),
    `${where}: fixed port entries`,
  );
  const want = new Map<Ip, number[]>(
    [...(rule.ports.byDestination ?? [])].map(([ip, t]) => [ip, Array.from(t)]),
  );
  assert.deepEqual(
    new Map(decoded.ports.byDestination),
    want,
    `${where}: named ports per destination`,
  );
}

test('a decoded image matches its rule tables on 150 random clusters: endpoints and their node addresses, addresses, tables, rules, prefixes, ports', () => {
  let rules = 0;
  let dests = 0;
  let v6ranges = 0;
  let nodeSets = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const b = build(randomCluster(seed, { bigTables: seed % 10 === 0 }).objects);
    const { image, catalog, counts } = encodeRuleImage(b.tables);
    const d = decodeRuleImage(image);
    const where = `seed ${seed}`;
    assert.deepEqual(d.counts, counts, `${where}: section counts`);
    const endpoints = [...b.tables.endpoints.values()];
    assert.equal(d.endpoints.length, endpoints.length, `${where}: endpoint count`);
    endpoints.forEach((ce, i) => {
      const de = d.endpoints[i]!;
      assert.equal(de.key, ce.key, `${where}: endpoint ${i}`);
      sameTable(d.tables[de.egress]!, ce.egress, catalog, `${where}: ${ce.key} egress`);
      sameTable(d.tables[de.ingress]!, ce.ingress, catalog, `${where}: ${ce.key} ingress`);
      assert.deepEqual(
        de.node,
        ce.node === null ? null : prefixRanges(ce.node),
        `${where}: ${ce.key} node addresses`,
      );
      if (ce.node !== null) nodeSets++;
    });
    assert.equal(d.byIp.size, b.tables.byIp.size, `${where}: address count`);
    for (const [ip, ce] of b.tables.byIp)
      assert.equal(d.endpoints[d.byIp.get(ip)!]?.key, ce.key, `${where}: address ${ip}`);
    assert.equal(d.rules.length, catalog.size, `${where}: one image rule per catalog entry`);
    d.rules.forEach((r, i) => {
      sameRule(r, catalog.rule(i)!, `${where}: rule ${i}`);
    });
    rules += d.rules.length;
    dests += counts[Section.DESTS4]! + counts[Section.DESTS6]!;
    v6ranges += counts[Section.RANGES6]!;
  }
  assert.ok(
    rules > 2500 && dests > 100 && v6ranges > 100 && nodeSets > 500,
    `exercised ${rules} rules, ${dests} named-port destinations, ${v6ranges} IPv6 ranges, ${nodeSets} node sets`,
  );
});

test('every rule of the tables has exactly one catalog index, and equal direction tables are stored once', () => {
  const b = build(randomCluster(7, { bigTables: true }).objects);
  const catalog = RuleCatalog.of(b.tables);
  const seen = new Set<CompiledRule>();
  for (const e of b.tables.endpoints.values()) {
    for (const r of [...e.egress.rules, ...e.ingress.rules]) {
      const i = catalog.indexOf(r);
      assert.ok(i !== undefined && catalog.rule(i) === r, r.id);
      seen.add(r);
    }
  }
  assert.equal(catalog.size, seen.size);
  assert.equal(catalog.rule(-1), undefined);
  assert.equal(catalog.rule(catalog.size), undefined);
  const { counts } = encodeRuleImage(b.tables, catalog);
  assert.ok(
    counts[Section.TABLES]! < 2 * b.tables.endpoints.size,
    `${counts[Section.TABLES]} tables for ${b.tables.endpoints.size} endpoints`,
  );
});

test('encoding is deterministic: the same tables give the same bytes', () => {
  for (const seed of [3, 30, 300]) {
    const objects = randomCluster(seed, { bigTables: true }).objects;
    const a = new Uint8Array(encodeRuleImage(build(objects).tables).image);
    const b = new Uint8Array(encodeRuleImage(build(objects).tables).image);
    assert.deepEqual(a, b, `seed ${seed}`);
    assert.equal(a.byteLength % 8, 0);
    assert.ok(a.byteLength > HEADER_BYTES);
  }
});

test('prefix ranges read from a PrefixSet equal those of its public describe()', () => {
  const cidr = (t: string) => parseCidr(t) as Cidr;
  const sets = [
    PrefixSet.EMPTY,
    PrefixSet.from([cidr('0.0.0.0/0')]),
    PrefixSet.from([cidr('::/0')]),
    PrefixSet.from([
      cidr('10.0.0.0/8'),
      cidr('10.1.0.0/16'),
      parseIp('10.255.255.255'),
      parseIp('11.0.0.0'),
      parseIp('192.168.0.1'),
    ]),
    PrefixSet.from([
      cidr('fd00::/64'),
      parseIp('fd00::1:0:0:0'),
      parseIp('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
      parseIp('::'),
      parseIp('::ffff:10.0.0.1'),
    ]),
    PrefixSet.from([
      parseIp('255.255.255.255'),
      parseIp('0.0.0.0'),
      cidr('2001:db8::/32'),
      parseIp('10.0.0.1'),
      parseIp('10.0.0.3'),
    ]),
  ];
  for (let seed = 1; seed <= 40; seed++) {
    for (const e of build(randomCluster(seed).objects).tables.endpoints.values()) {
      for (const r of [...e.ingress.rules, ...e.egress.rules])
        if (r.peer !== null) sets.push(r.peer);
    }
  }
  for (const s of sets)
    assert.deepEqual(prefixRanges(s), prefixRangesFromText(s), s.describe().join(' '));
});

function handMadeTables(rule: Partial<CompiledRule>): RuleTables {
  const snapshot: PolicySnapshot = {
    cluster: 'hand',
    applicationPolicySet: { id: 'hand/aps', cluster: 'hand', tiers: [] },
    policies: [],
    addressGroups: [],
    serviceGroups: [],
    endpoints: [],
  };
  const compiled: CompiledRule = {
    id: 'hand/r',
    policy: 'hand/p',
    tier: 'namespace',
    action: 'pass',
    peer: null,
    ports: null,
    ...rule,
  };
  const table: DirectionTable = {
    policies: ['hand/p'],
    rules: [compiled],
    adminPolicies: [],
    admin: [],
    baselinePolicies: [],
    baseline: [],
    adminIndex: null,
    baselineIndex: null,
  };
  const endpoint = {
    endpoint: {
      cluster: 'hand',
      namespace: 'a',
      name: 'x',
      uid: 'u',
      node: '',
      ips: ['10.0.0.1'],
      labels: {},
      namespaceLabels: {},
      ports: [],
      nodeAddresses: [],
    },
    key: 'a/x',
    ips: [parseIp('10.0.0.1')],
    node: null,
    ingress: table,
    egress: table,
  };
  return new RuleTables(snapshot, new Map([['a/x', endpoint]]));
}

test('the encoder refuses port entries outside protocol 0..255 and ports 0..65535, naming the rule', () => {
  for (const fixed of [
    [6, 0, 65536],
    [256, 1, 2],
    [6, -1, 5],
    [6, 1],
  ]) {
    const tables = handMadeTables({ ports: new PortMatcher(Int32Array.from(fixed), undefined) });
    assert.throws(
      () => encodeRuleImage(tables),
      (e: unknown) => e instanceof InternalError && e.message.includes('hand/r'),
      JSON.stringify(fixed),
    );
  }
  const named = handMadeTables({
    ports: new PortMatcher(
      new Int32Array(0),
      new Map([[parseIp('10.0.0.2'), Int32Array.from([17, 70000, 70000])]]),
    ),
  });
  assert.throws(() => encodeRuleImage(named), InternalError);
  const fine = handMadeTables({
    ports: new PortMatcher(
      Int32Array.from([6, 0, 65535, 132, 9, 8]),
      new Map([[parseIp('fd00::2'), Int32Array.from([17, 53, 53])]]),
    ),
  });
  const d = decodeRuleImage(encodeRuleImage(fine).image);
  assert.deepEqual(d.rules[0]!.ports!.fixed, [6, 0, 65535, 132, 9, 8]);
  assert.deepEqual([...d.rules[0]!.ports!.byDestination], [[parseIp('fd00::2'), [17, 53, 53]]]);
});

test('the decoder refuses truncated, padded and corrupted images with a RuleImageError, never another error', () => {
  const image = new Uint8Array(
    encodeRuleImage(build(randomCluster(5, { bigTables: true }).objects).tables).image,
  );
  for (let len = 0; len < image.byteLength; len += 1 + (len >> 6)) {
    assert.throws(
      () => decodeRuleImage(image.subarray(0, len)),
      RuleImageError,
      `first ${len} bytes`,
    );
  }
  const padded = new Uint8Array(image.byteLength + 8);
  padded.set(image);
  assert.throws(() => decodeRuleImage(padded), RuleImageError);
  const r = seededRandom(77);
  let refused = 0;
  for (let i = 0; i < 2000; i++) {
    const bytes = image.slice();
    const at = r.chance(0.3) ? r.int(HEADER_BYTES) : r.int(bytes.byteLength);
    bytes[at] = bytes[at]! ^ (1 << r.int(8));
    try {
      decodeRuleImage(bytes);
    } catch (err) {
      assert.ok(err instanceof RuleImageError, `byte ${at}: ${String(err)}`);
      refused++;
    }
  }
  assert.ok(refused > 200, `refused ${refused} of 2000`);
});
