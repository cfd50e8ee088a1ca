/**
 * The rule image: RuleTables flattened into one ArrayBuffer that the native
 * evaluator (native/src/rule_eval.cc) validates and loads. Nothing in it
 * points outside the buffer; every reference is an index into a section, and
 * the loader checks every index, count and order before it trusts one.
 *
 *   RuleTables ──encodeRuleImage──> { image: ArrayBuffer, catalog: RuleCatalog }
 *                                       │                     │
 *                       native RuleEvaluator            rule index → CompiledRule
 *
 * LAYOUT, version 3 (version 2 had one rule list per table and no rule
 * actions: TABLES were 16 bytes, RULES 16; version 1 had no node set:
 * ENDPOINTS @12 was reserved). All integers little-endian. IPv4 addresses are u32
 * numbers (10.0.0.1 = 0x0a000001), IPv6 addresses two u64 numbers, high half
 * first (the address is high·2^64 + low). "ref" fields are u32 indices into
 * another section; NONE (0xffffffff) where the field says so. Reserved fields
 * are written 0 and must be 0.
 *
 * Header, HEADER_BYTES (136) bytes:
 *   0   u32  magic 0x49545257 (the bytes "WRTI")
 *   4   u16  version = 3
 *   6   u16  section count = 15
 *   8   u32  total image length in bytes (= the buffer's length)
 *   12  u32  reserved
 *   16  15 × { u32 byte offset, u32 element count }, one per section below,
 *       in this order. Sections follow the header back to back: section 0
 *       starts at 136 and each next one at the end of the previous rounded up
 *       to a multiple of 8 (padding bytes are written 0 and never read); the
 *       image ends at the end of the last section rounded up to 8. The loader
 *       recomputes every offset from the counts and rejects any other layout.
 *
 * Sections (element size in bytes: fields, byte offset within the element):
 *   0  STRINGS        8: u32 byte offset into STRING_BYTES @0, u32 byte length @4.
 *                        Within STRING_BYTES. UTF-8; not interpreted natively.
 *   1  STRING_BYTES   1: the bytes of every string.
 *   2  ENDPOINTS     16: key (STRINGS ref, "namespace/name") @0, egress table
 *                        (TABLES ref) @4, ingress table (TABLES ref) @8,
 *                        node set (PREFIX_SETS ref, NONE: no node addresses
 *                        known) @12: the addresses of the endpoint's own node
 *                        (CompiledEndpoint.node). When the NetworkPolicy
 *                        list isolates the direction, a peer address in it
 *                        decides ALLOW_NODE (after the Admin list, before
 *                        the NetworkPolicy rules). One per compiled
 *                        endpoint, in tables.endpoints order.
 *   3  ADDRESSES4     8: u32 address @0, endpoint (ENDPOINTS ref) @4. Strictly
 *                        ascending by address: RuleTables.byIp for IPv4.
 *   4  ADDRESSES6    24: u64 high @0, u64 low @8, endpoint @16, reserved @20.
 *                        Strictly ascending by address: byIp for IPv6.
 *   5  TABLES        32: one DirectionTable, as three rule lists (each a
 *                        first RULE_REFS element and a count): NetworkPolicy
 *                        tier: u32 policy count @0 (0: not isolated: the list
 *                        is skipped whatever its rules), first @4, count @8;
 *                        Admin tier: first @12, count @16; Baseline tier:
 *                        first @20, count @24; reserved @28. Endpoints with
 *                        equal tables share one. A direction is decided by
 *                        RuleTables' evaluateDirection: Admin list (first
 *                        match: allow/deny decide, pass ends the tier), the
 *                        NetworkPolicy list when isolated (the node set:
 *                        ALLOW_NODE; else first match, none: DENY), the
 *                        Baseline list (as Admin), ALLOW_DEFAULT.
 *   6  RULE_REFS      4: RULES ref. A list's rules are RULE_REFS[first ..
 *                        first+count), in evaluation order (first match wins).
 *                        Lists may share elements (the encoder stores an
 *                        equal list once; the loader indexes it once).
 *   7  RULES         24: id (STRINGS ref) @0, policy id (STRINGS ref) @4,
 *                        peer (PREFIX_SETS ref, NONE: any address) @8, ports
 *                        (PORT_MATCHERS ref, NONE: any protocol and port)
 *                        @12, u8 action @16 (0 allow, 1 deny, 2 pass: the
 *                        next tier decides), u8 tier @17 (0 NetworkPolicy,
 *                        1 Admin, 2 Baseline; informational), u16 reserved
 *                        @18, u32 reserved @20. Element i is RuleCatalog
 *                        index i.
 *   8  PREFIX_SETS   16: first RANGES4 element @0, u32 count @4, first RANGES6
 *                        element @8, u32 count @12. A PrefixSet; an empty one
 *                        (0, 0) matches nothing (unlike NONE in a rule).
 *   9  RANGES4        8: u32 first address @0, u32 last address @4,
 *                        inclusive, first <= last; within a set strictly
 *                        ascending and disjoint (first > previous last).
 *   10 RANGES6       32: first (u64 high @0, u64 low @8), last (u64 high @16,
 *                        u64 low @24); same rules as RANGES4.
 *   11 PORT_MATCHERS 24: first TRIPLES element @0, u32 count @4 (the fixed
 *                        entries); first DESTS4 element @8, u32 count @12;
 *                        first DESTS6 element @16, u32 count @20 (egress named
 *                        ports, per destination address). A packet matches
 *                        when a fixed triple admits (protocol, port), or the
 *                        dest entry of its destination address has a triple
 *                        that does.
 *   12 TRIPLES        8: u8 protocol @0, u8 reserved @1, u16 first port @2,
 *                        u16 last port @4, u16 reserved @6. Admits protocol
 *                        p and port q when p = protocol and first <= q <= last
 *                        (first > last admits nothing). A whole protocol is
 *                        [p, 0, 65535].
 *   13 DESTS4        16: u32 destination address @0, first TRIPLES element
 *                        @4, u32 count @8, reserved @12. Within a matcher
 *                        strictly ascending by address.
 *   14 DESTS6        24: u64 high @0, u64 low @8, first TRIPLES element @16,
 *                        u32 count @20. Strictly ascending by address.
 *
 * Every "first, count" pair must lie inside its section. Counts are u32; an
 * image holds at most 2^32-2 elements of any section (NONE is never an
 * index).
 */
