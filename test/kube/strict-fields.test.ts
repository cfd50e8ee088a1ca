/**
 * The strict field schema (controller/kube/schema.ts) against two
 * independent renderings of the Kubernetes schema: @kubernetes/client-node's
 * models (which generate it; the module must be current) and
 * kubernetes-models' types (every field it knows must be known here), and on
 * real-looking manifests that kubernetes-models validates (issue 7, defect 4).
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Node } from 'kubernetes-models/v1/Node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import ts from 'typescript';
import { KIND_TYPES, TYPES } from '../../controller/kube/schema.js';
import {
  formatFieldPath,
  readingOf,
  schemaTypeOf,
  unknownFields,
} from '../../controller/kube/strict-fields.js';
import { READ_KINDS } from '../../controller/kube/objects.js';
import { type Json, REAL_NAMESPACE, REAL_NETWORK_POLICY, REAL_NODE, REAL_POD } from './fixtures.js';

const REAL: ReadonlyArray<[string, Json, (x: Json) => void]> = [
  ['Pod', REAL_POD, (x) => new Pod(x as never).validate()],
  ['Node', REAL_NODE, (x) => new Node(x as never).validate()],
  ['NetworkPolicy', REAL_NETWORK_POLICY, (x) => new NetworkPolicy(x as never).validate()],
  ['Namespace', REAL_NAMESPACE, (x) => new Namespace(x as never).validate()],
];

const typeOf = (o: Json) => schemaTypeOf(o.apiVersion, o.kind)!;

describe('the Kubernetes field schema', () => {
  test('is what @kubernetes/client-node models and the vendored CRDs give (regenerate with node scripts/gen-kube-schema.mjs)', async () => {
    const gen = (await import('../../scripts/gen-kube-schema.mjs' as string)) as {
      buildSchema(): Map<string, string>;
      KINDS: string[][];
      CRD_KINDS: string[][];
    };
    assert.deepEqual(Object.fromEntries(gen.buildSchema()), TYPES);
    assert.deepEqual(
      KIND_TYPES.map((k) => [k.apiVersion, k.kind, k.type]),
      [
        ...gen.KINDS,
        ...gen.CRD_KINDS.map(([apiVersion, kind, , type]) => [apiVersion, kind, type]),
      ],
    );
  });

  test('covers every kind Weir reads', () => {
    for (const [kind, apiVersion] of Object.entries(READ_KINDS))
      assert.ok(schemaTypeOf(apiVersion, kind), `${kind} ${apiVersion} has a schema`);
  });

  test("knows every field kubernetes-models' types know, at every depth, for each kind", () => {
    const missing = kubernetesModelsFieldsMissing();
    assert.deepEqual(missing, []);
  });
});

describe('strict reading of real-looking manifests', () => {
  for (const [kind, object, validate] of REAL) {
    test(`a ${kind} as kubectl get -o yaml shows it is valid for kubernetes-models and has no unknown fields`, () => {
      validate(structuredClone(object));
      assert.deepEqual(unknownFields(object, typeOf(object)), []);
    });

    test(`a field added to any object of a ${kind} is reported at its path, with the closest known name`, () => {
      let checked = 0;
      for (const path of objectPaths(object)) {
        const copy = structuredClone(object);
        const target = path.reduce<Json>((o, p) => (o as Record<string | number, Json>)[p]!, copy);
        target.zzUnknown = 1;
        assert.deepEqual(
          unknownFields(copy, typeOf(object)).map((u) => formatFieldPath(u.path)),
          [formatFieldPath([...path, 'zzUnknown'])],
          `zzUnknown at ${formatFieldPath(path) || '(top)'}`,
        );
        // A typo of an existing field: the original name is suggested.
        const key = Object.keys(target).find((k) => k !== 'zzUnknown' && k.length > 4);
        if (key !== undefined) {
          const typo = structuredClone(object);
          const t = path.reduce<Json>((o, p) => (o as Record<string | number, Json>)[p]!, typo);
          t[`${key.slice(0, -1)}`] = t[key];
          delete t[key];
          const found = unknownFields(typo, typeOf(object));
          assert.equal(found.length, 1, `${key} misspelt at ${formatFieldPath(path)}`);
          assert.equal(found[0]!.message, `unknown field; did you mean ${JSON.stringify(key)}?`);
        }
        checked++;
      }
      assert.ok(checked > (kind === 'Pod' ? 40 : 3), `${checked} objects checked in the ${kind}`);
    });
  }
});

describe('kinds a manifest names', () => {
  test('the kinds Weir reads, unserved versions of them, misspellings, and everything else', () => {
    const table: Array<[string | undefined, string, string]> = [
      ['networking.k8s.io/v1', 'NetworkPolicy', 'read'],
      ['networking.k8s.io/v1beta1', 'NetworkPolicy', 'wrong-version networking.k8s.io/v1'],
      ['extensions/v1beta1', 'NetworkPolicy', 'wrong-version networking.k8s.io/v1'],
      ['projectcalico.org/v3', 'NetworkPolicy', 'other'],
      ['v1', 'Networkpolicy', 'misspelt NetworkPolicy'],
      ['networking.k8s.io/v1', 'NetworkPolcy', 'misspelt NetworkPolicy'],
      ['v1', 'pods', 'misspelt Pod'],
      ['v1', 'POD', 'misspelt Pod'],
      ['v2', 'Pod', 'wrong-version v1'],
      [undefined, 'Namespace', 'wrong-version v1'],
      ['v1', 'Namespaces', 'misspelt Namespace'],
      ['batch/v1', 'Job', 'other'],
      ['v1', 'Service', 'other'],
      ['apps/v1', 'Deployment', 'other'],
      ['cilium.io/v2', 'CiliumNetworkPolicy', 'other'],
      ['policy.networking.k8s.io/v1alpha1', 'AdminNetworkPolicy', 'other'],
    ];
    const reads = { Namespace: 'v1', Pod: 'v1', NetworkPolicy: 'networking.k8s.io/v1' };
    const got = table.map(([apiVersion, kind]) => {
      const r = readingOf(apiVersion, kind, reads);
      return [
        apiVersion,
        kind,
        r.type === 'wrong-version'
          ? `${r.type} ${r.apiVersion}`
          : r.type === 'misspelt'
            ? `${r.type} ${r.kind}`
            : r.type,
      ];
    });
    assert.deepEqual(got, table);
  });
});

/** Fields of free-form maps (keys are data, not schema), whose values the walk does not enter. */
const MAPS = new Set([
  'labels',
  'annotations',
  'nodeSelector',
  'limits',
  'requests',
  'capacity',
  'allocatable',
  'matchLabels',
  'fieldsV1',
]);

