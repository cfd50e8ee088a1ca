/**
 * Federation status through the real Operator service: two controllers,
 * each on its own manifests, joined by the in-memory hub; a federated
 * policy written at b shows, at a, in GetFederationStatus and in
 * `weirctl federation status` (table and -o json) with its state on each
 * member. A controller without --federation answers `enabled: false`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { runWeirctl } from '../support/weirctl-in-process.js';
import { Controller } from '../../controller/controller.js';
import { FEDERATED_LABEL } from '../../controller/kube/cluster-network-policy.js';
import { ManifestSource } from '../../controller/sources/manifest-source.js';
import { silentLogger } from '../../shared/log.js';
import { clusterNetworkPolicy, namespace, pod, type Raw } from '../../testing/cluster.js';
import { MemoryFederationHub } from '../../testing/memory-federation.js';
import { eventually } from '../support/processes.js';
import { controllerTls } from '../support/tls.js';

const policy: Raw = {
  ...clusterNetworkPolicy('no-web-to-pay', {
    tier: 'Admin',
    priority: 5,
    subject: { namespaces: { matchLabels: { team: 'pay' } } },
    ingress: [{ action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'web' } } }] }],
  }),
  metadata: { name: 'no-web-to-pay', labels: { [FEDERATED_LABEL]: 'true' } },
};

function objects(octet: number): Raw[] {
  return [
    namespace('pay', { team: 'pay' }),
    namespace('web', { team: 'web' }),
    pod('pay', 'ledger', { ips: [`10.${octet}.0.1`], node: 'n1' }),
    pod('web', 'front', { ips: [`10.${octet}.0.2`], node: 'n1' }),
  ];
}

async function weirctl(...args: string[]): Promise<{ exit: number; out: string; err: string }> {
  const r = await runWeirctl(args);
  return { exit: r.code, out: r.out, err: r.err };
}

describe('federation status through the Operator service', () => {
  const dirs: string[] = [];
  const controllers: Controller[] = [];
  const hub = new MemoryFederationHub('f');
  let a: Controller;
  let plain: Controller;

  const start = async (cluster: string, raws: Raw[], federated: boolean) => {
    const dir = await mkdtemp(join(tmpdir(), `weir-fed-${cluster}-`));
    dirs.push(dir);
    await writeFile(join(dir, 'objects.yaml'), raws.map((r) => stringify(r)).join('---\n'));
    const c = new Controller({
      cluster,
      source: new ManifestSource(dir, { log: silentLogger }),
      listen: '127.0.0.1:0',
      log: silentLogger,
      tls: controllerTls(),
      ...(federated
        ? { federation: { name: 'f', link: () => hub.link(cluster), podCidrs: ['10.0.0.0/8'] } }
        : {}),
    });
    await c.start();
    controllers.push(c);
    return c;
  };

  before(async () => {
    a = await start('a', objects(1), true);
    await start('b', [...objects(2), policy], true);
    plain = await start('solo', objects(3), false);
  });

  after(async () => {
    for (const c of controllers) await c[Symbol.asyncDispose]();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('GetFederationStatus at a shows b, its exports, and the policy from b in force on both', async () => {
    const doc = await eventually(async () => {
      const r = await weirctl(
        'federation',
        'status',
        '--controller',
        `127.0.0.1:${a.port}`,
        '-o',
        'json',
      );
      const d = JSON.parse(r.out) as {
        policies: Array<{
          name: string;
          origin: string;
          members: Array<{ cluster: string; state: string }>;
        }>;
        members: Array<{ cluster: string; self: boolean; exported: { endpoints: number } | null }>;
      };
      const p = d.policies.find((x) => x.name === 'no-web-to-pay');
      return p !== undefined && p.members.length === 2 && d.members.length === 2 ? d : undefined;
    }, 'the federated policy reported by both members');
    assert.deepEqual(
      doc.members.map((m) => [m.cluster, m.self, m.exported?.endpoints]),
      [
        ['a', true, 2],
        ['b', false, 2],
      ],
    );
    assert.deepEqual(doc.policies[0]!.origin, 'b');
    assert.deepEqual(
      doc.policies[0]!.members.map((m) => `${m.cluster}:${m.state}`),
      ['a:in-force', 'b:in-force'],
    );
    // The import is enforced by a's model and reaches the policy list.
    assert.ok(a.model.policy('a/cnp/no-web-to-pay'));
  });

  test('weirctl federation status prints members, then each federated policy per member', async () => {
    const r = await weirctl('federation', 'status', '--controller', `127.0.0.1:${a.port}`);
    assert.equal(r.exit, 0, r.err);
    assert.match(r.out, /^federation f as seen by a: connected to the hub/);
    assert.match(r.out, /MEMBER\s+STATE\s+LAST REPORT\s+EXPORTED ns\/ep\/cnp\s+HELD HERE/);
    assert.match(r.out, /\na \(this\)\s+live\s/);
    assert.match(r.out, /\nb\s+live\s+\d+s ago\s+2\/2\/1\s+2\/2\/1/);
    assert.match(r.out, /no-web-to-pay\s+b\s+Admin\s+a\s+in-force/);
    assert.match(r.out, /no-web-to-pay\s+b\s+Admin\s+b\s+in-force/);
  });

  test('a member exposes federation gauges; a controller without --federation exposes none', async () => {
    const text = await a.metrics.registry.metrics();
    assert.match(text, /^weir_controller_federation_connected 1$/m);
    assert.match(text, /^weir_controller_federation_members\{state="live"\} 1$/m);
    assert.doesNotMatch(await plain.metrics.registry.metrics(), /weir_controller_federation_/);
  });

  test('a controller without --federation says so: enabled false, and the table form is an error', async () => {
    const json = await weirctl(
      'federation',
      'status',
      '--controller',
      `127.0.0.1:${plain.port}`,
      '-o',
      'json',
    );
    assert.equal(JSON.parse(json.out).enabled, false);
    const table = await weirctl('federation', 'status', '--controller', `127.0.0.1:${plain.port}`);
    assert.notEqual(table.exit, 0);
    assert.match(table.err, /not a federation member/);
  });
});
