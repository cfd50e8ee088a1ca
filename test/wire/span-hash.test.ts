/**
 * Span hashes are what "in sync" compares: the controller hashes the objects
 * it builds, an agent the objects it decoded. They must agree on the same
 * content and differ on any other, and a digest kept up to date entry by
 * entry must equal the one computed from scratch.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import type * as w from '../../shared/generated/weir/v1/index.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { seededRandom } from '../../shared/random.js';
import {
  SpanDigest,
  objectHash,
  snapshotHash,
  spanElement,
  spanHash,
  spanHashOf,
  spanKey,
} from '../../shared/wire/span-hash.js';
import { build, namespace, networkPolicy, pod } from '../../testing/cluster.js';

const root = protobuf.loadSync(
  fileURLToPath(new URL('../../proto/weir/v1/policy.proto', import.meta.url)),
);
const Snapshot = root.lookupType('weir.v1.PolicySnapshot');
const decodeOptions = { longs: String, enums: String, defaults: true, oneofs: true };
const throughTheWire = (s: w.PolicySnapshot) =>
  Snapshot.toObject(
    Snapshot.decode(Snapshot.encode(Snapshot.fromObject(s)).finish()),
    decodeOptions,
  ) as w.PolicySnapshot__Output;

/** Every oneof variant: ipBlock and selector groups, both namespace forms, port ranges, named ports, all ports, any peers. */
function snapshot(): w.PolicySnapshot {
  return snapshotToWire(
    build([
      namespace('a', { team: 'x', env: 'prod' }),
      namespace('b'),
      pod('a', 'web', {
        labels: { app: 'web', tier: 'front', zone: 'z1' },
        ips: ['10.0.0.1', 'fd00::1'],
        ports: [
          { name: 'http', port: 8080 },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
        node: 'n1',
      }),
      pod('b', 'client', { labels: { app: 'client' }, ips: ['10.0.1.1'], node: 'n2' }),
      networkPolicy('a', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { team: 'x' } } },
              { podSelector: { matchLabels: { app: 'client' } } },
              { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
            ],
            ports: [{ port: 80, endPort: 90 }, { port: 'http' }, { protocol: 'UDP' }],
          },
          {},
        ],
        egress: [{ to: [{ podSelector: {} }], ports: [{ port: 'dns', protocol: 'UDP' }] }],
      }),
    ]).snapshot,
  );
}

const reversedMaps = (e: w.Endpoint): w.Endpoint => ({
  ...e,
  labels: Object.fromEntries(Object.entries(e.labels ?? {}).reverse()),
  namespaceLabels: Object.fromEntries(Object.entries(e.namespaceLabels ?? {}).reverse()),
});