import { InternalError } from '../../shared/errors.js';
import { parseIp } from '../../shared/net/ip.js';
import type { PrefixSet } from '../../shared/net/prefix-set.js';
import type { PortMatcher } from '../../shared/policy/port-matcher.js';
import type {
  CompiledEndpoint,
  CompiledRule,
  DirectionTable,
  RuleTables,
} from '../../shared/policy/rule-tables.js';
import { RuleCatalog } from './rule-catalog.js';

export const RULE_IMAGE_MAGIC = 0x49545257;
export const RULE_IMAGE_VERSION = 3;
/** RULES.action. */
export const RuleAction = { allow: 0, deny: 1, pass: 2 } as const;
/** RULES.tier. */
export const RuleTier = { namespace: 0, admin: 1, baseline: 2 } as const;
export const HEADER_BYTES = 136;
/** Reference meaning "any" in RULES.peer and RULES.ports. */
export const NONE = 0xffff_ffff;

/** Sections in image order, with their element sizes in bytes. */
export const Section = {
  STRINGS: 0,
  STRING_BYTES: 1,
  ENDPOINTS: 2,
  ADDRESSES4: 3,
  ADDRESSES6: 4,
  TABLES: 5,
  RULE_REFS: 6,
  RULES: 7,
  PREFIX_SETS: 8,
  RANGES4: 9,
  RANGES6: 10,
  PORT_MATCHERS: 11,
  TRIPLES: 12,
  DESTS4: 13,
  DESTS6: 14,
} as const;
export const SECTION_COUNT = 15;
export const SECTION_ELEMENT_BYTES: readonly number[] = [
  8, 1, 16, 8, 24, 32, 4, 24, 16, 8, 32, 24, 8, 16, 24,
];
export const SECTION_NAMES: readonly string[] = Object.keys(Section);

