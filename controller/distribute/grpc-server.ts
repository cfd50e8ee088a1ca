/**
 * The controller's gRPC server: ControlPlane (agent streams, handed to the
 * Distributor) and Operator (weirctl), with server reflection so that any
 * reflection-aware client can list and call them. Errors become gRPC
 * statuses here and nowhere else.
 */
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { ValidationError } from '../../shared/errors.js';
import { toGrpcStatus } from '../../shared/grpc/status.js';
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

function unary<Req, Res>(fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    try {
      callback(null, fn(call.request));
    } catch (err) {
      callback(toGrpcStatus(err));
    }
  };
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
  const encoded = new Map<string, Buffer>();
  const encodeOnce = (update: SpanUpdate, key: string): Buffer => {
    let bytes = encoded.get(key);
    if (bytes === undefined) {
      bytes = encode({ update });
      encoded.set(key, bytes);
      // Keys name one revision's deltas; the last few revisions are all that repeat.
      if (encoded.size > 64) encoded.delete(encoded.keys().next().value!);
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
          const node = msg.hello.node;
          if (node === '') {
            call.emit(
              'error',
              toGrpcStatus(new ValidationError([{ message: 'hello: node is required' }])),
            );
            return;
          }
          session = options.distributor.hello(
            node,
            msg.hello.instance,
            Number(msg.hello.appliedRevision),
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
            msg.hello.apiAddress,
          );
        } else if (session === undefined) {
          log.warn({ kind: msg.kind }, 'agent message before hello; ignored');
        } else if (msg.kind === 'ack' && msg.ack) session.ack(Number(msg.ack.revision));
        else if (msg.kind === 'nack' && msg.nack)
          session.nack(Number(msg.nack.revision), msg.nack.error);
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
