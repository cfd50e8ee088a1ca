/**
 * Span updates over NATS (docs/nats.md): an update is split into what is
 * particular to one node (its revisions, removals, policy set: the head) and
 * its objects, which are shared between nodes and written once per version
 * to the objects bucket. A node's message, the manifest, carries the head
 * and a reference to each object (KV key, content hash, entry sequences).
 *
 * Objects are kept as their protobuf encoding as one repeated-field entry
 * of SpanUpdate, and the head as SpanUpdate's other fields, so that the
 * agent rebuilds the exact ControllerMessage{update} bytes the gRPC stream
 * would carry (protobuf decodes concatenated fields as one message) and
 * decodes them with the same deserializer: one decoder for both transports.
 */
import { ValidationError } from '../errors.js';
import type {
  ControllerMessage,
  ControllerMessage__Output,
  SpanUpdate,
  SpanUpdate__Output,
} from '../generated/weir/v1/index.js';
import { weirProto } from '../grpc/proto.js';
import { objectHash, spanKey } from '../wire/span-hash.js';

export interface ObjectRef {
  /** KV key of the object's first entry. */
  readonly k: string;
  /** The span key ("p:<id>", ...). */
  readonly o: string;
  /** Content hash (span-hash.ts objectHash): checked by the agent before it applies anything. */
  readonly h: string;
  /** Sequences of the entries holding it, in order (one unless chunked). */
  readonly s: readonly number[];
  /**
   * The object's encoding itself, when it is small (INLINE_OBJECT_MAX): the
   * agent needs no fetch. Checked against `h` like a fetched one; the
   * bucket entry `s` is written all the same (each version once).
   */
  readonly b?: Buffer;
}

/** Objects up to this size travel in the manifest as well as in the bucket. */
export const INLINE_OBJECT_MAX = 512;
/** At most this many bytes of objects inline in one manifest (well under any max_payload). */
export const INLINE_OBJECTS_MAX = 64 * 1024;

/**
 * What an update is made of on NATS, once per distinct update (the
 * Distributor's key names its exact content): the head and a reference to
 * each object. Nodes whose change is the same share one.
 */
export interface ManifestBody {
  /** SpanUpdate's fields other than its objects (protobuf). */
  readonly head: Buffer;
  readonly objects: readonly ObjectRef[];
}

/**
 * A node's message on its span subject: the manifest itself when it is
 * small (one message, no further fetch), or a pointer to the manifest
 * written once to the objects bucket for every node that gets it.
 */
export type SpanMessage = {
  readonly v: 2;
  /** The agent session (the controller's answer to a hello) the update is for. */
  readonly session: string;
  /** Position in that session: deliveries are deduplicated by it. */
  readonly n: number;
} & (
  | { readonly manifest: ManifestBody; readonly pointer?: undefined }
  | {
      readonly manifest?: undefined;
      /** KV key and entry sequences of the encoded ManifestBody. */
      readonly pointer: { readonly k: string; readonly s: readonly number[] };
    }
);

/** Bounds on what a manifest may ask an agent to fetch. */
export const MAX_MANIFEST_OBJECTS = 1_000_000;
export const MAX_OBJECT_CHUNKS = 1_024;

type Encode = (m: ControllerMessage) => Buffer;
type Decode = (b: Buffer) => ControllerMessage__Output;

let codec: { encode: Encode; decode: Decode } | undefined;
function messages() {
  if (codec === undefined) {
    const c = weirProto().proto.weir.v1.ControlPlane.service.Connect;
    codec = {
      encode: c.responseSerialize as unknown as Encode,
      decode: c.responseDeserialize as unknown as Decode,
    };
  }
  return codec;
}

/** SpanUpdate's fields of `x`, without the ControllerMessage wrapper. */
function fields(x: SpanUpdate): Buffer {
  const b = messages().encode({ update: x });
  let i = 1;
  while (b[i]! & 0x80) i++;
  return b.subarray(i + 1);
}

