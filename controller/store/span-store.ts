/**
 * Revisions and per-node spans.
 *
 *   ClusterModel changes ─> commit() ─> revision R
 *                                   └─> for each node the change can touch:
 *                                       recompute its span, diff by content
 *                                       hash, record what changed at R
 *
 * A node's span is exactly what its local endpoints need: the policies whose
 * applied-to groups hold them, the groups those policies reference, the
 * service groups of their rules, the local endpoints themselves, and the
 * endpoints whose named ports its egress rules resolve against. An applied-to
 * group that is not also a peer is cut down to the node's own members, so a
 * pod starting elsewhere does not disturb this node. Endpoints carry only the
 * addresses they own (ClusterModel.ownedAddresses): a node need not hold the
 * pod that wins an address two pods claim to resolve it as the cluster does.
 *
 * Spans are maps from object key to content hash. Hashes are of the
 * canonical wire form (shared/wire/span-hash.ts), so they are stable across
 * controller restarts and are what an agent computes for what it holds: a
 * delta is the difference between the span an agent holds (as hashes) and
 * the current one.
 *
 * Each span also carries its span hash, what the node's agent must report to
 * be in sync. It is kept, not computed on demand: every entry holds its
 * element of the span digest, and a commit adds the elements of new entries
 * and subtracts those of old ones, so a span's hash costs O(1) per changed
 * entry, and reading it costs nothing. Elements of shared objects are
 * computed once per object version, whatever the number of nodes holding it.
 */
import { addTo, compareStrings, removeFrom } from '../../shared/collections.js';
import type { ClusterModel, ModelChanges } from '../model/cluster-model.js';
import type {
  AddressGroup,
  ApplicationPolicySet,
  Endpoint,
  FirewallPolicy,
  GroupMember,
  PolicySnapshot,
  ServiceGroup,
} from '../../shared/policy/types.js';
import { isEmpty, sameMemberContent } from '../model/cluster-model.js';
import {
  addressGroupToWire,
  applicationPolicySetToWire,
  endpointToWire,
  firewallPolicyToWire,
  groupMemberToWire,
  serviceGroupToWire,
} from '../../shared/wire/policy.js';
import {
  SpanDigest,
  type SpanElement,
  addressGroupHashOf,
  groupMemberElement,
  objectHash,
  spanElement,
  spanHashOf,
} from '../../shared/wire/span-hash.js';

/** "p:<policy id>", "g:<group id>", "s:<service group id>", "e:<namespace/name>". */
export type ObjectKey = string;

/** A named port's rule peer that is not a selector group: every provider may be the destination. */
const ANY_PEER = '';

export interface SpanEntry {
  readonly hash: string;
  /** spanElement(key, hash): this entry's share of the span digest. */
  readonly element: SpanElement;
  /** The revision at which this object last changed for this node. */
  readonly revision: number;
}

export interface NodeSpan {
  readonly node: string;
  readonly entries: ReadonlyMap<ObjectKey, SpanEntry>;
  /** The revision at which the span last changed. */
  readonly revision: number;
  /** Local endpoints (keys). */
  readonly locals: ReadonlySet<string>;
  /** Applied-to groups sent cut down to the local members. */
  readonly localOnlyGroups: ReadonlySet<string>;
  /** The ids of the span's policies, sorted (its application policy set follows from them). */
  readonly policies: readonly string[];
  /** objectHash of the span's application policy set. */
  readonly policySetHash: string;
  /** The span hash of this version (shared/wire/span-hash.ts): what the node's agent reports when in sync. */
  readonly hash: string;
}

export type SpanObject =
  | { readonly kind: 'policy'; readonly object: FirewallPolicy }
  | { readonly kind: 'group'; readonly object: AddressGroup }
  | { readonly kind: 'service'; readonly object: ServiceGroup }
  | { readonly kind: 'endpoint'; readonly object: Endpoint };

export interface Commit {
  readonly revision: number;
  /** Nodes whose span changed at this revision. */
  readonly nodes: readonly string[];
}

