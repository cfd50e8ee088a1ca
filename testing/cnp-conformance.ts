/**
 * The network-policy-api conformance scenarios for ClusterNetworkPolicy
 * (kubernetes-sigs/network-policy-api conformance/tests and
 * conformance/base, read at commit 0eec1b0e), restated as data: the base
 * cluster, each scenario's policies, and its steps in upstream order, each a
 * change to the objects (upstream patches the same objects from one subtest
 * to the next, so changes accumulate) and probes with the verdict upstream
 * expects. Replayed through analysis by test/policy/cnp-conformance.test.ts.
 *
 * The base cluster, as upstream deploys it: four namespaces labelled
 * conformance-house=<house>, two server pods each (<pod>-0 on node kind-a,
 * <pod>-1 on kind-b) labelled conformance-house=<house> with container
 * ports web (TCP 80) and dns (UDP 53); a fifth namespace, forbidden-forrest,
 * whose pods centaur-0/1 run in the host network of kind-a/kind-b (so they
 * have the nodes' addresses, and are never pods to policy). Nodes carry
 * kubernetes.io/os=linux. Upstream picks free host ports at run time; these
 * scenarios use HOST_PORTS.
 */
import type { Raw } from './cluster.js';
import { clusterNetworkPolicy, namespace, networkPolicy, node, pod } from './cluster.js';

export const HOUSES = ['gryffindor', 'slytherin', 'hufflepuff', 'ravenclaw'] as const;
export type House = (typeof HOUSES)[number];
/** The server pods of each house, by upstream name. */
export const HOUSE_PODS: Readonly<Record<House, string>> = {
  gryffindor: 'harry-potter',
  slytherin: 'draco-malfoy',
  hufflepuff: 'cedric-diggory',
  ravenclaw: 'luna-lovegood',
};
export const NODES = [
  { name: 'kind-a', ip: '172.18.0.2' },
  { name: 'kind-b', ip: '172.18.0.3' },
] as const;
/** Upstream's s.HostNetworkPorts[0..7]. */
export const HOST_PORTS = [34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352] as const;

export const ns = (house: string) => `network-policy-conformance-${house}`;

/** "gryffindor/0" → the namespace/name key of harry-potter-0; "centaur/1" → forbidden-forrest's centaur-1. */
export function podKey(short: string): string {
  const [house, index] = short.split('/') as [string, string];
  if (house === 'centaur') return `${ns('forbidden-forrest')}/centaur-${index}`;
  return `${ns(house)}/${HOUSE_PODS[house as House]}-${index}`;
}

/** The address of a short pod name ("ravenclaw/1", "centaur/0"). */
export function podAddress(short: string): string {
  const [house, index] = short.split('/') as [string, string];
  if (house === 'centaur') return NODES[Number(index)]!.ip;
  return `10.244.${HOUSES.indexOf(house as House) + 1}.${10 + Number(index)}`;
}

export function baseCluster(): Raw[] {
  const objects: Raw[] = [
    ...NODES.map((n) => node(n.name, [n.ip], { 'kubernetes.io/os': 'linux' })),
    ...[...HOUSES, 'forbidden-forrest'].map((h) => namespace(ns(h), { 'conformance-house': h })),
  ];
  for (const h of HOUSES)
    for (const i of [0, 1])
      objects.push(
        pod(ns(h), `${HOUSE_PODS[h]}-${i}`, {
          labels: { 'conformance-house': h },
          ips: [podAddress(`${h}/${i}`)],
          node: NODES[i]!.name,
          ports: [
            { name: 'web', port: 80, protocol: 'TCP' },
            { name: 'dns', port: 53, protocol: 'UDP' },
          ],
        }),
      );
  for (const i of [0, 1])
    objects.push(
      pod(ns('forbidden-forrest'), `centaur-${i}`, {
        labels: { 'conformance-house': 'forbidden-forrest' },
        ips: [NODES[i]!.ip],
        node: NODES[i]!.name,
        hostNetwork: true,
      }),
    );
  return objects;
}

export type Proto = 'TCP' | 'UDP' | 'SCTP';
/**
 * [from, to, protocol, port, allowed]: from/to are short pod names
 * ("hufflepuff/0", "centaur/1"); `allowed` is what upstream expects, and
 * what Weir decides: there are no deviations.
 */
export type Probe = readonly [string, string, Proto, number, boolean];

/** A change between steps, as upstream's subtests patch the cluster. */
export type Change =
  | {
      readonly swapRules: {
        readonly policy: string;
        readonly direction: 'ingress' | 'egress';
        readonly a: number;
        readonly b: number;
      };
    }
  | { readonly setPriority: { readonly policy: string; readonly priority: number } }
  | {
      readonly setAction: {
        readonly policy: string;
        readonly direction: 'ingress' | 'egress';
        readonly rule: number;
        readonly action: 'Accept' | 'Deny' | 'Pass';
      };
    }
  | {
      readonly prependRule: {
        readonly policy: string;
        readonly direction: 'ingress' | 'egress';
        readonly rule: Raw;
      };
    }
  | {
      readonly setNamespaceLabels: {
        readonly house: string;
        readonly labels: Record<string, string>;
      };
    }
  | {
      readonly setProtocols: {
        readonly policy: string;
        readonly direction: 'ingress' | 'egress';
        readonly rule: number;
        readonly protocols: readonly Raw[];
      };
    }
  | { readonly deleteNetworkPolicy: { readonly namespace: string; readonly name: string } };

export interface Step {
  /** Upstream's subtest name. */
  readonly name: string;
  readonly changes?: readonly Change[];
  readonly probes: readonly Probe[];
}

export interface Scenario {
  /** Upstream's ShortName. */
  readonly name: string;
  /** Upstream's test file under conformance/tests. */
  readonly upstream: string;
  readonly policies: readonly Raw[];
  readonly steps: readonly Step[];
}

const nsSel = (house: string) => ({ matchLabels: { 'kubernetes.io/metadata.name': ns(house) } });
const housePods = (house: string) => ({
  pods: {
    namespaceSelector: { matchLabels: { 'conformance-house': house } },
    podSelector: { matchLabels: { 'conformance-house': house } },
  },
});
const port = (proto: Proto, number: number) => [
  { [proto.toLowerCase()]: { destinationPort: { number } } },
];

