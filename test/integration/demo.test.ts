/**
 * `npm start` as a newcomer runs it: the demo comes up, converges, and
 * tells the user where to point weirctl; a second one beside it disturbs
 * nothing; a part that fails makes it fail.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as natsConnect } from '@nats-io/transport-node';
import { call, operatorClient } from '../../cli/clients.js';
import { setConnectionFlags } from '../../cli/config.js';
import type { StatusReply__Output } from '../../shared/generated/weir/v1/index.js';
import { ROOT, freePort } from '../support/processes.js';

interface Demo {
  readonly child: ChildProcess;
  out: string;
  err: string;
  readonly exited: Promise<number | null>;
}

function demo(env: Record<string, string>, args: string[] = []): Demo {
  const child = spawn(process.execPath, [join(ROOT, 'scripts', 'demo.mjs'), ...args], {
    // The userspace demo: as root with the kernel datapath, npm start is a lab (test/e2e covers it).
    env: { ...process.env, WEIR_DEMO_DATAPATH: 'userspace', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const d: Demo = {
    child,
    out: '',
    err: '',
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  child.stdout!.on('data', (b: Buffer) => (d.out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (d.err += b.toString()));
  return d;
}

function ready(d: Demo, timeoutMs = 120_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`no "ready" within ${timeoutMs} ms:\n${d.out}\n${d.err}`)),
      timeoutMs,
    );
    const check = () => {
      if (!d.out.includes('\nready\n')) return;
      clearTimeout(t);
      resolve();
    };
    d.child.stdout!.on('data', check);
    check();
    d.exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`demo exited ${code}:\n${d.out}\n${d.err}`));
    });
  });
}

/** A demo that must fail: its exit status and what it said. */
async function failing(env: Record<string, string>): Promise<{ code: number | null; err: string }> {
  const d = demo(env);
  const t = setTimeout(() => d.child.kill('SIGKILL'), 120_000);
  const code = await d.exited;
  clearTimeout(t);
  return { code, err: d.err };
}

async function stopDemo(d: Demo | undefined): Promise<void> {
  if (d === undefined || d.child.exitCode !== null) return;
  d.child.kill('SIGTERM');
  await d.exited;
}

/** Every lock left under a state directory: a stopped demo leaves none. */
async function locks(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && e.name === 'lock').map((e) => e.parentPath);
}

