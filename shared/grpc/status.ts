/**
 * Weir errors as gRPC statuses and back: the one mapping, used at every
 * server edge (toGrpcStatus) and by every client that turns a status into an
 * error (errorCodeOf). The only place that builds a ServiceError.
 */
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, WeirError } from '../errors.js';

const CODES: Readonly<Record<ErrorCode, grpc.status>> = {
  [ErrorCode.Invalid]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.NotFound]: grpc.status.NOT_FOUND,
  [ErrorCode.Unavailable]: grpc.status.UNAVAILABLE,
  // A closing server: the caller retries elsewhere or later, as for any server going away.
  [ErrorCode.Closed]: grpc.status.UNAVAILABLE,
  [ErrorCode.Denied]: grpc.status.PERMISSION_DENIED,
  [ErrorCode.Exhausted]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.Internal]: grpc.status.INTERNAL,
};

/** The error table's code for a status a peer sent; codes outside the table are Internal. */
export function errorCodeOf(status: grpc.status): ErrorCode {
  switch (status) {
    case grpc.status.INVALID_ARGUMENT:
      return ErrorCode.Invalid;
    case grpc.status.NOT_FOUND:
      return ErrorCode.NotFound;
    case grpc.status.PERMISSION_DENIED:
    case grpc.status.UNAUTHENTICATED:
      return ErrorCode.Denied;
    case grpc.status.RESOURCE_EXHAUSTED:
      return ErrorCode.Exhausted;
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return ErrorCode.Unavailable;
    default:
      return ErrorCode.Internal;
  }
}

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
