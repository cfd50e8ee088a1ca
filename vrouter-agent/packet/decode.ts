/**
 * The packet decoder: reads the headers of one packet into reusable fields,
 * without allocating, for the datapath's hot loop. `parsePacket`
 * (testing/packet-record.ts) wraps it into an immutable record for tests.
 *
 *   link 'ethernet':  Ethernet II ─┬─ 802.1Q / 802.1ad tags (at most two)
 *                                  └─ IPv4 (0x0800) | IPv6 (0x86DD)
 *   link 'ip':        IPv4 | IPv6, told apart by the version nibble
 *   IPv6: extension headers walked (hop-by-hop first only; routing,
 *         destination options, fragment, AH, mobility, HIP, shim6), at most
 *         MAX_IPV6_EXTENSION_HEADERS, each inside the payload length
 *   transport: TCP (data offset, flags), UDP (length), SCTP (common header),
 *         ICMP (IPv4) / ICMPv6 (IPv6): type, code, echo identifier; errors
 *         carry the offending packet's headers, decoded as `inner*`
 *   any other IP protocol: decoded without ports (ports 0)
 *
 * Outcomes, exactly one per packet (nothing a packet contains throws):
 *
 *   ok                 headers read; the fields below describe the packet
 *   truncated          the bytes end before a fixed-size header, or before the
 *                      length the IP header declares (a short capture)
 *   malformed          declared lengths contradict each other or the header
 *                      rules: IHL < 5, total length < IHL, IPv6 extension
 *                      headers past the payload, TCP data offset < 5 or past
 *                      the IP payload, UDP length < 8 or past the IP payload,
 *                      a fragment ending past 65535, the ethertype's version
 *                      nibble mismatched, more than two VLAN tags, ...
 *   unknownEthertype   an Ethernet frame carrying neither IPv4 nor IPv6 (ARP,
 *                      LLDP, an 802.3 length field, ...); `ethertype` says which
 *   unknownProtocol    raw IP input whose version nibble is neither 4 nor 6
 *   fragment           a fragment without transport header: a non-first
 *                      fragment (`fragment` = FRAGMENT_LATER; addresses,
 *                      protocol, `fragmentId`, `fragmentOffset` are set, ports
 *                      are not), or a first fragment too short to hold its
 *                      transport header (FRAGMENT_FIRST; RFC 1858's tiny
 *                      fragment, RFC 7112's incomplete header chain)
 *
 * A first fragment (offset 0, more fragments) with its whole transport header
 * is `ok` with `fragment` = FRAGMENT_FIRST: it is decided like any packet.
 * An atomic fragment (IPv6 fragment header with offset 0 and M clear) is an
 * ordinary packet (RFC 6946). UDP's length is not checked against the
 * payload of a first fragment (it covers the whole datagram). Checksums are
 * not verified. Bytes past the IP length (Ethernet padding) are ignored.
 */
import type { Ip } from '../../shared/net/ip.js';

export type LinkType = 'ethernet' | 'ip';

