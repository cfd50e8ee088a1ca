/**
 * The install (deploy/: the Kustomize base and every overlay, rendered) is
 * valid Kubernetes — every object checked against its schema with
 * kubernetes-models, cert-manager's and the Prometheus Operator's included,
 * as no API server runs here — and agrees with the programs it runs: every
 * flag is one they accept, every environment variable one they read (or one
 * an argument refers to), agents reach the controller's Service on the port
 * it listens on, and every listener binds what it must and nothing more.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Node } from 'kubernetes-models/v1/Node';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { type Obj, kustomize } from '../support/kustomize.js';
import { ROOT } from '../support/processes.js';

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Node': Node,
  'v1/Pod': Pod,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
  'cert-manager.io/v1/Issuer': Issuer,
  'cert-manager.io/v1/Certificate': Certificate,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

const DEPLOY = join(ROOT, 'deploy');
/** Every kustomization an admin applies. */
const TREES = ['base', 'overlays/monitoring', 'overlays/nats', 'overlays/insecure-dev'];

/**
 * Flags fixed by the TLS conventions (issue 12) that the programs on main do
 * not accept yet (branch mtls adds them). Each must be absent from --help:
 * once a program accepts one, this test fails until it leaves the list, so
 * the list cannot outlive its reason.
 */

// biome-ignore lint/suspicious/noExplicitAny: the tests walk the manifests' nested fields freely
type Any = any;

