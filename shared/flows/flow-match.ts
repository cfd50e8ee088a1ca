/**
 * The flow match expression, vRouter's `flow --match`, one language for the
 * CLI and the agent (which evaluates it: FlowFilter.match):
 *
 *   ip[:port][,ip[:port]][ & proto tcp|udp|sctp|icmp|icmpv6|NUMBER]
 *
 * IPv6 in brackets when it has a port ("[fd00::1]:80"). The two ends match
 * in either order. Addresses compare as numbers (parsed), so "fd00::1" and
 * "fd00:0::1" are one address. Bounded: at most MATCH_MAX_CHARS characters.
 */
import { ValidationError } from '../errors.js';
import { type Ip, tryParseIp } from '../net/ip.js';

export const MATCH_MAX_CHARS = 256;

export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
};

/** One end of a match: an address and maybe a port. */
export interface MatchEnd {
  readonly ip: string;
  readonly port?: number;
}

export interface Match {
  readonly a: MatchEnd;
  readonly b?: MatchEnd;
  readonly protocol?: number;
}

/** What a match reads of a flow. */
export interface MatchedFlow {
  readonly source: string;
  readonly sourcePort: number;
  readonly destination: string;
  readonly destinationPort: number;
  readonly protocol: number;
}

const refuse = (field: string, message: string) =>
  new ValidationError([{ object: 'FlowFilter', field, message }]);

/** Parses an expression; a ValidationError naming `field` (and what was expected) when it is not one. */
export function parseMatch(text: string, field = 'match'): Match {
  if (text.length > MATCH_MAX_CHARS)
    throw refuse(field, `is ${text.length} characters; at most ${MATCH_MAX_CHARS}`);
  const [ends, ...clauses] = text.split('&').map((s) => s.trim());
  const end = (s: string): MatchEnd => {
    const m =
      /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ??
      (s.split(':').length === 2 ? /^([^:]+):(\d+)$/.exec(s) : null);
    const ip = m ? m[1]! : s;
    const port = m?.[2] !== undefined ? Number(m[2]) : undefined;
    if (tryParseIp(ip) === undefined)
      throw refuse(field, `${JSON.stringify(s)} is not an address (ip, ip:port, or [ipv6]:port)`);
    if (port !== undefined && !(port >= 0 && port <= 65535))
      throw refuse(field, `port ${port} is out of range`);
    return port === undefined ? { ip } : { ip, port };
  };
  const parts = (ends ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0 || parts.length > 2)
    throw refuse(
      field,
      'expected "ip[:port]" or "ip[:port],ip[:port]", optionally followed by "& proto NAME"',
    );
  let protocol: number | undefined;
  for (const c of clauses) {
    const m = /^proto(?:col)?\s+(\S+)$/i.exec(c);
    const p = m
      ? (PROTOCOL_NUMBERS[m[1]!.toLowerCase()] ??
        (/^\d+$/.test(m[1]!) && Number(m[1]) <= 255 ? Number(m[1]) : undefined))
      : undefined;
    if (p === undefined)
      throw refuse(field, `${JSON.stringify(c)}: expected "proto tcp|udp|sctp|icmp|icmpv6|NUMBER"`);
    protocol = p;
  }
  return {
    a: end(parts[0]!),
    ...(parts[1] ? { b: end(parts[1]) } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
  };
}

/** A parsed match, ready to test flows (addresses parsed once). */
export function compileMatch(m: Match): (f: MatchedFlow) => boolean {
  const a = { ip: tryParseIp(m.a.ip)!, port: m.a.port };
  const b = m.b === undefined ? undefined : { ip: tryParseIp(m.b.ip)!, port: m.b.port };
  const endOk = (e: { ip: Ip; port: number | undefined }, ip: string, port: number) =>
    e.ip === tryParseIp(ip) && (e.port === undefined || e.port === port);
  return (f) =>
    (m.protocol === undefined || f.protocol === m.protocol) &&
    ((endOk(a, f.source, f.sourcePort) &&
      (b === undefined || endOk(b, f.destination, f.destinationPort))) ||
      (endOk(a, f.destination, f.destinationPort) &&
        (b === undefined || endOk(b, f.source, f.sourcePort))));
}
