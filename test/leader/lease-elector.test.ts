/**
 * Leader election on a Lease, against the fake API server: acquisition,
 * waiting, takeover after expiry, loss, release; and two controller
 * processes with --leader-elect, of which only one serves.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { call, operatorClient } from '../../cli/clients.js';
import { LeaseElector, type LeaseElectorOptions } from '../../controller/leader/lease-elector.js';
import type { StatusReply__Output } from '../../shared/generated/weir/v1/index.js';
import { FakeApiServer, type Obj } from '../../testing/fake-apiserver.js';
import { WeirProcess, eventually, freePort } from '../support/processes.js';

interface LogLine {
  readonly msg?: string;
  readonly [k: string]: unknown;
}

const NS = 'weir-system';
const NAME = 'weir-controller';

/**
 * Short times, with room for a loaded machine: a 3 s lease renewed every
 * 200 ms, given up after 2.5 s without a renewal; candidates retry every 100 ms.
 */
const FAST = {
  leaseDurationSec: 3,
  renewDeadlineMs: 2_500,
  renewIntervalMs: 200,
  retryIntervalMs: 100,
};

const spec = (lease: Obj | undefined) =>
  (lease?.spec ?? {}) as {
    holderIdentity?: string;
    leaseTransitions?: number;
    renewTime?: string;
    acquireTime?: string;
    leaseDurationSeconds?: number;
  };

