/**
 * The current cluster as the controller knows it, kept incrementally:
 * namespaces, endpoints (pods with addresses), network policies translated
 * into firewall objects, and the members of every selector group.
 *
 *   events ─> ClusterModel ─┬─> groups' members (kept current per event)
 *                           ├─> changes since the last drain (for revisions)
 *                           └─> snapshot(): the whole cluster as firewall objects
 *
 * Work per event is proportional to what the event touches: a pod is checked
 * only against the groups whose selectors could match it (found through an
 * anchor index: the namespace a group names, or one label requirement it
 * needs), a namespace label change only revisits that namespace's pods, and a
 * new group is resolved from label and namespace indexes, not by scanning.
 *
 * Invalid objects are kept aside with their issues and never reach
 * translation; any earlier valid version of them stays in force.
 *
 * Federation (docs/federation.md; on when constructed with `federation`):
 * every namespace, local or remote, carries CLUSTER_LABEL naming its
 * cluster (set here, overriding what a member exported). Remote pods
 * (`remote-endpoint`) are kept apart from local ones: they are members of
 * federation-scoped groups only (the peers of federated policies), never
 * endpoints(), never in a node's span as endpoints; their member key is
 * "<cluster>/<namespace>/<name>". An address claimed by two clusters, or
 * by two remote pods, is given to no remote claimant (local pods keep it)
 * and reported. Imported policies (`imported-policy`) compete by name with
 * the local ClusterNetworkPolicies: a local one wins, then the lowest
 * origin cluster name; the losers are reported, not enforced.
 */
import { addTo, compareStrings as cmp, removeFrom } from '../../shared/collections.js';
import type { Issue } from '../../shared/errors.js';
import { InternalError } from '../../shared/errors.js';
import { matchesLabels } from '../../shared/policy/selector.js';
import {
  endpointKey,
  type AddressGroup,
  type Endpoint,
  type EndpointSelector,
  type FirewallPolicy,
  type LabelSelector,
  type NamedPort,
  type Labels,
  type PolicySnapshot,
  type ServiceGroup,
  clusterPolicyOrder,
  tierOf,
} from '../../shared/policy/types.js';
import {
  translateNetworkPolicy,
  type GroupSpec,
  type Translation,
} from '../translate/network-policy.js';
import { translateClusterNetworkPolicy } from '../translate/cluster-network-policy.js';
import {
  CLUSTER_LABEL,
  FEDERATED_LABEL,
  type ClusterNetworkPolicyObject,
} from '../kube/cluster-network-policy.js';
import {
  NAMESPACE_NAME_LABEL,
  isClusterScoped,
  type KubeObject,
  type NamespaceObject,
  type NodeObject,
  type PodObject,
} from '../kube/objects.js';

/** What a source (the API server, manifests) says of the local cluster. */
export type ModelEvent = KubeModelEvent | FederationModelEvent;

export type KubeModelEvent =
  | { readonly type: 'upsert'; readonly object: KubeObject }
  | {
      readonly type: 'delete';
      readonly kind: KubeObject['kind'];
      readonly namespace: string;
      readonly name: string;
    }
  /**
   * An object that failed validation: recorded as rejected, and its last
   * valid version (if any) stays in force, as the API server keeps the
   * stored object when it refuses an update. Only a delete withdraws it.
   */
  | {
      readonly type: 'invalid';
      readonly kind: KubeObject['kind'];
      readonly namespace: string;
      readonly name: string;
      readonly issues: readonly Issue[];
    };

/** What the federation importer says of the other members (ignored unless the model was built with `federation`). */
export type FederationModelEvent =
  /** A remote member's namespace and its labels as exported (CLUSTER_LABEL is set here). */
  | {
      readonly type: 'remote-namespace';
      readonly cluster: string;
      readonly name: string;
      readonly labels: Labels;
    }
  | { readonly type: 'remote-namespace-delete'; readonly cluster: string; readonly name: string }
  /**
   * A remote member's pod with addresses; `endpoint.cluster` names the
   * member (never this cluster). Its node and node addresses mean nothing
   * here and are cleared; its namespace labels are this model's.
   */
  | { readonly type: 'remote-endpoint'; readonly endpoint: Endpoint }
  | {
      readonly type: 'remote-endpoint-delete';
      readonly cluster: string;
      readonly namespace: string;
      readonly name: string;
    }
  /** A federated ClusterNetworkPolicy exported by member `origin`, already validated. */
  | {
      readonly type: 'imported-policy';
      readonly origin: string;
      readonly object: ClusterNetworkPolicyObject;
    }
  | { readonly type: 'imported-policy-delete'; readonly origin: string; readonly name: string };

export { CLUSTER_LABEL, FEDERATED_LABEL };

/** Where an imported policy stands in this member. */
export type ImportState =
  /** Enforced here. */
  | 'in-force'
  /** A local ClusterNetworkPolicy of the same name wins here. */
  | 'shadowed-by-local'
  /** Another origin exports a policy of the same name and its cluster name is lower. */
  | `lost-to:${string}`;

export interface FederationView {
  readonly name: string;
  /** What this member exports. */
  readonly exported: { namespaces: number; endpoints: number; policies: number };
  /** Remote members known from their entries, sorted by name. */
  readonly clusters: ReadonlyArray<{
    readonly cluster: string;
    readonly namespaces: number;
    readonly endpoints: number;
    /** Endpoints that are group members (the others are rejected, see `rejections`). */
    readonly admitted: number;
  }>;
  /** Remote objects refused by the model (address overlaps), each with its problems. */
  readonly rejections: ReadonlyArray<{ readonly object: string; readonly problems: string[] }>;
  readonly imports: ReadonlyArray<{
    readonly origin: string;
    readonly name: string;
    readonly tier: string;
    readonly priority: number;
    readonly state: ImportState;
    /** The policy's id here while in force. */
    readonly policy?: string;
  }>;
}

/** What the exporter needs to send since its last drain (local objects only). */
export interface FederationChanges {
  /** Local namespace names whose labels changed, or that came or went. */
  readonly namespaces: Set<string>;
  /** Local endpoint keys ("namespace/name") that changed, came or went. */
  readonly endpoints: Set<string>;
  /** Names of local ClusterNetworkPolicies that changed, came or went (federated or not). */
  readonly policies: Set<string>;
}

function noFederationChanges(): FederationChanges {
  return { namespaces: new Set(), endpoints: new Set(), policies: new Set() };
}

