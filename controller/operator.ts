/**
 * The Operator service (weirctl): status, policies with where they are
 * enforced, and live explanations, read from the controller's model, span
 * store and distributor. Reads only: nothing here changes what agents get.
 *
 * What it says about agents comes from the distributor's proof: an agent is
 * in sync, and a policy applied on a node, only when the agent's reported
 * in-force hash agrees with the span computed for its node, and the agent is
 * connected now.
 *
 * Errors are thrown as WeirErrors; the server maps them to gRPC statuses
 * (shared/grpc/status.ts).
 */
import { weirVersion } from '../shared/version.js';
import { describeRejection, type StateFileRejection } from '../shared/state/checksummed-file.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import type {
  FederationStatusReply,
  ExplainReply,
  ExplainRequest__Output,
  ListPoliciesReply,
  ListPoliciesRequest__Output,
  PolicyEntry,
  StatusReply,
} from '../shared/generated/weir/v1/index.js';
import { compile } from '../shared/policy/compile.js';
import { matchesLabels, parseSelectorText } from '../shared/policy/selector.js';
import type { LabelSelector } from '../shared/policy/types.js';
import { checkProbeRequest, parseProbe, probe, resolveTarget } from '../shared/policy/probe.js';
import { FIELD_LIMITS, textIssue } from '../shared/limits.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import {
  addressGroupToWire,
  firewallPolicyToWire,
  serviceGroupToWire,
} from '../shared/wire/policy.js';
import type { Distributor } from './distribute/distributor.js';
import type { OperatorBackend } from './distribute/grpc-server.js';
import type { ClusterModel } from './model/cluster-model.js';
import type { FederationMember } from './federation/member.js';
import type { ClusterSource } from './sources/source.js';
import type { SpanStore } from './store/span-store.js';

export interface OperatorParts {
  readonly cluster: string;
  readonly source: ClusterSource;
  readonly model: ClusterModel;
  readonly store: SpanStore;
  readonly distributor: Distributor;
  /** Leadership as status reports it: "leader" under leader election, "standalone" otherwise. */
  readonly leadership?: () => string;
  /** State files found unusable at start-up and moved aside. */
  readonly stateRejections?: readonly StateFileRejection[];
  /** Running with --insecure: no TLS, no client authentication. */
  readonly insecure?: boolean;
  /** The federation membership (--federation). */
  readonly federation?: FederationMember;
}

export class OperatorService implements OperatorBackend {
  /** The whole cluster compiled, for Explain; rebuilt when the revision moves. */
  private tables: { revision: number; tables: RuleTables } | undefined;

  constructor(private readonly parts: OperatorParts) {}

  /**
   * The federation as this member sees it: itself first (what it exports
   * now), then every member it has entries of, with the age of its last
   * report; each federated policy with its state and agents on every member
   * that reported it; every rejection (invalid entries, address and pod
   * CIDR overlaps).
   */
  federationStatus(): FederationStatusReply {
    const member = this.parts.federation;
    if (member === undefined) return { enabled: false };
    const s = member.status();
    const counts = (c: { namespaces: number; endpoints: number; policies: number } | undefined) =>
      c === undefined ? undefined : { ...c };
    return {
      enabled: true,
      federation: s.federation,
      cluster: s.cluster,
      connected: s.link.connected,
      lastContactUnixMs: String(s.link.lastContactUnixMs),
      lastError: s.link.lastError,
      members: [
        {
          cluster: s.cluster,
          self: true,
          lastReportUnixMs: String(s.self.lastReportUnixMs),
          lastSeenUnixMs: String(s.link.lastContactUnixMs),
          stale: !s.link.connected,
          staleReason: s.link.connected ? '' : `not connected to the hub: ${s.link.lastError}`,
          exported: counts(s.self.exported),
          held: counts(s.self.written),
          unlisted: 0,
          podCidrs: [],
        },
        ...s.members.map((m) => ({
          cluster: m.cluster,
          self: false,
          lastReportUnixMs: String(m.lastReportUnixMs),
          lastSeenUnixMs: String(m.lastSeenUnixMs),
          stale: m.stale,
          staleReason: m.staleReason,
          exported: counts(m.exported),
          held: { namespaces: m.entries.ns, endpoints: m.entries.ep, policies: m.entries.cnp },
          unlisted: m.unlisted,
          podCidrs: [...m.podCidrs],
        })),
      ],
      policies: s.policies.map((p) => ({
        name: p.name,
        origin: p.origin,
        tier: p.tier,
        members: p.members.map((m) => ({
          cluster: m.cluster,
          state: m.state,
          agentsInSync: m.inSync,
          agentsTotal: m.total,
          revision: String(m.revision),
        })),
      })),
      rejections: s.rejections.map((r) => ({ object: r.object, problems: [...r.problems] })),
      pendingWrites: s.self.pending,
      exportError: s.self.lastError,
      nowUnixMs: String(Date.now()),
    };
  }

