/**
 * The flow event exporter never holds the datapath back: with NATS away,
 * or when it falls behind, events are dropped and counted by reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { silentLogger } from '../../shared/log.js';
import { compile } from '../../shared/policy/compile.js';
import type { Datapath, FlowEvent } from '../../vrouter-agent/datapath/index.js';
import { FlowExporter } from '../../vrouter-agent/transport/nats-flows.js';
import { build, namespace, pod } from '../../testing/cluster.js';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNats } from '../../testing/nats-server.js';
import { eventually, freePort } from '../support/processes.js';

const tables = compile(
  build([namespace('a'), pod('a', 'x', { ips: ['10.0.0.1'], node: 'n1' })]).snapshot,
  {
    isLocal: () => true,
  },
);

/** A datapath whose events() gives `events` at once (as a burst of new flows would). */
function datapath(events: FlowEvent[]): Datapath {
  return {
    tables,
    events: async function* () {
      yield* events;
    },
  } as unknown as Datapath;
}

const created = (i: number): FlowEvent => ({
  type: 'created',
  atMs: i,
  flow: { index: i } as never,
});

const count = async (r: Registry, reason: string) =>
  (await r.getSingleMetricAsString('weir_agent_flow_events_dropped_total'))
    .split('\n')
    .find((l) => l.includes(`reason="${reason}"`))
    ?.split(' ')[1];

/** A TCP flow to a/x, allowed because nothing isolates it. */
const described = (i: number): FlowEvent => ({
  type: 'created',
  atMs: i,
  flow: {
    index: i,
    zone: 1,
    endpoint: 'a/x',
    replyZone: 1,
    replyEndpoint: 'a/x',
    family: 4,
    protocol: 6,
    src: '10.1.0.1',
    dst: '10.0.0.1',
    sport: 40_000,
    dport: 80,
    firstSeenMs: i,
    action: 'allow',
    dropReason: 'none',
    egress: { kind: 'not-checked' },
    ingress: { kind: 'default' },
  } as never,
});

describe('flow event export', () => {
  test('an event that cannot be described is dropped and counted, and the export goes on', async () => {
    const nats = await startNats();
    try {
      const nc = await connect({ servers: nats.urls });
      await (await jetstreamManager(nc)).streams.add({
        name: 'WEIR_t_FLOWS',
        subjects: ['weir.t.flows.*'],
      });
      const registry = new Registry();
      const exporter = new FlowExporter(
        { endpoint: { servers: [nats.urls] }, cluster: 't', node: 'n1', log: silentLogger },
        registry,
      );
      const dp = {
        tables,
        events: async function* () {
          await new Promise((r) => setTimeout(r, 300)); // connected by then
          yield created(1); // no verdicts: FlowView cannot describe it
          yield described(2);
        },
      } as unknown as Datapath;
      exporter.start(
        () => dp,
        () => 0,
      );
      const stored = await eventually(async () => {
        const n = (await (await jetstreamManager(nc)).streams.info('WEIR_t_FLOWS')).state.messages;
        return n >= 1 ? n : undefined;
      }, 'the describable event in the stream');
      await exporter[Symbol.asyncDispose]();
      assert.equal(stored, 1);
      assert.equal(await count(registry, 'error'), '1');
      await nc.close();
    } finally {
      await nats[Symbol.asyncDispose]();
    }
  });

  test('with NATS away every event is dropped and counted, and the datapath is never waited on', async () => {
    const registry = new Registry();
    const port = await freePort(); // nothing listens there
    const exporter = new FlowExporter(
      { endpoint: { servers: [`127.0.0.1:${port}`] }, cluster: 't', node: 'n1', log: silentLogger },
      registry,
    );
    exporter.start(
      () => datapath(Array.from({ length: 10_000 }, (_, i) => created(i))),
      () => 0,
    );
    await exporter[Symbol.asyncDispose]();
    assert.equal(await count(registry, 'nats'), '10000');
  });

  test('events the datapath dropped for a slow exporter are counted as buffer drops', async () => {
    const registry = new Registry();
    const exporter = new FlowExporter(
      {
        endpoint: { servers: [`127.0.0.1:${await freePort()}`] },
        cluster: 't',
        node: 'n1',
        log: silentLogger,
      },
      registry,
    );
    exporter.start(
      () => datapath([created(1), { type: 'lost', count: 41 }, created(2)]),
      () => 0,
    );
    await exporter[Symbol.asyncDispose]();
    assert.equal(await count(registry, 'buffer'), '41');
    assert.equal(await count(registry, 'nats'), '2');
  });
});
