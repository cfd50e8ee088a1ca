/**
 * The controller's flow relay end to end: a controller and agents as
 * processes (userspace datapath, synthetic traffic), read through the
 * Operator service's ListClusterFlows and WatchClusterFlows with a
 * read-only operator's certificate; an agent joining during a watch is
 * followed, one leaving is reported. The relay's per-node buffer is checked
 * in-process against real agents, with a reader that does not read.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { FlowRelay, type RelayedEvent } from '../../controller/relay/flow-relay.js';
import type {
  ClusterFlowEvent__Output,
  ListClusterFlowsReply__Output,
  OperatorClient,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { CHANNEL_OPTIONS, weirProto } from '../../shared/grpc/proto.js';
import { silentLogger } from '../../shared/log.js';
import { channelCredentials } from '../../shared/tls/credentials.js';
import {
  ROOT,
  WeirProcess,
  eventually,
  freePort,
  weirctl as runWeirctl,
} from '../support/processes.js';
import { controllerTls, filesIn, pki } from '../support/tls.js';

const { proto } = weirProto();

/** An Operator client holding a read-only operator's certificate. */
function readOnly(address: string): OperatorClient {
  return new proto.weir.v1.Operator(
    address,
    channelCredentials(filesIn(pki.operator('read-only')), (id) =>
      id.kind === 'controller' ? undefined : 'not the controller',
    ),
    CHANNEL_OPTIONS,
  );
}

function unaryCall<Res>(fn: (cb: (e: grpc.ServiceError | null, r?: Res) => void) => void) {
  return new Promise<Res>((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r!))));
}

