import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { runWeirctl } from '../support/weirctl-in-process.js';
import { serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import { serverCredentials } from '../../shared/tls/credentials.js';
import { weirVersion } from '../../shared/version.js';
import { controllerTls } from '../support/tls.js';

const run = (args: string[]) => runWeirctl(args);

describe('weirctl version', () => {
  let server: grpc.Server;
  let address: string;
  let serverVersion = '';
  before(async () => {
    server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
    server.addService(weirProto().proto.weir.v1.Operator.service, {
      GetStatus: (_c: unknown, cb: grpc.sendUnaryData<object>) =>
        cb(null, { cluster: 'local', version: serverVersion }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  test('shows the client and the server and says nothing more when they agree', async () => {
    serverVersion = weirVersion();
    const r = await run(['version', '--controller', address, '-o', 'json']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), {
      client: { version: weirVersion() },
      server: { version: weirVersion(), address },
    });
    assert.equal(r.err, '');
  });

  test('warns about skew when the controller is of another version', async () => {
    serverVersion = '0.0.0-other';
    const r = await run(['version', '--controller', address]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^client {2}\S+\nserver {2}0\.0\.0-other/);
    assert.match(r.err, /^warning: weirctl \S+ and the controller 0\.0\.0-other differ/);
  });

  test('without credentials it prints the client version, then why the server is missing', async () => {
    const r = await run(['version', '--controller', address, '--tls-dir', '/nonexistent/weir-tls']);
    assert.notEqual(r.code, 0);
    assert.equal(r.out, `client  ${weirVersion()}\n`);
    assert.match(r.err, /\/nonexistent\/weir-tls/);
  });

  test('--client does not ask the controller', async () => {
    const r = await run(['version', '--client', '--controller', '127.0.0.1:1', '-o', 'yaml']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `client:\n  version: ${weirVersion()}\nserver: null\n`);
  });
});

describe('weirctl completion', () => {
  const shellCheck = (shell: string, script: string) =>
    new Promise<{ code: number; err: string }>((resolve) => {
      const child = execFile(shell, ['-n'], (e, _o, err) =>
        resolve({ code: e ? Number(e.code ?? 1) : 0, err }),
      );
      child.stdin!.end(script);
    });

  test('bash completion is valid bash (bash -n) and offers the commands and their flags', async () => {
    const r = await run(['completion', 'bash']);
    assert.equal(r.code, 0);
    const check = await shellCheck('bash', r.out);
    assert.equal(check.code, 0, check.err);
    for (const w of ['status', 'flows', 'version', 'completion', '--sort-by', '--from-pod'])
      assert.ok(r.out.includes(w), w);
  });

  test('fish and zsh completions are produced, and an unknown shell is refused', async () => {
    assert.match((await run(['completion', 'fish'])).out, /complete -c weirctl/);
    assert.match((await run(['completion', 'zsh'])).out, /^#compdef weirctl/);
    const bad = await run(['completion', 'tcsh']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /must be bash, zsh or fish/);
  });
});