/**
 * The rule pattern of upstream's per-protocol scenarios: towards/from house
 * `a` Accept, Deny, Pass everything; house `b` Deny then Pass at `portB`;
 * house `c` Accept at `portC`, Deny everything else. The Baseline variants
 * have no Pass rules.
 */
function protocolRules(
  direction: 'ingress' | 'egress',
  proto: Proto,
  houses: { a: string; b: string; c: string },
  portB: number,
  portC: number,
  withPass: boolean,
): Raw[] {
  return multiProtocolRules(direction, houses, [[proto, portB]], [[proto, portC]], withPass);
}

/** protocolRules with several (protocol, port) pairs in the rules for `b` and `c` (the "gress" scenarios). */
function multiProtocolRules(
  direction: 'ingress' | 'egress',
  houses: { a: string; b: string; c: string },
  portsB: ReadonlyArray<readonly [Proto, number]>,
  portsC: ReadonlyArray<readonly [Proto, number]>,
  withPass: boolean,
): Raw[] {
  const peers = direction === 'ingress' ? 'from' : 'to';
  const rule = (name: string, action: string, house: string, protocols?: unknown): Raw => ({
    name,
    action,
    [peers]: [{ namespaces: nsSel(house) }],
    ...(protocols ? { protocols } : {}),
  });
  const at = (ports: ReadonlyArray<readonly [Proto, number]>) =>
    ports.map(([p, n]) => `${p.toLowerCase()}-${n}`).join('-');
  const protocols = (ports: ReadonlyArray<readonly [Proto, number]>) =>
    ports.flatMap(([p, n]) => port(p, n));
  return [
    rule(`allow-${houses.a}-everything`, 'Accept', houses.a),
    rule(`deny-${houses.a}-everything`, 'Deny', houses.a),
    ...(withPass ? [rule(`pass-${houses.a}-everything`, 'Pass', houses.a)] : []),
    rule(`deny-${houses.b}-at-${at(portsB)}`, 'Deny', houses.b, protocols(portsB)),
    ...(withPass
      ? [rule(`pass-${houses.b}-at-${at(portsB)}`, 'Pass', houses.b, protocols(portsB))]
      : []),
    rule(`allow-${houses.c}-at-${at(portsC)}`, 'Accept', houses.c, protocols(portsC)),
    rule(`deny-${houses.c}-everything-else`, 'Deny', houses.c),
  ];
}

