/**
 * The embedded default source: a directory of manifests, watched.
 *
 *   chokidar events ─> dirty paths ─(settle)─> pass: stat each, read the
 *   changed ones ─> ManifestSet (manifests.ts) ─> upserts and deletes ─> sink
 *
 * Every create, write, rename and delete under the directory, in
 * subdirectories too, is seen through chokidar (one watch per file and
 * directory, re-established when a file is replaced by a rename, which Node
 * 20's recursive fs.watch loses). A pass waits `settleMs` after the last
 * event, stats only the paths that changed, and reads a file only when its
 * fingerprint (device, inode, size, mtime, ctime) changed; a read whose
 * content hashes the same as before changes nothing. A stat-only walk every
 * `rescanIntervalMs` is the safety net for events the kernel drops.
 *
 * What is delivered follows ManifestSet's rules: an invalid, unreadable or
 * half-written file never withdraws anything; the last valid version of each
 * object stays in force until the object is deleted. Problems are reported
 * in state().problems (weirctl status) and logged once when they appear or
 * change, and once when they are resolved.
 *
 * Bounded: files larger than `maxFileBytes` are not read, alias expansion
 * is capped, FIFOs and other non-regular files are never opened for a
 * blocking read (skipped with a note), and at most MAX_REPORTED problems are
 * listed.
 */
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import type { Issue } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import {
  ChecksummedFile,
  type StateFileRead,
  describeRejection,
} from '../../shared/state/checksummed-file.js';
import { type KubeObject, READ_KINDS } from '../kube/objects.js';
import {
  DEFAULT_MAX_FILE_BYTES,
  type FileContent,
  type FileRead,
  fingerprint,
  isManifestName,
  listManifests,
  ManifestSet,
  pathOrder,
  readManifestFile,
  readManifestText,
} from './manifests.js';
import type { ClusterSource, SourceEvent, SourceProblem, SourceState } from './source.js';

export const MAX_REPORTED = 1_000;
/** Files read ahead of the one being parsed. */
const READ_AHEAD = 8;

export interface ManifestSourceOptions {
  readonly log: Logger;
  /** The safety-net walk (stat only), for events the kernel dropped. Default 60 s. */
  readonly rescanIntervalMs?: number;
  /** Quiet time after the last change before files are read. Default 25 ms. */
  readonly settleMs?: number;
  readonly maxFileBytes?: number;
  /**
   * Where to keep what is in force (manifests.state), so that a
   * restarted controller keeps the last valid version of an object whose
   * file was broken, emptied or made invalid while it was down. None: not kept.
   */
  readonly stateDir?: string;
}

/** The file in the state directory, and its format. */
export const IN_FORCE_FILE = 'manifests.state';
const IN_FORCE_KIND = 'manifests-in-force/v1';
/** Changes within this long are saved together. */
const SAVE_DELAY_MS = 2_000;

interface Known {
  readonly fingerprint: string;
  /** Of the content last read; empty when the file could not be read. */
  readonly hash: string;
}

export class ManifestSource implements ClusterSource {
  private readonly set = new ManifestSet();
  private readonly known = new Map<string, Known>();
  private readonly links = new Set<string>();
  /** Directories under the root (and the root), to tell the raw events of their watches apart. */
  private readonly dirs = new Set<string>();
  private readonly dirty = new Set<string>();
  private fullScan = false;
  private timer: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private watcher: FSWatcher | undefined;
  private sink: ((e: SourceEvent) => void) | undefined;
  private closed = false;
  private synced = false;
  /** The first pass after restore(): files restored and not found are dropped. */
  private restoring = false;
  private saveTimer: NodeJS.Timeout | undefined;
  /** Problems of the tree itself (unlistable directories, the watcher), by what they concern. */
  private readonly treeProblems = new Map<string, string>();
  private readonly skippedNoted = new Set<string>();
  private problems: SourceProblem[] = [];
  private logged = new Map<string, string>();
  private readonly log: Logger;

  private readonly dir: string;

  constructor(
    dir: string,
    private readonly options: ManifestSourceOptions,
  ) {
    this.dir = resolve(dir);
    this.log = options.log;
  }

  state(): SourceState {
    const first = this.problems[0];
    return {
      kind: 'manifests',
      location: this.dir,
      synced: this.synced,
      lastError:
        first === undefined
          ? ''
          : `${this.problems.length} problem(s); first: ${first.object}: ${first.problems[0]}`,
      problems: this.problems,
    };
  }

