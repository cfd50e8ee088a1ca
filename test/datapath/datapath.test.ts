/**
 * The userspace datapath on a small cluster built through the real pipeline
 * (validation → model → translation → compile for node n1): policy
 * semantics packet by packet, replies, re-evaluation on policy change, aging,
 * flow events. Every case runs against both flow tables (native skipped,
 * with the reason, when the addon is not loaded).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { createVerdictEngine } from '../../vrouter-agent/compile/verdict-engine.js';
import {
  createUserspaceDatapath,
  RawPacketBatch,
  verdictName,
  type DecodedFlow,
  type FlowEvent,
  type UserspaceDatapath,
  type UserspaceDatapathOptions,
} from '../../vrouter-agent/datapath/index.js';
import {
  decodeResult,
  nativeFlowTableAvailability,
  TcpFlag,
  type FlowHit,
} from '../../vrouter-agent/flows/index.js';
import { buildPacket, type PacketSpec } from '../../vrouter-agent/packet/index.js';
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
const { syn, ack, fin } = TcpFlag;

/** Pods on n1 (web, api, db, tool) and one elsewhere (remote); the two Nodes' addresses. */
function pods(): Raw[] {
  return [
    namespace('prod', { env: 'prod' }),
    namespace('dev', { env: 'dev' }),
    node(NODE, ['192.168.1.1', 'fd01::1']),
    node('n2', ['192.168.1.2']),
    pod('prod', 'web', { labels: { app: 'web' }, ips: ['10.1.0.1', 'fd00::1:1'], node: NODE }),
    pod('prod', 'api', {
      labels: { app: 'api' },
      ips: ['10.1.0.2', 'fd00::1:2'],
      ports: [{ name: 'http', port: 9090 }],
      node: NODE,
    }),
    pod('prod', 'db', { labels: { app: 'db' }, ips: ['10.1.0.3'], node: NODE }),
    pod('dev', 'tool', { labels: { app: 'tool' }, ips: ['10.2.0.2', 'fd00::2:2'], node: NODE }),
    pod('dev', 'remote', { labels: { app: 'remote' }, ips: ['10.2.0.9'], node: 'n2' }),
  ];
}

const np = networkPolicy;
const apiIngress = (extraFirst: Raw[] = []) =>
  np('prod', 'api-in', {
    podSelector: { matchLabels: { app: 'api' } },
    ingress: [
      ...extraFirst,
      { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 'http' }] },
      {
        from: [{ ipBlock: { cidr: '203.0.113.0/24' } }],
        ports: [{ protocol: 'SCTP', port: 7777 }],
      },
      {
        from: [
          {
            namespaceSelector: { matchLabels: { env: 'dev' } },
            podSelector: { matchLabels: { app: 'tool' } },
          },
        ],
      },
    ],
  });
const dbIngress = () =>
  np('prod', 'db-in', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [
      { from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: 5432 }] },
    ],
  });
const webEgress = () =>
  np('prod', 'web-out', {
    podSelector: { matchLabels: { app: 'web' } },
    policyTypes: ['Egress'],
    egress: [
      { to: [{ podSelector: { matchLabels: { app: 'api' } } }] },
      {
        to: [
          { ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } },
          { ipBlock: { cidr: '::/0' } },
        ],
        ports: [{ port: 443 }, { protocol: 'UDP', port: 53 }],
      },
    ],
  });
const policies = () => [apiIngress(), dbIngress(), webEgress()];

function tablesOf(objects: Raw[]): RuleTables {
  const built = build(objects);
  assert.deepEqual(built.issues, []);
  return compile(built.snapshot, { isLocal: (e) => e.node === NODE });
}

const ZONES: Record<string, number> = { 'prod/web': 1, 'prod/api': 2, 'prod/db': 3, 'dev/tool': 4 };

interface Sent {
  readonly verdict: string;
  readonly hit: FlowHit | undefined;
}

class Harness {
  readonly dp: UserspaceDatapath;
  private readonly batch = new RawPacketBatch();
  now = 1_000;

  constructor(
    tables: RuleTables,
    implementation: 'native' | 'typescript',
    options: Partial<UserspaceDatapathOptions> = {},
  ) {
    this.dp = createUserspaceDatapath({
      tables,
      expireIntervalMs: 0,
      clock: () => this.now,
      ...options,
      flowTable: { implementation, ...options.flowTable },
    });
    for (const [endpoint, zone] of Object.entries(ZONES)) {
      const e = tables.endpoints.get(endpoint);
      assert.ok(e, `tables lack ${endpoint}`);
      this.dp.attach({ zone, endpoint, ips: e.ips });
    }
  }

