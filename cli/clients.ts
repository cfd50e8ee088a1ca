/** gRPC clients for weirctl: the controller's Operator API and an agent's API. */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, weirProto } from '../shared/grpc/proto.js';
import type {
  AgentClient,
  FlowIntrospectClient,
  OperatorClient,
  StatusReply__Output,
} from '../shared/generated/weir/v1/index.js';
import { ErrorCode, InternalError, NotFoundError, UnavailableError } from '../shared/errors.js';
import { errorCodeOf } from '../shared/grpc/status.js';
import { UsageError } from './io.js';

export const DEFAULT_CONTROLLER = '127.0.0.1:7443';

export function controllerAddress(flag: string | undefined): string {
  return flag ?? process.env.WEIR_CONTROLLER ?? DEFAULT_CONTROLLER;
}

export function operatorClient(address: string): OperatorClient {
  const { proto } = weirProto();
  return new proto.weir.v1.Operator(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export function agentClient(address: string): AgentClient {
  const { proto } = weirProto();
  return new proto.weir.v1.Agent(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
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
        else if (code === ErrorCode.Unavailable)
          reject(new UnavailableError(`cannot reach ${what}: ${err.details || err.message}`));
        else reject(new InternalError(`${what}: ${err.details || err.message}`));
      } else resolve(res as Res);
    });
  });
}

export function flowClient(address: string): FlowIntrospectClient {
  const { proto } = weirProto();
  return new proto.weir.v1.FlowIntrospect(
    address,
    grpc.credentials.createInsecure(),
    CHANNEL_OPTIONS,
  );
}

/**
 * An agent's API address: given as host:port, or a node name looked up in
 * the controller's status (agents report where their API is).
 */
export async function agentAddress(
  node: string,
  controllerFlag: string | undefined,
): Promise<string> {
  if (/:\d+$/.test(node)) return node;
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
  return agent.apiAddress;
}