/** Collects a watch's messages; `until` decides when there are enough. */
function collect(
  stream: grpc.ClientReadableStream<ClusterFlowEvent__Output>,
  until: (seen: ClusterFlowEvent__Output[]) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<ClusterFlowEvent__Output[]> {
  const seen: ClusterFlowEvent__Output[] = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () =>
        reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(seen.slice(-5))}`)),
      timeoutMs,
    );
    const onData = (e: ClusterFlowEvent__Output) => {
      seen.push(e);
      if (until(seen)) {
        clearTimeout(t);
        stream.off('data', onData);
        resolve(seen);
      }
    };
    stream.on('data', onData);
    stream.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

describe('cluster-wide flows through the controller', () => {
  let dir: string;
  let address: string;
  let controller: WeirProcess;
  const agents = new Map<string, WeirProcess>();

  const startAgent = async (node: string) => {
    const a = new WeirProcess(node, 'weir-agent', [
      '--node',
      node,
      '--controller',
      address,
      '--state-dir',
      join(dir, node),
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--synthetic-traffic',
      '40',
    ]);
    agents.set(node, a);
    await a.waitFor((l) => l.msg === 'span applied', `${node}'s span`);
    return a;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-relay-'));
    address = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(ROOT, 'deploy', 'examples'),
      '--listen',
      address,
    ]);
    await controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
    await Promise.all([startAgent('node-a'), startAgent('node-c')]);
  });

  after(async () => {
    await Promise.all([controller?.kill(), ...[...agents.values()].map((a) => a.kill())]);
    await rm(dir, { recursive: true, force: true });
  });

  test('ListClusterFlows returns every connected agent’s flows, each with its node, and names the nodes it could not ask', async () => {
    const c = readOnly(address);
    const reply = await eventually(async () => {
      const r = await unaryCall<ListClusterFlowsReply__Output>((cb) =>
        c.ListClusterFlows({ limitPerNode: 50 }, cb),
      );
      const nodes = new Set(r.flows.map((f) => f.node));
      return nodes.has('node-a') && nodes.has('node-c') ? r : undefined;
    }, 'flows of node-a and node-c');
    assert.deepEqual(
      reply.problems.map((p) => [p.node, p.error]),
      [['node-b', 'the agent is not connected']],
      'node-b has no agent here',
    );
    for (const f of reply.flows) {
      const pods = [f.flow!.sourcePod, f.flow!.destinationPod];
      const local = f.node === 'node-a' ? /^(shop\/web|monitoring\/prometheus)$/ : /^payments\//;
      assert.ok(
        pods.some((p) => local.test(p)),
        `${f.node}'s flow touches one of its pods: ${pods}`,
      );
    }
    assert.ok(
      reply.flows.filter((f) => f.node === 'node-a').length <= 50,
      'at most limitPerNode per node',
    );
    // Nodes named: only those, and one the controller does not know is a problem, not an error.
    const some = await unaryCall<ListClusterFlowsReply__Output>((cb) =>
      c.ListClusterFlows({ nodes: ['node-c', 'node-z'], filter: { action: 'deny' } }, cb),
    );
    assert.ok(some.flows.every((f) => f.node === 'node-c' && f.flow!.action === 'deny'));
    assert.deepEqual(some.problems, [
      { node: 'node-z', error: 'the controller knows no agent on this node' },
    ]);
    c.close();
  });

  test('weirctl flows without --node lists every connected agent’s flows with the node in each row, and warns of the nodes it could not ask', async () => {
    const weirctl = (...args: string[]) => runWeirctl(address, ...args);
    const rows = await eventually(async () => {
      const r = await weirctl('flows', '-o', 'json');
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /warning: node node-b: the agent is not connected/);
      const list = JSON.parse(r.out) as Array<{ node: string; id: number }>;
      const nodes = new Set(list.map((f) => f.node));
      return nodes.has('node-a') && nodes.has('node-c') ? list : undefined;
    }, 'weirctl flows to show node-a and node-c');
    assert.ok(
      rows.every((f) => typeof f.id === 'number'),
      'each row keeps its flow id',
    );
    const table = await weirctl('flows', '--verdict', 'denied');
    assert.equal(table.code, 0, table.err);
    assert.match(table.out.split('\n')[0]!, /^NODE\s+ID\s+PROTO/);
  });

  test('ListClusterFlows refuses a bad request naming the field: a node that is no node name, a limit past an agent page, a filter the agents refuse', async () => {
    const c = readOnly(address);
    const code = (req: object) =>
      unaryCall((cb) => c.ListClusterFlows(req, cb)).then(
        () => ({ code: 0, details: '' }),
        (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
      );
    const badNode = await code({ nodes: ['Node_A!'] });
    assert.equal(badNode.code, grpc.status.INVALID_ARGUMENT);
    assert.match(badNode.details, /nodes\[0\]/);
    const badLimit = await code({ limitPerNode: 10_001 });
    assert.equal(badLimit.code, grpc.status.INVALID_ARGUMENT);
    assert.match(badLimit.details, /limitPerNode/);
    const badFilter = await code({ filter: { action: 'maybe' } });
    assert.equal(badFilter.code, grpc.status.INVALID_ARGUMENT);
    assert.match(badFilter.details, /filter.*action/);
    c.close();
  });

  test('WatchClusterFlows streams both nodes’ events, follows an agent that joins, and reports one that leaves', async () => {
    const c = readOnly(address);
    const stream = c.WatchClusterFlows({ filter: {} });
    const has = (seen: ClusterFlowEvent__Output[], node: string) =>
      seen.some((e) => e.node === node && e.event !== null);
    const first = await collect(
      stream,
      (seen) => has(seen, 'node-a') && has(seen, 'node-c'),
      'events of node-a and node-c',
    );
    assert.ok(
      first.some((e) => e.node === 'node-b' && e.error === 'the agent is not connected'),
      'the node without an agent is reported',
    );
    for (const e of first.filter((x) => x.event !== null))
      assert.match(e.event!.type, /^(created|verdict|closed|aged|evicted|reevaluated)$/);
    const joined = startAgent('node-b');
    const more = await collect(stream, (seen) => has(seen, 'node-b'), 'events of node-b');
    await joined;
    assert.ok(
      more.some((e) => e.node === 'node-b' && e.event === null && e.error === ''),
      'the relay says it watches node-b',
    );
    await agents.get('node-b')!.kill();
    const left = await collect(
      stream,
      (seen) => seen.some((e) => e.node === 'node-b' && e.error !== ''),
      'node-b reported gone',
    );
    assert.ok(left.some((e) => e.node === 'node-b' && e.error !== ''));
    stream.cancel();
    c.close();
  });

  test('a read-only operator may hold two relayed watches; a third is RESOURCE_EXHAUSTED naming the limit', async () => {
    const c = readOnly(address);
    const open = [c.WatchClusterFlows({}), c.WatchClusterFlows({})];
    await Promise.all(open.map((s) => collect(s, (seen) => seen.length > 0, 'a first message')));
    const third = c.WatchClusterFlows({});
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      third.on('error', resolve);
      third.on('data', () => undefined);
    });
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /relayed flow watches/);
    for (const s of open) s.cancel();
    c.close();
  });

  test('a watch whose reader falls behind drops each node’s events beyond its buffer, counts them and reports them with the node’s next message', async () => {
    const status = await unaryCall<StatusReply__Output>((cb) =>
      new proto.weir.v1.Operator(
        address,
        channelCredentials(filesIn(pki.operator('read-only')), () => undefined),
        CHANNEL_OPTIONS,
      ).GetStatus({}, cb),
    );
    const dropped = new Map<string, number>();
    const relay = new FlowRelay({
      agents: () => status.agents.filter((a) => a.connected),
      tls: controllerTls(),
      log: silentLogger,
      limits: { nodeBufferEvents: 3 },
      observe: { dropped: (node, n) => dropped.set(node, (dropped.get(node) ?? 0) + n) },
    });
    const abort = new AbortController();
    const it = relay.watch({ nodes: ['node-a'] }, 'test', abort.signal)[Symbol.asyncIterator]();
    const opened = await it.next();
    assert.equal((opened.value as RelayedEvent).node, 'node-a');
    // Not reading: node-a's events beyond 3 are dropped.
    await eventually(async () => ((dropped.get('node-a') ?? 0) > 0 ? true : undefined), 'drops');
    const got: RelayedEvent[] = [];
    for (let i = 0; i < 4; i++) got.push((await it.next()).value as RelayedEvent);
    assert.deepEqual(
      got.slice(0, 3).map((e) => e.event !== undefined),
      [true, true, true],
      'the buffer held three events',
    );
    assert.ok(
      got.some((e) => e.dropped > 0),
      `the drops are reported in the stream: ${JSON.stringify(got.map((e) => e.dropped))}`,
    );
    const reported = got.reduce((n, e) => n + e.dropped, 0);
    assert.ok(reported <= dropped.get('node-a')!, 'reported drops were counted');
    abort.abort();
    await it.return?.(undefined);
    relay[Symbol.dispose]();
  });

  test('the relay takes flows only from the agent of the node it asks: an address another agent answers at is refused', async () => {
    const status = await unaryCall<StatusReply__Output>((cb) =>
      readOnly(address).GetStatus({}, cb),
    );
    const a = status.agents.find((x) => x.node === 'node-a')!;
    const relay = new FlowRelay({
      // A record claiming node-c's agent is at node-a's API address.
      agents: () => [{ node: 'node-c', connected: true, apiAddress: a.apiAddress }],
      tls: controllerTls(),
      log: silentLogger,
    });
    const r = await relay.list({}, 'test');
    relay[Symbol.dispose]();
    assert.deepEqual(r.flows, []);
    assert.equal(r.problems?.length, 1);
    assert.match(
      r.problems[0]!.error!,
      /spiffe:\/\/weir\/node\/node-a is not the agent of node node-c/,
    );
  });
});
