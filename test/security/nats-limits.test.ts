/**
 * Hostile agent requests over NATS at the controller's publisher (a real
 * nats-server, the real NatsPublisher and Distributor): the same limits as
 * over gRPC (controller/distribute/admission.ts), each request answered
 * with a refusal naming the field, nothing recorded for it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Distributor } from '../../controller/distribute/distributor.js';
import { NatsPublisher } from '../../controller/distribute/nats-publisher.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { SpanStore } from '../../controller/store/span-store.js';
import { silentLogger } from '../../shared/log.js';
import { natsNames } from '../../shared/nats/names.js';
import { type NatsRig, startNats } from '../../testing/nats-server.js';

describe('hostile agents over NATS', () => {
  let nats: NatsRig;
  let publisher: NatsPublisher;
  let distributor: Distributor;
  let nc: NatsConnection;
  const names = natsNames('t');
  const ask = async (subject: string, body: unknown) => {
    const data = typeof body === 'string' ? body : JSON.stringify(body);
    const reply = await nc.request(subject, data, { timeout: 5_000 });
    return JSON.parse(reply.string()) as { ok: boolean; error?: string };
  };

  before(async () => {
    nats = await startNats();
    const store = new SpanStore(new ClusterModel({ cluster: 't' }));
    distributor = new Distributor(store, { log: silentLogger, maxUnknownNodes: 2 });
    publisher = await NatsPublisher.start({
      endpoint: { servers: [nats.urls] },
      cluster: 't',
      sessions: distributor,
      nodeLocal: () => false,
      held: () => false,
      log: silentLogger,
    });
    nc = await connect({ servers: nats.urls });
  });
  after(async () => {
    await nc.close();
    await publisher[Symbol.asyncDispose]();
    await nats[Symbol.asyncDispose]();
  });

  const hello = (node: string, over: Record<string, unknown> = {}) => ({
    node,
    appliedRevision: '0',
    instance: 'x',
    apiAddress: '127.0.0.1:1',
    inForceHash: '',
    ...over,
  });

  const cases: Array<[string, string, unknown, RegExp]> = [
    [
      'a body over 64 KiB',
      'node-a',
      'x'.repeat(70_000),
      /^request: is 70000 bytes; at most 65536$/,
    ],
    [
      'a node name of 300 characters',
      'a'.repeat(300),
      hello('a'.repeat(300)),
      /^Hello: node: is 300 characters; a node name has at most 253$/,
    ],
    [
      "a node that is not the subject's",
      'node-a',
      hello('node-b'),
      /^Hello: node: "node-b" is not the subject's node "node-a"$/,
    ],
    [
      'an instance of 1,000 characters',
      'node-a',
      hello('node-a', { instance: 'i'.repeat(1_000) }),
      /^Hello: instance: is 1000 characters; at most 64$/,
    ],
    [
      'a revision beyond 2^48',
      'node-a',
      hello('node-a', { appliedRevision: 2 ** 52 }),
      /^Hello: appliedRevision: 4503599627370496 is not a revision/,
    ],
  ];
  for (const [what, node, body, message] of cases)
    test(`a hello with ${what} is refused, naming the field, and nothing is recorded`, async () => {
      const r = await ask(names.agent(node, 'hello'), body);
      assert.equal(r.ok, false);
      assert.match(r.error ?? '', message);
      assert.ok((r.error ?? '').length < 200);
      assert.equal(distributor.recordCount, 0);
    });

  test('hellos for nodes the cluster does not know stop at the bound, refused with the reason', async () => {
    assert.equal((await ask(names.agent('fake-1', 'hello'), hello('fake-1'))).ok, true);
    assert.equal((await ask(names.agent('fake-2', 'hello'), hello('fake-2'))).ok, true);
    const r = await ask(names.agent('fake-3', 'hello'), hello('fake-3'));
    assert.equal(r.ok, false);
    assert.match(
      r.error ?? '',
      /node fake-3 is not in the cluster, and 2 agents of such nodes are connected, the most this controller keeps \(2\)/,
    );
    assert.equal(distributor.recordCount, 2);
  });
});
