/**
 * Federation members against the in-memory hub (testing/memory-federation.ts):
 * three members, each with its own model, exporter and importer. A policy
 * written once at one member is enforced by the others; a relabel at one
 * member moves its pods in the others' groups; a hub cut keeps what is in
 * force and shows it stale; a controller restarted from its state file
 * enforces the imports before it reaches the hub; invalid and forged entries
 * are reported and never withdraw the last valid version.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FEDERATED_LABEL } from '../../controller/kube/cluster-network-policy.js';
import { readKubeObject, type KubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { FederationMember } from '../../controller/federation/member.js';
import { exportedEntries, importEvents } from '../../controller/federation/offline.js';
import { silentLogger } from '../../shared/log.js';
import { clusterNetworkPolicy, namespace, pod, type Raw } from '../../testing/cluster.js';
import { MemoryFederationHub, memoryEntryKey } from '../../testing/memory-federation.js';

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(JSON.stringify(r));
  return r.object;
}

/** Lets queued link events and writes run (no timers: every step is a resolved promise). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const denyWebToPay = (name = 'no-web-to-pay') => ({
  ...clusterNetworkPolicy(name, {
    tier: 'Admin',
    priority: 5,
    subject: { namespaces: { matchLabels: { team: 'pay' } } },
    ingress: [{ action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'web' } } }] }],
  }),
  metadata: { name, labels: { [FEDERATED_LABEL]: 'true' } },
});

interface Member {
  readonly cluster: string;
  readonly model: ClusterModel;
  readonly member: FederationMember;
  upsert(raw: Raw): Promise<void>;
  remove(kind: KubeObject['kind'], namespace: string, name: string): Promise<void>;
}

async function start(
  hub: MemoryFederationHub,
  cluster: string,
  stateDir?: string,
): Promise<Member> {
  const model = new ClusterModel({ cluster, federation: { name: hub.federation } });
  const member = new FederationMember({
    link: hub.link(cluster),
    model,
    log: silentLogger,
    onModelChange: () => {},
    podCidrs: [`10.${cluster.charCodeAt(0)}.0.0/16`],
    persistDelayMs: 0,
    ...(stateDir === undefined ? {} : { stateDir }),
  });
  await member.start();
  const commit = async () => {
    model.drainChanges();
    member.afterCommit();
    await settle();
  };
  return {
    cluster,
    model,
    member,
    upsert: async (raw) => {
      model.apply({ type: 'upsert', object: read(raw) });
      await commit();
    },
    remove: async (kind, ns, name) => {
      model.apply({ type: 'delete', kind, namespace: ns, name });
      await commit();
    },
  };
}

/** Local objects of a member: a pay namespace and pod, a web namespace and pod, addresses by cluster. */
async function populate(m: Member, octet: number): Promise<void> {
  await m.upsert(namespace('pay', { team: 'pay' }));
  await m.upsert(namespace('web', { team: 'web' }));
  await m.upsert(pod('pay', 'ledger', { ips: [`10.${octet}.0.1`], node: 'n1' }));
  await m.upsert(pod('web', 'front', { ips: [`10.${octet}.0.2`], node: 'n1' }));
}

/** Member keys of the peer group of a policy's first rule in a model. */
function peers(model: ClusterModel, policy: string): string[] {
  const p = model.policy(policy);
  if (p === undefined) return [];
  const r = p.rules[0]!.endpoint2;
  return 'addressGroup' in r ? [...model.groupMembers(r.addressGroup).keys()].sort() : [];
}

async function federation(stateDirs: Record<string, string> = {}) {
  const hub = new MemoryFederationHub('f');
  const [a, b, c] = [
    await start(hub, 'a', stateDirs.a),
    await start(hub, 'b', stateDirs.b),
    await start(hub, 'c', stateDirs.c),
  ];
  await populate(a, 1);
  await populate(b, 2);
  await populate(c, 3);
  return { hub, a: a!, b: b!, c: c! };
}

