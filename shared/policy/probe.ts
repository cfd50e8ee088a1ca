/**
 * One probe — a connection from a pod or address to a pod or address on a
 * protocol and port — evaluated and explained. Shared by `weirctl analyze
 * probe` (offline) and the controller's Explain (live): the same resolution,
 * the same evaluator, the same explanation.
 */
import { familyOf, parseIp, tryParseIp, type Ip } from '../net/ip.js';
import { explain, type Explanation } from './explain.js';
import type { RuleTables } from './rule-tables.js';
import { PROTOCOL_NUMBER, PROTOCOLS, type Endpoint, type Protocol } from './types.js';

export interface Probe {
  readonly protocol: Protocol;
  readonly port: number;
}

/** "TCP/80", "udp/53", "80" (TCP). */
export function parseProbe(text: string): Probe | string {
  const m = /^(?:([A-Za-z]+)\/)?([0-9]+)$/.exec(text.trim());
  const protocol = (m?.[1] ?? 'TCP').toUpperCase();
  const port = Number(m?.[2]);
  if (m === null || !(PROTOCOLS as readonly string[]).includes(protocol))
    return `probe ${JSON.stringify(text)}: expected PROTOCOL/PORT with PROTOCOL one of TCP, UDP, SCTP (e.g. TCP/80)`;
  if (!(port >= 1 && port <= 65535))
    return `probe ${JSON.stringify(text)}: port must be between 1 and 65535`;
  return { protocol: protocol as Protocol, port };
}

/** Resolves "namespace/pod" or an address; returns an error message when neither. */
export function resolveTarget(
  tables: RuleTables,
  text: string,
): { ip: Ip; endpoint?: Endpoint } | string {
  const ip = tryParseIp(text);
  if (ip !== undefined) return { ip, endpoint: tables.byIp.get(ip)?.endpoint };
  const key = text.includes('/') ? text : `default/${text}`;
  const e = tables.endpoints.get(key);
  if (e !== undefined) return { ip: e.ips[0]!, endpoint: e.endpoint };
  // A pod the tables do not enforce for (another node's) may still be known as a group member.
  for (const g of tables.snapshot.addressGroups) {
    if (g.kind !== 'selector') continue;
    const m = g.members.find((x) => x.endpoint === key);
    if (m !== undefined && m.ips[0] !== undefined) return { ip: parseIp(m.ips[0]) };
  }
  return `${JSON.stringify(text)} is neither an IP address nor a pod (namespace/name) with an address known here`;
}

export function probe(
  tables: RuleTables,
  from: { ip: Ip; endpoint?: Endpoint },
  to: { ip: Ip; endpoint?: Endpoint },
  p: Probe,
  scope: 'cluster' | 'node' = 'cluster',
): Explanation {
  let src = from.ip;
  // A pod probing an address of the other family speaks from its address of that family.
  if (from.endpoint && familyOf(src) !== familyOf(to.ip)) {
    src = from.endpoint.ips.map(parseIp).find((ip) => familyOf(ip) === familyOf(to.ip)) ?? src;
  }
  const verdict = tables.decide({
    src,
    dst: to.ip,
    protocol: PROTOCOL_NUMBER[p.protocol],
    dstPort: p.port,
  });
  return explain(tables, verdict, { src, dst: to.ip, protocol: p.protocol, port: p.port }, scope);
}