const LOW64 = (1n << 64n) - 1n;

/** Rounds up to a multiple of 8 (plain arithmetic: section ends may pass 2^31). */
export function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Byte offset of each section for the given element counts, and the total image length. */
export function sectionLayout(counts: readonly number[]): { offsets: number[]; total: number } {
  const offsets: number[] = [];
  let at = HEADER_BYTES;
  for (let s = 0; s < SECTION_COUNT; s++) {
    offsets.push(at);
    at = align8(at + counts[s]! * SECTION_ELEMENT_BYTES[s]!);
  }
  return { offsets, total: at };
}

/** The ranges of a prefix set, as flat [first, last, first, last, ...] per family. */
export interface PrefixRanges {
  readonly v4: readonly number[];
  readonly v6: readonly bigint[];
}

/** A PrefixSet's ranges (PrefixRanges is what the image encodes). */
export function prefixRanges(set: PrefixSet): PrefixRanges {
  return set.ranges();
}

/** The same ranges through PrefixSet.describe() only. */
export function prefixRangesFromText(set: PrefixSet): PrefixRanges {
  const v4: number[] = [];
  const v6: bigint[] = [];
  for (const text of set.describe()) {
    const dash = text.indexOf('-');
    const [first, last] = dash < 0 ? [text, text] : [text.slice(0, dash), text.slice(dash + 1)];
    const a = parseIp(first);
    const b = parseIp(last);
    if (typeof a === 'number' && typeof b === 'number') v4.push(a, b);
    else if (typeof a === 'bigint' && typeof b === 'bigint') v6.push(a, b);
    else throw new InternalError(`prefix set range ${text} mixes families`);
  }
  return { v4, v6 };
}

/** What encodeRuleImage returns: the image and the catalog its rule indices refer to. */
export interface EncodedRuleImage {
  readonly image: ArrayBuffer;
  readonly catalog: RuleCatalog;
  /** Element count of each section, in Section order. */
  readonly counts: readonly number[];
}

/** Flattens rule tables into an image. Throws InternalError for values the layout cannot hold. */
export function encodeRuleImage(
  tables: RuleTables,
  catalog: RuleCatalog = RuleCatalog.of(tables),
): EncodedRuleImage {
  const e = new Encoder();
  for (let i = 0; i < catalog.rules.length; i++) {
    const r = catalog.rules[i]!;
    e.rules.push(
      e.string(r.id),
      e.string(r.policy),
      r.peer === null ? NONE : e.prefixSet(r.peer),
      r.ports === null ? NONE : e.portMatcher(r.ports, r.id),
      ruleActionOf(r),
      RuleTier[r.tier],
    );
  }
  const endpointIndex = new Map<CompiledEndpoint, number>();
  for (const ce of tables.endpoints.values()) {
    endpointIndex.set(ce, endpointIndex.size);
    e.endpoints.push(
      e.string(ce.key),
      e.table(ce.egress, catalog),
      e.table(ce.ingress, catalog),
      ce.node === null ? NONE : e.prefixSet(ce.node),
    );
  }
  const a4: Array<[number, number]> = [];
  const a6: Array<[bigint, number]> = [];
  for (const [ip, ce] of tables.byIp) {
    const idx = endpointIndex.get(ce);
    if (idx === undefined)
      throw new InternalError(
        `byIp maps an address to endpoint ${ce.key}, which tables.endpoints lacks`,
      );
    if (typeof ip === 'number') a4.push([ip, idx]);
    else a6.push([ip, idx]);
  }
  a4.sort((x, y) => x[0] - y[0]);
  a6.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return e.finish(a4, a6, catalog);
}

