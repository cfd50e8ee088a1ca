/**
 * NATS with TLS and client certificates (docs/nats.md "TLS and
 * identities"): a real nats-server configured by `weirctl nats config
 * --auth tls`, where a certificate's URI SAN is the user, so the
 * certificate alone decides what a client may do.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type NatsConnection, connect } from '@nats-io/transport-node';
import { main as weirctl } from '../../cli/main.js';
import { natsConnect } from '../../shared/nats/connect.js';
import { agentInbox, directGet, natsNames } from '../../shared/nats/names.js';
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import { type Issued, type TestPki, testPki } from '../../testing/nats-pki.js';

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
  let dir: string;
  let pki: TestPki;
  let nats: NatsRig;
  const certs = new Map<string, Issued>();
  const tlsOf = (who: string) => {
    const c = certs.get(who)!;
    return { certFile: c.cert, keyFile: c.key, caFile: c.ca };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-natstls-'));
    pki = await testPki();
    const server = await pki.issue('nats', ['DNS:localhost', 'IP:127.0.0.1']);
    certs.set('controller', await pki.issue('controller', ['URI:spiffe://weir/controller']));
    for (const node of ['node-a', 'node-b'])
      certs.set(node, await pki.issue(node, [`URI:spiffe://weir/node/${node}`]));
    certs.set('stranger', await pki.issue('stranger', ['URI:spiffe://weir/node/node-z']));
    const out: string[] = [];
    const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void out.push(t) };
    const conf = join(dir, 'conf');
    const code = await weirctl(
      [
        'nats',
        'config',
        '--cluster',
        CLUSTER,
        '--node',
        'node-a',
        '--node',
        'node-b',
        '--server-tls-dir',
        server.dir,
        '--out',
        conf,
      ],
      io,
    );
    assert.equal(code, 0, out.join(''));
    nats = await startNats({
      authorization: (
        await Promise.all(
          ['weir-tls.conf', 'weir-authorization.conf'].map((f) => readFile(join(conf, f), 'utf8')),
        )
      ).join('\n'),
    });
  });
  after(async () => {
    await nats?.[Symbol.asyncDispose]();
    await pki?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  test('a client without a certificate is refused by nats-server', async () => {
    // Under TLS 1.3 the server's refusal arrives as an alert or, when the
    // client has already written, as a reset: either way the connection is refused.
    await assert.rejects(
      connect({ servers: nats.urls, tls: { caFile: pki.ca }, reconnect: false }),
      /certificate|handshake|alert|ECONNRESET/i,
    );
  });

  test('a certificate naming no user of the configuration is refused', async () => {
    await assert.rejects(
      connect({ servers: nats.urls, tls: tlsOf('stranger'), reconnect: false }),
      /authorization/i,
    );
  });

  test("an agent with node A's certificate reaches its own subjects", async () => {
    const nc = await natsConnect(
      { servers: [nats.urls], tls: certs.get('node-a')! },
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
        { servers: [nats.urls], tls: certs.get('node-a')! },
        { name: 'node-a', inboxPrefix: agentInbox('node-a'), maxReconnectAttempts: 0 },
      );
      try {
        assert.match((await violation(nc, () => act(nc))) ?? 'allowed', /permission/i);
      } finally {
        await nc.close().catch(() => {});
      }
    });
});
