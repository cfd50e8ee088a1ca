/**
 * Identity and transport security on loopback, as an attacker would try it:
 * the real gRPC server of the controller (ControlPlane and Operator) and a
 * real agent (its Agent and FlowIntrospect APIs), all with mutual TLS
 * against the test CA (testing/pki.ts), attacked with real clients holding
 * other identities, no certificate, or another CA's.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Distributor } from '../../controller/distribute/distributor.js';
import { agentClient, call } from '../../cli/clients.js';
import { agentPodNode } from '../../controller/distribute/grpc-publisher.js';
import { startControllerServer } from '../../controller/distribute/grpc-server.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { OperatorService } from '../../controller/operator.js';
import type { ClusterSource } from '../../controller/sources/source.js';
import { SpanStore } from '../../controller/store/span-store.js';
import type {
  AgentMessage,
  ControllerMessage__Output,
} from '../../shared/generated/weir/v1/index.js';
import { CHANNEL_OPTIONS, weirProto } from '../../shared/grpc/proto.js';
import { silentLogger } from '../../shared/log.js';
import { LogLimiter } from '../../shared/log-limiter.js';
import { ACCESS, guarded } from '../../shared/tls/access.js';
import { channelCredentials } from '../../shared/tls/credentials.js';
import { nodeUri, operatorUri, podUri } from '../../shared/tls/identity.js';
import { issueCert, writeTlsDir } from '../../shared/tls/issue.js';
import { unary } from '../../shared/grpc/status.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { eventually } from '../support/processes.js';
import { CapturedLog } from './support.js';
import { agentTls, controllerTls, filesIn, pki } from '../support/tls.js';

const { proto } = weirProto();
const anyServer = () => undefined;

/** A client of `Service` at `address` holding the certificate in `dir` (undefined: none, CA only). */
function client<T extends grpc.Client>(
  Service: new (a: string, c: grpc.ChannelCredentials, o: grpc.ChannelOptions) => T,
  address: string,
  dir: string | undefined,
): T {
  const creds =
    dir === undefined
      ? grpc.credentials.createSsl(readFileSync(join(pki.controller, 'ca.crt')), null, null, {
          checkServerIdentity: anyServer,
        })
      : channelCredentials(filesIn(dir), anyServer);
  return new Service(address, creds, CHANNEL_OPTIONS);
}

/** A unary call's status code (0 for OK) and its message. */
function unaryCode(
  c: grpc.Client,
  method: string,
  req: object = {},
): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    (
      c as unknown as Record<
        string,
        (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void
      >
    )[method]!(req, { deadline: Date.now() + 5_000 }, (err) => {
      c.close();
      resolve({ code: err?.code ?? 0, details: err?.details ?? '' });
    });
  });
}

type Stream = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

/** Opens ControlPlane.Connect with `dir`'s certificate, says hello for `node`; what came back. */
async function helloAs(
  address: string,
  dir: string | undefined,
  node: string,
  then?: (s: Stream) => void,
): Promise<{
  messages: ControllerMessage__Output[];
  code: number | undefined;
  details: string;
  stream: Stream;
  c: grpc.Client;
}> {
  const c = client(proto.weir.v1.ControlPlane, address, dir);
  const stream = (c as unknown as { Connect(): Stream }).Connect();
  const messages: ControllerMessage__Output[] = [];
  const out = { messages, code: undefined as number | undefined, details: '', stream, c };
  const ended = new Promise<void>((resolve) => {
    stream.on('data', (m: ControllerMessage__Output) => {
      messages.push(m);
      if (m.kind === 'welcome') then?.(stream);
    });
    stream.on('error', (e: grpc.ServiceError) => {
      out.code = e.code;
      out.details = e.details;
      resolve();
    });
    stream.on('end', () => resolve());
  });
  stream.write({
    hello: {
      node,
      appliedRevision: '0',
      instance: 'attacker',
      apiAddress: '127.0.0.1:1',
      inForceHash: '',
    },
  });
  await Promise.race([ended, new Promise((r) => setTimeout(r, 1_500))]);
  return out;
}

