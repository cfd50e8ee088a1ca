/**
 * The flow engine as a driver that never sees raw packets uses it (a kernel
 * datapath: NFQUEUE first packets, mirrored conntrack events): first packets
 * decided by key, conntrack's counters and ends mirrored into the table,
 * events from what the table removes, and the flows a policy load flips to
 * deny. Every case runs against both flow tables (native skipped, with the
 * reason, when the addon is not loaded).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import {
  FlowEngine,
  type FlowEngineOptions,
  type FlowEvent,
} from '../../vrouter-agent/datapath/index.js';
import {
  nativeFlowTableAvailability,
  TcpFlag,
  TcpState,
  type FlowKey,
} from '../../vrouter-agent/flows/index.js';
import { replyKey } from '../../testing/flow-key.js';
import { build, namespace, networkPolicy, node, pod, type Raw } from '../../testing/cluster.js';

const NODE = 'n1';
const native = nativeFlowTableAvailability();
const implementations = [
  { name: 'TypeScript', implementation: 'typescript' as const, skip: false as const },
  {
    name: 'native',
    implementation: 'native' as const,
    skip: native.available ? (false as const) : `the native addon is not loaded (${native.reason})`,
  },
];

const WEB = 1;
const API = 2;

function objects(apiPorts: number[]): Raw[] {
  return [
    namespace('prod', { env: 'prod' }),
    node(NODE, ['192.168.1.1']),
    pod('prod', 'web', { labels: { app: 'web' }, ips: ['10.1.0.1'], node: NODE }),
    pod('prod', 'api', { labels: { app: 'api' }, ips: ['10.1.0.2'], node: NODE }),
    networkPolicy('prod', 'api-in', {
      podSelector: { matchLabels: { app: 'api' } },
      ingress: [
        {
          from: [{ podSelector: { matchLabels: { app: 'web' } } }],
          ports: apiPorts.map((port) => ({ port })),
        },
      ],
    }),
  ];
}

function tablesOf(apiPorts: number[]): RuleTables {
  const built = build(objects(apiPorts));
  assert.deepEqual(built.issues, []);
  return compile(built.snapshot, { isLocal: (e) => e.node === NODE });
}

/** A TCP key from web (in web's zone) to api, or from outside to web. */
const webToApi = (dport: number, sport = 40000): FlowKey => ({
  zone: WEB,
  protocol: 6,
  src: parseIp('10.1.0.1'),
  dst: parseIp('10.1.0.2'),
  sport,
  dport,
});

