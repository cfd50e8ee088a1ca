/**
 * The distributor behind a real publisher, with real agents (NodeAgent) on
 * loopback: what each node ends up enforcing when one encoded update is
 * shared between nodes. Every case runs over both transports: the gRPC
 * server, and NATS JetStream (a real nats-server with TLS and certificate
 * users) — one semantic.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { Distributor } from '../../controller/distribute/distributor.js';
import { encodeUpdate, startControllerServer } from '../../controller/distribute/grpc-server.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { SpanStore } from '../../controller/store/span-store.js';
import type { ControllerMessage } from '../../shared/generated/weir/v1/index.js';
import { weirProto } from '../../shared/grpc/proto.js';
import { silentLogger } from '../../shared/log.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { NatsTransport } from '../../vrouter-agent/transport/nats.js';
import { NatsPublisher } from '../../controller/distribute/nats-publisher.js';
import { startNats } from '../../testing/nats-server.js';
import { build, namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';
import { eventually } from '../support/processes.js';
import { tlsFiles } from '../../testing/pki.js';
import { agentTls, controllerTls, pki } from '../support/tls.js';

interface Rig {
  model: ClusterModel;
  store: SpanStore;
  distributor: Distributor;
  agents: Map<string, NodeAgent>;
  apply(...objects: Raw[]): void;
  deletePolicy(namespace: string, name: string): void;
  dispose(): Promise<void>;
}

type Transport = 'grpc' | 'nats';

async function rig(nodes: readonly string[], transport: Transport): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-dist-'));
  const model = new ClusterModel({ cluster: 't' });
  const store = new SpanStore(model);
  const distributor = new Distributor(store, { log: silentLogger });
  const { server, port } = await startControllerServer({
    listen: '127.0.0.1:0',
    distributor,
    operator: {
      status: () => ({}),
      listPolicies: () => ({}),
      explain: () => ({}),
    },
    log: silentLogger,
    controlPlane: transport === 'grpc',
    tls: controllerTls(),
  });
  // NATS as in production: TLS, each side's certificate mapped to its role's user.
  const nats =
    transport === 'nats'
      ? await startNats({ identities: { pki, cluster: 't', nodes } })
      : undefined;
  const servers = [nats?.urls ?? ''];
  const publisher =
    nats === undefined
      ? undefined
      : await NatsPublisher.start({
          endpoint: { servers, tls: tlsFiles(pki.controller) },
          cluster: 't',
          sessions: distributor,
          nodeLocal: (node, key) =>
            key.startsWith('g:') && store.span(node)?.localOnlyGroups.has(key.slice(2)) === true,
          held: (key) => store.holdersOf(key).size > 0,
          log: silentLogger,
        });
  const commit = () => {
    const c = store.commit(Date.now());
    if (c) distributor.notify(c.nodes);
  };
  const apply = (...objects: Raw[]) => {
    for (const o of objects) {
      const r = readKubeObject(o);
      if (r.type !== 'object') throw new Error(JSON.stringify(r));
      model.apply({ type: 'upsert', object: r.object });
    }
    commit();
  };
  const deletePolicy = (ns: string, name: string) => {
    model.apply({ type: 'delete', kind: 'NetworkPolicy', namespace: ns, name });
    commit();
  };
  const agents = new Map<string, NodeAgent>();
  for (const node of nodes) {
    const agent = new NodeAgent({
      node,
      controller: `127.0.0.1:${port}`,
      stateDir: join(dir, node),
      listen: '127.0.0.1:0',
      tls: await agentTls(node),
      log: silentLogger,
      ...(nats !== undefined
        ? {
            transport: new NatsTransport({
              endpoint: { servers, tls: tlsFiles(await pki.node(node)) },
              cluster: 't',
              node,
              log: silentLogger,
            }),
          }
        : {}),
    });
    await agent.start();
    agents.set(node, agent);
  }
  return {
    model,
    store,
    distributor,
    agents,
    apply,
    deletePolicy,
    async dispose() {
      distributor.closeAll('test over');
      for (const a of agents.values()) await a[Symbol.asyncDispose]();
      await publisher?.[Symbol.asyncDispose]();
      await nats?.[Symbol.asyncDispose]();
      await new Promise<void>((resolve) => (server as grpc.Server).tryShutdown(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every agent has answered the update for the current span of its node. */