const cluster: Raw[] = [
  namespace('a'),
  pod('a', 'pa', { labels: { app: 'x' }, ips: ['10.0.0.1'], node: 'node-a' }),
  pod('a', 'pb', { labels: { app: 'x' }, ips: ['10.0.0.2'], node: 'node-b' }),
  pod('weir-system', 'weir-agent-b', {
    labels: { 'app.kubernetes.io/name': 'weir-agent' },
    ips: ['192.168.0.2'],
    node: 'node-b',
  }),
  networkPolicy('a', 'x', { podSelector: { matchLabels: { app: 'x' } }, ingress: [{}] }),
];

describe('mutual TLS between agents, controller and operators', () => {
  let dir: string;
  let server: grpc.Server;
  let address: string;
  let distributor: Distributor;
  let store: SpanStore;
  let agent: NodeAgent;
  let agentApi: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-mtls-'));
    const model = new ClusterModel({ cluster: 't' });
    for (const o of cluster) {
      const r = readKubeObject(o);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      model.apply({ type: 'upsert', object: r.object });
    }
    store = new SpanStore(model);
    distributor = new Distributor(store, { log: silentLogger });
    const c = store.commit(Date.now());
    if (c) distributor.notify(c.nodes);
    distributor.setReady();
    const source = {
      state: () => ({ kind: 'manifests', location: 'test', synced: true, lastError: '' }),
    } as unknown as ClusterSource;
    const started = await startControllerServer({
      listen: '127.0.0.1:0',
      distributor,
      operator: new OperatorService({ cluster: 't', source, model, store, distributor }),
      log: silentLogger,
      tls: controllerTls(),
      agentNodeOf: agentPodNode(model, 'weir-system'),
    });
    server = started.server;
    address = `127.0.0.1:${started.port}`;
    agent = new NodeAgent({
      node: 'node-a',
      controller: address,
      stateDir: join(dir, 'node-a'),
      listen: '127.0.0.1:0',
      tls: await agentTls('node-a'),
      log: silentLogger,
    });
    await agent.start();
    agentApi = `127.0.0.1:${agent.port}`;
    await eventually(
      async () => distributor.views().find((v) => v.node === 'node-a' && v.inSync),
      'node-a in sync over mutual TLS',
    );
  });

  after(async () => {
    await agent?.[Symbol.asyncDispose]();
    distributor?.closeAll('test over');
    server?.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  const nodeA = () => distributor.views().find((v) => v.node === 'node-a')!;

  test("an agent with node A's certificate cannot obtain node B's span", async () => {
    const r = await helloAs(address, await pki.node('node-a'), 'node-b');
    r.c.close();
    assert.equal(r.messages.length, 0, 'neither a welcome nor an update');
    assert.equal(r.code, grpc.status.PERMISSION_DENIED);
  });

  test('a hello for another node is refused with PERMISSION_DENIED and a short message that does not echo the name', async () => {
    // Another node's name, as long as a node name may be (253; a longer one is
    // INVALID_ARGUMENT before any identity check: test/security/controller-limits).
    const long = Array.from({ length: 4 }, () => 'y'.repeat(62)).join('.');
    const r = await helloAs(address, await pki.node('node-b'), long);
    r.c.close();
    assert.equal(r.code, grpc.status.PERMISSION_DENIED);
    assert.ok(r.details.length < 200, r.details);
    assert.ok(!r.details.includes('yyyy'));
    assert.equal(nodeA().connected, true, 'the real agent keeps its stream');
  });

  test('a certificate naming no agent (an operator, the controller) cannot say hello at all', async () => {
    for (const d of [pki.operator('admin'), pki.controller]) {
      const r = await helloAs(address, d, 'node-a');
      r.c.close();
      assert.equal(r.code, grpc.status.PERMISSION_DENIED, d);
      assert.equal(r.messages.length, 0);
    }
  });

  test("spoofed ACK and NACK from another identity leave the node's status unchanged", async () => {
    const before = nodeA();
    assert.equal(before.inSync, true);
    // Node B's agent, on its own authenticated stream, answers for node A's revision and hash.
    const r = await helloAs(address, await pki.node('node-b'), 'node-b', (s) => {
      s.write({ ack: { revision: String(before.appliedRevision), inForceHash: 'forged' } });
      s.write({
        nack: { revision: String(before.appliedRevision), error: 'frozen', inForceHash: 'forged' },
      });
    });
    r.stream.cancel();
    r.c.close();
    // And as node A, reusing the real agent's instance id (status hands it out): refused before any ACK/NACK.
    const c = client(proto.weir.v1.ControlPlane, address, await pki.node('node-b'));
    const s = (c as unknown as { Connect(): Stream }).Connect();
    s.on('error', () => undefined);
    s.write({
      hello: {
        node: 'node-a',
        appliedRevision: String(before.appliedRevision),
        instance: before.instance,
        apiAddress: '127.0.0.1:1',
        inForceHash: before.inForceHash,
      },
    });
    s.write({
      nack: { revision: String(before.appliedRevision), error: 'frozen', inForceHash: 'forged' },
    });
    await new Promise((res) => setTimeout(res, 500));
    s.cancel();
    c.close();
    const after = nodeA();
    assert.equal(after.inSync, true);
    assert.equal(after.lastError, '');
    assert.equal(after.instance, before.instance);
    assert.equal(after.apiAddress, agentApi, "the API address is the real agent's");
    assert.equal(after.inForceHash, before.inForceHash);
    assert.equal(after.connectedSinceUnixMs, before.connectedSinceUnixMs, 'not displaced');
  });

  test("a second stream for a node from another identity (the node's agent pod) is refused while the first is open", async () => {
    // spiffe://weir/ns/weir-system/pod/weir-agent-b resolves to node-b; node-b's node identity holds it first.
    const podDir = await pki.issue('pod-weir-agent-b', podUri('weir-system', 'weir-agent-b'));
    const first = await helloAs(address, await pki.node('node-b'), 'node-b');
    assert.equal(first.messages[0]?.kind, 'welcome', 'the node identity is welcome');
    const second = await helloAs(address, podDir, 'node-b');
    second.c.close();
    assert.equal(second.code, grpc.status.PERMISSION_DENIED);
    assert.match(second.details, /another identity/);
    first.stream.cancel();
    first.c.close();
    await eventually(
      async () =>
        distributor.views().find((v) => v.node === 'node-b')?.connected === false
          ? true
          : undefined,
      'node-b disconnected',
    );
    // Once the first is gone, the pod identity may connect for its node (and only its node).
    const third = await helloAs(address, podDir, 'node-b');
    assert.equal(third.messages[0]?.kind, 'welcome');
    third.stream.cancel();
    third.c.close();
    const wrong = await helloAs(address, podDir, 'node-a');
    wrong.c.close();
    assert.equal(wrong.code, grpc.status.PERMISSION_DENIED);
  });

  test("a pod identity that is not an agent pod of the agents' namespace names no node", async () => {
    for (const [ns, name] of [
      ['a', 'pb'], // a workload pod on node-b
      ['weir-system', 'no-such-pod'],
      ['other', 'weir-agent-b'],
    ] as const) {
      const d = await pki.issue(`pod-${ns}-${name}`, podUri(ns, name));
      const r = await helloAs(address, d, 'node-b');
      r.c.close();
      assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${ns}/${name}`);
      assert.equal(r.messages.length, 0);
    }
  });

  test('a client without a certificate is refused by the controller, the agent API and the Operator API', async () => {
    const calls: Array<[grpc.Client, string]> = [
      [client(proto.weir.v1.Operator, address, undefined), 'GetStatus'],
      [client(proto.weir.v1.Agent, agentApi, undefined), 'GetAgentStatus'],
      [client(proto.weir.v1.FlowIntrospect, agentApi, undefined), 'FlowStats'],
    ];
    for (const [c, m] of calls) assert.notEqual((await unaryCode(c, m)).code, 0, m);
    const r = await helloAs(address, undefined, 'node-a');
    r.c.close();
    assert.equal(r.messages.length, 0);
    assert.notEqual(r.code, undefined);
    const plain = new proto.weir.v1.Operator(
      address,
      grpc.credentials.createInsecure(),
      CHANNEL_OPTIONS,
    );
    assert.notEqual((await unaryCode(plain, 'GetStatus')).code, 0, 'plain text');
  });

  test('a certificate from another CA is refused, whatever identity it names', async () => {
    // The client trusts Weir's CA (it reaches the real server) but presents another CA's certificate.
    const foreign = (dir: string) =>
      grpc.credentials.createSsl(
        readFileSync(join(pki.controller, 'ca.crt')),
        readFileSync(join(dir, 'tls.key')),
        readFileSync(join(dir, 'tls.crt')),
        { checkServerIdentity: anyServer },
      );
    const admin = foreign(await pki.foreign('admin', operatorUri('admin', 'mallory')));
    const ours = grpc.credentials.createSsl(
      readFileSync(join(pki.controller, 'ca.crt')),
      readFileSync(join(pki.operator('admin'), 'tls.key')),
      readFileSync(join(pki.operator('admin'), 'tls.crt')),
      { checkServerIdentity: anyServer },
    );
    const at = (
      a: string,
      creds: grpc.ChannelCredentials,
      S: typeof proto.weir.v1.Operator | typeof proto.weir.v1.Agent,
    ) => new S(a, creds, CHANNEL_OPTIONS);
    assert.equal(
      (await unaryCode(at(address, ours, proto.weir.v1.Operator), 'GetStatus')).code,
      0,
      'the same client with our certificate is served',
    );
    assert.notEqual(
      (await unaryCode(at(address, admin, proto.weir.v1.Operator), 'GetStatus')).code,
      0,
    );
    assert.notEqual(
      (await unaryCode(at(agentApi, admin, proto.weir.v1.Agent), 'GetAgentStatus')).code,
      0,
    );
    const node = foreign(await pki.foreign('node-a', nodeUri('node-a')));
    const c = new proto.weir.v1.ControlPlane(address, node, CHANNEL_OPTIONS);
    const stream = (c as unknown as { Connect(): Stream }).Connect();
    const got: unknown[] = [];
    stream.on('data', (m) => got.push(m));
    const ended = new Promise<void>((res) => stream.on('error', () => res()));
    stream.write({
      hello: {
        node: 'node-a',
        appliedRevision: '0',
        instance: 'x',
        apiAddress: '',
        inForceHash: '',
      },
    });
    await ended;
    c.close();
    assert.deepEqual(got, []);
  });

  test('operators of both roles may call every read RPC; agents may call none, and the controller only the two flow reads its relay makes', async () => {
    for (const d of [pki.operator('admin'), pki.operator('read-only')]) {
      assert.equal(
        (await unaryCode(client(proto.weir.v1.Operator, address, d), 'GetStatus')).code,
        0,
      );
      assert.equal(
        (await unaryCode(client(proto.weir.v1.Agent, agentApi, d), 'GetAgentStatus')).code,
        0,
      );
      assert.equal(
        (await unaryCode(client(proto.weir.v1.FlowIntrospect, agentApi, d), 'FlowStats')).code,
        0,
      );
    }
    // The controller's flow relay reads every agent's flows; nothing else of an agent's API is its.
    assert.equal(
      (await unaryCode(client(proto.weir.v1.FlowIntrospect, agentApi, pki.controller), 'ListFlows'))
        .code,
      0,
    );
    for (const m of ['FlowStats', 'GetFlow'])
      assert.equal(
        (await unaryCode(client(proto.weir.v1.FlowIntrospect, agentApi, pki.controller), m)).code,
        grpc.status.PERMISSION_DENIED,
        m,
      );
    for (const d of [await pki.node('node-a'), await pki.node('node-b'), pki.controller]) {
      assert.equal(
        (await unaryCode(client(proto.weir.v1.Operator, address, d), 'GetStatus')).code,
        grpc.status.PERMISSION_DENIED,
        d,
      );
      assert.equal(
        (await unaryCode(client(proto.weir.v1.Agent, agentApi, d), 'GetAgentStatus')).code,
        grpc.status.PERMISSION_DENIED,
        d,
      );
      if (d !== pki.controller)
        assert.equal(
          (await unaryCode(client(proto.weir.v1.FlowIntrospect, agentApi, d), 'ListFlows')).code,
          grpc.status.PERMISSION_DENIED,
          d,
        );
    }
  });

  test('read-only credentials cannot change anything: every call leaves revision and agents as they were, and Connect is refused', async () => {
    const ro = pki.operator('read-only');
    const revision = store.revision;
    const views = JSON.stringify(distributor.views().map((v) => ({ ...v, lastAckUnixMs: 0 })));
    for (const m of ['GetStatus', 'ListPolicies', 'Explain'])
      await unaryCode(
        client(proto.weir.v1.Operator, address, ro),
        m,
        m === 'Explain' ? { from: 'a/pa', to: 'a/pb', port: 80 } : {},
      );
    const r = await helloAs(address, ro, 'node-a');
    r.c.close();
    assert.equal(r.code, grpc.status.PERMISSION_DENIED);
    assert.equal(store.revision, revision);
    assert.equal(
      JSON.stringify(distributor.views().map((v) => ({ ...v, lastAckUnixMs: 0 }))),
      views,
    );
  });
});

describe('weirctl and the agent API', () => {
  test("weirctl refuses an agent API whose certificate is not the named node's (an address in status cannot redirect it)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-mtls-api-'));
    const agent = new NodeAgent({
      node: 'node-a',
      controller: '127.0.0.1:1',
      stateDir: join(dir, 'a'),
      listen: '127.0.0.1:0',
      tls: await agentTls('node-a'),
      log: silentLogger,
    });
    await agent.start();
    const at = `127.0.0.1:${agent.port}`;
    const ask = (node?: string) => {
      const c = agentClient(at, node);
      return call(c, c.GetAgentStatus, {}, 'the agent', 3_000).then(
        () => 'answered',
        (e: Error) => e.message,
      );
    };
    assert.equal(await ask('node-a'), 'answered');
    assert.equal(await ask(undefined), 'answered', 'an address given by hand: any agent');
    assert.match(await ask('node-b'), /not the agent of node node-b/);
    await agent[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('the role table', () => {
  test('every RPC of every Weir service is in the table (an RPC not in it is refused to everyone)', () => {
    const services = {
      ControlPlane: proto.weir.v1.ControlPlane.service,
      Operator: proto.weir.v1.Operator.service,
      Agent: proto.weir.v1.Agent.service,
      FlowIntrospect: proto.weir.v1.FlowIntrospect.service,
    };
    const paths = Object.values(services).flatMap((s) => Object.values(s).map((m) => m.path));
    assert.deepEqual(
      paths.filter((p) => ACCESS[p] === undefined),
      [],
    );
    assert.deepEqual(
      Object.keys(ACCESS).filter((p) => !paths.includes(p)),
      [],
      'no stale entries',
    );
  });

  test('a read-only operator is refused an RPC the table marks admin, an admin is not, and an RPC not in the table is refused to both', async () => {
    const service = proto.weir.v1.Operator.service;
    const table = {
      '/weir.v1.Operator/GetStatus': 'read-only',
      '/weir.v1.Operator/ListPolicies': 'admin',
    } as const;
    const server = new grpc.Server();
    server.addService(
      service,
      guarded(
        service,
        {
          GetStatus: unary(() => ({})),
          ListPolicies: unary(() => ({})),
          Explain: unary(() => ({})),
        },
        { secure: true, log: silentLogger, table },
      ),
    );
    const { serverCredentials } = await import('../../shared/tls/credentials.js');
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    const at = `127.0.0.1:${port}`;
    const codes = async (d: string) =>
      Promise.all(
        ['GetStatus', 'ListPolicies', 'Explain'].map(
          async (m) => (await unaryCode(client(proto.weir.v1.Operator, at, d), m)).code,
        ),
      );
    const denied = grpc.status.PERMISSION_DENIED;
    assert.deepEqual(await codes(pki.operator('read-only')), [0, denied, denied]);
    assert.deepEqual(await codes(pki.operator('admin')), [0, 0, denied]);
    server.forceShutdown();
  });
});

describe('refusals in the log', () => {
  test('many refused calls from one peer log a bounded number of lines, and the next line let through counts the suppressed ones', async () => {
    const service = proto.weir.v1.Operator.service;
    const captured = new CapturedLog();
    let now = 1_000_000;
    const logs = new LogLimiter({ now: () => now, burst: 5, perSecond: 1 });
    const server = new grpc.Server();
    server.addService(
      service,
      guarded(
        service,
        {
          GetStatus: unary(() => ({})),
          ListPolicies: unary(() => ({})),
          Explain: unary(() => ({})),
        },
        {
          secure: true,
          log: captured.logger,
          logs,
          table: { '/weir.v1.Operator/GetStatus': 'admin' },
        },
      ),
    );
    const { serverCredentials } = await import('../../shared/tls/credentials.js');
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    const c = client(proto.weir.v1.Operator, `127.0.0.1:${port}`, pki.operator('read-only'));
    const getStatus = () =>
      new Promise<number>((resolve) =>
        (
          c as unknown as Record<
            string,
            (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void
          >
        ).GetStatus!({}, { deadline: Date.now() + 5_000 }, (err) => resolve(err?.code ?? 0)),
      );
    const refused = () => captured.lines.filter((l) => l.msg === 'call refused');
    for (let i = 0; i < 100; i++) assert.equal(await getStatus(), grpc.status.PERMISSION_DENIED);
    assert.equal(refused().length, 5, 'the burst, then nothing: every call is still refused');
    now += 1_000;
    assert.equal(await getStatus(), grpc.status.PERMISSION_DENIED);
    assert.equal(refused().length, 6);
    assert.equal(refused()[5]!.suppressed, 95);
    assert.equal(refused()[5]!.caller, operatorUri('read-only', 'test'));
    c.close();
    server.forceShutdown();
  });
});

describe('certificate rotation', () => {
  /** The serial number of the certificate a server at `address` presents to a new connection. */
  const servedSerial = (port: number, dir: string) =>
    new Promise<string>((resolve, reject) => {
      const s = connect({
        host: '127.0.0.1',
        port,
        ca: readFileSync(join(dir, 'ca.crt')),
        cert: readFileSync(join(dir, 'tls.crt')),
        key: readFileSync(join(dir, 'tls.key')),
        ALPNProtocols: ['h2'],
        checkServerIdentity: () => undefined,
      });
      s.once('secureConnect', () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.destroy();
      });
      s.once('error', reject);
    });

  test('replacing the certificate files makes new connections use the new certificate, without a restart; a half-written file keeps the old one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-rotate-'));
    for (const f of ['tls.crt', 'tls.key', 'ca.crt'])
      await copyFile(join(pki.controller, f), join(dir, f));
    const files = filesIn(dir, 50);
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model);
    const distributor = new Distributor(store, { log: silentLogger });
    const { server, port } = await startControllerServer({
      listen: '127.0.0.1:0',
      distributor,
      operator: { status: () => ({}), listPolicies: () => ({}), explain: () => ({}) },
      log: silentLogger,
      tls: files,
    });
    const op = pki.operator('read-only');
    const first = await servedSerial(port, op);
    assert.equal(
      (await unaryCode(client(proto.weir.v1.Operator, `127.0.0.1:${port}`, op), 'GetStatus')).code,
      0,
    );

    const issued = await issueCert(pki.ca, {
      uri: 'spiffe://weir/controller',
      commonName: 'rotated',
    });
    await writeTlsDir(dir, issued);
    const rotated = await eventually(async () => {
      const s = await servedSerial(port, op);
      return s !== first ? s : undefined;
    }, 'a new connection to see the new certificate');
    assert.equal(
      (await unaryCode(client(proto.weir.v1.Operator, `127.0.0.1:${port}`, op), 'GetStatus')).code,
      0,
    );

    // Half a certificate: not loaded, the rotated one stays in force.
    const pem = issued.certPem;
    await writeFile(join(dir, 'tls.crt'), pem.slice(0, pem.length / 2));
    assert.equal(files.reload(), false);
    assert.equal(await servedSerial(port, op), rotated);
    server.forceShutdown();
    files[Symbol.dispose]();
    await rm(dir, { recursive: true, force: true });
  });
});