/** RULES.action of a compiled rule. */
export function ruleActionOf(r: CompiledRule): number {
  return r.action === 'pass'
    ? RuleAction.allow
    : r.action === 'deny'
      ? RuleAction.deny
      : RuleAction.pass;
}

class Encoder {
  readonly strings: string[] = [];
  private readonly stringIndex = new Map<string, number>();
  /** [key, egress, ingress, node set] per endpoint. */
  readonly endpoints: number[] = [];
  /** [policyCount, first, count, adminFirst, adminCount, baselineFirst, baselineCount] per table. */
  private readonly tables: number[] = [];
  /** Content hash → tables with that hash (equal tables are stored once). */
  private readonly tableIndex = new Map<number, number[]>();
  private readonly refs: number[] = [];
  /** Rule list content ("i,j,k") → its first RULE_REFS element. */
  private readonly listIndex = new Map<string, number>();
  /** [id, policy, peer, ports, action, tier] per rule. */
  readonly rules: number[] = [];
  /** [first4, count4, first6, count6] per set. */
  private readonly sets: number[] = [];
  private readonly setIndex = new Map<PrefixSet, number>();
  private readonly ranges4: number[] = [];
  private readonly ranges6: bigint[] = [];
  /** [firstTriple, count, firstDest4, count, firstDest6, count] per matcher. */
  private readonly matchers: number[] = [];
  private readonly matcherIndex = new Map<PortMatcher, number>();
  private readonly matcherContent = new Map<string, number>();
  /** [protocol, first, last] per triple. */
  private readonly triples: number[] = [];
  /** [address, firstTriple, count] per dest. */
  private readonly dests4: number[] = [];
  private readonly dests6: Array<[bigint, number, number]> = [];

