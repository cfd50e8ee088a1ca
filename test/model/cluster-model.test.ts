/**
 * The incremental cluster model: any sequence of events leaves it exactly as
 * a model built from scratch on the final state, and every object that
 * changed is reported as changed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterModel, isEmpty } from '../../controller/model/cluster-model.js';
import { namespaceOf, readKubeObject, type KubeObject } from '../../controller/kube/objects.js';
import type { PolicySnapshot } from '../../shared/policy/types.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { randomCluster } from '../../testing/random-cluster.js';
import { seededRandom } from '../../shared/random.js';

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(`fixture invalid: ${JSON.stringify(r)}`);
  return r.object;
}

const keyOf = (o: KubeObject) => `${o.kind}/${namespaceOf(o)}/${o.name}`;

/** Ids (or endpoint keys) whose content differs between two snapshots. */
function differences(a: PolicySnapshot, b: PolicySnapshot) {
  const diff = <T>(xs: readonly T[], ys: readonly T[], id: (x: T) => string) => {
    const before = new Map(xs.map((x) => [id(x), JSON.stringify(x)]));
    const after = new Map(ys.map((y) => [id(y), JSON.stringify(y)]));
    const changed = [...after].filter(([k, v]) => before.get(k) !== v).map(([k]) => k);
    const removed = [...before.keys()].filter((k) => !after.has(k));
    return { changed, removed };
  };
  return {
    policies: diff(a.policies, b.policies, (p) => p.id),
    groups: diff(a.addressGroups, b.addressGroups, (g) => g.id),
    serviceGroups: diff(a.serviceGroups, b.serviceGroups, (g) => g.id),
    endpoints: diff(a.endpoints, b.endpoints, (e) => `${e.namespace}/${e.name}`),
  };
}

describe('incremental cluster model', () => {
  test('any sequence of upserts, deletes and rejections ends where a fresh build of the final state does, reporting every change', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const r = seededRandom(seed * 7919);
      const first = randomCluster(seed, { variety: 'basic' }).objects.map(read);
      const second = randomCluster(seed + 100_000, { variety: 'basic' }).objects.map(read);
      const m = new ClusterModel({ cluster: 't' });
      for (const o of first) m.apply({ type: 'upsert', object: o });
      m.drainChanges();

      // The final state: second's objects, minus some deleted, some rejected.
      const state = new Map(first.map((o) => [keyOf(o), o]));
      const events: Array<() => void> = [];
      for (const o of second)
        events.push(() => {
          state.set(keyOf(o), o);
          m.apply({ type: 'upsert', object: o });
        });
      for (const o of first) {
        if (r.chance(0.2))
          events.push(() => {
            state.delete(keyOf(o));
            m.apply({
              type: 'delete',
              kind: o.kind,
              namespace: namespaceOf(o),
              name: o.name,
            });
          });
        if (r.chance(0.1))
          events.push(() => {
            // Rejected: the last valid version, if any, stays in force.
            m.apply({
              type: 'invalid',
              kind: o.kind,
              namespace: namespaceOf(o),
              name: o.name,
              issues: [{ message: 'bad' }],
            });
          });
      }
      // Shuffle, so that namespaces change after their pods, policies before their peers exist, ...
      for (let i = events.length - 1; i > 0; i--) {
        const j = r.int(i + 1);
        [events[i], events[j]] = [events[j]!, events[i]!];
      }

      let before = m.snapshot();
      for (const step of events) {
        step();
        const after = m.snapshot();
        const c = m.drainChanges();
        const d = differences(before, after);
        const missing = [
          ...d.policies.changed.filter((id) => !c.policies.has(id)).map((x) => `policy ${x}`),
          ...d.policies.removed
            .filter((id) => !c.removedPolicies.has(id))
            .map((x) => `removed policy ${x}`),
          ...d.groups.changed.filter((id) => !c.groups.has(id)).map((x) => `group ${x}`),
          ...d.groups.removed
            .filter((id) => !c.removedGroups.has(id))
            .map((x) => `removed group ${x}`),
          ...d.serviceGroups.changed
            .filter((id) => !c.serviceGroups.has(id))
            .map((x) => `service group ${x}`),
          ...d.serviceGroups.removed
            .filter((id) => !c.removedServiceGroups.has(id))
            .map((x) => `removed service group ${x}`),
          ...d.endpoints.changed.filter((k) => !c.endpoints.has(k)).map((x) => `endpoint ${x}`),
          ...d.endpoints.removed
            .filter((k) => !c.removedEndpoints.has(k))
            .map((x) => `removed endpoint ${x}`),
        ];
        assert.deepEqual(missing, [], `seed ${seed}: changes not reported`);
        before = after;
      }

      const fresh = new ClusterModel({ cluster: 't' });
      for (const o of state.values()) fresh.apply({ type: 'upsert', object: o });
      assert.deepEqual(m.snapshot(), fresh.snapshot(), `seed ${seed}`);
    }
  });

  test('a pod event re-checks only the groups whose anchors it carries, and still finds every match', () => {
    const m = new ClusterModel({ cluster: 't' });
    for (const raw of [
      namespace('a', { team: 'x' }),
      networkPolicy('a', 'by-name', { podSelector: { matchLabels: { app: 'web' } } }),
      networkPolicy('a', 'by-ns-label', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'x' } } }] }],
      }),
      networkPolicy('a', 'not-in', {
        podSelector: {},
        ingress: [
          {
            from: [
              {
                namespaceSelector: {},
                podSelector: {
                  matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['db'] }],
                },
              },
            ],
          },
        ],
      }),
    ])
      m.apply({ type: 'upsert', object: read(raw) });
    m.apply({
      type: 'upsert',
      object: read(pod('a', 'w', { labels: { app: 'web' }, ips: ['10.0.0.1'], node: 'n1' })),
    });
    const groups = [...m.groupsOf('a/w')]
      .map((id) => m.addressGroup(id)!)
      .map((g) => (g.kind === 'selector' ? g.members.map((x) => x.endpoint) : []));
    assert.equal(
      groups.length,
      4,
      'applied-to of by-name, applied-to {} of the others, the ns-label peer, the NotIn peer',
    );
    assert.ok(groups.every((members) => members.includes('a/w')));
    // Changing the namespace label takes the pod out of the namespace-label group only.
    m.apply({ type: 'upsert', object: read(namespace('a', { team: 'y' })) });
    assert.equal(m.groupsOf('a/w').size, 3);
    const changes = m.drainChanges();
    assert.ok(changes.nodes.has('n1'));
  });
});

