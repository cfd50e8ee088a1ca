/**
 * The native flow table (vrouter-agent/native/src/flow_table.cc) behind the
 * FlowTable interface. Batches go straight through; single-key calls pack
 * their key into a scratch record and make a batch of one.
 */
import { InternalError, UnavailableError } from '../../shared/errors.js';
import { nativeAddon, nativeStatus } from '../native/loader.js';
import {
  resolveFlowTableOptions,
  type FinalVerdict,
  type FlowCountersUpdate,
  type FlowEntry,
  type FlowHit,
  type FlowKey,
  type FlowPage,
  type FlowTable,
  type FlowTableOptions,
  type FlowTableStats,
  type FlowVerdict,
  type InsertResult,
  type RemovedFlow,
  type ResolvedFlowTableOptions,
} from './flow-table.js';
import {
  checkBatch,
  checkIndex,
  checkNow,
  checkZone,
  counterWords,
  listLimit,
  verdictWords,
} from './checks.js';
import {
  decodeEntry,
  decodeRemoved,
  decodeResult,
  decodeStats,
  FLOW_DIRECTIONS,
  ENTRY_WORDS,
  FLOW_TABLE_ABI,
  optionWords,
  FLOW_KEY_RECORD_BYTES,
  refusalReason,
  REMOVED_WORDS,
  STATS_WORDS,
  writeFlowKeyAt,
} from './packed.js';

/** The addon's FlowTable object; argument layouts are documented in flow_table.cc and packed.ts. */
interface NativeHandle {
  lookupBatch(packets: Uint8Array, count: number, results: Int32Array): number;
  accountBatch(packets: Uint8Array, count: number, nowMs: number, results: Int32Array): number;
  insert(
    packet: Uint8Array,
    replyZone: number,
    action: number,
    dropReason: number,
    egressPolicy: number,
    egressRule: number,
    ingressPolicy: number,
    ingressRule: number,
    nowMs: number,
    out: Int32Array,
  ): number;
  setVerdict(
    index: number,
    action: number,
    dropReason: number,
    egressPolicy: number,
    egressRule: number,
    ingressPolicy: number,
    ingressRule: number,
  ): boolean;
  remove(index: number): boolean;
  expire(nowMs: number, maxScan: number): number;
  get(index: number, out: Float64Array): boolean;
  list(cursor: number, limit: number, out: Float64Array): number;
  zoneFlows(zone: number): number;
  update(
    index: number,
    forwardPackets: number,
    forwardBytes: number,
    reversePackets: number,
    reverseBytes: number,
    tcpState: number,
    lastSeenMs: number,
  ): boolean;
  reportRemovals(on: boolean): void;
  pendingRemovals(): number;
  takeRemoved(out: Float64Array): number;
  stats(out: Float64Array): void;
  close(): void;
}

interface NativeModule {
  readonly FlowTable: new (options: Float64Array) => NativeHandle;
  readonly flowTableAbi: number;
}

export type NativeFlowTableAvailability =
  | { readonly available: true; readonly reason: string }
  | { readonly available: false; readonly reason: string };

function loadModule(): { module: NativeModule | undefined; reason: string } {
  const addon = nativeAddon();
  const status = nativeStatus();
  if (addon === undefined) return { module: undefined, reason: status.reason };
  if (typeof addon.FlowTable !== 'function')
    return {
      module: undefined,
      reason: 'the native addon has no flow table (built from an older source?)',
    };
  if (addon.flowTableAbi !== FLOW_TABLE_ABI) {
    return {
      module: undefined,
      reason: `the native flow table speaks ABI ${String(addon.flowTableAbi)}, this code ${FLOW_TABLE_ABI}: rebuild with npm run build:native`,
    };
  }
  return { module: addon as unknown as NativeModule, reason: status.reason };
}

/** Whether the native flow table can be used, and why (or why not). */
export function nativeFlowTableAvailability(): NativeFlowTableAvailability {
  const { module, reason } = loadModule();
  return module === undefined ? { available: false, reason } : { available: true, reason };
}

export class NativeFlowTable implements FlowTable {
  readonly implementation = 'native' as const;
  readonly options: ResolvedFlowTableOptions;

  private readonly native: NativeHandle;
  private readonly packet = new Uint8Array(FLOW_KEY_RECORD_BYTES);
  private readonly packetView = new DataView(this.packet.buffer);
  private readonly result = new Int32Array(2);
  private readonly entryWords = new Float64Array(ENTRY_WORDS);
  private readonly statsWords = new Float64Array(STATS_WORDS);
  private listWords = new Float64Array(2 + 100 * ENTRY_WORDS);
  private removedWords = new Float64Array(0);
  private closed = false;

  /** Throws when the addon is unavailable; `createFlowTable` chooses for you. */
  constructor(options?: FlowTableOptions) {
    this.options = resolveFlowTableOptions(options);
    const { module, reason } = loadModule();
    if (module === undefined)
      throw new UnavailableError(`native flow table unavailable: ${reason}`);
    this.native = new module.FlowTable(optionWords(this.options));
  }

