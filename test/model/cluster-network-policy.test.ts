/**
 * ClusterNetworkPolicies in the cluster model and the span store: the policy
 * set's tiers and order, node peers that follow Node objects, the warning
 * about policies one priority cannot order, and spans that carry (and hash)
 * what a node's pods need.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject, type KubeObject } from '../../controller/kube/objects.js';
import { SpanStore, spanSnapshot } from '../../controller/store/span-store.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { snapshotHash } from '../../shared/wire/span-hash.js';
import { clusterNetworkPolicy, namespace, node, pod, type Raw } from '../../testing/cluster.js';

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(JSON.stringify(r));
  return r.object;
}

const admin = (name: string, priority: number, extra: Raw = {}) =>
  clusterNetworkPolicy(name, {
    tier: 'Admin',
    priority,
    subject: { namespaces: { matchLabels: { team: 'pay' } } },
    ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
    ...extra,
  });

function model(objects: Raw[]): ClusterModel {
  const m = new ClusterModel({ cluster: 'c' });
  for (const o of objects) m.apply({ type: 'upsert', object: read(o) });
  return m;
}

const base = (): Raw[] => [
  node('n1', ['192.168.0.1'], { role: 'infra' }),
  node('n2', ['192.168.0.2'], { role: 'worker' }),
  namespace('pay', { team: 'pay' }),
  namespace('web'),
  pod('pay', 'ledger', { ips: ['10.0.0.1'], node: 'n1' }),
  pod('web', 'front', { ips: ['10.0.0.2'], node: 'n2' }),
];

describe('ClusterNetworkPolicy in the model', () => {
  test('the policy set lists Admin by priority then name, then NetworkPolicy, then Baseline', () => {
    const m = model([
      ...base(),
      admin('zeta', 5),
      admin('alpha', 5),
      admin('first', 1),
      clusterNetworkPolicy('floor', {
        tier: 'Baseline',
        priority: 0,
        subject: { namespaces: {} },
        ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
      }),
    ]);
    assert.deepEqual(m.snapshot().applicationPolicySet.tiers, [
      { tier: 'admin', policies: ['c/cnp/first', 'c/cnp/alpha', 'c/cnp/zeta'] },
      { tier: 'namespace', policies: [] },
      { tier: 'baseline', policies: ['c/cnp/floor'] },
    ]);
  });

  test('policies of one tier at one priority that select common pods are reported; distinct priorities or disjoint subjects are not', () => {
    const m = model([
      ...base(),
      admin('zeta', 5),
      admin('alpha', 5),
      admin('other', 5, { subject: { namespaces: { matchLabels: { team: 'none' } } } }),
      admin('later', 6),
    ]);
    assert.deepEqual(m.priorityOverlaps(), [
      { tier: 'admin', priority: 5, policies: ['alpha', 'zeta'] },
    ]);
  });

  test('a nodes peer follows Node labels and addresses', () => {
    const m = model([
      ...base(),
      admin('to-infra', 1, {
        ingress: undefined,
        egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role: 'infra' } } }] }],
      }),
    ]);
    const group = () => {
      const id = m.policy('c/cnp/to-infra')!.rules[0]!.endpoint2;
      const g = m.addressGroup((id as { addressGroup: string }).addressGroup)!;
      return g.kind === 'nodes' ? g.members : undefined;
    };
    assert.deepEqual(group(), [{ endpoint: 'n1', ips: ['192.168.0.1'], ports: [] }]);
    m.drainChanges();
    m.apply({ type: 'upsert', object: read(node('n2', ['192.168.0.9'], { role: 'infra' })) });
    assert.deepEqual(group(), [
      { endpoint: 'n1', ips: ['192.168.0.1'], ports: [] },
      { endpoint: 'n2', ips: ['192.168.0.9'], ports: [] },
    ]);
    assert.ok(m.drainChanges().groups.size > 0, 'the group change is recorded for the spans');
    m.apply({ type: 'upsert', object: read(node('n1', ['192.168.0.1'], { role: 'worker' })) });
    assert.deepEqual(group(), [{ endpoint: 'n2', ips: ['192.168.0.9'], ports: [] }]);
    m.apply({ type: 'delete', kind: 'Node', namespace: '', name: 'n2' });
    assert.deepEqual(group(), []);
  });

  test('an invalid update of a ClusterNetworkPolicy keeps its last valid version; a delete removes it', () => {
    const m = model([...base(), admin('guard', 1)]);
    m.apply({
      type: 'invalid',
      kind: 'ClusterNetworkPolicy',
      namespace: '',
      name: 'guard',
      issues: [{ field: 'spec.priority', message: 'required' }],
    });
    assert.ok(m.policy('c/cnp/guard'), 'still in force');
    assert.ok(m.rejections().has('ClusterNetworkPolicy guard'));
    m.apply({ type: 'delete', kind: 'ClusterNetworkPolicy', namespace: '', name: 'guard' });
    assert.equal(m.policy('c/cnp/guard'), undefined);
  });
});

describe('ClusterNetworkPolicy in spans', () => {
  test("a node's span holds the cluster policies its pods are subjects of, and their node groups", () => {
    const m = model([
      ...base(),
      admin('pay-guard', 1, {
        egress: [{ action: 'Accept', to: [{ nodes: { matchLabels: { role: 'infra' } } }] }],
      }),
    ]);
    const store = new SpanStore(m);
    store.commit(0);
    const n1 = spanSnapshot(store, m, 'n1');
    assert.deepEqual(
      n1.policies.map((p) => p.id),
      ['c/cnp/pay-guard'],
    );
    assert.ok(n1.addressGroups.some((g) => g.kind === 'nodes'));
    assert.deepEqual(n1.applicationPolicySet.tiers[0], {
      tier: 'admin',
      policies: ['c/cnp/pay-guard'],
    });
    assert.deepEqual(spanSnapshot(store, m, 'n2').policies, []);
  });

  test('a priority change that reorders the Admin tier changes the span hash, which is the hash of what is sent', () => {
    const m = model([...base(), admin('a', 1), admin('b', 2)]);
    const store = new SpanStore(m);
    store.commit(0);
    const before = store.spanHash('n1');
    m.apply({ type: 'upsert', object: read(admin('a', 3)) });
    store.commit(1);
    const sent = spanSnapshot(store, m, 'n1');
    assert.deepEqual(sent.applicationPolicySet.tiers[0]!.policies, ['c/cnp/b', 'c/cnp/a']);
    assert.notEqual(store.spanHash('n1'), before);
    assert.equal(store.spanHash('n1'), snapshotHash(snapshotToWire(sent)));
  });
});
