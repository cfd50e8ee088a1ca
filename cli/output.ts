/**
 * weirctl's one output vocabulary, as kubectl's: every verb prints through
 * `emit`, which takes the verb's document and knows
 *
 *   -o table   columns for people (the default of most verbs)
 *   -o wide    the same with more columns
 *   -o json    the document, as JSON
 *   -o yaml    the same document, as YAML (parses to the same value)
 *   -o name    KIND/NAME, one a line
 *   -o jsonpath=TEMPLATE   kubectl's template: text with {.path} expressions
 *   --no-headers           table and wide without the header row (and without the text around the table)
 *   --sort-by FIELD        the list sorted by a field of its items (.node, {.forward.packets}), in every format
 *
 * The document is plain data: what came over gRPC goes through `wireToJson`
 * first, so that 64-bit integers are numbers (not the strings protobuf's JSON
 * uses), times are RFC 3339 (a field `fooUnixMs` becomes `foo`, null when
 * unset), and protobuf's oneof tags are gone (the member that is set says
 * which it is). Field names are the proto's in lowerCamelCase, the same in
 * every verb that shows the same message.
 */
import { JSONPath } from 'jsonpath-plus';
import { stringify as toYaml } from 'yaml';
import { InternalError } from '../shared/errors.js';
import { weirProto } from '../shared/grpc/proto.js';
import { UsageError, type Io } from './io.js';
import { renderTable } from './table.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export const FORMATS = ['table', 'wide', 'json', 'yaml', 'name', 'jsonpath=TEMPLATE'] as const;

/** What the output flags say (main.ts adds them to every verb). */
export interface OutputFlags {
  output: string;
  /** Commander's --no-headers: false when given. */
  headers?: boolean;
  sortBy?: string;
}

export interface Column {
  readonly header: string;
  readonly cell: (item: JsonObject) => string;
  /** Only in -o wide. */
  readonly wide?: boolean;
}

export interface View {
  /** The document -o json|yaml|jsonpath print. */
  readonly document: Json;
  /** The key of the document's list (table rows, -o name, --sort-by); the document itself when it is an array. */
  readonly list?: string;
  readonly columns?: readonly Column[];
  /** -o name: KIND/NAME of an item (or of the document, when there is no list). */
  readonly name?: (item: JsonObject) => string;
  /** Table text of a document that is not a list, or text before / after the list's table. */
  readonly text?: (document: JsonObject, wide: boolean) => string;
  readonly before?: (document: JsonObject, wide: boolean) => string;
  readonly after?: (document: JsonObject, wide: boolean) => string;
  /** The table of an empty list ("no flows"). */
  readonly empty?: string;
}

type Parsed =
  | { kind: 'table' | 'wide' | 'json' | 'yaml' | 'name' }
  | { kind: 'jsonpath'; template: string };

/** Reads -o; a UsageError naming every format when it is none of them. */
export function parseFormat(text: string): Parsed {
  if (text.startsWith('jsonpath=')) return { kind: 'jsonpath', template: text.slice(9) };
  if (['table', 'wide', 'json', 'yaml', 'name'].includes(text))
    return { kind: text as 'table' | 'wide' | 'json' | 'yaml' | 'name' };
  throw new UsageError(
    `-o/--output must be one of ${FORMATS.join(', ')}, not ${JSON.stringify(text)}`,
  );
}

export function emit(io: Io, flags: OutputFlags, view: View): void {
  io.stdout(render(flags, view));
}

