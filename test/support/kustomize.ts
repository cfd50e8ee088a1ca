/**
 * Renders a kustomization the way `kubectl kustomize` (kustomize v5) does,
 * for the subset deploy/ uses, so that the manifest tests run on a machine
 * without kubectl (CI installs Debian packages, whose kubernetes-client is
 * 1.20 with a kustomize too old for `patches` and components). When kubectl
 * is there, test/deploy/kustomize.test.ts checks that both render the same
 * objects.
 *
 * Supported, and nothing else (anything else throws, naming the field):
 * - `resources`: files (every YAML document; inside the kustomization's
 *   directory, as kustomize's load restrictor demands) and directories
 *   holding a kustomization;
 * - `components`: directories holding a `kind: Component`;
 * - `configMapGenerator` with `literals`, `namespace`, `options.labels`,
 *   `options.disableNameSuffixHash`: the name gets kustomize's content hash
 *   suffix, computed on the final data (after every patch, as kustomize
 *   does), and references to it (envFrom, env valueFrom, volumes) follow;
 * - `patches` (`path` or inline `patch`): a JSON 6902 list (add, remove,
 *   replace, test) on the objects `target` selects by group, version, kind,
 *   name, namespace; or a strategic-merge patch that is exactly
 *   `$patch: delete` of one object;
 * - `images`: name → newName, newTag, digest on containers and initContainers.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';

export type Obj = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
const SUPPORTED = new Set([
  'apiVersion',
  'kind',
  'resources',
  'components',
  'configMapGenerator',
  'patches',
  'images',
]);

export class KustomizeError extends Error {}

/** Generated ConfigMaps awaiting their hash suffix: the object → its name as generated. */
type Pending = Map<Obj, string>;

function readKustomization(dir: string, kind: 'Kustomization' | 'Component') {
  const file = KUSTOMIZATION_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  if (file === undefined) throw new KustomizeError(`${dir}: no kustomization.yaml`);
  const k = parseAllDocuments(readFileSync(file, 'utf8'))[0]?.toJS() as Record<string, unknown>;
  if (k?.kind !== kind)
    throw new KustomizeError(`${file}: kind is ${String(k?.kind)}, not ${kind}`);
  for (const key of Object.keys(k))
    if (!SUPPORTED.has(key))
      throw new KustomizeError(`${file}: ${key} is not supported by this renderer`);
  return { file, k };
}

function loadFile(dir: string, path: string): Obj[] {
  const rel = relative(dir, path);
  if (rel.startsWith('..') || isAbsolute(rel))
    throw new KustomizeError(
      `${path}: a file outside ${dir} (kustomize's load restrictor refuses it)`,
    );
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as Obj)
    .filter((o) => o !== null && o !== undefined);
}

function build(
  dir: string,
  kind: 'Kustomization' | 'Component',
  into: Obj[],
  pending: Pending,
): Obj[] {
  const { file, k } = readKustomization(dir, kind);
  let objects = [...into];
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const p = resolve(dir, r);
    if (existsSync(p) && statSync(p).isDirectory())
      objects.push(...build(p, 'Kustomization', [], pending));
    else objects.push(...loadFile(dir, p));
  }
  for (const g of (k.configMapGenerator as Array<Record<string, unknown>> | undefined) ?? []) {
    for (const key of Object.keys(g))
      if (!['name', 'namespace', 'literals', 'options'].includes(key))
        throw new KustomizeError(`${file}: configMapGenerator.${key} is not supported`);
    const options = (g.options ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(options))
      if (!['labels', 'disableNameSuffixHash'].includes(key))
        throw new KustomizeError(`${file}: configMapGenerator options.${key} is not supported`);
    const data: Record<string, string> = {};
    for (const l of (g.literals as string[] | undefined) ?? []) {
      const eq = l.indexOf('=');
      if (eq <= 0)
        throw new KustomizeError(`${file}: literal ${JSON.stringify(l)} is not KEY=VALUE`);
      data[l.slice(0, eq)] = l.slice(eq + 1);
    }
    const cm: Obj = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: g.name as string,
        ...(g.namespace !== undefined ? { namespace: g.namespace as string } : {}),
        ...(options.labels !== undefined
          ? { labels: options.labels as Record<string, string> }
          : {}),
      },
      data,
    };
    objects.push(cm);
    if (options.disableNameSuffixHash !== true) pending.set(cm, cm.metadata.name);
  }
  for (const c of (k.components as string[] | undefined) ?? [])
    objects = build(resolve(dir, c), 'Component', objects, pending);
  for (const p of (k.patches as Array<Record<string, unknown>> | undefined) ?? [])
    objects = applyPatch(dir, file, p, objects, pending);
  for (const image of (k.images as Array<Record<string, string>> | undefined) ?? [])
    for (const o of objects) setImages(o as unknown as Json, image);
  return objects;
}

