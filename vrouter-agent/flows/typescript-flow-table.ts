/**
 * The flow table in TypeScript: the fallback where the native addon cannot
 * load (or WEIR_NATIVE=0), with the native table's semantics exactly — the
 * same indices (a bump allocator, then a LIFO free list), the same aging
 * cursor and eviction hand, the same results — so that the two can be compared
 * operation by operation (test/flows/native-matches-typescript.test.ts).
 *
 * Flows are stored column-wise in typed arrays grown by doubling up to
 * `maxFlows`; a Map from key strings to `index * 2 + direction` finds them,
 * with one entry for the forward key and one for the reverse.
 */
import { InternalError } from '../../shared/errors.js';
import {
  resolveFlowTableOptions,
  TcpFlag,
  TcpState,
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
  type RemovalCause,
  type RemovedFlow,
  type ResolvedFlowTableOptions,
} from './flow-table.js';
import {
  ACTION_ALLOW,
  ACTION_DENY,
  ACTION_HOLD,
  ACTIONS,
  checkKey,
  decodeResult,
  FLOW_DIRECTIONS,
  DROP_REASONS,
  encodeResult,
  FLOW_KEY_RECORD_BYTES,
  packetBytes,
  REASON_FLOW_LIMIT,
  REASON_HOLD_LIMIT,
  REASON_TABLE_FULL,
  refusalReason,
  RESULT_MISS,
  wordsIp,
} from './packed.js';
import {
  checkBatch,
  checkIndex,
  checkNow,
  checkZone,
  counterWords,
  listLimit,
  verdictWords,
} from './checks.js';

const TCP = 6;
const UDP = 17;
const NEVER = 9;
const PACKETS_WRAP = 2 ** 48;

/** A packet's key in the table's terms: addresses as four big-endian u32 words. */
interface Key {
  zone: number;
  proto: number;
  family: number;
  sport: number;
  dport: number;
  readonly s: number[];
  readonly d: number[];
}

function newKey(): Key {
  return { zone: 0, proto: 0, family: 0, sport: 0, dport: 0, s: [0, 0, 0, 0], d: [0, 0, 0, 0] };
}

function portsFixed(proto: number): boolean {
  return proto === 1 || proto === 58;
}

function words(ip: number | bigint, out: number[]): void {
  if (typeof ip === 'number') {
    out[0] = ip;
    out[1] = out[2] = out[3] = 0;
    return;
  }
  out[0] = Number((ip >> 96n) & 0xffffffffn);
  out[1] = Number((ip >> 64n) & 0xffffffffn);
  out[2] = Number((ip >> 32n) & 0xffffffffn);
  out[3] = Number(ip & 0xffffffffn);
}

function addressText(family: number, w: ArrayLike<number>, o: number): string {
  return family === 4 ? `${w[o]}` : `${w[o]},${w[o + 1]},${w[o + 2]},${w[o + 3]}`;
}

function keyText(
  zone: number,
  proto: number,
  sport: number,
  dport: number,
  src: string,
  dst: string,
): string {
  return `${zone}|${proto}|${sport}|${dport}|${src}|${dst}`;
}

export class TypeScriptFlowTable implements FlowTable {
  readonly implementation = 'typescript' as const;
  readonly options: ResolvedFlowTableOptions;

  private readonly maxFlows: number;
  private readonly synMs: number;
  private readonly establishedMs: number;
  private readonly closingMs: number;
  private readonly closedMs: number;
  private readonly udpMs: number;
  private readonly udpStreamMs: number;
  private readonly icmpMs: number;
  private readonly otherMs: number;
  private readonly deniedMs: number;
  private readonly holdMs: number;

