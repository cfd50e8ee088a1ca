/**
 * Argument checks shared by both flow tables, so that both refuse the same
 * calls with the same errors. A failed check is a bug in the caller: these
 * throw TypeError/RangeError, not Weir's validation errors.
 */
import type { FlowCountersUpdate, FlowVerdict } from './flow-table.js';
import { actionCode, dropReasonCode, FLOW_KEY_RECORD_BYTES, isU32 } from './packed.js';

export const MAX_LIST_LIMIT = 10_000;

export function checkNow(nowMs: number): void {
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs))
    throw new TypeError(`nowMs ${String(nowMs)} is not a finite number`);
}

export function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0)
    throw new TypeError(`${String(index)} is not a flow index`);
}

export function checkZone(zone: number): void {
  if (!isU32(zone)) throw new TypeError(`zone ${String(zone)} is not a u32`);
}

export function listLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 0)
    throw new TypeError(`limit ${String(limit)} is not a count`);
  return Math.min(limit, MAX_LIST_LIMIT);
}

export function checkBatch(packets: Uint8Array, count: number, results: Int32Array): void {
  if (!(packets instanceof Uint8Array) || !(results instanceof Int32Array))
    throw new TypeError('packets must be a Uint8Array and results an Int32Array');
  if (
    !Number.isInteger(count) ||
    count < 0 ||
    count > results.length ||
    count * FLOW_KEY_RECORD_BYTES > packets.byteLength
  ) {
    throw new RangeError(`count ${String(count)} exceeds the packets or results given`);
  }
}

/** A verdict as codes: action, drop reason, [egress policy, egress rule, ingress policy, ingress rule]. */
export function verdictWords(verdict: FlowVerdict): {
  action: number;
  dropReason: number;
  ids: number[];
} {
  const action = actionCode(verdict.action);
  if (verdict.action === 'hold') return { action, dropReason: 0, ids: [0, 0, 0, 0] };
  const ids = [
    verdict.egress?.policyId ?? 0,
    verdict.egress?.ruleId ?? 0,
    verdict.ingress?.policyId ?? 0,
    verdict.ingress?.ruleId ?? 0,
  ];
  if (!ids.every((id) => isU32(id)))
    throw new TypeError(`policy and rule ids must be u32s: ${ids.join(', ')}`);
  const dropReason = verdict.action === 'deny' ? dropReasonCode(verdict.dropReason) : 0;
  return { action, dropReason, ids };
}

/** Checks a counters update; returns its words: forward packets, bytes, reverse packets, bytes, TCP state, last seen. */
export function counterWords(
  u: FlowCountersUpdate,
): [number, number, number, number, number, number] {
  const problems: string[] = [];
  const count = (name: string, x: unknown): number => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) {
      problems.push(`${name} ${String(x)} is not a count`);
      return 0;
    }
    return x;
  };
  const words: [number, number, number, number, number, number] = [
    count('forward.packets', u?.forward?.packets),
    count('forward.bytes', u?.forward?.bytes),
    count('reverse.packets', u?.reverse?.packets),
    count('reverse.bytes', u?.reverse?.bytes),
    0,
    0,
  ];
  const tcp = u?.tcpState;
  if (typeof tcp !== 'number' || !Number.isInteger(tcp) || tcp < 0 || tcp > 0x1ff)
    problems.push(`tcpState ${String(tcp)} is not TcpState bits`);
  else words[4] = tcp;
  const last = u?.lastSeenMs;
  if (typeof last !== 'number' || !Number.isFinite(last))
    problems.push(`lastSeenMs ${String(last)} is not a finite number`);
  else words[5] = last;
  if (problems.length > 0) throw new TypeError(`bad counters update: ${problems.join('; ')}`);
  return words;
}
