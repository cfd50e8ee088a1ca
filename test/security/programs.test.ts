/**
 * The programs' TLS settings as a user meets them: started without
 * certificates, with --insecure, and weirctl's credentials, certificates
 * and contexts. Real processes on loopback (test/support/processes.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { uriSans } from '../../shared/tls/identity.js';
import { ROOT, WeirProcess, eventually, freePort, pki } from '../support/processes.js';

/** Runs a program of bin/ to its end; `env` replaces the TLS variables this test process has. */
function run(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const clean = { ...process.env };
  for (const k of [
    'WEIR_TLS_DIR',
    'WEIR_TLS_CERT',
    'WEIR_TLS_KEY',
    'WEIR_TLS_CA',
    'WEIR_CERT',
    'WEIR_KEY',
    'WEIR_CA',
  ])
    delete clean[k];
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [join(ROOT, 'bin', bin), ...args],
      {
        env: { ...clean, WEIR_CONFIG: join(tmpdir(), 'weir-no-config.yaml'), ...env },
        timeout: 60_000,
      },
      (err, out, errOut) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, err: errOut }),
    ),
  );
}

describe('starting without certificates', () => {
  test('the controller and the agent refuse to start without certificates or --insecure, with one line naming the flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-notls-'));
    const controller = await run('weir-controller', ['--listen', `127.0.0.1:${await freePort()}`]);
    const agent = await run('weir-agent', ['--node', 'node-a', '--state-dir', join(dir, 'a')]);
    for (const r of [controller, agent]) {
      assert.notEqual(r.code, 0);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.match(r.err, /--tls-dir DIR.*--insecure/);
    }
    await rm(dir, { recursive: true, force: true });
  });

  test('a certificate file that does not exist is refused alike over gRPC and NATS, by one line naming the flag and the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-nofile-'));
    // A directory holding the certificate and the CA but no key.
    const half = join(dir, 'half');
    await mkdir(half);
    for (const f of ['tls.crt', 'ca.crt'])
      await copyFile(join(await pki.node('node-a'), f), join(half, f));
    const nats = ['--transport', 'nats', '--nats', `nats://127.0.0.1:${await freePort()}`];
    const cases: Array<[string, string[], RegExp]> = [
      [
        'controller --tls-dir',
        ['--tls-dir', half],
        /--tls-dir \S+half: no such file \S+half\/tls\.key/,
      ],
      ['agent --tls-dir', ['--tls-dir', half], /--tls-dir \S+half: no such file \S+half\/tls\.key/],
      [
        'agent --tls-key',
        ['--tls-dir', half, '--tls-key', join(dir, 'gone.key')],
        /--tls-key \S+gone\.key: no such file/,
      ],
    ];
    for (const [what, flags, line] of cases)
      for (const transport of [[], nats]) {
        const bin = what.startsWith('controller') ? 'weir-controller' : 'weir-agent';
        const r = await run(bin, [
          ...(bin === 'weir-agent' ? ['--node', 'node-a', '--state-dir', join(dir, 'a')] : []),
          '--listen',
          `127.0.0.1:${await freePort()}`,
          ...flags,
          ...transport,
        ]);
        const how = `${what}${transport.length > 0 ? ' over NATS' : ' over gRPC'}`;
        assert.notEqual(r.code, 0, how);
        assert.equal(r.err.trim().split('\n').length, 1, `${how}: ${r.err}`);
        assert.match(r.err, line, how);
      }
    await rm(dir, { recursive: true, force: true });
  });

  test("an agent refuses another node's certificate at start", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-notls-'));
    const r = await run('weir-agent', [
      '--node',
      'node-a',
      '--state-dir',
      join(dir, 'a'),
      '--tls-dir',
      await pki.node('node-b'),
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /is node node-b's, not --node node-a's/);
    await rm(dir, { recursive: true, force: true });
  });

  test('weirctl without credentials refuses with a line naming the flags', async () => {
    const r = await run('weirctl', ['status', '--controller', `127.0.0.1:${await freePort()}`]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /^error: no credentials: give --tls-dir DIR or --cert F --key F --ca F .* or --insecure\n$/,
    );
  });
});

