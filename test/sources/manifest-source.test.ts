/**
 * The watched manifest source on real files in temporary directories: what
 * stays in force through bad edits (issue 7, defect 3), conflicts (defect 5),
 * and what the watcher sees (defect 6). The periodic rescan is set to an hour
 * unless a test is about it, so every change here is seen through the
 * watcher alone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rename, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { type KubeObject, namespaceOf } from '../../controller/kube/objects.js';
import { objectKey } from '../../controller/sources/manifests.js';
import {
  ManifestSource,
  type ManifestSourceOptions,
} from '../../controller/sources/manifest-source.js';
import type { SourceEvent, SourceProblem } from '../../controller/sources/source.js';

const HOUR = 3_600_000;

const ns = (name: string, labels: Record<string, string> = {}) =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels: ${JSON.stringify(labels)}\n`;

const policy = (name: string, port: number, endPort?: number) =>
  `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ${name}\n  namespace: shop\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: ${port}\n${endPort !== undefined ? `      endPort: ${endPort}\n` : ''}`;

const docs = (...d: string[]) => d.join('---\n');

interface Run {
  readonly dir: string;
  readonly source: ManifestSource;
  /** What is in force, by object key. */
  readonly objects: Map<string, KubeObject>;
  readonly events: SourceEvent[];
  readonly logs: Array<Record<string, unknown>>;
  write(name: string, text: string): Promise<string>;
  /** Writes a temporary file beside it and renames it over the file, as editors and kubectl-style tools do. */
  replace(name: string, text: string): Promise<void>;
  problems(): readonly SourceProblem[];
  problem(object: string): readonly string[] | undefined;
  deletes(key: string): number;
}

let dirs: string[] = [];
let sources: ManifestSource[] = [];

