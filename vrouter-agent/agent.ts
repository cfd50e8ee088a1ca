/**
 * The node agent: holds its node's span, compiles rule tables for the local
 * endpoints, and keeps enforcing the last good tables whatever happens to
 * the controller.
 *
 *   start: load persisted span ─> compile ─> enforce (headless until connected)
 *   controller stream: hello(node, revision, hash) ─> welcome (connected)
 *                       ─> updates ─> apply ─> compile ─> persist ─> swap
 *                       tables ─> ACK(hash)   (any failure: NACK(hash), the
 *                                              previous tables stay)
 *   lost stream: keep enforcing (headless); reconnect with backoff; resync
 *
 * The controller connection is a ControllerTransport (transport/): gRPC by
 * default, NATS when given one; the agent only applies what it delivers and
 * answers each delivery.
 *
 * `hash` is the content hash of the span in force (shared/wire/span-hash.ts),
 * computed here from the state the tables in force were compiled from; the
 * controller compares it with the span it computed for this node, and that
 * comparison is what "in sync" means.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { ValidationError, formatIssue } from '../shared/errors.js';
import { type Ip, formatIp } from '../shared/net/ip.js';
import type {
  AgentStatusReply,
  ExplainReply,
  ExplainRequest__Output,
} from '../shared/generated/weir/v1/index.js';
import { serverOptions, weirProto } from '../shared/grpc/proto.js';
import { MESSAGE_LIMITS, NACK_ERROR_CHARS, truncate } from '../shared/limits.js';
import type { Logger } from '../shared/log.js';
import type { Readiness } from '../shared/metrics.js';
import { compile } from '../shared/policy/compile.js';
import { checkProbeRequest, parseProbe, probe, resolveTarget } from '../shared/policy/probe.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import { snapshotFromWire } from '../shared/wire/policy.js';
import { type ElementMemo, snapshotHash } from '../shared/wire/span-hash.js';
import { unary } from '../shared/grpc/status.js';
import { describeRejection, type StateFileRejection } from '../shared/state/checksummed-file.js';
import { tableChanges } from './compile/table-changes.js';
import { createVerdictEngine, verdictEngineStatus } from './compile/verdict-engine.js';
import {
  createUserspaceDatapath,
  type Datapath,
  type Reevaluation,
  type UserspaceDatapath,
} from './datapath/index.js';
import { flowIntrospectHandlers } from './introspect/flow-service.js';
import { SpanState } from './store/span-state.js';
import { SyntheticTraffic } from './traffic/synthetic.js';
import { AgentMetrics } from './metrics.js';
import { GrpcTransport } from './transport/grpc.js';
import { LogLimiter } from '../shared/log-limiter.js';
import { guarded } from '../shared/tls/access.js';
import { type CertificateFiles, serverCredentials } from '../shared/tls/credentials.js';
import type { AgentHello, ControllerTransport, Delivery } from './transport/transport.js';

export interface AgentOptions {
  readonly node: string;
  /** "host:port" of the controller (gRPC); ignored when `transport` is given. */
  readonly controller: string;
  /** The controller connection; default: gRPC to `controller`. */
  readonly transport?: ControllerTransport;
  /** Publish the datapath's flow events (NATS: transport/nats-flows.ts); none by default. */
  readonly flowExport?: {
    start(datapath: () => Datapath, nowMs: () => number): void;
  } & AsyncDisposable;
  readonly stateDir: string;
  /**
   * Mutual TLS with these certificates, for the controller connection and
   * the agent's own API (operators only: shared/tls/access.ts); undefined
   * only with --insecure (status says so).
   */
  readonly tls: CertificateFiles | undefined;
  /** "host:port" for the agent's own API (port 0: any free port). */
  readonly listen: string;
  readonly log: Logger;
  /** Generate synthetic traffic through the userspace datapath (demo and tests): new connections per second. */
  readonly syntheticTrafficPerSecond?: number;
  /** The host others reach the agent's API at when it listens on every address (the node's IP). */
  readonly advertiseHost?: string;
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /**
   * The datapath, made by the caller (main.ts picks nftables or userspace)
   * with the tables of an empty span; default: the userspace datapath.
   */
  readonly datapath?: Datapath;
  /** Why this datapath (status and logs). */
  readonly datapathReason?: string;
  /**
   * How an update's tables go in force. 'incremental' (default): only the
   * flows of local endpoints whose compiled tables changed (and of addresses
   * that changed hands) are decided again, in slices that give the event
   * loop a turn (`Datapath.reloadTables`). 'full': every flow, in one
   * synchronous call (`Datapath.loadTables`; what every update did before,
   * the benchmarks' baseline).
   */
  readonly reevaluation?: 'incremental' | 'full';
}

