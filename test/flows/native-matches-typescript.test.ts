/**
 * The native flow table against the TypeScript one: the same random operation
 * sequences (seeded, so a failure names the seed and the step that reproduce
 * it) on both, every result compared — the removals each call reports
 * included — and the final state — every entry and the stats — compared at
 * the end. Small tables so that limits, eviction, hash
 * chains, index reuse and aging are hit constantly; one large run for load.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  icmpPorts,
  NativeFlowTable,
  nativeFlowTableAvailability,
  FLOW_KEY_RECORD_BYTES,
  TcpFlag,
  TypeScriptFlowTable,
  writeFlowKey,
  type DropReason,
  type FinalVerdict,
  type FlowKey,
  type FlowTable,
  type FlowTableOptions,
  type FlowTableStats,
  type FlowVerdict,
} from '../../vrouter-agent/flows/index.js';
import { replyKey } from '../../testing/flow-key.js';
import { seededRandom } from '../../shared/random.js';

const native = nativeFlowTableAvailability();
const skip = native.available ? false : `the native addon is not loaded (${native.reason})`;

const rng = seededRandom;
type Rng = ReturnType<typeof rng>;

interface Pools {
  zones: number[];
  v4: number[];
  v6: bigint[];
  ports: number[];
}

function pools(r: Rng, size: number): Pools {
  const v4 = Array.from({ length: size }, () => 0x0a000000 + r.int(size * 4));
  const v6 = Array.from(
    { length: Math.max(2, size >> 1) },
    () => (0xfd00n << 112n) | (BigInt(r.int(1 << 30)) << 64n) | BigInt(r.int(size * 4)),
  );
  const ports = [0, 53, 80, 443, ...Array.from({ length: size }, () => 1 + r.int(65535))];
  return { zones: [1, 2, 3, 4], v4, v6, ports };
}

const PROTOCOLS = [6, 6, 6, 6, 17, 17, 17, 1, 58, 132];
const TCP_FLAGS = [
  TcpFlag.syn,
  TcpFlag.syn | TcpFlag.ack,
  TcpFlag.ack,
  TcpFlag.ack,
  TcpFlag.psh | TcpFlag.ack,
  TcpFlag.fin | TcpFlag.ack,
  TcpFlag.rst,
  TcpFlag.rst | TcpFlag.ack,
  0,
];
const REASONS: DropReason[] = [
  'policy-egress',
  'policy-ingress',
  'flow-limit',
  'hold-timeout',
  'none',
];

function randomKey(r: Rng, p: Pools): FlowKey {
  const protocol = r.pick(PROTOCOLS);
  const six = protocol === 58 || (protocol !== 1 && r.chance(0.3));
  const src = six ? r.pick(p.v6) : r.pick(p.v4);
  const dst = six ? r.pick(p.v6) : r.pick(p.v4);
  const zone = r.pick(p.zones);
  if (protocol === 1 || protocol === 58)
    return {
      zone,
      protocol,
      src,
      dst,
      ...icmpPorts(r.pick(six ? [128, 129, 1] : [8, 0, 3]), r.int(4), six ? 6 : 4),
    };
  return { zone, protocol, src, dst, sport: r.pick(p.ports), dport: r.pick(p.ports) };
}

function randomIds(r: Rng) {
  return r.chance(0.3)
    ? {}
    : {
        egress: { policyId: r.int(5), ruleId: r.int(100) },
        ingress: { policyId: r.int(5), ruleId: r.chance(0.1) ? 4294967295 : r.int(100) },
      };
}

function randomFinal(r: Rng): FinalVerdict {
  return r.chance(0.7)
    ? { action: 'allow', ...randomIds(r) }
    : { action: 'deny', dropReason: r.pick(REASONS), ...randomIds(r) };
}

function randomVerdict(r: Rng): FlowVerdict {
  return r.chance(0.25) ? { action: 'hold' } : randomFinal(r);
}

function randomOptions(r: Rng): FlowTableOptions {
  const sec = () => r.pick([0, 0.5, 1, 5, 10, 30, 60, 120, 600]);
  return {
    maxFlows: r.pick([1, 8, 24, 64]),
    maxFlowsPerZone: r.pick([1, 4, 16, 64]),
    maxHoldFlows: r.pick([0, 2, 8, 100]),
    evictionScanFlows: r.pick([0, 1, 4, 64]),
    tcpSynTimeoutSec: sec(),
    tcpEstablishedTimeoutSec: sec(),
    tcpClosingTimeoutSec: sec(),
    tcpClosedTimeoutSec: r.pick([0, 0, 1, 10]),
    udpTimeoutSec: sec(),
    udpStreamTimeoutSec: sec(),
    icmpTimeoutSec: sec(),
    otherTimeoutSec: sec(),
    deniedTimeoutSec: sec(),
    holdTimeoutSec: sec(),
  };
}

function withoutMemory(s: FlowTableStats): Omit<FlowTableStats, 'bytesAllocated'> {
  const { bytesAllocated: _, ...rest } = s;
  return rest;
}

function everything(t: FlowTable) {
  const entries = [];
  let cursor: number | undefined = 0;
  while (cursor !== undefined) {
    const page = t.list(cursor, 1000);
    entries.push(...page.entries);
    cursor = page.next;
  }
  return { entries, stats: withoutMemory(t.stats()) };
}

/** Runs `steps` random operations on both tables, comparing each result. Returns how many operations of each kind ran. */
function runSequence(
  seed: number,
  steps: number,
  options: FlowTableOptions,
  poolSize: number,
  clockStepsMs: readonly number[] = [0, 0, 1, 10, 250, 1000, 5000, 30_000, 200_000],
): Record<string, number> {
  const r = rng(seed);
  const p = pools(r, poolSize);
  const ts = new TypeScriptFlowTable(options);
  const nt = new NativeFlowTable(options);
  const known: Array<{ key: FlowKey; replyZone: number }> = [];
  // Most sequences report removals from the start; some turn it on and off on the way.
  let reporting = seed % 5 !== 0;
  ts.reportRemovals(reporting);
  nt.reportRemovals(reporting);
  const maxIndex = (options.maxFlows ?? 8) + 2;
  const ran: Record<string, number> = {};
  let reported = 0;
  let now = r.int(1000);

  const packet = (): FlowKey => {
    const k = known.length > 0 && r.chance(0.85) ? r.pick(known) : undefined;
    if (k === undefined) return randomKey(r, p);
    return r.chance(0.5) ? k.key : replyKey(k.key, k.replyZone);
  };
  const batch = (n: number, flags: boolean) => {
    const buf = new Uint8Array(n * FLOW_KEY_RECORD_BYTES);
    for (let i = 0; i < n; i++) {
      if (r.chance(0.03)) continue; // family 0: a miss
      writeFlowKey(buf, i, packet(), r.int(1500), flags ? r.pick(TCP_FLAGS) : 0);
    }
    return buf;
  };

  for (let step = 0; step < steps; step++) {
    // Mostly forward; now and then a little back (a late batch), which must not move lastSeenMs back.
    now += r.chance(0.03) ? -r.int(300) : r.pick(clockStepsMs);
    const op = r.pick([
      'insert',
      'insert',
      'insert',
      'account',
      'accountBatch',
      'accountBatch',
      'lookupBatch',
      'lookup',
      'resolve',
      'remove',
      'expire',
      'get',
      'list',
      'zoneFlows',
      'stats',
      'update',
      'report',
    ]);
    ran[op] = (ran[op] ?? 0) + 1;
    const where = `seed ${seed}, step ${step} (${op})`;
    switch (op) {
      case 'insert': {
        const key = known.length > 0 && r.chance(0.2) ? r.pick(known).key : randomKey(r, p);
        const replyZone = r.chance(0.8) ? key.zone : r.pick(p.zones);
        const verdict = randomVerdict(r);
        const a = ts.insert(key, verdict, now, replyZone);
        assert.deepEqual(nt.insert(key, verdict, now, replyZone), a, where);
        if (a.outcome === 'created') known.push({ key, replyZone });
        break;
      }
      case 'account': {
        const k = packet();
        const bytes = r.int(2000);
        const flags = r.pick(TCP_FLAGS);
        assert.deepEqual(nt.account(k, now, bytes, flags), ts.account(k, now, bytes, flags), where);
        break;
      }
      case 'accountBatch':
      case 'lookupBatch': {
        const n = 1 + r.int(r.chance(0.2) ? 100 : 20);
        const buf = batch(n, op === 'accountBatch');
        const ra = new Int32Array(n);
        const rb = new Int32Array(n);
        const ha =
          op === 'accountBatch' ? ts.accountBatch(buf, n, now, ra) : ts.lookupBatch(buf, n, ra);
        const hb =
          op === 'accountBatch' ? nt.accountBatch(buf, n, now, rb) : nt.lookupBatch(buf, n, rb);
        assert.equal(hb, ha, where);
        assert.deepEqual(Array.from(rb), Array.from(ra), where);
        break;
      }
      case 'lookup': {
        const k = packet();
        assert.deepEqual(nt.lookup(k), ts.lookup(k), where);
        break;
      }
      case 'resolve': {
        const i = r.int(maxIndex);
        const v = randomFinal(r);
        assert.equal(nt.resolve(i, v), ts.resolve(i, v), where);
        break;
      }
      case 'remove': {
        const i = r.int(maxIndex);
        assert.equal(nt.remove(i), ts.remove(i), where);
        break;
      }
      case 'expire': {
        const scan = r.chance(0.5) ? undefined : r.int(maxIndex * 2);
        assert.equal(nt.expire(now, scan), ts.expire(now, scan), where);
        break;
      }
      case 'get': {
        const i = r.int(maxIndex);
        assert.deepEqual(nt.get(i), ts.get(i), where);
        break;
      }
      case 'list': {
        const cursor = r.int(maxIndex);
        const limit = r.int(10);
        assert.deepEqual(nt.list(cursor, limit), ts.list(cursor, limit), where);
        break;
      }
      case 'zoneFlows': {
        const z = r.pick(p.zones);
        assert.equal(nt.zoneFlows(z), ts.zoneFlows(z), where);
        break;
      }
      case 'stats':
        assert.deepEqual(withoutMemory(nt.stats()), withoutMemory(ts.stats()), where);
        break;
      case 'update': {
        const i = r.int(maxIndex);
        const u = {
          forward: { packets: r.int(1 << 20), bytes: r.int(1 << 30) },
          reverse: { packets: r.int(1 << 20), bytes: r.int(1 << 30) },
          tcpState: r.int(0x200),
          lastSeenMs: now + r.int(100) - 50,
        };
        assert.equal(nt.update(i, u), ts.update(i, u), where);
        break;
      }
      case 'report':
        if (r.chance(0.2)) {
          reporting = !reporting;
          ts.reportRemovals(reporting);
          nt.reportRemovals(reporting);
        }
        break;
    }
    // What the call removed, as each table reports it.
    assert.equal(nt.pendingRemovals, ts.pendingRemovals, where);
    const removed = ts.takeRemoved();
    assert.deepEqual(nt.takeRemoved(), removed, where);
    if (!reporting) assert.deepEqual(removed, [], where);
    reported += removed.length;
  }
  assert.deepEqual(everything(nt), everything(ts), `seed ${seed}: final state`);
  const s = ts.stats();
  nt.close();
  return {
    ...ran,
    peakFlows: s.peakFlows,
    evicted: s.removedBy.evicted,
    refused: s.refused['table-full'] + s.refused['flow-limit'] + s.refused['hold-limit'],
    closed: s.removedBy.closed,
    aged: s.removedBy.aged,
    reported,
  };
}