export class SpanStore {
  private current: number;
  private readonly spans = new Map<string, NodeSpan>();
  /** Object key → nodes whose span holds it. */
  private readonly holders = new Map<ObjectKey, Set<string>>();
  /**
   * "name/PROTOCOL" → nodes whose egress rules use that named port towards
   * any address (`any`, an ipBlock or nodes peer): their spans hold every
   * provider of it. Towards a selector group the members carry their named
   * ports, so a provider's change reaches those spans as a group change.
   */
  private readonly namedPortUsers = new Map<string, Set<string>>();
  /** Selector group → nodes whose egress rules resolve a named port among its members. */
  private readonly namedPortPeers = new Map<string, Set<string>>();
  /** Per node, the keys it has in the two indexes above (to take them out again). */
  private readonly namedPortUse = new Map<
    string,
    { readonly ports: readonly string[]; readonly peers: readonly string[] }
  >();
  /** Nodes whose span holds the owner of a shared address for a named port towards a selector group. */
  private readonly sharedOwnersHeld = new Set<string>();
  /**
   * Per address group every holder sees alike: the members its hash last
   * covered (the model's sorted view) and the sum of their elements, so
   * that a member's change costs one element, not the whole group.
   */
  private readonly memberDigests = new Map<
    string,
    { members: readonly GroupMember[]; digest: SpanDigest }
  >();
  /**
   * Each member's element by member key, for the content it has now: a pod
   * is a member of many groups and is hashed once for all of them.
   */
  private readonly memberElements = new Map<
    string,
    { readonly member: GroupMember; readonly element: SpanElement }
  >();
  /** Content hashes and elements of whole objects, until they change. */
  private readonly hashes = new Map<ObjectKey, { hash: string; element: SpanElement }>();
  /** Each span's digest, in step with its entries. */
  private readonly digests = new Map<string, SpanDigest>();
  /** Per node, which keys changed at which revision since `from` (bounded): deltas cost O(changes). */
  private readonly logs = new Map<string, ChangeLog>();
  private emptyHash: string | undefined;
  /** Revision → when the change behind it was observed (Unix ms); the most recent ones. */
  private readonly observed = new Map<number, number>();

  constructor(
    private readonly model: ClusterModel,
    options: { initialRevision?: number; observedHistory?: number } = {},
  ) {
    this.current = options.initialRevision ?? 0;
    this.observedHistory = options.observedHistory ?? 10_000;
  }

  private readonly observedHistory: number;

  get revision(): number {
    return this.current;
  }

  /**
   * Makes every revision issued from now on greater than `held`, a revision
   * an agent says it holds. A controller that starts fresh (no state, or a
   * state file it rejected) or from an older state meets agents at
   * revisions it never issued; issuing such a number again, for other
   * content, would make it ambiguous (an agent reconnecting at R would be
   * taken to hold this controller's R). Values that are not safe integers
   * are ignored. Returns whether the counter moved.
   */
  advancePast(held: number): boolean {
    if (!Number.isSafeInteger(held) || held < this.current || held >= Number.MAX_SAFE_INTEGER - 1)
      return false;
    this.current = held + 1;
    return true;
  }

  /** When the change behind a revision was observed, if still remembered. */
  observedAt(revision: number): number | undefined {
    return this.observed.get(revision);
  }

  span(node: string): NodeSpan | undefined {
    return this.spans.get(node);
  }

  /** The span hash of a node's current span (of the empty span when it has none). O(1). */
  spanHash(node: string): string {
    const span = this.spans.get(node);
    if (span !== undefined) return span.hash;
    this.emptyHash ??= spanHashOf(this.model.cluster, this.policySetHash([]), new SpanDigest());
    return this.emptyHash;
  }

  /**
   * The span hash of a span given by its entries (object key → content
   * hash), from scratch: for spans the store does not keep, such as what an
   * agent ACKed before a restart. O(entries); elements of objects as they
   * are now are reused.
   */
  hashOfEntries(entries: ReadonlyMap<ObjectKey, string>): string {
    const d = new SpanDigest();
    const policies: string[] = [];
    for (const [key, hash] of entries) {
      const cached = this.hashes.get(key);
      d.add(cached?.hash === hash ? cached.element : spanElement(key, hash));
      if (key.startsWith('p:')) policies.push(key.slice(2));
    }
    return spanHashOf(this.model.cluster, this.policySetHash(policies), d);
  }

