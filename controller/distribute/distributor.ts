/**
 * Keeps every agent's node at the current span, one revision in flight per
 * agent, and proves it.
 *
 *   commit ─> notify(nodes) ─┐
 *   hello(node, R, hash) ────┼─> for each connected node with nothing in
 *   ack(R, hash) ────────────┤   flight, no retry pending, and a span that
 *   nack(R, error, hash) ────┘   differs from what it holds: send one update
 *        │                       (a delta from what it holds, or a snapshot)
 *        └─> refused (or applied to a different hash): retry as a snapshot,
 *            with bounded, jittered backoff
 *
 * Backpressure is the protocol itself: a slow agent has at most one update
 * outstanding, and every change meanwhile collapses into the next delta,
 * computed from content hashes when it is sent. Memory per agent is its
 * ACKed span (object key → hash), whatever the rate of change.
 *
 * Proof: agents report the content hash of the span they have in force
 * (shared/wire/span-hash.ts) in every hello, ACK and NACK. The span store
 * keeps the hash of the span it computed for each node, up to date with
 * every commit (O(1) per changed entry), and each record keeps the hash of
 * what its agent holds, so no comparison here (status, send, ACK, NACK,
 * hello) ever hashes a span. A node is in sync exactly when its agent is
 * connected and the two hashes are equal; a delta is only ever built on a
 * base whose hash the agent confirmed.
 *
 * Fed only by the span store (spans, their hashes, the objects they hold);
 * transport-agnostic: publishers (publisher.ts: gRPC, NATS) turn agent
 * connections into hello() calls and AgentLinks.
 */
import { createHash } from 'node:crypto';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { ResourceExhaustedError } from '../../shared/errors.js';
import { AGENT_LIMITS, LOG_TEXT_CHARS, NACK_ERROR_CHARS, truncate } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import { LogLimiter, suppressedField } from '../../shared/log-limiter.js';
import {
  addressGroupToWire,
  applicationPolicySetToWire,
  endpointToWire,
  firewallPolicyToWire,
  serviceGroupToWire,
} from '../../shared/wire/policy.js';
import { objectHash } from '../../shared/wire/span-hash.js';
import type { ObjectKey, SpanObject, SpanStore } from '../store/span-store.js';
import type { PersistedNode } from '../store/state-file.js';
import { type AgentHello, secondStream } from './admission.js';

export type { AgentHello };

export interface AgentLink {
  /**
   * Sends one update; the agent answers with ack or nack. `key` names the
   * update's exact content: equal keys are only ever given for identical
   * updates (a broad change sends the same delta to many nodes), so that a
   * transport can encode each distinct one once.
   */
  send(update: SpanUpdate, key: string): void;
  close(reason: string): void;
}

export interface AgentSession {
  ack(revision: number, inForceHash: string): void;
  nack(revision: number, error: string, inForceHash: string): void;
  close(): void;
}

export interface DistributorObserver {
  sent(kind: 'snapshot' | 'delta'): void;
  /**
   * A proved ACK. `propagationMs`: from the commit of the oldest change it
   * carried, when that was committed while the agent was connected;
   * otherwise `resyncMs`: from the connection (or the first full sync).
   */
  acked(timing: { propagationMs?: number; resyncMs?: number }): void;
  nacked(): void;
  /** An ACK whose in-force hash is not the hash of the span sent. */
  unproved(): void;
  /** A refused or unproved span sent again. */
  retried(): void;
  /** A log line an agent caused was suppressed (rate limit per node). */
  logSuppressed?(): void;
  /** A record of a vanished agent was dropped (expired, or evicted for a newer unknown node). */
  recordDropped?(reason: 'expired' | 'evicted'): void;
}

export interface NodeView {
  readonly node: string;
  /** The agent's stream is open now. */
  readonly connected: boolean;
  readonly instance: string;
  readonly appliedRevision: number;
  readonly spanRevision: number;
  /** The hash of the span computed for the node. */
  readonly spanHash: string;
  /** The hash the agent last reported for its in-force span; '' when none. */
  readonly inForceHash: string;
  /** The controller has synced its source, the agent is connected, and inForceHash === spanHash. */
  readonly inSync: boolean;
  readonly pending: number;
  readonly lastError: string;
  readonly lastAckUnixMs: number;
  readonly connectedSinceUnixMs: number;
  readonly spanObjects: number;
  readonly localEndpoints: number;
  readonly apiAddress: string;
  readonly retryAttempts: number;
  /** 0 when no retry is scheduled. */
  readonly nextRetryUnixMs: number;
}

export interface Realization {
  readonly revision: number;
  readonly nodes: string[];
  readonly applied: string[];
  readonly latencyMs: Record<string, number>;
  readonly resyncMs: Record<string, number>;
  /** Per applied node whose ACK is remembered: when (Unix ms) it ACKed the span that brought the policy. */
  readonly reachedUnixMs: Record<string, number>;
}