  string(s: string): number {
    let i = this.stringIndex.get(s);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(s);
      this.stringIndex.set(s, i);
    }
    return i;
  }

  table(t: DirectionTable, catalog: RuleCatalog): number {
    const lists = [t.rules, t.admin, t.baseline];
    const ids = lists.map((rules) => {
      const out = new Uint32Array(rules.length);
      for (let k = 0; k < out.length; k++) {
        const r = rules[k]!;
        const i = catalog.indexOf(r);
        if (i === undefined) throw new InternalError(`rule ${r.id} is missing from the catalog`);
        out[k] = i;
      }
      return out;
    });
    let hash = Math.imul(t.policies.length + 1, 0x9e3779b1);
    for (const list of ids) {
      hash = Math.imul(hash ^ (list.length + 0x51), 0x01000193);
      for (const i of list) hash = Math.imul(hash ^ i, 0x01000193);
    }
    const candidates = this.tableIndex.get(hash);
    for (const c of candidates ?? []) {
      const at = 7 * c;
      if (this.tables[at] !== t.policies.length) continue;
      let same = true;
      for (let l = 0; l < 3 && same; l++) {
        const first = this.tables[at + 1 + 2 * l]!;
        const count = this.tables[at + 2 + 2 * l]!;
        const list = ids[l]!;
        if (count !== list.length) same = false;
        for (let k = 0; k < count && same; k++) same = this.refs[first + k] === list[k];
      }
      if (same) return c;
    }
    const index = this.tables.length / 7;
    this.tables.push(t.policies.length);
    for (const list of ids) this.tables.push(this.list(list), list.length);
    if (candidates === undefined) this.tableIndex.set(hash, [index]);
    else candidates.push(index);
    return index;
  }

  /**
   * The first RULE_REFS element of a rule list, stored once however many
   * tables hold it (the endpoints of one namespace share their cluster-tier
   * lists while their NetworkPolicy lists differ), so that the native
   * loader indexes it once.
   */
  private list(ids: Uint32Array): number {
    if (ids.length === 0) return 0;
    const key = ids.join(',');
    let first = this.listIndex.get(key);
    if (first === undefined) {
      first = this.refs.length;
      for (const id of ids) this.refs.push(id);
      this.listIndex.set(key, first);
    }
    return first;
  }

  prefixSet(set: PrefixSet): number {
    let i = this.setIndex.get(set);
    if (i !== undefined) return i;
    i = this.sets.length / 4;
    const { v4, v6 } = prefixRanges(set);
    this.sets.push(this.ranges4.length / 2, v4.length / 2, this.ranges6.length / 2, v6.length / 2);
    for (const x of v4) this.ranges4.push(x);
    for (const x of v6) this.ranges6.push(x);
    this.setIndex.set(set, i);
    return i;
  }

  portMatcher(m: PortMatcher, rule: string): number {
    let i = this.matcherIndex.get(m);
    if (i !== undefined) return i;
    const d4: Array<[number, Int32Array]> = [];
    const d6: Array<[bigint, Int32Array]> = [];
    for (const [ip, t] of m.byDestination ?? []) {
      if (typeof ip === 'number') d4.push([ip, t]);
      else d6.push([ip, t]);
    }
    d4.sort((x, y) => x[0] - y[0]);
    d6.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    const key = `${m.fixed.join(',')}|${d4.map(([ip, t]) => `${ip}:${t.join(',')}`).join(';')}|${d6.map(([ip, t]) => `${ip}:${t.join(',')}`).join(';')}`;
    i = this.matcherContent.get(key);
    if (i === undefined) {
      i = this.matchers.length / 6;
      const firstTriple = this.addTriples(m.fixed, rule);
      const first4 = this.dests4.length / 3;
      for (const [ip, t] of d4) {
        const first = this.addTriples(t, rule);
        this.dests4.push(ip, first, t.length / 3);
      }
      const first6 = this.dests6.length;
      for (const [ip, t] of d6) {
        const first = this.addTriples(t, rule);
        this.dests6.push([ip, first, t.length / 3]);
      }
      this.matchers.push(firstTriple, m.fixed.length / 3, first4, d4.length, first6, d6.length);
      this.matcherContent.set(key, i);
    }
    this.matcherIndex.set(m, i);
    return i;
  }

  private addTriples(t: Int32Array, rule: string): number {
    if (t.length % 3 !== 0)
      throw new InternalError(`rule ${rule}: port entries are not [protocol, first, last] triples`);
    const first = this.triples.length / 3;
    for (let k = 0; k < t.length; k += 3) {
      const [p, lo, hi] = [t[k]!, t[k + 1]!, t[k + 2]!];
      if (p < 0 || p > 255 || lo < 0 || lo > 65535 || hi < 0 || hi > 65535) {
        throw new InternalError(
          `rule ${rule}: port entry [${p}, ${lo}, ${hi}] is outside protocol 0..255, ports 0..65535`,
        );
      }
      this.triples.push(p, lo, hi);
    }
    return first;
  }

  finish(
    a4: ReadonlyArray<readonly [number, number]>,
    a6: ReadonlyArray<readonly [bigint, number]>,
    catalog: RuleCatalog,
  ): EncodedRuleImage {
    const utf8 = new TextEncoder();
    const encoded = this.strings.map((s) => utf8.encode(s));
    const stringBytes = encoded.reduce((n, b) => n + b.length, 0);
    const counts = [
      this.strings.length,
      stringBytes,
      this.endpoints.length / 4,
      a4.length,
      a6.length,
      this.tables.length / 7,
      this.refs.length,
      this.rules.length / 6,
      this.sets.length / 4,
      this.ranges4.length / 2,
      this.ranges6.length / 2,
      this.matchers.length / 6,
      this.triples.length / 3,
      this.dests4.length / 3,
      this.dests6.length,
    ];
    for (let s = 0; s < SECTION_COUNT; s++) {
      if (counts[s]! >= NONE)
        throw new InternalError(
          `rule image section ${SECTION_NAMES[s]} would hold ${counts[s]} elements, more than a u32 index reaches`,
        );
    }
    const { offsets, total } = sectionLayout(counts);
    if (total > 0xffff_ffff)
      throw new InternalError(`rule image would be ${total} bytes, more than a u32 length`);
    const image = new ArrayBuffer(total);
    const v = new DataView(image);
    const bytes = new Uint8Array(image);
    v.setUint32(0, RULE_IMAGE_MAGIC, true);
    v.setUint16(4, RULE_IMAGE_VERSION, true);
    v.setUint16(6, SECTION_COUNT, true);
    v.setUint32(8, total, true);
    for (let s = 0; s < SECTION_COUNT; s++) {
      v.setUint32(16 + s * 8, offsets[s]!, true);
      v.setUint32(20 + s * 8, counts[s]!, true);
    }
    const u32s = (
      section: number,
      values: readonly number[],
      stride: number,
      elementBytes: number,
    ) => {
      let at = offsets[section]!;
      for (let i = 0; i < values.length; i += stride, at += elementBytes) {
        for (let k = 0; k < stride; k++) v.setUint32(at + 4 * k, values[i + k]!, true);
      }
    };
    const u128 = (at: number, x: bigint) => {
      v.setBigUint64(at, x >> 64n, true);
      v.setBigUint64(at + 8, x & LOW64, true);
    };

    let at = offsets[Section.STRINGS]!;
    let byte = 0;
    const stringBase = offsets[Section.STRING_BYTES]!;
    for (const b of encoded) {
      v.setUint32(at, byte, true);
      v.setUint32(at + 4, b.length, true);
      bytes.set(b, stringBase + byte);
      byte += b.length;
      at += 8;
    }
    u32s(Section.ENDPOINTS, this.endpoints, 4, 16);
    at = offsets[Section.ADDRESSES4]!;
    for (const [ip, ep] of a4) {
      v.setUint32(at, ip, true);
      v.setUint32(at + 4, ep, true);
      at += 8;
    }
    at = offsets[Section.ADDRESSES6]!;
    for (const [ip, ep] of a6) {
      u128(at, ip);
      v.setUint32(at + 16, ep, true);
      at += 24;
    }
    u32s(Section.TABLES, this.tables, 7, 32);
    u32s(Section.RULE_REFS, this.refs, 1, 4);
    at = offsets[Section.RULES]!;
    for (let i = 0; i < this.rules.length; i += 6, at += 24) {
      for (let k = 0; k < 4; k++) v.setUint32(at + 4 * k, this.rules[i + k]!, true);
      v.setUint8(at + 16, this.rules[i + 4]!);
      v.setUint8(at + 17, this.rules[i + 5]!);
    }
    u32s(Section.PREFIX_SETS, this.sets, 4, 16);
    u32s(Section.RANGES4, this.ranges4, 2, 8);
    at = offsets[Section.RANGES6]!;
    for (let i = 0; i < this.ranges6.length; i += 2) {
      u128(at, this.ranges6[i]!);
      u128(at + 16, this.ranges6[i + 1]!);
      at += 32;
    }
    u32s(Section.PORT_MATCHERS, this.matchers, 6, 24);
    at = offsets[Section.TRIPLES]!;
    for (let i = 0; i < this.triples.length; i += 3) {
      v.setUint8(at, this.triples[i]!);
      v.setUint16(at + 2, this.triples[i + 1]!, true);
      v.setUint16(at + 4, this.triples[i + 2]!, true);
      at += 8;
    }
    u32s(Section.DESTS4, this.dests4, 3, 16);
    at = offsets[Section.DESTS6]!;
    for (const [ip, first, count] of this.dests6) {
      u128(at, ip);
      v.setUint32(at + 16, first, true);
      v.setUint32(at + 20, count, true);
      at += 24;
    }
    return { image, catalog, counts };
  }
}
