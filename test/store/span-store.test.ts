/**
 * Spans: a node compiled from its span alone decides every flow of its local
 * endpoints exactly as the whole cluster does, after every change; and a
 * change reaches only the nodes it concerns.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject, type KubeObject } from '../../controller/model/kube-objects.js';
import { SpanStore, spanSnapshot } from '../../controller/store/span-store.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { snapshotHash, spanHash } from '../../shared/wire/span-hash.js';
import { parseIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import { evaluateDirection, type RuleTables } from '../../shared/policy/rule-tables.js';
import { namespace, networkPolicy, pod, type Raw } from '../support/cluster.js';
import { randomCluster, rng } from '../support/random-cluster.js';

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

/** Every local endpoint's egress and ingress results, as rule ids or "default"/"deny". */
function localVerdicts(tables: RuleTables, node: string, addresses: readonly Ip[]): string[] {
  const out: string[] = [];
  for (const e of [...tables.endpoints.values()]
    .filter((x) => x.endpoint.node === node)
    .sort((a, b) => (a.key < b.key ? -1 : 1))) {
    for (const own of e.ips) {
      for (const peer of addresses) {
        if (typeof peer !== typeof own || peer === own) continue;
        for (const [proto, port] of PROBES) {
          const name = (r: ReturnType<typeof evaluateDirection>) =>
            typeof r === 'symbol' ? r.description : r.id;
          out.push(
            `${e.key} egress ${String(peer)} ${proto}/${port}: ${name(evaluateDirection(e.egress, peer, proto, port, peer))}`,
          );
          out.push(
            `${e.key} ingress ${String(peer)} ${proto}/${port}: ${name(evaluateDirection(e.ingress, peer, proto, port, own))}`,
          );
        }
      }
    }
  }
  return out;
}

function checkSpans(model: ClusterModel, store: SpanStore, label: string) {
  const global = compile(model.snapshot());
  const addresses = [
    ...model.endpoints().flatMap((e) => e.ips.map(parseIp)),
    parseIp('10.0.0.200'),
    parseIp('8.8.8.8'),
    parseIp('fd00::77'),
  ];
  for (const node of ['node-0', 'node-1', 'node-2']) {
    const local = compile(spanSnapshot(store, model, node), { isLocal: (e) => e.node === node });
    assert.deepEqual(
      localVerdicts(local, node, addresses),
      localVerdicts(global, node, addresses),
      `${label}: node ${node}`,
    );
  }
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
              namespace: o.kind === 'Namespace' ? '' : o.namespace,
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

  test("a node compiled from its span alone decides its endpoints' flows as the whole cluster does, after every change", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed * 31);
      const model = new ClusterModel({ cluster: 't' });
      const store = new SpanStore(model);
      for (const o of randomCluster(seed).map(read)) model.apply({ type: 'upsert', object: o });
      store.commit(0);
      checkSpans(model, store, `seed ${seed} initial`);
      const next = randomCluster(seed + 5000).map(read);
      for (let i = 0; i < next.length; i++) {
        const o = next[i]!;
        if (r.chance(0.15))
          model.apply({
            type: 'delete',
            kind: o.kind,
            namespace: o.kind === 'Namespace' ? '' : o.namespace,
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
            namespace: o.kind === 'Namespace' ? '' : o.namespace,
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
