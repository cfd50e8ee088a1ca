/**
 * One process per state directory. Two controllers (or two agents) on one
 * directory would each write their own state over the other's, the last
 * writer winning; the second one refuses to start instead, naming the first.
 *
 * The lock is proper-lockfile's: a directory `<state dir>/lock` made with
 * mkdir (atomic, also on network file systems), its mtime refreshed every
 * UPDATE_MS; a lock not refreshed for STALE_MS is stale and may be taken.
 * Inside it, `holder.json` says who holds it: program, pid, host, since
 * when, and what identifies the process beyond its pid (boot id, pid
 * namespace, start time), so that the lock of a process that is provably
 * gone (killed with SIGKILL, or the machine restarted) is taken over at
 * once instead of after STALE_MS. A holder that cannot be checked from here
 * (another host, another pid namespace: a restarted container) is waited for
 * until its lock goes stale, then taken over; a holder that is alive is
 * never taken from.
 *
 * Two processes taking over the same dead lock at the same instant can both
 * believe they won; proper-lockfile notices at the loser's next refresh
 * (the lock's mtime is no longer its own) and calls `onCompromised`, which
 * must stop that process.
 */
import * as fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { ErrorCode, WeirError } from '../errors.js';
import type { Logger } from '../log.js';
import { StateDirError } from './state-dir.js';

const STALE_MS = 20_000;
const UPDATE_MS = 5_000;
const LOCK = 'lock';
const HOLDER = 'holder.json';

/** Who holds a state directory. */
export interface LockHolder {
  /** "weir-agent". */
  readonly program: string;
  /** What else tells holders apart for a person ("node node-a"); may be empty. */
  readonly detail: string;
  readonly pid: number;
  readonly host: string;
  /** ISO time the lock was taken. */
  readonly since: string;
  /** Linux: /proc/sys/kernel/random/boot_id; a different one means the holder's machine restarted. */
  readonly bootId?: string;
  /** Linux: the pid namespace ("pid:[4026531836]") in which `pid` means something. */
  readonly pidNamespace?: string;
  /** Linux: the process's start time (clock ticks since boot), so that a reused pid is not taken for the holder. */
  readonly processStart?: string;
}

/** The state directory is held by another live process (or one that cannot be shown dead in time). */
export class StateDirLockedError extends WeirError {
  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
    why: string,
  ) {
    super(ErrorCode.Unavailable, `state dir ${dir} is in use by ${describeHolder(holder)}${why}`);
  }
}

export function describeHolder(h: LockHolder | undefined): string {
  if (h === undefined) return 'a process that has not recorded itself';
  return `${h.program}${h.detail ? ` (${h.detail})` : ''}, pid ${h.pid} on host ${h.host}, since ${h.since}`;
}

export interface LockOptions {
  /** Who locks, for the holder record: "weir-controller". */
  readonly program: string;
  readonly detail?: string;
  readonly log: Logger;
  /**
   * Called when the lock is lost while held (removed, or taken over by
   * another process after this one stalled past STALE_MS): this process no
   * longer owns its state and must stop.
   */
  readonly onCompromised: (err: Error) => void;
  /** How long to wait for a holder whose liveness cannot be checked (default: until its lock is stale). */
  readonly waitMs?: number;
}

export class StateDirLock implements AsyncDisposable {
  private released = false;

  private constructor(
    readonly dir: string,
    readonly holder: LockHolder,
    private readonly releaseLock: () => Promise<void>,
  ) {}

