/**
 * weirctl reaches the controller from a kubeconfig context: through the API
 * server's pods/portforward (WebSocket, v4.channel.k8s.io) to a ready pod
 * of the weir-controller Service, with mutual TLS end to end. The API
 * server is the faithful fake (testing/fake-apiserver.ts); the
 * controller end is a real gRPC server with the controller's certificate.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { runWeirctl } from '../support/weirctl-in-process.js';
import { serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import { serverCredentials } from '../../shared/tls/credentials.js';
import { weirVersion } from '../../shared/version.js';
import { FakeApiServer, type Obj } from '../../testing/fake-apiserver.js';
import { controllerTls } from '../support/tls.js';

const run = runWeirctl;

const service: Obj = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'weir-controller', namespace: 'weir-system' },
  spec: {
    clusterIP: 'None',
    selector: { 'app.kubernetes.io/name': 'weir-controller' },
    ports: [{ name: 'grpc', port: 7443, targetPort: 'grpc', protocol: 'TCP' }],
  },
};

function controllerPod(name: string, ready: boolean, labels = true): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'weir-system',
      labels: labels ? { 'app.kubernetes.io/name': 'weir-controller' } : { app: 'other' },
    },
    spec: { containers: [{ name: 'controller', ports: [{ name: 'grpc', containerPort: 7443 }] }] },
    status: {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    },
  };
}

describe('weirctl --kube-context: the controller through the API server', () => {
  let server: grpc.Server;
  let grpcPort = 0;
  let api: FakeApiServer;
  let dir: string;
  let kubeconfig: string;
  before(async () => {
    server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
    server.addService(weirProto().proto.weir.v1.Operator.service, {
      GetStatus: (_c: unknown, cb: grpc.sendUnaryData<object>) =>
        cb(null, { cluster: 'prod', version: weirVersion() }),
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    dir = await mkdtemp(join(tmpdir(), 'weir-pf-'));
    kubeconfig = join(dir, 'kubeconfig');
  });
  after(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await api?.[Symbol.asyncDispose]();
    api = await FakeApiServer.start();
    await api.writeKubeConfig(kubeconfig);
  });
  after(async () => api?.[Symbol.asyncDispose]());

  test('reaches the ready pod of the weir-controller Service and checks its certificate', async () => {
    api.apply(service);
    api.apply(controllerPod('weir-controller-a', false));
    api.apply(controllerPod('weir-controller-b', true));
    api.apply(controllerPod('unrelated', true, false));
    api.forwardPod('weir-system', 'weir-controller-b', 7443, { host: '127.0.0.1', port: grpcPort });
    const r = await run([
      'version',
      '--kubeconfig',
      kubeconfig,
      '--kube-context',
      'fake',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out);
    assert.equal(doc.server.version, weirVersion());
    // The forward went to the ready pod, by the Service's named targetPort.
    const forwards = api.requests.filter((q) => q.path.endsWith('/portforward'));
    assert.ok(forwards.length >= 1);
    assert.ok(
      forwards.every(
        (q) =>
          q.path === '/api/v1/namespaces/weir-system/pods/weir-controller-b/portforward' &&
          q.query.get('ports') === '7443',
      ),
    );
  });

  test('a saved context with kube-context reaches the controller the same way', async () => {
    api.apply(service);
    api.apply(controllerPod('weir-controller-0', true));
    api.forwardPod('weir-system', 'weir-controller-0', 7443, { host: '127.0.0.1', port: grpcPort });
    const config = join(dir, 'weir-config.yaml');
    const env = { WEIR_CONFIG: config };
    const set = await run(
      [
        'config',
        'set-context',
        'prod',
        '--kube-context',
        'fake',
        '--kubeconfig',
        kubeconfig,
        '--use',
      ],
      env,
    );
    assert.equal(set.code, 0, set.err);
    const list = await run(['config', 'get-contexts'], env);
    assert.match(list.out, /prod\s+port-forward \(fake\)/);
    const r = await run(['version', '-o', 'json'], env);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).server.version, weirVersion());
    // --controller on the line still wins over the context's route.
    const direct = await run(
      ['version', '--controller', `127.0.0.1:${grpcPort}`, '-o', 'json'],
      env,
    );
    assert.equal(JSON.parse(direct.out).server.address, `127.0.0.1:${grpcPort}`);
  });

  // What a person gets wrong, and the one line that says what to do.
  const failures: Array<{
    name: string;
    setup: (api: FakeApiServer) => void;
    args?: string[];
    code: number;
    error: RegExp;
  }> = [
    {
      name: 'no Service: Weir is not installed in that cluster',
      setup: () => {},
      code: 1,
      error:
        /Service weir-system\/weir-controller \(context fake, http:\/\/127\.0\.0\.1:\d+\): not found \(is Weir installed there\?\)/,
    },
    {
      name: 'no ready pod: each pod and its state are named',
      setup: (a) => {
        a.apply(service);
        a.apply(controllerPod('weir-controller-a', false));
      },
      code: 1,
      error:
        /no ready pod behind Service weir-system\/weir-controller .*\(weir-controller-a: Running, not ready\)/,
    },
    {
      name: 'the API server refuses: the permissions port-forward needs are named',
      setup: (a) => {
        a.apply(service);
        a.fail({ path: /services/, status: 403, reason: 'Forbidden' });
      },
      code: 1,
      error: /port-forward needs get on services, list on pods and create on pods\/portforward/,
    },
    {
      name: 'an unknown kube context lists the ones there are',
      setup: () => {},
      args: ['--kube-context', 'nope'],
      code: 2,
      error: /no context "nope" in .*kubeconfig \(have: fake\)/,
    },
  ];
  for (const f of failures) {
    test(`fails clearly when ${f.name}`, async () => {
      f.setup(api);
      const r = await run([
        'version',
        '--kubeconfig',
        kubeconfig,
        ...(f.args ?? ['--kube-context', 'fake']),
        '-o',
        'json',
      ]);
      assert.equal(r.code, f.code, r.err);
      assert.match(r.err, f.error);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
    });
  }

  test('a pod port nothing answers on names the pod and what the kubelet said', async () => {
    api.apply(service);
    api.apply(controllerPod('weir-controller-0', true));
    // No forwardPod: the fake answers on the error channel, as a kubelet whose pod port refuses.
    const r = await run(['version', '--kubeconfig', kubeconfig, '--kube-context', 'fake']);
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /the controller \(pod weir-system\/weir-controller-0 port 7443 through the API server of context fake\), which said: error forwarding port 7443: connection refused/,
    );
  });

  test('the API server unreachable is one line naming it', async () => {
    // A port nothing listens on: the fake's own, once it is closed.
    const text = await readFile(kubeconfig, 'utf8');
    await api[Symbol.asyncDispose]();
    await writeFile(kubeconfig, text);
    const r = await run(['version', '--kubeconfig', kubeconfig, '--kube-context', 'fake']);
    assert.notEqual(r.code, 0);
    assert.match(
      r.err,
      /cannot reach the API server for Service weir-system\/weir-controller .*connection refused/,
    );
  });
});
