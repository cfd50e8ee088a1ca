/**
 * The kernel ruleset's transactions, without a kernel: what `nft` and
 * iptables are asked to do (a recording CommandRunner), and the conntrack
 * mark's meaning. No root needed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { silentLogger } from '../../shared/log.js';
import { decodeMark } from '../../vrouter-agent/datapath/kernel-datapath.js';
import {
  detectQueueMethod,
  KernelRuleset,
  type CommandRunner,
  type FailMode,
  type QueueMethod,
} from '../../vrouter-agent/datapath/kernel-ruleset.js';

interface Call {
  readonly file: string;
  readonly args: readonly string[];
  readonly stdin: string | undefined;
}

function recorder(fail: (c: Call) => string | undefined = () => undefined): {
  run: CommandRunner;
  calls: Call[];
} {
  const calls: Call[] = [];
  const run: CommandRunner = async (file, args, stdin) => {
    const c = { file, args, stdin };
    calls.push(c);
    const err = fail(c);
    if (err !== undefined) throw new Error(err);
    return '';
  };
  return { run, calls };
}

const ruleset = (failMode: FailMode, run: CommandRunner) =>
  new KernelRuleset({
    queue: 7,
    failMode,
    log: silentLogger,
    run,
    iptables: { v4: 'iptables-nft', v6: 'ip6tables-nft' },
  });

describe('the kernel ruleset', () => {
  test('queue detection: nft queue where the probe transaction commits, the xtables target where it is refused', async () => {
    const ok = recorder();
    assert.equal((await detectQueueMethod(ok.run)).method, 'nft-queue');
    assert.match(ok.calls[0]!.stdin!, /queue num 65535 bypass\ndelete table inet weir_probe_/);
    const refused = recorder(
      () => 'nft -f -: /dev/stdin:3:1: Error: No such file or directory; did you mean',
    );
    const r = await detectQueueMethod(refused.run);
    assert.equal(r.method, 'xtables-nfqueue');
    assert.match(r.reason, /Error: No such file or directory\)/);
  });

  const installs: Array<[QueueMethod, FailMode, RegExp, string[] | undefined]> = [
    ['nft-queue', 'open', /ct state new queue num 7 bypass/, undefined],
    ['nft-queue', 'closed', /ct state new queue num 7\n/, undefined],
    [
      'xtables-nfqueue',
      'open',
      /ct state new meta mark set meta mark & 0x3fffffff \| 0x40000000/,
      ['--queue-bypass'],
    ],
    [
      'xtables-nfqueue',
      'closed',
      /ct state new meta mark set meta mark & 0x3fffffff \| 0x40000000/,
      [],
    ],
  ];
  for (const [method, failMode, queueLine, xtables] of installs)
    test(`install with ${method}, fail ${failMode}: one transaction replacing the table, pods in its sets, forward and input hooks queued`, async () => {
      const rec = recorder((c) => (c.args[0] === '-C' ? 'no such rule' : undefined));
      await ruleset(failMode, rec.run).install(method, ['10.0.0.1', 'fd00::1']);
      const nft = rec.calls.filter((c) => c.file === 'nft');
      assert.equal(nft.length, 1, 'one nft transaction');
      const text = nft[0]!.stdin!;
      assert.match(text, /^table inet weir \{\}\ndelete table inet weir\ntable inet weir \{/);
      assert.match(text, /set pods4 \{ type ipv4_addr; elements = \{ 10\.0\.0\.1 \}; \}/);
      assert.match(text, /set pods6 \{ type ipv6_addr; elements = \{ fd00::1 \}; \}/);
      assert.match(text, /ct state established,related accept/);
      assert.match(text, /ct state invalid drop/);
      assert.match(text, queueLine);
      assert.match(text, /meta mark & 0xc0000000 == 0x80000000 ct mark set meta mark/);
      // The input hook: a pod's egress to the node itself, queued through the same chain and stamped.
      assert.match(
        text,
        /chain input \{\n\s+type filter hook input priority -5; policy accept;\n\s+ct state established,related accept\n\s+iif lo accept\n\s+ip saddr @pods4 jump pod\n\s+ip6 saddr @pods6 jump pod\n\s+\}/,
      );
      assert.match(
        text,
        /chain stamp_input \{\n\s+type filter hook input priority 10; policy accept;\n\s+meta mark & 0xc0000000 == 0x80000000 ct mark set meta mark\n/,
      );
      assert.doesNotMatch(text, /chain input[^}]*daddr/, 'the input hook queues by source only');
      const inserted = rec.calls.filter((c) => c.args[0] === '-I');
      if (xtables === undefined)
        assert.equal(inserted.length, 0, 'no xtables rule with the nft queue');
      else {
        assert.deepEqual(
          inserted.map((c) => `${c.file} ${c.args[1]}`),
          [
            'iptables-nft FORWARD',
            'iptables-nft INPUT',
            'ip6tables-nft FORWARD',
            'ip6tables-nft INPUT',
          ],
        );
        for (const c of inserted) {
          assert.equal(c.args[2], '1', 'first in its chain');
          assert.ok(c.args.includes('NFQUEUE') && c.args.includes('7'));
          assert.equal(c.args.includes('--queue-bypass'), xtables.includes('--queue-bypass'));
        }
      }
    });

  test("remove deletes the fallback's NFQUEUE rules from both FORWARD and INPUT, and only Weir's", async () => {
    const listed = (chain: string) =>
      [
        `-P ${chain} ACCEPT`,
        `-A ${chain} -j ACCEPT -m comment --comment someone-else`,
        `-A ${chain} -m mark --mark 0x40000000/0xc0000000 -m comment --comment weir-queue -j NFQUEUE --queue-num 7 --queue-bypass`,
      ].join('\n');
    const calls: Call[] = [];
    const run: CommandRunner = async (file, args, stdin) => {
      calls.push({ file, args, stdin });
      return args[0] === '-S' ? listed(args[1]!) : '';
    };
    await ruleset('open', run).remove();
    const deleted = calls.filter((c) => c.args[0] === '-D');
    assert.deepEqual(
      deleted.map((c) => `${c.file} ${c.args[1]}`),
      [
        'iptables-nft FORWARD',
        'iptables-nft INPUT',
        'ip6tables-nft FORWARD',
        'ip6tables-nft INPUT',
      ],
    );
    for (const c of deleted) assert.ok(c.args.includes('weir-queue') && c.args.includes('NFQUEUE'));
  });

  test('pod changes are one set transaction each, only what changes, nothing when nothing does', async () => {
    const rec = recorder();
    const r = ruleset('open', rec.run);
    await r.install('nft-queue', ['10.0.0.1']);
    rec.calls.length = 0;
    await r.update(['10.0.0.1', '10.0.0.2', 'fd00::2'], []);
    await r.update([], ['10.0.0.1', '10.9.9.9']);
    await r.update(['10.0.0.2'], []);
    const nft = rec.calls.filter((c) => c.file === 'nft').map((c) => c.stdin);
    assert.deepEqual(nft, [
      'add element inet weir pods4 { 10.0.0.2 }\nadd element inet weir pods6 { fd00::2 }\n',
      'delete element inet weir pods4 { 10.0.0.1 }\n',
    ]);
    assert.deepEqual([...r.addresses()].sort(), ['10.0.0.2', 'fd00::2']);
  });

  test('a failed set transaction changes nothing the ruleset believes', async () => {
    let refuse = false;
    const rec = recorder(() => (refuse ? 'Error: Could not process rule' : undefined));
    const r = ruleset('open', rec.run);
    await r.install('nft-queue', ['10.0.0.1']);
    refuse = true;
    await assert.rejects(r.update(['10.0.0.2'], ['10.0.0.1']));
    assert.deepEqual([...r.addresses()], ['10.0.0.1']);
  });

  test('an address that is not one is refused with the field named', async () => {
    const r = ruleset('open', recorder().run);
    await r.install('nft-queue', []);
    await assert.rejects(r.update(['10.0.0.300'], []), /ips: "10\.0\.0\.300" is not an IP address/);
  });
});

describe('the conntrack mark', () => {
  const cases: Array<[number, ReturnType<typeof decodeMark>]> = [
    [0, undefined],
    [0x4000_0000, undefined],
    [0xbffe_8001, { egress: { kind: 'default' }, ingress: { kind: 'rule', index: 0 } }],
    [
      (0x8000_0000 | (5 << 15) | 0x7ffc) >>> 0,
      { egress: { kind: 'rule', index: 4 }, ingress: { kind: 'node' } },
    ],
    [
      (0x8000_0000 | (0x7fff << 15)) >>> 0,
      { egress: { kind: 'overflow' }, ingress: { kind: 'none' } },
    ],
  ];
  for (const [mark, want] of cases)
    test(`mark 0x${mark.toString(16)} reads as ${want === undefined ? 'not Weir’s' : `${want.egress.kind}/${want.ingress.kind}`}`, () => {
      assert.deepEqual(decodeMark(mark), want);
    });
});
