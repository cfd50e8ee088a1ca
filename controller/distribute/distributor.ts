/**
 * Keeps every agent's node at the current span, one revision in flight per
 * agent.
 *
 *   commit ─> notify(nodes) ─┐
 *   hello(node, R) ──────────┼─> for each connected node with nothing in
 *   ack(R) / nack(R) ────────┘   flight and a span that differs from what it
 *                                ACKed: send one update (a delta from the
 *                                ACKed span, or a snapshot) and wait
 *
 * Backpressure is the protocol itself: a slow agent has at most one update
 * outstanding, and every change meanwhile collapses into the next delta,
 * computed from content hashes when it is sent. Memory per agent is its
 * ACKed span (object key → hash), whatever the rate of change.
 *
 * Transport-agnostic: the gRPC server (and later NATS) supply AgentLinks.
 */
import type { Logger } from '../../shared/log.js';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import {
  addressGroupToWire,
  endpointToWire,
  firewallPolicyToWire,
  serviceGroupToWire,
} from '../../shared/wire/policy.js';
import type { ClusterModel } from '../model/cluster-model.js';
import type { ObjectKey, SpanStore } from '../store/span-store.js';
import type { PersistedNode } from '../store/state-file.js';

export interface AgentLink {
  /**
   * Sends one update; the agent answers with ack or nack. Equal `key`s mean
   * byte-identical updates (a broad change sends the same delta to many
   * nodes), so that a transport can encode each distinct one once.
   */
  send(update: SpanUpdate, key: string): void;
  close(reason: string): void;
}

export interface DistributorObserver {
  sent(kind: 'snapshot' | 'delta'): void;
  /** An ACK; `propagationMs` from the change being observed, when known. */
  acked(propagationMs: number | undefined): void;
  nacked(): void;
}

export interface NodeView {
  readonly node: string;
  readonly connected: boolean;
  readonly instance: string;
  readonly appliedRevision: number;
  readonly spanRevision: number;
  readonly inSync: boolean;
  readonly pending: number;
  readonly lastError: string;
  readonly lastAckUnixMs: number;
  readonly connectedSinceUnixMs: number;
  readonly spanObjects: number;
  readonly localEndpoints: number;
  readonly apiAddress: string;
}

interface NodeRecord {
  readonly node: string;
  instance: string;
  apiAddress: string;
  link: AgentLink | undefined;
  connectedSince: number;
  ackedRevision: number;
  /** What the agent holds, as ACKed; undefined: unknown (send a snapshot). */
  ackedSpan: Map<ObjectKey, string> | undefined;
  inflight: { revision: number; span: Map<ObjectKey, string>; sentAt: number } | undefined;
  lastError: string;
  lastAck: number;
  /** Recent ACKs, oldest first: for propagation latency. */
  acks: Array<{ revision: number; at: number }>;
  /** The span revision a NACK refused (nothing is resent until the span moves past it); -1: none. */
  nackedAt: number;
}

const ACK_HISTORY = 64;

export class Distributor {
  private readonly records = new Map<string, NodeRecord>();
  private ready = false;