const rendered = new Map(TREES.map((t) => [t, kustomize(join(DEPLOY, t))]));
const find = (tree: string, kind: string, name: string): Any => {
  const o = rendered.get(tree)!.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${tree}: ${kind} ${name}`);
  return o;
};
const PROGRAMS = { 'weir-controller': ['controller'], 'weir-agent': ['vrouter-agent'] } as const;
type Program = keyof typeof PROGRAMS;

const workloads = (tree: string) =>
  rendered
    .get(tree)!
    .filter((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet')
    .flatMap((o: Any) =>
      (o.spec.template.spec.containers as Any[]).map((c) => ({
        workload: `${o.kind} ${o.metadata.name}`,
        pod: o.spec.template.spec,
        container: c,
        program: c.args[0] as Program,
      })),
    );

const helpCache = new Map<Program, string>();
const help = (program: Program) => {
  if (!helpCache.has(program))
    helpCache.set(
      program,
      execFileSync(process.execPath, [join(ROOT, 'bin', program), '--help'], { encoding: 'utf8' }),
    );
  return helpCache.get(program)!;
};

/** Environment variables a program's sources read (its room and shared/). */
function envRead(program: Program): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'generated' || e.name === 'build') continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts'))
        for (const m of readFileSync(p, 'utf8').matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g))
          names.add(m[1]!);
    }
  };
  for (const room of ['shared', ...PROGRAMS[program]]) walk(join(ROOT, room));
  return names;
}

/** A flag's value, or undefined. */
const flag = (args: string[], name: string) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
};
const host = (listen: string) => listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
const port = (listen: string) => Number(listen.slice(listen.lastIndexOf(':') + 1));

describe('the install in deploy/', () => {
  test('every kustomization under deploy/ is one the tests render', () => {
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const p = join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (e === 'kustomization.yaml') {
          const k = parseAllDocuments(readFileSync(p, 'utf8'))[0]!.toJS();
          if (k.kind === 'Kustomization') found.push(relative(DEPLOY, dir));
        }
      }
    };
    walk(DEPLOY);
    assert.deepEqual(found.filter((d) => d !== 'crds').sort(), [...TREES].sort());
  });

  for (const tree of TREES)
    test(`${tree}: every object is valid against its schema, in weir-system and labelled as Weir's`, () => {
      for (const o of rendered.get(tree)!) {
        const Model = MODELS[`${o.apiVersion}/${o.kind}`];
        assert.ok(Model, `${tree}: no schema for ${o.apiVersion} ${o.kind}`);
        assert.doesNotThrow(
          () => new Model(o as never).validate(),
          `${tree}: ${o.kind} ${o.metadata.name}`,
        );
        const clusterScoped = [
          'Namespace',
          'ClusterRole',
          'ClusterRoleBinding',
          'CustomResourceDefinition',
        ];
        if (!clusterScoped.includes(o.kind))
          assert.equal(
            o.metadata.namespace,
            'weir-system',
            `${tree}: ${o.kind} ${o.metadata.name}`,
          );
        if (o.kind !== 'CustomResourceDefinition')
          assert.equal(
            o.metadata.labels?.['app.kubernetes.io/part-of'],
            'weir',
            `${o.kind} ${o.metadata.name}`,
          );
      }
    });

  test('file modes are decimal: YAML 1.1 (kubectl) reads 0440 as octal, YAML 1.2 as four hundred and forty', () => {
    const walk = (dir: string): string[] =>
      readdirSync(dir).flatMap((e) => {
        const p = join(dir, e);
        return statSync(p).isDirectory() ? walk(p) : p.endsWith('.yaml') ? [p] : [];
      });
    for (const f of walk(DEPLOY))
      assert.doesNotMatch(
        readFileSync(f, 'utf8'),
        /\b(defaultMode|mode):\s*0\d/,
        relative(ROOT, f),
      );
  });

  test('every demo object is valid against the Kubernetes schemas', () => {
    for (const f of readdirSync(join(DEPLOY, 'examples')).filter((x) => x.endsWith('.yaml')))
      for (const d of parseAllDocuments(readFileSync(join(DEPLOY, 'examples', f), 'utf8'))) {
        const o = d.toJS() as Obj | null;
        if (o === null) continue;
        const items = o.kind === 'List' ? (o.items as Obj[]) : [o];
        for (const x of items) {
          const Model = MODELS[`${x.apiVersion}/${x.kind}`];
          assert.ok(Model, `${f}: no schema for ${x.apiVersion} ${x.kind}`);
          assert.doesNotThrow(
            () => new Model(x as never).validate(),
            `${f}: ${x.kind} ${x.metadata.name}`,
          );
        }
      }
  });

  for (const tree of TREES)
    test(`${tree}: every flag is one the program accepts, every variable one it reads or an argument uses`, () => {
      const configMaps = rendered.get(tree)!.filter((o) => o.kind === 'ConfigMap');
      for (const { workload, container, program } of workloads(tree)) {
        assert.ok(
          program in PROGRAMS,
          `${workload}: the first argument names the program, not ${program}`,
        );
        const usage = help(program);
        const args = container.args as string[];
        for (const f of args.filter((a) => a.startsWith('--'))) {
          const listed = new RegExp(`^\\s+${f}\\b`, 'm').test(usage);
          assert.ok(listed, `${workload}: ${program} --help lists ${f}`);
        }
        const env = new Set<string>((container.env ?? []).map((e: Any) => e.name));
        for (const from of container.envFrom ?? []) {
          const cm = configMaps.find((c) => c.metadata.name === from.configMapRef?.name);
          assert.ok(
            cm,
            `${workload}: envFrom ${JSON.stringify(from)} names a ConfigMap of the install`,
          );
          for (const k of Object.keys(cm.data as object)) env.add(k);
        }
        const used = new Set(
          args.flatMap((a) => [...a.matchAll(/\$\(([A-Z_][A-Z0-9_]*)\)/g)].map((m) => m[1]!)),
        );
        for (const v of used)
          assert.ok(env.has(v), `${workload}: an argument refers to $(${v}), which is not set`);
        const read = envRead(program);
        for (const v of env)
          assert.ok(
            read.has(v) || used.has(v),
            `${workload}: ${v} is neither read by ${program} nor used by an argument`,
          );
      }
    });

  for (const tree of TREES)
    test(`${tree}: every listener binds what it must and nothing more`, () => {
      for (const { workload, pod, container } of workloads(tree)) {
        const args = container.args as string[];
        const tls = flag(args, '--tls-dir') !== undefined && !args.includes('--insecure');
        const listen = flag(args, '--listen');
        const metrics = flag(args, '--metrics-listen');
        assert.ok(listen && metrics, `${workload}: --listen and --metrics-listen are explicit`);
        const loopback = (h: string) => h === '127.0.0.1' || h === '::1' || h === 'localhost';
        const any = (h: string) => h === '' || h === '0.0.0.0' || h === '::';
        for (const l of [listen, metrics]) {
          if (pod.hostNetwork)
            assert.ok(!any(host(l)), `${workload}: ${l} on every address of the host network`);
        }
        // The gRPC API (policy, flows) leaves loopback only with mTLS on.
        if (!loopback(host(listen)))
          assert.ok(
            tls || (!pod.hostNetwork && args.includes('--insecure')),
            `${workload}: ${listen} without mTLS`,
          );
        if (pod.hostNetwork && !tls)
          assert.ok(
            loopback(host(listen)),
            `${workload}: an unauthenticated API on the node's network`,
          );
        if (pod.hostNetwork)
          for (const l of [listen, metrics])
            assert.ok(loopback(host(l)) || host(l) === '$(HOST_IP)', `${workload}: ${l}`);
        // Ports declared are the ones bound; probes on the metrics port.
        const ports = new Map((container.ports as Any[]).map((p) => [p.name, p.containerPort]));
        assert.equal(ports.get('metrics'), port(metrics), `${workload}: the metrics port`);
        assert.equal(container.livenessProbe.httpGet.path, '/healthz');
        assert.equal(container.readinessProbe.httpGet.path, '/readyz');
        assert.equal(container.livenessProbe.httpGet.port, 'metrics');
        assert.equal(container.readinessProbe.httpGet.port, 'metrics');
      }
    });

  test('the agents reach the controller through its headless Service, on the port it listens on', () => {
    const svc = find('base', 'Service', 'weir-controller');
    const dep = find('base', 'Deployment', 'weir-controller');
    const agent = find('base', 'DaemonSet', 'weir-agent').spec.template.spec.containers[0];
    const controller = dep.spec.template.spec.containers[0];
    const target = agent.env.find((e: Any) => e.name === 'WEIR_CONTROLLER').value;
    assert.equal(
      target,
      `${svc.metadata.name}.${svc.metadata.namespace}.svc:${svc.spec.ports[0].port}`,
    );
    assert.equal(
      port(flag(controller.args, '--listen')!),
      controller.ports.find((p: Any) => p.name === 'grpc').containerPort,
    );
    // Only the leader listens: DNS must give every pod (ready or not), gRPC connects to the one that accepts.
    assert.equal(svc.spec.clusterIP, 'None');
    assert.equal(svc.spec.publishNotReadyAddresses, true);
    for (const [k, v] of Object.entries(svc.spec.selector))
      assert.equal(
        dep.spec.template.metadata.labels[k],
        v,
        `the Service selects the controller pods by ${k}`,
      );
    assert.equal(
      agent.env.find((e: Any) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath,
      'spec.nodeName',
    );
    const certificate = find('base', 'Certificate', 'weir-controller');
    assert.ok(certificate.spec.dnsNames.includes(target.slice(0, target.lastIndexOf(':'))));
  });

  test('the controller: two replicas leading by Lease, spread, disruption-budgeted, non-root', () => {
    const dep = find('base', 'Deployment', 'weir-controller');
    const pod = dep.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(dep.spec.replicas, 2);
    assert.ok(c.args.includes('--leader-elect') && c.args.includes('--in-cluster'));
    assert.equal(flag(c.args, '--lease-namespace'), 'weir-system');
    assert.equal(flag(c.args, '--manifests'), undefined);
    assert.ok(
      pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution.length > 0,
    );
    assert.deepEqual(dep.spec.strategy.rollingUpdate, { maxSurge: 1, maxUnavailable: 0 });
    const pdb = find('base', 'PodDisruptionBudget', 'weir-controller');
    assert.deepEqual(pdb.spec.selector, dep.spec.selector);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
    assert.ok(c.resources.requests && c.resources.limits.memory);
  });

  test('the agent: host network, NET_ADMIN only, its state on the host, every node, the kernel datapath', () => {
    const ds = find('base', 'DaemonSet', 'weir-agent');
    const pod = ds.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.deepEqual(c.securityContext.capabilities, { add: ['NET_ADMIN'], drop: ['ALL'] });
    assert.equal(c.securityContext.privileged, undefined);
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    const state = pod.volumes.find((v: Any) => v.name === 'state');
    assert.equal(state.hostPath.path, '/var/lib/weir');
    assert.ok(flag(c.args, '--state-dir')!.startsWith('/var/lib/weir/'));
    assert.equal(flag(c.args, '--datapath'), 'nftables');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(find('base', 'ServiceAccount', 'weir-agent').automountServiceAccountToken, false);
  });

  test('certificates follow the identities: one CA, the controller, operators by role, agents by pod through the csi-driver', () => {
    const ca = find('base', 'Certificate', 'weir-ca');
    assert.equal(ca.spec.isCA, true);
    assert.equal(find('base', 'Issuer', 'weir-ca').spec.ca.secretName, ca.spec.secretName);
    const certs = rendered
      .get('base')!
      .filter((o) => o.kind === 'Certificate' && o.metadata.name !== 'weir-ca') as Any[];
    const identities: Record<string, RegExp> = {
      'weir-controller': /^spiffe:\/\/weir\/controller$/,
      'weir-operator-admin': /^spiffe:\/\/weir\/operator\/admin\/[a-z0-9-]+$/,
      'weir-operator-read-only': /^spiffe:\/\/weir\/operator\/read-only\/[a-z0-9-]+$/,
    };
    assert.deepEqual(certs.map((c) => c.metadata.name).sort(), Object.keys(identities).sort());
    for (const c of certs) {
      assert.deepEqual(c.spec.issuerRef, {
        group: 'cert-manager.io',
        kind: 'Issuer',
        name: 'weir-ca',
      });
      assert.equal(c.spec.uris.length, 1);
      assert.match(c.spec.uris[0], identities[c.metadata.name]!);
    }
    const dep = find('base', 'Deployment', 'weir-controller').spec.template.spec;
    assert.equal(
      dep.volumes.find((v: Any) => v.name === 'tls').secret.secretName,
      find('base', 'Certificate', 'weir-controller').spec.secretName,
    );
    const agent = find('base', 'DaemonSet', 'weir-agent').spec.template.spec;
    const csi = agent.volumes.find((v: Any) => v.name === 'tls').csi;
    assert.equal(csi.driver, 'csi.cert-manager.io');
    assert.equal(csi.volumeAttributes['csi.cert-manager.io/issuer-name'], 'weir-ca');
    assert.equal(
      csi.volumeAttributes['csi.cert-manager.io/uri-sans'],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the csi-driver's own placeholders, not JavaScript's
      'spiffe://weir/ns/${POD_NAMESPACE}/pod/${POD_NAME}',
    );
    for (const pod of [dep, agent]) {
      const c = pod.containers[0];
      assert.equal(c.volumeMounts.find((m: Any) => m.name === 'tls').mountPath, '/etc/weir/tls');
      assert.equal(flag(c.args, '--tls-dir'), '/etc/weir/tls');
    }
    // The agent pods the controller resolves certificates to carry the label it checks.
    assert.equal(
      find('base', 'DaemonSet', 'weir-agent').spec.template.metadata.labels[
        'app.kubernetes.io/name'
      ],
      'weir-agent',
    );
  });

  test('RBAC is the reviewed set (rbac.test.ts proves it is what the controller requests), and the agent has none', () => {
    const rules = (kind: string, name: string) =>
      (find('base', kind, name).rules as Any[]).flatMap((r) =>
        r.apiGroups.flatMap((g: string) =>
          r.resources.flatMap((res: string) =>
            r.verbs.map(
              (v: string) =>
                `${v} ${g || 'core'}/${res}${r.resourceNames ? `/${r.resourceNames.join(',')}` : ''}`,
            ),
          ),
        ),
      );
    assert.deepEqual(rules('ClusterRole', 'weir-controller').sort(), [
      'create core/events',
      'list core/namespaces',
      'list core/nodes',
      'list core/pods',
      'list networking.k8s.io/networkpolicies',
      'list policy.networking.k8s.io/clusternetworkpolicies',
      'watch core/namespaces',
      'watch core/nodes',
      'watch core/pods',
      'watch networking.k8s.io/networkpolicies',
      'watch policy.networking.k8s.io/clusternetworkpolicies',
    ]);
    assert.deepEqual(rules('Role', 'weir-controller-leader-election').sort(), [
      'create coordination.k8s.io/leases',
      'get coordination.k8s.io/leases/weir-controller',
      'update coordination.k8s.io/leases/weir-controller',
    ]);
    const bindings = rendered.get('base')!.filter((o) => o.kind.endsWith('Binding')) as Any[];
    assert.ok(bindings.every((b) => b.subjects.every((s: Any) => s.name === 'weir-controller')));
  });

  test('the image: a supported Node.js LTS pinned, multi-stage, no demo manifests, an entrypoint that runs a program', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
    assert.ok(froms.length >= 2, 'multi-stage');
    for (const f of froms)
      assert.match(
        f,
        /^node:(22|24)\.\d+\.\d+-\S+(@sha256:[0-9a-f]{64})?$/,
        `${f} is pinned to an LTS release`,
      );
    assert.doesNotMatch(dockerfile, /deploy\/examples/);
    assert.match(dockerfile, /^ENTRYPOINT \["\/app\/bin\/weir"\]$/m);
    assert.match(dockerfile, /^USER 65532:65532$/m);
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
    for (const p of ['node_modules', 'dist', 'state', '.git'])
      assert.match(ignore, new RegExp(`^${p}$`, 'm'));
  });
});
