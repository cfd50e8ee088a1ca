/**
 * weir-controller: wiring only. Reads options, makes the root logger, picks
 * the source (manifests, or the Kubernetes API), optionally waits to lead,
 * starts the controller, shuts down in order on a signal.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import { rootLogger } from '../shared/log.js';
import { serveMetrics } from '../shared/metrics.js';
import { ArgumentError, onShutdown, runMain } from '../shared/process.js';
import { StateDirLock } from '../shared/state/lock.js';
import { registerStateFileMetrics } from '../shared/state/metrics.js';
import { prepareStateDir } from '../shared/state/state-dir.js';
import { AGENT_LIMITS } from '../shared/limits.js';
import { Controller } from './controller.js';
import { consoleBindProblem } from './console/console-server.js';
import { LeaseElector } from './leader/lease-elector.js';
import { loadKubeConfig } from './kube/api.js';
import { KubernetesSource } from './sources/kubernetes-source.js';
import { ManifestSource } from './sources/manifest-source.js';
import type { ClusterSource } from './sources/source.js';
import { NATS_CLUSTER_NAME } from '../shared/nats/names.js';
import { NATS_FLAGS, NATS_USAGE, natsEndpointFromFlags } from '../shared/nats/connect.js';
import {
  CertificateFiles,
  TLS_FLAGS,
  TLS_USAGE,
  tlsChoiceFromFlags,
} from '../shared/tls/credentials.js';
import { ErrorCode, WeirError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { NatsEndpoint } from '../shared/nats/connect.js';
import type { FederationLink } from './federation/link.js';
import { FEDERATION_FLAGS, FEDERATION_USAGE, federationFromFlags } from './federation/flags.js';

const USAGE = `usage: weir-controller (--tls-dir DIR | --insecure) [--manifests DIR | --kubeconfig PATH | --in-cluster] [--leader-elect [--lease-namespace NS] [--lease-name NAME]]
                       [--listen HOST:PORT] [--metrics-listen HOST:PORT] [--state-dir DIR] [--cluster NAME] [--log-level LEVEL]
  --manifests DIR        read cluster state from manifests in DIR, watched (default: the demo in deploy/examples)
  --kubeconfig PATH      follow the Kubernetes API server of this kubeconfig (its current context)
  --in-cluster           follow the Kubernetes API server from inside a pod (service account)
  --leader-elect         run only while holding a coordination.k8s.io Lease; exit (status 1) when it is lost
  --lease-namespace NS   the Lease's namespace (default weir-system)
  --lease-name NAME      the Lease's name (default weir-controller)
  --listen HOST:PORT     gRPC for agents and weirctl (default 127.0.0.1:7443; env WEIR_LISTEN)
  --metrics-listen HOST:PORT  Prometheus metrics at /metrics, /healthz (alive) and /readyz (leading with the source
                         synced, or standing by with the Lease readable); served while standing by too; off unless given
  --state-dir DIR        keep the revision counter and agents' ACKed spans here, for delta resync after a restart
                         (locked by this controller alone; created 0700, refused when group/world-writable or
                         another user's); without it nothing is kept and a restart sends a snapshot to each agent
                         whose span changed (one whose hash proves it holds its span is sent nothing)
  --ui-listen HOST:PORT  serve the web console here (docs/console.md); off unless given. Without --ui-tls
                         plain HTTP on a loopback address only (any local user can read it; other addresses refused)
  --ui-tls               serve the console over HTTPS with the controller's certificate, requiring an operator
                         client certificate from Weir's CA (needs --tls-dir; any address may be bound)
  --cluster NAME         cluster name, prefixed to every object id (default "local")
  --agent-namespace NS   where agent pods run, for agent certificates naming a pod (default weir-system)
  --max-unknown-agents N agents of nodes the cluster does not know that the controller keeps a record of
                         (default 1000; beyond it the oldest disconnected is dropped, else a hello is refused)
  --agent-record-ttl D   how long the record of a vanished agent that never ACKed, or whose node left the
                         cluster, is kept, e.g. 10m, 1h (default 10m)
${TLS_USAGE}${NATS_USAGE}${FEDERATION_USAGE}  --nats-replicas N      JetStream replicas of Weir's streams and bucket (default 1; 3 on a 3-server cluster)
  --flow-retention D     how long the NATS flow event stream keeps events, e.g. 24h, 30m (default 24h)
  --flow-max-bytes N     most bytes that stream keeps, e.g. 1GiB, 500MiB (default 1GiB)
`;

/** The embedded default: the demo cluster shipped with Weir. */
export const DEMO_MANIFESTS = ['../deploy/examples', '../../deploy/examples'].map((p) =>
  fileURLToPath(new URL(p, import.meta.url)),
);

