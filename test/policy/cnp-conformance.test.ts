/**
 * The network-policy-api ClusterNetworkPolicy conformance scenarios
 * (testing/cnp-conformance.ts: admin and baseline tiers, TCP, UDP and SCTP,
 * rule order, Pass, inline CIDR peers, node peers, priority changes,
 * integration with NetworkPolicy) replayed through `weirctl analyze`'s path:
 * each step's objects are written as manifests, read back strictly
 * (readManifests, the CRD-derived field schema), modelled, compiled, and
 * every probe decided by the one evaluator. Steps accumulate, as upstream's
 * subtests patch the same cluster.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { analyse } from '../../cli/analysis.js';
import { parseIp } from '../../shared/net/ip.js';
import { explain } from '../../shared/policy/explain.js';
import { PROTOCOL_NUMBER } from '../../shared/policy/types.js';
import type { Raw } from '../../testing/cluster.js';
import { SCENARIOS, applyChanges, baseCluster, podAddress } from '../../testing/cnp-conformance.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-cnp-conformance-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let run = 0;
async function analyseObjects(objects: readonly Raw[]) {
  const file = join(dir, `cluster-${run++}.yaml`);
  await writeFile(file, objects.map((o) => stringify(o)).join('---\n'));
  const a = await analyse([file]);
  await rm(file);
  return a;
}

for (const scenario of SCENARIOS) {
  describe(`${scenario.name} (upstream ${scenario.upstream})`, () => {
    let objects: Raw[] = [...baseCluster(), ...scenario.policies];
    for (const step of scenario.steps) {
      test(step.name, async () => {
        objects = applyChanges(objects, step.changes ?? []);
        const a = await analyseObjects(objects);
        assert.deepEqual(a.issues, [], 'the scenario reads without problems');
        for (const p of step.probes) {
          const [from, to, protocol, port, want] = p;
          const packet = {
            src: parseIp(podAddress(from)),
            dst: parseIp(podAddress(to)),
            protocol: PROTOCOL_NUMBER[protocol],
            dstPort: port,
          };
          const verdict = a.tables.decide(packet);
          const why = explain(a.tables, verdict, { ...packet, protocol, port });
          assert.equal(
            verdict.allowed,
            want,
            `${from} -> ${to} ${protocol}/${port}: ${verdict.allowed ? 'allowed' : 'denied'}, upstream expects ${want ? 'allowed' : 'denied'}\n  egress: ${why.egress.reason}\n  ingress: ${why.ingress.reason}`,
          );
          assert.equal(a.tables.allows(packet), want, 'allows() agrees with decide()');
        }
      });
    }
  });
}

test('an explanation names the tier, the policy and the rule that decided, and the Pass that handed over', async () => {
  const s = SCENARIOS.find((x) => x.name === 'CNPAdminTierIntegration')!;
  let objects: Raw[] = [...baseCluster(), ...s.policies];
  objects = applyChanges(objects, s.steps.flatMap((x) => x.changes ?? []).slice(0, 1));
  const a = await analyseObjects(objects);
  const packet = {
    src: parseIp(podAddress('slytherin/0')),
    dst: parseIp(podAddress('gryffindor/0')),
    protocol: 6,
    dstPort: 80,
  };
  const why = explain(a.tables, a.tables.decide(packet), { ...packet, protocol: 'TCP', port: 80 });
  assert.equal(why.allowed, true);
  assert.equal(why.ingress.tier, 'namespace');
  assert.equal(
    why.ingress.reason,
    'Pass by admin ClusterNetworkPolicy pass-example (priority 10) rule "deny-all-ingress-from-slytherin" (spec.ingress[0].from[0]; peer: all pods in namespaces {conformance-house=slytherin}; ports: any protocol and port); then allowed by NetworkPolicy network-policy-conformance-gryffindor/allow-gress-from-to-slytherin-to-gryffindor spec.ingress[0].from[0] (peer: all pods in namespaces {conformance-house=slytherin}; ports: any protocol and port)',
  );
  assert.deepEqual(
    why.ingress.passed?.map((r) => [r.policy.tier, r.policy.name, r.name, r.action]),
    [['admin', 'pass-example', 'deny-all-ingress-from-slytherin', 'pass']],
  );
});
