/**
 * The agent against a scripted controller (a real gRPC server in the test):
 * what it ACKs, what it NACKs, and what it keeps enforcing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { silentLogger } from '../../shared/log.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { snapshotHash } from '../../shared/wire/span-hash.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { eventually } from '../support/processes.js';
import { ScriptedController } from '../support/scripted-controller.js';

function span(objects: Raw[], revision: number, base = 0): SpanUpdate {
  const model = new ClusterModel({ cluster: 't' });
  for (const raw of objects) {
    const r = readKubeObject(raw);
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
  }
  const w = snapshotToWire(model.snapshot());
  return {
    revision: String(revision),
    baseRevision: String(base),
    snapshot: base === 0,
    cluster: 't',
    policies: w.policies,
    addressGroups: w.addressGroups,
    serviceGroups: w.serviceGroups,
    endpoints: w.endpoints,
    applicationPolicySet: w.applicationPolicySet,
  };
}

const cluster = (allowFromB: boolean): Raw[] => [
  namespace('a'),
  pod('a', 'server', { labels: { app: 'server' }, ips: ['10.0.0.1'], node: 'n1' }),
  pod('a', 'client', { labels: { app: 'client' }, ips: ['10.0.0.2'], node: 'n2' }),
  networkPolicy('a', 'server', {
    podSelector: { matchLabels: { app: 'server' } },
    ingress: allowFromB ? [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }] : [],
  }),
];

describe('node agent', () => {
  let dir: string;
  let controller: ScriptedController;
  let agent: NodeAgent;
  const verdict = () =>
    JSON.parse(
      agent.evaluate({ from: '10.0.0.2', to: '10.0.0.1', protocol: 'TCP', port: 80 })
        .explanationJson ?? '{}',
    ).allowed as boolean;
  const answered = (n: number) =>
    eventually(
      async () => (controller.answers.length >= n ? controller.answers[n - 1] : undefined),
      `answer ${n}`,
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-agent-'));
    controller = new ScriptedController();
    await controller.start();
    agent = new NodeAgent({
      node: 'n1',
      controller: `127.0.0.1:${controller.port}`,
      stateDir: join(dir, 'state'),
      listen: '127.0.0.1:0',
      // The scripted controller (test/support/scripted-controller.ts) speaks plain gRPC.
      tls: undefined,
      log: silentLogger,
    });
    await agent.start();
    const hello = await answered(1);
    assert.equal(hello.kind, 'hello');
    assert.equal(hello.hello!.node, 'n1');
    assert.equal(hello.hello!.appliedRevision, '0');
    assert.equal(hello.hello!.inForceHash, snapshotHash({ cluster: '', policies: [] }));
  });

  after(async () => {
    await agent[Symbol.asyncDispose]();
    controller.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('an agent the controller has welcomed is connected, not headless, before any update', async () => {
    assert.equal(agent.status().controllerConnected, false, 'no answer to the hello yet');
    controller.welcome();
    await eventually(
      async () => (agent.status().controllerConnected ? true : undefined),
      'connected',
    );
    assert.equal(agent.status().headless, false);
  });

  test('a snapshot is applied, persisted and ACKed with the hash of the span now in force', async () => {
    const update = span(cluster(true), 5);
    controller.send(update);
    const a = await answered(2);
    assert.deepEqual([a.kind, a.ack?.revision], ['ack', '5']);
    assert.equal(agent.revision, 5);
    assert.equal(verdict(), true);
    // What the controller computes from the same objects.
    const expected = snapshotHash({ ...update, applicationPolicySet: update.applicationPolicySet });
    assert.equal(a.ack!.inForceHash, expected);
    assert.equal(agent.status().inForceHash, expected);
  });

  test('a delta from a revision the agent does not hold is NACKed and the previous revision stays in force', async () => {
    controller.send(span(cluster(false), 7, 6));
    const a = await answered(3);
    assert.equal(a.kind, 'nack');
    assert.equal(a.nack!.revision, '7');
    assert.match(a.nack!.error, /delta from revision 6, but this agent holds 5/);
    assert.equal(a.nack!.inForceHash, agent.status().inForceHash, 'the span still in force');
    assert.equal(agent.revision, 5);
    assert.equal(verdict(), true, 'still enforcing revision 5');
    assert.match(agent.status().lastError ?? '', /revision 7 refused/);
  });

  test('an update with objects the wire does not allow is NACKed with every problem, the previous revision in force', async () => {
    const bad = span(cluster(false), 8, 5);
    bad.policies = bad.policies!.map((p) => ({
      ...p,
      rules: [
        {
          id: 'x',
          direction: 'DIRECTION_UNSPECIFIED',
          endpoint1: { any: true },
          endpoint2: { any: true },
          serviceGroup: '',
          action: 'ACTION_PASS',
        },
      ],
    }));
    controller.send(bad);
    const a = await answered(4);
    assert.equal(a.kind, 'nack');
    assert.match(a.nack!.error, /rules\[0\]\.direction/);
    assert.equal(verdict(), true);
  });

  test('a good delta after a refusal is applied', async () => {
    const next = span(cluster(false), 9, 5);
    next.snapshot = false;
    controller.send(next);
    const a = await answered(5);
    assert.deepEqual([a.kind, a.ack?.revision], ['ack', '9']);
    assert.equal(verdict(), false, 'the server no longer admits the client');
  });

  test('a span in which two local pods claim one address is enforced as the evaluator resolves it, ACKed, and the next delta applies', async () => {
    const shared = (policy: Raw): Raw[] => [
      namespace('a'),
      pod('a', 'server', { labels: { app: 'server' }, ips: ['10.0.0.1'], node: 'n1' }),
      pod('a', 'twin', { labels: { app: 'twin' }, ips: ['10.0.0.1'], node: 'n1' }),
      pod('a', 'client', { labels: { app: 'client' }, ips: ['10.0.0.2'], node: 'n2' }),
      policy,
    ];
    const isolateTwin = networkPolicy('a', 'twin', {
      podSelector: { matchLabels: { app: 'twin' } },
      ingress: [],
    });
    const admitTwin = networkPolicy('a', 'twin', {
      podSelector: { matchLabels: { app: 'twin' } },
      ingress: [{}],
    });
    controller.send(span(shared(isolateTwin), 10));
    const a = await answered(6);
    assert.deepEqual([a.kind, a.ack?.revision], ['ack', '10'], a.nack?.error);
    assert.deepEqual(agent.status().warnings, [
      '10.0.0.1 is claimed by a/server, a/twin; a/twin holds it',
    ]);
    assert.equal(verdict(), false, 'a/twin, last by name, holds 10.0.0.1 and is isolated');
    const next = span(shared(admitTwin), 11, 10);
    next.snapshot = false;
    controller.send(next);
    const b = await answered(7);
    assert.deepEqual([b.kind, b.ack?.revision], ['ack', '11'], b.nack?.error);
    assert.equal(verdict(), true, 'the delta on the span in force admits the client');
  });
});
