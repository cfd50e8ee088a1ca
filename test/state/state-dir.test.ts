/**
 * State directories: private by default (never under /tmp), created 0700,
 * refused when another user could write there; and one process per
 * directory, the lock of a dead one taken over at once.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../shared/log.js';
import { StateDirLock, StateDirLockedError } from '../../shared/state/lock.js';
import { StateDirError, defaultStateDir, prepareStateDir } from '../../shared/state/state-dir.js';
import { ROOT } from '../support/processes.js';

describe('state directories', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-state-dir-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const defaults: Array<[string, Parameters<typeof defaultStateDir>[1], string]> = [
    ['root', { uid: 0, env: { XDG_STATE_HOME: '/x' }, home: '/root' }, '/var/lib/weir/agent-n1'],
    [
      'a user with XDG_STATE_HOME',
      { uid: 1000, env: { XDG_STATE_HOME: '/s' }, home: '/home/u' },
      '/s/weir/agent-n1',
    ],
    [
      'a user without it',
      { uid: 1000, env: {}, home: '/home/u' },
      '/home/u/.local/state/weir/agent-n1',
    ],
    [
      'a user with a relative XDG_STATE_HOME (invalid: ignored)',
      { uid: 1000, env: { XDG_STATE_HOME: 'rel' }, home: '/home/u' },
      '/home/u/.local/state/weir/agent-n1',
    ],
  ];
  for (const [who, env, want] of defaults)
    test(`the default state dir for ${who} is ${want}`, () => {
      assert.equal(defaultStateDir('agent-n1', env), want);
      assert.ok(!defaultStateDir('agent-n1', env).startsWith(tmpdir()));
    });

  test('a missing state dir is created 0700, with its parents', async () => {
    const dir = join(root, 'new', 'deep', 'state');
    assert.equal(await prepareStateDir(dir), dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
  });

  for (const mode of [0o777, 0o770, 0o757, 0o1777])
    test(`a state dir of mode ${mode.toString(8)} is refused, naming the directory and the fix`, async () => {
      const dir = join(root, `mode-${mode.toString(8)}`);
      await mkdir(dir);
      await chmod(dir, mode);
      await assert.rejects(prepareStateDir(dir), (err: Error) => {
        assert.ok(err instanceof StateDirError);
        assert.match(err.message, new RegExp(`state dir ${dir}: is writable by`));
        assert.match(err.message, /chmod go-w/);
        return true;
      });
    });

  test('a state dir owned by another user is refused', {
    skip: process.getuid?.() !== 0 && 'needs root to make a directory another user owns',
  }, async () => {
    const dir = join(root, 'theirs');
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, 65534, 65534);
    await assert.rejects(prepareStateDir(dir), /is owned by uid 65534, not by this process/);
  });

  test('a state dir that is a file is refused', async () => {
    const { writeFile } = await import('node:fs/promises');
    const file = join(root, 'a-file');
    await writeFile(file, '');
    await assert.rejects(prepareStateDir(file), StateDirError);
  });
});

describe('the state dir lock', () => {
  let root: string;
  const holders: ChildProcess[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-state-lock-'));
  });
  after(async () => {
    for (const h of holders) h.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  });

  /** Another process holding `dir`'s lock. */
  const holder = async (dir: string) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test', 'state', 'hold-lock.ts'), dir],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    holders.push(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('locked\n')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    return { child, exited };
  };
  const acquire = (dir: string) =>
    StateDirLock.acquire(dir, {
      program: 'test',
      log: silentLogger,
      onCompromised: (err) => assert.fail(err),
      waitMs: 0,
    });

  test('a second process is refused while the first holds the lock, and told who holds it', async () => {
    const dir = await prepareStateDir(join(root, 'held'));
    const { child } = await holder(dir);
    await assert.rejects(acquire(dir), (err: Error) => {
      assert.ok(err instanceof StateDirLockedError);
      assert.equal(err.holder?.pid, child.pid);
      assert.match(
        err.message,
        new RegExp(`state dir ${dir} is in use by hold-lock \\(test\\), pid ${child.pid} on host `),
      );
      return true;
    });
  });

  test('the lock of a process killed with SIGKILL is taken over at once', async () => {
    const dir = await prepareStateDir(join(root, 'killed'));
    const { child, exited } = await holder(dir);
    child.kill('SIGKILL');
    await exited;
    // waitMs 0: no waiting for the lock to go stale; the holder is provably gone.
    const lock = await acquire(dir);
    assert.equal(lock.holder.pid, process.pid);
    await lock.release();
  });

  test('a lock released is free again, and a process cannot take its own lock twice', async () => {
    const dir = await prepareStateDir(join(root, 'released'));
    const lock = await acquire(dir);
    await assert.rejects(acquire(dir), StateDirLockedError);
    await lock.release();
    await lock.release();
    const again = await acquire(dir);
    await again.release();
  });

  test('a holder whose lock is taken from it is told, and stops', async () => {
    const dir = await prepareStateDir(join(root, 'taken'));
    const { child, exited } = await holder(dir);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await rm(join(dir, 'lock'), { recursive: true });
    assert.equal(await exited, 3, 'hold-lock exits 3 from onCompromised');
    assert.match(out, /compromised/);
  });

  test('a holder that exits on SIGTERM leaves the lock free', async () => {
    const dir = await prepareStateDir(join(root, 'terminated'));
    const { child, exited } = await holder(dir);
    child.kill('SIGTERM');
    await exited;
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(dir), [], 'the lock is gone with its holder');
  });
});
