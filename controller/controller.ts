/**
 * The controller: follows the cluster, keeps firewall objects under
 * revisions, and keeps every agent at its node's span.
 *
 *   ClusterSource ─events─> ClusterModel ─(coalesced)─> SpanStore.commit()
 *                                                          │ revision, nodes
 *                                                          v
 *   agents <─gRPC stream─ Distributor <────────────────── notify(nodes)
 *   weirctl <─Operator── OperatorService (operator.ts: reads model, store,
 *                        distributor)
 *
 * The controller owns the lifecycle: it wires these parts, commits changes
 * as revisions, persists what agents ACKed, and shuts down in order.
 * Nothing is sent to agents before the source's first full sync: a partial
 * cluster would withdraw policies the agents enforce.
 */
import type * as grpc from '@grpc/grpc-js';
import { formatIssue } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Readiness } from '../shared/metrics.js';
import type { StateFileRejection } from '../shared/state/checksummed-file.js';
import { CoalescingRunner } from '../shared/runner.js';
import { Distributor } from './distribute/distributor.js';
import { agentPodNode } from './distribute/grpc-publisher.js';
import { startControllerServer } from './distribute/grpc-server.js';
import { NatsPublisher } from './distribute/nats-publisher.js';
import type { NatsEndpoint } from '../shared/nats/connect.js';
import { ClusterModel } from './model/cluster-model.js';
import { FederationMember } from './federation/member.js';
import type { FederationLink } from './federation/link.js';
import type { ClusterSource, SourceEvent } from './sources/source.js';
import { ControllerMetrics } from './metrics.js';
import { OperatorService } from './operator.js';
import { FlowRelay } from './relay/flow-relay.js';
import { ConsoleApi } from './console/console-api.js';
import { type ConsoleServer, startConsole } from './console/console-server.js';
import type { CertificateFiles } from '../shared/tls/credentials.js';
import { SpanStore } from './store/span-store.js';
import { loadControllerState, saveControllerState } from './store/state-file.js';

export interface ControllerOptions {
  readonly cluster: string;
  readonly source: ClusterSource;
  /** "host:port" to serve gRPC on (port 0: any free port). */
  readonly listen: string;
  /** Where the revision counter and agents' ACKed spans are kept; none: not kept. */
  readonly stateDir?: string;
  readonly log: Logger;
  /** Changes arriving within this window become one revision. */
  readonly commitIntervalMs?: number;
  /** Leadership as status reports it: "leader" under leader election, "standalone" otherwise. */
  readonly leadership?: () => string;
  /** Records kept for agents of nodes the cluster does not know (AGENT_LIMITS.unknownNodes). */
  readonly maxUnknownAgents?: number;
  /** How long the record of a vanished agent that holds nothing worth keeping is kept (AGENT_LIMITS.recordTtlMs). */
  readonly agentRecordTtlMs?: number;
  /**
   * Mutual TLS for gRPC with these certificates; undefined only with
   * --insecure (status says so).
   */
  readonly tls: CertificateFiles | undefined;
  /**
   * The web console (docs/console.md): where it listens, and whether over
   * HTTPS with operator client certificates (`tls`, needs `tls` above);
   * without, loopback HTTP only.
   */
  readonly ui?: { readonly listen: string; readonly tls: boolean };
  /** Where agent pods run, for pod identities (default weir-system). */
  readonly agentNamespace?: string;
  /**
   * Distribute over NATS JetStream (docs/nats.md) instead of gRPC streams;
   * the Operator API (weirctl) stays on gRPC at `listen`.
   */
  readonly nats?: {
    readonly endpoint: NatsEndpoint;
    readonly replicas?: number;
    readonly flowMaxAgeMs?: number;
    readonly flowMaxBytes?: number;
    readonly beatMs?: number;
  };
  /**
   * Member of a federation (docs/federation.md): other members' namespaces,
   * pods and federated ClusterNetworkPolicies come in through `link`, this
   * cluster's go out. Independent of `nats` (a gRPC-distributing cluster
   * federates too).
   */
  readonly federation?: {
    readonly name: string;
    /** Opens the link to the hub (nats-link.ts in production, a memory hub in tests). */
    readonly link: () => Promise<FederationLink> | FederationLink;
    /** This cluster's pod CIDRs, reported so that members can check for overlaps. */
    readonly podCidrs?: readonly string[];
  };
}

