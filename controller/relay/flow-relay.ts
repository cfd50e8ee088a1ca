/**
 * The flow relay (as Hubble Relay): cluster-wide flows from every connected
 * agent's FlowIntrospect API, for the Operator service's ListClusterFlows
 * and WatchClusterFlows and for the console.
 *
 * Contract:
 * - The relay calls agents as the controller (its own certificate,
 *   spiffe://weir/controller; agents grant it the two FlowIntrospect reads:
 *   shared/tls/access.ts `flow-reader`) and accepts an answer only from the
 *   agent of the node it calls: a node identity naming that node, or an
 *   agent pod the cluster model places on it. An address in a hello cannot
 *   redirect the relay to another agent.
 * - The filter goes to every agent as it is: the agent evaluates it (one
 *   filter language, where the flows are). An agent that refuses it as
 *   invalid makes the whole call invalid (the filter is the same for all).
 * - Agents are those the distributor knows, read again every `followMs`
 *   while a watch is open: one that connects is watched from then on (a
 *   message with neither event nor error says so), one that leaves or
 *   disconnects is reported (error) and watched again when it is back.
 * - Bounded (shared/limits.ts RELAY_LIMITS): watches per operator and in
 *   all, lists in flight, agents queried at once, flows per node and per
 *   reply, node names per request; and per watch, per node, a buffer of
 *   events while the reader is behind: beyond it the node's newer events
 *   are dropped, counted (metrics) and reported in the node's next message.
 */
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, type Issue, InternalError, ValidationError } from '../../shared/errors.js';
import type {
  ClusterFlow,
  ClusterFlowEvent,
  FlowEvent__Output,
  FlowFilter,
  FlowIntrospectClient,
  ListClusterFlowsReply,
  ListFlowsReply__Output,
  NodeProblem,
} from '../../shared/generated/weir/v1/index.js';
import { PeerSlots } from '../../shared/grpc/peer.js';
import { CHANNEL_OPTIONS, weirProto } from '../../shared/grpc/proto.js';
import { errorCodeOf } from '../../shared/grpc/status.js';
import { RELAY_LIMITS, nodeNameIssue, truncate } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import { type CertificateFiles, channelCredentials } from '../../shared/tls/credentials.js';
import type { Identity } from '../../shared/tls/identity.js';

/** An agent as the relay needs it (the distributor's view of it). */
export interface RelayAgent {
  readonly node: string;
  readonly connected: boolean;
  /** "host:port" of its API, from its hello; empty when it gave none. */
  readonly apiAddress: string;
}

export interface FlowRelayLimits {
  readonly watches: number;
  readonly watchesPerClient: number;
  readonly nodeBufferEvents: number;
  readonly listPerNode: number;
  readonly listFlows: number;
  readonly listConcurrency: number;
  readonly listsPerClient: number;
  readonly lists: number;
  readonly nodes: number;
  readonly agentTimeoutMs: number;
}

export interface FlowRelayOptions {
  /** The agents the controller knows, now. */
  readonly agents: () => readonly RelayAgent[];
  /** The controller's certificates; undefined with --insecure (agents then too). */
  readonly tls: CertificateFiles | undefined;
  /** The node an agent pod identity runs on (the cluster model's view). */
  readonly agentNodeOf?: (namespace: string, pod: string) => string | undefined;
  readonly log: Logger;
  /** How often open watches look for agents that came or went (default 1 s). */
  readonly followMs?: number;
  readonly limits?: Partial<FlowRelayLimits>;
  readonly observe?: {
    /** Events of `node` dropped from a watch's buffer. */
    dropped?(node: string, count: number): void;
    /** A call refused at a limit: relay_watches, relay_lists. */
    refused?(limit: string): void;
  };
}

export interface ListRequest {
  readonly filter?: FlowFilter | null;
  readonly limitPerNode?: number;
  readonly nodes?: readonly string[];
}

export interface WatchRequest {
  readonly filter?: FlowFilter | null;
  readonly nodes?: readonly string[];
}

/** A ClusterFlowEvent as the relay makes it (dropped as a number). */
export type RelayedEvent = ClusterFlowEvent & { readonly node: string; readonly dropped: number };

/** The relayed watches open now (for metrics). */
export interface RelayState {
  readonly watches: number;
}

