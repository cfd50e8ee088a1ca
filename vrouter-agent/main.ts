/**
 * weir-agent: wiring only. Reads options, makes the root logger, starts the
 * node agent, shuts down in order on a signal.
 */
import { parseArgs } from 'node:util';
import { nodeNameProblem } from '../shared/limits.js';
import { rootLogger } from '../shared/log.js';
import { serveMetrics } from '../shared/metrics.js';
import { ArgumentError, onShutdown, runMain } from '../shared/process.js';
import { StateDirLock } from '../shared/state/lock.js';
import { registerStateFileMetrics } from '../shared/state/metrics.js';
import { defaultStateDir, prepareStateDir } from '../shared/state/state-dir.js';
import { NodeAgent } from './agent.js';
import { registerDatapathMetrics } from './datapath/kernel-metrics.js';
import { emptySpanTables, selectDatapath, type DatapathChoice } from './datapath/kernel-select.js';
import { NATS_CLUSTER_NAME } from '../shared/nats/names.js';
import { NATS_FLAGS, NATS_USAGE, natsEndpointFromFlags } from '../shared/nats/connect.js';
import { ErrorCode, WeirError } from '../shared/errors.js';
import {
  CertificateFiles,
  TLS_FLAGS,
  TLS_USAGE,
  tlsChoiceFromFlags,
} from '../shared/tls/credentials.js';
import { NatsTransport } from './transport/nats.js';
import { FlowExporter } from './transport/nats-flows.js';