describe('--insecure', () => {
  let controller: WeirProcess;
  let address: string;
  before(async () => {
    address = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--listen',
      address,
      '--insecure',
    ]);
    await controller.waitFor((l) => l.msg === 'controller serving', 'serving');
  });
  after(async () => {
    await controller?.stop();
  });

  test('is warned loudly at start and appears in status (json and table)', async () => {
    const warned = controller.lines.find((l) => l.insecure === true);
    assert.ok(warned && warned.level === 40 && /INSECURE/.test(String(warned.msg)), 'a warn line');
    const json = await run('weirctl', [
      'status',
      '--controller',
      address,
      '--insecure',
      '-o',
      'json',
    ]);
    assert.equal(json.code, 0, json.err);
    const s = JSON.parse(json.out) as { insecure: boolean; warnings: string[] };
    assert.equal(s.insecure, true);
    assert.ok(s.warnings.some((w) => w.includes('--insecure')));
    const table = await run('weirctl', ['status', '--controller', address, '--insecure']);
    assert.match(table.out, /INSECURE \(no TLS\)/);
  });

  test('a client with certificates cannot mistake an insecure controller for a secure one', async () => {
    const r = await run('weirctl', [
      'status',
      '--controller',
      address,
      '--tls-dir',
      pki.operator('admin'),
    ]);
    assert.equal(r.code, 1);
  });
});

describe('weirctl certs and contexts', () => {
  let dir: string;
  let controller: WeirProcess;
  let address: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-certs-'));
  });
  after(async () => {
    await controller?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('weirctl certs issues a CA and certificates naming each identity, which the programs and weirctl use', async () => {
    const w = (...a: string[]) => run('weirctl', a);
    assert.equal((await w('certs', 'ca', '--out', join(dir, 'ca'))).code, 0);
    const ca = ['--ca-dir', join(dir, 'ca')];
    for (const [args, uri] of [
      [['controller', '--out', join(dir, 'controller')], 'spiffe://weir/controller'],
      [['node', 'node-q', '--out', join(dir, 'node-q')], 'spiffe://weir/node/node-q'],
      [
        ['pod', 'weir-agent-x1', '--out', join(dir, 'pod')],
        'spiffe://weir/ns/weir-system/pod/weir-agent-x1',
      ],
      [
        ['operator', 'alice', '--role', 'admin', '--out', join(dir, 'alice')],
        'spiffe://weir/operator/admin/alice',
      ],
      [['operator', 'bob', '--out', join(dir, 'bob')], 'spiffe://weir/operator/read-only/bob'],
    ] as const) {
      const r = await w('certs', ...args, ...ca);
      assert.equal(r.code, 0, r.err);
      const out = args[args.indexOf('--out') + 1]!;
      assert.deepEqual(uriSans(new X509Certificate(readFileSync(join(out, 'tls.crt')))), [uri]);
    }
    address = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--listen',
      address,
      '--tls-dir',
      join(dir, 'controller'),
    ]);
    await controller.waitFor((l) => l.msg === 'controller serving', 'serving');
    const bob = await w(
      'status',
      '--controller',
      address,
      '--tls-dir',
      join(dir, 'bob'),
      '-o',
      'json',
    );
    assert.equal(bob.code, 0, bob.err);
    assert.equal((JSON.parse(bob.out) as { insecure: boolean }).insecure, false);
  });

  test('a context names the controller and the credentials: set-context, use-context, get-contexts, view', async () => {
    const config = join(dir, 'config.yaml');
    const w = (...a: string[]) => run('weirctl', a, { WEIR_CONFIG: config });
    const set = await w(
      'config',
      'set-context',
      'lab',
      '--controller',
      address,
      '--tls-dir',
      join(dir, 'alice'),
    );
    assert.equal(set.code, 0, set.err);
    await w('config', 'set-context', 'other', '--controller', '127.0.0.1:1', '--insecure');
    assert.equal((await w('status')).code, 2, 'no current context yet: no credentials');
    assert.equal((await w('config', 'use-context', 'lab')).code, 0);
    const listed = await w('config', 'get-contexts');
    assert.match(listed.out, /\*\s+lab\s+127\.0\.0\.1:\d+/);
    assert.match(listed.out, /other\s+127\.0\.0\.1:1\s+INSECURE/);
    assert.match((await w('config', 'view')).out, /current-context: lab/);
    const status = await eventually(async () => {
      const r = await w('status', '-o', 'json');
      return r.code === 0 ? r : undefined;
    }, 'status through the context');
    assert.equal((JSON.parse(status.out) as { insecure: boolean }).insecure, false);
    assert.equal((await w('status', '--context', 'nope')).code, 2);
  });
});
