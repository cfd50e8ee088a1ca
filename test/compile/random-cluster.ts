/**
 * Random clusters for the verdict-engine tests, as raw Kubernetes objects
 * (built into rule tables by test/support/cluster.ts `build`), and the probes
 * to ask of them: every address pair (pods, non-pods inside pod ranges,
 * outside addresses, v4-mapped IPv6, the ends of both address spaces) on the
 * services the policies and pods mention.
 *
 * Shape: three namespaces of 3–6 pods; IPv4, dual-stack and IPv6-only pods,
 * some with three addresses, now and then two pods sharing an address, and a
 * few that are not endpoints (host network, finished); named container ports
 * on every protocol; 1–6 policies with selector peers (every operator),
 * ipBlocks with excepts in both families, whole-space blocks, numeric, named,
 * ranged and absent ports, every policyTypes combination; pods on three
 * nodes with Node objects (IPv4, IPv6, internal and external addresses, one
 * inside the pod range) and a fourth without one. With `bigTables`,
 * 30–60 more policies select broadly, so that tables hold dozens of rules
 * (the native evaluator indexes those).
 */
import { parseIp, type Ip } from '../../shared/net/ip.js';
import type { Packet } from '../../shared/policy/rule-tables.js';
import { namespace, networkPolicy, node, pod, type Raw } from '../support/cluster.js';
import { seededRandom } from '../../shared/random.js';

export const rng = seededRandom;

const KEYS = ['app', 'tier', 'env'];
const VALUES = ['a', 'b', 'c'];
const PORT_NAMES = ['http', 'metrics', 'dns', 'grpc'];
const PORTS = [53, 80, 81, 443, 8080, 65535, 1];
const PROTOS = ['TCP', 'UDP', 'SCTP'] as const;
const PROTO_NUMBER = { TCP: 6, UDP: 17, SCTP: 132 } as const;

/** Addresses that are never pods (some inside pod ranges, some at the ends of the spaces). */
export const OUTSIDE = [
  '10.0.0.200',
  '10.0.1.5',
  '10.0.2.0',
  '8.8.8.8',
  '192.168.1.1',
  '0.0.0.0',
  '255.255.255.255',
  'fd00::77',
  'fd00::1:0',
  'fd00::2:ffff',
  '2001:db8::1',
  '::ffff:10.0.0.1',
  '::',
  'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
];

export interface RandomCluster {
  readonly objects: Raw[];
  /** Every address worth probing: pods' (endpoints or not) and OUTSIDE. */
  readonly addresses: Ip[];
  /** [protocol number, port] pairs worth probing. */
  readonly services: Array<readonly [number, number]>;
}

