import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import { main } from '../../cli/main.js';
import {
  ClosedError,
  ErrorCode,
  PermissionError,
  InternalError,
  NotFoundError,
  UnavailableError,
  ValidationError,
  type WeirError,
} from '../../shared/errors.js';
import { serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { toGrpcStatus } from '../../shared/grpc/status.js';
import { serverCredentials } from '../../shared/tls/credentials.js';
import { controllerTls } from '../support/tls.js';

/**
 * The error table end to end: what a server throws crosses the wire as the
 * status toGrpcStatus gives it, and weirctl turns that status back into the
 * table's code and its exit status.
 */
describe('weirctl errors follow the error table', () => {
  let server: grpc.Server;
  let address: string;
  let thrown: unknown;

  before(async () => {
    server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
    server.addService(weirProto().proto.weir.v1.Operator.service, {
      GetStatus: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb(toGrpcStatus(thrown)),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
  });

  after(() => server.forceShutdown());

  const cases: Array<[string, WeirError | Error, ErrorCode, number, RegExp]> = [
    [
      'invalid input',
      new ValidationError([{ message: 'bad field' }]),
      ErrorCode.Invalid,
      2,
      /^error: the controller at \S+: bad field\n$/,
    ],
    [
      'a missing object',
      new NotFoundError('no such thing'),
      ErrorCode.NotFound,
      1,
      /^error: the controller at \S+: no such thing\n$/,
    ],
    [
      'an unavailable dependency',
      new UnavailableError('the API server is down'),
      ErrorCode.Unavailable,
      1,
      /^error: cannot reach the controller at .*: the API server is down\n$/,
    ],
    [
      'a closing server',
      new ClosedError('shutting down'),
      ErrorCode.Unavailable,
      1,
      /^error: cannot reach the controller at .*: shutting down\n$/,
    ],
    [
      'a refused caller',
      new PermissionError('needs an admin operator'),
      ErrorCode.Denied,
      1,
      /^error: the controller at \S+ refused the call: needs an admin operator \(an operator certificate of role admin may be needed: weirctl certs operator NAME --role admin\)\n$/,
    ],
    [
      'a bug',
      new InternalError('broken invariant'),
      ErrorCode.Internal,
      1,
      /^error: the controller at \S+: broken invariant\n$/,
    ],
    [
      'an error outside the table',
      new Error('plain'),
      ErrorCode.Internal,
      1,
      /^error: the controller at \S+: plain\n$/,
    ],
  ];
  for (const [what, err, code, status, stderr] of cases) {
    test(`${what} on the server is ${code} in weirctl and exits ${status}`, async () => {
      thrown = err;
      let out = '';
      const exit = await main(['status', '--controller', address], {
        stdout: () => {},
        stderr: (t) => {
          out += t;
        },
      });
      assert.equal(exit, status);
      assert.match(out, stderr);
      assert.ok(!/\n\s+at /.test(out), 'no stack trace: one line');
    });
  }
});