export type WireObjectKind = 'policy' | 'group' | 'service' | 'endpoint';

/** The span key, content hash and encoding of one object of an update. */
export function encodeObject(
  kind: WireObjectKind,
  o: object,
): { key: string; hash: string; bytes: Buffer } {
  switch (kind) {
    case 'policy': {
      const p = o as NonNullable<SpanUpdate['policies']>[number];
      return {
        key: spanKey.policy(p),
        hash: objectHash.policy(p),
        bytes: fields({ policies: [p] }),
      };
    }
    case 'group': {
      const g = o as NonNullable<SpanUpdate['addressGroups']>[number];
      return {
        key: spanKey.addressGroup(g),
        hash: objectHash.addressGroup(g),
        bytes: fields({ addressGroups: [g] }),
      };
    }
    case 'service': {
      const s = o as NonNullable<SpanUpdate['serviceGroups']>[number];
      return {
        key: spanKey.serviceGroup(s),
        hash: objectHash.serviceGroup(s),
        bytes: fields({ serviceGroups: [s] }),
      };
    }
    case 'endpoint': {
      const e = o as NonNullable<SpanUpdate['endpoints']>[number];
      return {
        key: spanKey.endpoint(e),
        hash: objectHash.endpoint(e),
        bytes: fields({ endpoints: [e] }),
      };
    }
  }
}

/** Every object of an update, by kind. */
export function objectsOf(u: SpanUpdate): Array<[WireObjectKind, object]> {
  return [
    ...(u.policies ?? []).map((o): [WireObjectKind, object] => ['policy', o]),
    ...(u.addressGroups ?? []).map((o): [WireObjectKind, object] => ['group', o]),
    ...(u.serviceGroups ?? []).map((o): [WireObjectKind, object] => ['service', o]),
    ...(u.endpoints ?? []).map((o): [WireObjectKind, object] => ['endpoint', o]),
  ];
}

/** The head of an update: everything but its objects. */
export function encodeHead(u: SpanUpdate): Buffer {
  return fields({ ...u, policies: [], addressGroups: [], serviceGroups: [], endpoints: [] });
}

/**
 * The update from its head and its objects' encodings, decoded exactly as
 * the gRPC stream decodes it; every object is checked against the content
 * hash its reference names. Throws ValidationError naming the object.
 */
export function decodeUpdate(
  head: Buffer,
  objects: ReadonlyArray<{ ref: ObjectRef; bytes: Buffer }>,
): SpanUpdate__Output {
  const parts = [head, ...objects.map((o) => o.bytes)];
  let length = 0;
  for (const p of parts) length += p.length;
  const prefix = [0x0a];
  for (let n = length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      prefix.push(n);
      break;
    }
    prefix.push((n % 128) | 0x80);
  }
  let msg: ControllerMessage__Output;
  try {
    msg = messages().decode(Buffer.concat([Buffer.from(prefix), ...parts]));
  } catch (err) {
    throw new ValidationError([
      { object: 'SpanUpdate', field: '(encoding)', message: (err as Error).message },
    ]);
  }
  const u = msg.update;
  if (msg.kind !== 'update' || !u)
    throw new ValidationError([
      { object: 'SpanUpdate', field: '(encoding)', message: 'not an update' },
    ]);
  const got = new Map<string, string>();
  for (const p of u.policies) got.set(spanKey.policy(p), objectHash.policy(p));
  for (const g of u.addressGroups) got.set(spanKey.addressGroup(g), objectHash.addressGroup(g));
  for (const s of u.serviceGroups) got.set(spanKey.serviceGroup(s), objectHash.serviceGroup(s));
  for (const e of u.endpoints) got.set(spanKey.endpoint(e), objectHash.endpoint(e));
  const problems = objects
    .filter(({ ref }) => got.get(ref.o) !== ref.h)
    .map(({ ref }) => ({
      object: ref.o,
      field: 'content',
      message: got.has(ref.o)
        ? `hashes to ${got.get(ref.o)}, not ${ref.h} as the update says`
        : 'missing from the entries the update names',
    }));
  if (got.size !== objects.length && problems.length === 0)
    problems.push({
      object: 'SpanUpdate',
      field: 'objects',
      message: `${objects.length} references name ${got.size} objects`,
    });
  if (problems.length > 0) throw new ValidationError(problems);
  return u;
}