  async start(sink: (event: SourceEvent) => void): Promise<void> {
    this.sink = sink;
    const watcher = watch(this.dir, {
      ignoreInitial: true,
      followSymlinks: false,
      // Replacements by rename are events like any other: each path is stat'ed when read.
      atomic: false,
      ignorePermissionErrors: true,
      // Hidden entries (.git, editors' files) are not watched, except Kubernetes' "..data"
      // of a ConfigMap volume, whose swap is how mounted manifests change.
      ignored: (p: string) =>
        relative(this.dir, p)
          .split(sep)
          .some((part) => part.startsWith('.') && !part.startsWith('..')),
    });
    this.watcher = watcher;
    this.dirs.add(this.dir);
    watcher.on('all', (event, path) => {
      if (event === 'addDir') this.dirs.add(path);
      else if (event === 'unlinkDir') this.dirs.delete(path);
      this.onChange(event, path);
    });
    // chokidar's own events come from its per-file watches, which miss a file replaced by a
    // rename soon after another; the raw events of its directory watches never do.
    watcher.on('raw', (_event, name, details) => {
      const at = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
      if (typeof at !== 'string') return;
      const path = this.dirs.has(at) && typeof name === 'string' ? join(at, name) : at;
      this.onChange('raw', path);
    });
    watcher.on('error', (err) => {
      this.treeProblems.set(
        'watcher',
        `watching failed (${(err as Error).message}); changes are seen by the periodic rescan`,
      );
      this.log.warn({ err }, 'watching manifests failed; relying on periodic rescans');
    });
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    await this.restore();
    this.fullScan = true;
    await this.runPasses();
    this.synced = true;
    sink({ type: 'synced' });
    this.rescan = setInterval(() => {
      this.fullScan = true;
      this.schedule(0);
    }, this.options.rescanIntervalMs ?? 60_000);
    this.rescan.unref();
  }