  /**
   * The keys of a node's span added, changed or removed at revisions after
   * `revision`: every key in which the span at `revision` and the span now
   * can differ (a superset: compare hashes). Undefined when the store no
   * longer knows (the span did not exist then in this store, or the log was
   * trimmed): diff the whole span instead. O(changes).
   */
  changedSince(node: string, revision: number): ReadonlySet<ObjectKey> | undefined {
    const log = this.logs.get(node);
    if (log === undefined || revision < log.from) return undefined;
    const out = new Set<ObjectKey>();
    for (let i = log.records.length - 1; i >= 0 && log.records[i]!.revision > revision; i--)
      for (const key of log.records[i]!.keys) out.add(key);
    return out;
  }

  private logChanges(node: string, revision: number, keys: ObjectKey[], spanSize: number): void {
    const log = this.logs.get(node)!;
    log.records.push({ revision, keys });
    log.size += keys.length;
    while (
      log.records.length > LOG_RECORDS ||
      (log.records.length > 1 && log.size > Math.max(LOG_KEYS, spanSize))
    ) {
      const dropped = log.records.shift()!;
      log.size -= dropped.keys.length;
      log.from = dropped.revision;
    }
  }

  /** objectHash of the application policy set of a span holding these policies, as the distributor sends it. */
  private policySetHash(policyIds: readonly string[]): string {
    return objectHash.applicationPolicySet(
      applicationPolicySetToWire(this.model.applicationPolicySet(policyIds)),
    );
  }

  nodes(): string[] {
    return [...this.spans.keys()].sort();
  }

  /** The cluster name every object id is prefixed with. */
  get cluster(): string {
    return this.model.cluster;
  }

  /** The application policy set of a span holding these policies (what a snapshot carries). */
  applicationPolicySet(policyIds: readonly string[]): ApplicationPolicySet {
    return this.model.applicationPolicySet(policyIds);
  }

  /**
   * The keys a policy is realized by on a node: the policy, its applied-to
   * group, and the groups and service groups its rules reference. Empty for
   * a policy the store does not know.
   */
  policyKeys(policyId: string): ObjectKey[] {
    const policy = this.model.policy(policyId);
    if (policy === undefined) return [];
    return [
      `p:${policyId}`,
      `g:${policy.appliedTo}`,
      ...policy.rules.flatMap((r) => [
        ...('addressGroup' in r.endpoint2 ? [`g:${r.endpoint2.addressGroup}`] : []),
        ...(r.serviceGroup ? [`s:${r.serviceGroup}`] : []),
      ]),
    ];
  }

  /** Nodes whose span holds an object. */
  holdersOf(key: ObjectKey): ReadonlySet<string> {
    return this.holders.get(key) ?? new Set();
  }

  /**
   * Takes the model's changes as one revision. Returns undefined when nothing
   * changed (no revision is spent). `observedAtMs`: when the first event of
   * the batch was seen, for propagation latency.
   */
  commit(observedAtMs: number): Commit | undefined {
    const c = this.model.drainChanges();
    if (isEmpty(c)) return undefined;
    const revision = ++this.current;
    this.observed.set(revision, observedAtMs);
    if (this.observed.size > this.observedHistory)
      this.observed.delete(this.observed.keys().next().value!);
    for (const key of changedKeys(c)) this.hashes.delete(key);
    for (const id of c.removedGroups) this.memberDigests.delete(id);
    for (const key of c.removedEndpoints) this.memberElements.delete(key);

    const changedNodes: string[] = [];
    const structural = this.structurallyAffected(c);
    for (const node of structural) {
      if (this.recompute(node, revision)) changedNodes.push(node);
    }
    // Nodes whose span keeps its shape and only holds objects whose content changed:
    // refresh those entries instead of recomputing the span.
    const refresh = new Map<string, ObjectKey[]>();
    for (const key of [
      ...[...c.groups].map((id) => `g:${id}`),
      ...[...c.endpoints].map((k) => `e:${k}`),
    ]) {
      for (const node of this.holders.get(key) ?? []) {
        if (structural.has(node)) continue;
        const keys = refresh.get(node);
        if (keys === undefined) refresh.set(node, [key]);
        else keys.push(key);
      }
    }
    for (const [node, keys] of refresh)
      if (this.refresh(node, keys, revision)) changedNodes.push(node);
    return { revision, nodes: changedNodes.sort() };
  }