export function render(flags: OutputFlags, view: View): string {
  const format = parseFormat(flags.output);
  const document = sorted(view, flags.sortBy);
  const items = listOf(document, view.list);
  switch (format.kind) {
    case 'json':
      return `${JSON.stringify(document, null, 2)}\n`;
    case 'yaml':
      return toYaml(document, { aliasDuplicateObjects: false });
    case 'jsonpath':
      return jsonpathText(document, format.template);
    case 'name': {
      if (view.name === undefined)
        throw new UsageError(
          '-o name: this command prints no named objects; use -o table, wide, json, yaml or jsonpath=...',
        );
      const named = items ?? [document as JsonObject];
      return named.map((i) => `${view.name!(i)}\n`).join('');
    }
    default: {
      const wide = format.kind === 'wide';
      const headers = flags.headers !== false;
      const doc = document as JsonObject;
      let out = headers && view.before ? view.before(doc, wide) : '';
      if (items !== undefined && view.columns !== undefined) {
        const cols = view.columns.filter((c) => wide || !c.wide);
        if (items.length === 0) out += headers ? (view.empty ?? 'no items\n') : '';
        else {
          const rows = items.map((i) => cols.map((c) => c.cell(i)));
          const table = renderTable(
            cols.map((c) => c.header),
            rows,
          );
          out += headers ? table : table.slice(table.indexOf('\n') + 1);
        }
      } else if (view.text !== undefined) out += view.text(doc, wide);
      if (headers && view.after) out += view.after(doc, wide);
      return out;
    }
  }
}

function listOf(document: Json, list: string | undefined): JsonObject[] | undefined {
  if (Array.isArray(document)) return document as JsonObject[];
  if (list === undefined) return undefined;
  const l = (document as JsonObject)[list];
  return Array.isArray(l) ? (l as JsonObject[]) : [];
}

/** kubectl's field forms: "node", ".node", "{.node}", "$.node". */
function pathOf(field: string): string {
  const f = field.trim().replace(/^\{(.*)\}$/, '$1');
  return f.startsWith('$') ? f : f.startsWith('.') || f.startsWith('[') ? `$${f}` : `$.${f}`;
}

function query(value: Json, path: string): Json[] {
  try {
    return JSONPath({ path, json: value as object, wrap: true, eval: 'safe' }) as Json[];
  } catch (err) {
    throw new UsageError(`${path}: not a JSONPath expression: ${(err as Error).message}`);
  }
}

/** The document with its list sorted by --sort-by (numbers by value, then strings, missing last). */
function sorted(view: View, sortBy: string | undefined): Json {
  if (sortBy === undefined) return view.document;
  const items = listOf(view.document, view.list);
  if (items === undefined)
    throw new UsageError('--sort-by: this command prints one object, not a list');
  const path = pathOf(sortBy);
  const keyed = items.map((item) => ({ item, key: query(item, path)[0] }));
  if (items.length > 0 && keyed.every((k) => k.key === undefined))
    throw new UsageError(
      `--sort-by ${sortBy}: no item has this field (fields: ${Object.keys(items[0]!).join(', ')})`,
    );
  const rank = (k: Json | undefined) =>
    k === undefined || k === null ? 2 : typeof k === 'number' ? 0 : 1;
  keyed.sort((a, b) => {
    const ra = rank(a.key);
    const rb = rank(b.key);
    if (ra !== rb) return ra - rb;
    if (ra === 0) return (a.key as number) - (b.key as number);
    if (ra === 1) {
      const x = typeof a.key === 'string' ? a.key : JSON.stringify(a.key);
      const y = typeof b.key === 'string' ? b.key : JSON.stringify(b.key);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return 0;
  });
  const list = keyed.map((k) => k.item);
  return Array.isArray(view.document)
    ? list
    : { ...(view.document as JsonObject), [view.list!]: list };
}

/**
 * kubectl's jsonpath output: literal text, and `{EXPR}` replaced by what the
 * expression selects (several results joined by spaces; objects as JSON).
 * `\n` and `\t` in the literal text are a newline and a tab.
 */
export function jsonpathText(document: Json, template: string): string {
  if (template === '')
    throw new UsageError('-o jsonpath= needs a template, e.g. -o jsonpath={.agents[*].node}');
  let out = '';
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{', i);
    const literal = open < 0 ? template.slice(i) : template.slice(i, open);
    out += literal.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
    if (open < 0) break;
    const close = template.indexOf('}', open);
    if (close < 0) throw new UsageError(`-o jsonpath: unclosed "{" at ${open} in ${template}`);
    const expr = template.slice(open + 1, close).trim();
    if (/^(range|end)\b/.test(expr))
      throw new UsageError(
        '-o jsonpath: {range} is not supported; select a list ({.items[*].name}) or use -o json with jq',
      );
    out += query(document, pathOf(expr))
      .map((v) => (typeof v === 'string' ? v : JSON.stringify(v)))
      .join(' ');
    i = close + 1;
  }
  return out.endsWith('\n') ? out : `${out}\n`;
}

// ---- wire messages to plain JSON ----

interface FieldDescriptor {
  readonly name: string;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}
interface MessageDescriptor {
  readonly name: string;
  readonly field: readonly FieldDescriptor[];
  readonly nestedType: readonly MessageDescriptor[];
  readonly oneofDecl: ReadonlyArray<{ readonly name: string }>;
  readonly options: { readonly mapEntry?: boolean } | null;
}

const LONGS = new Set([
  'TYPE_INT64',
  'TYPE_UINT64',
  'TYPE_SINT64',
  'TYPE_FIXED64',
  'TYPE_SFIXED64',
]);
const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

interface Resolved {
  readonly type: MessageDescriptor;
  /** Its full name ("weir.v1.PolicyRealization.LatencyMsEntry"): the scope of the names it uses. */
  readonly full: string;
}

function messageType(name: string, scope: string): Resolved {
  const def = weirProto().definition as Record<string, { type?: MessageDescriptor }>;
  const find = (full: string): Resolved | undefined => {
    const top = def[full]?.type;
    if (top !== undefined) return { type: top, full };
    // A nested type (map entries): Parent.Entry.
    const dot = full.lastIndexOf('.');
    const nested = def[full.slice(0, dot)]?.type?.nestedType.find(
      (t) => t.name === full.slice(dot + 1),
    );
    return nested === undefined ? undefined : { type: nested, full };
  };
  if (name.startsWith('.')) {
    const r = find(name.slice(1));
    if (r !== undefined) return r;
  }
  // A type name is relative to its message's scope, as protobuf resolves it.
  const parts = scope.split('.');
  for (let n = parts.length; n >= 0; n--) {
    const r = find([...parts.slice(0, n), name].join('.'));
    if (r !== undefined) return r;
  }
  throw new InternalError(`no message type ${name} in ${scope}`);
}

function scalar(f: FieldDescriptor, v: unknown): Json {
  if (LONGS.has(f.type) && (typeof v === 'string' || typeof v === 'number')) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : String(v);
  }
  if (Buffer.isBuffer(v)) return v.toString('base64');
  return v as Json;
}

