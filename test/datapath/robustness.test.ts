/**
 * The userspace datapath against what packets can be: each class of bad
 * packet counted under its own drop reason with a defined verdict, fragments
 * following their first fragment's flow, link-layer control traffic, and
 * generated input (random bytes, every truncation, flipped bytes) that must
 * never make it throw or lose count. Then a differential test: on random
 * clusters every first packet's verdict is RuleTables.decide's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatIp, parseIp, type Ip } from '../../shared/net/ip.js';
import { compile } from '../../shared/policy/compile.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import {
  createUserspaceDatapath,
  DATAPATH_DROP_REASONS,
  RawPacketBatch,
  verdictName,
  type UserspaceDatapath,
  type UserspaceDatapathOptions,
} from '../../vrouter-agent/datapath/index.js';
import { nativeFlowTableAvailability } from '../../vrouter-agent/flows/index.js';
import { buildPacket, type PacketSpec } from '../../vrouter-agent/packet/index.js';
import { build, namespace, networkPolicy, pod } from '../../testing/cluster.js';
import { randomCluster } from '../../testing/random-cluster.js';

const native = nativeFlowTableAvailability();
const implementations = [
  { name: 'TypeScript', implementation: 'typescript' as const, skip: false as const },
  {
    name: 'native',
    implementation: 'native' as const,
    skip: native.available ? (false as const) : `the native addon is not loaded (${native.reason})`,
  },
];

/** web (not isolated) and db (isolated, admits web on TCP 5432) on this node. */
function tables(): RuleTables {
  const built = build([
    namespace('prod'),
    pod('prod', 'web', { labels: { app: 'web' }, ips: ['10.1.0.1', 'fd00::1'] }),
    pod('prod', 'db', { labels: { app: 'db' }, ips: ['10.1.0.3', 'fd00::3'] }),
    networkPolicy('prod', 'db-in', {
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] },
      ],
    }),
  ]);
  assert.deepEqual(built.issues, []);
  return built.tables;
}

const WEB = 1;
const DB = 3;

function datapath(
  implementation: 'native' | 'typescript',
  options: Partial<UserspaceDatapathOptions> = {},
): UserspaceDatapath {
  const dp = createUserspaceDatapath({
    tables: tables(),
    expireIntervalMs: 0,
    clock: () => 0,
    ...options,
    flowTable: { implementation, ...options.flowTable },
  });
  dp.attach({ zone: WEB, endpoint: 'prod/web', ips: ['10.1.0.1', 'fd00::1'] });
  dp.attach({ zone: DB, endpoint: 'prod/db', ips: ['10.1.0.3', 'fd00::3'] });
  return dp;
}

/** Verdict names of raw packets, all in one zone, at `nowMs`. */
function run(dp: UserspaceDatapath, packets: Uint8Array[], zone = WEB, nowMs = 0): string[] {
  const batch = new RawPacketBatch();
  for (const p of packets) batch.push(p, zone);
  const v = dp.process(batch, nowMs);
  return Array.from(v.verdicts, verdictName);
}

/** The stats must add up whatever was sent. */
function checkStats(dp: UserspaceDatapath): void {
  const s = dp.stats();
  assert.equal(s.allowed + s.dropped, s.packets);
  assert.equal(
    Object.values(s.drops).reduce((a, b) => a + b, 0),
    s.dropped,
  );
  const a = s.allowedBy;
  assert.equal(a.flow + a.slowPath + a.related + a.neighborDiscovery + a.nonIp, s.allowed);
}

const web2db = (o: Partial<PacketSpec> = {}): PacketSpec => ({
  src: '10.1.0.1',
  dst: '10.1.0.3',
  protocol: 'tcp',
  sport: 40000,
  dport: 5432,
  ...o,
});