const round = (ms: number) => Math.round(ms * 100) / 100;

export class Controller implements AsyncDisposable {
  readonly model: ClusterModel;
  private store!: SpanStore;
  private distributor!: Distributor;
  private server: grpc.Server | undefined;
  private agentPodChanged: ((namespace: string, name: string) => void) | undefined;
  private console: ConsoleServer | undefined;
  /** Cluster-wide flows from every agent (ListClusterFlows, WatchClusterFlows, the console). */
  relay: FlowRelay | undefined;
  /** The Operator service (also what the console reads). */
  operator: OperatorService | undefined;
  private publisher: NatsPublisher | undefined;
  /** The federation membership, when `federation` is set. */
  federation: FederationMember | undefined;
  private federationLink: FederationLink | undefined;
  private commitRunner: CoalescingRunner | undefined;
  private persistRunner: CoalescingRunner | undefined;
  private ackWatch: NodeJS.Timeout | undefined;
  private firstPendingAt: number | undefined;
  private sourceSynced = false;
  private ready = false;
  private readonly log: Logger;
  /** The port gRPC listens on. */
  port = 0;
  /** Prometheus metrics (serve `metrics.registry`). */
  readonly metrics: ControllerMetrics;
  /** State files found unusable at start-up and moved aside. */
  readonly stateRejections: StateFileRejection[] = [];

  constructor(private readonly options: ControllerOptions) {
    this.model = new ClusterModel({
      cluster: options.cluster,
      ...(options.federation === undefined
        ? {}
        : { federation: { name: options.federation.name } }),
    });
    this.log = options.log.child({ component: 'controller' });
    this.metrics = new ControllerMetrics({
      revision: () => this.store?.revision ?? 0,
      sourceSynced: () => this.options.source.state().synced,
      agents: () => this.distributor?.views() ?? [],
      retrying: () => (this.distributor?.views() ?? []).filter((v) => v.nextRetryUnixMs > 0).length,
      rejectedObjects: () =>
        this.model.rejections().size + (this.options.source.state().problems?.length ?? 0),
      leading: () =>
        this.options.leadership === undefined || this.options.leadership() === 'leader',
      policies: () => this.model.policyCount,
      endpoints: () => this.model.endpointCount,
    });
  }

