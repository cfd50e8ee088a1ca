/**
 * ACKs, NACKs and beats over NATS are publishes without a reply
 * (docs/nats.md "Messages"): what makes them reliable is the beat, which
 * repeats the agent's last answer, and the controller's notice when it does
 * not know a session. Against a real nats-server whose permissions drop
 * node-a's ACK publishes (the server refuses them: nobody receives them),
 * the controller still records node-a in sync, once per update; a controller
 * that restarts without a word is told of by its notice and the agent says
 * hello again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Distributor } from '../../controller/distribute/distributor.js';
import { NatsPublisher } from '../../controller/distribute/nats-publisher.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { SpanStore } from '../../controller/store/span-store.js';
import { silentLogger } from '../../shared/log.js';
import { natsNames } from '../../shared/nats/names.js';
import { type ElementMemo, snapshotHash } from '../../shared/wire/span-hash.js';
import { SpanState } from '../../vrouter-agent/store/span-state.js';
import { NatsTransport } from '../../vrouter-agent/transport/nats.js';
import { namespace, networkPolicy, pod } from '../../testing/cluster.js';
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import { eventually } from '../support/processes.js';

const CLUSTER = 'answers';
const NODES = ['node-a', 'node-b'];
const BEAT_MS = 500;
const names = natsNames(CLUSTER);

class Controller {
  readonly model = new ClusterModel({ cluster: CLUSTER });
  readonly store = new SpanStore(this.model);
  /** Proved ACKs the Distributor recorded. */
  acks = 0;
  readonly distributor = new Distributor(this.store, {
    log: silentLogger,
    observe: {
      sent() {},
      acked: () => {
        this.acks++;
      },
      nacked() {},
      unproved() {},
      retried() {},
    },
  });
  publisher: NatsPublisher | undefined;

  async start(nats: NatsRig): Promise<void> {
    this.publisher = await NatsPublisher.start({
      endpoint: { servers: [nats.urls], user: 'controller', password: 'c' },
      cluster: CLUSTER,
      sessions: this.distributor,
      nodeLocal: (node, key) =>
        key.startsWith('g:') && this.store.span(node)?.localOnlyGroups.has(key.slice(2)) === true,
      held: (key) => this.store.holdersOf(key).size > 0,
      beatMs: BEAT_MS,
      log: silentLogger,
    });
  }

  apply(raws: object[]): void {
    for (const raw of raws) {
      const r = readKubeObject(raw);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      this.model.apply({ type: 'upsert', object: r.object });
    }
    const c = this.store.commit(Date.now());
    this.distributor.setReady();
    if (c) this.distributor.notify(c.nodes);
  }

  inSync(): boolean {
    const v = this.distributor.views();
    const ok = NODES.every((n) => v.some((x) => x.node === n && x.connected && x.inSync));
    return ok;
  }
}

const cluster = (extra: number) => [
  namespace('a'),
  ...NODES.map((n, i) => pod('a', `p${i}`, { ips: [`10.0.0.${i + 1}`], node: n })),
  ...Array.from({ length: extra }, (_, i) =>
    pod('a', `extra-${i}`, { ips: [`10.0.1.${i + 1}`], node: 'node-b' }),
  ),
  // Every span holds the group of every pod: a pod added anywhere changes every node's span.
  networkPolicy('a', 'all', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }),
];

describe('answers over NATS without replies', () => {
  let nats: NatsRig;
  let controller: Controller;
  let spy: NatsConnection;
  /** Subjects node-a's messages were delivered on (what the controller can receive). */
  const seen: string[] = [];
  const notices: string[] = [];
  const agents: NatsTransport[] = [];
  const memo: ElementMemo = new WeakMap();

  before(async () => {
    // node-a may publish anything of its own but its ACKs: the server drops them.
    const agent = (node: string, deny: string[]) =>
      `{ user: ${node}, password: a, permissions: { publish: { allow: [">"], deny: ${JSON.stringify(deny)} }, subscribe: { allow: [">"] } } }`;
    nats = await startNats({
      authorization: `authorization { users: [ { user: controller, password: c }, { user: spy, password: s }, ${agent('node-a', [names.agent('node-a', 'ack')])}, ${agent('node-b', [])} ] }`,
    });
    spy = await connect({ servers: nats.urls, user: 'spy', pass: 's' });
    spy.subscribe(`weir.${CLUSTER}.agent.node-a.*`, {
      callback: (_e, m) => {
        seen.push(m.subject);
      },
    });
    spy.subscribe(names.live('node-a'), {
      callback: (_e, m) => {
        if (!m.reply) notices.push(m.string());
      },
    });
    await spy.flush();
    controller = new Controller();
    await controller.start(nats);
    controller.apply(cluster(0));
    for (const node of NODES) {
      const t = new NatsTransport({
        endpoint: { servers: [nats.urls], user: node, password: 'a' },
        cluster: CLUSTER,
        node,
        log: silentLogger,
      });
      agents.push(t);
      let state = SpanState.empty();
      const deliveries = t.updates(() => ({
        node,
        appliedRevision: state.revision,
        instance: `test-${node}`,
        apiAddress: '',
        inForceHash: snapshotHash(state, memo),
      }));
      void (async () => {
        for await (const d of deliveries) {
          if (d.update === undefined) {
            d.nack(d.problem ?? '', snapshotHash(state, memo));
            continue;
          }
          state = state.apply(d.update);
          d.ack(snapshotHash(state, memo));
        }
      })();
    }
  });

  after(async () => {
    for (const t of agents) await t[Symbol.asyncDispose]();
    controller.distributor.closeAll('test over');
    await controller.publisher?.[Symbol.asyncDispose]();
    await spy?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  test('an ACK that never reaches the controller is recovered by the next beat: the node is in sync', async () => {
    await eventually(async () => (controller.inSync() ? true : undefined), 'both in sync', 30_000);
    assert.ok(!seen.includes(names.agent('node-a', 'ack')), 'no ACK of node-a was delivered');
    assert.ok(seen.includes(names.agent('node-a', 'beat')), 'node-a beat');
  });

  test('a change after it is recorded once per node, however many beats repeat the answer', async () => {
    const before = controller.acks;
    controller.apply(cluster(1));
    await eventually(async () => (controller.inSync() ? true : undefined), 'in sync again', 30_000);
    // Several beats of node-a carry the same ACK meanwhile: the Distributor hears it once.
    await new Promise((r) => setTimeout(r, 3 * BEAT_MS));
    assert.equal(controller.acks - before, NODES.length);
    assert.ok(controller.inSync());
  });

  test('a controller that restarts is told of by its notice, and the agents say hello to the new one', async () => {
    // Just after an update the agents have heard the controller: their next beats are publishes, not questions.
    controller.apply(cluster(2));
    await eventually(async () => (controller.inSync() ? true : undefined), 'in sync', 30_000);
    controller.distributor.closeAll('restart');
    await controller.publisher![Symbol.asyncDispose]();
    controller = new Controller();
    await controller.start(nats);
    controller.apply(cluster(3));
    await eventually(
      async () => (controller.inSync() ? true : undefined),
      'in sync with the new controller',
      30_000,
    );
    assert.ok(
      notices.some((n) => JSON.parse(n).ok === false),
      `node-a was told its session is unknown: ${JSON.stringify(notices)}`,
    );
  });
});
