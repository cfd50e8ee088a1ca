/**
 * How Weir's programs connect to NATS: one set of options (`--nats URL,...`,
 * the program's certificate, or a user and its password), reconnecting for
 * ever (a process outlives NATS restarts and fails over between cluster
 * servers), and the messages agents and controller exchange as small JSON
 * documents.
 *
 * TLS (docs/nats.md "TLS and identities"): the program's certificate
 * (`--tls-dir` or `--tls-cert/--tls-key/--tls-ca`, the flags every Weir
 * program takes, TLS-CONVENTIONS) is its NATS client certificate; the
 * server verifies it against the CA and maps its URI SAN
 * (`spiffe://weir/node/<node>`, ...) to the user of that role. The files
 * are read at every (re)connection: a rotated certificate is used from the
 * next reconnection on, without a restart.
 */
import { readFileSync } from 'node:fs';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { ArgumentError } from '../process.js';
import { type TlsFiles, tlsChoiceFromFlags } from '../tls/credentials.js';

export type { TlsFiles };

export interface NatsEndpoint {
  /** Server URLs ("nats://127.0.0.1:4222"; "host:port" works too). */
  readonly servers: readonly string[];
  readonly user?: string;
  readonly password?: string;
  /** TLS with this client certificate; none: plain TCP (--insecure). */
  readonly tls?: TlsFiles;
}

export interface TlsFlagValues {
  'tls-dir'?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'tls-ca'?: string | undefined;
  insecure?: boolean | undefined;
}

/** `--nats URL[,URL...]` into server URLs; throws ArgumentError. */
export function parseNatsServers(text: string | undefined, flag = '--nats'): string[] {
  const servers = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0) throw new ArgumentError(`${flag} needs at least one server URL`);
  for (const s of servers)
    if (!/^(nats:\/\/|tls:\/\/)?[A-Za-z0-9.[\]:_-]+:\d{1,5}$/.test(s))
      throw new ArgumentError(`${flag}: ${JSON.stringify(s)} is not a NATS URL (nats://host:port)`);
  return servers;
}

export function natsConnect(
  endpoint: NatsEndpoint,
  extra: Partial<ConnectionOptions> & { name: string },
): Promise<NatsConnection> {
  return connect({
    servers: [...endpoint.servers],
    ...(endpoint.user !== undefined ? { user: endpoint.user, pass: endpoint.password ?? '' } : {}),
    ...(endpoint.tls !== undefined
      ? {
          // Read at every (re)connection: rotation needs no restart.
          tls: { certFile: endpoint.tls.cert, keyFile: endpoint.tls.key, caFile: endpoint.tls.ca },
        }
      : {}),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    pingInterval: 5_000,
    maxPingOut: 2,
    // No stack captured at every request (measured: a fifth of the controller's CPU at 1,000 agents).
    noAsyncTraces: true,
    ...extra,
  });
}

const enc = new TextEncoder();
export const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v));

/** A JSON object from a message, or undefined when it is not one (bounded by the server's max payload). */
export function parseJson(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Usage lines of the NATS flags both programs take. */
export const NATS_USAGE = `  --transport grpc|nats  how agents and the controller talk: gRPC streams (default) or NATS JetStream (docs/nats.md)
  --nats URL[,URL...]    NATS servers (with --transport nats; env WEIR_NATS)
  --nats-user NAME       NATS user (env WEIR_NATS_USER)
  --nats-password-file F the user's password, first line of F (env WEIR_NATS_PASSWORD holds it directly)
  --nats-insecure        NATS without TLS even though gRPC has certificates (a local nats-server without TLS;
                         warned at start). Without it, NATS uses the program's certificate (--tls-*)
`;

export const NATS_FLAGS = {
  transport: { type: 'string', default: 'grpc' },
  nats: { type: 'string', default: process.env.WEIR_NATS },
  'nats-user': { type: 'string', default: process.env.WEIR_NATS_USER },
  'nats-password-file': { type: 'string' },
  'nats-insecure': { type: 'boolean' },
} as const;

/**
 * The NATS endpoint the flags name, or undefined for --transport grpc;
 * throws ArgumentError. Over NATS the program's certificate (TLS_FLAGS) is
 * its client certificate, required unless --insecure.
 */
export function natsEndpointFromFlags(
  values: {
    transport?: string;
    nats?: string;
    'nats-user'?: string;
    'nats-password-file'?: string;
    'nats-insecure'?: boolean;
  } & TlsFlagValues,
): NatsEndpoint | undefined {
  if (values.transport !== 'grpc' && values.transport !== 'nats')
    throw new ArgumentError(
      `--transport must be grpc or nats, not ${JSON.stringify(values.transport)}`,
    );
  if (values.transport === 'grpc') return undefined;
  const servers = parseNatsServers(values.nats);
  let password = process.env.WEIR_NATS_PASSWORD;
  const file = values['nats-password-file'];
  if (file !== undefined) {
    try {
      password = readFileSync(file, 'utf8').split('\n')[0]!.trim();
    } catch (err) {
      throw new ArgumentError(`--nats-password-file ${file}: ${(err as Error).message}`);
    }
  }
  const user = values['nats-user'];
  if (user === undefined && password !== undefined)
    throw new ArgumentError('a NATS password needs --nats-user');
  let tls: TlsFiles | undefined;
  if (!values['nats-insecure']) {
    const choice = tlsChoiceFromFlags(values);
    if (typeof choice === 'string') throw new ArgumentError(`--transport nats: ${choice}`);
    if (choice.mode === 'mtls') tls = choice.files;
  }
  return {
    servers,
    ...(user !== undefined ? { user, password: password ?? '' } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/**
 * Connects, retrying every `retryMs` until connected or `signal` aborts
 * (then undefined): a process that starts before NATS waits for it, and
 * one that stops meanwhile leaves nothing running. Once connected, the
 * client reconnects by itself, for ever.
 */
export async function natsConnectUntil(
  endpoint: NatsEndpoint,
  extra: Partial<ConnectionOptions> & { name: string },
  signal: AbortSignal,
  onRetry?: (err: unknown) => void,
  retryMs = 500,
): Promise<NatsConnection | undefined> {
  while (!signal.aborted) {
    try {
      const nc = await natsConnect(endpoint, { ...extra, waitOnFirstConnect: false });
      if (!signal.aborted) return nc;
      await nc.close();
      return undefined;
    } catch (err) {
      onRetry?.(err);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, retryMs);
        signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  return undefined;
}
