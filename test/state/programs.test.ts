/**
 * The controller and agents as real processes, and what they do with the
 * state they find: one process per state directory; a state file that is
 * not provably theirs and intact is moved aside, reported in status and
 * metrics, and replaced by a resync by snapshot, with revisions that only
 * go forward.
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { agentClient, call, operatorClient } from '../../cli/clients.js';
import type {
  AgentStatusReply__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { ChecksummedFile } from '../../shared/state/checksummed-file.js';
import { ROOT, WeirProcess, eventually, freePort } from '../support/processes.js';

const NODES = ['node-a', 'node-b'];

describe('state directories of running programs', () => {
  let dir: string;
  let manifests: string;
  let address: string;
  let controller: WeirProcess;
  let metricsPort: number;
  const agents = new Map<string, WeirProcess>();
  const ports = new Map<string, { api: number; metrics: number }>();
  const extra: WeirProcess[] = [];

  const startController = async () => {
    metricsPort = await freePort();
    const p = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      manifests,
      '--listen',
      address,
      '--state-dir',
      join(dir, 'controller'),
      '--cluster',
      'st',
      '--metrics-listen',
      `127.0.0.1:${metricsPort}`,
    ]);
    await p.waitFor((l) => l.msg === 'controller serving', 'the controller', 60_000);
    return p;
  };
  const startAgent = async (node: string) => {
    const port = ports.get(node) ?? { api: await freePort(), metrics: await freePort() };
    ports.set(node, port);
    const p = new WeirProcess(node, 'weir-agent', [
      '--node',
      node,
      '--controller',
      address,
      '--state-dir',
      join(dir, node),
      '--listen',
      `127.0.0.1:${port.api}`,
      '--metrics-listen',
      `127.0.0.1:${port.metrics}`,
    ]);
    agents.set(node, p);
    await p.waitFor((l) => l.msg === 'agent API serving', `${node}'s API`, 60_000);
    return p;
  };
  const status = () => {
    const c = operatorClient(address);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 5_000);
  };
  const agentStatus = (node: string) => {
    const c = agentClient(`127.0.0.1:${ports.get(node)!.api}`);
    return call<object, AgentStatusReply__Output>(c, c.GetAgentStatus, {}, node, 5_000);
  };
  const converged = (predicate: (s: StatusReply__Output) => boolean = () => true) =>
    eventually(
      async () => {
        const s = await status();
        const ok = NODES.every((n) =>
          s.agents.some((a) => a.node === n && a.connected && a.inSync),
        );
        return ok && predicate(s) ? s : undefined;
      },
      'every agent in sync',
      60_000,
    );
  const metrics = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  /** The exit status of a program that must refuse to start; fails when it keeps running. */
  const exitOf = (p: WeirProcess, timeoutMs = 60_000) =>
    new Promise<number | null>((resolve, reject) => {
      if (p.child.exitCode !== null) return resolve(p.child.exitCode);
      const t = setTimeout(
        () => reject(new Error(`${p.name} still runs after ${timeoutMs} ms: it did not refuse`)),
        timeoutMs,
      );
      p.child.once('exit', (code) => {
        clearTimeout(t);
        resolve(code);
      });
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-state-it-'));
    manifests = join(dir, 'manifests');
    await cp(join(ROOT, 'deploy', 'examples'), manifests, { recursive: true });
    address = `127.0.0.1:${await freePort()}`;
    controller = await startController();
    for (const n of NODES) await startAgent(n);
    await converged();
  });

  after(async () => {
    await Promise.all([controller?.kill(), ...[...agents.values(), ...extra].map((a) => a.kill())]);
    await rm(dir, { recursive: true, force: true });
  });

  test('a second controller on the same state dir refuses to start, naming the one that holds it', async () => {
    const second = new WeirProcess('controller-2', 'weir-controller', [
      '--manifests',
      manifests,
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--state-dir',
      join(dir, 'controller'),
      '--cluster',
      'st',
    ]);
    extra.push(second);
    assert.equal(await exitOf(second), 1);
    const said = second.lines.map((l) => l.msg ?? '').join('\n');
    assert.match(
      said,
      new RegExp(
        `error: state dir ${join(dir, 'controller')} is in use by weir-controller \\(cluster st\\), pid ${controller.child.pid} on host `,
      ),
    );
    assert.equal(controller.child.exitCode, null, 'the first one still runs');
  });

  test('a second agent on the same state dir refuses to start, naming the one that holds it', async () => {
    const second = new WeirProcess('node-a-2', 'weir-agent', [
      '--node',
      'node-a',
      '--controller',
      address,
      '--state-dir',
      join(dir, 'node-a'),
    ]);
    extra.push(second);
    assert.equal(await exitOf(second), 1);
    const said = second.lines.map((l) => l.msg ?? '').join('\n');
    assert.match(
      said,
      new RegExp(
        `is in use by weir-agent \\(node node-a\\), pid ${agents.get('node-a')!.child.pid} `,
      ),
    );
    const s = await status();
    assert.ok(
      s.agents.find((a) => a.node === 'node-a')?.connected,
      'the first one is still connected',
    );
  });

  test('an agent refuses a state dir others can write', async () => {
    const open = join(dir, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    const p = new WeirProcess('node-x', 'weir-agent', [
      '--node',
      'node-x',
      '--controller',
      address,
      '--state-dir',
      open,
    ]);
    extra.push(p);
    assert.equal(await exitOf(p), 1);
    assert.match(
      p.lines.map((l) => l.msg ?? '').join('\n'),
      /error: state dir .*open: is writable by its group and others \(mode 0777\)/,
    );
    assert.deepEqual(await readdir(open), [], 'nothing written there');
  });

  test("an agent given another node's span file at the same revision moves it aside and resyncs its own span by snapshot", async () => {
    const own = await agentStatus('node-a');
    await agents.get('node-a')!.stop();
    // What an operator restoring the wrong backup does: node-b's state over node-a's.
    for (const f of await readdir(join(dir, 'node-b')))
      if (f !== 'lock')
        await cp(join(dir, 'node-b', f), join(dir, 'node-a', f), { recursive: true });
    const since = controller.lines.length;
    const a = await startAgent('node-a');
    const rejected = await a.waitFor(
      (l) =>
        l.msg ===
        'persisted span rejected; enforcing no span until the controller sends a snapshot',
      'the rejection',
    );
    assert.equal((rejected.rejection as { reason: string }).reason, 'foreign');
    const hello = await controller.waitFor(
      (l) => l.msg === 'agent connected' && l.node === 'node-a',
      'node-a to connect',
      60_000,
      since,
    );
    assert.equal(hello.revision, 0, 'it holds nothing');
    assert.equal(hello.delta, false, 'so it is sent a snapshot');
    await converged();
    const now = await agentStatus('node-a');
    assert.equal(now.localEndpoints, own.localEndpoints, "node-a's own pods are in its tables");
    assert.equal(now.policies, own.policies, "node-a's own policies, not node-b's");
    assert.match(
      await metrics(ports.get('node-a')!.metrics),
      /weir_agent_state_file_rejections_total\{file="span\.state",reason="foreign"\} 1/,
    );
  });

  test('a controller whose state file holds revision -5 moves it aside, starts fresh, says so in status and metrics, and its revisions move past what its agents hold', async () => {
    const held = new Map(
      (await converged()).agents.map((a) => [a.node, Number(a.appliedRevision)]),
    );
    await controller.stop();
    await new ChecksummedFile(
      join(dir, 'controller'),
      'controller.state',
      'controller-state',
    ).write({ cluster: 'st' }, JSON.stringify({ revision: -5, nodes: {} }));
    controller = await startController();
    // The agents prove by hash that they hold what the fresh controller
    // computes, so nothing is transferred; the controller's revisions move
    // past every revision an agent holds.
    const s = await converged((x) => Number(x.revision) > Math.max(...held.values()));
    assert.ok(
      s.warnings.some((w) =>
        /state file .*controller\.state rejected \(corrupt: revision: -5 is not a non-negative safe integer\); moved aside to .*controller\.state\.corrupt-\d{8}T\d{6}\.\d{3}Z; started fresh/.test(
          w,
        ),
      ),
      s.warnings.join('\n'),
    );
    for (const n of NODES) {
      const hello = controller.lines.find((l) => l.msg === 'agent connected' && l.node === n)!;
      assert.equal(hello.inSync, true, `${n} proved in sync by its hash`);
    }
    assert.match(
      await metrics(metricsPort),
      /weir_controller_state_file_rejections_total\{file="controller\.state",reason="corrupt"\} 1/,
    );
  });
});