interface AckRecord {
  /** The revision up to which the agent proved its span. */
  readonly revision: number;
  readonly at: number;
  /** When the connection it came over was opened. */
  readonly connectedAt: number;
}

interface NodeRecord {
  readonly node: string;
  instance: string;
  apiAddress: string;
  link: AgentLink | undefined;
  connectedSince: number;
  /** When its last stream ended (or it was restored); 0 while connected or never connected. */
  disconnectedAt: number;
  /** The revision the agent holds (its delta base revision). */
  ackedRevision: number;
  /** What the agent holds, as hashes; undefined: unknown (send a snapshot). */
  ackedSpan: Map<ObjectKey, string> | undefined;
  /** The span hash of ackedSpan; undefined until computed (restored records). */
  ackedHash: string | undefined;
  /**
   * A store revision at which ackedSpan was the store's span for the node,
   * so that a delta from it only looks at what changed since; undefined
   * when unknown (restored after a restart): diff the whole span.
   */
  ackedAt: number | undefined;
  /** ackedSpan is what the agent's reported hash proves it holds. */
  proven: boolean;
  /** The hash the agent last reported; '' when none. */
  inForceHash: string;
  inflight:
    | {
        /** The store revision sent. */
        revision: number;
        /**
         * What the agent holds once it applies the update: a whole span
         * (snapshot), or the changes to ackedSpan (delta; ackedSpan does not
         * change while an update is in flight).
         */
        span: Map<ObjectKey, string> | undefined;
        changes: ReadonlyArray<readonly [ObjectKey, string | undefined]>;
        spanHash: string;
        snapshot: boolean;
        /** The oldest revision among the changes the update carries. */
        since: number;
        sentAt: number;
      }
    | undefined;
  lastError: string;
  lastAck: number;
  /** Proved ACKs, oldest first: for propagation latency. */
  acks: AckRecord[];
  /** Older ACKs were dropped from `acks`. */
  acksTruncated: boolean;
  /** Refusals (or unproved ACKs) in a row since the last proved ACK. */
  attempts: number;
  retry: { at: number; timer: NodeJS.Timeout } | undefined;
  /** The last delta was refused: the next update is a snapshot. */
  snapshotNext: boolean;
  /** The model moved past the last commit while building this node's update: retry after the next commit. */
  stale: boolean;
}

const ACK_HISTORY = 64;
const COMMIT_HISTORY = 10_000;
const BUILT_CACHE = 64;

export class Distributor {
  private readonly records = new Map<string, NodeRecord>();
  private ready = false;
  private readyAt = 0;
  /** The revision of the first full sync: changes up to it reach agents as start-up resync. */
  private readyRevision = 0;
  /** Revision → when it was committed (Unix ms); the most recent ones. */
  private readonly commits = new Map<number, number>();
  /** Updates built at `builtRevision`, by key: nodes that need the same one share it. */
  private built = new Map<string, SpanUpdate>();
  /** Wire objects built at `builtRevision`, by key, with their verified content hash. */
  private wire = new Map<ObjectKey, WireObject>();
  private builtRevision = -1;

  constructor(
    private readonly store: SpanStore,
    private readonly options: {
      log: Logger;
      /** Called when what agents ACKed changes, so that it can be persisted. */
      onAckedChange?: () => void;
      now?: () => number;
      /** An agent that has not answered an update for this long is disconnected (it reconnects and resyncs). */
      ackTimeoutMs?: number;
      /** Backoff of resending a refused span: the first retry after about this long (jittered, 50–100%)... */
      retryMinMs?: number;
      /** ...doubling up to this long. */
      retryMaxMs?: number;
      /** [0, 1): jitter. */
      random?: () => number;
      /** Metrics hooks. */
      observe?: DistributorObserver;
      /** Records kept for nodes the cluster does not know (AGENT_LIMITS.unknownNodes). */
      maxUnknownNodes?: number;
      /** How long the record of a vanished agent that holds nothing worth keeping is kept (AGENT_LIMITS.recordTtlMs). */
      recordTtlMs?: number;
    },
  ) {
    this.logs = new LogLimiter({
      now: () => this.now(),
      onSuppressed: () => this.options.observe?.logSuppressed?.(),
    });
  }

  /** Log lines agents cause, rate-limited per node. */
  private readonly logs: LogLimiter;

  /** A log line an agent caused, unless its node is over its rate. */
  private peerLog(
    level: 'info' | 'warn' | 'error',
    node: string,
    fields: Record<string, unknown>,
    msg: string,
  ): void {
    const n = this.logs.take(node);
    if (n !== undefined) this.options.log[level]({ node, ...fields, ...suppressedField(n) }, msg);
  }

