/**
 * Seeded random clusters, as raw Kubernetes objects (the API shape, built
 * with testing/cluster.ts), the same for the same seed on every run and
 * machine. Tests and benchmarks take their clusters from here and nowhere
 * else. Two shapes, for two purposes:
 *
 * `randomCluster(seed, options)`: small clusters that reach the corners of
 * the semantics, for differential and property tests. Three namespaces n0..n2,
 * pods in 10.0.n.0/24 and fd00::n:0/112, labels over app/tier/env = a/b/c,
 * selectors with every operator, named container ports on every protocol,
 * 1–6 policies with selector and ipBlock peers (with excepts), numeric,
 * named, ranged and absent ports, every policyTypes combination. `variety`:
 *
 * - 'basic': four pods a namespace on nodes node-0..node-2, IPv4 with a
 *   third dual-stack; In/NotIn values may repeat; ipBlocks in 10.0.0.0/16
 *   (one /30 except) or fd00::/64.
 * - 'edge' (the default): 3–6 pods a namespace (not on nodes): IPv4,
 *   dual-stack, IPv6-only and three-address pods, now and then two pods
 *   sharing an address, a few that are not endpoints (host network,
 *   finished); ipBlocks with several excepts in both families, whole-space
 *   blocks; ports up to 65535.
 *
 * With `bigTables`, 30–60 more policies select broadly, so that tables hold
 * dozens of rules (the native evaluator indexes those). `allProbes` asks
 * every address pair of a cluster on every service it mentions.
 *
 * `realisticCluster(namespaces, seed)`: a cluster at production scale for
 * the benchmarks, modelled on what clusters carry (described at
 * `realisticCluster`). The two share the builders and the generator
 * (shared/random.ts) but not their bodies: one draws for coverage, the other
 * for a representative mix, and a body serving both would be a switch.
 */
import { formatIp, parseIp, type Ip } from '../shared/net/ip.js';
import type { Packet } from '../shared/policy/rule-tables.js';
import { seededRandom, type SeededRandom } from '../shared/random.js';
import { clusterNetworkPolicy, namespace, networkPolicy, node, pod, type Raw } from './cluster.js';

// ---- small clusters for tests ------------------------------------------------

export type Variety = 'basic' | 'edge';

export interface RandomClusterOptions {
  /** Default 'edge'. */
  readonly variety?: Variety;
  /** 30–60 more policies that select broadly. */
  readonly bigTables?: boolean;
  /**
   * 1–6 ClusterNetworkPolicies (both tiers, every action, colliding
   * priorities, every peer kind) and, for 'basic', labelled Nodes with
   * addresses for them to select. Drawn from their own stream: the rest of
   * a seed's cluster is what it is without them.
   */
  readonly clusterPolicies?: boolean;
}

export interface RandomCluster {
  readonly objects: Raw[];
  /** Every address worth probing: pods' (endpoints or not) and OUTSIDE. */
  readonly addresses: Ip[];
  /** [protocol number, port] pairs worth probing. */
  readonly services: Array<readonly [number, number]>;
}

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

const KEYS = ['app', 'tier', 'env'];
const VALUES = ['a', 'b', 'c'];
const PROTOS = ['TCP', 'UDP', 'SCTP'] as const;
const PROTO_NUMBER = { TCP: 6, UDP: 17, SCTP: 132 } as const;
const NAMESPACES = ['n0', 'n1', 'n2'];
/** Services probed whatever the cluster mentions. */
const BASE_SERVICES = [
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
] as const;

type PeerKind =
  | 'simple-block'
  | 'v4-block'
  | 'v6-block'
  | 'whole-space'
  | 'pods'
  | 'namespaces'
  | 'both';
type PortKind = 'numeric' | 'named' | 'range' | 'none';

/**
 * What a variety draws from, and with which odds. A variety's clusters are
 * its draws in a fixed order: changing a number here changes every cluster
 * of that variety (and the tests that run on them).
 */
interface VarietyTable {
  readonly portNames: readonly string[];
  readonly ports: readonly number[];
  /** In/NotIn values may repeat (validation accepts it; the compiler reads them as a set). */
  readonly repeatValues: boolean;
  /** Odds that a pod declares each named port. */
  readonly containerPortChance: number;
  /** A peer's kind: one drawn uniformly from the list (repeats weigh). */
  readonly peers: readonly PeerKind[];
  readonly portKinds: readonly PortKind[];
  /** endPort of a range port (which starts at 80). */
  readonly endPorts: readonly number[];
  /** Rules a direction: r.int(maxRules); peers 1 + r.int(maxPeers) when any. */
  readonly maxRules: number;
  readonly peersChance: number;
  readonly maxPeers: number;
  readonly portsChance: number;
  /** Policies: 1 + r.int(maxPolicies), the bound drawn again at every step. */
  readonly maxPolicies: number;
  readonly egressChance: number;
}

const VARIETIES: Record<Variety, VarietyTable> = {
  basic: {
    portNames: ['http', 'metrics', 'dns'],
    ports: [53, 80, 81, 443, 8080],
    repeatValues: true,
    containerPortChance: 0.4,
    peers: ['simple-block', 'pods', 'namespaces', 'both', 'both'],
    portKinds: ['numeric', 'named', 'range', 'none'],
    endPorts: [81, 443],
    maxRules: 3,
    peersChance: 0.7,
    maxPeers: 2,
    portsChance: 0.6,
    maxPolicies: 5,
    egressChance: 0.5,
  },
  edge: {
    portNames: ['http', 'metrics', 'dns', 'grpc'],
    ports: [53, 80, 81, 443, 8080, 65535, 1],
    repeatValues: false,
    containerPortChance: 0.45,
    peers: ['v4-block', 'v6-block', 'whole-space', 'pods', 'pods', 'namespaces', 'both', 'both'],
    portKinds: ['numeric', 'named', 'named', 'range', 'none'],
    endPorts: [81, 443, 65535],
    maxRules: 4,
    peersChance: 0.75,
    maxPeers: 3,
    portsChance: 0.65,
    maxPolicies: 6,
    egressChance: 0.6,
  },
};

