/**
 * The controller's durable state: the revision counter and what each agent
 * ACKed (as content hashes), so that a restarted controller resyncs agents
 * by delta. Kept in a checksummed file owned by the cluster
 * (shared/state/checksummed-file.ts), written atomically.
 *
 * Loading trusts nothing it cannot check: a file that is damaged, another
 * cluster's, or whose values are out of range is moved aside and reported,
 * and the controller starts fresh (revision 0, no agent's span known). That
 * is safe: every agent then resyncs by snapshot, and the controller issues
 * revisions above any an agent says it holds (SpanStore.advancePast), so
 * revisions never go backwards for an agent.
 */
import { ChecksummedFile, type StateFileRejection } from '../../shared/state/checksummed-file.js';
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

export interface LoadedControllerState {
  readonly state: ControllerState;
  /** Set when a state file was there and was not used (then `state` is fresh). */
  readonly rejection?: StateFileRejection;
}

export const STATE_FILE = 'controller.state';
/** What controllers wrote before state files had a checksum: moved aside unread. */
export const LEGACY_STATE_FILE = 'controller-state.json';

/** Bounds on what a state file may hold (beyond them it is not one this controller wrote). */
export const LIMITS = {
  nodes: 100_000,
  spanEntries: 1_000_000,
  nodeNameLength: 253,
  keyLength: 2_048,
} as const;

const KEY = /^[pgse]:./;
/** Content hashes as SpanStore makes them (base64url or hex digests). */
const HASH = /^[A-Za-z0-9_-]{16,128}$/;

const FRESH: ControllerState = { revision: 0, nodes: {} };

function file(dir: string): ChecksummedFile {
  return new ChecksummedFile(dir, STATE_FILE, 'controller-state', { writer: 'weir-controller' });
}

/**
 * The persisted state of `cluster`'s controller, or a fresh one (with the
 * rejection to report) when there is none it can trust. Throws only for
 * file system errors.
 */
export async function loadControllerState(
  dir: string,
  cluster: string,
): Promise<LoadedControllerState> {
  const f = file(dir);
  const read = await f.read({ cluster });
  if (read.type === 'absent') {
    const legacy = await ChecksummedFile.rejectFile(
      dir,
      LEGACY_STATE_FILE,
      'unverifiable',
      'written without a checksum by an older Weir controller',
    );
    return legacy === undefined ? { state: FRESH } : { state: FRESH, rejection: legacy };
  }
  if (read.type === 'rejected') return { state: FRESH, rejection: read.rejection };
  let parsed: unknown;
  try {
    parsed = JSON.parse(read.body.toString('utf8'));
  } catch {
    return { state: FRESH, rejection: await f.reject('corrupt', 'content is not JSON') };
  }
  const checked = checkControllerState(parsed);
  if (typeof checked === 'string')
    return { state: FRESH, rejection: await f.reject('corrupt', checked) };
  return { state: checked };
}

export async function saveControllerState(
  dir: string,
  cluster: string,
  state: ControllerState,
): Promise<void> {
  await file(dir).write({ cluster }, JSON.stringify(state));
}

/**
 * The state if every value is in range, else the problems (the first few,
 * with their paths): revisions non-negative safe integers, no agent ahead
 * of the counter, node names and keys bounded, hashes of the right shape,
 * no key twice in a span.
 */
export function checkControllerState(x: unknown): ControllerState | string {
  const problems: string[] = [];
  const bad = (path: string, message: string) => {
    if (problems.length < 5) problems.push(`${path}: ${message}`);
  };
  const isRevision = (v: unknown): v is number =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'content is not an object';
  const { revision, nodes } = x as { revision?: unknown; nodes?: unknown };
  if (!isRevision(revision))
    bad('revision', `${JSON.stringify(revision)} is not a non-negative safe integer`);
  if (nodes === null || typeof nodes !== 'object' || Array.isArray(nodes)) {
    bad('nodes', 'is not an object');
    return problems.join('; ');
  }
  const entries = Object.entries(nodes as Record<string, unknown>);
  if (entries.length > LIMITS.nodes)
    bad('nodes', `${entries.length} nodes (limit ${LIMITS.nodes})`);
  let total = 0;
  for (const [node, value] of entries.slice(0, LIMITS.nodes)) {
    const at = `nodes[${JSON.stringify(node.slice(0, 64))}]`;
    if (node.length === 0 || node.length > LIMITS.nodeNameLength)
      bad(at, `node name of ${node.length} characters (1 to ${LIMITS.nodeNameLength})`);
    const n = value as { revision?: unknown; span?: unknown } | null;
    if (n === null || typeof n !== 'object') {
      bad(at, 'is not an object');
      continue;
    }
    if (!isRevision(n.revision))
      bad(`${at}.revision`, `${JSON.stringify(n.revision)} is not a non-negative safe integer`);
    else if (isRevision(revision) && n.revision > revision)
      bad(`${at}.revision`, `${n.revision} is ahead of the controller's revision ${revision}`);
    if (!Array.isArray(n.span)) {
      bad(`${at}.span`, 'is not a list');
      continue;
    }
    total += n.span.length;
    if (total > LIMITS.spanEntries) {
      bad(`${at}.span`, `more than ${LIMITS.spanEntries} span entries in all`);
      break;
    }
    const seen = new Set<string>();
    n.span.forEach((e: unknown, i: number) => {
      const [key, hash] = Array.isArray(e) && e.length === 2 ? e : [undefined, undefined];
      if (typeof key !== 'string' || !KEY.test(key) || key.length > LIMITS.keyLength)
        bad(`${at}.span[${i}]`, `key ${JSON.stringify(key)?.slice(0, 80)} is not an object key`);
      else if (seen.has(key)) bad(`${at}.span[${i}]`, `key ${key.slice(0, 80)} appears twice`);
      else seen.add(key);
      if (typeof hash !== 'string' || !HASH.test(hash))
        bad(`${at}.span[${i}]`, `hash ${JSON.stringify(hash)?.slice(0, 80)} is not a content hash`);
    });
  }
  return problems.length > 0 ? problems.join('; ') : (x as ControllerState);
}
