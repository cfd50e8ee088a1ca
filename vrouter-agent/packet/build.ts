/**
 * Packets from a description: the bytes `parsePacket` reads, for tests,
 * benchmarks and tools that need a packet to push through a datapath.
 * IPv4 header checksums are computed; transport checksums are left 0 (no
 * one here verifies them).
 */
import { parseIp, type Ip } from '../../shared/net/ip.js';
import {
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
  type LinkType,
} from './decode.js';

export type Ipv6Extension = 'hop-by-hop' | 'routing' | 'destination' | 'ah';

export interface PacketSpec {
  /** Addresses of one family: text or Ip. */
  readonly src: Ip | string;
  readonly dst: Ip | string;
  /** 'icmp' means ICMP for IPv4 and ICMPv6 for IPv6. Numbers of protocols other than TCP, UDP, SCTP and ICMP get no transport header. */
  readonly protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | number;
  readonly sport?: number;
  readonly dport?: number;
  /** TCP flags byte (flows/flow-table.ts `TcpFlag`); default SYN. */
  readonly tcpFlags?: number;
  readonly icmp?: {
    /** Default: echo request. */
    readonly type?: number;
    readonly code?: number;
    /** Echo identifier (bytes 4–5). */
    readonly id?: number;
    /** For errors: the packet to quote (its IP headers and `quoteBytes` of what follows, default 8). */
    readonly quote?: PacketSpec;
    readonly quoteBytes?: number;
  };
  /** Write only the payload after the IP headers, no transport header (for packets too short to hold one). */
  readonly omitTransportHeader?: boolean;
  /** Payload after the transport header: a length of zero bytes, or the bytes. */
  readonly payload?: number | Uint8Array;
  /** Default 'ethernet'. */
  readonly link?: LinkType;
  readonly vlans?: readonly number[];
  /** IPv4 option bytes (NOPs), a multiple of 4 up to 40. */
  readonly ipv4OptionBytes?: number;
  /** IPv6 extension headers before the transport header (and before a fragment header). */
  readonly ipv6Extensions?: readonly Ipv6Extension[];
  /**
   * Makes the packet one fragment of a datagram. Offset in bytes (a multiple
   * of 8): 0 writes the transport header, more than 0 writes only payload.
   */
  readonly fragment?: { readonly id?: number; readonly offset?: number; readonly more?: boolean };
}

const EXTENSION_CODE: Record<Ipv6Extension, number> = {
  'hop-by-hop': 0,
  routing: 43,
  destination: 60,
  ah: 51,
};

function ip(x: Ip | string): Ip {
  return typeof x === 'string' ? parseIp(x) : x;
}

function protocolNumber(p: PacketSpec['protocol'], family: 4 | 6): number {
  if (typeof p === 'number') return p;
  return {
    tcp: PROTO_TCP,
    udp: PROTO_UDP,
    sctp: PROTO_SCTP,
    icmp: family === 4 ? PROTO_ICMP : PROTO_ICMPV6,
  }[p];
}

function putIp(out: Uint8Array, at: number, a: Ip): void {
  if (typeof a === 'number') {
    out[at] = a >>> 24;
    out[at + 1] = (a >>> 16) & 255;
    out[at + 2] = (a >>> 8) & 255;
    out[at + 3] = a & 255;
    return;
  }
  for (let i = 0; i < 16; i++) out[at + i] = Number((a >> BigInt(8 * (15 - i))) & 255n);
}

function payloadOf(spec: PacketSpec): Uint8Array {
  const p = spec.payload ?? 0;
  return typeof p === 'number' ? new Uint8Array(p) : p;
}

/** The transport header and payload. */
function transport(spec: PacketSpec, protocol: number, family: 4 | 6): Uint8Array {
  const payload = payloadOf(spec);
  const sport = spec.sport ?? 0;
  const dport = spec.dport ?? 0;
  let header: Uint8Array;
  if (protocol === PROTO_TCP) {
    header = new Uint8Array(20);
    header[12] = 5 << 4;
    header[13] = spec.tcpFlags ?? 0x02;
    header[14] = 0xff;
    header[15] = 0xff;
  } else if (protocol === PROTO_UDP) {
    header = new Uint8Array(8);
    const len = 8 + payload.length;
    header[4] = len >> 8;
    header[5] = len & 255;
  } else if (protocol === PROTO_SCTP) {
    header = new Uint8Array(12);
  } else if (
    (protocol === PROTO_ICMP && family === 4) ||
    (protocol === PROTO_ICMPV6 && family === 6)
  ) {
    const i = spec.icmp ?? {};
    let quote: Uint8Array = new Uint8Array(0);
    if (i.quote !== undefined) {
      const { bytes, headerBytes } = ipPacket({ ...i.quote, link: 'ip' });
      quote = bytes.subarray(0, Math.min(bytes.length, headerBytes + (i.quoteBytes ?? 8)));
    }
    header = new Uint8Array(8 + quote.length);
    header[0] = i.type ?? (family === 4 ? 8 : 128);
    header[1] = i.code ?? 0;
    header[4] = (i.id ?? 0) >> 8;
    header[5] = (i.id ?? 0) & 255;
    header.set(quote, 8);
    const out = new Uint8Array(header.length + payload.length);
    out.set(header);
    out.set(payload, header.length);
    return out;
  } else {
    return payload;
  }
  header[0] = sport >> 8;
  header[1] = sport & 255;
  header[2] = dport >> 8;
  header[3] = dport & 255;
  const out = new Uint8Array(header.length + payload.length);
  out.set(header);
  out.set(payload, header.length);
  return out;
}

