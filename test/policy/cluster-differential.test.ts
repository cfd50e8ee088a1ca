/**
 * The compiled evaluator against the reference reading of the tiered
 * semantics (testing/reference.ts: Admin → NetworkPolicy (its own-node
 * exemption when it isolates) → Baseline → allow) on random clusters with ClusterNetworkPolicies of both
 * tiers, every action, colliding priorities and every peer kind (pods,
 * namespaces, networks, nodes), next to random NetworkPolicies. Any
 * disagreement is printed with the seed that reproduces it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import {
  readKubeObject,
  type ClusterNetworkPolicyObject,
  type NamespaceObject,
  type NetworkPolicyObject,
  type NodeObject,
  type PodObject,
} from '../../controller/kube/objects.js';
import { formatIp } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import { randomCluster } from '../../testing/random-cluster.js';
import { ReferenceCluster } from '../../testing/reference.js';

test('the compiled evaluator agrees with the reference tiered semantics on 300 random clusters with ClusterNetworkPolicies, cluster tiers scanned and peer-indexed', () => {
  let probes = 0;
  let denied = 0;
  let indexedLists = 0;
  /** Egress to the pod's own node that no NetworkPolicy isolates and a Baseline rule denies. */
  let ownNodeBaselineDenied = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const c = randomCluster(seed, { variety: 'basic', clusterPolicies: true });
    const model = new ClusterModel({ cluster: 'diff' });
    const namespaces: NamespaceObject[] = [];
    const pods: PodObject[] = [];
    const policies: NetworkPolicyObject[] = [];
    const nodes: NodeObject[] = [];
    const clusterPolicies: ClusterNetworkPolicyObject[] = [];
    for (const o of c.objects) {
      const read = readKubeObject(o);
      assert.equal(
        read.type,
        'object',
        `seed ${seed}: generator made an invalid object: ${JSON.stringify(read)}`,
      );
      if (read.type !== 'object') continue;
      model.apply({ type: 'upsert', object: read.object });
      const x = read.object;
      if (x.kind === 'Namespace') namespaces.push(x);
      else if (x.kind === 'Pod') pods.push(x);
      else if (x.kind === 'NetworkPolicy') policies.push(x);
      else if (x.kind === 'Node') nodes.push(x);
      else clusterPolicies.push(x);
    }
    const snapshot = model.snapshot();
    const tables = compile(snapshot, { classIndexMinRules: Number.POSITIVE_INFINITY });
    const indexed = compile(snapshot, { classIndexMinRules: 0 });
    for (const e of indexed.endpoints.values())
      for (const d of [e.ingress, e.egress]) {
        if (d.admin.length > 0 && d.adminIndex !== null) indexedLists++;
        if (d.baseline.length > 0 && d.baselineIndex !== null) indexedLists++;
      }
    const reference = new ReferenceCluster(namespaces, pods, policies, { nodes, clusterPolicies });
    for (const src of c.addresses)
      for (const dst of c.addresses) {
        if (typeof src !== typeof dst) continue;
        for (const [protocol, port] of c.services) {
          probes++;
          const want = reference.allows(src, dst, protocol, port);
          if (!want) {
            denied++;
            const e = tables.decide({ src, dst, protocol, dstPort: port }).egress;
            if (e.tier === 'baseline' && !e.allowed && e.endpoint?.node?.has(dst) === true)
              ownNodeBaselineDenied++;
          }
          for (const [how, t] of [
            ['scanned', tables],
            ['indexed', indexed],
          ] as const) {
            const got = t.allows({ src, dst, protocol, dstPort: port });
            if (got !== want)
              assert.fail(
                `seed ${seed} (${how}): ${formatIp(src)} -> ${formatIp(dst)} proto ${protocol} port ${port}: evaluator ${got}, reference ${want}\n${JSON.stringify(clusterPolicies, null, 1)}`,
              );
          }
        }
      }
  }
  assert.ok(probes > 1_000_000, `probed ${probes}`);
  assert.ok(denied > probes / 20, `only ${denied} of ${probes} probes denied`);
  assert.ok(indexedLists > 1000, `only ${indexedLists} cluster-tier lists indexed`);
  assert.ok(
    ownNodeBaselineDenied > 100,
    `only ${ownNodeBaselineDenied} probes of egress to the own node denied by the Baseline tier`,
  );
});