function convert(value: unknown, { type, full }: Resolved): JsonObject {
  const out: JsonObject = {};
  const src = value as Record<string, unknown>;
  for (const f of type.field) {
    const key = camel(f.name);
    if (!Object.hasOwn(src, key)) continue;
    const v = src[key];
    let converted: Json;
    if (f.type === 'TYPE_MESSAGE') {
      const t = messageType(f.typeName, full);
      if (t.type.options?.mapEntry) {
        const valueField = t.type.field.find((x) => x.name === 'value')!;
        const m: JsonObject = {};
        for (const [k, x] of Object.entries((v ?? {}) as Record<string, unknown>))
          m[k] =
            valueField.type === 'TYPE_MESSAGE'
              ? convert(x, messageType(valueField.typeName, t.full))
              : scalar(valueField, x);
        converted = m;
      } else if (f.label === 'LABEL_REPEATED')
        converted = ((v ?? []) as unknown[]).map((x) => convert(x, t));
      else converted = v === null || v === undefined ? null : convert(v, t);
    } else if (f.label === 'LABEL_REPEATED')
      converted = ((v ?? []) as unknown[]).map((x) => scalar(f, x));
    else converted = scalar(f, v);
    if (/UnixMs$/.test(key) && typeof converted === 'number')
      out[key.replace(/UnixMs$/, '')] = converted === 0 ? null : new Date(converted).toISOString();
    else out[key] = converted;
  }
  return out;
}

/**
 * A message as grpc-js decodes it (proto-loader's options, shared/grpc/proto.ts)
 * into plain JSON: see the module comment. `type`: the message's name in
 * weir.v1 ("StatusReply").
 */
export function wireToJson(value: object, type: string): JsonObject {
  return convert(value, messageType(type, 'weir.v1'));
}
