/**
 * Cluster state from manifest files: YAML (multi-document) or JSON, files or
 * directories (recursively, *.yaml, *.yml, *.json in name order), with
 * `kind: List` (and FooList) flattened. Used by the watched manifest source
 * and by `weirctl analyze`, so that both read exactly the same.
 *
 * Reading one file (readManifestText) gives its definitions: per object it
 * names, the valid object or every problem that rejects it, each problem
 * with the file, line, object and field. Objects are read strictly, as
 * `kubectl apply --validate=strict` does: unknown fields (against the
 * Kubernetes schema, controller/kube/strict-fields.ts) and duplicate keys are
 * errors. Problems that are not one object's (a YAML syntax error, a document
 * whose kind or name cannot be read, an alias bomb, an unreadable file) make
 * the file not *whole*.
 *
 * ManifestSet puts the files together, and is where the rules live:
 *
 *   - An object defined in more than one place is a conflict: the definition
 *     first in path order (component by component, in name order: the order
 *     the directory walk reads them; within a file, the first) is the one
 *     used; the others are reported and ignored, whatever they hold.
 *   - When the definition used is invalid, the object's last valid version
 *     stays in force (as the API server keeps the stored version when it
 *     rejects an update); with none, the object is not in force.
 *   - An object is deleted only when no file defines it any more, and only
 *     a whole file can stop defining one: an object that vanished from a file
 *     that is not whole (or empty: perhaps being written) stays in force, since
 *     it may be in the part that cannot be read. Deleting the file deletes it.
 *   - While a file with problems may hold an object (its text names it, or
 *     it cannot be read at all), the object's deletion waits: it may have
 *     moved into that file. A broken file that does not name the object
 *     holds up nothing.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { constants, type Stats } from 'node:fs';
import { join, relative, sep } from 'node:path';
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseAllDocuments,
} from 'yaml';
import { compareStrings } from '../../shared/collections.js';
import { formatIssue, type Issue } from '../../shared/errors.js';
import {
  formatFieldPath,
  readingOf,
  schemaTypeOf,
  unknownFields,
  type FieldPath,
} from '../kube/strict-fields.js';
import type { KubeModelEvent as ModelEvent } from '../model/cluster-model.js';
import {
  namespaceOf,
  READ_KINDS,
  readKubeObject,
  type KubeObject,
  type ObjectIdentity,
} from '../kube/objects.js';

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;
/** Larger files are not read (a problem of the file): split them. */
export const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;
/** yaml's bound on alias expansion per document (a "billion laughs" stops here). */
export const MAX_ALIAS_COUNT = 100;

/** "NetworkPolicy shop/web", "Namespace shop": the key of an object and how it is named to people. */
export function objectKey(id: ObjectIdentity): string {
  return `${id.kind} ${id.namespace === '' ? '' : `${id.namespace}/`}${id.name}`;
}

/** One object as one place in one file defines it. */
export interface Definition {
  readonly key: string;
  readonly identity: ObjectIdentity;
  /** "file:line" of the object's document or list item. */
  readonly at: string;
  /** The object when valid; otherwise `issues` says why not. */
  readonly object?: KubeObject;
  readonly issues?: readonly Issue[];
}

export interface FileRead {
  /** In file order. */
  readonly definitions: readonly Definition[];
  /** Problems that are no one object's: the file is then not whole. */
  readonly problems: readonly Issue[];
  /** Every document was read and named its object, and there was something to read. */
  readonly whole: boolean;
  /** Worth telling, not errors: kinds Weir does not read. */
  readonly notes: readonly string[];
  /**
   * The text, kept only when the file is not whole (ManifestSet asks it
   * whether the file may hold an object deleted elsewhere). Absent for a
   * file with problems: it could not be read at all, and may hold anything.
   */
  readonly text?: string;
}