  /** Re-hashes some objects of a span whose shape did not change; returns whether any changed. */
  private refresh(node: string, keys: readonly ObjectKey[], revision: number): boolean {
    const span = this.spans.get(node)!;
    const entries = span.entries as Map<ObjectKey, SpanEntry>;
    const digest = this.digests.get(node)!;
    const logged: ObjectKey[] = [];
    for (const key of keys) {
      const old = entries.get(key);
      if (old === undefined) continue;
      const { hash, element } = this.hashOf(
        node,
        key,
        !(key.startsWith('g:') && span.localOnlyGroups.has(key.slice(2))),
        old,
      );
      if (hash === old.hash) continue;
      entries.set(key, { hash, element, revision });
      digest.subtract(old.element).add(element);
      logged.push(key);
    }
    const changed = logged.length > 0;
    if (changed) this.logChanges(node, revision, logged, entries.size);
    if (changed)
      this.spans.set(node, {
        ...span,
        revision,
        hash: spanHashOf(this.model.cluster, span.policySetHash, digest),
      });
    return changed;
  }

  /** The content of one object as this node sees it. */
  object(node: string, key: ObjectKey): SpanObject | undefined {
    const id = key.slice(2);
    switch (key[0]) {
      case 'p': {
        const p = this.model.policy(id);
        return p && { kind: 'policy', object: p };
      }
      case 'g': {
        const g = this.model.addressGroup(id);
        if (g === undefined) return undefined;
        const span = this.spans.get(node);
        if (g.kind === 'selector' && span?.localOnlyGroups.has(id)) {
          // From the node's few local endpoints, not the group's many members.
          const all = this.model.groupMembers(id);
          const members = [...span.locals]
            .filter((k) => all.has(k))
            .sort()
            .map((k) => {
              const e = all.get(k)!;
              return { endpoint: k, ips: e.ips, ports: e.ports };
            });
          return { kind: 'group', object: { ...g, members } };
        }
        return { kind: 'group', object: g };
      }
      case 's': {
        const s = this.model.serviceGroup(id);
        return s && { kind: 'service', object: s };
      }
      case 'e': {
        const e = this.model.endpoint(id);
        if (e === undefined) return undefined;
        // Only the addresses it owns: the node may not hold the pod that wins a shared one.
        const ips = this.model.ownedAddresses(e);
        return { kind: 'endpoint', object: ips === e.ips ? e : { ...e, ips } };
      }
      default:
        return undefined;
    }
  }

  // ---------------------------------------------------------------------------

  /**
   * Nodes whose span may change shape: their endpoints changed or joined or
   * left groups, a policy they hold (or that now selects their endpoints)
   * changed, a group or service group they hold went away, or a named port
   * their egress rules resolve changed providers.
   */
  private structurallyAffected(c: ModelChanges): Set<string> {
    const nodes = new Set<string>(c.nodes);
    const structuralKeys = [
      ...[...c.policies, ...c.removedPolicies].map((id) => `p:${id}`),
      ...[...c.removedGroups].map((id) => `g:${id}`),
      ...[...c.serviceGroups, ...c.removedServiceGroups].map((id) => `s:${id}`),
      ...[...c.removedEndpoints].map((k) => `e:${k}`),
    ];
    for (const key of structuralKeys) for (const n of this.holders.get(key) ?? []) nodes.add(n);
    for (const id of c.policies) {
      const p = this.model.policy(id);
      if (p !== undefined)
        for (const e of this.model.groupMembers(p.appliedTo).values()) nodes.add(e.node);
    }
    // A group whose members changed changes which providers a named port's
    // peer reaches (a namespace relabelled moves pods that did not change).
    // Towards a selector group a span needs only the owners of addresses its
    // members share with other pods: the nodes to recompute are those that
    // hold such an owner now (it may have left), and all of the group's
    // named-port peers when one of its members claims a shared address.
    const shared = this.model.sharedAddresses();
    for (const id of c.groups) {
      const peers = this.namedPortPeers.get(id);
      if (peers === undefined) continue;
      const members = shared.size > 0 ? this.model.groupMembers(id) : undefined;
      const sharing =
        members !== undefined &&
        [...shared].some((ip) => [...this.model.claimantsOf(ip)].some((k) => members.has(k)));
      for (const n of peers) if (sharing || this.sharedOwnersHeld.has(n)) nodes.add(n);
    }
    for (const key of c.endpoints) {
      // An address it shares with other pods: the spans resolving named
      // ports among their groups need the pod that owns it now; and a span
      // that holds it for that reason may not need it any more.
      for (const ip of this.model.endpoint(key)?.ips ?? [])
        if (this.model.sharedAddress(ip))
          for (const k of this.model.claimantsOf(ip))
            for (const g of this.model.groupsOf(k))
              for (const n of this.namedPortPeers.get(g) ?? []) nodes.add(n);
      for (const n of this.holders.get(`e:${key}`) ?? [])
        if (this.namedPortUse.has(n)) nodes.add(n);
      for (const port of this.model.endpoint(key)?.ports ?? []) {
        for (const n of this.namedPortUsers.get(`${port.name}/${port.protocol}`) ?? [])
          nodes.add(n);
      }
    }
    return nodes;
  }