export const Outcome = {
  ok: 0,
  truncated: 1,
  malformed: 2,
  unknownEthertype: 3,
  unknownProtocol: 4,
  fragment: 5,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

export const FRAGMENT_NONE = 0;
/** Offset 0, more fragments follow. */
export const FRAGMENT_FIRST = 1;
/** Offset > 0: no transport header. */
export const FRAGMENT_LATER = 2;

/** Extension headers walked before an IPv6 packet is called malformed (Linux's default limit on options is 8 as well). */
export const MAX_IPV6_EXTENSION_HEADERS = 8;
/** 802.1Q/802.1ad tags read before a frame is called malformed (QinQ carries two). */
export const MAX_VLAN_TAGS = 2;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
const ETHERTYPE_QINQ_OLD = 0x9100;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
export const PROTO_SCTP = 132;

/** ICMP error types, whose body quotes the packet that caused them. */
function isIcmpError(family: number, type: number): boolean {
  return family === 4
    ? type === 3 || type === 4 || type === 5 || type === 11 || type === 12
    : type >= 1 && type <= 4;
}

/** Port slots for ICMP (see flows/flow-table.ts `icmpPorts`): echo (id, request type), others (0, type). */
function icmpSport(family: number, type: number, id: number): number {
  return (family === 4 ? type === 8 || type === 0 : type === 128 || type === 129) ? id : 0;
}
function icmpDport(family: number, type: number): number {
  if (family === 4) return type === 0 ? 8 : type;
  return type === 129 ? 128 : type;
}

/**
 * Reusable decoding state. After `decode`, the fields describe the packet as
 * far as it was read; which are meaningful depends on `outcome` (see the file
 * comment). Offsets are into the bytes given to `decode`.
 */
export class PacketDecoder {
  outcome: Outcome = Outcome.ok;
  /** A fixed text saying what was wrong ('' when ok). */
  detail = '';
  /** The ethertype that carried the packet; -1 for raw IP input. */
  ethertype = -1;
  /** VLAN ids, outermost first; -1 when absent. */
  vlanOuter = -1;
  vlanInner = -1;
  /** 4 or 6; 0 until the IP header is read. */
  family = 0;
  l3Offset = 0;
  /** The IP length the header declares: IPv4 total length, IPv6 40 + payload length. */
  l3Length = 0;
  /** Where the source and destination addresses start (4 or 16 bytes, network order). */
  srcOffset = 0;
  dstOffset = 0;
  /** The upper-layer protocol (after IPv6 extension headers); -1 until read. */
  protocol = -1;
  l4Offset = 0;
  l4End = 0;
  /** True for TCP, UDP, SCTP, ICMP and ICMPv6: `sport`/`dport` come from the packet. */
  hasPorts = false;
  /** TCP/UDP/SCTP ports; ICMP: the flow table's slots (echo: identifier and request type; others 0 and the type). */
  sport = 0;
  dport = 0;
  /** The TCP flags byte (FIN 0x01 … CWR 0x80); 0 for other protocols. */
  tcpFlags = 0;
  fragment = FRAGMENT_NONE;
  /** IPv4: 16-bit identification; IPv6: 32-bit fragment identification. Set for fragments. */
  fragmentId = 0;
  /** Bytes. */
  fragmentOffset = 0;
  moreFragments = false;
  /** IPv6 extension headers walked. */
  extensionHeaders = 0;
  icmpType = -1;
  icmpCode = -1;
  /** The echo identifier of an echo request or reply; -1 otherwise. */
  icmpId = -1;
  /** An ICMP error whose quoted packet could be read: its addresses, protocol and ports (same family as the error). */
  inner = false;
  innerProtocol = -1;
  innerSrcOffset = 0;
  innerDstOffset = 0;
  innerSport = 0;
  innerDport = 0;

  private b: Uint8Array = new Uint8Array(0);
  /** Set by walkIpv6: the header that follows the last extension header. */
  private nextHeader = 0;

  /**
   * Decodes the first `length` bytes of `bytes` (clamped to the array; a
   * NaN or negative length reads nothing) as a packet of `link` type.
   * Returns the outcome, also left in `outcome`.
   */
  decode(bytes: Uint8Array, length: number, link: LinkType): Outcome {
    this.reset(bytes);
    const end = length > 0 ? Math.min(bytes.length, Math.floor(length)) : 0;
    const b = bytes;
    if (link === 'ip') {
      if (end < 1) return this.fail(Outcome.truncated, 'empty packet');
      const version = b[0]! >> 4;
      if (version === 4) return this.ipv4(0, end);
      if (version === 6) return this.ipv6(0, end);
      return this.fail(Outcome.unknownProtocol, 'IP version is neither 4 nor 6');
    }
    if (end < 14) return this.fail(Outcome.truncated, 'shorter than an Ethernet header');
    let type = (b[12]! << 8) | b[13]!;
    let off = 14;
    let tags = 0;
    while (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ || type === ETHERTYPE_QINQ_OLD) {
      if (tags === MAX_VLAN_TAGS) return this.fail(Outcome.malformed, 'more than two VLAN tags');
      if (off + 4 > end) return this.fail(Outcome.truncated, 'VLAN tag cut short');
      const vid = ((b[off]! << 8) | b[off + 1]!) & 0xfff;
      if (tags === 0) this.vlanOuter = vid;
      else this.vlanInner = vid;
      type = (b[off + 2]! << 8) | b[off + 3]!;
      off += 4;
      tags++;
    }
    this.ethertype = type;
    if (type === ETHERTYPE_IPV4) {
      if (end - off >= 1 && b[off]! >> 4 !== 4)
        return this.fail(Outcome.malformed, 'IPv4 ethertype with an IP version other than 4');
      return this.ipv4(off, end);
    }
    if (type === ETHERTYPE_IPV6) {
      if (end - off >= 1 && b[off]! >> 4 !== 6)
        return this.fail(Outcome.malformed, 'IPv6 ethertype with an IP version other than 6');
      return this.ipv6(off, end);
    }
    return this.fail(
      Outcome.unknownEthertype,
      type < 0x0600
        ? 'an 802.3 length field, not an ethertype'
        : 'an ethertype other than IPv4 and IPv6',
    );
  }

  private reset(bytes: Uint8Array): void {
    this.b = bytes;
    this.outcome = Outcome.ok;
    this.detail = '';
    this.ethertype = -1;
    this.vlanOuter = -1;
    this.vlanInner = -1;
    this.family = 0;
    this.l3Offset = 0;
    this.l3Length = 0;
    this.srcOffset = 0;
    this.dstOffset = 0;
    this.protocol = -1;
    this.l4Offset = 0;
    this.l4End = 0;
    this.hasPorts = false;
    this.sport = 0;
    this.dport = 0;
    this.tcpFlags = 0;
    this.fragment = FRAGMENT_NONE;
    this.fragmentId = 0;
    this.fragmentOffset = 0;
    this.moreFragments = false;
    this.extensionHeaders = 0;
    this.icmpType = -1;
    this.icmpCode = -1;
    this.icmpId = -1;
    this.inner = false;
    this.innerProtocol = -1;
    this.innerSrcOffset = 0;
    this.innerDstOffset = 0;
    this.innerSport = 0;
    this.innerDport = 0;
  }

  private fail(outcome: Outcome, detail: string): Outcome {
    this.outcome = outcome;
    this.detail = detail;
    return outcome;
  }

  private ipv4(o: number, end: number): Outcome {
    const b = this.b;
    if (end - o < 20) return this.fail(Outcome.truncated, 'shorter than an IPv4 header');
    const ihl = (b[o]! & 15) * 4;
    if (ihl < 20) return this.fail(Outcome.malformed, 'IPv4 header length below 20 bytes');
    if (o + ihl > end) return this.fail(Outcome.truncated, 'IPv4 options cut short');
    const total = (b[o + 2]! << 8) | b[o + 3]!;
    if (total < ihl)
      return this.fail(Outcome.malformed, 'IPv4 total length shorter than its header');
    if (o + total > end)
      return this.fail(Outcome.truncated, 'fewer bytes than the IPv4 total length');
    this.family = 4;
    this.l3Offset = o;
    this.l3Length = total;
    this.srcOffset = o + 12;
    this.dstOffset = o + 16;
    this.protocol = b[o + 9]!;
    const flags = (b[o + 6]! << 8) | b[o + 7]!;
    const offset = (flags & 0x1fff) * 8;
    const more = (flags & 0x2000) !== 0;
    if (offset > 0 || more) {
      this.fragmentId = (b[o + 4]! << 8) | b[o + 5]!;
      this.fragmentOffset = offset;
      this.moreFragments = more;
      if (offset + total - ihl > 65535)
        return this.fail(Outcome.malformed, 'a fragment that ends past 65535 bytes');
      if (offset > 0) {
        this.fragment = FRAGMENT_LATER;
        return this.fail(Outcome.fragment, 'a non-first fragment carries no transport header');
      }
      this.fragment = FRAGMENT_FIRST;
    }
    return this.transport(o + ihl, o + total);
  }

  private ipv6(o: number, end: number): Outcome {
    const b = this.b;
    if (end - o < 40) return this.fail(Outcome.truncated, 'shorter than an IPv6 header');
    const l3End = o + 40 + ((b[o + 4]! << 8) | b[o + 5]!);
    if (l3End > end)
      return this.fail(Outcome.truncated, 'fewer bytes than the IPv6 payload length');
    this.family = 6;
    this.l3Offset = o;
    this.l3Length = l3End - o;
    this.srcOffset = o + 8;
    this.dstOffset = o + 24;
    const at = this.walkIpv6(b[o + 6]!, o + 40, l3End, true);
    if (at < 0) return this.outcome;
    this.protocol = this.nextHeader;
    return this.transport(at, l3End);
  }

  /**
   * Walks IPv6 extension headers from `start` (whose type is `nh`) within
   * `limit`. Returns the upper-layer header's offset (its type in
   * `nextHeader`), or -1. Outer packets record fragments and failures;
   * quoted (inner) packets just give up with -1.
   */
  private walkIpv6(nh: number, start: number, limit: number, outer: boolean): number {
    const b = this.b;
    let off = start;
    let count = 0;
    let sawFragment = false;
    for (;;) {
      if (
        nh !== 0 &&
        nh !== 43 &&
        nh !== 44 &&
        nh !== 60 &&
        nh !== 51 &&
        nh !== 135 &&
        nh !== 139 &&
        nh !== 140
      )
        break;
      if (++count > MAX_IPV6_EXTENSION_HEADERS)
        return outer ? this.walkFail('more IPv6 extension headers than the parser walks') : -1;
      if (nh === 0 && count !== 1)
        return outer ? this.walkFail('an IPv6 hop-by-hop header that is not first') : -1;
      if (nh === 44) {
        if (sawFragment) return outer ? this.walkFail('two IPv6 fragment headers') : -1;
        sawFragment = true;
        if (off + 8 > limit)
          return outer ? this.walkFail('an IPv6 fragment header past the payload') : -1;
        const word = (b[off + 2]! << 8) | b[off + 3]!;
        const offset = (word >> 3) * 8;
        const more = (word & 1) === 1;
        const next = b[off]!;
        off += 8;
        if (offset > 0 && !outer) return -1;
        if (outer && (offset > 0 || more)) {
          this.fragmentId =
            ((b[off - 4]! << 24) | (b[off - 3]! << 16) | (b[off - 2]! << 8) | b[off - 1]!) >>> 0;
          this.fragmentOffset = offset;
          this.moreFragments = more;
          if (offset + (limit - off) > 65535)
            return this.walkFail('a fragment that ends past 65535 bytes');
          if (offset > 0) {
            this.fragment = FRAGMENT_LATER;
            this.protocol = next;
            this.extensionHeaders = count;
            this.fail(Outcome.fragment, 'a non-first fragment carries no transport header');
            return -1;
          }
          this.fragment = FRAGMENT_FIRST;
        }
        nh = next;
        continue;
      }
      if (off + 2 > limit)
        return outer ? this.walkFail('an IPv6 extension header past the payload') : -1;
      const len = nh === 51 ? (b[off + 1]! + 2) * 4 : (b[off + 1]! + 1) * 8;
      if (off + len > limit)
        return outer ? this.walkFail('an IPv6 extension header past the payload') : -1;
      nh = b[off]!;
      off += len;
    }
    if (outer) this.extensionHeaders = count;
    this.nextHeader = nh;
    return off;
  }

  private walkFail(detail: string): number {
    this.fail(Outcome.malformed, detail);
    return -1;
  }

  /** A transport header shorter than it must be: a tiny first fragment, or malformed. */
  private short(detail: string): Outcome {
    return this.fragment === FRAGMENT_FIRST
      ? this.fail(Outcome.fragment, 'a first fragment too short for its transport header')
      : this.fail(Outcome.malformed, detail);
  }

  private transport(o: number, end: number): Outcome {
    const b = this.b;
    const len = end - o;
    const p = this.protocol;
    this.l4Offset = o;
    this.l4End = end;
    if (p === PROTO_TCP) {
      if (len < 20) return this.short('IP payload shorter than a TCP header');
      const dataOffset = (b[o + 12]! >> 4) * 4;
      if (dataOffset < 20) return this.fail(Outcome.malformed, 'TCP data offset below 5');
      if (dataOffset > len) return this.short('TCP data offset past the IP payload');
      this.tcpFlags = b[o + 13]!;
    } else if (p === PROTO_UDP) {
      if (len < 8) return this.short('IP payload shorter than a UDP header');
      const udpLength = (b[o + 4]! << 8) | b[o + 5]!;
      if (udpLength < 8) return this.fail(Outcome.malformed, 'UDP length below 8');
      if (udpLength > len && this.fragment === FRAGMENT_NONE)
        return this.fail(Outcome.malformed, 'UDP length past the IP payload');
    } else if (p === PROTO_SCTP) {
      if (len < 12) return this.short('IP payload shorter than an SCTP common header');
    } else if (
      (p === PROTO_ICMP && this.family === 4) ||
      (p === PROTO_ICMPV6 && this.family === 6)
    ) {
      if (len < 8) return this.short('IP payload shorter than an ICMP header');
      const type = b[o]!;
      this.icmpType = type;
      this.icmpCode = b[o + 1]!;
      const id = (b[o + 4]! << 8) | b[o + 5]!;
      if (this.family === 4 ? type === 8 || type === 0 : type === 128 || type === 129)
        this.icmpId = id;
      this.sport = icmpSport(this.family, type, id);
      this.dport = icmpDport(this.family, type);
      this.hasPorts = true;
      if (isIcmpError(this.family, type) && this.fragment === FRAGMENT_NONE)
        this.quoted(o + 8, end);
      return Outcome.ok;
    } else {
      return Outcome.ok;
    }
    this.sport = (b[o]! << 8) | b[o + 1]!;
    this.dport = (b[o + 2]! << 8) | b[o + 3]!;
    this.hasPorts = true;
    return Outcome.ok;
  }

  /** The packet an ICMP error quotes: IP header and the first bytes of its transport header (as many as were quoted). */
  private quoted(o: number, end: number): void {
    const b = this.b;
    const family = this.family;
    let at: number;
    let protocol: number;
    if (family === 4) {
      if (end - o < 20 || b[o]! >> 4 !== 4) return;
      const ihl = (b[o]! & 15) * 4;
      if (ihl < 20 || o + ihl > end) return;
      if ((((b[o + 6]! << 8) | b[o + 7]!) & 0x1fff) !== 0) return;
      protocol = b[o + 9]!;
      this.innerSrcOffset = o + 12;
      this.innerDstOffset = o + 16;
      at = o + ihl;
    } else {
      if (end - o < 40 || b[o]! >> 4 !== 6) return;
      at = this.walkIpv6(b[o + 6]!, o + 40, end, false);
      if (at < 0) return;
      protocol = this.nextHeader;
      this.innerSrcOffset = o + 8;
      this.innerDstOffset = o + 24;
    }
    const len = end - at;
    if (protocol === PROTO_TCP || protocol === PROTO_UDP || protocol === PROTO_SCTP) {
      if (len < 4) return;
      this.innerSport = (b[at]! << 8) | b[at + 1]!;
      this.innerDport = (b[at + 2]! << 8) | b[at + 3]!;
    } else if (
      (protocol === PROTO_ICMP && family === 4) ||
      (protocol === PROTO_ICMPV6 && family === 6)
    ) {
      if (len < 6) return;
      const type = b[at]!;
      if (isIcmpError(family, type)) return;
      this.innerSport = icmpSport(family, type, (b[at + 4]! << 8) | b[at + 5]!);
      this.innerDport = icmpDport(family, type);
    }
    this.innerProtocol = protocol;
    this.inner = true;
  }
}

/** The address at `offset` of `bytes` (network order) as an Ip: IPv4 a number, IPv6 a bigint. */
export function readIp(bytes: Uint8Array, offset: number, family: 4 | 6): Ip {
  if (family === 4) return word(bytes, offset);
  return (
    (BigInt(word(bytes, offset)) << 96n) |
    (BigInt(word(bytes, offset + 4)) << 64n) |
    (BigInt(word(bytes, offset + 8)) << 32n) |
    BigInt(word(bytes, offset + 12))
  );
}

function word(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}