test('addresses two endpoints claim are reported, with the endpoints', () => {
  const m = new ClusterModel({ cluster: 't' });
  for (const raw of [
    pod('a', 'old', { ips: ['10.0.0.9'] }),
    pod('a', 'new', { ips: ['10.0.0.9', 'fd00::9'] }),
    pod('a', 'other', { ips: ['10.0.0.8'] }),
  ]) {
    m.apply({ type: 'upsert', object: read(raw) });
  }
  assert.deepEqual(m.duplicateAddresses(), [{ ip: '10.0.0.9', endpoints: ['a/new', 'a/old'] }]);
  m.apply({ type: 'delete', kind: 'Pod', namespace: 'a', name: 'old' });
  assert.deepEqual(m.duplicateAddresses(), []);
});

test('an invalid update leaves the last valid version in force and is reported; only a delete withdraws it', () => {
  const m = new ClusterModel({ cluster: 't' });
  for (const raw of [
    namespace('a'),
    pod('a', 'db', { labels: { app: 'db' }, ips: ['10.0.0.1'], node: 'n1' }),
    networkPolicy('a', 'deny-all', { podSelector: {}, policyTypes: ['Ingress'] }),
  ])
    m.apply({ type: 'upsert', object: read(raw) });
  const id = 't/np/a/deny-all';
  assert.ok(m.policyIds().includes(id));
  m.apply({
    type: 'invalid',
    kind: 'NetworkPolicy',
    namespace: 'a',
    name: 'deny-all',
    issues: [{ field: 'spec.ingress[0].ports[0].endPort', message: 'below port' }],
  });
  assert.ok(m.policyIds().includes(id), 'the deny-all policy still isolates a/db');
  assert.equal(m.rejections().size, 1);
  m.apply({ type: 'delete', kind: 'NetworkPolicy', namespace: 'a', name: 'deny-all' });
  assert.ok(!m.policyIds().includes(id));
  assert.equal(m.rejections().size, 0);
});

describe('policy labels', () => {
  const labelled = (labels: Record<string, string>) => {
    const raw = networkPolicy('shop', 'web', { podSelector: {}, ingress: [{}] });
    (raw.metadata as Record<string, unknown>).labels = labels;
    return read(raw);
  };

  test('a label-only edit of a policy is listed at once and makes no change for any span', () => {
    const model = new ClusterModel({ cluster: 'c1' });
    model.apply({ type: 'upsert', object: read(namespace('shop')) });
    model.apply({ type: 'upsert', object: labelled({ team: 'web' }) });
    model.drainChanges();
    model.apply({ type: 'upsert', object: labelled({ team: 'shop' }) });
    assert.ok(isEmpty(model.drainChanges()), 'labels are not part of the firewall objects');
    assert.deepEqual(model.policyLabels('c1/np/shop/web'), { team: 'shop' });
    model.apply({ type: 'delete', kind: 'NetworkPolicy', namespace: 'shop', name: 'web' });
    assert.deepEqual(model.policyLabels('c1/np/shop/web'), {});
  });

  test('an invalid update keeps the labels of the version in force', () => {
    const model = new ClusterModel({ cluster: 'c1' });
    model.apply({ type: 'upsert', object: labelled({ team: 'web' }) });
    model.apply({
      type: 'invalid',
      kind: 'NetworkPolicy',
      namespace: 'shop',
      name: 'web',
      issues: [{ field: 'spec.ingress[0].ports[0].port', message: 'out of range' }],
    });
    assert.deepEqual(model.policyLabels('c1/np/shop/web'), { team: 'web' });
  });
});
