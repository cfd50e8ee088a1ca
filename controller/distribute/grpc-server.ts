/**
 * The controller's gRPC server: Operator (weirctl) always, ControlPlane
 * (agent streams, the gRPC publisher: grpc-publisher.ts) when agents connect
 * over gRPC, with server reflection so that any reflection-aware client can
 * list and call them. Errors become gRPC statuses here and nowhere else.
 * Mutual TLS unless --insecure: every call is authorized by its client
 * certificate (shared/tls/access.ts: operators call Operator, agents only
 * ControlPlane).
 */
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { toGrpcStatus, unary } from '../../shared/grpc/status.js';
import { clientOf } from '../../shared/grpc/peer.js';
import type { Logger } from '../../shared/log.js';
import { serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import type {
  ClusterFlowEvent,
  ExplainReply,
  ExplainRequest__Output,
  FederationStatusReply,
  ListPoliciesReply,
  ListClusterFlowsReply,
  ListClusterFlowsRequest__Output,
  ListPoliciesRequest__Output,
  StatusReply,
  WatchClusterFlowsRequest__Output,
} from '../../shared/generated/weir/v1/index.js';
import { guarded } from '../../shared/tls/access.js';
import { type CertificateFiles, serverCredentials } from '../../shared/tls/credentials.js';
import type { Distributor } from './distributor.js';
import { LogLimiter } from '../../shared/log-limiter.js';
import { type AgentNodeOf, type ControlPlaneHooks, addControlPlane } from './grpc-publisher.js';

export { encodeUpdate } from './grpc-publisher.js';

/** What the Operator service asks of the controller. */
export interface OperatorBackend {
  status(): StatusReply;
  listPolicies(req: ListPoliciesRequest__Output): ListPoliciesReply;
  explain(req: ExplainRequest__Output): ExplainReply;
  /** The federation as this member sees it ({ enabled: false } without --federation). */
  federationStatus?(): FederationStatusReply;
}

/**
 * What the Operator service's cluster-wide flows ask of the controller (the
 * flow relay, controller/relay/): `client` is the caller, for its limits.
 */
export interface FlowRelayBackend {
  list(req: ListClusterFlowsRequest__Output, client: string): Promise<ListClusterFlowsReply>;
  watch(
    req: WatchClusterFlowsRequest__Output,
    client: string,
    signal: AbortSignal,
  ): AsyncIterable<ClusterFlowEvent>;
}

/**
 * WatchClusterFlows: the relay's events written at the reader's pace. A
 * write the stream cannot take waits for 'drain' before the next event is
 * pulled, so while the reader is behind, events wait in (and beyond its
 * bound are dropped from) the relay's per-node buffers, not here.
 */
function watchClusterFlows(relay: FlowRelayBackend, log: Logger) {
  return (call: grpc.ServerWritableStream<WatchClusterFlowsRequest__Output, ClusterFlowEvent>) => {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    call.on('close', () => abort.abort());
    let events: AsyncIterable<ClusterFlowEvent>;
    try {
      events = relay.watch(call.request, clientOf(call), abort.signal);
    } catch (err) {
      call.emit('error', toGrpcStatus(err));
      return;
    }
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          abort.signal.removeEventListener('abort', done);
          resolve();
        };
        call.on('drain', done);
        abort.signal.addEventListener('abort', done, { once: true });
      });
    void (async () => {
      try {
        for await (const e of events) {
          if (!call.write(e)) await drained();
          if (abort.signal.aborted) break;
        }
        if (!abort.signal.aborted) call.end();
      } catch (err) {
        if (abort.signal.aborted) return;
        log.debug({ err }, 'relayed flow watch ended with an error');
        call.emit('error', toGrpcStatus(err));
      }
    })();
  };
}

export async function startControllerServer(options: {
  listen: string;
  distributor: Distributor;
  operator: OperatorBackend;
  /** The flow relay; without it the cluster-wide flow RPCs are UNIMPLEMENTED. */
  relay?: FlowRelayBackend;
  log: Logger;
  /** Called with the encoded size of every update written. */
  onBytesSent?: (bytes: number) => void;
  /** Serve ControlPlane (agents over gRPC); default true. */
  controlPlane?: boolean;
  /**
   * Mutual TLS with these certificates (every caller authorized by
   * shared/tls/access.ts); undefined: --insecure, no TLS, anyone is anyone.
   */
  tls: CertificateFiles | undefined;
  /** The node an agent pod identity runs on (grpc-publisher.ts). */
  agentNodeOf?: AgentNodeOf;
  /** A log line a peer caused was suppressed. */
  onLogSuppressed?: () => void;
  /** An agent stream refused at a limit (label). */
  onRefused?: (limit: string) => void;
}): Promise<{
  server: grpc.Server;
  port: number;
  /** The Pod NS/NAME changed or went (ControlPlaneHooks); nothing over NATS. */
  agentPodChanged: (namespace: string, name: string) => void;
}> {
  const { proto, definition } = weirProto();
  const server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
  const log = options.log;
  const secure = options.tls !== undefined;

  const hooks: ControlPlaneHooks | undefined =
    options.controlPlane === false
      ? undefined
      : addControlPlane(server, {
          sessions: options.distributor,
          log,
          onBytesSent: options.onBytesSent,
          secure,
          agentNodeOf: options.agentNodeOf ?? (() => undefined),
          onLogSuppressed: options.onLogSuppressed,
          onRefused: options.onRefused,
        });

  const operator = proto.weir.v1.Operator.service;
  server.addService(
    operator,
    guarded(
      operator,
      {
        GetStatus: unary(() => options.operator.status()),
        ListPolicies: unary((req: ListPoliciesRequest__Output) =>
          options.operator.listPolicies(req),
        ),
        Explain: unary((req: ExplainRequest__Output) => options.operator.explain(req)),
        GetFederationStatus: unary(
          () => options.operator.federationStatus?.() ?? { enabled: false },
        ),
        ...(options.relay !== undefined
          ? {
              ListClusterFlows: (
                call: grpc.ServerUnaryCall<ListClusterFlowsRequest__Output, ListClusterFlowsReply>,
                cb: grpc.sendUnaryData<ListClusterFlowsReply>,
              ) => {
                options.relay!.list(call.request, clientOf(call)).then(
                  (reply) => cb(null, reply),
                  (err) => cb(toGrpcStatus(err)),
                );
              },
              WatchClusterFlows: watchClusterFlows(options.relay, log),
            }
          : {}),
      },
      // Refusals are peer-caused lines: limited per peer, counted in the metric.
      { secure, log, logs: new LogLimiter({ onSuppressed: options.onLogSuppressed }) },
    ),
  );

  new ReflectionService(definition).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, serverCredentials(options.tls), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  return {
    server,
    port,
    agentPodChanged: (namespace, name) => hooks?.agentPodChanged(namespace, name),
  };
}
