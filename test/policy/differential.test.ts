/**
 * The compiled evaluator against the reference reading of the semantics
 * (test/support/reference.ts) on random clusters: random labels, selectors
 * with every operator, ipBlocks with excepts, named and numeric ports,
 * ranges, both policy types, IPv4 and IPv6. Any disagreement is printed with
 * the seed that reproduces it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject, type NamespaceObject, type NetworkPolicyObject, type PodObject } from '../../controller/model/kube-objects.js';
import { formatIp, parseIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import { namespace, networkPolicy, pod, type Raw } from '../support/cluster.js';
import { ReferenceCluster } from '../support/reference.js';

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  return { int, pick, chance };
}

const KEYS = ['app', 'tier', 'env'];
const VALUES = ['a', 'b', 'c'];
const PORT_NAMES = ['http', 'metrics', 'dns'];
const PORTS = [53, 80, 81, 443, 8080];
const PROTOS = ['TCP', 'UDP', 'SCTP'];

function randomCluster(seed: number): Raw[] {
  const r = rng(seed);
  const labels = () => Object.fromEntries(KEYS.filter(() => r.chance(0.6)).map((k) => [k, r.pick(VALUES)]));
  const selector = (): Raw => {
    const s: Raw = {};
    if (r.chance(0.5)) s.matchLabels = Object.fromEntries(KEYS.filter(() => r.chance(0.4)).map((k) => [k, r.pick(VALUES)]));
    if (r.chance(0.4)) {
      s.matchExpressions = [...Array(1 + r.int(2))].map(() => {
        const operator = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist']);
        return { key: r.pick(KEYS), operator, ...(operator === 'In' || operator === 'NotIn' ? { values: VALUES.filter(() => r.chance(0.5)).concat(r.pick(VALUES)) } : {}) };
      });
    }
    return s;
  };
  const objects: Raw[] = [];
  const nsNames = ['n0', 'n1', 'n2'];
  for (const ns of nsNames) objects.push(namespace(ns, labels()));
  let host = 1;
  for (const ns of nsNames) {
    for (let i = 0; i < 4; i++) {
      const ips = [`10.0.${nsNames.indexOf(ns)}.${host}`, ...(r.chance(0.3) ? [`fd00::${nsNames.indexOf(ns)}:${host}`] : [])];
      host++;
      const ports = PORT_NAMES.filter(() => r.chance(0.4)).map((name) => ({ name, port: r.pick(PORTS), protocol: r.pick(PROTOS) }));
      objects.push(pod(ns, `p${i}`, { labels: labels(), ips, ports }));
    }
  }
  const peer = (): Raw => {
    const kind = r.int(5);
    if (kind === 0) {
      const base = r.chance(0.8) ? { cidr: `10.0.${r.int(3)}.0/${r.pick([24, 25, 28])}` } : { cidr: 'fd00::/64' };
      const except = r.chance(0.5) && base.cidr.startsWith('10.') ? [`${base.cidr.split('/')[0]!.split('.').slice(0, 3).join('.')}.${r.pick([0, 4, 8])}/30`] : [];
      return { ipBlock: { ...base, except } };
    }
    if (kind === 1) return { podSelector: selector() };
    if (kind === 2) return { namespaceSelector: selector() };
    return { podSelector: selector(), namespaceSelector: selector() };
  };
  const port = (): Raw => {
    const p: Raw = {};
    if (r.chance(0.8)) p.protocol = r.pick(PROTOS);
    const k = r.int(4);
    if (k === 0) p.port = r.pick(PORTS);
    else if (k === 1) p.port = r.pick(PORT_NAMES);
    else if (k === 2) Object.assign(p, { port: 80, endPort: r.pick([81, 443]) });
    return p;
  };
  const rules = (peersKey: string): Raw[] =>
    [...Array(r.int(3))].map(() => ({
      ...(r.chance(0.7) ? { [peersKey]: [...Array(1 + r.int(2))].map(peer) } : {}),
      ...(r.chance(0.6) ? { ports: [...Array(1 + r.int(2))].map(port) } : {}),
    }));
  for (let i = 0; i < 1 + r.int(5); i++) {
    const spec: Raw = { podSelector: selector(), ingress: rules('from') };
    if (r.chance(0.5)) spec.egress = rules('to');
    if (r.chance(0.4)) spec.policyTypes = r.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
    objects.push(networkPolicy(r.pick(nsNames), `np${i}`, spec));
  }
  return objects;
}

test('the compiled evaluator agrees with the reference semantics on 300 random clusters', () => {
  let probes = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const raw = randomCluster(seed);
    const model = new ClusterModel({ cluster: 'diff' });
    const namespaces: NamespaceObject[] = [];
    const pods: PodObject[] = [];
    const policies: NetworkPolicyObject[] = [];
    for (const o of raw) {
      const read = readKubeObject(o);
      assert.equal(read.type, 'object', `seed ${seed}: generator made an invalid object: ${JSON.stringify(read)}`);
      if (read.type !== 'object') continue;
      model.apply({ type: 'upsert', object: read.object });
      if (read.object.kind === 'Namespace') namespaces.push(read.object);
      else if (read.object.kind === 'Pod') pods.push(read.object);
      else policies.push(read.object);
    }
    const tables = compile(model.snapshot());
    const reference = new ReferenceCluster(namespaces, pods, policies);
    const addresses: Ip[] = [...pods.flatMap((p) => p.ips.map(parseIp)), parseIp('10.0.0.200'), parseIp('10.0.1.5'), parseIp('8.8.8.8'), parseIp('fd00::77')];
    for (const src of addresses) {
      for (const dst of addresses) {
        if (typeof src !== typeof dst) continue;
        for (const [protocol, port] of [[6, 80], [6, 81], [17, 53], [132, 443], [6, 8080], [17, 9999]] as const) {
          probes++;
          const got = tables.allows({ src, dst, protocol, dstPort: port });
          const want = reference.allows(src, dst, protocol, port);
          if (got !== want) {
            assert.fail(`seed ${seed}: ${formatIp(src)} -> ${formatIp(dst)} proto ${protocol} port ${port}: evaluator ${got}, reference ${want}\n${JSON.stringify(policies, null, 1)}`);
          }
        }
      }
    }
  }
  assert.ok(probes > 100_000, `probed ${probes}`);
});
