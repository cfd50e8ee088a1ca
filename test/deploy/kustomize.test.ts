/**
 * The small Kustomize renderer the manifest tests use (test/support/
 * kustomize.ts): its pieces as tables, and, where kubectl is installed, the
 * same objects as `kubectl kustomize` for every kustomization in deploy/.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { type Obj, KustomizeError, configMapHash, kustomize } from '../support/kustomize.js';
import { ROOT } from '../support/processes.js';

const TREES = ['base', 'overlays/monitoring', 'overlays/nats', 'overlays/insecure-dev'];

describe('the Kustomize renderer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-kustomize-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tree = async (name: string, files: Record<string, string>) => {
    const root = join(dir, name);
    for (const [f, text] of Object.entries(files)) {
      await mkdir(join(root, f, '..'), { recursive: true });
      await writeFile(join(root, f), text);
    }
    return root;
  };
  const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: { name: d, namespace: ns }
spec:
  template:
    spec:
      containers:
        - name: c
          image: weir
          args: [a, b]
          envFrom: [{ configMapRef: { name: cfg } }]
`;

  // Suffixes as kustomize v5.5.0 computes them (kubectl kustomize on these inputs).
  const hashes: Array<[Record<string, string>, string]> = [
    [{ WEIR_CLUSTER: 'local', WEIR_LOG_LEVEL: 'info' }, '55hgtf76d6'],
    [{ K: 'v' }, '276ch85d82'],
  ];
  for (const [data, hash] of hashes)
    test(`a generated ConfigMap holding ${JSON.stringify(data)} is suffixed ${hash}`, () =>
      assert.equal(configMapHash(data), hash));

  test('generates, patches, sets images and renames the references to a generated ConfigMap', async () => {
    const base = await tree('a/base', {
      'kustomization.yaml': `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [d.yaml]
images: [{ name: weir, newName: r/weir, newTag: "1.2" }]
configMapGenerator: [{ name: cfg, namespace: ns, literals: [K=v] }]
`,
      'd.yaml': deployment,
    });
    const overlay = await tree('a/overlay', {
      'kustomization.yaml': `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../base]
patches:
  - target: { kind: Deployment, name: d }
    patch: |-
      - { op: test, path: /spec/template/spec/containers/0/args/1, value: b }
      - { op: add, path: /spec/template/spec/containers/0/args/-, value: c }
      - { op: remove, path: /spec/template/spec/containers/0/args/0 }
  - target: { kind: ConfigMap, name: cfg }
    patch: '[{ op: add, path: /data/L, value: w }]'
`,
    });
    void base;
    const out = kustomize(overlay);
    const d = out.find((o) => o.kind === 'Deployment') as Obj & { spec: never };
    const cm = out.find((o) => o.kind === 'ConfigMap')!;
    const c = (d.spec as { template: { spec: { containers: Array<Record<string, unknown>> } } })
      .template.spec.containers[0]!;
    assert.deepEqual(c.args, ['b', 'c']);
    assert.equal(c.image, 'r/weir:1.2');
    assert.deepEqual(cm.data, { K: 'v', L: 'w' });
    assert.equal(
      cm.metadata.name,
      `cfg-${configMapHash({ K: 'v', L: 'w' })}`,
      'hashed after the patch',
    );
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: cm.metadata.name } }]);
  });

  const refusals: Array<[string, Record<string, string>, RegExp]> = [
    [
      'a field it does not render',
      { 'kustomization.yaml': 'apiVersion: v1\nkind: Kustomization\nnamePrefix: x-\n' },
      /namePrefix is not supported/,
    ],
    [
      'a file outside the kustomization',
      {
        'k/kustomization.yaml': 'apiVersion: v1\nkind: Kustomization\nresources: [../d.yaml]\n',
        'd.yaml': deployment,
      },
      /load restrictor/,
    ],
    [
      'a failing test operation',
      {
        'kustomization.yaml':
          'apiVersion: v1\nkind: Kustomization\nresources: [d.yaml]\npatches:\n  - target: { kind: Deployment }\n    patch: "[{ op: test, path: /spec/template/spec/containers/0/args/0, value: z }]"\n',
        'd.yaml': deployment,
      },
      /test \/spec\/template\/spec\/containers\/0\/args\/0: is "a"/,
    ],
    [
      'a patch whose target selects nothing',
      {
        'kustomization.yaml':
          'apiVersion: v1\nkind: Kustomization\nresources: [d.yaml]\npatches:\n  - target: { kind: DaemonSet }\n    patch: "[]"\n',
        'd.yaml': deployment,
      },
      /selects nothing/,
    ],
    [
      'a strategic merge patch other than a deletion',
      {
        'kustomization.yaml':
          'apiVersion: v1\nkind: Kustomization\nresources: [d.yaml]\npatches:\n  - patch: "{ kind: Deployment, metadata: { name: d } }"\n',
        'd.yaml': deployment,
      },
      /only JSON 6902 patches/,
    ],
  ];
  for (const [what, files, error] of refusals)
    test(`refuses ${what}`, async () => {
      const root = await tree(`refuse-${what.replace(/\W+/g, '-')}`, files);
      const k = Object.keys(files).find((f) => f.endsWith('kustomization.yaml'))!;
      assert.throws(
        () => kustomize(join(root, k, '..')),
        (e: unknown) => e instanceof KustomizeError && error.test(e.message),
      );
    });
});

describe('the renderer agrees with kubectl kustomize', () => {
  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  const key = (o: Obj) =>
    `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
  for (const t of TREES)
    test(`deploy/${t}`, (ctx) => {
      if (kubectl.status !== 0) {
        ctx.skip(
          'kubectl is not installed (CI installs Debian packages, whose kubectl is too old for this tree)',
        );
        return;
      }
      const r = spawnSync('kubectl', ['kustomize', join(ROOT, 'deploy', t)], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      assert.equal(r.status, 0, r.stderr);
      const theirs = new Map(
        parseAllDocuments(r.stdout)
          .map((d) => d.toJS() as Obj)
          .map((o) => [key(o), o]),
      );
      const ours = new Map(kustomize(join(ROOT, 'deploy', t)).map((o) => [key(o), o]));
      assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
      for (const [k, o] of ours) assert.deepEqual(o, theirs.get(k), k);
    });
});
