/**
 * `weirctl analyze` as a user runs it: the real bin/weirctl process on the
 * demo manifests and on broken ones.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const root = fileURLToPath(new URL('../..', import.meta.url));
const weirctl = join(root, 'bin', 'weirctl');
const demo = join(root, 'deploy', 'examples');

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [weirctl, ...args],
      { cwd: root, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

describe('weirctl analyze', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weirctl-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('matrix -o json prints exactly the documented shape for every pod and probe', async () => {
    const r = await run(
      'analyze',
      'matrix',
      '-f',
      demo,
      '--probe',
      'TCP/9000',
      '--probe',
      'udp/53',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(m), ['pods', 'probes']);
    assert.deepEqual(m.pods, [
      'monitoring/prometheus',
      'payments/checkout',
      'payments/ledger-db',
      'shop/cart',
      'shop/redis',
      'shop/web',
    ]);
    assert.deepEqual(
      m.probes.map((p: Record<string, unknown>) => [Object.keys(p), p.protocol, p.port]),
      [
        [['protocol', 'port', 'allowed'], 'TCP', 9000],
        [['protocol', 'port', 'allowed'], 'UDP', 53],
      ],
    );
    for (const p of m.probes) {
      assert.deepEqual(Object.keys(p.allowed), m.pods);
      for (const from of m.pods) assert.deepEqual(Object.keys(p.allowed[from]), m.pods);
    }
    const tcp = m.probes[0].allowed;
    assert.equal(
      tcp['shop/web']['shop/cart'],
      true,
      'cart takes its named port "api" (9000) from the web tier',
    );
    assert.equal(tcp['shop/redis']['shop/cart'], false);
    assert.equal(
      tcp['monitoring/prometheus']['shop/redis'],
      true,
      'monitoring scrapes 9000-9100 in shop',
    );
    assert.equal(tcp['payments/checkout']['shop/web'], false, 'checkout is isolated for egress');
    const udp = m.probes[1].allowed;
    assert.equal(
      udp['payments/checkout']['shop/web'],
      false,
      'UDP 53 out of checkout is allowed, but shop/web isolates ingress',
    );
    assert.equal(
      udp['payments/checkout']['monitoring/prometheus'],
      true,
      'DNS is allowed to anywhere',
    );
  });

  test('matrix -n keeps the pods of the namespaces named, and refuses a namespace with no pods', async () => {
    const r = await run(
      'analyze',
      'matrix',
      '-f',
      demo,
      '-n',
      'payments',
      '-n',
      'monitoring',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).pods, [
      'monitoring/prometheus',
      'payments/checkout',
      'payments/ledger-db',
    ]);
    const bad = await run('analyze', 'matrix', '-f', demo, '-n', 'nope');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--namespace: no pods with addresses in nope/);
  });

  test('matrix prints a table with a mark for allowed and for denied', async () => {
    const r = await run('analyze', 'matrix', '-f', demo);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^TCP\/80 .*✓ allowed.*✗ denied/);
    assert.match(lines[1]!, /^FROM \\ TO\s+monitoring\/prometheus\s+payments\/checkout/);
    assert.match(lines[2]!, /^monitoring\/prometheus\s+✓\s+✗/);
    assert.equal(lines.length, 2 + 6);
  });

  test('probe explains the deciding tier, policy and rule of each side', async () => {
    const r = await run(
      'analyze',
      'probe',
      '-f',
      demo,
      '--from',
      'shop/web',
      '--to',
      'shop/cart',
      '--port',
      '9000',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.stderr);
    const e = JSON.parse(r.stdout);
    assert.equal(e.allowed, true);
    assert.equal(e.egress.tier, 'default');
    assert.equal(e.egress.reason, 'no policy selects shop/web for egress: allowed by default');
    assert.equal(e.ingress.tier, 'namespace');
    assert.deepEqual(
      e.ingress.policies.map((p: { name: string }) => p.name),
      ['allow-scrape', 'cart-from-web', 'default-deny-ingress'],
    );
    assert.deepEqual(
      {
        policy: e.ingress.rule.policy.name,
        field: e.ingress.rule.field,
        peer: e.ingress.rule.peer,
        ports: e.ingress.rule.ports,
      },
      {
        policy: 'cart-from-web',
        field: 'spec.ingress[0].from[0]',
        peer: 'pods {tier=frontend} in namespace shop',
        ports: 'TCP/api',
      },
    );
  });

  test('probe says which policies isolated a pod when no rule matched', async () => {
    const r = await run(
      'analyze',
      'probe',
      '-f',
      demo,
      '--from',
      'shop/redis',
      '--to',
      'payments/ledger-db',
      '--port',
      '5432',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^TCP\/5432 from shop\/redis \(10\.244\.2\.12\) to payments\/ledger-db \(10\.244\.3\.21\): DENIED/,
    );
    assert.match(r.stdout, /egress {2}at shop\/redis .*: allowed \[default tier\]/);
    assert.match(
      r.stdout,
      /ingress at payments\/ledger-db .*: denied \[namespace tier\]: isolated for ingress by payments\/ledger-db; no rule matched/,
    );
  });

  test('probe from an outside address checks only the side that is ours', async () => {
    const r = await run(
      'analyze',
      'probe',
      '-f',
      demo,
      '--from',
      '198.51.100.7',
      '--to',
      'shop/web',
      '--port',
      '8080',
      '-o',
      'json',
    );
    const e = JSON.parse(r.stdout);
    assert.equal(e.allowed, true);
    assert.equal(e.egress.enforced, false);
    assert.equal(e.ingress.rule.field, 'spec.ingress[0]');
  });

  /** `analyze probe` of the demo from an address to payments/ledger-db on 5432. */
  const probeFrom = (from: string, ...flags: string[]) =>
    run(
      'analyze',
      'probe',
      '-f',
      demo,
      '--from',
      from,
      '--to',
      'payments/ledger-db',
      '--port',
      '5432',
      ...flags,
    );

  test("probe reads the demo's Nodes: a pod's own node reaches it though a policy isolates it, another node does not", async () => {
    const own = await probeFrom('192.168.50.3');
    assert.equal(own.code, 0, own.stderr);
    assert.match(own.stdout, /: ALLOWED\n/);
    assert.match(
      own.stdout,
      /ingress at payments\/ledger-db .*: allowed \[own node\]: isolated for ingress by payments\/[^;]+; traffic between a pod and its own node is allowed by the NetworkPolicy tier: 192\.168\.50\.3 is an address of node node-c/,
    );
    const other = await probeFrom('192.168.50.1');
    assert.match(other.stdout, /: DENIED\n/);
    assert.match(other.stdout, /ingress at payments\/ledger-db .*: denied \[namespace tier\]/);
  });

  test('probe --exit-code exits 1 when denied and 0 when allowed; without it a verdict exits 0', async () => {
    const cases: Array<[from: string, flags: string[], code: number, verdict: string]> = [
      ['192.168.50.3', ['--exit-code'], 0, 'ALLOWED'],
      ['192.168.50.1', ['--exit-code'], 1, 'DENIED'],
      ['192.168.50.1', [], 0, 'DENIED'],
      ['192.168.50.1', ['--exit-code', '-o', 'json'], 1, 'DENIED'],
    ];
    for (const [from, flags, code, verdict] of cases) {
      const r = await probeFrom(from, ...flags);
      assert.equal(r.code, code, `${from} ${flags.join(' ')}: ${r.stderr}`);
      if (flags.includes('json')) assert.equal(JSON.parse(r.stdout).allowed, verdict === 'ALLOWED');
      else assert.match(r.stdout, new RegExp(`: ${verdict}\\n`));
    }
  });

  test('probe --exit-code keeps exit 2 for a rejected manifest object when the verdict is denied', async () => {
    const f = join(dir, 'rejected.yaml');
    await writeFile(
      f,
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p2, namespace: elsewhere}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: Within, values: [a]}]}\n',
    );
    const r = await probeFrom('192.168.50.1', '-f', f, '--exit-code');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout, /: DENIED\n/);
    assert.match(r.stderr, /NetworkPolicy elsewhere\/p2/);
  });

  test('a ClusterNetworkPolicy: probe names the tier, policy and rule that decided; objects lists it in the Admin tier with its actions', async () => {
    const d = join(dir, 'cnp');
    await mkdir(d, { recursive: true });
    await writeFile(
      join(d, 'cluster.yaml'),
      [
        'apiVersion: v1',
        'kind: Namespace',
        'metadata: {name: payments, labels: {tier: restricted}}',
        '---',
        'apiVersion: v1',
        'kind: Namespace',
        'metadata: {name: shop}',
        '---',
        'apiVersion: v1',
        'kind: Pod',
        'metadata: {name: ledger, namespace: payments, labels: {app: ledger}}',
        'spec: {containers: [{name: c, image: i}]}',
        'status: {phase: Running, podIP: 10.1.0.1}',
        '---',
        'apiVersion: v1',
        'kind: Pod',
        'metadata: {name: web, namespace: shop, labels: {app: web}}',
        'spec: {containers: [{name: c, image: i}]}',
        'status: {phase: Running, podIP: 10.1.0.2}',
        '---',
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: allow-all, namespace: payments}',
        'spec: {podSelector: {}, ingress: [{}]}',
        '---',
        'apiVersion: policy.networking.k8s.io/v1alpha2',
        'kind: ClusterNetworkPolicy',
        'metadata: {name: restricted-ingress}',
        'spec:',
        '  tier: Admin',
        '  priority: 10',
        '  subject: {namespaces: {matchLabels: {tier: restricted}}}',
        '  ingress:',
        '  - {name: deny-others, action: Deny, from: [{namespaces: {}}]}',
        '',
      ].join('\n'),
    );
    const probe = await run(
      'analyze',
      'probe',
      '-f',
      d,
      '--from',
      'shop/web',
      '--to',
      'payments/ledger',
      '--port',
      '443',
    );
    assert.equal(probe.code, 0, probe.stderr);
    assert.match(probe.stdout, /: DENIED\n/);
    assert.match(
      probe.stdout,
      /ingress at payments\/ledger .*: denied \[admin tier\]: denied by admin ClusterNetworkPolicy restricted-ingress \(priority 10\) rule "deny-others" \(spec\.ingress\[0\]\.from\[0\]/,
    );
    const objects = await run('analyze', 'objects', '-f', d, '-o', 'json');
    assert.equal(objects.code, 0, objects.stderr);
    const o = JSON.parse(objects.stdout);
    assert.deepEqual(
      o.applicationPolicySet.tiers.map((t: { tier: string; policies: string[] }) => [
        t.tier,
        t.policies,
      ]),
      [
        ['TIER_ADMIN', ['local/cnp/restricted-ingress']],
        ['TIER_NAMESPACE', ['local/np/payments/allow-all']],
      ],
    );
    const cnp = o.policies.find((p: { id: string }) => p.id === 'local/cnp/restricted-ingress');
    assert.equal(cnp.kind, 'ClusterNetworkPolicy');
    assert.equal(cnp.tier, 'TIER_ADMIN');
    assert.equal(cnp.priority, 10);
    assert.deepEqual(
      cnp.rules.map((r: { action: string; name: string }) => [r.action, r.name]),
      [['ACTION_DENY', 'deny-others']],
    );
  });

  test('objects prints the firewall objects in their wire form', async () => {
    const r = await run('analyze', 'objects', '-f', demo, '-o', 'json', '--cluster', 'east');
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(o), [
      'cluster',
      'applicationPolicySet',
      'policies',
      'addressGroups',
      'serviceGroups',
      'endpoints',
    ]);
    assert.equal(o.applicationPolicySet.tiers[0].tier, 'TIER_NAMESPACE');
    assert.ok(o.policies.every((p: { id: string }) => p.id.startsWith('east/np/')));
    const block = o.addressGroups.find(
      (g: { ipBlock?: { cidr: string } }) => g.ipBlock?.cidr === '203.0.113.0/24',
    );
    assert.deepEqual(
      block.prefixes,
      ['203.0.113.0/25'],
      'the except is subtracted, not turned into a deny rule',
    );
    assert.ok(
      o.policies
        .flatMap((p: { rules: Array<{ action: string }> }) => p.rules)
        .every((r: { action: string }) => r.action === 'ACTION_PASS'),
    );
  });

  test('invalid policies are reported with the line of each field, the object and the field, all at once, with exit status 2', async () => {
    const f = join(dir, 'bad.yaml');
    await writeFile(
      f,
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nstatus: {podIP: 10.0.0.1}',
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p1, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]\n    ports: [{port: 80, endPort: 79}, {protocol: ICMP}]',
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p2, namespace: x}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: Within, values: [a]}]}',
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}',
      ].join('\n---\n'),
    );
    const r = await run('analyze', 'matrix', '-f', f, '-o', 'json');
    assert.equal(r.code, 2);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
    assert.deepEqual(errors, [
      `error: ${f}:12: NetworkPolicy x/p1: spec.ingress[0].from[0].ipBlock.except[0]: "11.0.0.0/16" must be a strict subset of cidr "10.0.0.0/8"`,
      `error: ${f}:13: NetworkPolicy x/p1: spec.ingress[0].ports[0].endPort: 79 must be greater than or equal to port 80`,
      `error: ${f}:13: NetworkPolicy x/p1: spec.ingress[0].ports[1].protocol: string "ICMP" is not supported (supported: "TCP", "UDP", "SCTP")`,
      `error: ${f}:19: NetworkPolicy x/p2: spec.podSelector.matchExpressions[0].operator: "Within" is not valid (valid: "In", "NotIn", "Exists", "DoesNotExist")`,
    ]);
    assert.match(r.stderr, /note: .*ConfigMap is not a kind Weir reads/);
    // The valid objects are still analysed.
    assert.deepEqual(JSON.parse(r.stdout).pods, ['x/a']);
  });

  test('a misspelt field (ingres) and an object defined in two files are errors with exit status 2, not a silent deny-all or a silent replacement', async () => {
    const d = join(dir, 'strict');
    await mkdir(d, { recursive: true });
    await writeFile(
      join(d, 'a.yaml'),
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingres:\n  - {}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {v: "1"}}\nstatus: {podIP: 10.0.0.1}\n',
    );
    await writeFile(
      join(d, 'b.yaml'),
      'apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {v: "2"}}\nstatus: {podIP: 10.0.0.2}\n',
    );
    const r = await run('analyze', 'objects', '-f', d, '-o', 'json');
    assert.equal(r.code, 2);
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('error: ')),
      [
        `error: ${d}/a.yaml:6: NetworkPolicy x/p: spec.ingres: unknown field; did you mean "ingress"?`,
        `error: ${d}/b.yaml:1: Pod x/a: defined again (first at ${d}/a.yaml:9, which is the one used): this definition is ignored`,
      ],
    );
    const o = JSON.parse(r.stdout);
    assert.deepEqual(o.policies, [], 'the misspelt policy is left out, not read as deny-all');
    assert.deepEqual(
      o.endpoints.map((e: { ips: string[] }) => e.ips),
      [['10.0.0.1']],
    );
  });

  test('malformed YAML exits with status 2 and names the file and line', async () => {
    const f = join(dir, 'broken.yaml');
    await writeFile(f, 'apiVersion: v1\nkind: Namespace\nmetadata: {name: [x\n');
    const r = await run('analyze', 'objects', '-f', f);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      new RegExp(`error: ${f.replace(/[.]/g, '\\.')}:\\d+:\\d+: malformed YAML`),
    );
  });

  test('pods written without an address get one for the analysis, with a note', async () => {
    const f = join(dir, 'no-ips.yaml');
    await writeFile(
      f,
      'apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]\n',
    );
    const r = await run('analyze', 'matrix', '-f', f, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /2 pod\(s\) have no status.podIP/);
    assert.deepEqual(JSON.parse(r.stdout).probes[0].allowed, {
      'default/a': { 'default/a': true, 'default/b': true },
      'default/b': { 'default/a': false, 'default/b': true },
    });
  });

  /** srv admits 10.0.0.0/16 only, so the two families of a dual-stack pair disagree. */
  const dualStack = [
    'apiVersion: v1\nkind: Pod\nmetadata: {name: cli, namespace: a, labels: {app: cli}}\nstatus: {podIP: 10.0.2.1, podIPs: [{ip: 10.0.2.1}, {ip: "fd00:2::1"}]}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: srv, namespace: a, labels: {app: srv}}\nstatus: {podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: "fd00:1::1"}]}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: six, namespace: a}\nstatus: {podIP: "fd00:6::1"}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: four, namespace: a}\nstatus: {podIP: 10.0.4.1}',
    'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: srv-v4, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: srv}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16}}]}]',
  ].join('\n---\n');

  test('probe uses an explicit IPv6 source as given and resolves the pod target in IPv6', async () => {
    const f = join(dir, 'dual.yaml');
    await writeFile(f, dualStack);
    const r = await run(
      'analyze',
      'probe',
      '-f',
      f,
      '--from',
      'fd00:2::1',
      '--to',
      'a/srv',
      '--port',
      '80',
      '-o',
      'json',
    );
    assert.equal(r.code, 0, r.stderr);
    const e = JSON.parse(r.stdout);
    assert.deepEqual([e.from.ip, e.to.ip, e.allowed], ['fd00:2::1', 'fd00:1::1', false]);
  });

  test('probe between two dual-stack pods shows each family and denies when one family denies', async () => {
    const f = join(dir, 'dual.yaml');
    await writeFile(f, dualStack);
    const r = await run(
      'analyze',
      'probe',
      '-f',
      f,
      '--from',
      'a/cli',
      '--to',
      'a/srv',
      '--port',
      '80',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^TCP\/80 from a\/cli to a\/srv: DENIED \(IPv4 allowed, IPv6 denied;/);
    assert.match(
      r.stdout,
      /\n {2}IPv4: a\/cli \(10\.0\.2\.1\) to a\/srv \(10\.0\.1\.1\): ALLOWED\n/,
    );
    assert.match(r.stdout, /\n {2}IPv6: a\/cli \(fd00:2::1\) to a\/srv \(fd00:1::1\): DENIED\n/);
  });

  test('matrix checks every family a pair shares and shows per-family results where they differ', async () => {
    const f = join(dir, 'dual.yaml');
    await writeFile(f, dualStack);
    const r = await run('analyze', 'matrix', '-f', f, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout).probes[0];
    assert.equal(p.allowed['a/cli']['a/srv'], false, 'IPv6 is denied');
    assert.equal(p.allowed['a/four']['a/srv'], true, 'four shares only IPv4 with srv');
    assert.equal(p.allowed['a/six']['a/srv'], false, 'six shares only IPv6 with srv');
    assert.equal(p.allowed['a/four']['a/six'], false, 'no family in common');
    assert.deepEqual(p.families, {
      'a/cli': { 'a/srv': { IPv4: true, IPv6: false } },
      'a/four': { 'a/six': {} },
      'a/six': { 'a/four': {} },
    });
    const table = await run('analyze', 'matrix', '-f', f);
    assert.match(table.stdout, /\* a\/cli -> a\/srv: IPv4 allowed, IPv6 denied/);
    assert.match(table.stdout, /- a\/four -> a\/six: no address family in common/);
  });

  test('usage errors exit with status 2 and say what is wrong', async () => {
    for (const [args, message] of [
      [['analyze', 'matrix'], /-f\/--filename/],
      [['analyze', 'matrix', '-f', demo, '--probe', 'ICMP/1'], /PROTOCOL one of TCP, UDP, SCTP/],
      [
        ['analyze', 'matrix', '-f', demo, '-o', 'xml'],
        /must be one of table, wide, json, yaml, name/,
      ],
      [
        ['analyze', 'probe', '-f', demo, '--from', 'shop/nope', '--to', 'shop/web', '--port', '80'],
        /neither an IP address nor a pod/,
      ],
      [
        [
          'analyze',
          'probe',
          '-f',
          demo,
          '--from',
          'shop/web',
          '--to',
          'shop/cart',
          '--port',
          '70000',
        ],
        /between 1 and 65535/,
      ],
      [['analyze', 'nonsense'], /unknown command/],
    ] as const) {
      const r = await run(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