/** Paths of every object in `o` that the schema types as an object (not in a free-form map). */
function objectPaths(o: unknown, path: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(o)) return o.flatMap((x, i) => objectPaths(x, [...path, i]));
  if (typeof o !== 'object' || o === null) return [];
  const out = [path];
  for (const [k, v] of Object.entries(o))
    if (!MAPS.has(k)) out.push(...objectPaths(v, [...path, k]));
  return out.filter((p) => {
    // Lists of strings (args, command) hold no objects; an element path of them is not an object.
    const last = p.at(-1);
    return typeof last !== 'number' || typeof get(o, p.slice(path.length)) === 'object';
  });
}

function get(o: unknown, path: ReadonlyArray<string | number>): unknown {
  return path.reduce<unknown>((x, p) => (x as Record<string | number, unknown>)?.[p], o);
}

/**
 * Walks kubernetes-models' type declarations (with the TypeScript checker)
 * beside the schema, and returns the paths of fields it declares that the
 * schema does not.
 */
function kubernetesModelsFieldsMissing(): string[] {
  const require = createRequire(import.meta.url);
  const files = {
    Namespace: require.resolve('kubernetes-models/v1/Namespace').replace(/\.js$/, '.d.ts'),
    Pod: require.resolve('kubernetes-models/v1/Pod').replace(/\.js$/, '.d.ts'),
    Node: require.resolve('kubernetes-models/v1/Node').replace(/\.js$/, '.d.ts'),
    NetworkPolicy: require
      .resolve('kubernetes-models/networking.k8s.io/v1/NetworkPolicy')
      .replace(/\.js$/, '.d.ts'),
  };
  const program = ts.createProgram(Object.values(files), {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const missing: string[] = [];
  const fieldsOf = (type: string) =>
    new Map(
      TYPES[type]!.split(' ').map((f) => {
        const [name, ref] = f.split(':');
        return [name!, ref];
      }),
    );
  const seen = new Set<string>();
  const walk = (theirs: ts.Type, ours: string, path: string) => {
    const key = `${checker.typeToString(theirs)}=${ours}`;
    if (seen.has(key)) return;
    seen.add(key);
    const fields = fieldsOf(ours);
    for (const prop of checker.getPropertiesOfType(theirs)) {
      const name = prop.getName();
      if (!fields.has(name)) {
        missing.push(`${path}.${name}`);
        continue;
      }
      const ref = fields.get(name);
      if (ref === undefined) continue; // a value the schema does not look into
      let t = checker.getNonNullableType(checker.getTypeOfSymbol(prop));
      if (ref.startsWith('[') || ref.startsWith('{')) {
        if (checker.isArrayType(t)) t = checker.getTypeArguments(t as ts.TypeReference)[0]!;
        else if (t.getStringIndexType()) t = t.getStringIndexType()!;
        else {
          missing.push(`${path}.${name}: not a list or map in kubernetes-models`);
          continue;
        }
        walk(checker.getNonNullableType(t), ref.slice(1), `${path}.${name}[]`);
      } else walk(t, ref, `${path}.${name}`);
    }
  };
  for (const [kind, file] of Object.entries(files)) {
    const source = program.getSourceFile(file)!;
    const iface = source.statements.find(
      (s): s is ts.InterfaceDeclaration =>
        ts.isInterfaceDeclaration(s) && s.name.text === `I${kind}`,
    );
    assert.ok(iface, `kubernetes-models declares I${kind}`);
    const type = checker.getTypeAtLocation(iface.name);
    const ours = KIND_TYPES.find((k) => k.kind === kind)!.type;
    walk(type, ours, kind);
  }
  assert.ok(seen.size > 100, `${seen.size} types compared`);
  return missing;
}
