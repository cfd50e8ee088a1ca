/**
 * NATS with TLS and client certificates (docs/nats.md "TLS and
 * identities"): a real nats-server configured by `weirctl nats config
 * --auth tls` (testing/nats-server.ts), where a certificate's URI SAN is
 * the user, so the certificate alone decides what a client may do.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type NatsConnection, connect } from '@nats-io/transport-node';
import { natsConnect } from '../../shared/nats/connect.js';
import { agentInbox, directGet, natsNames } from '../../shared/nats/names.js';
import { nodeUri } from '../../shared/tls/identity.js';
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import { tlsFiles } from '../../testing/pki.js';
import { pki } from '../support/tls.js';

const CLUSTER = 't';
const names = natsNames(CLUSTER);

/** The first permission violation the server reports on `nc` after `act`, or undefined. */
async function violation(nc: NatsConnection, act: () => unknown): Promise<string | undefined> {
  let seen: string | undefined;
  const watch = (async () => {
    for await (const s of nc.status())
      if (s.type === 'error') {
        seen = String((s as { error?: unknown }).error);
        return;
      }
  })();
  try {
    await act();
  } catch (err) {
    seen ??= String(err);
  }
  await nc.flush();
  await new Promise((r) => setTimeout(r, 200));
  void watch;
  return seen;
}

describe('NATS with client certificates mapped to roles', () => {
  let nats: NatsRig;
  const tlsOf = (dir: string) => {
    const f = tlsFiles(dir);
    return { certFile: f.cert, keyFile: f.key, caFile: f.ca };
  };
  const nodeA = () => pki.node('node-a').then(tlsFiles);

  before(async () => {
    nats = await startNats({ identities: { pki, cluster: CLUSTER, nodes: ['node-a', 'node-b'] } });
  });
  after(async () => {
    await nats?.[Symbol.asyncDispose]();
  });

  test('a client without a certificate is refused by nats-server', async () => {
    // Under TLS 1.3 the server's refusal arrives as an alert or, when the
    // client has already written, as a reset: either way the connection is refused.
    await assert.rejects(
      connect({
        servers: nats.urls,
        tls: { caFile: tlsFiles(pki.controller).ca },
        reconnect: false,
      }),
      /certificate|handshake|alert|ECONNRESET/i,
    );
  });

  test('a certificate naming no user of the configuration is refused', async () => {
    await assert.rejects(
      connect({ servers: nats.urls, tls: tlsOf(await pki.node('node-z')), reconnect: false }),
      /authorization/i,
    );
  });

  test("a certificate of another CA is refused, even one naming a configured node's identity", async () => {
    await assert.rejects(
      connect({
        servers: nats.urls,
        tls: {
          ...tlsOf(await pki.foreign('node-a', nodeUri('node-a'))),
          caFile: tlsFiles(pki.controller).ca,
        },
        reconnect: false,
      }),
      /certificate|handshake|alert|ECONNRESET/i,
    );
  });

  test("an agent with node A's certificate reaches its own subjects", async () => {
    const nc = await natsConnect(
      { servers: [nats.urls], tls: await nodeA() },
      { name: 'node-a', inboxPrefix: agentInbox('node-a'), maxReconnectAttempts: 0 },
    );
    try {
      assert.equal(
        await violation(nc, async () => {
          nc.subscribe(names.spans.subject('node-a'));
          nc.subscribe(names.live('node-a'));
          nc.publish(names.agent('node-a', 'beat'), '{}');
        }),
        undefined,
      );
    } finally {
      await nc.close();
    }
  });

  const cases: Array<[string, (nc: NatsConnection) => unknown]> = [
    ["subscribe to node B's updates", (nc) => nc.subscribe(names.spans.subject('node-b'))],
    ["subscribe to node B's inbox", (nc) => nc.subscribe(`${agentInbox('node-b')}.>`)],
    ["subscribe to node B's liveness probe", (nc) => nc.subscribe(names.live('node-b'))],
    [
      "read node B's kept update",
      (nc) =>
        nc.request(directGet(names.spans.stream, names.spans.subject('node-b')), '', {
          timeout: 1_000,
        }),
    ],
    ['say hello as node B', (nc) => nc.publish(names.agent('node-b', 'hello'), '{}')],
    ['ACK as node B', (nc) => nc.publish(names.agent('node-b', 'ack'), '{}')],
    ["publish node B's flow events", (nc) => nc.publish(names.flows.subject('node-b'), '{}')],
    ['publish an update as the controller', (nc) => nc.publish(names.spans.subject('node-a'), '')],
  ];
  for (const [what, act] of cases)
    test(`an agent with node A's certificate cannot ${what}`, async () => {
      const nc = await natsConnect(
        { servers: [nats.urls], tls: await nodeA() },
        { name: 'node-a', inboxPrefix: agentInbox('node-a'), maxReconnectAttempts: 0 },
      );
      try {
        assert.match((await violation(nc, () => act(nc))) ?? 'allowed', /permission/i);
      } finally {
        await nc.close().catch(() => {});
      }
    });
});
