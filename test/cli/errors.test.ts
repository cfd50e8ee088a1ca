import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { once } from 'node:events';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { freePort } from '../support/processes.js';
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

/**
 * Real failures, against real sockets: each is one line a person can act
 * on (what failed, why, and a hint), with kubectl's exit status.
 */
describe('weirctl says what went wrong, in one line with a hint', () => {
  let tlsServer: grpc.Server;
  let tlsAddress: string;
  let silent: net.Server;
  let silentAddress: string;
  let refused: string;
  const sockets: net.Socket[] = [];

  before(async () => {
    tlsServer = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
    tlsServer.addService(weirProto().proto.weir.v1.Agent.service, {});
    const port = await new Promise<number>((resolve, reject) =>
      tlsServer.bindAsync('127.0.0.1:0', serverCredentials(controllerTls()), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    tlsAddress = `127.0.0.1:${port}`;
    // Accepts connections and never says a word: a hung server.
    silent = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    silentAddress = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    refused = `127.0.0.1:${await freePort()}`;
  });
  after(() => {
    tlsServer.forceShutdown();
    for (const s of sockets) s.destroy();
    silent.close();
  });

  const cases: Array<[string, () => string[], number, RegExp]> = [
    [
      'nothing listens at the address',
      () => ['status', '--controller', refused],
      1,
      /^error: cannot reach the controller at 127\.0\.0\.1:\d+: connection refused \(is weir-controller running\? set --controller or WEIR_CONTROLLER\)\n$/,
    ],
    [
      "an address without a port is taken on Weir's port",
      () => ['status', '--controller', 'weir-no-such-host.invalid'],
      1,
      /^error: cannot reach the controller at weir-no-such-host\.invalid:7443: no such host \(/,
    ],
    [
      'a server that never answers is given up on after --request-timeout',
      () => ['status', '--controller', silentAddress, '--request-timeout', '500ms'],
      1,
      /^error: the controller at 127\.0\.0\.1:\d+ did not answer within 0\.5s \(raise --request-timeout/,
    ],
    [
      'a server that is not the one asked for fails the TLS check, naming the identity',
      () => [
        'explain',
        '--agent',
        tlsAddress,
        '--from',
        '10.0.0.1',
        '--to',
        '10.0.0.2',
        '--port',
        '80',
      ],
      1,
      /^error: cannot reach the agent at 127\.0\.0\.1:\d+: TLS handshake failed: spiffe:\/\/weir\/controller is not an agent \(weirctl presented \S+ \(--cert/,
    ],
    [
      'plain text against a TLS server says so and names --insecure',
      () => ['status', '--controller', tlsAddress, '--insecure'],
      1,
      /^error: cannot reach the controller at 127\.0\.0\.1:\d+: .*\(weirctl used --insecure: a server with TLS needs --tls-dir/,
    ],
    [
      'a certificate file that cannot be read is named with its flag',
      () => [
        'status',
        '--controller',
        refused,
        '--cert',
        '/nonexistent/tls.crt',
        '--key',
        '/nonexistent/tls.key',
        '--ca',
        '/nonexistent/ca.crt',
      ],
      2,
      /^error: --cert \/nonexistent\/tls\.crt: cannot be read \(ENOENT\)\n/,
    ],
    [
      'a bad --request-timeout names the forms it takes',
      () => ['status', '--request-timeout', 'soon'],
      2,
      /^error: --request-timeout must be a duration/,
    ],
    [
      'an unknown --tcp-state names the allowed values',
      () => ['flows', '--node', refused, '--tcp-state', 'bogus'],
      2,
      /^error: --tcp-state must be one of syn, established, fin-forward, fin-reverse, closing, rst, closed, not "bogus"\n$/,
    ],
  ];
  for (const [what, args, status, stderr] of cases) {
    test(`${what} (exit ${status})`, async () => {
      let err = '';
      let out = '';
      const exit = await main(args(), {
        stdout: (t) => {
          out += t;
        },
        stderr: (t) => {
          err += t;
        },
      });
      assert.equal(exit, status, err);
      assert.match(err, stderr);
      assert.equal(out, '');
      assert.ok(!/\n\s+at |grpc|subchannel|LB pick/i.test(err), `no internals: ${err}`);
    });
  }
});
