/**
 * Traffic between a pod and its own node, tier by tier, as a table: whether
 * a NetworkPolicy isolates the pod × a Baseline Deny (a `nodes` or a
 * `networks` peer, or none) × an Admin Deny (or none), each direction's
 * verdict and deciding tier, through RuleTables.decide and the native rule
 * image (scanned and fully indexed). The own-node exemption is the
 * NetworkPolicy tier's alone (docs/cluster-network-policy.md, step 2): it
 * decides ('node') only when that tier isolates the pod; otherwise the
 * Baseline tier decides as for any other peer (upstream's
 * CNPBaselineTierEgressNodePeers). Ingress from the node is never matched
 * by a cluster policy (ingress peers are namespaces and pods), so the
 * Deny rules below, as broad as ingress peers go, never deny it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import type { DirectionDecision, Packet } from '../../shared/policy/rule-tables.js';
import {
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VerdictCode,
  encodePolicyRecords,
} from '../../vrouter-agent/compile/policy-record.js';
import type { RuleCatalog } from '../../vrouter-agent/compile/rule-catalog.js';
import {
  createVerdictEngine,
  nativeRuleEvaluator,
} from '../../vrouter-agent/compile/verdict-engine.js';
import {
  build,
  clusterNetworkPolicy,
  namespace,
  networkPolicy,
  node,
  pod,
  type Raw,
} from '../../testing/cluster.js';

const native = nativeRuleEvaluator();
const skipNative =
  native.evaluator === undefined ? `native addon not loaded: ${native.reason}` : false;

const NODE = '192.168.0.1';
const POD = '10.0.1.1';
/** The pod's egress to a port on its node (a host-network server), and its node's probe into the pod. */
const EGRESS: Packet = { src: parseIp(POD), dst: parseIp(NODE), protocol: 17, dstPort: 34349 };
const INGRESS: Packet = { src: parseIp(NODE), dst: parseIp(POD), protocol: 6, dstPort: 8080 };

type Baseline = 'deny nodes' | 'deny networks' | 'none';
/** "allow node", "deny admin": the verdict and the tier that decided. */
type Outcome = `${'allow' | 'deny'} ${'admin' | 'node' | 'baseline' | 'default' | 'namespace'}`;
type Row = readonly [
  isolated: boolean,
  baseline: Baseline,
  admin: boolean,
  egress: Outcome,
  ingress: Outcome,
];

// biome-ignore format: a table, aligned by column
const TABLE: readonly Row[] = [
  // isolated by NP  Baseline          Admin Deny  egress to the node    ingress from the node
  [true,             'none',           false,      'allow node',         'allow node'],
  [true,             'deny nodes',     false,      'allow node',         'allow node'],
  [true,             'deny networks',  false,      'allow node',         'allow node'],
  [true,             'none',           true,       'deny admin',         'allow node'],
  [true,             'deny nodes',     true,       'deny admin',         'allow node'],
  [true,             'deny networks',  true,       'deny admin',         'allow node'],
  [false,            'none',           false,      'allow default',      'allow default'],
  [false,            'deny nodes',     false,      'deny baseline',      'allow default'],
  [false,            'deny networks',  false,      'deny baseline',      'allow default'],
  [false,            'none',           true,       'deny admin',         'allow default'],
  [false,            'deny nodes',     true,       'deny admin',         'allow default'],
  [false,            'deny networks',  true,       'deny admin',         'allow default'],
];

/** The broadest ingress peer there is: every pod of every namespace. */
const ALL_PODS = [{ namespaces: {} }];