  async start(): Promise<void> {
    const loaded = this.options.stateDir
      ? await loadControllerState(this.options.stateDir, this.options.cluster)
      : { state: { revision: 0, nodes: {} } };
    const persisted = loaded.state;
    if (loaded.rejection !== undefined) {
      this.stateRejections.push(loaded.rejection);
      this.log.error(
        { rejection: loaded.rejection },
        'controller state rejected; starting fresh, agents resync by snapshot',
      );
    }
    this.store = new SpanStore(this.model, { initialRevision: persisted.revision });
    this.persistRunner = new CoalescingRunner(() => this.persist(), {
      minIntervalMs: 200,
      // The file holds every agent's ACKed span: at 1,000 nodes a save costs
      // hundreds of ms. A restart reads an older ACK as a reason to send more,
      // never as proof, so saving less often is safe.
      costFactor: 20,
      onError: (err) => this.log.error({ err }, 'saving controller state failed'),
    });
    this.distributor = new Distributor(this.store, {
      log: this.options.log.child({ component: 'distributor' }),
      onAckedChange: () => this.persistRunner?.request(),
      observe: {
        sent: (kind) => this.metrics.updatesSent.inc({ kind }),
        acked: ({ propagationMs, resyncMs }) => {
          if (propagationMs !== undefined)
            this.metrics.propagationSeconds.observe(propagationMs / 1000);
          if (resyncMs !== undefined) this.metrics.resyncSeconds.observe(resyncMs / 1000);
        },
        nacked: () => this.metrics.nacks.inc(),
        unproved: () => this.metrics.unprovedAcks.inc(),
        retried: () => this.metrics.retries.inc(),
        logSuppressed: () => this.metrics.logSuppressed.inc(),
        recordDropped: (reason) => this.metrics.recordsDropped.inc({ reason }),
      },
      maxUnknownNodes: this.options.maxUnknownAgents,
      recordTtlMs: this.options.agentRecordTtlMs,
    });
    this.distributor.restore(persisted.nodes);
    this.ackWatch = setInterval(() => {
      this.distributor.expireUnanswered();
      this.distributor.expireVanished();
    }, 1_000);
    this.ackWatch.unref();
    this.commitRunner = new CoalescingRunner(() => this.commit(), {
      minIntervalMs: this.options.commitIntervalMs ?? 20,
      onError: (err) => this.log.error({ err }, 'commit failed'),
    });

    const fed = this.options.federation;
    if (fed !== undefined) {
      const link = await fed.link();
      this.federationLink = link;
      const distributor = this.distributor;
      this.federation = new FederationMember({
        link,
        model: this.model,
        log: this.options.log.child({ component: 'federation' }),
        ...(this.options.stateDir === undefined ? {} : { stateDir: this.options.stateDir }),
        podCidrs: fed.podCidrs ?? [],
        onModelChange: () => {
          this.firstPendingAt ??= Date.now();
          this.commitRunner?.request();
        },
        realization: (id) => {
          const r = distributor.realization(id);
          return { inSync: r.applied.length, total: r.nodes.length, revision: r.revision };
        },
      });
      // Loads the persisted imports into the model: the first commit enforces them.
      await this.federation.start();
      const member = this.federation;
      this.metrics.federation(() => {
        const st = member.status();
        const stale = st.members.filter((m) => m.stale).length;
        return {
          connected: st.link.connected,
          live: st.members.length - stale,
          stale,
          rejections: st.rejections.length,
          pendingWrites: st.self.pending,
        };
      });
    }

    const agentNodeOf = agentPodNode(this.model, this.options.agentNamespace ?? 'weir-system');
    const distributor = this.distributor;
    this.relay = new FlowRelay({
      agents: () => distributor.views(),
      tls: this.options.tls,
      agentNodeOf,
      log: this.options.log.child({ component: 'relay' }),
      observe: {
        dropped: (node, count) => this.metrics.relayDropped.inc({ node }, count),
        refused: (limit) => this.metrics.refused.inc({ limit }),
      },
    });
    const relay = this.relay;
    this.metrics.relayWatches(() => relay.watches);
    this.operator = new OperatorService({
      cluster: this.options.cluster,
      source: this.options.source,
      model: this.model,
      store: this.store,
      distributor: this.distributor,
      leadership: this.options.leadership,
      stateRejections: this.stateRejections,
      ...(this.federation === undefined ? {} : { federation: this.federation }),
      insecure: this.options.tls === undefined,
    });
    const { server, port, agentPodChanged } = await startControllerServer({
      listen: this.options.listen,
      distributor: this.distributor,
      operator: this.operator,
      relay: this.relay,
      tls: this.options.tls,
      agentNodeOf,
      log: this.options.log.child({ component: 'grpc' }),
      onBytesSent: (bytes) => this.metrics.updateBytes.inc(bytes),
      controlPlane: this.options.nats === undefined,
      onLogSuppressed: () => this.metrics.logSuppressed.inc(),
      onRefused: (limit) => this.metrics.refused.inc({ limit }),
    });
    this.server = server;
    this.agentPodChanged = agentPodChanged;
    const nats = this.options.nats;
    if (nats !== undefined) {
      const store = this.store;
      this.publisher = await NatsPublisher.start({
        endpoint: nats.endpoint,
        cluster: this.options.cluster,
        sessions: this.distributor,
        nodeLocal: (node, key) =>
          key.startsWith('g:') && store.span(node)?.localOnlyGroups.has(key.slice(2)) === true,
        held: (key, node) =>
          node !== undefined
            ? store.span(node)?.entries.has(key) === true
            : store.holdersOf(key).size > 0,
        replicas: nats.replicas,
        beatMs: nats.beatMs,
        flowMaxAgeMs: nats.flowMaxAgeMs,
        flowMaxBytes: nats.flowMaxBytes,
        log: this.options.log.child({ component: 'nats' }),
        onBytesSent: (bytes) => this.metrics.updateBytes.inc(bytes),
      });
    }
    this.port = port;
    const ui = this.options.ui;
    if (ui !== undefined) {
      this.console = await startConsole({
        listen: ui.listen,
        api: new ConsoleApi({
          cluster: this.options.cluster,
          operator: this.operator,
          model: this.model,
          relay: this.relay,
        }),
        relay: this.relay,
        log: this.options.log.child({ component: 'console' }),
        ...(ui.tls && this.options.tls !== undefined ? { tls: this.options.tls } : {}),
      });
      if (ui.tls)
        this.log.info(
          { url: this.console.url },
          'console serving (HTTPS, operator client certificates)',
        );
      else
        this.log.warn(
          { url: this.console.url, insecure: true },
          "console serving on loopback over plain HTTP: any local user of this host can read the cluster's policy and flows there (--ui-tls for HTTPS with operator certificates)",
        );
    }
    this.log.info(
      { port, revision: persisted.revision, cluster: this.options.cluster },
      'controller serving',
    );
    await this.options.source.start((e) => this.onEvent(e));
  }

