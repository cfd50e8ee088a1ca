/**
 * A DaemonSet rollout with pod identities (spiffe://weir/ns/NS/pod/P, as
 * cert-manager's csi-driver issues them): the controller follows a real
 * list/watch API server (testing/fake-apiserver.ts) and resolves each
 * pod identity to its node through its Pod watch. When the watch reports
 * the old agent pod deleted, or no longer the node's agent, its stream is
 * ended at once, so the new pod of the node is admitted on its next hello
 * instead of being refused as a second identity until the old stream drops.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call, operatorClient } from '../../cli/clients.js';
import type { StatusReply__Output } from '../../shared/generated/weir/v1/index.js';
import { podUri } from '../../shared/tls/identity.js';
import { FakeApiServer, type Obj } from '../../testing/fake-apiserver.js';
import { WeirProcess, eventually, freePort, pki } from '../support/processes.js';

const NS = 'weir-system';

const agentPod = (
  name: string,
  node: string,
  labels = { 'app.kubernetes.io/name': 'weir-agent' },
): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, uid: `uid-${name}`, labels },
  spec: { nodeName: node, containers: [{ name: 'agent', image: 'weir' }] },
  status: { phase: 'Running', podIP: '192.168.0.2' },
});

describe('agent pods replaced in a rollout', () => {
  let dir: string;
  let api: FakeApiServer;
  let address: string;
  let controller: WeirProcess;
  const procs: WeirProcess[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-rollout-'));
    api = await FakeApiServer.start();
    api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b' } });
    await api.writeKubeConfig(join(dir, 'kubeconfig'));
    address = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      '--listen',
      address,
    ]);
    procs.push(controller);
    await controller.waitFor((l) => l.msg === 'source synced', 'the controller synced');
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await api?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  const status = () => {
    const c = operatorClient(address);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 2_000);
  };
  /** An agent for node-b holding pod `pod`'s identity; its API address tells it apart in status. */
  const agentAs = async (pod: string) => {
    const listen = `127.0.0.1:${await freePort()}`;
    const p = new WeirProcess(pod, 'weir-agent', [
      '--node',
      'node-b',
      '--controller',
      address,
      '--state-dir',
      join(dir, pod),
      '--listen',
      listen,
      '--tls-dir',
      await pki.issue(`pod-${pod}`, podUri(NS, pod)),
    ]);
    procs.push(p);
    return { p, listen };
  };
  /** node-b's agent as status shows it: connected from this API address. */
  const connectedFrom = (listen: string) =>
    eventually(async () => {
      const b = (await status()).agents.find((a) => a.node === 'node-b');
      return b?.connected && b.apiAddress === listen ? b : undefined;
    }, `node-b connected from ${listen}`);

  const cases: Array<[string, (old: string) => void]> = [
    ['deleted', (old) => api.remove('Pod', NS, old)],
    [
      'relabelled so that it is no longer an agent pod',
      (old) => api.apply(agentPod(old, 'node-b', { 'app.kubernetes.io/name': 'something-else' })),
    ],
  ];
  for (const [what, change] of cases)
    test(`when the old agent pod is ${what}, its stream ends at once and the new pod's agent is admitted for the node`, async () => {
      const tag = what.split(' ')[0]!;
      const oldPod = `weir-agent-old-${tag}`;
      const newPod = `weir-agent-new-${tag}`;
      api.apply(agentPod(oldPod, 'node-b'));
      const old = await agentAs(oldPod);
      await connectedFrom(old.listen);

      // The DaemonSet's next pod for the node starts while the old one's stream is open: refused.
      api.apply(agentPod(newPod, 'node-b'));
      const fresh = await agentAs(newPod);
      await controller.waitFor(
        (l) =>
          l.msg === 'agent hello refused' &&
          String(l.caller).endsWith(`/pod/${newPod}`) &&
          /another identity/.test(String(l.why)),
        'the new pod refused as a second identity',
      );

      // The old agent process keeps running (its stream would stay open for as long);
      // the watch reporting its pod gone is what ends it.
      const mark = controller.lines.length;
      change(oldPod);
      await controller.waitFor(
        (l) => l.msg === "agent pod gone or no longer the node's agent; its stream ended",
        'the old stream ended',
        10_000,
        mark,
      );
      await old.p.waitFor(
        (l) => l.msg === 'controller stream lost; enforcing the last span (headless)',
        'the old agent dropped',
      );
      await connectedFrom(fresh.listen);
      // The old pod's identity, asking again, names no node any longer.
      await controller.waitFor(
        (l) =>
          l.msg === 'agent hello refused' &&
          String(l.caller).endsWith(`/pod/${oldPod}`) &&
          /not a Weir agent pod/.test(String(l.why)),
        'the old identity refused',
        15_000,
        mark,
      );
      assert.equal(
        (await status()).agents.find((a) => a.node === 'node-b')!.apiAddress,
        fresh.listen,
      );
      await old.p.kill();
      await fresh.p.kill();
      api.remove('Pod', NS, newPod);
    });
});