/** The "gress" scenarios' houses and ports (the same in both tiers; ingress allows hufflepuff at TCP 80, egress at 8080). */
const GRESS_HOUSES = { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' };
const GRESS_PORTS_B: ReadonlyArray<readonly [Proto, number]> = [
  ['TCP', 80],
  ['UDP', 53],
  ['SCTP', 9003],
];
const GRESS_EGRESS_PORTS_C: ReadonlyArray<readonly [Proto, number]> = [
  ['TCP', 8080],
  ['UDP', 5353],
  ['SCTP', 9003],
];
const GRESS_INGRESS_PORTS_C: ReadonlyArray<readonly [Proto, number]> = [
  ['TCP', 80],
  ['UDP', 5353],
  ['SCTP', 9003],
];

function subjectPolicy(
  name: string,
  tier: 'Admin' | 'Baseline',
  priority: number,
  subject: string,
  direction: 'ingress' | 'egress',
  rules: Raw[],
): Raw {
  return clusterNetworkPolicy(name, {
    tier,
    priority,
    subject: { namespaces: nsSel(subject) },
    [direction]: rules,
  });
}

const swap = (policy: string, direction: 'ingress' | 'egress', a: number, b: number): Change => ({
  swapRules: { policy, direction, a, b },
});

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'CNPAdminTierIngressTCP',
    upstream: 'admin-network-policy-standard-ingress-tcp-rules.go',
    policies: [
      subjectPolicy(
        'ingress-tcp',
        'Admin',
        3,
        'gryffindor',
        'ingress',
        protocolRules(
          'ingress',
          'TCP',
          { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
          80,
          80,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for TCP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'gryffindor/1', 'TCP', 80, true],
          ['hufflepuff/1', 'gryffindor/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-tcp', 'ingress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'gryffindor/1', 'TCP', 80, false],
          ['ravenclaw/1', 'gryffindor/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for TCP protocol at the specified port",
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'pass-ingress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-tcp', 'ingress', 0, 2)],
        probes: [
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support a 'pass-ingress' policy for TCP protocol at the specified port",
        changes: [swap('ingress-tcp', 'ingress', 3, 4)],
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, true],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierIngressSCTP',
    upstream: 'admin-network-policy-standard-ingress-sctp-rules.go',
    policies: [
      subjectPolicy(
        'ingress-sctp',
        'Admin',
        5,
        'ravenclaw',
        'ingress',
        protocolRules(
          'ingress',
          'SCTP',
          { a: 'gryffindor', b: 'slytherin', c: 'hufflepuff' },
          9003,
          9003,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['gryffindor/1', 'ravenclaw/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for SCTP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'ravenclaw/1', 'SCTP', 9003, true],
          ['hufflepuff/1', 'ravenclaw/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-sctp', 'ingress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'SCTP', 9003, false],
          ['gryffindor/1', 'ravenclaw/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for SCTP protocol at the specified port",
        probes: [
          ['slytherin/0', 'ravenclaw/0', 'SCTP', 9003, false],
          ['slytherin/1', 'ravenclaw/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'pass-ingress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-sctp', 'ingress', 0, 2)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'SCTP', 9003, true],
          ['gryffindor/1', 'ravenclaw/1', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support a 'pass-ingress' policy for SCTP protocol at the specified port",
        changes: [swap('ingress-sctp', 'ingress', 3, 4)],
        probes: [
          ['slytherin/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['slytherin/1', 'ravenclaw/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierEgressUDP',
    upstream: 'admin-network-policy-standard-egress-udp-rules.go',
    policies: [
      subjectPolicy(
        'egress-udp',
        'Admin',
        7,
        'hufflepuff',
        'egress',
        protocolRules(
          'egress',
          'UDP',
          { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
          5353,
          53,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected",
        probes: [
          ['hufflepuff/0', 'ravenclaw/0', 'UDP', 53, true],
          ['hufflepuff/1', 'ravenclaw/0', 'UDP', 5353, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for UDP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'gryffindor/1', 'UDP', 53, true],
          ['hufflepuff/1', 'gryffindor/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('egress-udp', 'egress', 0, 1)],
        probes: [
          ['hufflepuff/0', 'ravenclaw/1', 'UDP', 53, false],
          ['hufflepuff/1', 'ravenclaw/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for UDP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'slytherin/0', 'UDP', 5353, false],
          ['hufflepuff/1', 'slytherin/0', 'UDP', 53, true],
        ],
      },
      {
        name: "Should support an 'pass-egress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('egress-udp', 'egress', 0, 2)],
        probes: [
          ['hufflepuff/0', 'ravenclaw/1', 'UDP', 5353, true],
          ['hufflepuff/1', 'ravenclaw/1', 'UDP', 53, true],
        ],
      },
      {
        name: "Should support a 'pass-egress' policy for UDP protocol at the specified port",
        changes: [swap('egress-udp', 'egress', 3, 4)],
        probes: [
          ['hufflepuff/0', 'slytherin/0', 'UDP', 5353, true],
          ['hufflepuff/1', 'slytherin/0', 'UDP', 53, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierIngressTCP',
    upstream: 'baseline-admin-network-policy-standard-ingress-tcp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'gryffindor',
        'ingress',
        protocolRules(
          'ingress',
          'TCP',
          { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
          80,
          80,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for TCP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'gryffindor/1', 'TCP', 80, true],
          ['hufflepuff/1', 'gryffindor/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'ingress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'gryffindor/1', 'TCP', 80, false],
          ['ravenclaw/1', 'gryffindor/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for TCP protocol at the specified port",
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
    ],
  },
  inlineCidrScenario(
    'CNPAdminTierEgressInlineCIDRPeers',
    'admin-network-policy-standard-egress-inline-cidr-rules.go',
    'inline-cidr-as-peers-example',
    'Admin',
    85,
    housePods('gryffindor'),
  ),
  inlineCidrScenario(
    'CNPBaselineTierEgressInlineCIDRPeers',
    'baseline-admin-network-policy-standard-egress-inline-cidr-rules.go',
    'default',
    'Baseline',
    10,
    { namespaces: nsSel('gryffindor') },
  ),
  {
    name: 'CNPAdminTierPriorityField',
    upstream: 'admin-network-policy-standard-priority.go',
    policies: [
      clusterNetworkPolicy('priority-50-example', {
        tier: 'Admin',
        priority: 50,
        subject: housePods('gryffindor'),
        ingress: [
          {
            name: 'deny-all-ingress-from-slytherin',
            action: 'Deny',
            from: [housePods('slytherin')],
          },
        ],
        egress: [
          { name: 'deny-all-egress-to-slytherin', action: 'Deny', to: [housePods('slytherin')] },
        ],
      }),
      clusterNetworkPolicy('old-priority-60-new-priority-40-example', {
        tier: 'Admin',
        priority: 60,
        subject: housePods('gryffindor'),
        ingress: [
          {
            name: 'pass-all-ingress-from-slytherin',
            action: 'Pass',
            from: [housePods('slytherin')],
          },
        ],
        egress: [
          { name: 'pass-all-egress-to-slytherin', action: 'Pass', to: [housePods('slytherin')] },
        ],
      }),
      clusterNetworkPolicy('default', {
        tier: 'Baseline',
        priority: 10,
        subject: housePods('gryffindor'),
        ingress: [
          {
            name: 'allow-all-ingress-from-slytherin',
            action: 'Accept',
            from: [housePods('slytherin')],
          },
        ],
        egress: [
          { name: 'allow-all-egress-to-slytherin', action: 'Accept', to: [housePods('slytherin')] },
        ],
      }),
    ],
    steps: [
      {
        name: 'Should Deny traffic from slytherin to gryffindor respecting admin CNP',
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, false],
        ],
      },
      {
        name: 'Should Deny traffic to slytherin from gryffindor respecting admin CNP',
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, false],
        ],
      },
      {
        name: 'Should respect admin CNP priority field; thus passing both ingress and egress traffic over to baseline CNP',
        changes: [
          { setPriority: { policy: 'old-priority-60-new-priority-40-example', priority: 40 } },
        ],
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, true],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, true],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierIntegration',
    upstream: 'admin-network-policy-standard-integration.go',
    policies: [
      clusterNetworkPolicy('pass-example', {
        tier: 'Admin',
        priority: 10,
        subject: { namespaces: { matchLabels: { 'conformance-house': 'gryffindor' } } },
        ingress: [
          {
            name: 'deny-all-ingress-from-slytherin',
            action: 'Deny',
            from: [{ namespaces: { matchLabels: { 'conformance-house': 'slytherin' } } }],
          },
        ],
        egress: [
          {
            name: 'deny-all-egress-to-slytherin',
            action: 'Deny',
            to: [{ namespaces: { matchLabels: { 'conformance-house': 'slytherin' } } }],
          },
        ],
      }),
      networkPolicy(ns('gryffindor'), 'allow-gress-from-to-slytherin-to-gryffindor', {
        podSelector: {},
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          { from: [{ namespaceSelector: { matchLabels: { 'conformance-house': 'slytherin' } } }] },
        ],
        egress: [
          { to: [{ namespaceSelector: { matchLabels: { 'conformance-house': 'slytherin' } } }] },
        ],
      }),
      clusterNetworkPolicy('default', {
        tier: 'Baseline',
        priority: 10,
        subject: { namespaces: { matchLabels: { 'conformance-house': 'gryffindor' } } },
        ingress: [
          {
            name: 'deny-all-ingress-from-slytherin',
            action: 'Deny',
            from: [{ namespaces: { matchLabels: { 'conformance-house': 'slytherin' } } }],
          },
        ],
        egress: [
          {
            name: 'deny-all-egress-to-slytherin',
            action: 'Deny',
            to: [{ namespaces: { matchLabels: { 'conformance-house': 'slytherin' } } }],
          },
        ],
      }),
    ],
    steps: [
      {
        name: 'Should Deny traffic from slytherin to gryffindor respecting admin CNP',
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, false],
        ],
      },
      {
        name: 'Should Deny traffic to slytherin from gryffindor respecting admin CNP',
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for network policy",
        changes: [
          { setAction: { policy: 'pass-example', direction: 'ingress', rule: 0, action: 'Pass' } },
        ],
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, true],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support a 'pass-egress' policy for admin CNP and respect the match for network policy",
        changes: [
          { setAction: { policy: 'pass-example', direction: 'egress', rule: 0, action: 'Pass' } },
        ],
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, true],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for baseline cluster network policy",
        changes: [
          {
            deleteNetworkPolicy: {
              namespace: ns('gryffindor'),
              name: 'allow-gress-from-to-slytherin-to-gryffindor',
            },
          },
        ],
        probes: [
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'pass-egress' policy for admin CNP and respect the match for baseline cluster network policy",
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, false],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierEgressNodePeers',
    upstream: 'admin-network-policy-experimental-egress-rules.go',
    policies: [
      clusterNetworkPolicy('node-and-cidr-as-peers-example', {
        tier: 'Admin',
        priority: 75,
        subject: housePods('gryffindor'),
        egress: [
          {
            name: `allow-egress-to-${HOST_PORTS[0]}-on-nodes`,
            action: 'Accept',
            to: [{ nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } }],
            protocols: port('TCP', HOST_PORTS[0]),
          },
          {
            name: `pass-egress-to-${HOST_PORTS[2]}-on-nodes`,
            action: 'Pass',
            to: [{ nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } }],
            protocols: port('UDP', HOST_PORTS[2]),
          },
          {
            name: 'deny-egress-to-slytherin-and-nodes-and-internet',
            action: 'Deny',
            to: [
              housePods('slytherin'),
              { nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } },
              { networks: ['0.0.0.0/0', '::/0'] },
            ],
          },
        ],
      }),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' rule policy for egress-node-peer",
        probes: [['gryffindor/1', 'centaur/1', 'TCP', HOST_PORTS[0], true]],
      },
      {
        name: "Should support a 'pass-egress' rule policy for egress-node-peer",
        probes: [['gryffindor/1', 'centaur/1', 'UDP', HOST_PORTS[2], true]],
      },
      {
        name: "Should support a 'deny-egress' rule policy for egress-node-peer",
        probes: [
          ['gryffindor/1', 'centaur/1', 'TCP', HOST_PORTS[1], false],
          ['gryffindor/1', 'centaur/1', 'UDP', HOST_PORTS[4], false],
          ['gryffindor/1', 'centaur/1', 'SCTP', HOST_PORTS[6], false],
          // The other node too, and a pod of slytherin and one elsewhere (0.0.0.0/0).
          ['gryffindor/1', 'centaur/0', 'TCP', HOST_PORTS[1], false],
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/0', 'ravenclaw/0', 'UDP', 53, false],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierEgressTCP',
    upstream: 'admin-network-policy-standard-egress-tcp-rules.go',
    policies: [
      subjectPolicy(
        'egress-tcp',
        'Admin',
        6,
        'gryffindor',
        'egress',
        protocolRules(
          'egress',
          'TCP',
          { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
          80,
          8080,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/1', 'ravenclaw/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for TCP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'TCP', 8080, true],
          ['gryffindor/1', 'hufflepuff/1', 'TCP', 80, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('egress-tcp', 'egress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'TCP', 80, false],
          ['gryffindor/1', 'ravenclaw/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for TCP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'pass-egress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('egress-tcp', 'egress', 0, 2)],
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/1', 'ravenclaw/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support a 'pass-egress' policy for TCP protocol at the specified port",
        changes: [swap('egress-tcp', 'egress', 3, 4)],
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, true],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierEgressSCTP',
    upstream: 'admin-network-policy-standard-egress-sctp-rules.go',
    policies: [
      subjectPolicy(
        'egress-sctp',
        'Admin',
        8,
        'ravenclaw',
        'egress',
        protocolRules(
          'egress',
          'SCTP',
          { a: 'gryffindor', b: 'slytherin', c: 'hufflepuff' },
          9003,
          9003,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'gryffindor/0', 'SCTP', 9003, true],
          ['ravenclaw/1', 'gryffindor/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for SCTP protocol at the specified port",
        probes: [
          ['ravenclaw/0', 'hufflepuff/1', 'SCTP', 9003, true],
          ['ravenclaw/1', 'hufflepuff/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('egress-sctp', 'egress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'gryffindor/1', 'SCTP', 9003, false],
          ['ravenclaw/1', 'gryffindor/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for SCTP protocol at the specified port",
        probes: [
          ['ravenclaw/0', 'slytherin/0', 'SCTP', 9003, false],
          ['ravenclaw/1', 'slytherin/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'pass-egress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('egress-sctp', 'egress', 0, 2)],
        probes: [
          ['ravenclaw/0', 'gryffindor/1', 'SCTP', 9003, true],
          ['ravenclaw/1', 'gryffindor/1', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support a 'pass-egress' policy for SCTP protocol at the specified port",
        changes: [swap('egress-sctp', 'egress', 3, 4)],
        probes: [
          ['ravenclaw/0', 'slytherin/0', 'SCTP', 9003, true],
          ['ravenclaw/1', 'slytherin/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierIngressUDP',
    upstream: 'admin-network-policy-standard-ingress-udp-rules.go',
    policies: [
      subjectPolicy(
        'ingress-udp',
        'Admin',
        4,
        'hufflepuff',
        'ingress',
        protocolRules(
          'ingress',
          'UDP',
          { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
          5353,
          53,
          true,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'hufflepuff/0', 'UDP', 53, true],
          ['ravenclaw/1', 'hufflepuff/0', 'UDP', 5353, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for UDP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'UDP', 53, true],
          ['gryffindor/1', 'hufflepuff/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-udp', 'ingress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'hufflepuff/1', 'UDP', 53, false],
          ['ravenclaw/1', 'hufflepuff/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for UDP protocol at the specified port",
        probes: [
          ['slytherin/0', 'hufflepuff/0', 'UDP', 5353, false],
          ['slytherin/1', 'hufflepuff/0', 'UDP', 53, true],
        ],
      },
      {
        name: "Should support an 'pass-ingress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('ingress-udp', 'ingress', 0, 2)],
        probes: [
          ['ravenclaw/0', 'hufflepuff/1', 'UDP', 5353, true],
          ['ravenclaw/1', 'hufflepuff/1', 'UDP', 53, true],
        ],
      },
      {
        name: "Should support a 'pass-ingress' policy for UDP protocol at the specified port",
        changes: [swap('ingress-udp', 'ingress', 3, 4)],
        probes: [
          ['slytherin/0', 'hufflepuff/0', 'UDP', 5353, true],
          ['slytherin/1', 'hufflepuff/0', 'UDP', 53, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierEgressTCP',
    upstream: 'baseline-admin-network-policy-standard-egress-tcp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'gryffindor',
        'egress',
        protocolRules(
          'egress',
          'TCP',
          { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
          80,
          8080,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/1', 'ravenclaw/0', 'TCP', 8080, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for TCP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'TCP', 8080, true],
          ['gryffindor/1', 'hufflepuff/1', 'TCP', 80, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'egress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'TCP', 80, false],
          ['gryffindor/1', 'ravenclaw/1', 'TCP', 8080, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for TCP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierEgressSCTP',
    upstream: 'baseline-admin-network-policy-standard-egress-sctp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'ravenclaw',
        'egress',
        protocolRules(
          'egress',
          'SCTP',
          { a: 'gryffindor', b: 'slytherin', c: 'hufflepuff' },
          9003,
          9003,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'gryffindor/0', 'SCTP', 9003, true],
          ['ravenclaw/1', 'gryffindor/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for SCTP protocol at the specified port",
        probes: [
          ['ravenclaw/0', 'hufflepuff/1', 'SCTP', 9003, true],
          ['ravenclaw/1', 'hufflepuff/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'egress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'gryffindor/1', 'SCTP', 9003, false],
          ['ravenclaw/1', 'gryffindor/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for SCTP protocol at the specified port",
        probes: [
          ['ravenclaw/0', 'slytherin/0', 'SCTP', 9003, false],
          ['ravenclaw/1', 'slytherin/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierEgressUDP',
    upstream: 'baseline-admin-network-policy-standard-egress-udp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'hufflepuff',
        'egress',
        protocolRules(
          'egress',
          'UDP',
          { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
          5353,
          53,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected",
        probes: [
          ['hufflepuff/0', 'ravenclaw/0', 'UDP', 53, true],
          ['hufflepuff/1', 'ravenclaw/0', 'UDP', 5353, true],
        ],
      },
      {
        name: "Should support an 'allow-egress' policy for UDP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'gryffindor/1', 'UDP', 53, true],
          ['hufflepuff/1', 'gryffindor/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'egress', 0, 1)],
        probes: [
          ['hufflepuff/0', 'ravenclaw/1', 'UDP', 53, false],
          ['hufflepuff/1', 'ravenclaw/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support a 'deny-egress' policy for UDP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'slytherin/0', 'UDP', 5353, false],
          ['hufflepuff/1', 'slytherin/0', 'UDP', 53, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierIngressSCTP',
    upstream: 'baseline-admin-network-policy-standard-ingress-sctp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'ravenclaw',
        'ingress',
        protocolRules(
          'ingress',
          'SCTP',
          { a: 'gryffindor', b: 'slytherin', c: 'hufflepuff' },
          9003,
          9003,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['gryffindor/1', 'ravenclaw/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for SCTP protocol at the specified port",
        probes: [
          ['hufflepuff/0', 'ravenclaw/1', 'SCTP', 9003, true],
          ['hufflepuff/1', 'ravenclaw/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'ingress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'SCTP', 9003, false],
          ['gryffindor/1', 'ravenclaw/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for SCTP protocol at the specified port",
        probes: [
          ['slytherin/0', 'ravenclaw/0', 'SCTP', 9003, false],
          ['slytherin/1', 'ravenclaw/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierIngressUDP',
    upstream: 'baseline-admin-network-policy-standard-ingress-udp-rules.go',
    policies: [
      subjectPolicy(
        'default',
        'Baseline',
        10,
        'hufflepuff',
        'ingress',
        protocolRules(
          'ingress',
          'UDP',
          { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
          5353,
          53,
          false,
        ),
      ),
    ],
    steps: [
      {
        name: "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected",
        probes: [
          ['ravenclaw/0', 'hufflepuff/0', 'UDP', 53, true],
          ['ravenclaw/1', 'hufflepuff/0', 'UDP', 5353, true],
        ],
      },
      {
        name: "Should support an 'allow-ingress' policy for UDP protocol at the specified port",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'UDP', 53, true],
          ['gryffindor/1', 'hufflepuff/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected",
        changes: [swap('default', 'ingress', 0, 1)],
        probes: [
          ['ravenclaw/0', 'hufflepuff/1', 'UDP', 53, false],
          ['ravenclaw/1', 'hufflepuff/1', 'UDP', 5353, false],
        ],
      },
      {
        name: "Should support a 'deny-ingress' policy for UDP protocol at the specified port",
        probes: [
          ['slytherin/0', 'hufflepuff/0', 'UDP', 5353, false],
          ['slytherin/1', 'hufflepuff/0', 'UDP', 53, true],
        ],
      },
    ],
  },
  {
    name: 'CNPAdminTierGress',
    upstream: 'admin-network-policy-standard-gress-rules.go',
    policies: [
      clusterNetworkPolicy('gress-rules', {
        tier: 'Admin',
        priority: 15,
        subject: { namespaces: nsSel('gryffindor') },
        egress: multiProtocolRules(
          'egress',
          GRESS_HOUSES,
          GRESS_PORTS_B,
          GRESS_EGRESS_PORTS_C,
          true,
        ),
        ingress: multiProtocolRules(
          'ingress',
          GRESS_HOUSES,
          GRESS_PORTS_B,
          GRESS_INGRESS_PORTS_C,
          true,
        ),
      }),
    ],
    steps: [
      {
        name: "Should support an 'allow-gress' policy across different protocols",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/1', 'ravenclaw/0', 'UDP', 53, true],
          ['gryffindor/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'UDP', 53, true],
          ['ravenclaw/1', 'gryffindor/0', 'SCTP', 9003, true],
        ],
      },
      {
        name: "Should support an 'allow-gress' policy across different protocols at the specified ports",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'TCP', 8080, true],
          ['gryffindor/1', 'hufflepuff/1', 'TCP', 80, false],
          ['gryffindor/0', 'hufflepuff/1', 'UDP', 5353, true],
          ['gryffindor/1', 'hufflepuff/1', 'UDP', 53, false],
          ['gryffindor/0', 'hufflepuff/1', 'SCTP', 9003, true],
          ['gryffindor/1', 'hufflepuff/1', 'SCTP', 9005, false],
          ['hufflepuff/0', 'gryffindor/1', 'TCP', 80, true],
          ['hufflepuff/1', 'gryffindor/1', 'TCP', 8080, false],
          ['hufflepuff/0', 'gryffindor/1', 'UDP', 5353, true],
          ['hufflepuff/1', 'gryffindor/1', 'UDP', 53, false],
          ['hufflepuff/0', 'gryffindor/1', 'SCTP', 9003, true],
          ['hufflepuff/1', 'gryffindor/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-gress' policy across different protocols",
        changes: [swap('gress-rules', 'egress', 0, 1), swap('gress-rules', 'ingress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'TCP', 80, false],
          ['gryffindor/1', 'ravenclaw/1', 'UDP', 53, false],
          ['gryffindor/0', 'ravenclaw/1', 'SCTP', 9003, false],
          ['ravenclaw/0', 'gryffindor/1', 'TCP', 80, false],
          ['ravenclaw/1', 'gryffindor/1', 'UDP', 53, false],
          ['ravenclaw/1', 'gryffindor/1', 'SCTP', 9003, false],
        ],
      },
      {
        name: "Should support a 'deny-gress' policy across different protocols at the specified ports",
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
          ['gryffindor/0', 'slytherin/0', 'UDP', 53, false],
          ['gryffindor/1', 'slytherin/0', 'UDP', 5353, true],
          ['gryffindor/0', 'slytherin/0', 'SCTP', 9003, false],
          ['gryffindor/1', 'slytherin/0', 'SCTP', 9005, true],
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
          ['slytherin/0', 'gryffindor/0', 'UDP', 53, false],
          ['slytherin/1', 'gryffindor/0', 'UDP', 5353, true],
          ['slytherin/0', 'gryffindor/0', 'SCTP', 9003, false],
          ['slytherin/1', 'gryffindor/0', 'SCTP', 9005, true],
        ],
      },
      {
        name: "Should support an 'pass-gress' policy across different protocols",
        changes: [swap('gress-rules', 'egress', 0, 2), swap('gress-rules', 'ingress', 0, 2)],
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/0', 'ravenclaw/0', 'UDP', 5353, true],
          ['gryffindor/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'UDP', 53, true],
          ['ravenclaw/1', 'gryffindor/0', 'SCTP', 9003, true],
        ],
      },
      {
        name: "Should support a 'pass-gress' policy across different protocols at the specified ports",
        changes: [swap('gress-rules', 'egress', 3, 4), swap('gress-rules', 'ingress', 3, 4)],
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, true],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
          ['gryffindor/0', 'slytherin/0', 'UDP', 53, true],
          ['gryffindor/1', 'slytherin/0', 'UDP', 5353, true],
          ['gryffindor/0', 'slytherin/0', 'SCTP', 9003, true],
          ['gryffindor/1', 'slytherin/0', 'SCTP', 9005, true],
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, true],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
          ['slytherin/0', 'gryffindor/0', 'UDP', 53, true],
          ['slytherin/1', 'gryffindor/0', 'UDP', 5353, true],
          ['slytherin/0', 'gryffindor/0', 'SCTP', 9003, true],
          ['slytherin/1', 'gryffindor/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  {
    name: 'CNPBaselineTierGress',
    upstream: 'baseline-admin-network-policy-standard-gress-rules.go',
    policies: [
      clusterNetworkPolicy('default', {
        tier: 'Baseline',
        priority: 10,
        subject: { namespaces: nsSel('gryffindor') },
        egress: multiProtocolRules(
          'egress',
          GRESS_HOUSES,
          GRESS_PORTS_B,
          GRESS_EGRESS_PORTS_C,
          false,
        ),
        ingress: multiProtocolRules(
          'ingress',
          GRESS_HOUSES,
          GRESS_PORTS_B,
          GRESS_INGRESS_PORTS_C,
          false,
        ),
      }),
    ],
    steps: [
      {
        name: "Should support an 'allow-gress' policy across different protocols",
        probes: [
          ['gryffindor/0', 'ravenclaw/0', 'TCP', 80, true],
          ['gryffindor/1', 'ravenclaw/0', 'UDP', 53, true],
          ['gryffindor/0', 'ravenclaw/0', 'SCTP', 9003, true],
          ['ravenclaw/0', 'gryffindor/0', 'TCP', 80, true],
          ['ravenclaw/1', 'gryffindor/0', 'UDP', 53, true],
          ['ravenclaw/1', 'gryffindor/0', 'SCTP', 9003, true],
        ],
      },
      {
        name: "Should support an 'allow-gress' policy across different protocols at the specified ports",
        probes: [
          ['gryffindor/0', 'hufflepuff/1', 'TCP', 8080, true],
          ['gryffindor/1', 'hufflepuff/1', 'TCP', 80, false],
          ['gryffindor/0', 'hufflepuff/1', 'UDP', 5353, true],
          ['gryffindor/1', 'hufflepuff/1', 'UDP', 53, false],
          ['gryffindor/0', 'hufflepuff/1', 'SCTP', 9003, true],
          ['gryffindor/1', 'hufflepuff/1', 'SCTP', 9005, false],
          ['hufflepuff/0', 'gryffindor/1', 'TCP', 80, true],
          ['hufflepuff/1', 'gryffindor/1', 'TCP', 8080, false],
          ['hufflepuff/0', 'gryffindor/1', 'UDP', 5353, true],
          ['hufflepuff/1', 'gryffindor/1', 'UDP', 53, false],
          ['hufflepuff/0', 'gryffindor/1', 'SCTP', 9003, true],
          ['hufflepuff/1', 'gryffindor/1', 'SCTP', 9005, false],
        ],
      },
      {
        name: "Should support an 'deny-gress' policy across different protocols",
        changes: [swap('default', 'egress', 0, 1), swap('default', 'ingress', 0, 1)],
        probes: [
          ['gryffindor/0', 'ravenclaw/1', 'TCP', 80, false],
          ['gryffindor/1', 'ravenclaw/1', 'UDP', 53, false],
          ['gryffindor/0', 'ravenclaw/1', 'SCTP', 9003, false],
          ['ravenclaw/0', 'gryffindor/1', 'TCP', 80, false],
          ['ravenclaw/1', 'gryffindor/1', 'UDP', 53, false],
          ['ravenclaw/1', 'gryffindor/1', 'SCTP', 9003, false],
        ],
      },
      {
        name: "Should support a 'deny-gress' policy across different protocols at the specified ports",
        probes: [
          ['gryffindor/0', 'slytherin/0', 'TCP', 80, false],
          ['gryffindor/1', 'slytherin/0', 'TCP', 8080, true],
          ['gryffindor/0', 'slytherin/0', 'UDP', 53, false],
          ['gryffindor/1', 'slytherin/0', 'UDP', 5353, true],
          ['gryffindor/0', 'slytherin/0', 'SCTP', 9003, false],
          ['gryffindor/1', 'slytherin/0', 'SCTP', 9005, true],
          ['slytherin/0', 'gryffindor/0', 'TCP', 80, false],
          ['slytherin/1', 'gryffindor/0', 'TCP', 8080, true],
          ['slytherin/0', 'gryffindor/0', 'UDP', 53, false],
          ['slytherin/1', 'gryffindor/0', 'UDP', 5353, true],
          ['slytherin/0', 'gryffindor/0', 'SCTP', 9003, false],
          ['slytherin/1', 'gryffindor/0', 'SCTP', 9005, true],
        ],
      },
    ],
  },
  namedPortScenario(
    'CNPAdminTierEgressNamedPort',
    'admin-network-policy-experimental-egress-rules.go',
    subjectPolicy(
      'egress-tcp',
      'Admin',
      6,
      'gryffindor',
      'egress',
      protocolRules(
        'egress',
        'TCP',
        { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
        80,
        8080,
        true,
      ),
    ),
    'egress',
    5,
    'web',
    [
      ['gryffindor/0', 'hufflepuff/1', 'TCP', 80, true],
      ['gryffindor/1', 'hufflepuff/1', 'TCP', 8080, false],
    ],
  ),
  namedPortScenario(
    'CNPAdminTierIngressNamedPort',
    'admin-network-policy-experimental-ingress-rules.go',
    subjectPolicy(
      'ingress-udp',
      'Admin',
      4,
      'hufflepuff',
      'ingress',
      protocolRules(
        'ingress',
        'UDP',
        { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
        5353,
        53,
        true,
      ),
    ),
    'ingress',
    5,
    'dns',
    [
      ['gryffindor/0', 'hufflepuff/1', 'UDP', 53, true],
      ['gryffindor/1', 'hufflepuff/1', 'UDP', 5353, false],
    ],
  ),
  namedPortScenario(
    'CNPBaselineTierEgressNamedPort',
    'baseline-admin-network-policy-experimental-egress-rules.go',
    subjectPolicy(
      'default',
      'Baseline',
      10,
      'hufflepuff',
      'egress',
      protocolRules(
        'egress',
        'UDP',
        { a: 'ravenclaw', b: 'slytherin', c: 'gryffindor' },
        5353,
        53,
        false,
      ),
    ),
    'egress',
    3,
    'dns',
    [
      ['hufflepuff/0', 'gryffindor/1', 'UDP', 53, true],
      ['hufflepuff/1', 'gryffindor/1', 'UDP', 5353, false],
    ],
  ),
  namedPortScenario(
    'CNPBaselineTierIngressNamedPort',
    'baseline-admin-network-policy-experimental-ingress-rules.go',
    subjectPolicy(
      'default',
      'Baseline',
      10,
      'gryffindor',
      'ingress',
      protocolRules(
        'ingress',
        'TCP',
        { a: 'ravenclaw', b: 'slytherin', c: 'hufflepuff' },
        80,
        80,
        false,
      ),
    ),
    'ingress',
    3,
    'web',
    [
      ['hufflepuff/0', 'gryffindor/1', 'TCP', 80, true],
      ['hufflepuff/1', 'gryffindor/1', 'TCP', 8080, false],
    ],
  ),
  {
    name: 'CNPBaselineTierEgressNodePeers',
    upstream: 'baseline-admin-network-policy-experimental-egress-rules.go',
    policies: [
      clusterNetworkPolicy('default', {
        tier: 'Baseline',
        priority: 10,
        subject: { namespaces: nsSel('gryffindor') },
        egress: [
          {
            name: `allow-egress-to-${HOST_PORTS[0]}-on-nodes`,
            action: 'Accept',
            to: [{ nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } }],
            protocols: [
              { tcp: { destinationPort: { range: { start: HOST_PORTS[0], end: HOST_PORTS[1] } } } },
            ],
          },
          {
            name: 'deny-egress-to-nodes-and-internet',
            action: 'Deny',
            to: [
              { nodes: { matchLabels: { 'kubernetes.io/os': 'linux' } } },
              { networks: ['0.0.0.0/0', '::/0'] },
            ],
          },
        ],
      }),
    ],
    steps: [
      {
        name: "Should support an 'allow-egress' rule policy for egress-node-peer",
        probes: [
          ['gryffindor/0', 'centaur/1', 'TCP', HOST_PORTS[0], true],
          ['gryffindor/1', 'centaur/1', 'TCP', HOST_PORTS[1], true],
        ],
      },
      {
        name: "Should support a 'deny-egress' rule policy for egress-node-peer",
        probes: [
          // harry-potter-1 and centaur-1 share node kind-b: no NetworkPolicy isolates
          // harry-potter-1, so the own-node exemption (the NetworkPolicy tier's) does
          // not apply and the Baseline Deny decides.
          ['gryffindor/1', 'centaur/1', 'UDP', HOST_PORTS[4], false],
          ['gryffindor/1', 'centaur/1', 'SCTP', HOST_PORTS[6], false],
          // The same from the other node (Weir's addition).
          ['gryffindor/0', 'centaur/1', 'UDP', HOST_PORTS[4], false],
          ['gryffindor/0', 'centaur/1', 'SCTP', HOST_PORTS[6], false],
        ],
      },
    ],
  },
];

/**
 * Upstream's named-port scenarios: a protocol scenario's policy, freshly
 * applied, with rule `rule` of `direction` given `destinationNamedPort:
 * name` instead of its port, then probed once.
 */
function namedPortScenario(
  name: string,
  upstream: string,
  policy: Raw,
  direction: 'ingress' | 'egress',
  rule: number,
  port: string,
  probes: readonly Probe[],
): Scenario {
  const policyName = (policy.metadata as { name: string }).name;
  return {
    name,
    upstream,
    policies: [policy],
    steps: [
      {
        name: `Should support an 'allow-${direction}' policy for named port`,
        changes: [
          {
            setProtocols: {
              policy: policyName,
              direction,
              rule,
              protocols: [{ destinationNamedPort: port }],
            },
          },
        ],
        probes,
      },
    ],
  };
}

/**
 * Upstream's inline-CIDR scenario, the same in both tiers: gryffindor may
 * reach slytherin's pods and nothing else (0.0.0.0/0 and ::/0 denied); the
 * slytherin namespace is relabelled away and back; then an Accept to two pod
 * addresses is put first.
 */
function inlineCidrScenario(
  name: string,
  upstream: string,
  policy: string,
  tier: 'Admin' | 'Baseline',
  priority: number,
  subject: Raw,
): Scenario {
  return {
    name,
    upstream,
    policies: [
      clusterNetworkPolicy(policy, {
        tier,
        priority,
        subject,
        egress: [
          { name: 'allow-egress-to-slytherin', action: 'Accept', to: [housePods('slytherin')] },
          {
            name: 'deny-egress-to-internet',
            action: 'Deny',
            to: [{ networks: ['0.0.0.0/0', '::/0'] }],
          },
        ],
      }),
    ],
    steps: [
      {
        name: "Should support a 'deny-egress' rule policy for egress-cidr-peer",
        probes: [
          ...everyProtocol('gryffindor/1', 'ravenclaw/0', false),
          ...everyProtocol('gryffindor/1', 'hufflepuff/0', false),
          ...everyProtocol('gryffindor/1', 'slytherin/0', true),
        ],
      },
      {
        name: 'the slytherin namespace relabelled: its pods are no longer the Accept peer and the Deny to 0.0.0.0/0 takes them',
        changes: [
          {
            setNamespaceLabels: {
              house: 'slytherin',
              labels: { 'conformance-house': 'denied-namespace-label' },
            },
          },
        ],
        probes: everyProtocol('gryffindor/1', 'slytherin/0', false),
      },
      {
        name: 'the slytherin namespace labelled back: allowed again',
        changes: [
          {
            setNamespaceLabels: {
              house: 'slytherin',
              labels: { 'conformance-house': 'slytherin' },
            },
          },
        ],
        probes: everyProtocol('gryffindor/1', 'slytherin/0', true),
      },
      {
        name: "Should support an 'allow-egress' rule policy for egress-cidr-peer",
        changes: [
          {
            prependRule: {
              policy,
              direction: 'egress',
              rule: {
                name: 'allow-egress-to-specific-podIPs',
                action: 'Accept',
                to: [
                  {
                    networks: [
                      `${podAddress('ravenclaw/0')}/32`,
                      `${podAddress('hufflepuff/0')}/32`,
                    ],
                  },
                ],
              },
            },
          },
        ],
        probes: [
          ...everyProtocol('gryffindor/1', 'ravenclaw/0', true),
          ...everyProtocol('gryffindor/1', 'hufflepuff/0', true),
          ...everyProtocol('gryffindor/1', 'ravenclaw/1', false),
          ...everyProtocol('gryffindor/1', 'hufflepuff/1', false),
        ],
      },
    ],
  };
}

/** TCP 80, UDP 53, SCTP 9003, as upstream's CIDR scenario probes each peer. */
function everyProtocol(from: string, to: string, allowed: boolean): Probe[] {
  return [
    [from, to, 'TCP', 80, allowed],
    [from, to, 'UDP', 53, allowed],
    [from, to, 'SCTP', 9003, allowed],
  ];
}

/** The scenario's objects after `changes`, applied in order (each a copy). */
export function applyChanges(objects: readonly Raw[], changes: readonly Change[]): Raw[] {
  let out = objects.map((o) => structuredClone(o));
  const cnp = (name: string) => {
    const o = out.find((x) => x.kind === 'ClusterNetworkPolicy' && meta(x).name === name);
    if (o === undefined) throw new Error(`no ClusterNetworkPolicy ${name} to change`);
    return o.spec as Record<string, unknown>;
  };
  for (const c of changes) {
    if ('swapRules' in c) {
      const { policy, direction, a, b } = c.swapRules;
      const rules = cnp(policy)[direction] as unknown[];
      [rules[a], rules[b]] = [rules[b], rules[a]];
    } else if ('setPriority' in c) cnp(c.setPriority.policy).priority = c.setPriority.priority;
    else if ('setAction' in c) {
      const { policy, direction, rule, action } = c.setAction;
      (cnp(policy)[direction] as Array<Record<string, unknown>>)[rule]!.action = action;
    } else if ('setProtocols' in c) {
      const { policy, direction, rule, protocols } = c.setProtocols;
      (cnp(policy)[direction] as Array<Record<string, unknown>>)[rule]!.protocols =
        structuredClone(protocols);
    } else if ('prependRule' in c) {
      const { policy, direction, rule } = c.prependRule;
      const spec = cnp(policy);
      spec[direction] = [rule, ...((spec[direction] as unknown[]) ?? [])];
    } else if ('setNamespaceLabels' in c) {
      const o = out.find(
        (x) => x.kind === 'Namespace' && meta(x).name === ns(c.setNamespaceLabels.house),
      );
      if (o === undefined) throw new Error(`no namespace ${c.setNamespaceLabels.house}`);
      meta(o).labels = { ...c.setNamespaceLabels.labels };
    } else {
      const { namespace: n, name } = c.deleteNetworkPolicy;
      out = out.filter(
        (x) => !(x.kind === 'NetworkPolicy' && meta(x).name === name && meta(x).namespace === n),
      );
    }
  }
  return out;
}

function meta(o: Raw): Record<string, unknown> {
  return o.metadata as Record<string, unknown>;
}
