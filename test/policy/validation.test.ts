/**
 * Invalid input is rejected the way the API server rejects it, with the
 * object and the field named, every problem at once; the rest of the cluster
 * is unaffected.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readKubeObject } from '../../controller/kube/objects.js';
import {
  allows,
  build,
  namespace,
  networkPolicy,
  node,
  pod,
  type Raw,
} from '../../testing/cluster.js';

const np = (spec: Raw) => networkPolicy('prod', 'bad', spec);
const rule = (ingress: Raw) => np({ podSelector: {}, ingress: [ingress] });

interface Case {
  name: string;
  object: Raw;
  /** [field, a fragment of the message] for every issue expected, in order. */
  issues: Array<[string, string]>;
}

const cases: Case[] = [
  {
    name: 'a CIDR with a prefix length out of range',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.cidr', 'not a valid CIDR']],
  },
  {
    name: 'a CIDR whose address is not an address',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.256/24' } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.cidr', 'not an IP address']],
  },
  {
    name: 'a CIDR in shorthand',
    object: rule({ from: [{ ipBlock: { cidr: '10.1/16' } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.cidr', 'not a valid CIDR']],
  },
  {
    name: 'a CIDR without a prefix length',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.1' } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.cidr', 'prefix length']],
  },
  {
    name: 'an ipBlock without a cidr',
    object: rule({ from: [{ ipBlock: { except: ['10.0.0.0/24'] } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.cidr', 'required']],
  },
  {
    name: 'an except outside its CIDR',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.except[0]', 'strict subset']],
  },
  {
    name: 'an except equal to its CIDR',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.0.0/16'] } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.except[0]', 'strict subset']],
  },
  {
    name: 'an except of the other address family',
    object: rule({ from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['fd00::/8'] } }] }),
    issues: [['spec.ingress[0].from[0].ipBlock.except[0]', 'strict subset']],
  },
  {
    name: 'an ipBlock together with a selector in one peer',
    object: rule({ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }),
    issues: [['spec.ingress[0].from[0]', 'both ipBlock and another peer']],
  },
  {
    name: 'an empty peer',
    object: rule({ from: [{}] }),
    issues: [['spec.ingress[0].from[0]', 'must specify a peer']],
  },
  {
    name: 'a port of 0',
    object: rule({ ports: [{ port: 0 }] }),
    issues: [['spec.ingress[0].ports[0].port', 'between 1 and 65535']],
  },
  {
    name: 'a port above 65535',
    object: rule({ ports: [{ port: 65536 }] }),
    issues: [['spec.ingress[0].ports[0].port', 'between 1 and 65535']],
  },
  {
    name: 'an endPort below port',
    object: rule({ ports: [{ port: 9000, endPort: 8000 }] }),
    issues: [['spec.ingress[0].ports[0].endPort', 'greater than or equal to port 9000']],
  },
  {
    name: 'an endPort with a named port',
    object: rule({ ports: [{ port: 'http', endPort: 8000 }] }),
    issues: [['spec.ingress[0].ports[0].endPort', 'named port']],
  },
  {
    name: 'an endPort without a port',
    object: rule({ ports: [{ endPort: 8000 }] }),
    issues: [['spec.ingress[0].ports[0].endPort', 'port is not specified']],
  },
  {
    name: 'an endPort above 65535',
    object: rule({ ports: [{ port: 1, endPort: 70000 }] }),
    issues: [['spec.ingress[0].ports[0].endPort', 'between 1 and 65535']],
  },
  {
    name: 'an unknown protocol',
    object: rule({ ports: [{ protocol: 'ICMP', port: 1 }] }),
    issues: [['spec.ingress[0].ports[0].protocol', 'not supported']],
  },
  {
    name: 'a protocol in lower case',
    object: rule({ ports: [{ protocol: 'tcp', port: 1 }] }),
    issues: [['spec.ingress[0].ports[0].protocol', 'not supported']],
  },
  {
    name: 'a numeric port written as a string',
    object: rule({ ports: [{ port: '80' }] }),
    issues: [['spec.ingress[0].ports[0].port', 'at least one letter']],
  },
  {
    name: 'a named port longer than 15 characters',
    object: rule({ ports: [{ port: 'a-very-long-port-name' }] }),
    issues: [['spec.ingress[0].ports[0].port', '15 characters']],
  },
  {
    name: 'a named port with upper case',
    object: rule({ ports: [{ port: 'HTTP' }] }),
    issues: [['spec.ingress[0].ports[0].port', 'lower-case']],
  },
  {
    name: 'a matchExpressions operator that does not exist',
    object: np({
      podSelector: { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] },
    }),
    issues: [['spec.podSelector.matchExpressions[0].operator', '"Equals" is not valid']],
  },
  {
    name: 'In without values',
    object: np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] } }),
    issues: [['spec.podSelector.matchExpressions[0].values', 'non-empty']],
  },
  {
    name: 'Exists with values',
    object: rule({
      from: [
        {
          namespaceSelector: {
            matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }],
          },
        },
      ],
    }),
    issues: [
      ['spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values', 'must be empty'],
    ],
  },
  {
    name: 'a label key with a space',
    object: rule({ from: [{ podSelector: { matchLabels: { 'my app': 'x' } } }] }),
    issues: [['spec.ingress[0].from[0].podSelector.matchLabels["my app"]', 'label key']],
  },
  {
    name: 'a label value that is a number',
    object: rule({ from: [{ podSelector: { matchLabels: { version: 2 } } }] }),
    issues: [['spec.ingress[0].from[0].podSelector.matchLabels["version"]', 'must be a string']],
  },
  {
    name: 'a selector that is a string',
    object: np({ podSelector: 'app=web' }),
    issues: [['spec.podSelector', 'must be an object']],
  },
  {
    name: 'a missing podSelector',
    object: np({ ingress: [] }),
    issues: [['spec.podSelector', 'required']],
  },
  {
    name: 'an unknown policy type',
    object: np({ podSelector: {}, policyTypes: ['Ingress', 'Sideways'] }),
    issues: [['spec.policyTypes[1]', 'not supported']],
  },
  {
    name: 'a duplicated policy type',
    object: np({ podSelector: {}, policyTypes: ['Egress', 'Egress'] }),
    issues: [['spec.policyTypes[1]', 'duplicate']],
  },
  {
    name: 'from given as an object instead of a list',
    object: rule({ from: { podSelector: {} } }),
    issues: [['spec.ingress[0].from', 'must be a list']],
  },
  {
    name: 'a policy without a spec',
    object: {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'x', namespace: 'prod' },
    },
    issues: [['spec', 'required']],
  },
  {
    name: 'a name that is not a DNS subdomain',
    object: networkPolicy('prod', 'Bad_Name', { podSelector: {} }),
    issues: [['metadata.name', 'not a valid name']],
  },
  {
    name: 'a pod address that is not an address',
    object: pod('prod', 'p', { ips: ['10.0.0.300'] }),
    issues: [
      ['status.podIP', 'not an IP address'],
      ['status.podIPs[0].ip', 'not an IP address'],
    ],
  },
  {
    name: 'a node address that is not an address, or without its type',
    object: node('n1', [
      '10.0.0.300',
      ['ExternalIP', '203.0.113.1/32'],
      ['InternalIP', ''],
      ['', '10.0.0.1'],
      ['Hostname', 'n1.example'],
    ]),
    issues: [
      ['status.addresses[0].address', 'not an IP address'],
      ['status.addresses[1].address', 'not an IP address'],
      ['status.addresses[2].address', 'required'],
      ['status.addresses[3].type', 'required'],
    ],
  },
  {
    name: 'node addresses that are not a list',
    object: {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n1' },
      status: { addresses: 'x' },
    },
    issues: [['status.addresses', 'must be a list']],
  },
  {
    name: 'a container port out of range',
    object: pod('prod', 'p', { ports: [{ name: 'x', port: 70000 }] }),
    issues: [['spec.containers[0].ports[0].containerPort', 'between 1 and 65535']],
  },
  {
    name: 'every problem of one policy at once',
    object: np({
      podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] },
      ingress: [
        { from: [{ ipBlock: { cidr: 'nope' } }], ports: [{ port: 0 }, { protocol: 'ICMP' }] },
      ],
      egress: [{ to: [{}] }],
    }),
    issues: [
      ['spec.podSelector.matchExpressions[0].values', 'non-empty'],
      ['spec.ingress[0].from[0].ipBlock.cidr', 'not a valid CIDR'],
      ['spec.ingress[0].ports[0].port', 'between 1 and 65535'],
      ['spec.ingress[0].ports[1].protocol', 'not supported'],
      ['spec.egress[0].to[0]', 'must specify a peer'],
    ],
  },
];

