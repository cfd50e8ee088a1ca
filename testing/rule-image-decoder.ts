/**
 * Reads a rule image (layout in vrouter-agent/compile/rule-image.ts) back
 * into plain objects, checking everything the native loader checks. Tests
 * use it to show that an image says exactly what the RuleTables it came from
 * say.
 */
import { ErrorCode, WeirError } from '../shared/errors.js';
import type { Ip } from '../shared/net/ip.js';
import {
  HEADER_BYTES,
  NONE,
  RULE_IMAGE_MAGIC,
  RULE_IMAGE_VERSION,
  SECTION_COUNT,
  SECTION_ELEMENT_BYTES,
  SECTION_NAMES,
  Section,
  sectionLayout,
  type PrefixRanges,
} from '../vrouter-agent/compile/rule-image.js';

/** A rule image that is not well formed; the message says where. */
export class RuleImageError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Invalid, `rule image: ${message}`);
  }
}

export interface DecodedPorts {
  /** [protocol, first, last]* */
  readonly fixed: readonly number[];
  /** Destination address → [protocol, first, last]*. */
  readonly byDestination: ReadonlyMap<Ip, readonly number[]>;
}

export interface DecodedRule {
  readonly id: string;
  readonly policy: string;
  /** null: any address. */
  readonly peer: PrefixRanges | null;
  /** null: any protocol and port. */
  readonly ports: DecodedPorts | null;
  /** RULES.action: 0 allow, 1 deny, 2 pass. */
  readonly action: number;
  /** RULES.tier: 0 NetworkPolicy, 1 Admin, 2 Baseline. */
  readonly tier: number;
}

export interface DecodedTable {
  readonly policyCount: number;
  /** Rule indices of the NetworkPolicy tier, in evaluation order. */
  readonly rules: readonly number[];
  /** Rule indices of the Admin and Baseline tiers, in evaluation order. */
  readonly admin: readonly number[];
  readonly baseline: readonly number[];
}

export interface DecodedEndpoint {
  readonly key: string;
  readonly egress: number;
  readonly ingress: number;
  /** The addresses of the endpoint's own node; null when none are known. */
  readonly node: PrefixRanges | null;
}

export interface DecodedRuleImage {
  /** Element count of each section. */
  readonly counts: readonly number[];
  readonly endpoints: readonly DecodedEndpoint[];
  /** Address → endpoint index. */
  readonly byIp: ReadonlyMap<Ip, number>;
  readonly tables: readonly DecodedTable[];
  readonly rules: readonly DecodedRule[];
}