  /** The current revision (what a Welcome reports). */
  get revision(): number {
    return this.store.revision;
  }

  /**
   * Disconnects agents that hold an update unanswered past the ACK timeout:
   * a hung agent must not keep its node off the current span silently.
   * Returns the nodes disconnected. Called periodically by the owner.
   */
  expireUnanswered(): string[] {
    const limit = this.options.ackTimeoutMs ?? 30_000;
    const now = this.now();
    const out: string[] = [];
    for (const r of this.records.values()) {
      if (r.link === undefined || r.inflight === undefined || now - r.inflight.sentAt < limit)
        continue;
      this.options.log.warn(
        { node: r.node, revision: r.inflight.revision, waitedMs: now - r.inflight.sentAt },
        'agent did not answer an update; disconnecting it',
      );
      r.lastError = `no answer to revision ${r.inflight.revision} within ${limit} ms`;
      const link = r.link;
      r.link = undefined;
      r.disconnectedAt = now;
      r.inflight = undefined;
      link.close('no answer to an update');
      out.push(r.node);
    }
    return out;
  }

  /**
   * Drops the records of agents that went away more than the record TTL ago
   * and hold nothing worth keeping: they never proved a span, or their node
   * is not in the cluster (any more). A record with a proved span of a node
   * the cluster has stays: it is that node's delta base, bounded by the
   * cluster's size. Returns the nodes dropped. Called periodically.
   */
  expireVanished(): string[] {
    const ttl = this.options.recordTtlMs ?? AGENT_LIMITS.recordTtlMs;
    const now = this.now();
    const out: string[] = [];
    if (!this.ready) return out; // which nodes the cluster has is not known yet
    for (const r of this.records.values()) {
      if (r.link !== undefined || now - r.disconnectedAt < ttl) continue;
      if (r.ackedSpan !== undefined && this.known(r.node)) continue;
      this.drop(r);
      this.options.observe?.recordDropped?.('expired');
      out.push(r.node);
    }
    if (out.length > 0) {
      this.options.log.info(
        { nodes: out.length, first: out.slice(0, 5), ttlMs: ttl },
        'records of vanished agents expired',
      );
      this.options.onAckedChange?.();
    }
    return out;
  }

  /** Records held now (status, tests). */
  get recordCount(): number {
    return this.records.size;
  }

  /** Restores what agents ACKed before a restart, so that they resync by delta (once their hello's hash agrees). */
  restore(nodes: Readonly<Record<string, PersistedNode>>): void {
    for (const [node, p] of Object.entries(nodes)) {
      const r = this.record(node);
      r.disconnectedAt = this.now();
      r.ackedRevision = p.revision;
      r.ackedSpan = new Map(p.span);
      r.ackedHash = undefined;
      r.ackedAt = undefined;
      r.proven = false;
    }
  }

  persisted(): Record<string, PersistedNode> {
    const out: Record<string, PersistedNode> = {};
    for (const r of this.records.values()) {
      if (r.ackedSpan !== undefined)
        out[r.node] = { revision: r.ackedRevision, span: [...r.ackedSpan] };
    }
    return out;
  }

  /** Holds updates until the cluster state is complete (a partial span would drop policies). */
  setReady(): void {
    this.ready = true;
    this.readyAt = this.now();
    this.readyRevision = this.store.revision;
    for (const r of this.records.values()) this.sendIfNeeded(r);
  }

  /**
   * Throws ResourceExhaustedError (nothing changed) when `h.node` is not in
   * the cluster and the records of such nodes are at their bound with every
   * one connected; a disconnected one is dropped to make room.
   */
  admit(node: string): void {
    if (!this.records.has(node) && !this.known(node)) this.makeRoomForUnknown(node);
  }

