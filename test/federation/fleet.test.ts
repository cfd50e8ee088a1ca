/**
 * A federation as processes (docs/federation.md): a hub nats-server, three
 * member nats-servers as its leaf nodes, and per member a real controller
 * (--federation/--federation-nats, manifests in a temporary directory) with
 * one agent. Cluster b writes one federated ClusterNetworkPolicy that
 * denies b's `dev` pods at every member's databases; the test reads what
 * a's agent enforces (`weirctl explain --agent`) for b's pod addresses,
 * and holds it against the offline analysis of the three clusters'
 * manifests (`weirctl analyze probe --cluster ... -f ...`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FederationFleet } from '../support/federation-fleet.js';
import { eventually } from '../support/processes.js';

const FEDERATION = 'f1';

const node = (name: string, ip: string) => `apiVersion: v1
kind: Node
metadata: { name: ${name} }
status: { addresses: [{ type: InternalIP, address: ${ip} }] }
---
`;
const namespace = (name: string, labels: Record<string, string>) => `apiVersion: v1
kind: Namespace
metadata: { name: ${name}, labels: ${JSON.stringify(labels)} }
---
`;
const pod = (ns: string, name: string, app: string, nodeName: string, ip: string) => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${app} } }
spec: { nodeName: ${nodeName}, containers: [{ name: c, image: x }] }
status: { phase: Running, podIP: ${ip} }
---
`;
const DENY_B_DEV = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: deny-b-dev-to-db
  labels: { weir.io/federated: "true" }
spec:
  tier: Admin
  priority: 10
  subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: db } } } }
  ingress:
    - name: no-dev-of-b
      action: Deny
      from: [{ namespaces: { matchLabels: { weir.io/cluster: b, env: dev } } }]
`;

/** Each member's manifests; b's `web` namespace's env is the test's knob. */
const files = (bWebEnv = 'prod') => ({
  a: {
    'cluster.yaml':
      node('a-n1', '192.168.1.1') +
      namespace('data', { env: 'prod' }) +
      namespace('web', { env: 'prod' }) +
      pod('data', 'db', 'db', 'a-n1', '10.1.0.10') +
      pod('web', 'front', 'front', 'a-n1', '10.1.0.20'),
  },
  b: {
    'cluster.yaml':
      node('b-n1', '192.168.2.1') +
      namespace('dev', { env: 'dev' }) +
      pod('dev', 'tool', 'tool', 'b-n1', '10.2.0.10') +
      pod('web', 'front', 'front', 'b-n1', '10.2.0.20'),
    'web.yaml': namespace('web', { env: bWebEnv }),
    'policy.yaml': DENY_B_DEV,
  },
  c: {
    'cluster.yaml':
      node('c-n1', '192.168.3.1') +
      namespace('dev', { env: 'dev' }) +
      pod('dev', 'tool', 'tool', 'c-n1', '10.3.0.10'),
  },
});

