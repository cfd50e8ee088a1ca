/**
 * The binary span messages and manifest bodies of NATS distribution
 * (shared/nats/codec.ts): what the controller encodes the agent decodes to
 * the same thing, and anything else — truncated, altered, random bytes —
 * is refused with a ValidationError naming the field, never a crash.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ValidationError } from '../../shared/errors.js';
import {
  INLINE_OBJECT_MAX,
  MAX_MANIFEST_STRING,
  type ManifestBody,
  decodeManifestBody,
  decodeSpanMessage,
  decodeUpdate,
  encodeHead,
  encodeManifestBody,
  encodeObject,
  encodeSpanMessage,
  headRevision,
} from '../../shared/nats/codec.js';

const body: ManifestBody = {
  // SpanUpdate{revision: 300}: field 1 varint
  head: Buffer.from([0x08, 0xac, 0x02]),
  objects: [
    { k: 'o.p.cA', o: 'p:a/web', h: 'h1', s: [1] },
    { k: 'o.g.Zw.n.bm9kZS1h', o: 'g:g', h: 'h2', s: [7, 8, 9] },
    { k: 'o.e.ZQ', o: 'e:é ünïcode', h: 'h3', s: [2 ** 40] },
  ],
};

describe('NATS span messages', () => {
  test('a manifest body decodes to what was encoded', () => {
    assert.deepEqual(decodeManifestBody(encodeManifestBody(body)), body);
  });

  test('a span message carries its manifest inline or a pointer to it', () => {
    const inline = decodeSpanMessage(encodeSpanMessage('s-1', 42, encodeManifestBody(body)));
    assert.deepEqual(inline, { v: 2, session: 's-1', n: 42, manifest: body });
    const pointer = decodeSpanMessage(encodeSpanMessage('s-1', 43, { k: 'm.key', s: [5, 6] }));
    assert.deepEqual(pointer, { v: 2, session: 's-1', n: 43, pointer: { k: 'm.key', s: [5, 6] } });
  });

  test('small objects travel inline in the manifest, and are decoded with their references', () => {
    const g = encodeObject('group', { id: 'g', prefixes: ['10.0.0.1/32'] });
    const withInline: ManifestBody = {
      head: body.head,
      objects: [body.objects[0]!, { k: 'o.g.Zw', o: g.key, h: g.hash, s: [4], b: g.bytes }],
    };
    assert.deepEqual(decodeManifestBody(encodeManifestBody(withInline)), withInline);
  });

  test('a manifest of version 2 (no inline objects) is still read', () => {
    // "WM" 2, head (1 byte), one reference k o h and one sequence
    const v2 = Buffer.from([0x57, 0x4d, 2, 1, 0x08, 1, 1, 0x6b, 1, 0x6f, 1, 0x68, 1, 5]);
    assert.deepEqual(decodeManifestBody(v2), {
      head: Buffer.from([0x08]),
      objects: [{ k: 'k', o: 'o', h: 'h', s: [5] }],
    });
  });

  test('an inline object larger than the bound is refused', () => {
    const big: ManifestBody = {
      head: body.head,
      objects: [{ k: 'k', o: 'g:g', h: 'h', s: [1], b: Buffer.alloc(INLINE_OBJECT_MAX + 1, 1) }],
    };
    assert.throws(
      () => decodeManifestBody(encodeManifestBody(big)),
      (err) => err instanceof ValidationError && /objects\[0\]\.b/.test(err.message),
    );
  });

  test('an inline object that does not hash as its reference says is refused, naming it', () => {
    const update = { revision: 7, addressGroups: [{ id: 'g', prefixes: ['10.0.0.1/32'] }] };
    const real = encodeObject('group', update.addressGroups[0]!);
    const forged = encodeObject('group', { id: 'g', prefixes: ['0.0.0.0/0'] });
    const ref = { k: 'o.g.Zw', o: real.key, h: real.hash, s: [1] };
    const head = encodeHead(update);
    // As the agent assembles an update: the inline bytes in place of a fetch.
    const { manifest } = decodeSpanMessage(
      encodeSpanMessage(
        's',
        1,
        encodeManifestBody({ head, objects: [{ ...ref, b: forged.bytes }] }),
      ),
    );
    assert.throws(
      () =>
        decodeUpdate(
          manifest!.head,
          manifest!.objects.map((r) => ({ ref: r, bytes: r.b! })),
        ),
      (err) => err instanceof ValidationError && err.message.includes(real.key),
    );
    const ok = decodeUpdate(head, [{ ref, bytes: real.bytes }]);
    assert.deepEqual(
      ok.addressGroups.map((g) => g.prefixes),
      [['10.0.0.1/32']],
    );
  });

  test("the head's revision is readable without the objects", () => {
    assert.equal(headRevision(body.head), '300');
    assert.equal(headRevision(Buffer.from([0x10, 0x01])), '0');
  });

  const encoded = encodeSpanMessage('s-1', 42, encodeManifestBody(body));
  const refusals: Array<[string, Uint8Array, RegExp]> = [
    ['an empty message', new Uint8Array(), /version 2/],
    ['a JSON manifest of version 1', Buffer.from('{"v":1,"session":"s"}'), /version 2/],
    ['an unknown kind', Buffer.from([0x57, 0x53, 2, 3, 1, 0x73, 1]), /kind/],
    ['no session', Buffer.from([0x57, 0x53, 2, 1, 0]), /session/],
    [
      'a pointer with no sequences',
      Buffer.from([0x57, 0x53, 2, 2, 1, 0x73, 1, 1, 0x6b, 0]),
      /pointer\.s/,
    ],
    ['a zero sequence', Buffer.from([0x57, 0x53, 2, 2, 1, 0x73, 1, 1, 0x6b, 1, 0]), /positive/],
    [
      'bytes after the end',
      Buffer.concat([encodeSpanMessage('s', 1, { k: 'k', s: [1] }), Buffer.from([0])]),
      /after the end/,
    ],
    [
      'a string longer than the bound',
      encodeSpanMessage('x'.repeat(MAX_MANIFEST_STRING + 1), 1, { k: 'k', s: [1] }),
      /session/,
    ],
    [
      'an integer of 11 bytes',
      Buffer.from([0x57, 0x53, 2, 1, 1, 0x73, ...Array(11).fill(0xff)]),
      /integer/,
    ],
  ];
  for (const [what, bytes, why] of refusals)
    test(`${what} is refused with a ValidationError`, () => {
      assert.throws(
        () => decodeSpanMessage(bytes),
        (err) => err instanceof ValidationError && why.test(err.message),
      );
    });

  test('every truncation of a valid message is refused, none crashes', () => {
    for (let i = 0; i < encoded.length; i++)
      assert.throws(() => decodeSpanMessage(encoded.subarray(0, i)), ValidationError, `at ${i}`);
  });

  test('random bytes and altered messages are decoded or refused, never crash', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.nat(encoded.length - 1), fc.integer({ min: 0, max: 255 })).map(([at, b]) => {
            const x = Buffer.from(encoded);
            x[at] = b;
            return x;
          }),
        ),
        (bytes) => {
          try {
            decodeSpanMessage(bytes);
          } catch (err) {
            if (!(err instanceof ValidationError)) throw err;
          }
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
