/**
 * NetworkPolicy v1 semantics as a table: each case is a cluster, policies, and
 * probes with the verdict Kubernetes requires. Every case runs the real
 * pipeline (validation → model → translation → compile → evaluator). The
 * cases named "Contrail …" pin down the mistakes CONTRAIL.md lists.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import {
  allows,
  build,
  namespace,
  networkPolicy,
  node,
  pod,
  type Raw,
} from '../../testing/cluster.js';

/** Two namespaces, a few pods each, ports declared by name. */
function world(): Raw[] {
  return [
    namespace('prod', { env: 'prod', team: 'shop' }),
    namespace('dev', { env: 'dev', team: 'shop' }),
    namespace('ops', { team: 'platform' }),
    pod('prod', 'web', {
      labels: { app: 'web', tier: 'frontend' },
      ips: ['10.1.0.1', 'fd00::1:1'],
      ports: [{ name: 'http', port: 8080 }],
    }),
    pod('prod', 'api', {
      labels: { app: 'api', tier: 'backend', version: 'v2' },
      ips: ['10.1.0.2', 'fd00::1:2'],
      ports: [
        { name: 'http', port: 9090 },
        { name: 'dns', port: 5353, protocol: 'UDP' },
      ],
    }),
    pod('prod', 'db', {
      labels: { app: 'db', tier: 'backend' },
      ips: ['10.1.0.3'],
      ports: [{ name: 'pg', port: 5432 }],
    }),
    pod('dev', 'web', {
      labels: { app: 'web', tier: 'frontend' },
      ips: ['10.2.0.1'],
      ports: [{ name: 'http', port: 8081 }],
    }),
    pod('dev', 'tool', { labels: { app: 'tool', env: 'prod' }, ips: ['10.2.0.2'] }),
    pod('ops', 'monitor', { labels: { app: 'monitor' }, ips: ['10.3.0.1'] }),
  ];
}

/**
 * Two nodes with Node objects and pods on them (onnode on n1, dual-stack;
 * onn2 on n2), and a pod on a node without a Node object.
 */
function nodes(): Raw[] {
  return [
    node('n1', [
      '192.168.1.1',
      'fd01::1',
      ['ExternalIP', '203.0.113.1'],
      ['Hostname', 'n1.example'],
    ]),
    node('n2', ['192.168.1.2']),
    pod('prod', 'onnode', {
      labels: { app: 'onnode' },
      ips: ['10.1.9.1', 'fd00::9:1'],
      node: 'n1',
    }),
    pod('prod', 'onn2', { labels: { app: 'onn2' }, ips: ['10.1.9.2'], node: 'n2' }),
    pod('prod', 'nonode', { labels: { app: 'nonode' }, ips: ['10.1.9.3'], node: 'n9' }),
  ];
}

type Probe = [from: string, to: string, service: string, allowed: boolean];

interface Case {
  name: string;
  objects?: Raw[];
  policies: Raw[];
  probes: Probe[];
}

const np = networkPolicy;

