/**
 * The packed formats that cross the JavaScript/native boundary, and the
 * helpers to write and read them. Changing any layout here means changing
 * flow_table.cc and bumping FLOW_TABLE_ABI in both.
 *
 * Flow-key record, FLOW_KEY_RECORD_BYTES (48) per packet: the packet's flow
 * key and what accounting needs. Fields little-endian, addresses in network
 * byte order:
 *
 *   offset  size  field
 *        0     4  zone          u32
 *        4     2  sport         u16
 *        6     2  dport         u16
 *        8     1  protocol      u8
 *        9     1  family        4 or 6 (anything else misses)
 *       10     1  tcpFlags      TcpFlag bits (accounting only; ignored unless TCP)
 *       11     1  reserved      0
 *       12     4  bytes         u32, the packet's L3 length (accounting only)
 *       16    16  src           IPv6; IPv4 in the first 4 bytes, the rest ignored
 *       32    16  dst
 *
 * Result word (Int32Array, one per packet): RESULT_MISS (-1), or
 * `index * 8 + actionCode * 2 + directionCode` (see `decodeResult`).
 */
import type { Ip } from '../../shared/net/ip.js';
import { readIp } from '../packet/decode.js';
import { REMOVAL_CAUSES } from './flow-table.js';
import type {
  DropReason,
  FlowAction,
  FlowDirection,
  FlowEntry,
  FlowHit,
  FlowKey,
  FlowTableStats,
  RefusalReason,
  RemovedFlow,
  ResolvedFlowTableOptions,
} from './flow-table.js';

export const FLOW_TABLE_ABI = 2;
export const FLOW_KEY_RECORD_BYTES = 48;
export const RESULT_MISS = -1;

/** Codes are positions in these lists. */
export const ACTIONS: readonly FlowAction[] = ['allow', 'deny', 'hold'];
export const ACTION_ALLOW = 0;
export const ACTION_DENY = 1;
export const ACTION_HOLD = 2;
export const FLOW_DIRECTIONS: readonly FlowDirection[] = ['forward', 'reverse'];
export const DROP_REASONS: readonly DropReason[] = [
  'none',
  'policy-egress',
  'policy-ingress',
  'flow-limit',
  'table-full',
  'hold-limit',
  'hold-timeout',
];
export const REASON_FLOW_LIMIT = 3;
export const REASON_TABLE_FULL = 4;
export const REASON_HOLD_LIMIT = 5;

export function actionCode(action: FlowAction): number {
  const code = ACTIONS.indexOf(action);
  if (code < 0) throw new TypeError(`unknown action ${JSON.stringify(action)}`);
  return code;
}

export function dropReasonCode(reason: DropReason): number {
  const code = DROP_REASONS.indexOf(reason);
  if (code < 0) throw new TypeError(`unknown drop reason ${JSON.stringify(reason)}`);
  return code;
}

export function refusalReason(code: number): RefusalReason {
  const r = DROP_REASONS[code];
  if (r !== 'flow-limit' && r !== 'table-full' && r !== 'hold-limit')
    throw new TypeError(`not a refusal reason code: ${code}`);
  return r;
}

/** The index of a hit's result word (`result >= 0`). */
export function resultIndex(result: number): number {
  return result >> 3;
}

/** 0 allow, 1 deny, 2 hold (positions in ACTIONS). */
export function resultActionCode(result: number): number {
  return (result >> 1) & 3;
}

/** 0 forward, 1 reverse. */
export function resultDirectionCode(result: number): number {
  return result & 1;
}

export function encodeResult(index: number, action: number, direction: number): number {
  return index * 8 + action * 2 + direction;
}

export function decodeResult(result: number): FlowHit | undefined {
  if (result < 0) return undefined;
  return {
    index: result >> 3,
    action: ACTIONS[(result >> 1) & 3]!,
    direction: FLOW_DIRECTIONS[result & 1]!,
  };
}

const MASK64 = (1n << 64n) - 1n;

