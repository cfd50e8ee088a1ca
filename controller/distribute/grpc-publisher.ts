/**
 * The gRPC publisher: the ControlPlane service. Each Connect stream is one
 * agent connection: its Hello becomes a session of the Distributor (a
 * Welcome is written first: from there the agent is connected), the
 * session's AgentLink writes updates on the stream, and Ack/Nack from the
 * stream go to the session. The stream's end is the session's end.
 *
 * Identity (unless --insecure): the stream's client certificate names the
 * agent (shared/tls/identity.ts); its hello must be for that agent's node,
 * else the stream ends with PERMISSION_DENIED. Ack/Nack are only ever read
 * from the stream whose hello was accepted, so no other caller can ACK or
 * NACK for a node. A new stream for a node replaces the open one (an agent
 * restart) only when it comes from the same identity.
 *
 * A pod identity holds its node only while the pod stands for that node's
 * agent: when the Pod watch reports the pod deleted, finished, relabelled
 * or on another node (agentPodChanged), its stream ends at once with
 * PERMISSION_DENIED, so the DaemonSet's next pod for the node is admitted
 * on its next hello instead of being refused as a second identity until
 * the old stream drops by itself.
 */
import type * as grpc from '@grpc/grpc-js';
import { type Issue, PermissionError, ValidationError } from '../../shared/errors.js';
import type {
  AgentMessage__Output,
  ControllerMessage,
  SpanUpdate,
} from '../../shared/generated/weir/v1/index.js';
import { weirProto } from '../../shared/grpc/proto.js';
import { toGrpcStatus } from '../../shared/grpc/status.js';
import { clientOf, PeerSlots } from '../../shared/grpc/peer.js';
import { AGENT_LIMITS } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import { callerOf, guarded } from '../../shared/tls/access.js';
import type { Identity } from '../../shared/tls/identity.js';
import type { ClusterModel } from '../model/cluster-model.js';
import { LogLimiter, suppressedField } from '../../shared/log-limiter.js';
import { checkAck, checkHello, checkNack } from './admission.js';
import type { SessionHost } from './publisher.js';

/**
 * The node an agent pod identity (spiffe://weir/ns/NS/pod/POD) runs on:
 * the pod's spec.nodeName when it is one of Weir's agent pods, else
 * undefined (the controller resolves it through its cluster model).
 */
export type AgentNodeOf = (namespace: string, pod: string) => string | undefined;

/**
 * Agent pods as the cluster model has them: a pod stands for a node's agent
 * only when it is in the agents' namespace, labelled
 * app.kubernetes.io/name=weir-agent, placed on a node and not finished.
 */
export function agentPodNode(model: ClusterModel, agentNamespace: string): AgentNodeOf {
  return (namespace, name) => {
    if (namespace !== agentNamespace) return undefined;
    const pod = model.pod(namespace, name);
    if (pod === undefined || pod.labels['app.kubernetes.io/name'] !== 'weir-agent')
      return undefined;
    if (pod.node === '' || pod.phase === 'Succeeded' || pod.phase === 'Failed') return undefined;
    return pod.node;
  };
}

/**
 * The node a caller may say hello for, or why it may say none: a node
 * identity is its node; a pod identity the node its agent pod runs on.
 */
function nodeOfCaller(id: Identity, agentNodeOf: AgentNodeOf): string | PermissionError {
  if (id.kind === 'node') return id.node;
  if (id.kind === 'pod')
    return (
      agentNodeOf(id.namespace, id.pod) ??
      new PermissionError(
        `pod ${id.namespace}/${id.pod} is not a Weir agent pod on a node the controller knows`,
      )
    );
  return new PermissionError('only agents may connect');
}

/** Encoded updates kept for reuse: a few revisions' worth, and never more than this many bytes. */
const ENCODED_MAX_ENTRIES = 64;
const ENCODED_MAX_BYTES = 64 * 1024 * 1024;

/**
 * ControllerMessage{update} encoded from pieces: the update's scalar and
 * removal fields, then each object as its own repeated-field entry, encoded
 * once per object (`memo`, by identity: the Distributor hands every node
 * the same wire object for the same object version). Protobuf decodes the
 * concatenation of encoded fields as the message holding all of them, in
 * order, so this decodes exactly as `encode({ update })` does, but a
 * snapshot of thousands of objects costs a copy of their bytes, not their
 * encoding, per node.
 */
export function encodeUpdate(
  update: SpanUpdate,
  encode: (m: ControllerMessage) => Buffer,
  memo: WeakMap<object, Buffer>,
): Buffer {
  // encode({ update: x }) is 0x0a (field 1, length-delimited), a varint length, then x's fields.
  const fields = (x: SpanUpdate): Buffer => {
    const b = encode({ update: x });
    let i = 1;
    while (b[i]! & 0x80) i++;
    return b.subarray(i + 1);
  };
  const parts = [
    fields({ ...update, policies: [], addressGroups: [], serviceGroups: [], endpoints: [] }),
  ];
  const each = <T extends object>(objects: readonly T[] | undefined, one: (o: T) => SpanUpdate) => {
    for (const o of objects ?? []) {
      let b = memo.get(o);
      if (b === undefined) {
        b = fields(one(o));
        memo.set(o, b);
      }
      parts.push(b);
    }
  };
  each(update.policies, (o) => ({ policies: [o] }));
  each(update.addressGroups, (o) => ({ addressGroups: [o] }));
  each(update.serviceGroups, (o) => ({ serviceGroups: [o] }));
  each(update.endpoints, (o) => ({ endpoints: [o] }));
  let length = 0;
  for (const p of parts) length += p.length;
  const head = [0x0a];
  for (let n = length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      head.push(n);
      break;
    }
    head.push((n % 128) | 0x80);
  }
  return Buffer.concat([Buffer.from(head), ...parts], head.length + length);
}