export function decodeRuleImage(image: ArrayBuffer | Uint8Array): DecodedRuleImage {
  const bytes = image instanceof Uint8Array ? image : new Uint8Array(image);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (m: string): never => {
    throw new RuleImageError(m);
  };
  if (bytes.byteLength < HEADER_BYTES)
    fail(`${bytes.byteLength} bytes is shorter than the ${HEADER_BYTES}-byte header`);
  if (v.getUint32(0, true) !== RULE_IMAGE_MAGIC) fail('bad magic');
  if (v.getUint16(4, true) !== RULE_IMAGE_VERSION)
    fail(`version ${v.getUint16(4, true)} is not ${RULE_IMAGE_VERSION}`);
  if (v.getUint16(6, true) !== SECTION_COUNT)
    fail(`section count ${v.getUint16(6, true)} is not ${SECTION_COUNT}`);
  if (v.getUint32(8, true) !== bytes.byteLength)
    fail(`header says ${v.getUint32(8, true)} bytes, the buffer has ${bytes.byteLength}`);
  if (v.getUint32(12, true) !== 0) fail('reserved header field is not 0');
  const counts: number[] = [];
  for (let s = 0; s < SECTION_COUNT; s++) counts.push(v.getUint32(20 + s * 8, true));
  const { offsets, total } = sectionLayout(counts);
  if (total !== bytes.byteLength)
    fail(`the section counts need ${total} bytes, the image has ${bytes.byteLength}`);
  for (let s = 0; s < SECTION_COUNT; s++) {
    if (v.getUint32(16 + s * 8, true) !== offsets[s])
      fail(`section ${SECTION_NAMES[s]} is at ${v.getUint32(16 + s * 8, true)}, not ${offsets[s]}`);
  }
  const el = (s: number, i: number) => offsets[s]! + i * SECTION_ELEMENT_BYTES[s]!;
  const readU32 = (at: number) => v.getUint32(at, true);
  const u128 = (at: number) => (v.getBigUint64(at, true) << 64n) | v.getBigUint64(at + 8, true);
  const ref = (s: number, i: number, what: string) =>
    i < counts[s]!
      ? i
      : fail(`${what}: ${SECTION_NAMES[s]} index ${i} is out of range (${counts[s]})`);
  const span = (s: number, first: number, count: number, what: string) => {
    if (first + count > counts[s]!)
      fail(`${what}: ${SECTION_NAMES[s]} [${first}, +${count}) is out of range (${counts[s]})`);
  };
  const zero = (at: number, what: string) => {
    if (readU32(at) !== 0) fail(`${what}: reserved field is not 0`);
  };

  const utf8 = new TextDecoder('utf-8', { fatal: false });
  const strings: string[] = [];
  for (let i = 0; i < counts[Section.STRINGS]!; i++) {
    const at = el(Section.STRINGS, i);
    const off = readU32(at);
    const len = readU32(at + 4);
    if (off + len > counts[Section.STRING_BYTES]!) fail(`string ${i} runs past STRING_BYTES`);
    const base = offsets[Section.STRING_BYTES]! + off;
    strings.push(utf8.decode(bytes.subarray(base, base + len)));
  }
  const string = (i: number, what: string) => strings[ref(Section.STRINGS, i, what)]!;

  const triples = (first: number, count: number, what: string): number[] => {
    span(Section.TRIPLES, first, count, what);
    const out: number[] = [];
    for (let i = first; i < first + count; i++) {
      const at = el(Section.TRIPLES, i);
      if (v.getUint8(at + 1) !== 0 || v.getUint16(at + 6, true) !== 0)
        fail(`${what}: triple ${i}: reserved field is not 0`);
      out.push(v.getUint8(at), v.getUint16(at + 2, true), v.getUint16(at + 4, true));
    }
    return out;
  };

  const sets: PrefixRanges[] = [];
  for (let i = 0; i < counts[Section.PREFIX_SETS]!; i++) {
    const at = el(Section.PREFIX_SETS, i);
    const what = `prefix set ${i}`;
    const [f4, n4, f6, n6] = [readU32(at), readU32(at + 4), readU32(at + 8), readU32(at + 12)];
    span(Section.RANGES4, f4, n4, what);
    span(Section.RANGES6, f6, n6, what);
    const v4: number[] = [];
    for (let k = f4; k < f4 + n4; k++) {
      const a = readU32(el(Section.RANGES4, k));
      const b = readU32(el(Section.RANGES4, k) + 4);
      if (a > b) fail(`${what}: range ${k} ends before it starts`);
      if (v4.length > 0 && a <= v4[v4.length - 1]!)
        fail(`${what}: range ${k} is not after the previous one`);
      v4.push(a, b);
    }
    const v6: bigint[] = [];
    for (let k = f6; k < f6 + n6; k++) {
      const a = u128(el(Section.RANGES6, k));
      const b = u128(el(Section.RANGES6, k) + 16);
      if (a > b) fail(`${what}: range ${k} ends before it starts`);
      if (v6.length > 0 && a <= v6[v6.length - 1]!)
        fail(`${what}: range ${k} is not after the previous one`);
      v6.push(a, b);
    }
    sets.push({ v4, v6 });
  }

  const matchers: DecodedPorts[] = [];
  for (let i = 0; i < counts[Section.PORT_MATCHERS]!; i++) {
    const at = el(Section.PORT_MATCHERS, i);
    const what = `port matcher ${i}`;
    const fixed = triples(readU32(at), readU32(at + 4), what);
    const byDestination = new Map<Ip, number[]>();
    const [f4, n4, f6, n6] = [
      readU32(at + 8),
      readU32(at + 12),
      readU32(at + 16),
      readU32(at + 20),
    ];
    span(Section.DESTS4, f4, n4, what);
    span(Section.DESTS6, f6, n6, what);
    let last4 = -1;
    for (let k = f4; k < f4 + n4; k++) {
      const d = el(Section.DESTS4, k);
      const ip = readU32(d);
      if (ip <= last4) fail(`${what}: destination ${k} is not after the previous one`);
      zero(d + 12, `${what}: destination ${k}`);
      last4 = ip;
      byDestination.set(ip, triples(readU32(d + 4), readU32(d + 8), `${what}: destination ${k}`));
    }
    let last6 = -1n;
    for (let k = f6; k < f6 + n6; k++) {
      const d = el(Section.DESTS6, k);
      const ip = u128(d);
      if (ip <= last6) fail(`${what}: destination ${k} is not after the previous one`);
      last6 = ip;
      byDestination.set(ip, triples(readU32(d + 16), readU32(d + 20), `${what}: destination ${k}`));
    }
    matchers.push({ fixed, byDestination });
  }

  const rules: DecodedRule[] = [];
  for (let i = 0; i < counts[Section.RULES]!; i++) {
    const at = el(Section.RULES, i);
    const what = `rule ${i}`;
    const peer = readU32(at + 8);
    const ports = readU32(at + 12);
    const action = v.getUint8(at + 16);
    const tier = v.getUint8(at + 17);
    if (action > 2) fail(`${what}: action ${action} is not 0, 1 or 2`);
    if (tier > 2) fail(`${what}: tier ${tier} is not 0, 1 or 2`);
    if (v.getUint16(at + 18, true) !== 0) fail(`${what}: reserved field is not 0`);
    zero(at + 20, what);
    rules.push({
      action,
      tier,
      id: string(readU32(at), what),
      policy: string(readU32(at + 4), what),
      peer: peer === NONE ? null : sets[ref(Section.PREFIX_SETS, peer, what)]!,
      ports: ports === NONE ? null : matchers[ref(Section.PORT_MATCHERS, ports, what)]!,
    });
  }

  const tables: DecodedTable[] = [];
  for (let i = 0; i < counts[Section.TABLES]!; i++) {
    const at = el(Section.TABLES, i);
    const what = `table ${i}`;
    zero(at + 28, what);
    const list = (offset: number): number[] => {
      const first = readU32(at + offset);
      const count = readU32(at + offset + 4);
      span(Section.RULE_REFS, first, count, what);
      const out: number[] = [];
      for (let k = first; k < first + count; k++)
        out.push(ref(Section.RULES, readU32(el(Section.RULE_REFS, k)), what));
      return out;
    };
    tables.push({ policyCount: readU32(at), rules: list(4), admin: list(12), baseline: list(20) });
  }

  const endpoints: DecodedEndpoint[] = [];
  for (let i = 0; i < counts[Section.ENDPOINTS]!; i++) {
    const at = el(Section.ENDPOINTS, i);
    const what = `endpoint ${i}`;
    const node = readU32(at + 12);
    endpoints.push({
      key: string(readU32(at), what),
      egress: ref(Section.TABLES, readU32(at + 4), what),
      ingress: ref(Section.TABLES, readU32(at + 8), what),
      node: node === NONE ? null : sets[ref(Section.PREFIX_SETS, node, `${what} node set`)]!,
    });
  }

  const byIp = new Map<Ip, number>();
  let last4 = -1;
  for (let i = 0; i < counts[Section.ADDRESSES4]!; i++) {
    const at = el(Section.ADDRESSES4, i);
    const ip = readU32(at);
    if (ip <= last4) fail(`IPv4 address ${i} is not after the previous one`);
    last4 = ip;
    byIp.set(ip, ref(Section.ENDPOINTS, readU32(at + 4), `IPv4 address ${i}`));
  }
  let last6 = -1n;
  for (let i = 0; i < counts[Section.ADDRESSES6]!; i++) {
    const at = el(Section.ADDRESSES6, i);
    const ip = u128(at);
    if (ip <= last6) fail(`IPv6 address ${i} is not after the previous one`);
    last6 = ip;
    zero(at + 20, `IPv6 address ${i}`);
    byIp.set(ip, ref(Section.ENDPOINTS, readU32(at + 16), `IPv6 address ${i}`));
  }
  return { counts, endpoints, byIp, tables, rules };
}