  hello(h: AgentHello, link: AgentLink): AgentSession {
    this.admit(h.node);
    // Revisions this controller issues stay above any an agent holds (see SpanStore.advancePast).
    if (this.store.advancePast(h.revision))
      this.peerLog(
        'info',
        h.node,
        { revision: h.revision },
        'revision counter advanced past what an agent holds',
      );
    const r = this.record(h.node);
    // One live stream per node (admission.ts says what a second one does).
    if (r.link !== undefined && secondStream(r, h) === 'replace') {
      const old = r.link;
      r.link = undefined;
      old.close('replaced by a new connection from the same node');
    }
    const now = this.now();
    // What the agent holds, if the controller can name it: the current span,
    // or the one in flight or ACKed, at the agent's revision and with its hash.
    let base:
      | {
          span: Map<ObjectKey, string>;
          hash: string | undefined;
          at: number | undefined;
          provedUpTo: number;
        }
      | undefined;
    const inflight = r.inflight?.revision === h.revision ? r.inflight : undefined;
    const acked = r.ackedRevision === h.revision ? r.ackedSpan : undefined;
    const applied = (sent: NonNullable<NodeRecord['inflight']>) => ({
      span: this.appliedSpan(r, sent),
      hash: sent.spanHash,
      at: sent.revision,
      provedUpTo: h.revision,
    });
    if (h.revision > 0 && h.inForceHash !== '') {
      if (h.inForceHash === this.currentHash(h.node))
        base = {
          span: this.currentEntries(h.node),
          hash: h.inForceHash,
          at: this.store.revision,
          provedUpTo: this.store.revision,
        };
      else if (inflight !== undefined && inflight.spanHash === h.inForceHash)
        base = applied(inflight);
      else if (acked !== undefined && this.ackedHashOf(r) === h.inForceHash)
        base = { span: acked, hash: h.inForceHash, at: r.ackedAt, provedUpTo: h.revision };
    } else if (h.revision > 0) {
      // An agent that reports no hash is trusted by revision (an ACK lost
      // with its connection counts), and never reported in sync.
      if (inflight !== undefined) base = applied(inflight);
      else if (acked !== undefined)
        base = { span: acked, hash: r.ackedHash, at: r.ackedAt, provedUpTo: h.revision };
    }

    r.inflight = undefined;
    r.link = link;
    r.ackedRevision = h.revision;
    r.ackedSpan = base?.span;
    r.ackedHash = base?.hash;
    r.ackedAt = base?.at;
    r.proven = base !== undefined && h.inForceHash !== '';
    r.inForceHash = h.inForceHash;
    r.stale = false;
    if (h.instance !== r.instance) {
      // A new agent process may accept what the previous one refused.
      this.clearRetry(r);
      r.attempts = 0;
      r.snapshotNext = false;
    }
    r.instance = h.instance;
    r.apiAddress = h.apiAddress;
    r.connectedSince = now;
    r.disconnectedAt = 0;
    if (r.proven) {
      this.recordAck(r, base!.provedUpTo, now);
      this.options.onAckedChange?.();
    }
    this.peerLog(
      'info',
      h.node,
      {
        instance: h.instance,
        revision: h.revision,
        delta: base !== undefined,
        inSync: this.inSync(r),
      },
      'agent connected',
    );
    this.sendIfNeeded(r);
    return {
      ack: (rev, hash) => {
        if (r.link !== link) return;
        if (r.inflight === undefined || r.inflight.revision !== rev) {
          this.peerLog(
            'warn',
            h.node,
            { revision: rev },
            'ACK for a revision not in flight; ignored',
          );
          return;
        }
        this.acked(r, rev, hash);
        this.sendIfNeeded(r);
      },
      nack: (rev, error, hash) => {
        if (r.link !== link) return;
        const refused = r.inflight;
        if (refused === undefined || refused.revision !== rev) {
          this.peerLog(
            'warn',
            h.node,
            { revision: rev },
            'NACK for a revision not in flight; ignored',
          );
          return;
        }
        r.inflight = undefined;
        this.options.observe?.nacked();
        r.lastError = truncate(error, NACK_ERROR_CHARS);
        if (hash !== '') {
          r.inForceHash = hash;
          if (r.ackedSpan !== undefined && this.ackedHashOf(r) !== hash) {
            r.ackedSpan = undefined;
            r.ackedHash = undefined;
            r.ackedAt = undefined;
            r.proven = false;
          }
        }
        // A refused delta may have been refused for its base: the retry is whole.
        if (!refused.snapshot) r.snapshotNext = true;
        const retryInMs = this.scheduleRetry(r);
        this.peerLog(
          'warn',
          h.node,
          {
            revision: rev,
            error: truncate(error, LOG_TEXT_CHARS),
            attempts: r.attempts,
            retryInMs,
          },
          'agent refused an update; it keeps its previous span, which is sent again as a snapshot',
        );
      },
      close: () => {
        if (r.link !== link) return;
        // What is in flight stays: the agent may have applied it, and says so in its next hello.
        r.link = undefined;
        r.disconnectedAt = this.now();
        this.peerLog('info', h.node, {}, 'agent disconnected');
      },
    };
  }

  /** After a commit: the nodes whose span changed. Records the commit's time. */
  notify(nodes: readonly string[]): void {
    this.commits.set(this.store.revision, this.now());
    if (this.commits.size > COMMIT_HISTORY) this.commits.delete(this.commits.keys().next().value!);
    for (const node of nodes) {
      const r = this.records.get(node);
      if (r !== undefined) this.sendIfNeeded(r);
    }
    for (const r of this.records.values()) if (r.stale) this.sendIfNeeded(r);
  }

