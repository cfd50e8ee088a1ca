/**
 * Simulated agents for the propagation benchmark, run in their own process
 * (so that they do not share the controller's event loop): N gRPC streams to
 * the controller, each keeping its span with the agent's own SpanState and
 * ACKing every update with the content hash of the span it then holds, as a
 * real agent does (so that the controller can prove each one in sync).
 * Reports each ACK (node, revision, time, bytes) to the parent over IPC.
 *
 * Times are performance.timeOrigin + performance.now(): wall-clock based with
 * sub-millisecond resolution, comparable with the parent process.
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { join } from 'node:path';
import { CHANNEL_OPTIONS, PROTO_DIR, weirProto } from '../shared/grpc/proto.js';
import type { AgentMessage, ControllerMessage__Output } from '../shared/generated/weir/v1/index.js';
import { type ElementMemo, objectHash, snapshotHash, spanKey } from '../shared/wire/span-hash.js';
import { SpanState } from '../vrouter-agent/store/span-state.js';

export interface AckRecord {
  readonly node: string;
  readonly revision: number;
  readonly at: number;
  /** Encoded size of the update. */
  readonly bytes: number;
  readonly snapshot: boolean;
  /** Encoded size of the whole span after the update (what a snapshot would carry). */
  readonly spanBytes: number;
}

const now = () => performance.timeOrigin + performance.now();

/** Span-hash elements by object (states are immutable and share unchanged objects), as the agent keeps them. */
const memo: ElementMemo = new WeakMap();
/**
 * Objects by span key and content hash, shared by every simulated agent:
 * a thousand agents decode the same groups from their own streams, and a
 * real agent has one copy on its own host; here one copy stands for all
 * (and its span-hash element is computed once). Cleared beyond a bound;
 * states keep what they hold.
 */
const interned = new Map<string, object>();
const INTERNED_MAX = 500_000;
function intern<T extends object>(list: T[], key: (o: T) => string, hash: (o: T) => string): T[] {
  return list.map((o) => {
    const k = `${key(o)} ${hash(o)}`;
    const kept = interned.get(k);
    if (kept !== undefined) return kept as T;
    if (interned.size >= INTERNED_MAX) interned.clear();
    interned.set(k, o);
    return o;
  });
}
type Update = NonNullable<ControllerMessage__Output['update']>;
const internUpdate = (u: Update): Update => ({
  ...u,
  policies: intern(u.policies, spanKey.policy, objectHash.policy),
  addressGroups: intern(u.addressGroups, spanKey.addressGroup, objectHash.addressGroup),
  serviceGroups: intern(u.serviceGroups, spanKey.serviceGroup, objectHash.serviceGroup),
  endpoints: intern(u.endpoints, spanKey.endpoint, objectHash.endpoint),
});

/** The in-force hash, computed as vrouter-agent/agent.ts computes it. */
const inForceHash = (state: SpanState) => snapshotHash(state, memo);

