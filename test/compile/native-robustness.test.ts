/**
 * Nothing a caller hands the native evaluator crashes the process: malformed
 * images (truncated at every length, random bytes, random bytes behind a
 * valid header, single-byte corruptions of valid images) are refused with an
 * Error that names the problem, and any corrupted image the loader accepts is
 * still safe to evaluate. The TypeScript decoder accepts and refuses exactly
 * the same images. evaluate() refuses wrong arguments (types, counts, short
 * buffers, detached buffers) and does not write past what it was given.
 *
 * A crash here would take the test process down, which fails the run.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import {
  POLICY_RECORD_BYTES,
  RESULT_STRIDE,
  VerdictCode,
  encodePolicyRecords,
} from '../../vrouter-agent/compile/policy-record.js';
import { decodeRuleImage, RuleImageError } from '../../testing/rule-image-decoder.js';
import {
  HEADER_BYTES,
  RULE_IMAGE_MAGIC,
  SECTION_COUNT,
  encodeRuleImage,
} from '../../vrouter-agent/compile/rule-image.js';
import {
  createVerdictEngine,
  nativeRuleEvaluator,
  type NativeRuleEvaluatorClass,
} from '../../vrouter-agent/compile/verdict-engine.js';
import { build } from '../../testing/cluster.js';
import { allProbes, randomCluster } from '../../testing/random-cluster.js';
import { seededRandom } from '../../shared/random.js';

const native = nativeRuleEvaluator();
const skip = native.evaluator === undefined ? `native addon not loaded: ${native.reason}` : false;
const Evaluator = native.evaluator as NativeRuleEvaluatorClass;

function sample(seed: number, bigTables = false) {
  const c = randomCluster(seed, { bigTables });
  const b = build(c.objects);
  const { image, catalog } = encodeRuleImage(b.tables);
  const probes = allProbes(c).filter((_, i) => i % 7 === 0);
  return { image: new Uint8Array(image), catalog, probes, packets: encodePolicyRecords(probes) };
}

/** Loads with both the native loader and the TS decoder; they must agree on accept or refuse. */
function load(bytes: Uint8Array, what: string): InstanceType<NativeRuleEvaluatorClass> | undefined {
  let nativeError: unknown;
  let evaluator: InstanceType<NativeRuleEvaluatorClass> | undefined;
  try {
    evaluator = new Evaluator(bytes, { indexMinRules: 4 });
  } catch (err) {
    nativeError = err;
  }
  let tsError: unknown;
  try {
    decodeRuleImage(bytes);
  } catch (err) {
    tsError = err;
  }
  if (nativeError !== undefined) {
    assert.ok(
      nativeError instanceof Error && nativeError.message.startsWith('rule image: '),
      `${what}: native error ${String(nativeError)}`,
    );
  }
  if (tsError !== undefined)
    assert.ok(tsError instanceof RuleImageError, `${what}: decoder error ${String(tsError)}`);
  assert.equal(
    nativeError === undefined,
    tsError === undefined,
    `${what}: native ${String(nativeError ?? 'accepts')}, decoder ${String(tsError ?? 'accepts')}`,
  );
  return evaluator;
}

/** Evaluates against an image that loaded; every code must be a known code or a rule index in range. */
const LOWEST_CODE = Math.min(...Object.values(VerdictCode));

function exercise(
  e: InstanceType<NativeRuleEvaluatorClass>,
  packets: Uint8Array,
  count: number,
  what: string,
) {
  const out = new Int32Array(count * RESULT_STRIDE);
  const rules = e.info().rules as number;
  e.evaluate(packets, count, out);
  for (let i = 0; i < count; i++) {
    for (const c of [out[3 * i]!, out[3 * i + 1]!])
      assert.ok(c >= LOWEST_CODE && c < rules, `${what}: code ${c}`);
    assert.ok(out[3 * i + 2]! >= 0 && out[3 * i + 2]! <= 3, `${what}: flags`);
  }
}

