/**
 * The probes the install's manifests call on the metrics listener:
 * /healthz (alive) and /readyz, whose meaning is each program's — the
 * controller is ready leading with its source synced, or standing by with
 * the Lease readable; the agent once a span is in force and the datapath
 * programmed with it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { LeaseElector } from '../../controller/leader/lease-elector.js';
import { type Readiness, serveMetrics } from '../../shared/metrics.js';
import { FakeApiServer } from '../../testing/fake-apiserver.js';
import { ROOT, WeirProcess, eventually, freePort } from '../support/processes.js';

const silent = pino({ level: 'silent' });

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('the metrics listener answers the probes', () => {
  const cases: Array<{
    name: string;
    readiness: (() => Readiness) | undefined;
    path: string;
    status: number;
    body: RegExp;
  }> = [
    {
      name: '/healthz without a readiness check',
      readiness: undefined,
      path: '/healthz',
      status: 200,
      body: /^ok$/m,
    },
    {
      name: '/readyz without a readiness check is not found (a probe fails)',
      readiness: undefined,
      path: '/readyz',
      status: 404,
      body: /^$/,
    },
    {
      name: '/readyz when ready',
      readiness: () => ({ ready: true, reason: 'revision 3 in force' }),
      path: '/readyz',
      status: 200,
      body: /^ready: revision 3 in force$/m,
    },
    {
      name: '/readyz when not ready, with the reason',
      readiness: () => ({ ready: false, reason: 'no span yet' }),
      path: '/readyz',
      status: 503,
      body: /^not ready: no span yet$/m,
    },
    {
      name: '/readyz when the check throws is not ready',
      readiness: () => {
        throw new TypeError('boom');
      },
      path: '/readyz',
      status: 503,
      body: /^not ready: the readiness check failed$/m,
    },
  ];
  for (const c of cases)
    test(`${c.name}: ${c.status}`, async () => {
      const { server, port } = await serveMetrics(
        new Registry(),
        '127.0.0.1:0',
        silent,
        c.readiness,
      );
      try {
        const r = await get(port, c.path);
        assert.equal(r.status, c.status);
        assert.match(r.body, c.body);
      } finally {
        server.close();
      }
    });
});

describe('a standby controller is ready while it can read the Lease', () => {
  let server: FakeApiServer;
  before(async () => {
    server = await FakeApiServer.start();
  });
  after(async () => {
    await server[Symbol.asyncDispose]();
  });

  test('standing by behind a leader is ready; without answers from the API server it is not; leading but not serving is not', async () => {
    const fast = {
      leaseDurationSec: 2,
      renewDeadlineMs: 1_500,
      renewIntervalMs: 200,
      retryIntervalMs: 100,
    };
    const make = (identity: string) =>
      new LeaseElector({
        kubeConfig: server.kubeConfig(),
        namespace: 'weir-system',
        name: 'weir-controller',
        identity,
        log: silent,
        ...fast,
      });
    const a = make('a');
    const b = make('b');
    const waiting = new AbortController();
    try {
      assert.equal(b.standbyReadiness().ready, false, 'before any request');
      await a.acquire();
      assert.deepEqual(a.standbyReadiness(), {
        ready: false,
        reason: 'leading; the controller is starting',
      });
      const acquiring = b.acquire(waiting.signal).catch(() => undefined);
      const ready = await eventually(async () => {
        const r = b.standbyReadiness();
        return r.ready ? r : undefined;
      }, 'b ready as a standby');
      assert.equal(ready.reason, 'standing by; the lease is held by a');
      // The API server stops answering b's reads (a keeps its lease: its renewals are PUTs).
      const outage = server.fail({
        method: 'GET',
        path: /\/leases\//,
        status: 503,
        reason: 'ServiceUnavailable',
      });
      const notReady = await eventually(async () => {
        const r = b.standbyReadiness();
        return r.ready ? undefined : r;
      }, 'b not ready without answers');
      assert.match(notReady.reason, /no Lease request succeeded for \d+ s/);
      outage.clear();
      waiting.abort();
      await acquiring;
    } finally {
      await b[Symbol.asyncDispose]();
      await a[Symbol.asyncDispose]();
    }
  });
});

describe('weir-agent /readyz', () => {
  let dir: string;
  const processes: WeirProcess[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-ready-'));
  });
  after(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await rm(dir, { recursive: true, force: true });
  });

  test("is not ready before a span is in force, ready once the controller's is programmed, and stays ready headless", async () => {
    const controllerAddress = `127.0.0.1:${await freePort()}`;
    const metrics = await freePort();
    const agent = new WeirProcess('agent', 'weir-agent', [
      '--node',
      'node-a',
      '--controller',
      controllerAddress,
      '--state-dir',
      join(dir, 'agent'),
      '--metrics-listen',
      `127.0.0.1:${metrics}`,
    ]);
    processes.push(agent);
    await agent.waitFor((l) => l.msg === 'metrics serving', 'the agent serving metrics');
    assert.equal((await get(metrics, '/healthz')).status, 200);
    const before = await get(metrics, '/readyz');
    assert.equal(before.status, 503);
    assert.match(before.body, /^not ready: no span in force yet/);

    const controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(ROOT, 'deploy', 'examples'),
      '--listen',
      controllerAddress,
    ]);
    processes.push(controller);
    const ready = await eventually(async () => {
      const r = await get(metrics, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 'the agent ready');
    assert.match(ready.body, /^ready: revision \d+ in force on the userspace datapath$/m);

    await controller.stop();
    const headless = await eventually(async () => {
      const r = await get(metrics, '/readyz');
      return /headless/.test(r.body) ? r : undefined;
    }, 'the agent headless');
    assert.equal(headless.status, 200);
  });
});

describe('weir-controller --leader-elect /readyz and weir_controller_leader', () => {
  let dir: string;
  let server: FakeApiServer;
  const processes: WeirProcess[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-ready-le-'));
    server = await FakeApiServer.start();
    server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    await server.writeKubeConfig(join(dir, 'kubeconfig'));
  });
  after(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await server[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  test('the leader is ready once synced and the standby serves its probes and metrics while it waits', async () => {
    const start = async (name: string) => {
      const metrics = await freePort();
      const p = new WeirProcess(name, 'weir-controller', [
        '--kubeconfig',
        join(dir, 'kubeconfig'),
        '--leader-elect',
        '--listen',
        `127.0.0.1:${await freePort()}`,
        '--metrics-listen',
        `127.0.0.1:${metrics}`,
      ]);
      processes.push(p);
      return { p, metrics };
    };
    const one = await start('one');
    await one.p.waitFor((l) => l.msg === 'controller serving', 'the first controller serving');
    const leader = await eventually(async () => {
      const r = await get(one.metrics, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 'the leader ready');
    assert.match(leader.body, /^ready: serving revision \d+, source synced$/m);
    assert.match((await get(one.metrics, '/metrics')).body, /^weir_controller_leader 1$/m);

    const two = await start('two');
    await two.p.waitFor((l) => l.msg === 'waiting for the lease', 'the second controller waiting');
    const standby = await eventually(async () => {
      const r = await get(two.metrics, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 'the standby ready');
    assert.match(standby.body, /^ready: standing by; the lease is held by /m);
    const m = (await get(two.metrics, '/metrics')).body;
    assert.match(m, /^weir_controller_leader 0$/m);
    assert.match(m, /^weir_controller_source_synced 0$/m);
    assert.equal((await get(two.metrics, '/healthz')).status, 200);
  });
});