export class NodeAgent implements AsyncDisposable {
  private state = SpanState.empty();
  /** The content hash of `state`, the span in force. */
  private inForceHash: string;
  /** Span-hash elements by object: states are immutable and share unchanged objects. */
  private readonly hashMemo: ElementMemo = new WeakMap();
  private tables: RuleTables;
  private lastError = '';
  private warnings: string[] = [];
  private closed = false;
  /** start() has run to its end: the API serves and updates are being taken. */
  private started = false;
  /** The revision whose tables the datapath was last programmed with (-1: none yet). */
  private programmedRevision = -1;
  private readonly instance = randomUUID();
  private readonly transport: ControllerTransport;
  /** The loop applying deliveries, one at a time, in order. */
  private loop: Promise<void> = Promise.resolve();
  private server: grpc.Server | undefined;
  private readonly log: Logger;
  private readonly datapath: Datapath;
  /** The same datapath as its userspace driver (synthetic traffic feeds it packets); undefined with another datapath. */
  private readonly userspace: UserspaceDatapath | undefined;
  /** Local endpoint → its zone on the datapath (stable while the endpoint lives). */
  private readonly zones = new Map<string, { zone: number; ips: string }>();
  private nextZone = 1;
  private traffic: SyntheticTraffic | undefined;
  port = 0;
  /** Prometheus metrics (serve `metrics.registry`). */
  readonly metrics: AgentMetrics;
  /** State files found unusable at start-up and moved aside. */
  readonly stateRejections: StateFileRejection[] = [];

  constructor(private readonly options: AgentOptions) {
    this.log = options.log.child({ component: 'agent' });
    this.transport =
      options.transport ??
      new GrpcTransport(options.controller, {
        log: this.log,
        tls: options.tls,
        reconnectMinMs: options.reconnectMinMs,
        reconnectMaxMs: options.reconnectMaxMs,
      });
    this.tables = this.compile(this.state);
    this.inForceHash = this.hashOf(this.state);
    // First packets are decided by the native engine when the addon loads (RuleTables otherwise).
    this.userspace =
      options.datapath === undefined
        ? createUserspaceDatapath({
            tables: this.tables,
            verdictEngine: (t) => createVerdictEngine(t),
            log: options.log.child({ component: 'datapath' }),
          })
        : undefined;
    this.datapath = options.datapath ?? this.userspace!;
    this.metrics = new AgentMetrics({
      appliedRevision: () => this.state.revision,
      controllerConnected: () => this.transport.connected,
      localEndpoints: () => this.tables.endpoints.size,
      datapath: () => this.datapath.stats(),
    });
  }