describe('malformed images', { skip }, () => {
  test('an image cut short at any length is refused', () => {
    const { image } = sample(11);
    for (let len = 0; len < image.byteLength; len++)
      assert.equal(
        load(image.subarray(0, len), `first ${len} bytes`),
        undefined,
        `first ${len} bytes were accepted`,
      );
    const longer = new Uint8Array(image.byteLength + 8);
    longer.set(image);
    assert.equal(load(longer, 'eight extra bytes'), undefined);
  });

  test('random buffers are refused, with and without a plausible header', () => {
    const r = seededRandom(99);
    for (let i = 0; i < 3000; i++) {
      const len = r.chance(0.5) ? r.int(HEADER_BYTES * 2) : r.int(20_000);
      const bytes = new Uint8Array(len);
      for (let k = 0; k < len; k++) bytes[k] = r.int(256);
      if (len >= HEADER_BYTES && r.chance(0.7)) {
        const v = new DataView(bytes.buffer);
        v.setUint32(0, RULE_IMAGE_MAGIC, true);
        v.setUint16(4, 1, true);
        v.setUint16(6, SECTION_COUNT, true);
        v.setUint32(8, len, true);
        v.setUint32(12, 0, true);
        // Small counts, with layout-consistent offsets most of the time.
        let at = HEADER_BYTES;
        const sizes = [8, 1, 16, 8, 24, 16, 4, 16, 16, 8, 32, 24, 8, 16, 24];
        for (let s = 0; s < SECTION_COUNT; s++) {
          const count = r.chance(0.1) ? r.int(2 ** 32) : r.int(8);
          v.setUint32(16 + s * 8, r.chance(0.95) ? at : r.int(len), true);
          v.setUint32(20 + s * 8, count, true);
          at = (at + count * sizes[s]! + 7) & ~7;
        }
      }
      const e = load(bytes, `random buffer ${i}`);
      if (e !== undefined) exercise(e, new Uint8Array(0), 0, `random buffer ${i}`);
    }
  });

  test('single-byte corruptions of valid images are refused or, when accepted, evaluate safely', () => {
    let refused = 0;
    let accepted = 0;
    for (const seed of [21, 22, 23]) {
      const { image, packets, probes } = sample(seed, seed === 23);
      const r = seededRandom(seed);
      for (let i = 0; i < 1500; i++) {
        const bytes = image.slice();
        const at = r.chance(0.3) ? r.int(HEADER_BYTES) : r.int(bytes.byteLength);
        bytes[at] = r.chance(0.5) ? bytes[at]! ^ (1 << r.int(8)) : r.int(256);
        const e = load(bytes, `seed ${seed} byte ${at}`);
        if (e === undefined) refused++;
        else {
          accepted++;
          exercise(e, packets, probes.length, `seed ${seed} byte ${at}`);
        }
      }
    }
    assert.ok(refused > 500 && accepted > 500, `refused ${refused}, accepted ${accepted}`);
  });

  test('the constructor refuses what is not an image, and bad options', () => {
    const { image } = sample(12);
    for (const bad of [undefined, null, 42, 'image', {}, [1, 2, 3]])
      assert.throws(() => new Evaluator(bad as never), TypeError, String(bad));
    assert.throws(() => new (Evaluator as unknown as new () => unknown)(), TypeError);
    for (const opt of [
      5,
      'x',
      { indexMinRules: -1 },
      { indexMinRules: 1.5 },
      { indexMinRules: 2 ** 32 },
      { indexMinRules: 'a' },
      { portIndexMinRules: -2 },
      { portIndexMinRules: null },
    ]) {
      assert.throws(() => new Evaluator(image, opt as never), TypeError, JSON.stringify(opt));
    }
    // Accepted: an ArrayBuffer, any view of the bytes, a view into a larger buffer.
    const inner = new Uint8Array(image.byteLength + 16);
    inner.set(image, 8);
    for (const ok of [
      image.buffer,
      image,
      new DataView(image.buffer),
      inner.subarray(8, 8 + image.byteLength),
      new Uint32Array(image.buffer),
    ]) {
      assert.ok((new Evaluator(ok).info().rules as number) > 0);
    }
    const detached = image.slice().buffer;
    structuredClone(detached, { transfer: [detached] });
    assert.throws(() => new Evaluator(detached), /rule image: 0 bytes/);
    // An options getter that detaches the image's buffer: the image is read after the options.
    const moving = image.slice().buffer;
    const sneaky = {
      get indexMinRules() {
        structuredClone(moving, { transfer: [moving] });
        return 4;
      },
    };
    assert.throws(() => new Evaluator(moving, sneaky), /rule image: 0 bytes/);
    const throwing = {
      get portIndexMinRules(): number {
        throw new Error('from the getter');
      },
    };
    assert.throws(() => new Evaluator(image, throwing), /from the getter/);
  });
});

