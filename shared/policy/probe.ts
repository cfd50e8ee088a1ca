/**
 * One probe — a connection from a pod or address to a pod or address on a
 * protocol and port — evaluated and explained. Shared by `weirctl analyze
 * probe` (offline), the controller's Explain (live) and an agent's Evaluate:
 * the same resolution, the same evaluator, the same explanation.
 *
 * Resolution (which addresses a probe is about):
 *
 *   --from / --to      what is probed
 *   address, address   exactly those two addresses
 *   address, pod       the address as given, to the pod's address of its family
 *   pod, address       the pod's address of the address's family, to the address
 *   pod, pod           every family both pods have an address of (dual-stack
 *                      pods: IPv4 and IPv6), each checked on its own
 *
 * An address is never replaced by another one, and a pod is never probed
 * from or to an address of the other family. A pair that shares no family is
 * refused with a ValidationError naming the field (`from` or `to`).
 */
import { type Issue, ValidationError } from '../errors.js';
import { FIELD_LIMITS, textIssue } from '../limits.js';
import { familyOf, parseIp, tryParseIp, type Ip, type IpFamily } from '../net/ip.js';
import { explain, type Explanation } from './explain.js';
import type { RuleTables } from './rule-tables.js';
import { PROTOCOL_NUMBER, PROTOCOLS, type Protocol } from './types.js';

export interface Probe {
  readonly protocol: Protocol;
  readonly port: number;
}

/** "TCP/80", "udp/53", "80" (TCP). */
/**
 * Throws ValidationError when a probe request's fields are longer than any
 * probe (FIELD_LIMITS): refused before anything resolves or echoes them.
 */
export function checkProbeRequest(
  object: string,
  req: { from: string; to: string; protocol: string },
): void {
  const issues = [
    textIssue(object, 'from', req.from, FIELD_LIMITS.probeTarget),
    textIssue(object, 'to', req.to, FIELD_LIMITS.probeTarget),
    textIssue(object, 'protocol', req.protocol, FIELD_LIMITS.protocol),
  ].filter((i): i is Issue => i !== undefined);
  if (issues.length > 0) throw new ValidationError(issues);
}

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

/** One end of a probe, as the user named it. */
export type Target =
  /** An address, used exactly as given. */
  | { readonly kind: 'address'; readonly text: string; readonly ip: Ip }
  /** A pod ("namespace/name"), with every address known for it here, primary first. */
  | {
      readonly kind: 'pod';
      readonly text: string;
      readonly pod: string;
      readonly ips: readonly Ip[];
    };

/** Resolves "namespace/pod" (or "pod" in default) or an address; returns an error message when neither. */
export function resolveTarget(tables: RuleTables, text: string): Target | string {
  const ip = tryParseIp(text);
  if (ip !== undefined) return { kind: 'address', text, ip };
  const key = text.includes('/') ? text : `default/${text}`;
  const ips = podAddresses(tables, key);
  if (ips !== undefined && ips.length > 0) return { kind: 'pod', text, pod: key, ips };
  return `${JSON.stringify(text)} is neither an IP address nor a pod (namespace/name) with an address known here`;
}

/** A pod's addresses as these tables know them: compiled, in the snapshot, or as a group member (another node's pod). */
function podAddresses(tables: RuleTables, key: string): readonly Ip[] | undefined {
  const compiled = tables.endpoints.get(key);
  if (compiled !== undefined) return compiled.ips;
  const e = tables.snapshot.endpoints.find((x) => `${x.namespace}/${x.name}` === key);
  if (e !== undefined) return e.ips.map(parseIp);
  for (const g of tables.snapshot.addressGroups) {
    if (g.kind !== 'selector') continue;
    const m = g.members.find((x) => x.endpoint === key);
    if (m !== undefined) return m.ips.map(parseIp);
  }
  return undefined;
}

const FAMILY_NAME: Readonly<Record<IpFamily, string>> = { 4: 'IPv4', 6: 'IPv6' };

/** The first address of each family, in the order given. */
function byFamily(ips: readonly Ip[]): Map<IpFamily, Ip> {
  const out = new Map<IpFamily, Ip>();
  for (const ip of ips) if (!out.has(familyOf(ip))) out.set(familyOf(ip), ip);
  return out;
}

/** The (source, destination) address pairs a probe checks, one per family (see the module comment). */
export function probePairs(from: Target, to: Target): Array<{ src: Ip; dst: Ip }> {
  if (from.kind === 'address' && to.kind === 'address') return [{ src: from.ip, dst: to.ip }];
  if (from.kind === 'address' && to.kind === 'pod') {
    const dst = byFamily(to.ips).get(familyOf(from.ip));
    if (dst === undefined)
      throw familyMismatch(
        'to',
        `${to.pod} has no ${FAMILY_NAME[familyOf(from.ip)]} address to be reached from ${from.text}`,
      );
    return [{ src: from.ip, dst }];
  }
  if (from.kind === 'pod' && to.kind === 'address') {
    const src = byFamily(from.ips).get(familyOf(to.ip));
    if (src === undefined)
      throw familyMismatch(
        'from',
        `${from.pod} has no ${FAMILY_NAME[familyOf(to.ip)]} address to reach ${to.text} from`,
      );
    return [{ src, dst: to.ip }];
  }
  const src = byFamily((from as Extract<Target, { kind: 'pod' }>).ips);
  const dst = byFamily((to as Extract<Target, { kind: 'pod' }>).ips);
  const pairs = [...src]
    .filter(([family]) => dst.has(family))
    .map(([family, ip]) => ({ src: ip, dst: dst.get(family)! }));
  if (pairs.length === 0) {
    const fams = (m: Map<IpFamily, Ip>) => [...m.keys()].map((f) => FAMILY_NAME[f]).join(' and ');
    throw familyMismatch(
      'to',
      `${from.text} (${fams(src)}) and ${to.text} (${fams(dst)}) have no address family in common`,
    );
  }
  return pairs;
}

function familyMismatch(field: 'from' | 'to', message: string): ValidationError {
  return new ValidationError([{ field, message }]);
}

/**
 * Evaluates and explains a probe. When more than one family is checked (two
 * dual-stack pods), the result is allowed only when every family allows it;
 * its top-level fields explain the family that decided (the first that
 * denies, else the source's primary family) and `families` holds every
 * family's explanation. Throws ValidationError when the ends share no family.
 */
export function probe(
  tables: RuleTables,
  from: Target,
  to: Target,
  p: Probe,
  scope: 'cluster' | 'node' = 'cluster',
): Explanation {
  const explanations = probePairs(from, to).map(({ src, dst }) => ({
    ...explain(
      tables,
      tables.decide({ src, dst, protocol: PROTOCOL_NUMBER[p.protocol], dstPort: p.port }),
      { src, dst, protocol: p.protocol, port: p.port },
      scope,
    ),
    family: familyName(src),
  }));
  if (explanations.length === 1) {
    const { family: _, ...only } = explanations[0]!;
    return only;
  }
  const deciding = explanations.find((e) => !e.allowed) ?? explanations[0]!;
  return { ...deciding, families: explanations };
}

/** "IPv4" or "IPv6". */
export function familyName(ip: Ip): string {
  return FAMILY_NAME[familyOf(ip)];
}
