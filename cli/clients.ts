/** gRPC clients for weirctl: the controller's Operator API and an agent's API. */
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, weirProto } from '../shared/grpc/proto.js';
import type { AgentClient, OperatorClient } from '../shared/generated/weir/v1/index.js';
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

/** Calls a unary method with a deadline; gRPC failures become messages a person can act on. */
export function call<Req, Res>(
  client: grpc.Client,
  method: (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown,
  req: Req,
  what: string,
  timeoutMs = 5_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) {
        if (err.code === grpc.status.INVALID_ARGUMENT || err.code === grpc.status.NOT_FOUND) reject(new UsageError(err.details));
        else if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) reject(new Unreachable(`cannot reach ${what}: ${err.details || err.message}`));
        else reject(new Error(`${what}: ${err.details || err.message}`));
      } else resolve(res as Res);
    });
  });
}

/** The controller or agent could not be reached (exit status 1, a one-line message). */
export class Unreachable extends Error {}
