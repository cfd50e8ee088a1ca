/**
 * A state file that proves its own integrity and says whose it is, written
 * atomically. Both programs keep their durable state in one (the agent its
 * span, the controller its revision counter and what agents ACKed).
 *
 * Layout (one header line, then the meta and body bytes it counts):
 *
 *   weir-state 1 sha256:<64 hex> meta:<bytes> body:<bytes>\n
 *   <meta: JSON {"kind", "owner": {...}, "written", "writer"}><body>
 *
 * The digest is SHA-256 over `<meta bytes>\n<meta><body>`, so that the
 * owner, the kind and the split between meta and body are covered too. It
 * detects corruption (a torn write, a flipped bit, a hand edit), not
 * forgery: the file lives in a directory only its owner can write (see
 * state-dir.ts), which is what keeps other users out.
 *
 * Reading verifies, in order: a regular file (never a FIFO or a symlink, which
 * could block or point anywhere), at most `maxBytes`, the header's form, the
 * lengths, the digest, the kind, and every owner field the reader expects
 * (a file copied from another node or cluster is *foreign*). A file that
 * fails is moved aside as `<name>.<reason>-<UTC timestamp>` (the newest
 * `keepRejected` of those are kept, older ones deleted) and reported once as
 * a StateFileRejection; the caller then starts without it. What its body
 * means is the caller's to check: a body that fails the caller's own checks
 * is moved aside the same way (`reject`).
 *
 * Writing: a temporary file in the same directory (mode 0600), fsync, rename
 * over the old one, fsync of the directory, so that after a crash either
 * the old or the new file is there, whole. Callers serialize their writes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';

/** Why a state file was not used. */
export type RejectionReason =
  /** The bytes are not a whole, intact state file, or its content fails the owner's checks. */
  | 'corrupt'
  /** Intact, but written for another node, cluster or purpose. */
  | 'foreign'
  /** Written without a checksum (by a Weir before state files had one): nothing proves it intact. */
  | 'unverifiable';

/** A state file that was moved aside instead of used. */
export interface StateFileRejection {
  /** The path it had. */
  readonly file: string;
  /** Where it is now (`<file>.<reason>-<UTC timestamp>`). */
  readonly movedTo: string;
  readonly reason: RejectionReason;
  /** What was wrong, for a person: "digest mismatch", "owner.node is node-b, not node-a". */
  readonly detail: string;
  readonly atUnixMs: number;
}

export interface StateFileMeta {
  readonly kind: string;
  readonly owner: Readonly<Record<string, string>>;
  /** ISO time of the write. */
  readonly written: string;
  /** "program pid N on host H". */
  readonly writer: string;
}

export type StateFileRead =
  | { readonly type: 'absent' }
  | { readonly type: 'ok'; readonly meta: StateFileMeta; readonly body: Buffer }
  | { readonly type: 'rejected'; readonly rejection: StateFileRejection };

const MAGIC = 'weir-state 1 ';
const HEADER = /^weir-state 1 sha256:([0-9a-f]{64}) meta:(\d{1,7}) body:(\d{1,12})\n/;
const MAX_HEADER = 128;
const MAX_META = 64 * 1024;

export interface ChecksummedFileOptions {
  /** A file larger than this is rejected unread (default 256 MiB, the largest gRPC message Weir accepts). */
  readonly maxBytes?: number;
  /** Moved-aside files kept per state file (default 3). */
  readonly keepRejected?: number;
  /** Who writes, for the meta ("weir-agent"). */
  readonly writer?: string;
}

export class ChecksummedFile {
  readonly path: string;
  private readonly maxBytes: number;
  private readonly keepRejected: number;
  private readonly writer: string;

  /**
   * @param dir the state directory
   * @param name the file's name in it ("span.state")
   * @param kind what the file holds ("agent-span"); a file of another kind is foreign
   */
  constructor(
    readonly dir: string,
    readonly name: string,
    readonly kind: string,
    options: ChecksummedFileOptions = {},
  ) {
    this.path = join(dir, name);
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    this.keepRejected = options.keepRejected ?? 3;
    this.writer = `${options.writer ?? basename(process.argv[1] ?? 'node')} pid ${process.pid} on host ${hostname()}`;
  }