/** Reads the text of one file; `file` is how issues name it. Never throws. */
export function readManifestText(text: string, file: string): FileRead {
  const definitions: Definition[] = [];
  const problems: Issue[] = [];
  const notes: string[] = [];
  if (text.trim() === '') return { definitions, problems, notes, whole: false, text };
  const lines = new LineCounter();
  let docs: Document.Parsed[];
  try {
    const parsed = parseAllDocuments(text.replace(/^\uFEFF/, ''), {
      lineCounter: lines,
      prettyErrors: false,
      // Duplicates are found below, with their path, as problems of the object.
      uniqueKeys: false,
      // YAML 1.1 merge keys ("<<: *defaults"), which kubectl's YAML reader understands.
      merge: true,
    });
    docs = Array.isArray(parsed) ? parsed : [];
  } catch (err) {
    problems.push({ source: file, message: `cannot parse: ${(err as Error).message}` });
    return { definitions, problems, notes, whole: false, text };
  }
  for (const doc of docs) {
    const start = doc.contents?.range?.[0] ?? doc.range?.[0] ?? 0;
    const docLine = lines.linePos(start).line;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const at = e.pos?.[0] !== undefined ? lines.linePos(e.pos[0]) : undefined;
        problems.push({
          source: at ? `${file}:${at.line}:${at.col}` : `${file}:${docLine}`,
          message: `malformed YAML: ${e.message.split('\n')[0]}`,
        });
      }
      continue;
    }
    let raw: unknown;
    try {
      raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      problems.push({
        source: `${file}:${docLine}`,
        message: `cannot read the document: ${(err as Error).message}`,
      });
      continue;
    }
    if (raw === null || raw === undefined) continue; // an empty document ("---" at the end)
    const lineOf = (path: FieldPath) => {
      const n = nodeAt(doc, path);
      return n?.range ? lines.linePos(n.range[0]).line : docLine;
    };
    const duplicates = duplicateKeys(doc.contents, lines);
    for (const item of openLists(raw, duplicates, file, lineOf, problems)) {
      readItem(item, file, lineOf, duplicates, definitions, problems, notes);
    }
  }
  return {
    definitions,
    problems,
    notes,
    whole: problems.length === 0,
    ...(problems.length > 0 ? { text } : {}),
  };
}

interface Item {
  readonly raw: unknown;
  readonly path: FieldPath;
}

interface Duplicate {
  readonly path: FieldPath;
  readonly line: number;
  readonly firstLine: number;
}

/** The fields that say which object a document is: a duplicate of one leaves that unknown. */
const IDENTITY_PATHS = ['kind', 'apiVersion', 'metadata', 'metadata.name', 'metadata.namespace'];

