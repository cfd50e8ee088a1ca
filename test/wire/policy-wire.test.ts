/**
 * The firewall objects survive the wire: model → generated types → protobuf
 * bytes → generated types → model gives the same objects, and tables compiled
 * from the decoded snapshot give the same verdicts.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { ValidationError } from '../../shared/errors.js';
import type { PolicySnapshot__Output } from '../../shared/generated/weir/v1/index.js';
import { compile } from '../../shared/policy/compile.js';
import { snapshotFromWire, snapshotToWire } from '../../shared/wire/policy.js';
import { allows, build, namespace, networkPolicy, node, pod } from '../../testing/cluster.js';

const root = protobuf.loadSync(
  fileURLToPath(new URL('../../proto/weir/v1/policy.proto', import.meta.url)),
);
const Snapshot = root.lookupType('weir.v1.PolicySnapshot');
// The options grpc-js services are loaded with (see PLATFORM.md).
const decodeOptions = { longs: String, enums: String, defaults: true, oneofs: true };

function cluster() {
  return build([
    namespace('a', { team: 'x' }),
    namespace('b'),
    node('n1', ['192.168.9.1', 'fd09::1', ['ExternalIP', '203.0.113.9']]),
    pod('a', 'web', {
      node: 'n1',
      labels: { app: 'web' },
      ips: ['10.0.0.1', 'fd00::1'],
      ports: [
        { name: 'http', port: 8080 },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    }),
    pod('b', 'client', { labels: { app: 'client' }, ips: ['10.0.1.1'] }),
    networkPolicy('a', 'p', {
      podSelector: {
        matchExpressions: [
          { key: 'app', operator: 'In', values: ['web', 'api'] },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      },
      ingress: [
        {
          from: [
            { namespaceSelector: {}, podSelector: { matchLabels: { app: 'client' } } },
            { ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.1.0/24'] } },
          ],
          ports: [{ port: 'http' }, { protocol: 'UDP', port: 53 }, { port: 9000, endPort: 9100 }],
        },
        {},
      ],
      egress: [
        {
          to: [{ namespaceSelector: { matchLabels: { team: 'x' } } }],
          ports: [{ protocol: 'SCTP' }],
        },
      ],
    }),
  ]);
}

test('a snapshot encoded to protobuf and decoded is the same snapshot', () => {
  const { snapshot } = cluster();
  const bytes = Snapshot.encode(Snapshot.fromObject(snapshotToWire(snapshot))).finish();
  const decoded = Snapshot.toObject(
    Snapshot.decode(bytes),
    decodeOptions,
  ) as PolicySnapshot__Output;
  assert.deepEqual(snapshotFromWire(decoded), snapshot);
});

test('tables compiled from a decoded snapshot give the same verdicts', () => {
  const { snapshot, tables } = cluster();
  const decoded = Snapshot.toObject(
    Snapshot.decode(Snapshot.encode(Snapshot.fromObject(snapshotToWire(snapshot))).finish()),
    decodeOptions,
  ) as PolicySnapshot__Output;
  const again = compile(snapshotFromWire(decoded));
  for (const [from, to, service] of [
    ['b/client', 'a/web', 'TCP/8080'],
    ['b/client', 'a/web', 'TCP/80'],
    ['192.168.2.1', 'a/web', 'UDP/53'],
    ['192.168.1.1', 'a/web', 'UDP/53'],
    ['a/web', 'b/client', 'SCTP/1'],
    ['a/web', 'a/web', 'SCTP/1'],
    ['192.168.9.1', 'a/web', 'TCP/1'],
    ['a/web', '203.0.113.9', 'SCTP/1'],
  ] as const) {
    assert.equal(
      allows(again, from, to, service),
      allows(tables, from, to, service),
      `${from} -> ${to} ${service}`,
    );
  }
});

test('a snapshot with values a controller never sends is refused with every problem named', () => {
  const { snapshot } = cluster();
  const wire = Snapshot.toObject(
    Snapshot.decode(Snapshot.encode(Snapshot.fromObject(snapshotToWire(snapshot))).finish()),
    decodeOptions,
  ) as PolicySnapshot__Output;
  const broken: PolicySnapshot__Output = {
    ...wire,
    policies: wire.policies.map((p) => ({
      ...p,
      rules: p.rules.map((r, i) =>
        i === 0 ? { ...r, direction: 'DIRECTION_UNSPECIFIED' as const } : r,
      ),
    })),
    serviceGroups: wire.serviceGroups.map((g) => ({
      ...g,
      services: g.services.map((s) => ({ ...s, protocol: 'PROTOCOL_ICMP' as const })),
    })),
    endpoints: wire.endpoints.map((e) => ({ ...e, ips: ['10.0.0.1', 'x'], nodeAddresses: ['n1'] })),
  };
  assert.throws(
    () => snapshotFromWire(broken),
    (err: unknown) =>
      err instanceof ValidationError &&
      err.issues.some((i) => i.field === 'rules[0].direction') &&
      err.issues.some((i) => i.field === 'services[0].protocol') &&
      err.issues.some((i) => i.object === 'Endpoint a/web' && i.field === 'ips[1]') &&
      err.issues.some((i) => i.object === 'Endpoint a/web' && i.field === 'nodeAddresses[0]'),
  );
});
