/**
 * The web console's server (`weir-controller --ui-listen HOST:PORT`): the
 * pages, built at `npm run build` into dist/console/ and served as files,
 * and the JSON API (console-api.ts), with live flows as server-sent events
 * from the flow relay. No build step runs here.
 *
 * Security (docs/security.md, "The console"): the console is an operator
 * surface, so it must not open a way around mutual TLS.
 * - With `--ui-tls`: HTTPS with the controller's own certificate (re-read
 *   as it rotates), and every request must present an operator client
 *   certificate from Weir's CA (read-only suffices: everything here reads).
 *   Any address may be bound.
 * - Without: plain HTTP, bound to a loopback address only (anything else
 *   is refused at start, consoleBindProblem), and only for requests whose
 *   Host is that loopback address (a DNS-rebinding page cannot read it).
 *   Any local user of the host can read it: the controller warns at start.
 * Every response carries a strict Content-Security-Policy (same origin
 * only), nosniff, no framing, no referrer; the API answers GET only.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { isIP } from 'node:net';
import { extname, join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../shared/log.js';
import type { CertificateFiles } from '../../shared/tls/credentials.js';
import { identityOfCertificate } from '../../shared/tls/identity.js';
import type { FlowRelay } from '../relay/flow-relay.js';
import { type ConsoleApi, errorReply, flowJson, watchRequestOf } from './console-api.js';

/** dist/console/ from the build (dist/controller/console/) or from the sources (controller/console/). */
export const CONSOLE_DIRS = ['../../console', '../../dist/console'].map((p) =>
  fileURLToPath(new URL(p, import.meta.url)),
);

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

const HEADERS = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
} as const;

/** An SSE stream sends a comment this often, so proxies and browsers keep it open. */
const HEARTBEAT_MS = 15_000;

/** "host:port" split; the host without IPv6 brackets. */
export function splitHostPort(listen: string): { host: string; port: number } | string {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen);
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || port > 65_535) return `${JSON.stringify(listen.slice(0, 80))} is not HOST:PORT`;
  return { host: m[1] ?? m[2] ?? '', port };
}

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/**
 * Why the console may not listen at `listen` (for the flag's error), or
 * undefined: without TLS only a loopback address.
 */
export function consoleBindProblem(listen: string, tls: boolean): string | undefined {
  const hp = splitHostPort(listen);
  if (typeof hp === 'string') return `--ui-listen: ${hp}`;
  if (tls || isLoopback(hp.host)) return undefined;
  return `--ui-listen ${listen}: without --ui-tls the console binds a loopback address only (127.0.0.1, ::1, localhost): it would otherwise serve the cluster's policy and flows to anyone who reaches the port without a certificate; give --ui-tls (HTTPS, operator client certificates) to bind ${hp.host || 'every address'}`;
}

export interface ConsoleServerOptions {
  readonly listen: string;
  readonly api: ConsoleApi;
  readonly relay: FlowRelay;
  readonly log: Logger;
  /** HTTPS with these certificates and operator client certificates required; undefined: loopback HTTP. */
  readonly tls?: CertificateFiles;
  /** Where the built pages are (default: the first of CONSOLE_DIRS holding index.html). */
  readonly staticDir?: string;
}

export interface ConsoleServer extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
}

/** The built pages, read once: a handful of small files. */
function loadPages(dir: string | undefined): Map<string, { type: string; body: Buffer }> {
  const found = dir ?? CONSOLE_DIRS.find((d) => existsSync(join(d, 'index.html')));
  const pages = new Map<string, { type: string; body: Buffer }>();
  if (found === undefined) return pages;
  for (const name of readdirSync(found)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) pages.set(`/${name}`, { type, body: readFileSync(join(found, name)) });
  }
  const index = pages.get('/index.html');
  if (index !== undefined) pages.set('/', index);
  return pages;
}

/** The first certificates a provider gives, and each change after. */
function certificatesOf(
  files: CertificateFiles,
  onChange: (c: { cert: Buffer; key: Buffer; ca: Buffer }) => void,
): Promise<{ cert: Buffer; key: Buffer; ca: Buffer }> {
  return new Promise((resolve) => {
    let cert: Buffer | undefined;
    let key: Buffer | undefined;
    let ca: Buffer | undefined;
    let first = true;
    const emit = () => {
      if (cert === undefined || key === undefined || ca === undefined) return;
      if (first) {
        first = false;
        resolve({ cert, key, ca });
      } else onChange({ cert, key, ca });
    };
    files.addIdentityCertificateListener((u) => {
      if (u === null) return;
      cert = u.certificate;
      key = u.privateKey;
      emit();
    });
    files.addCaCertificateListener((u) => {
      if (u === null) return;
      ca = u.caCertificate;
      emit();
    });
  });
}

