/**
 * The packet parser, header by header: what each packet reads as, and how
 * each kind of bad packet is classified. Packets are made by build.ts and
 * then edited byte by byte where a case needs a bad field.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import { parsePacket, type ParseResult, type ParsedPacket } from '../../testing/packet-record.js';
import { buildPacket, type PacketSpec } from '../../vrouter-agent/packet/index.js';

const TCP = 6;
const UDP = 17;
const SCTP = 132;

function ok(result: ParseResult): ParsedPacket {
  if (!result.ok) assert.fail(`expected a packet, got ${result.failure}: ${result.detail}`);
  return result.packet;
}

function failure(result: ParseResult): string {
  if (result.ok)
    assert.fail(
      `expected a failure, got a packet: ${JSON.stringify(result.packet, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`,
    );
  return result.failure;
}

/** A packet built from `spec`, edited by `edit` (offsets from the start of the IP header when `link` is 'ip'). */
function edited(spec: PacketSpec, edit: (b: Uint8Array) => void): Uint8Array {
  const b = buildPacket({ ...spec, link: 'ip' });
  edit(b);
  return b;
}

const parseIpPacket = (b: Uint8Array) => parsePacket(b, { link: 'ip' });

describe('well-formed packets', () => {
  test('a TCP segment in an Ethernet frame reads as addresses, ports, flags and the IP length', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: '10.1.0.1',
          dst: '10.1.0.2',
          protocol: 'tcp',
          sport: 40000,
          dport: 443,
          tcpFlags: 0x12,
          payload: 100,
        }),
      ),
    );
    assert.deepEqual(
      {
        family: p.family,
        src: p.src,
        dst: p.dst,
        protocol: p.protocol,
        sport: p.sport,
        dport: p.dport,
        tcpFlags: p.tcpFlags,
        length: p.length,
        vlans: p.vlans,
      },
      {
        family: 4,
        src: parseIp('10.1.0.1'),
        dst: parseIp('10.1.0.2'),
        protocol: TCP,
        sport: 40000,
        dport: 443,
        tcpFlags: 0x12,
        length: 140,
        vlans: [],
      },
    );
    assert.equal(p.fragment, undefined);
  });

  test('raw IP input is read from its first byte when the link is ip', () => {
    const p = ok(
      parseIpPacket(
        buildPacket({
          src: '10.1.0.1',
          dst: '10.1.0.2',
          protocol: 'udp',
          sport: 5353,
          dport: 53,
          link: 'ip',
        }),
      ),
    );
    assert.equal(p.protocol, UDP);
    assert.equal(p.dport, 53);
  });

  test('one or two VLAN tags are read outermost first', () => {
    assert.deepEqual(
      ok(
        parsePacket(
          buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'udp', vlans: [100] }),
        ),
      ).vlans,
      [100],
    );
    const p = ok(
      parsePacket(
        buildPacket({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          protocol: 'udp',
          sport: 1,
          dport: 2,
          vlans: [100, 4094],
        }),
      ),
    );
    assert.deepEqual(p.vlans, [100, 4094]);
    assert.equal(p.dport, 2);
  });

  test('IPv4 options are skipped by the header length', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          protocol: 'tcp',
          sport: 7,
          dport: 8,
          ipv4OptionBytes: 40,
        }),
      ),
    );
    assert.equal(p.sport, 7);
    assert.equal(p.length, 60 + 20);
  });

  test('bytes past the IP total length (Ethernet padding) are ignored', () => {
    const b = buildPacket({
      src: '10.0.0.1',
      dst: '10.0.0.2',
      protocol: 'udp',
      sport: 1,
      dport: 2,
    });
    const padded = new Uint8Array(64);
    padded.set(b);
    assert.equal(ok(parsePacket(padded)).length, 28);
  });

  test('SCTP carries ports in its common header', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: 'fd00::1',
          dst: 'fd00::2',
          protocol: 'sctp',
          sport: 36412,
          dport: 38412,
        }),
      ),
    );
    assert.deepEqual([p.family, p.protocol, p.sport, p.dport], [6, SCTP, 36412, 38412]);
  });

  test('IPv6 extension headers are walked to the transport header', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: 'fd00::1',
          dst: 'fd00::2',
          protocol: 'tcp',
          sport: 1000,
          dport: 22,
          ipv6Extensions: ['hop-by-hop', 'routing', 'ah', 'destination'],
        }),
      ),
    );
    assert.deepEqual([p.protocol, p.sport, p.dport, p.extensionHeaders], [TCP, 1000, 22, 4]);
  });

  test('an ICMP echo request and its reply share the identifier and the request type as ports', () => {
    const request = ok(
      parsePacket(
        buildPacket({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          protocol: 'icmp',
          icmp: { type: 8, id: 4242 },
        }),
      ),
    );
    const reply = ok(
      parsePacket(
        buildPacket({
          src: '10.0.0.2',
          dst: '10.0.0.1',
          protocol: 'icmp',
          icmp: { type: 0, id: 4242 },
        }),
      ),
    );
    assert.deepEqual([request.sport, request.dport, request.icmp?.id], [4242, 8, 4242]);
    assert.deepEqual([reply.sport, reply.dport], [4242, 8]);
    const v6 = ok(
      parsePacket(
        buildPacket({
          src: 'fd00::1',
          dst: 'fd00::2',
          protocol: 'icmp',
          icmp: { type: 129, id: 9 },
        }),
      ),
    );
    assert.deepEqual([v6.protocol, v6.sport, v6.dport], [58, 9, 128]);
  });

  test('an ICMP error reads the headers of the packet it quotes', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: '192.0.2.1',
          dst: '10.1.0.1',
          protocol: 'icmp',
          icmp: {
            type: 3,
            code: 4,
            quote: { src: '10.1.0.1', dst: '8.8.8.8', protocol: 'tcp', sport: 40000, dport: 443 },
          },
        }),
      ),
    );
    assert.deepEqual(p.icmp, {
      type: 3,
      code: 4,
      quoted: {
        protocol: TCP,
        src: parseIp('10.1.0.1'),
        dst: parseIp('8.8.8.8'),
        sport: 40000,
        dport: 443,
      },
    });
    assert.deepEqual([p.sport, p.dport], [0, 3]);
  });

  test('an ICMPv6 error quoting an echo request reads the request identifier', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: 'fd00::9',
          dst: 'fd00::1',
          protocol: 'icmp',
          icmp: {
            type: 3,
            quote: {
              src: 'fd00::1',
              dst: 'fd00::2',
              protocol: 'icmp',
              icmp: { type: 128, id: 77 },
            },
          },
        }),
      ),
    );
    assert.deepEqual(p.icmp?.quoted, {
      protocol: 58,
      src: parseIp('fd00::1'),
      dst: parseIp('fd00::2'),
      sport: 77,
      dport: 128,
    });
  });

  test('an ICMP error quoting too little, or quoting another error, has no quoted packet', () => {
    const short = ok(
      parsePacket(
        buildPacket({
          src: '192.0.2.1',
          dst: '10.1.0.1',
          protocol: 'icmp',
          icmp: {
            type: 11,
            quote: { src: '10.1.0.1', dst: '8.8.8.8', protocol: 'udp' },
            quoteBytes: 2,
          },
        }),
      ),
    );
    assert.equal(short.icmp?.quoted, undefined);
    const nested = ok(
      parsePacket(
        buildPacket({
          src: '192.0.2.1',
          dst: '10.1.0.1',
          protocol: 'icmp',
          icmp: {
            type: 3,
            quote: { src: '10.1.0.1', dst: '8.8.8.8', protocol: 'icmp', icmp: { type: 3 } },
          },
        }),
      ),
    );
    assert.equal(nested.icmp?.quoted, undefined);
  });

  test('protocols without ports read with ports 0', () => {
    const p = ok(
      parsePacket(buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 47, payload: 8 })),
    );
    assert.deepEqual([p.protocol, p.hasPorts, p.sport, p.dport], [47, false, 0, 0]);
    const none = ok(parsePacket(buildPacket({ src: 'fd00::1', dst: 'fd00::2', protocol: 59 })));
    assert.deepEqual([none.protocol, none.length], [59, 40]);
  });

  test('a first fragment with its transport header reads as a packet that says it is a fragment', () => {
    for (const src of ['10.0.0.1', 'fd00::1']) {
      const p = ok(
        parsePacket(
          buildPacket({
            src,
            dst: src === '10.0.0.1' ? '10.0.0.2' : 'fd00::2',
            protocol: 'udp',
            sport: 1,
            dport: 53,
            payload: 32,
            fragment: { id: 77, offset: 0, more: true },
          }),
        ),
      );
      assert.deepEqual(p.fragment, { id: 77, offset: 0, more: true });
      assert.equal(p.dport, 53);
    }
  });

  test('an IPv6 atomic fragment (offset 0, no more fragments) is an ordinary packet', () => {
    const p = ok(
      parsePacket(
        buildPacket({
          src: 'fd00::1',
          dst: 'fd00::2',
          protocol: 'tcp',
          sport: 5,
          dport: 6,
          fragment: { id: 1, offset: 0, more: false },
        }),
      ),
    );
    assert.equal(p.fragment, undefined);
    assert.equal(p.dport, 6);
  });
});

