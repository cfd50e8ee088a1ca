/**
 * The controller: follows the cluster, keeps firewall objects under
 * revisions, and keeps every agent at its node's span.
 *
 *   ClusterSource ─events─> ClusterModel ─(coalesced)─> SpanStore.commit()
 *                                                          │ revision, nodes
 *                                                          v
 *   agents <─gRPC stream─ Distributor <────────────────── notify(nodes)
 *   weirctl <─Operator── status / policies / explain (from model + store)
 *
 * Nothing is sent to agents before the source's first full sync: a partial
 * cluster would withdraw policies the agents enforce.
 */
import type * as grpc from '@grpc/grpc-js';
import { NotFoundError, ValidationError, formatIssue } from '../shared/errors.js';
import type {
  ExplainReply,
  ExplainRequest__Output,
  ListPoliciesReply,
  ListPoliciesRequest__Output,
  PolicyEntry,
  StatusReply,
} from '../shared/generated/weir/v1/index.js';
import type { Logger } from '../shared/log.js';
import { compile } from '../shared/policy/compile.js';
import { parseProbe, probe, resolveTarget } from '../shared/policy/probe.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import { CoalescingRunner } from '../shared/runner.js';
import {
  addressGroupToWire,
  firewallPolicyToWire,
  serviceGroupToWire,
} from '../shared/wire/policy.js';
import { Distributor } from './distribute/distributor.js';
import { startControllerServer, type OperatorBackend } from './distribute/grpc-server.js';
import { ClusterModel } from './model/cluster-model.js';
import type { ClusterSource, SourceEvent } from './sources/source.js';
import { ControllerMetrics } from './metrics.js';
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
}

const round = (ms: number) => Math.round(ms * 100) / 100;

export class Controller implements OperatorBackend, AsyncDisposable {
  readonly model: ClusterModel;
  private store!: SpanStore;
  private distributor!: Distributor;
  private server: grpc.Server | undefined;
  private commitRunner: CoalescingRunner | undefined;
  private persistRunner: CoalescingRunner | undefined;
  private ackWatch: NodeJS.Timeout | undefined;
  private firstPendingAt: number | undefined;
  private sourceSynced = false;
  private ready = false;
  private tables: { revision: number; tables: RuleTables } | undefined;
  private readonly log: Logger;
  /** The port gRPC listens on. */
  port = 0;
  /** Prometheus metrics (serve `metrics.registry`). */
  readonly metrics: ControllerMetrics;

  constructor(private readonly options: ControllerOptions) {
    this.model = new ClusterModel({ cluster: options.cluster });
    this.log = options.log.child({ component: 'controller' });
    this.metrics = new ControllerMetrics({
      revision: () => this.store?.revision ?? 0,
      sourceSynced: () => this.options.source.state().synced,
      agents: () => this.distributor?.views() ?? [],
      rejectedObjects: () =>
        this.model.rejections().size + (this.options.source.state().problems?.length ?? 0),
      policies: () => this.model.policyCount,
      endpoints: () => this.model.endpointCount,
    });
  }

  async start(): Promise<void> {
    const persisted = this.options.stateDir
      ? await loadControllerState(this.options.stateDir)
      : { revision: 0, nodes: {} };
    this.store = new SpanStore(this.model, { initialRevision: persisted.revision });
    this.persistRunner = new CoalescingRunner(() => this.persist(), {
      minIntervalMs: 200,
      onError: (err) => this.log.error({ err }, 'saving controller state failed'),
    });
    this.distributor = new Distributor(this.model, this.store, {
      log: this.options.log.child({ component: 'distributor' }),
      onAckedChange: () => this.persistRunner?.request(),
      observe: {
        sent: (kind) => this.metrics.updatesSent.inc({ kind }),
        acked: (ms) => ms !== undefined && this.metrics.propagationSeconds.observe(ms / 1000),
        nacked: () => this.metrics.nacks.inc(),
      },
    });
    this.distributor.restore(persisted.nodes);
    this.ackWatch = setInterval(() => this.distributor.expireUnanswered(), 1_000);
    this.ackWatch.unref();
    this.commitRunner = new CoalescingRunner(() => this.commit(), {
      minIntervalMs: this.options.commitIntervalMs ?? 20,
      onError: (err) => this.log.error({ err }, 'commit failed'),
    });

    const { server, port } = await startControllerServer({
      listen: this.options.listen,
      distributor: this.distributor,
      operator: this,
      log: this.options.log.child({ component: 'grpc' }),
      onBytesSent: (bytes) => this.metrics.updateBytes.inc(bytes),
    });
    this.server = server;
    this.port = port;
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
    if (this.sourceSynced && !this.ready) {
      this.ready = true;
      this.distributor.setReady();
    }
  }