  private onChange(event: string, path: string): void {
    if (this.closed) return;
    const rel = relative(this.dir, path);
    if (event === 'addDir' || event === 'unlinkDir' || isManifestName(rel) || this.dirs.has(path))
      this.dirty.add(path);
    // Something else changed: a symlinked manifest's target may have moved with it.
    else for (const l of this.links) this.dirty.add(l);
    this.schedule(this.options.settleMs ?? 25);
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) {
      if (delayMs > 0) this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runPasses();
    }, delayMs);
    this.timer.unref();
  }

  /** Runs passes until nothing is dirty; one run at a time. */
  private runPasses(): Promise<void> {
    if (this.running !== undefined) return this.running;
    const run = this.passes();
    this.running = run;
    // Cleared after it settles (never before it is set, even when it settles at once).
    void run.finally(() => {
      if (this.running === run) this.running = undefined;
    });
    return run;
  }

  private async passes(): Promise<void> {
    try {
      while (!this.closed && (this.fullScan || this.dirty.size > 0)) {
        const retry = await this.pass();
        if (retry.size > 0) {
          // Files that changed while being read: read them again once they settle.
          for (const p of retry) this.dirty.add(p);
          this.schedule(this.options.settleMs ?? 25);
          break;
        }
      }
    } catch (err) {
      this.log.error({ err }, 'reading manifests failed');
    }
  }

  /** One pass over what is dirty (or everything); returns the files to read again. */
  private async pass(): Promise<Set<string>> {
    const full = this.fullScan;
    this.fullScan = false;
    const dirty = [...this.dirty];
    this.dirty.clear();
    // Every path to look at, with its fingerprint when a walk already stat'ed it.
    const look = new Map<string, string | undefined>();
    const walkUnder = async (dir: string) => {
      const listing = await listManifests(dir);
      for (const [file, fp] of listing.files) look.set(file, fp);
      for (const l of listing.links) this.links.add(l);
      for (const d of listing.dirs) this.dirs.add(d);
      for (const [p, why] of listing.skipped) this.noteSkipped(p, why);
      const prefix = dir === this.dir ? 'directory' : `directory ${relative(this.dir, dir)}`;
      for (const key of [...this.treeProblems.keys()])
        if (key.startsWith(prefix)) this.treeProblems.delete(key);
      for (const [d, why] of listing.unreadable)
        this.treeProblems.set(`directory ${relative(this.dir, d) || '.'}`, `cannot list: ${why}`);
      // Known files under it that the walk did not find are gone (or no longer manifests).
      const under = dir + sep;
      for (const f of this.known.keys())
        if ((dir === this.dir || f.startsWith(under)) && !look.has(f)) look.set(f, undefined);
    };
    if (full) await walkUnder(this.dir);
    for (const p of dirty) {
      if (look.has(p)) continue;
      const s = await stat(p).catch(() => undefined);
      if (s?.isDirectory()) await walkUnder(p);
      else {
        look.set(p, undefined);
        // A directory that went: everything known under it.
        for (const f of this.known.keys()) if (f.startsWith(p + sep)) look.set(f, undefined);
      }
    }

    const retry = new Set<string>();
    const toRead: Array<[string, string]> = [];
    for (const [file, listed] of look) {
      const rel = relative(this.dir, file);
      if (!isManifestName(rel)) {
        this.forget(file);
        continue;
      }
      let fp = listed;
      if (fp === undefined) {
        const s = await stat(file).catch(() => undefined);
        if (s === undefined || !s.isFile()) {
          if (s !== undefined && !s.isDirectory())
            this.noteSkipped(file, 'not a regular file (a FIFO, socket or device): not read');
          this.forget(file);
          continue;
        }
        fp = fingerprint(s);
      }
      if (this.known.get(file)?.fingerprint !== fp) toRead.push([file, fp]);
    }
    // Reads overlap (a few at a time) with the parsing of the files before them.
    const max = this.options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    const reads: Array<Promise<FileContent> | undefined> = [];
    for (const [i, [file, fp]] of toRead.entries()) {
      for (let j = i; j < Math.min(toRead.length, i + READ_AHEAD); j++)
        reads[j] ??= readManifestFile(toRead[j]![0], max);
      const c = await reads[i]!;
      reads[i] = undefined;
      const rel = relative(this.dir, file);
      if (c.type === 'changed') retry.add(file);
      else if (c.type === 'gone' || c.type === 'not-regular') {
        if (c.type === 'not-regular')
          this.noteSkipped(file, 'not a regular file (a FIFO, socket or device): not read');
        this.forget(file);
      } else if (c.type === 'problem') {
        this.known.set(file, { fingerprint: fp, hash: '' });
        const read: FileRead = {
          definitions: [],
          problems: [{ source: rel, message: c.message }],
          whole: false,
          notes: [],
        };
        this.set.setFile(file, pathOrder(this.dir, file), read);
      } else {
        const hash = createHash('sha256').update(c.text).digest('base64');
        const before = this.known.get(file);
        this.known.set(file, { fingerprint: c.fingerprint, hash });
        const same = before?.hash === hash;
        this.log.debug({ file: rel, changed: !same }, 'manifest file read');
        if (same) continue; // rewritten with the same content
        const read = readManifestText(c.text, rel);
        for (const n of read.notes) this.log.debug({ note: n }, 'manifest note');
        this.set.setFile(file, pathOrder(this.dir, file), read);
      }
    }
    if (full) this.log.debug({ files: this.known.size }, 'manifests rescanned');
    // After the first walk, what was restored for files that are gone is gone too.
    for (const f of this.restoring ? this.set.restoredFiles() : [])
      if (!look.has(f)) this.set.setFile(f, f === '' ? [] : pathOrder(this.dir, f), undefined);
    const events = this.set.resolve();
    if (this.restoring) {
      this.set.endRestore();
      this.restoring = false;
    }
    if (!this.closed) for (const e of events) this.sink?.(e);
    if (events.length > 0) this.scheduleSave();
    this.report();
    return retry;
  }

  private forget(file: string): void {
    this.links.delete(file);
    if (!this.known.delete(file)) return;
    this.set.setFile(file, pathOrder(this.dir, file), undefined);
  }

  private noteSkipped(path: string, why: string): void {
    if (this.skippedNoted.has(path)) return;
    this.skippedNoted.add(path);
    this.log.info({ file: relative(this.dir, path), why }, 'manifest path skipped');
  }

  /** Rebuilds the problem list, and logs what appeared, changed or was resolved. */
  private report(): void {
    const out: SourceProblem[] = [];
    for (const [what, problem] of this.treeProblems)
      out.push({ object: what, problems: [problem] });
    for (const f of this.set.fileReports()) {
      const rel = relative(this.dir, f.file);
      const lines = f.problems.map(issueLine);
      const held = f.held.length;
      const names = `${f.held.slice(0, 5).join(', ')}${held > 5 ? `, and ${held - 5} more` : ''}`;
      if (f.problems.length === 0)
        lines.push(
          `is empty: the ${held} object(s) it held stay in force (delete the file to delete them): ${names}`,
        );
      else {
        if (held > 0)
          lines.push(
            `until it can be read, the ${held} object(s) it held stay at their last valid versions: ${names}`,
          );
        lines.push(
          'deletions of objects it names wait until it can be read: they may have moved into it',
        );
      }
      out.push({ object: `file ${rel}`, problems: lines });
    }
    for (const r of this.set.objectReports()) {
      const lines: string[] = [];
      if (r.rejected) {
        lines.push(...r.rejected.map(issueLine));
        lines.push(
          r.inForce
            ? 'rejected: its last valid version stays in force'
            : 'rejected: not in force (no valid version of it has been read)',
        );
      }
      if (r.ignored)
        lines.push(
          `defined more than once: ${r.used} is used (the first in path order); ignored: ${r.ignored.join(', ')}`,
        );
      if (r.deferredBy)
        lines.push(
          `deleted from the manifests, but stays in force while ${r.deferredBy.map((f) => relative(this.dir, f)).join(', ')} cannot be read (it may have moved there)`,
        );
      out.push({ object: r.key, problems: lines });
    }
    out.sort((a, b) => (a.object < b.object ? -1 : a.object > b.object ? 1 : 0));

    const now = new Map(out.map((p) => [p.object, JSON.stringify(p.problems)]));
    for (const p of out)
      if (this.logged.get(p.object) !== now.get(p.object))
        this.log.warn({ object: p.object, problems: p.problems }, 'manifest problem');
    for (const object of this.logged.keys())
      if (!now.has(object)) this.log.info({ object }, 'manifest problem resolved');
    this.logged = now;
    this.problems =
      out.length > MAX_REPORTED
        ? [
            ...out.slice(0, MAX_REPORTED),
            {
              object: '(more)',
              problems: [`and ${out.length - MAX_REPORTED} more: see the controller's log`],
            },
          ]
        : out;
  }

  /** The state file of what is in force; undefined without a state directory. */
  private inForceFile(): ChecksummedFile | undefined {
    const dir = this.options.stateDir;
    if (dir === undefined) return undefined;
    return new ChecksummedFile(dir, IN_FORCE_FILE, IN_FORCE_KIND, { writer: 'weir-controller' });
  }

  /** Whose the file is: what it holds is relative to this directory. */
  private get owner(): Record<string, string> {
    return { manifests: resolve(this.dir) };
  }

  /** Seeds the set with what was in force when the controller last ran (see stateDir). */
  private async restore(): Promise<void> {
    const file = this.inForceFile();
    if (file === undefined) return;
    let read: StateFileRead;
    try {
      read = await file.read(this.owner);
    } catch (err) {
      this.log.warn(
        { err, path: file.path },
        'cannot read the manifests in force before; starting without them',
      );
      return;
    }
    if (read.type === 'absent') return;
    if (read.type === 'rejected') {
      this.log.warn(
        { rejection: read.rejection, problem: describeRejection(read.rejection) },
        'the manifests in force before were rejected; starting without them',
      );
      return;
    }
    const saved = parseInForce(read.body.toString('utf8'));
    if (typeof saved === 'string') {
      const rejection = await file.reject('corrupt', saved);
      this.log.warn(
        { rejection, problem: describeRejection(rejection) },
        'the manifests in force before were rejected; starting without them',
      );
      return;
    }
    this.restoring = true;
    this.set.restore(
      saved.map(({ file, object }) => {
        const abs = file === '' ? '' : join(this.dir, file);
        return { file: abs, order: file === '' ? [] : pathOrder(this.dir, abs), object };
      }),
    );
    this.log.info(
      { objects: saved.length },
      'last valid versions from before the restart restored',
    );
  }

  private scheduleSave(): void {
    if (this.options.stateDir === undefined || this.saveTimer !== undefined) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, SAVE_DELAY_MS);
    this.saveTimer.unref();
  }

  /**
   * Writes what is in force as a checksummed state file (atomic, fsynced;
   * shared/state/checksummed-file.ts): the objects as one JSON list, each
   * object's JSON being the set's own (kept to compare versions), so the
   * whole is joined, not serialised again.
   */
  private async save(): Promise<void> {
    const file = this.inForceFile();
    if (file === undefined) return;
    const body = `[${this.set
      .inForceByFile()
      .map(
        ({ file, json }) =>
          `{"file":${JSON.stringify(file === '' ? '' : relative(this.dir, file))},"object":${json}}`,
      )
      .join(',')}]`;
    try {
      await mkdir(file.dir, { recursive: true, mode: 0o700 });
      await file.write(this.owner, body);
    } catch (err) {
      this.log.warn({ err, path: file.path }, 'cannot save the manifests in force');
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.rescan !== undefined) clearInterval(this.rescan);
    await this.watcher?.close();
    this.watcher = undefined;
    await this.running;
    if (this.saveTimer !== undefined) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      await this.save();
    }
  }
}

/** The saved objects, or what is wrong with the body. */
function parseInForce(text: string): Array<{ file: string; object: KubeObject }> | string {
  let objects: unknown;
  try {
    objects = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  if (!Array.isArray(objects)) return 'objects: not a list';
  for (const [i, e] of (
    objects as Array<{ file?: unknown; object?: { kind?: unknown } }>
  ).entries()) {
    if (typeof e?.file !== 'string' || READ_KINDS[e.object?.kind as string] === undefined)
      return `objects[${i}]: not a file and an object of a kind Weir reads`;
  }
  return objects as Array<{ file: string; object: KubeObject }>;
}

/** "20-policies.yaml:7: spec.ingress[0].ports[0].endPort: 10 must be ..." (the object is said apart). */
function issueLine(i: Issue): string {
  return [i.source, i.field, i.message].filter((x) => x !== undefined && x !== '').join(': ');
}