function readItem(
  item: Item,
  file: string,
  lineOf: (path: FieldPath) => number,
  duplicates: readonly Duplicate[],
  definitions: Definition[],
  problems: Issue[],
  notes: string[],
): void {
  const at = `${file}:${lineOf(item.path)}`;
  const raw = item.raw;
  if (!isRecord(raw)) {
    problems.push({
      source: at,
      message: 'a document must be a Kubernetes object or a List of them',
    });
    return;
  }
  if (typeof raw.kind !== 'string' || raw.kind === '') {
    problems.push({ source: at, field: 'kind', message: 'required: which object is this?' });
    return;
  }
  const apiVersion = typeof raw.apiVersion === 'string' ? raw.apiVersion : undefined;
  const reading = readingOf(apiVersion, raw.kind, READ_KINDS);
  if (reading.type === 'other') {
    const want = READ_KINDS[raw.kind];
    notes.push(
      want === undefined
        ? `${at}: ignored: ${raw.kind} is not a kind Weir reads`
        : `${at}: ignored: ${raw.kind} of ${apiVersion ?? '(no apiVersion)'} is not the one Weir reads (${want})`,
    );
    return;
  }
  // Problems found before the kind's own reader runs, as [path, message].
  const found: Array<[FieldPath, string, number?]> = [];
  let target: Record<string, unknown> = raw;
  if (reading.type === 'wrong-version') {
    found.push([
      ['apiVersion'],
      `${JSON.stringify(apiVersion ?? '')}: Kubernetes serves ${raw.kind} only as ${reading.apiVersion}`,
    ]);
    target = { ...raw, apiVersion: reading.apiVersion };
  } else if (reading.type === 'misspelt') {
    found.push([
      ['kind'],
      `${JSON.stringify(raw.kind)} is not a Kubernetes kind; did you mean ${reading.kind}?`,
    ]);
    target = { ...raw, kind: reading.kind, apiVersion: reading.apiVersion };
  }
  const own = duplicates.filter((d) => isPrefix(item.path, d.path));
  const rel = (p: FieldPath) => p.slice(item.path.length);
  if (own.some((d) => IDENTITY_PATHS.includes(formatFieldPath(rel(d.path))))) {
    for (const d of own)
      problems.push({
        source: `${file}:${d.line}`,
        field: formatFieldPath(rel(d.path)),
        message: `duplicate field (first at line ${d.firstLine}): which object this is cannot be told`,
      });
    return;
  }
  for (const d of own)
    found.push([rel(d.path), `duplicate field (first at line ${d.firstLine})`, d.line]);
  const type = schemaTypeOf(target.apiVersion, target.kind);
  if (type !== undefined)
    for (const u of unknownFields(target, type)) found.push([u.path, u.message]);

  const r = readKubeObject(target, at);
  if (r.type === 'ignored') {
    notes.push(`${at}: ignored: ${r.note}`);
    return;
  }
  const locate = (i: Issue, line?: number): Issue => ({
    ...i,
    source: `${file}:${line ?? lineOf([...item.path, ...fieldPath(i.field)])}`,
  });
  if (r.type === 'invalid' && r.identity === undefined) {
    // Its name cannot be read: a problem of the file, which is then not whole.
    for (const [path, message, line] of found)
      problems.push(locate({ field: formatFieldPath(path), message }, line));
    problems.push(...r.issues.map((i) => locate(i)));
    return;
  }
  const identity = r.type === 'object' ? identityOf(r.object) : r.identity!;
  const key = objectKey(identity);
  const issues = [
    ...found.map(([path, message, line]) =>
      locate({ source: at, object: key, field: formatFieldPath(path), message }, line),
    ),
    ...(r.type === 'invalid' ? r.issues.map((i) => locate(i)) : []),
  ].sort((a, b) => lineNumber(a.source) - lineNumber(b.source));
  definitions.push(
    issues.length === 0 && r.type === 'object'
      ? { key, identity, at, object: r.object }
      : { key, identity, at, issues },
  );
}

function identityOf(o: KubeObject): ObjectIdentity {
  return { kind: o.kind, namespace: namespaceOf(o), name: o.name };
}

function lineNumber(source: string | undefined): number {
  const m = /:(\d+)(?::\d+)?$/.exec(source ?? '');
  return m ? Number(m[1]) : 0;
}

/**
 * The objects of a document: a List (kind List, or FooList for a kind Weir
 * reads) is opened, its own fields checked; other FooLists with items are opened too.
 */
function openLists(
  raw: unknown,
  duplicates: readonly Duplicate[],
  file: string,
  lineOf: (path: FieldPath) => number,
  problems: Issue[],
): Item[] {
  if (!isRecord(raw) || typeof raw.kind !== 'string' || !raw.kind.endsWith('List')) {
    return [{ raw, path: [] }];
  }
  const itemKind = raw.kind.slice(0, -'List'.length);
  const ours = raw.kind === 'List' || READ_KINDS[itemKind] !== undefined;
  if (!ours && !Array.isArray(raw.items)) return [{ raw, path: [] }];
  const at = (path: FieldPath) => `${file}:${lineOf(path)}`;
  const before = problems.length;
  for (const k of Object.keys(raw)) {
    if (!['apiVersion', 'kind', 'metadata', 'items'].includes(k))
      problems.push({ source: at([k]), object: raw.kind, field: k, message: 'unknown field' });
  }
  for (const d of duplicates.filter((x) => x.path[0] !== 'items' || x.path.length === 1)) {
    problems.push({
      source: `${file}:${d.line}`,
      object: raw.kind,
      field: formatFieldPath(d.path),
      message: `duplicate field (first at line ${d.firstLine})`,
    });
  }
  if (!Array.isArray(raw.items)) {
    problems.push({
      source: at([]),
      object: raw.kind,
      field: 'items',
      message: 'required: a list of objects',
    });
  }
  if (problems.length > before) return [];
  return (raw.items as unknown[]).flatMap((item, i) => {
    const path = ['items', i];
    // Typed lists (PodList) may omit kind and apiVersion on their items.
    if (itemKind !== '' && isRecord(item) && !('kind' in item)) {
      return [{ raw: { ...item, kind: itemKind, apiVersion: raw.apiVersion }, path }];
    }
    return [{ raw: item, path }];
  });
}