  private size = 0;
  private zone = new Uint32Array(0);
  private replyZone = new Uint32Array(0);
  private sport = new Uint16Array(0);
  private dport = new Uint16Array(0);
  private proto = new Uint8Array(0);
  /** 0: a free slot. */
  private family = new Uint8Array(0);
  private action = new Uint8Array(0);
  private dropReason = new Uint8Array(0);
  private tcp = new Uint16Array(0);
  /** 4 per flow: egress policy, egress rule, ingress policy, ingress rule. */
  private ids = new Uint32Array(0);
  /** 2 per flow: forward, reverse. */
  private packets = new Float64Array(0);
  private bytes = new Float64Array(0);
  private firstSeen = new Float64Array(0);
  private lastSeen = new Float64Array(0);
  /** 4 big-endian words per flow. */
  private src = new Uint32Array(0);
  private dst = new Uint32Array(0);
  private freeNext = new Int32Array(0);

  private readonly keys = new Map<string, number>();
  private readonly zones = new Map<number, number>();
  private live = 0;
  private holds = 0;
  private highWater = 0;
  private freeHead = -1;
  private ageCursor = 0;
  private evictHand = 0;
  private closedTable = false;
  private reporting = false;
  private removedLog: RemovedFlow[] = [];
  private readonly c = {
    peak: 0,
    inserted: 0,
    removed: 0,
    aged: 0,
    closed: 0,
    evicted: 0,
    deleted: 0,
    refusedFlowLimit: 0,
    refusedTableFull: 0,
    refusedHoldLimit: 0,
    holdsCreated: 0,
    holdsResolved: 0,
    lookups: 0,
    hits: 0,
  };
  private readonly scratch = newKey();
  private readonly scratchReverse = newKey();

  constructor(options?: FlowTableOptions) {
    this.options = resolveFlowTableOptions(options);
    const o = this.options;
    this.maxFlows = o.maxFlows;
    this.synMs = o.tcpSynTimeoutSec * 1000;
    this.establishedMs = o.tcpEstablishedTimeoutSec * 1000;
    this.closingMs = o.tcpClosingTimeoutSec * 1000;
    this.closedMs = o.tcpClosedTimeoutSec * 1000;
    this.udpMs = o.udpTimeoutSec * 1000;
    this.udpStreamMs = o.udpStreamTimeoutSec * 1000;
    this.icmpMs = o.icmpTimeoutSec * 1000;
    this.otherMs = o.otherTimeoutSec * 1000;
    this.deniedMs = o.deniedTimeoutSec * 1000;
    this.holdMs = o.holdTimeoutSec * 1000;
    this.grow(Math.min(this.maxFlows, 1024));
  }

  // ---- public interface -----------------------------------------------------

  insert(
    key: FlowKey,
    verdict: FlowVerdict,
    nowMs: number,
    replyZone: number = key.zone,
  ): InsertResult {
    this.open();
    checkKey(key);
    checkNow(nowMs);
    const v = verdictWords(verdict);
    checkZone(replyZone);
    const k = this.fromFlowKey(key, this.scratch);
    const r = this.insertKey(k, replyZone, v.action, v.dropReason, v.ids, nowMs);
    if (r.outcome === 0) return { outcome: 'created', index: r.a };
    if (r.outcome === 1) return { outcome: 'exists', index: r.a, direction: FLOW_DIRECTIONS[r.b]! };
    return { outcome: 'refused', reason: refusalReason(r.a) };
  }

  resolve(index: number, verdict: FinalVerdict): boolean {
    this.open();
    checkIndex(index);
    const v = verdictWords(verdict);
    if (v.action === ACTION_HOLD) throw new TypeError('resolve takes allow or deny');
    if (!this.isLive(index)) return false;
    if (this.action[index] === ACTION_HOLD) {
      this.holds--;
      this.c.holdsResolved++;
    }
    this.action[index] = v.action;
    this.dropReason[index] = v.dropReason;
    this.ids.set(v.ids, index * 4);
    return true;
  }

  remove(index: number): boolean {
    this.open();
    checkIndex(index);
    if (!this.isLive(index)) return false;
    this.removeAt(index, 'deleted');
    return true;
  }

  lookup(key: FlowKey): FlowHit | undefined {
    this.open();
    checkKey(key);
    const k = this.fromFlowKey(key, this.scratch);
    const found = this.find(k);
    this.c.lookups++;
    if (found < 0) return undefined;
    this.c.hits++;
    const index = found >> 1;
    return decodeResult(encodeResult(index, this.action[index]!, found & 1));
  }