  constructor(
    private readonly model: ClusterModel,
    private readonly store: SpanStore,
    private readonly options: {
      log: Logger;
      /** Called when what agents ACKed changes, so that it can be persisted. */
      onAckedChange?: () => void;
      now?: () => number;
      /** An agent that has not answered an update for this long is disconnected (it reconnects and resyncs). */
      ackTimeoutMs?: number;
      /** Metrics hooks. */
      observe?: DistributorObserver;
    },
  ) {}

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
      r.inflight = undefined;
      link.close('no answer to an update');
      out.push(r.node);
    }
    return out;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Restores what agents ACKed before a restart, so that they resync by delta. */
  restore(nodes: Readonly<Record<string, PersistedNode>>): void {
    for (const [node, p] of Object.entries(nodes)) {
      const r = this.record(node);
      r.ackedRevision = p.revision;
      r.ackedSpan = new Map(p.span);
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
    for (const r of this.records.values()) this.sendIfNeeded(r);
  }

  hello(
    node: string,
    instance: string,
    revision: number,
    link: AgentLink,
    apiAddress = '',
  ): { ack(revision: number): void; nack(revision: number, error: string): void; close(): void } {
    const r = this.record(node);
    if (r.link !== undefined) r.link.close('replaced by a new connection from the same node');
    if (r.inflight !== undefined && r.inflight.revision === revision) {
      // The ACK was lost with the old connection; the agent did apply it.
      this.acked(r, revision);
    }
    if (revision === 0 || revision !== r.ackedRevision) r.ackedSpan = undefined;
    r.inflight = undefined;
    r.link = link;
    // A new agent process may accept what the previous one refused.
    if (instance !== r.instance) r.nackedAt = -1;
    r.instance = instance;
    r.apiAddress = apiAddress;
    r.connectedSince = this.now();
    this.options.log.info(
      { node, instance, revision, delta: r.ackedSpan !== undefined },
      'agent connected',
    );
    this.sendIfNeeded(r);
    return {
      ack: (rev) => {
        if (r.link !== link) return;
        if (r.inflight === undefined || r.inflight.revision !== rev) {
          this.options.log.warn(
            { node, revision: rev },
            'ACK for a revision not in flight; ignored',
          );
          return;
        }
        this.acked(r, rev);
        this.sendIfNeeded(r);
      },
      nack: (rev, error) => {
        if (r.link !== link) return;
        this.options.observe?.nacked();
        this.options.log.warn(
          { node, revision: rev, error },
          'agent refused an update; it keeps its previous revision',
        );
        r.lastError = error;
        r.inflight = undefined;
        // Not resent until the node's span changes again: the same content would be refused again.
        r.nackedAt = this.store.span(node)?.revision ?? 0;
      },
      close: () => {
        if (r.link !== link) return;
        r.link = undefined;
        this.options.log.info({ node }, 'agent disconnected');
      },
    };
  }

  /** After a commit: the nodes whose span changed. */
  notify(nodes: readonly string[]): void {
    for (const node of nodes) {
      const r = this.records.get(node);
      if (r !== undefined) this.sendIfNeeded(r);
    }
  }

  views(): NodeView[] {
    const nodes = new Set([...this.records.keys(), ...this.store.nodes()]);
    return [...nodes].sort().map((node) => {
      const r = this.records.get(node);
      const span = this.store.span(node);
      const spanRevision = span?.revision ?? 0;
      return {
        node,
        connected: r?.link !== undefined,
        instance: r?.instance ?? '',
        appliedRevision: r?.ackedRevision ?? 0,
        spanRevision,
        inSync:
          r !== undefined && r.ackedSpan !== undefined && sameSpan(r.ackedSpan, span?.entries),
        pending: r?.inflight !== undefined ? 1 : 0,
        lastError: r?.lastError ?? '',
        lastAckUnixMs: r?.lastAck ?? 0,
        connectedSinceUnixMs: r?.link !== undefined ? r.connectedSince : 0,
        spanObjects: span?.entries.size ?? 0,
        localEndpoints: span?.locals.size ?? 0,
        apiAddress: r?.apiAddress ?? '',
      };
    });
  }

  /**
   * For one policy: the nodes holding it, those that ACKed its latest
   * change, and how long each took from the change being observed.
   */
  realization(policyId: string): {
    revision: number;
    nodes: string[];
    applied: string[];
    latencyMs: Record<string, number>;
  } {
    const policy = this.model.policy(policyId);
    const nodes = [...this.store.holdersOf(`p:${policyId}`)].sort();
    const keys =
      policy === undefined
        ? []
        : [
            `p:${policyId}`,
            `g:${policy.appliedTo}`,
            ...policy.rules.flatMap((r) => [
              ...('addressGroup' in r.endpoint2 ? [`g:${r.endpoint2.addressGroup}`] : []),
              ...(r.serviceGroup ? [`s:${r.serviceGroup}`] : []),
            ]),
          ];
    let revision = 0;
    const applied: string[] = [];
    const latencyMs: Record<string, number> = {};
    for (const node of nodes) {
      const entries = this.store.span(node)?.entries;
      const needed = Math.max(0, ...keys.map((k) => entries?.get(k)?.revision ?? 0));
      revision = Math.max(revision, needed);
      const r = this.records.get(node);
      // Applied when what the agent ACKed holds this policy's objects as they are now.
      const acked = r?.ackedSpan;
      if (
        acked === undefined ||
        !keys.every((k) => entries?.get(k) === undefined || acked.get(k) === entries.get(k)!.hash)
      )
        continue;
      applied.push(node);
      const observed = this.store.observedAt(needed);
      const ack = r!.acks.find((a) => a.revision >= needed);
      if (observed !== undefined && ack !== undefined) latencyMs[node] = ack.at - observed;
    }
    return { revision, nodes, applied, latencyMs };
  }

  closeAll(reason: string): void {
    for (const r of this.records.values()) {
      r.link?.close(reason);
      r.link = undefined;
    }
  }

  // ---------------------------------------------------------------------------

  private record(node: string): NodeRecord {
    let r = this.records.get(node);
    if (r === undefined) {
      r = {
        node,
        instance: '',
        apiAddress: '',
        link: undefined,
        connectedSince: 0,
        ackedRevision: 0,
        ackedSpan: undefined,
        inflight: undefined,
        lastError: '',
        lastAck: 0,
        acks: [],
        nackedAt: -1,
      };
      this.records.set(node, r);
    }
    return r;
  }

  private acked(r: NodeRecord, revision: number): void {
    r.ackedRevision = revision;
    r.ackedSpan = r.inflight!.span;
    r.inflight = undefined;
    r.lastError = '';
    r.lastAck = this.now();
    r.acks.push({ revision, at: r.lastAck });
    if (r.acks.length > ACK_HISTORY) r.acks.shift();
    const observed = this.store.observedAt(revision);
    this.options.observe?.acked(observed === undefined ? undefined : r.lastAck - observed);
    this.options.onAckedChange?.();
  }

  private sendIfNeeded(r: NodeRecord): void {
    if (!this.ready || r.link === undefined || r.inflight !== undefined) return;
    const span = this.store.span(r.node);
    // After a NACK, wait for the span to change before trying again.
    if (r.nackedAt >= 0 && (span?.revision ?? 0) <= r.nackedAt) return;
    r.nackedAt = -1;
    const current = new Map<ObjectKey, string>();
    for (const [k, e] of span?.entries ?? []) current.set(k, e.hash);
    if (r.ackedSpan !== undefined && sameSpan(r.ackedSpan, span?.entries)) return;

    const base = r.ackedSpan;
    // What differs, as keys and hashes: it names the update's content exactly.
    const changed: ObjectKey[] = [];
    const removed: ObjectKey[] = [];
    let policySetChanged = base === undefined;
    for (const [key, hash] of current) {
      if (base?.get(key) === hash) continue;
      changed.push(key);
      if (base !== undefined && key.startsWith('p:') && !base.has(key)) policySetChanged = true;
    }
    for (const key of base?.keys() ?? []) {
      if (current.has(key)) continue;
      removed.push(key);
      if (key.startsWith('p:')) policySetChanged = true;
    }
    const revision = String(this.store.revision);
    const baseRevision = base === undefined ? '0' : String(r.ackedRevision);
    const contentKey = `${revision}|${baseRevision}|${changed.map((k) => `${k}=${current.get(k)}`).join(',')}|${removed.join(',')}|${policySetChanged ? 'aps' : ''}`;
    r.inflight = { revision: this.store.revision, span: current, sentAt: this.now() };
    this.options.observe?.sent(base === undefined ? 'snapshot' : 'delta');
    r.link.send(
      this.updateFor(r.node, revision, baseRevision, current, changed, removed, policySetChanged),
      contentKey,
    );
  }

  private updateFor(
    node: string,
    revision: string,
    baseRevision: string,
    current: ReadonlyMap<ObjectKey, string>,
    changed: readonly ObjectKey[],
    removed: readonly ObjectKey[],
    withPolicySet: boolean,
  ): SpanUpdate {
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
      revision,
      baseRevision,
      snapshot: baseRevision === '0',
      policies: [],
      addressGroups: [],
      serviceGroups: [],
      endpoints: [],
      removedPolicies: [],
      removedAddressGroups: [],
      removedServiceGroups: [],
      removedEndpoints: [],
      cluster: this.model.cluster,
    };
    for (const key of changed) {
      const o = this.store.object(node, key);
      if (o === undefined) continue;
      if (o.kind === 'policy') update.policies.push(firewallPolicyToWire(o.object));
      else if (o.kind === 'group') update.addressGroups.push(addressGroupToWire(o.object));
      else if (o.kind === 'service') update.serviceGroups.push(serviceGroupToWire(o.object));
      else update.endpoints.push(endpointToWire(o.object));
    }
    for (const key of removed) {
      const id = key.slice(2);
      if (key.startsWith('p:')) update.removedPolicies.push(id);
      else if (key.startsWith('g:')) update.removedAddressGroups.push(id);
      else if (key.startsWith('s:')) update.removedServiceGroups.push(id);
      else update.removedEndpoints.push(id);
    }
    if (withPolicySet) {
      const policyIds = [...current.keys()]
        .filter((k) => k.startsWith('p:'))
        .map((k) => k.slice(2));
      const aps = this.model.applicationPolicySet(policyIds);
      update.applicationPolicySet = {
        id: aps.id,
        cluster: aps.cluster,
        tiers: aps.tiers.map((t) => ({ tier: 'TIER_NAMESPACE', policies: [...t.policies] })),
      };
    }
    return update;
  }
}

function sameSpan(
  acked: ReadonlyMap<ObjectKey, string>,
  current: ReadonlyMap<ObjectKey, { hash: string }> | undefined,
): boolean {
  const size = current?.size ?? 0;
  if (acked.size !== size) return false;
  for (const [k, e] of current ?? []) if (acked.get(k) !== e.hash) return false;
  return true;
}
