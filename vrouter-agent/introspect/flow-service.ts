/**
 * FlowIntrospect (proto/weir/v1/introspect.proto) over a Datapath: the
 * agent's flows as operators read them, with the pods and the policy and rule
 * behind each gate. Filtering happens here, on decoded flows; paging follows
 * the flow table's index order with the table cursor as the page token.
 */
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import {
  type Issue,
  NotFoundError,
  ResourceExhaustedError,
  ValidationError,
} from '../../shared/errors.js';
import type {
  Flow,
  FlowEvent as WireFlowEvent,
  FlowFilter__Output,
  FlowRule,
  FlowStatsReply,
  GetFlowRequest__Output,
  ListFlowsReply,
  ListFlowsRequest__Output,
  WatchFlowsRequest__Output,
} from '../../shared/generated/weir/v1/index.js';
import { clientOf, PeerSlots } from '../../shared/grpc/peer.js';
import { toGrpcStatus } from '../../shared/grpc/status.js';
import {
  FIELD_LIMITS,
  INTROSPECT_LIMITS,
  PREVIEW_CHARS,
  preview,
  textIssue,
} from '../../shared/limits.js';
import { parseCidr, parseIp, type Cidr } from '../../shared/net/ip.js';
import type { Logger } from '../../shared/log.js';
import { LogLimiter, suppressedField } from '../../shared/log-limiter.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { compileMatch, MATCH_MAX_CHARS, parseMatch } from '../../shared/flows/flow-match.js';
import { matchesLabels, parseSelectorText } from '../../shared/policy/selector.js';
import type { LabelSelector, Labels } from '../../shared/policy/types.js';
import type { Datapath, DecodedFlow, GateOutcome } from '../datapath/datapath.js';
import type { TcpStateName } from '../flows/flow-table.js';

const MAX_PAGE = INTROSPECT_LIMITS.flowsPage;

const FILTER_FIELDS = [
  'sourceCidr',
  'destinationCidr',
  'action',
  'policy',
  'rule',
  'pod',
  'namespace',
  'tcpState',
  'fromPod',
  'toPod',
  'fromNamespace',
  'toNamespace',
] as const;

/** The TCP states a filter may name (Flow.tcp_state, plus "closing" for either FIN). */
export const TCP_STATES = [
  'syn',
  'established',
  'fin-forward',
  'fin-reverse',
  'closing',
  'rst',
  'closed',
] as const;

/** The one word `weirctl flows` shows for a TCP state (bits are sticky: the most advanced wins). */
export function tcpStateWord(names: readonly TcpStateName[] | undefined, protocol: number): string {
  if (protocol !== 6 || names === undefined) return '';
  const has = (n: TcpStateName) => names.includes(n);
  if (has('closed')) return 'closed';
  if (has('rst')) return 'rst';
  if (has('finForward') && has('finReverse')) return 'closing';
  if (has('finForward')) return 'fin-forward';
  if (has('finReverse')) return 'fin-reverse';
  if (has('established')) return 'established';
  return 'syn';
}

interface CompiledFilter {
  readonly test: (f: Flow) => boolean;
}

