/**
 * Federation in the cluster model: which groups see remote pods (only the
 * peers of federated policies), the cluster label every namespace carries,
 * addresses two clusters claim, name conflicts between a local policy and
 * imports or between origins, and the changes a remote member's events make.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CLUSTER_LABEL,
  ClusterModel,
  FEDERATED_LABEL,
  type ModelEvent,
} from '../../controller/model/cluster-model.js';
import {
  readKubeObject,
  type ClusterNetworkPolicyObject,
  type KubeObject,
} from '../../controller/kube/objects.js';
import { SpanStore, spanSnapshot } from '../../controller/store/span-store.js';
import { compile } from '../../shared/policy/compile.js';
import { explain } from '../../shared/policy/explain.js';
import { parseIp } from '../../shared/net/ip.js';
import { PROTOCOL_NUMBER, type Endpoint } from '../../shared/policy/types.js';
import {
  clusterNetworkPolicy,
  namespace,
  networkPolicy,
  pod,
  type Raw,
} from '../../testing/cluster.js';

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(JSON.stringify(r));
  return r.object;
}

const federated = (raw: Raw): Raw => ({
  ...raw,
  metadata: { ...(raw.metadata as Raw), labels: { [FEDERATED_LABEL]: 'true' } },
});

/** Admin: pods of team=pay deny ingress from pods of namespaces labelled team=web, in any cluster when federated. */
const denyFromWeb = (name: string) =>
  clusterNetworkPolicy(name, {
    tier: 'Admin',
    priority: 10,
    subject: { namespaces: { matchLabels: { team: 'pay' } } },
    ingress: [{ action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'web' } } }] }],
  });

function remotePod(cluster: string, ns: string, name: string, ip: string, labels = {}): Endpoint {
  return {
    cluster,
    namespace: ns,
    name,
    uid: `${cluster}-${name}`,
    node: 'their-node',
    ips: [ip],
    labels,
    namespaceLabels: { forged: 'yes' },
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    nodeAddresses: ['192.168.9.9'],
  };
}

function member(objects: Raw[], events: ModelEvent[] = [], federation = true): ClusterModel {
  const m = new ClusterModel({
    cluster: 'a',
    ...(federation ? { federation: { name: 'f' } } : {}),
  });
  for (const o of objects) m.apply({ type: 'upsert', object: read(o) });
  for (const e of events) m.apply(e);
  return m;
}

const local = (): Raw[] => [
  namespace('pay', { team: 'pay' }),
  namespace('web', { team: 'web' }),
  pod('pay', 'ledger', { ips: ['10.0.0.1'], node: 'n1' }),
  pod('web', 'front', { ips: ['10.0.0.2'], node: 'n1' }),
];

const remoteWeb = (ip = '10.1.0.2'): ModelEvent[] => [
  { type: 'remote-namespace', cluster: 'b', name: 'web', labels: { team: 'web' } },
  { type: 'remote-endpoint', endpoint: remotePod('b', 'web', 'front', ip) },
];

/** Groups holding a member key, by the policies that reference them and how. */
function holders(m: ClusterModel, key: string): string[] {
  const out: string[] = [];
  for (const id of m.policyIds()) {
    const p = m.policy(id)!;
    if (m.groupMembers(p.appliedTo).has(key)) out.push(`${p.name} subject`);
    for (const r of p.rules)
      if ('addressGroup' in r.endpoint2 && m.groupMembers(r.endpoint2.addressGroup).has(key))
        out.push(`${p.name} peer`);
  }
  return [...new Set(out)].sort();
}

