/** Weir errors as gRPC statuses: the one mapping, used at every server edge. */
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, WeirError } from '../errors.js';

const CODES: Readonly<Record<ErrorCode, grpc.status>> = {
  [ErrorCode.Invalid]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.NotFound]: grpc.status.NOT_FOUND,
  [ErrorCode.Unavailable]: grpc.status.UNAVAILABLE,
  [ErrorCode.Internal]: grpc.status.INTERNAL,
};

export function toGrpcStatus(err: unknown): grpc.ServiceError {
  const e = new Error(err instanceof Error ? err.message : String(err)) as grpc.ServiceError;
  e.code = err instanceof WeirError ? CODES[err.code] : grpc.status.INTERNAL;
  e.details = e.message;
  e.metadata = new grpc.Metadata();
  return e;
}

/** A unary handler from a function: its result is the reply, anything it throws becomes the status. */
export function unary<Req, Res>(fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    try {
      callback(null, fn(call.request));
    } catch (err) {
      callback(toGrpcStatus(err));
    }
  };
}
