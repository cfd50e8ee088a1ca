import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../support/processes.js';

/** weirctl from bin/ with `input` on its standard input. */
function weirctl(
  args: string[],
  input: string,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'weirctl'), ...args]);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c;
    });
    child.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
    child.stdin.end(input);
  });
}

test('-f - reads the manifests from standard input, as a file would be read', async () => {
  const files = ['00-namespaces.yaml', '05-nodes.yaml', '10-pods.yaml', '20-policies.yaml'];
  const text = (
    await Promise.all(files.map((f) => readFile(join(ROOT, 'deploy', 'examples', f), 'utf8')))
  ).join('\n---\n');
  const piped = await weirctl(
    [
      'analyze',
      'probe',
      '-f',
      '-',
      '--from',
      'shop/cart',
      '--to',
      'shop/redis',
      '--port',
      '6379',
      '-o',
      'json',
    ],
    text,
  );
  assert.equal(piped.code, 0, piped.err);
  const fromDir = await weirctl(
    [
      'analyze',
      'probe',
      '-f',
      join(ROOT, 'deploy', 'examples'),
      '--from',
      'shop/cart',
      '--to',
      'shop/redis',
      '--port',
      '6379',
      '-o',
      'json',
    ],
    '',
  );
  assert.deepEqual(JSON.parse(piped.out), JSON.parse(fromDir.out));
});

test('a problem in standard input is named <stdin> with its line', async () => {
  const r = await weirctl(['analyze', 'objects', '-f', '-'], 'kind: [\n');
  assert.equal(r.code, 2);
  assert.match(r.err, /^error: <stdin>/m);
});