describe('evaluate() arguments', { skip }, () => {
  test('wrong types, counts and short buffers are refused without writing', () => {
    const { image, packets, probes } = sample(13);
    const e = new Evaluator(image);
    const n = probes.length;
    const out = new Int32Array(n * RESULT_STRIDE).fill(7);
    const refuse = (args: unknown[], kind: new (...a: never[]) => Error, what: string) => {
      assert.throws(() => (e.evaluate as (...a: unknown[]) => number)(...args), kind, what);
      assert.ok(
        out.every((x) => x === 7),
        `${what}: wrote into out`,
      );
    };
    refuse([], TypeError, 'no arguments');
    refuse([packets, n], TypeError, 'no out');
    refuse(['x', n, out], TypeError, 'packets a string');
    refuse([packets, -1, out], TypeError, 'negative count');
    refuse([packets, 1.5, out], TypeError, 'fractional count');
    refuse([packets, NaN, out], TypeError, 'NaN count');
    refuse([packets, 2 ** 31, out], TypeError, 'count 2^31');
    refuse([packets, '3', out], TypeError, 'count a string');
    refuse([packets, n, new Uint32Array(n * 3)], TypeError, 'out a Uint32Array');
    refuse([packets, n, new Float64Array(n * 3)], TypeError, 'out a Float64Array');
    refuse([packets, n, out.buffer], TypeError, 'out an ArrayBuffer');
    refuse(
      [packets.subarray(0, n * POLICY_RECORD_BYTES - 1), n, out],
      RangeError,
      'packets one byte short',
    );
    refuse([packets, n + 1, out], RangeError, 'count past the packets');
    refuse([packets, n, out.subarray(0, n * 3 - 1)], RangeError, 'out one value short');
    const detached = packets.slice().buffer;
    structuredClone(detached, { transfer: [detached] });
    refuse([detached, n, out], RangeError, 'detached packets');
    const detachedOut = new Int32Array(n * 3);
    structuredClone(detachedOut.buffer, { transfer: [detachedOut.buffer] });
    assert.throws(() => e.evaluate(packets, n, detachedOut), RangeError);
    assert.equal(e.evaluate(packets, 0, new Int32Array(0)), 0);
    assert.equal(e.evaluate(new Uint8Array(0), 0, out), 0);
    assert.ok(out.every((x) => x === 7));
  });

  test('only the first count records are read and only the first 3·count values written', () => {
    const { image, packets, probes } = sample(14);
    const e = new Evaluator(image);
    const n = Math.min(50, probes.length);
    const out = new Int32Array(probes.length * 3).fill(7);
    e.evaluate(packets.subarray(0, n * POLICY_RECORD_BYTES), n, out);
    assert.ok(out.subarray(n * 3).every((x) => x === 7));
    assert.ok(out.subarray(0, n * 3).some((x) => x !== 7));
    // Views at an offset: the same answers as from the start of a fresh buffer.
    const shifted = new Uint8Array(n * POLICY_RECORD_BYTES + 3);
    shifted.set(packets.subarray(0, n * POLICY_RECORD_BYTES), 3);
    const out2 = new Int32Array(4 + n * 3);
    e.evaluate(shifted.subarray(3), n, out2.subarray(4));
    assert.deepEqual(out2.subarray(4), out.subarray(0, n * 3));
    assert.deepEqual(Array.from(out2.subarray(0, 4)), [0, 0, 0, 0]);
    e.evaluate(
      new DataView(packets.buffer, 0, n * POLICY_RECORD_BYTES) as unknown as Uint8Array,
      n,
      out2.subarray(4),
    );
    assert.deepEqual(out2.subarray(4), out.subarray(0, n * 3));
  });

  test('random packet bytes are decided without a crash, malformed records as INVALID', () => {
    const { image } = sample(15, true);
    const e = new Evaluator(image, { indexMinRules: 0 });
    const r = seededRandom(5);
    const n = 20_000;
    const bytes = new Uint8Array(n * POLICY_RECORD_BYTES);
    for (let i = 0; i < bytes.length; i++) bytes[i] = r.int(256);
    for (let i = 0; i < n; i += 2) {
      bytes[i * POLICY_RECORD_BYTES + 32] = r.pick([4, 6]);
      bytes[i * POLICY_RECORD_BYTES + 33] = r.pick([4, 6]);
    }
    exercise(e, bytes, n, 'random records');
    const out = new Int32Array(n * 3);
    e.evaluate(bytes, n, out);
    for (let i = 1; i < n; i += 2) {
      const fam = [bytes[i * POLICY_RECORD_BYTES + 32], bytes[i * POLICY_RECORD_BYTES + 33]];
      if (fam.some((f) => f !== 4 && f !== 6))
        assert.deepEqual(Array.from(out.subarray(i * 3, i * 3 + 3)), [
          VerdictCode.INVALID,
          VerdictCode.INVALID,
          0,
        ]);
    }
  });

  test('after dispose evaluate() throws, dispose() is idempotent, and the engine wrapper does the same', () => {
    const { image, packets } = sample(16);
    const e = new Evaluator(image);
    e.dispose();
    e.dispose();
    assert.throws(() => e.evaluate(packets, 1, new Int32Array(3)), /disposed/);
    assert.equal(e.info().disposed, true);
    const b = build(randomCluster(16).objects);
    for (const implementation of ['native', 'typescript'] as const) {
      const engine = createVerdictEngine(b.tables, { implementation });
      engine.evaluate(
        encodePolicyRecords([
          { src: parseIp('10.0.0.1'), dst: parseIp('10.0.0.2'), protocol: 6, dstPort: 80 },
        ]),
        1,
        new Int32Array(3),
      );
      engine[Symbol.dispose]();
      engine[Symbol.dispose]();
      assert.throws(
        () => engine.evaluate(packets, 1, new Int32Array(3)),
        /disposed/,
        implementation,
      );
    }
  });
});

test('the TypeScript engine refuses the same bad arguments', () => {
  const b = build(randomCluster(17).objects);
  const engine = createVerdictEngine(b.tables, { implementation: 'typescript' });
  const packets = encodePolicyRecords([
    { src: parseIp('1.1.1.1'), dst: parseIp('2.2.2.2'), protocol: 6, dstPort: 80 },
  ]);
  const call = (...a: unknown[]) => (engine.evaluate as (...x: unknown[]) => number)(...a);
  assert.throws(() => call(packets, -1, new Int32Array(3)), TypeError);
  assert.throws(() => call(packets, 1.5, new Int32Array(3)), TypeError);
  assert.throws(() => call(packets, 1, new Uint32Array(3)), TypeError);
  assert.throws(() => call('x', 1, new Int32Array(3)), TypeError);
  assert.throws(() => call(packets, 2, new Int32Array(6)), RangeError);
  assert.throws(() => call(packets, 1, new Int32Array(2)), RangeError);
  assert.equal(call(packets, 1, new Int32Array(3)), 1);
});
