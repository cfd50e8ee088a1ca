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
import { MAX_ISSUES, PREVIEW_CHARS, previewJson, truncate } from '../limits.js';
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
}

/** A node's update, as published on its span subject. */
export interface Manifest {
  readonly v: 1;
  /** The agent session (the controller's answer to a hello) the update is for. */
  readonly session: string;
  /** Position in that session: deliveries are deduplicated by it. */
  readonly n: number;
  /** base64 of the head: SpanUpdate fields other than its objects. */
  readonly head: string;
  readonly objects: readonly ObjectRef[];
}

/** A manifest too large for one message: kept in the objects bucket, referenced by this. */
export interface ManifestPointer {
  readonly v: 1;
  readonly session: string;
  readonly n: number;
  /** KV key and entry sequences of the manifest's JSON. */
  readonly manifest: { readonly k: string; readonly s: readonly number[] };
}

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

/** Parses a span-subject message: a manifest, or a pointer to one. Throws ValidationError. */
export function parseManifest(data: Uint8Array): Manifest | ManifestPointer {
  let m: unknown;
  try {
    m = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch (err) {
    throw new ValidationError([
      {
        object: 'Manifest',
        field: '(json)',
        message: truncate((err as Error).message, PREVIEW_CHARS),
      },
    ]);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m))
    throw new ValidationError([
      { object: 'Manifest', field: '(json)', message: `${previewJson(m)} is not an object` },
    ]);
  const problems: Array<{ object: string; field: string; message: string }> = [];
  const o = m as Record<string, unknown>;
  let more = 0;
  const bad = (field: string, message: string) => {
    if (problems.length < MAX_ISSUES) problems.push({ object: 'Manifest', field, message });
    else more++;
  };
  if (o.v !== 1) bad('v', `version ${previewJson(o.v)} is not 1`);
  if (typeof o.session !== 'string' || o.session === '') bad('session', 'is required');
  if (!Number.isSafeInteger(o.n)) bad('n', 'must be an integer');
  const seqs = (field: string, s: unknown) => {
    if (
      !Array.isArray(s) ||
      s.length === 0 ||
      s.length > MAX_OBJECT_CHUNKS ||
      !s.every((x) => Number.isSafeInteger(x) && x > 0)
    )
      bad(field, `must be 1 to ${MAX_OBJECT_CHUNKS} positive sequences`);
  };
  if ('manifest' in o) {
    const p = (typeof o.manifest === 'object' && o.manifest !== null ? o.manifest : {}) as Record<
      string,
      unknown
    >;
    if (typeof p.k !== 'string') bad('manifest.k', 'is required');
    seqs('manifest.s', p.s);
  } else {
    if (typeof o.head !== 'string') bad('head', 'is required');
    if (!Array.isArray(o.objects) || o.objects.length > MAX_MANIFEST_OBJECTS)
      bad('objects', `must be a list of at most ${MAX_MANIFEST_OBJECTS}`);
    else
      o.objects.forEach((r: unknown, i: number) => {
        const x = (typeof r === 'object' && r !== null ? r : {}) as Record<string, unknown>;
        if (typeof x.k !== 'string' || typeof x.o !== 'string' || typeof x.h !== 'string')
          bad(`objects[${i}]`, 'needs k, o and h');
        seqs(`objects[${i}].s`, x.s);
      });
  }
  if (more > 0)
    problems.push({ object: 'Manifest', field: '(more)', message: `${more} more problems` });
  if (problems.length > 0) throw new ValidationError(problems);
  return o as unknown as Manifest | ManifestPointer;
}