  private async persist(): Promise<void> {
    if (!this.options.stateDir) return;
    await saveControllerState(this.options.stateDir, {
      revision: this.store.revision,
      nodes: this.distributor.persisted(),
    });
  }

  get revision(): number {
    return this.store.revision;
  }

  // --- Operator --------------------------------------------------------------

  status(): StatusReply {
    const s = this.options.source.state();
    return {
      cluster: this.options.cluster,
      revision: String(this.store.revision),
      source: {
        kind: s.kind,
        location: s.location,
        synced: s.synced,
        lastError: s.lastError,
        leadership: this.options.leadership?.() ?? 'standalone',
      },
      agents: this.distributor.views().map((v) => ({
        node: v.node,
        connected: v.connected,
        instance: v.instance,
        appliedRevision: String(v.appliedRevision),
        spanRevision: String(v.spanRevision),
        inSync: v.inSync,
        pending: v.pending,
        lastError: v.lastError,
        lastAckUnixMs: String(v.lastAckUnixMs),
        connectedSinceUnixMs: String(v.connectedSinceUnixMs),
        spanObjects: v.spanObjects,
        localEndpoints: v.localEndpoints,
        apiAddress: v.apiAddress,
      })),
      rejections: [...this.model.rejections()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([object, issues]) => ({
          object,
          problems: issues.map((i) => [i.field, i.message].filter(Boolean).join(': ')),
        }))
        .concat((s.problems ?? []).map((p) => ({ object: p.object, problems: [...p.problems] }))),
      policies: this.model.policyCount,
      endpoints: this.model.endpointCount,
      warnings: this.model
        .duplicateAddresses()
        .map(
          (d) =>
            `address ${d.ip} is claimed by ${d.endpoints.join(', ')}: policy treats it as ${d.endpoints[d.endpoints.length - 1]}`,
        ),
    };
  }

  listPolicies(req: ListPoliciesRequest__Output): ListPoliciesReply {
    let ids = this.model.policyIds();
    if (req.name !== '') {
      const wanted = req.name.includes('/np/')
        ? req.name
        : `${this.options.cluster}/np/${req.name.includes('/') ? req.name : `default/${req.name}`}`;
      ids = ids.filter((id) => id === wanted);
      if (ids.length === 0) throw new NotFoundError(`no NetworkPolicy ${req.name}`);
    }
    const groups = new Set<string>();
    const services = new Set<string>();
    const policies: PolicyEntry[] = ids.map((id) => {
      const p = this.model.policy(id)!;
      groups.add(p.appliedTo);
      for (const r of p.rules) {
        if ('addressGroup' in r.endpoint2) groups.add(r.endpoint2.addressGroup);
        if (r.serviceGroup) services.add(r.serviceGroup);
      }
      const real = this.distributor.realization(id);
      return {
        policy: firewallPolicyToWire(p),
        realization: {
          revision: String(real.revision),
          nodes: real.nodes,
          applied: real.applied,
          latencyMs: real.latencyMs,
        },
        selected: [...this.model.groupMembers(p.appliedTo).keys()].sort(),
      };
    });
    return {
      revision: String(this.store.revision),
      policies,
      addressGroups: [...groups]
        .sort()
        .map((id) => addressGroupToWire(this.model.addressGroup(id)!)),
      serviceGroups: [...services]
        .sort()
        .map((id) => serviceGroupToWire(this.model.serviceGroup(id)!)),
    };
  }

  explain(req: ExplainRequest__Output): ExplainReply {
    const p = parseProbe(`${req.protocol || 'TCP'}/${req.port}`);
    if (typeof p === 'string') throw new ValidationError([{ field: 'protocol/port', message: p }]);
    if (this.tables?.revision !== this.store.revision)
      this.tables = { revision: this.store.revision, tables: compile(this.model.snapshot()) };
    const tables = this.tables.tables;
    const from = resolveTarget(tables, req.from);
    if (typeof from === 'string') throw new ValidationError([{ field: 'from', message: from }]);
    const to = resolveTarget(tables, req.to);
    if (typeof to === 'string') throw new ValidationError([{ field: 'to', message: to }]);
    return {
      revision: String(this.store.revision),
      explanationJson: JSON.stringify(probe(tables, from, to, p)),
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.commitRunner?.close();
    if (this.ackWatch !== undefined) clearInterval(this.ackWatch);
    await this.options.source[Symbol.asyncDispose]();
    this.distributor?.closeAll('controller shutting down');
    await new Promise<void>((resolve) => {
      if (this.server === undefined) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => this.server?.forceShutdown(), 2_000).unref();
    });
    this.persistRunner?.close();
    await this.persist().catch((err) => this.log.error({ err }, 'saving controller state failed'));
  }
}
