/**
 * The controller's durable state: the revision counter (revisions never go
 * backwards across restarts) and what each agent ACKed (as content hashes),
 * so that a restarted controller resyncs agents by delta. Written atomically
 * (temporary file, then rename).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, WeirError } from '../../shared/errors.js';
import type { ObjectKey } from './span-store.js';

/** What one agent ACKed: the revision, and its span as object key → content hash. */
export interface PersistedNode {
  readonly revision: number;
  readonly span: ReadonlyArray<readonly [ObjectKey, string]>;
}

export interface ControllerState {
  readonly revision: number;
  readonly nodes: Readonly<Record<string, PersistedNode>>;
}

const FILE = 'controller-state.json';

export async function loadControllerState(dir: string): Promise<ControllerState> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, FILE), 'utf8')) as ControllerState;
    if (typeof parsed.revision !== 'number' || typeof parsed.nodes !== 'object')
      throw new WeirError(ErrorCode.Invalid, 'unexpected content');
    return parsed;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { revision: 0, nodes: {} };
    // A file that is there but not state is Invalid; one that cannot be read, Unavailable.
    const code =
      err instanceof SyntaxError || err instanceof WeirError
        ? ErrorCode.Invalid
        : ErrorCode.Unavailable;
    throw new WeirError(code, `cannot read ${join(dir, FILE)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export async function saveControllerState(dir: string, state: ControllerState): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(state));
  await rename(tmp, join(dir, FILE));
}