for (const impl of implementations) {
  describe(`bad packets through the ${impl.name} flow table`, { skip: impl.skip }, () => {
    const make = (options?: Partial<UserspaceDatapathOptions>) =>
      datapath(impl.implementation, options);

    test('truncated, malformed, non-IP and unknown-version packets are dropped under their own reasons', async () => {
      const dp = make();
      const good = buildPacket(web2db());
      const malformed = good.slice();
      malformed[14] = 0x44;
      const arp = new Uint8Array(42);
      arp[12] = 0x08;
      arp[13] = 0x06;
      const badVersion = good.slice();
      badVersion[14] = 0x55;
      assert.deepEqual(run(dp, [good.subarray(0, 30), malformed, arp, badVersion, good]), [
        'truncated',
        'malformed',
        'unknown-ethertype',
        'malformed',
        'allow',
      ]);
      const raw = createUserspaceDatapath({
        tables: tables(),
        expireIntervalMs: 0,
        link: 'ip',
        flowTable: { implementation: impl.implementation },
      });
      raw.attach({ zone: WEB, endpoint: 'prod/web', ips: ['10.1.0.1'] });
      const v5 = buildPacket({ ...web2db(), link: 'ip' });
      v5[0] = 0x55;
      assert.deepEqual(run(raw, [v5, buildPacket({ ...web2db(), link: 'ip' })]), [
        'unknown-protocol',
        'allow',
      ]);
      const s = dp.stats();
      assert.deepEqual(
        [s.drops.truncated, s.drops.malformed, s.drops['unknown-ethertype']],
        [1, 2, 1],
      );
      assert.equal(s.flowTable.flows, 1, 'bad packets make no flows');
      checkStats(dp);
      await dp[Symbol.asyncDispose]();
      await raw[Symbol.asyncDispose]();
    });

    test('non-IP frames pass without a flow when nonIpAction is allow', async () => {
      const dp = make({ nonIpAction: 'allow' });
      const lldp = new Uint8Array(60);
      lldp[12] = 0x88;
      lldp[13] = 0xcc;
      assert.deepEqual(run(dp, [lldp]), ['allow']);
      assert.equal(dp.stats().allowedBy.nonIp, 1);
      checkStats(dp);
      await dp[Symbol.asyncDispose]();
    });

    test('protocols without ports are decided by policy by default, and dropped as unknown-protocol when configured', async () => {
      const gre = (dst: string) => buildPacket({ src: '8.8.8.8', dst, protocol: 47, payload: 8 });
      const dp = make();
      assert.deepEqual(
        [...run(dp, [gre('10.1.0.1')], WEB), ...run(dp, [gre('10.1.0.3')], DB)],
        ['allow', 'policy-ingress'],
      );
      const strict = make({ otherProtocols: 'deny' });
      assert.deepEqual(run(strict, [gre('10.1.0.1')]), ['unknown-protocol']);
      checkStats(strict);
      await dp[Symbol.asyncDispose]();
      await strict[Symbol.asyncDispose]();
    });

    test('VLAN-tagged frames are decided like untagged ones', async () => {
      const dp = make();
      assert.deepEqual(
        run(dp, [
          buildPacket(web2db({ vlans: [10] })),
          buildPacket(web2db({ vlans: [10, 20], dport: 22 })),
        ]),
        ['allow', 'policy-ingress'],
      );
      await dp[Symbol.asyncDispose]();
    });

    test('IPv6 neighbour discovery passes isolated pods unless policy is asked to decide it', async () => {
      const solicit = buildPacket({
        src: 'fd00::1',
        dst: 'fd00::3',
        protocol: 'icmp',
        icmp: { type: 135 },
      });
      const dp = make();
      assert.deepEqual(run(dp, [solicit]), ['allow']);
      assert.equal(dp.stats().allowedBy.neighborDiscovery, 1);
      assert.equal(dp.stats().flowTable.flows, 0);
      const strict = make({ neighborDiscovery: 'policy' });
      assert.deepEqual(run(strict, [solicit]), ['policy-ingress']);
      await dp[Symbol.asyncDispose]();
      await strict[Symbol.asyncDispose]();
    });

    describe('fragments', () => {
      for (const [family, src, dst] of [
        [4, '10.1.0.1', '10.1.0.3'],
        [6, 'fd00::1', 'fd00::3'],
      ] as const) {
        test(`IPv${family}: the rest of a datagram follows its first fragment's flow and is counted on it`, async () => {
          const dp = make();
          const first = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            sport: 40000,
            dport: 5432,
            payload: 64,
            fragment: { id: 7, offset: 0, more: true },
          });
          const middle = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            payload: 64,
            fragment: { id: 7, offset: 88, more: true },
          });
          const last = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            payload: 16,
            fragment: { id: 7, offset: 152, more: false },
          });
          assert.deepEqual(run(dp, [first, middle, last]), ['allow', 'allow', 'allow']);
          const [flow] = dp.flows().flows;
          assert.equal(flow?.counters?.forward.packets, 3);
          assert.deepEqual(
            [dp.stats().fragments.firstFragments, dp.stats().fragments.matched],
            [1, 2],
          );
          checkStats(dp);
          await dp[Symbol.asyncDispose]();
        });

        test(`IPv${family}: fragments of a denied datagram are dropped with the flow's reason`, async () => {
          const dp = make();
          const first = buildPacket({
            src,
            dst,
            protocol: 'udp',
            sport: 1,
            dport: 5432,
            payload: 64,
            fragment: { id: 9, offset: 0, more: true },
          });
          const rest = buildPacket({
            src,
            dst,
            protocol: 'udp',
            payload: 16,
            fragment: { id: 9, offset: 72, more: false },
          });
          assert.deepEqual(run(dp, [first, rest]), ['policy-ingress', 'policy-ingress']);
          await dp[Symbol.asyncDispose]();
        });

        test(`IPv${family}: a fragment whose first fragment was not seen, or has been forgotten, is dropped as a fragment`, async () => {
          const dp = make({ fragmentTimeoutSec: 5 });
          const orphan = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            payload: 16,
            fragment: { id: 3, offset: 1480, more: false },
          });
          assert.deepEqual(run(dp, [orphan]), ['fragment']);
          const first = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            sport: 40000,
            dport: 5432,
            payload: 8,
            fragment: { id: 4, offset: 0, more: true },
          });
          const later = buildPacket({
            src,
            dst,
            protocol: 'tcp',
            payload: 16,
            fragment: { id: 4, offset: 32, more: false },
          });
          assert.deepEqual(run(dp, [first], WEB, 0), ['allow']);
          dp.expire(5_000);
          assert.deepEqual(run(dp, [later], WEB, 5_000), ['fragment']);
          const tiny = buildPacket({
            src,
            dst,
            protocol: 6,
            omitTransportHeader: true,
            payload: 8,
            fragment: { id: 5, offset: 0, more: true },
          });
          assert.deepEqual(
            run(dp, [tiny]),
            ['fragment'],
            'a first fragment too short for its TCP header',
          );
          assert.equal(dp.stats().drops.fragment, 3);
          await dp[Symbol.asyncDispose]();
        });
      }

      test('fragments are matched per zone, addresses and IP id, and the table of first fragments is bounded', async () => {
        const dp = make({ maxFragments: 1 });
        const first = (id: number) =>
          buildPacket({
            src: '10.1.0.1',
            dst: '10.1.0.3',
            protocol: 'tcp',
            sport: 5,
            dport: 5432,
            payload: 16,
            fragment: { id, offset: 0, more: true },
          });
        const later = (id: number) =>
          buildPacket({
            src: '10.1.0.1',
            dst: '10.1.0.3',
            protocol: 'tcp',
            payload: 16,
            fragment: { id, offset: 40, more: false },
          });
        assert.deepEqual(run(dp, [first(1), later(2), first(2), later(1), later(2)]), [
          'allow',
          'fragment',
          'allow',
          'fragment',
          'allow',
        ]);
        assert.deepEqual(run(dp, [later(2)], DB), ['fragment'], 'another zone');
        await dp[Symbol.asyncDispose]();
      });
    });

    test('random bytes never make the datapath throw, and every packet is counted once', async () => {
      for (const link of ['ethernet', 'ip'] as const) {
        const dp = make({ link });
        fc.assert(
          fc.property(
            fc.array(fc.uint8Array({ maxLength: 120 }), { minLength: 1, maxLength: 16 }),
            fc.constantFrom(WEB, DB, 42),
            (packets, zone) => {
              const verdicts = run(dp, packets, zone);
              assert.equal(verdicts.length, packets.length);
              for (const v of verdicts)
                assert.ok(
                  v === 'allow' || (DATAPATH_DROP_REASONS as readonly string[]).includes(v),
                );
            },
          ),
          { numRuns: 1500 },
        );
        checkStats(dp);
        assert.ok(dp.stats().drops.truncated > 0);
        await dp[Symbol.asyncDispose]();
      }
    });

    test('every truncation and byte flip of valid packets is decided without throwing', async () => {
      const dp = make();
      const specs: PacketSpec[] = [
        web2db({ payload: 20 }),
        web2db({ src: 'fd00::1', dst: 'fd00::3', vlans: [7] }),
        {
          src: '10.1.0.1',
          dst: '10.1.0.3',
          protocol: 'udp',
          sport: 9,
          dport: 5432,
          fragment: { id: 1, offset: 0, more: true },
          payload: 16,
        },
        {
          src: 'fd00::1',
          dst: 'fd00::3',
          protocol: 'sctp',
          sport: 9,
          dport: 9,
          ipv6Extensions: ['hop-by-hop', 'routing'],
        },
        { src: '192.0.2.1', dst: '10.1.0.1', protocol: 'icmp', icmp: { type: 3, quote: web2db() } },
        {
          src: 'fd00::9',
          dst: 'fd00::1',
          protocol: 'icmp',
          icmp: { type: 1, quote: web2db({ src: 'fd00::1', dst: 'fd00::3' }) },
        },
      ];
      for (const spec of specs) {
        const bytes = buildPacket(spec);
        const zone = WEB;
        const prefixes = Array.from({ length: bytes.length }, (_, n) => bytes.subarray(0, n));
        assert.ok(
          run(dp, prefixes, zone).every((v) => v === 'truncated'),
          'every strict prefix is truncated',
        );
        fc.assert(
          fc.property(fc.integer({ min: 1, max: 255 }), (xor) => {
            const flipped = Array.from({ length: bytes.length }, (_, i) => {
              const c = bytes.slice();
              c[i] = c[i]! ^ xor;
              return c;
            });
            run(dp, flipped, zone);
          }),
          { numRuns: 60 },
        );
      }
      checkStats(dp);
      await dp[Symbol.asyncDispose]();
    });
  });
}