  account(key: FlowKey, nowMs: number, bytes: number, tcpFlags = 0): FlowHit | undefined {
    this.open();
    checkKey(key);
    checkNow(nowMs);
    const k = this.fromFlowKey(key, this.scratch);
    const found = this.find(k);
    this.c.lookups++;
    if (found < 0) return undefined;
    const r = this.accountAt(found >> 1, found & 1, packetBytes(bytes), tcpFlags & 0xff, nowMs);
    if (r >= 0) this.c.hits++;
    return decodeResult(r);
  }

  lookupBatch(packets: Uint8Array, count: number, results: Int32Array): number {
    this.open();
    checkBatch(packets, count, results);
    const view = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
    const k = this.scratch;
    let hits = 0;
    for (let i = 0; i < count; i++) {
      const found = this.readFlowKey(view, i * FLOW_KEY_RECORD_BYTES, k) ? this.find(k) : -1;
      if (found < 0) {
        results[i] = RESULT_MISS;
      } else {
        const index = found >> 1;
        results[i] = encodeResult(index, this.action[index]!, found & 1);
        hits++;
      }
    }
    this.c.lookups += count;
    this.c.hits += hits;
    return hits;
  }

  accountBatch(packets: Uint8Array, count: number, nowMs: number, results: Int32Array): number {
    this.open();
    checkBatch(packets, count, results);
    checkNow(nowMs);
    const view = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
    const k = this.scratch;
    let hits = 0;
    for (let i = 0; i < count; i++) {
      const o = i * FLOW_KEY_RECORD_BYTES;
      const found = this.readFlowKey(view, o, k) ? this.find(k) : -1;
      const r =
        found < 0
          ? RESULT_MISS
          : this.accountAt(
              found >> 1,
              found & 1,
              view.getUint32(o + 12, true),
              view.getUint8(o + 10),
              nowMs,
            );
      results[i] = r;
      if (r >= 0) hits++;
    }
    this.c.lookups += count;
    this.c.hits += hits;
    return hits;
  }

  expire(nowMs: number, maxScan = Number.MAX_SAFE_INTEGER): number {
    this.open();
    checkNow(nowMs);
    if (!(maxScan >= 0)) throw new TypeError(`maxScan ${maxScan} is not a count`);
    const hw = this.highWater;
    if (hw === 0) return 0;
    let steps = maxScan < hw ? Math.floor(maxScan) : hw;
    let removed = 0;
    let i = this.ageCursor >= hw ? 0 : this.ageCursor;
    for (; steps > 0; steps--) {
      if (this.family[i] !== 0 && this.expired(i, nowMs)) {
        this.removeAt(i, this.expiryCause(i));
        removed++;
      }
      i = i + 1 >= hw ? 0 : i + 1;
    }
    this.ageCursor = i;
    return removed;
  }

  get(index: number): FlowEntry | undefined {
    this.open();
    checkIndex(index);
    return this.isLive(index) ? this.entry(index) : undefined;
  }

  list(cursor = 0, limit = 100): FlowPage {
    this.open();
    checkIndex(cursor);
    const max = listLimit(limit);
    const hw = this.highWater;
    const entries: FlowEntry[] = [];
    let i = Math.min(cursor, hw);
    for (; i < hw && entries.length < max; i++) {
      if (this.family[i] !== 0) entries.push(this.entry(i));
    }
    return { entries, next: i < hw ? i : undefined };
  }

  update(index: number, counters: FlowCountersUpdate): boolean {
    this.open();
    checkIndex(index);
    const [fp, fb, rp, rb, tcp, last] = counterWords(counters);
    if (!this.isLive(index)) return false;
    this.packets[2 * index] = fp % PACKETS_WRAP;
    this.bytes[2 * index] = fb;
    this.packets[2 * index + 1] = rp % PACKETS_WRAP;
    this.bytes[2 * index + 1] = rb;
    this.tcp[index] = tcp;
    if (last > this.lastSeen[index]!) this.lastSeen[index] = last;
    return true;
  }

  reportRemovals(on: boolean): void {
    this.open();
    this.reporting = on === true;
    if (!this.reporting) this.removedLog = [];
  }

