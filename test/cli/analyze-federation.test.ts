/**
 * `weirctl analyze --cluster NAME -f DIR …` across the clusters of a
 * federation (docs/federation.md), over the three-cluster example in
 * test/fixtures/federation: b exports two federated ClusterNetworkPolicies
 * (its dev pods may not reach any member's databases; dev pods of every
 * member may reach a's databases), c has a policy of its own that is not
 * federated. Each case is one command line and what it must print.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runWeirctl } from '../support/weirctl-in-process.js';
import { ROOT } from '../support/processes.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'federation');

const weirctl = (...args: string[]) => runWeirctl(args);

/** `--cluster x -f DIR` for each cluster, from `dirs` (default: the fixtures). */
function clusters(dirs: Readonly<Record<string, string>> = {}): string[] {
  return ['a', 'b', 'c'].flatMap((c) => ['--cluster', c, '-f', dirs[c] ?? join(FIXTURES, c)]);
}

async function matrixJson(
  args: readonly string[],
  probe = 'TCP/5432',
): Promise<Record<string, Record<string, boolean>>> {
  const r = await weirctl('analyze', 'matrix', ...args, '--probe', probe, '-o', 'json');
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out).probes[0].allowed;
}

describe('weirctl analyze across the clusters of a federation', () => {
  let tmp = '';
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'weir-fed-analyze-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('the matrix names every pod cluster/namespace/pod and holds every cluster’s pods', async () => {
    const allowed = await matrixJson(clusters());
    assert.deepEqual(Object.keys(allowed), [
      'a/data/db',
      'a/web/front',
      'b/dev/tool',
      'b/web/front',
      'c/dev/tool',
      'c/web/front',
    ]);
  });

  // from, to, probe, allowed: why
  const cells: ReadonlyArray<readonly [string, string, string, boolean, string]> = [
    [
      'b/dev/tool',
      'a/data/db',
      'TCP/5432',
      false,
      'b’s federated Admin policy denies b’s dev pods at a’s db',
    ],
    [
      'c/dev/tool',
      'a/data/db',
      'TCP/5432',
      true,
      'its peer selects weir.io/cluster=b only: c’s dev pods are not its peers',
    ],
    ['b/web/front', 'a/data/db', 'TCP/5432', true, 'b’s prod pods are not dev'],
    ['a/web/front', 'a/data/db', 'TCP/5432', true, 'a’s own pods are in another namespace'],
    [
      'c/dev/tool',
      'c/web/front',
      'TCP/80',
      false,
      'c’s own, non-federated policy denies c’s dev pods',
    ],
    [
      'b/dev/tool',
      'c/web/front',
      'TCP/80',
      true,
      'a non-federated policy never sees a remote pod as a peer',
    ],
    ['b/dev/tool', 'b/web/front', 'TCP/80', true, 'nothing in b denies within b'],
  ];
  for (const [from, to, probe, allowed, why] of cells) {
    test(`${from} to ${to} on ${probe} is ${allowed ? 'allowed' : 'denied'}: ${why}`, async () => {
      const m = await matrixJson(clusters(), probe);
      assert.equal(m[from]![to], allowed);
      const r = await weirctl(
        'analyze',
        'probe',
        ...clusters(),
        '--from',
        from,
        '--to',
        to,
        '--port',
        probe.split('/')[1]!,
        '--exit-code',
      );
      assert.equal(r.code, allowed ? 0 : 1, r.out + r.err);
      assert.match(r.out, allowed ? /: ALLOWED\n/ : /: DENIED\n/);
    });
  }

  test('probe explains a cross-cluster pair with the deciding rule on each side, each in its own cluster', async () => {
    const r = await weirctl(
      'analyze',
      'probe',
      ...clusters(),
      '--from',
      'b/dev/tool',
      '--to',
      'a/data/db',
      '--port',
      '5432',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.err);
    const e = JSON.parse(r.out);
    assert.equal(e.allowed, false);
    assert.deepEqual(e.from, { ip: '10.2.0.10', endpoint: 'b/dev/tool' });
    assert.deepEqual(e.to, { ip: '10.1.0.10', endpoint: 'a/data/db' });
    assert.equal(e.egress.endpoint, 'b/dev/tool');
    assert.equal(e.egress.allowed, true);
    assert.equal(e.egress.rule.policy.name, 'dev-to-a-db');
    assert.equal(e.egress.rule.name, 'to-a-db');
    assert.equal(e.ingress.endpoint, 'a/data/db');
    assert.equal(e.ingress.allowed, false);
    assert.equal(e.ingress.tier, 'admin');
    assert.equal(e.ingress.rule.policy.name, 'deny-b-dev-to-db');
    assert.equal(e.ingress.rule.name, 'no-dev-of-b');
    const text = await weirctl(
      'analyze',
      'probe',
      ...clusters(),
      '--from',
      'b/dev/tool',
      '--to',
      'a/data/db',
      '--port',
      '5432',
    );
    assert.match(
      text.out,
      /^TCP\/5432 from b\/dev\/tool \(10\.2\.0\.10\) to a\/data\/db \(10\.1\.0\.10\): DENIED\n/,
    );
    assert.match(
      text.out,
      /egress {2}at b\/dev\/tool .*: allowed \[admin tier\]: allowed by admin ClusterNetworkPolicy dev-to-a-db/,
    );
    assert.match(
      text.out,
      /ingress at a\/data\/db .*: denied \[admin tier\]: denied by admin ClusterNetworkPolicy deny-b-dev-to-db/,
    );
  });

  test('an address of a remote pod is probed as that pod’s, on both sides', async () => {
    const r = await weirctl(
      'analyze',
      'probe',
      ...clusters(),
      '--from',
      '10.2.0.10',
      '--to',
      'a/data/db',
      '--port',
      '5432',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.err);
    const e = JSON.parse(r.out);
    assert.equal(e.allowed, false);
    assert.equal(e.egress.endpoint, 'b/dev/tool');
  });

  test('relabelling b’s dev namespace changes a’s verdict, and a namespace cannot claim another cluster', async () => {
    const b = join(tmp, 'b-relabelled');
    await cp(join(FIXTURES, 'b'), b, { recursive: true });
    const text = await readFile(join(b, 'cluster.yaml'), 'utf8');
    await writeFile(
      join(b, 'cluster.yaml'),
      text.replace(
        'metadata: { name: dev, labels: { env: dev } }',
        'metadata: { name: dev, labels: { env: test } }',
      ),
    );
    assert.equal((await matrixJson(clusters({ b })))['b/dev/tool']!['a/data/db'], true);

    // b's dev namespace says it is of cluster c: the model sets weir.io/cluster itself.
    const claim = join(tmp, 'b-claims-c');
    await cp(join(FIXTURES, 'b'), claim, { recursive: true });
    await writeFile(
      join(claim, 'cluster.yaml'),
      text.replace(
        'metadata: { name: dev, labels: { env: dev } }',
        'metadata: { name: dev, labels: { env: dev, weir.io/cluster: c } }',
      ),
    );
    assert.equal((await matrixJson(clusters({ b: claim })))['b/dev/tool']!['a/data/db'], false);
  });

  test('a federated policy is shadowed by a local one of its name, and of two origins the lowest cluster name wins', async () => {
    const policy = (name: string, federated: boolean, action: string) =>
      [
        '---',
        'apiVersion: policy.networking.k8s.io/v1alpha2',
        'kind: ClusterNetworkPolicy',
        `metadata: { name: ${name}${federated ? ', labels: { weir.io/federated: "true" }' : ''} }`,
        'spec:',
        '  tier: Admin',
        '  priority: 5',
        '  subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: db } } } }',
        `  ingress: [{ action: ${action}, from: [{ namespaces: { matchLabels: { env: dev } } }] }]`,
        '',
      ].join('\n');
    // a's own (not federated) deny-b-dev-to-db accepts: it wins in a over b's import.
    const a = join(tmp, 'a-shadows');
    await cp(join(FIXTURES, 'a'), a, { recursive: true });
    await writeFile(join(a, 'local.yaml'), policy('deny-b-dev-to-db', false, 'Accept'));
    const shadowed = await weirctl(
      'analyze',
      'matrix',
      ...clusters({ a }),
      '--probe',
      'TCP/5432',
      '-o',
      'json',
    );
    assert.equal(shadowed.code, 0, shadowed.err);
    assert.equal(JSON.parse(shadowed.out).probes[0].allowed['b/dev/tool']['a/data/db'], true);
    assert.match(
      shadowed.err,
      /note: cluster a: the federated ClusterNetworkPolicy deny-b-dev-to-db of b is not enforced here: a's own ClusterNetworkPolicy of that name wins/,
    );

    // c exports a federated policy of the same name: b's (the lower name) is enforced in a.
    const c = join(tmp, 'c-conflicts');
    await cp(join(FIXTURES, 'c'), c, { recursive: true });
    await writeFile(join(c, 'conflict.yaml'), policy('deny-b-dev-to-db', true, 'Accept'));
    const lost = await weirctl(
      'analyze',
      'matrix',
      ...clusters({ c }),
      '--probe',
      'TCP/5432',
      '-o',
      'json',
    );
    assert.equal(lost.code, 0, lost.err);
    assert.equal(JSON.parse(lost.out).probes[0].allowed['b/dev/tool']['a/data/db'], false);
    assert.match(
      lost.err,
      /note: cluster a: the federated ClusterNetworkPolicy deny-b-dev-to-db of c is not enforced here: b exports one of that name too/,
    );
  });

  test('-n keeps a namespace in every cluster, or in one as cluster/namespace', async () => {
    assert.deepEqual(Object.keys(await matrixJson([...clusters(), '-n', 'dev'])), [
      'b/dev/tool',
      'c/dev/tool',
    ]);
    assert.deepEqual(Object.keys(await matrixJson([...clusters(), '-n', 'a/data'])), ['a/data/db']);
  });

  test('objects lists every member’s policies, the imported ones included, by cluster', async () => {
    const r = await weirctl('analyze', 'objects', ...clusters(), '-o', 'name');
    assert.equal(r.code, 0, r.err);
    const names = r.out.trim().split('\n');
    for (const c of ['a', 'b', 'c']) {
      assert.ok(names.includes(`policy/${c}/cnp/deny-b-dev-to-db`), `${c}: ${r.out}`);
      assert.ok(names.includes(`policy/${c}/cnp/dev-to-a-db`), `${c}: ${r.out}`);
    }
    assert.ok(names.includes('policy/c/cnp/web-no-dev'));
    assert.ok(!names.includes('policy/a/cnp/web-no-dev'), 'a non-federated policy is not imported');
  });

  test('a remote pod is a group member named cluster/namespace/pod in the importing member', async () => {
    const r = await weirctl('analyze', 'objects', ...clusters(), '-o', 'json');
    assert.equal(r.code, 0, r.err);
    const a = JSON.parse(r.out).members.find((m: { cluster: string }) => m.cluster === 'a');
    const members = a.snapshot.addressGroups.flatMap(
      (g: { members?: Array<{ endpoint: string }> }) => (g.members ?? []).map((m) => m.endpoint),
    );
    assert.ok(members.includes('b/dev/tool'), members.join(', '));
  });

  test('pods two clusters claim the same address of are reported with exit 2, naming both', async () => {
    const c = join(tmp, 'c-overlapping');
    await cp(join(FIXTURES, 'c'), c, { recursive: true });
    const text = await readFile(join(c, 'cluster.yaml'), 'utf8');
    await writeFile(join(c, 'cluster.yaml'), text.replace('podIP: 10.3.0.10', 'podIP: 10.1.0.10'));
    const r = await weirctl('analyze', 'matrix', ...clusters({ c }), '-o', 'json');
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /error: federation: address 10\.1\.0\.10: claimed by pods of more than one cluster \(a\/data\/db, c\/dev\/tool\)/,
    );
    assert.ok(JSON.parse(r.out).pods.includes('a/data/db'), 'the valid rest is still analysed');
  });

  // args, message
  const refused: ReadonlyArray<readonly [string, readonly string[], RegExp]> = [
    [
      'a --cluster without -f',
      ['--cluster', 'a', '-f', join(FIXTURES, 'a'), '--cluster', 'b'],
      /b has no -f\/--filename PATH after it/,
    ],
    [
      'a cluster given twice',
      ['--cluster', 'a', '-f', join(FIXTURES, 'a'), '--cluster', 'a', '-f', join(FIXTURES, 'b')],
      /--cluster: a is given more than once/,
    ],
    [
      'a name that cannot be a member’s',
      ['--cluster', 'a', '-f', join(FIXTURES, 'a'), '--cluster', 'b.x', '-f', join(FIXTURES, 'b')],
      /--cluster: "b\.x" is not a cluster name/,
    ],
    [
      'a -f before any --cluster',
      [
        '-f',
        join(FIXTURES, 'c'),
        '--cluster',
        'a',
        '-f',
        join(FIXTURES, 'a'),
        '--cluster',
        'b',
        '-f',
        join(FIXTURES, 'b'),
      ],
      /-f .* comes before any --cluster/,
    ],
  ];
  for (const [what, args, message] of refused) {
    test(`${what} is refused with exit 2 and says so`, async () => {
      const r = await weirctl('analyze', 'matrix', ...args);
      assert.equal(r.code, 2);
      assert.match(r.err, message);
      assert.equal(r.out, '');
    });
  }

  test('probe refuses a pod named without its cluster when several are given', async () => {
    const r = await weirctl(
      'analyze',
      'probe',
      ...clusters(),
      '--from',
      'dev/tool',
      '--to',
      'a/data/db',
      '--port',
      '5432',
    );
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /--from: "dev\/tool": with several clusters, name a pod as cluster\/namespace\/pod \(clusters: a, b, c\)/,
    );
  });

  test('one --cluster is analysed as before: pods named namespace/pod, nothing imported', async () => {
    const allowed = await matrixJson(['--cluster', 'b', '-f', join(FIXTURES, 'b')]);
    assert.deepEqual(Object.keys(allowed), ['dev/tool', 'web/front']);
  });
});
