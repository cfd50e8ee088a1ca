/**
 * The controller and three agents as real processes on loopback: the demo
 * manifests in a temporary directory, edited while they run.
 */
import { SpanState } from '../../vrouter-agent/store/span-state.js';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { agentClient, call, operatorClient } from '../../cli/clients.js';
import type {
  AgentStatusReply__Output,
  ExplainReply__Output,
  ListPoliciesReply__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { ROOT, WeirProcess, eventually, freePort } from '../support/processes.js';
import { TRANSPORTS, TransportRig } from '../support/transports.js';

const NODES = ['node-a', 'node-b', 'node-c'];

for (const transport of TRANSPORTS)
  describe(`controller and agents over ${transport}`, () => {
    const rig = new TransportRig(transport, 'it', NODES);
    let dir: string;
    let manifests: string;
    let address: string;
    let controller: WeirProcess;
    const agents = new Map<string, WeirProcess>();
    const agentPorts = new Map<string, number>();

    const startController = () =>
      new WeirProcess('controller', 'weir-controller', [
        '--manifests',
        manifests,
        '--listen',
        address,
        '--state-dir',
        join(dir, 'controller'),
        '--cluster',
        'it',
        ...rig.controllerArgs(),
      ]);
    const startAgent = async (node: string) => {
      const port = agentPorts.get(node) ?? (await freePort());
      agentPorts.set(node, port);
      const p = new WeirProcess(node, 'weir-agent', [
        '--node',
        node,
        '--controller',
        address,
        '--state-dir',
        join(dir, node),
        '--listen',
        `127.0.0.1:${port}`,
        ...rig.agentArgs(),
      ]);
      agents.set(node, p);
      await p.waitFor((l) => l.msg === 'agent API serving', 'the agent API');
      return p;
    };
    const status = () => {
      const c = operatorClient(address);
      return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 2_000);
    };
    const policy = (name: string) => {
      const c = operatorClient(address);
      return call<object, ListPoliciesReply__Output>(
        c,
        c.ListPolicies,
        { name },
        'controller',
        2_000,
      ).then((r) => r.policies[0]!);
    };
    const agentStatus = (node: string) => {
      const c = agentClient(`127.0.0.1:${agentPorts.get(node)}`);
      return call<object, AgentStatusReply__Output>(c, c.GetAgentStatus, {}, node, 2_000);
    };
    /** The verdict the agent's own tables give. */
    const enforced = async (node: string, from: string, to: string, port: number) => {
      const c = agentClient(`127.0.0.1:${agentPorts.get(node)}`);
      const r = await call<object, ExplainReply__Output>(
        c,
        c.Evaluate,
        { from, to, protocol: 'TCP', port },
        node,
        2_000,
      );
      return {
        revision: Number(r.revision),
        allowed: (JSON.parse(r.explanationJson) as { allowed: boolean }).allowed,
      };
    };
    /** Every agent connected and in sync; returns the status. */
    const converged = (predicate: (s: StatusReply__Output) => boolean = () => true) =>
      eventually(async () => {
        const s = await status();
        const ok = NODES.every((n) =>
          s.agents.find((a) => a.node === n && a.connected && a.inSync),
        );
        return ok && predicate(s) ? s : undefined;
      }, 'every agent in sync');
    const edit = async (file: string, from: string, to: string) => {
      const p = join(manifests, file);
      const text = await readFile(p, 'utf8');
      assert.ok(text.includes(from), `${file} contains ${from}`);
      await writeFile(p, text.replace(from, to));
    };

    before(async () => {
      await rig.start();
      dir = await mkdtemp(join(tmpdir(), 'weir-it-'));
      manifests = join(dir, 'manifests');
      await cp(join(ROOT, 'deploy', 'examples'), manifests, { recursive: true });
      address = `127.0.0.1:${await freePort()}`;
      controller = startController();
      await controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
      for (const n of NODES) await startAgent(n);
    });

    after(async () => {
      await Promise.all([controller?.kill(), ...[...agents.values()].map((a) => a.kill())]);
      await rig[Symbol.asyncDispose]();
      await rm(dir, { recursive: true, force: true });
    });

    test('every agent receives its span and ACKs it', async () => {
      const s = await converged();
      assert.equal(s.source?.synced, true);
      for (const a of s.agents)
        assert.equal(a.appliedRevision, s.revision, `${a.node} applied the current revision`);
      // node-b runs shop/cart and shop/redis: the policies that select them and nothing from payments.
      const b = s.agents.find((a) => a.node === 'node-b')!;
      assert.equal(b.localEndpoints, 2);
      assert.deepEqual(await enforced('node-b', 'shop/web', 'shop/cart', 9000), {
        revision: Number(s.revision),
        allowed: true,
      });
      assert.equal((await enforced('node-b', '10.244.1.30', 'shop/redis', 6379)).allowed, false);
    });

    test('editing the manifests converges every agent to the new revision', async () => {
      const before = Number((await status()).revision);
      // redis now also takes connections from monitoring.
      await edit(
        '20-policies.yaml',
        '    - from: [{ podSelector: { matchLabels: { app: cart } } }]\n      ports: [{ protocol: TCP, port: 6379 }]',
        '    - from: [{ podSelector: { matchLabels: { app: cart } } }, { namespaceSelector: { matchLabels: { team: platform } } }]\n      ports: [{ protocol: TCP, port: 6379 }]',
      );
      const s = await converged((x) => Number(x.revision) > before);
      assert.equal((await enforced('node-b', '10.244.1.30', 'shop/redis', 6379)).allowed, true);
      // The change concerns node-b only: the others received nothing for it.
      for (const a of s.agents.filter((x) => x.node !== 'node-b'))
        assert.ok(Number(a.appliedRevision) <= before, `${a.node} got nothing`);
      // Its propagation is timed from the commit to node-b's ACK, apart from start-up resync.
      const r = (await policy('shop/redis-from-cart')).realization!;
      assert.deepEqual(r.applied, ['node-b']);
      assert.deepEqual(Object.keys(r.latencyMs), ['node-b']);
      assert.deepEqual(r.resyncMs, {});
      const started = (await policy('shop/web-from-anywhere')).realization!;
      assert.deepEqual(started.latencyMs, {}, 'unchanged since start-up: no propagation');
      assert.deepEqual(Object.keys(started.resyncMs), ['node-a']);
    });

    test('a bad policy is rejected at the controller, never reaches an agent, and is reported while the rest keeps working', async () => {
      const before = await status();
      await writeFile(
        join(manifests, '30-bad.yaml'),
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 10}]\n',
      );
      const s = await eventually(async () => {
        const x = await status();
        return x.rejections.length > 0 ? x : undefined;
      }, 'the rejection in status');
      assert.deepEqual(s.rejections, [
        {
          object: 'NetworkPolicy shop/broken',
          problems: [
            '30-bad.yaml:7: spec.ingress[0].ports[0].endPort: 10 must be greater than or equal to port 80',
            'rejected: not in force (no valid version of it has been read)',
          ],
        },
      ]);
      assert.equal(s.revision, before.revision, 'nothing changed for anyone');
      assert.equal((await enforced('node-a', 'shop/web', 'shop/web', 80)).allowed, true);
      assert.equal((await enforced('node-b', 'shop/web', 'shop/cart', 9000)).allowed, true);
    });

    test('killing the controller leaves every agent enforcing its last span', async () => {
      const s = await status();
      await controller.kill();
      for (const n of NODES) {
        const a = await eventually(async () => {
          const x = await agentStatus(n);
          return x.headless ? x : undefined;
        }, `${n} headless`);
        assert.equal(a.appliedRevision, s.agents.find((x) => x.node === n)!.appliedRevision);
      }
      assert.equal((await enforced('node-b', 'shop/web', 'shop/cart', 9000)).allowed, true);
      assert.equal((await enforced('node-b', 'shop/redis', 'shop/cart', 9000)).allowed, false);
    });

    test('a restarted agent enforces its persisted span before it reaches a controller', async () => {
      const old = agents.get('node-c')!;
      const revision = (await agentStatus('node-c')).appliedRevision;
      await old.kill();
      const fresh = await startAgent('node-c');
      assert.ok(fresh.lines.some((l) => l.msg === 'enforcing persisted span'));
      const a = await agentStatus('node-c');
      assert.equal(a.appliedRevision, revision);
      assert.equal(a.headless, true);
      assert.equal(
        (await enforced('node-c', '10.244.1.10', 'payments/checkout', 7000)).allowed,
        false,
      );
      assert.equal(
        (await enforced('node-c', 'shop/cart', 'payments/checkout', 7000)).allowed,
        true,
      );
    });

    test('a restarted controller resyncs the agents by delta, including changes made while it was down', async () => {
      await rm(join(manifests, '30-bad.yaml'));
      // While the controller is down, checkout stops taking connections from the cart.
      await edit(
        '20-policies.yaml',
        '          podSelector: { matchLabels: { app: cart } }\n      ports: [{ port: 7000 }]',
        '          podSelector: { matchLabels: { app: nobody } }\n      ports: [{ port: 7000 }]',
      );
      controller = startController();
      // A loaded machine may take seconds to start it: wait for it to listen before asking.
      await controller.waitFor((l) => l.msg === 'controller serving', 'the restarted controller');
      const s = await converged((x) => x.rejections.length === 0);
      for (const n of NODES) {
        await controller.waitFor(
          (l) => l.msg === 'agent connected' && l.node === n,
          `${n} to reconnect`,
        );
        const hello = controller.lines.find((l) => l.msg === 'agent connected' && l.node === n)!;
        assert.equal(hello.delta, true, `${n} resynced by delta`);
      }
      const c = agents.get('node-c')!;
      await c.waitFor((l) => l.msg === 'span applied' && l.snapshot === false, 'a delta on node-c');
      assert.equal(
        (await enforced('node-c', '10.244.2.11', 'payments/checkout', 7000)).allowed,
        false,
      );
      assert.equal(
        Number(s.agents.find((a) => a.node === 'node-c')!.appliedRevision),
        Number(s.revision),
      );
    });

    test('weirctl reports status, policies with their realization, and live explanations', async () => {
      const run = async (...args: string[]) => {
        const { execFile } = await import('node:child_process');
        return new Promise<{ code: number; out: string; err: string }>((resolve) =>
          execFile(
            process.execPath,
            [join(ROOT, 'bin', 'weirctl'), ...args, '--controller', address],
            (e, out, err) => resolve({ code: e ? Number(e.code) : 0, out, err }),
          ),
        );
      };
      const st = await run('status', '-o', 'json');
      assert.equal(st.code, 0, st.err);
      assert.deepEqual(
        JSON.parse(st.out).agents.map((a: { node: string; inSync: boolean }) => [a.node, a.inSync]),
        NODES.map((n) => [n, true]),
      );
      const pl = await run('policy', 'get', 'shop/redis-from-cart', '-o', 'json');
      assert.equal(pl.code, 0, pl.err);
      const entry = JSON.parse(pl.out).policies[0];
      assert.deepEqual(entry.realization.nodes, ['node-b']);
      assert.deepEqual(entry.realization.applied, ['node-b']);
      assert.deepEqual(entry.selected, ['shop/redis']);
      const table = await run('policy', 'list');
      assert.match(
        table.out,
        /shop\/redis-from-cart\s+NetworkPolicy\s+-\s+Ingress\s+2\s+1\s+1\/1/,
        'the NetworkPolicy tier, two peers, one pod, applied on its one node',
      );
      const ex = await run(
        'explain',
        '--from',
        'monitoring/prometheus',
        '--to',
        'shop/redis',
        '--port',
        '6379',
        '-o',
        'json',
      );
      assert.equal(ex.code, 0, ex.err);
      assert.equal(JSON.parse(ex.out).ingress.rule.field, 'spec.ingress[0].from[1]');
      const missing = await run('policy', 'get', 'shop/nope');
      assert.equal(missing.code, 1, 'not found is an error, as kubectl exits');
      assert.match(missing.err, /no NetworkPolicy shop\/nope/);
    });

    test('an agent that reconnects holding its current span is connected and in sync, not headless, with nothing sent', async () => {
      await agents.get('node-a')!.kill();
      const since = controller.lines.length;
      const fresh = await startAgent('node-a');
      await controller.waitFor(
        (l) => l.msg === 'agent connected' && l.node === 'node-a',
        'node-a to reconnect',
        15_000,
        since,
      );
      const a = await eventually(async () => {
        const x = await agentStatus('node-a');
        return x.controllerConnected ? x : undefined;
      }, 'node-a connected');
      assert.equal(a.headless, false);
      const s = await converged();
      const row = s.agents.find((x) => x.node === 'node-a')!;
      assert.equal(row.inForceHash, a.inForceHash);
      assert.equal(row.inForceHash, row.spanHash);
      assert.ok(!fresh.lines.some((l) => l.msg === 'span applied'), 'nothing was sent');
    });

    test('a span file copied from another node at the same revision is not taken as in sync: the node gets its own span', async () => {
      // Every agent starts over, so that all hold the current revision.
      for (const n of NODES) {
        await agents.get(n)!.kill();
        await rm(join(dir, n), { recursive: true, force: true });
      }
      for (const n of NODES) await startAgent(n);
      const s = await converged();
      const revisionOf = (n: string) => s.agents.find((a) => a.node === n)!.appliedRevision;
      assert.equal(revisionOf('node-b'), revisionOf('node-c'));
      const killed = s.agents.find((a) => a.node === 'node-c')!.instance;
      await agents.get('node-c')!.kill();
      await cp(join(dir, 'node-b', SpanState.FILE), join(dir, 'node-c', SpanState.FILE));
      await startAgent('node-c');
      // The new process, not the killed one (over NATS a dead agent's session lives until its beats stop counting).
      await converged((x) => x.agents.find((a) => a.node === 'node-c')!.instance !== killed);
      // checkout admits only the cart (node-b's span has no such policy: it would admit web).
      assert.equal((await enforced('node-c', '10.244.1.10', '10.244.3.20', 7000)).allowed, false);
      const c = await agentStatus('node-c');
      assert.equal(
        c.inForceHash,
        (await status()).agents.find((a) => a.node === 'node-c')!.spanHash,
      );
    });

    test('an agent that cannot persist an update refuses it; the controller retries with backoff, shows why, and the node converges once it can', async () => {
      // A directory where the span file goes: every save fails (as on a full
      // disk), while the agent keeps its state directory and the lock on it.
      const spanFile = join(dir, 'node-b', SpanState.FILE);
      await rm(spanFile, { force: true });
      await mkdir(spanFile);
      const before = Number((await status()).revision);
      await edit(
        '20-policies.yaml',
        'ports: [{ protocol: TCP, port: 6379 }]',
        'ports: [{ protocol: TCP, port: 6380 }]',
      );
      const failing = await eventually(async () => {
        const b = (await status()).agents.find((a) => a.node === 'node-b')!;
        return b.lastError !== '' && b.retryAttempts > 0 && Number(b.nextRetryUnixMs) > 0
          ? b
          : undefined;
      }, 'the refusal and the retry in status');
      assert.equal(failing.inSync, false);
      assert.equal(failing.connected, true);
      assert.match(failing.lastError, /EISDIR|ENOTEMPTY|EEXIST|is a directory|not empty/);
      assert.equal(
        (await enforced('node-b', 'shop/cart', 'shop/redis', 6379)).allowed,
        true,
        'the previous span stays in force',
      );
      await rm(spanFile, { recursive: true });
      const s = await converged((x) => Number(x.revision) > before);
      const b = s.agents.find((a) => a.node === 'node-b')!;
      assert.deepEqual([b.lastError, b.retryAttempts, b.nextRetryUnixMs], ['', 0, '0']);
      assert.equal((await enforced('node-b', 'shop/cart', 'shop/redis', 6380)).allowed, true);
      assert.equal((await enforced('node-b', 'shop/cart', 'shop/redis', 6379)).allowed, false);
    });
  });