/** The member key of a remote pod: three parts, where a local key has two. */
export function remoteEndpointKey(cluster: string, namespace: string, name: string): string {
  return `${cluster}/${namespace}/${name}`;
}

/** What changed since the last drain: ids of firewall objects, keys of endpoints, and nodes touched. */
export interface ModelChanges {
  readonly policies: Set<string>;
  readonly removedPolicies: Set<string>;
  readonly groups: Set<string>;
  readonly removedGroups: Set<string>;
  readonly serviceGroups: Set<string>;
  readonly removedServiceGroups: Set<string>;
  readonly endpoints: Set<string>;
  readonly removedEndpoints: Set<string>;
  /** Nodes of endpoints that changed, or joined or left a group. */
  readonly nodes: Set<string>;
}

function noChanges(): ModelChanges {
  return {
    policies: new Set(),
    removedPolicies: new Set(),
    groups: new Set(),
    removedGroups: new Set(),
    serviceGroups: new Set(),
    removedServiceGroups: new Set(),
    endpoints: new Set(),
    removedEndpoints: new Set(),
    nodes: new Set(),
  };
}

export function isEmpty(c: ModelChanges): boolean {
  return Object.values(c).every((s: Set<string>) => s.size === 0);
}

/** Pods in these phases have stopped and hold no address that policy should follow. */
const FINISHED_PHASES = new Set(['Succeeded', 'Failed']);

interface GroupState {
  readonly spec: GroupSpec;
  /** Policies (by id) that reference the group, as applied-to or as a peer. */
  readonly refs: Set<string>;
  /** Selector groups: current members by endpoint key. */
  readonly members: Map<string, Endpoint>;
  /** Node groups: the matching Nodes' addresses by Node name. */
  readonly nodes: Map<string, readonly string[]>;
  readonly anchors: readonly string[];
  /** Cached output form; undefined after a change. */
  view: AddressGroup | undefined;
}

export class ClusterModel {
  readonly cluster: string;
  private readonly namespaces = new Map<string, NamespaceObject>();
  private readonly nodeObjects = new Map<string, NodeObject>();
  private readonly pods = new Map<string, PodObject>();
  private readonly policyObjects = new Map<string, Translation>();
  private readonly rejected = new Map<string, readonly Issue[]>();
  /** Labels of the policy objects in force, by the model's policy key (not part of translation: a label edit changes no span). */
  private readonly policyLabelsByKey = new Map<string, Labels>();

  private readonly policies = new Map<string, FirewallPolicy>();
  private readonly groups = new Map<string, GroupState>();
  private readonly services = new Map<string, { sg: ServiceGroup; refs: Set<string> }>();
  private readonly endpointsByKey = new Map<string, Endpoint>();

  /** Ids of the node groups (few: one per distinct `nodes` selector). */
  private readonly nodeGroups = new Set<string>();
  /** Anchor key → groups that need it (see anchorsOf). */
  private readonly anchorIndex = new Map<string, Set<string>>();
  /** Endpoint key → groups it is a member of. */
  private readonly memberships = new Map<string, Set<string>>();
  /** Group id → policies whose applied-to group it is. */
  private readonly appliedBy = new Map<string, Set<string>>();
  private readonly endpointsByNamespace = new Map<string, Set<string>>();
  private readonly endpointsByLabel = new Map<string, Set<string>>();
  private readonly endpointsByNode = new Map<string, Set<string>>();
  /** "name/PROTOCOL" → endpoints declaring that named port. */
  private readonly namedPortProviders = new Map<string, Set<string>>();
  /** Address → endpoints claiming it (more than one while an address is reused before the old pod is gone). */
  private readonly claimants = new Map<string, Set<string>>();
  /** The addresses more than one endpoint claims (few: a pod's address reused before the old pod is gone). */
  private readonly shared = new Set<string>();

  private changes = noChanges();

  // --- federation state (empty unless `federation` is set) ---
  /** The federation's name; undefined: federation off, and the model is exactly as without it. */
  readonly federationName: string | undefined;
  /** Local ClusterNetworkPolicies as read, by name (their translation competes with imports). */
  private readonly localCnps = new Map<string, ClusterNetworkPolicyObject>();
  /** Name → origin → imported policy. */
  private readonly imports = new Map<string, Map<string, ClusterNetworkPolicyObject>>();
  /** "<cluster>/<namespace>" → the remote namespace's labels (CLUSTER_LABEL set). */
  private readonly remoteNamespaces = new Map<string, Labels>();
  /** Remote key → the endpoint as received (node cleared), admitted or not. */
  private readonly remoteReceived = new Map<string, Endpoint>();
  /** Remote key → the endpoint as a group member (namespace labels applied); admitted only. */
  private readonly remoteMembers = new Map<string, Endpoint>();
  /** Remote key → why it is not a member (address overlaps). */
  private readonly remoteRejected = new Map<string, string[]>();
  /** "<cluster>/<namespace>" → remote keys. */
  private readonly remoteByNamespace = new Map<string, Set<string>>();
  /** Address → remote keys claiming it. */
  private readonly remoteClaims = new Map<string, Set<string>>();
  /** Federation-scoped groups (the peers of federated policies). */
  private readonly federatedGroups = new Set<string>();
  private federationChanges = noFederationChanges();

  constructor(options: { cluster: string; federation?: { readonly name: string } }) {
    this.cluster = options.cluster;
    this.federationName = options.federation?.name;
  }

  // --- events ------------------------------------------------------------------