beforeEach(() => {
  dirs = [];
  sources = [];
});
afterEach(async () => {
  for (const s of sources) await s[Symbol.asyncDispose]();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-source-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

async function run(
  files: Record<string, string>,
  options: Partial<ManifestSourceOptions> = {},
  setup?: (dir: string) => Promise<void>,
  /** An existing directory to watch instead of a new one with `files`. */
  at?: string,
): Promise<Run> {
  const dir = at ?? (await tree(files));
  await setup?.(dir);
  const logs: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const source = new ManifestSource(dir, { log, rescanIntervalMs: HOUR, ...options });
  sources.push(source);
  const objects = new Map<string, KubeObject>();
  const events: SourceEvent[] = [];
  await source.start((e) => {
    events.push(e);
    if (e.type === 'upsert') objects.set(objectKey(keyOf(e.object)), e.object);
    else if (e.type === 'delete') objects.delete(objectKey(e));
  });
  const r: Run = {
    dir,
    source,
    objects,
    events,
    logs,
    async write(name, text) {
      const p = join(dir, name);
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, text);
      return p;
    },
    async replace(name, text) {
      const p = join(dir, name);
      const tmp = join(dirname(p), `.${name.split('/').pop()}.tmp`);
      await writeFile(tmp, text);
      await rename(tmp, p);
    },
    problems: () => source.state().problems ?? [],
    problem: (object) => r.problems().find((p) => p.object === object)?.problems,
    deletes: (key) => events.filter((e) => e.type === 'delete' && objectKey(e) === key).length,
  };
  return r;
}

function keyOf(o: KubeObject) {
  return { kind: o.kind, namespace: namespaceOf(o), name: o.name };
}

/** Polls until `check` returns something other than undefined (or throws after 10 s). */
async function eventually<T>(check: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const labelsOf = (r: Run, key: string) => {
  const o = r.objects.get(key);
  return o?.kind === 'Namespace' ? o.labels.v : undefined;
};

const portsOf = (r: Run, key: string) => {
  const o = r.objects.get(key);
  return o?.kind === 'NetworkPolicy' ? o.ingress[0]?.ports[0]?.port : undefined;
};

/** Waits for a change the watcher reports to be processed: one more pass with reads in the log. */
async function settled(r: Run, file: string): Promise<void> {
  const seen = r.logs.length;
  await eventually(
    () => r.logs.slice(seen).some((l) => l.msg === 'manifest file read' && l.file === file),
    `${file} to be read`,
  );
}

describe('defect 3: a bad edit never withdraws what is in force', () => {
  test('a file saved with a YAML syntax error keeps every object it held at its last valid version, and status names the file and line', async () => {
    const r = await run({ 'a.yaml': docs(ns('shop', { v: '1' }), policy('web', 80)) });
    assert.deepEqual([...r.objects.keys()].sort(), ['Namespace shop', 'NetworkPolicy shop/web']);
    await r.write('a.yaml', docs(ns('shop', { v: '2' }), `${policy('web', 80)}  bad: [oops\n`));
    const p = await eventually(() => r.problem('file a.yaml'), 'the file problem');
    assert.match(p[0]!, /^a\.yaml:\d+:\d+: malformed YAML/);
    assert.ok(p.some((l) => /stay at their last valid versions: NetworkPolicy shop\/web/.test(l)));
    assert.equal(r.deletes('NetworkPolicy shop/web'), 0);
    assert.ok(r.objects.has('NetworkPolicy shop/web'));
    // The namespace's document was fine: its new version is in force.
    assert.equal(labelsOf(r, 'Namespace shop'), '2');
  });

  test('an invalid edit of a valid policy (endPort below port) keeps the last valid version and reports file, line, object and field', async () => {
    const r = await run({ 'p.yaml': policy('web', 80) });
    await r.write('p.yaml', policy('web', 90, 85));
    const p = await eventually(() => r.problem('NetworkPolicy shop/web'), 'the rejection');
    assert.deepEqual(p, [
      'p.yaml:11: spec.ingress[0].ports[0].endPort: 85 must be greater than or equal to port 90',
      'rejected: its last valid version stays in force',
    ]);
    assert.equal(r.deletes('NetworkPolicy shop/web'), 0);
    assert.deepEqual(portsOf(r, 'NetworkPolicy shop/web'), { kind: 'range', start: 80, end: 80 });
    await r.write('p.yaml', policy('web', 90, 95));
    await eventually(() => r.problem('NetworkPolicy shop/web') === undefined, 'the fix');
    assert.deepEqual(portsOf(r, 'NetworkPolicy shop/web'), { kind: 'range', start: 90, end: 95 });
  });

  test('an object never valid is reported as not in force', async () => {
    const r = await run({ 'p.yaml': policy('web', 90, 85) });
    assert.equal(r.objects.size, 0);
    assert.equal(
      r.problem('NetworkPolicy shop/web')?.at(-1),
      'rejected: not in force (no valid version of it has been read)',
    );
  });

  test('a half-written file (empty, then cut off mid-document) withdraws nothing', async () => {
    const full = docs(ns('shop', { v: '1' }), policy('web', 80));
    const r = await run({ 'a.yaml': full });
    await truncate(join(r.dir, 'a.yaml'), 0);
    await settled(r, 'a.yaml');
    assert.match(
      r.problem('file a.yaml')?.[0] ?? '',
      /is empty: the 2 object\(s\) it held stay in force/,
    );
    const cut = full.replace('  name: web\n', '  name: web\n  labels: {app: "we');
    await r.write('a.yaml', cut.slice(0, cut.indexOf('"we') + 3));
    await eventually(
      () => /malformed YAML/.test(r.problem('file a.yaml')?.[0] ?? ''),
      'the cut file',
    );
    assert.equal(r.deletes('NetworkPolicy shop/web') + r.deletes('Namespace shop'), 0);
    assert.equal(r.objects.size, 2);
    await r.write('a.yaml', full);
    await eventually(() => r.problems().length === 0, 'the whole file');
    assert.equal(r.objects.size, 2);
  });

  test('an object whose name cannot be read keeps the objects that vanished from its file in force', async () => {
    const r = await run({ 'a.yaml': docs(policy('web', 80), policy('db', 5432)) });
    await r.write('a.yaml', docs(policy('web', 81), policy('Bad_Name', 5432)));
    const p = await eventually(() => r.problem('file a.yaml'), 'the document problem');
    assert.match(p[0]!, /^a\.yaml:\d+: metadata\.name: "Bad_Name" is not a valid name/);
    assert.ok(r.objects.has('NetworkPolicy shop/db'), 'db may be the document that cannot be read');
    assert.deepEqual(portsOf(r, 'NetworkPolicy shop/web'), { kind: 'range', start: 81, end: 81 });
    // Once the file parses, what it no longer defines is deleted.
    await r.write('a.yaml', policy('web', 81));
    await eventually(() => !r.objects.has('NetworkPolicy shop/db'), 'db deleted');
    assert.equal(r.problems().length, 0);
  });

  test('an object removed from a file that parses is deleted, and so are the objects of a deleted file', async () => {
    const r = await run({
      'a.yaml': docs(policy('web', 80), policy('db', 5432)),
      'b.yaml': ns('shop'),
    });
    await r.write('a.yaml', policy('web', 80));
    await eventually(() => !r.objects.has('NetworkPolicy shop/db'), 'db deleted');
    await rm(join(r.dir, 'b.yaml'));
    await eventually(() => !r.objects.has('Namespace shop'), 'the namespace deleted');
    assert.ok(r.objects.has('NetworkPolicy shop/web'));
  });

  test('an object moved between files stays in force whichever file is saved first', async () => {
    for (const bFirst of [true, false]) {
      const r = await run({ 'a.yaml': docs(ns('shop'), policy('web', 80)), 'b.yaml': ns('other') });
      const moved = docs(ns('other'), policy('web', 80));
      if (bFirst) {
        await r.write('b.yaml', moved);
        const p = await eventually(() => r.problem('NetworkPolicy shop/web'), 'the conflict');
        assert.match(
          p[0]!,
          /^defined more than once: a\.yaml:\d+ is used \(the first in path order\); ignored: b\.yaml:\d+$/,
        );
        await r.write('a.yaml', ns('shop'));
      } else {
        await r.write('a.yaml', ns('shop'));
        await eventually(() => !r.objects.has('NetworkPolicy shop/web'), 'web gone for a moment');
        await r.write('b.yaml', moved);
      }
      await eventually(
        () => r.objects.has('NetworkPolicy shop/web') && r.problems().length === 0,
        'web from b',
      );
      assert.equal(r.deletes('NetworkPolicy shop/web'), bFirst ? 0 : 1);
    }
  });

  test('a file deleted while another file cannot be parsed: its objects stay in force until that file parses, then go', async () => {
    const r = await run({ 'a.yaml': policy('web', 80), 'b.yaml': ns('shop') });
    // The policy is being moved into b.yaml, which is saved broken; then a.yaml is deleted.
    await r.write('b.yaml', `${ns('shop')}---\n${policy('web', 80)}  bad: [\n`);
    await eventually(() => r.problem('file b.yaml'), 'b broken');
    await rm(join(r.dir, 'a.yaml'));
    const p = await eventually(() => r.problem('NetworkPolicy shop/web'), 'the deferred deletion');
    assert.deepEqual(p, [
      'deleted from the manifests, but stays in force while b.yaml cannot be read (it may have moved there)',
    ]);
    assert.ok(r.objects.has('NetworkPolicy shop/web'));
    // b.yaml parses without it: now it is deleted.
    await r.write('b.yaml', ns('shop'));
    await eventually(() => !r.objects.has('NetworkPolicy shop/web'), 'web deleted');
    assert.equal(r.problems().length, 0);
  });

  test('a file deleted while an unrelated file cannot be parsed: its objects are deleted at once', async () => {
    const r = await run({ 'a.yaml': policy('web', 80), 'b.yaml': ns('shop') });
    // b.yaml is saved broken and does not name the policy: it cannot hold it.
    await r.write('b.yaml', `${ns('shop')}  bad: [\n`);
    await eventually(() => r.problem('file b.yaml'), 'b broken');
    await rm(join(r.dir, 'a.yaml'));
    await eventually(() => !r.objects.has('NetworkPolicy shop/web'), 'web deleted');
    assert.equal(r.problem('NetworkPolicy shop/web'), undefined, 'no deferred deletion reported');
  });

  test('a rejection is logged once per change, not on every rescan', async () => {
    const r = await run(
      { 'p.yaml': policy('web', 90, 85), 'q.yaml': ns('shop') },
      { rescanIntervalMs: 20 },
    );
    const rescans = () => r.logs.filter((l) => l.msg === 'manifests rescanned').length;
    const start = rescans();
    await eventually(() => rescans() >= start + 5, 'five rescans');
    const warned = () =>
      r.logs.filter((l) => l.msg === 'manifest problem' && l.object === 'NetworkPolicy shop/web');
    assert.equal(warned().length, 1);
    // No file was read again: nothing changed.
    assert.equal(r.logs.filter((l) => l.msg === 'manifest file read').length, 2);
    await r.write('p.yaml', policy('web', 90, 86));
    await eventually(() => warned().length === 2, 'the changed rejection logged');
    await r.write('p.yaml', policy('web', 90));
    await eventually(() => r.logs.some((l) => l.msg === 'manifest problem resolved'), 'resolved');
  });
});

describe('defect 4: unknown and duplicate fields reject the object', () => {
  test('a misspelt field keeps the last valid version in force and names the path', async () => {
    const r = await run({ 'p.yaml': policy('web', 80) });
    await r.write('p.yaml', policy('web', 80).replace('  ingress:', '  ingres:'));
    const p = await eventually(() => r.problem('NetworkPolicy shop/web'), 'the rejection');
    assert.deepEqual(p, [
      'p.yaml:8: spec.ingres: unknown field; did you mean "ingress"?',
      'rejected: its last valid version stays in force',
    ]);
    assert.ok(r.objects.get('NetworkPolicy shop/web')?.kind === 'NetworkPolicy');
    assert.equal(r.deletes('NetworkPolicy shop/web'), 0);
  });
});

describe('defect 5: the same object in two files', () => {
  test('the definition first in path order is used and the other is reported, whatever the order of writes', async () => {
    const r = await run({ 'b.yaml': ns('shop', { v: 'b' }) });
    await r.write('sub/a.yaml', ns('shop', { v: 'sub/a' }));
    await r.write('a.yaml', ns('shop', { v: 'a' }));
    const p = await eventually(
      () =>
        r.problem('Namespace shop')?.[0]?.includes('sub/a.yaml')
          ? r.problem('Namespace shop')
          : undefined,
      'both conflicts',
    );
    assert.deepEqual(p, [
      'defined more than once: a.yaml:1 is used (the first in path order); ignored: b.yaml:1, sub/a.yaml:1',
    ]);
    assert.equal(labelsOf(r, 'Namespace shop'), 'a');
  });
});

describe('defect 6: the watcher sees every change, and reads only what changed', () => {
  test('creates, writes, rename-replaces and deletes are seen, in subdirectories too, with no rescan', async () => {
    const r = await run({ 'top.yaml': ns('top') });
    await r.write('sub/deeper/a.yaml', ns('a', { v: '0' }));
    await eventually(() => labelsOf(r, 'Namespace a') === '0', 'the new file');
    for (let i = 1; i <= 5; i++) {
      await r.replace('sub/deeper/a.yaml', ns('a', { v: String(i) }));
      await eventually(() => labelsOf(r, 'Namespace a') === String(i), `rename-replace ${i}`);
    }
    await r.write('sub/deeper/a.yaml', ns('a', { v: 'w' }));
    await eventually(() => labelsOf(r, 'Namespace a') === 'w', 'a write after the renames');
    for (let i = 1; i <= 3; i++) {
      await r.replace('top.yaml', ns('top', { v: String(i) }));
      await eventually(() => labelsOf(r, 'Namespace top') === String(i), `top rename-replace ${i}`);
    }
    await rename(join(r.dir, 'sub'), join(r.dir, 'moved'));
    await r.write('moved/deeper/a.yaml', ns('a', { v: 'm' }));
    await eventually(() => labelsOf(r, 'Namespace a') === 'm', 'a write in a renamed directory');
    await rm(join(r.dir, 'moved/deeper/a.yaml'));
    await eventually(() => !r.objects.has('Namespace a'), 'the delete');
    await r.write('moved/b.yaml', ns('b'));
    await eventually(() => r.objects.has('Namespace b'), 'b');
    await rm(join(r.dir, 'moved'), { recursive: true });
    await eventually(() => !r.objects.has('Namespace b'), 'a deleted directory');
    assert.ok(r.objects.has('Namespace top'));
  });

  test('only the changed file is read, and a rewrite with the same content changes nothing', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 50; i++) files[`ns-${i}.yaml`] = ns(`n${i}`);
    const r = await run(files);
    const reads = () => r.logs.filter((l) => l.msg === 'manifest file read');
    assert.equal(reads().length, 50);
    await r.write('ns-7.yaml', ns('n7', { v: '1' }));
    await eventually(() => labelsOf(r, 'Namespace n7') === '1', 'the edit');
    assert.deepEqual(
      reads()
        .slice(50)
        .map((l) => l.file),
      ['ns-7.yaml'],
    );
    const events = r.events.length;
    await r.write('ns-7.yaml', ns('n7', { v: '1' }));
    await utimes(join(r.dir, 'ns-8.yaml'), new Date(), new Date(Date.now() + 5_000));
    await eventually(() => reads().length === 53, 'both read');
    assert.deepEqual(
      reads()
        .slice(51)
        .map((l) => l.changed),
      [false, false],
    );
    assert.equal(r.events.length, events, 'no event for unchanged content');
  });

  test('a FIFO named *.yaml is skipped with a note and stops neither the source nor its shutdown', async () => {
    const r = await run({ 'a.yaml': ns('a') }, {}, async (dir) => {
      execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
    });
    assert.ok(r.objects.has('Namespace a'));
    assert.ok(r.logs.some((l) => l.msg === 'manifest path skipped' && l.file === 'pipe.yaml'));
    execFileSync('mkfifo', [join(r.dir, 'later.yaml')]);
    await eventually(
      () => r.logs.some((l) => l.msg === 'manifest path skipped' && l.file === 'later.yaml'),
      'the second FIFO noted',
    );
    await r.write('b.yaml', ns('b'));
    await eventually(() => r.objects.has('Namespace b'), 'later edits');
    await r.source[Symbol.asyncDispose]();
  });

  test('a YAML alias bomb is a problem of its file, in status, and the other files load', async () => {
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      ...Array.from({ length: 8 }, (_, i) => {
        const [p, n] = [String.fromCharCode(97 + i), String.fromCharCode(98 + i)];
        return `${n}: &${n} [*${p},*${p},*${p},*${p},*${p},*${p},*${p},*${p},*${p}]`;
      }),
      'kind: Namespace',
      'apiVersion: v1',
      'metadata: {name: boom}',
    ].join('\n');
    const r = await run({ 'bomb.yaml': bomb, 'ok.yaml': ns('ok') });
    assert.ok(r.objects.has('Namespace ok'));
    const p = r.problem('file bomb.yaml');
    assert.match(p?.[0] ?? '', /^bomb\.yaml:1: cannot read the document: .*alias/i);
  });

  test('a file larger than the limit is not read, and is reported', async () => {
    const r = await run(
      { 'big.yaml': `${ns('big')}# ${'x'.repeat(2000)}\n`, 'ok.yaml': ns('ok') },
      { maxFileBytes: 1000 },
    );
    assert.deepEqual([...r.objects.keys()], ['Namespace ok']);
    assert.match(
      r.problem('file big.yaml')?.[0] ?? '',
      /^big\.yaml: too large to read: \d+ bytes \(at most 1000\)/,
    );
  });

  test('hidden files and directories are not read, and a symlinked file follows its target', async () => {
    const r = await run(
      {
        '.hidden.yaml': ns('hidden'),
        '.git/x.yaml': ns('git'),
        'target/t.yaml.txt': ns('linked', { v: '1' }),
      },
      {},
      async (dir) => {
        execFileSync('ln', ['-s', join(dir, 'target/t.yaml.txt'), join(dir, 'link.yaml')]);
      },
    );
    assert.deepEqual([...r.objects.keys()], ['Namespace linked']);
    await r.write('target/t.yaml.txt', ns('linked', { v: '2' }));
    await eventually(() => labelsOf(r, 'Namespace linked') === '2', 'the target edited');
  });
});