function prefix(text: string, field: string): Cidr | undefined {
  if (text === '') return undefined;
  const c = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`);
  if (typeof c === 'string')
    throw new ValidationError([
      {
        object: 'FlowFilter',
        field: `filter.${field}`,
        // The parser's reason quotes the input: only when that is short.
        message: `${preview(text)}: ${c.length <= PREVIEW_CHARS ? c : 'not a CIDR or an address'}`,
      },
    ]);
  return c;
}

function inside(c: Cidr | undefined, ip: string): boolean {
  if (c === undefined) return true;
  const a = parseIp(ip);
  return typeof a === typeof c.start && a >= c.start && a <= c.end;
}

/**
 * A filter, checked (every problem, each naming its field) and compiled.
 * `labelsOf`: the labels of a pod ("namespace/name") as the agent knows
 * them, for pod_selector (a pod it knows no labels of matches no selector
 * but the empty one).
 */
export function compileFilter(
  f: FlowFilter__Output | null | undefined,
  labelsOf: (pod: string) => Labels | undefined = () => undefined,
): CompiledFilter {
  if (f === null || f === undefined) return { test: () => true };
  const long = FILTER_FIELDS.flatMap(
    (k) => textIssue('FlowFilter', `filter.${k}`, f[k] ?? '', FIELD_LIMITS.flowFilterField) ?? [],
  );
  const problems: Issue[] = [...long];
  if (f.tcpState !== '' && !(TCP_STATES as readonly string[]).includes(f.tcpState))
    problems.push({
      object: 'FlowFilter',
      field: 'filter.tcpState',
      message: `${preview(f.tcpState)} is not a TCP state (${TCP_STATES.join(', ')})`,
    });
  let match: ((x: Flow) => boolean) | undefined;
  if ((f.match ?? '') !== '') {
    try {
      const m = compileMatch(parseMatch(f.match, 'filter.match'));
      match = (x) =>
        m({
          source: x.source!,
          sourcePort: x.sourcePort!,
          destination: x.destination!,
          destinationPort: x.destinationPort!,
          protocol: x.protocol!,
        });
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      problems.push(...err.issues);
    }
  }
  let selector: LabelSelector | undefined;
  if ((f.podSelector ?? '') !== '') {
    const parsed =
      f.podSelector.length > MATCH_MAX_CHARS
        ? `is ${f.podSelector.length} characters; at most ${MATCH_MAX_CHARS}`
        : parseSelectorText(f.podSelector);
    if (typeof parsed === 'string')
      problems.push({ object: 'FlowFilter', field: 'filter.podSelector', message: parsed });
    else selector = parsed;
  }
  const since = Number(f.sinceUnixMs ?? 0);
  if (!Number.isSafeInteger(since) || since < 0)
    problems.push({
      object: 'FlowFilter',
      field: 'filter.sinceUnixMs',
      message: 'must be a time in Unix milliseconds',
    });
  if (problems.length > 0) throw new ValidationError(problems);
  const selects = (pod: string | undefined) => {
    if (selector === undefined) return true;
    const labels = pod ? labelsOf(pod) : undefined;
    return labels !== undefined && matchesLabels(labels, selector);
  };
  const inNamespace = (pod: string | undefined, ns: string) =>
    ns === '' || pod?.startsWith(`${ns}/`) === true;
  const src = prefix(f.sourceCidr, 'sourceCidr');
  const dst = prefix(f.destinationCidr, 'destinationCidr');
  if (f.action !== '' && !['allow', 'deny', 'hold'].includes(f.action))
    throw new ValidationError([
      { object: 'FlowFilter', field: 'filter.action', message: 'must be allow, deny or hold' },
    ]);
  // A policy "decided" a gate when its rule allowed it or it isolated a denied endpoint.
  const policyMatches = (r: FlowRule | null | undefined) =>
    r?.policy !== undefined &&
    r.policy !== '' &&
    (r.policy.split(',').some((id) => id === f.policy || id.endsWith(`/np/${f.policy}`)) ||
      (r.policyName ?? '').split(', ').includes(f.policy));
  return {
    test: (x) =>
      inside(src, x.source!) &&
      inside(dst, x.destination!) &&
      (f.port === 0 || x.sourcePort === f.port || x.destinationPort === f.port) &&
      (f.protocol === 0 || x.protocol === f.protocol) &&
      (f.action === '' || x.action === f.action) &&
      (f.policy === '' || policyMatches(x.egress) || policyMatches(x.ingress)) &&
      (f.rule === '' || x.egress?.rule === f.rule || x.ingress?.rule === f.rule) &&
      (f.pod === '' || x.sourcePod === f.pod || x.destinationPod === f.pod) &&
      (f.namespace === '' ||
        x.sourcePod?.startsWith(`${f.namespace}/`) === true ||
        x.destinationPod?.startsWith(`${f.namespace}/`) === true) &&
      (f.tcpState === '' ||
        x.tcpState === f.tcpState ||
        (f.tcpState === 'closing' && (x.tcpState ?? '').startsWith('fin'))) &&
      (f.fromPod === '' || x.sourcePod === f.fromPod) &&
      (f.toPod === '' || x.destinationPod === f.toPod) &&
      inNamespace(x.sourcePod, f.fromNamespace) &&
      inNamespace(x.destinationPod, f.toNamespace) &&
      (since === 0 || Number(x.lastSeenUnixMs) >= since) &&
      (match === undefined || match(x)) &&
      (selector === undefined || selects(x.sourcePod) || selects(x.destinationPod)),
  };
}

/**
 * Flow ids (Flow.id): the flow table's index is a slot, reused when a flow
 * ends; an id is given once. A slot's flow is told from the next one in the
 * slot by its identity (zone, 5-tuple, creation time on the datapath clock),
 * so a flow keeps its id while it lives, whichever call sees it first, and
 * the next flow in the slot gets a new one. Bounded by the table: one entry
 * per slot seen.
 */
export class FlowIds {
  private next = 1;
  private readonly bySlot = new Map<number, { key: string; id: number }>();
  private readonly slotOf = new Map<number, number>();

  constructor(readonly instance: string) {}

  private static key(d: DecodedFlow): string {
    return `${d.zone}|${d.protocol}|${d.src}|${d.sport}|${d.dst}|${d.dport}|${d.firstSeenMs}`;
  }

  idOf(d: DecodedFlow): number {
    const key = FlowIds.key(d);
    const cur = this.bySlot.get(d.index);
    if (cur?.key === key) return cur.id;
    if (cur !== undefined) this.slotOf.delete(cur.id);
    const id = this.next++;
    this.bySlot.set(d.index, { key, id });
    this.slotOf.set(id, d.index);
    return id;
  }

  /** The slot of the flow with this id, while that flow lives there. */
  indexOf(id: number): number | undefined {
    return this.slotOf.get(id);
  }
}

/**
 * Converts decoded flows to the wire form. Pod names come from the rule
 * tables (local endpoints and every group member the span holds).
 */
export class FlowView {
  private readonly pods = new Map<string, string>();
  private readonly labels = new Map<string, Labels>();
  /** Datapath clock → Unix ms. */
  private readonly offset: number;

  constructor(
    private readonly tables: RuleTables,
    datapathNowMs: number,
    private readonly ids?: FlowIds,
  ) {
    for (const e of tables.snapshot.endpoints)
      this.labels.set(`${e.namespace}/${e.name}`, e.labels);
    for (const e of tables.endpoints.values()) this.labels.set(e.key, e.endpoint.labels);
    for (const e of tables.endpoints.values())
      for (const ip of e.endpoint.ips) this.pods.set(ip, e.key);
    for (const g of tables.snapshot.addressGroups) {
      if (g.kind === 'selector')
        for (const m of g.members)
          for (const ip of m.ips) if (!this.pods.has(ip)) this.pods.set(ip, m.endpoint);
    }
    for (const e of tables.snapshot.endpoints)
      for (const ip of e.ips) if (!this.pods.has(ip)) this.pods.set(ip, `${e.namespace}/${e.name}`);
    this.offset = Date.now() - datapathNowMs;
  }

  /** The labels of a pod the agent's span holds. */
  labelsOf(pod: string): Labels | undefined {
    return this.labels.get(pod);
  }

  private name(policyId: string): string {
    const p = this.tables.policies.get(policyId);
    if (p === undefined) return policyId;
    return p.kind === 'ClusterNetworkPolicy' ? `cnp/${p.name}` : `${p.namespace}/${p.name}`;
  }

  /** How one gate decided; for a deny, the policies isolating the endpoint (`endpoint`: the gate's side). */
  private gate(
    g: GateOutcome,
    direction: 'egress' | 'ingress',
    endpoint: string | undefined,
  ): FlowRule {
    if (g.kind === 'rule') {
      const rule = this.tables.rules.get(g.rule);
      const policy = this.tables.policies.get(g.policy);
      return {
        decision: 'rule',
        rule: g.rule,
        policy: g.policy,
        policyName: this.name(g.policy),
        tier: policy?.tier ?? 'namespace',
        action: rule?.action === 'deny' ? 'deny' : 'allow',
      };
    }
    if (g.kind === 'deny') {
      const e = endpoint === undefined ? undefined : this.tables.endpoints.get(endpoint);
      const ids = e === undefined ? [] : e[direction].policies;
      return {
        decision: 'deny',
        rule: '',
        policy: ids.join(','),
        policyName: ids.map((id) => this.name(id)).join(', '),
      };
    }
    return {
      decision: g.kind === 'default' ? 'default' : g.kind === 'node' ? 'node' : 'not-checked',
      rule: '',
      policy: '',
      policyName: '',
    };
  }

  flow(d: DecodedFlow): Flow {
    return {
      index: d.index,
      zone: d.endpoint ?? `zone ${d.zone}`,
      replyZone: d.replyEndpoint ?? `zone ${d.replyZone}`,
      protocol: d.protocol,
      source: d.src,
      sourcePort: d.sport,
      destination: d.dst,
      destinationPort: d.dport,
      sourcePod: this.pods.get(d.src) ?? '',
      destinationPod: this.pods.get(d.dst) ?? '',
      action: d.action,
      dropReason: d.dropReason === 'none' ? '' : d.dropReason,
      egress: this.gate(d.egress, 'egress', this.pods.get(d.src)),
      ingress: this.gate(d.ingress, 'ingress', this.pods.get(d.dst)),
      forward: {
        packets: String(d.counters?.forward.packets ?? 0),
        bytes: String(d.counters?.forward.bytes ?? 0),
      },
      reverse: {
        packets: String(d.counters?.reverse.packets ?? 0),
        bytes: String(d.counters?.reverse.bytes ?? 0),
      },
      firstSeenUnixMs: String(Math.round(d.firstSeenMs + this.offset)),
      lastSeenUnixMs: String(Math.round((d.counters?.lastSeenMs ?? d.firstSeenMs) + this.offset)),
      tcpState: tcpStateWord(d.counters?.tcpState, d.protocol),
      id: String(this.ids?.idOf(d) ?? 0),
      agentInstance: this.ids?.instance ?? '',
    };
  }
}

export interface FlowServiceBackend {
  datapath(): Datapath;
  /** The datapath clock, to turn its times into Unix times. */
  nowMs(): number;
  engine(): string;
  /** The agent's instance (Flow.agent_instance); a random one per handler set when absent. */
  instance?(): string;
  /** A request or stream refused at a limit (metrics): watch_streams, slow_reader. */
  refused?(limit: 'watch_streams' | 'slow_reader'): void;
  /** A log line a client caused was suppressed (rate limit per client). */
  logSuppressed?(): void;
}

/** Limits of the service (INTROSPECT_LIMITS unless given: tests). */
export interface FlowServiceLimits {
  readonly watchStreams?: number;
  readonly watchStreamsPerClient?: number;
  readonly watchBufferEvents?: number;
  readonly watchStallMs?: number;
}

/** Setup rate from the flow table's insert counter, sampled between calls. */
class RateMeter {
  private last: { at: number; inserted: number } | undefined;
  private rate = 0;
  sample(inserted: number): number {
    const now = Date.now();
    if (this.last !== undefined && now - this.last.at >= 1_000) {
      this.rate = ((inserted - this.last.inserted) * 1000) / (now - this.last.at);
      this.last = { at: now, inserted };
    } else if (this.last === undefined) this.last = { at: now, inserted };
    return this.rate;
  }
}

export function flowIntrospectHandlers(
  backend: FlowServiceBackend,
  log: Logger,
  limits: FlowServiceLimits = {},
): grpc.UntypedServiceImplementation {
  // Every watch holds a subscription and a filter pass per flow event: bounded per client and in all.
  const watches = new PeerSlots(
    'WatchFlows streams',
    limits.watchStreamsPerClient ?? INTROSPECT_LIMITS.watchStreamsPerClient,
    limits.watchStreams ?? INTROSPECT_LIMITS.watchStreams,
  );
  const bufferEvents = limits.watchBufferEvents ?? INTROSPECT_LIMITS.watchBufferEvents;
  const stallMs = limits.watchStallMs ?? INTROSPECT_LIMITS.watchStallMs;
  const logs = new LogLimiter({ onSuppressed: () => backend.logSuppressed?.() });
  const clientLog = (client: string, fields: Record<string, unknown>, msg: string) => {
    const n = logs.take(client);
    if (n !== undefined) log.warn({ client, ...fields, ...suppressedField(n) }, msg);
  };
  // One view per rule tables in force: building it walks every group member,
  // which must not happen per flow event.
  let cached: { tables: RuleTables; view: FlowView } | undefined;
  const ids = new FlowIds(backend.instance?.() ?? randomUUID());
  const view = () => {
    const tables = backend.datapath().tables;
    if (cached?.tables !== tables)
      cached = { tables, view: new FlowView(tables, backend.nowMs(), ids) };
    return cached.view;
  };
  const filterOf = (f: FlowFilter__Output | null | undefined) => {
    const v = view();
    return compileFilter(f, (pod) => v.labelsOf(pod));
  };
  const meter = new RateMeter();
  const meterTimer = setInterval(() => {
    try {
      meter.sample(backend.datapath().stats().flowTable.inserted);
    } catch {
      clearInterval(meterTimer); // the datapath was closed with its agent
    }
  }, 1_000);
  meterTimer.unref();
  return {
    ListFlows: (
      call: grpc.ServerUnaryCall<ListFlowsRequest__Output, ListFlowsReply>,
      cb: grpc.sendUnaryData<ListFlowsReply>,
    ) => {
      try {
        const req = call.request;
        const size = req.pageSize === 0 ? 100 : Math.min(req.pageSize, MAX_PAGE);
        const filter = filterOf(req.filter);
        const v = view();
        let cursor: number | undefined =
          req.pageToken === ''
            ? 0
            : req.pageToken.length <= FIELD_LIMITS.pageToken
              ? Number(req.pageToken)
              : Number.NaN;
        if (!Number.isSafeInteger(cursor) || cursor < 0)
          throw new ValidationError([
            {
              object: 'ListFlowsRequest',
              field: 'pageToken',
              message: `${preview(req.pageToken, 24)} is not a token this agent gave`,
            },
          ]);
        const flows: Flow[] = [];
        // Read table pages until this page is full or the table ends; bounded by the table's size.
        while (cursor !== undefined && flows.length < size) {
          const page = backend.datapath().flows(cursor, MAX_PAGE);
          for (const d of page.flows) {
            const f = v.flow(d);
            if (!filter.test(f)) continue;
            flows.push(f);
            if (flows.length === size) {
              cursor = d.index + 1;
              break;
            }
          }
          if (flows.length < size) cursor = page.next;
        }
        cb(null, {
          flows,
          nextPageToken: cursor === undefined || flows.length < size ? '' : String(cursor),
        });
      } catch (err) {
        cb(toGrpcStatus(err));
      }
    },
    GetFlow: (
      call: grpc.ServerUnaryCall<GetFlowRequest__Output, Flow>,
      cb: grpc.sendUnaryData<Flow>,
    ) => {
      const id = Number(call.request.id);
      if (id !== 0) {
        const at = ids.indexOf(id);
        const d = at === undefined ? undefined : backend.datapath().flow(at);
        const f = d === undefined ? undefined : view().flow(d);
        if (f === undefined || Number(f.id) !== id) {
          cb(
            toGrpcStatus(
              new NotFoundError(
                `no flow ${id} on this agent (it ended, or the id is from another start of the agent)`,
              ),
            ),
          );
          return;
        }
        cb(null, f);
        return;
      }
      const d = backend.datapath().flow(call.request.index);
      if (d === undefined) {
        cb(toGrpcStatus(new NotFoundError(`no flow at index ${call.request.index}`)));
        return;
      }
      cb(null, view().flow(d));
    },
    FlowStats: (_call: unknown, cb: grpc.sendUnaryData<FlowStatsReply>) => {
      const s = backend.datapath().stats();
      const t = s.flowTable;
      const counts = (m: object) =>
        Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)]));
      cb(null, {
        flows: String(t.flows),
        holds: String(t.holds),
        peak: String(t.peakFlows),
        maxFlows: String(t.maxFlows),
        inserted: String(t.inserted),
        removed: String(t.removed),
        removedByCause: counts(t.removedBy),
        dropsByReason: counts(s.drops),
        refusedByReason: counts(t.refused),
        setupRatePerSecond: meter.sample(t.inserted),
        engine: backend.engine(),
        packets: String(s.packets),
      });
    },
    /**
     * Backpressure: a write the stream cannot take at once (call.write()
     * false: the HTTP/2 stream's window is full) waits for 'drain' before
     * the next event is read, so what is buffered per stream is the
     * stream's high-water mark, not the event rate. Meanwhile the events go
     * to the watch's own bounded queue (watchBufferEvents); a reader so slow
     * that the queue overflows is dropped: no more events, and the stream
     * ends with RESOURCE_EXHAUSTED and the reason. So does a stream that
     * stays full for watchStallMs (a reader that reads nothing, on a node
     * too quiet to overflow the queue). A stream's slot is held until the
     * stream is closed, so that streams nobody reads cannot pile up.
     */
    WatchFlows: (call: grpc.ServerWritableStream<WatchFlowsRequest__Output, WireFlowEvent>) => {
      let filter: CompiledFilter;
      try {
        filter = filterOf(call.request.filter);
      } catch (err) {
        call.emit('error', toGrpcStatus(err));
        return;
      }
      const client = clientOf(call);
      let release: () => void;
      try {
        release = watches.acquire(client);
      } catch (err) {
        backend.refused?.('watch_streams');
        clientLog(client, { open: watches.open }, 'flow watch refused: too many open');
        call.emit('error', toGrpcStatus(err));
        return;
      }
      const abort = new AbortController();
      const closed = () => {
        abort.abort();
        release();
      };
      call.on('cancelled', closed);
      call.on('close', closed);
      const drop = (fields: Record<string, unknown>, msg: string, why: string) => {
        backend.refused?.('slow_reader');
        clientLog(client, fields, msg);
        abort.abort();
        call.emit('error', toGrpcStatus(new ResourceExhaustedError(why)));
      };
      /** Whether the stream drained (or the watch ended) within stallMs. */
      const drained = () =>
        new Promise<boolean>((resolve) => {
          const done = (ok: boolean) => () => {
            clearTimeout(timer);
            call.off('drain', drainedNow);
            abort.signal.removeEventListener('abort', aborted);
            resolve(ok);
          };
          const drainedNow = done(true);
          const aborted = done(true);
          const timer = setTimeout(done(false), stallMs);
          call.on('drain', drainedNow);
          abort.signal.addEventListener('abort', aborted, { once: true });
        });
      void (async () => {
        try {
          for await (const e of backend.datapath().events({
            signal: abort.signal,
            bufferSize: bufferEvents,
          })) {
            if (e.type === 'lost')
              return drop(
                { lost: e.count },
                'flow watcher not keeping up; dropped',
                `this watch fell more than ${bufferEvents} events behind: the reader is not keeping up; watch with a narrower filter, or read faster`,
              );
            const v = view();
            const flow = v.flow(e.flow);
            if (!filter.test(flow)) continue;
            const type = e.type === 're-evaluated' ? 'reevaluated' : e.type;
            const more = call.write({
              type,
              flow,
              atUnixMs: String(Math.round(Date.now() - backend.nowMs() + e.atMs)),
            });
            if (!more && !(await drained()))
              return drop(
                { stalledMs: stallMs },
                'flow watcher not reading; dropped',
                `this watch was not read for ${stallMs / 1000} s: the reader is stuck; read the stream, or close it`,
              );
            if (abort.signal.aborted) return;
          }
          call.end();
        } catch (err) {
          log.warn({ err }, 'flow watch ended with an error');
          call.end();
        }
      })();
    },
  };
}