  /**
   * The verified body, or why there is none. A rejected file has been moved
   * aside when this returns. Throws only when the file cannot be read or
   * moved for a reason of the file system (EACCES, EIO): that is not the
   * file's fault, and starting as if it were absent would hide it.
   */
  async read(expectedOwner: Readonly<Record<string, string>>): Promise<StateFileRead> {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { type: 'absent' };
      throw err;
    }
    if (!st.isFile()) return this.rejected('corrupt', `not a regular file (${describeType(st)})`);
    if (st.size > this.maxBytes)
      return this.rejected('corrupt', `${st.size} bytes, more than the limit of ${this.maxBytes}`);
    const bytes = await readFile(this.path);
    const problem = this.verify(bytes, expectedOwner);
    if ('reason' in problem) return this.rejected(problem.reason, problem.detail);
    return { type: 'ok', meta: problem.meta, body: problem.body };
  }

  private verify(
    bytes: Buffer,
    expectedOwner: Readonly<Record<string, string>>,
  ): { reason: RejectionReason; detail: string } | { meta: StateFileMeta; body: Buffer } {
    const corrupt = (detail: string) => ({ reason: 'corrupt' as const, detail });
    if (bytes.length > this.maxBytes)
      return corrupt(`${bytes.length} bytes, more than the limit of ${this.maxBytes}`);
    const nl = bytes.subarray(0, MAX_HEADER).indexOf(0x0a);
    const header = nl < 0 ? '' : bytes.subarray(0, nl + 1).toString('latin1');
    const m = HEADER.exec(header);
    if (m === null)
      return bytes.subarray(0, MAGIC.length).toString('latin1') === MAGIC
        ? corrupt('malformed header line')
        : corrupt('not a Weir state file (no "weir-state 1" header)');
    const [, digest, metaText, bodyText] = m;
    const metaLength = Number(metaText);
    const bodyLength = Number(bodyText);
    if (metaLength > MAX_META) return corrupt(`meta of ${metaLength} bytes (limit ${MAX_META})`);
    const expectedLength = header.length + metaLength + bodyLength;
    if (bytes.length !== expectedLength)
      return corrupt(
        `${bytes.length} bytes where the header counts ${expectedLength} (${bytes.length < expectedLength ? 'truncated' : 'trailing bytes'})`,
      );
    const metaBytes = bytes.subarray(header.length, header.length + metaLength);
    const body = bytes.subarray(header.length + metaLength);
    if (digestOf(metaBytes, body) !== digest) return corrupt('digest mismatch');
    let meta: StateFileMeta;
    try {
      meta = JSON.parse(metaBytes.toString('utf8')) as StateFileMeta;
    } catch {
      return corrupt('meta is not JSON');
    }
    if (
      meta === null ||
      typeof meta !== 'object' ||
      typeof meta.kind !== 'string' ||
      meta.owner === null ||
      typeof meta.owner !== 'object'
    )
      return corrupt('meta lacks kind or owner');
    if (meta.kind !== this.kind)
      return { reason: 'foreign', detail: `holds ${meta.kind}, not ${this.kind}` };
    for (const [field, want] of Object.entries(expectedOwner)) {
      const got = meta.owner[field];
      if (got !== want)
        return {
          reason: 'foreign',
          detail: `written for ${field} ${JSON.stringify(got ?? null)}, not ${JSON.stringify(want)}`,
        };
    }
    return { meta, body };
  }

  /**
   * Moves the file aside because its body failed the caller's checks;
   * returns the rejection to report.
   */
  async reject(reason: RejectionReason, detail: string): Promise<StateFileRejection> {
    return (await this.rejected(reason, detail)).rejection;
  }

  /** Moves another file of the directory aside (a legacy file that predates checksums). */
  static async rejectFile(
    dir: string,
    name: string,
    reason: RejectionReason,
    detail: string,
    keepRejected = 3,
  ): Promise<StateFileRejection | undefined> {
    try {
      await lstat(join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return moveAside(dir, name, reason, detail, keepRejected);
  }

  private async rejected(
    reason: RejectionReason,
    detail: string,
  ): Promise<{ type: 'rejected'; rejection: StateFileRejection }> {
    return {
      type: 'rejected',
      rejection: await moveAside(this.dir, this.name, reason, detail, this.keepRejected),
    };
  }

  /** Replaces the file with one holding `body`, atomically and durably. */
  async write(owner: Readonly<Record<string, string>>, body: Buffer | string): Promise<void> {
    const meta: StateFileMeta = {
      kind: this.kind,
      owner,
      written: new Date().toISOString(),
      writer: this.writer,
    };
    const metaBytes = Buffer.from(JSON.stringify(meta), 'utf8');
    const bodyBytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const header = Buffer.from(
      `${MAGIC}sha256:${digestOf(metaBytes, bodyBytes)} meta:${metaBytes.length} body:${bodyBytes.length}\n`,
      'latin1',
    );
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(
      this.dir,
      `.${this.name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
    );
    const fh = await open(tmp, 'wx', 0o600);
    try {
      try {
        await fh.writev([header, metaBytes, bodyBytes]);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.dir);
  }
}

function digestOf(meta: Buffer, body: Buffer): string {
  return createHash('sha256').update(`${meta.length}\n`).update(meta).update(body).digest('hex');
}

function describeType(st: Awaited<ReturnType<typeof lstat>>): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  return 'a device';
}

/** "20260512T101500.123Z": sortable, and free of the colons some tools choke on. */
function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '');
}

const ASIDE = /\.(corrupt|foreign|unverifiable)-\d{8}T\d{6}\.\d{3}Z(\.\d+)?$/;

async function moveAside(
  dir: string,
  name: string,
  reason: RejectionReason,
  detail: string,
  keep: number,
): Promise<StateFileRejection> {
  const at = Date.now();
  const file = join(dir, name);
  let target = `${name}.${reason}-${stamp(at)}`;
  const existing = new Set(await readdir(dir));
  for (let i = 1; existing.has(target); i++) target = `${name}.${reason}-${stamp(at)}.${i}`;
  await rename(file, join(dir, target));
  // Bounded: a state file corrupted again and again must not fill the disk.
  const aside = [...existing, target]
    .filter((f) => f.startsWith(`${name}.`) && ASIDE.test(f))
    .sort((a, b) => asideTime(a).localeCompare(asideTime(b)) || a.localeCompare(b));
  for (const old of aside.slice(0, Math.max(0, aside.length - keep)))
    await unlink(join(dir, old)).catch(() => undefined);
  await syncDir(dir);
  return { file, movedTo: join(dir, target), reason, detail, atUnixMs: at };
}

function asideTime(f: string): string {
  return /-(\d{8}T\d{6}\.\d{3}Z)/.exec(f)?.[1] ?? '';
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** One line for logs and status: what was rejected, why, and where it went. */
export function describeRejection(r: StateFileRejection): string {
  return `state file ${r.file} rejected (${r.reason}: ${r.detail}); moved aside to ${r.movedTo}`;
}
