/**
 * The compiled evaluator against the reference reading of the semantics
 * (testing/reference.ts) on random clusters: random labels, selectors
 * with every operator, ipBlocks with excepts, named and numeric ports,
 * ranges, both policy types, IPv4 and IPv6. Any disagreement is printed with
 * the seed that reproduces it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import {
  readKubeObject,
  type NamespaceObject,
  type NetworkPolicyObject,
  type PodObject,
} from '../../controller/kube/objects.js';
import { formatIp, parseIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import { randomCluster } from '../../testing/random-cluster.js';
import { ReferenceCluster } from '../../testing/reference.js';

test('the compiled evaluator agrees with the reference semantics on 300 random clusters', () => {
  let probes = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const raw = randomCluster(seed, { variety: 'basic' }).objects;
    const model = new ClusterModel({ cluster: 'diff' });
    const namespaces: NamespaceObject[] = [];
    const pods: PodObject[] = [];
    const policies: NetworkPolicyObject[] = [];
    for (const o of raw) {
      const read = readKubeObject(o);
      assert.equal(
        read.type,
        'object',
        `seed ${seed}: generator made an invalid object: ${JSON.stringify(read)}`,
      );
      if (read.type !== 'object') continue;
      model.apply({ type: 'upsert', object: read.object });
      if (read.object.kind === 'Namespace') namespaces.push(read.object);
      else if (read.object.kind === 'Pod') pods.push(read.object);
      else if (read.object.kind === 'NetworkPolicy') policies.push(read.object);
    }
    const tables = compile(model.snapshot());
    const reference = new ReferenceCluster(namespaces, pods, policies);
    const addresses: Ip[] = [
      ...pods.flatMap((p) => p.ips.map(parseIp)),
      parseIp('10.0.0.200'),
      parseIp('10.0.1.5'),
      parseIp('8.8.8.8'),
      parseIp('fd00::77'),
    ];
    for (const src of addresses) {
      for (const dst of addresses) {
        if (typeof src !== typeof dst) continue;
        for (const [protocol, port] of [
          [6, 80],
          [6, 81],
          [17, 53],
          [132, 443],
          [6, 8080],
          [17, 9999],
        ] as const) {
          probes++;
          const got = tables.allows({ src, dst, protocol, dstPort: port });
          const want = reference.allows(src, dst, protocol, port);
          if (got !== want) {
            assert.fail(
              `seed ${seed}: ${formatIp(src)} -> ${formatIp(dst)} proto ${protocol} port ${port}: evaluator ${got}, reference ${want}\n${JSON.stringify(policies, null, 1)}`,
            );
          }
        }
      }
    }
  }
  assert.ok(probes > 100_000, `probed ${probes}`);
});
