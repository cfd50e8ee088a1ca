/**
 * weir-controller's federation flags: what they make of each combination,
 * and a clear error naming the flag for each mistake.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { federationFromFlags } from '../../controller/federation/flags.js';

const tls = { cert: '/t/tls.crt', key: '/t/tls.key', ca: '/t/ca.crt' };

describe('federation flags', () => {
  test('each combination gives the link it says, or an error naming the flag', () => {
    const cases: Array<[string, Record<string, string | boolean>, RegExp | object | undefined]> = [
      ['no --federation', {}, undefined],
      [
        'a member with the controller certificate',
        { federation: 'f', 'federation-nats': 'nats://leaf:4222' },
        { name: 'f', endpoint: { servers: ['nats://leaf:4222'], tls }, podCidrs: [] },
      ],
      [
        'insecure, with a user and pod CIDRs',
        {
          federation: 'f',
          'federation-nats': 'nats://a:4222,nats://b:4222',
          'federation-nats-user': 'member-a',
          'federation-nats-insecure': true,
          'federation-pod-cidrs': '10.1.0.0/16, fd00::/48',
        },
        {
          name: 'f',
          endpoint: { servers: ['nats://a:4222', 'nats://b:4222'], user: 'member-a', password: '' },
          podCidrs: ['10.1.0.0/16', 'fd00::/48'],
        },
      ],
      ['no server', { federation: 'f' }, /--federation needs --federation-nats/],
      [
        'a bad name',
        { federation: 'a.b', 'federation-nats': 'nats://x:1' },
        /--federation "a\.b" cannot name/,
      ],
      [
        'a bad URL',
        { federation: 'f', 'federation-nats': 'http://x' },
        /--federation-nats: "http:\/\/x" is not a NATS URL/,
      ],
      [
        'a bad CIDR',
        { federation: 'f', 'federation-nats': 'nats://x:1', 'federation-pod-cidrs': '10.0.0.0/33' },
        /--federation-pod-cidrs: "10\.0\.0\.0\/33"/,
      ],
      [
        'a federation flag without --federation',
        { 'federation-pod-cidrs': '10.0.0.0/8' },
        /--federation-pod-cidrs needs --federation NAME/,
      ],
    ];
    for (const [what, values, want] of cases) {
      if (want instanceof RegExp)
        assert.throws(() => federationFromFlags(values, 'a', tls), want, what);
      else assert.deepEqual(federationFromFlags(values, 'a', tls), want, what);
    }
  });
});
