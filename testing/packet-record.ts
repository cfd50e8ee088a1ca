/**
 * Packets as records: `parsePacket(bytes, { link })` gives the headers of one
 * packet as an immutable `ParsedPacket`, or a classified `ParseFailure`.
 * The datapath's hot loop uses the allocation-free PacketDecoder
 * (vrouter-agent/packet/decode.ts) directly; this is the same decoding as
 * records, for tests. The zone a packet belongs to is not in the bytes: the
 * caller knows it.
 */
import type { Ip } from '../shared/net/ip.js';
import {
  FRAGMENT_FIRST,
  FRAGMENT_LATER,
  Outcome,
  PacketDecoder,
  readIp,
  type LinkType,
} from '../vrouter-agent/packet/decode.js';

/**
 * Why a packet could not be made a record (decode.ts has the full rules):
 *
 * - `truncated`: the bytes end before a header, or before the IP length.
 * - `malformed`: declared lengths or header fields contradict each other.
 * - `unknown-ethertype`: an Ethernet frame that carries neither IPv4 nor IPv6.
 * - `unknown-protocol`: raw IP input with a version other than 4 and 6.
 * - `fragment`: a non-first fragment (no ports: `fragment` says which
 *   datagram it belongs to), or a first fragment too short for its transport
 *   header (`fragment` undefined).
 */
export type ParseFailure =
  | 'truncated'
  | 'malformed'
  | 'unknown-ethertype'
  | 'unknown-protocol'
  | 'fragment';
export const PARSE_FAILURES: readonly ParseFailure[] = [
  'truncated',
  'malformed',
  'unknown-ethertype',
  'unknown-protocol',
  'fragment',
];

/** The headers an ICMP error quotes: the packet that caused it, as its sender sent it. */
export interface QuotedPacket {
  readonly protocol: number;
  readonly src: Ip;
  readonly dst: Ip;
  /** As in ParsedPacket: ports, or ICMP's flow slots; 0 for protocols without ports. */
  readonly sport: number;
  readonly dport: number;
}

export interface IcmpHeader {
  readonly type: number;
  readonly code: number;
  /** The identifier of an echo request or reply; undefined for other types. */
  readonly id?: number;
  /** For an error (ICMP 3, 4, 5, 11, 12; ICMPv6 1–4): the quoted packet, when its headers could be read. */
  readonly quoted?: QuotedPacket;
}

/** Where a fragment sits in its datagram. */
export interface FragmentPosition {
  /** IPv4: the 16-bit identification; IPv6: the 32-bit fragment identification. */
  readonly id: number;
  /** Bytes from the start of the datagram's payload. */
  readonly offset: number;
  /** More fragments follow. */
  readonly more: boolean;
}

export interface ParsedPacket {
  readonly family: 4 | 6;
  readonly src: Ip;
  readonly dst: Ip;
  /** The upper-layer protocol, after any IPv6 extension headers. */
  readonly protocol: number;
  /**
   * True for TCP, UDP, SCTP, ICMP and ICMPv6. Ports are the packet's for
   * TCP, UDP and SCTP; for ICMP they are the flow table's slots (echo: the
   * identifier and the request type, both ways; others: 0 and the type).
   * Other protocols: false, ports 0.
   */
  readonly hasPorts: boolean;
  readonly sport: number;
  readonly dport: number;
  /** The TCP flags byte; 0 for other protocols. */
  readonly tcpFlags: number;
  /** The IP length the header declares (IPv4 total length, IPv6 40 + payload length): what flows count. */
  readonly length: number;
  /** 802.1Q/802.1ad VLAN ids, outermost first; empty for untagged frames and raw IP. */
  readonly vlans: readonly number[];
  /** Set for a first fragment (offset 0, more to come), which carries the transport header and is decided like any packet. */
  readonly fragment?: FragmentPosition;
  readonly icmp?: IcmpHeader;
  /** IPv6 extension headers walked (0 for IPv4). */
  readonly extensionHeaders: number;
}

/** A non-first fragment: which datagram it belongs to, without ports. */
export interface FragmentOf extends FragmentPosition {
  readonly family: 4 | 6;
  readonly src: Ip;
  readonly dst: Ip;
  /** IPv4: the datagram's protocol; IPv6: the fragment header's next header. */
  readonly protocol: number;
}

