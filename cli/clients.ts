/** gRPC clients for weirctl: the controller's Operator API and an agent's API. */
import type * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, weirProto } from '../shared/grpc/proto.js';
import type {
  AgentClient,
  FlowIntrospectClient,
  OperatorClient,
  StatusReply__Output,
} from '../shared/generated/weir/v1/index.js';
import { isIP } from 'node:net';
import {
  ErrorCode,
  InternalError,
  NotFoundError,
  PermissionError,
  ResourceExhaustedError,
  UnavailableError,
} from '../shared/errors.js';
import { errorCodeOf } from '../shared/grpc/status.js';
import { type CertificateFiles, channelCredentials } from '../shared/tls/credentials.js';
import type { Identity } from '../shared/tls/identity.js';
import { clientTls, clientTlsFiles, contextController, kubeRoute } from './config.js';
// port-forward.ts (with @kubernetes/client-node) is loaded only when a run takes that route: it costs a second of start-up.
import type { PortForwarder } from './port-forward.js';
import { UsageError } from './io.js';

export const DEFAULT_CONTROLLER = '127.0.0.1:7443';

export const DEFAULT_PORT = 7443;

/**
 * An address as given, with Weir's port when it has none: "ctl" is
 * "ctl:7443", "fd00::1" and "[fd00::1]" are "[fd00::1]:7443".
 */
export function withPort(address: string, port = DEFAULT_PORT): string {
  const a = address.trim();
  if (a === '') throw new UsageError('an empty address: give HOST or HOST:PORT');
  if (/^\[[^\]]+\]:\d+$/.test(a)) return a;
  if (/^\[[^\]]+\]$/.test(a)) return `${a}:${port}`;
  if (isIP(a) === 6) return `[${a}]:${port}`;
  if (/^[^:]+:\d+$/.test(a)) return a;
  if (/^[^:]+$/.test(a)) return `${a}:${port}`;
  throw new UsageError(`${JSON.stringify(address)} is not HOST, HOST:PORT or [IPv6]:PORT`);
}

/**
 * Where to reach the controller, by precedence: --controller, then
 * WEIR_CONTROLLER, then --kube-context/--kubeconfig (a port-forward through
 * the API server, cli/port-forward.ts), then the context in force (an
 * address or a port-forward), then 127.0.0.1:7443. A port-forward is opened
 * once per run and closed by closeClients().
 */
export async function controllerAddress(flag: string | undefined): Promise<string> {
  const given = flag ?? process.env.WEIR_CONTROLLER;
  if (given !== undefined) return withPort(given);
  const route = kubeRoute();
  if (route === undefined) return withPort(contextController() ?? DEFAULT_CONTROLLER);
  forwarder ??= import('./port-forward.js').then(({ CONTROLLER_SERVICE, PortForwarder }) =>
    PortForwarder.open({ ...route, service: CONTROLLER_SERVICE.service, port: DEFAULT_PORT }),
  );
  const f = await forwarder;
  opened = f;
  return f.address;
}

/** How messages name the controller at `address`: by the port-forward's route when it is one. */
export function controllerAt(address: string): string {
  if (opened !== undefined && opened.address === address)
    return `the controller (${opened.describe()})`;
  return `the controller at ${address}`;
}

let opened: PortForwarder | undefined;

let forwarder: Promise<PortForwarder> | undefined;

/** Closes what this run opened to reach the servers (the port-forward). */
export async function closeClients(): Promise<void> {
  const f = forwarder;
  forwarder = undefined;
  opened = undefined;
  if (f !== undefined) await (await f.catch(() => undefined))?.close();
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

/** How long one call may take (--request-timeout; 0: no limit). */
let requestTimeoutMs = 5_000;
export function setRequestTimeout(ms: number): void {
  requestTimeoutMs = ms;
}
export function requestTimeout(): number {
  return requestTimeoutMs;
}

const HINT_CONTROLLER = 'is weir-controller running? set --controller or WEIR_CONTROLLER';
const HINT_AGENT = 'is weir-agent running there? check --node (or its --listen)';

/**
 * What went wrong in a few words a person can act on, from a grpc-js
 * status: the transport's internals (subchannel states, LB picks, errno
 * chains) are reduced to their cause.
 */
function transportCause(err: grpc.ServiceError): { cause: string; tls: boolean } {
  const d = `${err.details ?? ''} ${err.message ?? ''}`;
  const errno =
    /\b(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EADDRNOTAVAIL|EPIPE)\b/.exec(
      d,
    )?.[1];
  if (errno === 'ECONNREFUSED') return { cause: 'connection refused', tls: false };
  if (errno === 'EHOSTUNREACH' || errno === 'ENETUNREACH')
    return { cause: 'no route to host', tls: false };
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/.test(d))
    return { cause: 'no such host', tls: false };
  const tlsReason =
    /(\S+ is not (?:the controller|an agent|the agent of node \S+)|certificate[^,;()]*|self[- ]signed[^,;()]*|unable to verify[^,;()]*|wrong version number|packet length too long|unknown ca|bad certificate|handshake failure|is not the controller|is not an agent|is not the agent of node \S+|no URI SAN[^,;()]*|TLS[^,;()]*)/i.exec(
      d,
    );
  if (tlsReason) return { cause: `TLS handshake failed: ${tlsReason[1]!.trim()}`, tls: true };
  if (errno === 'ECONNRESET' || /Connection dropped|socket hang up/.test(d))
    return {
      cause:
        'the connection was closed during the TLS handshake (a server without TLS, or one that refused this certificate)',
      tls: true,
    };
  if (errno === 'ETIMEDOUT') return { cause: 'connection timed out', tls: false };
  if (/Failed to connect/.test(d) && insecure())
    return {
      cause: 'the server closed a plain-text connection (it expects TLS)',
      tls: true,
    };
  return {
    cause: (err.details || err.message).split('\n')[0]!.replace(/^\d+ \w+: /, ''),
    tls: false,
  };
}

