/**
 * Who may call what: the role table of every Weir RPC, enforced on each
 * call from the caller's certificate (identity.ts). Default deny: an RPC
 * the table does not name is refused to everyone, so a new RPC must be
 * classified before anyone can call it.
 *
 *   agent        an agent (node or pod identity): ControlPlane.Connect only,
 *                and only for its own node (the publisher checks the node)
 *   read-only    an operator: every RPC that reads
 *   admin        an operator: everything read-only may, and what changes state
 *   flow-reader  an operator (read-only suffices) or the controller: the
 *                FlowIntrospect reads the controller's flow relay makes on
 *                every agent (ListClusterFlows, WatchClusterFlows)
 *   controller   the controller's identity: only what flow-reader grants
 *
 * Server reflection (service descriptions, no data) is not guarded here:
 * any peer with a certificate from the CA may list the services.
 *
 * No Operator, Agent or FlowIntrospect RPC changes state today; the table
 * still names the least role each needs, so that a mutating RPC is marked
 * `admin` and read-only credentials are refused it.
 */
import * as grpc from '@grpc/grpc-js';
import { PermissionError } from '../errors.js';
import { clientOf } from '../grpc/peer.js';
import { toGrpcStatus } from '../grpc/status.js';
import { LogLimiter, suppressedField } from '../log-limiter.js';
import type { Logger } from '../log.js';
import { peerIdentity } from './credentials.js';
import type { Identity } from './identity.js';

export type Grant = 'agent' | 'read-only' | 'flow-reader' | 'admin';

/** Every RPC Weir serves, and the least grant it needs. */
export const ACCESS: Readonly<Record<string, Grant>> = {
  '/weir.v1.ControlPlane/Connect': 'agent',
  '/weir.v1.Operator/GetStatus': 'read-only',
  '/weir.v1.Operator/ListPolicies': 'read-only',
  '/weir.v1.Operator/Explain': 'read-only',
  '/weir.v1.Operator/ListClusterFlows': 'read-only',
  '/weir.v1.Operator/WatchClusterFlows': 'read-only',
  '/weir.v1.Operator/GetFederationStatus': 'read-only',
  '/weir.v1.Agent/GetAgentStatus': 'read-only',
  '/weir.v1.Agent/Evaluate': 'read-only',
  '/weir.v1.FlowIntrospect/ListFlows': 'flow-reader',
  '/weir.v1.FlowIntrospect/WatchFlows': 'flow-reader',
  '/weir.v1.FlowIntrospect/GetFlow': 'read-only',
  '/weir.v1.FlowIntrospect/FlowStats': 'read-only',
};

/** Whether `id` holds `grant`; why not when it does not. */
export function permits(id: Identity, grant: Grant): string | undefined {
  if (grant === 'agent')
    return id.kind === 'node' || id.kind === 'pod' ? undefined : 'only agents may connect';
  if (grant === 'flow-reader' && id.kind === 'controller') return undefined;
  if (id.kind !== 'operator') return 'only operators may call this';
  if (grant === 'admin' && id.role !== 'admin') return 'needs an admin operator';
  return undefined;
}

/**
 * The caller a call was authorized as: its identity, or 'insecure' when the
 * server runs without TLS (anyone is anyone).
 */
const callers = new WeakMap<object, Identity>();
export function callerOf(call: object): Identity | 'insecure' {
  return callers.get(call) ?? 'insecure';
}

/**
 * A service implementation whose every method first authorizes the call:
 * `secure` false (--insecure) lets every call through; otherwise the
 * caller's certificate must name an identity holding the method's grant
 * (UNAUTHENTICATED without one, PERMISSION_DENIED without the grant).
 *
 * A refusal is logged through `logs`, the per-peer limiter (by the
 * caller's identity, or its address without one): a peer decides how
 * often it is refused, so it must not decide how much is logged. A line
 * let through after suppressed ones carries their count. Give the
 * server's services one limiter (with its metric); default: one per call
 * of guarded().
 */
export function guarded<T extends grpc.UntypedServiceImplementation>(
  service: grpc.ServiceDefinition,
  impl: T,
  options: {
    secure: boolean;
    log: Logger;
    table?: Readonly<Record<string, Grant>>;
    logs?: LogLimiter;
  },
): T {
  if (!options.secure) return impl;
  const table = options.table ?? ACCESS;
  const logs = options.logs ?? new LogLimiter();
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    const method = service[name];
    const path = method?.path ?? name;
    const grant = table[path];
    out[name] = ((
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback?: grpc.sendUnaryData<unknown>,
    ) => {
      const id = peerIdentity(call);
      const why =
        typeof id === 'string'
          ? id
          : grant === undefined
            ? `${path} is not in the access table`
            : permits(id, grant);
      if (why !== undefined) {
        const suppressed = logs.take(clientOf(call));
        if (suppressed !== undefined)
          options.log.warn(
            {
              rpc: path,
              caller: typeof id === 'string' ? undefined : id.uri,
              why,
              ...suppressedField(suppressed),
            },
            'call refused',
          );
        const err = toGrpcStatus(new PermissionError(`${path}: ${why}`));
        if (typeof id === 'string') err.code = grpc.status.UNAUTHENTICATED;
        if (method?.responseStream || method?.requestStream)
          (call as unknown as NodeJS.EventEmitter).emit('error', err);
        else callback!(err);
        return;
      }
      callers.set(call, id as Identity);
      (handler as (c: unknown, cb?: unknown) => void)(call, callback);
    }) as grpc.UntypedHandleCall;
  }
  return out as T;
}