/** "30s", "15m", "24h", "7d" in milliseconds; throws ArgumentError. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  if (m === null || Number(m[1]) <= 0)
    throw new ArgumentError(
      `${flag} must be a duration such as 30s, 15m, 24h, 7d, not ${JSON.stringify(text)}`,
    );
  return Number(m[1]) * unit[m[2] as keyof typeof unit];
}

/** "1GiB", "500MiB", "64KiB" or bytes; throws ArgumentError. */
function parseBytes(text: string, flag: string): number {
  const m = /^(\d+)(B|KiB|MiB|GiB|TiB)?$/.exec(text);
  const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 } as const;
  if (m === null || Number(m[1]) <= 0)
    throw new ArgumentError(
      `${flag} must be a size such as 1GiB, 500MiB, not ${JSON.stringify(text)}`,
    );
  return Number(m[1]) * unit[(m[2] ?? 'B') as keyof typeof unit];
}

export async function main(argv: string[]): Promise<void> {
  await runMain(USAGE, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        manifests: { type: 'string' },
        kubeconfig: { type: 'string' },
        'in-cluster': { type: 'boolean' },
        'leader-elect': { type: 'boolean' },
        'lease-namespace': { type: 'string', default: 'weir-system' },
        'lease-name': { type: 'string', default: 'weir-controller' },
        listen: { type: 'string', default: process.env.WEIR_LISTEN ?? '127.0.0.1:7443' },
        'metrics-listen': { type: 'string' },
        'ui-listen': { type: 'string' },
        'ui-tls': { type: 'boolean' },
        'state-dir': { type: 'string' },
        cluster: { type: 'string', default: 'local' },
        'agent-namespace': { type: 'string', default: 'weir-system' },
        'max-unknown-agents': { type: 'string', default: String(AGENT_LIMITS.unknownNodes) },
        'agent-record-ttl': { type: 'string', default: '10m' },
        'log-level': { type: 'string' },
        ...TLS_FLAGS,
        ...NATS_FLAGS,
        ...TLS_FLAGS,
        ...FEDERATION_FLAGS,
        'nats-replicas': { type: 'string', default: '1' },
        'flow-retention': { type: 'string', default: '24h' },
        'flow-max-bytes': { type: 'string', default: '1GiB' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return;
    }
    const chosen = [
      values.manifests !== undefined,
      values.kubeconfig !== undefined,
      values['in-cluster'] === true,
    ].filter(Boolean).length;
    if (chosen > 1)
      throw new ArgumentError(
        '--manifests, --kubeconfig and --in-cluster are alternatives: give one',
      );
    // First: gRPC and NATS take their certificates from this one choice.
    const tlsChoice = tlsChoiceFromFlags(values);
    // One line, without the usage: the line says which flag to pass.
    if (typeof tlsChoice === 'string') throw new WeirError(ErrorCode.Invalid, tlsChoice);
    const endpoint = natsEndpointFromFlags(values);
    if (endpoint !== undefined && !NATS_CLUSTER_NAME.test(values.cluster!))
      throw new ArgumentError(
        `--cluster ${JSON.stringify(values.cluster)} cannot name NATS subjects (letters, digits, "_", "-"; at most 64)`,
      );
    const federation = federationFromFlags(
      values,
      values.cluster!,
      tlsChoice.mode === 'mtls' ? tlsChoice.files : undefined,
    );
    const replicas = Number(values['nats-replicas']);
    if (!(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5))
      throw new ArgumentError(`--nats-replicas must be 1 to 5, not ${values['nats-replicas']}`);
    const maxUnknownAgents = Number(values['max-unknown-agents']);
    if (!(Number.isInteger(maxUnknownAgents) && maxUnknownAgents >= 0))
      throw new ArgumentError(
        `--max-unknown-agents must be a non-negative integer, not ${JSON.stringify(values['max-unknown-agents']).slice(0, 40)}`,
      );
    const agentRecordTtlMs = parseDuration(values['agent-record-ttl']!, '--agent-record-ttl');
    const flowMaxAgeMs = parseDuration(values['flow-retention']!, '--flow-retention');
    const flowMaxBytes = parseBytes(values['flow-max-bytes']!, '--flow-max-bytes');
    if (values['ui-tls'] && values['ui-listen'] === undefined)
      throw new ArgumentError('--ui-tls secures the console: give --ui-listen HOST:PORT too');
    if (values['ui-tls'] && tlsChoice.mode === 'insecure')
      throw new ArgumentError(
        "--ui-tls serves the console with the controller's certificate: it needs --tls-dir, not --insecure",
      );
    if (values['ui-listen'] !== undefined) {
      const problem = consoleBindProblem(values['ui-listen'], values['ui-tls'] === true);
      if (problem !== undefined) throw new WeirError(ErrorCode.Invalid, problem);
    }
    const log = rootLogger({ name: 'weir-controller', level: values['log-level'] });
    let tls: CertificateFiles | undefined;
    if (tlsChoice.mode === 'insecure')
      log.warn(
        { insecure: true },
        'INSECURE: --insecure given; gRPC without TLS or client authentication: any process that reaches the controller may act as any node or operator',
      );
    else {
      try {
        tls = new CertificateFiles(tlsChoice.files, { log: log.child({ component: 'tls' }) });
      } catch (err) {
        throw new WeirError(ErrorCode.Invalid, `certificates: ${(err as Error).message}`);
      }
      log.info({ identity: tls.identity.uri, notAfter: tls.notAfter }, 'mutual TLS');
    }
    if (federation !== undefined && federation.endpoint.tls === undefined)
      log.warn(
        { insecure: true, federation: federation.name, nats: federation.endpoint.servers },
        'INSECURE: federation link without TLS or client certificates; its password crosses the network in clear',
      );
    if (endpoint !== undefined && endpoint.tls === undefined)
      log.warn(
        { insecure: true, nats: endpoint.servers },
        'INSECURE: NATS without TLS or client certificates (--insecure); any client of the NATS servers can read and, with their passwords, write policy',
      );
    // One controller per state directory, and one only its user can write.
    const stateDir =
      values['state-dir'] !== undefined ? await prepareStateDir(values['state-dir']) : undefined;
    const lock =
      stateDir !== undefined
        ? await StateDirLock.acquire(stateDir, {
            program: 'weir-controller',
            detail: `cluster ${values.cluster}`,
            log: log.child({ component: 'state' }),
            onCompromised: (err) => {
              log.fatal(
                { err, stateDir },
                'lost the lock of the state dir to another process; exiting',
              );
              process.exit(1);
            },
          })
        : undefined;
    if (stateDir !== undefined) log.info({ stateDir }, 'state dir locked');

    let kubeConfig: KubeConfig | undefined;
    let source: ClusterSource;
    if (values.kubeconfig !== undefined || values['in-cluster']) {
      if (values.kubeconfig !== undefined && !existsSync(values.kubeconfig))
        throw new ArgumentError(`kubeconfig ${values.kubeconfig} does not exist`);
      try {
        kubeConfig = loadKubeConfig(
          values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : { inCluster: true },
        );
      } catch (err) {
        throw new ArgumentError(
          `cannot load the Kubernetes configuration: ${(err as Error).message}`,
        );
      }
      source = new KubernetesSource({ kubeConfig, log: log.child({ component: 'kubernetes' }) });
    } else {
      if (values['leader-elect'])
        throw new ArgumentError(
          '--leader-elect needs the Kubernetes API: give --kubeconfig or --in-cluster',
        );
      const dir = values.manifests ?? DEMO_MANIFESTS.find((d) => existsSync(d));
      // The image ships no demo: there, the source must be named.
      if (dir === undefined)
        throw new ArgumentError(
          'no cluster source: give --in-cluster, --kubeconfig PATH or --manifests DIR (the demo manifests are not installed here)',
        );
      if (!existsSync(dir)) throw new ArgumentError(`manifest directory ${dir} does not exist`);
      source = new ManifestSource(dir, {
        log: log.child({ component: 'manifests' }),
        stateDir: values['state-dir'],
      });
    }

    const elector =
      values['leader-elect'] && kubeConfig !== undefined
        ? new LeaseElector({
            kubeConfig,
            namespace: values['lease-namespace']!,
            name: values['lease-name']!,
            identity: `${hostname()}_${process.pid}`,
            log: log.child({ component: 'leader-election' }),
          })
        : undefined;
    const stopping = new AbortController();
    // Made before leadership so that a standby serves its metrics and probes;
    // started (gRPC, state, source) only once it leads.
    const controller = new Controller({
      cluster: values.cluster!,
      source,
      listen: values.listen!,
      stateDir,
      log,
      tls,
      agentNamespace: values['agent-namespace']!,
      maxUnknownAgents,
      agentRecordTtlMs,
      ...(values['ui-listen'] !== undefined
        ? { ui: { listen: values['ui-listen'], tls: values['ui-tls'] === true } }
        : {}),
      ...(endpoint !== undefined
        ? { nats: { endpoint, replicas, flowMaxAgeMs, flowMaxBytes } }
        : {}),
      ...(federation !== undefined
        ? {
            federation: {
              name: federation.name,
              podCidrs: federation.podCidrs,
              link: () =>
                openFederationLink({
                  federation: federation.name,
                  cluster: values.cluster!,
                  endpoint: federation.endpoint,
                  log: log.child({ component: 'federation-link' }),
                }),
            },
          }
        : {}),
      ...(elector !== undefined
        ? { leadership: () => (elector.isLeader() ? 'leader' : 'lost') }
        : {}),
    });
    let started = false;
    onShutdown(log, async () => {
      stopping.abort();
      // Stop serving first, then hand the lease over.
      if (started) await controller[Symbol.asyncDispose]();
      else await source[Symbol.asyncDispose]();
      await elector?.[Symbol.asyncDispose]();
      await lock?.release();
    });
    registerStateFileMetrics(
      controller.metrics.registry,
      'weir_controller',
      () => controller.stateRejections,
    );
    if (values['metrics-listen'] !== undefined) {
      const { server } = await serveMetrics(
        controller.metrics.registry,
        values['metrics-listen'],
        log.child({ component: 'metrics' }),
        // A standby is ready while it can take over; the leader once synced.
        () =>
          elector !== undefined && !started ? elector.standbyReadiness() : controller.readiness(),
      );
      server.unref();
    }

    if (elector !== undefined) {
      elector.onLost((reason) => {
        // Another controller may already be leading: stop at once rather than serve stale decisions.
        log.fatal(
          { reason, lease: `${values['lease-namespace']}/${values['lease-name']}` },
          'leadership lost; exiting',
        );
        process.exit(1);
      });
      log.info(
        { lease: `${values['lease-namespace']}/${values['lease-name']}` },
        'waiting for leadership',
      );
      try {
        await elector.acquire(stopping.signal);
      } catch (err) {
        if (stopping.signal.aborted) return; // shutting down while waiting
        throw err;
      }
    }
    started = true;
    await controller.start();
  });
}

/**
 * The NATS federation link (controller/federation/nats-link.ts,
 * `openNatsFederationLink`, from the fed-net branch): JetStream KV at the
 * hub's domain over the member's leaf node. Loaded by name so that this
 * wiring builds before that file is merged; once it is, this becomes a
 * static import and a direct call.
 */
async function openFederationLink(options: {
  federation: string;
  cluster: string;
  endpoint: NatsEndpoint;
  log: Logger;
}): Promise<FederationLink> {
  const path = './federation/nats-link.js';
  let mod: { openNatsFederationLink?: (o: typeof options) => Promise<FederationLink> };
  try {
    mod = (await import(path)) as typeof mod;
  } catch (err) {
    throw new WeirError(
      ErrorCode.Unavailable,
      `--federation needs the NATS federation link (controller/federation/nats-link.ts): ${(err as Error).message}`,
    );
  }
  if (mod.openNatsFederationLink === undefined)
    throw new WeirError(ErrorCode.Internal, 'nats-link.ts exports no openNatsFederationLink');
  return mod.openNatsFederationLink(options);
}