  get pendingRemovals(): number {
    return this.removedLog.length;
  }

  takeRemoved(): RemovedFlow[] {
    this.open();
    const taken = this.removedLog;
    this.removedLog = [];
    return taken;
  }

  zoneFlows(zone: number): number {
    this.open();
    checkZone(zone);
    return this.zones.get(zone) ?? 0;
  }

  stats(): FlowTableStats {
    this.open();
    const c = this.c;
    const arrays = [
      this.zone,
      this.replyZone,
      this.sport,
      this.dport,
      this.proto,
      this.family,
      this.action,
      this.dropReason,
      this.tcp,
      this.ids,
      this.packets,
      this.bytes,
      this.firstSeen,
      this.lastSeen,
      this.src,
      this.dst,
      this.freeNext,
    ];
    return {
      flows: this.live,
      holds: this.holds,
      peakFlows: c.peak,
      maxFlows: this.maxFlows,
      zones: this.zones.size,
      inserted: c.inserted,
      removed: c.removed,
      removedBy: { aged: c.aged, closed: c.closed, evicted: c.evicted, deleted: c.deleted },
      refused: {
        'flow-limit': c.refusedFlowLimit,
        'table-full': c.refusedTableFull,
        'hold-limit': c.refusedHoldLimit,
      },
      holdsCreated: c.holdsCreated,
      holdsResolved: c.holdsResolved,
      lookups: c.lookups,
      hits: c.hits,
      bytesAllocated: arrays.reduce((sum, a) => sum + a.byteLength, 0),
    };
  }

  close(): void {
    if (this.closedTable) return;
    this.closedTable = true;
    this.removedLog = [];
    this.keys.clear();
    this.zones.clear();
    this.size = 0;
    this.grow(0);
  }

  // ---- keys -----------------------------------------------------------------

  private open(): void {
    if (this.closedTable) throw new InternalError('the flow table is closed');
  }

  private fromFlowKey(key: FlowKey, k: Key): Key {
    k.zone = key.zone;
    k.proto = key.protocol;
    k.family = typeof key.src === 'number' ? 4 : 6;
    k.sport = key.sport;
    k.dport = key.dport;
    words(key.src, k.s);
    words(key.dst, k.d);
    return k;
  }

  /** False when the record's family is neither 4 nor 6 (a miss). */
  private readFlowKey(view: DataView, o: number, k: Key): boolean {
    const family = view.getUint8(o + 9);
    if (family !== 4 && family !== 6) return false;
    k.zone = view.getUint32(o, true);
    k.sport = view.getUint16(o + 4, true);
    k.dport = view.getUint16(o + 6, true);
    k.proto = view.getUint8(o + 8);
    k.family = family;
    if (family === 4) {
      k.s[0] = view.getUint32(o + 16, false);
      k.d[0] = view.getUint32(o + 32, false);
      k.s[1] = k.s[2] = k.s[3] = k.d[1] = k.d[2] = k.d[3] = 0;
    } else {
      for (let w = 0; w < 4; w++) {
        k.s[w] = view.getUint32(o + 16 + 4 * w, false);
        k.d[w] = view.getUint32(o + 32 + 4 * w, false);
      }
    }
    return true;
  }

  private text(k: Key): string {
    return keyText(
      k.zone,
      k.proto,
      k.sport,
      k.dport,
      addressText(k.family, k.s, 0),
      addressText(k.family, k.d, 0),
    );
  }

  private forwardText(i: number): string {
    const f = this.family[i]!;
    return keyText(
      this.zone[i]!,
      this.proto[i]!,
      this.sport[i]!,
      this.dport[i]!,
      addressText(f, this.src, i * 4),
      addressText(f, this.dst, i * 4),
    );
  }

  private reverseText(i: number): string {
    const f = this.family[i]!;
    const p = this.proto[i]!;
    const fixed = portsFixed(p);
    return keyText(
      this.replyZone[i]!,
      p,
      fixed ? this.sport[i]! : this.dport[i]!,
      fixed ? this.dport[i]! : this.sport[i]!,
      addressText(f, this.dst, i * 4),
      addressText(f, this.src, i * 4),
    );
  }

