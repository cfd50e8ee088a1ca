/**
 * Flow events over NATS end to end: a nats-server configured by `weirctl
 * nats config --auth tls` (TLS, client certificates mapped to Weir's
 * per-role users), the controller and two agents over NATS with their
 * certificates and generated traffic, and `weirctl flows --follow --source
 * nats` reading the whole cluster's events (with an operator's certificate,
 * the flow-reader role) with the filters of `weirctl flows`. The server and
 * the certificates are testing/nats-server.ts' and testing/pki.ts'.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import { ROOT, WeirProcess, eventually, freePort, pki } from '../support/processes.js';

const NODES = ['node-a', 'node-c'];

interface Event {
  node: string;
  type: string;
  flow: {
    sourcePod: string;
    destinationPod: string;
    action: string;
    egress: { policyName: string };
    ingress: { policyName: string };
  };
}

describe('flow events over NATS', () => {
  let dir: string;
  let nats: NatsRig;
  const procs: WeirProcess[] = [];
  const metrics = new Map<string, string>();

  /** weirctl flows --follow --source nats until `enough` holds of the events read (or a bound). */
  const follow = (args: string[], enough: (events: Event[]) => boolean) =>
    new Promise<Event[]>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          join(ROOT, 'bin', 'weirctl'),
          'flows',
          '--follow',
          '--source',
          'nats',
          '--nats',
          nats.urls,
          '--tls-dir',
          pki.operator('read-only'),
          '--cluster',
          'it',
          '-o',
          'json',
          ...args,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const events: Event[] = [];
      let buf = '';
      let err = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`not enough events in 30 s (${events.length} read): ${err}`));
      }, 30_000);
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
      });
      child.stdout.on('data', (b: Buffer) => {
        buf += b.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          events.push(JSON.parse(buf.slice(0, nl)) as Event);
          buf = buf.slice(nl + 1);
        }
        if (enough(events)) {
          clearTimeout(timer);
          child.kill('SIGINT');
          resolve(events);
        }
      });
      child.on('exit', (code) => {
        if (!enough(events)) {
          clearTimeout(timer);
          reject(new Error(`weirctl exited ${code}: ${err}`));
        }
      });
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-natsflows-'));
    nats = await startNats({
      identities: { pki, cluster: 'it', nodes: NODES, readers: ['read-only/test'] },
    });
    await cp(join(ROOT, 'deploy', 'examples'), join(dir, 'manifests'), { recursive: true });
    const natsArgs = (who: string) => [
      '--transport',
      'nats',
      '--nats',
      nats.urls,
      '--tls-dir',
      who === 'controller' ? pki.controller : pki.nodeSync(who),
    ];
    const controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(dir, 'manifests'),
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--cluster',
      'it',
      ...natsArgs('controller'),
    ]);
    procs.push(controller);
    await controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
    for (const node of NODES) {
      const m = `127.0.0.1:${await freePort()}`;
      metrics.set(node, m);
      const agent = new WeirProcess(node, 'weir-agent', [
        '--node',
        node,
        '--cluster',
        'it',
        '--state-dir',
        join(dir, node),
        '--synthetic-traffic',
        '40',
        '--metrics-listen',
        m,
        ...natsArgs(node),
      ]);
      procs.push(agent);
      await agent.waitFor((l) => l.msg === 'span applied', `${node}'s span`);
    }
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await nats?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  test("weirctl follows every node's flow events from NATS, naming pods and policies, replaying with --since", async () => {
    const events = await follow(['--since', '1h'], (e) =>
      NODES.every((n) => e.some((x) => x.node === n && x.type === 'created')),
    );
    for (const e of events) {
      assert.ok(NODES.includes(e.node), `an event of a node: ${e.node}`);
      assert.ok(
        e.flow.sourcePod !== '' || e.flow.destinationPod !== '',
        'at least one end is named as a pod',
      );
    }
    assert.ok(
      events.some((e) => e.flow.egress.policyName !== '' || e.flow.ingress.policyName !== ''),
      'policies are named',
    );
  });

  test('the filters of weirctl flows apply: only denied flows of one pod', async () => {
    const events = await follow(
      ['--since', '1h', '--action', 'deny', '--pod', 'payments/ledger-db'],
      (e) => e.length >= 3,
    );
    for (const e of events) {
      assert.equal(e.flow.action, 'deny');
      assert.ok([e.flow.sourcePod, e.flow.destinationPod].includes('payments/ledger-db'));
    }
  });

  test('agents count the flow events they published', async () => {
    const text = await eventually(async () => {
      const r = await fetch(`http://${metrics.get('node-c')}/metrics`);
      const t = await r.text();
      const n = Number(/^weir_agent_flow_events_published_total (\d+)/m.exec(t)?.[1] ?? 0);
      return n > 0 ? t : undefined;
    }, 'published flow events in the metrics');
    assert.match(text, /weir_agent_flow_events_dropped_total/);
  });
});
