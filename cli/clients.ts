/** gRPC clients for weirctl: the controller's Operator API and an agent's API. */
import type * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, weirProto } from '../shared/grpc/proto.js';
import type {
  AgentClient,
  FlowIntrospectClient,
  OperatorClient,
  StatusReply__Output,
} from '../shared/generated/weir/v1/index.js';
import {
  ErrorCode,
  InternalError,
  NotFoundError,
  PermissionError,
  UnavailableError,
} from '../shared/errors.js';
import { errorCodeOf } from '../shared/grpc/status.js';
import { type CertificateFiles, channelCredentials } from '../shared/tls/credentials.js';
import type { Identity } from '../shared/tls/identity.js';
import { clientTls, contextController } from './config.js';
import { UsageError } from './io.js';

export const DEFAULT_CONTROLLER = '127.0.0.1:7443';

export function controllerAddress(flag: string | undefined): string {
  return flag ?? process.env.WEIR_CONTROLLER ?? contextController() ?? DEFAULT_CONTROLLER;
}

/** Credentials for the controller: the server must present the controller's identity. */
function controllerCredentials(tls = clientTls()): grpc.ChannelCredentials {
  return channelCredentials(tls, (id) =>
    id.kind === 'controller' ? undefined : `${id.uri} is not the controller`,
  );
}

/**
 * Credentials for an agent's API: the server must be an agent, and the
 * agent of `node` when the caller names one (a pod identity is taken as an
 * agent of any node: only the controller can resolve it).
 */
function agentCredentials(
  node: string | undefined,
  tls: CertificateFiles | undefined = clientTls(),
): grpc.ChannelCredentials {
  return channelCredentials(tls, (id: Identity) => {
    if (id.kind === 'pod') return undefined;
    if (id.kind !== 'node') return `${id.uri} is not an agent`;
    return node === undefined || id.node === node
      ? undefined
      : `${id.uri} is not the agent of node ${node}`;
  });
}

/** A client of the Operator API; `tls`: other certificates than weirctl's settings name (the lab's). */
export function operatorClient(address: string, tls?: CertificateFiles): OperatorClient {
  const { proto } = weirProto();
  return new proto.weir.v1.Operator(
    address,
    controllerCredentials(tls ?? clientTls()),
    CHANNEL_OPTIONS,
  );
}

export function agentClient(address: string, node?: string, tls?: CertificateFiles): AgentClient {
  const { proto } = weirProto();
  return new proto.weir.v1.Agent(
    address,
    agentCredentials(node, tls ?? clientTls()),
    CHANNEL_OPTIONS,
  );
}

/**
 * Calls a unary method with a deadline; a gRPC failure becomes the error
 * table's error for its status (shared/grpc/status.ts), with a message a
 * person can act on.
 */
export function call<Req, Res>(
  client: grpc.Client,
  method: (
    req: Req,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: Res) => void,
  ) => unknown,
  req: Req,
  what: string,
  timeoutMs = 5_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) {
        const code = errorCodeOf(err.code);
        if (code === ErrorCode.Invalid) reject(new UsageError(err.details));
        else if (code === ErrorCode.NotFound) reject(new NotFoundError(err.details));
        else if (code === ErrorCode.Denied)
          reject(new PermissionError(`${what} refused the call: ${err.details || err.message}`));
        else if (code === ErrorCode.Unavailable)
          reject(new UnavailableError(`cannot reach ${what}: ${err.details || err.message}`));
        else reject(new InternalError(`${what}: ${err.details || err.message}`));
      } else resolve(res as Res);
    });
  });
}

export function flowClient(address: string, node?: string): FlowIntrospectClient {
  const { proto } = weirProto();
  return new proto.weir.v1.FlowIntrospect(address, agentCredentials(node), CHANNEL_OPTIONS);
}

/** An agent's API, and the node whose agent must answer there when known. */
export interface AgentTarget {
  readonly address: string;
  readonly node?: string;
}

/**
 * An agent's API address: given as host:port, or a node name looked up in
 * the controller's status (agents report where their API is; under mutual
 * TLS only the authenticated agent of the node can have said it, and the
 * client checks the agent's certificate names that node).
 */
export async function agentAddress(
  node: string,
  controllerFlag: string | undefined,
): Promise<AgentTarget> {
  if (/:\d+$/.test(node)) return { address: node };
  const address = controllerAddress(controllerFlag);
  const client = operatorClient(address);
  const status = await call<object, StatusReply__Output>(
    client,
    client.GetStatus,
    {},
    `the controller at ${address} (to find node ${node})`,
  );
  const agent = status.agents.find((a) => a.node === node);
  if (agent === undefined)
    throw new UsageError(
      `the controller knows no agent on node ${JSON.stringify(node)} (known: ${status.agents.map((a) => a.node).join(', ') || 'none'})`,
    );
  if (agent.apiAddress === '')
    throw new UsageError(
      `the agent on node ${node} has not said where its API is; give --node HOST:PORT`,
    );
  return { address: agent.apiAddress, node };
}
