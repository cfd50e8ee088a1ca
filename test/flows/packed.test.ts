/**
 * The packed formats the batch calls use, the options and their defaults, and
 * which implementation createFlowTable picks.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import fc from 'fast-check';
import { ValidationError } from '../../shared/errors.js';
import { parseIp } from '../../shared/net/ip.js';
import {
  createFlowTable,
  decodeResult,
  encodeResult,
  FLOW_TABLE_DEFAULTS,
  nativeFlowTableAvailability,
  FLOW_KEY_RECORD_BYTES,
  readFlowKey,
  resolveFlowTableOptions,
  writeFlowKey,
  type FlowKey,
} from '../../vrouter-agent/flows/index.js';

const keyArb: fc.Arbitrary<FlowKey> = fc
  .record({
    zone: fc.nat({ max: 0xffffffff }),
    protocol: fc.nat({ max: 255 }),
    sport: fc.nat({ max: 65535 }),
    dport: fc.nat({ max: 65535 }),
    six: fc.boolean(),
    a: fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
    b: fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
  })
  .map(({ six, a, b, ...rest }) => ({
    ...rest,
    src: six ? a : Number(a & 0xffffffffn),
    dst: six ? b : Number(b & 0xffffffffn),
  }));

test('packet records round-trip IPv4 and IPv6 keys with their length and TCP flags', () => {
  fc.assert(
    fc.property(keyArb, fc.nat({ max: 0xffffffff }), fc.nat({ max: 255 }), (key, bytes, flags) => {
      const buf = new Uint8Array(3 * FLOW_KEY_RECORD_BYTES);
      writeFlowKey(buf, 1, key, bytes, flags);
      assert.deepEqual(readFlowKey(buf, 1), { key, bytes, tcpFlags: flags });
      assert.deepEqual(
        buf.subarray(0, FLOW_KEY_RECORD_BYTES),
        new Uint8Array(FLOW_KEY_RECORD_BYTES),
        'record 0 untouched',
      );
    }),
  );
});

test('a packet record holds little-endian fields and network-order addresses at the documented offsets', () => {
  const buf = new Uint8Array(FLOW_KEY_RECORD_BYTES);
  writeFlowKey(
    buf,
    0,
    {
      zone: 0x01020304,
      protocol: 6,
      src: parseIp('10.1.2.3'),
      dst: parseIp('192.168.0.1'),
      sport: 0x1234,
      dport: 443,
    },
    1500,
    0x12,
  );
  assert.deepEqual(
    [...buf.subarray(0, 16)],
    [4, 3, 2, 1, 0x34, 0x12, 0xbb, 0x01, 6, 4, 0x12, 0, 0xdc, 0x05, 0, 0],
  );
  assert.deepEqual([...buf.subarray(16, 20)], [10, 1, 2, 3]);
  assert.deepEqual([...buf.subarray(20, 32)], new Array(12).fill(0));
  assert.deepEqual([...buf.subarray(32, 36)], [192, 168, 0, 1]);
  writeFlowKey(buf, 0, {
    zone: 1,
    protocol: 17,
    src: parseIp('fd00::1'),
    dst: parseIp('2001:db8::ff'),
    sport: 1,
    dport: 2,
  });
  assert.equal(buf[9], 6);
  assert.deepEqual([buf[16], buf[17], buf[31]], [0xfd, 0x00, 0x01]);
  assert.deepEqual([buf[32], buf[33], buf[47]], [0x20, 0x01, 0xff]);
});

test('writing a packet outside the buffer or with a bad key throws', () => {
  const buf = new Uint8Array(FLOW_KEY_RECORD_BYTES);
  const k: FlowKey = { zone: 1, protocol: 6, src: 1, dst: 2, sport: 3, dport: 4 };
  assert.throws(() => writeFlowKey(buf, 1, k), RangeError);
  assert.throws(() => writeFlowKey(buf, 0, { ...k, zone: -1 }), /zone -1/);
  assert.throws(() => writeFlowKey(buf, 0, { ...k, dst: 2 ** 32 }), /dst is not an address/);
});

test('result words carry the index, action and direction, and -1 is a miss', () => {
  fc.assert(
    fc.property(
      fc.nat({ max: 2 ** 27 - 1 }),
      fc.nat({ max: 2 }),
      fc.nat({ max: 1 }),
      (index, action, direction) => {
        const r = encodeResult(index, action, direction);
        assert.ok(r >= 0 && r <= 0x7fffffff);
        assert.deepEqual(decodeResult(r), {
          index,
          action: ['allow', 'deny', 'hold'][action],
          direction: ['forward', 'reverse'][direction],
        });
      },
    ),
  );
  assert.equal(decodeResult(-1), undefined);
});

test('options default to the documented values', () => {
  assert.deepEqual(resolveFlowTableOptions(), FLOW_TABLE_DEFAULTS);
  assert.deepEqual(
    { ...FLOW_TABLE_DEFAULTS },
    {
      maxFlows: 262144,
      maxFlowsPerZone: 65536,
      maxHoldFlows: 8192,
      evictionScanFlows: 64,
      tcpSynTimeoutSec: 60,
      tcpEstablishedTimeoutSec: 7440,
      tcpClosingTimeoutSec: 120,
      tcpClosedTimeoutSec: 10,
      udpTimeoutSec: 30,
      udpStreamTimeoutSec: 120,
      icmpTimeoutSec: 30,
      otherTimeoutSec: 600,
      deniedTimeoutSec: 30,
      holdTimeoutSec: 5,
    },
  );
});

test('bad options are reported together, each naming its field', () => {
  try {
    resolveFlowTableOptions({
      maxFlows: 0,
      maxHoldFlows: 1.5,
      udpTimeoutSec: -1,
      icmpTimeoutSec: Infinity,
      holdTimeoutSec: 2.5,
    });
    assert.fail('accepted');
  } catch (err) {
    assert.ok(err instanceof ValidationError);
    assert.deepEqual(
      err.issues.map((i) => i.field),
      ['maxFlows', 'maxHoldFlows', 'udpTimeoutSec', 'icmpTimeoutSec'],
    );
  }
  assert.throws(() => resolveFlowTableOptions({ maxFlows: 2 ** 27 + 1 }), /maxFlows/);
});

const native = nativeFlowTableAvailability();

test('createFlowTable uses the native table when the addon loads, and says where it came from', {
  skip: native.available ? false : `the native addon is not loaded (${native.reason})`,
}, () => {
  const created = createFlowTable({ maxFlows: 16 });
  assert.equal(created.implementation, 'native');
  assert.equal(created.table.implementation, 'native');
  assert.match(created.reason, /loaded from .*weir_native\.node/);
  assert.equal(created.table.options.maxFlows, 16);
  created.table.close();
});

test("createFlowTable with implementation 'typescript' gives the TypeScript table", () => {
  const created = createFlowTable({ implementation: 'typescript', maxFlows: 16 });
  assert.equal(created.table.implementation, 'typescript');
  assert.equal(created.table.stats().maxFlows, 16);
});

test('WEIR_NATIVE=0 makes createFlowTable fall back to TypeScript and report why, and refuses an explicit native request', () => {
  const module = new URL('../../vrouter-agent/flows/index.ts', import.meta.url).href;
  const script = `
    const { createFlowTable } = await import(${JSON.stringify(module)});
    const c = createFlowTable();
    let refused = '';
    try { createFlowTable({ implementation: 'native' }); } catch (err) { refused = err.message; }
    process.stdout.write(JSON.stringify({ implementation: c.implementation, reason: c.reason, refused }));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, WEIR_NATIVE: '0' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    implementation: 'typescript',
    reason: 'disabled by WEIR_NATIVE=0',
    refused: 'native flow table requested but unavailable: disabled by WEIR_NATIVE=0',
  });
});
