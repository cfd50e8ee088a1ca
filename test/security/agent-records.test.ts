/**
 * The controller's records of agents are bounded: fake node records (hellos
 * for nodes the cluster does not know, agents that vanished without ACKing)
 * do not accumulate. The Distributor alone, with a fake clock: what is
 * kept, what is dropped, what is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Distributor } from '../../controller/distribute/distributor.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { SpanStore } from '../../controller/store/span-store.js';
import { ErrorCode, WeirError } from '../../shared/errors.js';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { silentLogger } from '../../shared/log.js';
import { LogLimiter } from '../../shared/log-limiter.js';
import { namespace, pod, type Raw } from '../../testing/cluster.js';

function rig(options: { maxUnknownNodes?: number; recordTtlMs?: number } = {}) {
  const model = new ClusterModel({ cluster: 't' });
  const objects: Raw[] = [
    namespace('a'),
    pod('a', 'p', { labels: { app: 'x' }, ips: ['10.0.0.1'], node: 'real' }),
  ];
  for (const raw of objects) {
    const r = readKubeObject(raw);
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
  }
  const store = new SpanStore(model);
  store.commit(0);
  let now = 1_000_000;
  const dropped: string[] = [];
  const d = new Distributor(store, {
    log: silentLogger,
    now: () => now,
    ...options,
    observe: {
      sent: () => undefined,
      acked: () => undefined,
      nacked: () => undefined,
      unproved: () => undefined,
      retried: () => undefined,
      recordDropped: (reason) => void dropped.push(reason),
    },
  });
  d.setReady();
  const links = new Map<string, { closed: string[] }>();
  const hello = (node: string) => {
    const closed: string[] = [];
    links.set(node, { closed });
    const sent: SpanUpdate[] = [];
    const session = d.hello(
      { node, instance: `i-${node}`, revision: 0, inForceHash: '', apiAddress: '' },
      { send: (u) => void sent.push(u), close: (r) => void closed.push(r) },
    );
    return { session, sent };
  };
  const nodes = () => d.views().map((v) => v.node);
  return {
    d,
    hello,
    nodes,
    dropped,
    links,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const exhausted = (fn: () => unknown) =>
  assert.throws(fn, (e: unknown) => e instanceof WeirError && e.code === ErrorCode.Exhausted);

describe('records of agents', () => {
  test('records of nodes the cluster does not know are bounded: the oldest disconnected one is dropped, and with all connected a hello is refused', () => {
    const r = rig({ maxUnknownNodes: 3 });
    const a = r.hello('fake-1');
    r.advance(10);
    r.hello('fake-2');
    r.hello('fake-3');
    exhausted(() => r.hello('fake-4'));
    assert.deepEqual(r.nodes(), ['fake-1', 'fake-2', 'fake-3', 'real']);
    a.session.close();
    r.hello('fake-4');
    assert.deepEqual(r.nodes(), ['fake-2', 'fake-3', 'fake-4', 'real']);
    assert.deepEqual(r.dropped, ['evicted']);
    // The node the cluster has is never refused, whatever the count.
    r.hello('real');
  });

  test('the record of an agent that vanished without ACKing expires after the record TTL; a known node with a proved span keeps its record', () => {
    const r = rig({ recordTtlMs: 60_000 });
    for (let i = 0; i < 50; i++) r.hello(`fake-${i}`).session.close();
    const real = r.hello('real');
    const update = real.sent[0]!;
    // The agent of the real node proves what it holds... then goes away too.
    real.session.ack(Number(update.revision), '');
    real.session.close();
    assert.equal(r.d.recordCount, 51);
    r.advance(59_000);
    assert.deepEqual(r.d.expireVanished(), []);
    r.advance(2_000);
    assert.equal(r.d.expireVanished().length, 50);
    assert.equal(r.d.recordCount, 1);
    assert.deepEqual(r.nodes(), ['real']);
    assert.ok(r.d.persisted().real !== undefined, 'the delta base of the real node is kept');
  });

  test('a connected agent is never expired, however old its record', () => {
    const r = rig({ recordTtlMs: 1_000 });
    r.hello('fake-1');
    r.advance(3_600_000);
    assert.deepEqual(r.d.expireVanished(), []);
    assert.ok(r.nodes().includes('fake-1'));
  });

  test('a second stream for a node replaces the first: one live stream per node', () => {
    const r = rig();
    r.hello('real');
    const first = r.links.get('real')!;
    r.hello('real');
    assert.deepEqual(first.closed, ['replaced by a new connection from the same node']);
    assert.equal(r.d.views().filter((v) => v.node === 'real' && v.connected).length, 1);
  });
});

describe('log lines per peer', () => {
  const steps: Array<[string, number, Array<number | undefined>]> = [
    // [what, ms advanced before the takes, what each take returns]
    ['a burst of 3 passes, the 4th and 5th are suppressed', 0, [0, 0, 0, undefined, undefined]],
    [
      'after 1 s at 2 per second, two pass; the first says 2 were suppressed',
      1_000,
      [2, 0, undefined],
    ],
  ];
  test('a token bucket per peer lets a burst through, then its rate, and the next line let through counts the suppressed', () => {
    let now = 0;
    let suppressed = 0;
    const l = new LogLimiter({
      burst: 3,
      perSecond: 2,
      globalPerSecond: 1_000,
      now: () => now,
      onSuppressed: () => suppressed++,
    });
    for (const [what, ms, expected] of steps) {
      now += ms;
      assert.deepEqual(
        expected.map(() => l.take('peer')),
        expected,
        what,
      );
    }
    assert.equal(suppressed, 3);
    assert.equal(l.take('other'), 0, 'another peer has its own bucket');
  });

  test('many peers at their own rate are bounded by the global bucket, and the peers tracked are bounded', () => {
    let now = 0;
    const l = new LogLimiter({
      burst: 5,
      perSecond: 1,
      globalPerSecond: 10,
      peers: 100,
      now: () => now,
    });
    let passed = 0;
    for (let i = 0; i < 10_000; i++) if (l.take(`peer-${i}`) !== undefined) passed++;
    assert.equal(passed, 10);
    now += 1_000;
    passed = 0;
    for (let i = 0; i < 10_000; i++) if (l.take(`peer-${i}`) !== undefined) passed++;
    assert.equal(passed, 10);
  });
});