export async function startConsole(options: ConsoleServerOptions): Promise<ConsoleServer> {
  const hp = splitHostPort(options.listen);
  if (typeof hp === 'string') throw new TypeError(hp);
  const problem = consoleBindProblem(options.listen, options.tls !== undefined);
  if (problem !== undefined) throw new TypeError(problem);
  const log = options.log;
  const pages = loadPages(options.staticDir);
  if (pages.size === 0)
    log.warn(
      { dirs: CONSOLE_DIRS },
      'console pages not built (npm run build); serving the API only',
    );
  let port = 0;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res).catch((err) => {
      log.error({ err, url: req.url?.slice(0, 200) }, 'console request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };

  /** Who asks: an operator's identity under TLS, else the local address (for the relay's limits). */
  const clientOf = (req: IncomingMessage): string | { refused: string } => {
    if (options.tls === undefined) {
      // Loopback HTTP: only the loopback names of this very listener (no rebinding to it).
      const host = req.headers.host ?? '';
      const allowed = [
        `127.0.0.1:${port}`,
        `localhost:${port}`,
        `[::1]:${port}`,
        `${hp.host}:${port}`,
      ];
      if (!allowed.includes(host))
        return {
          refused: `Host ${JSON.stringify(host.slice(0, 100))} is not this console's address`,
        };
      return `console@${req.socket.remoteAddress ?? 'local'}`;
    }
    const raw = (req.socket as TLSSocket).getPeerCertificate?.()?.raw;
    if (raw === undefined) return { refused: 'no client certificate' };
    const id = identityOfCertificate(raw);
    if (typeof id === 'string') return { refused: id };
    if (id.kind !== 'operator') return { refused: `${id.uri} is not an operator` };
    return id.uri;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = clientOf(req);
    if (typeof client !== 'string') {
      log.warn(
        { why: client.refused, remote: req.socket.remoteAddress },
        'console request refused',
      );
      send(res, 403, { error: client.refused });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, { error: 'the console only reads: GET' });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://console');
    if (url.pathname === '/api/flows/watch') return watch(req, res, url.searchParams, client);
    if (url.pathname.startsWith('/api/')) {
      const r = await options.api.get(url.pathname.slice(5), url.searchParams, client);
      send(res, r.status, r.body);
      return;
    }
    // The pages route by fragment (#/cluster): every other path is a file or nothing.
    const page = pages.get(url.pathname);
    if (page === undefined) {
      send(res, 404, { error: `no page ${url.pathname.slice(0, 100)}` });
      return;
    }
    res.writeHead(200, { ...HEADERS, 'content-type': page.type });
    res.end(req.method === 'HEAD' ? undefined : page.body);
  }

  /** Live flows as server-sent events, at the browser's pace (the relay buffers and drops per node). */
  async function watch(
    req: IncomingMessage,
    res: ServerResponse,
    params: URLSearchParams,
    client: string,
  ): Promise<void> {
    const abort = new AbortController();
    let events: AsyncIterable<import('../relay/flow-relay.js').RelayedEvent>;
    try {
      events = options.relay.watch(watchRequestOf(params), client, abort.signal);
    } catch (err) {
      const r = errorReply(err);
      send(res, r.status, r.body);
      return;
    }
    req.on('close', () => abort.abort());
    res.writeHead(200, {
      ...HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    });
    res.write(': watching\n\n');
    const beat = setInterval(() => res.write(': beat\n\n'), HEARTBEAT_MS);
    beat.unref();
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          abort.signal.removeEventListener('abort', done);
          resolve();
        };
        res.on('drain', done);
        abort.signal.addEventListener('abort', done, { once: true });
      });
    try {
      for await (const e of events) {
        const message = {
          node: e.node,
          dropped: e.dropped,
          error: e.error ?? '',
          event:
            e.event === undefined || e.event === null
              ? null
              : {
                  type: e.event.type,
                  at: new Date(Number(e.event.atUnixMs ?? 0)).toISOString(),
                  flow: flowJson(e.event.flow),
                },
        };
        if (!res.write(`data: ${JSON.stringify(message)}\n\n`)) await drained();
        if (abort.signal.aborted) break;
      }
    } catch (err) {
      if (!abort.signal.aborted)
        res.write(`event: failed\ndata: ${JSON.stringify(errorReply(err).body)}\n\n`);
    } finally {
      clearInterval(beat);
      res.end();
    }
  }

  const server =
    options.tls === undefined
      ? createServer(handler)
      : await (async () => {
          const s = createHttpsServer(
            {
              ...(await certificatesOf(options.tls!, (c) => s.setSecureContext(c))),
              requestCert: true,
              rejectUnauthorized: true,
              minVersion: 'TLSv1.2',
            },
            handler,
          );
          return s;
        })();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host === '' ? undefined : hp.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  port = typeof address === 'object' && address !== null ? address.port : hp.port;
  const shownHost = hp.host === '' ? '127.0.0.1' : hp.host.includes(':') ? `[${hp.host}]` : hp.host;
  const url = `${options.tls === undefined ? 'http' : 'https'}://${shownHost}:${port}/`;
  return {
    url,
    port,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...HEADERS, 'content-type': 'application/json; charset=utf-8' });
  res.end(`${JSON.stringify(body)}\n`);
}