export function randomCluster(seed: number, options: RandomClusterOptions = {}): RandomCluster {
  const variety = options.variety ?? 'edge';
  const v = VARIETIES[variety];
  const r = seededRandom(seed);
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
        const values = () => {
          const drawn = VALUES.filter(() => r.chance(0.5)).concat(r.pick(VALUES));
          return v.repeatValues ? drawn : [...new Set(drawn)];
        };
        return {
          key: r.pick(KEYS),
          operator,
          ...(operator === 'In' || operator === 'NotIn' ? { values: values() } : {}),
        };
      });
    }
    return s;
  };

  const objects: Raw[] = [];
  for (const ns of NAMESPACES) objects.push(namespace(ns, labels()));
  // Edge clusters have Nodes: three with addresses (IPv4, IPv6, internal and
  // external, one inside the pod range an ipBlock may cover) and pods on a
  // fourth without one. They draw from their own stream, so that the rest of
  // a seed's cluster is what it was without them.
  const nr = seededRandom(seed ^ 0x6e6f6465);
  const nodeAddresses: string[] = [];
  if (variety === 'edge')
    for (let n = 0; n < 3; n++) {
      const addresses: Array<string | readonly [string, string]> = [`192.168.0.${n + 1}`];
      if (nr.chance(0.5)) addresses.push(`fd01::${n + 1}`);
      if (nr.chance(0.4)) addresses.push(['ExternalIP', `203.0.113.${n + 1}`]);
      if (nr.chance(0.2)) addresses.push(`10.0.${n}.250`);
      nodeAddresses.push(...addresses.map((a) => (typeof a === 'string' ? a : a[1])));
      objects.push(node(`node-${n}`, [...addresses, ['Hostname', `node-${n}`]]));
    }

  const podIps: string[] = [];
  const services = new Map<string, readonly [number, number]>();
  const addService = (p: number, port: number) => services.set(`${p}/${port}`, [p, port]);
  for (const [p, port] of BASE_SERVICES) addService(p, port);
  const containerPorts = () =>
    v.portNames
      .filter(() => r.chance(v.containerPortChance))
      .map((name) => ({ name, port: r.pick(v.ports), protocol: r.pick(PROTOS) }));
  const basicPod = (ns: string, n: number, i: number, host: number): Raw => {
    const ips = [`10.0.${n}.${host}`, ...(r.chance(0.3) ? [`fd00::${n}:${host}`] : [])];
    const ports = containerPorts();
    podIps.push(...ips);
    for (const p of ports) addService(PROTO_NUMBER[p.protocol], p.port);
    return pod(ns, `p${i}`, { labels: labels(), ips, ports, node: `node-${r.int(3)}` });
  };
  const edgePod = (ns: string, n: number, i: number, host: number): Raw => {
    const v4 = `10.0.${n}.${host}`;
    const v6 = `fd00::${n}:${host}`;
    const kind = r.int(10);
    let ips =
      kind < 5 ? [v4] : kind < 8 ? [v4, v6] : kind < 9 ? [v6] : [v4, v6, `10.1.${n}.${host}`];
    if (podIps.length > 0 && r.chance(0.03)) ips = [r.pick(podIps)];
    podIps.push(...ips);
    const ports = containerPorts();
    for (const p of ports) addService(PROTO_NUMBER[p.protocol], p.port);
    const special = r.chance(0.05)
      ? { hostNetwork: true }
      : r.chance(0.05)
        ? { phase: 'Succeeded' }
        : {};
    return pod(ns, `p${i}`, {
      labels: labels(),
      ips,
      ports,
      node: `node-${nr.int(4)}`,
      ...special,
    });
  };
  let host = 1;
  NAMESPACES.forEach((ns, n) => {
    const count = variety === 'basic' ? 4 : 3 + r.int(4);
    for (let i = 0; i < count; i++, host++)
      objects.push(variety === 'basic' ? basicPod(ns, n, i, host) : edgePod(ns, n, i, host));
  });

  const simpleBlock = (): Raw => {
    const base = r.chance(0.8)
      ? { cidr: `10.0.${r.int(3)}.0/${r.pick([24, 25, 28])}` }
      : { cidr: 'fd00::/64' };
    const except =
      r.chance(0.5) && base.cidr.startsWith('10.')
        ? [`${base.cidr.split('/')[0]!.split('.').slice(0, 3).join('.')}.${r.pick([0, 4, 8])}/30`]
        : [];
    return { ipBlock: { ...base, except } };
  };
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
    switch (v.peers[r.int(v.peers.length)]!) {
      case 'simple-block':
        return simpleBlock();
      case 'v4-block':
        return v4Block();
      case 'v6-block':
        return v6Block();
      case 'whole-space':
        return r.chance(0.5)
          ? { ipBlock: { cidr: '0.0.0.0/0', except: r.chance(0.5) ? ['10.0.0.0/8'] : [] } }
          : { ipBlock: { cidr: '::/0', except: r.chance(0.5) ? ['fd00::/16'] : [] } };
      case 'pods':
        return { podSelector: selector() };
      case 'namespaces':
        return { namespaceSelector: selector() };
      case 'both':
        return { podSelector: selector(), namespaceSelector: selector() };
    }
  };
  const port = (): Raw => {
    const p: Raw = {};
    if (r.chance(0.8)) p.protocol = r.pick(PROTOS);
    const kind = v.portKinds[r.int(v.portKinds.length)]!;
    if (kind === 'numeric') p.port = r.pick(v.ports);
    else if (kind === 'named') p.port = r.pick(v.portNames);
    else if (kind === 'range') Object.assign(p, { port: 80, endPort: r.pick(v.endPorts) });
    return p;
  };
  const rules = (peersKey: string): Raw[] =>
    [...Array(r.int(v.maxRules))].map(() => ({
      ...(r.chance(v.peersChance)
        ? { [peersKey]: [...Array(1 + r.int(v.maxPeers))].map(peer) }
        : {}),
      ...(r.chance(v.portsChance) ? { ports: [...Array(1 + r.int(2))].map(port) } : {}),
    }));
  const policy = (name: string, broad: boolean) => {
    const spec: Raw = {
      podSelector: broad && r.chance(0.7) ? {} : selector(),
      ingress: rules('from'),
    };
    if (r.chance(v.egressChance)) spec.egress = rules('to');
    if (r.chance(0.4)) spec.policyTypes = r.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
    objects.push(networkPolicy(r.pick(NAMESPACES), name, spec));
  };
  for (let i = 0; i < 1 + r.int(v.maxPolicies); i++) policy(`np${i}`, false);
  if (options.bigTables) for (let i = 0; i < 30 + r.int(31); i++) policy(`big${i}`, true);
  if (options.clusterPolicies) {
    const cr = seededRandom(seed ^ 0x636e70);
    if (variety === 'basic')
      for (let n = 0; n < 3; n++) {
        const addresses = [`192.168.0.${n + 1}`, ...(cr.chance(0.4) ? [`fd01::${n + 1}`] : [])];
        nodeAddresses.push(...addresses);
        objects.push(node(`node-${n}`, addresses, nodeLabels(cr)));
      }
    objects.push(...clusterNetworkPolicies(cr, v));
  }
  const addresses = [...new Set([...podIps, ...nodeAddresses, ...OUTSIDE])].map(parseIp);
  return { objects, addresses, services: [...services.values()] };
}