describe('first-packet verdicts on random clusters', () => {
  for (const impl of implementations) {
    test(`every first packet through the ${impl.name} flow table gets RuleTables.decide's verdict, for the gate decide names`, {
      skip: impl.skip,
    }, async () => {
      let probes = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const built = build(randomCluster(seed, { variety: 'basic' }).objects, 'rand');
        const local = compile(built.snapshot, { isLocal: (e) => e.node === 'node-0' });
        const dp = createUserspaceDatapath({
          tables: local,
          expireIntervalMs: 0,
          flowTable: { implementation: impl.implementation },
        });
        let zone = 1;
        const zoneOf = new Map<Ip, number>();
        for (const e of local.endpoints.values()) {
          dp.attach({ zone, endpoint: e.key, ips: e.ips });
          for (const ip of e.ips) zoneOf.set(ip, zone);
          zone++;
        }
        const addresses: Ip[] = [
          ...built.snapshot.endpoints.flatMap((e) => e.ips.map(parseIp)),
          ...['10.0.0.200', '10.0.1.5', '8.8.8.8', 'fd00::77'].map(parseIp),
        ];
        const batch = new RawPacketBatch();
        const expected: string[] = [];
        const described: string[] = [];
        let sport = 1024;
        for (const src of addresses) {
          for (const dst of addresses) {
            if (typeof src !== typeof dst) continue;
            const z = zoneOf.get(src) ?? zoneOf.get(dst);
            if (z === undefined) continue;
            for (const [protocol, port] of [
              ['tcp', 80],
              ['tcp', 81],
              ['udp', 53],
              ['sctp', 443],
              ['tcp', 8080],
            ] as const) {
              const v = local.decide({
                src,
                dst,
                protocol: { tcp: 6, udp: 17, sctp: 132 }[protocol],
                dstPort: port,
              });
              expected.push(
                v.allowed ? 'allow' : !v.egress.allowed ? 'policy-egress' : 'policy-ingress',
              );
              described.push(
                `seed ${seed}: ${formatIp(src)} -> ${formatIp(dst)} ${protocol}/${port}`,
              );
              batch.push(
                buildPacket({ src, dst, protocol, sport: sport++ & 0xffff, dport: port }),
                z,
              );
            }
          }
        }
        const got = Array.from(dp.process(batch).verdicts, verdictName);
        for (let i = 0; i < got.length; i++)
          if (got[i] !== expected[i])
            assert.fail(`${described[i]}: datapath ${got[i]}, RuleTables.decide ${expected[i]}`);
        probes += got.length;
        await dp[Symbol.asyncDispose]();
      }
      assert.ok(probes > 5_000, `probed ${probes}`);
    });
  }
});