/*
 * Binary layout (all integers unsigned LEB128 varints, strings a varint
 * length and UTF-8; bounded as below):
 *
 *   span message  "WS" 2 kind session:str n:int (kind 1: body | kind 2: k:str count s:int*)
 *   body          "WM" 3 head:bytes count (k:str o:str h:str count s:int* b:bytes)*
 *                 (b: the object inline, empty when not; version 2 had no b)
 */
const SPAN_MAGIC = [0x57, 0x53, 2] as const;
const BODY_MAGIC = [0x57, 0x4d, 3] as const;
const EMPTY = Buffer.alloc(0);
/** Longest string (key, span key, hash, session) a manifest may hold. */
export const MAX_MANIFEST_STRING = 4_096;

class Writer {
  private readonly parts: Buffer[] = [];
  private cur = Buffer.allocUnsafe(256);
  private at = 0;

  private room(n: number): void {
    if (this.at + n <= this.cur.length) return;
    this.parts.push(this.cur.subarray(0, this.at));
    this.cur = Buffer.allocUnsafe(Math.max(256, n, this.cur.length * 2));
    this.at = 0;
  }

  byte(b: number): this {
    this.room(1);
    this.cur[this.at++] = b;
    return this;
  }

  int(v: number): this {
    this.room(10);
    let x = v;
    while (x >= 0x80) {
      this.cur[this.at++] = (x % 0x80) | 0x80;
      x = Math.floor(x / 0x80);
    }
    this.cur[this.at++] = x;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.int(b.length);
    this.room(b.length);
    this.cur.set(b, this.at);
    this.at += b.length;
    return this;
  }

  str(s: string): this {
    return this.bytes(Buffer.from(s, 'utf8'));
  }

  done(): Buffer {
    return Buffer.concat([...this.parts, this.cur.subarray(0, this.at)]);
  }
}

class Reader {
  at = 0;
  constructor(
    private readonly b: Uint8Array,
    private readonly object: string,
  ) {}

  fail(field: string, message: string): never {
    throw new ValidationError([{ object: this.object, field, message }]);
  }

  magic(m: readonly number[], field: string): void {
    for (const x of m)
      if (this.b[this.at++] !== x) this.fail(field, 'not a Weir manifest (version 2)');
  }

  byte(field: string): number {
    if (this.at >= this.b.length) this.fail(field, 'truncated');
    return this.b[this.at++]!;
  }

  int(field: string, max = Number.MAX_SAFE_INTEGER): number {
    let v = 0;
    for (let mul = 1; ; mul *= 0x80) {
      if (mul > 2 ** 49) this.fail(field, 'integer too long');
      const x = this.byte(field);
      v += (x & 0x7f) * mul;
      if ((x & 0x80) === 0) break;
    }
    if (v > max) this.fail(field, `${v} is more than ${max}`);
    return v;
  }

  bytes(field: string, max: number): Buffer {
    const n = this.int(field, max);
    if (this.at + n > this.b.length) this.fail(field, 'truncated');
    const out = Buffer.from(this.b.buffer, this.b.byteOffset + this.at, n);
    this.at += n;
    return out;
  }

  str(field: string): string {
    return this.bytes(field, MAX_MANIFEST_STRING).toString('utf8');
  }

