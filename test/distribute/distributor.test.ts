/**
 * The distributor's protocol without a network: fake agents receive each
 * update through the real protobuf encoding, apply it to the agent's span
 * state, and answer with the hash of what they then hold, as agents do.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Distributor, type AgentSession } from '../../controller/distribute/distributor.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { type KubeObject, namespaceOf, readKubeObject } from '../../controller/kube/objects.js';
import { SpanStore } from '../../controller/store/span-store.js';
import type {
  ControllerMessage,
  ControllerMessage__Output,
  SpanUpdate,
} from '../../shared/generated/weir/v1/index.js';
import { weirProto } from '../../shared/grpc/proto.js';
import { silentLogger } from '../../shared/log.js';
import { snapshotHash } from '../../shared/wire/span-hash.js';
import { SpanState } from '../../vrouter-agent/store/span-state.js';
import { seededRandom as rng } from '../../shared/random.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { randomCluster as generate } from '../../testing/random-cluster.js';

const randomCluster = (seed: number) => generate(seed, { variety: 'basic' }).objects;
import { eventually } from '../support/processes.js';

const connect = weirProto().proto.weir.v1.ControlPlane.service.Connect;
/** Through the wire, as an agent decodes it. */
const wire = (u: SpanUpdate) =>
  (connect.responseDeserialize as (b: Buffer) => ControllerMessage__Output)(
    (connect.responseSerialize as (m: ControllerMessage) => Buffer)({ update: u }),
  ).update!;

const hashOf = (s: SpanState) =>
  snapshotHash({
    cluster: s.cluster,
    applicationPolicySet: s.applicationPolicySet,
    policies: [...s.policies.values()],
    addressGroups: [...s.addressGroups.values()],
    serviceGroups: [...s.serviceGroups.values()],
    endpoints: [...s.endpoints.values()],
  });

function read(raw: Raw): KubeObject {
  const r = readKubeObject(raw);
  if (r.type !== 'object') throw new Error(`fixture invalid: ${JSON.stringify(r)}`);
  return r.object;
}

/** An agent as the distributor sees it: a link, a span state, and answers. */
class FakeAgent {
  readonly sent: SpanUpdate[] = [];
  readonly keys: string[] = [];
  readonly closed: string[] = [];
  state = SpanState.empty();
  session!: AgentSession;

  constructor(
    readonly node: string,
    readonly instance = 'i',
  ) {}

  link() {
    return {
      send: (u: SpanUpdate, key: string) => {
        this.sent.push(u);
        this.keys.push(key);
      },
      close: (reason: string) => void this.closed.push(reason),
    };
  }

  hello(d: Distributor, hash = hashOf(this.state)): this {
    this.session = d.hello(
      {
        node: this.node,
        instance: this.instance,
        revision: this.state.revision,
        inForceHash: hash,
        apiAddress: '',
      },
      this.link(),
    );
    return this;
  }

  get last(): SpanUpdate {
    return this.sent[this.sent.length - 1]!;
  }

  /** Updates answered (by answer()). */
  answered = 0;

  /** ACKs the last update received, if it is still the one in flight. */
  answer(): void {
    this.answered = this.sent.length;
    this.ack();
  }

  /** Applies the last update received and ACKs it with the hash of the result. */
  ack(): void {
    this.state = this.state.apply(wire(this.last));
    this.session.ack(Number(this.last.revision), hashOf(this.state));
  }

  nack(error: string): void {
    this.session.nack(Number(this.last.revision), error, hashOf(this.state));
  }
}

