/**
 * The controller's gRPC server: ControlPlane (agent streams, handed to the
 * Distributor) and Operator (weirctl), with server reflection so that any
 * reflection-aware client can list and call them. Errors become gRPC
 * statuses here and nowhere else.
 */
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { ValidationError } from '../../shared/errors.js';
import { toGrpcStatus, unary } from '../../shared/grpc/status.js';
import type { Logger } from '../../shared/log.js';
import { SERVER_OPTIONS, weirProto } from '../../shared/grpc/proto.js';
import type {
  AgentMessage__Output,
  ControllerMessage,
  ExplainReply,
  ExplainRequest__Output,
  ListPoliciesReply,
  ListPoliciesRequest__Output,
  SpanUpdate,
  StatusReply,
} from '../../shared/generated/weir/v1/index.js';
import type { Distributor } from './distributor.js';

/** What the Operator service asks of the controller. */
export interface OperatorBackend {
  status(): StatusReply;
  listPolicies(req: ListPoliciesRequest__Output): ListPoliciesReply;
  explain(req: ExplainRequest__Output): ExplainReply;
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

export async function startControllerServer(options: {
  listen: string;
  distributor: Distributor;
  operator: OperatorBackend;
  log: Logger;
  /** Called with the encoded size of every update written. */
  onBytesSent?: (bytes: number) => void;
}): Promise<{ server: grpc.Server; port: number }> {
  const { proto, definition } = weirProto();
  const server = new grpc.Server(SERVER_OPTIONS);
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

  server.addService(controlPlane as unknown as grpc.ServiceDefinition, {
    Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
      let session: ReturnType<Distributor['hello']> | undefined;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        session?.close();
      };
      call.on('data', (msg: AgentMessage__Output) => {
        if (msg.kind === 'hello' && msg.hello && session === undefined) {
          const hello = msg.hello;
          const node = hello.node;
          const revision = Number(hello.appliedRevision);
          const problems = [
            ...(node === '' ? [{ field: 'node', message: 'is required' }] : []),
            ...(!Number.isSafeInteger(revision)
              ? [{ field: 'appliedRevision', message: `${hello.appliedRevision} is out of range` }]
              : []),
          ].map((p) => ({ object: 'Hello', ...p }));
          if (problems.length > 0) {
            call.emit('error', toGrpcStatus(new ValidationError(problems)));
            return;
          }
          // Before any update: the agent is connected from here on.
          call.write({ welcome: { revision: String(options.distributor.revision) } });
          session = options.distributor.hello(
            {
              node,
              instance: hello.instance,
              revision,
              inForceHash: hello.inForceHash,
              apiAddress: hello.apiAddress,
            },
            {
              send: (update, key) => {
                if (ended) return;
                const bytes = encodeOnce(update, key);
                options.onBytesSent?.(bytes.length);
                call.write(bytes as unknown as ControllerMessage);
              },
              close: (reason) => {
                if (ended) return;
                log.info({ node, reason }, 'closing agent stream');
                end();
                call.end();
              },
            },
          );
        } else if (session === undefined) {
          log.warn({ kind: msg.kind }, 'agent message before hello; ignored');
        } else if (msg.kind === 'ack' && msg.ack)
          session.ack(Number(msg.ack.revision), msg.ack.inForceHash);
        else if (msg.kind === 'nack' && msg.nack)
          session.nack(Number(msg.nack.revision), msg.nack.error, msg.nack.inForceHash);
      });
      call.on('end', () => {
        end();
        call.end();
      });
      call.on('error', end);
      call.on('cancelled', end);
      call.on('close', end);
    },
  });

  server.addService(proto.weir.v1.Operator.service, {
    GetStatus: unary(() => options.operator.status()),
    ListPolicies: unary((req: ListPoliciesRequest__Output) => options.operator.listPolicies(req)),
    Explain: unary((req: ExplainRequest__Output) => options.operator.explain(req)),
  });

  new ReflectionService(definition).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  return { server, port };
}
