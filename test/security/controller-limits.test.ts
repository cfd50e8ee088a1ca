/**
 * The attacks of issue 12 on the controller, each refused: a real
 * controller on loopback (the demo manifests), raw ControlPlane and
 * Operator clients that send what an attacker would. The limits are the
 * ones of shared/limits.ts; whether the peer is authenticated does not
 * change them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Distributor } from '../../controller/distribute/distributor.js';
import { addControlPlane } from '../../controller/distribute/grpc-publisher.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { SpanStore } from '../../controller/store/span-store.js';
import { STATE_FILE } from '../../controller/store/state-file.js';
import { silentLogger } from '../../shared/log.js';
import { channelOptions, serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { AGENT_LIMITS, MESSAGE_LIMITS, NACK_ERROR_CHARS } from '../../shared/limits.js';
import { eventually } from '../support/processes.js';
import { type ControllerRig, RawAgentStream, startController } from './support.js';

const MiB = 1024 * 1024;

const hello = (node: string, over: Record<string, string> = {}) => ({
  hello: {
    node,
    appliedRevision: '0',
    instance: 'attacker',
    apiAddress: '127.0.0.1:1',
    inForceHash: '',
    ...over,
  },
});

describe('hostile agents at the controller', () => {
  let dir: string;
  let rig: ControllerRig;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-hostile-'));
    rig = await startController({ stateDir: join(dir, 'state') });
  });
  after(async () => {
    await rig.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a hello over the message limit (2 MiB of node name) is refused with RESOURCE_EXHAUSTED before it is decoded', async () => {
    const s = new RawAgentStream(rig.address);
    s.write(hello('a'.repeat(2 * MiB)));
    const end = await s.ended;
    s.close();
    assert.equal(end.code, grpc.status.RESOURCE_EXHAUSTED);
    const agents = (await rig.status()).agents.map((a) => a.node);
    assert.deepEqual(agents.sort(), ['node-a', 'node-b', 'node-c']);
  });

  const badNodes: Array<[string, string, RegExp]> = [
    ['300 characters', 'a'.repeat(300), /is 300 characters; a node name has at most 253/],
    ['900 KB', 'b'.repeat(900 * 1024), /is 921600 characters; a node name has at most 253/],
    ['upper case and "_"', 'Node_1', /is not a node name \(a DNS-1123 subdomain/],
    ['an empty label', 'a..b', /is not a node name/],
    ['empty', '', /node: is required/],
  ];
  for (const [what, node, message] of badNodes)
    test(`a hello whose node name is ${what} is refused with INVALID_ARGUMENT naming Hello.node, without echoing it`, async () => {
      const s = new RawAgentStream(rig.address);
      s.write(hello(node));
      const end = await s.ended;
      s.close();
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
      assert.match(end.details, /^Hello: node: /);
      assert.match(end.details, message);
      assert.ok(end.details.length < 250, `details of ${end.details.length} characters`);
      assert.equal(s.received.length, 0, 'no welcome, no span');
    });

  const badFields: Array<[string, Record<string, string>, RegExp]> = [
    [
      'instance',
      { instance: 'i'.repeat(10_000) },
      /^Hello: instance: is 10000 characters; at most 64$/,
    ],
    ['apiAddress', { apiAddress: 'x'.repeat(100_000) }, /^Hello: apiAddress: is 100000 characters/],
    [
      'apiAddress',
      { apiAddress: 'not an address' },
      /^Hello: apiAddress: "not an address" is not host:port or unix:\/PATH$/,
    ],
    ['inForceHash', { inForceHash: 'h'.repeat(500) }, /^Hello: inForceHash: is 500 characters/],
    [
      'appliedRevision',
      { appliedRevision: '18446744073709551615' },
      /^Hello: appliedRevision: .* is not a revision/,
    ],
  ];
  for (const [field, over, message] of badFields)
    test(`a hello with an out-of-bounds ${field} is refused with INVALID_ARGUMENT naming it`, async () => {
      const s = new RawAgentStream(rig.address);
      s.write(hello('node-z', over));
      const end = await s.ended;
      s.close();
      assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
      assert.match(end.details, message);
      assert.ok(end.details.length < 250);
    });

  test('refused hellos persist nothing: the state file stays small and status works after a restart', async () => {
    // The attack: three hellos with 900 KB node names, each ACKing whatever it is sent.
    for (let i = 0; i < 3; i++) {
      const s = new RawAgentStream(rig.address);
      s.write(hello(`${i}`.repeat(900 * 1024)));
      const got = await Promise.race([s.ended.then(() => undefined), s.update()]);
      if (got !== undefined) {
        s.write({ ack: { revision: got.revision, inForceHash: '' } });
        await new Promise((r) => setTimeout(r, 500)); // the state is saved within 200 ms
      }
      s.close();
    }
    await rig.close();
    const size = (await stat(join(dir, 'state', STATE_FILE))).size;
    assert.ok(size < 64 * 1024, `state file of ${size} bytes`);
    rig = await startController({ stateDir: join(dir, 'state') });
    const status = await rig.status();
    // The rig runs plain gRPC (support.ts), which status warns about; nothing else.
    assert.deepEqual(
      status.warnings.filter((w) => !w.startsWith('running with --insecure')),
      [],
    );
    assert.deepEqual(status.agents.map((a) => a.node).sort(), ['node-a', 'node-b', 'node-c']);
  });

  test('a NACK carrying 900 KB of error text is kept cut to NACK_ERROR_CHARS and logged cut, and a NACK flood is rate-limited per node', async () => {
    const s = new RawAgentStream(rig.address);
    s.write(hello('node-a'));
    const update = await s.update();
    const before = rig.log.bytes;
    const error = 'E'.repeat(900 * 1024);
    s.write({ nack: { revision: update.revision, error, inForceHash: '' } });
    const agent = await eventually(async () => {
      const a = (await rig.status()).agents.find((x) => x.node === 'node-a');
      return a?.lastError !== '' ? a : undefined;
    }, 'the NACK');
    assert.ok(
      agent!.lastError.length < NACK_ERROR_CHARS + 100,
      `lastError of ${agent!.lastError.length}`,
    );
    assert.match(agent!.lastError, /\(921600 characters, cut to 2048\)$/);
    // 300 more NACKs of 100 KB (for revisions not in flight): each would be a log line.
    const flood = 'F'.repeat(100 * 1024);
    for (let i = 0; i < 300; i++)
      s.write({ nack: { revision: String(10_000 + i), error: flood, inForceHash: '' } });
    const suppressed = async () =>
      (await rig.controller.metrics.logSuppressed.get()).values[0]?.value ?? 0;
    await eventually(
      async () => ((await suppressed()) >= 200 ? true : undefined),
      'the flood read and suppressed',
    );
    const logged = rig.log.bytes - before;
    s.close();
    // The burst of lines at most, each with its text cut: kilobytes, not the 30 MB sent.
    assert.ok(logged < 100 * 2_000, `${logged} bytes logged`);
    const lines = rig.log.lines.filter(
      (l) => l.node === 'node-a' && /NACK|refused/.test(String(l.msg)),
    );
    assert.ok(lines.length <= 100, `${lines.length} lines`);
  });

  test('a Connect stream that never says hello holds a slot only until the bound of streams without a hello per client', async () => {
    const streams = Array.from(
      { length: AGENT_LIMITS.pendingHelloPerClient + 3 },
      () => new RawAgentStream(rig.address),
    );
    // Every stream is opened by its first message; an ACK before hello is ignored.
    for (const s of streams) s.write({ ack: { revision: '1', inForceHash: '' } });
    const refused = await eventually(async () => {
      const n = await Promise.all(
        streams.map((s) =>
          Promise.race([s.ended, new Promise((r) => setTimeout(() => r(undefined), 50))]),
        ),
      );
      const ended = n.filter((e) => e !== undefined) as grpc.StatusObject[];
      return ended.length >= 3 ? ended : undefined;
    }, 'refusals');
    for (const s of streams) s.close();
    assert.equal(refused.length, 3);
    for (const e of refused) {
      assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        e.details,
        /Connect streams without a hello open, the most one client may \(64\)/,
      );
    }
  });

  test('operator requests with fields longer than any legitimate one are refused with INVALID_ARGUMENT and a short message', async () => {
    const { proto } = weirProto();
    const operator = new proto.weir.v1.Operator(
      rig.address,
      grpc.credentials.createInsecure(),
      channelOptions(64 * MiB),
    );
    const call = <T>(method: 'ListPolicies' | 'Explain', req: object) =>
      new Promise<grpc.ServiceError | T>((resolve) =>
        (operator[method] as (r: object, cb: (e: grpc.ServiceError | null, v?: T) => void) => void)(
          req,
          (err, v) => resolve(err ?? v!),
        ),
      );
    const big = 'x'.repeat(100_000);
    const cases: Array<[string, 'ListPolicies' | 'Explain', object, RegExp, grpc.status]> = [
      [
        'ListPolicies.name',
        'ListPolicies',
        { name: big },
        /^ListPoliciesRequest: name: is 100000 characters; at most 1024$/,
        grpc.status.INVALID_ARGUMENT,
      ],
      [
        'Explain.from',
        'Explain',
        { from: big, to: 'a/b', port: 80 },
        /^ExplainRequest: from: is 100000 characters/,
        grpc.status.INVALID_ARGUMENT,
      ],
      [
        'Explain.protocol',
        'Explain',
        { from: 'a/b', to: 'a/b', protocol: big, port: 80 },
        /^ExplainRequest: protocol: is 100000 characters; at most 16$/,
        grpc.status.INVALID_ARGUMENT,
      ],
      [
        'a 2 MiB request',
        'ListPolicies',
        { name: 'y'.repeat(2 * MiB) },
        /Received message larger than max/,
        grpc.status.RESOURCE_EXHAUSTED,
      ],
    ];
    for (const [what, method, req, message, code] of cases) {
      const r = await call(method, req);
      assert.ok(r instanceof Error, `${what} was answered`);
      const e = r as grpc.ServiceError;
      assert.equal(e.code, code, what);
      assert.match(e.details, message, what);
      assert.ok(e.details.length < 200, what);
    }
    assert.ok((await rig.status()).source?.synced, 'the controller still answers');
    operator.close();
  });
});

describe('a Connect stream that never says hello', () => {
  test('is ended with INVALID_ARGUMENT after the hello timeout, and nothing is recorded', async () => {
    const model = new ClusterModel({ cluster: 't' });
    const distributor = new Distributor(new SpanStore(model), { log: silentLogger });
    const server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
    addControlPlane(server, {
      sessions: distributor,
      log: silentLogger,
      helloTimeoutMs: 300,
      secure: false,
      agentNodeOf: () => undefined,
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const s = new RawAgentStream(`127.0.0.1:${port}`);
    s.write({ ack: { revision: '1', inForceHash: '' } });
    const end = await s.ended;
    s.close();
    server.forceShutdown();
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(end.details, "Hello: none within 300 ms of the stream's start");
    assert.equal(distributor.recordCount, 0);
  });
});