export function randomCluster(seed: number, options: { bigTables?: boolean } = {}): RandomCluster {
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
            ? { values: [...new Set(VALUES.filter(() => r.chance(0.5)).concat(r.pick(VALUES)))] }
            : {}),
        };
      });
    }
    return s;
  };
  const objects: Raw[] = [];
  const nsNames = ['n0', 'n1', 'n2'];
  for (const ns of nsNames) objects.push(namespace(ns, labels()));
  // Nodes draw from their own stream, so that the rest of a seed's cluster is what it was without them.
  const nr = rng(seed ^ 0x6e6f6465);
  const nodeAddresses: string[] = [];
  for (let n = 0; n < 3; n++) {
    const addresses: Array<string | readonly [string, string]> = [`192.168.0.${n + 1}`];
    if (nr.chance(0.5)) addresses.push(`fd01::${n + 1}`);
    if (nr.chance(0.4)) addresses.push(['ExternalIP', `203.0.113.${n + 1}`]);
    if (nr.chance(0.2)) addresses.push(`10.0.${n}.250`); // inside the pod range an ipBlock may cover
    nodeAddresses.push(...addresses.map((a) => (typeof a === 'string' ? a : a[1])));
    objects.push(node(`node-${n}`, [...addresses, ['Hostname', `node-${n}`]]));
  }
  const podIps: string[] = [];
  const services = new Map<string, readonly [number, number]>();
  const addService = (p: number, port: number) => services.set(`${p}/${port}`, [p, port]);
  for (const [p, port] of [
    [6, 80],
    [6, 81],
    [17, 53],
    [132, 443],
    [6, 8080],
    [17, 9999],
    [6, 0],
    [6, 65535],
    [1, 0],
    [17, 443],
  ] as const)
    addService(p, port);
  let host = 1;
  nsNames.forEach((ns, n) => {
    const count = 3 + r.int(4);
    for (let i = 0; i < count; i++, host++) {
      const v4 = `10.0.${n}.${host}`;
      const v6 = `fd00::${n}:${host}`;
      const kind = r.int(10);
      let ips =
        kind < 5 ? [v4] : kind < 8 ? [v4, v6] : kind < 9 ? [v6] : [v4, v6, `10.1.${n}.${host}`];
      if (podIps.length > 0 && r.chance(0.03)) ips = [r.pick(podIps)];
      podIps.push(...ips);
      const ports = PORT_NAMES.filter(() => r.chance(0.45)).map((name) => ({
        name,
        port: r.pick(PORTS.filter((x) => x > 0)),
        protocol: r.pick(PROTOS),
      }));
      for (const p of ports) addService(PROTO_NUMBER[p.protocol], p.port);
      const special = r.chance(0.05)
        ? { hostNetwork: true }
        : r.chance(0.05)
          ? { phase: 'Succeeded' }
          : {};
      objects.push(
        pod(ns, `p${i}`, { labels: labels(), ips, ports, node: `node-${nr.int(4)}`, ...special }),
      );
    }
  });
  const v4Block = (): Raw => {
    const n = r.int(3);
    const [cidr, excepts] = r.pick<readonly [string, readonly string[]]>([
      ['10.0.0.0/16', [`10.0.${n}.0/24`, `10.0.${n}.0/30`, '10.0.1.4/30']],
      [`10.0.${n}.0/24`, [`10.0.${n}.0/30`, `10.0.${n}.4/30`, `10.0.${n}.8/29`, `10.0.${n}.2/32`]],
      [`10.0.${n}.0/25`, [`10.0.${n}.0/30`, `10.0.${n}.12/31`]],
      [`10.0.${n}.0/28`, [`10.0.${n}.4/30`, `10.0.${n}.8/30`, `10.0.${n}.1/32`]],
      ['10.1.0.0/16', ['10.1.1.0/24']],
    ]);
    const except = r.chance(0.6) ? [...new Set(excepts.filter(() => r.chance(0.5)))] : [];
    return { ipBlock: { cidr, except } };
  };
  const v6Block = (): Raw => {
    const cidr = r.pick(['fd00::/64', 'fd00::/96', 'fd00::1:0/112']);
    const except = r.chance(0.5)
      ? cidr === 'fd00::/64'
        ? ['fd00::1:0/112']
        : cidr === 'fd00::/96'
          ? ['fd00::2:0/120']
          : ['fd00::1:0/126']
      : [];
    return { ipBlock: { cidr, except } };
  };
  const peer = (): Raw => {
    const kind = r.int(8);
    if (kind === 0) return v4Block();
    if (kind === 1) return v6Block();
    if (kind === 2)
      return r.chance(0.5)
        ? { ipBlock: { cidr: '0.0.0.0/0', except: r.chance(0.5) ? ['10.0.0.0/8'] : [] } }
        : { ipBlock: { cidr: '::/0', except: r.chance(0.5) ? ['fd00::/16'] : [] } };
    if (kind === 3 || kind === 4) return { podSelector: selector() };
    if (kind === 5) return { namespaceSelector: selector() };
    return { podSelector: selector(), namespaceSelector: selector() };
  };
  const port = (): Raw => {
    const p: Raw = {};
    if (r.chance(0.8)) p.protocol = r.pick(PROTOS);
    const k = r.int(5);
    if (k === 0) p.port = r.pick(PORTS);
    else if (k === 1 || k === 2) p.port = r.pick(PORT_NAMES);
    else if (k === 3) Object.assign(p, { port: 80, endPort: r.pick([81, 443, 65535]) });
    return p;
  };
  const rules = (peersKey: string): Raw[] =>
    [...Array(r.int(4))].map(() => ({
      ...(r.chance(0.75) ? { [peersKey]: [...Array(1 + r.int(3))].map(peer) } : {}),
      ...(r.chance(0.65) ? { ports: [...Array(1 + r.int(2))].map(port) } : {}),
    }));
  const policy = (name: string, broad: boolean) => {
    const spec: Raw = {
      podSelector: broad && r.chance(0.7) ? {} : selector(),
      ingress: rules('from'),
    };
    if (r.chance(0.6)) spec.egress = rules('to');
    if (r.chance(0.4)) spec.policyTypes = r.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
    objects.push(networkPolicy(r.pick(nsNames), name, spec));
  };
  for (let i = 0; i < 1 + r.int(6); i++) policy(`np${i}`, false);
  if (options.bigTables) for (let i = 0; i < 30 + r.int(31); i++) policy(`big${i}`, true);
  const addresses = [...new Set([...podIps, ...nodeAddresses, ...OUTSIDE])].map(parseIp);
  return { objects, addresses, services: [...services.values()] };
}

/** Every (src, dst, service) over the cluster's addresses, both families and mixed. */
export function allProbes(c: RandomCluster): Packet[] {
  const out: Packet[] = [];
  for (const src of c.addresses)
    for (const dst of c.addresses)
      for (const [protocol, dstPort] of c.services) out.push({ src, dst, protocol, dstPort });
  return out;
}