function nodeLabels(r: SeededRandom): Record<string, string> {
  return Object.fromEntries(
    ['zone', 'role'].filter(() => r.chance(0.7)).map((k) => [k, r.pick(VALUES)]),
  );
}

/** Networks a random cluster policy names: pod ranges, node addresses, whole spaces, outside. */
const CNP_NETWORKS = [
  '10.0.0.0/24',
  '10.0.1.0/25',
  '10.0.0.0/8',
  '192.168.0.0/30',
  '192.168.0.2/32',
  '0.0.0.0/0',
  '::/0',
  'fd00::/64',
  'fd01::/64',
  '8.8.8.0/24',
];

function clusterNetworkPolicies(r: SeededRandom, v: VarietyTable): Raw[] {
  const selector = (keys: readonly string[]): Raw => {
    const s: Raw = {};
    if (r.chance(0.6))
      s.matchLabels = Object.fromEntries(
        keys.filter(() => r.chance(0.4)).map((k) => [k, r.pick(VALUES)]),
      );
    if (r.chance(0.3))
      s.matchExpressions = [
        r.chance(0.5)
          ? { key: r.pick(keys), operator: r.pick(['In', 'NotIn']), values: [r.pick(VALUES)] }
          : { key: r.pick(keys), operator: r.pick(['Exists', 'DoesNotExist']) },
      ];
    return s;
  };
  const nsSelector = (): Raw =>
    r.chance(0.3)
      ? { matchLabels: { 'kubernetes.io/metadata.name': r.pick(NAMESPACES) } }
      : selector(KEYS);
  const pods = (): Raw => ({
    ...(r.chance(0.7) ? { namespaceSelector: nsSelector() } : {}),
    podSelector: selector(KEYS),
  });
  const podPeer = (): Raw => (r.chance(0.4) ? { namespaces: nsSelector() } : { pods: pods() });
  const protocols = (named: boolean): Raw[] =>
    [...Array(1 + r.int(2))].map(() => {
      if (named && r.chance(0.3)) return { destinationNamedPort: r.pick(v.portNames) };
      const proto = r.pick(['tcp', 'udp', 'sctp']);
      const destinationPort = r.chance(0.6)
        ? { number: r.pick(v.ports) }
        : { range: { start: 80, end: r.pick([81, 443, 9999]) } };
      return { [proto]: { destinationPort } };
    });
  const rule = (ingress: boolean, i: number): Raw => {
    const peers: Raw[] = [...Array(1 + r.int(2))].map(() => {
      if (ingress) return podPeer();
      const k = r.int(10);
      if (k < 5) return podPeer();
      if (k < 8)
        return { networks: [...new Set([...Array(1 + r.int(2))].map(() => r.pick(CNP_NETWORKS)))] };
      return { nodes: selector(['zone', 'role']) };
    });
    const named = peers.every((p) => p.namespaces !== undefined || p.pods !== undefined);
    return {
      ...(r.chance(0.7) ? { name: `r${i}` } : {}),
      action: r.pick(['Accept', 'Deny', 'Pass']),
      [ingress ? 'from' : 'to']: peers,
      ...(r.chance(0.5) ? { protocols: protocols(named) } : {}),
    };
  };
  const out: Raw[] = [];
  const count = 1 + r.int(6);
  for (let i = 0; i < count; i++) {
    const spec: Raw = {
      tier: r.chance(0.5) ? 'Admin' : 'Baseline',
      priority: r.pick([0, 1, 5, 5, 10, 1000]),
      subject: r.chance(0.4) ? { namespaces: nsSelector() } : { pods: pods() },
    };
    if (r.chance(0.8)) spec.ingress = [...Array(1 + r.int(3))].map((_, k) => rule(true, k));
    if (r.chance(0.7)) spec.egress = [...Array(1 + r.int(3))].map((_, k) => rule(false, k));
    out.push(clusterNetworkPolicy(`cnp${r.int(3)}${String.fromCharCode(97 + i)}`, spec));
  }
  return out;
}

/** Every (src, dst, service) over the cluster's addresses, both families and mixed. */
export function allProbes(c: RandomCluster): Packet[] {
  const out: Packet[] = [];
  for (const src of c.addresses)
    for (const dst of c.addresses)
      for (const [protocol, dstPort] of c.services) out.push({ src, dst, protocol, dstPort });
  return out;
}

