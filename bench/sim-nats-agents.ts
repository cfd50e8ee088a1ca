/**
 * Simulated agents over NATS for bench/nats.ts, in their own process: N
 * real NatsTransports (vrouter-agent/transport/nats.ts, one NATS connection
 * each, as separate hosts would have), each keeping its span with the
 * agent's SpanState and ACKing with the in-force hash, as a real agent
 * does. Same IPC as sim-agents.ts: 'started', batched 'ack' notices
 * (node, revision, at), 'stop'.
 */
import { silentLogger } from '../shared/log.js';
import { type ElementMemo, snapshotHash } from '../shared/wire/span-hash.js';
import { SpanState } from '../vrouter-agent/store/span-state.js';
import { NatsTransport } from '../vrouter-agent/transport/nats.js';

const now = () => performance.timeOrigin + performance.now();
const memo: ElementMemo = new WeakMap();

async function main(): Promise<void> {
  const [servers, count, cluster] = [process.argv[2]!, Number(process.argv[3]), process.argv[4]!];
  let notices: Array<{ node: string; revision: number; at: number }> = [];
  const send = () => {
    process.send!({ type: 'ack', notices });
    notices = [];
  };
  const transports: NatsTransport[] = [];
  for (let i = 0; i < count; i++) {
    const node = `node-${i}`;
    const t = new NatsTransport({
      endpoint: { servers: servers.split(',') },
      cluster,
      node,
      log: silentLogger,
      requestTimeoutMs: 10_000,
    });
    transports.push(t);
    let state = SpanState.empty();
    const deliveries = t.updates(() => ({
      node,
      appliedRevision: state.revision,
      instance: `sim-${i}`,
      apiAddress: '',
      inForceHash: snapshotHash(state, memo),
    }));
    void (async () => {
      for await (const d of deliveries) {
        if (d.update === undefined) {
          d.nack(d.problem ?? '', snapshotHash(state, memo));
          continue;
        }
        state = state.apply(d.update);
        d.ack(snapshotHash(state, memo));
        notices.push({ node, revision: Number(d.update.revision), at: now() });
        if (notices.length === 1) setImmediate(send);
      }
    })();
  }
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stop') {
      void Promise.all(transports.map((t) => t[Symbol.asyncDispose]())).finally(() =>
        process.exit(0),
      );
      setTimeout(() => process.exit(0), 3_000).unref();
    }
  });
  process.send!({ type: 'started' });
}

void main();