  /**
   * Puts tables in force on the datapath: endpoints that left the node are
   * detached (their flows end), the existing flows are re-evaluated against
   * the new tables, and new or changed endpoints are attached. With
   * `incremental` (and the 'incremental' setting), only the flows of
   * endpoints whose compiled tables differ from those in force, and of
   * addresses whose endpoint changed, are decided again (every other flow's
   * verdict depends only on equal tables), the walk sliced so the event
   * loop keeps its turns; it resolves once they all have their new verdict,
   * so the caller's ACK means the tables are in force for every flow.
   *
   * Each endpoint is attached with the addresses the tables give it
   * (`RuleTables.byIp`): an address two local endpoints claim belongs to the
   * one the evaluator resolves it to, so the datapath decides exactly as
   * analysis and explain do, and the other endpoint is attached without it.
   * So no input makes this throw; anything that still does is a defect the
   * caller answers by restoring the previous tables.
   */
  private async enforce(tables: RuleTables, incremental: boolean): Promise<void> {
    const held = new Map<string, Ip[]>();
    for (const e of tables.endpoints.values())
      held.set(
        e.key,
        e.ips.filter((ip) => tables.byIp.get(ip) === e),
      );
    for (const [key, z] of [...this.zones]) {
      const ips = held.get(key);
      if (ips !== undefined && ips.join(',') === z.ips) continue;
      this.datapath.detach(z.zone);
      this.zones.delete(key);
    }
    let re: Reevaluation;
    if (incremental && this.options.reevaluation !== 'full') {
      const changes = tableChanges(this.tables, tables);
      const zones = new Set<number>();
      for (const key of changes.endpoints) {
        const z = this.zones.get(key);
        if (z !== undefined) zones.add(z.zone);
      }
      re = await this.datapath.reloadTables(tables, { affected: { zones, ips: changes.ips } });
    } else re = this.datapath.loadTables(tables);
    if (re.denied > 0 || re.allowed > 0 || re.rulesChanged > 0)
      this.log.info({ ...re }, 'flows re-evaluated against the new policy');
    for (const [key, ips] of held) {
      if (this.zones.has(key)) continue;
      const zone = this.nextZone++;
      this.datapath.attach({ zone, endpoint: key, ips });
      this.zones.set(key, { zone, ips: ips.join(',') });
    }
    this.tables = tables;
  }

  /** Addresses two local endpoints claim, and which one the evaluator gives each to. */
  private static contested(tables: RuleTables): string[] {
    const claims = new Map<Ip, string[]>();
    for (const e of tables.endpoints.values())
      for (const ip of e.ips) claims.set(ip, [...(claims.get(ip) ?? []), e.key]);
    const out: string[] = [];
    for (const [ip, keys] of claims)
      if (keys.length > 1)
        out.push(
          `${formatIp(ip)} is claimed by ${keys.sort().join(', ')}; ${tables.byIp.get(ip)?.key} holds it`,
        );
    return out;
  }

  get revision(): number {
    return this.state.revision;
  }

  get ruleTables(): RuleTables {
    return this.tables;
  }

  async start(): Promise<void> {
    // A span file that is not provably this node's intact span is moved
    // aside and none of it is enforced: the agent holds no span (no pod of
    // the node isolated, as on a node that just joined) until the
    // controller's snapshot arrives, which its hello (revision 0) asks for.
    // Enforcing a damaged or another node's span instead would allow and
    // deny by policy the cluster never gave this node.
    const loaded = await SpanState.load(this.options.stateDir, this.options.node, (s) =>
      this.compile(s),
    );
    if (loaded.type === 'loaded') {
      await this.enforce(loaded.verified, false);
      this.programmedRevision = loaded.state.revision;
      this.warnings = NodeAgent.contested(loaded.verified);
      this.state = loaded.state;
      this.inForceHash = this.hashOf(loaded.state);
      this.log.info(
        { revision: loaded.state.revision, policies: loaded.state.policies.size },
        'enforcing persisted span',
      );
    } else if (loaded.type === 'rejected') {
      this.stateRejections.push(loaded.rejection);
      this.lastError = `${describeRejection(loaded.rejection)}; enforcing no span until the controller sends a snapshot`;
      this.log.error(
        { rejection: loaded.rejection },
        'persisted span rejected; enforcing no span until the controller sends a snapshot',
      );
    }
    await this.serve();
    this.options.flowExport?.start(
      () => this.datapath,
      () => performance.timeOrigin + performance.now(),
    );
    const userspace = this.userspace;
    if (this.options.syntheticTrafficPerSecond && userspace !== undefined) {
      this.traffic = new SyntheticTraffic(() => userspace, {
        connectionsPerSecond: this.options.syntheticTrafficPerSecond,
        log: this.log.child({ component: 'traffic' }),
      });
      this.traffic.start();
    }
    const deliveries = this.transport.updates(() => this.hello());
    this.loop = (async () => {
      for await (const d of deliveries) await this.onUpdate(d);
    })();
    this.started = true;
  }

