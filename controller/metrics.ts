/**
 * The controller's Prometheus metrics. Counters and histograms are fed by the
 * controller and the distributor as things happen; gauges are read from their
 * state when scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { newRegistry } from '../shared/metrics.js';

export interface ControllerState {
  revision(): number;
  sourceSynced(): boolean;
  /** Leading under leader election (or running without it); false while standing by. */
  leading(): boolean;
  /** inSync: the agent's in-force hash equals the span computed for its node (and it is connected). */
  agents(): ReadonlyArray<{ connected: boolean; inSync: boolean }>;
  /** Agents with a refused span waiting to be sent again. */
  retrying(): number;
  rejectedObjects(): number;
  policies(): number;
  endpoints(): number;
}

export class ControllerMetrics {
  readonly registry: Registry;
  readonly commitSeconds: Histogram;
  readonly updatesSent: Counter<'kind'>;
  readonly updateBytes: Counter;
  readonly propagationSeconds: Histogram;
  readonly resyncSeconds: Histogram;
  readonly nacks: Counter;
  readonly unprovedAcks: Counter;
  readonly retries: Counter;
  readonly logSuppressed: Counter;
  readonly refused: Counter<'limit'>;
  readonly recordsDropped: Counter<'reason'>;
  readonly relayDropped: Counter<'node'>;
  private relayWatchCount: () => number = () => 0;

  constructor(state: ControllerState) {
    const registry = newRegistry('weir_controller_process');
    this.registry = registry;
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    gauge('weir_controller_revision', 'The current revision of the firewall objects.', () =>
      state.revision(),
    );
    gauge(
      'weir_controller_leader',
      '1 while this controller leads (or runs without leader election); 0 while it stands by.',
      () => (state.leading() ? 1 : 0),
    );
    gauge(
      'weir_controller_source_synced',
      '1 once the cluster source completed its initial sync.',
      () => (state.sourceSynced() ? 1 : 0),
    );
    gauge(
      'weir_controller_rejected_objects',
      'Objects rejected by validation (not enforced; everything else is).',
      () => state.rejectedObjects(),
    );
    gauge('weir_controller_policies', 'Firewall policies (one per valid NetworkPolicy).', () =>
      state.policies(),
    );
    gauge('weir_controller_endpoints', 'Pods with addresses that policy applies to.', () =>
      state.endpoints(),
    );
    new Gauge({
      name: 'weir_controller_agents',
      help: 'Agents known to the controller, by state (known, connected, in_sync: in-force hash proved equal, retrying: a refused span to be sent again).',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const agents = state.agents();
        this.set({ state: 'known' }, agents.length);
        this.set({ state: 'connected' }, agents.filter((a) => a.connected).length);
        this.set({ state: 'in_sync' }, agents.filter((a) => a.inSync).length);
        this.set({ state: 'retrying' }, state.retrying());
      },
    });
    this.commitSeconds = new Histogram({
      name: 'weir_controller_commit_seconds',
      help: 'Time to take one batch of changes as a revision and recompute the spans it touches.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    this.updatesSent = new Counter({
      name: 'weir_controller_updates_sent_total',
      help: 'Span updates sent to agents, by kind (snapshot or delta).',
      labelNames: ['kind'] as const,
      registers: [registry],
    });
    this.updateBytes = new Counter({
      name: 'weir_controller_update_bytes_total',
      help: 'Encoded bytes of the span updates sent to agents.',
      registers: [registry],
    });
    this.propagationSeconds = new Histogram({
      name: 'weir_controller_propagation_seconds',
      help: 'From the commit of a change to an agent ACKing (with the proving hash) the update that carries it, for changes committed while the agent was connected.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.resyncSeconds = new Histogram({
      name: 'weir_controller_resync_seconds',
      help: 'From an agent connecting (or the controller becoming ready) to its proved ACK of changes committed before that.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.nacks = new Counter({
      name: 'weir_controller_nacks_total',
      help: 'Span updates agents refused (they keep their previous revision).',
      registers: [registry],
    });
    this.unprovedAcks = new Counter({
      name: 'weir_controller_unproved_acks_total',
      help: 'ACKs whose in-force hash differs from the span sent (the agent is sent a snapshot).',
      registers: [registry],
    });
    this.logSuppressed = new Counter({
      name: 'weir_controller_log_lines_suppressed_total',
      help: 'Log lines that agents or clients caused and that were not written (rate limit per peer, shared/limits.ts LOG_LIMITS); the next line of that peer says how many.',
      registers: [registry],
    });
    this.refused = new Counter({
      name: 'weir_controller_limit_refusals_total',
      help: 'Agent streams, hellos and operator calls refused at a limit (shared/limits.ts): invalid (a field out of bounds), hello_timeout (no hello in time), pending_hello (too many streams without a hello), unknown_nodes (too many agents of nodes the cluster does not know), relay_watches (too many relayed flow watches), relay_lists (too many cluster flow lists in flight).',
      labelNames: ['limit'] as const,
      registers: [registry],
    });
    this.recordsDropped = new Counter({
      name: 'weir_controller_agent_records_dropped_total',
      help: 'Records of vanished agents dropped: expired (past --agent-record-ttl) or evicted (room for a newer agent of an unknown node).',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    this.retries = new Counter({
      name: 'weir_controller_update_retries_total',
      help: 'Refused or unproved spans sent again after backoff.',
      registers: [registry],
    });
    this.relayDropped = new Counter({
      name: 'weir_controller_relay_dropped_events_total',
      help: "Flow events of a node the relay dropped from a watch whose reader fell behind (the watch's per-node buffer was full).",
      labelNames: ['node'] as const,
      registers: [registry],
    });
    const watches = () => this.relayWatchCount();
    gauge(
      'weir_controller_relay_watches',
      'Relayed flow watches open (WatchClusterFlows and the console).',
      watches,
    );
  }

  /**
   * The federation's gauges, registered only for a federation member (a
   * controller without --federation exposes exactly what it did before).
   */
  federation(
    read: () => {
      connected: boolean;
      live: number;
      stale: number;
      rejections: number;
      pendingWrites: number;
    },
  ): void {
    const registers = [this.registry];
    new Gauge({
      name: 'weir_controller_federation_connected',
      help: '1 while the federation link reaches the hub; imports stay in force either way.',
      registers,
      collect() {
        this.set(read().connected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'weir_controller_federation_members',
      help: 'Other federation members known here, by state (live: reported within 35 s; stale: not, or missing from the hub listing, or the hub is away).',
      labelNames: ['state'] as const,
      registers,
      collect() {
        const r = read();
        this.set({ state: 'live' }, r.live);
        this.set({ state: 'stale' }, r.stale);
      },
    });
    new Gauge({
      name: 'weir_controller_federation_rejections',
      help: 'Federation entries and remote pods refused (invalid, forged, over limits, address or pod CIDR overlaps); each keeps its last valid version.',
      registers,
      collect() {
        this.set(read().rejections);
      },
    });
    new Gauge({
      name: 'weir_controller_federation_pending_writes',
      help: "This member's entries not yet written to the hub.",
      registers,
      collect() {
        this.set(read().pendingWrites);
      },
    });
  }

  /** Where the relay's open watches are read (set once the relay exists). */
  relayWatches(read: () => number): void {
    this.relayWatchCount = read;
  }
}
