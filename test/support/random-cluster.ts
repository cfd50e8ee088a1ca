/**
 * Random clusters for differential and incremental tests: random labels,
 * selectors with every operator, ipBlocks with excepts, named and numeric
 * ports, ranges, both policy types, IPv4 and IPv6. Deterministic per seed.
 */
import { namespace, networkPolicy, pod, type Raw } from './cluster.js';
import { seededRandom } from '../../shared/random.js';

export const rng = seededRandom;

const KEYS = ['app', 'tier', 'env'];
const VALUES = ['a', 'b', 'c'];
const PORT_NAMES = ['http', 'metrics', 'dns'];
const PORTS = [53, 80, 81, 443, 8080];
const PROTOS = ['TCP', 'UDP', 'SCTP'];

export function randomCluster(seed: number): Raw[] {
  const r = rng(seed);
  const labels = () =>
    Object.fromEntries(KEYS.filter(() => r.chance(0.6)).map((k) => [k, r.pick(VALUES)]));
  const selector = (): Raw => {
    const s: Raw = {};
    if (r.chance(0.5))
      s.matchLabels = Object.fromEntries(
        KEYS.filter(() => r.chance(0.4)).map((k) => [k, r.pick(VALUES)]),
      );
    if (r.chance(0.4)) {
      s.matchExpressions = [...Array(1 + r.int(2))].map(() => {
        const operator = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist']);
        return {
          key: r.pick(KEYS),
          operator,
          ...(operator === 'In' || operator === 'NotIn'
            ? { values: VALUES.filter(() => r.chance(0.5)).concat(r.pick(VALUES)) }
            : {}),
        };
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
      const ips = [
        `10.0.${nsNames.indexOf(ns)}.${host}`,
        ...(r.chance(0.3) ? [`fd00::${nsNames.indexOf(ns)}:${host}`] : []),
      ];
      host++;
      const ports = PORT_NAMES.filter(() => r.chance(0.4)).map((name) => ({
        name,
        port: r.pick(PORTS),
        protocol: r.pick(PROTOS),
      }));
      objects.push(pod(ns, `p${i}`, { labels: labels(), ips, ports, node: `node-${r.int(3)}` }));
    }
  }
  const peer = (): Raw => {
    const kind = r.int(5);
    if (kind === 0) {
      const base = r.chance(0.8)
        ? { cidr: `10.0.${r.int(3)}.0/${r.pick([24, 25, 28])}` }
        : { cidr: 'fd00::/64' };
      const except =
        r.chance(0.5) && base.cidr.startsWith('10.')
          ? [`${base.cidr.split('/')[0]!.split('.').slice(0, 3).join('.')}.${r.pick([0, 4, 8])}/30`]
          : [];
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