/** What the caller of addControlPlane tells it about the cluster. */
export interface ControlPlaneHooks {
  /**
   * The Pod NS/NAME changed or was deleted (the model already says so):
   * a stream held by that pod's identity for a node the pod no longer
   * resolves to (AgentNodeOf) is ended.
   */
  agentPodChanged(namespace: string, name: string): void;
}

/**
 * Registers ControlPlane on a server, its streams handed to `sessions`.
 * Every message is checked (admission.ts) before it reaches the
 * Distributor: a bad one ends the stream with INVALID_ARGUMENT naming the
 * field; a stream must say hello within AGENT_LIMITS.helloTimeoutMs, and
 * streams before hello are bounded per client and in all.
 */
export function addControlPlane(
  server: grpc.Server,
  options: {
    sessions: SessionHost;
    log: Logger;
    /** Called with the encoded size of every update written. */
    onBytesSent?: (bytes: number) => void;
    /** Mutual TLS: hellos are checked against the caller's identity. False: --insecure. */
    secure: boolean;
    agentNodeOf: AgentNodeOf;
    /** A log line a peer caused was suppressed (rate limit per peer). */
    onLogSuppressed?: () => void;
    /** A stream refused at a limit: invalid, hello_timeout, pending_hello, unknown_nodes, identity. */
    onRefused?: (limit: string) => void;
    /** AGENT_LIMITS.helloTimeoutMs unless given (tests). */
    helloTimeoutMs?: number;
  },
): ControlPlaneHooks {
  const { proto } = weirProto();
  const log = options.log;
  // Updates are encoded once per distinct content (the Distributor names it)
  // and written as bytes: a change every node must hear is encoded once, not
  // once per node.
  const connect = proto.weir.v1.ControlPlane.service.Connect;
  const encode = connect.responseSerialize as (m: ControllerMessage) => Buffer;
  const controlPlane = {
    Connect: {
      ...connect,
      responseSerialize: (m: ControllerMessage | Buffer) => (Buffer.isBuffer(m) ? m : encode(m)),
    },
  };
  // Keys name an update's exact content (Distributor); the last few are all that repeat.
  const encoded = new Map<string, Buffer>();
  let encodedBytes = 0;
  const objects = new WeakMap<object, Buffer>();
  const encodeOnce = (update: SpanUpdate, key: string): Buffer => {
    let bytes = encoded.get(key);
    if (bytes === undefined) {
      bytes = encodeUpdate(update, encode, objects);
      encoded.set(key, bytes);
      encodedBytes += bytes.length;
      while (encoded.size > ENCODED_MAX_ENTRIES || encodedBytes > ENCODED_MAX_BYTES) {
        const [oldest, b] = encoded.entries().next().value!;
        encoded.delete(oldest);
        encodedBytes -= b.length;
      }
    }
    return bytes;
  };
  // Streams that have not said hello yet, per client and in all; after a
  // hello the Distributor's bounds hold (one stream per node, records).
  const pending = new PeerSlots(
    'Connect streams without a hello',
    AGENT_LIMITS.pendingHelloPerClient,
    AGENT_LIMITS.pendingHelloTotal,
  );
  const logs = new LogLimiter({ onSuppressed: options.onLogSuppressed });
  const peerLog = (client: string, fields: Record<string, unknown>, msg: string) => {
    const n = logs.take(client);
    if (n !== undefined) log.warn({ client, ...fields, ...suppressedField(n) }, msg);
  };

  // The identity each node's open stream came from: another may not replace it.
  const owners = new Map<string, { uri: string; call: object; drop: (err: Error) => void }>();
  // The node each pod identity's open stream holds ("ns/pod" -> node).
  const podOwners = new Map<string, string>();
  const podKey = (namespace: string, pod: string) => `${namespace}/${pod}`;
  const definition = controlPlane as unknown as grpc.ServiceDefinition;
  server.addService(
    definition,
    guarded(
      definition,
      {
        Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
          const client = clientOf(call);
          const caller = callerOf(call);
          let session: ReturnType<SessionHost['hello']> | undefined;
          let ended = false;
          let owned: string | undefined;
          let release: (() => void) | undefined;
          let helloTimer: NodeJS.Timeout | undefined;
          const end = () => {
            if (ended) return;
            ended = true;
            release?.();
            clearTimeout(helloTimer);
            if (owned !== undefined && owners.get(owned)?.call === call) {
              owners.delete(owned);
              if (caller !== 'insecure' && caller.kind === 'pod')
                podOwners.delete(podKey(caller.namespace, caller.pod));
            }
            session?.close();
          };
          const refuse = (err: unknown) => {
            end();
            call.emit('error', toGrpcStatus(err));
          };
          // Refused for who the caller is: logged without the hello's node text beyond a name's length.
          const deny = (err: PermissionError, node: string) => {
            peerLog(
              client,
              {
                node: node.slice(0, 253),
                caller: caller === 'insecure' ? undefined : caller.uri,
                why: err.message,
              },
              'agent hello refused',
            );
            options.onRefused?.('identity');
            refuse(err);
          };
          try {
            release = pending.acquire(client);
          } catch (err) {
            peerLog(client, {}, 'agent stream refused: too many streams without a hello');
            options.onRefused?.('pending_hello');
            refuse(err);
            return;
          }
          const helloTimeoutMs = options.helloTimeoutMs ?? AGENT_LIMITS.helloTimeoutMs;
          helloTimer = setTimeout(() => {
            peerLog(client, { waitedMs: helloTimeoutMs }, 'agent stream without a hello; ended');
            options.onRefused?.('hello_timeout');
            refuse(
              new ValidationError([
                {
                  object: 'Hello',
                  message: `none within ${helloTimeoutMs} ms of the stream's start`,
                },
              ]),
            );
          }, helloTimeoutMs);
          helloTimer.unref();
          const invalid = (issues: Issue[], what: string) => {
            peerLog(client, { problems: issues.length }, `${what} refused`);
            options.onRefused?.('invalid');
            refuse(new ValidationError(issues));
          };
          call.on('data', (msg: AgentMessage__Output) => {
            if (ended) return;
            if (msg.kind === 'hello' && msg.hello && session === undefined) {
              const hello = checkHello(msg.hello);
              if (Array.isArray(hello)) return invalid(hello, 'hello');
              const node = hello.node;
              if (options.secure) {
                if (caller === 'insecure')
                  return deny(new PermissionError('no client certificate'), node);
                const own = nodeOfCaller(caller, options.agentNodeOf);
                if (own instanceof PermissionError) return deny(own, node);
                // Short, and without the hello's node: a peer controls that text.
                if (node !== own)
                  return deny(
                    new PermissionError(
                      `this certificate is node ${own}'s; a hello for another node is refused`,
                    ),
                    node,
                  );
                const owner = owners.get(node);
                if (owner !== undefined && owner.uri !== caller.uri)
                  return deny(
                    new PermissionError(`node ${node} is connected under another identity`),
                    node,
                  );
                owners.set(node, { uri: caller.uri, call, drop: refuse });
                if (caller.kind === 'pod')
                  podOwners.set(podKey(caller.namespace, caller.pod), node);
                owned = node;
              }
              release?.();
              release = undefined;
              clearTimeout(helloTimer);
              // The welcome precedes any update: the agent is connected from there on.
              let welcomed = false;
              const welcome = () => {
                if (welcomed || ended) return;
                welcomed = true;
                call.write({ welcome: { revision: String(options.sessions.revision) } });
              };
              try {
                session = options.sessions.hello(hello, {
                  send: (update, key) => {
                    if (ended) return;
                    welcome();
                    const bytes = encodeOnce(update, key);
                    options.onBytesSent?.(bytes.length);
                    call.write(bytes as unknown as ControllerMessage);
                  },
                  close: (reason) => {
                    if (ended) return;
                    log.debug({ node, reason }, 'closing agent stream');
                    end();
                    call.end();
                  },
                });
              } catch (err) {
                options.onRefused?.('unknown_nodes');
                return refuse(err);
              }
              welcome();
            } else if (session === undefined) {
              peerLog(client, { kind: msg.kind }, 'agent message before hello; ignored');
            } else if (msg.kind === 'ack' && msg.ack) {
              const ack = checkAck(msg.ack);
              if (Array.isArray(ack)) return invalid(ack, 'ack');
              session.ack(ack.revision, ack.inForceHash);
            } else if (msg.kind === 'nack' && msg.nack) {
              const nack = checkNack(msg.nack);
              if (Array.isArray(nack)) return invalid(nack, 'nack');
              session.nack(nack.revision, nack.error, nack.inForceHash);
            }
          });
          call.on('end', () => {
            end();
            call.end();
          });
          call.on('error', end);
          call.on('cancelled', end);
          call.on('close', end);
        },
      },
      { secure: options.secure, log, logs },
    ),
  );
  return {
    agentPodChanged(namespace, name) {
      const key = podKey(namespace, name);
      const node = podOwners.get(key);
      if (node === undefined) return;
      const now = options.agentNodeOf(namespace, name);
      if (now === node) return;
      const owner = owners.get(node);
      podOwners.delete(key);
      if (owner === undefined) return;
      log.info(
        { node, pod: key, nowOn: now },
        "agent pod gone or no longer the node's agent; its stream ended",
      );
      owner.drop(new PermissionError(`pod ${key} no longer runs node ${node}'s agent`));
    },
  };
}