// ---- clusters at scale for benchmarks ----------------------------------------

export const PODS_PER_NAMESPACE = 10;
export const POLICIES_PER_NAMESPACE = 10;

type Tier = 'frontend' | 'backend' | 'data' | 'system';

interface PortSpec {
  readonly name: string;
  readonly port: number;
  readonly protocol?: 'TCP' | 'UDP' | 'SCTP';
}

interface AppSpec {
  readonly name: string;
  readonly tier: Tier;
  readonly ports: readonly PortSpec[];
  /** Label key naming the app (system components use their own). */
  readonly appLabel?: string;
}

const APPS: readonly AppSpec[] = [
  {
    name: 'web',
    tier: 'frontend',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'metrics', port: 9100 },
    ],
  },
  {
    name: 'gateway',
    tier: 'frontend',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'https', port: 8443 },
      { name: 'metrics', port: 9100 },
    ],
  },
  { name: 'storefront', tier: 'frontend', ports: [{ name: 'http', port: 3000 }] },
  {
    name: 'api',
    tier: 'backend',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'grpc', port: 9090 },
      { name: 'metrics', port: 9100 },
    ],
  },
  {
    name: 'auth',
    tier: 'backend',
    ports: [
      { name: 'grpc', port: 9090 },
      { name: 'http', port: 8080 },
    ],
  },
  {
    name: 'orders',
    tier: 'backend',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'metrics', port: 9100 },
    ],
  },
  { name: 'worker', tier: 'backend', ports: [{ name: 'metrics', port: 9100 }] },
  {
    name: 'search',
    tier: 'backend',
    ports: [
      { name: 'http', port: 9200 },
      { name: 'transport', port: 9300 },
    ],
  },
  {
    name: 'notifier',
    tier: 'backend',
    ports: [
      { name: 'http', port: 8080 },
      { name: 'statsd', port: 8125, protocol: 'UDP' },
    ],
  },
  {
    name: 'postgres',
    tier: 'data',
    ports: [
      { name: 'postgres', port: 5432 },
      { name: 'metrics', port: 9187 },
    ],
  },
  { name: 'mysql', tier: 'data', ports: [{ name: 'mysql', port: 3306 }] },
  { name: 'redis', tier: 'data', ports: [{ name: 'redis', port: 6379 }] },
  {
    name: 'kafka',
    tier: 'data',
    ports: [
      { name: 'kafka', port: 9092 },
      { name: 'metrics', port: 9100 },
    ],
  },
  { name: 'memcached', tier: 'data', ports: [{ name: 'memcache', port: 11211 }] },
];
const FRONTENDS = APPS.filter((a) => a.tier === 'frontend');
const BACKENDS = APPS.filter((a) => a.tier === 'backend');
const DATA = APPS.filter((a) => a.tier === 'data');

const TEAMS = [
  'payments',
  'checkout',
  'catalog',
  'search',
  'identity',
  'growth',
  'ads',
  'mobile',
  'platform',
  'data',
  'ml',
  'billing',
  'support',
  'risk',
  'logistics',
  'inventory',
  'messaging',
  'media',
  'maps',
  'pricing',
  'reviews',
  'social',
  'security',
  'infra',
];
const ENVS: ReadonlyArray<readonly [string, number]> = [
  ['prod', 5],
  ['staging', 3],
  ['dev', 2],
];
const PRIVATE = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];

/** External networks that partner egress rules name: [cidr, except]. */
export const PARTNER_NETWORKS: ReadonlyArray<readonly [string, string]> = [
  ['203.0.113.0/24', '203.0.113.128/28'],
  ['198.51.100.0/24', '198.51.100.0/29'],
  ['192.0.2.0/24', '192.0.2.240/28'],
  ['100.64.16.0/20', '100.64.20.0/24'],
  ['52.94.0.0/16', '52.94.128.0/20'],
  ['34.120.0.0/14', '34.121.0.0/16'],
  ['151.101.0.0/16', '151.101.64.0/18'],
  ['140.82.112.0/20', '140.82.112.0/24'],
];

/** A pod as the probe generator needs it. */
export interface PodInfo {
  readonly namespace: number;
  /** IPv4 as a number. */
  readonly ip: number;
  readonly ipText: string;
  /** Container ports (named or not). */
  readonly ports: ReadonlyArray<{
    readonly port: number;
    readonly protocol: 'TCP' | 'UDP' | 'SCTP';
  }>;
  /** False for host-network and finished pods. */
  readonly endpoint: boolean;
  readonly dns: boolean;
}

/**
 * Pods and NetworkPolicies per namespace (default 10 and 10). Antrea's
 * published scale test is 4 and 3 (25,000 namespaces, 100,000 pods, 75,000
 * policies). A namespace runs at least one pod per app of its stack, and
 * carries its cluster services' fixed policies, so small counts are a floor.
 */
export interface ClusterShape {
  readonly podsPerNamespace?: number;
  readonly policiesPerNamespace?: number;
  /** Nodes the pods are spread over (default: one per 100 pods, at least 3). */
  readonly nodes?: number;
}

export interface RealisticCluster {
  readonly namespaceCount: number;
  readonly podCount: number;
  readonly policyCount: number;
  /** Namespaces, then pods, then policies. */
  readonly objects: readonly Raw[];
  readonly pods: readonly PodInfo[];
  /** Pods of each namespace (indexes into `pods`). */
  readonly podsByNamespace: readonly (readonly number[])[];
  /** kube-dns pods. */
  readonly dnsPods: readonly number[];
}

interface NamespaceCtx {
  readonly index: number;
  readonly name: string;
  readonly team: string;
  readonly env: string;
  readonly apps: readonly AppSpec[];
  readonly kind: 'kube-system' | 'monitoring' | 'ingress-nginx' | 'app';
}