/** Keys given twice in one mapping, anywhere in the document, with their paths. */
function duplicateKeys(root: unknown, lines: LineCounter): Duplicate[] {
  const out: Duplicate[] = [];
  const walk = (node: unknown, path: Array<string | number>) => {
    if (isMap(node)) {
      const seen = new Map<string, number>();
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        if (key === '<<') continue; // merge keys may repeat, and merged keys may be overridden
        const line = pair.key.range ? lines.linePos(pair.key.range[0]).line : 0;
        const first = seen.get(key);
        if (first !== undefined) out.push({ path: [...path, key], line, firstLine: first });
        else seen.set(key, line);
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      for (const [i, n] of node.items.entries()) walk(n, [...path, i]);
    }
  };
  walk(root, []);
  return out;
}

/** The node at a path (a key's node for a mapping entry, so that lines point at the field's name). */
function nodeAt(doc: Document.Parsed, path: FieldPath): Node | undefined {
  let node: unknown = doc.contents;
  let found: Node | undefined = doc.contents ?? undefined;
  for (const p of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((x) => isPair(x) && isScalar(x.key) && x.key.value === p);
      if (pair === undefined) return found;
      found = (pair.key as Node | null) ?? found;
      node = pair.value;
    } else if (isSeq(node) && typeof p === 'number' && node.items[p] !== undefined) {
      node = node.items[p];
      found = node as Node;
    } else return found;
  }
  return found;
}

/** "spec.ingress[0].from[1]" → ["spec", "ingress", 0, "from", 1]; keys in ["..."] stay strings. */
function fieldPath(field: string | undefined): Array<string | number> {
  if (field === undefined) return [];
  const out: Array<string | number> = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
  }
  return out;
}

function isPrefix(prefix: FieldPath, path: FieldPath): boolean {
  return prefix.length < path.length && prefix.every((p, i) => path[i] === p);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// Files on disk.

/** A manifest file's name: a YAML or JSON extension, in no hidden directory, not hidden itself. */
export function isManifestName(relativePath: string): boolean {
  return (
    MANIFEST_EXTENSIONS.some((x) => relativePath.endsWith(x)) &&
    !relativePath.split(sep).some((part) => part.startsWith('.'))
  );
}

/** What identifies a version of a file without reading it: a changed one differs here. */
export function fingerprint(s: Stats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

export interface Listing {
  /** Manifest files (absolute or as given) with their fingerprints, in walk order. */
  readonly files: Map<string, string>;
  /** The manifest files that are symlinks (their targets may change with no event on them). */
  readonly links: Set<string>;
  /** The directories walked, the root included. */
  readonly dirs: Set<string>;
  /** Entries skipped that a person may want to know about: FIFOs, sockets, symlinked directories. */
  readonly skipped: Map<string, string>;
  /** Directories that could not be listed, with why. */
  readonly unreadable: Map<string, string>;
}

/**
 * Walks a directory tree in name order: manifest files that are regular
 * files (or symlinks to them). Hidden entries (".git", ".#x.yaml", Kubernetes'
 * "..data" of a ConfigMap volume) are not entered; symlinked directories are
 * not followed.
 */
export async function listManifests(root: string): Promise<Listing> {
  const files = new Map<string, string>();
  const links = new Set<string>();
  const dirs = new Set<string>();
  const skipped = new Map<string, string>();
  const unreadable = new Map<string, string>();
  const walk = async (dir: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        unreadable.set(dir, (err as NodeJS.ErrnoException).code ?? String(err));
      return;
    }
    dirs.add(dir);
    entries.sort((a, b) => compareStrings(a.name, b.name));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        await walk(p);
        continue;
      }
      const named = MANIFEST_EXTENSIONS.some((x) => e.name.endsWith(x));
      if (!named && !e.isSymbolicLink()) continue;
      const s = await stat(p).catch(() => undefined);
      if (s === undefined) continue; // gone, or a dangling link
      if (s.isDirectory()) skipped.set(p, 'a symlink to a directory: not followed');
      else if (!named) continue;
      else if (s.isFile()) {
        files.set(p, fingerprint(s));
        if (e.isSymbolicLink()) links.add(p);
      } else skipped.set(p, 'not a regular file (a FIFO, socket or device): not read');
    }
  };
  await walk(root);
  return { files, links, dirs, skipped, unreadable };
}

