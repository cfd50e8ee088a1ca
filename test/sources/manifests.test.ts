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

  test('defect 5: an object defined twice is a conflict: the first definition in path order is used, the other reported', async () => {
    const f = await write(
      'twice/a.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {v: "1"}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {v: "2"}}\n`,
    );
    const g = await write(
      'twice/sub/b.yaml',
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {v: "3"}}\n`,
    );
    const r = await readManifests([join(dir, 'twice')]);
    assert.equal(r.objects.length, 1);
    assert.equal(r.objects[0]!.kind === 'Namespace' && r.objects[0]!.labels.v, '1');
    assert.deepEqual(
      r.issues.map((i) => [i.source, i.object, i.message]),
      [
        [
          `${f}:5`,
          'Namespace x',
          `defined again (first at ${f}:1, which is the one used): this definition is ignored`,
        ],
        [
          `${g}:1`,
          'Namespace x',
          `defined again (first at ${f}:1, which is the one used): this definition is ignored`,
        ],
      ],
    );
  });
});

describe('defect 4: strict reading, as kubectl apply --validate=strict', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-strict-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  let n = 0;
  const read = async (text: string) => {
    const f = join(dir, `m${n++}.yaml`);
    await writeFile(f, text);
    const r = await readManifests([f]);
    return {
      f,
      r,
      found: r.issues.map((i) => [i.source?.slice(f.length + 1), i.object, i.field, i.message]),
    };
  };

  test('an unknown field rejects the object and names the path, in every kind Weir reads', async () => {
    const table: Array<[string, string, string, string]> = [
      [
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingres:\n  - {}\n',
        'NetworkPolicy a/p',
        '6 spec.ingres',
        'unknown field; did you mean "ingress"?',
      ],
      [
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - form: [{podSelector: {}}]\n',
        'NetworkPolicy a/p',
        '7 spec.ingress[0].form',
        'unknown field; did you mean "from"?',
      ],
      [
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabel: {app: x}}\n',
        'NetworkPolicy a/p',
        '5 spec.podSelector.matchLabel',
        'unknown field; did you mean "matchLabels"?',
      ],
      [
        'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  lables: {team: x}\n',
        'Namespace a',
        '5 metadata.lables',
        'unknown field; did you mean "labels"?',
      ],
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    prots: [{containerPort: 80, name: http}]\n',
        'Pod a/p',
        '7 spec.containers[0].prots',
        'unknown field; did you mean "ports"?',
      ],
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus:\n  podIPs: [{ip: 10.0.0.1, adress: x}]\n',
        'Pod a/p',
        '5 status.podIPs[0].adress',
        'unknown field',
      ],
      [
        'apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus:\n  adresses: [{type: InternalIP, address: 10.0.0.1}]\n',
        'Node n',
        '5 status.adresses',
        'unknown field; did you mean "addresses"?',
      ],
    ];
    for (const [text, object, where, message] of table) {
      const { r, found } = await read(text);
      if (object.startsWith('Node')) {
        // Weir does not read Nodes yet (its reader ignores them), but reads them strictly once it does.
        if (!found.length) continue;
      }
      const [line, field] = where.split(' ');
      assert.deepEqual(found, [[line, object, field, message]], text);
      assert.deepEqual(r.objects, [], 'the object is left out');
    }
  });

  test('fields Kubernetes has and Weir ignores are accepted', async () => {
    const { found, r } = await read(
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: a\n  annotations: {x: y}\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: r, uid: u}]\nspec:\n  containers:\n  - name: c\n    image: nginx\n    resources: {limits: {cpu: "1"}}\n    livenessProbe: {httpGet: {port: 80}}\n  tolerations: [{key: k, operator: Exists}]\nstatus:\n  phase: Running\n  conditions: [{type: Ready, status: "True"}]\n  podIP: 10.0.0.1\n',
    );
    assert.deepEqual(found, []);
    assert.equal(r.objects.length, 1);
  });

  test('a duplicate field rejects the object, naming the path and both lines', async () => {
    const { found } = await read(
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: a\n  labels: {app: x, app: y}\nspec:\n  podSelector: {}\n  ingress: []\n  ingress:\n  - {}\n',
    );
    assert.deepEqual(found, [
      ['6', 'NetworkPolicy a/p', 'metadata.labels.app', 'duplicate field (first at line 6)'],
      ['10', 'NetworkPolicy a/p', 'spec.ingress', 'duplicate field (first at line 9)'],
    ]);
  });

  test('a duplicate name leaves the object unidentified: a problem of the file', async () => {
    const { found, r } = await read(
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n',
    );
    assert.deepEqual(found, [
      [
        '5',
        undefined,
        'metadata.name',
        'duplicate field (first at line 4): which object this is cannot be told',
      ],
    ]);
    assert.deepEqual(r.objects, []);
  });

  test('a misspelt kind, or an apiVersion Kubernetes does not serve the kind at, is an error on that object', async () => {
    const policy = (head: string) =>
      `${head}\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}}\n`;
    assert.deepEqual(
      (await read(policy('apiVersion: networking.k8s.io/v1\nkind: Networkpolicy'))).found,
      [
        [
          '2',
          'NetworkPolicy a/p',
          'kind',
          '"Networkpolicy" is not a Kubernetes kind; did you mean NetworkPolicy?',
        ],
      ],
    );
    assert.deepEqual(
      (await read(policy('apiVersion: extensions/v1beta1\nkind: NetworkPolicy'))).found,
      [
        [
          '1',
          'NetworkPolicy a/p',
          'apiVersion',
          '"extensions/v1beta1": Kubernetes serves NetworkPolicy only as networking.k8s.io/v1',
        ],
      ],
    );
    const calico = await read(policy('apiVersion: projectcalico.org/v3\nkind: NetworkPolicy'));
    assert.deepEqual(calico.found, []);
    assert.match(
      calico.r.notes[0]!,
      /ignored: NetworkPolicy of projectcalico\.org\/v3 is not the one Weir reads \(networking\.k8s\.io\/v1\)/,
    );
  });

  test('a List is read strictly too: a misspelt items is an error, not an empty list', async () => {
    const { found } = await read(
      'apiVersion: v1\nkind: List\nitmes:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n',
    );
    assert.deepEqual(found, [
      ['1', 'List', 'items', 'required: a list of objects'],
      ['3', 'List', 'itmes', 'unknown field'],
    ]);
  });

  test('a YAML alias bomb is an error of its document, and the rest of the directory loads', async () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++) {
      const p = String.fromCharCode(96 + i);
      const q = String.fromCharCode(97 + i);
      levels.push(`${q}: &${q} [${Array(10).fill(`*${p}`).join(', ')}]`);
    }
    const d = join(dir, 'bomb');
    await mkdir(d);
    await writeFile(join(d, 'a.yaml'), `${levels.join('\n')}\nkind: Namespace\n`);
    await writeFile(join(d, 'b.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n');
    const r = await readManifests([d]);
    assert.deepEqual(
      r.objects.map((o) => o.name),
      ['ok'],
    );
    assert.equal(r.issues.length, 1);
    assert.match(r.issues[0]!.message, /^cannot read the document: .*alias/i);
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