async function take(stream: AsyncIterableIterator<FlowEvent>, count: number): Promise<FlowEvent[]> {
  const out: FlowEvent[] = [];
  while (out.length < count) {
    const r = await stream.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

for (const impl of implementations) {
  describe(`the flow engine over the ${impl.name} flow table`, { skip: impl.skip }, () => {
    const make = (options: Partial<FlowEngineOptions> = {}) => {
      let now = 1_000;
      const engine = new FlowEngine({
        tables: tablesOf([9090]),
        expireIntervalMs: 0,
        clock: () => now,
        ...options,
        flowTable: { implementation: impl.implementation, ...options.flowTable },
      });
      engine.attach({ zone: WEB, endpoint: 'prod/web', ips: ['10.1.0.1'] });
      engine.attach({ zone: API, endpoint: 'prod/api', ips: ['10.1.0.2'] });
      return {
        engine,
        advance: (ms: number) => {
          now += ms;
          return now;
        },
      };
    };

    test('a first packet decided by key creates the flow pair, counted, with the rules that decided it', async () => {
      const { engine } = make();
      const d = engine.decideFirstPacket(webToApi(9090), 1_000, {
        bytes: 60,
        tcpFlags: TcpFlag.syn,
      });
      assert.equal(d.verdict, 'allow');
      assert.equal(d.created, true);
      assert.equal(d.replyZone, API, 'pod to pod: replies come in the server zone');
      assert.ok(d.ingress.ruleId > 0 && d.ingress.policyId > 0, 'the allowing rule is named');
      assert.deepEqual(
        [engine.flowEntry(d.index!)?.egress, engine.flowEntry(d.index!)?.ingress],
        [d.egress, d.ingress],
      );
      const flow = engine.flow(d.index!);
      assert.deepEqual(
        [flow?.src, flow?.dst, flow?.dport, flow?.ingress.kind, flow?.counters?.forward],
        ['10.1.0.1', '10.1.0.2', 9090, 'rule', { packets: 1, bytes: 60 }],
      );
      // The same connection again (a retransmitted SYN), or its reply, finds the flow: nothing new.
      const again = engine.decideFirstPacket(webToApi(9090));
      const reply = engine.decideFirstPacket(replyKey(webToApi(9090), API));
      assert.deepEqual(
        [again.index, again.created, reply.index, reply.created, reply.verdict],
        [d.index, false, d.index, false, 'allow'],
      );
      assert.equal(engine.stats().slowPath.evaluated, 1);
      await engine[Symbol.asyncDispose]();
    });

    test('a denied first packet leaves a deny flow with its drop reason; zone problems and refusals leave none', async () => {
      const { engine } = make({ flowTable: { maxFlowsPerZone: 2 } });
      const denied = engine.decideFirstPacket(webToApi(22));
      assert.deepEqual([denied.verdict, denied.created], ['policy-ingress', true]);
      assert.equal(engine.flow(denied.index!)?.action, 'deny');
      assert.equal(engine.decideFirstPacket(webToApi(22)).verdict, 'policy-ingress');
      const cases: Array<[string, FlowKey, string]> = [
        ['a zone nothing is attached to', { ...webToApi(9090), zone: 77 }, 'unknown-zone'],
        ['a source that is not its zone', { ...webToApi(9090), zone: API }, 'zone-mismatch'],
      ];
      for (const [name, key, verdict] of cases) {
        const d = engine.decideFirstPacket(key);
        assert.deepEqual([d.verdict, d.index, d.created], [verdict, undefined, false], name);
      }
      engine.decideFirstPacket(webToApi(9090, 1));
      const refused = engine.decideFirstPacket(webToApi(9090, 2));
      assert.deepEqual([refused.verdict, refused.index], ['flow-limit', undefined]);
      await engine[Symbol.asyncDispose]();
    });

    test('a connection learnt without its packet is created uncounted, keyed in the zone zoneOf gives', async () => {
      const { engine } = make();
      const outside = parseIp('203.0.113.5');
      const api = parseIp('10.1.0.2');
      const web = parseIp('10.1.0.1');
      assert.deepEqual(
        [engine.zoneOf(web, api), engine.zoneOf(outside, api), engine.zoneOf(outside, outside)],
        [WEB, API, undefined],
      );
      const d = engine.decideFirstPacket({
        zone: engine.zoneOf(outside, api)!,
        protocol: 6,
        src: outside,
        dst: api,
        sport: 5000,
        dport: 9090,
      });
      assert.deepEqual([d.verdict, d.created], ['policy-ingress', true]);
      assert.deepEqual(engine.flow(d.index!)?.counters?.forward, { packets: 0, bytes: 0 });
      await engine[Symbol.asyncDispose]();
    });

    test("mirrored conntrack updates set the flow's counters and TCP state, and a destroy ends it as closed with them", async () => {
      const { engine, advance } = make();
      const stream = engine.events();
      const { index } = engine.decideFirstPacket(webToApi(9090));
      const counters = {
        forward: { packets: 40, bytes: 6_000 },
        reverse: { packets: 35, bytes: 900_000 },
        tcpState: TcpState.ackForward | TcpState.ackReverse | TcpState.established,
        lastSeenMs: advance(5_000),
      };
      assert.equal(engine.updateFlow(index!, counters), true);
      assert.deepEqual(engine.flow(index!)?.counters, {
        forward: counters.forward,
        reverse: counters.reverse,
        lastSeenMs: 6_000,
        tcpState: ['ackForward', 'ackReverse', 'established'],
      });
      const final = {
        ...counters,
        forward: { packets: 42, bytes: 6_100 },
        tcpState: counters.tcpState | TcpState.finForward | TcpState.finReverse | TcpState.closed,
        lastSeenMs: advance(10),
      };
      assert.equal(engine.removeFlow(index!, 'closed', 6_010, final), true);
      assert.equal(engine.flow(index!), undefined);
      assert.equal(engine.removeFlow(index!, 'closed'), false, 'gone already');
      assert.equal(engine.updateFlow(index!, counters), false);
      const [created, closed] = await take(stream, 2);
      assert.equal(created?.type, 'created');
      assert.ok(closed?.type === 'closed' && closed.cause === 'tcp', JSON.stringify(closed));
      assert.deepEqual(closed.flow.counters?.forward, final.forward);
      assert.ok(closed.flow.counters?.tcpState.includes('closed'));
      await engine[Symbol.asyncDispose]();
    });

    test('a destroy of a flow that timed out is reported as aged', async () => {
      const { engine } = make();
      const stream = engine.events();
      const { index } = engine.decideFirstPacket(webToApi(9090));
      engine.removeFlow(index!, 'aged');
      const events = await take(stream, 2);
      assert.deepEqual(
        events.map((e) => e.type),
        ['created', 'aged'],
      );
      await engine[Symbol.asyncDispose]();
    });

    test('loadTables returns the flows it flipped to deny, so a kernel driver can cut their connections', async () => {
      const { engine } = make();
      const a = engine.decideFirstPacket(webToApi(9090));
      const b = engine.decideFirstPacket(webToApi(8080));
      assert.deepEqual([a.verdict, b.verdict], ['allow', 'policy-ingress']);
      // 8080 is allowed too: a flip to allow, none to deny.
      const first = engine.loadTables(tablesOf([9090, 8080]));
      assert.deepEqual([first.denied, first.allowed, first.deniedFlows], [0, 1, []]);
      // Only 8080 now: the 9090 connection is cut.
      const second = engine.loadTables(tablesOf([8080]));
      assert.deepEqual([second.checked, second.denied, second.allowed], [2, 1, 0]);
      assert.deepEqual(second.deniedFlows, [
        { index: a.index, key: webToApi(9090), replyZone: API },
      ]);
      assert.deepEqual(
        [engine.flow(a.index!)?.action, engine.flow(a.index!)?.dropReason],
        ['deny', 'policy-ingress'],
      );
      assert.equal(engine.decideFirstPacket(webToApi(9090)).verdict, 'policy-ingress');
      assert.equal(engine.flow(b.index!)?.action, 'allow');
      await engine[Symbol.asyncDispose]();
    });

    test('flows the table ages or evicts on its own are reported with their final counters', async () => {
      const { engine, advance } = make({ flowTable: { maxFlows: 1 } });
      const stream = engine.events();
      const first = engine.decideFirstPacket(webToApi(9090, 1), 1_000, {
        bytes: 60,
        tcpFlags: TcpFlag.syn,
      });
      engine.decideFirstPacket(webToApi(9090, 2), 1_000, { bytes: 60, tcpFlags: TcpFlag.syn });
      advance(61_000);
      assert.equal(engine.expire(), 1);
      const events = await take(stream, 4);
      assert.deepEqual(
        events.map((e) => (e.type === 'lost' ? 'lost' : `${e.type} ${e.flow.sport}`)),
        ['created 1', 'evicted 1', 'created 2', 'aged 2'],
      );
      const evicted = events[1]!;
      assert.ok(evicted.type === 'evicted');
      assert.equal(evicted.flow.index, first.index);
      assert.deepEqual(evicted.flow.counters?.forward, { packets: 1, bytes: 60 });
      await engine[Symbol.asyncDispose]();
    });

    test('the table reports removals only while someone watches events', async () => {
      const { engine, advance } = make();
      engine.decideFirstPacket(webToApi(9090));
      advance(61_000);
      engine.expire();
      const abort = new AbortController();
      const stream = engine.events({ signal: abort.signal });
      abort.abort();
      engine.decideFirstPacket(webToApi(9090));
      advance(61_000);
      engine.expire();
      assert.deepEqual(await stream.next(), { value: undefined, done: true });
      assert.equal(engine.stats().events.published, 0);
      await engine[Symbol.asyncDispose]();
      assert.throws(() => engine.decideFirstPacket(webToApi(9090)), /closed/);
    });
  });
}
