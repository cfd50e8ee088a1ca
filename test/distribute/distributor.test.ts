/**
 * The distributor's protocol without a network: fake links record what each
 * agent would receive.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Distributor } from '../../controller/distribute/distributor.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { SpanStore } from '../../controller/store/span-store.js';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { silentLogger } from '../../shared/log.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';

function setup() {
  const model = new ClusterModel({ cluster: 't' });
  const store = new SpanStore(model);
  const clock = { now: 1_000_000 };
  const d = new Distributor(model, store, {
    log: silentLogger,
    now: () => clock.now,
    ackTimeoutMs: 30_000,
  });
  const apply = (...raws: Raw[]) => {
    for (const raw of raws) {
      const r = readKubeObject(raw);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      model.apply({ type: 'upsert', object: r.object });
    }
    const c = store.commit(Date.now());
    if (c) d.notify(c.nodes);
    return c;
  };
  const link = () => {
    const sent: SpanUpdate[] = [];
    return {
      sent,
      closed: [] as string[],
      send: (u: SpanUpdate) => void sent.push(u),
      close(reason: string) {
        this.closed.push(reason);
      },
    };
  };
  return { model, store, d, apply, link, clock };
}

const base = (): Raw[] => [
  namespace('a'),
  pod('a', 'web', { labels: { app: 'web' }, ips: ['10.0.0.1'], node: 'n1' }),
  pod('a', 'db', { labels: { app: 'db' }, ips: ['10.0.0.2'], node: 'n2' }),
  networkPolicy('a', 'db', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
  }),
];

describe('distributor', () => {
  test('sends nothing before the cluster state is complete, then a snapshot to a new agent', () => {
    const { d, apply, link } = setup();
    apply(...base());
    const l = link();
    const s = d.hello('n2', 'i1', 0, l);
    assert.equal(l.sent.length, 0, 'held until ready');
    d.setReady();
    assert.equal(l.sent.length, 1);
    assert.equal(l.sent[0]!.snapshot, true);
    assert.deepEqual(
      l.sent[0]!.policies!.map((p) => p.id),
      ['t/np/a/db'],
    );
    s.ack(Number(l.sent[0]!.revision));
    assert.equal(d.views().find((v) => v.node === 'n2')!.inSync, true);
  });

  test('a slow agent has one update in flight and later changes collapse into one delta', () => {
    const { d, apply, link } = setup();
    apply(...base());
    d.setReady();
    const slow = link();
    const fast = link();
    const s = d.hello('n2', 'slow', 0, slow);
    const f = d.hello('n1', 'fast', 0, fast);
    f.ack(Number(fast.sent[0]!.revision));
    // Twenty changes to the peer group while the slow agent has not ACKed its snapshot.
    for (let i = 0; i < 20; i++)
      apply(pod('a', `web${i}`, { labels: { app: 'web' }, ips: [`10.0.1.${i}`], node: 'n1' }));
    assert.equal(slow.sent.length, 1, 'nothing more is queued for the slow agent');
    assert.equal(fast.sent.length > 1, true, 'the fast agent is not held back');
    s.ack(Number(slow.sent[0]!.revision));
    assert.equal(slow.sent.length, 2, 'one delta carries all twenty changes');
    const delta = slow.sent[1]!;
    assert.equal(delta.snapshot, false);
    assert.equal(delta.baseRevision, slow.sent[0]!.revision);
    const group = delta.addressGroups!.find(
      (g) => g.selector?.podSelector?.requirements?.[0]?.values?.[0] === 'web',
    )!;
    assert.equal(group.members!.length, 21);
    assert.deepEqual(delta.policies, [], 'the unchanged policy is not resent');
  });

  test('a NACKed update leaves the agent on its previous revision and is not resent until the span changes', () => {
    const { d, apply, link } = setup();
    apply(...base());
    d.setReady();
    const l = link();
    const s = d.hello('n2', 'i', 0, l);
    s.ack(Number(l.sent[0]!.revision));
    apply(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }));
    assert.equal(l.sent.length, 2);
    s.nack(Number(l.sent[1]!.revision), 'disk full');
    const v = d.views().find((x) => x.node === 'n2')!;
    assert.equal(v.appliedRevision, Number(l.sent[0]!.revision));
    assert.equal(v.lastError, 'disk full');
    assert.equal(v.inSync, false);
    apply(pod('a', 'web3', { labels: { app: 'web' }, ips: ['10.0.0.4'], node: 'n3' }));
    assert.equal(l.sent.length, 3, 'the next change is tried');
    assert.equal(
      l.sent[2]!.baseRevision,
      l.sent[0]!.revision,
      'as a delta from what the agent holds',
    );
  });

  test('a reconnecting agent gets a delta from the revision it ACKed, or a snapshot when that is not the one on record', () => {
    const { d, apply, link } = setup();
    apply(...base());
    d.setReady();
    const first = link();
    const s = d.hello('n2', 'i', 0, first);
    const r1 = Number(first.sent[0]!.revision);
    s.ack(r1);
    s.close();
    apply(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }));
    const again = link();
    d.hello('n2', 'i', r1, again);
    assert.equal(again.sent[0]!.snapshot, false);
    assert.equal(again.sent[0]!.baseRevision, String(r1));
    const stranger = link();
    d.hello('n2', 'other', 999, stranger);
    assert.deepEqual(again.closed, ['replaced by a new connection from the same node']);
    assert.equal(stranger.sent[0]!.snapshot, true);
  });

  test('an ACK lost with its connection counts when the agent says hello with that revision', () => {
    const { d, apply, link } = setup();
    apply(...base());
    d.setReady();
    const l = link();
    d.hello('n2', 'i', 0, l);
    const r = Number(l.sent[0]!.revision);
    const again = link();
    d.hello('n2', 'i', r, again);
    assert.equal(again.sent.length, 0, 'already in sync: nothing to send');
    assert.equal(d.views().find((x) => x.node === 'n2')!.inSync, true);
  });

  test('ACKed spans survive a restart as hashes and yield a delta of only what changed', () => {
    const one = setup();
    one.apply(...base());
    one.d.setReady();
    const l = one.link();
    one.d.hello('n2', 'i', 0, l).ack(Number(l.sent[0]!.revision));
    const persisted = one.d.persisted();

    const two = setup();
    two.store.commit(0);
    two.apply(
      ...base(),
      pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }),
    );
    two.d.restore(persisted);
    two.d.setReady();
    const l2 = two.link();
    two.d.hello('n2', 'i', Number(l.sent[0]!.revision), l2);
    const u = l2.sent[0]!;
    assert.equal(u.snapshot, false);
    assert.deepEqual(u.policies, []);
    assert.equal(u.addressGroups!.length, 1, 'only the peer group that gained web2');
  });

  test('an agent that leaves an update unanswered past the timeout is disconnected and reported', () => {
    const { d, apply, link, clock } = setup();
    apply(...base());
    d.setReady();
    const hung = link();
    d.hello('n2', 'i', 0, hung);
    clock.now += 29_000;
    assert.deepEqual(d.expireUnanswered(), []);
    clock.now += 2_000;
    assert.deepEqual(d.expireUnanswered(), ['n2']);
    assert.deepEqual(hung.closed, ['no answer to an update']);
    const v = d.views().find((x) => x.node === 'n2')!;
    assert.equal(v.connected, false);
    assert.match(v.lastError, /no answer to revision 1 within 30000 ms/);
  });
});