  insert(
    key: FlowKey,
    verdict: FlowVerdict,
    nowMs: number,
    replyZone: number = key.zone,
  ): InsertResult {
    this.open();
    checkNow(nowMs);
    const v = verdictWords(verdict);
    checkZone(replyZone);
    writeFlowKeyAt(this.packetView, 0, key);
    const [ep = 0, er = 0, ip = 0, ir = 0] = v.ids;
    const outcome = this.native.insert(
      this.packet,
      replyZone,
      v.action,
      v.dropReason,
      ep,
      er,
      ip,
      ir,
      nowMs,
      this.result,
    );
    const a = this.result[0]!;
    if (outcome === 0) return { outcome: 'created', index: a };
    if (outcome === 1)
      return { outcome: 'exists', index: a, direction: FLOW_DIRECTIONS[this.result[1]!]! };
    return { outcome: 'refused', reason: refusalReason(a) };
  }

  resolve(index: number, verdict: FinalVerdict): boolean {
    this.open();
    checkIndex(index);
    const v = verdictWords(verdict);
    if (v.action === 2) throw new TypeError('resolve takes allow or deny');
    const [ep = 0, er = 0, ip = 0, ir = 0] = v.ids;
    return this.native.setVerdict(index, v.action, v.dropReason, ep, er, ip, ir);
  }

  remove(index: number): boolean {
    this.open();
    checkIndex(index);
    return this.native.remove(index);
  }

  lookup(key: FlowKey): FlowHit | undefined {
    this.open();
    writeFlowKeyAt(this.packetView, 0, key);
    this.native.lookupBatch(this.packet, 1, this.result);
    return decodeResult(this.result[0]!);
  }

  account(key: FlowKey, nowMs: number, bytes: number, tcpFlags = 0): FlowHit | undefined {
    this.open();
    checkNow(nowMs);
    writeFlowKeyAt(this.packetView, 0, key, bytes, tcpFlags);
    this.native.accountBatch(this.packet, 1, nowMs, this.result);
    return decodeResult(this.result[0]!);
  }

  lookupBatch(packets: Uint8Array, count: number, results: Int32Array): number {
    this.open();
    checkBatch(packets, count, results);
    return this.native.lookupBatch(packets, count, results);
  }

  accountBatch(packets: Uint8Array, count: number, nowMs: number, results: Int32Array): number {
    this.open();
    checkBatch(packets, count, results);
    checkNow(nowMs);
    return this.native.accountBatch(packets, count, nowMs, results);
  }

  expire(nowMs: number, maxScan = Number.MAX_SAFE_INTEGER): number {
    this.open();
    checkNow(nowMs);
    if (!(maxScan >= 0)) throw new TypeError(`maxScan ${maxScan} is not a count`);
    return this.native.expire(nowMs, maxScan);
  }

  get(index: number): FlowEntry | undefined {
    this.open();
    checkIndex(index);
    return this.native.get(index, this.entryWords) ? decodeEntry(this.entryWords, 0) : undefined;
  }

  list(cursor = 0, limit = 100): FlowPage {
    this.open();
    checkIndex(cursor);
    const max = listLimit(limit);
    const needed = 2 + max * ENTRY_WORDS;
    if (this.listWords.length < needed) this.listWords = new Float64Array(needed);
    const w = this.listWords;
    const count = this.native.list(cursor, max, w);
    const entries: FlowEntry[] = [];
    for (let i = 0; i < count; i++) entries.push(decodeEntry(w, 2 + i * ENTRY_WORDS));
    return { entries, next: w[0]! < 0 ? undefined : w[0]! };
  }

  update(index: number, counters: FlowCountersUpdate): boolean {
    this.open();
    checkIndex(index);
    const [fp, fb, rp, rb, tcp, last] = counterWords(counters);
    return this.native.update(index, fp, fb, rp, rb, tcp, last);
  }

  reportRemovals(on: boolean): void {
    this.open();
    this.native.reportRemovals(on === true);
  }

  get pendingRemovals(): number {
    this.open();
    return this.native.pendingRemovals();
  }

  takeRemoved(): RemovedFlow[] {
    this.open();
    const pending = this.native.pendingRemovals();
    if (pending === 0) return [];
    const needed = pending * REMOVED_WORDS;
    if (this.removedWords.length < needed) this.removedWords = new Float64Array(needed);
    const w = this.removedWords;
    const count = this.native.takeRemoved(w);
    const out: RemovedFlow[] = [];
    for (let i = 0; i < count; i++) out.push(decodeRemoved(w, i * REMOVED_WORDS));
    return out;
  }

  zoneFlows(zone: number): number {
    this.open();
    checkZone(zone);
    return this.native.zoneFlows(zone);
  }

  stats(): FlowTableStats {
    this.open();
    this.native.stats(this.statsWords);
    return decodeStats(this.statsWords);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
  }

  private open(): void {
    if (this.closed) throw new InternalError('the flow table is closed');
  }
}