  /** `index * 2 + direction`, or -1. */
  private find(k: Key): number {
    return this.keys.get(this.text(k)) ?? -1;
  }

  // ---- flows ----------------------------------------------------------------

  private isLive(index: number): boolean {
    return index < this.highWater && this.family[index] !== 0;
  }

  private insertKey(
    k: Key,
    replyZone: number,
    action: number,
    dropReason: number,
    ids: readonly number[],
    now: number,
  ): { outcome: number; a: number; b: number } {
    const forward = this.text(k);
    let found = this.keys.get(forward) ?? -1;
    if (found >= 0) return { outcome: 1, a: found >> 1, b: found & 1 };
    const r = this.scratchReverse;
    r.zone = replyZone;
    r.proto = k.proto;
    r.family = k.family;
    const fixed = portsFixed(k.proto);
    r.sport = fixed ? k.sport : k.dport;
    r.dport = fixed ? k.dport : k.sport;
    for (let w = 0; w < 4; w++) {
      r.s[w] = k.d[w]!;
      r.d[w] = k.s[w]!;
    }
    const reverse = this.text(r);
    found = this.keys.get(reverse) ?? -1;
    if (found >= 0) return { outcome: 1, a: found >> 1, b: 1 - (found & 1) };

    let refusal = 0;
    if (action === ACTION_HOLD && this.holds >= this.options.maxHoldFlows)
      refusal = REASON_HOLD_LIMIT;
    else if (
      this.zoneCount(k.zone) >= this.options.maxFlowsPerZone ||
      (replyZone !== k.zone && this.zoneCount(replyZone) >= this.options.maxFlowsPerZone)
    )
      refusal = REASON_FLOW_LIMIT;
    else if (this.live >= this.maxFlows && !this.evictOne(now)) refusal = REASON_TABLE_FULL;
    if (refusal !== 0) {
      if (refusal === REASON_HOLD_LIMIT) this.c.refusedHoldLimit++;
      if (refusal === REASON_FLOW_LIMIT) this.c.refusedFlowLimit++;
      if (refusal === REASON_TABLE_FULL) this.c.refusedTableFull++;
      return { outcome: 2, a: refusal, b: 0 };
    }

    let i: number;
    if (this.freeHead >= 0) {
      i = this.freeHead;
      this.freeHead = this.freeNext[i]!;
    } else {
      i = this.highWater++;
      if (i >= this.size) this.grow(Math.min(this.maxFlows, Math.max(1024, this.size * 2)));
    }
    this.zone[i] = k.zone;
    this.replyZone[i] = replyZone;
    this.sport[i] = k.sport;
    this.dport[i] = k.dport;
    this.proto[i] = k.proto;
    this.family[i] = k.family;
    this.action[i] = action;
    this.dropReason[i] = dropReason;
    this.tcp[i] = 0;
    this.ids.set(ids, i * 4);
    this.packets[2 * i] = this.packets[2 * i + 1] = 0;
    this.bytes[2 * i] = this.bytes[2 * i + 1] = 0;
    this.firstSeen[i] = now;
    this.lastSeen[i] = now;
    this.src.set(k.s, i * 4);
    this.dst.set(k.d, i * 4);
    // Reverse first: for a flow from an address and port to themselves both
    // texts are equal, and forward wins.
    this.keys.set(reverse, i * 2 + 1);
    this.keys.set(forward, i * 2);
    this.addZone(k.zone, 1);
    if (replyZone !== k.zone) this.addZone(replyZone, 1);
    this.live++;
    if (this.live > this.c.peak) this.c.peak = this.live;
    this.c.inserted++;
    if (action === ACTION_HOLD) {
      this.holds++;
      this.c.holdsCreated++;
    }
    return { outcome: 0, a: i, b: 0 };
  }