  /** Recomputes one node's span; returns whether it changed. */
  private recompute(node: string, revision: number): boolean {
    const before = this.spans.get(node);
    const locals = new Set(this.model.endpointsOnNode(node));
    const policies = new Set<string>();
    for (const e of locals)
      for (const g of this.model.groupsOf(e))
        for (const p of this.model.policiesAppliedTo(g)) policies.add(p);

    const appliedTo = new Set<string>();
    const peers = new Set<string>();
    const services = new Set<string>();
    // Egress named ports ("name/PROTOCOL") → the selector groups their rules'
    // peers are, or ANY_PEER (`any`, an ipBlock or nodes peer).
    const namedPorts = new Map<string, Set<string>>();
    for (const id of policies) {
      const p = this.model.policy(id)!;
      appliedTo.add(p.appliedTo);
      for (const r of p.rules) {
        const peer = 'addressGroup' in r.endpoint2 ? r.endpoint2.addressGroup : undefined;
        if (peer !== undefined) peers.add(peer);
        if (r.serviceGroup === undefined) continue;
        services.add(r.serviceGroup);
        if (r.direction !== 'egress') continue;
        for (const s of this.model.serviceGroup(r.serviceGroup)?.services ?? []) {
          if (s.port.kind !== 'named') continue;
          const selector = peer !== undefined && this.model.addressGroup(peer)?.kind === 'selector';
          addTo(namedPorts, `${s.port.name}/${s.protocol}`, selector ? peer : ANY_PEER);
        }
      }
    }
    const localOnlyGroups = new Set([...appliedTo].filter((g) => !peers.has(g)));
    const endpoints = new Set(locals);
    let sharedOwners = false;
    for (const [np, groups] of namedPorts)
      if (this.addProviders(endpoints, np, groups)) sharedOwners = true;
    if (sharedOwners) this.sharedOwnersHeld.add(node);
    else this.sharedOwnersHeld.delete(node);

    const keys: ObjectKey[] = [
      ...[...policies].map((id) => `p:${id}`),
      ...[...new Set([...appliedTo, ...peers])].map((id) => `g:${id}`),
      ...[...services].map((id) => `s:${id}`),
      ...[...endpoints].map((k) => `e:${k}`),
    ];
    const draft: NodeSpan = {
      node,
      entries: new Map(),
      revision,
      locals,
      localOnlyGroups,
      policies: [],
      policySetHash: '',
      hash: '',
    };
    this.spans.set(node, draft); // object() reads locals and localOnlyGroups from here
    const entries = new Map<ObjectKey, SpanEntry>();
    const digest = new SpanDigest(this.digests.get(node));
    let changed = before === undefined ? keys.length > 0 : false;
    let policiesChanged = before === undefined;
    const logged: ObjectKey[] = [];
    for (const key of keys) {
      const old = before?.entries.get(key);
      const { hash, element } = this.hashOf(
        node,
        key,
        !(localOnlyGroups.has(key.slice(2)) && key.startsWith('g:')),
        old,
      );
      if (old !== undefined && old.hash === hash) entries.set(key, old);
      else {
        entries.set(key, { hash, element, revision });
        if (old !== undefined) digest.subtract(old.element);
        // A changed policy may have moved in the policy set (a cluster
        // policy's priority): its order is part of the span hash.
        if (key.startsWith('p:')) policiesChanged = true;
        digest.add(element);
        logged.push(key);
        changed = true;
      }
    }
    for (const [key, old] of before?.entries ?? []) {
      if (entries.has(key)) continue;
      digest.subtract(old.element);
      if (key.startsWith('p:')) policiesChanged = true;
      logged.push(key);
      changed = true;
    }

    // Reverse indexes.
    for (const key of before?.entries.keys() ?? [])
      if (!entries.has(key)) removeFrom(this.holders, key, node);
    for (const key of entries.keys()) addTo(this.holders, key, node);
    const used = this.namedPortUse.get(node);
    for (const np of used?.ports ?? []) removeFrom(this.namedPortUsers, np, node);
    for (const g of used?.peers ?? []) removeFrom(this.namedPortPeers, g, node);
    const usedPeers = new Set<string>();
    for (const groups of namedPorts.values())
      for (const g of groups) if (g !== ANY_PEER) usedPeers.add(g);
    const anyPeerPorts = [...namedPorts].filter(([, groups]) => groups.has(ANY_PEER));
    for (const [np] of anyPeerPorts) addTo(this.namedPortUsers, np, node);
    for (const g of usedPeers) addTo(this.namedPortPeers, g, node);
    if (namedPorts.size === 0) this.namedPortUse.delete(node);
    else
      this.namedPortUse.set(node, { ports: anyPeerPorts.map(([np]) => np), peers: [...usedPeers] });

    if (entries.size === 0 && locals.size === 0) {
      this.spans.delete(node);
      this.sharedOwnersHeld.delete(node);
      this.digests.delete(node);
      this.logs.delete(node);
      return before !== undefined && before.entries.size > 0;
    }
    this.digests.set(node, digest);
    // A new span's log starts empty: a base older than it is diffed whole.
    if (before === undefined) this.logs.set(node, { from: revision, records: [], size: 0 });
    else if (logged.length > 0) this.logChanges(node, revision, logged, entries.size);
    const policyIds =
      policiesChanged || before === undefined ? [...policies].sort() : before.policies;
    const policySetHash =
      policiesChanged || before === undefined
        ? this.policySetHash(policyIds)
        : before.policySetHash;
    this.spans.set(node, {
      node,
      entries,
      revision: changed ? revision : (before?.revision ?? revision),
      locals,
      localOnlyGroups,
      policies: policyIds,
      policySetHash,
      hash:
        changed || before === undefined
          ? spanHashOf(this.model.cluster, policySetHash, digest)
          : before.hash,
    });
    return changed;
  }