describe('Lease elector', () => {
  let server: FakeApiServer;
  const electors: LeaseElector[] = [];
  const aborts: AbortController[] = [];

  before(async () => {
    server = await FakeApiServer.start();
  });
  after(async () => {
    await server[Symbol.asyncDispose]();
  });
  afterEach(async () => {
    for (const a of aborts.splice(0)) a.abort();
    for (const e of electors.splice(0)) await e[Symbol.asyncDispose]();
    server.remove('Lease', NS, NAME);
  });

  const elector = (identity: string, options: Partial<LeaseElectorOptions> = {}) => {
    const logs: LogLine[] = [];
    const e = new LeaseElector({
      kubeConfig: server.kubeConfig(),
      namespace: NS,
      name: NAME,
      identity,
      log: pino(
        { level: 'debug' },
        { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) },
      ),
      ...FAST,
      ...options,
    });
    electors.push(e);
    return { e, logs, lost: [] as string[] };
  };
  /** acquire() in the background; the promise settles to "leading" or the error. */
  const acquiring = (e: LeaseElector) => {
    const abort = new AbortController();
    aborts.push(abort);
    return e.acquire(abort.signal).then(
      () => 'leading',
      (err: Error) => err,
    );
  };
  const lease = () => server.get('Lease', NS, NAME);

  test('acquires a lease that does not exist, and renews it', async () => {
    const a = elector('a');
    await a.e.acquire();
    assert.equal(a.e.isLeader(), true);
    const first = lease()!;
    assert.equal(spec(first).holderIdentity, 'a');
    assert.equal(spec(first).leaseDurationSeconds, 3);
    assert.equal(spec(first).leaseTransitions, 0);
    assert.match(spec(first).renewTime!, /\.\d{6}Z$/, 'MicroTime, as the API server requires');
    // Renewals: the lease keeps changing, still held by a.
    await eventually(
      async () =>
        Number(lease()!.metadata!.resourceVersion) >= Number(first.metadata!.resourceVersion) + 3
          ? true
          : undefined,
      'three renewals',
    );
    assert.equal(spec(lease()).holderIdentity, 'a');
    assert.equal(
      spec(lease()).acquireTime,
      spec(first).acquireTime,
      'renewing keeps the acquire time',
    );
  });

  test('a second elector waits while the first renews', async () => {
    const a = elector('a');
    await a.e.acquire();
    const b = elector('b');
    let settled: unknown;
    void acquiring(b.e).then((r) => (settled = r));
    // Attempts spanning well over one lease duration (at least 100 ms apart, a 3 s lease) while a keeps renewing.
    const attempts = () => b.logs.filter((l) => l.msg === 'lease held by another');
    await eventually(
      async () => {
        const seen = attempts();
        return seen.length >= 2 &&
          (seen.at(-1)!.time as number) - (seen[0]!.time as number) > 2 * 3_000
          ? true
          : undefined;
      },
      'b trying for two lease durations',
      30_000,
    );
    assert.equal(settled, undefined, 'b is still waiting');
    assert.equal(b.e.isLeader(), false);
    assert.equal(a.e.isLeader(), true);
    assert.equal(spec(lease()).holderIdentity, 'a');
    assert.equal(b.logs.filter((l) => l.msg === 'waiting for the lease').length, 1);
  });

  test('takes over once the first stops renewing and the lease expires', async () => {
    const a = elector('a', { releaseOnDispose: false });
    await a.e.acquire();
    const b = elector('b');
    const result = acquiring(b.e);
    await eventually(
      async () => (b.logs.some((l) => l.msg === 'waiting for the lease') ? true : undefined),
      'b waiting',
    );
    await a.e[Symbol.asyncDispose](); // as a crash: no release
    assert.equal(spec(lease()).holderIdentity, 'a', 'not released');
    assert.equal(await result, 'leading');
    assert.equal(b.e.isLeader(), true);
    assert.equal(spec(lease()).holderIdentity, 'b');
    assert.equal(spec(lease()).leaseTransitions, 1);
    assert.equal(b.logs.find((l) => l.msg === 'lease taken')?.previous, 'a');
  });

  test('two candidates racing for a free lease: exactly one wins', async () => {
    const candidates = ['a', 'b', 'c'].map((id) => elector(id));
    const results = candidates.map((c) => acquiring(c.e));
    const first = await Promise.race(results.map((r, i) => r.then(() => i)));
    assert.equal(candidates.filter((c) => c.e.isLeader()).length, 1);
    assert.equal(spec(lease()).holderIdentity, ['a', 'b', 'c'][first]);
  });

  test('another holder taking the lease is a lost renewal: onLost is called once', async () => {
    const a = elector('a');
    const lost: string[] = [];
    a.e.onLost((reason) => lost.push(reason));
    await a.e.acquire();
    const current = lease()!;
    server.apply({ ...current, spec: { ...spec(current), holderIdentity: 'intruder' } });
    await eventually(async () => (lost.length > 0 ? true : undefined), 'onLost');
    assert.equal(a.e.isLeader(), false);
    assert.match(lost[0]!, /held by intruder/);
    assert.equal(spec(lease()).holderIdentity, 'intruder', 'the lost leader does not write again');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lost.length, 1);
    assert.equal(spec(lease()).holderIdentity, 'intruder');
  });

  test('renewals that keep conflicting give up leadership before the lease could expire', async () => {
    const a = elector('a');
    const lost: string[] = [];
    a.e.onLost((reason) => lost.push(reason));
    await a.e.acquire();
    const conflicts = server.fail({
      method: 'PUT',
      path: /\/leases\//,
      status: 409,
      reason: 'Conflict',
    });
    await eventually(async () => (lost.length > 0 ? true : undefined), 'onLost');
    assert.ok(conflicts.hits >= 2, 'renewal was retried');
    assert.equal(a.e.isLeader(), false);
    assert.match(lost[0]!, /could not be renewed/);
    conflicts.clear();
  });

  test('an unreachable API server ends leadership at the renew deadline', async () => {
    const a = elector('a');
    const lost: string[] = [];
    a.e.onLost((reason) => lost.push(reason));
    await a.e.acquire();
    const outage = server.fail({ path: /\/leases/, status: 503, reason: 'ServiceUnavailable' });
    await eventually(async () => (lost.length > 0 ? true : undefined), 'onLost');
    assert.equal(a.e.isLeader(), false);
    outage.clear();
  });

  test('disposing a leader releases the lease, and a waiting candidate takes it without waiting for expiry', async () => {
    // A long lease: taking it over without the release would take half a minute.
    const slow = {
      leaseDurationSec: 30,
      renewDeadlineMs: 20_000,
      renewIntervalMs: 100,
      retryIntervalMs: 100,
    };
    const a = elector('a', slow);
    await a.e.acquire();
    const b = elector('b', slow);
    const result = acquiring(b.e);
    await eventually(
      async () => (b.logs.some((l) => l.msg === 'waiting for the lease') ? true : undefined),
      'b waiting',
    );
    await a.e[Symbol.asyncDispose]();
    assert.equal(a.e.isLeader(), false);
    assert.equal(a.logs.filter((l) => l.msg === 'lease released').length, 1);
    assert.equal(await result, 'leading');
    assert.equal(spec(lease()).holderIdentity, 'b');
    await a.e[Symbol.asyncDispose](); // idempotent
  });

  test('acquire() rejects when its signal aborts, and when the elector is disposed', async () => {
    const a = elector('a');
    await a.e.acquire();
    const b = elector('b');
    const abort = new AbortController();
    const waiting = b.e.acquire(abort.signal);
    abort.abort(new Error('stop waiting'));
    await assert.rejects(waiting, /stop waiting/);
    const c = elector('c');
    const waitingC = c.e.acquire();
    await c.e[Symbol.asyncDispose]();
    await assert.rejects(waitingC, /disposed/);
  });
});

