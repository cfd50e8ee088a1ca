/**
 * State directories: where a program keeps what must survive it, and the
 * rules that keep other users out of it.
 *
 * Defaults are private: `/var/lib/weir/<name>` for root (the FHS place for
 * a daemon's state), `$XDG_STATE_HOME/weir/<name>` (else
 * `~/.local/state/weir/<name>`) for anyone else. Never under /tmp: there any
 * user can create the directory first, and then owns what we would read.
 *
 * A state directory is created 0700 (with its missing parents), and refused
 * when it is not a directory, is owned by another user, or is writable by
 * group or others: whoever can write there can plant the state a program
 * enforces. Only the directory itself is checked; its parents are the
 * operator's (a Kubernetes emptyDir is 0777, so manifests point the programs
 * at a subdirectory they create).
 */
import { mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ErrorCode, WeirError } from '../errors.js';

/** A state directory that cannot be used; the message names it and says what to do. */
export class StateDirError extends WeirError {
  constructor(
    readonly dir: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.Invalid, `state dir ${dir}: ${message}`, options);
  }
}

export interface StateDirEnvironment {
  readonly uid: number | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly home: string;
}

const currentEnvironment = (): StateDirEnvironment => ({
  uid: process.getuid?.(),
  env: process.env,
  home: homedir(),
});

/** The default state directory for `name` ("agent-node-a"). */
export function defaultStateDir(
  name: string,
  from: StateDirEnvironment = currentEnvironment(),
): string {
  if (from.uid === 0) return join('/var/lib/weir', name);
  const xdg = from.env.XDG_STATE_HOME;
  // The XDG spec: a relative XDG_STATE_HOME is invalid and must be ignored.
  const base = xdg?.startsWith('/') ? xdg : join(from.home, '.local', 'state');
  return join(base, 'weir', name);
}

/**
 * Makes sure `dir` exists and is this user's alone; returns its absolute
 * path. Throws StateDirError otherwise.
 */
export async function prepareStateDir(dir: string): Promise<string> {
  const abs = resolve(dir);
  try {
    await mkdir(abs, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateDirError(abs, `cannot be created: ${(err as Error).message}`, { cause: err });
  }
  const st = await stat(abs);
  if (!st.isDirectory()) throw new StateDirError(abs, 'is not a directory');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new StateDirError(
      abs,
      `is owned by uid ${st.uid}, not by this process (uid ${uid}): another user could plant the state it holds; use a directory of your own`,
    );
  if ((st.mode & 0o022) !== 0)
    throw new StateDirError(
      abs,
      `is writable by ${[(st.mode & 0o020) !== 0 ? 'its group' : '', (st.mode & 0o002) !== 0 ? 'others' : ''].filter(Boolean).join(' and ')} (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): anyone who can write there can plant the state this program enforces; run "chmod go-w ${abs}" or choose another directory`,
    );
  return abs;
}
