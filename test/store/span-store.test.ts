/**
 * Spans: a node compiled from its span alone decides every flow of its local
 * endpoints exactly as the whole cluster does, after every change; and a
 * change reaches only the nodes it concerns.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { namespaceOf, readKubeObject, type KubeObject } from '../../controller/kube/objects.js';
import { SpanStore, spanSnapshot } from '../../controller/store/span-store.js';
import { formatIp, parseIp, type Ip } from '../../shared/net/ip.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { snapshotHash, spanHash } from '../../shared/wire/span-hash.js';
import { compile } from '../../shared/policy/compile.js';
import type { DirectionDecision, RuleTables } from '../../shared/policy/rule-tables.js';
import { seededRandom as rng } from '../../shared/random.js';
import { namespace, networkPolicy, node, pod, type Raw } from '../../testing/cluster.js';
import { randomCluster as generate } from '../../testing/random-cluster.js';

const randomCluster = (seed: number) => generate(seed, { variety: 'basic' }).objects;

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(`fixture invalid: ${JSON.stringify(r)}`);
  return r.object;
}

const PROBES = [
  [6, 80],
  [6, 81],
  [17, 53],
  [132, 443],
  [6, 8080],
] as const;

/**
 * What a node enforces for every packet between the addresses: egress where
 * the source's endpoint is on the node, ingress where the destination's is,
 * as "endpoint tier rule" ("-" where the node does not decide).
 */
function nodeDecisions(tables: RuleTables, node: string, addresses: readonly Ip[]): string[] {
  const out: string[] = [];
  const side = (d: DirectionDecision) =>
    d.endpoint === undefined || d.endpoint.endpoint.node !== node
      ? '-'
      : `${d.endpoint.key} ${d.tier} ${d.rule?.id ?? (d.allowed ? 'allow' : 'deny')}`;
  for (const src of addresses) {
    for (const dst of addresses) {
      if (typeof src !== typeof dst) continue;
      for (const [protocol, dstPort] of PROBES) {
        const v = tables.decide({ src, dst, protocol, dstPort });
        const here = v.self && tables.byIp.get(src)?.endpoint.node === node;
        out.push(
          `${formatIp(src)} -> ${formatIp(dst)} ${protocol}/${dstPort}: ${
            here
              ? 'self'
              : v.self
                ? 'egress -; ingress -'
                : `egress ${side(v.egress)}; ingress ${side(v.ingress)}`
          }`,
        );
      }
    }
  }
  return out;
}

function checkSpans(model: ClusterModel, store: SpanStore, label: string) {
  const global = compile(model.snapshot());
  const addresses = [
    ...new Set([
      ...model.endpoints().flatMap((e) => e.ips),
      ...NODES.flatMap((n) => model.nodeAddresses(n)),
    ]),
    '10.0.0.200',
    '8.8.8.8',
    'fd00::77',
  ].map(parseIp);
  for (const node of NODES) {
    const local = compile(spanSnapshot(store, model, node), { isLocal: (e) => e.node === node });
    assert.deepEqual(
      nodeDecisions(local, node, addresses),
      nodeDecisions(global, node, addresses),
      `${label}: node ${node}`,
    );
  }
}

const NODES = ['node-0', 'node-1', 'node-2'];

/** Node objects for the random clusters' nodes, with addresses that vary (and one in the pod range). */
function randomNodes(r: ReturnType<typeof rng>): Raw[] {
  return NODES.filter(() => r.chance(0.8)).map((name, i) =>
    node(name, [
      `192.168.0.${1 + i + (r.chance(0.3) ? 10 : 0)}`,
      ...(r.chance(0.3) ? [`fd01::${i + 1}`] : []),
      ...(r.chance(0.2) ? [`10.0.${i}.${1 + r.int(12)}`] : []),
    ]),
  );
}

/** Gives some pods the address of another pod (an address reused before the old pod is gone). */
function withCollisions(objects: Raw[], r: ReturnType<typeof rng>): Raw[] {
  const pods = objects.filter((o) => o.kind === 'Pod');
  const status = (o: Raw) => o.status as { podIP: string; podIPs: Array<{ ip: string }> };
  for (const o of pods) {
    if (!r.chance(0.3)) continue;
    const ip = status(r.pick(pods)).podIP;
    status(o).podIP = ip;
    status(o).podIPs[0] = { ip };
  }
  return objects;
}