describe('defect 3 across restarts: what was in force is kept in the state directory', () => {
  const restart = async (
    files: Record<string, string>,
    whileDown: (dir: string) => Promise<void>,
  ): Promise<Run> => {
    const state = await tree({});
    const first = await run(files, { stateDir: state });
    await first.source[Symbol.asyncDispose]();
    await whileDown(first.dir);
    return run({}, { stateDir: state }, undefined, first.dir);
  };

  test('a file broken while the controller was down keeps every object it held', async () => {
    const r = await restart(
      { 'a.yaml': docs(ns('shop'), policy('web', 80)), 'b.yaml': ns('other') },
      (dir) => writeFile(join(dir, 'a.yaml'), `${policy('web', 80)}  bad: [\n`),
    );
    assert.deepEqual([...r.objects.keys()].sort(), [
      'Namespace other',
      'Namespace shop',
      'NetworkPolicy shop/web',
    ]);
    assert.match(r.problem('file a.yaml')?.[0] ?? '', /malformed YAML/);
    // Fixed without the policy: now it goes.
    await r.write('a.yaml', ns('shop'));
    await eventually(() => !r.objects.has('NetworkPolicy shop/web'), 'web deleted');
  });

  test('an object made invalid while the controller was down keeps its last valid version', async () => {
    const r = await restart({ 'p.yaml': policy('web', 80) }, (dir) =>
      writeFile(join(dir, 'p.yaml'), policy('web', 90, 85)),
    );
    assert.deepEqual(portsOf(r, 'NetworkPolicy shop/web'), { kind: 'range', start: 80, end: 80 });
    assert.equal(
      r.problem('NetworkPolicy shop/web')?.at(-1),
      'rejected: its last valid version stays in force',
    );
  });

  test('a file emptied while the controller was down keeps its objects; a file deleted deletes them', async () => {
    const r = await restart({ 'a.yaml': ns('a'), 'b.yaml': ns('b') }, async (dir) => {
      await truncate(join(dir, 'a.yaml'), 0);
      await rm(join(dir, 'b.yaml'));
    });
    assert.deepEqual([...r.objects.keys()], ['Namespace a']);
  });

  test('a corrupt state file is moved aside with a warning, and the files alone are in force', async () => {
    const state = await tree({ 'manifests.state': 'weir-state 1 sha256:00 meta:2 body:2\n{}[]' });
    const r = await run({ 'a.yaml': ns('a') }, { stateDir: state });
    assert.ok(r.objects.has('Namespace a'));
    assert.ok(
      r.logs.some(
        (l) =>
          l.msg === 'the manifests in force before were rejected; starting without them' &&
          /corrupt/.test(String(l.problem)),
      ),
    );
    assert.ok((await readdir(state)).some((f) => f.startsWith('manifests.state.corrupt-')));
  });

  test('a state file of another manifest directory is not used', async () => {
    const state = await tree({});
    const first = await run({ 'a.yaml': docs(ns('shop'), policy('web', 80)) }, { stateDir: state });
    await first.source[Symbol.asyncDispose]();
    // Another directory whose a.yaml is broken: web was never in force there.
    const other = await run({ 'a.yaml': `${policy('web', 80)}  bad: [\n` }, { stateDir: state });
    assert.equal(other.objects.has('NetworkPolicy shop/web'), false);
    assert.ok(
      other.logs.some(
        (l) =>
          l.msg === 'the manifests in force before were rejected; starting without them' &&
          /foreign|manifests/.test(String(l.problem)),
      ),
    );
  });
});