export type FileContent =
  | { readonly type: 'read'; readonly text: string; readonly fingerprint: string }
  | { readonly type: 'gone' }
  | { readonly type: 'not-regular' }
  | { readonly type: 'changed' }
  | { readonly type: 'problem'; readonly message: string };

/**
 * Reads a file without ever blocking: opened non-blocking (a FIFO put in
 * place of a file returns at once and is refused), at most `maxBytes`, and
 * `changed` when the file changed while it was read (read it again later).
 */
export async function readManifestFile(
  path: string,
  maxBytes = DEFAULT_MAX_FILE_BYTES,
): Promise<FileContent> {
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { type: 'gone' };
    return { type: 'problem', message: `cannot read: ${code ?? String(err)}` };
  }
  try {
    const before = await handle.stat();
    if (!before.isFile()) return { type: 'not-regular' };
    if (before.size > maxBytes)
      return {
        type: 'problem',
        message: `too large to read: ${before.size} bytes (at most ${maxBytes})`,
      };
    // One byte more than its size: a file that grows while it is read fills it.
    const size = before.size;
    const buffer = Buffer.allocUnsafe(size + 1);
    let total = 0;
    while (total < buffer.length) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    const after = await handle.stat();
    if (total !== size || fingerprint(after) !== fingerprint(before)) return { type: 'changed' };
    return {
      type: 'read',
      text: buffer.toString('utf8', 0, total),
      fingerprint: fingerprint(after),
    };
  } catch (err) {
    return {
      type: 'problem',
      message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Putting the files together.

interface Candidate {
  readonly file: string;
  readonly order: readonly string[];
  /** Index in the file, for definitions of one object twice in one file. */
  readonly index: number;
  readonly definition: Definition;
  /** Not in the file's latest read, which was not whole: kept from before. */
  readonly held: boolean;
}

interface FileEntry {
  readonly order: readonly string[];
  readonly read: FileRead;
  /** What the file defines now, per object (held definitions included). */
  readonly contribution: ReadonlyMap<string, Candidate[]>;
}

/** What is to be told about one object. */
export interface ObjectReport {
  readonly key: string;
  /** The definition used, when it is invalid: its problems. */
  readonly rejected?: readonly Issue[];
  /** Where the definition used is, when others are ignored; and those. */
  readonly used?: string;
  readonly ignored?: readonly string[];
  /** No file defines it, but it stays while these files cannot be read. */
  readonly deferredBy?: readonly string[];
  /** Whether a (last valid) version of it is in force. */
  readonly inForce: boolean;
}

/** What is to be told about one file that is not whole. */
export interface FileReport {
  readonly file: string;
  readonly problems: readonly Issue[];
  /** Objects it defined that it no longer shows, kept at their last valid versions. */
  readonly held: readonly string[];
}

/**
 * The objects of a set of manifest files, by the rules at the top of this
 * file. Files are given as they change (setFile); resolve() then returns the
 * model events that bring what is in force up to date, and keeps the
 * reports current. Work is proportional to the objects the changed files
 * define (and had defined).
 */
export class ManifestSet {
  private readonly files = new Map<string, FileEntry>();
  private readonly candidates = new Map<string, Candidate[]>();
  private readonly inForceJson = new Map<string, string>();
  private readonly inForce = new Map<string, KubeObject>();
  private readonly pending = new Set<string>();
  /** Deleted from every file, kept while some file has problems. */
  private readonly deferred = new Set<string>();
  private readonly broken = new Set<string>();
  private readonly reports = new Map<string, ObjectReport>();
  /** Last valid versions from before a restart, until the first resolve is done (restore()). */
  private readonly restored = new Map<string, KubeObject>();
  private readonly restoredFileSet = new Set<string>();

  /**
   * Replaces what a file holds; `read` undefined: the file is gone. `order`
   * is its place in path order (compared element by element).
   */
  setFile(file: string, order: readonly string[], read: FileRead | undefined): void {
    this.restoredFileSet.delete(file);
    const old = this.files.get(file);
    for (const key of old?.contribution.keys() ?? []) {
      this.pending.add(key);
      const rest = (this.candidates.get(key) ?? []).filter((c) => c.file !== file);
      if (rest.length > 0) this.candidates.set(key, rest);
      else this.candidates.delete(key);
    }
    if (read === undefined) {
      this.files.delete(file);
      this.broken.delete(file);
      return;
    }
    const contribution = new Map<string, Candidate[]>();
    read.definitions.forEach((definition, index) => {
      const list = contribution.get(definition.key) ?? [];
      list.push({ file, order, index, definition, held: false });
      contribution.set(definition.key, list);
    });
    if (!read.whole && old !== undefined) {
      for (const [key, list] of old.contribution) {
        if (contribution.has(key)) continue;
        contribution.set(key, [{ ...list[0]!, held: true }]);
      }
    }
    for (const [key, list] of contribution) {
      this.pending.add(key);
      const all = [...(this.candidates.get(key) ?? []), ...list].sort(compareCandidates);
      this.candidates.set(key, all);
    }
    this.files.set(file, { order, read, contribution });
    if (read.problems.length > 0) this.broken.add(file);
    else this.broken.delete(file);
  }

  /** The events that bring what is in force up to date with the files, in the order of the objects' files. */
  resolve(): ModelEvent[] {
    const events: ModelEvent[] = [];
    const keys = [...this.pending];
    this.pending.clear();
    keys.push(...this.deferred);
    for (const key of keys) this.resolveOne(key, events);
    return events;
  }

  private resolveOne(key: string, events: ModelEvent[]): void {
    const all = this.candidates.get(key) ?? [];
    const current = this.inForce.get(key);
    if (all.length === 0) {
      const keep = current ?? this.restored.get(key);
      const holders = keep === undefined ? [] : this.mayHold(identityOf(keep).name);
      if (keep !== undefined && holders.length > 0) {
        if (current === undefined) this.upsert(key, keep, events);
        this.deferred.add(key);
        this.reports.set(key, { key, deferredBy: holders, inForce: true });
        return;
      }
      this.deferred.delete(key);
      this.reports.delete(key);
      if (current !== undefined) {
        this.inForce.delete(key);
        this.inForceJson.delete(key);
        const { kind, namespace, name } = identityOf(current);
        events.push({ type: 'delete', kind, namespace, name });
      }
      return;
    }
    this.deferred.delete(key);
    const used = all[0]!;
    const d = used.definition;
    // A held definition is the file's last read of it: its object, when it was valid, is
    // the last valid version from the place that defines the object now.
    if (d.object !== undefined) this.upsert(key, d.object, events);
    else if (current === undefined) {
      const before = this.restored.get(key);
      if (before !== undefined) this.upsert(key, before, events);
    }
    const rejected = !used.held && d.issues !== undefined ? d.issues : undefined;
    const ignored = all.slice(1).map((c) => c.definition.at);
    if (rejected === undefined && ignored.length === 0) this.reports.delete(key);
    else
      this.reports.set(key, {
        key,
        ...(rejected ? { rejected } : {}),
        ...(ignored.length > 0 ? { used: d.at, ignored } : {}),
        inForce: this.inForce.has(key),
      });
  }

  /**
   * The files with problems that may hold an object of this name, sorted:
   * those whose text contains the name, and those that could not be read at
   * all. A file whose text does not contain the name cannot define the
   * object (YAML and JSON spell a name out, barring escape sequences in
   * quoted strings, which manifests do not use for names), so the deletion
   * of a policy whose own file was removed does not wait on an unrelated
   * broken file.
   */
  private mayHold(name: string): string[] {
    const out: string[] = [];
    for (const f of this.broken) {
      const text = this.files.get(f)?.read.text;
      if (text === undefined || text.includes(name)) out.push(f);
    }
    return out.sort();
  }

  private upsert(key: string, object: KubeObject, events: ModelEvent[]): void {
    const json = JSON.stringify(object);
    if (this.inForceJson.get(key) === json) return;
    this.inForce.set(key, object);
    this.inForceJson.set(key, json);
    events.push({ type: 'upsert', object });
  }

  /**
   * Seeds the set with what was in force before a restart, each object under
   * the file its definition was in ("" for one no file defined, whose deletion
   * was waiting): until a file is read whole, the objects it had stay in
   * force, and an object whose definition is now invalid keeps this version.
   * Call before the first files are set; endRestore() after the first resolve().
   */
  restore(entries: Iterable<{ file: string; order: readonly string[]; object: KubeObject }>): void {
    const byFile = new Map<string, { order: readonly string[]; list: Map<string, Candidate[]> }>();
    for (const { file, order, object } of entries) {
      const identity = identityOf(object);
      const key = objectKey(identity);
      this.restored.set(key, object);
      const f = byFile.get(file) ?? { order, list: new Map<string, Candidate[]>() };
      byFile.set(file, f);
      const definition: Definition = {
        key,
        identity,
        at: `${file || '(none)'} (before a restart)`,
        object,
      };
      f.list.set(key, [{ file, order, index: 0, definition, held: true }]);
    }
    for (const [file, { order, list }] of byFile) {
      this.restoredFileSet.add(file);
      this.files.set(file, {
        order,
        read: { definitions: [], problems: [], whole: false, notes: [] },
        contribution: list,
      });
      for (const [key, c] of list) {
        this.candidates.set(
          key,
          [...(this.candidates.get(key) ?? []), ...c].sort(compareCandidates),
        );
        this.pending.add(key);
      }
    }
  }

  /** The files restored (restore()) and not set since. */
  restoredFiles(): string[] {
    return [...this.restoredFileSet];
  }

  endRestore(): void {
    this.restored.clear();
  }

  /** What is in force, each object (as JSON) with the file of the definition used ("" for none). */
  inForceByFile(): Array<{ file: string; json: string }> {
    return [...this.inForceJson].map(([key, json]) => ({
      file: this.candidates.get(key)?.[0]?.file ?? '',
      json,
    }));
  }

  /** The objects in force. */
  objects(): IterableIterator<KubeObject> {
    return this.inForce.values();
  }

  objectReports(): IterableIterator<ObjectReport> {
    return this.reports.values();
  }

  /** Files with problems, and empty files that still hold objects. */
  fileReports(): FileReport[] {
    const out: FileReport[] = [];
    for (const [file, e] of this.files) {
      if (e.read.whole) continue;
      const held = [...e.contribution].filter(([, l]) => l[0]!.held).map(([k]) => k);
      if (e.read.problems.length > 0 || held.length > 0)
        out.push({ file, problems: e.read.problems, held });
    }
    return out;
  }

  /** Every note of every file, in path order. */
  notes(): string[] {
    return [...this.files.values()]
      .sort((a, b) => compareOrders(a.order, b.order))
      .flatMap((e) => e.read.notes);
  }

  get brokenFiles(): ReadonlySet<string> {
    return this.broken;
  }
}

function compareOrders(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareStrings(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function compareCandidates(a: Candidate, b: Candidate): number {
  return compareOrders(a.order, b.order) || a.index - b.index;
}

/** A file's place in path order under a root: its path components. */
export function pathOrder(root: string, file: string): string[] {
  return relative(root, file).split(sep);
}

// ---------------------------------------------------------------------------
// Reading a set of paths once (weirctl analyze).

export interface ManifestRead {
  /** The valid objects used, in path order. */
  readonly objects: readonly KubeObject[];
  /** Every problem: invalid objects, files or documents that cannot be read, conflicts. */
  readonly issues: readonly Issue[];
  /** Worth telling, not errors (kinds Weir does not read, files skipped). */
  readonly notes: readonly string[];
}

/**
 * Reads files and directories (recursively, as listManifests walks them); a
 * path that is a file is read whatever its name and type (so `-f <(...)` and
 * /dev/stdin work). The same rules as the watched source apply, with no
 * history: an invalid object is left out.
 */
export async function readManifests(
  paths: readonly string[],
  /** `stdin`: the text that the path "-" stands for (`weirctl analyze -f -`), named "<stdin>". */
  options: { maxFileBytes?: number; stdin?: string } = {},
): Promise<ManifestRead> {
  const set = new ManifestSet();
  const issues: Issue[] = [];
  const notes: string[] = [];
  const max = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  for (const [i, p] of paths.entries()) {
    const top = String(i).padStart(6, '0');
    if (p === '-' && options.stdin !== undefined) {
      if (Buffer.byteLength(options.stdin) > max)
        issues.push({ source: '<stdin>', message: `larger than ${max} bytes` });
      else set.setFile('<stdin>', [top], readManifestText(options.stdin, '<stdin>'));
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      issues.push({
        source: p,
        message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      });
      continue;
    }
    if (!isDir) {
      const c = await readGiven(p, max);
      if (typeof c === 'string') set.setFile(p, [top], readManifestText(c, p));
      else issues.push({ source: p, message: c.message });
      continue;
    }
    const listing = await listManifests(p);
    for (const [dir, why] of listing.unreadable)
      issues.push({ source: dir, message: `cannot list: ${why}` });
    for (const [file, why] of listing.skipped) notes.push(`${file}: skipped: ${why}`);
    for (const file of listing.files.keys()) {
      const c = await readManifestFile(file, max);
      if (c.type === 'read')
        set.setFile(file, [top, ...pathOrder(p, file)], readManifestText(c.text, file));
      else if (c.type === 'problem') issues.push({ source: file, message: c.message });
      else if (c.type === 'changed')
        issues.push({ source: file, message: 'changed while being read: read it again' });
    }
  }
  set.resolve();
  for (const f of set.fileReports()) issues.push(...f.problems);
  for (const r of set.objectReports()) {
    if (r.rejected) issues.push(...r.rejected);
    for (const at of r.ignored ?? [])
      issues.push({
        source: at,
        object: r.key,
        message: `defined again (first at ${r.used}, which is the one used): this definition is ignored`,
      });
  }
  return {
    objects: [...set.objects()],
    issues: issues.sort(bySource),
    notes: [...notes, ...set.notes()],
  };
}

/** Issues by file, then line (numerically), then as written. */
function bySource(a: Issue, b: Issue): number {
  const split = (i: Issue) => {
    const m = /^(.*?)(?::(\d+))?(?::\d+)?$/.exec(i.source ?? '')!;
    return [m[1] ?? '', Number(m[2] ?? 0)] as const;
  };
  const [fa, la] = split(a);
  const [fb, lb] = split(b);
  return compareStrings(fa, fb) || la - lb || compareStrings(formatIssue(a), formatIssue(b));
}

/** A path given by name: any kind of file, read to its end (at most `max` bytes). */
async function readGiven(path: string, max: number): Promise<string | { message: string }> {
  try {
    const handle = await open(path, 'r');
    try {
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const chunk = Buffer.allocUnsafe(64 * 1024);
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        total += bytesRead;
        if (total > max) return { message: `too large to read: more than ${max} bytes` };
        chunks.push(chunk.subarray(0, bytesRead));
      }
      return Buffer.concat(chunks, total).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    return { message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}