/** Renders the kustomization in `dir` into its objects. */
export function kustomize(dir: string): Obj[] {
  const pending: Pending = new Map();
  const objects = build(resolve(dir), 'Kustomization', [], pending);
  for (const [cm, name] of pending) {
    if (!objects.includes(cm)) continue;
    const hashed = `${name}-${configMapHash(cm.data as Record<string, string>)}`;
    cm.metadata.name = hashed;
    for (const o of objects)
      if (o.kind !== 'ConfigMap' && (o.metadata.namespace ?? '') === (cm.metadata.namespace ?? ''))
        renameConfigMapRefs(o as unknown as Json, name, hashed);
  }
  return objects;
}

/**
 * kustomize's hash suffix of a generated ConfigMap (api/hasher): SHA-256 of
 * Go's json.Marshal of {data, kind, name} (keys sorted, <, > and & escaped),
 * its first 10 hex digits with 0, 1, 3, a, e mapped to g, h, k, m, t (no
 * vowels, no digits that read as letters). The name in that encoding is
 * empty in kustomize v5 (measured against kubectl kustomize, v5.5.0: the
 * hash covers kind and data only), so two generators with the same data get
 * the same suffix.
 */
export function configMapHash(data: Record<string, string>): string {
  const name = '';
  const sorted = Object.fromEntries(
    Object.entries(data).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name }).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  const hex = createHash('sha256').update(json).digest('hex');
  const map: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => map[c] ?? c).join('');
}

function renameConfigMapRefs(node: Json, from: string, to: string): void {
  if (Array.isArray(node)) {
    for (const x of node) renameConfigMapRefs(x, from, to);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node)) {
    if (
      ['configMapRef', 'configMapKeyRef', 'configMap'].includes(key) &&
      value !== null &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      value.name === from
    )
      value.name = to;
    renameConfigMapRefs(value, from, to);
  }
}

function setImages(node: Json, image: Record<string, string>): void {
  if (Array.isArray(node)) {
    for (const x of node) setImages(x, image);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node)) {
    if ((key === 'containers' || key === 'initContainers') && Array.isArray(value))
      for (const c of value) {
        if (c === null || typeof c !== 'object' || Array.isArray(c) || typeof c.image !== 'string')
          continue;
        const m = /^([^@]*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image)!;
        if (m[1] !== image.name) continue;
        const suffix =
          image.digest !== undefined
            ? `@${image.digest}`
            : image.newTag !== undefined
              ? `:${image.newTag}`
              : `${m[2] !== undefined ? `:${m[2]}` : ''}${m[3] !== undefined ? `@${m[3]}` : ''}`;
        c.image = `${image.newName ?? m[1]}${suffix}`;
      }
    setImages(value, image);
  }
}

function matches(o: Obj, target: Record<string, string>): boolean {
  const [group, version] = o.apiVersion.includes('/')
    ? o.apiVersion.split('/')
    : ['', o.apiVersion];
  return (
    (target.group === undefined || target.group === group) &&
    (target.version === undefined || target.version === version) &&
    (target.kind === undefined || target.kind === o.kind) &&
    (target.name === undefined || target.name === o.metadata.name) &&
    (target.namespace === undefined || target.namespace === o.metadata.namespace)
  );
}