  /** Takes the lock of `dir` (an existing directory), or throws StateDirLockedError. */
  static async acquire(dir: string, options: LockOptions): Promise<StateDirLock> {
    const lockPath = join(dir, LOCK);
    const me = ownRecord(options.program, options.detail ?? '');
    const deadline = Date.now() + (options.waitMs ?? STALE_MS + UPDATE_MS);
    let waiting = false;
    for (let takeovers = 0; ; ) {
      try {
        const release = await lockfile.lock(dir, {
          lockfilePath: lockPath,
          realpath: false,
          stale: STALE_MS,
          update: UPDATE_MS,
          fs: lockFs(me),
          onCompromised: options.onCompromised,
        });
        if (takeovers > 0 || waiting) options.log.info({ dir }, 'state dir lock taken');
        return new StateDirLock(dir, me, release);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED')
          throw new StateDirError(dir, `cannot be locked: ${(err as Error).message}`, {
            cause: err,
          });
      }
      const holder = await readHolder(lockPath);
      const state = holder === undefined ? 'unknown' : liveness(holder);
      if (state === 'alive')
        throw new StateDirLockedError(
          dir,
          holder,
          ': stop that process first, or give this one another state dir',
        );
      if (state === 'gone' && takeovers < 3) {
        takeovers++;
        options.log.warn(
          { dir, holder },
          'taking over the state dir lock of a process that is gone',
        );
        removeLock(lockPath);
        continue;
      }
      if (Date.now() >= deadline)
        throw new StateDirLockedError(
          dir,
          holder,
          ', whose liveness cannot be checked from here, and its lock is still being refreshed: stop it first, or give this process another state dir',
        );
      if (!waiting) {
        waiting = true;
        options.log.warn(
          { dir, holder, waitMs: deadline - Date.now() },
          'state dir locked by a process that cannot be checked from here; waiting for its lock to go stale',
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** Releases the lock (idempotent). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.releaseLock().catch((err: NodeJS.ErrnoException) => {
      // Already lost (compromised): nothing of ours left to remove.
      if (err.code !== 'ERELEASED' && err.code !== 'ENOTACQUIRED') throw err;
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/**
 * The file system proper-lockfile sees. Its lock is a directory it makes
 * with mkdir and removes with rmdir (also from its exit hook, with
 * rmdirSync); the holder record lives inside, so it is written right after
 * the mkdir (before proper-lockfile records the directory's mtime, which
 * the write would change and which it takes as its proof of ownership) and
 * removed right before the rmdir.
 */
function lockFs(holder: LockHolder) {
  return {
    ...fs,
    mkdir(path: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
      fs.mkdir(path, (err) => {
        if (err) return cb(err);
        try {
          fs.writeFileSync(join(path, HOLDER), JSON.stringify(holder), { mode: 0o600 });
        } catch (e) {
          fs.rmdirSync(path);
          return cb(e as NodeJS.ErrnoException);
        }
        cb(null);
      });
    },
    rmdir: removeDir,
    rmdirSync: removeDirSync,
  };
}

function removeDir(path: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
  fs.unlink(join(path, HOLDER), () => fs.rmdir(path, cb));
}

function removeDirSync(path: string): void {
  try {
    fs.unlinkSync(join(path, HOLDER));
  } catch {
    // not written
  }
  fs.rmdirSync(path);
}

function removeLock(lockPath: string): void {
  try {
    removeDirSync(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function readHolder(lockPath: string): Promise<LockHolder | undefined> {
  let text: string;
  try {
    text = await readFile(join(lockPath, HOLDER), 'utf8');
  } catch {
    return undefined; // being written, or its writer died before it could
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    if (
      typeof h.program === 'string' &&
      typeof h.detail === 'string' &&
      Number.isSafeInteger(h.pid) &&
      h.pid > 0 &&
      typeof h.host === 'string' &&
      typeof h.since === 'string'
    )
      return h;
  } catch {
    // a torn record is as good as none
  }
  return undefined;
}

function readProc(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  return readProc('/proc/sys/kernel/random/boot_id');
}

function pidNamespace(): string | undefined {
  try {
    return fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/**
 * Field 22 of /proc/PID/stat (fields counted after the parenthesised command,
 * which may hold spaces); undefined when there is no such process or it is a
 * zombie (dead, not yet reaped: it holds nothing).
 */
function processStart(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' || fields[0] === 'X' ? undefined : fields[19];
}

function ownRecord(program: string, detail: string): LockHolder {
  const record: LockHolder = {
    program,
    detail,
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
  };
  const boot = bootId();
  const ns = pidNamespace();
  const start = processStart(process.pid);
  return {
    ...record,
    ...(boot !== undefined ? { bootId: boot } : {}),
    ...(ns !== undefined ? { pidNamespace: ns } : {}),
    ...(start !== undefined ? { processStart: start } : {}),
  };
}

function liveness(h: LockHolder): 'alive' | 'gone' | 'unknown' {
  if (h.host !== hostname()) return 'unknown';
  const boot = bootId();
  if (boot !== undefined && h.bootId !== undefined && h.bootId !== boot) return 'gone';
  const ns = pidNamespace();
  if (ns !== undefined || h.pidNamespace !== undefined) {
    if (ns !== h.pidNamespace) return 'unknown';
    const start = processStart(h.pid);
    if (start === undefined) return 'gone';
    return h.processStart === undefined || h.processStart === start ? 'alive' : 'gone';
  }
  // Without /proc: a signal 0 tells whether the pid exists (EPERM: it does, as another user's).
  try {
    process.kill(h.pid, 0);
    return 'alive';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'gone' : 'alive';
  }
}