  /** The zone a packet is given in: its sender's when local, else its destination's. */
  zoneOf(src: Ip, dst: Ip): number {
    for (const z of this.dp.attached()) if (z.ips.includes(src)) return z.zone;
    for (const z of this.dp.attached()) if (z.ips.includes(dst)) return z.zone;
    return 999;
  }

  send(spec: PacketSpec, zone?: number): Sent {
    return this.sendAll([spec], zone)[0]!;
  }

  sendAll(specs: PacketSpec[], zone?: number): Sent[] {
    this.batch.clear();
    for (const s of specs) {
      const src = typeof s.src === 'string' ? parseIp(s.src) : s.src;
      const dst = typeof s.dst === 'string' ? parseIp(s.dst) : s.dst;
      this.batch.push(buildPacket(s), zone ?? this.zoneOf(src, dst));
    }
    const v = this.dp.process(this.batch, this.now);
    return specs.map((_, i) => ({
      verdict: verdictName(v.verdicts[i]!),
      hit: decodeResult(v.flows[i]!),
    }));
  }

  flows(): DecodedFlow[] {
    return this.dp.flows(0, 10_000).flows;
  }

  async close(): Promise<void> {
    await this.dp[Symbol.asyncDispose]();
  }
}

/** The reply to a packet description: addresses and ports swapped (ICMP echo: a reply with the same id). */
function replyTo(s: PacketSpec, tcpFlags = syn | ack): PacketSpec {
  if (s.protocol === 'icmp')
    return {
      ...s,
      src: s.dst,
      dst: s.src,
      icmp: { ...s.icmp, type: typeof s.src === 'string' && s.src.includes(':') ? 129 : 0 },
    };
  return { ...s, src: s.dst, dst: s.src, sport: s.dport, dport: s.sport, tcpFlags };
}

const tcp = (src: string, dst: string, dport: number, sport = 40000): PacketSpec => ({
  src,
  dst,
  protocol: 'tcp',
  sport,
  dport,
});
const udp = (src: string, dst: string, dport: number, sport = 40000): PacketSpec => ({
  src,
  dst,
  protocol: 'udp',
  sport,
  dport,
});
const sctp = (src: string, dst: string, dport: number, sport = 40000): PacketSpec => ({
  src,
  dst,
  protocol: 'sctp',
  sport,
  dport,
});
const ping = (src: string, dst: string, id = 7): PacketSpec => ({
  src,
  dst,
  protocol: 'icmp',
  icmp: { type: src.includes(':') ? 128 : 8, id },
});

type Case = [name: string, packet: PacketSpec, verdict: string];

