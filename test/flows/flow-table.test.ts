/**
 * One suite, run against both flow tables: the TypeScript implementation and
 * the native addon (skipped, with the reason, only when the addon is not
 * loaded). test/flows/native-matches-typescript.test.ts compares the two on
 * random operation sequences.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import {
  icmpPorts,
  NativeFlowTable,
  nativeFlowTableAvailability,
  FlowKeyBatch,
  RESULT_MISS,
  resultActionCode,
  resultDirectionCode,
  resultIndex,
  TcpFlag,
  TcpState,
  tcpStateNames,
  TypeScriptFlowTable,
  type FlowKey,
  type FlowTable,
  type FlowTableOptions,
} from '../../vrouter-agent/flows/index.js';
import { replyKey } from '../../testing/flow-key.js';

const native = nativeFlowTableAvailability();
const implementations: Array<{
  name: string;
  make: (o?: FlowTableOptions) => FlowTable;
  skip: string | false;
}> = [
  { name: 'TypeScript', make: (o) => new TypeScriptFlowTable(o), skip: false },
  {
    name: 'native',
    make: (o) => new NativeFlowTable(o),
    skip: native.available ? false : `the native addon is not loaded (${native.reason})`,
  },
];

const TCP = 6;
const UDP = 17;
const { syn, ack, fin, rst } = TcpFlag;

/** A key from "address:port" texts (IPv6 as "[addr]:port"). */
function key(from: string, to: string, protocol = TCP, zone = 1): FlowKey {
  const split = (s: string): [string, number] => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
    if (!m) throw new Error(`bad endpoint ${s}`);
    return [m[1]!, Number(m[2])];
  };
  const [src, sport] = split(from);
  const [dst, dport] = split(to);
  return { zone, protocol, src: parseIp(src), dst: parseIp(dst), sport, dport };
}

/** The i-th of many distinct client keys towards one server. */
function client(i: number, zone = 1, protocol = TCP): FlowKey {
  return {
    zone,
    protocol,
    src: 0x0a000000 + (i >>> 8),
    dst: parseIp('10.9.9.9'),
    sport: 1024 + (i & 0xff),
    dport: 443,
  };
}

const ALLOW = { action: 'allow' } as const;
const DENY = { action: 'deny', dropReason: 'policy-ingress' } as const;
const HOLD = { action: 'hold' } as const;

function created(
  t: FlowTable,
  k: FlowKey,
  verdict: Parameters<FlowTable['insert']>[1] = ALLOW,
  now = 0,
  replyZone?: number,
): number {
  const r = t.insert(k, verdict, now, replyZone);
  assert.equal(r.outcome, 'created', `insert: ${JSON.stringify(r)}`);
  return r.outcome === 'created' ? r.index : -1;
}

/** Runs a handshake so the flow is established. */
function establish(t: FlowTable, k: FlowKey, now = 0): void {
  t.account(k, now, 60, syn);
  t.account(replyKey(k), now, 60, syn | ack);
  t.account(k, now, 52, ack);
}