  status(): StatusReply {
    const { source, model, store, distributor } = this.parts;
    const s = source.state();
    return {
      cluster: this.parts.cluster,
      revision: String(store.revision),
      source: {
        kind: s.kind,
        location: s.location,
        synced: s.synced,
        lastError: s.lastError,
        leadership: this.parts.leadership?.() ?? 'standalone',
      },
      agents: distributor.views().map((v) => ({
        node: v.node,
        connected: v.connected,
        instance: v.instance,
        appliedRevision: String(v.appliedRevision),
        spanRevision: String(v.spanRevision),
        inSync: v.inSync,
        pending: v.pending,
        lastError: v.lastError,
        lastAckUnixMs: String(v.lastAckUnixMs),
        connectedSinceUnixMs: String(v.connectedSinceUnixMs),
        spanObjects: v.spanObjects,
        localEndpoints: v.localEndpoints,
        apiAddress: v.apiAddress,
        spanHash: v.spanHash,
        inForceHash: v.inForceHash,
        retryAttempts: v.retryAttempts,
        nextRetryUnixMs: String(v.nextRetryUnixMs),
      })),
      rejections: [...model.rejections()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([object, issues]) => ({
          object,
          problems: issues.map((i) => [i.field, i.message].filter(Boolean).join(': ')),
        }))
        .concat((s.problems ?? []).map((p) => ({ object: p.object, problems: [...p.problems] }))),
      policies: model.policyCount,
      endpoints: model.endpointCount,
      warnings: [
        ...(this.parts.insecure
          ? [
              'running with --insecure: no TLS and no client authentication; any process that reaches the controller may act as any node or operator',
            ]
          : []),
        ...(this.parts.stateRejections ?? []).map(
          (r) => `${describeRejection(r)}; started fresh at revision 0, agents resync by snapshot`,
        ),
        ...model
          .duplicateAddresses()
          .map(
            (d) =>
              `address ${d.ip} is claimed by ${d.endpoints.join(', ')}: policy treats it as ${d.endpoints[d.endpoints.length - 1]}`,
          ),
        ...model
          .priorityOverlaps()
          .map(
            (o) =>
              `ClusterNetworkPolicies ${o.policies[0]} and ${o.policies[1]} are both in the ${o.tier} tier at priority ${o.priority} and select common pods: ${o.policies[0]} is evaluated first (by name); give them distinct priorities`,
          ),
      ],
      pid: process.pid,
      insecure: this.parts.insecure === true,
      version: weirVersion(),
    };
  }