  apply(event: ModelEvent): void {
    switch (event.type) {
      case 'remote-namespace':
      case 'remote-namespace-delete':
      case 'remote-endpoint':
      case 'remote-endpoint-delete':
      case 'imported-policy':
      case 'imported-policy-delete':
        this.applyFederated(event);
        return;
    }
    if (event.type === 'upsert') {
      const o = event.object;
      if (o.kind === 'Namespace') {
        this.rejected.delete(objectKey('Namespace', '', o.name));
        this.setNamespace(o.name, o);
      } else if (o.kind === 'Node') {
        this.rejected.delete(objectKey('Node', '', o.name));
        this.setNode(o.name, o);
      } else if (o.kind === 'Pod') {
        this.rejected.delete(objectKey('Pod', o.namespace, o.name));
        this.pods.set(`${o.namespace}/${o.name}`, o);
        this.setEndpoint(`${o.namespace}/${o.name}`, this.endpointOf(o));
      } else if (o.kind === 'ClusterNetworkPolicy') {
        this.rejected.delete(objectKey('ClusterNetworkPolicy', '', o.name));
        this.localCnps.set(o.name, o);
        if (this.federationName !== undefined) this.federationChanges.policies.add(o.name);
        this.decideClusterPolicy(o.name);
      } else {
        this.rejected.delete(objectKey('NetworkPolicy', o.namespace, o.name));
        this.policyLabelsByKey.set(`${o.namespace}/${o.name}`, o.labels);
        this.setPolicy(`${o.namespace}/${o.name}`, translateNetworkPolicy(o, this.cluster));
      }
      return;
    }
    const key = objectKey(
      event.kind,
      isClusterScoped(event.kind) ? '' : event.namespace,
      event.name,
    );
    if (event.type === 'invalid') {
      // Never fail open: an invalid update withdraws nothing.
      this.rejected.set(key, event.issues);
      return;
    }
    this.rejected.delete(key);
    if (event.kind === 'Namespace') this.setNamespace(event.name, undefined);
    else if (event.kind === 'Node') this.setNode(event.name, undefined);
    else if (event.kind === 'Pod') {
      this.pods.delete(`${event.namespace}/${event.name}`);
      this.setEndpoint(`${event.namespace}/${event.name}`, undefined);
    } else if (event.kind === 'ClusterNetworkPolicy') {
      this.localCnps.delete(event.name);
      if (this.federationName !== undefined) this.federationChanges.policies.add(event.name);
      this.decideClusterPolicy(event.name);
    } else {
      this.policyLabelsByKey.delete(`${event.namespace}/${event.name}`);
      this.setPolicy(`${event.namespace}/${event.name}`, undefined);
    }
  }

  /** Returns what changed since the last call, and starts a new record. */
  drainChanges(): ModelChanges {
    const c = this.changes;
    this.changes = noChanges();
    return c;
  }

  // --- reads -------------------------------------------------------------------

  /** Objects rejected by validation, with every issue found. */
  rejections(): ReadonlyMap<string, readonly Issue[]> {
    return this.rejected;
  }

  /** Namespace labels, including for namespaces known only from their pods. */
  namespaceLabels(name: string): Labels {
    const known = this.namespaces.get(name)?.labels;
    if (known !== undefined) return known;
    return this.federationName === undefined
      ? { [NAMESPACE_NAME_LABEL]: name }
      : { [NAMESPACE_NAME_LABEL]: name, [CLUSTER_LABEL]: this.cluster };
  }

  /** The labels of a remote member's namespace (CLUSTER_LABEL naming the member). */
  remoteNamespaceLabels(cluster: string, name: string): Labels {
    return (
      this.remoteNamespaces.get(`${cluster}/${name}`) ?? {
        [NAMESPACE_NAME_LABEL]: name,
        [CLUSTER_LABEL]: cluster,
      }
    );
  }

  /** Local namespaces as read (labels include CLUSTER_LABEL with federation on), sorted by name. */
  localNamespaces(): Array<{ name: string; labels: Labels }> {
    return [...this.namespaces.values()]
      .map((n) => ({ name: n.name, labels: n.labels }))
      .sort((a, b) => cmp(a.name, b.name));
  }

  /** Local namespace as read, if any. */
  localNamespace(name: string): NamespaceObject | undefined {
    return this.namespaces.get(name);
  }

  /** Local ClusterNetworkPolicy as read (valid version), if any. */
  localClusterPolicy(name: string): ClusterNetworkPolicyObject | undefined {
    return this.localCnps.get(name);
  }

  /** The local federated ClusterNetworkPolicies (what this member exports), sorted by name. */
  federatedPolicies(): ClusterNetworkPolicyObject[] {
    return [...this.localCnps.values()]
      .filter((p) => p.federated)
      .sort((a, b) => cmp(a.name, b.name));
  }

  /** A remote pod as a group member, or undefined (unknown, or rejected). */
  remoteEndpoint(key: string): Endpoint | undefined {
    return this.remoteMembers.get(key);
  }

  /** Remote pods that are group members, sorted by key. */
  remoteEndpoints(): Endpoint[] {
    return [...this.remoteMembers.entries()].sort(([a], [b]) => cmp(a, b)).map(([, e]) => e);
  }

  /** Returns the local changes the exporter has not sent yet, and starts a new record. */
  drainFederationChanges(): FederationChanges {
    const c = this.federationChanges;
    this.federationChanges = noFederationChanges();
    return c;
  }

  /** The federation as this member sees it (status); undefined with federation off. */
  federation(): FederationView | undefined {
    if (this.federationName === undefined) return undefined;
    const clusters = new Map<
      string,
      { cluster: string; namespaces: number; endpoints: number; admitted: number }
    >();
    const entry = (cluster: string) => {
      let c = clusters.get(cluster);
      if (c === undefined) {
        c = { cluster, namespaces: 0, endpoints: 0, admitted: 0 };
        clusters.set(cluster, c);
      }
      return c;
    };
    for (const key of this.remoteNamespaces.keys())
      entry(key.slice(0, key.indexOf('/'))).namespaces++;
    for (const [key, e] of this.remoteReceived) {
      const c = entry(e.cluster);
      c.endpoints++;
      if (this.remoteMembers.has(key)) c.admitted++;
    }
    for (const origins of this.imports.values()) for (const o of origins.keys()) entry(o);
    const imports: Array<FederationView['imports'][number]> = [];
    for (const [name, origins] of this.imports) {
      const local = this.localCnps.get(name);
      const winner = lowest([...origins.keys()]);
      for (const [origin, object] of origins) {
        const state: ImportState =
          local !== undefined
            ? 'shadowed-by-local'
            : origin === winner
              ? 'in-force'
              : `lost-to:${winner}`;
        imports.push({
          origin,
          name,
          tier: object.tier,
          priority: object.priority,
          state,
          ...(state === 'in-force' ? { policy: clusterPolicyIdOf(this.cluster, name) } : {}),
        });
      }
    }
    imports.sort((a, b) => cmp(`${a.name}\u0000${a.origin}`, `${b.name}\u0000${b.origin}`));
    return {
      name: this.federationName,
      exported: {
        namespaces: this.namespaces.size,
        endpoints: this.endpointsByKey.size,
        policies: this.federatedPolicies().length,
      },
      clusters: [...clusters.values()].sort((a, b) => cmp(a.cluster, b.cluster)),
      rejections: [...this.remoteRejected]
        .sort(([a], [b]) => cmp(a, b))
        .map(([key, problems]) => ({ object: `Pod ${key}`, problems })),
      imports,
    };
  }