function cluster([isolated, baseline, admin]: Row): Raw[] {
  const objects: Raw[] = [
    namespace('a'),
    node('n1', [NODE], { 'kubernetes.io/os': 'linux' }),
    node('n2', ['192.168.0.2'], { 'kubernetes.io/os': 'linux' }),
    pod('a', 'srv', { labels: { app: 'srv' }, ips: [POD], node: 'n1' }),
  ];
  if (isolated)
    objects.push(
      networkPolicy('a', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    );
  if (baseline !== 'none')
    objects.push(
      clusterNetworkPolicy('baseline-deny', {
        tier: 'Baseline',
        priority: 10,
        subject: { namespaces: {} },
        ingress: [{ name: 'deny-from-pods', action: 'Deny', from: ALL_PODS }],
        egress: [
          {
            name: baseline === 'deny nodes' ? 'deny-to-nodes' : 'deny-to-everything',
            action: 'Deny',
            to:
              baseline === 'deny nodes'
                ? [{ nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } }]
                : [{ networks: ['0.0.0.0/0'] }],
          },
        ],
      }),
    );
  if (admin)
    objects.push(
      clusterNetworkPolicy('admin-deny', {
        tier: 'Admin',
        priority: 10,
        subject: { namespaces: {} },
        ingress: [{ name: 'deny-from-pods', action: 'Deny', from: ALL_PODS }],
        egress: [{ name: 'deny-to-nodes', action: 'Deny', to: [{ nodes: {} }] }],
      }),
    );
  return objects;
}

const label = ([isolated, baseline, admin]: Row) =>
  `${isolated ? 'isolated by a NetworkPolicy' : 'not isolated'}, Baseline ${baseline}, Admin ${admin ? 'deny' : 'none'}`;

function outcomeOf(d: DirectionDecision): Outcome {
  return `${d.allowed ? 'allow' : 'deny'} ${d.tier!}` as Outcome;
}

function nativeOutcome(code: number, catalog: RuleCatalog): Outcome | string {
  if (code === VerdictCode.ALLOW_NODE) return 'allow node';
  if (code === VerdictCode.ALLOW_DEFAULT) return 'allow default';
  if (code === VerdictCode.DENY) return 'deny namespace';
  const r = code >= 0 ? catalog.rule(code) : undefined;
  if (r === undefined) return `code ${code}`;
  return `${r.action === 'deny' ? 'deny' : 'allow'} ${r.tier}`;
}

describe("traffic between a pod and its own node: the NetworkPolicy tier's exemption, and the cluster tiers", () => {
  for (const row of TABLE) {
    const [, , , egress, ingress] = row;
    test(`${label(row)}: egress to the node ${egress}, ingress from the node ${ingress} (RuleTables)`, () => {
      const { tables, issues } = build(cluster(row));
      assert.deepEqual(issues, []);
      const e = tables.decide(EGRESS);
      const i = tables.decide(INGRESS);
      assert.deepEqual(
        [outcomeOf(e.egress), outcomeOf(i.ingress)],
        [egress, ingress],
        'egress, ingress',
      );
      assert.equal(e.allowed, egress.startsWith('allow'));
      assert.equal(tables.allows(EGRESS), e.allowed, 'allows() agrees with decide()');
      assert.equal(tables.allows(INGRESS), i.allowed, 'allows() agrees with decide()');
    });

    test(`${label(row)}: the native rule image decides the same, scanned and indexed`, {
      skip: skipNative,
    }, () => {
      const { tables } = build(cluster(row));
      for (const tuning of [{}, { indexMinRules: 0, portIndexMinRules: 0 }]) {
        const engine = createVerdictEngine(tables, { implementation: 'native', ...tuning });
        const out = new Int32Array(2 * RESULT_STRIDE);
        engine.evaluate(encodePolicyRecords([EGRESS, INGRESS]), 2, out);
        engine[Symbol.dispose]();
        assert.deepEqual(
          [
            nativeOutcome(out[0]!, engine.catalog),
            nativeOutcome(out[RESULT_STRIDE + 1]!, engine.catalog),
          ],
          [egress, ingress],
          `egress, ingress (${JSON.stringify(tuning)})`,
        );
        assert.equal((out[2]! & VERDICT_ALLOWED) !== 0, egress.startsWith('allow'));
        assert.equal(
          (out[RESULT_STRIDE + 2]! & VERDICT_ALLOWED) !== 0,
          ingress.startsWith('allow'),
        );
      }
    });
  }
});
