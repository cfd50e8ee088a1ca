/**
 * Prometheus metrics: each process keeps one prom-client Registry and serves
 * it at GET /metrics on its own port (text exposition format), plus /healthz.
 */
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './log.js';

export function newRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_` });
  return registry;
}

/** Serves /metrics and /healthz on "host:port" (port 0: any); resolves with the server and its port. */
export async function serveMetrics(
  registry: Registry,
  listen: string,
  log: Logger,
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
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  log.info({ port: bound }, 'metrics serving');
  return { server, port: bound };
}