const settled = (r: Rig) =>
  eventually(async () => {
    const views = r.distributor.views();
    const done = views.every(
      (v) =>
        v.connected &&
        v.pending === 0 &&
        (v.lastError !== '' ||
          r.agents.get(v.node)!.revision >= (r.store.span(v.node)?.revision ?? 0)),
    );
    return done ? views : undefined;
  }, 'every agent to answer its update');

const verdict = (agent: NodeAgent, from: string, to: string) =>
  (
    JSON.parse(agent.evaluate({ from, to, protocol: 'TCP', port: 80 }).explanationJson ?? '') as {
      allowed: boolean;
    }
  ).allowed;

/**
 * `a/x` admits everything to every `app=x` pod (one on each node); `a/deny`
 * isolates, with no rules, the pod on `denyNode` only.
 */
const cluster = (denyNode: string): Raw[] => [
  namespace('a'),
  pod('a', 'pa', { labels: { app: 'x', at: 'node-a' }, ips: ['10.0.0.1'], node: 'node-a' }),
  pod('a', 'pb', { labels: { app: 'x', at: 'node-b' }, ips: ['10.0.0.2'], node: 'node-b' }),
  networkPolicy('a', 'x', {
    podSelector: { matchLabels: { app: 'x' } },
    ingress: [{}],
  }),
  networkPolicy('a', 'deny', {
    podSelector: { matchLabels: { at: denyNode } },
    policyTypes: ['Ingress'],
  }),
];

for (const transport of ['grpc', 'nats'] as const)
  describe(`over ${transport}`, () => {
    describe('one encoded update shared between nodes', () => {
      let r: Rig | undefined;
      afterEach(async () => {
        await r?.dispose();
        r = undefined;
      });

      test('deleting a policy two nodes hold leaves each node its own policy list (node-b still denies)', async () => {
        r = await rig(['node-a', 'node-b'], transport);
        r.apply(...cluster('node-b'));
        r.distributor.setReady();
        await settled(r);
        const b = r.agents.get('node-b')!;
        assert.equal(verdict(b, '10.9.9.9', 'a/pb'), true, 'a/x admits everything at first');
        r.deletePolicy('a', 'x');
        const views = await settled(r);
        for (const v of views) {
          assert.equal(v.lastError, '', `${v.node} applied what it was sent, as sent`);
          assert.equal(v.retryAttempts, 0, `${v.node} needed no retry`);
        }
        assert.equal(b.revision, r.store.revision);
        assert.equal(verdict(b, '10.9.9.9', 'a/pb'), false, 'a/deny isolates a/pb: denied');
        assert.equal(verdict(r.agents.get('node-a')!, '10.9.9.9', 'a/pa'), true);
      });

      test('deleting a policy two nodes hold is accepted by the node that holds no other policy', async () => {
        r = await rig(['node-a', 'node-b'], transport);
        r.apply(...cluster('node-a'));
        r.distributor.setReady();
        await settled(r);
        r.deletePolicy('a', 'x');
        for (const v of await settled(r)) {
          assert.equal(v.lastError, '', `${v.node} accepted its update`);
          assert.equal(v.retryAttempts, 0, `${v.node} needed no retry`);
        }
        assert.equal(r.agents.get('node-b')!.revision, r.store.revision);
        assert.equal(verdict(r.agents.get('node-a')!, '10.9.9.9', 'a/pa'), false);
        assert.equal(verdict(r.agents.get('node-b')!, '10.9.9.9', 'a/pb'), true);
      });
    });

    describe('an address two local pods claim', () => {
      let r: Rig | undefined;
      afterEach(async () => {
        await r?.dispose();
        r = undefined;
      });

      test('reaches the node owned by one pod, is enforced in sync, and later deltas still apply', async () => {
        r = await rig(['node-a'], transport);
        r.apply(
          namespace('a'),
          pod('a', 'pa', { labels: { app: 'x' }, ips: ['10.0.0.1'], node: 'node-a' }),
          pod('a', 'pz', { labels: { app: 'z' }, ips: ['10.0.0.1'], node: 'node-a' }),
          networkPolicy('a', 'deny-z', {
            podSelector: { matchLabels: { app: 'z' } },
            policyTypes: ['Ingress'],
          }),
        );
        r.distributor.setReady();
        const [first] = await settled(r);
        const agent = r.agents.get('node-a')!;
        assert.equal(first?.lastError, '', 'the span is applied, not refused');
        assert.equal(first?.inSync, true, "the in-force span hashes to the controller's");
        assert.deepEqual(r.model.duplicateAddresses(), [
          { ip: '10.0.0.1', endpoints: ['a/pa', 'a/pz'] },
        ]);
        assert.deepEqual(agent.status().warnings, [], 'the span gives the address to a/pz alone');
        assert.equal(
          verdict(agent, '10.9.9.9', '10.0.0.1'),
          false,
          'a/pz holds the address: denied',
        );
        r.apply(
          networkPolicy('a', 'allow-z', {
            podSelector: { matchLabels: { app: 'z' } },
            ingress: [{}],
          }),
        );
        const [second] = await settled(r);
        assert.equal(second?.lastError, '', 'the next delta is applied on the span in force');
        assert.equal(second?.inSync, true);
        assert.equal(agent.revision, r.store.revision);
        assert.equal(verdict(agent, '10.9.9.9', '10.0.0.1'), true, 'a/allow-z admits now');
      });
    });
  });

