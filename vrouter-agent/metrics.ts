/**
 * The agent's Prometheus metrics, read from the agent and its datapath when
 * scraped: revisions and updates, and the flow engine's counters (packets by
 * verdict, drops by reason, flow setups and removals by cause).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { newRegistry } from '../shared/metrics.js';
import type { DatapathStats } from './datapath/datapath.js';

export interface AgentState {
  appliedRevision(): number;
  controllerConnected(): boolean;
  localEndpoints(): number;
  datapath(): DatapathStats;
}

export class AgentMetrics {
  readonly registry: Registry;
  readonly updates: Counter<'result'>;
  readonly refused: Counter<'limit'>;
  readonly logSuppressed: Counter;

  constructor(state: AgentState) {
    const registry = newRegistry('weir_agent_process');
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
    /** A counter whose value is kept elsewhere (the datapath's own counts), copied in at scrape time. */
    const mirrored = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      read: (s: DatapathStats) => Array<[Partial<Record<L, string>>, number]>,
    ) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.reset();
          for (const [labels, value] of read(state.datapath())) this.inc(labels, value);
        },
      });
    gauge('weir_agent_applied_revision', 'The revision of the span in force.', () =>
      state.appliedRevision(),
    );
    gauge(
      'weir_agent_controller_connected',
      '1 while the controller stream is up; 0 while enforcing the last span alone (headless).',
      () => (state.controllerConnected() ? 1 : 0),
    );
    gauge('weir_agent_local_endpoints', 'Pods on this node that policy applies to.', () =>
      state.localEndpoints(),
    );
    gauge(
      'weir_agent_flows',
      'Flow pairs in the flow table.',
      () => state.datapath().flowTable.flows,
    );
    gauge(
      'weir_agent_flows_max',
      'The flow table size limit.',
      () => state.datapath().flowTable.maxFlows,
    );
    this.updates = new Counter({
      name: 'weir_agent_updates_total',
      help: 'Span updates from the controller, by result (applied or refused).',
      labelNames: ['result'] as const,
      registers: [registry],
    });
    this.refused = new Counter({
      name: 'weir_agent_limit_refusals_total',
      help: 'API requests and streams refused at a limit (shared/limits.ts): watch_streams (too many WatchFlows open), slow_reader (a watcher dropped for not reading).',
      labelNames: ['limit'] as const,
      registers: [registry],
    });
    this.logSuppressed = new Counter({
      name: 'weir_agent_log_lines_suppressed_total',
      help: 'Log lines API clients caused and that were not written (rate limit per client); the next line of that client says how many.',
      registers: [registry],
    });
    mirrored(
      'weir_agent_packets_total',
      'Packets the datapath decided, by verdict.',
      ['verdict'],
      (s) => [
        [{ verdict: 'allow' }, s.allowed],
        [{ verdict: 'drop' }, s.dropped],
      ],
    );
    mirrored('weir_agent_drops_total', 'Packets dropped, by reason.', ['reason'], (s) =>
      Object.entries(s.drops).map(([reason, n]) => [{ reason }, n]),
    );
    mirrored('weir_agent_flow_setups_total', 'Flow pairs created by the slow path.', [], (s) => [
      [{}, s.flowTable.inserted],
    ]);
    mirrored('weir_agent_flows_removed_total', 'Flow pairs removed, by cause.', ['cause'], (s) =>
      Object.entries(s.flowTable.removedBy).map(([cause, n]) => [{ cause }, n]),
    );
    mirrored('weir_agent_flows_refused_total', 'New flows refused, by reason.', ['reason'], (s) =>
      Object.entries(s.flowTable.refused).map(([reason, n]) => [{ reason }, n]),
    );
  }
}