  views(): NodeView[] {
    const nodes = new Set([...this.records.keys(), ...this.store.nodes()]);
    return [...nodes].sort().map((node) => {
      const r = this.records.get(node);
      const span = this.store.span(node);
      return {
        node,
        connected: r?.link !== undefined,
        instance: r?.instance ?? '',
        appliedRevision: r?.ackedRevision ?? 0,
        spanRevision: span?.revision ?? 0,
        spanHash: this.currentHash(node),
        inForceHash: r?.inForceHash ?? '',
        inSync: r !== undefined && this.inSync(r),
        pending: r?.inflight !== undefined ? 1 : 0,
        lastError: r?.lastError ?? '',
        lastAckUnixMs: r?.lastAck ?? 0,
        connectedSinceUnixMs: r?.link !== undefined ? r.connectedSince : 0,
        spanObjects: span?.entries.size ?? 0,
        localEndpoints: span?.locals.size ?? 0,
        apiAddress: r?.apiAddress ?? '',
        retryAttempts: r?.attempts ?? 0,
        nextRetryUnixMs: r?.retry?.at ?? 0,
      };
    });
  }

  /**
   * For one policy: the nodes holding it, those whose agent is connected
   * and proved (by its in-force hash) that it holds the policy's objects as
   * they are now, and per such node how long that took: from the commit of
   * the revision that last changed them for the node to the ACK, or, when
   * the node got them by resync, from its connection.
   */
  realization(policyId: string): Realization {
    const nodes = [...this.store.holdersOf(`p:${policyId}`)].sort();
    const keys = this.store.policyKeys(policyId);
    let revision = 0;
    const applied: string[] = [];
    const latencyMs: Record<string, number> = {};
    const resyncMs: Record<string, number> = {};
    const reachedUnixMs: Record<string, number> = {};
    for (const node of nodes) {
      const entries = this.store.span(node)?.entries;
      const needed = Math.max(0, ...keys.map((k) => entries?.get(k)?.revision ?? 0));
      revision = Math.max(revision, needed);
      const r = this.records.get(node);
      const proven = r?.link !== undefined && r.proven ? r.ackedSpan : undefined;
      if (
        proven === undefined ||
        !keys.every((k) => entries?.get(k) === undefined || proven.get(k) === entries.get(k)!.hash)
      )
        continue;
      applied.push(node);
      const i = r!.acks.findIndex((a) => a.revision >= needed);
      if (i < 0 || (i === 0 && r!.acksTruncated)) continue; // the ACK that brought it is forgotten
      const ack = r!.acks[i]!;
      reachedUnixMs[node] = ack.at;
      const timing = this.timing(needed, ack);
      if (timing.propagationMs !== undefined) latencyMs[node] = timing.propagationMs;
      else if (timing.resyncMs !== undefined) resyncMs[node] = timing.resyncMs;
    }
    return { revision, nodes, applied, latencyMs, resyncMs, reachedUnixMs };
  }

  closeAll(reason: string): void {
    for (const r of this.records.values()) {
      this.clearRetry(r);
      r.link?.close(reason);
      r.link = undefined;
      r.disconnectedAt = this.now();
    }
  }

  // ---------------------------------------------------------------------------

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** The cluster has the node (a span is computed for it). */
  private known(node: string): boolean {
    return this.store.span(node) !== undefined;
  }

  private drop(r: NodeRecord): void {
    this.clearRetry(r);
    this.records.delete(r.node);
  }

  /** Room for a record of an unknown node, or ResourceExhaustedError. */
  private makeRoomForUnknown(node: string): void {
    const limit = this.options.maxUnknownNodes ?? AGENT_LIMITS.unknownNodes;
    let count = 0;
    let oldest: NodeRecord | undefined;
    for (const r of this.records.values()) {
      // Before the first full sync no node is known yet: records restored
      // from the state file (ACKed spans) are not counted, nor dropped.
      if (this.known(r.node) || (!this.ready && r.ackedSpan !== undefined)) continue;
      count++;
      if (
        r.link === undefined &&
        (oldest === undefined || r.disconnectedAt < oldest.disconnectedAt)
      )
        oldest = r;
    }
    if (count < limit) return;
    if (oldest === undefined) {
      this.peerLog(
        'warn',
        '(unknown nodes)',
        { limit },
        'hello from a node the cluster does not know refused: too many such agents connected',
      );
      throw new ResourceExhaustedError(
        `node ${node.slice(0, 64)} is not in the cluster, and ${count} agents of such nodes are connected, the most this controller keeps (${limit})`,
      );
    }
    this.drop(oldest);
    this.options.observe?.recordDropped?.('evicted');
    this.options.onAckedChange?.();
  }

