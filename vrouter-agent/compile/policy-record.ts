/**
 * The batch format of the verdict engines: policy records in, verdicts out,
 * many per call, so that one JS→native crossing decides a whole NFQUEUE read.
 *
 * Policy record: a packet as the policy sees it (rule-tables.ts `Packet`),
 * POLICY_RECORD_BYTES (40) bytes per packet, records back to back from byte 0
 * of the batch.
 *
 *   offset size  field
 *   0      16    source address, network byte order (as the IP header carries
 *                it). IPv4: bytes 0..3, bytes 4..15 zero. IPv6: all 16 bytes.
 *   16     16    destination address, same encoding
 *   32     1     source family: 4 or 6
 *   33     1     destination family: 4 or 6
 *   34     1     IANA protocol number (6 TCP, 17 UDP, 132 SCTP, ...)
 *   35     1     reserved, written 0, ignored
 *   36     2     destination port, little-endian (0 for protocols without ports)
 *   38     2     reserved, written 0, ignored
 *
 * Each address has its own family byte because RuleTables keys IPv4 by number
 * and IPv6 by bigint: ::ffff:10.0.0.1 is not 10.0.0.1, and a record must be
 * able to say either. A record with a family other than 4 or 6, or an IPv4
 * address with non-zero bytes 4..15, is INVALID (decided as a deny).
 *
 * Result: RESULT_STRIDE (3) Int32 per packet, at out[3i .. 3i+2].
 *
 *   out[3i]     egress at the source: a rule index (>= 0, allowed by that
 *               rule of the RuleCatalog), ALLOW_DEFAULT, ALLOW_NODE, DENY,
 *               NOT_LOCAL or INVALID (see VerdictCode)
 *   out[3i+1]   ingress at the destination, same codes
 *   out[3i+2]   flags: VERDICT_ALLOWED | VERDICT_SELF
 *
 * These mirror RuleTables.decide(): NOT_LOCAL is a direction whose endpoint
 * is not ours (DirectionDecision.endpoint undefined), which includes both
 * directions of a packet from an endpoint to itself (VERDICT_SELF set,
 * always allowed). A rule index mirrors DirectionResult = CompiledRule,
 * ALLOW_DEFAULT, ALLOW_NODE and DENY the symbols of the same names.
 */
import { InternalError } from '../../shared/errors.js';
import type { Ip } from '../../shared/net/ip.js';
import type { Packet } from '../../shared/policy/rule-tables.js';

export const POLICY_RECORD_BYTES = 40;
export const RESULT_STRIDE = 3;

/** Byte offsets inside a policy record. */
export const PolicyRecordField = {
  src: 0,
  dst: 16,
  srcFamily: 32,
  dstFamily: 33,
  protocol: 34,
  dstPort: 36,
} as const;

/** Per-direction codes (non-negative values are rule indices). */
export const VerdictCode = {
  /** The endpoint is not isolated in this direction: allowed by the default tier. */
  ALLOW_DEFAULT: -1,
  /** Isolated and no rule matched: denied. */
  DENY: -2,
  /** The address is not one of our endpoints, or the packet goes from an endpoint to itself. */
  NOT_LOCAL: -3,
  /** The policy record is malformed (bad family byte or IPv4 padding). */
  INVALID: -4,
  /** The peer is an address of the endpoint's own node: not subject to NetworkPolicy, allowed. */
  ALLOW_NODE: -5,
} as const;
export type VerdictCode = (typeof VerdictCode)[keyof typeof VerdictCode];

/** Set in out[3i+2] when both directions allow the packet (or it is self-traffic). */
export const VERDICT_ALLOWED = 1;
/** Set in out[3i+2] when source and destination are the same endpoint. */
export const VERDICT_SELF = 2;

const V4_MAX = 0xffff_ffff;
const V6_MAX = (1n << 128n) - 1n;
const LOW64 = (1n << 64n) - 1n;

function writeAddress(view: DataView, at: number, ip: Ip): 4 | 6 {
  if (typeof ip === 'number') {
    if (!Number.isInteger(ip) || ip < 0 || ip > V4_MAX)
      throw new InternalError(`packet address ${ip} is not an IPv4 address number`);
    view.setUint32(at, ip);
    view.setUint32(at + 4, 0);
    view.setUint32(at + 8, 0);
    view.setUint32(at + 12, 0);
    return 4;
  }
  if (ip < 0n || ip > V6_MAX)
    throw new InternalError(`packet address ${ip} is not an IPv6 address number`);
  view.setBigUint64(at, ip >> 64n);
  view.setBigUint64(at + 8, ip & LOW64);
  return 6;
}

