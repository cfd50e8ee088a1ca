/**
 * Flow events to NATS (docs/nats.md "Flow events"): every event of the
 * datapath's events() stream (created, verdict, re-evaluated, closed, aged,
 * evicted), as the wire FlowEvent the per-node WatchFlows gives (pods and
 * policies named), JSON on weir.<cluster>.flows.<node> in the stream
 * WEIR_<cluster>_FLOWS, which the controller bounds by age and size.
 *
 * Never blocks the datapath: events() hands events over through its own
 * bounded buffer (a full one drops and says how many), and at most
 * `maxInFlight` publishes wait for JetStream at once; beyond that, or while
 * NATS is away, events are dropped. Both are counted
 * (weir_agent_flow_events_dropped_total{reason}).
 */
import { type JetStreamClient, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Counter, type Registry } from 'prom-client';
import type { FlowEvent as WireFlowEvent } from '../../shared/generated/weir/v1/index.js';
import type { Logger } from '../../shared/log.js';
import { type NatsEndpoint, json, natsConnectUntil } from '../../shared/nats/connect.js';
import { agentInbox, natsNames } from '../../shared/nats/names.js';
import type { Datapath } from '../datapath/index.js';
import { FlowView } from '../introspect/flow-service.js';

export interface FlowExportOptions {
  readonly endpoint: NatsEndpoint;
  readonly cluster: string;
  readonly node: string;
  readonly log: Logger;
  /** Events events() holds for this exporter. Default 8192. */
  readonly bufferSize?: number;
  /** Publishes awaiting JetStream's acknowledgement at once. Default 1024. */
  readonly maxInFlight?: number;
}

export class FlowExporter implements AsyncDisposable {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private failedOnce = false;
  readonly published: Counter;
  readonly dropped: Counter<'reason'>;

  constructor(
    private readonly options: FlowExportOptions,
    registry: Registry,
  ) {
    this.published = new Counter({
      name: 'weir_agent_flow_events_published_total',
      help: 'Flow events JetStream acknowledged',
      registers: [registry],
    });
    this.dropped = new Counter({
      name: 'weir_agent_flow_events_dropped_total',
      help: 'Flow events dropped: buffer (the exporter fell behind the datapath), nats (too many unacknowledged, or NATS away), error (not describable)',
      labelNames: ['reason'],
      registers: [registry],
    });
  }

  /** Starts following the datapath; NATS is connected in the background. */
  start(datapath: () => Datapath, nowMs: () => number): void {
    const subject = natsNames(this.options.cluster).flows.subject(this.options.node);
    void natsConnectUntil(
      this.options.endpoint,
      { name: `weir-agent ${this.options.node} flows`, inboxPrefix: agentInbox(this.options.node) },
      this.abort.signal,
    ).then((nc) => {
      if (nc === undefined) return;
      this.nc = nc;
      this.js = jetstream(nc);
    });
    const max = this.options.maxInFlight ?? 1024;
    let cached: { tables: unknown; view: FlowView } | undefined;
    this.loop = (async () => {
      const events = datapath().events({
        signal: this.abort.signal,
        bufferSize: this.options.bufferSize ?? 8192,
      });
      for await (const e of events) {
        if (e.type === 'lost') {
          this.dropped.inc({ reason: 'buffer' }, e.count);
          continue;
        }
        const js = this.js;
        if (js === undefined || this.nc?.isClosed() || this.inFlight >= max) {
          this.dropped.inc({ reason: 'nats' });
          continue;
        }
        let event: WireFlowEvent;
        try {
          const tables = datapath().tables;
          if (cached?.tables !== tables) cached = { tables, view: new FlowView(tables, nowMs()) };
          event = {
            type: e.type === 're-evaluated' ? 'reevaluated' : e.type,
            flow: cached.view.flow(e.flow),
            atUnixMs: String(Math.round(Date.now() - nowMs() + e.atMs)),
          };
        } catch (err) {
          // A defect in describing one flow must not end the export (nor the agent).
          if (!this.failedOnce)
            this.options.log.error(
              { err, flow: e.flow.index },
              'flow event not describable; dropped',
            );
          this.failedOnce = true;
          this.dropped.inc({ reason: 'error' });
          continue;
        }
        this.inFlight++;
        js.publish(subject, json({ node: this.options.node, ...event }), { timeout: 5_000 }).then(
          () => {
            this.inFlight--;
            this.published.inc();
          },
          () => {
            this.inFlight--;
            this.dropped.inc({ reason: 'nats' });
          },
        );
      }
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.abort.abort();
    await this.loop.catch(() => {});
    await this.nc?.drain().catch(() => this.nc?.close());
  }
}