/**
 * A cluster for the benchmarks, deterministic for a given namespace count and
 * seed. Per namespace: 10 pods and 10 NetworkPolicies. The first three
 * namespaces are cluster services (kube-system with kube-dns, monitoring
 * with Prometheus, ingress-nginx); the rest are application namespaces owned
 * by one of 24 teams in one of three environments, each running a small
 * stack (a frontend, one to three backends, one or two data stores) with
 * named container ports. Policies are drawn from templates modelled on what
 * clusters actually carry: default-deny (ingress, or ingress and egress),
 * allow-DNS, same-namespace, app-to-app by podSelector, ingress-controller
 * and monitoring access by namespaceSelector (matchLabels and
 * matchExpressions), cross-team namespace+pod selectors, `namespaceSelector:
 * {}` peers, ipBlock with except, named, numeric and endPort ports, egress to
 * the internet, partners and data stores.
 *
 * Pods get IPv4 addresses from per-node /23s in 10.244.0.0/14. A few pods are
 * on the host network or finished: they are not policy endpoints, as in a
 * real cluster.
 */
export function realisticCluster(
  namespaceCount: number,
  seed = 0x5eed,
  shape: ClusterShape = {},
): RealisticCluster {
  if (namespaceCount < 4) throw new Error('need at least 4 namespaces');
  const podsPerNamespace = shape.podsPerNamespace ?? PODS_PER_NAMESPACE;
  const policiesPerNamespace = shape.policiesPerNamespace ?? POLICIES_PER_NAMESPACE;
  const rng = seededRandom(seed ^ namespaceCount);
  const podTotal = namespaceCount * podsPerNamespace;
  const nodeCount = shape.nodes ?? Math.max(3, Math.ceil(podTotal / 100));
  const nodeUsed = new Array<number>(nodeCount).fill(0);
  const POD_BASE = ((10 << 24) | (244 << 16)) >>> 0;
  const allocate = (): { ip: number; node: number } => {
    let node = rng.int(nodeCount);
    while (nodeUsed[node]! >= 500) node = (node + 1) % nodeCount;
    const n = nodeUsed[node]!;
    nodeUsed[node] = n + 1;
    return { ip: POD_BASE + node * 512 + 1 + n, node };
  };

  const nsObjects: Raw[] = [];
  const podObjects: Raw[] = [];
  const policyObjects: Raw[] = [];
  const pods: PodInfo[] = [];
  const podsByNamespace: number[][] = [];
  const dnsPods: number[] = [];
  const usedNames = new Set<string>();

  for (let i = 0; i < namespaceCount; i++) {
    const ctx = namespaceContext(i, rng, usedNames);
    const labels: Record<string, string> = { team: ctx.team, env: ctx.env };
    if (ctx.kind === 'kube-system') labels.purpose = 'system';
    else if (ctx.kind === 'monitoring') labels.purpose = 'monitoring';
    else if (ctx.kind === 'ingress-nginx') labels.purpose = 'ingress';
    else {
      if (rng.chance(0.4)) labels['istio-injection'] = 'enabled';
      if (rng.chance(0.1)) labels.compliance = rng.pick(['pci', 'sox', 'hipaa']);
      if (rng.chance(0.05)) labels.purpose = 'observability';
    }
    nsObjects.push(namespace(ctx.name, labels));

    // Pods: every app at least one replica, the rest spread at random.
    const replicas = ctx.apps.map(() => 1);
    for (let k = ctx.apps.length; k < podsPerNamespace; k++) {
      const a = rng.int(ctx.apps.length);
      replicas[a] = replicas[a]! + 1;
    }
    const mine: number[] = [];
    ctx.apps.forEach((app, a) => {
      const hash = token(rng, 10);
      const version = rng.weighted<string | undefined>([
        ['v1', 5],
        ['v2', 3],
        ['v3', 1],
        [undefined, 1.5],
      ]);
      for (let r = 0; r < replicas[a]!; r++) {
        const { ip, node } = allocate();
        const podLabels: Record<string, string> = {
          [app.appLabel ?? 'app']: app.name,
          tier: app.tier,
          team: ctx.team,
          'pod-template-hash': hash,
        };
        if (app.appLabel !== undefined && app.appLabel !== 'app') podLabels.app = app.name;
        if (version !== undefined) podLabels.version = version;
        // A few non-endpoints, as in any cluster: host-network daemons in
        // kube-system, finished jobs elsewhere.
        const hostNetwork = ctx.kind === 'kube-system' && app.name === 'kube-proxy';
        const finished = ctx.kind === 'app' && rng.chance(0.01);
        const ipText = formatIp(ip);
        podObjects.push(
          pod(ctx.name, `${app.name}-${hash}-${token(rng, 5)}`, {
            labels: podLabels,
            ips: [ipText],
            node: `node-${String(node).padStart(4, '0')}`,
            ports: app.ports.map((p) => ({
              name: p.name,
              port: p.port,
              ...(p.protocol ? { protocol: p.protocol } : {}),
            })),
            ...(hostNetwork ? { hostNetwork: true } : {}),
            ...(finished ? { phase: 'Succeeded' } : {}),
          }),
        );
        const idx = pods.length;
        const isDns = app.name === 'coredns';
        pods.push({
          namespace: i,
          ip,
          ipText,
          ports: app.ports.map((p) => ({ port: p.port, protocol: p.protocol ?? 'TCP' })),
          endpoint: !hostNetwork && !finished,
          dns: isDns,
        });
        if (isDns) dnsPods.push(idx);
        mine.push(idx);
      }
    });
    podsByNamespace.push(mine);

    for (const [name, spec] of policiesFor(ctx, rng, policiesPerNamespace))
      policyObjects.push(networkPolicy(ctx.name, name, spec));
  }

  return {
    namespaceCount,
    podCount: podObjects.length,
    policyCount: policyObjects.length,
    objects: [...nsObjects, ...podObjects, ...policyObjects],
    pods,
    podsByNamespace,
    dnsPods,
  };
}