  /**
   * Adds the endpoints an egress rule needs to resolve named port `np` at
   * its destination. A selector group's members carry their named ports,
   * so only an address a member shares with another pod needs an endpoint:
   * the pod the cluster gives it to (the one an agent resolves the address
   * at). For ANY_PEER (`any`, an ipBlock or nodes peer), every provider.
   * Returns whether it added such an owner for a selector group.
   */
  private addProviders(out: Set<string>, np: string, groups: ReadonlySet<string>): boolean {
    if (groups.has(ANY_PEER)) {
      for (const e of this.model.providersOf(np)) out.add(e);
      return false;
    }
    let owners = false;
    // Shared addresses are few; groups may hold every pod of the cluster.
    for (const ip of this.model.sharedAddresses()) {
      const claimants = this.model.claimantsOf(ip);
      for (const g of groups) {
        const members = this.model.groupMembers(g);
        if (![...claimants].some((k) => members.has(k))) continue;
        const owner = this.model.addressOwner(ip);
        if (owner !== undefined) {
          out.add(owner);
          owners = true;
        }
        break;
      }
    }
    return owners;
  }

  /**
   * An object's content hash and span element as this node sees it.
   * `shared`: the same on every node (cached until the object changes);
   * otherwise `old`'s element is reused when the hash did not change.
   */
  private hashOf(
    node: string,
    key: ObjectKey,
    shared: boolean,
    old?: SpanEntry,
  ): { hash: string; element: SpanElement } {
    if (shared) {
      const cached = this.hashes.get(key);
      if (cached !== undefined) return cached;
    }
    const hash =
      shared && key.startsWith('g:')
        ? this.sharedGroupHash(key.slice(2))
        : wireHash(this.object(node, key));
    const h = { hash, element: old?.hash === hash ? old.element : spanElement(key, hash) };
    if (shared) this.hashes.set(key, h);
    return h;
  }