function insecure(): boolean {
  try {
    return clientTlsFiles() === undefined;
  } catch {
    return false;
  }
}

/** Which credentials were presented, for a TLS failure's hint. */
function credentialsHint(): string {
  try {
    const files = clientTlsFiles();
    return files === undefined
      ? 'weirctl used --insecure: a server with TLS needs --tls-dir or --cert/--key/--ca'
      : `weirctl presented ${files.cert} (--cert/--tls-dir/WEIR_CERT) and trusts ${files.ca} (--ca): are they of this cluster's CA? use --insecure only against a server started with --insecure`;
  } catch {
    return 'check --tls-dir or --cert/--key/--ca';
  }
}

/**
 * A gRPC failure as the error table's error, one line with a hint:
 * `what` names the server ("the controller at 127.0.0.1:7443").
 */
export function grpcError(err: grpc.ServiceError, whatCalled: string): Error {
  // Through a port-forward, what the kubelet said is the cause to show (known only once it failed).
  const what =
    opened !== undefined && opened.lastError !== '' && whatCalled.includes(opened.describe())
      ? `${whatCalled}, which said: ${opened.lastError}`
      : whatCalled;
  const code = errorCodeOf(err.code);
  const agent = what.startsWith('the agent');
  if (err.code === 4 /* DEADLINE_EXCEEDED */)
    return new UnavailableError(
      `${what} did not answer within ${requestTimeoutMs / 1000}s (raise --request-timeout, or ${agent ? HINT_AGENT : HINT_CONTROLLER})`,
    );
  if (code === ErrorCode.Invalid) return new UsageError(`${what}: ${err.details}`);
  if (code === ErrorCode.NotFound) return new NotFoundError(`${what}: ${err.details}`);
  if (code === ErrorCode.Denied)
    return new PermissionError(
      `${what} refused the call: ${err.details || err.message} (an operator certificate of role admin may be needed: weirctl certs operator NAME --role admin)`,
    );
  if (code === ErrorCode.Exhausted)
    return new ResourceExhaustedError(`${what}: ${err.details || err.message}`);
  if (code === ErrorCode.Unavailable) {
    // A server-side UnavailableError carries its own words; the transport's failures do not.
    const transport =
      /No connection established|Connection dropped|Failed to connect|Name resolution|ECONN|EHOST|ENET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|certificate|handshake|TLS|SSL|self.signed|wrong version|is not the|no URI SAN|socket hang up/i.test(
        `${err.details} ${err.message}`,
      );
    if (!transport)
      return new UnavailableError(`cannot reach ${what}: ${err.details || err.message}`);
    const { cause, tls } = transportCause(err);
    return new UnavailableError(
      `cannot reach ${what}: ${cause} (${tls ? credentialsHint() : agent ? HINT_AGENT : HINT_CONTROLLER})`,
    );
  }
  return new InternalError(`${what}: ${(err.details || err.message).split('\n')[0]}`);
}

/**
 * Calls a unary method with the request timeout; a gRPC failure becomes the
 * error table's error for its status (grpcError), with a message a person
 * can act on.
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
  timeoutMs = requestTimeoutMs,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const options: grpc.CallOptions = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
    method.call(client, req, options, (err, res) => {
      client.close();
      if (err) reject(grpcError(err, what));
      else resolve(res as Res);
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
  const address = await controllerAddress(controllerFlag);
  const client = operatorClient(address);
  const status = await call<object, StatusReply__Output>(
    client,
    client.GetStatus,
    {},
    `${controllerAt(address)} (to find node ${node})`,
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
