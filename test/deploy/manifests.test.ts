/**
 * The install manifests are valid Kubernetes objects (checked with
 * kubernetes-models' schemas, as no API server runs here) and agree with the
 * programs they run: the flags exist, the agents reach the controller's
 * Service, and RBAC grants what the controller does.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Node } from 'kubernetes-models/v1/Node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ROOT } from '../support/processes.js';

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Node': Node,
  'v1/Pod': Pod,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
};

function load(dir: string): Array<{ file: string; object: Obj }> {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => ({
        file: f,
        object: d.toJS() as Obj,
      })),
    )
    .filter((x) => x.object !== null)
    .flatMap((x) =>
      x.object.kind === 'List'
        ? (x.object.items as Obj[]).map((object) => ({ file: x.file, object }))
        : [x],
    );
}

function validateAll(dir: string): void {
  for (const { file, object } of load(dir)) {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    assert.ok(Model, `${file}: no schema for ${object.apiVersion} ${object.kind}`);
    assert.doesNotThrow(
      () => new Model(object as never).validate(),
      `${file}: ${object.kind} ${object.metadata.name}`,
    );
  }
}

describe('deploy manifests', () => {
  const dir = join(ROOT, 'deploy', 'kubernetes');
  const objects = load(dir).map((x) => x.object);
  const find = (kind: string, name: string) =>
    // biome-ignore lint/suspicious/noExplicitAny: the test walks the manifests' nested fields freely
    objects.find((o) => o.kind === kind && o.metadata.name === name) as Record<string, any>;

  test('every install object is valid against the Kubernetes schemas', () => validateAll(dir));
  test('every demo object is valid against the Kubernetes schemas', () =>
    validateAll(join(ROOT, 'deploy', 'examples')));

  test('the agents reach the controller through its Service, on the port it listens on', () => {
    const svc = find('Service', 'weir-controller');
    const dep = find('Deployment', 'weir-controller');
    const ds = find('DaemonSet', 'weir-agent');
    const agent = ds.spec.template.spec.containers[0];
    const controller = dep.spec.template.spec.containers[0];
    const target = agent.env.find((e: { name: string }) => e.name === 'WEIR_CONTROLLER').value;
    assert.equal(
      target,
      `${svc.metadata.name}.${svc.metadata.namespace}.svc:${svc.spec.ports[0].port}`,
    );
    const listen = controller.args[controller.args.indexOf('--listen') + 1];
    assert.equal(listen, `0.0.0.0:${controller.ports[0].containerPort}`);
    for (const [k, v] of Object.entries(svc.spec.selector))
      assert.equal(
        dep.spec.template.metadata.labels[k],
        v,
        `the Service selects the controller pods by ${k}`,
      );
    assert.equal(
      agent.env.find((e: { name: string }) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath,
      'spec.nodeName',
    );
  });

  test('the controller runs with flags its program accepts, and RBAC grants what it reads, writes and leases', async () => {
    const controller = find('Deployment', 'weir-controller').spec.template.spec.containers[0];
    const usage = execFileSync(process.execPath, [join(ROOT, 'bin', 'weir-controller'), '--help'], {
      encoding: 'utf8',
    });
    for (const flag of controller.args.filter((a: string) => a.startsWith('--')))
      assert.match(
        usage,
        new RegExp(`^\\s+${flag}\\b`, 'm'),
        `weir-controller --help lists ${flag}`,
      );
    const rules = find('ClusterRole', 'weir-controller').rules as Array<{
      apiGroups: string[];
      resources: string[];
      verbs: string[];
    }>;
    const grants = (group: string, resource: string, verb: string) =>
      rules.some(
        (r) =>
          r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb),
      );
    for (const [group, resource] of [
      ['', 'namespaces'],
      ['', 'nodes'],
      ['', 'pods'],
      ['networking.k8s.io', 'networkpolicies'],
    ]) {
      for (const verb of ['list', 'watch'])
        assert.ok(grants(group!, resource!, verb), `${verb} ${resource}`);
    }
    assert.ok(grants('', 'events', 'create'));
    const lease = find('Role', 'weir-controller-leader-election').rules[0];
    assert.deepEqual([lease.apiGroups, lease.resources], [['coordination.k8s.io'], ['leases']]);
  });
});
