/**
 * Properties of the packet parser over generated input: no bytes make it
 * throw, every outcome is a record or a classified failure, every strict
 * prefix of a packet is truncated, and built packets read back as built.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Ip } from '../../shared/net/ip.js';
import { PARSE_FAILURES, parsePacket, type ParseResult } from '../../testing/packet-record.js';
import {
  buildPacket,
  type Ipv6Extension,
  type PacketSpec,
} from '../../vrouter-agent/packet/index.js';

const RUNS = 2000;

/** What any result must satisfy, whatever the bytes. */
function checkResult(r: ParseResult, available: number): void {
  if (!r.ok) {
    assert.ok(PARSE_FAILURES.includes(r.failure), `unknown failure ${r.failure}`);
    assert.equal(typeof r.detail, 'string');
    assert.ok(r.detail.length > 0);
    return;
  }
  const p = r.packet;
  assert.ok(p.family === 4 || p.family === 6);
  assert.equal(typeof p.src, p.family === 4 ? 'number' : 'bigint');
  assert.equal(typeof p.dst, typeof p.src);
  for (const x of [p.sport, p.dport]) assert.ok(Number.isInteger(x) && x >= 0 && x <= 65535);
  assert.ok(p.protocol >= 0 && p.protocol <= 255);
  assert.ok(
    p.length >= (p.family === 4 ? 20 : 40) && p.length <= available,
    `length ${p.length} of ${available} bytes`,
  );
  assert.ok(p.tcpFlags >= 0 && p.tcpFlags <= 255);
  assert.ok(p.vlans.length <= 2);
}

const links = fc.constantFrom<'ethernet' | 'ip'>('ethernet', 'ip');

test('random bytes never make the parser throw, and always read as a record or a classified failure', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), links, (bytes, link) => {
      checkResult(parsePacket(bytes, { link }), bytes.length);
    }),
    { numRuns: RUNS * 5 },
  );
});

/** A valid packet description: addresses, protocol, ports, tags, options and extension headers. */
const specs: fc.Arbitrary<PacketSpec> = fc
  .record({
    family: fc.constantFrom(4, 6),
    a: fc.integer({ min: 0, max: 0xffff_ffff }),
    b: fc.integer({ min: 0, max: 0xffff_ffff }),
    protocol: fc.constantFrom<PacketSpec['protocol']>('tcp', 'udp', 'sctp', 'icmp', 47, 50, 103),
    sport: fc.integer({ min: 0, max: 65535 }),
    dport: fc.integer({ min: 0, max: 65535 }),
    tcpFlags: fc.integer({ min: 0, max: 255 }),
    icmpEcho: fc.boolean(),
    icmpId: fc.integer({ min: 0, max: 65535 }),
    payload: fc.integer({ min: 0, max: 48 }),
    link: links,
    vlans: fc.array(fc.integer({ min: 0, max: 4095 }), { maxLength: 2 }),
    options: fc.constantFrom(0, 4, 12, 40),
    hopByHop: fc.boolean(),
    extensions: fc.array(fc.constantFrom<Ipv6Extension>('routing', 'destination', 'ah'), {
      maxLength: 5,
    }),
  })
  .map(({ family, a, b, icmpEcho, icmpId, options, hopByHop, extensions, ...rest }) => {
    const ip = (x: number): Ip => (family === 4 ? x : (0xfd00n << 112n) | BigInt(x));
    const ipv6Extensions: Ipv6Extension[] =
      family === 6 ? [...(hopByHop ? ['hop-by-hop' as const] : []), ...extensions] : [];
    return {
      ...rest,
      src: ip(a),
      dst: ip(b),
      icmp: { type: icmpEcho ? (family === 4 ? 8 : 128) : family === 4 ? 13 : 200, id: icmpId },
      ...(family === 4 ? { ipv4OptionBytes: options } : { ipv6Extensions }),
    };
  });

