/**
 * Checksummed state files: what was written reads back; anything else —
 * damaged, truncated, padded, another owner's, not a file at all — is moved
 * aside with a timestamp and reported, never used.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ChecksummedFile } from '../../shared/state/checksummed-file.js';

const OWNER = { node: 'node-a', cluster: 'prod' };
const BODY = Buffer.from(JSON.stringify({ revision: 42, span: ['p:x', 'g:y'] }));

describe('checksummed state files', () => {
  let root: string;
  let n = 0;
  /** A fresh directory with a good file in it. */
  const written = async (maxBytes?: number) => {
    const dir = join(root, String(n++));
    const f = new ChecksummedFile(dir, 'x.state', 'test-state', maxBytes ? { maxBytes } : {});
    await f.write(OWNER, BODY);
    return f;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-state-file-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('what was written reads back, for its owner, with a private mode', async () => {
    const f = await written();
    const r = await f.read(OWNER);
    assert.equal(r.type, 'ok');
    assert.ok(r.type === 'ok' && r.body.equals(BODY));
    assert.ok(r.type === 'ok' && r.meta.kind === 'test-state');
    assert.equal((await stat(f.path)).mode & 0o777, 0o600);
    assert.equal((await stat(f.dir)).mode & 0o777, 0o700);
    assert.deepEqual(
      (await readdir(f.dir)).filter((e) => e !== 'x.state'),
      [],
      'no temporary file left',
    );
  });

  test('a file that is not there is absent, not rejected', async () => {
    const f = new ChecksummedFile(join(root, 'none'), 'x.state', 'test-state');
    assert.deepEqual(await f.read(OWNER), { type: 'absent' });
  });

  // Each case damages a good file one way; every one must be moved aside, never used.
  const damage: Array<{
    name: string;
    reason: 'corrupt' | 'foreign';
    detail: RegExp;
    spoil: (f: ChecksummedFile, bytes: Buffer) => Promise<void>;
    owner?: Record<string, string>;
    maxBytes?: number;
  }> = [
    {
      name: 'with a byte of its body flipped',
      reason: 'corrupt',
      detail: /digest mismatch/,
      spoil: async (f, b) => {
        b[b.length - 5]! ^= 0x01;
        await writeFile(f.path, b);
      },
    },
    {
      name: 'with a byte of its meta flipped',
      reason: 'corrupt',
      detail: /digest mismatch/,
      spoil: async (f, b) => {
        const i = b.indexOf('node-a');
        b[i + 5] = 'b'.charCodeAt(0);
        await writeFile(f.path, b);
      },
    },
    {
      name: 'truncated by a torn write',
      reason: 'corrupt',
      detail: /truncated/,
      spoil: (f, b) => writeFile(f.path, b.subarray(0, b.length - 10)),
    },
    {
      name: 'with bytes appended',
      reason: 'corrupt',
      detail: /trailing bytes/,
      spoil: (f, b) => writeFile(f.path, Buffer.concat([b, Buffer.from('{}')])),
    },
    {
      name: 'that is empty',
      reason: 'corrupt',
      detail: /not a Weir state file/,
      spoil: (f) => writeFile(f.path, ''),
    },
    {
      name: 'of plain JSON, as Weir wrote before checksums',
      reason: 'corrupt',
      detail: /not a Weir state file/,
      spoil: (f) => writeFile(f.path, BODY),
    },
    {
      name: 'with a malformed digest in its header',
      reason: 'corrupt',
      detail: /malformed header/,
      spoil: (f, b) => writeFile(f.path, b.toString('latin1').replace('sha256:', 'sha256:zz')),
    },
    {
      name: 'edited by hand',
      reason: 'corrupt',
      detail: /digest mismatch/,
      spoil: (f, b) => writeFile(f.path, b.toString('latin1').replace('42', '43')),
    },
    {
      name: 'written for another node',
      reason: 'foreign',
      detail: /written for node "node-a", not "node-b"/,
      owner: { node: 'node-b' },
      spoil: async () => undefined,
    },
    {
      name: 'written for another cluster',
      reason: 'foreign',
      detail: /written for cluster "prod", not "dev"/,
      owner: { node: 'node-a', cluster: 'dev' },
      spoil: async () => undefined,
    },
    {
      name: 'larger than the limit',
      reason: 'corrupt',
      detail: /more than the limit of 64/,
      maxBytes: 64,
      spoil: async () => undefined,
    },
    {
      name: 'that is a symbolic link',
      reason: 'corrupt',
      detail: /not a regular file \(a symbolic link\)/,
      spoil: async (f) => {
        await rm(f.path);
        await symlink('/etc/hostname', f.path);
      },
    },
    {
      name: 'that is a FIFO (reading it would block for good)',
      reason: 'corrupt',
      detail: /not a regular file \(a FIFO\)/,
      spoil: async (f) => {
        await rm(f.path);
        execFileSync('mkfifo', [f.path]);
      },
    },
  ];

  for (const c of damage)
    test(`a state file ${c.name} is moved aside with a timestamp and reported as ${c.reason}`, async () => {
      const f = await written(c.maxBytes);
      await c.spoil(f, await readFile(f.path));
      const r = await f.read(c.owner ?? OWNER);
      assert.equal(r.type, 'rejected');
      if (r.type !== 'rejected') return;
      assert.equal(r.rejection.reason, c.reason);
      assert.match(r.rejection.detail, c.detail);
      assert.equal(r.rejection.file, f.path);
      assert.match(
        r.rejection.movedTo,
        new RegExp(`^${f.path}\\.${c.reason}-\\d{8}T\\d{6}\\.\\d{3}Z$`),
      );
      assert.deepEqual(await readdir(f.dir), [r.rejection.movedTo.slice(f.dir.length + 1)]);
      assert.deepEqual(await f.read(OWNER), { type: 'absent' }, 'nothing of it is read again');
    });

  test('only the newest three moved-aside files are kept', async () => {
    const f = await written();
    const moved: string[] = [];
    for (let i = 0; i < 5; i++) {
      await writeFile(f.path, `garbage ${i}`);
      const r = await f.read(OWNER);
      assert.ok(r.type === 'rejected');
      moved.push(r.rejection.movedTo);
    }
    const left = (await readdir(f.dir)).map((e) => join(f.dir, e)).sort();
    assert.deepEqual(left, moved.slice(-3).sort());
  });

  test('a body that fails its owner’s checks is moved aside by reject', async () => {
    const f = await written();
    const r = await f.reject('corrupt', 'revision -5 is negative');
    assert.equal(r.detail, 'revision -5 is negative');
    assert.deepEqual(await f.read(OWNER), { type: 'absent' });
    assert.equal(
      await readFile(r.movedTo, 'latin1').then((t) => t.startsWith('weir-state 1')),
      true,
    );
  });
});
