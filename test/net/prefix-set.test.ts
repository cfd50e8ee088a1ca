import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatIp, parseCidr, parseIp, tryParseIp, type Cidr } from '../../shared/net/ip.js';
import { PrefixSet } from '../../shared/net/prefix-set.js';

const cidr = (text: string): Cidr => {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return c;
};

describe('addresses', () => {
  const parses: Array<[string, string | undefined]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['fd00::1', 'fd00::1'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['::', '::'],
    ['10.1', undefined],
    ['010.0.0.1', undefined],
    ['10.0.0.256', undefined],
    ['fe80::1%eth0', undefined],
    [' 10.0.0.1', undefined],
    ['', undefined],
  ];
  for (const [text, want] of parses) {
    test(`${JSON.stringify(text)} ${want === undefined ? 'is not an address' : `reads as ${want}`}`, () => {
      const ip = tryParseIp(text);
      assert.equal(ip === undefined ? undefined : formatIp(ip), want);
    });
  }

  test('a CIDR with host bits set is normalised and says so', () => {
    const c = cidr('10.1.2.3/16');
    assert.equal(c.text, '10.1.0.0/16');
    assert.equal(c.hadHostBits, true);
    assert.equal(cidr('10.1.0.0/16').hadHostBits, false);
    assert.equal(cidr('fd00::1:2/64').text, 'fd00::/64');
  });

  test('CIDR prefix lengths outside 0..32 and 0..128 are rejected', () => {
    for (const bad of [
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/',
      'fd00::/129',
      '10.0.0.0/08',
      '10.0.0.0/8/8',
    ]) {
      assert.equal(typeof parseCidr(bad), 'string', bad);
    }
    assert.equal(cidr('0.0.0.0/0').end, 2 ** 32 - 1);
    assert.equal(cidr('::/0').end, 2n ** 128n - 1n);
  });
});

describe('PrefixSet', () => {
  test('holds exactly the addresses of its prefixes, across both families', () => {
    const s = PrefixSet.from([
      cidr('10.0.0.0/24'),
      cidr('10.0.2.0/23'),
      parseIp('192.168.1.1'),
      cidr('fd00::/120'),
    ]);
    for (const [ip, want] of [
      ['10.0.0.0', true],
      ['10.0.0.255', true],
      ['10.0.1.0', false],
      ['10.0.2.0', true],
      ['10.0.3.255', true],
      ['10.0.4.0', false],
      ['192.168.1.1', true],
      ['192.168.1.2', false],
      ['fd00::ff', true],
      ['fd00::100', false],
      ['9.255.255.255', false],
    ] as const) {
      assert.equal(s.has(parseIp(ip)), want, ip);
    }
  });

  test('merges overlapping and adjacent ranges', () => {
    const s = PrefixSet.from([
      cidr('10.0.0.0/25'),
      cidr('10.0.0.128/25'),
      cidr('10.0.0.64/26'),
      parseIp('10.0.1.0'),
    ]);
    assert.deepEqual(s.describe(), ['10.0.0.0-10.0.1.0']);
  });

  test('the empty set holds nothing', () => {
    assert.equal(PrefixSet.from([]).has(parseIp('0.0.0.0')), false);
    assert.equal(PrefixSet.from([]).has(parseIp('::')), false);
  });

  test('agrees with a scan of its prefixes on random prefixes and addresses', () => {
    const v4 = fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 8, max: 32 }));
    fc.assert(
      fc.property(
        fc.array(v4, { maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 50 }),
        (prefixes, probes) => {
          const cidrs = prefixes.map(([a, len]) => cidr(`${formatIp(a)}/${len}`));
          const s = PrefixSet.from(cidrs);
          // Probe the edges of every prefix too, where off-by-one errors live.
          const edges = cidrs
            .flatMap((c) => [
              c.start as number,
              c.end as number,
              (c.start as number) - 1,
              (c.end as number) + 1,
            ])
            .filter((n) => n >= 0 && n < 2 ** 32);
          for (const ip of [...probes, ...edges]) {
            const want = cidrs.some((c) => ip >= (c.start as number) && ip <= (c.end as number));
            if (s.has(ip) !== want) return false;
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
  });

  test('agrees with a scan of its prefixes for IPv6', () => {
    const v6 = fc.tuple(
      fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }),
      fc.integer({ min: 16, max: 128 }),
    );
    fc.assert(
      fc.property(
        fc.array(v6, { maxLength: 20 }),
        fc.array(fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }), { maxLength: 20 }),
        (prefixes, probes) => {
          const cidrs = prefixes.map(([a, len]) => cidr(`${formatIp(a)}/${len}`));
          const s = PrefixSet.from(cidrs);
          const edges = cidrs.flatMap((c) => [
            c.start as bigint,
            c.end as bigint,
            (c.end as bigint) + 1n,
          ]);
          return [...probes, ...edges].every(
            (ip) =>
              s.has(ip) === cidrs.some((c) => ip >= (c.start as bigint) && ip <= (c.end as bigint)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});