  /** A Pod as read (every pod, also host-network ones, which are no endpoints). */
  pod(namespace: string, name: string): PodObject | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }

  /** A Node object as read (labels for cluster-scoped tiers, addresses). */
  node(name: string): NodeObject | undefined {
    return this.nodeObjects.get(name);
  }

  /** The addresses of a node, from its Node object; empty when it has none. */
  nodeAddresses(name: string): readonly string[] {
    return this.nodeObjects.get(name)?.addresses.map((a) => a.address) ?? NO_ADDRESSES;
  }

  endpoint(key: string): Endpoint | undefined {
    return this.endpointsByKey.get(key);
  }

  get endpointCount(): number {
    return this.endpointsByKey.size;
  }

  get policyCount(): number {
    return this.policies.size;
  }

  endpoints(): Endpoint[] {
    return [...this.endpointsByKey.values()].sort(byKey);
  }

  endpointsOnNode(node: string): ReadonlySet<string> {
    return this.endpointsByNode.get(node) ?? EMPTY;
  }

  nodes(): string[] {
    return [...this.endpointsByNode.keys()];
  }

  /** Groups an endpoint is a member of. */
  groupsOf(endpoint: string): ReadonlySet<string> {
    return this.memberships.get(endpoint) ?? EMPTY;
  }

  /** Policies whose applied-to group this is. */
  policiesAppliedTo(group: string): ReadonlySet<string> {
    return this.appliedBy.get(group) ?? EMPTY;
  }

  policy(id: string): FirewallPolicy | undefined {
    return this.policies.get(id);
  }

  /** The labels of the object a policy was translated from (metadata.labels); empty for an unknown id. */
  policyLabels(id: string): Labels {
    const p = this.policies.get(id);
    if (p === undefined) return NO_LABELS;
    const key =
      p.kind === 'ClusterNetworkPolicy' ? clusterPolicyKey(p.name) : `${p.namespace}/${p.name}`;
    return this.policyLabelsByKey.get(key) ?? NO_LABELS;
  }

  policyIds(): string[] {
    return [...this.policies.keys()].sort();
  }

  serviceGroup(id: string): ServiceGroup | undefined {
    return this.services.get(id)?.sg;
  }

  /** Member keys of a selector group (empty for ipBlock groups and unknown ids). */
  groupMembers(id: string): ReadonlyMap<string, Endpoint> {
    return this.groups.get(id)?.members ?? EMPTY_MAP;
  }

  addressGroup(id: string): AddressGroup | undefined {
    const g = this.groups.get(id);
    if (g === undefined) return undefined;
    if (g.view === undefined) {
      g.view =
        g.spec.kind === 'ipBlock'
          ? g.spec
          : g.spec.kind === 'nodes'
            ? {
                id: g.spec.id,
                kind: 'nodes',
                nodeSelector: g.spec.nodeSelector,
                members: [...g.nodes]
                  .sort(([a], [b]) => cmp(a, b))
                  .map(([node, ips]) => ({ endpoint: node, ips, ports: [] })),
              }
            : {
                id: g.spec.id,
                kind: 'selector',
                selector: g.spec.selector,
                // By member key: a remote pod's names its cluster ("c/ns/pod"), so
                // it never shares a name with a local pod of the same namespace/name.
                members: [...g.members]
                  .sort(([a], [b]) => cmp(a, b))
                  .map(([key, e]) => ({ endpoint: key, ips: e.ips, ports: e.ports })),
              };
    }
    return g.view;
  }

  /** Endpoints declaring a named port ("name/PROTOCOL"). */
  providersOf(namedPort: string): ReadonlySet<string> {
    return this.namedPortProviders.get(namedPort) ?? EMPTY;
  }

  /** Addresses more than one endpoint claims, with the endpoints (sorted). */
  duplicateAddresses(): Array<{ ip: string; endpoints: string[] }> {
    return [...this.claimants]
      .filter(([, keys]) => keys.size > 1)
      .map(([ip, keys]) => ({ ip, endpoints: [...keys].sort(cmp) }));
  }

  /** Whether more than one endpoint claims the address. */
  sharedAddress(ip: string): boolean {
    return this.shared.has(ip);
  }

  /** Every address more than one endpoint claims. */
  sharedAddresses(): ReadonlySet<string> {
    return this.shared;
  }

  /** The endpoints claiming an address. */
  claimantsOf(ip: string): ReadonlySet<string> {
    return this.claimants.get(ip) ?? EMPTY;
  }

  /**
   * The endpoint an address belongs to: of the endpoints claiming it, the
   * last by "namespace/name" (the tie-break RuleTables.byIp and compile.ts's
   * named ports apply to the whole cluster).
   */
  addressOwner(ip: string): string | undefined {
    const keys = this.claimants.get(ip);
    if (keys === undefined) return undefined;
    let last: string | undefined;
    for (const k of keys) if (last === undefined || cmp(k, last) > 0) last = k;
    return last;
  }

  /**
   * The addresses of an endpoint that it owns (see addressOwner), in its
   * order: what a node's span says of the endpoint, so that an agent, which
   * sees only part of the cluster, resolves every address as the whole
   * cluster does. The endpoint's own list when it owns them all.
   */
  ownedAddresses(e: Endpoint): readonly string[] {
    const key = endpointKey(e);
    if (e.ips.every((ip) => this.claimants.get(ip)?.size === 1)) return e.ips;
    return e.ips.filter((ip) => this.addressOwner(ip) === key);
  }

  /** Every policy, group and endpoint as one snapshot (offline analysis, explain). */
  snapshot(): PolicySnapshot {
    const policies = [...this.policies.values()].sort((a, b) => cmp(a.id, b.id));
    return {
      cluster: this.cluster,
      applicationPolicySet: this.applicationPolicySet(policies.map((p) => p.id)),
      policies,
      addressGroups: [...this.groups.keys()].sort().map((id) => this.addressGroup(id)!),
      serviceGroups: [...this.services.values()].map((s) => s.sg).sort((a, b) => cmp(a.id, b.id)),
      endpoints: this.endpoints(),
    };
  }

  /**
   * The application policy set of these policies: the Admin tier (when it
   * has policies), the NetworkPolicy tier, the Baseline tier (when it has
   * policies). Cluster tiers are ordered by priority, then name (see
   * clusterPolicyOrder); the NetworkPolicy tier by id. Ids the model does
   * not hold go to the NetworkPolicy tier.
   */
  applicationPolicySet(policyIds: readonly string[]): PolicySnapshot['applicationPolicySet'] {
    const admin: FirewallPolicy[] = [];
    const baseline: FirewallPolicy[] = [];
    const namespace: string[] = [];
    for (const id of policyIds) {
      const p = this.policies.get(id);
      const tier = p === undefined ? 'namespace' : tierOf(p);
      if (tier === 'admin') admin.push(p!);
      else if (tier === 'baseline') baseline.push(p!);
      else namespace.push(id);
    }
    const ids = (list: FirewallPolicy[]) => list.sort(clusterPolicyOrder).map((p) => p.id);
    return {
      id: `${this.cluster}/aps`,
      cluster: this.cluster,
      tiers: [
        ...(admin.length > 0 ? [{ tier: 'admin' as const, policies: ids(admin) }] : []),
        { tier: 'namespace', policies: namespace.sort() },
        ...(baseline.length > 0 ? [{ tier: 'baseline' as const, policies: ids(baseline) }] : []),
      ],
    };
  }

  /**
   * Pairs of ClusterNetworkPolicies of one tier at one priority whose
   * subjects share a pod now and that have rules for a common direction:
   * both could match one connection, and upstream leaves the outcome to the
   * implementation. Weir evaluates them by name (clusterPolicyOrder); status
   * warns about each pair.
   */
  priorityOverlaps(): Array<{ tier: string; priority: number; policies: [string, string] }> {
    const byLevel = new Map<string, FirewallPolicy[]>();
    for (const p of this.policies.values()) {
      if (p.tier === undefined) continue;
      addToList(byLevel, `${p.tier}\u0000${p.priority ?? 0}`, p);
    }
    const out: Array<{ tier: string; priority: number; policies: [string, string] }> = [];
    for (const list of byLevel.values()) {
      if (list.length < 2) continue;
      list.sort(clusterPolicyOrder);
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const a = list[i]!;
          const b = list[j]!;
          const direction =
            (a.ingressIsolation && b.ingressIsolation) || (a.egressIsolation && b.egressIsolation);
          if (!direction || !this.shareMember(a.appliedTo, b.appliedTo)) continue;
          out.push({ tier: a.tier!, priority: a.priority ?? 0, policies: [a.name, b.name] });
        }
      }
    }
    return out.sort((x, y) =>
      cmp(`${x.tier}/${x.policies.join('/')}`, `${y.tier}/${y.policies.join('/')}`),
    );
  }

  private shareMember(a: string, b: string): boolean {
    if (a === b) return this.groupMembers(a).size > 0;
    const ma = this.groupMembers(a);
    const mb = this.groupMembers(b);
    const [small, large] = ma.size <= mb.size ? [ma, mb] : [mb, ma];
    for (const k of small.keys()) if (large.has(k)) return true;
    return false;
  }

  // --- namespaces and endpoints ------------------------------------------------

  private setNamespace(name: string, ns: NamespaceObject | undefined): void {
    const before = this.namespaceLabels(name);
    const had = this.namespaces.has(name);
    if (ns === undefined) this.namespaces.delete(name);
    else if (this.federationName === undefined) this.namespaces.set(name, ns);
    // The model names the cluster: no object can say it is another's.
    else
      this.namespaces.set(name, { ...ns, labels: { ...ns.labels, [CLUSTER_LABEL]: this.cluster } });
    if (
      this.federationName !== undefined &&
      (had !== this.namespaces.has(name) || !sameLabels(before, this.namespaceLabels(name)))
    )
      this.federationChanges.namespaces.add(name);
    if (sameLabels(before, this.namespaceLabels(name))) return;
    // Every endpoint of the namespace carries its labels: revisit them.
    for (const key of [...(this.endpointsByNamespace.get(name) ?? [])]) {
      const pod = this.pods.get(key);
      if (pod !== undefined) this.setEndpoint(key, this.endpointOf(pod));
    }
  }

  private setNode(name: string, node: NodeObject | undefined): void {
    const before = this.nodeAddresses(name);
    if (node === undefined) this.nodeObjects.delete(name);
    else this.nodeObjects.set(name, node);
    // Node groups (ClusterNetworkPolicy `nodes` peers) follow labels and addresses.
    for (const id of this.nodeGroups) {
      const g = this.groups.get(id)!;
      if (g.spec.kind !== 'nodes') continue;
      const was = g.nodes.get(name);
      const now =
        node !== undefined && matchesLabels(node.labels, g.spec.nodeSelector)
          ? this.nodeAddresses(name)
          : undefined;
      if (was === undefined && now === undefined) continue;
      if (was !== undefined && now !== undefined && sameList(was, now)) continue;
      if (now === undefined) g.nodes.delete(name);
      else g.nodes.set(name, now);
      this.groupChanged(id);
    }
    if (sameList(before, this.nodeAddresses(name))) return;
    // Every endpoint on the node carries its addresses: revisit them.
    for (const key of [...(this.endpointsByNode.get(name) ?? [])]) {
      const pod = this.pods.get(key);
      if (pod !== undefined) this.setEndpoint(key, this.endpointOf(pod));
    }
  }

  private endpointOf(p: PodObject): Endpoint | undefined {
    if (p.hostNetwork || p.ips.length === 0 || FINISHED_PHASES.has(p.phase)) return undefined;
    return {
      cluster: this.cluster,
      namespace: p.namespace,
      name: p.name,
      uid: p.uid,
      node: p.node,
      ips: p.ips,
      labels: p.labels,
      namespaceLabels: this.namespaceLabels(p.namespace),
      ports: p.ports,
      // An unscheduled pod has no node, whatever Node object is named "".
      nodeAddresses: p.node === '' ? NO_ADDRESSES : this.nodeAddresses(p.node),
    };
  }

  private setEndpoint(key: string, next: Endpoint | undefined): void {
    const prev = this.endpointsByKey.get(key);
    if (prev === undefined && next === undefined) return;
    if (prev !== undefined && next !== undefined && sameEndpoint(prev, next)) return;
    if (prev !== undefined) {
      this.unindexEndpoint(key, prev);
      this.changes.nodes.add(prev.node);
    }
    if (next === undefined) {
      this.endpointsByKey.delete(key);
      this.changes.removedEndpoints.add(key);
      this.changes.endpoints.delete(key);
    } else {
      this.endpointsByKey.set(key, next);
      this.indexEndpoint(key, next);
      this.changes.endpoints.add(key);
      this.changes.removedEndpoints.delete(key);
      this.changes.nodes.add(next.node);
    }
    this.updateMemberships(key, prev, next, false);
    // Who owns a shared address may have changed: the other claimants read differently in spans.
    for (const ip of new Set([...(prev?.ips ?? []), ...(next?.ips ?? [])])) {
      for (const other of this.claimants.get(ip) ?? EMPTY)
        if (other !== key) this.changes.endpoints.add(other);
    }
    if (this.federationName !== undefined) {
      this.federationChanges.endpoints.add(key);
      // A local pod taking (or releasing) an address decides the remote pods claiming it.
      if (this.remoteClaims.size > 0)
        for (const ip of new Set([...(prev?.ips ?? []), ...(next?.ips ?? [])]))
          for (const k of [...(this.remoteClaims.get(ip) ?? EMPTY)]) this.decideRemote(k);
    }
  }

  /** Re-decides the endpoint's membership in every group that could hold it. */
  private updateMemberships(
    key: string,
    prev: Endpoint | undefined,
    next: Endpoint | undefined,
    /** A remote pod: only federation-scoped groups may hold it. */
    remote: boolean,
  ): void {
    const old = this.memberships.get(key) ?? new Set<string>();
    const now = new Set<string>();
    if (next !== undefined) {
      for (const anchor of endpointAnchors(next)) {
        for (const id of this.anchorIndex.get(anchor) ?? EMPTY) {
          const g = this.groups.get(id)!;
          if (g.spec.kind !== 'selector' || (remote && g.spec.federation === undefined)) continue;
          if (matchesEndpoint(g.spec.selector, next)) now.add(id);
        }
      }
    }
    // What a group's members say of each (GroupMember): addresses and named ports.
    const ipsChanged = prev !== undefined && next !== undefined && !sameMemberContent(prev, next);
    for (const id of old) {
      if (!now.has(id)) {
        this.groups.get(id)?.members.delete(key);
        this.groupChanged(id);
      }
    }
    for (const id of now) {
      this.groups.get(id)!.members.set(key, next!);
      if (!old.has(id) || ipsChanged) this.groupChanged(id);
    }
    if (now.size === 0) this.memberships.delete(key);
    else this.memberships.set(key, now);
  }

  private indexEndpoint(key: string, e: Endpoint): void {
    addTo(this.endpointsByNamespace, e.namespace, key);
    addTo(this.endpointsByNode, e.node, key);
    for (const [k, v] of Object.entries(e.labels)) {
      addTo(this.endpointsByLabel, `${k}\u0000${v}`, key);
      addTo(this.endpointsByLabel, `${k}\u0000`, key);
    }
    for (const p of e.ports) addTo(this.namedPortProviders, `${p.name}/${p.protocol}`, key);
    for (const ip of e.ips) {
      addTo(this.claimants, ip, key);
      if (this.claimants.get(ip)!.size > 1) this.shared.add(ip);
    }
  }

  private unindexEndpoint(key: string, e: Endpoint): void {
    removeFrom(this.endpointsByNamespace, e.namespace, key);
    removeFrom(this.endpointsByNode, e.node, key);
    for (const [k, v] of Object.entries(e.labels)) {
      removeFrom(this.endpointsByLabel, `${k}\u0000${v}`, key);
      removeFrom(this.endpointsByLabel, `${k}\u0000`, key);
    }
    for (const p of e.ports) removeFrom(this.namedPortProviders, `${p.name}/${p.protocol}`, key);
    for (const ip of e.ips) {
      removeFrom(this.claimants, ip, key);
      if ((this.claimants.get(ip)?.size ?? 0) < 2) this.shared.delete(ip);
    }
  }

  // --- federation ------------------------------------------------------------

  private applyFederated(event: FederationModelEvent): void {
    // Federation off: remote objects do not exist for this model.
    if (this.federationName === undefined) return;
    switch (event.type) {
      case 'remote-namespace': {
        if (event.cluster === this.cluster) return;
        const key = `${event.cluster}/${event.name}`;
        const labels: Labels = {
          ...event.labels,
          [NAMESPACE_NAME_LABEL]: event.name,
          [CLUSTER_LABEL]: event.cluster,
        };
        const before = this.remoteNamespaces.get(key);
        if (before !== undefined && sameLabels(before, labels)) return;
        this.remoteNamespaces.set(key, labels);
        for (const k of [...(this.remoteByNamespace.get(key) ?? EMPTY)]) this.decideRemote(k);
        return;
      }
      case 'remote-namespace-delete': {
        const key = `${event.cluster}/${event.name}`;
        if (!this.remoteNamespaces.delete(key)) return;
        for (const k of [...(this.remoteByNamespace.get(key) ?? EMPTY)]) this.decideRemote(k);
        return;
      }
      case 'remote-endpoint': {
        const e = event.endpoint;
        if (e.cluster === this.cluster) return;
        this.setRemoteEndpoint(remoteEndpointKey(e.cluster, e.namespace, e.name), {
          ...e,
          node: '',
          nodeAddresses: NO_ADDRESSES,
        });
        return;
      }
      case 'remote-endpoint-delete':
        this.setRemoteEndpoint(
          remoteEndpointKey(event.cluster, event.namespace, event.name),
          undefined,
        );
        return;
      case 'imported-policy': {
        if (event.origin === this.cluster) return;
        const o = event.object;
        let origins = this.imports.get(o.name);
        if (origins === undefined) {
          origins = new Map();
          this.imports.set(o.name, origins);
        }
        // What the importer hands over is federated by construction.
        origins.set(event.origin, o.federated ? o : { ...o, federated: true });
        this.decideClusterPolicy(o.name);
        return;
      }
      case 'imported-policy-delete': {
        const origins = this.imports.get(event.name);
        if (origins === undefined || !origins.delete(event.origin)) return;
        if (origins.size === 0) this.imports.delete(event.name);
        this.decideClusterPolicy(event.name);
        return;
      }
    }
  }

  /**
   * Puts in force the ClusterNetworkPolicy of a name: the local one, or
   * else the import of the lowest origin cluster name.
   */
  private decideClusterPolicy(name: string): void {
    const local = this.localCnps.get(name);
    const origins = this.imports.get(name);
    const chosen =
      local ?? (origins === undefined ? undefined : origins.get(lowest([...origins.keys()])!));
    if (chosen === undefined) this.policyLabelsByKey.delete(clusterPolicyKey(name));
    else this.policyLabelsByKey.set(clusterPolicyKey(name), chosen.labels);
    this.setPolicy(
      clusterPolicyKey(name),
      chosen && translateClusterNetworkPolicy(chosen, this.cluster, this.federationName),
    );
  }

  private setRemoteEndpoint(key: string, next: Endpoint | undefined): void {
    const prev = this.remoteReceived.get(key);
    if (prev === undefined && next === undefined) return;
    if (prev !== undefined) {
      removeFrom(this.remoteByNamespace, `${prev.cluster}/${prev.namespace}`, key);
      for (const ip of prev.ips) removeFrom(this.remoteClaims, ip, key);
    }
    if (next === undefined) this.remoteReceived.delete(key);
    else {
      this.remoteReceived.set(key, next);
      addTo(this.remoteByNamespace, `${next.cluster}/${next.namespace}`, key);
      for (const ip of next.ips) addTo(this.remoteClaims, ip, key);
    }
    this.decideRemote(key);
    // The other remote claimants of its addresses (before and after) may be admitted or refused now.
    for (const ip of new Set([...(prev?.ips ?? []), ...(next?.ips ?? [])]))
      for (const k of [...(this.remoteClaims.get(ip) ?? EMPTY)])
        if (k !== key) this.decideRemote(k);
  }

  /**
   * Whether a remote pod is a group member now: it is unless one of its
   * addresses is claimed by a local pod or by another remote pod (then no
   * remote claimant gets it: which cluster's pod it is cannot be known).
   */
  private decideRemote(key: string): void {
    const e = this.remoteReceived.get(key);
    let next: Endpoint | undefined;
    if (e !== undefined) {
      const problems: string[] = [];
      for (const ip of e.ips) {
        for (const k of this.claimants.get(ip) ?? EMPTY)
          problems.push(`address ${ip} is also claimed by local pod ${k}`);
        for (const k of this.remoteClaims.get(ip) ?? EMPTY)
          if (k !== key) problems.push(`address ${ip} is also claimed by ${k}`);
      }
      if (problems.length > 0) this.remoteRejected.set(key, problems);
      else {
        this.remoteRejected.delete(key);
        next = { ...e, namespaceLabels: this.remoteNamespaceLabels(e.cluster, e.namespace) };
      }
    } else this.remoteRejected.delete(key);
    const prev = this.remoteMembers.get(key);
    if (prev === undefined && next === undefined) return;
    if (prev !== undefined && next !== undefined && sameEndpoint(prev, next)) return;
    if (next === undefined) this.remoteMembers.delete(key);
    else this.remoteMembers.set(key, next);
    this.updateMemberships(key, prev, next, true);
  }

  // --- policies and groups -----------------------------------------------------

  private setPolicy(key: string, next: Translation | undefined): void {
    const prev = this.policyObjects.get(key);
    if (prev === undefined && next === undefined) return;
    if (prev !== undefined && next !== undefined && JSON.stringify(prev) === JSON.stringify(next))
      return;
    // Reference the new groups before dropping the old, so that shared groups survive.
    if (next !== undefined) {
      const id = next.policy.id;
      this.policyObjects.set(key, next);
      this.policies.set(id, next.policy);
      this.changes.policies.add(id);
      this.changes.removedPolicies.delete(id);
      for (const g of next.addressGroups) this.refGroup(g, id);
      for (const sg of next.serviceGroups) this.refService(sg, id);
      addTo(this.appliedBy, next.policy.appliedTo, id);
    }
    if (prev !== undefined) {
      const id = prev.policy.id;
      const keep = (gid: string) => next?.addressGroups.some((g) => g.id === gid);
      if (!(next !== undefined && next.policy.appliedTo === prev.policy.appliedTo))
        removeFrom(this.appliedBy, prev.policy.appliedTo, id);
      for (const g of prev.addressGroups) if (!keep(g.id)) this.unrefGroup(g.id, id);
      for (const sg of prev.serviceGroups)
        if (!next?.serviceGroups.some((s) => s.id === sg.id)) this.unrefService(sg.id, id);
      if (next === undefined) {
        this.policyObjects.delete(key);
        this.policies.delete(id);
        this.changes.removedPolicies.add(id);
        this.changes.policies.delete(id);
      }
    }
  }

  private refGroup(spec: GroupSpec, policy: string): void {
    const existing = this.groups.get(spec.id);
    if (existing !== undefined) {
      existing.refs.add(policy);
      return;
    }
    const anchors = spec.kind === 'selector' ? this.anchorsOf(spec.selector) : [];
    const g: GroupState = {
      spec,
      refs: new Set([policy]),
      members: new Map(),
      nodes: new Map(),
      anchors,
      view: undefined,
    };
    this.groups.set(spec.id, g);
    for (const a of anchors) addTo(this.anchorIndex, a, spec.id);
    if (spec.kind === 'nodes') {
      this.nodeGroups.add(spec.id);
      for (const [name, node] of this.nodeObjects)
        if (matchesLabels(node.labels, spec.nodeSelector))
          g.nodes.set(name, this.nodeAddresses(name));
    }
    if (spec.kind === 'selector') {
      for (const key of this.candidates(spec.selector)) {
        const e = this.endpointsByKey.get(key)!;
        if (!matchesEndpoint(spec.selector, e)) continue;
        g.members.set(key, e);
        addTo(this.memberships, key, spec.id);
        this.changes.nodes.add(e.node);
      }
      if (spec.federation !== undefined) {
        this.federatedGroups.add(spec.id);
        // Remote pods have no index of their own: a new federated peer group
        // (one per distinct peer selector of federated policies) scans them once.
        for (const [key, e] of this.remoteMembers) {
          if (!matchesEndpoint(spec.selector, e)) continue;
          g.members.set(key, e);
          addTo(this.memberships, key, spec.id);
        }
      }
    }
    this.groupChanged(spec.id);
    this.changes.removedGroups.delete(spec.id);
  }

  private unrefGroup(id: string, policy: string): void {
    const g = this.groups.get(id);
    if (g === undefined)
      throw new InternalError(`policy ${policy} released group ${id}, which does not exist`);
    g.refs.delete(policy);
    if (g.refs.size > 0) return;
    this.groups.delete(id);
    this.nodeGroups.delete(id);
    this.federatedGroups.delete(id);
    for (const a of g.anchors) removeFrom(this.anchorIndex, a, id);
    for (const [key, e] of g.members) {
      removeFrom(this.memberships, key, id);
      if (e.cluster === this.cluster) this.changes.nodes.add(e.node);
    }
    this.changes.groups.delete(id);
    this.changes.removedGroups.add(id);
  }

  private refService(sg: ServiceGroup, policy: string): void {
    const s = this.services.get(sg.id);
    if (s !== undefined) s.refs.add(policy);
    else {
      this.services.set(sg.id, { sg, refs: new Set([policy]) });
      this.changes.serviceGroups.add(sg.id);
      this.changes.removedServiceGroups.delete(sg.id);
    }
  }

  private unrefService(id: string, policy: string): void {
    const s = this.services.get(id);
    if (s === undefined) return;
    s.refs.delete(policy);
    if (s.refs.size > 0) return;
    this.services.delete(id);
    this.changes.serviceGroups.delete(id);
    this.changes.removedServiceGroups.add(id);
  }

  private groupChanged(id: string): void {
    const g = this.groups.get(id);
    if (g !== undefined) g.view = undefined;
    this.changes.groups.add(id);
  }

  /**
   * Index keys of which an endpoint must have at least one to match: the
   * namespace a selector names, or the values of one In/Exists requirement on
   * pod labels, or failing that on namespace labels; "*" when none exists.
   */
  private anchorsOf(s: EndpointSelector): string[] {
    if ('name' in s.namespace) return [`ns:${s.namespace.name}`];
    return (
      requirementAnchors(s.pods, 'p') ?? requirementAnchors(s.namespace.selector, 'n') ?? ['*']
    );
  }

  /** Endpoint keys that may match a selector (a superset, from the indexes). */
  private candidates(s: EndpointSelector): Iterable<string> {
    if ('name' in s.namespace) return this.endpointsByNamespace.get(s.namespace.name) ?? EMPTY;
    const byLabel = requirementAnchors(s.pods, 'p');
    if (byLabel !== undefined)
      return union(byLabel.map((a) => this.endpointsByLabel.get(a.slice(2)) ?? EMPTY));
    const nsSel = s.namespace.selector;
    const namespaces = new Set([...this.namespaces.keys(), ...this.endpointsByNamespace.keys()]);
    return union(
      [...namespaces]
        .filter((ns) => matchesLabels(this.namespaceLabels(ns), nsSel))
        .map((ns) => this.endpointsByNamespace.get(ns) ?? EMPTY),
    );
  }
}

