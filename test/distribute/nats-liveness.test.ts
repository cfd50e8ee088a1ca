/**
 * Noticing a dead agent over NATS (docs/nats.md "Resuming"): a session
 * whose beat is late is probed on weir.C.live.N; when the agent's
 * connection is gone the server answers "no responders" and the session
 * ends then, not after 3 beats of silence. An agent that is alive answers
 * its probes and keeps its session.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Distributor } from '../../controller/distribute/distributor.js';
import { NatsPublisher } from '../../controller/distribute/nats-publisher.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { SpanStore } from '../../controller/store/span-store.js';
import { silentLogger } from '../../shared/log.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { NatsTransport } from '../../vrouter-agent/transport/nats.js';
import { namespace, networkPolicy, pod } from '../../testing/cluster.js';
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import { eventually } from '../support/processes.js';
import { agentTls } from '../support/tls.js';

const CLUSTER = 'live';
const NODES = ['node-a', 'node-b'];
/** The publisher's beat: a session silent for 3 beats + 1 s (7 s) would end without any probe. */
const BEAT_MS = 2_000;

describe('dead agents over NATS', () => {
  let nats: NatsRig;
  let dir: string;
  const lines: Array<{ msg: string; node?: string }> = [];
  const model = new ClusterModel({ cluster: CLUSTER });
  const store = new SpanStore(model);
  const distributor = new Distributor(store, { log: silentLogger });
  const agents = new Map<string, NodeAgent>();
  let publisher: NatsPublisher;

  before(async () => {
    nats = await startNats();
    dir = await mkdtemp(join(tmpdir(), 'weir-natslive-'));
    const log = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
          done();
        },
      }),
    );
    publisher = await NatsPublisher.start({
      endpoint: { servers: [nats.urls] },
      cluster: CLUSTER,
      sessions: distributor,
      nodeLocal: (node, key) =>
        key.startsWith('g:') && store.span(node)?.localOnlyGroups.has(key.slice(2)) === true,
      held: (key) => store.holdersOf(key).size > 0,
      beatMs: BEAT_MS,
      log,
    });
    for (const raw of [
      namespace('a'),
      ...NODES.map((n, i) => pod('a', `p${i}`, { ips: [`10.0.0.${i + 1}`], node: n })),
      networkPolicy('a', 'all', { podSelector: {}, ingress: [{}] }),
    ]) {
      const r = readKubeObject(raw);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      model.apply({ type: 'upsert', object: r.object });
    }
    const c = store.commit(Date.now());
    distributor.setReady();
    if (c) distributor.notify(c.nodes);
    for (const node of NODES) {
      const agent = new NodeAgent({
        node,
        controller: '',
        stateDir: join(dir, node),
        listen: '127.0.0.1:0',
        log: silentLogger,
        tls: await agentTls(node),
        transport: new NatsTransport({
          endpoint: { servers: [nats.urls] },
          cluster: CLUSTER,
          node,
          log: silentLogger,
        }),
      });
      await agent.start();
      agents.set(node, agent);
    }
    await eventually(
      async () => {
        const v = distributor.views();
        return v.length === NODES.length && v.every((x) => x.connected && x.inSync) ? v : undefined;
      },
      'both agents in sync',
      30_000,
    );
  });

  after(async () => {
    distributor.closeAll('test over');
    for (const a of agents.values()) await a[Symbol.asyncDispose]();
    await publisher?.[Symbol.asyncDispose]();
    await nats?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  test("an agent whose connection is gone is disconnected by its probe's no responders, not by 3 beats of silence", async () => {
    // The agent goes away without a word: its NATS connection closes, as when its process dies.
    await agents.get('node-b')![Symbol.asyncDispose]();
    agents.delete('node-b');
    await eventually(
      async () =>
        distributor.views().find((v) => v.node === 'node-b')?.connected === false
          ? true
          : undefined,
      'node-b disconnected',
      30_000,
    );
    const why = lines.filter((l) => l.node === 'node-b').map((l) => l.msg);
    assert.ok(
      why.some((m) => m.includes('no responders')),
      `closed by the probe: ${JSON.stringify(why)}`,
    );
    assert.ok(!why.includes('agent stopped beating; session closed'), JSON.stringify(why));
  });

  test('an agent that is alive keeps its session through its probes', async () => {
    // node-a beats all along; whatever probes it got, it answered.
    await new Promise((r) => setTimeout(r, 2 * BEAT_MS));
    const a = distributor.views().find((v) => v.node === 'node-a');
    assert.ok(a?.connected && a.inSync);
    assert.ok(
      !lines.some((l) => l.node === 'node-a' && /closed/.test(l.msg)),
      'node-a never closed',
    );
  });
});