  listPolicies(req: ListPoliciesRequest__Output): ListPoliciesReply {
    const { model, store, distributor } = this.parts;
    // Evaluation order: the Admin tier, NetworkPolicies, the Baseline tier.
    const long = textIssue('ListPoliciesRequest', 'name', req.name, FIELD_LIMITS.policyName);
    if (long !== undefined) throw new ValidationError([long]);
    const selector = policySelector(req.labelSelector);
    let ids = model.applicationPolicySet(model.policyIds()).tiers.flatMap((t) => t.policies);
    if (selector !== undefined)
      ids = ids.filter((id) => matchesLabels(model.policyLabels(id), selector));
    if (req.name !== '') {
      const wanted = policyIdsNamed(this.parts.cluster, req.name);
      ids = ids.filter((id) => wanted.includes(id));
      if (ids.length === 0) {
        const kinds = wanted.map((id) =>
          id.includes('/cnp/') ? 'ClusterNetworkPolicy' : 'NetworkPolicy',
        );
        throw new NotFoundError(`no ${[...new Set(kinds)].join(' or ')} ${req.name}`);
      }
      ids = ids.slice(0, 1);
    }
    const groups = new Set<string>();
    const services = new Set<string>();
    const policies: PolicyEntry[] = ids.map((id) => {
      const p = model.policy(id)!;
      groups.add(p.appliedTo);
      for (const r of p.rules) {
        if ('addressGroup' in r.endpoint2) groups.add(r.endpoint2.addressGroup);
        if (r.serviceGroup) services.add(r.serviceGroup);
      }
      const real = distributor.realization(id);
      return {
        policy: firewallPolicyToWire(p),
        realization: {
          revision: String(real.revision),
          nodes: real.nodes,
          applied: real.applied,
          latencyMs: real.latencyMs,
          resyncMs: real.resyncMs,
        },
        selected: [...model.groupMembers(p.appliedTo).keys()].sort(),
        labels: { ...model.policyLabels(id) },
      };
    });
    return {
      revision: String(store.revision),
      policies,
      addressGroups: [...groups].sort().map((id) => addressGroupToWire(model.addressGroup(id)!)),
      serviceGroups: [...services].sort().map((id) => serviceGroupToWire(model.serviceGroup(id)!)),
    };
  }

  /** Per node the policy reached (proved), when its agent ACKed it (Unix ms), as far as remembered. */
  reachedUnixMs(policyId: string): Readonly<Record<string, number>> {
    return this.parts.distributor.realization(policyId).reachedUnixMs;
  }

  /**
   * The whole cluster compiled by the one evaluator, at the current
   * revision (rebuilt when it moves): what Explain and the console's
   * matrix decide with.
   */
  compiled(): RuleTables {
    const { model, store } = this.parts;
    if (this.tables?.revision !== store.revision)
      this.tables = { revision: store.revision, tables: compile(model.snapshot()) };
    return this.tables.tables;
  }

  explain(req: ExplainRequest__Output): ExplainReply {
    checkProbeRequest('ExplainRequest', req);
    const { store } = this.parts;
    const p = parseProbe(`${req.protocol || 'TCP'}/${req.port}`);
    if (typeof p === 'string') throw new ValidationError([{ field: 'protocol/port', message: p }]);
    const tables = this.compiled();
    const from = resolveTarget(tables, req.from);
    if (typeof from === 'string') throw new ValidationError([{ field: 'from', message: from }]);
    const to = resolveTarget(tables, req.to);
    if (typeof to === 'string') throw new ValidationError([{ field: 'to', message: to }]);
    return {
      revision: String(store.revision),
      explanationJson: JSON.stringify(probe(tables, from, to, p)),
    };
  }
}

/**
 * The policy ids a name given to `weirctl policy get` may mean, most likely
 * first: a policy id as it is; "cnp/NAME" or "ClusterNetworkPolicy/NAME" a
 * ClusterNetworkPolicy; "namespace/name" a NetworkPolicy; a bare name a
 * NetworkPolicy of "default", else a ClusterNetworkPolicy.
 */
function policyIdsNamed(cluster: string, name: string): string[] {
  if (name.includes('/np/') || name.includes('/cnp/')) return [name];
  const slash = name.indexOf('/');
  if (slash >= 0) {
    const prefix = name.slice(0, slash).toLowerCase();
    if (prefix === 'cnp' || prefix === 'clusternetworkpolicy')
      return [`${cluster}/cnp/${name.slice(slash + 1)}`];
    return [`${cluster}/np/${name}`];
  }
  return [`${cluster}/np/default/${name}`, `${cluster}/cnp/${name}`];
}

/** ListPoliciesRequest.label_selector, parsed; undefined when empty (every policy). */
function policySelector(text: string): LabelSelector | undefined {
  if (text === '') return undefined;
  const long = textIssue('ListPoliciesRequest', 'label_selector', text, FIELD_LIMITS.labelSelector);
  if (long !== undefined) throw new ValidationError([long]);
  const s = parseSelectorText(text);
  if (typeof s === 'string')
    throw new ValidationError([
      { object: 'ListPoliciesRequest', field: 'label_selector', message: s },
    ]);
  return s;
}