/** An IP packet, and how many bytes its IP headers (with IPv6 extension headers) take. */
function ipPacket(spec: PacketSpec): { bytes: Uint8Array; headerBytes: number } {
  const src = ip(spec.src);
  const dst = ip(spec.dst);
  const family = typeof src === 'number' ? 4 : 6;
  if ((typeof dst === 'number' ? 4 : 6) !== family)
    throw new TypeError('src and dst must be of one family');
  const protocol = protocolNumber(spec.protocol, family);
  const fragment = spec.fragment;
  const offset = fragment?.offset ?? 0;
  if (offset % 8 !== 0) throw new RangeError('fragment offset must be a multiple of 8');
  const body =
    spec.omitTransportHeader || (fragment !== undefined && offset > 0)
      ? payloadOf(spec)
      : transport(spec, protocol, family);
  if (family === 4) {
    const options = spec.ipv4OptionBytes ?? 0;
    if (options % 4 !== 0 || options > 40)
      throw new RangeError('IPv4 options must be a multiple of 4 up to 40 bytes');
    const ihl = 20 + options;
    const out = new Uint8Array(ihl + body.length);
    out[0] = 0x40 | (ihl / 4);
    out[2] = out.length >> 8;
    out[3] = out.length & 255;
    if (fragment !== undefined) {
      const id = fragment.id ?? 0;
      out[4] = (id >> 8) & 255;
      out[5] = id & 255;
      const word = (offset / 8) | (fragment.more ? 0x2000 : 0);
      out[6] = word >> 8;
      out[7] = word & 255;
    }
    out[8] = 64;
    out[9] = protocol;
    putIp(out, 12, src);
    putIp(out, 16, dst);
    out.fill(1, 20, ihl);
    let sum = 0;
    for (let i = 0; i < ihl; i += 2) sum += (out[i]! << 8) | out[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const checksum = ~sum & 0xffff;
    out[10] = checksum >> 8;
    out[11] = checksum & 255;
    out.set(body, ihl);
    return { bytes: out, headerBytes: ihl };
  }
  const headers: Array<{ code: number; bytes: Uint8Array }> = [];
  for (const e of spec.ipv6Extensions ?? []) {
    const code = EXTENSION_CODE[e];
    const bytes = new Uint8Array(code === 51 ? 12 : 8);
    bytes[1] = code === 51 ? 1 : 0;
    headers.push({ code, bytes });
  }
  if (fragment !== undefined) {
    const bytes = new Uint8Array(8);
    const word = offset | (fragment.more ? 1 : 0);
    bytes[2] = word >> 8;
    bytes[3] = word & 255;
    const id = (fragment.id ?? 0) >>> 0;
    bytes[4] = id >>> 24;
    bytes[5] = (id >>> 16) & 255;
    bytes[6] = (id >>> 8) & 255;
    bytes[7] = id & 255;
    headers.push({ code: 44, bytes });
  }
  const extBytes = headers.reduce((n, h) => n + h.bytes.length, 0);
  const out = new Uint8Array(40 + extBytes + body.length);
  out[0] = 0x60;
  const payloadLength = extBytes + body.length;
  out[4] = payloadLength >> 8;
  out[5] = payloadLength & 255;
  out[6] = headers[0]?.code ?? protocol;
  out[7] = 64;
  putIp(out, 8, src);
  putIp(out, 24, dst);
  let at = 40;
  headers.forEach((h, k) => {
    h.bytes[0] = headers[k + 1]?.code ?? protocol;
    out.set(h.bytes, at);
    at += h.bytes.length;
  });
  out.set(body, at);
  return { bytes: out, headerBytes: at };
}

/** The bytes of the packet `spec` describes. Throws (TypeError/RangeError) for descriptions no packet fits. */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const { bytes } = ipPacket(spec);
  if ((spec.link ?? 'ethernet') === 'ip') return bytes;
  const vlans = spec.vlans ?? [];
  const out = new Uint8Array(14 + 4 * vlans.length + bytes.length);
  out.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
  let at = 12;
  vlans.forEach((vid, k) => {
    const tpid = k === 0 && vlans.length > 1 ? 0x88a8 : 0x8100;
    out[at] = tpid >> 8;
    out[at + 1] = tpid & 255;
    out[at + 2] = (vid >> 8) & 0x0f;
    out[at + 3] = vid & 255;
    at += 4;
  });
  const type = bytes[0]! >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
  out[at] = type >> 8;
  out[at + 1] = type & 255;
  out.set(bytes, at + 2);
  return out;
}
