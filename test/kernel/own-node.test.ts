/**
 * A pod's egress to its own node through the kernel datapath (root, network
 * namespaces; the real controller and agent): such a connection takes the
 * node's input hook, not forward, and must get the one evaluator's verdict
 * (RuleTables.decide) all the same — an Admin `nodes` Deny, or a Baseline
 * one for a pod no NetworkPolicy isolates, refuses it; a NetworkPolicy that
 * isolates the pod keeps its node; an address the Node object does not list
 * is any address. The node's own connections into a pod (kubelet probes)
 * stay connected under a default deny.
 *
 *   api (prod, pod 2) ──▶ node: 10.200.2.1 (its gateway), 10.200.1.1 (another
 *                         interface), fd00:200:2::1 — all listed in Node n1 —
 *                         and 169.254.20.10 on the node's lo, not listed
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { build, clusterNetworkPolicy, networkPolicy, type Raw } from '../../testing/cluster.js';
import { inNs, kernelSkipReason, PEER_SCRIPT } from '../../testing/netns.js';
import { parseIp } from '../../shared/net/ip.js';
import { decodeMark } from '../../vrouter-agent/datapath/kernel-datapath.js';
import { nativeAddon } from '../../vrouter-agent/native/loader.js';
import { eventually } from '../support/processes.js';
import { KernelCluster } from './support.js';

const skip = kernelSkipReason(nativeAddon());
if (skip) console.log(`# skipping the kernel own-node tests: ${skip}`);

const LINK_LOCAL = '169.254.20.10';
/** The node's addresses the pod dials: three the Node object lists, one it does not. */
const TARGETS = ['10.200.2.1', '10.200.1.1', 'fd00:200:2::1', LINK_LOCAL] as const;

const baselineDeny = (to: Raw[]): Raw =>
  clusterNetworkPolicy('baseline-deny', {
    tier: 'Baseline',
    priority: 10,
    subject: { namespaces: {} },
    egress: [{ name: 'deny', action: 'Deny', to }],
  });
const adminDenyNodes = clusterNetworkPolicy('admin-deny-nodes', {
  tier: 'Admin',
  priority: 10,
  subject: { namespaces: {} },
  egress: [{ name: 'deny-to-nodes', action: 'Deny', to: [{ nodes: {} }] }],
});
/** Isolates api for egress and admits nothing. */
const apiEgressNothing = networkPolicy('prod', 'api-egress-nothing', {
  podSelector: { matchLabels: { app: 'api' } },
  policyTypes: ['Egress'],
  egress: [],
});

interface Row {
  readonly name: string;
  readonly objects: Raw[];
  /** Connected, per target in TARGETS order. */
  readonly connected: readonly boolean[];
}

// The semantics, as a table (docs/cluster-network-policy.md, "The pod's own node").
const ROWS: readonly Row[] = [
  { name: 'no policy', objects: [], connected: [true, true, true, true] },
  {
    name: 'Baseline Deny nodes',
    objects: [baselineDeny([{ nodes: {} }])],
    connected: [false, false, false, true],
  },
  {
    name: 'Baseline Deny networks, a NetworkPolicy isolating the pod for egress admitting nothing',
    objects: [
      baselineDeny([{ networks: ['10.200.0.0/16', '169.254.0.0/16', 'fd00:200::/32'] }]),
      apiEgressNothing,
    ],
    connected: [true, true, true, false],
  },
  { name: 'Admin Deny nodes', objects: [adminDenyNodes], connected: [false, false, false, true] },
];

