/**
 * The agent's persisted span: a restarted agent enforces it before it
 * reaches a controller; a file that is damaged, another node's or an older
 * agent's is moved aside, nothing of it is enforced, the agent says so in
 * its status and asks the controller for a snapshot (hello at revision 0).
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ValidationError } from '../../shared/errors.js';
import type { SpanUpdate, SpanUpdate__Output } from '../../shared/generated/weir/v1/index.js';
import { weirProto } from '../../shared/grpc/proto.js';
import { silentLogger } from '../../shared/log.js';
import { ChecksummedFile } from '../../shared/state/checksummed-file.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { SpanState } from '../../vrouter-agent/store/span-state.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { ScriptedController } from '../support/scripted-controller.js';

const CLUSTER: Raw[] = [
  namespace('a'),
  pod('a', 'server', { labels: { app: 'server' }, ips: ['10.0.0.1'], node: 'n1' }),
  pod('a', 'client', { labels: { app: 'client' }, ips: ['10.0.0.2'], node: 'n2' }),
  // server takes nothing from anyone: a span in force denies client → server.
  networkPolicy('a', 'server', { podSelector: { matchLabels: { app: 'server' } }, ingress: [] }),
];

function snapshot(revision: number, cluster = 't'): SpanUpdate {
  const model = new ClusterModel({ cluster });
  for (const raw of CLUSTER) {
    const r = readKubeObject(raw);
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
  }
  const w = snapshotToWire(model.snapshot());
  return {
    revision: String(revision),
    baseRevision: '0',
    snapshot: true,
    cluster,
    policies: w.policies,
    addressGroups: w.addressGroups,
    serviceGroups: w.serviceGroups,
    endpoints: w.endpoints,
    applicationPolicySet: w.applicationPolicySet,
  };
}

describe("the agent's persisted span", () => {
  let dir: string;
  let controller: ScriptedController;
  const agents: NodeAgent[] = [];

  /** An agent on `stateDir`, started; resolves with it and its hello. */
  const startAgent = async (stateDir: string, node = 'n1') => {
    const before = controller.answers.length;
    const agent = new NodeAgent({
      node,
      controller: `127.0.0.1:${controller.port}`,
      stateDir,
      listen: '127.0.0.1:0',
      // The scripted controller (test/support/scripted-controller.ts) speaks plain gRPC.
      tls: undefined,
      log: silentLogger,
    });
    agents.push(agent);
    await agent.start();
    const hello = await controller.answer(before + 1);
    assert.equal(hello.kind, 'hello');
    return { agent, hello: hello.hello!, answered: before + 1 };
  };
  /** Whether the agent's own tables deny client → server on TCP/80. */
  const denies = (agent: NodeAgent) =>
    !JSON.parse(
      agent.evaluate({ from: '10.0.0.2', to: '10.0.0.1', protocol: 'TCP', port: 80 })
        .explanationJson ?? '{}',
    ).allowed;
  const stopAll = async () => {
    for (const a of agents.splice(0)) await a[Symbol.asyncDispose]();
  };
  /** A state dir holding n1's span at revision 5. */
  const persisted = async (name: string) => {
    const stateDir = join(dir, name);
    const { agent, answered } = await startAgent(stateDir);
    controller.send(snapshot(5));
    assert.equal((await controller.answer(answered + 1)).kind, 'ack');
    assert.ok(denies(agent));
    await stopAll();
    return stateDir;
  };
  const asideOf = async (stateDir: string) =>
    (await readdir(stateDir)).filter((f) => f.startsWith(`${SpanState.FILE}.`));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-agent-state-'));
    controller = new ScriptedController();
    await controller.start();
  });
  after(async () => {
    await stopAll();
    controller.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('a restarted agent enforces its persisted span before any update, and says which revision it holds', async () => {
    const stateDir = await persisted('restart');
    const { agent, hello } = await startAgent(stateDir);
    assert.equal(hello.appliedRevision, '5');
    assert.ok(denies(agent), 'the persisted span is in force');
    assert.equal(agent.status().lastError ?? '', '');
    assert.deepEqual(agent.stateRejections, []);
    await stopAll();
  });

  test('a span file edited on disk is moved aside; the agent enforces none of it, reports it, and asks for a snapshot', async () => {
    const stateDir = await persisted('edited');
    const file = join(stateDir, SpanState.FILE);
    const bytes = await readFile(file);
    // An edit that keeps the size: one byte of the last object changed.
    bytes[bytes.length - 3]! ^= 0x20;
    await writeFile(file, bytes);

    const { agent, hello, answered } = await startAgent(stateDir);
    assert.equal(hello.appliedRevision, '0', 'no revision: the controller sends a snapshot');
    assert.equal(denies(agent), false, 'nothing of the damaged span is enforced');
    assert.equal(agent.ruleTables.endpoints.size, 0);
    assert.match(
      agent.status().lastError ?? '',
      /state file .*span\.state rejected \(corrupt: digest mismatch\); moved aside to .*span\.state\.corrupt-\d{8}T\d{6}\.\d{3}Z; enforcing no span until the controller sends a snapshot/,
    );
    assert.equal(agent.stateRejections.length, 1);
    assert.equal((await asideOf(stateDir)).length, 1);

    // The snapshot puts the node's span back in force, and persists it anew.
    controller.send(snapshot(6));
    assert.equal((await controller.answer(answered + 1)).kind, 'ack');
    assert.ok(denies(agent));
    await stopAll();
    assert.equal((await startAgent(stateDir)).hello.appliedRevision, '6');
    await stopAll();
  });

  test("another node's span file is moved aside as foreign and nothing of it is enforced", async () => {
    const stateDir = await persisted('copied-from');
    const other = join(dir, 'copied-to');
    await cp(stateDir, other, { recursive: true });
    const { agent, hello } = await startAgent(other, 'n2');
    assert.equal(hello.appliedRevision, '0');
    assert.equal(agent.ruleTables.endpoints.size, 0);
    assert.match(
      agent.status().lastError ?? '',
      /rejected \(foreign: written for node "n1", not "n2"\)/,
    );
    assert.match((await asideOf(other))[0]!, /^span\.state\.foreign-/);
    await stopAll();
  });

  test('a span file an older agent wrote without a checksum is moved aside as unverifiable', async () => {
    const stateDir = join(dir, 'legacy');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(join(stateDir, 'span.json'), JSON.stringify({ revision: 9, snapshot: {} }));
    const { agent, hello } = await startAgent(stateDir);
    assert.equal(hello.appliedRevision, '0');
    assert.match(agent.status().lastError ?? '', /span\.json rejected \(unverifiable: /);
    assert.match((await readdir(stateDir)).join(' '), /span\.json\.unverifiable-\d{8}T/);
    await stopAll();
  });

  test('an intact file of the node whose content is not a span snapshot is moved aside as corrupt', async () => {
    const stateDir = join(dir, 'garbage');
    const f = new ChecksummedFile(stateDir, SpanState.FILE, 'agent-span');
    // A delta, not a snapshot: nothing to rebuild a span from.
    const { definition } = weirProto();
    const encode = (definition['weir.v1.ControlPlane'] as grpc.ServiceDefinition).Connect!
      .responseSerialize;
    await f.write(
      { node: 'n1', cluster: 't' },
      encode({ update: { ...snapshot(7), snapshot: false, baseRevision: '6' } }),
    );
    const { agent, hello } = await startAgent(stateDir);
    assert.equal(hello.appliedRevision, '0');
    assert.match(
      agent.status().lastError ?? '',
      /rejected \(corrupt: content: not a span snapshot\)/,
    );
    await stopAll();
  });
});

describe('span updates', () => {
  const decoded = (u: SpanUpdate): SpanUpdate__Output => {
    const { definition } = weirProto();
    const m = (definition['weir.v1.ControlPlane'] as grpc.ServiceDefinition).Connect!;
    return (
      m.responseDeserialize(m.responseSerialize({ update: u })) as { update: SpanUpdate__Output }
    ).update;
  };

  test("a delta for another cluster's span is refused, naming the field", () => {
    const held = SpanState.empty().apply(decoded(snapshot(5, 'prod')));
    const delta = decoded({ ...snapshot(6, 'dev'), snapshot: false, baseRevision: '5' });
    assert.throws(
      () => held.apply(delta),
      (err: Error) =>
        err instanceof ValidationError &&
        err.issues[0]?.field === 'cluster' &&
        /delta for cluster "dev", but this agent holds cluster "prod"'s span/.test(err.message),
    );
  });
});