  private record(node: string): NodeRecord {
    let r = this.records.get(node);
    if (r === undefined) {
      r = {
        node,
        instance: '',
        apiAddress: '',
        link: undefined,
        connectedSince: 0,
        disconnectedAt: 0,
        ackedRevision: 0,
        ackedSpan: undefined,
        ackedHash: undefined,
        ackedAt: undefined,
        proven: false,
        inForceHash: '',
        inflight: undefined,
        lastError: '',
        lastAck: 0,
        acks: [],
        acksTruncated: false,
        attempts: 0,
        retry: undefined,
        snapshotNext: false,
        stale: false,
      };
      this.records.set(node, r);
    }
    return r;
  }

  /** Before the first full sync the controller has not computed the node's span: nobody is in sync. */
  private inSync(r: NodeRecord): boolean {
    return (
      this.ready &&
      r.link !== undefined &&
      r.inForceHash !== '' &&
      r.inForceHash === this.currentHash(r.node)
    );
  }

  /** The node's current span as object key → hash. */
  private currentEntries(node: string): Map<ObjectKey, string> {
    const out = new Map<ObjectKey, string>();
    for (const [k, e] of this.store.span(node)?.entries ?? []) out.set(k, e.hash);
    return out;
  }

  /** The hash of the span the controller computed for the node now (kept by the store: O(1)). */
  private currentHash(node: string): string {
    return this.store.spanHash(node);
  }

  /** The span hash of what the agent holds; computed once for a record restored after a restart. */
  private ackedHashOf(r: NodeRecord): string | undefined {
    if (r.ackedSpan === undefined) return undefined;
    r.ackedHash ??= this.store.hashOfEntries(r.ackedSpan);
    return r.ackedHash;
  }

  /** The span the agent holds once it applied `sent` (a delta is applied to ackedSpan in place). */
  private appliedSpan(
    r: NodeRecord,
    sent: NonNullable<NodeRecord['inflight']>,
  ): Map<ObjectKey, string> {
    if (sent.span !== undefined) return sent.span;
    const span = r.ackedSpan!;
    for (const [key, hash] of sent.changes) {
      if (hash === undefined) span.delete(key);
      else span.set(key, hash);
    }
    return span;
  }

  private recordAck(r: NodeRecord, revision: number, at: number): void {
    r.lastAck = at;
    r.acks.push({ revision, at, connectedAt: r.connectedSince });
    if (r.acks.length > ACK_HISTORY) {
      r.acks.shift();
      r.acksTruncated = true;
    }
  }

  /**
   * Propagation when `revision` was committed after the first full sync and
   * while the ACK's connection was open; resync (start-up, or catching up
   * after connecting) otherwise.
   */
  private timing(revision: number, ack: AckRecord): { propagationMs?: number; resyncMs?: number } {
    const committed = this.commits.get(revision);
    if (
      this.ready &&
      revision > this.readyRevision &&
      committed !== undefined &&
      committed >= ack.connectedAt
    )
      return { propagationMs: ack.at - committed };
    return { resyncMs: Math.max(0, ack.at - Math.max(ack.connectedAt, this.readyAt)) };
  }

  private acked(r: NodeRecord, revision: number, hash: string): void {
    const sent = r.inflight!;
    r.inflight = undefined;
    r.ackedRevision = revision;
    r.inForceHash = hash;
    const now = this.now();
    if (hash !== '' && hash !== sent.spanHash) {
      // Applied, but to something else than the controller computed: what the
      // agent holds is unknown; send it the whole span.
      r.ackedSpan = undefined;
      r.ackedHash = undefined;
      r.ackedAt = undefined;
      r.proven = false;
      r.lastError = `revision ${revision} applied, but the agent's span hashes to ${hash}, not ${sent.spanHash}`;
      this.options.observe?.unproved();
      const retryInMs = this.scheduleRetry(r);
      this.peerLog(
        'error',
        r.node,
        { revision, inForceHash: hash, spanHash: sent.spanHash, retryInMs },
        'agent holds a different span than sent; sending it a snapshot',
      );
      this.options.onAckedChange?.();
      return;
    }
    r.ackedSpan = this.appliedSpan(r, sent);
    r.ackedHash = sent.spanHash;
    r.ackedAt = sent.revision;
    r.proven = hash !== '';
    r.lastError = '';
    r.attempts = 0;
    r.snapshotNext = false;
    this.clearRetry(r);
    if (r.proven) {
      this.recordAck(r, revision, now);
      this.options.observe?.acked(this.timing(sent.since, r.acks[r.acks.length - 1]!));
    } else r.lastAck = now;
    this.options.onAckedChange?.();
  }

