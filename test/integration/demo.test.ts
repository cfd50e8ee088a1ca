/**
 * `npm start` as a newcomer runs it: the demo comes up, converges, and
 * tells the user where to point weirctl.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, freePort } from '../support/processes.js';

test('the demo starts a controller and three agents, waits until they are in sync, and says how to use weirctl', async () => {
  const state = await mkdtemp(join(tmpdir(), 'weir-demo-'));
  const listen = `127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath, [join(ROOT, 'scripts', 'demo.mjs')], {
    env: { ...process.env, WEIR_LISTEN: listen, WEIR_DEMO_STATE: state },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "ready" within 60 s:\n${out}`)), 60_000);
      child.stdout.on('data', () => {
        if (!out.includes('\nready\n')) return;
        clearTimeout(t);
        resolve();
      });
      child.on('exit', (code) => reject(new Error(`demo exited ${code}:\n${out}`)));
    });
    assert.match(out, new RegExp(`export WEIR_CONTROLLER=${listen.replace(/[.]/g, '\\.')}`));
    for (const node of ['node-a', 'node-b', 'node-c'])
      assert.match(out, new RegExp(`${node}\\s+yes\\s+\\d+\\s+\\d+\\s+yes\\s+0`));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(state, { recursive: true, force: true });
  }
});