function applyPatch(
  dir: string,
  file: string,
  p: Record<string, unknown>,
  objects: Obj[],
  pending: Pending,
): Obj[] {
  for (const key of Object.keys(p))
    if (!['path', 'patch', 'target'].includes(key))
      throw new KustomizeError(`${file}: patches[].${key} is not supported`);
  const text =
    p.path !== undefined
      ? readFileSync(resolve(dir, p.path as string), 'utf8')
      : (p.patch as string);
  const body = parseAllDocuments(text)[0]?.toJS() as Json;
  const target = p.target as Record<string, string> | undefined;
  if (Array.isArray(body)) {
    if (target === undefined) throw new KustomizeError(`${file}: a JSON 6902 patch needs a target`);
    // A generated ConfigMap is selected by the name it was generated with.
    const selected = objects.filter(
      (o) =>
        matches(o, target) ||
        (pending.has(o) &&
          matches({ ...o, metadata: { ...o.metadata, name: pending.get(o)! } }, target)),
    );
    if (selected.length === 0)
      throw new KustomizeError(`${file}: patch target ${JSON.stringify(target)} selects nothing`);
    for (const o of selected) for (const op of body) applyOperation(o as unknown as Json, op, file);
    return objects;
  }
  const smp = body as Record<string, Json> | null;
  if (smp === null || smp.$patch !== 'delete')
    throw new KustomizeError(`${file}: only JSON 6902 patches and "$patch: delete" are supported`);
  const meta = smp.metadata as { name: string; namespace?: string };
  const before = objects.length;
  const kept = objects.filter(
    (o) =>
      !(
        o.apiVersion === smp.apiVersion &&
        o.kind === smp.kind &&
        o.metadata.name === meta.name &&
        o.metadata.namespace === meta.namespace
      ),
  );
  if (kept.length === before)
    throw new KustomizeError(
      `${file}: "$patch: delete" of ${String(smp.kind)} ${meta.name} matches nothing`,
    );
  return kept;
}

function pointer(path: string): string[] {
  if (!path.startsWith('/'))
    throw new KustomizeError(`JSON pointer ${JSON.stringify(path)} must start with /`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function applyOperation(doc: Json, op: Json, file: string): void {
  const o = op as { op: string; path: string; value?: Json };
  const parts = pointer(o.path);
  const last = parts.pop()!;
  let parent: Json = doc;
  for (const part of parts) {
    const next: Json | undefined = Array.isArray(parent)
      ? parent[Number(part)]
      : parent !== null && typeof parent === 'object'
        ? parent[part]
        : undefined;
    if (next === undefined)
      throw new KustomizeError(`${file}: ${o.op} ${o.path}: ${part} does not exist`);
    parent = next;
  }
  const fail = (why: string) => new KustomizeError(`${file}: ${o.op} ${o.path}: ${why}`);
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw fail('index out of range');
    if (o.op === 'add') parent.splice(i, 0, o.value!);
    else if (i === parent.length) throw fail('index out of range');
    else if (o.op === 'remove') parent.splice(i, 1);
    else if (o.op === 'replace') parent[i] = o.value!;
    else if (o.op === 'test') {
      if (!isDeepStrictEqual(parent[i], o.value)) throw fail(`is ${JSON.stringify(parent[i])}`);
    } else throw fail('operation not supported');
    return;
  }
  if (parent === null || typeof parent !== 'object') throw fail('parent is not an object');
  if (o.op === 'add') parent[last] = o.value!;
  else if (!(last in parent)) throw fail('does not exist');
  else if (o.op === 'remove') delete parent[last];
  else if (o.op === 'replace') parent[last] = o.value!;
  else if (o.op === 'test') {
    if (!isDeepStrictEqual(parent[last], o.value)) throw fail(`is ${JSON.stringify(parent[last])}`);
  } else throw fail('operation not supported');
}
