/**
 * Metrics of the datapath choice and of the kernel datapath's slow path:
 * which datapath runs and why, how first packets are queued, verdicts of the
 * NFQUEUE thread, first-packet verdict latency, conntrack reconciliation.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DatapathSelection } from './kernel-select.js';

export function registerDatapathMetrics(registry: Registry, selection: DatapathSelection): void {
  const kernel = selection.datapath;
  const status = () => kernel?.status();
  new Gauge({
    name: 'weir_agent_datapath_info',
    help: 'The datapath in force (1), with how the kernel one queues first packets, its fail mode and why this datapath runs.',
    labelNames: ['kind', 'queue_method', 'fail_mode', 'reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const s = status();
      this.set(
        {
          kind: selection.kind,
          queue_method: s?.queueMethod ?? 'none',
          fail_mode: s?.failMode ?? 'none',
          reason: selection.reason,
        },
        1,
      );
    },
  });
  if (kernel === undefined) return;
  new Counter({
    name: 'weir_agent_slow_path_verdicts_total',
    help: 'First packets the NFQUEUE thread decided, by verdict (allow, deny, malformed).',
    labelNames: ['verdict'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const q = kernel.status().nfqueue;
      this.inc({ verdict: 'allow' }, q.allowed);
      this.inc({ verdict: 'deny' }, q.denied);
      this.inc({ verdict: 'malformed' }, q.malformed);
    },
  });
  new Gauge({
    name: 'weir_agent_first_packet_verdict_seconds',
    help: 'First-packet verdict latency inside the agent since start, by quantile and stage: decided (read to verdict built) and sent (read to verdict sent, which includes the kernel reinjecting the packet).',
    labelNames: ['quantile', 'stage'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const q = kernel.status().nfqueue;
      for (const [stage, l] of [
        ['decided', q.decideLatency],
        ['sent', q.latency],
      ] as const) {
        this.set({ quantile: '0.5', stage }, l.p50Ns / 1e9);
        this.set({ quantile: '0.9', stage }, l.p90Ns / 1e9);
        this.set({ quantile: '0.99', stage }, l.p99Ns / 1e9);
      }
    },
  });
  new Counter({
    name: 'weir_agent_conntrack_deleted_total',
    help: 'Kernel connections deleted because a new policy denies them.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(kernel.status().conntrack.deleted);
    },
  });
  new Counter({
    name: 'weir_agent_nfqueue_overruns_total',
    help: 'Times the NFQUEUE or conntrack event socket overran (the kernel dropped messages).',
    labelNames: ['socket'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const s = kernel.status();
      this.inc({ socket: 'nfqueue' }, s.nfqueue.overruns);
      this.inc({ socket: 'conntrack' }, s.conntrack.overruns);
    },
  });
}