describe('validation', () => {
  for (const c of cases) {
    test(`rejects ${c.name}, naming the object and the field`, () => {
      const r = readKubeObject(c.object, 'policies.yaml:3');
      assert.equal(r.type, 'invalid');
      if (r.type !== 'invalid') return;
      const got = r.issues.map((i) => [i.field, i.message]);
      assert.equal(got.length, c.issues.length, `issues: ${JSON.stringify(got)}`);
      c.issues.forEach(([field, fragment], i) => {
        assert.equal(r.issues[i]!.field, field);
        assert.match(
          r.issues[i]!.message,
          new RegExp(fragment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
        );
        assert.equal(r.issues[i]!.source, 'policies.yaml:3');
        const kind = String(c.object.kind);
        assert.ok(r.issues[i]!.object?.startsWith(kind), `object named: ${r.issues[i]!.object}`);
      });
    });
  }

  test('accepts what the API server accepts: host bits in a CIDR, null lists, a port name with digits', () => {
    const r = readKubeObject(
      rule({
        from: [
          { ipBlock: { cidr: '10.0.0.1/8', except: ['10.1.2.3/16'] } },
          { podSelector: null, namespaceSelector: {} },
        ],
        ports: [{ port: 'h2c-80' }, { protocol: 'SCTP' }],
      }),
    );
    assert.equal(r.type, 'object', JSON.stringify(r));
  });

  test('an invalid policy is left out while every other policy keeps working', () => {
    const { tables, issues } = build([
      namespace('prod'),
      pod('prod', 'a', { labels: { app: 'a' }, ips: ['10.0.0.1'] }),
      pod('prod', 'b', { labels: { app: 'b' }, ips: ['10.0.0.2'] }),
      networkPolicy('prod', 'good', {
        podSelector: { matchLabels: { app: 'b' } },
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'a' } } }], ports: [{ port: 80 }] },
        ],
      }),
      networkPolicy('prod', 'bad', {
        podSelector: { matchLabels: { app: 'a' } },
        ingress: [{ ports: [{ port: 99999 }] }],
      }),
    ]);
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.object, 'NetworkPolicy prod/bad');
    assert.equal(allows(tables, 'prod/a', 'prod/b', 'TCP/80'), true);
    assert.equal(allows(tables, 'prod/a', 'prod/b', 'TCP/81'), false);
    assert.equal(
      allows(tables, 'prod/b', 'prod/a', 'TCP/80'),
      true,
      'the rejected policy isolates nothing',
    );
  });

  test('kinds Weir does not read are ignored with a note, not an error', () => {
    const r = readKubeObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } });
    assert.equal(r.type, 'ignored');
    const old = readKubeObject({
      apiVersion: 'extensions/v1beta1',
      kind: 'NetworkPolicy',
      metadata: { name: 'n' },
    });
    assert.equal(old.type, 'ignored');
  });
});