const EMPTY: ReadonlySet<string> = new Set();
const NO_ADDRESSES: readonly string[] = Object.freeze([]);
const NO_LABELS: Labels = Object.freeze({});
const EMPTY_MAP: ReadonlyMap<string, Endpoint> = new Map();

/** "p:key\0value" / "p:key\0" anchors for one requirement of the selector (prefix p: pods, n: namespaces). */
function requirementAnchors(sel: LabelSelector, prefix: 'p' | 'n'): string[] | undefined {
  for (const r of sel.requirements) {
    if (r.operator === 'In') return r.values.map((v) => `${prefix}:${r.key}\u0000${v}`);
    if (r.operator === 'Exists') return [`${prefix}:${r.key}\u0000`];
  }
  return undefined;
}

function endpointAnchors(e: Endpoint): string[] {
  const out = [`ns:${e.namespace}`, '*'];
  for (const [k, v] of Object.entries(e.labels)) out.push(`p:${k}\u0000${v}`, `p:${k}\u0000`);
  for (const [k, v] of Object.entries(e.namespaceLabels))
    out.push(`n:${k}\u0000${v}`, `n:${k}\u0000`);
  return out;
}

export function matchesEndpoint(s: EndpointSelector, e: Endpoint): boolean {
  const nsOk =
    'name' in s.namespace
      ? e.namespace === s.namespace.name
      : matchesLabels(e.namespaceLabels, s.namespace.selector);
  return nsOk && matchesLabels(e.labels, s.pods);
}