describe('encoding updates', () => {
  const connect = weirProto().proto.weir.v1.ControlPlane.service.Connect;
  const encode = connect.responseSerialize as (m: ControllerMessage) => Buffer;
  const decode = connect.responseDeserialize as (b: Buffer) => unknown;

  test('an update assembled from objects encoded once decodes exactly as the update encoded whole', () => {
    // Every object kind, removals, a policy set, uint64 revisions; from a few bytes to past 2^14 (3-byte lengths).
    const objects = [namespace('a', { team: 'x' })];
    for (let i = 0; i < 300; i++)
      objects.push(
        pod('a', `p${i}`, {
          labels: { app: `app-${i % 7}` },
          ips: [`10.0.${i >> 8}.${i & 255}`],
          node: 'n1',
          ports: [{ name: 'http', port: 8080 }],
        }),
      );
    objects.push(
      networkPolicy('a', 'p', {
        podSelector: { matchLabels: { app: 'app-1' } },
        ingress: [
          { from: [{ podSelector: {} }], ports: [{ port: 'http' }, { port: 80, endPort: 90 }] },
        ],
      }),
    );
    const s = snapshotToWire(build(objects).snapshot);
    const memo = new WeakMap<object, Buffer>();
    const updates = [
      { revision: '18446744073709551615', baseRevision: '0', snapshot: true, cluster: 'c', ...s },
      {
        revision: '7',
        baseRevision: '6',
        snapshot: false,
        cluster: 'c',
        endpoints: s.endpoints!.slice(0, 1),
        removedPolicies: ['x'],
        removedAddressGroups: ['g'],
        removedServiceGroups: ['s'],
        removedEndpoints: ['a/gone'],
      },
      { revision: '8', baseRevision: '7', snapshot: false, cluster: 'c' },
      // The same objects again: their memoized bytes.
      { revision: '9', baseRevision: '0', snapshot: true, cluster: 'c', ...s },
    ];
    for (const u of updates) {
      const pieces = encodeUpdate(u, encode, memo);
      assert.deepEqual(decode(pieces), decode(encode({ update: u })), `revision ${u.revision}`);
    }
    assert.ok(encode({ update: updates[0]! }).length > 2 ** 14);
  });
});
