/**
 * The Kubernetes source against a fake API server that speaks list/watch as
 * kube-apiserver does (testing/fake-apiserver.ts): sync, increments,
 * rejections recorded as Events, dropped watches, 410 Gone, API errors,
 * bookmarks; and the real controller process following it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { call, operatorClient } from '../../cli/clients.js';
import {
  namespaceOf,
  type KubeObject,
  type NetworkPolicyObject,
  type PodObject,
} from '../../controller/kube/objects.js';
import {
  KubernetesSource,
  type KubernetesSourceOptions,
} from '../../controller/sources/kubernetes-source.js';
import type { SourceEvent } from '../../controller/sources/source.js';
import type {
  ListPoliciesReply__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { FakeApiServer, type Obj } from '../../testing/fake-apiserver.js';
import { WeirProcess, eventually, freePort } from '../support/processes.js';

// --- fixtures ------------------------------------------------------------------

const namespace = (name: string, labels: Record<string, string> = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels },
});

const pod = (
  ns: string,
  name: string,
  ip: string,
  labels: Record<string, string> = {},
  tweak: (p: Obj) => void = () => {},
): Obj => {
  const p: Obj = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: ns,
      labels,
      managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
    },
    spec: {
      nodeName: 'node-a',
      containers: [
        {
          name: 'app',
          image: 'app:1',
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
        },
      ],
    },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
  tweak(p);
  return p;
};

const policy = (ns: string, name: string, spec: Record<string, unknown>): Obj => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
});

/** Ingress from pods labelled app=web in namespaces labelled team=a, on a named port and a numeric range. */
const webPolicy = (ns = 'shop', name = 'allow-web') =>
  policy(ns, name, {
    podSelector: { matchLabels: { app: 'api' } },
    policyTypes: ['Ingress'],
    ingress: [
      {
        from: [
          {
            podSelector: { matchLabels: { app: 'web' } },
            namespaceSelector: { matchLabels: { team: 'a' } },
          },
          { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
        ],
        ports: [{ port: 'http' }, { protocol: 'TCP', port: 9000, endPort: 9010 }],
      },
    ],
  });

/** Port 70000 is out of range: the policy is rejected. */
const badPolicy = (ns = 'shop', name = 'bad') =>
  policy(ns, name, { podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] });

/** Kinds the source follows, one watch each: Namespaces, Nodes, Pods, NetworkPolicies. */
const KINDS = 5;

/** A Node as the API server has it: addresses, and the status noise a kubelet rewrites. */
const nodeObject = (name: string, addresses: Array<[string, string]>, heartbeat = '1'): Obj => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/hostname': name } },
  spec: { podCIDR: '10.2.0.0/24' },
  status: {
    addresses: addresses.map(([type, address]) => ({ type, address })),
    conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: heartbeat }],
    images: [{ names: ['app:1'], sizeBytes: 1000 }],
  },
});

// --- harness ---------------------------------------------------------------------

interface LogLine {
  readonly msg?: string;
  readonly [k: string]: unknown;
}

class Harness implements AsyncDisposable {
  readonly events: SourceEvent[] = [];
  readonly logs: LogLine[] = [];
  readonly source: KubernetesSource;

  constructor(
    readonly server: FakeApiServer,
    options: Partial<KubernetesSourceOptions> = {},
  ) {
    const log = pino(
      { level: 'debug' },
      { write: (s: string) => void this.logs.push(JSON.parse(s) as LogLine) },
    );
    this.source = new KubernetesSource({
      kubeConfig: server.kubeConfig(),
      log,
      restartMinDelayMs: 20,
      restartMaxDelayMs: 200,
      watchReconnectMaxDelayMs: 20,
      ...options,
    });
  }

  async start(): Promise<this> {
    await this.source.start((e) => this.events.push(e));
    return this;
  }

  /** Waits for an event the predicate accepts, at or after index `since`; returns its index. */
  async waitFor(pred: (e: SourceEvent) => boolean, what: string, since = 0): Promise<number> {
    return eventually(async () => {
      const i = this.events.findIndex((e, j) => j >= since && pred(e));
      return i >= 0 ? i : undefined;
    }, what);
  }

  /** Synced, and a watch per kind open on the server (they open just after synced). */
  async synced(kinds = KINDS): Promise<number> {
    const at = await this.waitFor((e) => e.type === 'synced', 'synced');
    await eventually(
      async () => (this.server.openWatches() === kinds ? true : undefined),
      'a watch per kind open',
    );
    return at;
  }

