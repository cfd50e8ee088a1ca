/**
 * The controller's federation flags (shared/nats/federation.ts
 * federationFromFlags): what each combination means, and a refusal naming
 * the flag for each mistake.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { federationFromFlags } from '../../shared/nats/federation.js';

describe('the federation flags', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-fedflags-'));
    await writeFile(join(dir, 'pw'), 'secret\n');
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) await writeFile(join(dir, f), '');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('without --federation there is no federation', () => {
    assert.equal(federationFromFlags({}), undefined);
  });

  test('--federation with its own nats-server, a user and a password file, without TLS', () => {
    assert.deepEqual(
      federationFromFlags({
        federation: 'corp',
        'federation-nats': 'nats://127.0.0.1:4222',
        'federation-nats-user': 'controller',
        'federation-nats-password-file': join(dir, 'pw'),
        'federation-nats-insecure': true,
      }),
      {
        federation: 'corp',
        endpoint: { servers: ['nats://127.0.0.1:4222'], user: 'controller', password: 'secret' },
      },
    );
  });

  test("over TLS the link's client certificate is the program's", () => {
    const r = federationFromFlags({
      federation: 'corp',
      'federation-nats': 'tls://nats:4222',
      'tls-dir': dir,
    });
    assert.deepEqual(r?.endpoint.tls, {
      cert: join(dir, 'tls.crt'),
      key: join(dir, 'tls.key'),
      ca: join(dir, 'ca.crt'),
    });
  });

  test('each mistake is refused naming its flag', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ 'federation-nats': 'nats://x:1' }, /--federation-nats needs --federation/],
      [{ federation: 'a.b', 'federation-nats': 'nats://x:1' }, /--federation "a.b"/],
      [{ federation: 'corp' }, /--federation-nats needs at least one server/],
      [{ federation: 'corp', 'federation-nats': 'http://x' }, /--federation-nats: "http:\/\/x"/],
      [
        {
          federation: 'corp',
          'federation-nats': 'nats://x:1',
          'federation-nats-password-file': join(dir, 'pw'),
          'federation-nats-insecure': true,
        },
        /needs --federation-nats-user/,
      ],
      [
        {
          federation: 'corp',
          'federation-nats': 'nats://x:1',
          'federation-nats-user': 'u',
          'federation-nats-password-file': join(dir, 'none'),
        },
        /--federation-nats-password-file .*none/,
      ],
      [
        { federation: 'corp', 'federation-nats': 'nats://x:1' },
        /--federation-nats: no certificates/,
      ],
    ];
    for (const [values, message] of cases)
      assert.throws(() => federationFromFlags(values), message, JSON.stringify(values));
  });
});