/**
 * Every node's kept span hash against two computations from scratch: from
 * the span's entries, and from its objects in wire form (what an agent
 * holding exactly this span reports).
 */
function checkHashes(model: ClusterModel, store: SpanStore, label: string) {
  for (const node of new Set(['node-0', 'node-1', 'node-2', ...store.nodes()])) {
    const span = store.span(node);
    const entries = [...(span?.entries ?? [])].map(([k, e]): [string, string] => [k, e.hash]);
    const fromScratch = spanHash({
      cluster: model.cluster,
      applicationPolicySet: snapshotToWire(spanSnapshot(store, model, node)).applicationPolicySet,
      entries,
    });
    assert.equal(store.spanHash(node), fromScratch, `${label}: node ${node}, from its entries`);
    assert.equal(
      store.spanHash(node),
      snapshotHash(snapshotToWire(spanSnapshot(store, model, node))),
      `${label}: node ${node}, from its objects`,
    );
    if (span !== undefined)
      assert.equal(
        store.hashOfEntries(new Map(entries)),
        fromScratch,
        `${label}: node ${node}, hashOfEntries`,
      );
  }
}

describe('per-node spans', () => {
  test('the span hash kept through random commits equals the one computed from scratch for every node', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed * 17);
      const model = new ClusterModel({ cluster: 't' });
      const store = new SpanStore(model);
      for (const o of randomCluster(seed).map(read)) model.apply({ type: 'upsert', object: o });
      store.commit(0);
      checkHashes(model, store, `seed ${seed} initial`);
      // Later versions of the same objects (pods move, labels, ports and
      // selectors change), deletions, and re-creations, committed in batches.
      const versions = [seed + 5000, seed + 9000].map((s) => randomCluster(s).map(read));
      let step = 0;
      for (const next of versions) {
        for (const o of next) {
          step++;
          if (r.chance(0.2))
            model.apply({
              type: 'delete',
              kind: o.kind,
              namespace: namespaceOf(o),
              name: o.name,
            });
          else model.apply({ type: 'upsert', object: o });
          if (r.chance(0.25)) {
            store.commit(step);
            checkHashes(model, store, `seed ${seed} step ${step}`);
          }
        }
      }
      store.commit(step);
      checkHashes(model, store, `seed ${seed} end`);
    }
  });

  test("a node compiled from its span alone decides its endpoints' flows as the whole cluster does, after every change, also for addresses two pods claim and traffic with nodes", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed * 31);
      const model = new ClusterModel({ cluster: 't' });
      const store = new SpanStore(model);
      for (const o of [...randomNodes(r), ...withCollisions(randomCluster(seed), r)].map(read))
        model.apply({ type: 'upsert', object: o });
      store.commit(0);
      checkSpans(model, store, `seed ${seed} initial`);
      const next = [...withCollisions(randomCluster(seed + 5000), r), ...randomNodes(r)].map(read);
      for (let i = 0; i < next.length; i++) {
        const o = next[i]!;
        if (r.chance(0.15))
          model.apply({
            type: 'delete',
            kind: o.kind,
            namespace: namespaceOf(o),
            name: o.name,
          });
        else model.apply({ type: 'upsert', object: o });
        if (r.chance(0.3) || i === next.length - 1) {
          store.commit(i);
          checkSpans(model, store, `seed ${seed} step ${i}`);
        }
      }
    }
  });

  test('a node resolves an egress named port at an address two pods claim against the pod the cluster gives it to, though that pod is on another node', () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    for (const raw of [
      namespace('a'),
      // 10.9.9.9 is claimed by both; the last by name (a/w, without the port) owns it.
      pod('a', 'l', { ips: ['10.9.9.9'], node: 'node-0', ports: [{ name: 'http', port: 8080 }] }),
      pod('a', 'w', { ips: ['10.9.9.9'], node: 'node-1' }),
      pod('a', 'client', { labels: { app: 'client' }, ips: ['10.9.0.1'], node: 'node-2' }),
      networkPolicy('a', 'out', {
        podSelector: { matchLabels: { app: 'client' } },
        policyTypes: ['Egress'],
        egress: [{ ports: [{ port: 'http' }] }],
      }),
    ])
      model.apply({ type: 'upsert', object: read(raw) });
    store.commit(0);
    const packet = {
      src: parseIp('10.9.0.1'),
      dst: parseIp('10.9.9.9'),
      protocol: 6,
      dstPort: 8080,
    };
    assert.equal(compile(model.snapshot()).decide(packet).egress.allowed, false, 'a/w has no http');
    const span = spanSnapshot(store, model, 'node-2');
    assert.deepEqual(
      span.endpoints.map((e) => [`${e.namespace}/${e.name}`, e.ips]),
      [
        ['a/client', ['10.9.0.1']],
        ['a/l', []],
      ],
      "the loser's copy in the span holds none of the address it lost",
    );
    const node2 = compile(span, { isLocal: (e) => e.node === 'node-2' });
    assert.equal(node2.decide(packet).egress.allowed, false);
    checkSpans(model, store, 'named port');

    // The winner leaves: the address is the other pod's again, and the span says so.
    model.apply({ type: 'delete', kind: 'Pod', namespace: 'a', name: 'w' });
    assert.ok(store.commit(1)!.nodes.includes('node-2'));
    const after = compile(spanSnapshot(store, model, 'node-2'), {
      isLocal: (e) => e.node === 'node-2',
    });
    assert.equal(after.decide(packet).egress.allowed, true, "a/l's http");
    checkSpans(model, store, 'after the winner left');
  });

  test("a span resolves an egress named port at its peer groups' members, holding no endpoint of theirs but the owner of an address they share", () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    const apply = (raws: Raw[]) => {
      for (const raw of raws) model.apply({ type: 'upsert', object: read(raw) });
    };
    const pg = (port: number) => [{ name: 'pg', port }];
    apply([
      namespace('a'),
      namespace('b'),
      pod('a', 'client', { labels: { app: 'client' }, ips: ['10.9.0.1'], node: 'node-2' }),
      pod('a', 'db1', { labels: { app: 'db' }, ips: ['10.9.1.1'], node: 'node-0', ports: pg(80) }),
      pod('a', 'web', { labels: { app: 'web' }, ips: ['10.9.1.2'], node: 'node-1', ports: pg(81) }),
      pod('b', 'x', { ips: ['10.9.2.1'], node: 'node-1', ports: pg(443) }),
      networkPolicy('a', 'out', {
        podSelector: { matchLabels: { app: 'client' } },
        policyTypes: ['Egress'],
        egress: [
          { to: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ port: 'pg' }] },
          {
            to: [{ namespaceSelector: { matchLabels: { tier: 'data' } } }],
            ports: [{ port: 'pg' }],
          },
        ],
      }),
    ]);
    store.commit(0);
    const endpoints = () =>
      spanSnapshot(store, model, 'node-2').endpoints.map((e) => `${e.namespace}/${e.name}`);
    assert.deepEqual(endpoints(), ['a/client'], 'the members of the peer groups carry their ports');
    checkSpans(model, store, 'named port peers');

    // Pods that did not change join a peer: the namespace's labels did.
    apply([namespace('b', { tier: 'data' })]);
    assert.ok(store.commit(1)!.nodes.includes('node-2'));
    assert.deepEqual(endpoints(), ['a/client']);
    checkSpans(model, store, 'namespace relabelled');

    // An address a peer's member claims but another pod wins: resolved at the winner.
    apply([pod('a', 'z', { ips: ['10.9.1.1'], node: 'node-1', ports: pg(8080) })]);
    store.commit(2);
    assert.deepEqual(endpoints(), ['a/client', 'a/z'], 'a/z owns the address a/db1 claims');
    checkSpans(model, store, 'shared address');

    // And when it goes, the address is a/db1's alone again.
    model.apply({ type: 'delete', kind: 'Pod', namespace: 'a', name: 'z' });
    store.commit(3);
    assert.deepEqual(endpoints(), ['a/client']);
    checkSpans(model, store, 'shared address released');

    // A peer through its namespace's labels shares an address with a pod that wins it...
    apply([namespace('c'), pod('c', 'w', { ips: ['10.9.2.1'], node: 'node-0' })]);
    store.commit(4);
    assert.deepEqual(endpoints(), ['a/client', 'c/w'], 'c/w owns the address b/x claims');
    checkSpans(model, store, 'shared address of a namespace peer');
    // ...and stops being a peer with no change of its own: the owner leaves the span.
    apply([namespace('b')]);
    store.commit(5);
    assert.deepEqual(endpoints(), ['a/client']);
    checkSpans(model, store, 'namespace peer relabelled away');
    apply([namespace('b', { tier: 'data' })]);
    store.commit(6);
    assert.deepEqual(endpoints(), ['a/client', 'c/w']);
    checkSpans(model, store, 'namespace peer relabelled back');
  });

  test("a node does not decide for its pod's address when a pod on another node wins it", () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    for (const raw of [
      namespace('a'),
      pod('a', 'l', { labels: { app: 'l' }, ips: ['10.9.9.9'], node: 'node-0' }),
      pod('a', 'w', { ips: ['10.9.9.9'], node: 'node-1' }),
      networkPolicy('a', 'deny-l', { podSelector: { matchLabels: { app: 'l' } } }),
    ])
      model.apply({ type: 'upsert', object: read(raw) });
    store.commit(0);
    const packet = { src: parseIp('8.8.8.8'), dst: parseIp('10.9.9.9'), protocol: 6, dstPort: 80 };
    const global = compile(model.snapshot()).decide(packet);
    assert.deepEqual([global.ingress.endpoint?.key, global.allowed], ['a/w', true]);
    const node0 = compile(spanSnapshot(store, model, 'node-0'), {
      isLocal: (e) => e.node === 'node-0',
    });
    assert.equal(node0.decide(packet).ingress.endpoint, undefined, 'not a/l: the address is a/w');
    checkSpans(model, store, 'ingress');
  });

  test("a node's span carries its Node's addresses with its endpoints, and a Node change reaches only the nodes whose spans hold its pods", () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    for (const raw of [
      namespace('a'),
      node('node-0', ['192.168.0.1']),
      node('node-1', ['192.168.0.2']),
      pod('a', 'x', { labels: { app: 'x' }, ips: ['10.0.0.1'], node: 'node-0' }),
      pod('a', 'y', { labels: { app: 'y' }, ips: ['10.0.0.2'], node: 'node-1' }),
      networkPolicy('a', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    ])
      model.apply({ type: 'upsert', object: read(raw) });
    store.commit(0);
    const node0 = () =>
      compile(spanSnapshot(store, model, 'node-0'), { isLocal: (e) => e.node === 'node-0' });
    const probe = (src: string) => ({
      src: parseIp(src),
      dst: parseIp('10.0.0.1'),
      protocol: 6,
      dstPort: 8080,
    });
    assert.deepEqual(
      spanSnapshot(store, model, 'node-0').endpoints.map((e) => [e.name, e.nodeAddresses]),
      [['x', ['192.168.0.1']]],
    );
    assert.equal(node0().decide(probe('192.168.0.1')).allowed, true, "the kubelet's probe");
    assert.equal(node0().decide(probe('192.168.0.2')).allowed, false, "another node's address");

    // node-0 gets a second address: only node-0's span changes.
    model.apply({ type: 'upsert', object: read(node('node-0', ['192.168.0.1', '192.168.0.9'])) });
    assert.deepEqual(store.commit(1)!.nodes, ['node-0']);
    assert.equal(node0().decide(probe('192.168.0.9')).allowed, true);
    // A Node without pods changes no span and spends no revision.
    model.apply({ type: 'upsert', object: read(node('node-7', ['192.168.0.7'])) });
    assert.equal(store.commit(2), undefined);
    // The Node object is deleted: nothing is exempt any more.
    model.apply({ type: 'delete', kind: 'Node', namespace: '', name: 'node-0' });
    assert.deepEqual(store.commit(3)!.nodes, ['node-0']);
    assert.equal(node0().decide(probe('192.168.0.1')).allowed, false);
    checkSpans(model, store, 'nodes');
  });

  test('what changed in a span since an earlier revision is known exactly, or said to be unknown', () => {
    let known = 0;
    let unknown = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const r = rng(seed * 7);
      const model = new ClusterModel({ cluster: 't' });
      const store = new SpanStore(model);
      /** Per revision, each node's span then (key → hash). */
      const history: Array<[number, Map<string, Map<string, string>>]> = [];
      const record = () =>
        history.push([
          store.revision,
          new Map(
            store
              .nodes()
              .map((n) => [n, new Map([...store.span(n)!.entries].map(([k, e]) => [k, e.hash]))]),
          ),
        ]);
      for (const o of randomCluster(seed).map(read)) model.apply({ type: 'upsert', object: o });
      store.commit(0);
      record();
      // Many small commits, so that logs are also trimmed.
      const steps = [seed + 5000, seed + 9000, seed + 13000].flatMap((x) =>
        randomCluster(x).map(read),
      );
      steps.forEach((o, i) => {
        if (r.chance(0.2))
          model.apply({
            type: 'delete',
            kind: o.kind,
            namespace: namespaceOf(o),
            name: o.name,
          });
        else model.apply({ type: 'upsert', object: o });
        if (store.commit(i) === undefined) return;
        record();
        for (const node of store.nodes()) {
          const now = store.span(node)!.entries;
          for (const [revision, spans] of history) {
            const then = spans.get(node);
            const since = store.changedSince(node, revision);
            if (since === undefined) {
              unknown++;
              continue;
            }
            known++;
            assert.ok(then !== undefined, `seed ${seed}: ${node} had no span at ${revision}`);
            for (const key of new Set([...then.keys(), ...now.keys()]))
              if (then.get(key) !== now.get(key)?.hash)
                assert.ok(since.has(key), `seed ${seed}: ${node} ${key} changed since ${revision}`);
          }
        }
      });
    }
    assert.ok(known > 0 && unknown > 0, `both answers given (${known} known, ${unknown} unknown)`);
  });

  test('a change reaches only the nodes whose endpoints it concerns', () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    for (const raw of [
      namespace('a'),
      namespace('b'),
      pod('a', 'web', { labels: { app: 'web' }, ips: ['10.0.0.1'], node: 'n1' }),
      pod('a', 'db', { labels: { app: 'db' }, ips: ['10.0.0.2'], node: 'n2' }),
      pod('b', 'other', { labels: { app: 'other' }, ips: ['10.0.1.1'], node: 'n3' }),
      networkPolicy('a', 'db', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
      }),
    ])
      model.apply({ type: 'upsert', object: read(raw) });
    const first = store.commit(1)!;
    assert.deepEqual(first.nodes, ['n1', 'n2', 'n3']);
    assert.deepEqual(
      [...store.span('n2')!.entries.keys()].filter((k) => k.startsWith('p:')),
      ['p:t/np/a/db'],
    );
    assert.equal(
      [...store.span('n1')!.entries.keys()].some((k) => k.startsWith('p:')),
      false,
      'web is not selected by any policy',
    );

    // A second web pod changes the peer group: only the node enforcing the policy hears of it.
    model.apply({
      type: 'upsert',
      object: read(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' })),
    });
    assert.deepEqual(
      store.commit(2)!.nodes,
      ['n2', 'n3'],
      'n2 gets the new member, n3 its new local endpoint; n1 nothing',
    );

    // A db pod on another node joins the applied-to group: n2's cut-down copy is unchanged.
    model.apply({
      type: 'upsert',
      object: read(pod('a', 'db2', { labels: { app: 'db' }, ips: ['10.0.0.4'], node: 'n1' })),
    });
    assert.deepEqual(store.commit(3)!.nodes, ['n1']);

    // A policy in another namespace touches only the node of the pods it selects.
    model.apply({ type: 'upsert', object: read(networkPolicy('b', 'deny', { podSelector: {} })) });
    assert.deepEqual(store.commit(4)!.nodes, ['n3']);

    // Nothing changed: no revision is spent.
    model.apply({ type: 'upsert', object: read(networkPolicy('b', 'deny', { podSelector: {} })) });
    assert.equal(store.commit(5), undefined);
    assert.equal(store.revision, 4);
  });
});