describe('the demo', () => {
  let dir: string;
  let listen: string;
  let first: Demo | undefined;
  const status = () => {
    // The demo's own CA: its admin operator's certificate, as its hints say.
    setConnectionFlags({ tlsDir: join(dir, 'first', 'tls', 'operator') });
    const c = operatorClient(listen);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 5_000);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-demo-'));
    listen = `127.0.0.1:${await freePort()}`;
    first = demo({ WEIR_LISTEN: listen, WEIR_DEMO_STATE: join(dir, 'first') });
    await ready(first);
  });

  after(async () => {
    await stopDemo(first);
    await rm(dir, { recursive: true, force: true });
  });

  test('the demo starts a controller and three agents, waits until they are in sync, and says how to use weirctl', async () => {
    const out = first!.out;
    assert.match(out, new RegExp(`export WEIR_CONTROLLER=${listen.replace(/[.]/g, '\\.')}`));
    for (const node of ['node-a', 'node-b', 'node-c'])
      assert.match(out, new RegExp(`${node}\\s+yes\\s+\\d+\\s+\\d+\\s+yes\\s+0`));
    const s = await status();
    assert.match(out, new RegExp(`the controller \\(pid ${s.pid}\\)`), 'it names its controller');
    assert.equal(s.insecure, false, 'mutual TLS by default');
    assert.match(out, /export WEIR_CERT=.*operator\/tls\.crt/);
  });

  test('the demo serves the web console on loopback and prints its URL', async () => {
    const url = /Console: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(first!.out)?.[1];
    assert.ok(url !== undefined, first!.out);
    const res = await fetch(`${url}api/cluster`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { agents: Array<{ node: string; inSync: boolean }> };
    assert.deepEqual(
      body.agents.map((a) => [a.node, a.inSync]),
      [
        ['node-a', true],
        ['node-b', true],
        ['node-c', true],
      ],
    );
    assert.equal((await fetch(url)).headers.get('content-type'), 'text/html; charset=utf-8');
  });

  test('a second demo on the same address or the same state directory refuses, exits non-zero, and leaves the first undisturbed', async () => {
    const before = await status();
    const sameAddress = await failing({
      WEIR_LISTEN: listen,
      WEIR_DEMO_STATE: join(dir, 'second'),
    });
    assert.equal(sameAddress.code, 1, sameAddress.err);
    assert.match(sameAddress.err, new RegExp(`${listen.replace(/[.]/g, '\\.')} is in use`));
    const sameState = await failing({
      WEIR_LISTEN: `127.0.0.1:${await freePort()}`,
      WEIR_DEMO_STATE: join(dir, 'first'),
    });
    assert.equal(sameState.code, 1, sameState.err);
    assert.match(sameState.err, /is in use by weir demo .*pid \d+/);

    // The first demo's controller still answers, with the same agent processes, all in sync.
    const after = await status();
    assert.equal(after.pid, before.pid);
    const agents = (s: StatusReply__Output) =>
      s.agents.map((a) => [a.node, a.instance, a.connected, a.inSync]);
    assert.deepEqual(agents(after), agents(before));
    assert.ok(after.agents.every((a) => a.connected && a.inSync));
    assert.equal(first!.child.exitCode, null, 'the first demo still runs');
  });

  test('a demo whose controller fails stops everything it started and exits non-zero, naming the part', async () => {
    const state = join(dir, 'broken');
    const r = await failing({
      WEIR_LISTEN: `127.0.0.1:${await freePort()}`,
      WEIR_DEMO_STATE: state,
      WEIR_DEMO_MANIFESTS: join(dir, 'no-such-directory'),
    });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /controller exited \(status 2\)/);
    assert.match(r.err, /manifest directory .*no-such-directory does not exist/);
    assert.deepEqual(await locks(state), [], 'no part of it is left running');
  });

  test('a demo that is not ready in time stops everything it started and exits non-zero', async () => {
    const state = join(dir, 'slow');
    const r = await failing({
      WEIR_LISTEN: `127.0.0.1:${await freePort()}`,
      WEIR_DEMO_STATE: state,
      WEIR_DEMO_TIMEOUT_MS: '1',
    });
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /within 0\.001 s/);
    assert.deepEqual(await locks(state), [], 'no part of it is left running');
  });
});

describe('the demo over NATS', () => {
  test('npm start -- --transport nats starts a nats-server that takes only TLS with client certificates, converges over it, and stops everything it started', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-demo-nats-'));
    const listen = `127.0.0.1:${await freePort()}`;
    const state = join(dir, 'demo');
    const d = demo({ WEIR_LISTEN: listen, WEIR_DEMO_STATE: state }, ['--transport', 'nats']);
    try {
      await ready(d);
      const url = /over NATS JetStream at (nats:\/\/127\.0\.0\.1:\d+)/.exec(d.out)?.[1];
      assert.ok(url, d.out);
      // The hint needs no --insecure: weirctl's operator certificate is a flow reader's.
      assert.match(d.out, /weirctl flows --follow --source nats --nats \S+ --since/);
      // Mutual TLS over NATS too: a client without TLS, or without a certificate, is refused.
      // (A client that does not trust the demo's CA cannot even verify the server.)
      await assert.rejects(natsConnect({ servers: url, reconnect: false }), /TLS|certificate/i);
      await assert.rejects(
        natsConnect({
          servers: url,
          tls: { caFile: join(state, 'tls', 'ca', 'ca.crt') },
          reconnect: false,
        }),
        /certificate|handshake|alert|ECONNRESET/i,
      );
      for (const part of ['controller', 'node-a', 'node-b', 'node-c']) {
        const log = await readFile(join(state, `${part}.log`), 'utf8');
        assert.doesNotMatch(log, /INSECURE/, `${part} runs with TLS on gRPC and NATS`);
      }
      for (const node of ['node-a', 'node-b', 'node-c'])
        assert.match(d.out, new RegExp(`${node}\\s+yes\\s+\\d+\\s+\\d+\\s+yes\\s+0`));
      await stopDemo(d);
      assert.deepEqual(await locks(join(dir, 'demo')), [], 'nothing left running or locked');
    } finally {
      await stopDemo(d);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
