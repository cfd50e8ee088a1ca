/**
 * writeClusterNetworkPolicy is the inverse of the reader: every
 * ClusterNetworkPolicy the repository's fixtures hold (the conformance
 * scenarios at every step, the README's and the documentation's) and
 * every generated one reads back, from what it writes, deep-equal. The
 * federation depends on it: an importing member re-validates an export
 * with the same reader, and must get the object the origin enforces.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import {
  FEDERATED_LABEL,
  writeClusterNetworkPolicy,
} from '../../controller/kube/cluster-network-policy.js';
import { readKubeObject, type ClusterNetworkPolicyObject } from '../../controller/kube/objects.js';
import { SCENARIOS, applyChanges, baseCluster } from '../../testing/cnp-conformance.js';
import type { Raw } from '../../testing/cluster.js';

function readCnp(raw: unknown): ClusterNetworkPolicyObject | undefined {
  const r = readKubeObject(raw, 'test');
  return r.type === 'object' && r.object.kind === 'ClusterNetworkPolicy' ? r.object : undefined;
}

function roundTrips(x: ClusterNetworkPolicyObject): void {
  const written = JSON.parse(JSON.stringify(writeClusterNetworkPolicy(x)));
  const r = readKubeObject(written, 'written');
  assert.equal(r.type, 'object', JSON.stringify(r));
  if (r.type === 'object') assert.deepEqual(r.object, x);
}

/** Every ClusterNetworkPolicy of the conformance scenarios, at each step (changes accumulate). */
function conformancePolicies(): Raw[] {
  const out: Raw[] = [];
  for (const s of SCENARIOS) {
    let objects: Raw[] = [...baseCluster(), ...s.policies];
    for (const step of s.steps) {
      objects = applyChanges(objects, step.changes ?? []);
      out.push(...objects.filter((o) => o.kind === 'ClusterNetworkPolicy'));
    }
  }
  return out;
}

async function manifestPolicies(): Promise<Raw[]> {
  const out: Raw[] = [];
  for (const file of ['README.md', 'docs/cluster-network-policy.md']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const yamlText = file.endsWith('.md')
      ? [...text.matchAll(/```ya?ml\n([\s\S]*?)```/g)].map((m) => m[1]).join('\n---\n')
      : text;
    for (const doc of parseAllDocuments(yamlText)) {
      const v = doc.toJS() as Raw | null;
      if (v?.kind === 'ClusterNetworkPolicy') out.push(v);
    }
  }
  return out;
}

const label = fc.constantFrom('app', 'team', 'tier', 'example.com/role');
const value = fc.constantFrom('a', 'b', 'web', 'db');
const selector = fc.record(
  {
    matchLabels: fc.dictionary(label, value, { maxKeys: 2 }),
    matchExpressions: fc.array(
      fc.oneof(
        fc.record({
          key: label,
          operator: fc.constantFrom('In', 'NotIn'),
          values: fc.uniqueArray(value, { minLength: 1, maxLength: 3 }),
        }),
        fc.record({ key: label, operator: fc.constantFrom('Exists', 'DoesNotExist') }),
      ),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);
const pods = fc.oneof(
  fc.record({ namespaces: selector }),
  fc.record({ pods: fc.record({ namespaceSelector: selector, podSelector: selector }) }),
);
const port = fc.integer({ min: 1, max: 65535 });
const protocol = fc.oneof(
  fc.record({ tcp: fc.record({ destinationPort: fc.record({ number: port }) }) }),
  fc.record({
    udp: fc.record({
      destinationPort: fc.record({
        range: fc
          .tuple(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 1000 }))
          .map(([a, b]) => ({ start: a, end: a + b })),
      }),
    }),
  }),
  fc.record({ sctp: fc.record({ destinationPort: fc.record({ number: port }) }) }),
);
const rule = (peers: fc.Arbitrary<Raw>, key: 'from' | 'to', named: boolean) =>
  fc.record(
    {
      name: fc.constantFrom('', 'r1', 'allow-web'),
      action: fc.constantFrom('Accept', 'Deny', 'Pass'),
      [key]: fc.array(peers, { minLength: 1, maxLength: 3 }),
      protocols: fc.array(
        named
          ? fc.oneof(protocol, fc.record({ destinationNamedPort: fc.constantFrom('http', 'dns') }))
          : protocol,
        { minLength: 1, maxLength: 3 },
      ),
    },
    { requiredKeys: ['action', key] },
  );