  /** Schedules sending the node's span again; returns the delay. */
  private scheduleRetry(r: NodeRecord): number {
    this.clearRetry(r);
    r.attempts++;
    const min = this.options.retryMinMs ?? 500;
    const max = this.options.retryMaxMs ?? 30_000;
    const ceiling = Math.min(max, min * 2 ** Math.min(r.attempts - 1, 30));
    const delay = Math.round(ceiling * (0.5 + (this.options.random ?? Math.random)() / 2));
    const timer = setTimeout(() => {
      if (r.retry?.timer !== timer) return;
      r.retry = undefined;
      if (r.link === undefined) return; // sent on reconnection
      this.options.observe?.retried();
      this.sendIfNeeded(r);
    }, delay);
    timer.unref();
    r.retry = { at: this.now() + delay, timer };
    return delay;
  }

  private clearRetry(r: NodeRecord): void {
    if (r.retry !== undefined) clearTimeout(r.retry.timer);
    r.retry = undefined;
  }

  private sendIfNeeded(r: NodeRecord): void {
    if (!this.ready || r.link === undefined || r.inflight !== undefined || r.retry !== undefined)
      return;
    r.stale = false;
    // An agent that said hello before the first full sync (this controller
    // just started, or took over from a leader whose state it does not have)
    // could not be compared then. Now its hash proves whether it holds
    // exactly the span computed for its node, as a hello after the sync
    // would: then it is in sync and sent nothing. So a failover resyncs only
    // the nodes whose span changed meanwhile (by snapshot, with no state).
    if (
      r.ackedSpan === undefined &&
      r.ackedRevision > 0 &&
      r.inForceHash !== '' &&
      r.inForceHash === this.currentHash(r.node)
    ) {
      r.ackedSpan = this.currentEntries(r.node);
      r.ackedHash = r.inForceHash;
      r.ackedAt = this.store.revision;
      r.proven = true;
      this.recordAck(r, this.store.revision, this.now());
      this.options.onAckedChange?.();
      return;
    }
    // Nothing to send when the agent holds exactly this span (proved, or as
    // ACKed by an agent that reports no hash): equal hashes, equal content.
    if (
      r.ackedSpan !== undefined &&
      (r.proven || r.inForceHash === '') &&
      this.ackedHashOf(r) === this.currentHash(r.node)
    ) {
      // The span came back to what the agent holds: whatever was refused is moot.
      if (r.proven && r.attempts > 0) {
        r.attempts = 0;
        r.snapshotNext = false;
        r.lastError = '';
      }
      return;
    }

    const span = this.store.span(r.node);
    const entries: ReadonlyMap<ObjectKey, { hash: string; revision: number }> =
      span?.entries ?? new Map();
    const base = r.snapshotNext ? undefined : r.ackedSpan;
    const changed: ObjectKey[] = [];
    const removed: ObjectKey[] = [];
    // A delta looks only at the keys that changed since the base was the
    // store's span (O(changes)); a base of unknown origin is diffed whole.
    const candidates =
      base !== undefined && r.ackedAt !== undefined
        ? this.store.changedSince(r.node, r.ackedAt)
        : undefined;
    if (base === undefined) changed.push(...entries.keys());
    else if (candidates !== undefined) {
      for (const key of candidates) {
        const e = entries.get(key);
        if (e === undefined) {
          if (base.has(key)) removed.push(key);
        } else if (base.get(key) !== e.hash) changed.push(key);
      }
    } else {
      for (const [key, e] of entries) if (base.get(key) !== e.hash) changed.push(key);
      for (const key of base.keys()) if (!entries.has(key)) removed.push(key);
    }
    let since = span?.revision ?? this.store.revision;
    let policySetChanged = base === undefined;
    for (const key of changed) {
      since = Math.min(since, entries.get(key)!.revision);
      if (base !== undefined && key.startsWith('p:') && !base.has(key)) policySetChanged = true;
    }
    if (removed.some((key) => key.startsWith('p:'))) policySetChanged = true;
    changed.sort();
    removed.sort();
    const revision = this.store.revision;
    const baseRevision = base === undefined ? 0 : r.ackedRevision;
    const policySet = policySetChanged
      ? applicationPolicySetToWire(this.store.applicationPolicySet(span?.policies ?? []))
      : undefined;

    // The key names the update's content exactly: revisions, every object by
    // key and content hash, every removal, and the policy set by its content.
    const k = createHash('sha256');
    k.update(`${revision}\n${baseRevision}\n${this.store.cluster}\n`);
    for (const key of changed) k.update(`+${key} ${entries.get(key)!.hash}\n`);
    for (const key of removed) k.update(`-${key}\n`);
    k.update(policySet === undefined ? '=' : `aps ${objectHash.applicationPolicySet(policySet)}`);
    const key = k.digest('base64url');

    if (this.builtRevision !== revision) {
      this.built = new Map();
      this.wire = new Map();
      this.builtRevision = revision;
    }
    let update = this.built.get(key);
    if (update === undefined) {
      update = this.build(r.node, revision, baseRevision, entries, changed, removed, policySet);
      if (update === undefined) {
        // The model changed after the commit these hashes are from: wait for the next one.
        r.stale = true;
        this.options.log.debug({ node: r.node, revision }, 'span changing; update deferred');
        return;
      }
      this.built.set(key, update);
      if (this.built.size > BUILT_CACHE) this.built.delete(this.built.keys().next().value!);
    }
    r.inflight = {
      revision,
      span: base === undefined ? this.currentEntries(r.node) : undefined,
      changes:
        base === undefined
          ? []
          : [
              ...changed.map((key): [ObjectKey, string] => [key, entries.get(key)!.hash]),
              ...removed.map((key): [ObjectKey, undefined] => [key, undefined]),
            ],
      spanHash: this.currentHash(r.node),
      snapshot: base === undefined,
      since,
      sentAt: this.now(),
    };
    this.options.observe?.sent(base === undefined ? 'snapshot' : 'delta');
    r.link.send(update, key);
  }