export type ParseResult =
  | { readonly ok: true; readonly packet: ParsedPacket }
  | {
      readonly ok: false;
      readonly failure: ParseFailure;
      /** What exactly was wrong, as a fixed text. */
      readonly detail: string;
      /** For unknown-ethertype: the ethertype (or 802.3 length). */
      readonly ethertype?: number;
      /** For a non-first fragment. */
      readonly fragment?: FragmentOf;
    };

export interface ParseOptions {
  /** What the bytes start with: an Ethernet header ('ethernet', the default) or an IP header ('ip'). */
  readonly link?: LinkType;
  /** Bytes to read (default: all); a shorter capture than the packet reads as truncated. */
  readonly length?: number;
}

const NO_VLANS: readonly number[] = Object.freeze([]);
const FAILURE_OF: Record<Exclude<Outcome, 0>, ParseFailure> = {
  [Outcome.truncated]: 'truncated',
  [Outcome.malformed]: 'malformed',
  [Outcome.unknownEthertype]: 'unknown-ethertype',
  [Outcome.unknownProtocol]: 'unknown-protocol',
  [Outcome.fragment]: 'fragment',
};

const shared = new PacketDecoder();

/** Parses one packet. Never throws for any bytes. */
export function parsePacket(bytes: Uint8Array, options: ParseOptions = {}): ParseResult {
  return recordOf(shared, bytes, options.length ?? bytes.length, options.link ?? 'ethernet');
}

/** Decodes with `d` and builds the record (for callers that keep their own decoder). */
export function recordOf(
  d: PacketDecoder,
  bytes: Uint8Array,
  length: number,
  link: LinkType,
): ParseResult {
  const outcome = d.decode(bytes, length, link);
  if (outcome !== Outcome.ok) {
    const failure = FAILURE_OF[outcome];
    if (outcome === Outcome.unknownEthertype)
      return { ok: false, failure, detail: d.detail, ethertype: d.ethertype };
    if (outcome === Outcome.fragment && d.fragment === FRAGMENT_LATER) {
      const family = d.family as 4 | 6;
      const fragment: FragmentOf = {
        family,
        src: readIp(bytes, d.srcOffset, family),
        dst: readIp(bytes, d.dstOffset, family),
        protocol: d.protocol,
        id: d.fragmentId,
        offset: d.fragmentOffset,
        more: d.moreFragments,
      };
      return { ok: false, failure, detail: d.detail, fragment };
    }
    return { ok: false, failure, detail: d.detail };
  }
  return { ok: true, packet: packetOf(d, bytes) };
}

/** The record of a packet `d` has just decoded as ok. */
export function packetOf(d: PacketDecoder, bytes: Uint8Array): ParsedPacket {
  const family = d.family as 4 | 6;
  const vlans =
    d.vlanOuter < 0 ? NO_VLANS : d.vlanInner < 0 ? [d.vlanOuter] : [d.vlanOuter, d.vlanInner];
  let icmp: IcmpHeader | undefined;
  if (d.icmpType >= 0) {
    const quoted: QuotedPacket | undefined = d.inner
      ? {
          protocol: d.innerProtocol,
          src: readIp(bytes, d.innerSrcOffset, family),
          dst: readIp(bytes, d.innerDstOffset, family),
          sport: d.innerSport,
          dport: d.innerDport,
        }
      : undefined;
    icmp = {
      type: d.icmpType,
      code: d.icmpCode,
      ...(d.icmpId >= 0 ? { id: d.icmpId } : {}),
      ...(quoted ? { quoted } : {}),
    };
  }
  return {
    family,
    src: readIp(bytes, d.srcOffset, family),
    dst: readIp(bytes, d.dstOffset, family),
    protocol: d.protocol,
    hasPorts: d.hasPorts,
    sport: d.sport,
    dport: d.dport,
    tcpFlags: d.tcpFlags,
    length: d.l3Length,
    vlans,
    ...(d.fragment === FRAGMENT_FIRST
      ? { fragment: { id: d.fragmentId, offset: 0, more: d.moreFragments } }
      : {}),
    ...(icmp ? { icmp } : {}),
    extensionHeaders: d.extensionHeaders,
  };
}