function namespaceContext(i: number, rng: SeededRandom, used: Set<string>): NamespaceCtx {
  if (i === 0) {
    return {
      index: i,
      name: 'kube-system',
      team: 'platform',
      env: 'prod',
      kind: 'kube-system',
      apps: [
        {
          name: 'coredns',
          tier: 'system',
          appLabel: 'k8s-app',
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP' },
            { name: 'dns-tcp', port: 53 },
            { name: 'metrics', port: 9153 },
          ],
        },
        {
          name: 'metrics-server',
          tier: 'system',
          appLabel: 'k8s-app',
          ports: [{ name: 'https', port: 4443 }],
        },
        {
          name: 'kube-proxy',
          tier: 'system',
          appLabel: 'k8s-app',
          ports: [{ name: 'metrics', port: 10249 }],
        },
        {
          name: 'csi-controller',
          tier: 'system',
          appLabel: 'k8s-app',
          ports: [{ name: 'healthz', port: 9808 }],
        },
      ],
    };
  }
  if (i === 1) {
    return {
      index: i,
      name: 'monitoring',
      team: 'platform',
      env: 'prod',
      kind: 'monitoring',
      apps: [
        { name: 'prometheus', tier: 'backend', ports: [{ name: 'web', port: 9090 }] },
        { name: 'alertmanager', tier: 'backend', ports: [{ name: 'web', port: 9093 }] },
        { name: 'grafana', tier: 'frontend', ports: [{ name: 'http', port: 3000 }] },
        {
          name: 'kube-state-metrics',
          tier: 'backend',
          ports: [
            { name: 'http', port: 8080 },
            { name: 'metrics', port: 8081 },
          ],
        },
      ],
    };
  }
  if (i === 2) {
    return {
      index: i,
      name: 'ingress-nginx',
      team: 'platform',
      env: 'prod',
      kind: 'ingress-nginx',
      apps: [
        {
          name: 'ingress-nginx',
          tier: 'frontend',
          appLabel: 'app.kubernetes.io/name',
          ports: [
            { name: 'http', port: 80 },
            { name: 'https', port: 443 },
            { name: 'metrics', port: 10254 },
          ],
        },
        { name: 'default-backend', tier: 'backend', ports: [{ name: 'http', port: 8080 }] },
      ],
    };
  }
  const team = rng.pick(TEAMS);
  const env = rng.weighted(ENVS);
  const stack = rng.pick(['shop', 'core', 'portal', 'svc', 'app', 'edge', 'hub', 'sync']);
  let name = `${team}-${stack}-${env}`;
  for (let n = 2; used.has(name); n++) name = `${team}-${stack}-${env}-${n}`;
  used.add(name);
  const apps = [
    rng.pick(FRONTENDS),
    ...rng.sample(BACKENDS, rng.range(1, 3)),
    ...rng.sample(DATA, rng.range(1, 2)),
  ];
  return { index: i, name, team, env, kind: 'app', apps };
}

type Spec = Raw;