const cases: Case[] = [
  {
    name: 'with no policy every pod reaches every pod and the outside',
    policies: [],
    probes: [
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['dev/tool', 'prod/api', 'UDP/53', true],
      ['8.8.8.8', 'prod/web', 'SCTP/9', true],
      ['prod/web', '8.8.8.8', 'TCP/443', true],
    ],
  },
  {
    name: 'a policy with an empty podSelector and no ingress rules denies all ingress to its namespace only',
    policies: [np('prod', 'deny', { podSelector: {} })],
    probes: [
      ['dev/web', 'prod/web', 'TCP/8080', false],
      ['prod/web', 'prod/api', 'TCP/9090', false],
      ['8.8.8.8', 'prod/db', 'TCP/5432', false],
      ['prod/web', 'dev/web', 'TCP/8081', true],
      ['prod/web', '8.8.8.8', 'TCP/443', true],
    ],
  },
  {
    name: 'a pod reaches its own address even when isolated both ways',
    policies: [np('prod', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    probes: [
      ['prod/web', 'prod/web', 'TCP/8080', true],
      ['10.1.0.1', '10.1.0.1', 'UDP/1', true],
      ['prod/web', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'ingress: [{}] allows everything in, while ingress: [] allows nothing',
    policies: [
      np('prod', 'all-in', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{}] }),
      np('prod', 'none-in', { podSelector: { matchLabels: { app: 'api' } }, ingress: [] }),
    ],
    probes: [
      ['8.8.8.8', 'prod/web', 'TCP/1', true],
      ['dev/tool', 'prod/web', 'UDP/53', true],
      ['prod/web', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'policyTypes defaults to Ingress only when no egress rules are written, even with egress: []',
    policies: [np('prod', 'p', { podSelector: {}, ingress: [{}], egress: [] })],
    probes: [
      ['prod/web', '8.8.8.8', 'TCP/443', true],
      ['prod/web', 'dev/web', 'TCP/8081', true],
    ],
  },
  {
    name: 'policyTypes defaults to Ingress and Egress when egress rules are written',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        egress: [{ to: [{ podSelector: { matchLabels: { app: 'api' } } }] }],
      }),
    ],
    probes: [
      ['prod/web', 'prod/api', 'TCP/9090', true],
      ['prod/web', 'prod/db', 'TCP/5432', false],
      ['dev/web', 'prod/web', 'TCP/8080', false],
      ['prod/api', 'prod/db', 'TCP/5432', true],
    ],
  },
  {
    name: 'explicit policyTypes [Egress] ignores ingress rules and leaves ingress open',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        policyTypes: ['Egress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'nothing' } } }] }],
      }),
    ],
    probes: [
      ['dev/web', 'prod/web', 'TCP/8080', true],
      ['prod/web', 'dev/web', 'TCP/8081', false],
      ['prod/web', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'Contrail 1: an egress allow at the source does not admit the flow at a destination that isolates ingress',
    policies: [
      np('prod', 'web-out', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
        egress: [{}],
      }),
      np('prod', 'db-in', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }] }],
      }),
    ],
    probes: [
      ['prod/web', 'prod/db', 'TCP/5432', false],
      ['prod/api', 'prod/db', 'TCP/5432', true],
    ],
  },
  {
    name: 'Contrail 1: an ingress allow at the destination does not admit the flow from a source that isolates egress',
    policies: [
      np('prod', 'web-out', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
      }),
      np('prod', 'db-in', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{}] }),
    ],
    probes: [
      ['prod/web', 'prod/db', 'TCP/5432', false],
      ['prod/api', 'prod/db', 'TCP/5432', true],
    ],
  },
  {
    name: 'Contrail 2: an ipBlock except carves the pod out of one policy but not out of another policy that allows it',
    policies: [
      np('prod', 'block', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.2.0.0/16'] } }] }],
      }),
      np('prod', 'tool', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchLabels: { env: 'dev' } },
                podSelector: { matchLabels: { app: 'tool' } },
              },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['dev/web', 'prod/db', 'TCP/5432', false],
      ['dev/tool', 'prod/db', 'TCP/5432', true],
      ['8.8.8.8', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'Contrail 2: NotIn on a peer selects the others and denies no one that another rule allows',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          {
            from: [
              {
                podSelector: {
                  matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web', 'db'] }],
                },
              },
            ],
          },
          { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] },
        ],
      }),
    ],
    probes: [
      ['prod/api', 'prod/db', 'TCP/1', true],
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['prod/web', 'prod/db', 'TCP/1', false],
    ],
  },
  {
    name: 'Contrail 3: matchExpressions on the policy podSelector decide which pods are isolated',
    policies: [
      np('prod', 'p', {
        podSelector: {
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['backend', 'cache'] }],
        },
      }),
    ],
    probes: [
      ['dev/tool', 'prod/api', 'TCP/9090', false],
      ['dev/tool', 'prod/db', 'TCP/5432', false],
      ['dev/tool', 'prod/web', 'TCP/8080', true],
    ],
  },
  {
    name: 'Contrail 3: In keeps every value, Exists and DoesNotExist are honoured',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          {
            from: [
              {
                podSelector: {
                  matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }],
                },
              },
            ],
            ports: [{ port: 1 }],
          },
          {
            from: [{ podSelector: { matchExpressions: [{ key: 'version', operator: 'Exists' }] } }],
            ports: [{ port: 2 }],
          },
          {
            from: [
              { podSelector: { matchExpressions: [{ key: 'version', operator: 'DoesNotExist' }] } },
            ],
            ports: [{ port: 3 }],
          },
        ],
      }),
    ],
    probes: [
      ['prod/web', 'prod/db', 'TCP/1', true],
      ['prod/api', 'prod/db', 'TCP/1', true],
      ['prod/api', 'prod/db', 'TCP/2', true],
      ['prod/web', 'prod/db', 'TCP/2', false],
      ['prod/web', 'prod/db', 'TCP/3', true],
      ['prod/api', 'prod/db', 'TCP/3', false],
    ],
  },
  {
    name: 'Contrail 4: a namespaceSelector matches namespace labels, never pod labels',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }] }],
      }),
    ],
    probes: [
      ['dev/tool', 'prod/web', 'TCP/8080', false], // the pod has env=prod, its namespace has env=dev
      ['prod/api', 'prod/web', 'TCP/8080', true],
    ],
  },
  {
    name: 'Contrail 4: a podSelector matches pod labels, never namespace labels',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ from: [{ podSelector: { matchLabels: { env: 'prod' } } }] }],
      }),
    ],
    probes: [
      ['prod/api', 'prod/web', 'TCP/8080', false],
      ['dev/tool', 'prod/web', 'TCP/8080', false], // env=prod pod, but a podSelector alone means this namespace
    ],
  },
  {
    name: 'Contrail 5: namespaceSelector {} means every pod in every namespace, and nothing outside the cluster',
    policies: [
      np('prod', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] }),
    ],
    probes: [
      ['dev/tool', 'prod/web', 'TCP/8080', true],
      ['ops/monitor', 'prod/db', 'UDP/9', true],
      ['prod/api', 'prod/web', 'TCP/8080', true],
      ['8.8.8.8', 'prod/web', 'TCP/8080', false],
    ],
  },
  {
    name: 'a podSelector alone selects pods in the policy namespace only',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
      }),
    ],
    probes: [
      ['prod/web', 'prod/api', 'TCP/9090', true],
      ['dev/web', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'namespaceSelector and podSelector in one peer must both match (AND)',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchLabels: { team: 'shop' } },
                podSelector: { matchLabels: { app: 'web' } },
              },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['dev/web', 'prod/db', 'TCP/5432', true],
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['dev/tool', 'prod/db', 'TCP/5432', false],
      ['ops/monitor', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'namespaceSelector and podSelector as two peers match either (OR)',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { team: 'platform' } } },
              { podSelector: { matchLabels: { app: 'web' } } },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['ops/monitor', 'prod/db', 'TCP/5432', true],
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['dev/web', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'the automatic kubernetes.io/metadata.name label selects a namespace by name',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ops' } } },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['ops/monitor', 'prod/db', 'TCP/5432', true],
      ['dev/tool', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'Contrail 6: a port without a protocol is TCP only',
    policies: [np('prod', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 53 }] }] })],
    probes: [
      ['dev/tool', 'prod/api', 'TCP/53', true],
      ['dev/tool', 'prod/api', 'UDP/53', false],
      ['dev/tool', 'prod/api', 'SCTP/53', false],
    ],
  },
  {
    name: 'a port entry with a protocol and no port allows every port of that protocol only',
    policies: [np('prod', 'p', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP' }] }] })],
    probes: [
      ['dev/tool', 'prod/api', 'UDP/1', true],
      ['dev/tool', 'prod/api', 'UDP/65535', true],
      ['dev/tool', 'prod/api', 'TCP/1', false],
    ],
  },
  {
    name: 'UDP and SCTP ports match their own protocol',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [
          {
            ports: [
              { protocol: 'UDP', port: 53 },
              { protocol: 'SCTP', port: 36412 },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['dev/tool', 'prod/api', 'UDP/53', true],
      ['dev/tool', 'prod/api', 'SCTP/36412', true],
      ['dev/tool', 'prod/api', 'SCTP/53', false],
      ['dev/tool', 'prod/api', 'TCP/36412', false],
    ],
  },
  {
    name: 'Contrail 6: endPort allows the whole inclusive range and nothing beyond',
    policies: [
      np('prod', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 32000, endPort: 32768 }] }] }),
    ],
    probes: [
      ['dev/tool', 'prod/api', 'TCP/32000', true],
      ['dev/tool', 'prod/api', 'TCP/32500', true],
      ['dev/tool', 'prod/api', 'TCP/32768', true],
      ['dev/tool', 'prod/api', 'TCP/31999', false],
      ['dev/tool', 'prod/api', 'TCP/32769', false],
    ],
  },
  {
    name: 'Contrail 6: an ingress named port resolves against each destination pod',
    policies: [np('prod', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 'http' }] }] })],
    probes: [
      ['dev/tool', 'prod/web', 'TCP/8080', true],
      ['dev/tool', 'prod/api', 'TCP/9090', true],
      ['dev/tool', 'prod/web', 'TCP/9090', false],
      ['dev/tool', 'prod/api', 'TCP/8080', false],
      ['dev/tool', 'prod/db', 'TCP/5432', false], // db has no port named http
    ],
  },
  {
    name: 'a named port matches only the protocol it is declared with',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ ports: [{ port: 'dns', protocol: 'UDP' }, { port: 'dns' }] }],
      }),
    ],
    probes: [
      ['dev/tool', 'prod/api', 'UDP/5353', true],
      ['dev/tool', 'prod/api', 'TCP/5353', false], // "dns" is declared UDP; the TCP entry resolves to nothing
    ],
  },
  {
    name: 'Contrail 6: an egress named port resolves against the destination, not the source',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
        egress: [{ ports: [{ port: 'http' }] }],
      }),
    ],
    probes: [
      ['prod/web', 'prod/api', 'TCP/9090', true],
      ['prod/web', 'dev/web', 'TCP/8081', true],
      ['prod/web', 'prod/api', 'TCP/8080', false], // 8080 is http on the source, not on api
      ['prod/web', 'prod/db', 'TCP/5432', false],
      ['prod/web', '8.8.8.8', 'TCP/8080', false], // an outside address declares no ports
    ],
  },
  {
    name: 'an egress named port towards an ipBlock resolves against the pods inside the block',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '10.2.0.0/16' } }], ports: [{ port: 'http' }] }],
      }),
    ],
    probes: [
      ['prod/web', 'dev/web', 'TCP/8081', true],
      ['prod/web', 'prod/api', 'TCP/9090', false], // declares http, but outside the block
      ['prod/web', '10.2.9.9', 'TCP/8081', false],
    ],
  },
  {
    name: 'policies are a union: any policy that selects the pod may allow the traffic',
    policies: [
      np('prod', 'a', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }] }],
      }),
      np('prod', 'b', {
        podSelector: { matchLabels: { tier: 'backend' } },
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] },
        ],
      }),
    ],
    probes: [
      ['prod/api', 'prod/db', 'TCP/1', true],
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['prod/web', 'prod/db', 'TCP/1', false],
      ['prod/web', 'prod/api', 'TCP/5432', true],
      ['prod/api', 'prod/api', 'TCP/1', true],
    ],
  },
  {
    name: 'a rule with peers and ports needs both to match',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: 5432 }] },
        ],
      }),
    ],
    probes: [
      ['prod/api', 'prod/db', 'TCP/5432', true],
      ['prod/api', 'prod/db', 'TCP/5433', false],
      ['prod/web', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'an ipBlock matches outside addresses and pod addresses alike',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [
          { from: [{ ipBlock: { cidr: '192.168.0.0/16' } }, { ipBlock: { cidr: '10.1.0.2/32' } }] },
        ],
      }),
    ],
    probes: [
      ['192.168.7.7', 'prod/db', 'TCP/5432', true],
      ['192.169.0.1', 'prod/db', 'TCP/5432', false],
      ['prod/api', 'prod/db', 'TCP/5432', true],
      ['prod/web', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'a CIDR written with host bits set is normalised as the API server accepts it',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ ipBlock: { cidr: '10.2.0.77/16', except: ['10.2.0.9/31'] } }] }],
      }),
    ],
    probes: [
      ['dev/web', 'prod/db', 'TCP/5432', true],
      ['10.2.0.8', 'prod/db', 'TCP/5432', false],
      ['10.2.0.9', 'prod/db', 'TCP/5432', false],
      ['10.2.0.10', 'prod/db', 'TCP/5432', true],
    ],
  },
  {
    name: 'egress to an ipBlock allows that block and nothing else',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] }],
      }),
    ],
    probes: [
      ['prod/web', '8.8.8.8', 'TCP/443', true],
      ['prod/web', 'prod/api', 'TCP/9090', false],
      ['prod/web', '10.200.0.1', 'TCP/443', false],
    ],
  },
  {
    name: 'IPv6 ipBlocks match IPv6 addresses and never IPv4 ones',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'api' } },
        ingress: [
          {
            from: [
              { ipBlock: { cidr: 'fd00::/96', except: ['fd00::1:0/120'] } },
              { ipBlock: { cidr: '2001:db8::/32' } },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['fd00::5', 'prod/api', 'TCP/9090', true],
      ['fd00::1:5', 'prod/api', 'TCP/9090', false],
      ['2001:db8:1::1', 'prod/api', 'TCP/9090', true],
      ['10.9.9.9', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'a dual-stack pod is matched by selector on both of its addresses',
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'api' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
      }),
    ],
    probes: [
      ['10.1.0.1', '10.1.0.2', 'TCP/9090', true],
      ['fd00::1:1', 'fd00::1:2', 'TCP/9090', true],
      ['fd00::1:3', 'fd00::1:2', 'TCP/9090', false],
    ],
  },
  {
    name: 'egress deny-all except DNS lets UDP 53 out to anywhere and nothing else',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        policyTypes: ['Egress'],
        egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }],
      }),
    ],
    probes: [
      ['prod/web', '8.8.8.8', 'UDP/53', true],
      ['prod/web', 'dev/tool', 'UDP/53', true],
      ['prod/web', '8.8.8.8', 'TCP/53', false],
      ['prod/web', 'prod/api', 'TCP/9090', false],
    ],
  },
  {
    name: 'a peer selector that matches no pod allows nothing',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'ghost' } } }] }],
      }),
    ],
    probes: [['prod/web', 'prod/api', 'TCP/9090', false]],
  },
  {
    name: 'a namespaceSelector that selects no namespace allows nothing',
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'ghost' } } }] }],
      }),
    ],
    probes: [['ops/monitor', 'prod/api', 'TCP/9090', false]],
  },
  {
    name: 'a policy whose podSelector matches no pod isolates nothing',
    policies: [np('prod', 'p', { podSelector: { matchLabels: { app: 'ghost' } } })],
    probes: [['dev/tool', 'prod/api', 'TCP/9090', true]],
  },
  {
    name: 'host-network pods and finished pods are not endpoints: their addresses are outside addresses',
    objects: [
      pod('prod', 'node-agent', { labels: { app: 'web' }, ips: ['10.9.0.1'], hostNetwork: true }),
      pod('prod', 'job', { labels: { app: 'web' }, ips: ['10.9.0.2'], phase: 'Succeeded' }),
    ],
    policies: [
      np('prod', 'p', {
        podSelector: { matchLabels: { app: 'db' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
      }),
    ],
    probes: [
      ['prod/web', 'prod/db', 'TCP/5432', true],
      ['10.9.0.1', 'prod/db', 'TCP/5432', false],
      ['10.9.0.2', 'prod/db', 'TCP/5432', false],
    ],
  },
  {
    name: 'traffic between a pod and its own node is not subject to NetworkPolicy, either way, on every node address',
    objects: nodes(),
    policies: [np('prod', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    probes: [
      ['192.168.1.1', 'prod/onnode', 'TCP/8080', true],
      ['prod/onnode', '192.168.1.1', 'TCP/10250', true],
      ['203.0.113.1', 'prod/onnode', 'UDP/53', true],
      ['fd01::1', 'fd00::9:1', 'SCTP/9', true],
      ['fd00::9:1', 'fd01::1', 'TCP/443', true],
      ['prod/onnode', 'prod/web', 'TCP/8080', false],
      ['8.8.8.8', 'prod/onnode', 'TCP/8080', false],
    ],
  },
  {
    name: "traffic between a pod and another node's addresses is subject to NetworkPolicy",
    objects: nodes(),
    policies: [np('prod', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    probes: [
      ['192.168.1.2', 'prod/onnode', 'TCP/8080', false],
      ['prod/onnode', '192.168.1.2', 'TCP/10250', false],
      ['192.168.1.1', 'prod/onn2', 'TCP/8080', false],
      ['192.168.1.2', 'prod/onn2', 'TCP/8080', true],
    ],
  },
  {
    name: 'a pod whose node has no Node object, or no node, has no node traffic to exempt',
    objects: nodes(),
    policies: [np('prod', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    probes: [
      ['192.168.1.1', 'prod/nonode', 'TCP/8080', false],
      ['192.168.1.1', 'prod/web', 'TCP/8080', false],
    ],
  },
  {
    name: 'under egress isolation alone a pod still reaches its own node, and no other node',
    objects: nodes(),
    policies: [
      np('prod', 'deny-out', {
        podSelector: { matchLabels: { app: 'onn2' } },
        policyTypes: ['Egress'],
      }),
    ],
    probes: [
      ['prod/onn2', '192.168.1.2', 'TCP/10250', true],
      ['prod/onn2', '192.168.1.1', 'TCP/10250', false],
      ['prod/onn2', 'prod/onnode', 'TCP/8080', false],
      ['192.168.1.1', 'prod/onn2', 'TCP/8080', true],
    ],
  },
  {
    name: 'a namespace known only from its pods still has its automatic name label',
    objects: [pod('ghost', 'p1', { labels: { app: 'x' }, ips: ['10.8.0.1'] })],
    policies: [
      np('prod', 'p', {
        podSelector: {},
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ghost' } } },
            ],
          },
        ],
      }),
    ],
    probes: [
      ['ghost/p1', 'prod/web', 'TCP/8080', true],
      ['dev/tool', 'prod/web', 'TCP/8080', false],
    ],
  },
];

describe('NetworkPolicy semantics', () => {
  for (const c of cases) {
    test(c.name, () => {
      const { tables, issues } = build([...world(), ...(c.objects ?? []), ...c.policies]);
      assert.deepEqual(issues, [], 'fixture objects are valid');
      const wrong = c.probes
        .filter(([from, to, service, want]) => allows(tables, from, to, service) !== want)
        .map(
          ([from, to, service, want]) =>
            `${from} -> ${to} ${service}: want ${want ? 'allowed' : 'denied'}`,
        );
      assert.deepEqual(wrong, []);
    });
  }
});

test('an address two pods claim (reuse before the old pod is gone) is decided as one pod, the last by name, for every rule', () => {
  const { tables } = build([
    namespace('a'),
    pod('a', 'new', {
      labels: { app: 'x' },
      ips: ['10.9.9.9'],
      ports: [{ name: 'http', port: 9090 }],
    }),
    pod('a', 'old', {
      labels: { app: 'x' },
      ips: ['10.9.9.9'],
      ports: [{ name: 'http', port: 8080 }],
    }),
    pod('a', 'client', { labels: { app: 'client' }, ips: ['10.9.9.1'] }),
    networkPolicy('a', 'out', {
      podSelector: { matchLabels: { app: 'client' } },
      policyTypes: ['Egress'],
      egress: [{ ports: [{ port: 'http' }] }],
    }),
  ]);
  assert.equal(tables.byIp.get(parseIp('10.9.9.9'))?.key, 'a/old');
  assert.equal(allows(tables, 'a/client', '10.9.9.9', 'TCP/8080'), true, "old's http");
  assert.equal(
    allows(tables, 'a/client', '10.9.9.9', 'TCP/9090'),
    false,
    "new's http is not consulted for an address old holds",
  );
});