/** A node's request problems, each naming the field. */
function requestIssues(object: string, req: { nodes?: readonly string[] }, max: number): Issue[] {
  const nodes = req.nodes ?? [];
  if (nodes.length > max)
    return [{ object, field: 'nodes', message: `names ${nodes.length} nodes; at most ${max}` }];
  return nodes.flatMap((n, i) => nodeNameIssue(object, `nodes[${i}]`, n) ?? []);
}

export class FlowRelay implements Disposable, RelayState {
  private readonly limits: FlowRelayLimits;
  private readonly watchSlots: PeerSlots;
  private readonly listSlots: PeerSlots;
  /** One channel per agent, by node, while its address stays the same. */
  private readonly clients = new Map<string, { address: string; client: FlowIntrospectClient }>();

  constructor(private readonly options: FlowRelayOptions) {
    this.limits = { ...RELAY_LIMITS, ...options.limits };
    this.watchSlots = new PeerSlots(
      'relayed flow watches',
      this.limits.watchesPerClient,
      this.limits.watches,
    );
    this.listSlots = new PeerSlots(
      'cluster flow lists in flight',
      this.limits.listsPerClient,
      this.limits.lists,
    );
  }

  get watches(): number {
    return this.watchSlots.open;
  }

  /** The FlowIntrospect client of `agent`, made once per address; the server must be that node's agent. */
  private client(agent: RelayAgent): FlowIntrospectClient {
    const known = this.clients.get(agent.node);
    if (known?.address === agent.apiAddress) return known.client;
    known?.client.close();
    const { proto } = weirProto();
    const node = agent.node;
    const expect = (id: Identity): string | undefined => {
      if (id.kind === 'node')
        return id.node === node ? undefined : `${id.uri} is not the agent of node ${node}`;
      if (id.kind === 'pod')
        return this.options.agentNodeOf?.(id.namespace, id.pod) === node
          ? undefined
          : `${id.uri} is not an agent pod on node ${node}`;
      return `${id.uri} is not an agent`;
    };
    const client = new proto.weir.v1.FlowIntrospect(
      agent.apiAddress,
      channelCredentials(this.options.tls, expect),
      CHANNEL_OPTIONS,
    );
    this.clients.set(node, { address: agent.apiAddress, client });
    return client;
  }

  /** Closes the channels of agents that are gone or moved (called as agents are read). */
  private prune(agents: readonly RelayAgent[]): void {
    const live = new Map(agents.map((a) => [a.node, a.apiAddress]));
    for (const [node, c] of this.clients)
      if (live.get(node) !== c.address) {
        c.client.close();
        this.clients.delete(node);
      }
  }

  /**
   * The agents a request names (all when it names none), and a problem for
   * each one named that cannot be asked now.
   */
  private select(nodes: readonly string[]): { ask: RelayAgent[]; problems: NodeProblem[] } {
    const agents = this.options.agents();
    this.prune(agents);
    const byNode = new Map(agents.map((a) => [a.node, a]));
    const wanted = nodes.length > 0 ? [...new Set(nodes)].sort() : [...byNode.keys()].sort();
    const ask: RelayAgent[] = [];
    const problems: NodeProblem[] = [];
    for (const node of wanted) {
      const why = unavailable(byNode.get(node));
      if (why === undefined) ask.push(byNode.get(node)!);
      else problems.push({ node, error: why });
    }
    return { ask, problems };
  }

  /** One page of flows from each agent, by node; `client` is the caller (for its limit). */
  async list(req: ListRequest, client: string): Promise<ListClusterFlowsReply> {
    const issues = requestIssues('ListClusterFlowsRequest', req, this.limits.nodes);
    const per = req.limitPerNode ?? 0;
    if (!Number.isInteger(per) || per < 0 || per > this.limits.listPerNode)
      issues.push({
        object: 'ListClusterFlowsRequest',
        field: 'limitPerNode',
        message: `${per} is out of range: 0 (100) to ${this.limits.listPerNode}`,
      });
    if (issues.length > 0) throw new ValidationError(issues);
    let release: () => void;
    try {
      release = this.listSlots.acquire(client);
    } catch (err) {
      this.options.observe?.refused?.('relay_lists');
      throw err;
    }
    try {
      const { ask, problems } = this.select(req.nodes ?? []);
      const pageSize = per === 0 ? 100 : per;
      const pages = new Map<string, ListFlowsReply__Output>();
      let invalid: string | undefined;
      const queue = [...ask];
      const worker = async () => {
        for (let a = queue.shift(); a !== undefined; a = queue.shift()) {
          const agent = a;
          try {
            pages.set(agent.node, await this.listOne(agent, req.filter ?? null, pageSize));
          } catch (err) {
            const e = err as grpc.ServiceError;
            if (errorCodeOf(e.code) === ErrorCode.Invalid) invalid ??= e.details;
            problems.push({ node: agent.node, error: callError(e) });
          }
        }
      };
      await Promise.all(
        Array.from({ length: Math.min(this.limits.listConcurrency, ask.length) }, worker),
      );
      if (invalid !== undefined)
        throw new ValidationError([
          { object: 'ListClusterFlowsRequest', field: 'filter', message: invalid },
        ]);
      const flows: ClusterFlow[] = [];
      for (const node of [...pages.keys()].sort()) {
        const page = pages.get(node)!.flows;
        const room = this.limits.listFlows - flows.length;
        for (const flow of page.slice(0, Math.max(0, room))) flows.push({ node, flow });
        if (page.length > room)
          problems.push({
            node,
            error: `${page.length - Math.max(0, room)} of its flows left out: a reply holds at most ${this.limits.listFlows}; narrow the filter, lower limitPerNode or name nodes`,
          });
      }
      problems.sort((a, b) => (a.node! < b.node! ? -1 : a.node! > b.node! ? 1 : 0));
      return { flows, problems };
    } finally {
      release();
    }
  }

