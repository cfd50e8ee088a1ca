/**
 * `weirctl nats federation-config`: the hub's users (one per member, each
 * with exactly its permissions) and each member's leafnode remote, with
 * passwords kept across runs; bad input refused with exit status 2.
 * That nats-server runs what it writes, and enforces it, is
 * test/federation/nats-link.test.ts (startFederationHub uses this code).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../../cli/main.js';

async function weirctl(args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const code = await main(args, {
    stdout: (t) => void out.push(t),
    stderr: (t) => void out.push(t),
  });
  return { code, out: out.join('') };
}

async function hubUsers(dir: string) {
  const text = await readFile(join(dir, 'hub', 'weir-federation.conf'), 'utf8');
  const parsed = JSON.parse(text.slice(text.indexOf('authorization ') + 14)) as {
    users: Array<{
      user: string;
      password: string;
      permissions?: { publish: { allow: string[] }; subscribe: { allow: string[] } };
    }>;
  };
  return new Map(parsed.users.map((u) => [u.user, u]));
}

describe('weirctl nats federation-config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-fedconf-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const args = (out: string, ...members: string[]) => [
    'nats',
    'federation-config',
    '--federation',
    'corp',
    ...members.flatMap((m) => ['--member', m]),
    '--hub-url',
    'nats://hub.example:7422',
    '--out',
    out,
  ];

  test("each member's hub user may write only its own cluster's keys and receive only on its own inbox", async () => {
    const out = join(dir, 'a');
    const r = await weirctl(args(out, 'east', 'west'));
    assert.equal(r.code, 0, r.out);
    const users = await hubUsers(out);
    assert.deepEqual([...users.keys()].sort(), ['member-east', 'member-west', 'weir-fed-admin']);
    const east = users.get('member-east')!.permissions!;
    const writes = east.publish.allow.filter((s) => s.includes('$KV.'));
    assert.deepEqual(writes, [
      '$JS.hub.API.$KV.weir_fed_corp.*.east.*',
      '$KV.weir_fed_corp.*.east.*',
    ]);
    assert.ok(!east.publish.allow.some((s) => s === '$JS.hub.API.>' || s.startsWith('_INBOX')));
    assert.deepEqual(east.subscribe.allow, ['_INBOX_WEIR_FED_east.>']);
    assert.equal(users.get('weir-fed-admin')!.permissions, undefined);
    const leaf = await readFile(join(out, 'members', 'east', 'weir-federation-leaf.conf'), 'utf8');
    const password = (await readFile(join(out, 'passwords', 'member-east'), 'utf8')).trim();
    assert.ok(leaf.includes(`nats://member-east:${password}@hub.example:7422`), leaf);
    assert.equal((await stat(join(out, 'passwords', 'member-east'))).mode & 0o777, 0o600);
    const bucket = JSON.parse(await readFile(join(out, 'hub', 'bucket.json'), 'utf8'));
    assert.equal(bucket.name, 'KV_weir_fed_corp');
    assert.equal(bucket.allow_rollup_hdrs, false);
    assert.equal(bucket.max_msgs_per_subject, 1);
  });

  test("adding a member keeps every other member's password", async () => {
    const out = join(dir, 'b');
    assert.equal((await weirctl(args(out, 'east'))).code, 0);
    const before = (await hubUsers(out)).get('member-east')!.password;
    assert.equal((await weirctl(args(out, 'east', 'north'))).code, 0);
    const after = await hubUsers(out);
    assert.equal(after.get('member-east')!.password, before);
    assert.ok(after.has('member-north'));
  });

  test('bad input is refused with exit status 2, naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--member', 'a.b'], /--member: not cluster names/],
      [['--member', 'hub'], /--member hub: the hub's JetStream domain/],
      [[], /name the members/],
      [['--member', 'a', '--hub-url', 'http://x'], /--hub-url/],
      [['--member', 'a', '--max-bytes', '-1'], /--max-bytes/],
    ];
    for (const [extra, message] of cases) {
      const r = await weirctl([
        'nats',
        'federation-config',
        '--federation',
        'corp',
        ...extra,
        '--out',
        join(dir, 'bad'),
      ]);
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.out}`);
      assert.match(r.out, message);
    }
    const bad = await weirctl([
      'nats',
      'federation-config',
      '--federation',
      'a.b',
      '--member',
      'x',
      '--out',
      join(dir, 'bad'),
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /--federation "a.b" cannot name a NATS bucket/);
  });
});