test('native matches TypeScript on 400 random sequences of 400 operations over small tables', {
  skip,
}, () => {
  const totals: Record<string, number> = {};
  for (let seed = 1; seed <= 400; seed++) {
    const options = randomOptions(rng(seed * 7919));
    const ran = runSequence(seed, 400, options, 4 + (seed % 8));
    for (const [op, n] of Object.entries(ran)) totals[op] = (totals[op] ?? 0) + n;
  }
  // The sequences must exercise every operation, or the comparison proves little.
  for (const op of [
    'insert',
    'account',
    'accountBatch',
    'lookupBatch',
    'lookup',
    'resolve',
    'remove',
    'expire',
    'get',
    'list',
    'zoneFlows',
    'stats',
    'update',
  ]) {
    assert.ok((totals[op] ?? 0) > 1000, `${op} ran ${totals[op] ?? 0} times`);
  }
  assert.ok(totals.reported! > 10_000, `removals reported: ${totals.reported}`);
});

test('native matches TypeScript on a long sequence over a table of 2,000 flows under load', {
  skip,
}, () => {
  const ran = runSequence(
    20240601,
    70_000,
    {
      maxFlows: 2000,
      maxFlowsPerZone: 1200,
      maxHoldFlows: 300,
      evictionScanFlows: 4,
      tcpSynTimeoutSec: 600,
      udpTimeoutSec: 600,
      udpStreamTimeoutSec: 900,
      otherTimeoutSec: 900,
      icmpTimeoutSec: 300,
      deniedTimeoutSec: 300,
      holdTimeoutSec: 20,
      tcpClosedTimeoutSec: 0,
    },
    2000,
    [0, 0, 1, 5, 10, 20, 50],
  );
  // Under load: the table filled, flows were evicted, refused, closed and aged.
  assert.equal(ran.peakFlows, 2000);
  for (const what of ['evicted', 'refused', 'closed', 'aged', 'reported'] as const)
    assert.ok(ran[what]! > 100, `${what}: ${ran[what]}`);
});

test('the comparison sees differences: tables with different options disagree', { skip }, () => {
  // Guards the harness: if both sides were the same object, every comparison would pass.
  const a = new TypeScriptFlowTable({ udpTimeoutSec: 1 });
  const b = new NativeFlowTable({ udpTimeoutSec: 2 });
  const k: FlowKey = { zone: 1, protocol: 17, src: 1, dst: 2, sport: 3, dport: 4 };
  a.insert(k, { action: 'allow' }, 0);
  b.insert(k, { action: 'allow' }, 0);
  assert.notEqual(a.expire(1500), b.expire(1500));
  assert.notDeepEqual(everything(a), everything(b));
});