  upserts(since = 0): KubeObject[] {
    return this.events.slice(since).flatMap((e) => (e.type === 'upsert' ? [e.object] : []));
  }

  deletes(since = 0): string[] {
    return this.events
      .slice(since)
      .flatMap((e) => (e.type === 'delete' ? [`${e.kind} ${e.namespace}/${e.name}`] : []))
      .sort();
  }

  logged(msg: string): LogLine[] {
    return this.logs.filter((l) => l.msg === msg);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.source[Symbol.asyncDispose]();
  }
}

const isUpsert = (kind: string, ns: string, name: string) => (e: SourceEvent) =>
  e.type === 'upsert' &&
  e.object.kind === kind &&
  e.object.name === name &&
  namespaceOf(e.object) === ns;
const isDelete = (kind: string, ns: string, name: string) => (e: SourceEvent) =>
  e.type === 'delete' && e.kind === kind && e.namespace === ns && e.name === name;

async function seeded(): Promise<FakeApiServer> {
  const server = await FakeApiServer.start();
  server.apply(namespace('shop', { team: 'a' }));
  server.apply(namespace('payments', { team: 'b' }));
  server.apply(
    pod(
      'shop',
      'api-1',
      '10.2.0.1',
      { app: 'api' },
      (p) => ((p.status as { podIPs: unknown[] }).podIPs = [{ ip: '10.2.0.1' }, { ip: 'fd00::1' }]),
    ),
  );
  server.apply(pod('shop', 'web-1', '10.2.0.2', { app: 'web' }));
  server.apply(pod('payments', 'db-1', '10.2.0.3', { app: 'db' }));
  server.apply(webPolicy());
  server.apply(
    policy('payments', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
  );
  return server;
}

// --- the source ----------------------------------------------------------------------

describe('Kubernetes source', () => {
  const open: AsyncDisposable[] = [];
  afterEach(async () => {
    for (const d of open.splice(0).reverse()) await d[Symbol.asyncDispose]();
  });
  const setup = async (options: Partial<KubernetesSourceOptions> = {}, server?: FakeApiServer) => {
    const s = server ?? (await seeded());
    open.push(s);
    const h = new Harness(s, options);
    open.push(h);
    return h;
  };

  test('the initial sync delivers every object, read from the API JSON, and then synced', async () => {
    const h = await setup({ listPageSize: 2 });
    await h.start();
    const syncedAt = await h.synced();
    const before = h.upserts().length;
    assert.equal(before, 7, 'two namespaces, three pods, two policies');
    assert.equal(
      h.events.findIndex((e) => e.type === 'synced'),
      syncedAt,
    );
    assert.equal(h.events.filter((e) => e.type === 'synced').length, 1);
    assert.ok(
      h.events.slice(0, syncedAt).every((e) => e.type === 'upsert'),
      'nothing but upserts before synced',
    );
    assert.deepEqual(
      h
        .upserts()
        .map((o) => `${o.kind} ${namespaceOf(o)}/${o.name}`)
        .sort(),
      [
        'Namespace /payments',
        'Namespace /shop',
        'NetworkPolicy payments/deny-all',
        'NetworkPolicy shop/allow-web',
        'Pod payments/db-1',
        'Pod shop/api-1',
        'Pod shop/web-1',
      ],
    );

    // Fields the typed client would have renamed or reshaped arrive intact:
    // the rule's `from` peers, named and numeric ports, both pod IPs, labels.
    const np = h
      .upserts()
      .find((o): o is NetworkPolicyObject => o.kind === 'NetworkPolicy' && o.name === 'allow-web')!;
    assert.equal(np.ingress.length, 1);
    assert.equal(np.ingress[0]!.peers.length, 2, 'both from-peers are read');
    assert.deepEqual(np.ingress[0]!.peers[1], {
      kind: 'ipBlock',
      ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] },
    });
    assert.deepEqual(np.ingress[0]!.ports, [
      { protocol: 'TCP', port: { kind: 'named', name: 'http' } },
      { protocol: 'TCP', port: { kind: 'range', start: 9000, end: 9010 } },
    ]);
    const api = h.upserts().find((o): o is PodObject => o.kind === 'Pod' && o.name === 'api-1')!;
    assert.deepEqual(api.ips, ['10.2.0.1', 'fd00::1']);
    assert.deepEqual(api.ports, [{ name: 'http', protocol: 'TCP', port: 8080 }]);
    assert.deepEqual(api.labels, { app: 'api' });
    assert.notEqual(api.uid, '');

    const s = h.source.state();
    assert.deepEqual(s, {
      kind: 'kubernetes',
      location: h.server.url,
      synced: true,
      lastError: '',
    });
    // Paged: three pods in pages of two.
    assert.equal(h.server.requests.filter((r) => r.path === '/api/v1/pods' && !r.watch).length, 2);
    assert.ok(h.server.requests.some((r) => r.path === '/api/v1/pods' && r.query.has('continue')));
  });

  test('watch events become upserts and deletes', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const mark = h.events.length;
    h.server.apply(pod('shop', 'web-2', '10.2.0.4', { app: 'web' }));
    h.server.apply(namespace('shop', { team: 'c' }));
    h.server.remove('NetworkPolicy', 'payments', 'deny-all');
    h.server.remove('Pod', 'shop', 'web-1');
    await h.waitFor(isUpsert('Pod', 'shop', 'web-2'), 'the new pod', mark);
    await h.waitFor(isUpsert('Namespace', '', 'shop'), 'the relabelled namespace', mark);
    await h.waitFor(isDelete('NetworkPolicy', 'payments', 'deny-all'), 'the deleted policy', mark);
    await h.waitFor(isDelete('Pod', 'shop', 'web-1'), 'the deleted pod', mark);
    const shop = h.upserts(mark).find((o) => o.kind === 'Namespace')!;
    assert.deepEqual(shop.kind === 'Namespace' && shop.labels, {
      team: 'c',
      'kubernetes.io/metadata.name': 'shop',
    });
  });

  test('Nodes are listed and watched: addresses and labels arrive, a heartbeat changes nothing, a bad address is rejected naming the field', async () => {
    const server = await seeded();
    server.apply(
      nodeObject('node-a', [
        ['InternalIP', '192.168.0.1'],
        ['Hostname', 'node-a'],
      ]),
    );
    const h = await (await setup({}, server)).start();
    const syncedAt = await h.synced();
    const listed = h.upserts().find((o) => o.kind === 'Node');
    assert.deepEqual(listed, {
      kind: 'Node',
      name: 'node-a',
      uid: listed?.uid,
      labels: { 'kubernetes.io/hostname': 'node-a' },
      addresses: [{ type: 'InternalIP', address: '192.168.0.1' }],
    });
    assert.ok(
      h.events.findIndex(isUpsert('Node', '', 'node-a')) < syncedAt,
      'listed before synced',
    );

    let mark = h.events.length;
    h.server.apply(
      nodeObject(
        'node-a',
        [
          ['InternalIP', '192.168.0.1'],
          ['Hostname', 'node-a'],
        ],
        '9',
      ),
    );
    await h.waitFor(isUpsert('Node', '', 'node-a'), 'the heartbeat', mark);
    assert.deepEqual(h.upserts(mark), [listed], 'a heartbeat reads as the same Node');

    mark = h.events.length;
    h.server.apply(
      nodeObject(
        'node-a',
        [
          ['InternalIP', '192.168.0.1'],
          ['ExternalIP', '203.0.113.1'],
        ],
        '2',
      ),
    );
    await h.waitFor(
      (e) =>
        isUpsert('Node', '', 'node-a')(e) &&
        e.type === 'upsert' &&
        e.object.kind === 'Node' &&
        e.object.addresses.length === 2,
      'the new address',
      mark,
    );

    mark = h.events.length;
    h.server.apply(nodeObject('node-b', [['InternalIP', '192.168.0.300']]));
    await h.waitFor(
      (e) =>
        e.type === 'invalid' &&
        e.kind === 'Node' &&
        e.name === 'node-b' &&
        e.issues[0]?.field === 'status.addresses[0].address' &&
        e.issues[0]?.object === 'Node node-b',
      'the rejected Node',
      mark,
    );

    mark = h.events.length;
    h.server.remove('Node', '', 'node-a');
    await h.waitFor(isDelete('Node', '', 'node-a'), 'the deleted Node', mark);
  });

  test('ClusterNetworkPolicies are listed and watched; without their CRD (404) there are none, the source still syncs, and they arrive once it is installed', async () => {
    const server = await seeded();
    server.unserved.add('clusternetworkpolicies');
    const h = await (await setup({ restartMinDelayMs: 20, restartMaxDelayMs: 50 }, server)).start();
    await h.synced(KINDS - 1);
    assert.ok(
      !h.upserts().some((o) => o.kind === 'ClusterNetworkPolicy'),
      'no cluster policies without the CRD',
    );
    const mark = h.events.length;
    server.unserved.delete('clusternetworkpolicies');
    server.apply({
      apiVersion: 'policy.networking.k8s.io/v1alpha2',
      kind: 'ClusterNetworkPolicy',
      metadata: { name: 'guard' },
      spec: {
        tier: 'Admin',
        priority: 1,
        subject: { namespaces: {} },
        ingress: [{ name: 'deny', action: 'Deny', from: [{ namespaces: {} }] }],
      },
    });
    await h.waitFor(isUpsert('ClusterNetworkPolicy', '', 'guard'), 'the cluster policy', mark);
    const guard = h.upserts(mark).find((o) => o.kind === 'ClusterNetworkPolicy')!;
    assert.equal(guard.kind === 'ClusterNetworkPolicy' && guard.tier, 'admin');
    server.remove('ClusterNetworkPolicy', '', 'guard');
    await h.waitFor(isDelete('ClusterNetworkPolicy', '', 'guard'), 'its deletion', mark);
  });

  test('an invalid object becomes an invalid event, and one Warning Event is recorded against it', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const mark = h.events.length;
    h.server.apply(badPolicy());
    const at = await h.waitFor((e) => e.type === 'invalid', 'the rejection', mark);
    const rejection = h.events[at]!;
    assert.ok(rejection.type === 'invalid');
    assert.equal(rejection.kind, 'NetworkPolicy');
    assert.equal(rejection.namespace, 'shop');
    assert.equal(rejection.name, 'bad');
    assert.deepEqual(
      rejection.issues.map((i) => [i.field, i.message]),
      [['spec.ingress[0].ports[0].port', '70000 is not between 1 and 65535']],
    );

    h.source.reportRejected(rejection);
    const [event] = await eventually(
      async () => (h.server.events().length > 0 ? h.server.events() : undefined),
      'the Event',
    );
    const stored = h.server.get('NetworkPolicy', 'shop', 'bad')!;
    assert.equal(event!.type, 'Warning');
    assert.equal(event!.reason, 'PolicyRejected');
    assert.equal(event!.metadata!.namespace, 'shop');
    assert.deepEqual(event!.involvedObject, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      name: 'bad',
      namespace: 'shop',
      uid: stored.metadata!.uid,
      resourceVersion: stored.metadata!.resourceVersion,
    });
    assert.match(
      String(event!.message),
      /spec\.ingress\[0\]\.ports\[0\]\.port: 70000 is not between 1 and 65535/,
    );

    // The same rejection again (the controller sees it on every relist): not recorded twice.
    h.source.reportRejected(rejection);
    assert.equal(h.logged('rejection already recorded as an Event recently').length, 1);

    // A rejected Namespace (cluster-scoped): its Event goes to "default", as client-go records them.
    h.server.apply(namespace('odd', { team: 'not a valid value' }));
    const nsAt = await h.waitFor(
      (e) => e.type === 'invalid' && e.kind === 'Namespace',
      'the namespace rejection',
      mark,
    );
    h.source.reportRejected(h.events[nsAt] as Extract<SourceEvent, { type: 'invalid' }>);
    const nsEvent = await eventually(
      async () =>
        h.server.events().find((e) => (e.involvedObject as { kind: string }).kind === 'Namespace'),
      'the Namespace Event',
    );
    assert.equal(nsEvent.metadata!.namespace, 'default');
    assert.equal((nsEvent.involvedObject as { namespace?: string }).namespace, undefined);

    // Fixing the object withdraws nothing here but delivers the valid version.
    h.server.apply(webPolicy('shop', 'bad'));
    await h.waitFor(isUpsert('NetworkPolicy', 'shop', 'bad'), 'the fixed policy', at);
  });

  test('recording an Event that the API server refuses does not throw', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const refused = h.server.fail({
      method: 'POST',
      path: /\/events$/,
      status: 403,
      reason: 'Forbidden',
    });
    h.source.reportRejected({
      type: 'invalid',
      kind: 'Pod',
      namespace: 'shop',
      name: 'ghost',
      issues: [{ field: 'status.podIP', message: 'bad' }],
    });
    await eventually(
      async () =>
        h.logged('recording the rejection as an Event failed').length > 0 ? true : undefined,
      'the failure logged',
    );
    assert.equal(refused.hits, 1);
    assert.equal(h.server.events().length, 0);
  });

  test('a dropped watch resumes from its resourceVersion without losing events, and without listing again', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const lists = h.server.count({ method: 'GET', watch: false });
    for (const abrupt of [false, true]) {
      const mark = h.events.length;
      h.server.holdWatches();
      assert.equal(h.server.dropWatches({ abrupt }), KINDS);
      // Changes while no watch is open: they must come from the history, after the reconnect.
      const suffix = abrupt ? 'b' : 'a';
      h.server.apply(
        pod('shop', `late-${suffix}`, abrupt ? '10.2.1.2' : '10.2.1.1', { app: 'web' }),
      );
      h.server.remove('Pod', 'shop', abrupt ? 'late-a' : 'web-1');
      h.server.apply(policy('shop', `new-${suffix}`, { podSelector: {} }));
      await eventually(
        async () => (h.server.heldWatches() === KINDS ? true : undefined),
        'every watch reconnecting',
      );
      h.server.releaseWatches();
      await h.waitFor(
        isUpsert('Pod', 'shop', `late-${suffix}`),
        'the pod created while away',
        mark,
      );
      await h.waitFor(
        isUpsert('NetworkPolicy', 'shop', `new-${suffix}`),
        'the policy created while away',
        mark,
      );
      await h.waitFor(
        isDelete('Pod', 'shop', abrupt ? 'late-a' : 'web-1'),
        'the pod deleted while away',
        mark,
      );
      await eventually(
        async () => (h.source.state().lastError === '' ? true : undefined),
        'no error left',
      );
    }
    assert.equal(
      h.server.count({ method: 'GET', watch: false }),
      lists,
      'resumed from resourceVersions: no list',
    );
  });

  for (const goneAs of ['event', 'http'] as const) {
    test(`a 410 Gone (${goneAs === 'event' ? 'a watch ERROR event' : 'an HTTP 410'}) re-lists and reconciles deletions made while the watch was away`, async () => {
      const server = await seeded();
      server.goneAs = goneAs;
      const h = await (await setup({}, server)).start();
      await h.synced();
      const mark = h.events.length;
      const podLists = server.count({ method: 'GET', resource: 'pods', watch: false });
      server.holdWatches();
      server.dropWatches();
      server.remove('Pod', 'shop', 'web-1');
      server.remove('NetworkPolicy', 'payments', 'deny-all');
      server.remove('Namespace', '', 'payments');
      server.apply(pod('shop', 'web-2', '10.2.0.9', { app: 'web' }));
      server.apply(pod('shop', 'api-1', '10.2.0.1', { app: 'api', version: '2' }));
      server.compact();
      await eventually(
        async () => (server.heldWatches() === KINDS ? true : undefined),
        'every watch reconnecting',
      );
      server.releaseWatches();
      await h.waitFor(isDelete('Pod', 'shop', 'web-1'), 'the deleted pod', mark);
      await h.waitFor(
        isDelete('NetworkPolicy', 'payments', 'deny-all'),
        'the deleted policy',
        mark,
      );
      await h.waitFor(isDelete('Namespace', '', 'payments'), 'the deleted namespace', mark);
      await h.waitFor(isUpsert('Pod', 'shop', 'web-2'), 'the new pod', mark);
      await h.waitFor(
        (e) =>
          isUpsert('Pod', 'shop', 'api-1')(e) &&
          e.type === 'upsert' &&
          e.object.kind === 'Pod' &&
          e.object.labels.version === '2',
        'the changed pod',
        mark,
      );
      assert.deepEqual(
        h.deletes(mark),
        ['Namespace /payments', 'NetworkPolicy payments/deny-all', 'Pod shop/web-1'],
        'exactly what vanished',
      );
      assert.equal(
        server.count({ method: 'GET', resource: 'pods', watch: false }),
        podLists + 1,
        'pods listed again',
      );
      // Unchanged objects are not delivered again.
      assert.equal(h.upserts(mark).filter((o) => o.name === 'db-1' || o.name === 'shop').length, 0);
      // And the watch goes on from the new list.
      const after = h.events.length;
      server.apply(pod('shop', 'web-3', '10.2.0.10'));
      await h.waitFor(isUpsert('Pod', 'shop', 'web-3'), 'a change after the re-list', after);
      assert.equal(h.source.state().lastError, '');
    });
  }

  test('an API server error stops the informer; the source restarts it with backoff and reports lastError until it recovers', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const mark = h.events.length;
    const outage = h.server.fail({ path: /^\/api\/v1\/pods$/, status: 500 });
    h.server.dropWatches({ resource: 'pods' });
    await eventually(
      async () =>
        h.logged('informer stopped; restarting after a delay').length >= 4 ? true : undefined,
      'four failed restarts',
    );
    assert.match(h.source.state().lastError, /^Pod: watch: HTTP 500 /);
    assert.equal(h.source.state().synced, true, 'still synced: the model keeps the last state');
    assert.ok(
      h.events.some((e, i) => i >= mark && e.type === 'error'),
      'the error is reported to the sink',
    );

    // The other kinds are still followed during the outage.
    h.server.apply(namespace('during', {}));
    await h.waitFor(isUpsert('Namespace', '', 'during'), 'a namespace during the pod outage', mark);
    // Pod changes while the pod informer is down, and the history compacted: the restart must
    // list again (410) and find what was deleted meanwhile.
    h.server.apply(pod('shop', 'during', '10.2.3.1'));
    h.server.remove('Pod', 'shop', 'web-1');
    h.server.compact();
    assert.notEqual(h.source.state().lastError, '');

    // Backoff: doubling from the minimum (with jitter), never above the maximum.
    const delays = h
      .logged('informer stopped; restarting after a delay')
      .map((l) => l.delayMs as number);
    assert.ok(
      delays.every((d) => d >= 20 && d <= 200),
      `delays within bounds: ${delays}`,
    );
    assert.ok(
      delays.every((d, i) => i === 0 || d >= delays[i - 1]!),
      `delays do not shrink: ${delays}`,
    );
    assert.ok(
      h.logged('informer stopped; restarting after a delay').every((l) => l.kind === 'Pod'),
      'only the pod informer stopped',
    );

    outage.clear();
    await h.waitFor(isUpsert('Pod', 'shop', 'during'), 'the pod created during the outage', mark);
    await h.waitFor(isDelete('Pod', 'shop', 'web-1'), 'the pod deleted during the outage', mark);
    await eventually(
      async () => (h.source.state().lastError === '' ? true : undefined),
      'lastError cleared',
    );
    assert.equal(h.logged('informer recovered').length >= 1, true);
  });

  test('a list that fails at start is retried, and synced waits for every kind', async () => {
    const server = await seeded();
    const refused = server.fail({
      method: 'GET',
      path: /networkpolicies$/,
      watch: false,
      status: 503,
      reason: 'ServiceUnavailable',
      times: 3,
    });
    const h = await (await setup({}, server)).start();
    await h.waitFor(isUpsert('Pod', 'payments', 'db-1'), 'pods listed');
    await eventually(async () => (refused.hits === 3 ? true : undefined), 'three refused lists');
    const syncedAt = await h.synced();
    assert.ok(
      h.events.slice(0, syncedAt).some(isUpsert('NetworkPolicy', 'shop', 'allow-web')),
      'the policies came before synced',
    );
    assert.equal(h.logged('informer stopped; restarting after a delay').length, 3);
    await eventually(
      async () => (h.source.state().lastError === '' ? true : undefined),
      'lastError cleared',
    );
  });

  test('bookmarks deliver nothing, and keep a quiet watch resumable after the history is compacted', async () => {
    const h = await (await setup()).start();
    await h.synced();
    const policyLists = h.server.count({
      method: 'GET',
      resource: 'networkpolicies',
      watch: false,
    });
    // Pods change; policies stay quiet, so their watch's resourceVersion grows old.
    for (let i = 0; i < 5; i++) h.server.apply(pod('shop', `churn-${i}`, `10.2.2.${i + 1}`));
    await h.waitFor(isUpsert('Pod', 'shop', 'churn-4'), 'the churn');
    const mark = h.events.length;
    const rv = h.server.resourceVersion;
    assert.equal(h.server.bookmark('networkpolicies'), 1, 'the watch asked for bookmarks');
    // The bookmark and then the end of the stream, in order on one connection.
    h.server.holdWatches();
    h.server.dropWatches({ resource: 'networkpolicies' });
    h.server.compact();
    await eventually(
      async () => (h.server.heldWatches() === 1 ? true : undefined),
      'the policy watch reconnecting',
    );
    h.server.releaseWatches();
    const resumed = h.server.requests
      .filter((r) => r.watch && r.path.endsWith('/networkpolicies'))
      .at(-1)!;
    assert.equal(resumed.query.get('resourceVersion'), String(rv), 'resumed from the bookmark');
    h.server.apply(policy('shop', 'after-bookmark', { podSelector: {} }));
    await h.waitFor(
      isUpsert('NetworkPolicy', 'shop', 'after-bookmark'),
      'a policy after the bookmark',
      mark,
    );
    assert.equal(
      h.server.count({ method: 'GET', resource: 'networkpolicies', watch: false }),
      policyLists,
      'no 410, no re-list',
    );
    assert.deepEqual(
      h.events.slice(mark).map((e) => e.type),
      ['upsert'],
      'the bookmark itself delivered nothing',
    );
  });

  test('disposing stops every watch and timer, also while a restart is pending', async () => {
    const h = await (await setup({ restartMinDelayMs: 60_000, restartMaxDelayMs: 60_000 })).start();
    await h.synced();
    assert.equal(h.server.openWatches(), KINDS);
    h.server.fail({ path: /^\/api\/v1\/pods$/, status: 500 });
    h.server.dropWatches({ resource: 'pods' });
    await eventually(
      async () =>
        h.logged('informer stopped; restarting after a delay').length === 1 ? true : undefined,
      'a pending restart',
    );
    await h.source[Symbol.asyncDispose]();
    await eventually(
      async () => (h.server.openWatches() === 0 ? true : undefined),
      'every watch closed',
    );
    const n = h.events.length;
    h.server.apply(namespace('after-dispose'));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(h.events.length, n, 'nothing delivered after dispose');
    await h.source[Symbol.asyncDispose](); // idempotent
  });
});

