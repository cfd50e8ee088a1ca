/**
 * The policy record layout, byte for byte, and the PolicyRecordBatch helper.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InternalError } from '../../shared/errors.js';
import { parseIp } from '../../shared/net/ip.js';
import type { Packet } from '../../shared/policy/rule-tables.js';
import {
  POLICY_RECORD_BYTES,
  PolicyRecordBatch,
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VERDICT_SELF,
  VerdictCode,
  encodePolicyRecords,
  readPolicyRecord,
  writePolicyRecord,
} from '../../vrouter-agent/compile/policy-record.js';
import {
  createVerdictEngine,
  nativeRuleEvaluator,
} from '../../vrouter-agent/compile/verdict-engine.js';
import { build, namespace, networkPolicy, pod } from '../../testing/cluster.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('a record carries addresses in network byte order, family bytes, protocol and a little-endian port', () => {
  const v4 = encodePolicyRecords([
    { src: parseIp('10.1.2.3'), dst: parseIp('192.168.0.255'), protocol: 17, dstPort: 0x1234 },
  ]);
  assert.equal(v4.byteLength, POLICY_RECORD_BYTES);
  assert.equal(
    hex(v4),
    '0a010203' +
      '00'.repeat(12) +
      'c0a800ff' +
      '00'.repeat(12) +
      '04' +
      '04' +
      '11' +
      '00' +
      '3412' +
      '0000',
  );
  const v6 = encodePolicyRecords([
    { src: parseIp('fd00::1'), dst: parseIp('10.0.0.1'), protocol: 132, dstPort: 65535 },
  ]);
  assert.equal(
    hex(v6),
    'fd00' +
      '00'.repeat(13) +
      '01' +
      '0a000001' +
      '00'.repeat(12) +
      '06' +
      '04' +
      '84' +
      '00' +
      'ffff' +
      '0000',
  );
});

test('records read back as the packets written, at the ends of both address spaces', () => {
  const packets: Packet[] = [
    { src: 0, dst: 0xffff_ffff, protocol: 0, dstPort: 0 },
    {
      src: parseIp('::'),
      dst: parseIp('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
      protocol: 255,
      dstPort: 65535,
    },
    { src: parseIp('::ffff:10.0.0.1'), dst: parseIp('10.0.0.1'), protocol: 6, dstPort: 443 },
    { src: parseIp('2001:db8::8000:0:0:1'), dst: parseIp('fe80::1'), protocol: 58, dstPort: 0 },
  ];
  const bytes = encodePolicyRecords(packets);
  const view = new DataView(bytes.buffer);
  packets.forEach((p, i) => {
    assert.deepEqual(readPolicyRecord(view, i), p);
  });
});

test('a record with a bad family byte or IPv4 padding reads as invalid', () => {
  const bytes = encodePolicyRecords([
    { src: parseIp('10.0.0.1'), dst: parseIp('10.0.0.2'), protocol: 6, dstPort: 80 },
  ]);
  const view = new DataView(bytes.buffer);
  for (const [at, value] of [
    [32, 0],
    [33, 5],
    [32, 255],
    [4, 1],
    [31, 1],
  ] as const) {
    const copy = bytes.slice();
    copy[at] = value;
    assert.equal(
      readPolicyRecord(new DataView(copy.buffer), 0),
      undefined,
      `byte ${at} = ${value}`,
    );
  }
  // Reserved bytes are ignored.
  const copy = bytes.slice();
  copy[35] = 9;
  copy[38] = 9;
  assert.deepEqual(readPolicyRecord(new DataView(copy.buffer), 0), readPolicyRecord(view, 0));
});

test('writing refuses values a record cannot carry', () => {
  const view = new DataView(new ArrayBuffer(POLICY_RECORD_BYTES));
  const ok: Packet = { src: 1, dst: 2, protocol: 6, dstPort: 80 };
  for (const bad of [
    { ...ok, src: -1 },
    { ...ok, dst: 2 ** 32 },
    { ...ok, src: 1.5 },
    { ...ok, dst: -1n },
    { ...ok, dst: 1n << 128n },
    { ...ok, protocol: 256 },
    { ...ok, protocol: -1 },
    { ...ok, dstPort: 65536 },
    { ...ok, dstPort: 80.5 },
  ]) {
    assert.throws(
      () => writePolicyRecord(view, 0, bad),
      InternalError,
      JSON.stringify(bad, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    );
  }
});

test('a PolicyRecordBatch decides what was pushed, reports per packet, and refuses to overfill', () => {
  const b = build([
    namespace('a'),
    pod('a', 'x', { labels: { app: 'x' }, ips: ['10.0.0.1'] }),
    pod('a', 'y', { labels: { app: 'y' }, ips: ['10.0.0.2'] }),
    networkPolicy('a', 'only-y', {
      podSelector: { matchLabels: { app: 'x' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'y' } } }] }],
    }),
  ]);
  const batch = new PolicyRecordBatch(4);
  assert.throws(() => new PolicyRecordBatch(0), InternalError);
  assert.equal(batch.bytes.byteLength, 4 * POLICY_RECORD_BYTES);
  assert.equal(batch.results.length, 4 * RESULT_STRIDE);
  const ip = parseIp;
  batch.push({ src: ip('10.0.0.2'), dst: ip('10.0.0.1'), protocol: 6, dstPort: 80 });
  batch.push({ src: ip('8.8.8.8'), dst: ip('10.0.0.1'), protocol: 6, dstPort: 80 });
  batch.push({ src: ip('10.0.0.1'), dst: ip('10.0.0.1'), protocol: 6, dstPort: 80 });
  assert.equal(batch.count, 3);
  assert.equal(batch.full, false);
  // Without the addon only the TypeScript engine runs here; verdict-engine.test.ts reports the skip.
  for (const implementation of nativeRuleEvaluator().evaluator
    ? (['typescript', 'native'] as const)
    : (['typescript'] as const)) {
    const engine = createVerdictEngine(b.tables, { implementation });
    batch.results.fill(99);
    assert.equal(batch.evaluate(engine), 2, implementation);
    assert.equal(engine.catalog.rule(batch.ingress(0))?.id, 'test/np/a/only-y/ingress/0/0');
    assert.equal(batch.egress(0), VerdictCode.ALLOW_DEFAULT);
    assert.equal(batch.allowed(0), true);
    assert.deepEqual(
      [batch.egress(1), batch.ingress(1), batch.allowed(1), batch.self(1)],
      [VerdictCode.NOT_LOCAL, VerdictCode.DENY, false, false],
    );
    assert.deepEqual(
      [batch.egress(2), batch.ingress(2), batch.results[8]],
      [VerdictCode.NOT_LOCAL, VerdictCode.NOT_LOCAL, VERDICT_ALLOWED | VERDICT_SELF],
    );
    assert.equal(batch.results[9], 99, `${implementation} wrote past the pushed packets`);
  }
  batch.push({ src: 1, dst: 2, protocol: 6, dstPort: 1 });
  assert.equal(batch.full, true);
  assert.throws(() => batch.push({ src: 1, dst: 2, protocol: 6, dstPort: 1 }), InternalError);
  batch.clear();
  assert.equal(batch.count, 0);
});