describe('a federation of three member clusters as processes', () => {
  let fleet: FederationFleet;

  /** What a's agent enforces for a connection from `from` to a's database. */
  const agentVerdict = async (from: string) => {
    const r = await fleet.weirctl(
      'a',
      'explain',
      '--agent',
      'a-n1',
      '--from',
      from,
      '--to',
      'data/db',
      '--port',
      '5432',
      '-o',
      'json',
    );
    assert.ok(r.code === 0 || r.code === 1, r.err);
    return (JSON.parse(r.out) as { allowed: boolean }).allowed;
  };
  /** The offline analysis of the three clusters' manifests as they are now. */
  const offlineVerdict = async (from: string): Promise<boolean> => {
    const args = ['a', 'b', 'c'].flatMap((c) => ['--cluster', c, '-f', fleet.member(c).manifests]);
    const r = await fleet.weirctl(
      'a',
      'analyze',
      'probe',
      ...args,
      '--from',
      from,
      '--to',
      'a/data/db',
      '--port',
      '5432',
      '-o',
      'json',
    );
    assert.ok(r.code === 0 || r.code === 1, r.err);
    return (JSON.parse(r.out) as { allowed: boolean }).allowed;
  };
  /** The offline analysis says `allowed` of `remote`. */
  const agrees = async (remote: string, allowed: boolean, what: string) => {
    const offline = await offlineVerdict(remote);
    assert.equal(offline, allowed, `offline: ${what}`);
  };
  /** a's agent comes to `allowed` for `from`, and the offline analysis says the same of `remote`. */
  const converges = async (from: string, remote: string, allowed: boolean, what: string) => {
    await eventually(
      async () => ((await agentVerdict(from)) === allowed ? true : undefined),
      what,
      60_000,
    );
    await agrees(remote, allowed, what);
  };
  const federationStatus = async (cluster: string) => {
    const r = await fleet.weirctl(cluster, 'federation', 'status');
    assert.equal(r.code, 0, r.err);
    return r.out;
  };

  before(async () => {
    const started = Date.now();
    const f = files();
    fleet = await FederationFleet.start({
      federation: FEDERATION,
      members: (['a', 'b', 'c'] as const).map((c) => ({
        cluster: c,
        files: f[c],
        nodes: [`${c}-n1`],
      })),
    });
    process.stdout.write(`# fleet started in ${Date.now() - started} ms\n`);
  });
  after(async () => {
    await fleet?.[Symbol.asyncDispose]();
  });

  test("a's agent denies b's dev pods at a's database, and nothing else, as the offline analysis says", async () => {
    await converges('10.2.0.10', 'b/dev/tool', false, "b's dev/tool denied at a's db");
    assert.equal(await agentVerdict('10.2.0.20'), true, "b's web/front is not dev");
    await agrees('b/web/front', true, "b's web/front");
    assert.equal(await agentVerdict('10.3.0.10'), true, "c's dev pods: the rule names cluster b");
    await agrees('c/dev/tool', true, "c's dev/tool");
    assert.equal(await agentVerdict('10.1.0.20'), true, "a's own front end");
  });

  test("relabelling a namespace in b changes a's verdict", async () => {
    await fleet.writeManifest('b', 'web.yaml', files('dev').b['web.yaml']);
    await converges('10.2.0.20', 'b/web/front', false, "b's web, now env=dev, denied at a");
  });

  test('with the hub killed a keeps enforcing, shows b stale, and enforces it after its controller restarts; the hub restarted, a converges on what b changed meanwhile', async () => {
    const a = fleet.member('a').controller;
    const since = a.lines.length;
    await fleet.nats.hub.kill();
    await a.waitFor(
      (l) => l.msg === 'federation hub lost; imports stay in force',
      'a to lose the hub',
      30_000,
      since,
    );
    await eventually(
      async () => (/stale/i.test(await federationStatus('a')) ? true : undefined),
      'a to show the others stale',
    );
    assert.equal(await agentVerdict('10.2.0.10'), false, 'still denied while cut off');
    assert.equal(await agentVerdict('10.2.0.20'), false);
    // a's controller restarted while cut off: what it persisted is in force in its first revision,
    // so the span its agent gets on reconnecting still denies.
    await a.kill();
    const restarted = await fleet.startController('a');
    await restarted.waitFor(
      (l) => l.msg === 'agent connected' && l.node === 'a-n1',
      "a's agent back on the restarted controller",
    );
    await eventually(async () => {
      const r = await fleet.weirctl('a', 'status', '-o', 'json');
      const row = (
        JSON.parse(r.out) as { agents: Array<{ node: string; inSync: boolean }> }
      ).agents.find((x) => x.node === 'a-n1');
      return row?.inSync ? true : undefined;
    }, "a's agent in sync with the restarted controller");
    assert.equal(
      await agentVerdict('10.2.0.10'),
      false,
      'denied after the restart, hub still down',
    );
    assert.equal(await agentVerdict('10.2.0.20'), false);
    await fleet.writeManifest('b', 'web.yaml', files('prod').b['web.yaml']);
    await fleet.nats.hub.start();
    await converges('10.2.0.20', 'b/web/front', true, "b's web back to prod, allowed at a");
    assert.equal(await agentVerdict('10.2.0.10'), false);
  });

  test('an address claimed by two clusters is rejected for the remote claimants and reported', async () => {
    // c claims b's dev/tool address.
    await fleet.writeManifest(
      'c',
      'overlap.yaml',
      pod('dev', 'impostor', 'tool', 'c-n1', '10.2.0.10'),
    );
    // Neither remote claimant is a member of anything at a (docs/federation.md, overlaps): b's
    // deny no longer matches the address, an outside address to a now.
    await eventually(
      async () => ((await agentVerdict('10.2.0.10')) === true ? true : undefined),
      'a to reject both claims of 10.2.0.10',
      60_000,
    );
    await eventually(
      async () => (/10\.2\.0\.10/.test(await federationStatus('a')) ? true : undefined),
      'a to report the overlap on 10.2.0.10',
    );
    // c withdraws its claim: the address is b's pod again, denied again.
    await fleet.removeManifest('c', 'overlap.yaml');
    await eventually(
      async () => ((await agentVerdict('10.2.0.10')) === false ? true : undefined),
      "b's dev/tool denied again",
      60_000,
    );
  });
});
