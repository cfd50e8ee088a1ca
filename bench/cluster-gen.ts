/**
 * A generated cluster for the benchmarks, as raw Kubernetes objects (the API
 * shape, built with the test fixtures' builders), deterministic for a given
 * namespace count and seed.
 *
 * Shape, per namespace: 10 pods and 10 NetworkPolicies. The first three
 * namespaces are cluster services (kube-system with kube-dns, monitoring with
 * Prometheus, ingress-nginx); the rest are application namespaces owned by one
 * of 24 teams in one of three environments, each running a small stack
 * (a frontend, one to three backends, one or two data stores) with named
 * container ports. Policies are drawn from templates modelled on what
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
import { namespace, networkPolicy, pod, type Raw } from '../test/support/cluster.js';
import { Rng } from './prng.js';

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

export interface GeneratedCluster {
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

export function generateCluster(namespaceCount: number, seed = 0x5eed): GeneratedCluster {
  if (namespaceCount < 4) throw new Error('need at least 4 namespaces');
  const rng = new Rng(seed ^ namespaceCount);
  const podTotal = namespaceCount * PODS_PER_NAMESPACE;
  const nodeCount = Math.max(3, Math.ceil(podTotal / 100));
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
    for (let k = ctx.apps.length; k < PODS_PER_NAMESPACE; k++) {
      const a = rng.int(ctx.apps.length);
      replicas[a] = replicas[a]! + 1;
    }
    const mine: number[] = [];
    ctx.apps.forEach((app, a) => {
      const hash = rng.token(10);
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
        const ipText = formatV4(ip);
        podObjects.push(
          pod(ctx.name, `${app.name}-${hash}-${rng.token(5)}`, {
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

    for (const [name, spec] of policiesFor(ctx, rng))
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

function namespaceContext(i: number, rng: Rng, used: Set<string>): NamespaceCtx {
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
function policiesFor(ctx: NamespaceCtx, rng: Rng): Array<[string, Spec]> {
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
  while (out.length < POLICIES_PER_NAMESPACE) rng.weighted(templates)();
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

export function formatV4(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}