/** Each first packet and its verdict; allowed ones are then answered and the reply must pass on the same flow. */
const CASES: Case[] = [
  [
    'a local pod reaches another on a named port both gates allow',
    tcp('10.1.0.1', '10.1.0.2', 9090),
    'allow',
  ],
  [
    'the destination ingress gate denies a port its rules do not name',
    tcp('10.1.0.1', '10.1.0.2', 22),
    'policy-ingress',
  ],
  [
    'the source egress gate denies a destination its rules do not name',
    tcp('10.1.0.1', '10.1.0.3', 5432),
    'policy-egress',
  ],
  [
    'a pod without egress policy reaches a peer the destination admits',
    tcp('10.1.0.2', '10.1.0.3', 5432),
    'allow',
  ],
  [
    'egress to an external address on an allowed port passes',
    tcp('10.1.0.1', '8.8.8.8', 443),
    'allow',
  ],
  [
    'egress to an external address on another port is denied at the source',
    tcp('10.1.0.1', '8.8.8.8', 80),
    'policy-egress',
  ],
  [
    'egress to a pod on another node inside an ipBlock except is denied',
    tcp('10.1.0.1', '10.2.0.9', 443),
    'policy-egress',
  ],
  [
    'an external peer reaches a pod that is not isolated for ingress',
    tcp('8.8.8.8', '10.1.0.1', 80),
    'allow',
  ],
  [
    'an external peer is denied by an isolated pod that does not admit it',
    tcp('8.8.8.8', '10.1.0.3', 5432),
    'policy-ingress',
  ],
  [
    'a pod on another node is denied by the ingress gate here',
    tcp('10.2.0.9', '10.1.0.2', 9090),
    'policy-ingress',
  ],
  [
    'SCTP from an admitted block to an admitted port passes',
    sctp('203.0.113.5', '10.1.0.2', 7777),
    'allow',
  ],
  ['SCTP to another port is denied', sctp('203.0.113.5', '10.1.0.2', 7778), 'policy-ingress'],
  ['UDP DNS to the outside passes the egress gate', udp('10.1.0.1', '8.8.8.8', 53), 'allow'],
  [
    'ICMP echo to a pod whose ingress rule for the peer has no ports passes',
    ping('10.2.0.2', '10.1.0.2'),
    'allow',
  ],
  [
    'ICMP echo to a pod whose ingress rules for the peer all name ports is denied',
    ping('10.1.0.1', '10.1.0.2'),
    'policy-ingress',
  ],
  [
    'ICMP echo to an isolated pod whose rules all name ports is denied',
    ping('10.1.0.2', '10.1.0.3'),
    'policy-ingress',
  ],
  [
    'ICMP echo from a pod to the outside its egress rules do not admit is denied',
    ping('10.1.0.1', '8.8.8.8'),
    'policy-egress',
  ],
  ['IPv6 between local pods follows the same rules', tcp('fd00::1:1', 'fd00::1:2', 9090), 'allow'],
  [
    'IPv6 to an outside address on an allowed port passes',
    tcp('fd00::1:1', '2001:db8::1', 443),
    'allow',
  ],
  [
    'IPv6 to another port is denied at the source',
    tcp('fd00::1:1', '2001:db8::1', 8443),
    'policy-egress',
  ],
  [
    'ICMPv6 echo between local pods passes when the rule has no ports',
    ping('fd00::2:2', 'fd00::1:2'),
    'allow',
  ],
  [
    'a pod reaches its own address even when isolated both ways',
    tcp('10.1.0.3', '10.1.0.3', 9999),
    'allow',
  ],
  [
    "the pod's own node (its kubelet's probes) reaches a pod isolated for ingress",
    tcp('192.168.1.1', '10.1.0.3', 8080),
    'allow',
  ],
  [
    "another node's address is denied by a pod isolated for ingress",
    tcp('192.168.1.2', '10.1.0.3', 8080),
    'policy-ingress',
  ],
  [
    'a pod isolated for egress reaches its own node, in IPv6 too',
    tcp('fd00::1:1', 'fd01::1', 10250),
    'allow',
  ],
  [
    'a pod isolated for egress is denied another node',
    tcp('10.1.0.1', '192.168.1.2', 10250),
    'policy-egress',
  ],
  [
    'pods in a namespace without policy reach each other across namespaces',
    tcp('10.2.0.2', '10.1.0.1', 8080),
    'allow',
  ],
];

