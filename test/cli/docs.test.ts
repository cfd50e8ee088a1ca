/**
 * docs/cli.md cannot rot: every `$ weirctl ...` example in it is run
 * against a real controller and agent (test/support/live-cluster.ts) and
 * must exit as the page says (0, or the `# exit N` it is marked with);
 * `# skip: REASON` examples are listed as skipped with their reason.
 * Placeholders: TMP (a fresh directory), FLOW_ID (a flow the agent has now).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LiveCluster } from '../support/live-cluster.js';
import { ROOT, eventually } from '../support/processes.js';

interface Example {
  readonly line: string;
  readonly args: string[];
  readonly exit: number;
  readonly skip?: string;
}

/** Shell words: whitespace-separated, '...' and "..." quoted; the comment (" # ...") apart. */
function words(text: string): { args: string[]; comment: string } {
  const args: string[] = [];
  let cur: string | undefined;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else cur = (cur ?? '') + c;
    } else if (c === "'" || c === '"') {
      quote = c;
      cur ??= '';
    } else if (c === '#' && cur === undefined) return { args, comment: text.slice(i) };
    else if (/\s/.test(c)) {
      if (cur !== undefined) args.push(cur);
      cur = undefined;
    } else cur = (cur ?? '') + c;
  }
  if (cur !== undefined) args.push(cur);
  return { args, comment: '' };
}

function examples(doc: string): Example[] {
  return doc
    .split('\n')
    .filter((l) => l.startsWith('$ '))
    .map((l) => {
      const { args, comment } = words(l.slice(2));
      const skip = /skip: ([^#]*)/.exec(comment)?.[1]?.trim();
      const exit = Number(/exit (\d+)\s*$/.exec(comment)?.[1] ?? 0);
      return {
        line: l,
        args: args[0] === 'weirctl' ? args.slice(1) : args,
        exit,
        ...(skip !== undefined ? { skip } : args[0] !== 'weirctl' ? { skip: 'not weirctl' } : {}),
      };
    });
}

describe('docs/cli.md examples', async () => {
  const cluster = new LiveCluster();
  let tmp = '';
  let flowId = '';
  const savedConfig = process.env.WEIR_CONFIG;
  const list = examples(await readFile(join(ROOT, 'docs', 'cli.md'), 'utf8'));

  before(async () => {
    process.chdir(ROOT);
    tmp = await mkdtemp(join(tmpdir(), 'weir-docs-'));
    process.env.WEIR_CONFIG = join(tmp, 'config.yaml');
    await cluster.start();
    flowId = await eventually(async () => {
      const r = await cluster.weirctl(['flows', '--node', 'node-c', '-o', 'jsonpath={[0].id}']);
      return r.code === 0 && /^\d+\n$/.test(r.out) ? r.out.trim() : undefined;
    }, 'a flow on node-c');
  });
  after(async () => {
    await cluster.stop();
    if (savedConfig === undefined) delete process.env.WEIR_CONFIG;
    else process.env.WEIR_CONFIG = savedConfig;
    await rm(tmp, { recursive: true, force: true });
  });

  test('the page has examples for every verb', () => {
    const run = new Set(list.map((e) => e.args.slice(0, 2).join(' ')));
    for (const verb of [
      'status',
      'policy list',
      'policy get',
      'explain --from',
      'flows --node',
      'flows get',
      'flows stats',
      'analyze matrix',
      'analyze probe',
      'analyze objects',
      'version',
      'completion bash',
      'config get-contexts',
      'certs ca',
      'nats config',
      'lab up',
    ])
      assert.ok(
        [...run].some((r) => r === verb || r.startsWith(`${verb} `) || r === verb.split(' ')[0]),
        verb,
      );
  });

  for (const e of list) {
    test(e.line, { skip: e.skip }, async () => {
      const args = e.args.map((a) => a.replace(/TMP/g, tmp).replace(/^FLOW_ID$/, flowId));
      const r = await cluster.weirctl(args);
      assert.equal(r.code, e.exit, `${r.err}${r.out.slice(0, 500)}`);
      if (e.exit === 0) assert.notEqual(r.out, '', 'an example prints something');
      // --exit-code's exit 1 is a verdict, not an error: it prints the verdict.
      else if (args.includes('--exit-code')) assert.match(r.out, /DENIED/);
      else assert.match(r.err, /^error: /m);
    });
  }
});