  /**
   * Ready (/readyz) once a span is in force — the one persisted by a previous
   * run, or the controller's — and the datapath is programmed with it. A node
   * that never received a span (revision 0, or a state file that was moved
   * aside) is not ready until the controller's snapshot arrives: a rollout
   * waits for it rather than moving on to the next node. Headless (the
   * controller away) is ready: the node enforces its last span.
   */
  readiness(): Readiness {
    if (!this.started || this.closed)
      return { ready: false, reason: this.closed ? 'shutting down' : 'starting' };
    const revision = this.state.revision;
    if (revision === 0)
      return {
        ready: false,
        reason: `no span in force yet: waiting for the controller's snapshot${this.lastError ? ` (${this.lastError})` : ''}`,
      };
    if (this.programmedRevision !== revision)
      return {
        ready: false,
        reason: `revision ${revision} is not programmed on the ${this.datapath.kind} datapath`,
      };
    return {
      ready: true,
      reason: `revision ${revision} in force on the ${this.datapath.kind} datapath${this.transport.connected ? '' : ' (headless: the controller is not connected)'}`,
    };
  }

  /** What the agent holds now, as every (re)connection tells the controller. */
  private hello(): AgentHello {
    return {
      node: this.options.node,
      appliedRevision: this.state.revision,
      instance: this.instance,
      apiAddress: this.apiAddress(),
      inForceHash: this.inForceHash,
    };
  }

  /** O(objects) additions; only objects new since the last state are hashed. */
  private hashOf(state: SpanState): string {
    return snapshotHash(state, this.hashMemo);
  }

  private compile(state: SpanState): RuleTables {
    return compile(snapshotFromWire(state.toSnapshot()), {
      isLocal: (e) => e.node === this.options.node,
    });
  }

  // --- updates -------------------------------------------------------------------

  private async onUpdate(d: Delivery): Promise<void> {
    if (this.closed) return;
    const u = d.update;
    if (u === undefined) {
      this.lastError = d.problem ?? 'an update could not be read';
      this.metrics.updates.inc({ result: 'refused' });
      d.nack(this.lastError, this.inForceHash);
      return;
    }
    const revision = u.revision;
    try {
      const next = this.state.apply(u);
      const tables = this.compile(next);
      await next.save(this.options.stateDir, this.options.node);
      // The span is adopted (and ACKed) only once the datapath enforces it:
      // a span in the state but not in force would make the next delta
      // apply on top of a revision the node never enforced.
      const previous = { state: this.state, tables: this.tables };
      try {
        await this.enforce(tables, true);
      } catch (err) {
        await this.enforce(previous.tables, false);
        await previous.state.save(this.options.stateDir, this.options.node);
        throw err;
      }
      this.state = next;
      this.programmedRevision = next.revision;
      this.inForceHash = this.hashOf(next);
      this.warnings = NodeAgent.contested(tables);
      this.lastError = '';
      if (this.warnings.length > 0)
        this.log.warn(
          { revision, contested: this.warnings },
          'local endpoints claim the same address',
        );
      this.metrics.updates.inc({ result: 'applied' });
      this.log.info(
        {
          revision,
          snapshot: u.snapshot,
          policies: next.policies.size,
          endpoints: tables.endpoints.size,
          inForceHash: this.inForceHash,
        },
        'span applied',
      );
      d.ack(this.inForceHash);
    } catch (err) {
      const message =
        err instanceof ValidationError
          ? err.issues.map(formatIssue).join('; ')
          : (err as Error).message;
      this.lastError = `revision ${revision} refused: ${message}`;
      this.metrics.updates.inc({ result: 'refused' });
      this.log.error({ revision, err }, 'update refused; the previous revision stays in force');
      d.nack(truncate(message, NACK_ERROR_CHARS), this.inForceHash);
    }
  }

  // --- the agent's own API -----------------------------------------------------