  /**
   * The update for a node, with each object as it is now; undefined when an
   * object no longer has the content hash the span holds for it (the model
   * changed after the commit).
   */
  private build(
    node: string,
    revision: number,
    baseRevision: number,
    current: ReadonlyMap<ObjectKey, { hash: string }>,
    changed: readonly ObjectKey[],
    removed: readonly ObjectKey[],
    policySet: SpanUpdate['applicationPolicySet'] | undefined,
  ): SpanUpdate | undefined {
    const update: Required<
      Pick<
        SpanUpdate,
        | 'policies'
        | 'addressGroups'
        | 'serviceGroups'
        | 'endpoints'
        | 'removedPolicies'
        | 'removedAddressGroups'
        | 'removedServiceGroups'
        | 'removedEndpoints'
      >
    > &
      SpanUpdate = {
      revision: String(revision),
      baseRevision: String(baseRevision),
      snapshot: baseRevision === 0,
      policies: [],
      addressGroups: [],
      serviceGroups: [],
      endpoints: [],
      removedPolicies: [],
      removedAddressGroups: [],
      removedServiceGroups: [],
      removedEndpoints: [],
      cluster: this.store.cluster,
    };
    const localOnly = this.store.span(node)?.localOnlyGroups;
    for (const key of changed) {
      const want = current.get(key)?.hash;
      // The same object version is the same wire object on every node that
      // holds it whole (not a group cut down to local members): convert and
      // verify it once per revision, not once per node.
      const shared = !(key.startsWith('g:') && localOnly?.has(key.slice(2)));
      let w = shared ? this.wire.get(key) : undefined;
      if (w === undefined || w.hash !== want) {
        const o = this.store.object(node, key);
        if (o === undefined) return undefined;
        w = toWire(o);
        if (w.hash !== want) return undefined;
        if (shared) this.wire.set(key, w);
      }
      if (w.kind === 'policy') update.policies.push(w.object);
      else if (w.kind === 'group') update.addressGroups.push(w.object);
      else if (w.kind === 'service') update.serviceGroups.push(w.object);
      else update.endpoints.push(w.object);
    }
    for (const key of removed) {
      const id = key.slice(2);
      if (key.startsWith('p:')) update.removedPolicies.push(id);
      else if (key.startsWith('g:')) update.removedAddressGroups.push(id);
      else if (key.startsWith('s:')) update.removedServiceGroups.push(id);
      else update.removedEndpoints.push(id);
    }
    if (policySet !== undefined) update.applicationPolicySet = policySet;
    return update;
  }
}

type WireObject =
  | { kind: 'policy'; hash: string; object: NonNullable<SpanUpdate['policies']>[number] }
  | { kind: 'group'; hash: string; object: NonNullable<SpanUpdate['addressGroups']>[number] }
  | { kind: 'service'; hash: string; object: NonNullable<SpanUpdate['serviceGroups']>[number] }
  | { kind: 'endpoint'; hash: string; object: NonNullable<SpanUpdate['endpoints']>[number] };

/** An object's wire form and the content hash an agent will compute for it. */
function toWire(o: SpanObject): WireObject {
  switch (o.kind) {
    case 'policy': {
      const object = firewallPolicyToWire(o.object);
      return { kind: 'policy', hash: objectHash.policy(object), object };
    }
    case 'group': {
      const object = addressGroupToWire(o.object);
      return { kind: 'group', hash: objectHash.addressGroup(object), object };
    }
    case 'service': {
      const object = serviceGroupToWire(o.object);
      return { kind: 'service', hash: objectHash.serviceGroup(object), object };
    }
    case 'endpoint': {
      const object = endpointToWire(o.object);
      return { kind: 'endpoint', hash: objectHash.endpoint(object), object };
    }
  }
}