describe("the kernel datapath enforces the evaluator's verdict on a pod's egress to its own node", {
  skip,
}, () => {
  let c: KernelCluster;

  before(async () => {
    c = await KernelCluster.create();
    await inNs(c.topo.node, ['ip', 'addr', 'add', `${LINK_LOCAL}/32`, 'dev', 'lo']);
    // One dual-stack listener per row in the node's namespace (serve() runs in the given namespace) on every node address, so each row's flows have their own port.
    const node = { ...c.api, ns: c.topo.node };
    for (let i = 0; i < ROWS.length; i++) await c.topo.serve(node, 'tcp', '::', port(i));
    await c.startAgent('open', 0);
  });

  after(async () => {
    await c?.[Symbol.asyncDispose]();
  });

  const port = (row: number) => 9100 + row;

  let inForce: Raw[] = [];
  /** Puts exactly `objects` in force (through a span with none, so the wait cannot match a stale one). */
  const enforce = async (objects: Raw[]) => {
    if (inForce.length > 0) {
      for (let i = 0; i < inForce.length; i++) await c.removeManifest(`20-row-${i}`);
      await c.nextSpan((l) => l.policies === 0);
    }
    inForce = objects;
    if (objects.length === 0) return;
    for (let i = 0; i < objects.length; i++) await c.writeManifest(`20-row-${i}`, objects[i]!);
    const want = build([...c.baseObjects(), ...objects]).snapshot.policies.length;
    await c.nextSpan((l) => l.policies === want);
  };

  test('pod → own node, by policy: connected or refused as RuleTables.decide says, IPv4 and IPv6, listed and unlisted addresses', async () => {
    const seen: string[] = [];
    const want: string[] = [];
    const evaluator: string[] = [];
    const listed: string[] = [];
    const flowWant: string[] = [];
    for (const [r, row] of ROWS.entries()) {
      await enforce(row.objects);
      const tables = build([...c.baseObjects(), ...row.objects]).tables;
      for (const [t, host] of TARGETS.entries()) {
        const cell = `${row.name}: api → ${host}:${port(r)}`;
        const ok = await c.topo.probe(c.api, 'tcp', host, port(r), row.connected[t] ? 3000 : 1200);
        seen.push(`${cell} ${ok ? 'connected' : 'refused'}`);
        want.push(`${cell} ${row.connected[t] ? 'connected' : 'refused'}`);
        const v = tables.decide({
          src: parseIp(host.includes(':') ? c.api.v6 : c.api.v4),
          dst: parseIp(host),
          protocol: 6,
          dstPort: port(r),
        });
        evaluator.push(`${cell} ${v.allowed ? 'connected' : 'refused'}`);
        // The same verdict path as forward traffic: the agent's flow table holds the decision.
        const flow = await eventually(
          async () =>
            (await c.flows()).find(
              (f) =>
                f.sourcePod === 'prod/api' &&
                f.destination === host &&
                f.destinationPort === port(r),
            ),
          `the agent lists ${cell}`,
          5_000,
        ).catch(() => undefined);
        listed.push(`${cell} ${flow === undefined ? 'not listed' : flow.action}`);
        flowWant.push(`${cell} ${row.connected[t] ? 'allow' : 'deny'}`);
      }
    }
    assert.deepEqual(evaluator, want, 'the evaluator says what the table says');
    assert.deepEqual(seen, want);
    assert.deepEqual(listed, flowWant, "the agent's flows hold the same verdicts");
  });

  test("an allowed connection to the node carries the evaluator's gate in its conntrack mark (stamped on the input hook)", async () => {
    // The NetworkPolicy row again: api is isolated for egress, and its node is exempt.
    await enforce(ROWS[2]!.objects);
    assert.ok(await c.topo.probe(c.api, 'tcp', '10.200.2.1', port(2), 3000));
    const lines = await c.conntrack(4);
    const orig = new RegExp(`src=${c.api.v4} dst=10\\.200\\.2\\.1 sport=\\d+ dport=${port(2)} `);
    const line = lines.find((l) => orig.test(l));
    assert.ok(line, `a Weir conntrack entry api → 10.200.2.1:${port(2)} in\n${lines.join('\n')}`);
    const decoded = decodeMark(Number(/mark=(\d+)/.exec(line)![1]));
    assert.deepEqual(decoded, { egress: { kind: 'node' }, ingress: { kind: 'none' } });
    // The agent's flow says the same: the destination is the pod's node, not an external address.
    const flow = await c.eventuallyFlow(
      (f) =>
        f.sourcePod === 'prod/api' &&
        f.destination === '10.200.2.1' &&
        f.destinationPort === port(2) &&
        f.action === 'allow',
      'the agent lists api → its node',
    );
    assert.equal(flow.egress.decision, 'node');
  });

  test('the node → pod probe stays connected under a default-deny NetworkPolicy, as the evaluator says', async () => {
    const denyAll = networkPolicy('prod', 'default-deny', {
      podSelector: {},
      policyTypes: ['Ingress', 'Egress'],
    });
    await enforce([denyAll, adminDenyNodes]);
    await c.topo.serve(c.api, 'tcp', c.api.v4, 9090);
    await c.topo.serve(c.api, 'tcp', c.api.v6, 9090);
    const tables = build([...c.baseObjects(), denyAll, adminDenyNodes]).tables;
    for (const [from, to] of [
      ['10.200.2.1', c.api.v4],
      ['fd00:200:2::1', c.api.v6],
    ] as const) {
      const v = tables.decide({ src: parseIp(from), dst: parseIp(to), protocol: 6, dstPort: 9090 });
      assert.equal(v.allowed, true, `the evaluator allows node → ${to}`);
      const out = await inNs(c.topo.node, [
        process.execPath,
        PEER_SCRIPT,
        'probe',
        'tcp',
        to,
        '9090',
        '2000',
      ]);
      assert.equal(out.trim(), 'ok', `node → ${to}:9090`);
    }
    // ... while api's own egress to its node is refused, as the Admin Deny says.
    assert.equal(await c.topo.probe(c.api, 'tcp', '10.200.2.1', port(0), 1200), false);
  });
});