function setup(options: { retryMinMs?: number; retryMaxMs?: number } = {}) {
  const model = new ClusterModel({ cluster: 't' });
  const store = new SpanStore(model);
  const clock = { now: 1_000_000 };
  const d = new Distributor(store, {
    log: silentLogger,
    now: () => clock.now,
    ackTimeoutMs: 30_000,
    random: () => 0,
    ...options,
  });
  const commit = () => {
    const c = store.commit(clock.now);
    if (c) d.notify(c.nodes);
    return c;
  };
  const apply = (...raws: Raw[]) => {
    for (const raw of raws) {
      const r = readKubeObject(raw);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      model.apply({ type: 'upsert', object: r.object });
    }
    return commit();
  };
  const deletePolicy = (ns: string, name: string) => {
    model.apply({ type: 'delete', kind: 'NetworkPolicy', namespace: ns, name });
    return commit();
  };
  const view = (node: string) => d.views().find((v) => v.node === node)!;
  return { model, store, d, apply, deletePolicy, clock, view };
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
    const { d, apply, view } = setup();
    apply(...base());
    const a = new FakeAgent('n2').hello(d);
    assert.equal(a.sent.length, 0, 'held until ready');
    d.setReady();
    assert.equal(a.sent.length, 1);
    assert.equal(a.last.snapshot, true);
    assert.deepEqual(
      a.last.policies!.map((p) => p.id),
      ['t/np/a/db'],
    );
    assert.equal(view('n2').inSync, false, 'sent is not in sync');
    a.ack();
    assert.equal(view('n2').inSync, true);
    assert.equal(view('n2').inForceHash, view('n2').spanHash);
  });

  test('a slow agent has one update in flight and later changes collapse into one delta', () => {
    const { d, apply } = setup();
    apply(...base());
    d.setReady();
    const slow = new FakeAgent('n2', 'slow').hello(d);
    const fast = new FakeAgent('n1', 'fast').hello(d);
    fast.ack();
    // Twenty changes to the peer group while the slow agent has not ACKed its snapshot.
    for (let i = 0; i < 20; i++) {
      apply(pod('a', `web${i}`, { labels: { app: 'web' }, ips: [`10.0.1.${i}`], node: 'n1' }));
      if (fast.sent.length > 0 && fast.state.revision < Number(fast.last.revision)) fast.ack();
    }
    assert.equal(slow.sent.length, 1, 'nothing more is queued for the slow agent');
    assert.equal(fast.sent.length > 1, true, 'the fast agent is not held back');
    slow.ack();
    assert.equal(slow.sent.length, 2, 'one delta carries all twenty changes');
    const delta = slow.last;
    assert.equal(delta.snapshot, false);
    assert.equal(delta.baseRevision, slow.sent[0]!.revision);
    const group = delta.addressGroups!.find(
      (g) => g.selector?.podSelector?.requirements?.[0]?.values?.[0] === 'web',
    )!;
    assert.equal(group.members!.length, 21);
    assert.deepEqual(delta.policies, [], 'the unchanged policy is not resent');
  });

  test('updates under one key are identical: a policy set is never shared between nodes that need different ones', () => {
    // a/x selects a pod on each node; a/deny only the one on n-b. Deleting a/x
    // gives both nodes the same removals, but different policy sets.
    const { d, apply, deletePolicy, view } = setup();
    apply(
      namespace('a'),
      pod('a', 'pa', { labels: { app: 'x', at: 'a' }, ips: ['10.0.0.1'], node: 'n-a' }),
      pod('a', 'pb', { labels: { app: 'x', at: 'b' }, ips: ['10.0.0.2'], node: 'n-b' }),
      networkPolicy('a', 'x', { podSelector: { matchLabels: { app: 'x' } }, ingress: [{}] }),
      networkPolicy('a', 'deny', {
        podSelector: { matchLabels: { at: 'b' } },
        policyTypes: ['Ingress'],
      }),
    );
    d.setReady();
    const agents = ['n-a', 'n-b'].map((n) => new FakeAgent(n).hello(d));
    for (const a of agents) a.ack();
    deletePolicy('a', 'x');
    const byKey = new Map<string, SpanUpdate>();
    for (const a of agents) {
      const u = a.last;
      const k = a.keys[a.keys.length - 1]!;
      if (byKey.has(k)) assert.deepEqual(u, byKey.get(k), `the update under key ${k}`);
      byKey.set(k, u);
      a.ack();
    }
    const [na, nb] = agents;
    assert.deepEqual(na!.state.applicationPolicySet?.tiers[0]?.policies, []);
    assert.deepEqual(nb!.state.applicationPolicySet?.tiers[0]?.policies, ['t/np/a/deny']);
    for (const n of ['n-a', 'n-b']) {
      assert.equal(view(n).lastError, '', `${n} holds what it was sent`);
      assert.equal(view(n).inSync, true);
    }
  });

  test('a refused update is sent again as a snapshot with bounded backoff, and status shows the reason and the retry', async () => {
    const { d, apply, view, clock } = setup({ retryMinMs: 10, retryMaxMs: 40 });
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.ack();
    apply(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }));
    assert.equal(a.last.snapshot, false, 'a delta');
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      const sent = a.sent.length;
      a.nack('ENOSPC: no space left on device');
      const v = view('n2');
      assert.equal(v.lastError, 'ENOSPC: no space left on device');
      assert.equal(v.retryAttempts, attempt);
      assert.equal(v.inSync, false);
      assert.equal(v.appliedRevision, Number(a.sent[0]!.revision), 'the previous span in force');
      delays.push(v.nextRetryUnixMs - clock.now);
      await eventually(async () => (a.sent.length > sent ? true : undefined), 'the retry');
      assert.equal(a.last.snapshot, true, `attempt ${attempt + 1} is a snapshot`);
    }
    assert.deepEqual(delays, [5, 10, 20, 20], 'doubling, jittered (here: its lowest), bounded');
    a.ack();
    const v = view('n2');
    assert.deepEqual(
      [v.inSync, v.lastError, v.retryAttempts, v.nextRetryUnixMs],
      [true, '', 0, 0],
      'an ACK whose hash agrees ends the retries',
    );
  });

  test('an ACK whose hash is not that of the span sent is not in sync, and the node is sent a snapshot', async () => {
    const { d, apply, view } = setup({ retryMinMs: 2, retryMaxMs: 4 });
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.state = a.state.apply(wire(a.last));
    a.session.ack(Number(a.last.revision), 'something-else');
    assert.equal(view('n2').inSync, false);
    assert.match(view('n2').lastError, /applied, but the agent's span hashes to something-else/);
    await eventually(async () => (a.sent.length > 1 ? true : undefined), 'the snapshot');
    assert.equal(a.last.snapshot, true);
    a.ack();
    assert.equal(view('n2').inSync, true);
  });

  test('in sync requires the connection now and a reported hash: ACKs without one never count', () => {
    const { d, apply, view } = setup();
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.ack();
    assert.equal(view('n2').inSync, true);
    a.session.close();
    assert.deepEqual([view('n2').connected, view('n2').inSync], [false, false]);
    const legacy = new FakeAgent('n1').hello(d, '');
    legacy.state = legacy.state.apply(wire(legacy.last));
    legacy.session.ack(Number(legacy.last.revision), '');
    assert.deepEqual([view('n1').connected, view('n1').inSync], [true, false]);
    assert.equal(view('n1').appliedRevision, legacy.state.revision);
  });

  test('a reconnecting agent resumes by delta only from the content its hash proves; same revision, other content gets a snapshot', () => {
    const { d, apply, view } = setup();
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.ack();
    a.session.close();
    apply(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }));
    const again = new FakeAgent('n2');
    again.state = a.state;
    again.hello(d);
    assert.equal(again.last.snapshot, false);
    assert.equal(again.last.baseRevision, String(a.state.revision));
    // The same revision with other content (an edited or copied span file).
    const edited = new FakeAgent('n2', 'other');
    edited.state = a.state;
    edited.hello(d, 'edited-content');
    assert.deepEqual(again.closed, ['replaced by a new connection from the same node']);
    assert.equal(edited.last.snapshot, true);
    edited.ack();
    assert.equal(view('n2').inSync, true);
  });

  test('an agent that says hello already holding the current span is in sync and sent nothing', () => {
    const { d, apply, view } = setup();
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.ack();
    a.session.close();
    const again = new FakeAgent('n2', 'restarted');
    again.state = a.state;
    again.hello(d);
    assert.equal(again.sent.length, 0);
    assert.equal(view('n2').inSync, true);
  });

  test('an ACK lost with its connection counts when the agent says hello with that revision and hash', () => {
    const { d, apply, view } = setup();
    apply(...base());
    d.setReady();
    const a = new FakeAgent('n2').hello(d);
    a.state = a.state.apply(wire(a.last)); // applied; the ACK never arrives
    a.session.close();
    apply(pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }));
    const again = new FakeAgent('n2');
    again.state = a.state;
    again.hello(d);
    assert.equal(again.last.snapshot, false, 'a delta from what it applied');
    assert.equal(again.last.baseRevision, String(a.state.revision));
    again.ack();
    assert.equal(view('n2').inSync, true);
  });

  test('a controller that takes over without state sends nothing to agents that said hello before its first sync and hold the span it computes', () => {
    const one = setup();
    one.apply(...base());
    one.d.setReady();
    const a1 = new FakeAgent('n1').hello(one.d);
    a1.ack();
    const a2 = new FakeAgent('n2').hello(one.d);
    a2.ack();

    // Failover: a new leader with no state dir; the agents reconnect as soon
    // as it listens, before its source has synced.
    const two = setup();
    const b1 = new FakeAgent('n1');
    b1.state = a1.state;
    b1.hello(two.d);
    const b2 = new FakeAgent('n2');
    b2.state = a2.state;
    b2.hello(two.d);
    // While no controller led, web2 joined: n2's span (the db policy's peers) changed, n1's did not.
    two.apply(
      ...base(),
      pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }),
    );
    two.d.setReady();
    assert.equal(b1.sent.length, 0, 'n1 holds exactly its span: nothing sent');
    assert.equal(two.view('n1').inSync, true);
    assert.equal(b2.sent.length, 1);
    assert.equal(b2.last.snapshot, true, 'no state to delta from: a snapshot');
    b2.ack();
    assert.equal(two.view('n2').inSync, true);
    assert.deepEqual(
      Object.keys(two.d.persisted()).sort(),
      ['n1', 'n2'],
      'both are kept from now on',
    );
  });

  test('ACKed spans survive a restart as hashes and yield a delta of only what changed', () => {
    const one = setup();
    one.apply(...base());
    one.d.setReady();
    const a = new FakeAgent('n2').hello(one.d);
    a.ack();
    const persisted = one.d.persisted();

    const two = setup();
    two.store.commit(0);
    two.apply(
      ...base(),
      pod('a', 'web2', { labels: { app: 'web' }, ips: ['10.0.0.3'], node: 'n3' }),
    );
    two.d.restore(persisted);
    two.d.setReady();
    const b = new FakeAgent('n2');
    b.state = a.state;
    b.hello(two.d);
    const u = b.last;
    assert.equal(u.snapshot, false);
    assert.deepEqual(u.policies, []);
    assert.equal(u.addressGroups!.length, 1, 'only the peer group that gained web2');
    b.ack();
    assert.equal(two.view('n2').inSync, true);
  });

  test('propagation is timed from the commit to the ACK; what an agent gets on connecting is a resync, reported apart', () => {
    const { d, apply, clock } = setup();
    apply(...base());
    d.setReady();
    clock.now += 1_000;
    const a = new FakeAgent('n2').hello(d);
    clock.now += 7;
    a.ack();
    let real = d.realization('t/np/a/db');
    assert.deepEqual([real.applied, real.latencyMs, real.resyncMs], [['n2'], {}, { n2: 7 }]);
    // A change committed while connected: propagation.
    apply(
      networkPolicy('a', 'db', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] },
        ],
      }),
    );
    clock.now += 3;
    real = d.realization('t/np/a/db');
    assert.deepEqual(real.applied, [], 'sent, not yet proved');
    a.ack();
    real = d.realization('t/np/a/db');
    assert.deepEqual([real.applied, real.latencyMs, real.resyncMs], [['n2'], { n2: 3 }, {}]);
    a.session.close();
    assert.deepEqual(d.realization('t/np/a/db').applied, [], 'applied means connected now');
  });

  test('an agent that leaves an update unanswered past the timeout is disconnected and reported', () => {
    const { d, apply, clock, view } = setup();
    apply(...base());
    d.setReady();
    const hung = new FakeAgent('n2').hello(d);
    clock.now += 29_000;
    assert.deepEqual(d.expireUnanswered(), []);
    clock.now += 2_000;
    assert.deepEqual(d.expireUnanswered(), ['n2']);
    assert.deepEqual(hung.closed, ['no answer to an update']);
    const v = view('n2');
    assert.equal(v.connected, false);
    assert.match(v.lastError, /no answer to revision 1 within 30000 ms/);
  });

  test('through random changes, slow agents, reconnections and a restart, every delta leaves the agent holding exactly its span', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const r = rng(seed * 101);
      let unproved = 0;
      let deltas = 0;
      const make = (initialRevision = 0) => {
        const model = new ClusterModel({ cluster: 't' });
        const store = new SpanStore(model, { initialRevision });
        const d = new Distributor(store, {
          log: silentLogger,
          random: () => 0,
          observe: {
            sent: (kind) => void (kind === 'delta' && deltas++),
            acked: () => undefined,
            nacked: () => undefined,
            unproved: () => void unproved++,
            retried: () => undefined,
          },
        });
        return { model, store, d };
      };
      let c = make();
      /** The objects in the cluster now, to replay into a restarted controller. */
      const live = new Map<string, KubeObject>();
      const apply = (o: KubeObject, del: boolean) => {
        const id = `${o.kind}/${namespaceOf(o)}/${o.name}`;
        if (del) live.delete(id);
        else live.set(id, o);
        c.model.apply(
          del
            ? {
                type: 'delete',
                kind: o.kind,
                namespace: namespaceOf(o),
                name: o.name,
              }
            : { type: 'upsert', object: o },
        );
      };
      for (const o of randomCluster(seed).map(read)) apply(o, false);
      c.store.commit(0);
      c.d.setReady();
      const agents = ['node-0', 'node-1', 'node-2'].map((n) => new FakeAgent(n).hello(c.d));
      const answer = () => {
        for (const a of agents) if (a.sent.length > a.answered) a.answer();
      };
      answer();
      const steps = [seed + 5000, seed + 9000].flatMap((x) => randomCluster(x).map(read));
      steps.forEach((o, i) => {
        apply(o, r.chance(0.2));
        if (!r.chance(0.3)) return;
        const commit = c.store.commit(i);
        if (commit) c.d.notify(commit.nodes);
        // Some agents answer late (their changes collapse into the next delta), some reconnect.
        for (const a of agents) {
          if (r.chance(0.1)) a.hello(c.d);
          else if (r.chance(0.7) && a.sent.length > a.answered) a.answer();
        }
        if (i === Math.floor(steps.length / 2)) {
          // A controller restart: ACKed spans come back as hashes only.
          const persisted = c.d.persisted();
          c = make(c.store.revision);
          for (const o of live.values()) c.model.apply({ type: 'upsert', object: o });
          c.store.commit(i);
          c.d.restore(persisted);
          c.d.setReady();
          for (const a of agents) a.hello(c.d);
        }
      });
      const last = c.store.commit(steps.length);
      if (last) c.d.notify(last.nodes);
      for (let round = 0; round < 5; round++) answer();
      for (const a of agents) {
        const v = c.d.views().find((x) => x.node === a.node)!;
        assert.equal(v.inSync, true, `seed ${seed}: ${a.node} in sync`);
      }
      assert.equal(
        unproved,
        0,
        `seed ${seed}: every ACKed delta gave the span the controller computed`,
      );
      assert.ok(deltas > 0, `seed ${seed}: deltas were sent`);
    }
  });
});