const USAGE = `usage: weir-agent --node NAME (--tls-dir DIR | --insecure) [--controller HOST:PORT] [--state-dir DIR] [--listen HOST:PORT] [--log-level LEVEL]
  --node NAME            the node this agent enforces policy for (env NODE_NAME)
  --controller HOST:PORT the controller (default 127.0.0.1:7443; env WEIR_CONTROLLER)
  --state-dir DIR        where the last applied span is kept, locked by this agent alone; created 0700, refused
                         when group/world-writable or another user's (default: /var/lib/weir/agent-NAME as root,
                         else $XDG_STATE_HOME/weir/agent-NAME, i.e. ~/.local/state/weir/agent-NAME)
  --listen HOST:PORT     the agent's own API (default 127.0.0.1:0, any free port)
  --advertise-host HOST  the address others reach that API at when listening on every address (env HOST_IP)
  --metrics-listen HOST:PORT  Prometheus metrics at /metrics, /healthz (alive) and /readyz (a span in force and
                         the datapath programmed with it); off unless given
  --synthetic-traffic N  feed the userspace datapath N generated connections per second between this node's pods
                         and their peers (demo and tests; the kernel datapath takes real traffic)
  --datapath KIND        nftables: enforce on this network namespace's real packets (nftables table "weir",
                         NFQUEUE slow path, conntrack fast path; needs root and the netfilter libraries);
                         userspace: the flow engine on synthetic traffic only. Default: nftables where it can
                         run (and without --synthetic-traffic), else userspace, with the reason in status,
                         metrics and logs (env WEIR_DATAPATH)
  --fail-mode MODE       what new connections of local pods do while no agent decides them (crashed,
                         restarting): open (default) passes them unchecked (queue bypass), closed drops them.
                         Established connections carry on either way. Open is the default because an agent
                         restart or crash must not take the node's pods off the network; choose closed where
                         an unenforced new connection is worse than an outage (see docs/datapath.md)
  --queue N              the NFQUEUE number of the kernel datapath (default 100)
${TLS_USAGE}  (the certificate names this agent: spiffe://weir/node/NAME, or its pod: spiffe://weir/ns/NS/pod/POD)
${NATS_USAGE}  --cluster NAME         the cluster's name on NATS (as the controller's --cluster; default "local")
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
        cluster: { type: 'string', default: 'local' },
        ...TLS_FLAGS,
        ...NATS_FLAGS,
        ...TLS_FLAGS,
        datapath: { type: 'string', default: process.env.WEIR_DATAPATH ?? 'auto' },
        'fail-mode': { type: 'string', default: 'open' },
        queue: { type: 'string', default: '100' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return;
    }
    if (!values.node) throw new ArgumentError('--node is required');
    const nodeProblem = nodeNameProblem(values.node);
    if (nodeProblem !== undefined) throw new ArgumentError(`--node ${nodeProblem}`);
    const node = values.node;
    // First: gRPC and NATS take their certificates from this one choice.
    const tlsChoice = tlsChoiceFromFlags(values);
    // One line, without the usage: the line says which flag to pass.
    if (typeof tlsChoice === 'string') throw new WeirError(ErrorCode.Invalid, tlsChoice);
    const endpoint = natsEndpointFromFlags(values);
    if (endpoint !== undefined && !NATS_CLUSTER_NAME.test(values.cluster!))
      throw new ArgumentError(
        `--cluster ${JSON.stringify(values.cluster)} cannot name NATS subjects (letters, digits, "_", "-"; at most 64)`,
      );
    const log = rootLogger({ name: 'weir-agent', level: values['log-level'] }).child({ node });
    let tls: CertificateFiles | undefined;
    if (tlsChoice.mode === 'insecure')
      log.warn(
        { insecure: true },
        'INSECURE: --insecure given; the controller connection is neither encrypted nor authenticated, and the agent API takes any caller',
      );
    else {
      try {
        tls = new CertificateFiles(tlsChoice.files, { log: log.child({ component: 'tls' }) });
      } catch (err) {
        throw new WeirError(ErrorCode.Invalid, `certificates: ${(err as Error).message}`);
      }
      const id = tls.identity;
      if (id.kind !== 'node' && id.kind !== 'pod')
        throw new WeirError(
          ErrorCode.Invalid,
          `certificates: ${tlsChoice.files.cert} names ${id.uri}, not an agent (spiffe://weir/node/${node})`,
        );
      if (id.kind === 'node' && id.node !== node)
        throw new WeirError(
          ErrorCode.Invalid,
          `certificates: ${tlsChoice.files.cert} is node ${id.node}'s, not --node ${node}'s`,
        );
      log.info({ identity: id.uri, notAfter: tls.notAfter }, 'mutual TLS');
    }
    if (endpoint !== undefined && endpoint.tls === undefined)
      log.warn(
        { insecure: true, nats: endpoint.servers },
        'INSECURE: NATS without TLS or client certificates (--insecure); any client of the NATS servers can read and, with their passwords, write policy',
      );
    // One agent per state directory, and one only its user can write.
    const stateDir = await prepareStateDir(values['state-dir'] ?? defaultStateDir(`agent-${node}`));
    const lock = await StateDirLock.acquire(stateDir, {
      program: 'weir-agent',
      detail: `node ${node}`,
      log: log.child({ component: 'state' }),
      onCompromised: (err) => {
        log.fatal({ err, stateDir }, 'lost the lock of the state dir to another process; exiting');
        process.exit(1);
      },
    });
    const choice = values.datapath as DatapathChoice;
    if (!['auto', 'nftables', 'userspace'].includes(choice))
      throw new ArgumentError(
        `--datapath must be nftables or userspace, not ${JSON.stringify(choice)}`,
      );
    const failMode = values['fail-mode'];
    if (failMode !== 'open' && failMode !== 'closed')
      throw new ArgumentError(
        `--fail-mode must be open or closed, not ${JSON.stringify(failMode)}`,
      );
    const queue = Number(values.queue);
    if (!(Number.isInteger(queue) && queue >= 0 && queue <= 65535))
      throw new ArgumentError(
        `--queue must be an integer in 0..65535, not ${JSON.stringify(values.queue)}`,
      );
    const selection = await selectDatapath({
      choice,
      syntheticTraffic: values['synthetic-traffic'] !== undefined,
      failMode,
      queue,
      tables: emptySpanTables(node),
      log,
    });
    if (selection.kind === 'nftables' && values['synthetic-traffic'] !== undefined)
      throw new ArgumentError(
        '--synthetic-traffic feeds the userspace datapath; the nftables one takes real packets',
      );
    log.info({ datapath: selection.kind, reason: selection.reason }, 'datapath selected');
    let flowExporter: FlowExporter | undefined;
    const agent: NodeAgent = new NodeAgent({
      node,
      controller: values.controller!,
      stateDir,
      tls,
      listen: values.listen!,
      advertiseHost: values['advertise-host'],
      syntheticTrafficPerSecond:
        values['synthetic-traffic'] === undefined
          ? undefined
          : positive(values['synthetic-traffic'], '--synthetic-traffic'),
      log,
      ...(endpoint !== undefined
        ? {
            transport: new NatsTransport({
              endpoint,
              cluster: values.cluster!,
              node,
              log: log.child({ component: 'agent' }),
            }),
            flowExport: {
              start: (datapath, nowMs) => {
                flowExporter = new FlowExporter(
                  {
                    endpoint,
                    cluster: values.cluster!,
                    node,
                    log: log.child({ component: 'flows' }),
                  },
                  agent.metrics.registry,
                );
                flowExporter.start(datapath, nowMs);
              },
              [Symbol.asyncDispose]: async () => flowExporter?.[Symbol.asyncDispose](),
            },
          }
        : {}),
      datapath: selection.datapath,
      datapathReason: selection.reason,
    });
    registerDatapathMetrics(agent.metrics.registry, selection);
    registerStateFileMetrics(agent.metrics.registry, 'weir_agent', () => agent.stateRejections);
    onShutdown(log, async () => {
      await agent[Symbol.asyncDispose]();
      await lock.release();
    });
    log.info({ stateDir }, 'state dir locked');
    await agent.start();
    if (values['metrics-listen'] !== undefined) {
      const { server } = await serveMetrics(
        agent.metrics.registry,
        values['metrics-listen'],
        log.child({ component: 'metrics' }),
        () => agent.readiness(),
      );
      server.unref();
    }
  });
}