test('built packets read back as they were built', () => {
  fc.assert(
    fc.property(specs, (spec) => {
      const bytes = buildPacket(spec);
      const r = parsePacket(bytes, { link: spec.link });
      checkResult(r, bytes.length);
      assert.ok(r.ok, !r.ok ? `${r.failure}: ${r.detail}` : '');
      const p = r.packet;
      assert.equal(p.src, spec.src);
      assert.equal(p.dst, spec.dst);
      assert.deepEqual(p.vlans, spec.link === 'ip' ? [] : spec.vlans);
      assert.equal(p.length, bytes.length - (spec.link === 'ip' ? 0 : 14 + 4 * spec.vlans!.length));
      assert.equal(p.extensionHeaders, spec.ipv6Extensions?.length ?? 0);
      if (spec.protocol === 'tcp' || spec.protocol === 'udp' || spec.protocol === 'sctp') {
        assert.deepEqual([p.sport, p.dport, p.hasPorts], [spec.sport, spec.dport, true]);
        assert.equal(p.tcpFlags, spec.protocol === 'tcp' ? spec.tcpFlags : 0);
      } else if (spec.protocol === 'icmp') {
        const echo = spec.icmp!.type === 8 || spec.icmp!.type === 128;
        assert.deepEqual(
          [p.sport, p.dport],
          echo ? [spec.icmp!.id, spec.icmp!.type] : [0, spec.icmp!.type],
        );
      } else {
        assert.deepEqual([p.protocol, p.hasPorts, p.sport, p.dport], [spec.protocol, false, 0, 0]);
      }
    }),
    { numRuns: RUNS },
  );
});

test('every strict prefix of a packet reads as truncated', () => {
  fc.assert(
    fc.property(specs, (spec) => {
      const bytes = buildPacket(spec);
      for (let n = 0; n < bytes.length; n++) {
        const r = parsePacket(bytes.subarray(0, n), { link: spec.link });
        assert.equal(
          r.ok ? 'ok' : r.failure,
          'truncated',
          `prefix of ${n} of ${bytes.length} bytes`,
        );
      }
    }),
    { numRuns: RUNS / 4 },
  );
});

test('flipping any byte of a packet never makes the parser throw', () => {
  fc.assert(
    fc.property(specs, fc.integer({ min: 1, max: 255 }), (spec, xor) => {
      const bytes = buildPacket(spec);
      for (let i = 0; i < bytes.length; i++) {
        const copy = bytes.slice();
        copy[i] = copy[i]! ^ xor;
        checkResult(parsePacket(copy, { link: spec.link }), copy.length);
      }
    }),
    { numRuns: RUNS / 4 },
  );
});

test('random bytes after valid headers never make the parser throw', () => {
  fc.assert(
    fc.property(
      specs,
      fc.integer({ min: 0, max: 80 }),
      fc.uint8Array({ minLength: 1, maxLength: 120 }),
      (spec, keep, tail) => {
        const bytes = buildPacket(spec);
        const mixed = new Uint8Array(Math.min(keep, bytes.length) + tail.length);
        mixed.set(bytes.subarray(0, Math.min(keep, bytes.length)));
        mixed.set(tail, Math.min(keep, bytes.length));
        checkResult(parsePacket(mixed, { link: spec.link }), mixed.length);
      },
    ),
    { numRuns: RUNS * 2 },
  );
});

test('ICMP errors quoting mutated packets never make the parser throw', () => {
  fc.assert(
    fc.property(
      specs,
      fc.uint8Array({ minLength: 0, maxLength: 96 }),
      fc.boolean(),
      (spec, junk, v6) => {
        const quoted = buildPacket({ ...spec, link: 'ip' });
        const quote =
          junk.length > 0
            ? Uint8Array.from(quoted.subarray(0, 60), (x, i) => x ^ (junk[i % junk.length] ?? 0))
            : quoted;
        const bytes = buildPacket({
          src: v6 ? 'fd00::9' : '10.9.9.9',
          dst: v6 ? 'fd00::1' : '10.0.0.1',
          protocol: 'icmp',
          icmp: { type: v6 ? 1 : 3 },
          payload: quote,
        });
        checkResult(parsePacket(bytes), bytes.length);
      },
    ),
    { numRuns: RUNS },
  );
});
