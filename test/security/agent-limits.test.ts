/**
 * The attacks of issue 12 on an agent's API, each refused: a real agent
 * (NodeAgent, the userspace datapath with synthetic traffic) on loopback,
 * fed its span by a scripted controller, and raw FlowIntrospect/Agent
 * clients. 1,000 WatchFlows streams took an agent from 90 MB to 3.9 GB
 * before the watch bounds and the slow-reader drop.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import type { FlowEvent__Output, SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { channelOptions, serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { INTROSPECT_LIMITS, MESSAGE_LIMITS, nodeNameProblem } from '../../shared/limits.js';
import { silentLogger } from '../../shared/log.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { flowIntrospectHandlers } from '../../vrouter-agent/introspect/flow-service.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { eventually } from '../support/processes.js';
import { ScriptedController } from '../support/scripted-controller.js';

function span(objects: Raw[], revision: number): SpanUpdate {
  const model = new ClusterModel({ cluster: 't' });
  for (const raw of objects) {
    const r = readKubeObject(raw);
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
  }
  const w = snapshotToWire(model.snapshot());
  return {
    revision: String(revision),
    baseRevision: '0',
    snapshot: true,
    cluster: 't',
    policies: w.policies,
    addressGroups: w.addressGroups,
    serviceGroups: w.serviceGroups,
    endpoints: w.endpoints,
    applicationPolicySet: w.applicationPolicySet,
  };
}

const CLUSTER: Raw[] = [
  namespace('a'),
  ...Array.from({ length: 8 }, (_, i) =>
    pod('a', `p${i}`, { labels: { app: `p${i % 2}` }, ips: [`10.0.0.${i + 1}`], node: 'n1' }),
  ),
  pod('a', 'remote', { labels: { app: 'p1' }, ips: ['10.0.1.1'], node: 'n2' }),
  networkPolicy('a', 'p0', {
    podSelector: { matchLabels: { app: 'p0' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: 'p1' } } }] }],
  }),
];

type Watch = grpc.ClientReadableStream<FlowEvent__Output>;

describe('hostile clients at an agent', () => {
  let dir: string;
  let controller: ScriptedController;
  let agent: NodeAgent;
  let flows: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  let agentApi: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  const unary = <T>(client: typeof flows, method: string, req: object) =>
    new Promise<grpc.ServiceError | T>((resolve) =>
      (client[method] as (r: object, cb: (e: grpc.ServiceError | null, v?: T) => void) => void)(
        req,
        (err, v) => resolve(err ?? v!),
      ),
    );
  const statusOf = (w: Watch) =>
    new Promise<grpc.StatusObject>((resolve) => {
      w.on('status', resolve);
      w.on('error', () => undefined);
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-hostile-agent-'));
    controller = new ScriptedController();
    await controller.start();
    agent = new NodeAgent({
      node: 'n1',
      controller: `127.0.0.1:${controller.port}`,
      stateDir: join(dir, 'state'),
      listen: '127.0.0.1:0',
      log: silentLogger,
      tls: undefined, // plain gRPC: the limits hold for any peer, certificate or not
      syntheticTrafficPerSecond: 20_000,
    });
    await agent.start();
    await controller.answer(1);
    controller.welcome();
    controller.send(span(CLUSTER, 1));
    await controller.answer(2);
    const { proto } = weirProto();
    const address = `127.0.0.1:${agent.port}`;
    flows = new proto.weir.v1.FlowIntrospect(
      address,
      grpc.credentials.createInsecure(),
      channelOptions(64 * 1024 * 1024),
    ) as unknown as typeof flows;
    agentApi = new proto.weir.v1.Agent(
      address,
      grpc.credentials.createInsecure(),
      channelOptions(64 * 1024 * 1024),
    ) as unknown as typeof agentApi;
  });
  after(async () => {
    flows.close();
    agentApi.close();
    await agent[Symbol.asyncDispose]();
    controller.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('WatchFlows streams beyond the per-client bound are refused with RESOURCE_EXHAUSTED, and the API keeps answering', async () => {
    const n = INTROSPECT_LIMITS.watchStreamsPerClient + 12;
    const watches = Array.from({ length: n }, () =>
      (flows.WatchFlows as (r: object) => Watch)({ filter: { port: 1 } }),
    );
    const ended = watches.map(statusOf);
    const refused = await eventually(async () => {
      const done = await Promise.all(
        ended.map((p) => Promise.race([p, new Promise((r) => setTimeout(() => r(undefined), 20))])),
      );
      const r = done.filter((s) => s !== undefined) as grpc.StatusObject[];
      return r.length >= 12 ? r : undefined;
    }, 'refusals');
    assert.equal(refused.length, 12);
    for (const s of refused) {
      assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        s.details,
        /this client has 8 WatchFlows streams open, the most one client may \(8\)/,
      );
    }
    const stats = await unary<{ engine: string }>(flows, 'FlowStats', {});
    assert.ok(!(stats instanceof Error), 'FlowStats answers');
    for (const w of watches) w.cancel();
    // Closed streams give their slots back.
    await eventually(async () => {
      const w = (flows.WatchFlows as (r: object) => Watch)({ filter: { port: 1 } });
      const s = await Promise.race([
        statusOf(w),
        new Promise((r) => setTimeout(() => r('open'), 200)),
      ]);
      w.cancel();
      return s === 'open' ? true : undefined;
    }, 'a watch admitted again');
  });

  test('a watcher that stops reading is dropped with RESOURCE_EXHAUSTED and a reason, not buffered without bound', async () => {
    // The agent's own datapath behind a FlowIntrospect server with a small
    // watch queue (256, not 4096), so that it fills in a second.
    const server = new grpc.Server(serverOptions(MESSAGE_LIMITS.agentApiReceiveBytes));
    const { proto } = weirProto();
    server.addService(
      proto.weir.v1.FlowIntrospect.service,
      flowIntrospectHandlers(
        {
          datapath: () => agent.activeDatapath,
          nowMs: () => performance.timeOrigin + performance.now(),
          engine: () => 'test',
          refused: (limit) => void refused.push(limit),
        },
        silentLogger,
        { watchBufferEvents: 256 },
      ),
    );
    const refused: string[] = [];
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const client = new proto.weir.v1.FlowIntrospect(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
      channelOptions(64 * 1024 * 1024),
    ) as unknown as typeof flows;
    const lost = () => agent.activeDatapath.stats().events.lost;
    const lostBefore = lost();
    const rssBefore = process.memoryUsage().rss;
    const w = (client.WatchFlows as (r: object) => Watch)({});
    let received = 0;
    w.on('data', () => {
      received++;
      if (received === 1) w.pause(); // and not read again until the agent gave up on it
    });
    const ended = statusOf(w);
    // The server stops writing when the stream is full and queues at most
    // watchBufferEvents; past that, it drops the watcher.
    await eventually(
      async () => (lost() > lostBefore ? true : undefined),
      'the watch queue full',
      60_000,
    );
    const rssFull = process.memoryUsage().rss;
    w.resume();
    const s = await ended;
    client.close();
    server.forceShutdown();
    assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(
      s.details,
      /this watch fell more than 256 events behind: the reader is not keeping up/,
    );
    assert.deepEqual(refused, ['slow_reader']);
    // Agent and client share this process: what both hold for the stream is bounded.
    const grewMiB = (rssFull - rssBefore) / 2 ** 20;
    assert.ok(grewMiB < 64, `RSS grew ${grewMiB.toFixed(0)} MiB while the watcher did not read`);
  });

  test('a watcher that reads nothing while its stream stays full is ended with RESOURCE_EXHAUSTED after the stall bound, and its slot is free again', async () => {
    // A queue too large to overflow here (the case of a quiet node), a stall bound of 300 ms.
    const server = new grpc.Server(serverOptions(MESSAGE_LIMITS.agentApiReceiveBytes));
    const { proto } = weirProto();
    const refused: string[] = [];
    server.addService(
      proto.weir.v1.FlowIntrospect.service,
      flowIntrospectHandlers(
        {
          datapath: () => agent.activeDatapath,
          nowMs: () => performance.timeOrigin + performance.now(),
          engine: () => 'test',
          refused: (limit) => void refused.push(limit),
        },
        silentLogger,
        { watchBufferEvents: 1_000_000, watchStallMs: 300, watchStreams: 1 },
      ),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const client = new proto.weir.v1.FlowIntrospect(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
      channelOptions(64 * 1024 * 1024),
    ) as unknown as typeof flows;
    try {
      const w = (client.WatchFlows as (r: object) => Watch)({});
      let received = 0;
      w.on('data', () => {
        received++;
        if (received === 1) w.pause(); // and never read again
      });
      const ended = statusOf(w);
      const lostBefore = agent.activeDatapath.stats().events.lost;
      // Not read: the stream fills, and the server waits for a drain that never comes, until the bound.
      await eventually(
        async () => (refused.length > 0 ? true : undefined),
        'the stuck watch ended by the agent',
        60_000,
      );
      w.resume(); // only to read the status the agent ended it with
      const s = await ended;
      assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(s.details, /this watch was not read for 0\.3 s: the reader is stuck/);
      assert.deepEqual(refused, ['slow_reader']);
      assert.equal(
        agent.activeDatapath.stats().events.lost,
        lostBefore,
        'the queue never overflowed',
      );
      // Its slot (the only one) is free: a new watch is admitted.
      const again = (client.WatchFlows as (r: object) => Watch)({});
      const first = await new Promise<string>((resolve) => {
        again.once('data', () => resolve('data'));
        again.once('error', (e: grpc.ServiceError) => resolve(`error ${e.code}`));
      });
      assert.equal(first, 'data');
      again.cancel();
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('requests over the agent API message limit, or with fields longer than any legitimate one, are refused without echoing them', async () => {
    const big = 'x'.repeat(10_000);
    const cases: Array<[string, typeof flows, string, object, grpc.status, RegExp]> = [
      [
        'a 100 KB request',
        flows,
        'ListFlows',
        { pageToken: 'y'.repeat(100_000) },
        grpc.status.RESOURCE_EXHAUSTED,
        /Received message larger than max/,
      ],
      [
        'a long filter field',
        flows,
        'ListFlows',
        { filter: { pod: big } },
        grpc.status.INVALID_ARGUMENT,
        /^FlowFilter: filter\.pod: is 10000 characters; at most 1024$/,
      ],
      [
        'a long page token',
        flows,
        'ListFlows',
        { pageToken: big },
        grpc.status.INVALID_ARGUMENT,
        /^ListFlowsRequest: pageToken: "x{24}"… \(10000 characters\) is not a token this agent gave$/,
      ],
      [
        'a bad CIDR',
        flows,
        'ListFlows',
        { filter: { sourceCidr: `1.2.3.4/${'9'.repeat(900)}` } },
        grpc.status.INVALID_ARGUMENT,
        /^FlowFilter: filter\.sourceCidr: "1\.2\.3\.4\/9+"… \(908 characters\)/,
      ],
      [
        'a long Evaluate target',
        agentApi,
        'Evaluate',
        { from: big, to: 'a/p0', port: 80 },
        grpc.status.INVALID_ARGUMENT,
        /^EvaluateRequest: from: is 10000 characters; at most 1024$/,
      ],
    ];
    for (const [what, client, method, req, code, message] of cases) {
      const r = await unary(client, method, req);
      assert.ok(r instanceof Error, `${what} was answered`);
      const e = r as grpc.ServiceError;
      assert.equal(e.code, code, what);
      assert.match(e.details, message, what);
      assert.ok(e.details.length < 200, `${what}: ${e.details.length}`);
    }
  });
});

describe('node names', () => {
  const cases: Array<[string, string, RegExp | undefined]> = [
    ['a DNS-1123 subdomain', 'node-1.zone-a.example', undefined],
    [
      '253 characters',
      `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`,
      undefined,
    ],
    ['254 characters', 'a'.repeat(254), /is 254 characters; a node name has at most 253/],
    ['100 MB', 'n'.repeat(100 * 1024 * 1024), /is 104857600 characters/],
    ['upper case', 'Node-1', /is not a node name/],
    ['an underscore', 'node_1', /is not a node name/],
    ['a leading "-"', '-node', /is not a node name/],
    ['a trailing "."', 'node.', /is not a node name/],
    ['empty', '', /is required/],
  ];
  test('a node name is a DNS-1123 subdomain of at most 253 characters, and a refusal never echoes more than 100 of them', () => {
    for (const [what, name, expected] of cases) {
      const p = nodeNameProblem(name);
      if (expected === undefined) assert.equal(p, undefined, what);
      else {
        assert.match(p ?? '', expected, what);
        assert.ok(p!.length < 200, what);
      }
    }
  });
});