for (const impl of implementations) {
  describe(`userspace datapath over the ${impl.name} flow table`, { skip: impl.skip }, () => {
    const make = (
      objects: Raw[] = [...pods(), ...policies()],
      options: Partial<UserspaceDatapathOptions> = {},
    ) => new Harness(tablesOf(objects), impl.implementation, options);

    describe('first packets are decided as RuleTables.decide, and replies of allowed flows pass', () => {
      for (const [name, packet, verdict] of CASES) {
        test(name, async () => {
          const h = make();
          const first = h.send(packet);
          assert.equal(first.verdict, verdict);
          assert.equal(first.hit?.direction, 'forward');
          const src = typeof packet.src === 'string' ? parseIp(packet.src) : packet.src;
          const dst = typeof packet.dst === 'string' ? parseIp(packet.dst) : packet.dst;
          // The tables' own verdict, for the record.
          assert.equal(
            h.dp.tables.allows({
              src,
              dst,
              protocol: first.hit ? h.flows()[0]!.protocol : 0,
              dstPort: packet.protocol === 'icmp' ? 0 : packet.dport!,
            }),
            verdict === 'allow',
          );
          const reply = h.send(replyTo(packet));
          assert.equal(reply.verdict, verdict, 'the reply takes the flow verdict');
          assert.equal(reply.hit?.direction, 'reverse');
          assert.equal(reply.hit?.index, first.hit?.index);
          assert.equal(h.flows().length, 1);
          await h.close();
        });
      }
    });

    test("a flow between a pod and its own node records the gate as the node's, with no policy", async () => {
      const h = make();
      h.send(tcp('192.168.1.1', '10.1.0.3', 8080));
      h.send(tcp('10.1.0.1', '192.168.1.1', 10250));
      const flows = h.flows().sort((a, b) => a.zone - b.zone);
      assert.deepEqual(
        flows.map((f) => [f.endpoint, f.egress, f.ingress]),
        [
          ['prod/web', { kind: 'node' }, { kind: 'none' }],
          ['prod/db', { kind: 'none' }, { kind: 'node' }],
        ],
      );
      await h.close();
    });

    test('both gates are recorded with the rules that decided them', async () => {
      const h = make();
      h.send(tcp('10.1.0.1', '10.1.0.2', 9090));
      const [f] = h.flows();
      assert.deepEqual(f?.egress, {
        kind: 'rule',
        rule: 'test/np/prod/web-out/egress/0/0',
        policy: 'test/np/prod/web-out',
      });
      assert.deepEqual(f?.ingress, {
        kind: 'rule',
        rule: 'test/np/prod/api-in/ingress/0/0',
        policy: 'test/np/prod/api-in',
      });
      assert.deepEqual(
        [f?.zone, f?.endpoint, f?.replyZone, f?.replyEndpoint],
        [1, 'prod/web', 2, 'prod/api'],
      );
      h.send(tcp('10.1.0.2', '10.1.0.3', 5432));
      const db = h.flows().find((x) => x.dst === '10.1.0.3')!;
      assert.deepEqual([db.egress.kind, db.ingress.kind], ['default', 'rule']);
      h.send(tcp('10.1.0.1', '10.1.0.3', 5432));
      const denied = h.flows().find((x) => x.action === 'deny')!;
      assert.deepEqual(
        [denied.dropReason, denied.egress.kind, denied.ingress.kind],
        ['policy-egress', 'deny', 'deny'],
        'both gates deny: the first names the reason',
      );
      h.send(tcp('8.8.8.8', '10.1.0.1', 80));
      const external = h.flows().find((x) => x.src === '8.8.8.8')!;
      assert.deepEqual(
        [external.egress.kind, external.ingress.kind, external.zone, external.replyZone],
        ['none', 'default', 1, 1],
      );
      await h.close();
    });

    test('a denied first packet leaves a deny flow so its retries are dropped without evaluating policy', async () => {
      const h = make();
      assert.equal(h.send(tcp('10.1.0.1', '10.1.0.2', 22)).verdict, 'policy-ingress');
      const evaluated = h.dp.stats().slowPath.evaluated;
      for (let i = 0; i < 3; i++)
        assert.equal(h.send(tcp('10.1.0.1', '10.1.0.2', 22)).verdict, 'policy-ingress');
      const s = h.dp.stats();
      assert.equal(s.slowPath.evaluated, evaluated);
      assert.equal(s.drops['policy-ingress'], 4);
      assert.equal(h.flows()[0]?.counters?.forward.packets, 4);
      await h.close();
    });

    test('established flows take the fast path and count packets and bytes each way', async () => {
      const h = make();
      const c = tcp('10.1.0.1', '10.1.0.2', 9090);
      h.send({ ...c, tcpFlags: syn });
      h.send(replyTo(c, syn | ack));
      h.send({ ...c, tcpFlags: ack, payload: 100 });
      const s = h.dp.stats();
      assert.equal(s.allowedBy.flow, 2);
      assert.equal(s.allowedBy.slowPath, 1);
      const [f] = h.flows();
      assert.deepEqual(f?.counters?.forward, { packets: 2, bytes: 40 + 140 });
      assert.deepEqual(f?.counters?.reverse, { packets: 1, bytes: 40 });
      assert.ok(f?.counters?.tcpState.includes('established'));
      await h.close();
    });

    test('a packet and its reply in one batch share one flow', async () => {
      const h = make();
      const c = tcp('10.1.0.1', '10.1.0.2', 9090);
      const [a, b] = h.sendAll([c, replyTo(c)]);
      assert.deepEqual(
        [a?.verdict, b?.verdict, b?.hit?.direction, b?.hit?.index],
        ['allow', 'allow', 'reverse', a?.hit?.index],
      );
      assert.equal(h.flows().length, 1);
      await h.close();
    });

    test('an ICMP error quoting a packet of an allowed flow is allowed as related, in either direction', async () => {
      const h = make();
      h.send(tcp('10.1.0.1', '8.8.8.8', 443));
      const unreachable = (dst: string, quote: PacketSpec): PacketSpec => ({
        src: '192.0.2.1',
        dst,
        protocol: 'icmp',
        icmp: { type: 3, code: 4, quote },
      });
      assert.equal(
        h.send(unreachable('10.1.0.1', tcp('10.1.0.1', '8.8.8.8', 443))).verdict,
        'allow',
      );
      // The server side of a flow: a reply of api to web bounces back to api.
      h.send(tcp('10.1.0.1', '10.1.0.2', 9090));
      assert.equal(
        h.send({
          src: '10.1.0.1',
          dst: '10.1.0.2',
          protocol: 'icmp',
          icmp: { type: 3, code: 3, quote: replyTo(tcp('10.1.0.1', '10.1.0.2', 9090)) },
        }).verdict,
        'allow',
      );
      assert.equal(h.dp.stats().allowedBy.related, 2);
      // An error quoting nothing we know is decided as ICMP: db is isolated and admits no ICMP.
      assert.equal(
        h.send(unreachable('10.1.0.3', tcp('10.1.0.3', '8.8.4.4', 443))).verdict,
        'policy-ingress',
      );
      // An error quoting a denied flow is dropped with that flow's reason.
      h.send(tcp('10.1.0.1', '8.8.8.8', 80));
      assert.equal(
        h.send(unreachable('10.1.0.1', tcp('10.1.0.1', '8.8.8.8', 80))).verdict,
        'policy-egress',
      );
      await h.close();
    });

    test('quoting an allowed flow does not excuse an ICMP error whose own addresses are wrong', async () => {
      const h = make();
      h.send(tcp('10.1.0.3', '8.8.8.8', 443));
      const quote = tcp('10.1.0.3', '8.8.8.8', 443);
      // db sends an error from a spoofed source to the outside, quoting its own flow.
      assert.equal(
        h.send({ src: '192.0.2.1', dst: '8.8.8.8', protocol: 'icmp', icmp: { type: 3, quote } }, 3)
          .verdict,
        'zone-mismatch',
      );
      // An error to db that is not addressed to the quoted packet's sender is decided as ICMP: db admits none.
      assert.equal(
        h.send({
          src: '192.0.2.1',
          dst: '10.1.0.3',
          protocol: 'icmp',
          icmp: { type: 3, quote: tcp('10.1.0.2', '8.8.8.8', 443) },
        }).verdict,
        'policy-ingress',
      );
      assert.equal(
        h.send({ src: '192.0.2.1', dst: '10.1.0.3', protocol: 'icmp', icmp: { type: 3, quote } })
          .verdict,
        'allow',
      );
      assert.equal(h.dp.stats().allowedBy.related, 1);
      await h.close();
    });

    test('packets in a zone they do not belong to are dropped as zone-mismatch or unknown-zone', async () => {
      const h = make();
      assert.equal(
        h.send(tcp('10.9.9.9', '8.8.8.8', 443), 1).verdict,
        'zone-mismatch',
        'a spoofed source',
      );
      assert.equal(
        h.send(tcp('10.1.0.1', '10.1.0.2', 9090), 2).verdict,
        'zone-mismatch',
        'a local sender in the receiver zone',
      );
      assert.equal(h.send(tcp('10.1.0.1', '10.1.0.2', 9090), 77).verdict, 'unknown-zone');
      const s = h.dp.stats();
      assert.deepEqual([s.drops['zone-mismatch'], s.drops['unknown-zone']], [2, 1]);
      assert.equal(h.flows().length, 0);
      await h.close();
    });

    test('a zone at its flow limit refuses new flows, and a full table refuses them as table-full', async () => {
      const h = make(undefined, { flowTable: { maxFlowsPerZone: 2 } });
      const verdicts = [1, 2, 3].map(
        (i) => h.send(tcp('10.1.0.1', '8.8.8.8', 443, 1000 + i)).verdict,
      );
      assert.deepEqual(verdicts, ['allow', 'allow', 'flow-limit']);
      await h.close();
      const full = make(undefined, { flowTable: { maxFlows: 2, evictionScanFlows: 0 } });
      const more = [1, 2, 3].map(
        (i) => full.send(tcp('10.1.0.1', '8.8.8.8', 443, 1000 + i)).verdict,
      );
      assert.deepEqual(more, ['allow', 'allow', 'table-full']);
      assert.equal(full.dp.stats().drops['table-full'], 1);
      await full.close();
    });

    test('flows age out when idle past their timeout, driven by the injected clock', async () => {
      const h = make();
      h.send(udp('10.1.0.1', '8.8.8.8', 53));
      h.now += 29_999;
      assert.equal(h.dp.expire(), 0);
      h.now += 1;
      assert.equal(h.dp.expire(), 1);
      assert.equal(h.flows().length, 0);
      await h.close();
    });

    test('the aging timer expires idle flows on its own and stops when the datapath is disposed', async () => {
      const h = make(undefined, { expireIntervalMs: 5 });
      h.send(udp('10.1.0.1', '8.8.8.8', 53));
      h.now += 30_000;
      const deadline = Date.now() + 2_000;
      while (h.dp.stats().flowTable.flows > 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      assert.equal(h.dp.stats().flowTable.removedBy.aged, 1);
      await h.close();
      await h.close();
      assert.throws(() => h.dp.stats(), /closed/);
    });

    test('an attached endpoint the tables do not know is decided as unenforced, or dropped when set to deny', async () => {
      const objects = [...pods(), ...policies()];
      const withoutDb = tablesOf(
        objects.filter(
          (o) => !(o.kind === 'Pod' && (o.metadata as { name: string }).name === 'db'),
        ),
      );
      for (const [unknownEndpoints, want] of [
        ['decide', ['allow', 'allow']],
        ['deny', ['unknown-endpoint', 'unknown-endpoint']],
      ] as const) {
        const h = new Harness(tablesOf(objects), impl.implementation, { unknownEndpoints });
        h.dp.loadTables(withoutDb);
        assert.deepEqual(
          [
            h.send(tcp('8.8.8.8', '10.1.0.3', 22)).verdict,
            h.send(tcp('10.1.0.2', '10.1.0.3', 22)).verdict,
          ],
          want,
          unknownEndpoints,
        );
        assert.equal(
          h.send(tcp('8.8.8.8', '10.1.0.2', 9090)).verdict,
          'policy-ingress',
          'known endpoints are unaffected',
        );
        h.dp.loadTables(tablesOf(objects));
        assert.equal(
          h.send(tcp('8.8.8.8', '10.1.0.3', 23)).verdict,
          'policy-ingress',
          'enforced once its tables load',
        );
        await h.close();
      }
    });

    test('detaching a zone removes its flows on both sides', async () => {
      const h = make();
      h.send(tcp('10.1.0.1', '10.1.0.2', 9090));
      h.send(tcp('10.1.0.2', '10.1.0.3', 5432));
      h.send(tcp('8.8.8.8', '10.1.0.1', 80));
      assert.equal(h.dp.detach(2), 2);
      assert.deepEqual(
        h.flows().map((f) => f.src),
        ['8.8.8.8'],
      );
      assert.equal(h.send(tcp('10.1.0.2', '10.1.0.3', 5432), 2).verdict, 'unknown-zone');
      assert.equal(h.dp.detach(2), 0);
      await h.close();
    });

    describe('re-evaluation when new tables load', () => {
      test('a flow the new policy denies is flipped to deny and its further packets are dropped both ways', async () => {
        const h = make();
        const c = tcp('10.1.0.1', '10.1.0.2', 9090);
        h.send(c);
        h.send(replyTo(c));
        const narrowed = np('prod', 'api-in', {
          podSelector: { matchLabels: { app: 'api' } },
          ingress: [
            { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 8080 }] },
          ],
        });
        const r = h.dp.loadTables(tablesOf([...pods(), narrowed, dbIngress(), webEgress()]));
        assert.deepEqual(r, { checked: 1, unchanged: 0, rulesChanged: 0, denied: 1, allowed: 0 });
        assert.equal(h.send({ ...c, tcpFlags: ack }).verdict, 'policy-ingress');
        assert.equal(h.send(replyTo(c, ack)).verdict, 'policy-ingress');
        const [f] = h.flows();
        assert.deepEqual(
          [f?.action, f?.dropReason, f?.ingress.kind],
          ['deny', 'policy-ingress', 'deny'],
        );
        assert.equal(h.dp.stats().reevaluation.denied, 1);
        await h.close();
      });

      test('a flow still allowed keeps flowing and takes the ids of the rule that allows it now', async () => {
        const h = make();
        const c = tcp('10.1.0.1', '10.1.0.2', 9090);
        h.send(c);
        assert.deepEqual(h.flows()[0]?.ingress, {
          kind: 'rule',
          rule: 'test/np/prod/api-in/ingress/0/0',
          policy: 'test/np/prod/api-in',
        });
        const reordered = apiIngress([
          { from: [{ ipBlock: { cidr: '198.51.100.0/24' } }], ports: [{ port: 1 }] },
        ]);
        const r = h.dp.loadTables(tablesOf([...pods(), reordered, dbIngress(), webEgress()]));
        assert.deepEqual(r, { checked: 1, unchanged: 0, rulesChanged: 1, denied: 0, allowed: 0 });
        const [f] = h.flows();
        assert.equal(f?.action, 'allow');
        assert.deepEqual(f?.ingress, {
          kind: 'rule',
          rule: 'test/np/prod/api-in/ingress/1/0',
          policy: 'test/np/prod/api-in',
        });
        assert.equal(h.send(replyTo(c)).verdict, 'allow');
        await h.close();
      });

      test('a denied flow the new policy allows is flipped to allow', async () => {
        const h = make();
        const c = tcp('10.1.0.1', '10.1.0.2', 22);
        assert.equal(h.send(c).verdict, 'policy-ingress');
        const r = h.dp.loadTables(tablesOf([...pods(), dbIngress(), webEgress()]));
        assert.equal(r.allowed, 1);
        assert.equal(h.send(c).verdict, 'allow');
        assert.deepEqual(h.flows()[0]?.ingress, { kind: 'default' });
        await h.close();
      });

      test('reloading equal tables changes nothing, and renumbered rules still decode to the same ids', async () => {
        const h = make();
        h.send(tcp('10.1.0.1', '10.1.0.2', 9090));
        h.send(tcp('10.1.0.2', '10.1.0.3', 5432));
        h.send(tcp('10.1.0.1', '10.1.0.3', 5432));
        const before = h.flows().map(({ counters: _c, ...f }) => f);
        assert.deepEqual(h.dp.loadTables(tablesOf([...pods(), ...policies()])), {
          checked: 3,
          unchanged: 3,
          rulesChanged: 0,
          denied: 0,
          allowed: 0,
        });
        // A new policy on web (compiled first) shifts every catalog index after it.
        const extra = np('prod', 'web-in', {
          podSelector: { matchLabels: { app: 'web' } },
          ingress: [
            { from: [{ ipBlock: { cidr: '192.0.2.0/24' } }] },
            { from: [{ ipBlock: { cidr: '198.51.100.0/24' } }] },
          ],
        });
        const r = h.dp.loadTables(tablesOf([...pods(), ...policies(), extra]));
        assert.deepEqual(r, { checked: 3, unchanged: 3, rulesChanged: 0, denied: 0, allowed: 0 });
        assert.deepEqual(
          h.flows().map(({ counters: _c, ...f }) => f),
          before,
        );
        await h.close();
      });
    });

    test('the verdict engine can stand in for RuleTables behind the evaluator seam', async () => {
      const h = make(undefined, { verdictEngine: (t) => createVerdictEngine(t) });
      for (const [name, packet, verdict] of CASES)
        assert.equal(h.send(packet).verdict, verdict, name);
      h.dp.loadTables(tablesOf([...pods(), ...policies()]));
      assert.equal(h.dp.stats().reevaluation.unchanged, h.flows().length);
      await h.close();
    });

    describe('flow events', () => {
      /** Reads `count` events (fewer if the stream ends); `for await … break` would end the subscription. */
      async function take(
        stream: AsyncIterableIterator<FlowEvent>,
        count: number,
      ): Promise<FlowEvent[]> {
        const out: FlowEvent[] = [];
        while (out.length < count) {
          const r = await stream.next();
          if (r.done) break;
          out.push(r.value);
        }
        return out;
      }

      test('creation, verdict changes, re-evaluation, TCP close, aging and detach each emit an event', async () => {
        const h = make();
        const stream = h.dp.events();
        const c = tcp('10.1.0.1', '10.1.0.2', 9090);
        h.send(c);
        h.send(udp('10.1.0.1', '8.8.8.8', 53));
        h.send(tcp('10.1.0.1', '8.8.8.8', 443, 5555));
        // re-evaluated: the web→api flow is now allowed by the second rule.
        h.dp.loadTables(
          tablesOf([
            ...pods(),
            apiIngress([
              { from: [{ ipBlock: { cidr: '198.51.100.0/24' } }], ports: [{ port: 1 }] },
            ]),
            dbIngress(),
            webEgress(),
          ]),
        );
        // verdict: egress to the outside is cut.
        const closedWeb = np('prod', 'web-out', {
          podSelector: { matchLabels: { app: 'web' } },
          policyTypes: ['Egress'],
          egress: [{ to: [{ podSelector: { matchLabels: { app: 'api' } } }] }],
        });
        h.dp.loadTables(
          tablesOf([
            ...pods(),
            apiIngress([
              { from: [{ ipBlock: { cidr: '198.51.100.0/24' } }], ports: [{ port: 1 }] },
            ]),
            dbIngress(),
            closedWeb,
          ]),
        );
        // closed: FIN both ways on web→api, then aged by the closed timeout.
        h.send({ ...c, tcpFlags: fin | ack });
        h.send(replyTo(c, fin | ack));
        h.now += 10_000;
        h.dp.expire();
        // aged: the denied flows after their timeout.
        h.now += 30_000;
        h.dp.expire();
        h.send(tcp('8.8.8.8', '10.1.0.1', 80));
        h.dp.detach(1);
        const events = await take(stream, 10);
        const summary = events.map((e) =>
          e.type === 'lost' ? 'lost' : `${e.type} ${e.flow.src}>${e.flow.dst}:${e.flow.dport}`,
        );
        assert.deepEqual(summary, [
          'created 10.1.0.1>10.1.0.2:9090',
          'created 10.1.0.1>8.8.8.8:53',
          'created 10.1.0.1>8.8.8.8:443',
          're-evaluated 10.1.0.1>10.1.0.2:9090',
          'verdict 10.1.0.1>8.8.8.8:53',
          'verdict 10.1.0.1>8.8.8.8:443',
          'closed 10.1.0.1>10.1.0.2:9090',
          'aged 10.1.0.1>8.8.8.8:53',
          'aged 10.1.0.1>8.8.8.8:443',
          'created 8.8.8.8>10.1.0.1:80',
        ]);
        const verdict = events[4]!;
        assert.ok(verdict.type === 'verdict');
        assert.deepEqual(
          [verdict.previous.action, verdict.flow.action, verdict.flow.dropReason],
          ['allow', 'deny', 'policy-egress'],
        );
        const closed = events[6]!;
        assert.ok(closed.type === 'closed' && closed.cause === 'tcp');
        assert.deepEqual(closed.flow.counters?.forward.packets, 2);
        const [detached] = await take(stream, 1);
        assert.ok(
          detached?.type === 'closed' &&
            detached.cause === 'detached' &&
            detached.flow.src === '8.8.8.8',
        );
        await h.close();
        assert.deepEqual(await stream.next(), { value: undefined, done: true });
      });

      test('a flow evicted from a full table is reported as evicted', async () => {
        const h = make(undefined, { flowTable: { maxFlows: 2 } });
        const stream = h.dp.events();
        h.send(udp('10.1.0.1', '8.8.8.8', 53, 1));
        h.send(udp('10.1.0.1', '8.8.8.8', 53, 2));
        h.send(udp('10.1.0.1', '8.8.8.8', 53, 3));
        const events = await take(stream, 4);
        assert.deepEqual(
          events.map((e) => (e.type === 'lost' ? e.type : `${e.type} ${e.flow.sport}`)),
          ['created 1', 'created 2', 'evicted 1', 'created 3'],
        );
        const evicted = events[2]!;
        assert.ok(evicted.type === 'evicted');
        assert.deepEqual(
          evicted.flow.counters?.forward,
          { packets: 1, bytes: 28 },
          'final counters',
        );
        await h.close();
      });

      test('a subscriber that falls behind is told how many events it lost', async () => {
        const h = make();
        const stream = h.dp.events({ bufferSize: 2 });
        for (let i = 0; i < 5; i++) h.send(udp('10.1.0.1', '8.8.8.8', 53, 100 + i));
        const events = await take(stream, 3);
        assert.deepEqual(
          events.map((e) => e.type),
          ['created', 'created', 'lost'],
        );
        assert.deepEqual(events[2], { type: 'lost', count: 3 });
        assert.equal(h.dp.stats().events.lost, 3);
        h.send(udp('10.1.0.1', '8.8.8.8', 53, 200));
        const [next] = await take(stream, 1);
        assert.ok(next?.type === 'created' && next.flow.sport === 200);
        await h.close();
      });

      test('aborting the signal ends the stream and stops the datapath building events', async () => {
        const h = make();
        const abort = new AbortController();
        const stream = h.dp.events({ signal: abort.signal });
        assert.equal(h.dp.stats().events.watchers, 1);
        abort.abort();
        assert.deepEqual(await stream.next(), { value: undefined, done: true });
        h.send(udp('10.1.0.1', '8.8.8.8', 53));
        assert.equal(h.dp.stats().events.published, 0);
        await h.close();
      });
    });
  });
}