/** Ten [name, spec] pairs for one namespace. */
function policiesFor(ctx: NamespaceCtx, rng: SeededRandom, count: number): Array<[string, Spec]> {
  const out: Array<[string, Spec]> = [];
  const names = new Set<string>();
  const add = (name: string, spec: Spec) => {
    let n = name;
    for (let k = 2; names.has(n); k++) n = `${name}-${k}`;
    names.add(n);
    out.push([n, spec]);
  };
  const byTier = (t: Tier) => ctx.apps.filter((a) => a.tier === t);
  const anyApp = () => rng.pick(ctx.apps);
  const appSel = (a: AppSpec) => ({ matchLabels: { [a.appLabel ?? 'app']: a.name } });
  const portsOf = (a: AppSpec, named: boolean) =>
    a.ports.slice(0, rng.range(1, a.ports.length)).map((p) => ({
      ...(p.protocol ? { protocol: p.protocol } : {}),
      port: named ? p.name : p.port,
    }));

  // Cluster services' own policies.
  if (ctx.kind === 'kube-system') {
    add('default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] });
    add('allow-dns', {
      podSelector: { matchLabels: { 'k8s-app': 'coredns' } },
      ingress: [
        {
          from: [{ namespaceSelector: {} }],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    });
    add('allow-dns-metrics', {
      podSelector: { matchLabels: { 'k8s-app': 'coredns' } },
      ingress: [
        {
          from: [{ namespaceSelector: { matchLabels: { purpose: 'monitoring' } } }],
          ports: [{ port: 'metrics' }],
        },
      ],
    });
    add('allow-metrics-server', {
      podSelector: { matchLabels: { 'k8s-app': 'metrics-server' } },
      ingress: [{ ports: [{ port: 4443 }] }],
    });
    add('allow-apiserver-webhooks', {
      podSelector: {
        matchExpressions: [
          { key: 'k8s-app', operator: 'In', values: ['metrics-server', 'csi-controller'] },
        ],
      },
      ingress: [{ from: [{ ipBlock: { cidr: '172.16.0.0/12', except: ['172.16.0.0/16'] } }] }],
    });
  } else if (ctx.kind === 'monitoring') {
    add('default-deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    add('allow-dns', dnsEgress());
    add('prometheus-scrape', {
      podSelector: { matchLabels: { app: 'prometheus' } },
      policyTypes: ['Egress'],
      egress: [
        {
          to: [{ namespaceSelector: {} }],
          ports: [{ port: 'metrics' }, { port: 'http' }, { port: 9090, endPort: 9100 }],
        },
        { to: [{ ipBlock: { cidr: '10.244.0.0/14' } }], ports: [{ port: 10249 }, { port: 10254 }] },
      ],
    });
    add('grafana-from-ingress', {
      podSelector: { matchLabels: { app: 'grafana' } },
      ingress: [{ from: [ingressControllerPeer()], ports: [{ port: 'http' }] }],
    });
    add('within-monitoring', {
      podSelector: {},
      ingress: [{ from: [{ podSelector: {} }] }],
      egress: [{ to: [{ podSelector: {} }] }],
      policyTypes: ['Ingress', 'Egress'],
    });
  } else if (ctx.kind === 'ingress-nginx') {
    add('default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] });
    add('allow-internet', {
      podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } },
      ingress: [
        {
          from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }],
          ports: [{ port: 80 }, { port: 443 }],
        },
      ],
    });
    add('controller-egress', {
      podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } },
      policyTypes: ['Egress'],
      egress: [
        {
          to: [{ namespaceSelector: {}, podSelector: { matchLabels: { tier: 'frontend' } } }],
          ports: [{ port: 'http' }, { port: 'https' }, { port: 8080 }],
        },
        { to: [{ podSelector: { matchLabels: { app: 'default-backend' } } }] },
        {
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    });
  } else {
    // Application namespaces: a default deny, DNS when egress is denied.
    const denyAll = rng.chance(0.4);
    if (denyAll) {
      add('default-deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
      add('allow-dns', dnsEgress());
      add('allow-egress-same-namespace', {
        podSelector: {},
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: {} }] }],
      });
    } else {
      add('default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] });
    }
  }

  const frontends = byTier('frontend');
  const backends = byTier('backend');
  const data = byTier('data');
  const templates: ReadonlyArray<readonly [() => void, number]> = [
    [
      () =>
        add('allow-same-namespace', {
          podSelector: {},
          ingress: [{ from: [{ podSelector: {} }] }],
        }),
      1,
    ],
    [
      () => {
        const target = rng.pick(
          backends.length + data.length > 0 ? [...backends, ...data] : ctx.apps,
        );
        const source = anyApp();
        add(`${target.name}-from-${source.name}`, {
          podSelector: appSel(target),
          ingress: [
            { from: [{ podSelector: appSel(source) }], ports: portsOf(target, rng.chance(0.6)) },
          ],
        });
      },
      4,
    ],
    [
      () =>
        add('allow-ingress-controller', {
          podSelector: { matchLabels: { tier: 'frontend' } },
          ingress: [
            {
              from: [ingressControllerPeer()],
              ports: [{ port: 'http' }, ...(rng.chance(0.3) ? [{ port: 8443 }] : [])],
            },
          ],
        }),
      2,
    ],
    [
      () =>
        add('allow-monitoring', {
          podSelector: rng.chance(0.5)
            ? {}
            : { matchExpressions: [{ key: 'app', operator: 'Exists' }] },
          ingress: [
            {
              from: [
                {
                  namespaceSelector: {
                    matchExpressions: [
                      { key: 'purpose', operator: 'In', values: ['monitoring', 'observability'] },
                    ],
                  },
                  podSelector: { matchLabels: { app: 'prometheus' } },
                },
              ],
              ports: [{ port: 'metrics' }, { port: 9090, endPort: 9100 }],
            },
          ],
        }),
      2,
    ],
    [
      () => {
        const target = rng.pick(backends.length > 0 ? backends : ctx.apps);
        const team = rng.chance(0.3) ? ctx.team : rng.pick(TEAMS);
        add(`${target.name}-from-${team}`, {
          podSelector: appSel(target),
          ingress: [
            {
              from: [
                {
                  namespaceSelector: {
                    matchLabels: { team },
                    matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }],
                  },
                  podSelector: {
                    matchExpressions: [
                      { key: 'tier', operator: 'In', values: ['frontend', 'backend'] },
                    ],
                  },
                },
              ],
              ports: [{ port: 8080 }, { port: 'grpc' }],
            },
          ],
        });
      },
      3,
    ],
    [
      () =>
        add('allow-public', {
          podSelector: { matchLabels: { tier: 'frontend' } },
          ingress: [
            {
              from: [
                { namespaceSelector: {} },
                { ipBlock: { cidr: '0.0.0.0/0', except: PRIVATE } },
              ],
              ports: [{ port: 8080 }, { port: 8443 }, { port: 'https' }],
            },
          ],
        }),
      1,
    ],
    [
      () =>
        add('egress-internet-https', {
          podSelector: { matchLabels: { tier: rng.chance(0.7) ? 'backend' : 'frontend' } },
          policyTypes: ['Egress'],
          egress: [
            { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: PRIVATE } }], ports: [{ port: 443 }] },
          ],
        }),
      2,
    ],
    [
      () => {
        const app = anyApp();
        const [cidr, except] = rng.pick(PARTNER_NETWORKS);
        add(`${app.name}-egress-partner`, {
          podSelector: appSel(app),
          policyTypes: ['Egress'],
          egress: [
            {
              to: [{ ipBlock: { cidr, except: [except] } }],
              ports: rng.chance(0.6)
                ? [{ port: 30000, endPort: 32767 }, { port: 443 }]
                : [{ protocol: 'UDP', port: 5000, endPort: 5100 }],
            },
            { ports: [{ protocol: 'UDP', port: 53 }] },
          ],
        });
      },
      2,
    ],
    [
      () => {
        const from =
          rng.chance(0.5) || backends.length === 0
            ? { matchLabels: { tier: 'backend' } }
            : appSel(rng.pick(backends));
        add('egress-to-data', {
          podSelector: from,
          policyTypes: ['Egress'],
          egress: [
            {
              to: [{ podSelector: { matchLabels: { tier: 'data' } } }],
              ports: [{ port: 'postgres' }, { port: 'redis' }, { port: 6379 }, { port: 'mysql' }],
            },
            {
              to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'auth' } } }],
              ports: [{ port: 'grpc' }],
            },
          ],
        });
      },
      3,
    ],
    [
      () => {
        const app = rng.pick(frontends.length > 0 ? frontends : ctx.apps);
        add(`allow-all-to-${app.name}`, { podSelector: appSel(app), ingress: [{}] });
      },
      1,
    ],
    [
      () =>
        add('deny-unversioned', {
          podSelector: { matchExpressions: [{ key: 'version', operator: 'DoesNotExist' }] },
          policyTypes: ['Ingress', 'Egress'],
        }),
      1,
    ],
    [
      () =>
        add('data-access', {
          podSelector: { matchLabels: { tier: 'data' } },
          ingress: [
            {
              from: [
                { podSelector: { matchLabels: { tier: 'backend' } } },
                {
                  namespaceSelector: { matchLabels: { team: ctx.team, env: ctx.env } },
                  podSelector: {
                    matchExpressions: [
                      { key: 'app', operator: 'In', values: ['api', 'orders', 'worker'] },
                    ],
                  },
                },
              ],
              ports: [{ port: 5432 }, { port: 6379 }, { port: 3306 }, { port: 'postgres' }],
            },
          ],
        }),
      3,
    ],
    [
      () => {
        const app = anyApp();
        const node = rng.int(64);
        const block = rng.chance(0.5)
          ? { cidr: `10.244.${node * 2}.0/23` }
          : {
              cidr: '10.244.0.0/16',
              except: [`10.244.${node * 2}.0/23`, `10.244.${(node + 7) * 2}.0/24`],
            };
        add(`${app.name}-from-nodes`, {
          podSelector: appSel(app),
          ingress: [
            {
              from: [{ ipBlock: block }],
              ports: rng.chance(0.8)
                ? [{ protocol: 'UDP', port: 8125 }, { port: 9100 }]
                : [{ protocol: 'SCTP', port: 3868 }],
            },
          ],
        });
      },
      1,
    ],
    [
      () =>
        add('egress-pushgateway', {
          podSelector: { matchLabels: { tier: 'backend' } },
          policyTypes: ['Egress'],
          egress: [
            {
              to: [{ namespaceSelector: { matchLabels: { purpose: 'monitoring' } } }],
              ports: [{ port: 9091 }, { port: 'web' }],
            },
          ],
        }),
      1,
    ],
    [
      () => {
        const app = anyApp();
        add(`${app.name}-canary`, {
          podSelector: { matchLabels: { [app.appLabel ?? 'app']: app.name, version: 'v2' } },
          ingress: [
            {
              from: [
                {
                  podSelector: {
                    matchExpressions: [{ key: 'version', operator: 'NotIn', values: ['v1'] }],
                  },
                },
                { namespaceSelector: { matchLabels: { env: 'staging' } } },
              ],
            },
          ],
        });
      },
      1,
    ],
  ];
  while (out.length < count) rng.weighted(templates)();
  return out;
}

