/**
 * weir-agent: wiring only. Reads options, makes the root logger, starts the
 * node agent, shuts down in order on a signal.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { rootLogger } from '../shared/log.js';
import { serveMetrics } from '../shared/metrics.js';
import { ArgumentError, onShutdown, runMain } from '../shared/process.js';
import { NodeAgent } from './agent.js';

const USAGE = `usage: weir-agent --node NAME [--controller HOST:PORT] [--state-dir DIR] [--listen HOST:PORT] [--log-level LEVEL]
  --node NAME            the node this agent enforces policy for (env NODE_NAME)
  --controller HOST:PORT the controller (default 127.0.0.1:7443; env WEIR_CONTROLLER)
  --state-dir DIR        where the last applied span is kept (default: $TMPDIR/weir-agent-NAME)
  --listen HOST:PORT     the agent's own API (default 127.0.0.1:0, any free port)
  --advertise-host HOST  the address others reach that API at when listening on every address (env HOST_IP)
  --metrics-listen HOST:PORT  Prometheus metrics at /metrics (and /healthz); off unless given
  --synthetic-traffic N  feed the userspace datapath N generated connections per second between this node's pods
                         and their peers (demo and tests; the kernel datapath takes real traffic)
`;

function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!(Number.isFinite(n) && n > 0))
    throw new ArgumentError(`${flag} must be a positive number, not ${JSON.stringify(text)}`);
  return n;
}

export async function main(argv: string[]): Promise<void> {
  await runMain(USAGE, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        node: { type: 'string', default: process.env.NODE_NAME },
        controller: { type: 'string', default: process.env.WEIR_CONTROLLER ?? '127.0.0.1:7443' },
        'state-dir': { type: 'string' },
        listen: { type: 'string', default: '127.0.0.1:0' },
        'advertise-host': { type: 'string', default: process.env.HOST_IP },
        'synthetic-traffic': { type: 'string' },
        'metrics-listen': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return;
    }
    if (!values.node) throw new ArgumentError('--node is required');
    const log = rootLogger({ name: 'weir-agent', level: values['log-level'] }).child({
      node: values.node,
    });
    const agent = new NodeAgent({
      node: values.node,
      controller: values.controller!,
      stateDir: values['state-dir'] ?? join(tmpdir(), `weir-agent-${values.node}`),
      listen: values.listen!,
      advertiseHost: values['advertise-host'],
      syntheticTrafficPerSecond:
        values['synthetic-traffic'] === undefined
          ? undefined
          : positive(values['synthetic-traffic'], '--synthetic-traffic'),
      log,
    });
    onShutdown(log, () => agent[Symbol.asyncDispose]());
    await agent.start();
    if (values['metrics-listen'] !== undefined) {
      const { server } = await serveMetrics(
        agent.metrics.registry,
        values['metrics-listen'],
        log.child({ component: 'metrics' }),
      );
      server.unref();
    }
  });
}