  /**
   * objectHash.addressGroup of a group as every holder sees it, from its
   * member digest brought up to date: the model's members (sorted by key)
   * walked against those the digest covers, an element subtracted or added
   * for each member gone, come or changed. O(members) comparisons, O(changed)
   * hashes.
   */
  private sharedGroupHash(id: string): string {
    const g = this.model.addressGroup(id);
    if (g === undefined) return wireHash(undefined);
    if (g.kind === 'ipBlock') return objectHash.addressGroup(addressGroupToWire(g));
    const now = g.members;
    let kept = this.memberDigests.get(id);
    if (kept === undefined) {
      kept = { members: [], digest: new SpanDigest() };
      this.memberDigests.set(id, kept);
    }
    const before = kept.members;
    if (before !== now) {
      const digest = kept.digest;
      const element = (m: GroupMember, current: boolean) => {
        const memo = this.memberElements.get(m.endpoint);
        if (memo !== undefined && (memo.member === m || sameMemberContent(memo.member, m)))
          return memo.element;
        const e = groupMemberElement(groupMemberToWire(m));
        // Only what members are now is remembered: a member gone or changed is hashed as it was.
        if (current) this.memberElements.set(m.endpoint, { member: m, element: e });
        return e;
      };
      let i = 0;
      let j = 0;
      while (i < before.length || j < now.length) {
        const a = before[i];
        const b = now[j];
        const order =
          a === undefined ? 1 : b === undefined ? -1 : compareStrings(a.endpoint, b.endpoint);
        if (order < 0) {
          digest.subtract(element(a!, false));
          i++;
        } else if (order > 0) {
          digest.add(element(b!, true));
          j++;
        } else {
          if (a !== b && !sameMemberContent(a!, b!))
            digest.subtract(element(a!, false)).add(element(b!, true));
          i++;
          j++;
        }
      }
      kept.members = now;
    }
    return addressGroupHashOf(addressGroupToWire({ ...g, members: [] }), kept.digest);
  }
}

/**
 * The content hash of an object in its wire form (shared/wire/span-hash.ts),
 * the hash an agent computes for the same object: a span's hash is then a
 * function of its entries alone.
 */
function wireHash(o: SpanObject | undefined): string {
  if (o === undefined) return 'missing';
  switch (o.kind) {
    case 'policy':
      return objectHash.policy(firewallPolicyToWire(o.object));
    case 'group':
      return objectHash.addressGroup(addressGroupToWire(o.object));
    case 'service':
      return objectHash.serviceGroup(serviceGroupToWire(o.object));
    case 'endpoint':
      return objectHash.endpoint(endpointToWire(o.object));
  }
}

const LOG_RECORDS = 64;
const LOG_KEYS = 1024;

interface ChangeLog {
  /** Changes after this revision are all recorded. */
  from: number;
  /** Oldest first. */
  readonly records: Array<{ readonly revision: number; readonly keys: readonly ObjectKey[] }>;
  /** Keys over all records (bounded by max(LOG_KEYS, span size)). */
  size: number;
}

function changedKeys(c: ModelChanges): ObjectKey[] {
  return [
    ...[...c.policies, ...c.removedPolicies].map((id) => `p:${id}`),
    ...[...c.groups, ...c.removedGroups].map((id) => `g:${id}`),
    ...[...c.serviceGroups, ...c.removedServiceGroups].map((id) => `s:${id}`),
    ...[...c.endpoints, ...c.removedEndpoints].map((k) => `e:${k}`),
  ];
}

/** The objects of one node's span, as a snapshot (what a snapshot update carries). */
export function spanSnapshot(store: SpanStore, model: ClusterModel, node: string): PolicySnapshot {
  const span = store.span(node);
  const policies: FirewallPolicy[] = [];
  const addressGroups: AddressGroup[] = [];
  const serviceGroups: ServiceGroup[] = [];
  const endpoints: Endpoint[] = [];
  for (const key of [...(span?.entries.keys() ?? [])].sort()) {
    const o = store.object(node, key);
    if (o === undefined) continue;
    if (o.kind === 'policy') policies.push(o.object);
    else if (o.kind === 'group') addressGroups.push(o.object);
    else if (o.kind === 'service') serviceGroups.push(o.object);
    else endpoints.push(o.object);
  }
  return {
    cluster: model.cluster,
    applicationPolicySet: model.applicationPolicySet(policies.map((p) => p.id)),
    policies,
    addressGroups,
    serviceGroups,
    endpoints,
  };
}
