/**
 * Addresses as the hot path wants them: an IPv4 address is a `number`
 * (0 .. 2^32-1), an IPv6 address a `bigint` (0 .. 2^128-1). The family is the
 * JavaScript type, so a Map keyed by `Ip` needs no tagging and a v4 lookup
 * never touches BigInt arithmetic.
 *
 * Parsing is strict, as Go's net.ParseIP/ParseCIDR are (Kubernetes validates
 * with them): dotted quads without shorthand, no zone ids, prefix lengths in
 * range. Host bits in a CIDR are accepted (the API accepts them) and reported
 * so that callers can normalise.
 */
import { isIP } from 'node:net';
import { parseIp as parseBigIp, stringifyIp } from 'ip-bigint';

export type Ip = number | bigint;
export type IpFamily = 4 | 6;

export function familyOf(ip: Ip): IpFamily {
  return typeof ip === 'number' ? 4 : 6;
}

/** Parses an address, or returns undefined when it is not one. */
export function tryParseIp(text: string): Ip | undefined {
  const family = text.includes('%') ? 0 : isIP(text);
  if (family === 4) {
    let n = 0;
    for (const part of text.split('.')) n = n * 256 + Number(part);
    return n;
  }
  if (family === 6) return parseBigIp(text).number;
  return undefined;
}

export function parseIp(text: string): Ip {
  const ip = tryParseIp(text);
  if (ip === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  return ip;
}

export function formatIp(ip: Ip): string {
  if (typeof ip === 'number')
    return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
  return stringifyIp({ number: ip, version: 6 });
}

/** A CIDR as numbers: the inclusive range it covers. */
export interface Cidr {
  readonly family: IpFamily;
  /** First address (host bits cleared). */
  readonly start: Ip;
  /** Last address. */
  readonly end: Ip;
  readonly prefixLength: number;
  /** Canonical text: network address / prefix length. */
  readonly text: string;
  /** True when the written address had host bits set ("10.0.0.1/8"). */
  readonly hadHostBits: boolean;
}

/** Parses "address/length"; returns an error message when it is not a CIDR. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  if (slash < 0) return 'must be an address and a prefix length, like 10.0.0.0/8';
  const address = tryParseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (address === undefined) return `${JSON.stringify(text.slice(0, slash))} is not an IP address`;
  const bits = typeof address === 'number' ? 32 : 128;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText) || Number(lengthText) > bits) {
    return `prefix length ${JSON.stringify(lengthText)} is not between 0 and ${bits}`;
  }
  const prefixLength = Number(lengthText);
  const hostBits = bits - prefixLength;
  let start: Ip;
  let end: Ip;
  if (typeof address === 'number') {
    const size = 2 ** hostBits;
    start = Math.floor(address / size) * size;
    end = start + size - 1;
  } else {
    const size = 1n << BigInt(hostBits);
    start = (address / size) * size;
    end = start + size - 1n;
  }
  return {
    family: typeof address === 'number' ? 4 : 6,
    start,
    end,
    prefixLength,
    text: `${formatIp(start)}/${prefixLength}`,
    hadHostBits: start !== address,
  };
}
