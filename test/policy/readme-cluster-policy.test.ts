/**
 * The README's ClusterNetworkPolicy example does what the README says: the
 * policies are read from the README itself, next to a small cluster, and
 * analysed; a NetworkPolicy that opens payments to everyone changes nothing
 * the Admin tier decided, and replaces the Baseline default-deny elsewhere.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { analyse } from '../../cli/analysis.js';
import { allows, namespace, networkPolicy, pod } from '../../testing/cluster.js';

const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
const section = readme.slice(readme.indexOf('## Cluster policy namespace owners cannot override'));
const example = /```yaml\n([\s\S]*?)```/.exec(section)![1]!;

test("the README's cluster policies: frontends reach payments, others do not, monitoring scrapes, and namespace owners cannot override the Admin tier", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-readme-'));
  try {
    await writeFile(join(dir, 'policies.yaml'), example);
    const cluster = [
      namespace('payments'),
      namespace('shop'),
      namespace('monitoring'),
      namespace('blog'),
      pod('payments', 'ledger', { ips: ['10.9.0.1'] }),
      pod('shop', 'front', { labels: { role: 'frontend' }, ips: ['10.9.0.2'] }),
      pod('shop', 'cart', { ips: ['10.9.0.3'] }),
      pod('monitoring', 'prom', { ips: ['10.9.0.4'] }),
      pod('blog', 'web', { ips: ['10.9.0.5'] }),
      // Namespace owners try to open everything.
      networkPolicy('payments', 'open', { podSelector: {}, ingress: [{}] }),
      networkPolicy('blog', 'open', { podSelector: {}, ingress: [{}] }),
    ];
    await writeFile(join(dir, 'cluster.yaml'), cluster.map((o) => stringify(o)).join('---\n'));
    const a = await analyse([dir]);
    assert.deepEqual(a.issues, []);
    const t = a.tables;
    assert.equal(allows(t, 'shop/front', 'payments/ledger', 'TCP/443'), true);
    assert.equal(
      allows(t, 'shop/cart', 'payments/ledger', 'TCP/443'),
      false,
      'Admin Deny beats the NetworkPolicy',
    );
    assert.equal(allows(t, 'monitoring/prom', 'payments/ledger', 'TCP/9090'), true);
    assert.equal(allows(t, 'monitoring/prom', 'payments/ledger', 'TCP/443'), false);
    assert.equal(
      allows(t, 'shop/cart', 'blog/web', 'TCP/80'),
      true,
      'the NetworkPolicy replaces the Baseline deny',
    );
    assert.equal(
      allows(t, 'blog/web', 'shop/cart', 'TCP/80'),
      false,
      'the Baseline deny where no NetworkPolicy selects',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
