/**
 * Cluster state from manifest files: YAML (multi-document) or JSON, files or
 * directories (recursively, *.yaml, *.yml, *.json in name order), with
 * `kind: List` (and FooList) flattened. Each object is validated on its own:
 * a malformed document or an invalid object is reported with its file and
 * line and never stops the others.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { Issue } from '../../shared/errors.js';
import {
  isClusterScoped,
  namespaceOf,
  readKubeObject,
  type KubeObject,
  type ObjectIdentity,
} from '../kube/objects.js';

export interface ManifestRead {
  /** Valid objects, in file order. A later definition of the same object replaces an earlier one. */
  readonly objects: readonly KubeObject[];
  readonly issues: readonly Issue[];
  /** Rejected objects that can be named, with their problems. */
  readonly invalid: ReadonlyArray<ObjectIdentity & { readonly issues: readonly Issue[] }>;
  /** Things worth telling a person that are not errors (ignored kinds, duplicates). */
  readonly notes: readonly string[];
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Lists manifest files under the given paths; a path that is a file is taken whatever its name. */
export async function manifestFiles(
  paths: readonly string[],
): Promise<{ files: string[]; issues: Issue[] }> {
  const files: string[] = [];
  const issues: Issue[] = [];
  const walk = async (dir: string) => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (EXTENSIONS.some((x) => e.name.endsWith(x))) files.push(p);
    }
  };
  for (const p of paths) {
    try {
      if ((await stat(p)).isDirectory()) await walk(p);
      else files.push(p);
    } catch (err) {
      issues.push({
        source: p,
        message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      });
    }
  }
  return { files, issues };
}

export async function readManifests(paths: readonly string[]): Promise<ManifestRead> {
  const { files, issues } = await manifestFiles(paths);
  const objects = new Map<string, KubeObject>();
  const invalid: Array<ObjectIdentity & { issues: Issue[] }> = [];
  const notes: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      issues.push({
        source: file,
        message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      });
      continue;
    }
    for (const { raw, source, lineOf } of parseManifestText(text, file, issues)) {
      for (const { item, path } of flattenLists(raw, [])) {
        const r = readKubeObject(item, source);
        // Point each problem at the line of its field (or the nearest parent that is written).
        if (r.type === 'invalid') {
          const located = r.issues.map((i) => ({
            ...i,
            source: `${file}:${lineOf([...path, ...fieldPath(i.field)])}`,
          }));
          issues.push(...located);
          if (r.identity !== undefined) invalid.push({ ...r.identity, issues: located });
        } else if (r.type === 'ignored') notes.push(`${source}: ignored: ${r.note}`);
        else {
          const o = r.object;
          const key = `${o.kind} ${isClusterScoped(o.kind) ? '' : `${namespaceOf(o)}/`}${o.name}`;
          if (objects.has(key))
            notes.push(`${source}: ${key} is defined again; the later definition wins`);
          objects.delete(key);
          objects.set(key, o);
        }
      }
    }
  }
  return { objects: [...objects.values()], issues, invalid, notes };
}

/** Splits one file into documents; syntax errors become issues with their line. */
export interface ManifestDocument {
  readonly raw: unknown;
  /** "file:line" of the document's first line. */
  readonly source: string;
  /** The line of the node at a path in the document, or of its nearest written parent. */
  readonly lineOf: (path: ReadonlyArray<string | number>) => number;
}

export function parseManifestText(text: string, file: string, issues: Issue[]): ManifestDocument[] {
  const lines = new LineCounter();
  const out: ManifestDocument[] = [];
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const start = doc.contents?.range?.[0] ?? doc.range?.[0] ?? 0;
    const source = `${file}:${lines.linePos(start).line}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const at = e.pos?.[0] !== undefined ? lines.linePos(e.pos[0]) : undefined;
        issues.push({
          source: at ? `${file}:${at.line}:${at.col}` : source,
          message: `malformed YAML: ${e.message.split('\n')[0]}`,
        });
      }
      continue;
    }
    const raw: unknown = doc.toJS({ maxAliasCount: 100 });
    if (raw === null || raw === undefined) continue; // empty document ("---" at the end)
    const lineOf = (path: ReadonlyArray<string | number>) => {
      for (let n = path.length; n > 0; n--) {
        const node = doc.getIn(path.slice(0, n), true) as
          | { range?: [number, number, number] }
          | undefined;
        if (node?.range) return lines.linePos(node.range[0]).line;
      }
      return lines.linePos(start).line;
    };
    out.push({ raw, source, lineOf });
  }
  return out;
}

/** "spec.ingress[0].from[1]" → ["spec", "ingress", 0, "from", 1]; map keys in ["..."] stay strings. */
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

/** Objects of a document with their path in it: lists (List, PodList, ...) are opened. */
function flattenLists(
  raw: unknown,
  path: Array<string | number>,
): Array<{ item: unknown; path: Array<string | number> }> {
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    const o = raw as Record<string, unknown>;
    if (typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items)) {
      const listKind = o.kind.slice(0, -'List'.length);
      return o.items.flatMap((item, i) => {
        // Typed lists (PodList) may omit kind and apiVersion on their items.
        if (listKind !== '' && typeof item === 'object' && item !== null && !('kind' in item)) {
          return flattenLists({ ...item, kind: listKind, apiVersion: o.apiVersion }, [
            ...path,
            'items',
            i,
          ]);
        }
        return flattenLists(item, [...path, 'items', i]);
      });
    }
  }
  return [{ item: raw, path }];
}