// --- the controller process against the fake API server ---------------------------------

describe('weir-controller --kubeconfig', () => {
  let dir: string;
  let server: FakeApiServer;
  let controller: WeirProcess;
  let address: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-kube-'));
    server = await seeded();
    server.apply(badPolicy());
    await server.writeKubeConfig(join(dir, 'kubeconfig'));
    address = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      '--listen',
      address,
      '--cluster',
      'e2e',
    ]);
    await controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
  });

  after(async () => {
    await controller?.kill();
    await server?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  const status = () => {
    const c = operatorClient(address);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 2_000);
  };
  const policies = () => {
    const c = operatorClient(address);
    return call<object, ListPoliciesReply__Output>(c, c.ListPolicies, {}, 'controller', 2_000);
  };

  test('serves the policies of the API server, reports the source, and records the rejection as an Event', async () => {
    const s = await eventually(async () => {
      const x = await status();
      return x.source?.synced && x.policies === 2 ? x : undefined;
    }, 'the controller synced with two policies');
    assert.equal(s.source?.kind, 'kubernetes');
    assert.equal(s.source?.location, server.url);
    assert.equal(s.source?.leadership, 'standalone');
    assert.equal(s.endpoints, 3);
    assert.deepEqual(
      s.rejections.map((r) => r.object),
      ['NetworkPolicy shop/bad'],
    );
    const list = await policies();
    assert.deepEqual(list.policies.map((p) => `${p.policy?.namespace}/${p.policy?.name}`).sort(), [
      'payments/deny-all',
      'shop/allow-web',
    ]);
    const event = await eventually(
      async () => server.events().find((e) => e.reason === 'PolicyRejected'),
      'the Warning Event',
    );
    assert.deepEqual((event.involvedObject as { name: string }).name, 'bad');
  });

  test('follows changes made on the API server', async () => {
    server.apply(
      policy('shop', 'late', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
      }),
    );
    server.remove('NetworkPolicy', 'payments', 'deny-all');
    await eventually(async () => {
      const list = await policies();
      const names = list.policies.map((p) => `${p.policy?.namespace}/${p.policy?.name}`).sort();
      return names.join(',') === 'shop/allow-web,shop/late' ? true : undefined;
    }, 'the new policy in, the deleted one out');
  });
});