function union(sets: Iterable<ReadonlySet<string>>): Set<string> {
  const out = new Set<string>();
  for (const s of sets) for (const x of s) out.add(x);
  return out;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  return (
    ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k])
  );
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return (
    a.uid === b.uid &&
    a.node === b.node &&
    sameList(a.ips, b.ips) &&
    sameLabels(a.labels, b.labels) &&
    sameLabels(a.namespaceLabels, b.namespaceLabels) &&
    sameList(a.nodeAddresses, b.nodeAddresses) &&
    JSON.stringify(a.ports) === JSON.stringify(b.ports)
  );
}

function byKey(a: Endpoint, b: Endpoint): number {
  return cmp(endpointKey(a), endpointKey(b));
}

/** The model's key of a ClusterNetworkPolicy (NetworkPolicies are keyed "namespace/name"). */
function clusterPolicyKey(name: string): string {
  return `ClusterNetworkPolicy ${name}`;
}

/** The id a ClusterNetworkPolicy of this name has here (as translation gives it). */
function clusterPolicyIdOf(cluster: string, name: string): string {
  return `${cluster}/cnp/${name}`;
}

/** The lowest cluster name (the winner among origins of one policy name). */
function lowest(names: readonly string[]): string | undefined {
  let out: string | undefined;
  for (const n of names) if (out === undefined || cmp(n, out) < 0) out = n;
  return out;
}

function addToList<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list === undefined) m.set(k, [v]);
  else list.push(v);
}

export function objectKey(kind: string, namespace: string, name: string): string {
  return namespace === '' ? `${kind} ${name}` : `${kind} ${namespace}/${name}`;
}

/**
 * Whether two endpoints (or group members) say the same to a group that
 * holds them: addresses and named ports, in order (by reference first:
 * unchanged lists are shared).
 */
export function sameMemberContent(
  a: { readonly ips: readonly string[]; readonly ports: readonly NamedPort[] },
  b: { readonly ips: readonly string[]; readonly ports: readonly NamedPort[] },
): boolean {
  return (
    (a.ips === b.ips || sameList(a.ips, b.ips)) &&
    (a.ports === b.ports || samePorts(a.ports, b.ports))
  );
}

function samePorts(a: readonly NamedPort[], b: readonly NamedPort[]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (p, i) => p.name === b[i]!.name && p.protocol === b[i]!.protocol && p.port === b[i]!.port,
    )
  );
}
