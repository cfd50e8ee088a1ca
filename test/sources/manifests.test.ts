import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readManifests } from '../../controller/sources/manifests.js';

describe('manifest files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-manifests-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const write = async (name: string, text: string) => {
    const p = join(dir, name);
    await mkdir(join(p, '..'), { recursive: true });
    await writeFile(p, text);
    return p;
  };

  test('reads multi-document YAML, kind: List, typed lists and JSON, in file order, from nested directories', async () => {
    const root = join(dir, 'tree');
    await write(
      'tree/a.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: one}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: one}\n---\n`,
    );
    await write(
      'tree/sub/b.yml',
      `apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: two}}\n`,
    );
    await write(
      'tree/sub/c.json',
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'PodList',
        items: [{ metadata: { name: 'q', namespace: 'two' } }],
      }),
    );
    await write('tree/ignored.txt', 'not a manifest');
    const r = await readManifests([root]);
    assert.deepEqual(r.issues, []);
    assert.deepEqual(
      r.objects.map((o) => `${o.kind} ${o.name}`),
      ['Namespace one', 'Pod p', 'Namespace two', 'Pod q'],
    );
  });

  test('namespaces get the kubernetes.io/metadata.name label as the API server adds it, whatever was written', async () => {
    const f = await write(
      'ns.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a, kubernetes.io/metadata.name: other}\n`,
    );
    const r = await readManifests([f]);
    const ns = r.objects[0]!;
    assert.equal(ns.kind, 'Namespace');
    assert.deepEqual(ns.kind === 'Namespace' && ns.labels, {
      team: 'a',
      'kubernetes.io/metadata.name': 'shop',
    });
  });

  test('malformed YAML is reported with its file and line, and the other documents still load', async () => {
    const f = await write(
      'broken.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n`,
    );
    const r = await readManifests([f]);
    assert.deepEqual(
      r.objects.map((o) => o.name),
      ['ok'],
    );
    assert.equal(r.issues.length >= 1, true);
    assert.match(r.issues[0]!.source!, /broken\.yaml:\d+/);
    assert.match(r.issues[0]!.message, /malformed YAML/);
  });

  test('an invalid object names its file, the line of the field, the object and the field; the next object in the file loads', async () => {
    const f = await write(
      'bad-policy.yaml',
      `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n`,
    );
    const r = await readManifests([f]);
    assert.deepEqual(
      r.objects.map((o) => o.name),
      ['shop'],
    );
    assert.deepEqual(r.issues, [
      {
        source: `${f}:7`,
        object: 'NetworkPolicy shop/web',
        field: 'spec.ingress[0].ports[0].port',
        message: '70000 is not between 1 and 65535',
      },
    ]);
  });

  test('other kinds are ignored with a note, and a missing path is an issue', async () => {
    const f = await write('svc.yaml', `apiVersion: v1\nkind: Service\nmetadata: {name: s}\n`);
    const r = await readManifests([f, join(dir, 'nope.yaml')]);
    assert.deepEqual(r.objects, []);
    assert.match(r.notes[0]!, /svc\.yaml:1: ignored: Service is not a kind Weir reads/);
    assert.match(r.issues[0]!.message, /cannot read: ENOENT/);
  });

  test('an object defined twice is noted and the later definition wins', async () => {
    const f = await write(
      'twice.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {v: "1"}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {v: "2"}}\n`,
    );
    const r = await readManifests([f]);
    assert.equal(r.objects.length, 1);
    assert.equal(r.objects[0]!.kind === 'Namespace' && r.objects[0]!.labels.v, '2');
    assert.match(r.notes[0]!, /defined again/);
  });
});

test("problems inside a List point at the line of the item's field", async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const d = await mkdtemp(join(tmpdir(), 'weir-list-'));
  try {
    const f = join(d, 'list.yaml');
    await writeFile(
      f,
      'apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n    labels: {"bad key": x}\n',
    );
    const r = await readManifests([f]);
    assert.equal(r.issues.length, 1);
    assert.equal(r.issues[0]!.source, `${f}:11`);
    assert.equal(r.issues[0]!.field, 'metadata.labels["bad key"]');
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});
