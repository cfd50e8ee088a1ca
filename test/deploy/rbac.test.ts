/**
 * The install's RBAC is exactly what the controller uses: the real
 * weir-controller (--kubeconfig --leader-elect) runs against the fake API
 * server through start-up, leadership, a rejected policy (an Event) and a
 * clean stop (the Lease released); every request it made must be allowed by
 * the rendered base's roles, and every permission the roles grant must have
 * been used.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeApiServer } from '../../testing/fake-apiserver.js';
import { kustomize } from '../support/kustomize.js';
import { ROOT, WeirProcess, eventually, freePort } from '../support/processes.js';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Access {
  verb: string;
  group: string;
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
}

/** A request as RBAC sees it (resource requests only; discovery is everyone's). */
function access(method: string, path: string, watch: boolean): Access | undefined {
  const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/(.+)$/.exec(path);
  if (m === null) return undefined;
  let parts = m[2]!.split('/');
  let namespace: string | undefined;
  if (parts[0] === 'namespaces' && parts.length >= 3) {
    namespace = parts[1];
    parts = parts.slice(2);
  }
  const [resource, name] = parts;
  const verb =
    method === 'GET'
      ? name !== undefined
        ? 'get'
        : watch
          ? 'watch'
          : 'list'
      : (
          { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<
            string,
            string
          >
        )[method]!;
  return { verb, group: m[1] ?? '', resource: resource!, namespace, name };
}

const allows = (r: Rule, a: Access) =>
  r.apiGroups.includes(a.group) &&
  r.resources.includes(a.resource) &&
  r.verbs.includes(a.verb) &&
  (r.resourceNames === undefined || (a.name !== undefined && r.resourceNames.includes(a.name)));

describe('the controller RBAC of deploy/base', () => {
  let dir: string;
  let server: FakeApiServer;
  let controller: WeirProcess | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-rbac-'));
    server = await FakeApiServer.start();
    server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    // Port 70000 is out of range: rejected, and recorded as an Event.
    server.apply({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'bad', namespace: 'shop' },
      spec: { podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] },
    });
    await server.writeKubeConfig(join(dir, 'kubeconfig'));
  });
  after(async () => {
    await controller?.kill();
    await server[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  test('grants every request the controller makes, and nothing it does not make', async () => {
    controller = new WeirProcess('controller', 'weir-controller', [
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      '--leader-elect',
      '--listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    await controller.waitFor((l) => l.msg === 'source synced', 'the controller synced');
    await eventually(
      async () => (server.events().length > 0 ? true : undefined),
      'the rejection Event',
    );
    assert.equal(await controller.stop(), 0);
    assert.ok(controller.lines.some((l) => l.msg === 'lease released'));

    const base = kustomize(join(ROOT, 'deploy', 'base'));
    const find = (kind: string, name: string) =>
      base.find((o) => o.kind === kind && o.metadata.name === name) as unknown as {
        rules: Rule[];
        metadata: { namespace?: string };
      };
    const cluster = find('ClusterRole', 'weir-controller').rules;
    const leader = find('Role', 'weir-controller-leader-election').rules;
    const ns = find('Role', 'weir-controller-leader-election').metadata.namespace;

    const made = server.requests
      .map((r) => access(r.method, r.path, r.watch))
      .filter((a) => a !== undefined);
    assert.ok(made.length > 0);
    for (const a of made)
      assert.ok(
        cluster.some((r) => allows(r, a)) ||
          (a.namespace === ns && leader.some((r) => allows(r, a))),
        `${a.verb} ${a.group}/${a.resource} ${a.namespace ?? ''}/${a.name ?? ''} is not granted`,
      );
    for (const [roles, scope] of [
      [cluster, undefined],
      [leader, ns],
    ] as const)
      for (const r of roles)
        for (const group of r.apiGroups)
          for (const resource of r.resources)
            for (const verb of r.verbs)
              assert.ok(
                made.some(
                  (a) =>
                    a.group === group &&
                    a.resource === resource &&
                    a.verb === verb &&
                    (scope === undefined || a.namespace === scope) &&
                    (r.resourceNames === undefined || r.resourceNames.includes(a.name!)),
                ),
                `${verb} ${group}/${resource} is granted but never used`,
              );
  });
});