  private onEvent(e: SourceEvent): void {
    if (e.type === 'synced') {
      this.sourceSynced = true;
      this.log.info({ source: this.options.source.state().location }, 'source synced');
    } else if (e.type === 'error') {
      this.log.warn({ error: e.message }, 'source error');
      return;
    } else {
      if (e.type === 'invalid') {
        this.log.warn(
          { object: `${e.kind} ${e.namespace}/${e.name}`, problems: e.issues.map(formatIssue) },
          'object rejected',
        );
        this.options.source.reportRejected?.(e);
      }
      this.model.apply(e);
      // A pod identity's stream ends as soon as its pod no longer stands for the node's agent.
      const pod = e.type === 'upsert' ? e.object : e;
      if (pod.kind === 'Pod') this.agentPodChanged?.(pod.namespace, pod.name);
      this.firstPendingAt ??= Date.now();
    }
    this.commitRunner?.request();
  }

  private commit(): void {
    const observed = this.firstPendingAt ?? Date.now();
    this.firstPendingAt = undefined;
    const t0 = performance.now();
    const c = this.store.commit(observed);
    if (c !== undefined) {
      const t1 = performance.now();
      this.metrics.commitSeconds.observe((t1 - t0) / 1000);
      this.distributor.notify(c.nodes);
      const t2 = performance.now();
      this.log.info(
        {
          revision: c.revision,
          nodes: c.nodes.length,
          commitMs: round(t1 - t0),
          sendMs: round(t2 - t1),
        },
        'revision committed',
      );
      this.persistRunner?.request();
    }
    this.federation?.afterCommit();
    if (this.sourceSynced && !this.ready) {
      this.ready = true;
      this.distributor.setReady();
    }
  }

  private async persist(): Promise<void> {
    if (!this.options.stateDir) return;
    await saveControllerState(this.options.stateDir, this.options.cluster, {
      revision: this.store.revision,
      nodes: this.distributor.persisted(),
    });
  }

  /** The console's address, once serving. */
  get consoleUrl(): string | undefined {
    return this.console?.url;
  }

  get revision(): number {
    return this.store.revision;
  }

  /**
   * Ready (/readyz) once serving with the cluster source synced and its
   * state taken as a revision: from then on agents get spans (nothing is sent
   * before, since a partial cluster would withdraw policies they enforce).
   */
  readiness(): Readiness {
    if (this.store === undefined) return { ready: false, reason: 'not started' };
    if (!this.ready) {
      const error = this.options.source.state().lastError;
      return {
        ready: false,
        reason: `the cluster source has not synced yet${error ? ` (${error})` : ''}`,
      };
    }
    return { ready: true, reason: `serving revision ${this.store.revision}, source synced` };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.commitRunner?.close();
    if (this.ackWatch !== undefined) clearInterval(this.ackWatch);
    await this.options.source[Symbol.asyncDispose]();
    this.distributor?.closeAll('controller shutting down');
    await this.publisher?.[Symbol.asyncDispose]();
    await this.federation?.close();
    await this.federationLink?.[Symbol.asyncDispose]();
    await new Promise<void>((resolve) => {
      if (this.server === undefined) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => this.server?.forceShutdown(), 2_000).unref();
    });
    await this.console?.[Symbol.asyncDispose]();
    this.relay?.[Symbol.dispose]();
    this.persistRunner?.close();
    await this.persist().catch((err) => this.log.error({ err }, 'saving controller state failed'));
  }
}