  private accountAt(i: number, dir: number, bytes: number, flags: number, now: number): number {
    const tracked = this.proto[i] === TCP && this.action[i] !== ACTION_DENY;
    const before = this.tcp[i]!;
    if (
      tracked &&
      (before & TcpState.closed) !== 0 &&
      (flags & TcpFlag.syn) !== 0 &&
      (flags & TcpFlag.ack) === 0
    ) {
      this.removeAt(i, 'closed');
      return RESULT_MISS;
    }
    const p = this.packets[2 * i + dir]! + 1;
    this.packets[2 * i + dir] = p === PACKETS_WRAP ? 0 : p;
    this.bytes[2 * i + dir]! += bytes;
    if (now > this.lastSeen[i]!) this.lastSeen[i] = now;
    const result = encodeResult(i, this.action[i]!, dir);
    if (tracked) {
      let s = before;
      if (flags & TcpFlag.syn) s |= dir ? TcpState.synReverse : TcpState.synForward;
      if (flags & TcpFlag.ack) s |= dir ? TcpState.ackReverse : TcpState.ackForward;
      if (flags & TcpFlag.fin) s |= dir ? TcpState.finReverse : TcpState.finForward;
      if (flags & TcpFlag.rst) s |= TcpState.rst | TcpState.closed;
      const acks = TcpState.ackForward | TcpState.ackReverse;
      if ((s & acks) === acks && (s & TcpState.rst) === 0) s |= TcpState.established;
      const fins = TcpState.finForward | TcpState.finReverse;
      if ((s & fins) === fins) s |= TcpState.closed;
      this.tcp[i] = s;
      if ((s & TcpState.closed) !== 0 && (before & TcpState.closed) === 0 && this.closedMs === 0)
        this.removeAt(i, 'closed');
    }
    return result;
  }

  private idleTimeoutMs(i: number): number {
    if (this.action[i] === ACTION_DENY) return this.deniedMs;
    const tcp = this.tcp[i]!;
    switch (this.proto[i]) {
      case TCP:
        if (tcp & TcpState.closed) return this.closedMs;
        if (tcp & (TcpState.finForward | TcpState.finReverse)) return this.closingMs;
        if (tcp & TcpState.established) return this.establishedMs;
        return this.synMs;
      case UDP:
        return this.packets[2 * i + 1]! > 0 ? this.udpStreamMs : this.udpMs;
      case 1:
      case 58:
        return this.icmpMs;
      default:
        return this.otherMs;
    }
  }

  private expired(i: number, now: number): boolean {
    if (this.action[i] === ACTION_HOLD) return now - this.firstSeen[i]! >= this.holdMs;
    return now - this.lastSeen[i]! >= this.idleTimeoutMs(i);
  }

  private established(i: number): boolean {
    if (this.action[i] !== ACTION_ALLOW) return false;
    if (this.proto[i] === TCP)
      return (this.tcp[i]! & TcpState.established) !== 0 && (this.tcp[i]! & TcpState.closed) === 0;
    return this.packets[2 * i + 1]! > 0;
  }

  private evictionRank(i: number, now: number): number {
    if (this.expired(i, now)) return 0;
    if (
      this.action[i] === ACTION_ALLOW &&
      this.proto[i] === TCP &&
      (this.tcp[i]! & TcpState.closed) !== 0
    )
      return 1;
    if (this.action[i] === ACTION_DENY) return 2;
    if (this.action[i] === ACTION_HOLD) return 3;
    if (!this.established(i)) return 4;
    return NEVER;
  }

  private expiryCause(i: number): RemovalCause {
    return this.proto[i] === TCP && (this.tcp[i]! & TcpState.closed) !== 0 ? 'closed' : 'aged';
  }

  private evictOne(now: number): boolean {
    const hw = this.highWater;
    let best = -1;
    let bestRank = NEVER;
    let i = this.evictHand >= hw ? 0 : this.evictHand;
    const steps = Math.min(this.options.evictionScanFlows, hw);
    for (let n = 0; n < steps; n++) {
      if (this.family[i] !== 0) {
        const r = this.evictionRank(i, now);
        if (r < bestRank) {
          bestRank = r;
          best = i;
          if (r === 0) break;
        }
      }
      i = i + 1 >= hw ? 0 : i + 1;
    }
    if (best < 0) {
      this.evictHand = i;
      return false;
    }
    this.evictHand = best + 1 >= hw ? 0 : best + 1;
    this.removeAt(best, bestRank === 0 ? this.expiryCause(best) : 'evicted');
    return true;
  }

