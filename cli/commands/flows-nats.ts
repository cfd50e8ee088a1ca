/**
 * `weirctl flows --follow --source nats`: the whole cluster's flow events
 * from the NATS stream agents publish to (docs/nats.md "Flow events"), with
 * the filters of `weirctl flows`, applied by the evaluator of the per-node
 * WatchFlows (compileFilter); `--since DURATION|TIME` replays from that
 * point of the stream's retention, then follows.
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type {
  FlowEvent__Output,
  FlowFilter__Output,
} from '../../shared/generated/weir/v1/index.js';
import { UnavailableError } from '../../shared/errors.js';
import { natsConnect, natsEndpointFromFlags, parseJson } from '../../shared/nats/connect.js';
import type { TlsFiles } from '../../shared/tls/credentials.js';
import { clientTlsFiles } from '../config.js';

const tlsFlagsOf = (files: TlsFiles | undefined) =>
  files === undefined
    ? { insecure: true }
    : { 'tls-cert': files.cert, 'tls-key': files.key, 'tls-ca': files.ca };
import { NATS_CLUSTER_NAME, natsNames } from '../../shared/nats/names.js';
import { READER_INBOX } from '../../shared/nats/permissions.js';
import { compileFilter } from '../../vrouter-agent/introspect/flow-service.js';
import { UsageError, type Io } from '../io.js';
import { parseFormat } from '../output.js';
import { type FlowOptions, eventText, filterOf } from './flows.js';

export interface NatsFlowOptions extends FlowOptions {
  source?: string;
  follow?: boolean;
  since?: string;
  nats?: string;
  natsUser?: string;
  natsPasswordFile?: string;
  cluster?: string;
  tlsDir?: string;
  cert?: string;
  key?: string;
  ca?: string;
  insecure?: boolean;
}

/** "--since 10m" (before now) or an ISO time, as the ISO start time; throws UsageError. */
export function sinceTime(text: string, now = Date.now()): string {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text);
  if (m !== null) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
    return new Date(now - Number(m[1]) * unit[m[2] as keyof typeof unit]).toISOString();
  }
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw new UsageError(
      `--since must be a duration (30s, 10m, 2h, 1d) or a time (2026-12-01T10:00:00Z), not ${JSON.stringify(text)}`,
    );
  return new Date(t).toISOString();
}

export async function flowsFollowNats(
  io: Io,
  o: NatsFlowOptions,
  signal?: AbortSignal,
): Promise<number> {
  if (o.source !== 'nats') throw new UsageError('--source must be agent or nats');
  if (!o.follow && !o.watch) throw new UsageError('--source nats needs --follow');
  const format = parseFormat(o.output).kind;
  const cluster = o.cluster ?? 'local';
  if (!NATS_CLUSTER_NAME.test(cluster))
    throw new UsageError(`--cluster ${JSON.stringify(cluster)} is not a cluster name on NATS`);
  let endpoint: ReturnType<typeof natsEndpointFromFlags>;
  try {
    endpoint = natsEndpointFromFlags({
      transport: 'nats',
      nats: o.nats ?? process.env.WEIR_NATS,
      'nats-user': o.natsUser ?? process.env.WEIR_NATS_USER,
      'nats-password-file': o.natsPasswordFile,
      // The same credentials, by the same precedence, as weirctl's gRPC calls.
      ...tlsFlagsOf(clientTlsFiles()),
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const filter = filterOf(o);
  const test = compileFilter(filter as FlowFilter__Output);
  const start = o.since === undefined ? undefined : sinceTime(o.since);
  const names = natsNames(cluster);
  const nc = await natsConnect(endpoint!, {
    name: 'weirctl flows',
    inboxPrefix: READER_INBOX,
    waitOnFirstConnect: false,
    maxReconnectAttempts: 10,
  }).catch((err: Error) => {
    throw new UnavailableError(`NATS at ${endpoint!.servers.join(',')}: ${err.message}`);
  });
  try {
    // The stream holds nothing but every node's flow events (no subject filter: 2.9 takes one only as a string).
    const consumer = await jetstream(nc).consumers.get(names.flows.stream, {
      ...(start === undefined
        ? { deliver_policy: DeliverPolicy.New }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start }),
    });
    if ((format === 'table' || format === 'wide') && o.headers !== false)
      io.stdout(
        `following flows of cluster ${cluster} on NATS${start ? ` since ${start}` : ''} (Ctrl-C to stop)\n`,
      );
    const messages = await consumer.consume();
    const stop = () => void messages.close();
    process.once('SIGINT', stop);
    signal?.addEventListener('abort', stop);
    for await (const m of messages) {
      const e = parseJson(m.data) as (FlowEvent__Output & { node?: string }) | undefined;
      const f = e?.flow;
      if (e === undefined || f == null || typeof e.type !== 'string') continue;
      let line: string;
      try {
        if (!test.test(f)) continue;
        line = eventText(e, o);
      } catch {
        continue; // not a flow event as agents write them
      }
      io.stdout(line);
    }
    process.off('SIGINT', stop);
    return 0;
  } finally {
    await nc.close();
  }
}
