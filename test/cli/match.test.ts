import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMatch } from '../../cli/commands/flows.js';
import { UsageError } from '../../cli/io.js';

const cases: Array<[string, ReturnType<typeof parseMatch> | RegExp]> = [
  ['10.0.0.1', { a: { ip: '10.0.0.1' } }],
  ['10.0.0.1:80', { a: { ip: '10.0.0.1', port: 80 } }],
  ['10.0.0.1:80,10.0.0.2', { a: { ip: '10.0.0.1', port: 80 }, b: { ip: '10.0.0.2' } }],
  [
    '10.0.0.1 , 10.0.0.2:443 & proto tcp',
    { a: { ip: '10.0.0.1' }, b: { ip: '10.0.0.2', port: 443 }, protocol: 6 },
  ],
  [
    '[fd00::1]:53,fd00::2 & proto udp',
    { a: { ip: 'fd00::1', port: 53 }, b: { ip: 'fd00::2' }, protocol: 17 },
  ],
  ['fd00::1 & proto 132', { a: { ip: 'fd00::1' }, protocol: 132 }],
  ['10.0.0.1 & proto ipx', /expected "proto tcp/],
  ['10.0.0.1:99999', /out of range/],
  ['web:80', /not an address/],
  ['1.1.1.1,2.2.2.2,3.3.3.3', /expected "ip\[:port\]"/],
  ['', /expected "ip\[:port\]"/],
];

for (const [text, want] of cases) {
  test(`--match ${JSON.stringify(text)} ${want instanceof RegExp ? 'is refused with a message' : 'reads as the ends and protocol it names'}`, () => {
    if (want instanceof RegExp)
      assert.throws(
        () => parseMatch(text),
        (e: unknown) => e instanceof UsageError && want.test(e.message),
      );
    else assert.deepEqual(parseMatch(text), want);
  });
}
