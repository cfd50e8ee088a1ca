/**
 * One output vocabulary on every verb (cli/output.ts): for each verb, -o
 * json and -o yaml are the same document; numbers are numbers, times RFC
 * 3339, no protobuf oneof tags; -o name, --no-headers, --sort-by and
 * jsonpath behave as kubectl's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../support/processes.js';
import { LiveCluster } from '../support/live-cluster.js';
import { eventually } from '../support/processes.js';

const EXAMPLES = `${ROOT}deploy/examples`;

describe('weirctl output', () => {
  const cluster = new LiveCluster();
  before(async () => {
    await cluster.start();
    // Flows exist before the flow verbs are compared.
    await eventually(async () => {
      const r = await cluster.weirctl(['flows', '--node', 'node-c', '-o', 'json']);
      return r.code === 0 && (JSON.parse(r.out) as unknown[]).length > 0 ? true : undefined;
    }, 'flows on node-c');
  });
  after(() => cluster.stop());

  /** Counters and times move between two calls of a live verb: compare those by type. */
  const shape = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(shape)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]))
        : typeof v === 'number'
          ? 0
          : typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)
            ? 'time'
            : v;
  const verbs: Array<[string, string[]]> = [
    ['status', ['status']],
    ['policy list', ['policy', 'list']],
    ['policy get', ['policy', 'get', 'payments/ledger-db']],
    [
      'explain',
      ['explain', '--from', 'payments/checkout', '--to', 'payments/ledger-db', '--port', '5432'],
    ],
    [
      'explain --agent NODE',
      [
        'explain',
        '--agent',
        'node-c',
        '--from',
        'payments/checkout',
        '--to',
        'payments/ledger-db',
        '--port',
        '5432',
      ],
    ],
    ['flows stats', ['flows', 'stats', '--node', 'node-c']],
    ['analyze matrix', ['analyze', 'matrix', '-f', EXAMPLES]],
    [
      'analyze probe',
      [
        'analyze',
        'probe',
        '-f',
        EXAMPLES,
        '--from',
        'shop/cart',
        '--to',
        'shop/redis',
        '--port',
        '6379',
      ],
    ],
    ['analyze objects', ['analyze', 'objects', '-f', EXAMPLES]],
    ['config get-contexts', ['config', 'get-contexts']],
    ['version', ['version']],
  ];
  for (const [verb, args] of verbs) {
    test(`${verb}: -o json and -o yaml parse to the same value`, async () => {
      const json = await cluster.weirctl([...args, '-o', 'json']);
      assert.equal(json.code, 0, json.err);
      const yaml = await cluster.weirctl([...args, '-o', 'yaml']);
      assert.equal(yaml.code, 0, yaml.err);
      const j = JSON.parse(json.out) as unknown;
      assert.deepEqual(shape(parseYaml(yaml.out)), shape(j));
      if (!/status|flows stats/.test(verb)) assert.deepEqual(parseYaml(yaml.out), j);
      // Protobuf's JSON habits are gone: no 64-bit integers as strings, no *UnixMs, no oneof tags.
      const walk = (v: unknown, at: string): void => {
        if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, `${at}[${i}]`);
        else if (v !== null && typeof v === 'object')
          for (const [k, x] of Object.entries(v)) {
            assert.ok(!/UnixMs$/.test(k), `${at}.${k}: a time is RFC 3339, not Unix ms`);
            if (/^(revision|appliedRevision|spanRevision|packets|bytes|flows|inserted)$/.test(k))
              assert.equal(typeof x, 'number', `${at}.${k} is a number`);
            walk(x, `${at}.${k}`);
          }
      };
      walk(j, '$');
    });
  }

  test('flows: a listing and one flow are the same document in json and yaml', async () => {
    const list = await cluster.weirctl(['flows', '--node', 'node-c', '-o', 'json']);
    const flows = JSON.parse(list.out) as Array<{
      id: number;
      firstSeen: string;
      forward: { packets: number };
    }>;
    assert.ok(flows.length > 0);
    const f = flows[0]!;
    assert.equal(typeof f.id, 'number');
    assert.equal(typeof f.forward.packets, 'number');
    assert.match(f.firstSeen, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const json = await cluster.weirctl([
      'flows',
      'get',
      String(f.id),
      '--node',
      'node-c',
      '-o',
      'json',
    ]);
    const yaml = await cluster.weirctl([
      'flows',
      'get',
      String(f.id),
      '--node',
      'node-c',
      '-o',
      'yaml',
    ]);
    assert.equal(json.code, 0, json.err);
    assert.deepEqual(shape(parseYaml(yaml.out)), shape(JSON.parse(json.out)));
  });

  test('status -o name lists the agents as node/NAME and jsonpath selects fields', async () => {
    const name = await cluster.weirctl(['status', '-o', 'name']);
    assert.equal(name.out, 'node/node-a\nnode/node-b\nnode/node-c\n');
    const jp = await cluster.weirctl([
      'status',
      '-o',
      'jsonpath={.agents[*].node}\\n{.agents[?(@.node=="node-c")].connected}',
    ]);
    assert.equal(jp.out, 'node-a node-b node-c\ntrue\n');
  });

  test('--no-headers drops the header row and --sort-by orders the rows by a field', async () => {
    const headed = await cluster.weirctl(['policy', 'list']);
    assert.match(headed.out, /^POLICY\s+TIER/);
    const bare = await cluster.weirctl(['policy', 'list', '--no-headers']);
    assert.equal(bare.out, headed.out.slice(headed.out.indexOf('\n') + 1));
    const sorted = await cluster.weirctl([
      'policy',
      'list',
      '--sort-by',
      '.policy.name',
      '-o',
      'name',
    ]);
    const names = sorted.out
      .trim()
      .split('\n')
      .map((n) => n.split('/').pop()!);
    assert.deepEqual(names, [...names].sort());
    const bad = await cluster.weirctl(['policy', 'list', '--sort-by', '.nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--sort-by \.nope: no item has this field/);
  });

  test('-n, -A and -l select as kubectl does on policy list, analyze and flows', async () => {
    const payments = await cluster.weirctl(['policy', 'list', '-n', 'payments', '-o', 'name']);
    assert.equal(payments.code, 0, payments.err);
    const names = payments.out.trim().split('\n');
    assert.ok(
      names.length > 0 && names.every((n) => n.startsWith('policy/payments/')),
      payments.out,
    );
    // -l on policy list: the policy objects' own labels (deploy/examples labels two team=payments).
    const teamPayments = ['policy/payments/checkout-egress', 'policy/payments/ledger-db'];
    const selected: Array<[string, (got: string[]) => boolean]> = [
      ['team=payments', (got) => got.join() === teamPayments.join()],
      ['team in (payments),!draft', (got) => got.join() === teamPayments.join()],
      // != and !key also select policies without the label, as kubectl's do.
      ['team!=payments', (got) => got.length > 0 && !got.some((n) => teamPayments.includes(n))],
      ['!team', (got) => got.length > 0 && !got.some((n) => teamPayments.includes(n))],
      ['team=nobody', (got) => got.length === 0],
    ];
    for (const [selector, holds] of selected) {
      const r = await cluster.weirctl(['policy', 'list', '-l', selector, '-o', 'name']);
      assert.equal(r.code, 0, r.err);
      const got = r.out.trim() === '' ? [] : r.out.trim().split('\n').sort();
      assert.ok(holds(got), `-l ${selector}: ${got.join(', ')}`);
    }
    const wide = await cluster.weirctl(['policy', 'list', '-l', 'team=payments', '-o', 'wide']);
    assert.match(wide.out, /LABELS/);
    assert.match(wide.out, /team=payments/);
    const bad = await cluster.weirctl(['policy', 'list', '-l', 'team in (payments']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^error: -l\/--selector: /);
    const matrix = await cluster.weirctl([
      'analyze',
      'matrix',
      '-f',
      EXAMPLES,
      '-l',
      'tier in (backend,cache)',
      '-o',
      'name',
    ]);
    assert.equal(matrix.out, 'pod/shop/cart\npod/shop/redis\n');
    type Wire = { sourcePod: string; destinationPod: string; id: number; lastSeen: string };
    const flows = async (...args: string[]) => {
      const r = await cluster.weirctl(['flows', '--node', 'node-c', '-o', 'json', ...args]);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as Wire[];
    };
    const all = await flows();
    const from = await flows('--from-pod', 'payments/checkout');
    assert.ok(from.length > 0 && from.every((f) => f.sourcePod === 'payments/checkout'));
    const toNs = await flows('--to-namespace', 'payments');
    assert.ok(toNs.every((f) => f.destinationPod.startsWith('payments/')));
    const byLabel = await flows('-l', 'role=db');
    assert.ok(
      byLabel.length > 0 &&
        byLabel.every(
          (f) => f.sourcePod === 'payments/ledger-db' || f.destinationPod === 'payments/ledger-db',
        ),
    );
    const last = await flows('--last', '2');
    assert.equal(last.length, Math.min(2, all.length));
    const future = await flows('--since', new Date(Date.now() + 3_600_000).toISOString());
    assert.deepEqual(future, []);
    // Ids are stable: the same flow has the same id in two listings.
    const again = await flows();
    for (const f of all) {
      const same = again.find((g) => g.id === f.id);
      if (same) assert.equal(same.sourcePod, f.sourcePod);
    }
  });

  test('--match is evaluated by the agent on both orders of the ends, and one too long is refused naming the flag', async () => {
    const all = JSON.parse(
      (await cluster.weirctl(['flows', '--node', 'node-c', '-o', 'json'])).out,
    ) as Array<{
      source: string;
      destination: string;
    }>;
    const one = all[0]!;
    const r = await cluster.weirctl([
      'flows',
      '--node',
      'node-c',
      '-o',
      'json',
      '--match',
      `${one.destination},${one.source}`,
    ]);
    const matched = JSON.parse(r.out) as Array<{ source: string; destination: string }>;
    assert.ok(matched.length > 0);
    for (const f of matched)
      assert.deepEqual(new Set([f.source, f.destination]), new Set([one.source, one.destination]));
    const long = await cluster.weirctl([
      'flows',
      '--node',
      'node-c',
      '--match',
      `10.0.0.1${' '.repeat(300)}`,
    ]);
    assert.equal(long.code, 2);
    assert.match(long.err, /--match: is \d+ characters; at most 256/);
  });

  test('status --wait times out naming the nodes that have not proved sync, and --strict fails on disconnected agents', async () => {
    // The demo's manifests name node-a and node-b too; only node-c has an agent here.
    const wait = await cluster.weirctl(['status', '--wait=1s', '-o', 'name']);
    assert.equal(wait.code, 1);
    assert.match(
      wait.err,
      /^error: not every agent proved sync within 1s: node-a \(disconnected\), node-b \(disconnected\)\n$/,
    );
    const strict = await cluster.weirctl(['status', '--strict', '-o', 'name']);
    assert.equal(strict.code, 1);
    assert.match(
      strict.err,
      /--strict: agent node-a is disconnected; agent node-b is disconnected/,
    );
    const plain = await cluster.weirctl(['status', '-o', 'name']);
    assert.equal(plain.code, 0, 'without --strict, status reports and succeeds');
    const wide = await cluster.weirctl(['status', '-o', 'wide']);
    assert.match(wide.out, /\bAPI\b/);
    assert.ok(wide.out.includes(cluster.agentApi), "-o wide shows each agent's API address");
    assert.ok(!(await cluster.weirctl(['status'])).out.includes(cluster.agentApi));
  });

  test('an unknown -o names every format', async () => {
    const r = await cluster.weirctl(['status', '-o', 'xml']);
    assert.equal(r.code, 2);
    assert.match(r.err, /must be one of table, wide, json, yaml, name, jsonpath=TEMPLATE/);
  });
});
