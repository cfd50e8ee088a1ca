/**
 * `weirctl nats config`: the servers' authorization for a cluster's roles,
 * with certificate identities or with passwords kept across runs; bad
 * input refused with exit status 2 and a short message.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
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

/** The users of a written authorization block, by name, with their permissions. */
async function users(dir: string) {
  const text = await readFile(join(dir, 'weir-authorization.conf'), 'utf8');
  const json = text.slice(text.indexOf('authorization ') + 'authorization '.length);
  const parsed = JSON.parse(json) as {
    users: Array<{
      user: string;
      password?: string;
      permissions: { publish: { allow: string[] }; subscribe: { allow: string[] } };
    }>;
  };
  return new Map(parsed.users.map((u) => [u.user, u]));
}

describe('weirctl nats config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-natsconf-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('with --auth tls the users are the certificate identities, without passwords', async () => {
    const out = join(dir, 'tls');
    const r = await weirctl([
      'nats',
      'config',
      '--cluster',
      'prod',
      '--node',
      'node-a',
      '--node',
      'node.b',
      '--reader',
      'read-only/alice',
      '--server-tls-dir',
      '/srv/tls',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.out);
    const u = await users(out);
    assert.deepEqual(
      [...u.keys()],
      [
        'spiffe://weir/controller',
        'spiffe://weir/node/node-a',
        'spiffe://weir/node/node.b',
        'spiffe://weir/operator/read-only/alice',
      ],
    );
    assert.ok([...u.values()].every((x) => x.password === undefined));
    assert.deepEqual(u.get('spiffe://weir/node/node.b')!.permissions.subscribe.allow, [
      'weir.prod.span.node~b',
      'weir.prod.live.node~b',
      '_INBOX.node~b.>',
    ]);
    const tls = await readFile(join(out, 'weir-tls.conf'), 'utf8');
    assert.match(tls, /cert_file: "\/srv\/tls\/tls\.crt"/);
    assert.match(tls, /verify_and_map: true/);
  });

  test('with --auth password every user gets a password file, and a second run keeps them', async () => {
    const out = join(dir, 'pw');
    const nodesFile = join(dir, 'nodes.txt');
    await writeFile(nodesFile, 'node-a\n# a comment\nnode-b\n');
    const args = ['nats', 'config', '--auth', 'password', '--nodes-file', nodesFile, '--out', out];
    assert.equal((await weirctl(args)).code, 0);
    const first = await users(out);
    assert.deepEqual([...first.keys()], ['controller', 'agent-node-a', 'agent-node-b']);
    for (const [name, u] of first) {
      const file = join(out, 'passwords', name);
      assert.equal((await readFile(file, 'utf8')).trim(), u.password);
      assert.equal((await stat(file)).mode & 0o777, 0o600, file);
    }
    await writeFile(nodesFile, 'node-a\nnode-b\nnode-c\n');
    assert.equal((await weirctl(args)).code, 0);
    const second = await users(out);
    for (const name of ['controller', 'agent-node-a', 'agent-node-b'])
      assert.equal(second.get(name)!.password, first.get(name)!.password, name);
    assert.ok(second.get('agent-node-c')?.password);
  });

  const refusals: Array<[string, string[], RegExp]> = [
    ['no nodes', [], /name the nodes/],
    ['a node name that is not one', ['--node', 'a b'], /not node names/],
    ['a cluster that cannot name subjects', ['--cluster', 'a.b', '--node', 'n'], /--cluster/],
    [
      'a reader that is not ROLE/NAME with --auth tls',
      ['--node', 'n', '--reader', 'alice'],
      /ROLE\/NAME/,
    ],
  ];
  for (const [what, args, why] of refusals)
    test(`refuses ${what} with exit status 2`, async () => {
      const r = await weirctl(['nats', 'config', ...args, '--out', join(dir, 'x')]);
      assert.equal(r.code, 2);
      assert.match(r.out, why);
    });
});