describe('federation in the cluster model', () => {
  test('only the peers of federated policies hold remote pods; subjects and other policies never do', () => {
    const m = member(
      [
        ...local(),
        federated(denyFromWeb('fed')),
        denyFromWeb('plain'),
        clusterNetworkPolicy('subject-web', {
          tier: 'Baseline',
          priority: 1,
          subject: { namespaces: { matchLabels: { team: 'web' } } },
          ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
        }),
        networkPolicy('pay', 'np', {
          podSelector: {},
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'web' } } }] }],
        }),
      ],
      remoteWeb(),
    );
    const rows: Array<[string, string[]]> = [
      ['b/web/front', ['fed peer']],
      [
        'web/front',
        ['fed peer', 'np peer', 'plain peer', 'subject-web peer', 'subject-web subject'],
      ],
    ];
    for (const [key, want] of rows) assert.deepEqual(holders(m, key), want, key);
    // Kept apart from local endpoints.
    assert.deepEqual(
      m.endpoints().map((e) => e.name),
      ['ledger', 'front'],
    );
    assert.equal(m.endpoint('b/web/front'), undefined);
    assert.equal(m.remoteEndpoint('b/web/front')?.node, '');
    assert.deepEqual(m.remoteEndpoint('b/web/front')?.nodeAddresses, []);
  });

  test('a federated peer group has its own id, not the local group of the same selector', () => {
    const m = member([...local(), federated(denyFromWeb('fed')), denyFromWeb('plain')]);
    const peer = (name: string) => {
      const r = m.policy(`a/cnp/${name}`)!.rules[0]!.endpoint2;
      return 'addressGroup' in r ? r.addressGroup : '';
    };
    assert.notEqual(peer('fed'), peer('plain'));
    assert.match(peer('fed'), /^a\/ag\/fed-/);
    assert.equal(m.policy('a/cnp/fed')!.appliedTo, m.policy('a/cnp/plain')!.appliedTo);
  });

  test('every namespace carries the cluster label the model sets, whatever was exported', () => {
    const m = member(local(), [
      { type: 'remote-namespace', cluster: 'b', name: 'web', labels: { [CLUSTER_LABEL]: 'a' } },
    ]);
    const rows: Array<[string, string | undefined]> = [
      ['local pay', m.namespaceLabels('pay')[CLUSTER_LABEL]],
      ['local, known only from pods', m.namespaceLabels('elsewhere')[CLUSTER_LABEL]],
      ['remote web claiming a', m.remoteNamespaceLabels('b', 'web')[CLUSTER_LABEL]],
      ['remote, unknown namespace', m.remoteNamespaceLabels('c', 'x')[CLUSTER_LABEL]],
      ['without federation', member(local(), [], false).namespaceLabels('pay')[CLUSTER_LABEL]],
    ];
    assert.deepEqual(rows, [
      ['local pay', 'a'],
      ['local, known only from pods', 'a'],
      ['remote web claiming a', 'b'],
      ['remote, unknown namespace', 'c'],
      ['without federation', undefined],
    ]);
  });

  test('a rule selects clusters with a namespaceSelector on the cluster label', () => {
    const onlyC = federated(
      clusterNetworkPolicy('only-c', {
        tier: 'Admin',
        priority: 1,
        subject: { namespaces: { matchLabels: { team: 'pay' } } },
        ingress: [
          { action: 'Deny', from: [{ namespaces: { matchLabels: { [CLUSTER_LABEL]: 'c' } } }] },
        ],
      }),
    );
    const m = member(
      [...local(), onlyC],
      [
        ...remoteWeb(),
        { type: 'remote-endpoint', endpoint: remotePod('c', 'web', 'front', '10.2.0.2') },
      ],
    );
    const rows = ['web/front', 'b/web/front', 'c/web/front'].map((k) => [k, holders(m, k)]);
    assert.deepEqual(rows, [
      ['web/front', []],
      ['b/web/front', []],
      ['c/web/front', ['only-c peer']],
    ]);
  });

  test('an address claimed by two clusters is given to no remote claimant, and is reported', () => {
    const cases: Array<{
      name: string;
      events: ModelEvent[];
      admitted: string[];
      rejected: string[];
    }> = [
      {
        name: 'unique address',
        events: remoteWeb('10.1.0.2'),
        admitted: ['b/web/front'],
        rejected: [],
      },
      {
        name: 'address of a local pod',
        events: remoteWeb('10.0.0.2'),
        admitted: [],
        rejected: ['Pod b/web/front'],
      },
      {
        name: 'two remote clusters',
        events: [
          ...remoteWeb('10.9.0.1'),
          { type: 'remote-endpoint', endpoint: remotePod('c', 'web', 'front', '10.9.0.1') },
        ],
        admitted: [],
        rejected: ['Pod b/web/front', 'Pod c/web/front'],
      },
      {
        name: 'overlap resolved by the other claimant leaving',
        events: [
          ...remoteWeb('10.9.0.1'),
          { type: 'remote-endpoint', endpoint: remotePod('c', 'web', 'front', '10.9.0.1') },
          { type: 'remote-endpoint-delete', cluster: 'c', namespace: 'web', name: 'front' },
        ],
        admitted: ['b/web/front'],
        rejected: [],
      },
    ];
    for (const c of cases) {
      const m = member([...local(), federated(denyFromWeb('fed'))], c.events);
      assert.deepEqual(
        m.remoteEndpoints().map((e) => `${e.cluster}/${e.namespace}/${e.name}`),
        c.admitted,
        c.name,
      );
      assert.deepEqual(
        m.federation()!.rejections.map((r) => r.object),
        c.rejected,
        c.name,
      );
      // Local pods keep their addresses whatever remote pods claim.
      assert.ok(holders(m, 'web/front').includes('fed peer'), c.name);
    }
  });

  test("a local pod taking a remote pod's address withdraws the remote pod, and giving it back restores it", () => {
    const m = member([...local(), federated(denyFromWeb('fed'))], remoteWeb('10.1.0.2'));
    assert.deepEqual(holders(m, 'b/web/front'), ['fed peer']);
    m.apply({
      type: 'upsert',
      object: read(pod('web', 'thief', { ips: ['10.1.0.2'], node: 'n1' })),
    });
    assert.deepEqual(holders(m, 'b/web/front'), []);
    m.apply({ type: 'delete', kind: 'Pod', namespace: 'web', name: 'thief' });
    assert.deepEqual(holders(m, 'b/web/front'), ['fed peer']);
  });

  test('a policy name held locally and by imports: local first, then the lowest origin', () => {
    const imported = (origin: string, priority: number): ModelEvent => ({
      type: 'imported-policy',
      origin,
      object: { ...(read(federated(denyFromWeb('x'))) as ClusterNetworkPolicyObject), priority },
    });
    const cases: Array<{
      name: string;
      objects: Raw[];
      events: ModelEvent[];
      priority: number;
      states: string[];
    }> = [
      {
        name: 'one import',
        objects: [],
        events: [imported('c', 3)],
        priority: 3,
        states: ['c in-force'],
      },
      {
        name: 'two origins',
        objects: [],
        events: [imported('c', 3), imported('b', 2)],
        priority: 2,
        states: ['b in-force', 'c lost-to:b'],
      },
      {
        name: 'a local non-federated policy of the same name',
        objects: [denyFromWeb('x')],
        events: [imported('b', 2)],
        priority: 10,
        states: ['b shadowed-by-local'],
      },
    ];
    for (const c of cases) {
      const m = member([...local(), ...c.objects], c.events);
      assert.equal(m.policy('a/cnp/x')?.priority, c.priority, c.name);
      assert.deepEqual(
        m.federation()!.imports.map((i) => `${i.origin} ${i.state}`),
        c.states,
        c.name,
      );
    }
  });

  test('the import takes over when the local policy of its name is deleted, and leaves with its origin', () => {
    const m = member(
      [...local(), denyFromWeb('x')],
      [
        {
          type: 'imported-policy',
          origin: 'b',
          object: {
            ...(read(federated(denyFromWeb('x'))) as ClusterNetworkPolicyObject),
            priority: 2,
          },
        },
      ],
    );
    m.apply({ type: 'delete', kind: 'ClusterNetworkPolicy', namespace: '', name: 'x' });
    assert.equal(m.policy('a/cnp/x')?.priority, 2);
    m.apply({ type: 'imported-policy-delete', origin: 'b', name: 'x' });
    assert.equal(m.policy('a/cnp/x'), undefined);
  });

  test('relabelling a remote namespace moves its pods in and out of federated peer groups', () => {
    const m = member([...local(), federated(denyFromWeb('fed'))], remoteWeb());
    assert.deepEqual(holders(m, 'b/web/front'), ['fed peer']);
    m.drainChanges();
    m.apply({ type: 'remote-namespace', cluster: 'b', name: 'web', labels: { team: 'other' } });
    assert.deepEqual(holders(m, 'b/web/front'), []);
    const c = m.drainChanges();
    assert.equal(c.groups.size, 1);
    assert.deepEqual([...c.nodes], [], 'no local node is touched by a remote pod');
    m.apply({ type: 'remote-namespace-delete', cluster: 'b', name: 'web' });
    m.apply({ type: 'remote-namespace', cluster: 'b', name: 'web', labels: { team: 'web' } });
    assert.deepEqual(holders(m, 'b/web/front'), ['fed peer']);
  });

  test('deleting a remote pod removes it from every group', () => {
    const m = member([...local(), federated(denyFromWeb('fed'))], remoteWeb());
    m.apply({ type: 'remote-endpoint-delete', cluster: 'b', namespace: 'web', name: 'front' });
    assert.deepEqual(holders(m, 'b/web/front'), []);
    assert.deepEqual(m.federation()!.clusters, [
      { cluster: 'b', namespaces: 1, endpoints: 0, admitted: 0 },
    ]);
  });

  test('an invalid update of a federated policy withdraws nothing: it stays exported and in force', () => {
    const m = member([...local(), federated(denyFromWeb('fed'))]);
    m.apply({
      type: 'invalid',
      kind: 'ClusterNetworkPolicy',
      namespace: '',
      name: 'fed',
      issues: [
        { source: 't', object: 'ClusterNetworkPolicy fed', field: 'spec.tier', message: 'bad' },
      ],
    });
    assert.deepEqual(
      m.federatedPolicies().map((p) => p.name),
      ['fed'],
    );
    assert.ok(m.policy('a/cnp/fed'));
  });

  test('a remote pod is decided through the federated peer group, as an outside address', () => {
    const m = member(
      [...local(), federated(denyFromWeb('fed')), denyFromWeb('plain')],
      remoteWeb(),
    );
    const tables = compile(m.snapshot());
    const ledger = parseIp('10.0.0.1');
    const tcp = PROTOCOL_NUMBER.TCP;
    const v = tables.decide({ src: parseIp('10.1.0.2'), dst: ledger, protocol: tcp, dstPort: 80 });
    assert.equal(v.allowed, false);
    assert.equal(v.ingress.rule?.policy, 'a/cnp/fed');
    const e = explain(tables, v, {
      src: parseIp('10.1.0.2'),
      dst: ledger,
      protocol: 'TCP',
      port: 80,
    });
    assert.equal(e.allowed, false);
    assert.equal(e.from.endpoint, undefined, 'a remote pod is no endpoint here');
    assert.ok(JSON.stringify(e.ingress).includes('fed'), 'the federated policy is named');
    const other = tables.decide({
      src: parseIp('10.1.0.3'),
      dst: ledger,
      protocol: tcp,
      dstPort: 80,
    });
    assert.equal(other.allowed, true);
  });

  test('an agent decides remote addresses from its span exactly as the whole cluster does, named ports included', () => {
    const namedEgress = federated(
      clusterNetworkPolicy('no-http-out', {
        tier: 'Admin',
        priority: 1,
        subject: { namespaces: { matchLabels: { team: 'pay' } } },
        egress: [
          {
            action: 'Deny',
            to: [{ namespaces: { matchLabels: { team: 'web' } } }],
            protocols: [{ destinationNamedPort: 'http' }],
          },
        ],
      }),
    );
    const m = member(
      [
        ...local(),
        pod('web', 'far', { ips: ['10.0.0.3'], node: 'n2' }),
        federated(denyFromWeb('fed')),
        namedEgress,
      ],
      remoteWeb(),
    );
    const store = new SpanStore(m);
    store.commit(0);
    const whole = compile(m.snapshot());
    const span = spanSnapshot(store, m, 'n1');
    assert.ok(!span.endpoints.some((e) => e.cluster !== 'a'), 'no remote pod is a span endpoint');
    const agent = compile(span, { isLocal: (e) => e.node === 'n1' });
    const tcp = PROTOCOL_NUMBER.TCP;
    const ledger = parseIp('10.0.0.1');
    const remote = parseIp('10.1.0.2');
    const rows: Array<
      [string, { src: number | bigint; dst: number | bigint; port: number }, boolean]
    > = [
      ['remote web pod to ledger', { src: remote, dst: ledger, port: 80 }, false],
      [
        'ledger to the remote pod on its named port',
        { src: ledger, dst: remote, port: 8080 },
        false,
      ],
      ['ledger to the remote pod on another port', { src: ledger, dst: remote, port: 9090 }, true],
      ['an unknown address to ledger', { src: parseIp('10.1.0.99'), dst: ledger, port: 80 }, true],
    ];
    for (const [what, p, allowed] of rows) {
      const packet = { src: p.src, dst: p.dst, protocol: tcp, dstPort: p.port } as Parameters<
        typeof whole.allows
      >[0];
      assert.equal(whole.allows(packet), allowed, `${what} (whole cluster)`);
      assert.equal(agent.allows(packet), allowed, `${what} (agent of n1, from its span)`);
    }
  });

  test('with federation off, remote events change nothing and a federated label changes no id', () => {
    const off = member([...local(), federated(denyFromWeb('fed'))], remoteWeb(), false);
    const plain = member([...local(), denyFromWeb('fed')], [], false);
    assert.deepEqual(off.snapshot(), plain.snapshot());
    assert.equal(off.federation(), undefined);
  });
});