  private listOne(
    agent: RelayAgent,
    filter: FlowFilter | null,
    pageSize: number,
  ): Promise<ListFlowsReply__Output> {
    const c = this.client(agent);
    return new Promise((resolve, reject) =>
      c.ListFlows(
        { filter, pageSize },
        { deadline: Date.now() + this.limits.agentTimeoutMs },
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
  }

  /**
   * Flow events of the nodes a request names (every agent, including those
   * that connect later, when it names none), merged as they come. The
   * caller pulls at its reader's pace; while it does not, each node's
   * events wait in a buffer of `nodeBufferEvents`, and what does not fit is
   * dropped and reported. Ends when `signal` aborts; throws
   * ValidationError (at once, or at the first agent that refuses the
   * filter) and ResourceExhaustedError (too many watches).
   */
  watch(req: WatchRequest, client: string, signal: AbortSignal): AsyncIterable<RelayedEvent> {
    const issues = requestIssues('WatchClusterFlowsRequest', req, this.limits.nodes);
    if (issues.length > 0) throw new ValidationError(issues);
    let release: () => void;
    try {
      release = this.watchSlots.acquire(client);
    } catch (err) {
      this.options.observe?.refused?.('relay_watches');
      throw err;
    }
    return new RelayedWatch(this, req, signal, release).events();
  }

  /** For RelayedWatch: the agents to watch now, and the problems of those named that cannot be. */
  selectForWatch(nodes: readonly string[]) {
    return this.select(nodes);
  }

  /** For RelayedWatch. */
  openUpstream(agent: RelayAgent, filter: FlowFilter | null) {
    return this.client(agent).WatchFlows({ filter });
  }

  get bufferEvents(): number {
    return this.limits.nodeBufferEvents;
  }

  get followMs(): number {
    return this.options.followMs ?? 1_000;
  }

  noteDropped(node: string, count: number): void {
    this.options.observe?.dropped?.(node, count);
  }

  get log(): Logger {
    return this.options.log;
  }

  [Symbol.dispose](): void {
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}

/** Why an agent cannot be asked now, or undefined. */
function unavailable(agent: RelayAgent | undefined): string | undefined {
  if (agent === undefined) return 'the controller knows no agent on this node';
  if (!agent.connected) return 'the agent is not connected';
  if (agent.apiAddress === '') return 'the agent has not said where its API is';
  return undefined;
}

/** An agent call's failure as one line for NodeProblem.error. */
function callError(err: grpc.ServiceError): string {
  const code = grpc.status[err.code] ?? String(err.code);
  return truncate(`${code}: ${err.details || err.message}`, 512);
}

interface NodeWatch {
  readonly address: string;
  readonly call: grpc.ClientReadableStream<FlowEvent__Output>;
}

/** One relayed watch: an upstream WatchFlows per node, merged into one pull-driven stream. */
class RelayedWatch {
  private readonly upstream = new Map<string, NodeWatch>();
  /** Per node, what waits for the reader, in order; at most `bufferEvents` flow events. */
  private readonly queues = new Map<string, RelayedEvent[]>();
  /** Per node, how many flow events its queue holds. */
  private readonly held = new Map<string, number>();
  private readonly dropped = new Map<string, number>();
  /** Nodes whose problem was reported and not yet followed by a watch (so it is said once). */
  private readonly reported = new Map<string, string>();
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private order: string[] = [];
  private turn = 0;

  constructor(
    private readonly relay: FlowRelay,
    private readonly req: WatchRequest,
    private readonly signal: AbortSignal,
    private readonly release: () => void,
  ) {}

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private push(node: string, e: Omit<RelayedEvent, 'node' | 'dropped'>): void {
    let q = this.queues.get(node);
    if (q === undefined) {
      q = [];
      this.queues.set(node, q);
      this.order.push(node);
    }
    // Flow events are bounded per node; status messages (a few per node) always fit.
    if (e.event !== undefined) {
      const held = this.held.get(node) ?? 0;
      if (held >= this.relay.bufferEvents) {
        this.dropped.set(node, (this.dropped.get(node) ?? 0) + 1);
        this.relay.noteDropped(node, 1);
        return;
      }
      this.held.set(node, held + 1);
    }
    q.push({ node, dropped: 0, ...e });
    this.notify();
  }

  private problem(node: string, error: string): void {
    if (this.reported.get(node) === error) return;
    this.reported.set(node, error);
    this.push(node, { error });
  }

  /** Opens watches for agents that are there, closes those of agents that went. */
  private follow(): void {
    const { ask, problems } = this.relay.selectForWatch(this.req.nodes ?? []);
    const wanted = new Map(ask.map((a) => [a.node, a]));
    for (const [node, w] of this.upstream) {
      const a = wanted.get(node);
      if (a !== undefined && a.apiAddress === w.address) continue;
      this.upstream.delete(node);
      w.call.cancel();
      if (a === undefined)
        this.problem(node, problems.find((p) => p.node === node)?.error ?? 'the agent left');
    }
    for (const p of problems) if (!this.upstream.has(p.node!)) this.problem(p.node!, p.error!);
    for (const a of ask) if (!this.upstream.has(a.node)) this.open(a);
  }

  private open(agent: RelayAgent): void {
    const node = agent.node;
    const call = this.relay.openUpstream(agent, this.req.filter ?? null);
    const w = { address: agent.apiAddress, call };
    this.upstream.set(node, w);
    this.reported.delete(node);
    this.push(node, {});
    call.on('data', (event: FlowEvent__Output) => this.push(node, { event }));
    const ended = (error: string) => {
      if (this.upstream.get(node) !== w) return; // replaced or closed by follow()
      this.upstream.delete(node);
      this.problem(node, error);
    };
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED && this.signal.aborted) return;
      if (errorCodeOf(err.code) === ErrorCode.Invalid && this.failure === undefined) {
        this.failure = new ValidationError([
          { object: 'WatchClusterFlowsRequest', field: 'filter', message: err.details },
        ]);
        this.notify();
        return;
      }
      ended(callError(err));
    });
    call.on('end', () => ended('the agent ended the watch'));
  }