  private removeAt(i: number, cause: RemovalCause): void {
    if (this.reporting && this.removedLog.length < this.maxFlows)
      this.removedLog.push({ cause, entry: this.entry(i) });
    this.keys.delete(this.forwardText(i));
    this.keys.delete(this.reverseText(i));
    this.addZone(this.zone[i]!, -1);
    if (this.replyZone[i] !== this.zone[i]) this.addZone(this.replyZone[i]!, -1);
    if (this.action[i] === ACTION_HOLD) this.holds--;
    this.live--;
    this.c.removed++;
    this.c[cause]++;
    this.family[i] = 0;
    this.freeNext[i] = this.freeHead;
    this.freeHead = i;
  }

  private zoneCount(zone: number): number {
    return this.zones.get(zone) ?? 0;
  }

  private addZone(zone: number, delta: number): void {
    const n = (this.zones.get(zone) ?? 0) + delta;
    if (n === 0) this.zones.delete(zone);
    else this.zones.set(zone, n);
  }

  private entry(i: number): FlowEntry {
    const f = this.family[i]!;
    const ip = (w: Uint32Array) => wordsIp(w, i * 4, f);
    return {
      index: i,
      key: {
        zone: this.zone[i]!,
        protocol: this.proto[i]!,
        src: ip(this.src),
        dst: ip(this.dst),
        sport: this.sport[i]!,
        dport: this.dport[i]!,
      },
      replyZone: this.replyZone[i]!,
      action: ACTIONS[this.action[i]!]!,
      dropReason: DROP_REASONS[this.dropReason[i]!]!,
      tcpState: this.tcp[i]!,
      egress: { policyId: this.ids[i * 4]!, ruleId: this.ids[i * 4 + 1]! },
      ingress: { policyId: this.ids[i * 4 + 2]!, ruleId: this.ids[i * 4 + 3]! },
      forward: { packets: this.packets[2 * i]!, bytes: this.bytes[2 * i]! },
      reverse: { packets: this.packets[2 * i + 1]!, bytes: this.bytes[2 * i + 1]! },
      firstSeenMs: this.firstSeen[i]!,
      lastSeenMs: this.lastSeen[i]!,
    };
  }

  private grow(size: number): void {
    const g = <T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(
      old: T,
      make: (n: number) => T,
      per: number,
    ): T => {
      const a = make(size * per);
      a.set(old.subarray(0, Math.min(old.length, size * per)) as never);
      return a;
    };
    this.zone = g(this.zone, (n) => new Uint32Array(n), 1);
    this.replyZone = g(this.replyZone, (n) => new Uint32Array(n), 1);
    this.sport = g(this.sport, (n) => new Uint16Array(n), 1);
    this.dport = g(this.dport, (n) => new Uint16Array(n), 1);
    this.proto = g(this.proto, (n) => new Uint8Array(n), 1);
    this.family = g(this.family, (n) => new Uint8Array(n), 1);
    this.action = g(this.action, (n) => new Uint8Array(n), 1);
    this.dropReason = g(this.dropReason, (n) => new Uint8Array(n), 1);
    this.tcp = g(this.tcp, (n) => new Uint16Array(n), 1);
    this.ids = g(this.ids, (n) => new Uint32Array(n), 4);
    this.packets = g(this.packets, (n) => new Float64Array(n), 2);
    this.bytes = g(this.bytes, (n) => new Float64Array(n), 2);
    this.firstSeen = g(this.firstSeen, (n) => new Float64Array(n), 1);
    this.lastSeen = g(this.lastSeen, (n) => new Float64Array(n), 1);
    this.src = g(this.src, (n) => new Uint32Array(n), 4);
    this.dst = g(this.dst, (n) => new Uint32Array(n), 4);
    this.freeNext = g(this.freeNext, (n) => new Int32Array(n), 1);
    this.size = size;
  }
}