  private async serve(): Promise<void> {
    const { proto, definition } = weirProto();
    const server = new grpc.Server(serverOptions(MESSAGE_LIMITS.agentApiReceiveBytes));
    // Refusals are peer-caused lines: one limiter per peer for both services, counted in the metric.
    const access = {
      secure: this.options.tls !== undefined,
      log: this.log,
      logs: new LogLimiter({ onSuppressed: () => this.metrics.logSuppressed.inc() }),
    };
    const agent = proto.weir.v1.Agent.service;
    server.addService(
      agent,
      guarded(
        agent,
        {
          GetAgentStatus: (_call: unknown, cb: grpc.sendUnaryData<AgentStatusReply>) =>
            cb(null, this.status()),
          Evaluate: unary((req: ExplainRequest__Output) => this.evaluate(req)),
        },
        access,
      ),
    );
    const introspect = proto.weir.v1.FlowIntrospect.service;
    server.addService(
      introspect,
      guarded(
        introspect,
        flowIntrospectHandlers(
          {
            datapath: () => this.datapath,
            nowMs: () => performance.timeOrigin + performance.now(),
            engine: () => this.engine(),
            instance: () => this.instance,
            refused: (limit) => this.metrics.refused.inc({ limit }),
            logSuppressed: () => this.metrics.logSuppressed.inc(),
          },
          this.log.child({ component: 'introspect' }),
        ),
        access,
      ),
    );
    new ReflectionService(definition).addToServer(server);
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(this.options.listen, serverCredentials(this.options.tls), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.server = server;
    this.log.info({ port: this.port }, 'agent API serving');
  }

  /** The API's address as others can reach it: the listen host, or loopback when listening on every address; a Unix socket as it is. */
  private apiAddress(): string {
    if (this.options.listen.startsWith('unix:')) return this.options.listen;
    const host = this.options.listen.slice(0, this.options.listen.lastIndexOf(':'));
    const reachable =
      host === '0.0.0.0' || host === '[::]' || host === ''
        ? (this.options.advertiseHost ?? '127.0.0.1')
        : host;
    return `${reachable}:${this.port}`;
  }

  status(): AgentStatusReply {
    return {
      node: this.options.node,
      appliedRevision: String(this.state.revision),
      controllerConnected: this.transport.connected,
      // Connected means the controller answered this stream's hello; never both.
      headless: !this.transport.connected && this.state.revision > 0,
      localEndpoints: this.tables.endpoints.size,
      policies: this.state.policies.size,
      lastError: this.lastError,
      warnings: this.warnings,
      engine: this.engine(),
      inForceHash: this.inForceHash,
      insecure: this.options.tls === undefined,
    };
  }

  /** Which datapath and implementations run the flow table and first-packet verdicts. */
  engine(): string {
    const dp = this.datapath as Datapath & { describe?(): string };
    const detail = dp.describe?.() ?? this.options.datapathReason;
    return `datapath ${dp.kind}${detail ? ` (${detail})` : ''}, flow table ${dp.flowTable.implementation}, verdicts ${verdictEngineStatus().implementation}`;
  }

  /** The datapath in force (the kernel one's status, benchmarks). */
  get activeDatapath(): Datapath {
    return this.datapath;
  }

  /** The verdict of the tables this agent enforces now. */
  evaluate(req: ExplainRequest__Output): ExplainReply {
    checkProbeRequest('EvaluateRequest', req);
    const p = parseProbe(`${req.protocol || 'TCP'}/${req.port}`);
    if (typeof p === 'string') throw new ValidationError([{ field: 'protocol/port', message: p }]);
    const tables = this.tables;
    const from = resolveTarget(tables, req.from);
    if (typeof from === 'string') throw new ValidationError([{ field: 'from', message: from }]);
    const to = resolveTarget(tables, req.to);
    if (typeof to === 'string') throw new ValidationError([{ field: 'to', message: to }]);
    return {
      revision: String(this.state.revision),
      explanationJson: JSON.stringify(probe(tables, from, to, p, 'node')),
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    this.traffic?.[Symbol.dispose]();
    await this.transport[Symbol.asyncDispose]();
    await this.options.flowExport?.[Symbol.asyncDispose]();
    await this.loop;
    await new Promise<void>((resolve) => {
      if (this.server === undefined) return resolve();
      this.server.tryShutdown(() => resolve());
      setTimeout(() => this.server?.forceShutdown(), 1_000).unref();
    });
    await this.datapath[Symbol.asyncDispose]();
  }
}
