/**
 * ClusterNetworkPolicy validation: what the upstream CRD's schema and CEL
 * rules refuse is refused, every problem at once, each with the object and
 * the field; manifests are read strictly against the CRD-derived schema.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readKubeObject } from '../../controller/kube/objects.js';
import { readManifests } from '../../controller/sources/manifests.js';
import { clusterNetworkPolicy, type Raw } from '../../testing/cluster.js';

const subject = { namespaces: {} };
const cnp = (spec: Raw) =>
  clusterNetworkPolicy('bad', { tier: 'Admin', priority: 1, subject, ...spec });
const egress = (rule: Raw) =>
  cnp({ egress: [{ action: 'Deny', to: [{ namespaces: {} }], ...rule }] });
const ingress = (rule: Raw) =>
  cnp({ ingress: [{ action: 'Deny', from: [{ namespaces: {} }], ...rule }] });
const many = (n: number, x: unknown) => Array.from({ length: n }, () => x);

const cases: Array<{ name: string; object: Raw; issues: Array<[string, string]> }> = [
  {
    name: 'tier, priority and subject are required',
    object: clusterNetworkPolicy('bad', {}),
    issues: [
      ['spec.tier', 'required'],
      ['spec.priority', 'required'],
      ['spec.subject', 'required'],
    ],
  },
  {
    name: 'a tier other than Admin or Baseline, a priority above 1000',
    object: cnp({ tier: 'Namespace', priority: 1001 }),
    issues: [
      ['spec.tier', 'not supported'],
      ['spec.priority', 'not between 0 and 1000'],
    ],
  },
  {
    name: 'a subject with both namespaces and pods',
    object: cnp({ subject: { namespaces: {}, pods: { podSelector: {} } } }),
    issues: [['spec.subject', 'exactly one of namespaces, pods, not namespaces and pods']],
  },
  {
    name: 'a pods subject without a podSelector',
    object: cnp({ subject: { pods: { namespaceSelector: {} } } }),
    issues: [['spec.subject.pods.podSelector', 'required']],
  },
  {
    name: 'more than 25 rules',
    object: cnp({ ingress: many(26, { action: 'Deny', from: [{ namespaces: {} }] }) }),
    issues: [['spec.ingress', 'at most 25']],
  },
  {
    name: 'a rule without an action or peers, and a name over 100 characters',
    object: cnp({ egress: [{ name: 'x'.repeat(101), to: [] }] }),
    issues: [
      ['spec.egress[0].name', 'at most 100'],
      ['spec.egress[0].action', 'required'],
      ['spec.egress[0].to', 'at least one peer'],
    ],
  },
  {
    name: 'an action other than Accept, Deny or Pass',
    object: ingress({ action: 'Allow' }),
    issues: [['spec.ingress[0].action', 'not supported']],
  },
  {
    name: 'an ingress peer from networks (egress only)',
    object: ingress({ from: [{ networks: ['10.0.0.0/8'] }] }),
    issues: [['spec.ingress[0].from[0]', 'exactly one of namespaces, pods']],
  },
  {
    name: 'an egress peer with two kinds',
    object: egress({ to: [{ namespaces: {}, nodes: {} }] }),
    issues: [['spec.egress[0].to[0]', 'not namespaces and nodes']],
  },
  {
    name: 'a networks entry that is not a CIDR, a repeated one, and one too long',
    object: egress({
      to: [{ networks: ['10.0.0.0/33', '10.0.0.0/8', '10.0.0.0/8', `${'1'.repeat(44)}`] }],
    }),
    issues: [
      ['spec.egress[0].to[0].networks[0]', 'not a valid CIDR'],
      ['spec.egress[0].to[0].networks[2]', 'duplicate value'],
      ['spec.egress[0].to[0].networks[3]', 'at most 43'],
    ],
  },
  {
    name: 'domainNames, which Weir cannot enforce',
    object: egress({ action: 'Accept', to: [{ domainNames: ['kubernetes.io'] }] }),
    issues: [['spec.egress[0].to[0].domainNames', 'not supported by Weir']],
  },
  {
    name: 'a named port with a networks or nodes peer (the CRD CEL rule)',
    object: egress({
      to: [{ namespaces: {} }, { nodes: {} }],
      protocols: [{ destinationNamedPort: 'web' }],
    }),
    issues: [['spec.egress[0].protocols', 'cannot be used with a networks or nodes peer']],
  },
  {
    name: 'protocols entries: two kinds, no destinationPort, number and range, range start not below end, port 0',
    object: ingress({
      protocols: [
        { tcp: { destinationPort: { number: 80 } }, udp: { destinationPort: { number: 53 } } },
        { tcp: {} },
        { udp: { destinationPort: { number: 53, range: { start: 1, end: 2 } } } },
        { sctp: { destinationPort: { range: { start: 9000, end: 9000 } } } },
        { tcp: { destinationPort: { number: 0 } } },
      ],
    }),
    issues: [
      ['spec.ingress[0].protocols[0]', 'not tcp and udp'],
      ['spec.ingress[0].protocols[1].tcp.destinationPort', 'required'],
      ['spec.ingress[0].protocols[2].udp.destinationPort', 'not both'],
      ['spec.ingress[0].protocols[3].sctp.destinationPort.range', 'must be less than end'],
      ['spec.ingress[0].protocols[4].tcp.destinationPort.number', 'not between 1 and 65535'],
    ],
  },
];

describe('ClusterNetworkPolicy validation', () => {
  for (const c of cases)
    test(`refuses ${c.name}, naming the object and each field`, () => {
      const r = readKubeObject(c.object, 'case');
      assert.equal(r.type, 'invalid', JSON.stringify(r));
      if (r.type !== 'invalid') return;
      assert.deepEqual(
        r.issues.map((i) => i.field),
        c.issues.map(([f]) => f),
        JSON.stringify(r.issues, null, 1),
      );
      r.issues.forEach((i, k) => {
        assert.equal(i.object, 'ClusterNetworkPolicy bad');
        assert.ok(i.message.includes(c.issues[k]![1]), `${i.field}: ${i.message}`);
      });
      assert.deepEqual(r.identity, { kind: 'ClusterNetworkPolicy', namespace: '', name: 'bad' });
    });

  test('accepts every peer and protocol kind, normalising CIDRs', () => {
    const r = readKubeObject(
      cnp({
        tier: 'Baseline',
        priority: 0,
        subject: { pods: { podSelector: { matchLabels: { app: 'db' } } } },
        egress: [
          {
            name: 'all',
            action: 'Pass',
            to: [
              { namespaces: {} },
              { pods: { namespaceSelector: {}, podSelector: {} } },
              { nodes: { matchLabels: { role: 'infra' } } },
              { networks: ['10.0.0.1/8', 'fd00::/64'] },
            ],
            protocols: [
              { tcp: { destinationPort: { number: 80 } } },
              { udp: { destinationPort: { range: { start: 1000, end: 2000 } } } },
              { sctp: { destinationPort: { number: 9003 } } },
            ],
          },
        ],
      }),
    );
    assert.equal(r.type, 'object', JSON.stringify(r));
    if (r.type !== 'object' || r.object.kind !== 'ClusterNetworkPolicy') return;
    assert.equal(r.object.tier, 'baseline');
    assert.deepEqual(r.object.egress[0]!.peers[3], {
      kind: 'networks',
      cidrs: ['10.0.0.0/8', 'fd00::/64'],
    });
  });

  test('a manifest with an unknown field is refused with its path and a suggestion, against the CRD schema', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-cnp-'));
    try {
      await writeFile(
        join(dir, 'cnp.yaml'),
        [
          'apiVersion: policy.networking.k8s.io/v1alpha2',
          'kind: ClusterNetworkPolicy',
          'metadata: {name: typo}',
          'spec:',
          '  tier: Admin',
          '  priority: 1',
          '  subject: {namespaces: {}}',
          '  ingress:',
          '  - action: Deny',
          '    form: [{namespaces: {}}]',
          '',
        ].join('\n'),
      );
      const read = await readManifests([dir]);
      assert.deepEqual(read.objects, []);
      const fields = read.issues.map((i) => `${i.field}: ${i.message}`);
      assert.ok(
        fields.some((f) =>
          f.startsWith('spec.ingress[0].form: unknown field; did you mean "from"?'),
        ),
        fields.join('\n'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