/** An integer in [0, 2^32): zones, flow-key addresses, policy and rule ids. */
export function isU32(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

/** Throws a TypeError naming what is wrong with a key (a bug in the caller, not user input). */
export function checkKey(key: FlowKey): void {
  const problems: string[] = [];
  if (!isU32(key.zone)) problems.push(`zone ${String(key.zone)} is not a u32`);
  if (!Number.isInteger(key.protocol) || key.protocol < 0 || key.protocol > 255)
    problems.push(`protocol ${String(key.protocol)} is not 0..255`);
  for (const [name, port] of [
    ['sport', key.sport],
    ['dport', key.dport],
  ] as const) {
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      problems.push(`${name} ${String(port)} is not 0..65535`);
  }
  for (const [name, ip] of [
    ['src', key.src],
    ['dst', key.dst],
  ] as const) {
    if (
      typeof ip === 'number'
        ? !isU32(ip)
        : typeof ip !== 'bigint' || ip < 0n || ip > (1n << 128n) - 1n
    )
      problems.push(`${name} is not an address`);
  }
  if (typeof key.src !== typeof key.dst) problems.push('src and dst are of different families');
  if (problems.length > 0) throw new TypeError(`bad flow key: ${problems.join('; ')}`);
}

function writeIp(view: DataView, offset: number, ip: Ip): void {
  if (typeof ip === 'number') {
    view.setUint32(offset, ip, false);
    view.setUint32(offset + 4, 0, true);
    view.setBigUint64(offset + 8, 0n, true);
  } else {
    view.setBigUint64(offset, (ip >> 64n) & MASK64, false);
    view.setBigUint64(offset + 8, ip & MASK64, false);
  }
}

/** A packet length as the u32 a record holds: truncated, clamped, 0 for NaN. */
export function packetBytes(bytes: number): number {
  return bytes > 0 ? Math.min(0xffffffff, Math.trunc(bytes)) : 0;
}

/** Writes flow-key record `i` of `buffer` (validated). */
export function writeFlowKey(
  buffer: Uint8Array,
  i: number,
  key: FlowKey,
  bytes = 0,
  tcpFlags = 0,
): void {
  const o = i * FLOW_KEY_RECORD_BYTES;
  if (!Number.isInteger(i) || i < 0 || o + FLOW_KEY_RECORD_BYTES > buffer.byteLength)
    throw new RangeError(`packet record ${i} is outside the buffer`);
  writeFlowKeyAt(
    new DataView(buffer.buffer, buffer.byteOffset + o, FLOW_KEY_RECORD_BYTES),
    0,
    key,
    bytes,
    tcpFlags,
  );
}

/** Writes a flow-key record at byte `offset` of `view` (validated key; the caller checks the bounds). */
export function writeFlowKeyAt(
  view: DataView,
  offset: number,
  key: FlowKey,
  bytes = 0,
  tcpFlags = 0,
): void {
  checkKey(key);
  view.setUint32(offset, key.zone, true);
  view.setUint16(offset + 4, key.sport, true);
  view.setUint16(offset + 6, key.dport, true);
  view.setUint8(offset + 8, key.protocol);
  view.setUint8(offset + 9, typeof key.src === 'number' ? 4 : 6);
  view.setUint8(offset + 10, tcpFlags & 0xff);
  view.setUint8(offset + 11, 0);
  view.setUint32(offset + 12, packetBytes(bytes), true);
  writeIp(view, offset + 16, key.src);
  writeIp(view, offset + 32, key.dst);
}

/** Reads flow-key record `i`; undefined when its family is neither 4 nor 6. */
export function readFlowKey(
  buffer: Uint8Array,
  i: number,
): { key: FlowKey; bytes: number; tcpFlags: number } | undefined {
  const at = i * FLOW_KEY_RECORD_BYTES;
  const view = new DataView(buffer.buffer, buffer.byteOffset + at, FLOW_KEY_RECORD_BYTES);
  const family = view.getUint8(9);
  if (family !== 4 && family !== 6) return undefined;
  return {
    key: {
      zone: view.getUint32(0, true),
      sport: view.getUint16(4, true),
      dport: view.getUint16(6, true),
      protocol: view.getUint8(8),
      src: readIp(buffer, at + 16, family),
      dst: readIp(buffer, at + 32, family),
    },
    tcpFlags: view.getUint8(10),
    bytes: view.getUint32(12, true),
  };
}

/** A reusable batch: flow-key records and their result words. */
export class FlowKeyBatch {
  readonly packets: Uint8Array;
  readonly results: Int32Array;
  count = 0;

  constructor(readonly capacity: number) {
    this.packets = new Uint8Array(capacity * FLOW_KEY_RECORD_BYTES);
    this.results = new Int32Array(capacity);
  }

  /** Appends a packet; returns its position, or -1 when the batch is full. */
  push(key: FlowKey, bytes = 0, tcpFlags = 0): number {
    if (this.count >= this.capacity) return -1;
    writeFlowKey(this.packets, this.count, key, bytes, tcpFlags);
    return this.count++;
  }

  clear(): void {
    this.count = 0;
  }
}

// ---- native table words --------------------------------------------------------

/** Option words, in this order, for the native constructor. */
export const OPTION_ORDER: ReadonlyArray<keyof ResolvedFlowTableOptions> = [
  'maxFlows',
  'maxFlowsPerZone',
  'maxHoldFlows',
  'evictionScanFlows',
  'tcpSynTimeoutSec',
  'tcpEstablishedTimeoutSec',
  'tcpClosingTimeoutSec',
  'tcpClosedTimeoutSec',
  'udpTimeoutSec',
  'udpStreamTimeoutSec',
  'icmpTimeoutSec',
  'otherTimeoutSec',
  'deniedTimeoutSec',
  'holdTimeoutSec',
];

export function optionWords(options: ResolvedFlowTableOptions): Float64Array {
  return Float64Array.from(OPTION_ORDER, (name) => options[name]);
}

/**
 * Entry words (Float64Array, ENTRY_WORDS per entry): 0 index, 1 zone,
 * 2 replyZone, 3 protocol, 4 family, 5 sport, 6 dport, 7 action, 8 dropReason,
 * 9 tcpState, 10 egress policy, 11 egress rule, 12 ingress policy,
 * 13 ingress rule, 14 forward packets, 15 forward bytes, 16 reverse packets,
 * 17 reverse bytes, 18 firstSeenMs, 19 lastSeenMs, 20..23 src, 24..27 dst as
 * four big-endian u32 words each (IPv4: word 20 / 24).
 */
export const ENTRY_WORDS = 28;

/** The address in four big-endian u32 words from `w[o]` (IPv4: `w[o]` alone). */
export function wordsIp(w: ArrayLike<number>, o: number, family: number): Ip {
  if (family === 4) return w[o]!;
  return (
    (BigInt(w[o]!) << 96n) |
    (BigInt(w[o + 1]!) << 64n) |
    (BigInt(w[o + 2]!) << 32n) |
    BigInt(w[o + 3]!)
  );
}

export function decodeEntry(w: Float64Array, o: number): FlowEntry {
  const family = w[o + 4]!;
  return {
    index: w[o]!,
    key: {
      zone: w[o + 1]!,
      protocol: w[o + 3]!,
      src: wordsIp(w, o + 20, family),
      dst: wordsIp(w, o + 24, family),
      sport: w[o + 5]!,
      dport: w[o + 6]!,
    },
    replyZone: w[o + 2]!,
    action: ACTIONS[w[o + 7]!]!,
    dropReason: DROP_REASONS[w[o + 8]!]!,
    tcpState: w[o + 9]!,
    egress: { policyId: w[o + 10]!, ruleId: w[o + 11]! },
    ingress: { policyId: w[o + 12]!, ruleId: w[o + 13]! },
    forward: { packets: w[o + 14]!, bytes: w[o + 15]! },
    reverse: { packets: w[o + 16]!, bytes: w[o + 17]! },
    firstSeenMs: w[o + 18]!,
    lastSeenMs: w[o + 19]!,
  };
}

/** Removal words (REMOVED_WORDS per removal, `takeRemoved`): the entry words, then the cause (a position in REMOVAL_CAUSES). */
export const REMOVED_WORDS = ENTRY_WORDS + 1;

export function decodeRemoved(w: Float64Array, o: number): RemovedFlow {
  const cause = REMOVAL_CAUSES[w[o + ENTRY_WORDS]!];
  if (cause === undefined) throw new TypeError(`unknown removal cause ${w[o + ENTRY_WORDS]}`);
  return { cause, entry: decodeEntry(w, o) };
}

/**
 * Stats words: 0 flows, 1 holds, 2 peakFlows, 3 maxFlows, 4 inserted,
 * 5 removed, 6 aged, 7 closed, 8 evicted, 9 deleted, 10 refused flow-limit,
 * 11 refused table-full, 12 refused hold-limit, 13 holdsCreated,
 * 14 holdsResolved, 15 lookups, 16 hits, 17 zones, 18 bytesAllocated.
 */
export const STATS_WORDS = 19;

export function decodeStats(w: Float64Array): FlowTableStats {
  const at = (i: number) => w[i]!;
  return {
    flows: at(0),
    holds: at(1),
    peakFlows: at(2),
    maxFlows: at(3),
    zones: at(17),
    inserted: at(4),
    removed: at(5),
    removedBy: { aged: at(6), closed: at(7), evicted: at(8), deleted: at(9) },
    refused: { 'flow-limit': at(10), 'table-full': at(11), 'hold-limit': at(12) },
    holdsCreated: at(13),
    holdsResolved: at(14),
    lookups: at(15),
    hits: at(16),
    bytesAllocated: at(18),
  };
}