describe('federation members over the in-memory hub', () => {
  test("a policy written once at b is enforced in a and c, on their own pods, against every cluster's web pods", async () => {
    const { hub, a, b, c } = await federation();
    await b.upsert(denyWebToPay());
    assert.ok(
      hub.keys().includes(memoryEntryKey({ kind: 'cnp', cluster: 'b', name: 'no-web-to-pay' })),
    );
    for (const m of [a, c]) {
      const id = `${m.cluster}/cnp/no-web-to-pay`;
      assert.ok(m.model.policy(id), `${m.cluster} enforces it`);
      assert.deepEqual(
        peers(m.model, id),
        ['a/web/front', 'b/web/front', 'c/web/front']
          .map((k) => (k.startsWith(`${m.cluster}/`) ? k.slice(2) : k))
          .sort(),
      );
      // The subject is the member's own pods only.
      assert.deepEqual(
        [...m.model.groupMembers(m.model.policy(id)!.appliedTo).keys()],
        ['pay/ledger'],
      );
    }
    assert.deepEqual(
      a.model.federation()!.imports.map((i) => `${i.origin} ${i.name} ${i.state}`),
      ['b no-web-to-pay in-force'],
    );
    // Deleting it at its origin withdraws it everywhere.
    await b.remove('ClusterNetworkPolicy', '', 'no-web-to-pay');
    await settle();
    assert.equal(a.model.policy('a/cnp/no-web-to-pay'), undefined);
    assert.equal(c.model.policy('c/cnp/no-web-to-pay'), undefined);
  });

  test("relabelling a namespace at b changes which of b's pods a's federated groups hold", async () => {
    const { a, b } = await federation();
    await b.upsert(denyWebToPay());
    assert.ok(peers(a.model, 'a/cnp/no-web-to-pay').includes('b/web/front'));
    await b.upsert(namespace('web', { team: 'elsewhere' }));
    await settle();
    assert.ok(!peers(a.model, 'a/cnp/no-web-to-pay').includes('b/web/front'));
    await b.remove('Pod', 'web', 'front');
    await b.upsert(namespace('web', { team: 'web' }));
    await settle();
    assert.ok(
      !peers(a.model, 'a/cnp/no-web-to-pay').includes('b/web/front'),
      'a deleted pod stays gone',
    );
  });

  test('a hub cut keeps every import in force, shows the members stale, and a restore catches up', async () => {
    const { hub, a, b } = await federation();
    await b.upsert(denyWebToPay());
    hub.cut('a');
    await settle();
    await b.upsert(pod('web', 'later', { ips: ['10.2.0.9'], node: 'n1' }));
    assert.ok(a.model.policy('a/cnp/no-web-to-pay'), 'still enforced while cut off');
    const cut = a.member.status();
    assert.equal(cut.link.connected, false);
    assert.ok(
      cut.members.every((m) => m.stale),
      'every member shown stale',
    );
    assert.ok(!peers(a.model, 'a/cnp/no-web-to-pay').includes('b/web/later'));
    hub.restore('a');
    await settle();
    assert.ok(peers(a.model, 'a/cnp/no-web-to-pay').includes('b/web/later'));
    const back = a.member.status();
    assert.equal(back.link.connected, true);
    assert.deepEqual(
      back.members.map((m) => [m.cluster, m.stale]),
      [
        ['b', false],
        ['c', false],
      ],
    );
  });

  test('entries a member lost at the hub are kept by the others (stale), and written back by their owner', async () => {
    const { hub, a, b } = await federation();
    await b.upsert(denyWebToPay());
    hub.cut('a');
    hub.cut('b');
    // The hub forgets b's policy (a wiped bucket): nobody deleted it.
    const key = memoryEntryKey({ kind: 'cnp', cluster: 'b', name: 'no-web-to-pay' });
    hub.forget({ kind: 'cnp', cluster: 'b', name: 'no-web-to-pay' });
    hub.restore('a');
    await settle();
    assert.ok(a.model.policy('a/cnp/no-web-to-pay'), 'a missing entry is not a deletion');
    assert.ok(a.member.status().members.find((m) => m.cluster === 'b')!.unlisted > 0);
    hub.restore('b');
    await settle();
    assert.ok(hub.keys().includes(key), 'b reconciles its entries after its listing');
  });

  test('a controller restarted while cut off enforces its persisted imports before reaching the hub', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-fed-'));
    dirs.push(dir);
    const { hub, a, b } = await federation({ a: dir });
    await b.upsert(denyWebToPay());
    await a.member.importer.flush();
    await a.member.close();
    hub.cut();
    const hub2 = new MemoryFederationHub('f');
    hub2.cut(); // the restarted member never reaches a hub
    const restarted = await start(hub2, 'a', dir);
    assert.equal(restarted.member.status().link.connected, false);
    assert.ok(restarted.model.policy('a/cnp/no-web-to-pay'), 'enforced from the state file');
    assert.ok(peers(restarted.model, 'a/cnp/no-web-to-pay').includes('b/web/front'));
  });

  test('an invalid entry keeps the last valid version and is reported by key and field', async () => {
    const { hub, a, b } = await federation();
    await b.upsert(denyWebToPay());
    const ref = { kind: 'cnp', cluster: 'b', name: 'no-web-to-pay' } as const;
    const key = memoryEntryKey(ref);
    const good = hub.get(ref) as { cluster: string; object: { spec: Record<string, unknown> } };
    hub.putRaw(
      key,
      JSON.stringify({
        ...good,
        object: { ...good.object, spec: { ...good.object.spec, tier: 'Middle' } },
      }),
    );
    hub.putRaw(memoryEntryKey({ kind: 'ns', cluster: 'b', name: 'web' }), '{not json');
    await settle();
    assert.ok(a.model.policy('a/cnp/no-web-to-pay'), 'the last valid version stays');
    const rejected = a.member.importer.rejections();
    assert.deepEqual(
      rejected.map((r) => [
        r.key,
        r.keptLastValid,
        r.problems.some((p) => p.includes('spec.tier') || p.includes('not JSON')),
      ]),
      [
        [key, true, true],
        [memoryEntryKey({ kind: 'ns', cluster: 'b', name: 'web' }), true, true],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
    );
  });

  test('an entry whose value names another cluster than its key is refused', async () => {
    const { hub, a } = await federation();
    // Under c's key, a value that says it is b's (a copied entry).
    hub.putRaw(
      memoryEntryKey({ kind: 'ns', cluster: 'c', name: 'copied' }),
      JSON.stringify({
        cluster: 'b',
        object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'copied' } },
      }),
    );
    await settle();
    const r = a.member.importer.rejections();
    assert.equal(r.length, 1);
    assert.match(r[0]!.problems[0]!, /^value\.cluster: "b" is not the cluster of its key/);
    assert.equal(a.model.remoteNamespaceLabels('c', 'copied').team, undefined);
  });

  test('the offline functions give a member the same model as the running federation', async () => {
    const { a, b, c } = await federation();
    await b.upsert(denyWebToPay());
    const offline = new ClusterModel({ cluster: 'a', federation: { name: 'f' } });
    for (const o of [
      namespace('pay', { team: 'pay' }),
      namespace('web', { team: 'web' }),
      pod('pay', 'ledger', { ips: ['10.1.0.1'], node: 'n1' }),
      pod('web', 'front', { ips: ['10.1.0.2'], node: 'n1' }),
    ])
      offline.apply({ type: 'upsert', object: read(o) });
    for (const m of [b, c]) {
      const { events, rejected } = importEvents(exportedEntries(m.model));
      assert.deepEqual(rejected, []);
      for (const e of events) offline.apply(e);
    }
    assert.deepEqual(offline.snapshot(), a.model.snapshot());
  });

  test("a member cannot write another cluster's entries through its link", async () => {
    const hub = new MemoryFederationHub('f');
    const link = hub.link('a');
    await assert.rejects(
      link.put({ kind: 'ns', cluster: 'b', name: 'x' }, {}),
      /permission denied/,
    );
  });

  test("status shows each member's last report, exported counts and each federated policy's realization per member", async () => {
    const { a, b } = await federation();
    await b.upsert(denyWebToPay());
    // Reports carry the imports: let each member report once more.
    for (const m of [a, b]) await m.member.exporter.report(true);
    await settle();
    const s = a.member.status();
    assert.deepEqual(
      s.members.map((m) => [m.cluster, m.exported]),
      [
        ['b', { namespaces: 2, endpoints: 2, policies: 1 }],
        ['c', { namespaces: 2, endpoints: 2, policies: 0 }],
      ],
    );
    assert.deepEqual(
      s.policies.map((p) => [p.name, p.origin, p.members.map((m) => `${m.cluster}:${m.state}`)]),
      [['no-web-to-pay', 'b', ['a:in-force', 'b:in-force']]],
    );
    assert.deepEqual(s.rejections, []);
  });
});