  /** The next message, round robin over nodes so that a busy node does not starve the others. */
  private next(): RelayedEvent | undefined {
    for (let i = 0; i < this.order.length; i++) {
      const node = this.order[(this.turn + i) % this.order.length]!;
      const q = this.queues.get(node)!;
      const e = q.shift();
      if (e === undefined) continue;
      if (e.event !== undefined) this.held.set(node, this.held.get(node)! - 1);
      this.turn = (this.turn + i + 1) % this.order.length;
      const dropped = this.dropped.get(node) ?? 0;
      this.dropped.delete(node);
      return dropped > 0 ? { ...e, dropped } : e;
    }
    // Drops with nothing left to carry them: report them alone.
    for (const [node, dropped] of this.dropped) {
      this.dropped.delete(node);
      return { node, dropped };
    }
    return undefined;
  }

  async *events(): AsyncGenerator<RelayedEvent> {
    const timer = setInterval(() => {
      try {
        this.follow();
      } catch (err) {
        this.failure ??= new InternalError(`following agents: ${(err as Error).message}`);
        this.notify();
      }
    }, this.relay.followMs);
    timer.unref();
    const onAbort = () => this.notify();
    this.signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.follow();
      while (!this.signal.aborted) {
        if (this.failure !== undefined) throw this.failure;
        const e = this.next();
        if (e !== undefined) {
          yield e;
          continue;
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      clearInterval(timer);
      this.signal.removeEventListener('abort', onAbort);
      for (const w of this.upstream.values()) w.call.cancel();
      this.upstream.clear();
      this.release();
    }
  }
}