  seqs(field: string): number[] {
    const n = this.int(field, MAX_OBJECT_CHUNKS);
    if (n === 0) this.fail(field, `must be 1 to ${MAX_OBJECT_CHUNKS} positive sequences`);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = this.int(field);
      if (s === 0) this.fail(field, 'sequences are positive');
      out.push(s);
    }
    return out;
  }

  rest(): Uint8Array {
    return this.b.subarray(this.at);
  }

  end(): void {
    if (this.at !== this.b.length)
      this.fail('(encoding)', `${this.b.length - this.at} bytes after the end`);
  }
}

/** A manifest body's bytes: encoded once per distinct update, whatever the number of nodes. */
export function encodeManifestBody(body: ManifestBody): Buffer {
  const w = new Writer();
  for (const b of BODY_MAGIC) w.byte(b);
  w.bytes(body.head).int(body.objects.length);
  for (const r of body.objects) {
    w.str(r.k).str(r.o).str(r.h).int(r.s.length);
    for (const x of r.s) w.int(x);
    w.bytes(r.b ?? EMPTY);
  }
  return w.done();
}

/** Parses a manifest body; throws ValidationError naming the field. */
export function decodeManifestBody(data: Uint8Array): ManifestBody {
  const r = new Reader(data, 'Manifest');
  r.magic(BODY_MAGIC.slice(0, 2), 'v');
  const version = r.byte('v');
  if (version !== 2 && version !== 3) r.fail('v', 'not a Weir manifest (version 2 or 3)');
  const head = r.bytes('head', data.length);
  const count = r.int('objects', MAX_MANIFEST_OBJECTS);
  const objects: ObjectRef[] = [];
  let inline = 0;
  for (let i = 0; i < count; i++) {
    const ref = {
      k: r.str(`objects[${i}].k`),
      o: r.str(`objects[${i}].o`),
      h: r.str(`objects[${i}].h`),
      s: r.seqs(`objects[${i}].s`),
    };
    const b = version === 3 ? r.bytes(`objects[${i}].b`, INLINE_OBJECT_MAX) : EMPTY;
    inline += b.length;
    if (inline > INLINE_OBJECTS_MAX)
      r.fail(`objects[${i}].b`, `more than ${INLINE_OBJECTS_MAX} bytes of objects inline`);
    objects.push(b.length > 0 ? { ...ref, b: Buffer.from(b) } : ref);
  }
  r.end();
  return { head: Buffer.from(head), objects };
}

/** A node's span message: `body` (an encoded ManifestBody) inline, or a pointer to where it is kept. */
export function encodeSpanMessage(
  session: string,
  n: number,
  body: Buffer | { readonly k: string; readonly s: readonly number[] },
): Buffer {
  const w = new Writer();
  for (const b of SPAN_MAGIC) w.byte(b);
  const inline = Buffer.isBuffer(body);
  w.byte(inline ? 1 : 2)
    .str(session)
    .int(n);
  if (inline) return Buffer.concat([w.done(), body]);
  w.str(body.k).int(body.s.length);
  for (const x of body.s) w.int(x);
  return w.done();
}

/** Parses a span-subject message: a manifest, or a pointer to one. Throws ValidationError. */
export function decodeSpanMessage(data: Uint8Array): SpanMessage {
  const r = new Reader(data, 'Manifest');
  r.magic(SPAN_MAGIC, 'v');
  const kind = r.byte('kind');
  const session = r.str('session');
  if (session === '') r.fail('session', 'is required');
  const n = r.int('n');
  if (kind === 1) return { v: 2, session, n, manifest: decodeManifestBody(r.rest()) };
  if (kind !== 2) r.fail('kind', `${kind} is neither 1 (manifest) nor 2 (pointer)`);
  const k = r.str('pointer.k');
  const s = r.seqs('pointer.s');
  r.end();
  return { v: 2, session, n, pointer: { k, s } };
}

/** SpanUpdate.revision from a head (field 1), for tools that only look; "0" when absent. */
export function headRevision(head: Uint8Array): string {
  const r = new Reader(head, 'SpanUpdate');
  if (head[0] !== 0x08) return '0';
  r.at = 1;
  return String(r.int('revision'));
}