for (const impl of implementations) {
  describe(`${impl.name} flow table`, { skip: impl.skip }, () => {
    const make = impl.make;

    describe('pairing and lookup', () => {
      test('an inserted flow is found by its forward packet and by its reply, each with its direction', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        assert.deepEqual(t.lookup(k), { index: i, direction: 'forward', action: 'allow' });
        assert.deepEqual(t.lookup(replyKey(k)), {
          index: i,
          direction: 'reverse',
          action: 'allow',
        });
        assert.equal(t.lookup(key('10.0.0.1:40001', '10.0.0.2:80')), undefined);
        assert.equal(t.lookup({ ...k, protocol: UDP }), undefined);
      });

      test('a reply is looked up in the reply zone: a pod-to-pod flow pairs the client zone with the server zone', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80', TCP, 1);
        const i = created(t, k, ALLOW, 0, 2);
        assert.deepEqual(t.lookup(replyKey(k, 2)), {
          index: i,
          direction: 'reverse',
          action: 'allow',
        });
        assert.equal(t.lookup(replyKey(k, 1)), undefined);
        assert.equal(t.lookup({ ...k, zone: 2 }), undefined);
        assert.equal(t.get(i)?.replyZone, 2);
      });

      test('the same addresses and ports in another zone are another flow', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const a = created(t, k);
        const b = created(t, { ...k, zone: 7 });
        assert.notEqual(a, b);
        assert.equal(t.lookup({ ...k, zone: 7 })?.index, b);
        assert.equal(t.lookup(replyKey(k))?.index, a);
      });

      test('inserting a key that already has a flow, or whose reply has one, changes nothing and says which flow', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k, ALLOW);
        assert.deepEqual(t.insert(k, DENY, 5), {
          outcome: 'exists',
          index: i,
          direction: 'forward',
        });
        assert.deepEqual(t.insert(replyKey(k), DENY, 5), {
          outcome: 'exists',
          index: i,
          direction: 'reverse',
        });
        const z = key('10.0.0.3:1', '10.0.0.4:2', TCP, 1);
        const j = created(t, z, ALLOW, 0, 2);
        // A flow whose reply (in zone 1) would be z's forward packet.
        assert.deepEqual(t.insert(replyKey(z, 3), ALLOW, 0, 1), {
          outcome: 'exists',
          index: j,
          direction: 'reverse',
        });
        assert.equal(t.get(i)?.action, 'allow');
        assert.equal(t.stats().flows, 2);
      });

      test('a flow from an address and port to themselves matches forward', () => {
        const t = make();
        const k = key('10.0.0.1:5000', '10.0.0.1:5000');
        const i = created(t, k);
        assert.deepEqual(t.lookup(k), { index: i, direction: 'forward', action: 'allow' });
        assert.equal(t.remove(i), true);
        assert.equal(t.lookup(k), undefined);
      });

      test('ICMP echo replies find their request flow: the port slots hold the id and the echo-request type both ways', () => {
        const t = make();
        for (const [src, dst, family, request, replyType, protocol] of [
          ['10.0.0.1', '10.0.0.2', 4, 8, 0, 1],
          ['fd00::1', 'fd00::2', 6, 128, 129, 58],
        ] as const) {
          const ports = icmpPorts(request, 77, family);
          const k: FlowKey = { zone: 1, protocol, src: parseIp(src), dst: parseIp(dst), ...ports };
          const i = created(t, k);
          const r: FlowKey = {
            zone: 1,
            protocol,
            src: parseIp(dst),
            dst: parseIp(src),
            ...icmpPorts(replyType, 77, family),
          };
          assert.deepEqual(r, replyKey(k));
          assert.deepEqual(t.lookup(r), { index: i, direction: 'reverse', action: 'allow' });
          assert.equal(t.lookup({ ...r, sport: 78 }), undefined);
        }
        assert.deepEqual(icmpPorts(3, 0, 4), { sport: 0, dport: 3 });
      });

      test('IPv6 flows pair like IPv4 ones, and an IPv4 key never matches an IPv6 flow with the same low bits', () => {
        const t = make();
        const k6 = key('[fd00::a00:1]:40000', '[2001:db8::2]:443');
        const i = created(t, k6);
        assert.deepEqual(t.lookup(replyKey(k6)), {
          index: i,
          direction: 'reverse',
          action: 'allow',
        });
        const mapped = key('[::10.0.0.1]:40000', '[::10.0.0.2]:80');
        const m = created(t, mapped);
        const k4 = key('10.0.0.1:40000', '10.0.0.2:80');
        assert.equal(t.lookup(k4), undefined);
        const j = created(t, k4);
        assert.notEqual(j, m);
        assert.equal(t.lookup(mapped)?.index, m);
        assert.deepEqual(t.get(i)?.key, k6);
      });

      test('get returns the whole flow: key, reply zone, verdict with rule ids, counters, times and TCP state', () => {
        const t = make();
        const k = key('10.1.0.5:33000', '10.2.0.9:8080', TCP, 42);
        const i = created(
          t,
          k,
          {
            action: 'allow',
            egress: { policyId: 11, ruleId: 12 },
            ingress: { policyId: 13, ruleId: 4294967295 },
          },
          1_000,
          43,
        );
        t.account(k, 1_500, 60, syn);
        t.account(replyKey(k, 43), 1_700, 40, syn | ack);
        assert.deepEqual(t.get(i), {
          index: i,
          key: k,
          replyZone: 43,
          action: 'allow',
          dropReason: 'none',
          egress: { policyId: 11, ruleId: 12 },
          ingress: { policyId: 13, ruleId: 4294967295 },
          forward: { packets: 1, bytes: 60 },
          reverse: { packets: 1, bytes: 40 },
          firstSeenMs: 1_000,
          lastSeenMs: 1_700,
          tcpState: TcpState.synForward | TcpState.synReverse | TcpState.ackReverse,
        });
        const d = created(t, key('10.1.0.5:1', '10.2.0.9:2'), {
          action: 'deny',
          dropReason: 'policy-egress',
          egress: { policyId: 5, ruleId: 0 },
        });
        assert.equal(t.get(d)?.dropReason, 'policy-egress');
        assert.equal(t.get(d)?.action, 'deny');
      });

      test('accounting counts packets and bytes each way and moves last seen forward, never back', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:53', UDP);
        const i = created(t, k, ALLOW, 100);
        assert.deepEqual(t.account(k, 200, 70), {
          index: i,
          direction: 'forward',
          action: 'allow',
        });
        t.account(k, 300, 30);
        assert.deepEqual(t.account(replyKey(k), 250, 500), {
          index: i,
          direction: 'reverse',
          action: 'allow',
        });
        const e = t.get(i)!;
        assert.deepEqual(
          [e.forward, e.reverse],
          [
            { packets: 2, bytes: 100 },
            { packets: 1, bytes: 500 },
          ],
        );
        assert.deepEqual([e.firstSeenMs, e.lastSeenMs], [100, 300]);
        assert.equal(t.account(key('10.0.0.1:1', '10.0.0.2:2', UDP), 400, 1), undefined);
      });
    });

    describe('TCP state', () => {
      test('a handshake goes SYN, SYN-ACK, ACK to established', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        t.account(k, 0, 60, syn);
        assert.deepEqual(tcpStateNames(t.get(i)!.tcpState), ['synForward']);
        t.account(replyKey(k), 0, 60, syn | ack);
        assert.deepEqual(tcpStateNames(t.get(i)!.tcpState), [
          'synForward',
          'synReverse',
          'ackReverse',
        ]);
        t.account(k, 0, 52, ack);
        assert.deepEqual(tcpStateNames(t.get(i)!.tcpState), [
          'synForward',
          'synReverse',
          'ackForward',
          'ackReverse',
          'established',
        ]);
      });

      test('a connection picked up mid-stream is established once an ACK has been seen each way', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        t.account(k, 0, 1400, ack);
        t.account(k, 0, 1400, ack);
        assert.equal(t.get(i)!.tcpState & TcpState.established, 0);
        t.account(replyKey(k), 0, 52, ack);
        assert.notEqual(t.get(i)!.tcpState & TcpState.established, 0);
      });

      test('FIN both ways closes a flow, which then ages by tcpClosedTimeoutSec instead of the established timeout', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        establish(t, k, 0);
        t.account(k, 1_000, 52, fin | ack);
        assert.equal(t.get(i)!.tcpState & TcpState.closed, 0);
        assert.notEqual(t.get(i)!.tcpState & TcpState.finForward, 0);
        t.account(replyKey(k), 1_000, 52, fin | ack);
        assert.deepEqual(tcpStateNames(t.get(i)!.tcpState).slice(-3), [
          'finForward',
          'finReverse',
          'closed',
        ]);
        t.account(k, 1_000, 52, ack);
        assert.equal(t.expire(1_000 + 9_999), 0);
        assert.equal(t.expire(1_000 + 10_000), 1);
        assert.equal(t.get(i), undefined);
        assert.equal(t.stats().removedBy.closed, 1);
      });

      test('an RST closes a flow at once, and with tcpClosedTimeoutSec 0 the closing packet removes it', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        establish(t, k);
        t.account(replyKey(k), 5, 40, rst);
        assert.deepEqual(tcpStateNames(t.get(i)!.tcpState).slice(-2), ['rst', 'closed']);

        const z = make({ tcpClosedTimeoutSec: 0 });
        const j = created(z, k);
        establish(z, k);
        assert.deepEqual(z.account(k, 5, 52, fin | ack), {
          index: j,
          direction: 'forward',
          action: 'allow',
        });
        assert.deepEqual(z.account(replyKey(k), 6, 52, fin | ack), {
          index: j,
          direction: 'reverse',
          action: 'allow',
        });
        assert.equal(z.get(j), undefined);
        assert.equal(z.lookup(k), undefined);
        const r = created(z, k);
        assert.equal(z.account(replyKey(k), 7, 40, rst | ack)?.index, r);
        assert.equal(z.stats().flows, 0);
        assert.equal(z.stats().removedBy.closed, 2);
      });

      test('a new SYN on a closed flow removes it and misses, so the slow path sees the new connection', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        establish(t, k);
        t.account(k, 1, 40, rst);
        assert.equal(t.account(k, 2, 60, syn), undefined);
        assert.equal(t.get(i), undefined);
        assert.equal(t.lookup(k), undefined);
        assert.equal(t.stats().removedBy.closed, 1);
      });

      test('a denied flow tracks no TCP state and is not closed by FINs or RSTs', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k, DENY);
        t.account(k, 0, 60, syn);
        t.account(k, 0, 60, rst);
        t.account(k, 0, 60, syn);
        assert.equal(t.get(i)!.tcpState, 0);
        assert.equal(t.get(i)!.forward.packets, 3);
      });
    });

    describe('aging', () => {
      // Each case: a flow in some state at time 0 (last packet at 0), and its timeout.
      const cases: Array<{ name: string; timeoutSec: number; setup: (t: FlowTable) => void }> = [
        {
          name: 'TCP before established ages by tcpSynTimeoutSec (60 s)',
          timeoutSec: 60,
          setup: (t) => {
            created(t, key('10.0.0.1:1', '10.0.0.2:80'));
            t.account(key('10.0.0.1:1', '10.0.0.2:80'), 0, 60, syn);
          },
        },
        {
          name: 'TCP established ages by tcpEstablishedTimeoutSec (7440 s)',
          timeoutSec: 7440,
          setup: (t) => {
            created(t, key('10.0.0.1:1', '10.0.0.2:80'));
            establish(t, key('10.0.0.1:1', '10.0.0.2:80'));
          },
        },
        {
          name: 'TCP half-closed ages by tcpClosingTimeoutSec (120 s)',
          timeoutSec: 120,
          setup: (t) => {
            const k = key('10.0.0.1:1', '10.0.0.2:80');
            created(t, k);
            establish(t, k);
            t.account(k, 0, 52, fin | ack);
          },
        },
        {
          name: 'TCP closed ages by tcpClosedTimeoutSec (10 s)',
          timeoutSec: 10,
          setup: (t) => {
            const k = key('10.0.0.1:1', '10.0.0.2:80');
            created(t, k);
            establish(t, k);
            t.account(k, 0, 40, rst);
          },
        },
        {
          name: 'UDP without a reply ages by udpTimeoutSec (30 s)',
          timeoutSec: 30,
          setup: (t) => {
            created(t, key('10.0.0.1:1', '10.0.0.2:53', UDP));
            t.account(key('10.0.0.1:1', '10.0.0.2:53', UDP), 0, 70);
          },
        },
        {
          name: 'UDP with a reply ages by udpStreamTimeoutSec (120 s)',
          timeoutSec: 120,
          setup: (t) => {
            const k = key('10.0.0.1:1', '10.0.0.2:53', UDP);
            created(t, k);
            t.account(replyKey(k), 0, 70);
          },
        },
        {
          name: 'ICMP ages by icmpTimeoutSec (30 s)',
          timeoutSec: 30,
          setup: (t) =>
            void created(t, { zone: 1, protocol: 1, src: 1, dst: 2, ...icmpPorts(8, 9, 4) }),
        },
        {
          name: 'ICMPv6 ages by icmpTimeoutSec (30 s)',
          timeoutSec: 30,
          setup: (t) =>
            void created(t, { zone: 1, protocol: 58, src: 1n, dst: 2n, ...icmpPorts(128, 9, 6) }),
        },
        {
          name: 'other protocols (SCTP) age by otherTimeoutSec (600 s)',
          timeoutSec: 600,
          setup: (t) => void created(t, key('10.0.0.1:1', '10.0.0.2:2', 132)),
        },
        {
          name: 'a denied flow ages by deniedTimeoutSec (30 s) whatever its protocol',
          timeoutSec: 30,
          setup: (t) => void created(t, key('10.0.0.1:1', '10.0.0.2:80'), DENY),
        },
        {
          name: 'a hold entry expires holdTimeoutSec (5 s) after insertion',
          timeoutSec: 5,
          setup: (t) => void created(t, key('10.0.0.1:1', '10.0.0.2:80'), HOLD),
        },
      ];
      for (const c of cases) {
        test(c.name, () => {
          const t = make();
          c.setup(t);
          assert.equal(
            t.expire(c.timeoutSec * 1000 - 1),
            0,
            'one millisecond before the timeout it stays',
          );
          assert.equal(t.stats().flows, 1);
          assert.equal(t.expire(c.timeoutSec * 1000), 1, 'at the timeout it goes');
          assert.equal(t.stats().flows, 0);
        });
      }

      test('traffic keeps a flow alive: idle time counts from the last packet', () => {
        const t = make();
        const k = key('10.0.0.1:1', '10.0.0.2:53', UDP);
        created(t, k);
        for (let now = 20_000; now <= 200_000; now += 20_000) {
          t.account(k, now, 10);
          assert.equal(t.expire(now), 0);
        }
        assert.equal(t.expire(200_000 + 29_999), 0);
        assert.equal(t.expire(200_000 + 30_000), 1);
      });

      test('a hold entry expires on time even while its packets keep arriving', () => {
        const t = make();
        const k = key('10.0.0.1:1', '10.0.0.2:80');
        created(t, k, HOLD);
        t.account(k, 4_000, 60, syn);
        assert.equal(t.expire(4_999), 0);
        assert.equal(t.expire(5_000), 1);
      });

      test('timeouts come from the options', () => {
        const t = make({ tcpEstablishedTimeoutSec: 100, udpTimeoutSec: 0.5 });
        const k = key('10.0.0.1:1', '10.0.0.2:80');
        created(t, k);
        establish(t, k);
        created(t, key('10.0.0.1:1', '10.0.0.2:53', UDP));
        assert.equal(t.expire(499), 0);
        assert.equal(t.expire(500), 1);
        assert.equal(t.expire(99_999), 0);
        assert.equal(t.expire(100_000), 1);
      });

      test('expire works in slices, each continuing where the previous stopped', () => {
        const t = make();
        for (let i = 0; i < 10; i++) created(t, client(i, 1, UDP));
        assert.equal(t.expire(30_000, 4), 4);
        assert.equal(t.expire(30_000, 4), 4);
        assert.equal(t.expire(30_000, 4), 2);
        assert.equal(t.stats().flows, 0);
        assert.equal(t.stats().removedBy.aged, 10);
      });
    });

    describe('limits and eviction', () => {
      test("a zone at maxFlowsPerZone refuses new flows with 'flow-limit' while other zones still get theirs", () => {
        const t = make({ maxFlowsPerZone: 3 });
        for (let i = 0; i < 3; i++) created(t, client(i, 1));
        assert.deepEqual(t.insert(client(3, 1), ALLOW, 0), {
          outcome: 'refused',
          reason: 'flow-limit',
        });
        assert.deepEqual(t.insert(client(4, 1), HOLD, 0), {
          outcome: 'refused',
          reason: 'flow-limit',
        });
        created(t, client(3, 2));
        assert.equal(t.zoneFlows(1), 3);
        assert.equal(t.zoneFlows(2), 1);
        assert.equal(t.stats().refused['flow-limit'], 2);
        t.remove(t.lookup(client(0, 1))!.index);
        created(t, client(3, 1));
      });

      test('a pod-to-pod flow counts against both of its zones', () => {
        const t = make({ maxFlowsPerZone: 2 });
        created(t, client(0, 1), ALLOW, 0, 2);
        created(t, client(1, 2));
        assert.deepEqual([t.zoneFlows(1), t.zoneFlows(2)], [1, 2]);
        assert.deepEqual(t.insert(client(2, 1), ALLOW, 0, 2), {
          outcome: 'refused',
          reason: 'flow-limit',
        });
        assert.deepEqual(t.insert(client(3, 2), ALLOW, 0), {
          outcome: 'refused',
          reason: 'flow-limit',
        });
        created(t, client(4, 1));
        t.remove(t.lookup(client(0, 1))!.index);
        assert.deepEqual([t.zoneFlows(1), t.zoneFlows(2)], [1, 1]);
        assert.equal(t.stats().zones, 2);
      });

      test("holds beyond maxHoldFlows are refused with 'hold-limit', and resolving a hold frees a place", () => {
        const t = make({ maxHoldFlows: 2 });
        const a = created(t, client(0), HOLD);
        created(t, client(1), HOLD);
        assert.deepEqual(t.insert(client(2), HOLD, 0), {
          outcome: 'refused',
          reason: 'hold-limit',
        });
        created(t, client(3), ALLOW);
        assert.equal(t.resolve(a, ALLOW), true);
        created(t, client(2), HOLD);
        assert.equal(t.stats().holds, 2);
        assert.equal(t.stats().refused['hold-limit'], 1);
      });

      test("the default hold cap is vRouter's 8192", () => {
        const t = make();
        for (let i = 0; i < 8192; i++) created(t, client(i, 1 + (i >> 12)), HOLD);
        assert.deepEqual(t.insert(client(9000, 9), HOLD, 0), {
          outcome: 'refused',
          reason: 'hold-limit',
        });
        assert.equal(t.stats().holds, 8192);
      });

      test('a full table evicts expired flows first, then closed, denied, hold, and allowed flows not yet established', () => {
        const t = make({ maxFlows: 6, evictionScanFlows: 6 });
        const now = 30_000;
        const flows = {
          established: client(0),
          notEstablished: client(1),
          hold: client(2),
          deny: client(3),
          closed: client(4),
          expired: client(5, 1, UDP),
        };
        created(t, flows.established, ALLOW, now);
        establish(t, flows.established, now);
        created(t, flows.notEstablished, ALLOW, now);
        t.account(flows.notEstablished, now, 60, syn);
        created(t, flows.hold, HOLD, now);
        created(t, flows.deny, DENY, now);
        created(t, flows.closed, ALLOW, now);
        establish(t, flows.closed, now);
        t.account(flows.closed, now, 40, rst);
        created(t, flows.expired, ALLOW, 0); // idle 30 s at now: expired
        const order: string[] = [];
        for (let i = 10; i < 14; i++) {
          created(t, client(i), ALLOW, now + 1);
          for (const [name, k] of Object.entries(flows))
            if (!order.includes(name) && t.lookup(k) === undefined) order.push(name);
        }
        assert.deepEqual(order, ['expired', 'closed', 'deny', 'hold']);
        const s = t.stats();
        assert.deepEqual([s.removedBy.aged, s.removedBy.evicted], [1, 3]);
        // From here on only allowed flows that are not established can go.
        for (let i = 20; i < 60; i++) created(t, client(i), ALLOW, now + 1);
        assert.equal(t.lookup(flows.notEstablished), undefined);
        assert.notEqual(t.lookup(flows.established), undefined, 'the established flow survived');
      });

      test('a flood of new flows into a table full of established flows is refused and evicts none of them', () => {
        const t = make({ maxFlows: 200, maxFlowsPerZone: 1000 });
        for (let i = 0; i < 100; i++) {
          created(t, client(i));
          establish(t, client(i));
        }
        for (let i = 100; i < 200; i++) {
          const k = client(i, 1, UDP);
          created(t, k);
          t.account(replyKey(k), 0, 100);
        }
        for (let i = 0; i < 5_000; i++) {
          assert.deepEqual(t.insert(client(1000 + i, 2), ALLOW, 10), {
            outcome: 'refused',
            reason: 'table-full',
          });
        }
        const s = t.stats();
        assert.equal(s.flows, 200);
        assert.equal(s.refused['table-full'], 5_000);
        assert.equal(s.removedBy.evicted, 0);
        for (let i = 0; i < 100; i++) assert.notEqual(t.lookup(client(i)), undefined);
      });

      test('a SYN flood into a full table replaces only flows not yet established, never the established ones', () => {
        const t = make({ maxFlows: 1000, maxFlowsPerZone: 100_000 });
        for (let i = 0; i < 500; i++) {
          created(t, client(i));
          establish(t, client(i));
        }
        for (let i = 500; i < 1000; i++) {
          created(t, client(i));
          t.account(client(i), 0, 60, syn);
        }
        let admitted = 0;
        for (let i = 0; i < 20_000; i++) {
          const k = client(5000 + i, 2);
          if (t.insert(k, ALLOW, 1).outcome === 'created') {
            admitted++;
            t.account(k, 1, 60, syn);
          }
        }
        // A scan window (64 flows) that meets only established flows refuses
        // the new flow rather than search on: 8 windows per pass over the 500.
        assert.ok(admitted >= 19_500, `${admitted} of 20000 new flows admitted`);
        for (let i = 0; i < 500; i++)
          assert.notEqual(t.lookup(client(i)), undefined, `established flow ${i} was evicted`);
        const s = t.stats();
        assert.equal(s.removedBy.evicted, admitted);
        assert.equal(s.refused['table-full'], 20_000 - admitted);
      });
    });

    describe('holds', () => {
      test('a hold entry resolves into allow or deny with its rule ids; resolving a free index is false', () => {
        const t = make();
        const a = created(t, client(0), HOLD);
        const b = created(t, client(1), HOLD);
        assert.deepEqual(t.lookup(client(0)), { index: a, direction: 'forward', action: 'hold' });
        assert.equal(t.resolve(a, { action: 'allow', ingress: { policyId: 3, ruleId: 9 } }), true);
        assert.equal(
          t.resolve(b, {
            action: 'deny',
            dropReason: 'policy-egress',
            egress: { policyId: 2, ruleId: 0 },
          }),
          true,
        );
        assert.deepEqual(t.lookup(replyKey(client(0))), {
          index: a,
          direction: 'reverse',
          action: 'allow',
        });
        assert.equal(t.lookup(client(1))?.action, 'deny');
        assert.deepEqual(t.get(a)?.ingress, { policyId: 3, ruleId: 9 });
        assert.deepEqual([t.get(b)?.dropReason, t.get(b)?.egress.policyId], ['policy-egress', 2]);
        assert.equal(t.resolve(999, ALLOW), false);
        assert.throws(() => t.resolve(a, HOLD as never), TypeError);
        const s = t.stats();
        assert.deepEqual([s.holds, s.holdsCreated, s.holdsResolved], [0, 2, 2]);
      });

      test('a flow can be re-verdicted after a policy change', () => {
        const t = make();
        const i = created(t, client(0), ALLOW);
        t.resolve(i, DENY);
        assert.equal(t.lookup(client(0))?.action, 'deny');
        assert.equal(t.stats().holdsResolved, 0);
      });
    });

    describe('batches', () => {
      test('lookupBatch answers hits, replies and misses in one call, as single lookups do', () => {
        const t = make();
        const keys: FlowKey[] = [];
        for (let i = 0; i < 50; i++) {
          const k = i % 2 ? client(i) : key(`[fd00::${i + 1}]:${i + 1}`, '[fd00::ffff]:443');
          keys.push(k);
          created(t, k, i % 3 === 0 ? DENY : ALLOW);
        }
        const batch = new FlowKeyBatch(150);
        const probes = [
          ...keys,
          ...keys.map((k) => replyKey(k)),
          ...keys.map((k) => ({ ...k, dport: 1 })),
        ];
        for (const p of probes) batch.push(p);
        assert.equal(t.lookupBatch(batch.packets, batch.count, batch.results), 100);
        // biome-ignore lint/suspicious/useIterableCallbackReturn: returns end one probe's checks
        probes.forEach((p, i) => {
          const r = batch.results[i]!;
          const single = t.lookup(p);
          if (single === undefined) return assert.equal(r, RESULT_MISS);
          assert.deepEqual(
            [resultIndex(r), resultActionCode(r), resultDirectionCode(r)],
            [
              single.index,
              ['allow', 'deny', 'hold'].indexOf(single.action),
              single.direction === 'forward' ? 0 : 1,
            ],
          );
          assert.equal(resultDirectionCode(r), i < 50 ? 0 : 1);
        });
        assert.equal(t.stats().lookups, 300);
      });

      test('accountBatch counts every packet of a batch in order, several of one flow included', () => {
        const t = make({ tcpClosedTimeoutSec: 0 });
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        const u = created(t, client(7, 1, UDP));
        const batch = new FlowKeyBatch(16);
        batch.push(k, 60, syn);
        batch.push(replyKey(k), 60, syn | ack);
        batch.push(k, 52, ack);
        batch.push(client(7, 1, UDP), 100);
        batch.push(replyKey(client(7, 1, UDP)), 200);
        batch.push(k, 1000, ack);
        batch.push(k, 52, fin | ack);
        batch.push(replyKey(k), 52, fin | ack); // closes: removed with its packet
        batch.push(k, 52, ack); // now a miss
        batch.push(client(99), 1);
        assert.equal(t.accountBatch(batch.packets, batch.count, 5_000, batch.results), 8);
        assert.deepEqual(
          Array.from(batch.results.subarray(0, 10), (r) => (r < 0 ? -1 : resultIndex(r))),
          [i, i, i, u, u, i, i, i, -1, -1],
        );
        assert.equal(t.get(i), undefined);
        assert.deepEqual(
          [t.get(u)?.forward.bytes, t.get(u)?.reverse.bytes, t.get(u)?.lastSeenMs],
          [100, 200, 5_000],
        );
      });

      test('batch calls refuse counts beyond their buffers', () => {
        const t = make();
        const batch = new FlowKeyBatch(4);
        assert.throws(() => t.lookupBatch(batch.packets, 5, batch.results), RangeError);
        assert.throws(() => t.accountBatch(batch.packets, 4, 0, new Int32Array(3)), RangeError);
        assert.throws(() => t.lookupBatch(batch.packets, 1.5, batch.results), RangeError);
        assert.equal(t.lookupBatch(batch.packets, 0, batch.results), 0);
      });

      test('a packet record of an unknown family misses', () => {
        const t = make();
        const batch = new FlowKeyBatch(1);
        created(t, key('0.0.0.0:0', '0.0.0.0:0', 0, 0));
        assert.equal(
          t.lookupBatch(batch.packets, 1, batch.results),
          0,
          'an all-zero record has family 0',
        );
        assert.equal(batch.results[0], RESULT_MISS);
      });
    });

    describe('enumeration and stats', () => {
      test('list pages through every flow in index order with a cursor, none twice', () => {
        const t = make();
        for (let i = 0; i < 25; i++) created(t, client(i));
        for (const i of [0, 5, 6, 24]) t.remove(i);
        const seen: number[] = [];
        let cursor: number | undefined = 0;
        let pages = 0;
        while (cursor !== undefined) {
          const page = t.list(cursor, 4);
          assert.ok(page.entries.length <= 4);
          seen.push(...page.entries.map((e) => e.index));
          cursor = page.next;
          pages++;
        }
        assert.deepEqual(
          seen,
          [...Array(25).keys()].filter((i) => ![0, 5, 6, 24].includes(i)),
        );
        assert.ok(pages <= 7);
        assert.deepEqual(t.list(0, 1).entries[0], t.get(1));
        assert.deepEqual(t.list(1000), { entries: [], next: undefined });
      });

      test('the index of a removed flow is reused, the most recently freed first', () => {
        const t = make();
        for (let i = 0; i < 5; i++) created(t, client(i));
        t.remove(1);
        t.remove(3);
        assert.equal(created(t, client(10)), 3);
        assert.equal(created(t, client(11)), 1);
        assert.equal(created(t, client(12)), 5);
      });

      test('get of a free or never-used index is undefined, and remove of one is false', () => {
        const t = make();
        created(t, client(0));
        assert.equal(t.get(1), undefined);
        assert.equal(t.get(1_000_000), undefined);
        assert.equal(t.remove(1), false);
        assert.throws(() => t.get(-1), TypeError);
      });

      test('stats count inserts, removals by cause, refusals by reason, holds, lookups and the peak', () => {
        const t = make({ maxFlows: 4, maxFlowsPerZone: 3, maxHoldFlows: 1 });
        created(t, client(0));
        created(t, client(1), HOLD);
        created(t, client(2, 1, UDP));
        created(t, client(3, 2));
        t.insert(client(4), ALLOW, 0); // flow-limit
        t.insert(client(5, 2), HOLD, 0); // hold-limit
        t.insert(client(6, 3), ALLOW, 0); // full: evicts the hold (rank before unestablished)
        t.insert(client(7, 3), ALLOW, 0); // evicts an unestablished flow
        t.remove(t.lookup(client(6, 3))!.index);
        t.lookup(client(0));
        t.lookup(client(99));
        t.expire(60_000);
        const s = t.stats();
        const { bytesAllocated, ...rest } = s;
        assert.ok(bytesAllocated > 0);
        assert.deepEqual(rest, {
          flows: 0,
          holds: 0,
          peakFlows: 4,
          maxFlows: 4,
          zones: 0,
          inserted: 6,
          removed: 6,
          removedBy: { aged: 3, closed: 0, evicted: 2, deleted: 1 },
          refused: { 'flow-limit': 1, 'table-full': 0, 'hold-limit': 1 },
          holdsCreated: 1,
          holdsResolved: 0,
          lookups: 3,
          hits: 2,
        });
      });
    });

    describe('what the table removes, and mirrored counters', () => {
      test('with the report off (the default) the table keeps nothing of the flows it removes', () => {
        const t = make();
        created(t, client(0, 1, UDP));
        t.remove(created(t, client(1)));
        assert.equal(t.expire(60_000), 1);
        assert.equal(t.pendingRemovals, 0);
        assert.deepEqual(t.takeRemoved(), []);
      });

      test('the report hands over every removal with its cause and the entry as it was: closed, evicted, deleted, aged', () => {
        const t = make({ maxFlows: 2, tcpClosedTimeoutSec: 0 });
        t.reportRemovals(true);
        // closed: FIN both ways with tcpClosedTimeoutSec 0, by the closing packet.
        const web = key('10.0.0.1:40000', '10.0.0.2:80');
        const w = created(t, web);
        establish(t, web, 1);
        t.account(web, 2, 52, fin | ack);
        const closing = t.get(w)!;
        t.account(replyKey(web), 3, 52, fin | ack);
        assert.equal(t.pendingRemovals, 1);
        const [closed] = t.takeRemoved();
        assert.equal(closed?.cause, 'closed');
        assert.deepEqual(closed?.entry, {
          ...closing,
          reverse: { packets: 2, bytes: 60 + 52 },
          lastSeenMs: 3,
          tcpState: closing.tcpState | TcpState.finReverse | TcpState.closed,
        });
        assert.deepEqual(t.takeRemoved(), [], 'taken once');
        // evicted: a full table makes room by removing the unestablished flow, not the one with a reply.
        const a = key('10.0.0.1:5000', '10.0.0.9:53', UDP);
        const b = key('10.0.0.1:5001', '10.0.0.9:53', UDP);
        created(t, a, ALLOW, 10);
        t.account(a, 11, 100);
        const ib = created(t, b, ALLOW, 10);
        t.account(replyKey(b), 12, 80);
        const aBefore = t.get(t.lookup(a)!.index)!;
        const c = key('10.0.0.1:5002', '10.0.0.9:53', UDP);
        const ic = created(t, c, DENY, 20);
        assert.deepEqual(t.takeRemoved(), [{ cause: 'evicted', entry: aBefore }]);
        // deleted, then aged.
        const bBefore = t.get(ib)!;
        t.remove(ib);
        const cBefore = t.get(ic)!;
        assert.equal(t.expire(20 + 30_000), 1);
        assert.deepEqual(t.takeRemoved(), [
          { cause: 'deleted', entry: bBefore },
          { cause: 'aged', entry: cBefore },
        ]);
        assert.equal(aBefore.forward.packets, 1);
      });

      test('a SYN that ends a closed flow is reported as closed, and turning the report off discards what it kept', () => {
        const t = make();
        t.reportRemovals(true);
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k);
        establish(t, k);
        t.account(k, 1, 40, rst);
        const before = t.get(i)!;
        const batch = new FlowKeyBatch(1);
        batch.push(k, 60, syn);
        t.accountBatch(batch.packets, 1, 2, batch.results);
        assert.equal(batch.results[0], RESULT_MISS);
        assert.deepEqual(t.takeRemoved(), [{ cause: 'closed', entry: before }]);
        created(t, client(0, 1, UDP));
        t.expire(60_000);
        assert.equal(t.pendingRemovals, 1);
        t.reportRemovals(false);
        assert.equal(t.pendingRemovals, 0);
        assert.deepEqual(t.takeRemoved(), []);
      });

      test('the report keeps at most maxFlows removals for an owner that does not drain it', () => {
        const t = make({ maxFlows: 2 });
        t.reportRemovals(true);
        for (let i = 0; i < 3; i++) t.remove(created(t, client(i)));
        assert.equal(t.pendingRemovals, 2);
        assert.deepEqual(
          t.takeRemoved().map((r) => r.entry.key),
          [client(0), client(1)],
        );
      });

      test('update sets counters, TCP state and last seen as another tracker reports them, never moving last seen back', () => {
        const t = make();
        const k = key('10.0.0.1:40000', '10.0.0.2:80');
        const i = created(t, k, ALLOW, 1_000);
        const update = {
          forward: { packets: 12, bytes: 3_000 },
          reverse: { packets: 10, bytes: 90_000 },
          tcpState: TcpState.established | TcpState.ackForward | TcpState.ackReverse,
          lastSeenMs: 5_000,
        };
        assert.equal(t.update(i, update), true);
        const e = t.get(i)!;
        assert.deepEqual(
          [e.forward, e.reverse, e.tcpState, e.lastSeenMs],
          [update.forward, update.reverse, update.tcpState, 5_000],
        );
        t.update(i, { ...update, lastSeenMs: 2_000 });
        assert.equal(t.get(i)!.lastSeenMs, 5_000);
        // An established flow ages by the established timeout, not the SYN one.
        assert.equal(t.expire(5_000 + 61_000), 0);
        assert.equal(t.update(i + 1, update), false);
        assert.throws(() => t.update(i, { ...update, tcpState: 0x200 }), /tcpState/);
        assert.throws(
          () => t.update(i, { ...update, forward: { packets: -1, bytes: 0 } }),
          /forward.packets/,
        );
        assert.throws(() => t.update(i, { ...update, lastSeenMs: Number.NaN }), /lastSeenMs/);
      });
    });

    describe('errors', () => {
      test('a bad key is refused with a TypeError naming the problem', () => {
        const t = make();
        assert.throws(() => t.insert({ ...client(0), src: 1n }, ALLOW, 0), /different families/);
        assert.throws(() => t.lookup({ ...client(0), sport: 70000 }), /sport 70000/);
        assert.throws(() => t.insert(client(0), ALLOW, NaN), /nowMs/);
        assert.throws(() => t.insert(client(0), { action: 'drop' } as never, 0), /unknown action/);
      });

      test('a closed table refuses further calls, and closing twice is harmless', () => {
        const t = make();
        created(t, client(0));
        t.close();
        t.close();
        assert.throws(() => t.lookup(client(0)), /closed/);
        assert.throws(() => t.stats(), /closed/);
      });
    });
  });
}