describe('span hash', () => {
  test('the objects as the controller builds them and as an agent decodes them hash alike', () => {
    const built = snapshot();
    const decoded = throughTheWire(built);
    assert.ok(built.addressGroups!.length >= 3 && built.serviceGroups!.length >= 2);
    const pairs: Array<[string, string, string]> = [
      ...built.policies!.map((p, i): [string, string, string] => [
        p.id!,
        objectHash.policy(p),
        objectHash.policy(decoded.policies[i]!),
      ]),
      ...built.addressGroups!.map((g, i): [string, string, string] => [
        g.id!,
        objectHash.addressGroup(g),
        objectHash.addressGroup(decoded.addressGroups[i]!),
      ]),
      ...built.serviceGroups!.map((g, i): [string, string, string] => [
        g.id!,
        objectHash.serviceGroup(g),
        objectHash.serviceGroup(decoded.serviceGroups[i]!),
      ]),
      ...built.endpoints!.map((e, i): [string, string, string] => [
        e.name!,
        objectHash.endpoint(e),
        objectHash.endpoint(decoded.endpoints[i]!),
      ]),
    ];
    for (const [what, controller, agent] of pairs) assert.equal(agent, controller, what);
    assert.equal(snapshotHash(built), snapshotHash(decoded));
  });

  test('neither the order of map entries nor the order of objects changes the hash', () => {
    const s = snapshot();
    const shuffled: w.PolicySnapshot = {
      ...s,
      policies: [...s.policies!].reverse(),
      addressGroups: [...s.addressGroups!].reverse(),
      serviceGroups: [...s.serviceGroups!].reverse(),
      endpoints: [...s.endpoints!].reverse().map(reversedMaps),
    };
    assert.equal(snapshotHash(shuffled), snapshotHash(s));
  });

  const changes: Array<[string, (s: w.PolicySnapshot) => void]> = [
    ['a label value', (s) => (s.endpoints![0]!.labels!.app = 'other')],
    ['a namespace label', (s) => (s.endpoints![0]!.namespaceLabels!.team = 'y')],
    ['an address', (s) => (s.endpoints![0]!.ips = ['10.0.0.2'])],
    ['the node', (s) => (s.endpoints![0]!.node = 'n9')],
    ['a named port number', (s) => (s.endpoints![0]!.ports![0]!.port = 8081)],
    [
      'a group member',
      (s) => s.addressGroups!.find((g) => (g.members ?? []).length > 0)!.members!.pop(),
    ],
    ['a prefix', (s) => (s.addressGroups!.find((g) => g.ipBlock)!.prefixes = ['10.0.0.0/9'])],
    ['a port range', (s) => (s.serviceGroups![0]!.services![0]!.range = { start: 80, end: 91 })],
    ['a rule peer', (s) => (s.policies![0]!.rules![0]!.endpoint2 = { any: true })],
    ['isolation', (s) => (s.policies![0]!.egressIsolation = false)],
    ['the order of rules', (s) => s.policies![0]!.rules!.reverse()],
    ['the policy set', (s) => (s.applicationPolicySet = { ...s.applicationPolicySet, tiers: [] })],
    ['the cluster', (s) => (s.cluster = 'other')],
    ['an object more', (s) => s.endpoints!.push({ ...s.endpoints![0]!, name: 'copy' })],
  ];
  for (const [what, change] of changes) {
    test(`changing ${what} changes the span hash`, () => {
      const s = snapshot();
      const before = snapshotHash(s);
      change(s);
      assert.notEqual(snapshotHash(s), before);
    });
  }

  test('swapping the contents of two objects between their keys changes the span hash', () => {
    const base = { cluster: 'c', applicationPolicySet: null };
    const [h1, h2] = ['one', 'two'].map((x) => createHash('sha256').update(x).digest('base64url'));
    assert.notEqual(
      spanHash({
        ...base,
        entries: [
          ['e:a/x', h1!],
          ['e:a/y', h2!],
        ],
      }),
      spanHash({
        ...base,
        entries: [
          ['e:a/x', h2!],
          ['e:a/y', h1!],
        ],
      }),
    );
  });

  test("the span hash is SHA-256 of the tag, the cluster, the policy set hash and the entries' sum mod 2^256", () => {
    // An independent reading of the definition in span-hash.ts, with BigInt.
    const s = snapshot();
    const entries = [
      ...s.policies!.map((p) => `${spanKey.policy(p)} ${objectHash.policy(p)}`),
      ...s.addressGroups!.map((g) => `${spanKey.addressGroup(g)} ${objectHash.addressGroup(g)}`),
      ...s.serviceGroups!.map((g) => `${spanKey.serviceGroup(g)} ${objectHash.serviceGroup(g)}`),
      ...s.endpoints!.map((e) => `${spanKey.endpoint(e)} ${objectHash.endpoint(e)}`),
    ];
    let sum = 0n;
    for (const line of entries) {
      const le = createHash('sha256').update(line).digest().reverse();
      sum = (sum + BigInt(`0x${le.toString('hex')}`)) % 2n ** 256n;
    }
    const expected = createHash('sha256')
      .update(
        `weir-span-v2\n${JSON.stringify(s.cluster)}\n${objectHash.applicationPolicySet(s.applicationPolicySet)}\n${sum.toString(16).padStart(64, '0')}\n`,
      )
      .digest('base64url');
    assert.equal(snapshotHash(s), expected);
  });

  test('the digest carries and borrows across every limb, modulo 2^256', () => {
    const ones = new Uint32Array(8).fill(0xffffffff); // 2^256 - 1
    const one = new Uint32Array(8);
    one[0] = 1;
    const table: Array<[string, SpanDigest, string]> = [
      ['(2^256 - 1) + 1', new SpanDigest().add(ones).add(one), '0'.repeat(64)],
      ['0 - 1', new SpanDigest().subtract(one), 'f'.repeat(64)],
      ['(2^256 - 1) + (2^256 - 1)', new SpanDigest().add(ones).add(ones), `${'f'.repeat(63)}e`],
      ['1 - (2^256 - 1)', new SpanDigest().add(one).subtract(ones), `${'0'.repeat(63)}2`],
    ];
    for (const [what, d, hex] of table) assert.equal(d.toString(), hex, what);
  });

  test('a digest kept through random additions and removals equals the one computed from scratch', () => {
    const r = seededRandom(7);
    const keys = Array.from({ length: 40 }, (_, i) => `e:ns/pod-${i}`);
    const contents = ['a', 'b', 'c'].map((x) => createHash('sha256').update(x).digest('base64url'));
    for (let round = 0; round < 50; round++) {
      const held = new Map<string, string>();
      const digest = new SpanDigest();
      for (let step = 0; step < 60; step++) {
        const key = r.pick(keys);
        const old = held.get(key);
        if (old !== undefined) digest.subtract(spanElement(key, old));
        if (old !== undefined && r.chance(0.4)) held.delete(key);
        else {
          const hash = r.pick(contents);
          held.set(key, hash);
          digest.add(spanElement(key, hash));
        }
        const policySet = objectHash.applicationPolicySet(null);
        assert.equal(
          spanHashOf('c', policySet, digest),
          spanHash({ cluster: 'c', applicationPolicySet: null, entries: [...held].reverse() }),
          `round ${round} step ${step}`,
        );
      }
    }
  });
});