describe('classified failures', () => {
  const v4: PacketSpec = { src: '10.0.0.1', dst: '10.0.0.2', protocol: 'tcp', sport: 1, dport: 2 };
  const udp4: PacketSpec = {
    src: '10.0.0.1',
    dst: '10.0.0.2',
    protocol: 'udp',
    sport: 1,
    dport: 2,
    payload: 4,
  };
  const v6: PacketSpec = { src: 'fd00::1', dst: 'fd00::2', protocol: 'tcp', sport: 1, dport: 2 };
  const cases: Array<
    [name: string, bytes: () => Uint8Array, link: 'ip' | 'ethernet', want: string]
  > = [
    ['an empty buffer is truncated', () => new Uint8Array(0), 'ip', 'truncated'],
    [
      'a frame shorter than an Ethernet header is truncated',
      () => buildPacket(v4).subarray(0, 13),
      'ethernet',
      'truncated',
    ],
    [
      'a VLAN tag cut short is truncated',
      () => buildPacket({ ...v4, vlans: [5] }).subarray(0, 16),
      'ethernet',
      'truncated',
    ],
    [
      'three VLAN tags are malformed',
      () => {
        const b = buildPacket({ ...v4, vlans: [1, 2] });
        const x = new Uint8Array(b.length + 4);
        x.set(b.subarray(0, 20));
        x.set([0x81, 0, 0, 3], 20);
        x.set(b.subarray(20), 24);
        return x;
      },
      'ethernet',
      'malformed',
    ],
    [
      'ARP is an unknown ethertype',
      () => {
        const b = new Uint8Array(42);
        b[12] = 0x08;
        b[13] = 0x06;
        return b;
      },
      'ethernet',
      'unknown-ethertype',
    ],
    [
      'an 802.3 length field is an unknown ethertype',
      () => {
        const b = new Uint8Array(60);
        b[12] = 0x00;
        b[13] = 0x2e;
        return b;
      },
      'ethernet',
      'unknown-ethertype',
    ],
    [
      'an IPv4 ethertype with a version 6 header is malformed',
      () => {
        const b = buildPacket(v4);
        b[14] = 0x65;
        return b;
      },
      'ethernet',
      'malformed',
    ],
    [
      'raw input with IP version 5 is an unknown protocol',
      () => edited(v4, (b) => (b[0] = 0x55)),
      'ip',
      'unknown-protocol',
    ],
    [
      'an IPv4 header length below 5 words is malformed',
      () => edited(v4, (b) => (b[0] = 0x44)),
      'ip',
      'malformed',
    ],
    [
      'an IPv4 header length past the bytes is truncated',
      () => edited(v4, (b) => (b[0] = 0x4f)).subarray(0, 40),
      'ip',
      'truncated',
    ],
    [
      'an IPv4 total length below the header length is malformed',
      () =>
        edited(v4, (b) => {
          b[2] = 0;
          b[3] = 19;
        }),
      'ip',
      'malformed',
    ],
    [
      'an IPv4 total length past the bytes is truncated',
      () =>
        edited(v4, (b) => {
          b[2] = 0;
          b[3] = 41;
        }),
      'ip',
      'truncated',
    ],
    [
      'an IPv4 total length too short for the TCP header is malformed',
      () =>
        edited(v4, (b) => {
          b[2] = 0;
          b[3] = 30;
        }),
      'ip',
      'malformed',
    ],
    [
      'a TCP data offset below 5 is malformed',
      () => edited(v4, (b) => (b[32] = 0x40)),
      'ip',
      'malformed',
    ],
    [
      'a TCP data offset past the IP payload is malformed',
      () => edited(v4, (b) => (b[32] = 0x60)),
      'ip',
      'malformed',
    ],
    [
      'a UDP length below 8 is malformed',
      () =>
        edited(udp4, (b) => {
          b[24] = 0;
          b[25] = 7;
        }),
      'ip',
      'malformed',
    ],
    [
      'a UDP length past the IP payload is malformed',
      () =>
        edited(udp4, (b) => {
          b[24] = 0;
          b[25] = 13;
        }),
      'ip',
      'malformed',
    ],
    [
      'a fragment ending past 65535 bytes is malformed',
      () =>
        buildPacket({ ...udp4, payload: 16, link: 'ip', fragment: { offset: 65528, more: false } }),
      'ip',
      'malformed',
    ],
    [
      'an IPv4 non-first fragment is a fragment',
      () => buildPacket({ ...udp4, link: 'ip', fragment: { id: 9, offset: 1480, more: true } }),
      'ip',
      'fragment',
    ],
    [
      'an IPv4 first fragment too short for TCP is a fragment',
      () =>
        buildPacket({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          protocol: TCP,
          omitTransportHeader: true,
          payload: 8,
          link: 'ip',
          fragment: { offset: 0, more: true },
        }),
      'ip',
      'fragment',
    ],
    [
      'an IPv6 header cut short is truncated',
      () => buildPacket({ ...v6, link: 'ip' }).subarray(0, 39),
      'ip',
      'truncated',
    ],
    [
      'an IPv6 payload length past the bytes is truncated',
      () => edited(v6, (b) => (b[5] = 21)),
      'ip',
      'truncated',
    ],
    [
      'an IPv6 payload length too short for TCP is malformed',
      () => edited(v6, (b) => (b[5] = 10)).subarray(0, 50),
      'ip',
      'malformed',
    ],
    [
      'an IPv6 extension header past the payload is malformed',
      () => edited({ ...v6, ipv6Extensions: ['destination'] }, (b) => (b[41] = 200)),
      'ip',
      'malformed',
    ],
    [
      'an IPv6 hop-by-hop header that is not first is malformed',
      () => buildPacket({ ...v6, link: 'ip', ipv6Extensions: ['routing', 'hop-by-hop'] }),
      'ip',
      'malformed',
    ],
    [
      'more IPv6 extension headers than the walk allows are malformed',
      () => buildPacket({ ...v6, link: 'ip', ipv6Extensions: Array(9).fill('destination') }),
      'ip',
      'malformed',
    ],
    [
      'two IPv6 fragment headers are malformed',
      () => {
        const b = buildPacket({ ...v6, link: 'ip', fragment: { offset: 0, more: true } });
        const x = new Uint8Array(b.length + 8);
        x.set(b.subarray(0, 48));
        x.set(b.subarray(40, 48), 48);
        x.set(b.subarray(48), 56);
        x[6] = 44;
        x[40] = 44;
        x[5] = b[5]! + 8;
        return x;
      },
      'ip',
      'malformed',
    ],
    [
      'an IPv6 non-first fragment is a fragment',
      () =>
        buildPacket({
          ...v6,
          link: 'ip',
          payload: 16,
          fragment: { id: 5, offset: 8, more: false },
        }),
      'ip',
      'fragment',
    ],
    [
      'an IPv6 first fragment without its transport header is a fragment',
      () =>
        buildPacket({
          src: 'fd00::1',
          dst: 'fd00::2',
          protocol: UDP,
          omitTransportHeader: true,
          payload: 4,
          link: 'ip',
          fragment: { offset: 0, more: true },
        }),
      'ip',
      'fragment',
    ],
    [
      'ICMP shorter than its header is malformed',
      () =>
        buildPacket({
          src: '10.0.0.1',
          dst: '10.0.0.2',
          protocol: 1,
          omitTransportHeader: true,
          payload: 7,
          link: 'ip',
        }),
      'ip',
      'malformed',
    ],
  ];
  for (const [name, bytes, link, want] of cases) {
    test(name, () => assert.equal(failure(parsePacket(bytes(), { link })), want));
  }

  test('a non-first fragment says which datagram it belongs to', () => {
    const r = parseIpPacket(
      buildPacket({ ...udp4, link: 'ip', fragment: { id: 9, offset: 1480, more: true } }),
    );
    assert.equal(r.ok, false);
    assert.deepEqual(!r.ok && r.fragment, {
      family: 4,
      src: parseIp('10.0.0.1'),
      dst: parseIp('10.0.0.2'),
      protocol: UDP,
      id: 9,
      offset: 1480,
      more: true,
    });
  });

  test('an unknown ethertype is reported with the ethertype', () => {
    const b = new Uint8Array(42);
    b[12] = 0x88;
    b[13] = 0xcc;
    const r = parsePacket(b);
    assert.equal(!r.ok && r.ethertype, 0x88cc);
  });

  test('a capture length shorter than the bytes reads as truncated', () => {
    const b = buildPacket(v4);
    assert.equal(failure(parsePacket(b, { length: b.length - 1 })), 'truncated');
    for (const length of [NaN, -1, 0])
      assert.equal(failure(parsePacket(b, { length })), 'truncated');
    assert.equal(ok(parsePacket(b, { length: b.length + 100 })).dport, 2);
  });
});