describe('weir-controller --leader-elect', () => {
  let dir: string;
  let server: FakeApiServer;
  const processes: WeirProcess[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-leader-'));
    server = await FakeApiServer.start();
    server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    server.apply({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny', namespace: 'shop' },
      spec: { podSelector: {} },
    });
    await server.writeKubeConfig(join(dir, 'kubeconfig'));
  });
  after(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await server[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (name: string) => {
    const address = `127.0.0.1:${await freePort()}`;
    const p = new WeirProcess(name, 'weir-controller', [
      '--kubeconfig',
      join(dir, 'kubeconfig'),
      '--leader-elect',
      '--listen',
      address,
      '--cluster',
      'ha',
    ]);
    processes.push(p);
    return { p, address };
  };
  const status = (address: string) => {
    const c = operatorClient(address);
    return call<object, StatusReply__Output>(c, c.GetStatus, {}, 'controller', 1_000);
  };

  test('only the leader serves; on a clean stop the other takes over; a leader that loses the lease exits', async () => {
    const one = await start('one');
    await one.p.waitFor((l) => l.msg === 'controller serving', 'the first controller serving');
    const s = await eventually(async () => {
      const x = await status(one.address);
      return x.source?.synced ? x : undefined;
    }, 'the first controller synced');
    assert.equal(s.source?.leadership, 'leader');
    assert.equal(s.policies, 1);

    const two = await start('two');
    await two.p.waitFor((l) => l.msg === 'waiting for the lease', 'the second controller waiting');
    assert.equal(
      two.p.lines.some((l) => l.msg === 'controller serving'),
      false,
    );
    await assert.rejects(status(two.address), /cannot reach/);

    // SIGTERM: the first stops serving and releases the lease; the second takes it.
    assert.equal(await one.p.stop(), 0);
    assert.ok(one.p.lines.some((l) => l.msg === 'lease released'));
    await two.p.waitFor((l) => l.msg === 'controller serving', 'the second controller serving');
    const s2 = await eventually(async () => {
      const x = await status(two.address);
      return x.source?.synced ? x : undefined;
    }, 'the second controller synced');
    assert.equal(s2.source?.leadership, 'leader');

    // Someone else takes the lease: the second controller must stop at once.
    const current = server.get('Lease', 'weir-system', 'weir-controller')!;
    server.apply({ ...current, spec: { ...(current.spec as object), holderIdentity: 'intruder' } });
    await two.p.waitFor(
      (l) => l.msg === 'leadership lost; exiting',
      'the second controller giving up',
    );
    assert.equal(await two.p.stop(), 1);
  });
});