/** Writes packet `p` as record `index` of `view`. Protocol must fit a byte and the port 16 bits. */
export function writePolicyRecord(view: DataView, index: number, p: Packet): void {
  if (!(p.protocol >= 0 && p.protocol <= 255 && Number.isInteger(p.protocol)))
    throw new InternalError(`packet protocol ${p.protocol} is not 0..255`);
  if (!(p.dstPort >= 0 && p.dstPort <= 65535 && Number.isInteger(p.dstPort)))
    throw new InternalError(`packet port ${p.dstPort} is not 0..65535`);
  const at = index * POLICY_RECORD_BYTES;
  view.setUint8(
    at + PolicyRecordField.srcFamily,
    writeAddress(view, at + PolicyRecordField.src, p.src),
  );
  view.setUint8(
    at + PolicyRecordField.dstFamily,
    writeAddress(view, at + PolicyRecordField.dst, p.dst),
  );
  view.setUint8(at + PolicyRecordField.protocol, p.protocol);
  view.setUint8(at + 35, 0);
  view.setUint16(at + PolicyRecordField.dstPort, p.dstPort, true);
  view.setUint16(at + 38, 0);
}

/** The address at byte `at` of a record, for its family byte; undefined when malformed. */
export function readAddress(view: DataView, at: number, family: number): Ip | undefined {
  if (family === 4) {
    if (
      view.getUint32(at + 4) !== 0 ||
      view.getUint32(at + 8) !== 0 ||
      view.getUint32(at + 12) !== 0
    )
      return undefined;
    return view.getUint32(at);
  }
  if (family === 6) return (view.getBigUint64(at) << 64n) | view.getBigUint64(at + 8);
  return undefined;
}

/** Reads record `index`; undefined when it is INVALID. */
export function readPolicyRecord(view: DataView, index: number): Packet | undefined {
  const at = index * POLICY_RECORD_BYTES;
  const src = readAddress(
    view,
    at + PolicyRecordField.src,
    view.getUint8(at + PolicyRecordField.srcFamily),
  );
  const dst = readAddress(
    view,
    at + PolicyRecordField.dst,
    view.getUint8(at + PolicyRecordField.dstFamily),
  );
  if (src === undefined || dst === undefined) return undefined;
  return {
    src,
    dst,
    protocol: view.getUint8(at + PolicyRecordField.protocol),
    dstPort: view.getUint16(at + PolicyRecordField.dstPort, true),
  };
}

/** Packs packets into a fresh record buffer. */
export function encodePolicyRecords(packets: readonly Packet[]): Uint8Array {
  const bytes = new Uint8Array(packets.length * POLICY_RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < packets.length; i++) writePolicyRecord(view, i, packets[i]!);
  return bytes;
}

/**
 * A reusable batch: fixed capacity, packets pushed one by one, decided in one
 * call, results read back by index. Not thread-safe; one per caller.
 */
export class PolicyRecordBatch {
  readonly capacity: number;
  /** capacity × POLICY_RECORD_BYTES. */
  readonly bytes: Uint8Array;
  /** capacity × RESULT_STRIDE; valid for the first `count` packets after evaluate(). */
  readonly results: Int32Array;
  private readonly view: DataView;
  private used = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new InternalError(`batch capacity ${capacity} is not a positive integer`);
    this.capacity = capacity;
    this.bytes = new Uint8Array(capacity * POLICY_RECORD_BYTES);
    this.results = new Int32Array(capacity * RESULT_STRIDE);
    this.view = new DataView(this.bytes.buffer);
  }

  get count(): number {
    return this.used;
  }

  get full(): boolean {
    return this.used === this.capacity;
  }

  clear(): void {
    this.used = 0;
  }

  /** Appends a packet; returns its index. Throws when the batch is full. */
  push(p: Packet): number {
    if (this.used === this.capacity)
      throw new InternalError(`packet batch is full (${this.capacity})`);
    writePolicyRecord(this.view, this.used, p);
    return this.used++;
  }

  /** Decides every pushed packet with `engine` (a VerdictEngine); returns how many are allowed. */
  evaluate(engine: {
    evaluate(packets: Uint8Array, count: number, out: Int32Array): number;
  }): number {
    return engine.evaluate(this.bytes, this.used, this.results);
  }

  egress(i: number): number {
    return this.results[i * RESULT_STRIDE]!;
  }

  ingress(i: number): number {
    return this.results[i * RESULT_STRIDE + 1]!;
  }

  allowed(i: number): boolean {
    return (this.results[i * RESULT_STRIDE + 2]! & VERDICT_ALLOWED) !== 0;
  }

  self(i: number): boolean {
    return (this.results[i * RESULT_STRIDE + 2]! & VERDICT_SELF) !== 0;
  }
}
