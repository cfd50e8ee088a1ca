/**
 * Strict reading of manifests, as `kubectl apply --validate=strict` does: a
 * field the Kubernetes schema of the object's kind does not have is an error
 * naming its path ("spec.ingres: unknown field; did you mean \"ingress\"?"),
 * never silently dropped. Fields Kubernetes has and Weir ignores (a
 * container's image, status.conditions, metadata.managedFields...) are
 * accepted: the schema is Kubernetes' own (controller/kube/schema.ts,
 * generated from the OpenAPI models; add a kind there to check it too).
 *
 * Only what a kind's schema types as objects is looked into; values it
 * leaves free-form (labels, annotations, resource quantities, fieldsV1) are
 * not. Duplicate keys are found where the YAML is parsed (manifests.ts),
 * since JSON values cannot hold them.
 *
 * Also here: which kinds a manifest document names. A kind Weir reads with a
 * version Kubernetes does not serve it in ("networking.k8s.io/v1beta1"), and
 * a misspelt kind ("Networkpolicy"), are errors on the object they were
 * meant to be, rather than documents of some other kind to skip.
 */
import { InternalError } from '../../shared/errors.js';
import { KIND_TYPES, TYPES } from './schema.js';

type Field =
  | { readonly holds: 'value' }
  | { readonly holds: 'object' | 'list' | 'map'; readonly type: string };

const types = new Map<string, ReadonlyMap<string, Field>>();

function fieldsOf(type: string): ReadonlyMap<string, Field> {
  let fields = types.get(type);
  if (fields === undefined) {
    const text = TYPES[type];
    if (text === undefined) throw new InternalError(`schema has no type ${type}`);
    const m = new Map<string, Field>();
    for (const f of text.split(' ')) {
      const colon = f.indexOf(':');
      if (colon < 0) m.set(f, { holds: 'value' });
      else {
        const ref = f.slice(colon + 1);
        const holds = ref[0] === '[' ? 'list' : ref[0] === '{' ? 'map' : 'object';
        m.set(f.slice(0, colon), { holds, type: holds === 'object' ? ref : ref.slice(1) });
      }
    }
    fields = m;
    types.set(type, fields);
  }
  return fields;
}

export type FieldPath = ReadonlyArray<string | number>;

export interface FieldProblem {
  readonly path: FieldPath;
  readonly message: string;
}

/** The schema type of the top-level object of `kind` at `apiVersion`, when it is read strictly. */
export function schemaTypeOf(apiVersion: unknown, kind: unknown): string | undefined {
  return KIND_TYPES.find((k) => k.apiVersion === apiVersion && k.kind === kind)?.type;
}

/**
 * Every field of `raw` that `type` does not have, in document order, at most
 * `limit` of them. Values of the wrong shape (a list where an object belongs)
 * are left to the reader of the kind, which reports them.
 */
export function unknownFields(raw: unknown, type: string, limit = 50): FieldProblem[] {
  const out: FieldProblem[] = [];
  const walk = (value: unknown, t: string, path: Array<string | number>) => {
    if (!isRecord(value)) return;
    const fields = fieldsOf(t);
    for (const [key, v] of Object.entries(value)) {
      if (out.length >= limit) return;
      const f = fields.get(key);
      if (f === undefined) {
        const hint = suggestion(key, [...fields.keys()]);
        out.push({
          path: [...path, key],
          message: `unknown field${hint ? `; did you mean ${JSON.stringify(hint)}?` : ''}`,
        });
      } else if (f.holds === 'object') walk(v, f.type, [...path, key]);
      else if (f.holds === 'list' && Array.isArray(v))
        for (const [i, x] of v.entries()) walk(x, f.type, [...path, key, i]);
      else if (f.holds === 'map' && isRecord(v))
        for (const [k, x] of Object.entries(v)) walk(x, f.type, [...path, key, k]);
    }
  };
  walk(raw, type, []);
  return out;
}

/** "spec.ingress[0].from", with keys that are not plain names as ["a/b"] (the readers' notation). */
export function formatFieldPath(path: FieldPath): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(p)) s += s === '' ? p : `.${p}`;
    else s += `[${JSON.stringify(p)}]`;
  }
  return s;
}

// ---------------------------------------------------------------------------

/**
 * What a document's apiVersion and kind say, given the kinds Weir reads (kind → apiVersion):
 *
 *   read          a kind Weir reads, at its version
 *   wrong-version a kind Weir reads in an API group that serves it, at a version it is
 *                 not served at (NetworkPolicy in extensions/v1beta1): an error on that object
 *   misspelt      no such kind, but close to one Weir reads ("Networkpolicy", "pods"):
 *                 an error on the object it was meant to be
 *   other         any other kind (a Service, a Deployment, a custom resource, Calico's
 *                 projectcalico.org NetworkPolicy): not Weir's to read
 */
export type KindReading =
  | { readonly type: 'read' }
  | { readonly type: 'wrong-version'; readonly apiVersion: string }
  | { readonly type: 'misspelt'; readonly kind: string; readonly apiVersion: string }
  | { readonly type: 'other' };

/** API groups that once served a kind Weir reads, besides the group of its version now. */
const FORMER_GROUPS: Readonly<Record<string, readonly string[]>> = {
  NetworkPolicy: ['extensions'],
};

export function readingOf(
  apiVersion: string | undefined,
  kind: string,
  reads: Readonly<Record<string, string>>,
): KindReading {
  const want = reads[kind];
  if (want !== undefined) {
    if (apiVersion === want) return { type: 'read' };
    const group = groupOf(apiVersion ?? '');
    if (group === groupOf(want) || FORMER_GROUPS[kind]?.includes(group))
      return { type: 'wrong-version', apiVersion: want };
    return { type: 'other' };
  }
  const lower = kind.toLowerCase();
  for (const [k, v] of Object.entries(reads)) {
    const l = k.toLowerCase();
    // Long names tolerate two slips; short ones (Pod, Node) only case and a plural,
    // since real kinds sit close to them (Job is two edits from Pod).
    if (
      lower === l ||
      lower === `${l}s` ||
      (l.length >= 8 && editDistance(lower, l) <= 2 && !lower.endsWith('list'))
    ) {
      return { type: 'misspelt', kind: k, apiVersion: v };
    }
  }
  return { type: 'other' };
}

function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

// ---------------------------------------------------------------------------

function suggestion(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = key.length <= 4 ? 1 : 2;
  for (const k of known) {
    if (k.toLowerCase() === key.toLowerCase()) return k;
    const d = editDistance(key, k);
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions, for short names. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 4;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