async function main(): Promise<void> {
  const [address, count] = [process.argv[2]!, Number(process.argv[3])];
  // --pad=N: node names zero-padded to N digits (node-0007), as the realistic cluster names them.
  const pad = Number(process.argv.find((a) => a.startsWith('--pad='))?.slice(6) ?? 0);
  // --no-sizes: ACK records without the update's and span's encoded sizes (a long run keeps no states).
  const sizes = !process.argv.includes('--no-sizes');
  // --share-objects: agents holding the same object hold one copy (memory at cluster size).
  const shareObjects = process.argv.includes('--share-objects');
  // --reconnect: an agent whose stream is lost says hello again (else it stays down).
  const reconnect = process.argv.includes('--reconnect');
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  root.loadSync('weir/v1/agent.proto');
  const Update = root.lookupType('weir.v1.SpanUpdate');
  const Snapshot = root.lookupType('weir.v1.PolicySnapshot');
  const { proto } = weirProto();
  let pending: AckRecord[] = [];
  // Sizes are measured off the critical path (encoding takes time the next agent would wait for).
  let unsized: Array<{
    record: { node: string; revision: number; at: number; snapshot: boolean };
    update: ControllerMessage__Output['update'];
    state: SpanState;
  }> = [];
  const size = () => {
    for (const u of unsized) {
      pending.push({
        ...u.record,
        bytes: Update.encode(Update.fromObject(u.update!)).finish().length,
        spanBytes: Snapshot.encode(Snapshot.fromObject(u.state.toSnapshot())).finish().length,
      });
    }
    unsized = [];
  };
  const flush = () => {
    if (pending.length > 0) process.send!({ type: 'acks', acks: pending });
    pending = [];
  };
  // ACK notices go to the parent in batches: one IPC message per turn of the event loop.
  let notices: Array<{ node: string; revision: number }> = [];
  const sendNotices = () => {
    process.send!({ type: 'ack', notices });
    notices = [];
  };
  // Updates are applied one per turn of the event loop, in arrival order:
  // the agents share one loop, and applying a burst of whole spans in one
  // turn would hold every other agent's socket (and its keepalive pings)
  // for seconds. Real agents apply in parallel.
  const work: Array<() => void> = [];
  const workOne = () => {
    work.shift()!();
    if (work.length > 0) setImmediate(workOne);
  };
  const calls: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>[] = [];
  const streamErrors = new Set<string>();
  let stopping = false;
  for (let i = 0; i < count; i++) {
    const node = `node-${String(i).padStart(pad, '0')}`;
    // One connection per agent, as separate hosts would have. The keepalive
    // timeout is the agents' but for one thing: here 1,000 agents share one
    // event loop, which on a loaded machine stalls for seconds, and a ping
    // answered late would drop streams (measured: hundreds at once) and
    // measure the simulation, not the controller.
    const client = new proto.weir.v1.ControlPlane(address, grpc.credentials.createInsecure(), {
      ...CHANNEL_OPTIONS,
      'grpc.keepalive_timeout_ms': 60_000,
      'grpc.use_local_subchannel_pool': 1,
    });
    let state = SpanState.empty();
    const open = () => {
      const call = (
        client as unknown as {
          Connect(): grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
        }
      ).Connect();
      call.on('data', (msg: ControllerMessage__Output) => {
        if (!msg.update) return;
        const u = shareObjects ? internUpdate(msg.update) : msg.update;
        work.push(() => {
          try {
            state = state.apply(u);
          } catch (err) {
            // As an agent does: refuse it, the span in force unchanged (the controller resends).
            call.write({
              nack: { revision: u.revision, error: String(err), inForceHash: inForceHash(state) },
            });
            return;
          }
          call.write({ ack: { revision: u.revision, inForceHash: inForceHash(state) } });
          const at = now();
          if (!sizes)
            pending.push({
              node,
              revision: Number(u.revision),
              at,
              snapshot: u.snapshot,
              bytes: 0,
              spanBytes: 0,
            });
          else
            unsized.push({
              record: { node, revision: Number(u.revision), at, snapshot: u.snapshot },
              update: u,
              state,
            });
          notices.push({ node, revision: Number(u.revision) });
          if (notices.length === 1) setImmediate(sendNotices);
        });
        if (work.length === 1) setImmediate(workOne);
      });
      call.on('error', (err: grpc.ServiceError) => {
        if (stopping) return;
        const why = `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`;
        if (!streamErrors.has(why))
          process.stderr.write(
            `simulated agent ${node}: stream lost (${why})${reconnect ? ', reconnecting' : ''}\n`,
          );
        streamErrors.add(why);
        // Without --reconnect it stays down, and the parent stops waiting for it (propagation.ts ignores the notice).
        if (!reconnect) process.send!({ type: 'lost', node });
      });
      // However the stream ends (an error, or the controller closing it, as it does
      // when an update goes unanswered): as a real agent does, hello again after a
      // second with what it holds.
      call.on('status', () => {
        if (!stopping && reconnect) setTimeout(open, 1_000);
      });
      call.write({
        hello: {
          node,
          appliedRevision: String(state.revision),
          instance: `sim-${i}`,
          inForceHash: inForceHash(state),
        },
      });
      calls[i] = call;
    };
    open();
  }
  process.on('message', (m: { type: string }) => {
    if (m.type === 'report') {
      size();
      flush();
      process.send!({ type: 'reported' });
    }
    if (m.type === 'stop') {
      stopping = true;
      flush();
      for (const c of calls) c.cancel();
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.send!({ type: 'started' });
}

void main();