const egressPeer = fc.oneof(
  pods,
  fc.record({ nodes: selector }),
  fc.record({
    networks: fc.uniqueArray(fc.constantFrom('10.0.0.0/8', '192.168.1.0/24', '2001:db8::/32'), {
      minLength: 1,
      maxLength: 3,
    }),
  }),
);
const cnp = fc.record({
  apiVersion: fc.constant('policy.networking.k8s.io/v1alpha2'),
  kind: fc.constant('ClusterNetworkPolicy'),
  metadata: fc.record(
    {
      name: fc.constantFrom('p', 'deny-all', 'fed.example'),
      uid: fc.constantFrom('', 'u-1'),
      labels: fc.constantFrom({}, { [FEDERATED_LABEL]: 'true' }, { [FEDERATED_LABEL]: 'false' }),
    },
    { requiredKeys: ['name'] },
  ),
  spec: fc.record(
    {
      tier: fc.constantFrom('Admin', 'Baseline'),
      priority: fc.integer({ min: 0, max: 1000 }),
      subject: pods,
      ingress: fc.array(rule(pods as fc.Arbitrary<Raw>, 'from', true), { maxLength: 3 }),
      egress: fc.array(
        fc.oneof(
          rule(pods as fc.Arbitrary<Raw>, 'to', true),
          rule(egressPeer as fc.Arbitrary<Raw>, 'to', false),
        ),
        { maxLength: 3 },
      ),
    },
    { requiredKeys: ['tier', 'priority', 'subject'] },
  ),
});

describe('writing a ClusterNetworkPolicy as Kubernetes JSON', () => {
  test('every conformance scenario policy, at every step, reads back equal from what is written', () => {
    const policies = conformancePolicies().map(readCnp);
    assert.ok(policies.length > 20);
    for (const p of policies) {
      assert.ok(p, 'every conformance policy is valid');
      roundTrips(p);
    }
  });

  test('every policy of the README and the documentation reads back equal', async () => {
    const policies = (await manifestPolicies()).map(readCnp).filter((p) => p !== undefined);
    assert.ok(policies.length > 0, 'the README shows at least one ClusterNetworkPolicy');
    for (const p of policies) roundTrips(p);
  });

  test('a federated policy keeps its label, and so its federation, through the round trip', () => {
    const p = readCnp({
      apiVersion: 'policy.networking.k8s.io/v1alpha2',
      kind: 'ClusterNetworkPolicy',
      metadata: { name: 'f', labels: { [FEDERATED_LABEL]: 'true' } },
      spec: {
        tier: 'Admin',
        priority: 1,
        subject: { namespaces: {} },
        egress: [
          {
            action: 'Accept',
            to: [{ pods: { podSelector: {} } }],
            protocols: [{ destinationNamedPort: 'http' }],
          },
        ],
      },
    })!;
    assert.equal(p.federated, true);
    roundTrips(p);
  });

  test('any valid generated policy reads back equal from what is written', () => {
    let valid = 0;
    fc.assert(
      fc.property(cnp, (raw) => {
        const p = readCnp(raw);
        fc.pre(p !== undefined);
        valid++;
        roundTrips(p!);
      }),
      { numRuns: 300, seed: 15 },
    );
    // The generator aims at valid policies: most runs test the round trip, not fc.pre.
    assert.ok(valid > 150, `${valid} of 300 generated policies were valid`);
  });
});