function dnsEgress(): Spec {
  return {
    podSelector: {},
    policyTypes: ['Egress'],
    egress: [
      {
        to: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            podSelector: { matchLabels: { 'k8s-app': 'coredns' } },
          },
        ],
        ports: [
          { protocol: 'UDP', port: 53 },
          { protocol: 'TCP', port: 53 },
        ],
      },
    ],
  };
}

function ingressControllerPeer(): Raw {
  return {
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } },
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } },
  };
}

/** Lower-case letters and digits, as Kubernetes generated name suffixes. */
function token(rng: SeededRandom, length: number): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  let s = '';
  for (let i = 0; i < length; i++) s += alphabet[rng.int(alphabet.length)];
  return s;
}

const CNP_TEAMS = [
  'payments',
  'checkout',
  'catalog',
  'search',
  'identity',
  'platform',
  'data',
  'security',
];

/**
 * `count` ClusterNetworkPolicies over realisticCluster's namespace labels
 * (bench/cluster-policies.ts): Admin and Baseline, priorities 0..1000,
 * subjects and peers by team/env/purpose namespace labels (pods by app),
 * partner and private networks, Accept/Deny/Pass, TCP ports.
 */
export function realisticClusterPolicies(count: number, seed = 0xc1a55): Raw[] {
  const r = seededRandom(seed);
  const ns = (): Raw =>
    r.chance(0.5)
      ? { matchLabels: { team: r.pick(CNP_TEAMS) } }
      : r.chance(0.5)
        ? { matchLabels: { env: r.pick(['prod', 'staging', 'dev']) } }
        : { matchLabels: { purpose: r.pick(['monitoring', 'system', 'ingress']) } };
  const peer = (egress: boolean): Raw => {
    if (egress && r.chance(0.3))
      return {
        networks: r.chance(0.5)
          ? [r.pick(PARTNER_NETWORKS)[0]]
          : [r.pick(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'])],
      };
    return r.chance(0.7)
      ? { namespaces: ns() }
      : {
          pods: {
            namespaceSelector: ns(),
            podSelector: { matchLabels: { app: r.pick(['api', 'web', 'db', 'worker']) } },
          },
        };
  };
  const rule = (egress: boolean, i: number): Raw => ({
    name: `r${i}`,
    action: r.pick(['Accept', 'Deny', 'Pass', 'Pass']),
    [egress ? 'to' : 'from']: [...Array(1 + r.int(2))].map(() => peer(egress)),
    ...(r.chance(0.6)
      ? {
          protocols: [
            { tcp: { destinationPort: { number: r.pick([80, 443, 5432, 8080, 9090]) } } },
          ],
        }
      : {}),
  });
  const out: Raw[] = [];
  for (let i = 0; i < count; i++) {
    const spec: Raw = {
      tier: r.chance(0.6) ? 'Admin' : 'Baseline',
      priority: r.int(1001),
      subject: r.chance(0.8)
        ? { namespaces: ns() }
        : {
            pods: {
              namespaceSelector: ns(),
              podSelector: { matchLabels: { app: r.pick(['api', 'web', 'db']) } },
            },
          },
    };
    if (r.chance(0.8)) spec.ingress = [...Array(1 + r.int(4))].map((_, k) => rule(false, k));
    if (r.chance(0.6)) spec.egress = [...Array(1 + r.int(4))].map((_, k) => rule(true, k));
    out.push(clusterNetworkPolicy(`cnp-${i}`, spec));
  }
  return out;
}
