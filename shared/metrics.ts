/**
 * Prometheus metrics: each process keeps one prom-client Registry and serves
 * it at GET /metrics on its own port (text exposition format), plus the
 * probes Kubernetes calls on the same port:
 *   /healthz  200 while the process answers at all (liveness);
 *   /readyz   200 "ready: REASON" when the program says it is ready, else
 *             503 "not ready: REASON" (readiness; what each program means by
 *             it is its own: Controller.readiness() and LeaseElector.standbyReadiness(),
 *             NodeAgent.readiness()).
 */
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './log.js';

/** A program's answer to /readyz: whether it is ready, and a short line saying why (or why not). */
export interface Readiness {
  readonly ready: boolean;
  readonly reason: string;
}

export function newRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_` });
  return registry;
}

/**
 * Serves /metrics, /healthz and, given `readiness`, /readyz on "host:port"
 * (port 0: any); resolves with the server and its port. Without `readiness`
 * /readyz is 404, so a probe configured against a program that cannot tell
 * fails rather than passing.
 */
export async function serveMetrics(
  registry: Registry,
  listen: string,
  log: Logger,
  readiness?: () => Readiness,
): Promise<{ server: Server; port: number }> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '') || '0.0.0.0';
  const port = Number(listen.slice(colon + 1));
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          log.error({ err }, 'collecting metrics failed');
          res.writeHead(500).end();
        },
      );
    } else if (req.url === '/healthz')
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    else if (req.url === '/readyz' && readiness !== undefined) {
      let r: Readiness;
      try {
        r = readiness();
      } catch (err) {
        log.error({ err }, 'readiness check failed');
        r = { ready: false, reason: 'the readiness check failed' };
      }
      res
        .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(`${r.ready ? 'ready' : 'not ready'}: ${r.reason}\n`);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  log.info({ port: bound }, 'metrics serving');
  return { server, port: bound };
}
