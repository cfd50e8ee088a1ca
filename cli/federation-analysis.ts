/**
 * Offline analysis across the clusters of a federation (docs/federation.md):
 * `weirctl analyze … --cluster a -f A --cluster b -f B …`.
 *
 *   manifests of a ──> model a ─┐   each model gets every other cluster's
 *   manifests of b ──> model b ─┼─  namespaces and endpoints as remote events
 *   manifests of c ──> model c ─┘   and its federated ClusterNetworkPolicies
 *                                   as imported-policy events
 *
 * Each model is fed by a FederationImporter from the others' entries, as
 * the hub would hold them, exactly as a live member's model is fed, so the selectors, the cluster label, the federation
 * scope of peer groups and the name-conflict rules are the model's, not a
 * second implementation here. Each model is compiled into the RuleTables the
 * agents use; a connection between clusters is then decided where it is
 * enforced: the source's egress by the source cluster's tables, the
 * destination's ingress by the destination cluster's tables, and allowed only
 * when both allow (in one cluster: as `weirctl analyze` for that cluster).
 *
 * Pods of several clusters are named `cluster/namespace/pod`.
 */
import pino from 'pino';
import { FederationImporter } from '../controller/federation/importer.js';
import { type Entry, exportedEntries } from '../controller/federation/offline.js';
import { ClusterModel } from '../controller/model/cluster-model.js';
import { ValidationError, type Issue } from '../shared/errors.js';
import { NATS_CLUSTER_NAME } from '../shared/nats/names.js';
import { formatIp, parseIp, tryParseIp, type Ip } from '../shared/net/ip.js';
import { compile } from '../shared/policy/compile.js';
import { explain, type DirectionExplanation, type Explanation } from '../shared/policy/explain.js';
import { reachability, type Matrix, type MatrixPod } from '../shared/policy/matrix.js';
import {
  familyName,
  probePairs,
  resolveTarget,
  type Probe,
  type Target,
} from '../shared/policy/probe.js';
import type { Packet, RuleTables } from '../shared/policy/rule-tables.js';
import {
  PROTOCOL_NUMBER,
  endpointKey,
  type Endpoint,
  type PolicySnapshot,
} from '../shared/policy/types.js';
import { ANALYSIS_ADDRESS_BASE, analysedObjects, readStdin } from './analysis.js';

/** The federation the analysis's models belong to (a name is required to turn federation on). */
export const ANALYSIS_FEDERATION = 'analysis';
const SILENT = pino({ level: 'silent' });

/** One `--cluster NAME -f PATH…` group of the command line. */
export interface ClusterManifests {
  readonly cluster: string;
  readonly paths: readonly string[];
}

export interface MemberAnalysis {
  readonly cluster: string;
  readonly snapshot: PolicySnapshot;
  readonly tables: RuleTables;
  /** The member's own pods (not the remote ones its groups hold). */
  readonly endpoints: readonly Endpoint[];
}

/** An address that pods of more than one cluster claim: rejected as a remote endpoint everywhere. */
export interface Overlap {
  readonly ip: string;
  /** `cluster/namespace/pod` of every claimant, sorted. */
  readonly pods: readonly string[];
}

export interface FederationAnalysis {
  readonly members: readonly MemberAnalysis[];
  /** Problems of the manifests (their source names the cluster) and of the federation (overlaps). */
  readonly issues: readonly Issue[];
  readonly notes: readonly string[];
  readonly overlaps: readonly Overlap[];
}

/**
 * Checks the groups a command line gave before anything is read: every
 * cluster named validly and once, with at least one path, and standard
 * input read once.
 */
export function checkClusterManifests(groups: readonly ClusterManifests[]): void {
  const issues: Issue[] = [];
  const seen = new Set<string>();
  for (const g of groups) {
    if (!NATS_CLUSTER_NAME.test(g.cluster))
      issues.push({
        field: '--cluster',
        message: `${JSON.stringify(g.cluster)} is not a cluster name: 1 to 64 of A-Z a-z 0-9 _ - (as the federation's member names)`,
      });
    else if (seen.has(g.cluster))
      issues.push({ field: '--cluster', message: `${g.cluster} is given more than once` });
    seen.add(g.cluster);
    if (g.paths.length === 0)
      issues.push({
        field: '--cluster',
        message: `${g.cluster} has no -f/--filename PATH after it: give each cluster's manifests as --cluster NAME -f PATH`,
      });
  }
  if (groups.flatMap((g) => g.paths).filter((p) => p === '-').length > 1)
    issues.push({ field: '-f', message: 'standard input ("-") can be read once' });
  if (issues.length > 0) throw new ValidationError(issues);
}

/** What one cluster exports to the others: the entries its exporter would write to the hub. */
interface Export {
  readonly cluster: string;
  readonly entries: readonly Entry[];
  /** Its own pods (for the overlap report). */
  readonly endpoints: readonly Endpoint[];
}

/** Reads every cluster's manifests, builds its model as a member of one federation, and compiles it. */
export async function analyseFederation(
  groups: readonly ClusterManifests[],
  options: { stdin?: string } = {},
): Promise<FederationAnalysis> {
  checkClusterManifests(groups);
  const stdinNeeded = groups.some((g) => g.paths.includes('-'));
  const stdin = stdinNeeded ? (options.stdin ?? (await readStdin())) : undefined;
  const addresses = { next: ANALYSIS_ADDRESS_BASE + 1 };
  const issues: Issue[] = [];
  const notes: string[] = [];
  const members: Array<{ cluster: string; model: ClusterModel }> = [];
  for (const g of groups) {
    const read = await analysedObjects(g.paths, stdin, addresses);
    for (const i of read.issues)
      issues.push({ ...i, source: `cluster ${g.cluster}: ${i.source ?? ''}`.replace(/: $/, '') });
    for (const n of read.notes) notes.push(`cluster ${g.cluster}: ${n}`);
    const model = new ClusterModel({
      cluster: g.cluster,
      federation: { name: ANALYSIS_FEDERATION },
    });
    for (const object of read.objects) model.apply({ type: 'upsert', object });
    members.push({ cluster: g.cluster, model });
  }

  const exports: Export[] = members.map(({ cluster, model }) => ({
    cluster,
    entries: exportedEntries(model),
    endpoints: model.endpoints(),
  }));

  // The models reject overlapping remote claimants themselves, as in a live
  // member; found here too so that the analysis names every claimant once.
  const overlaps = findOverlaps(exports);
  for (const o of overlaps)
    issues.push({
      source: 'federation',
      object: `address ${o.ip}`,
      message: `claimed by pods of more than one cluster (${o.pods.join(', ')}): rejected as a remote endpoint in every cluster, as the live federation does; each pod keeps it in its own cluster`,
    });

  // Every member imports the others' entries through its FederationImporter,
  // as a controller does: each entry as that member's exporter writes it
  // (exportedEntries: through JSON, as the hub holds bytes), validated by
  // the importer, applied to the model as FederationModelEvents.
  for (const { cluster, model } of members) {
    const importer = new FederationImporter({
      cluster,
      federation: ANALYSIS_FEDERATION,
      apply: (e) => model.apply(e),
      log: SILENT,
    });
    importer.handle({ type: 'connected' });
    for (const x of exports)
      if (x.cluster !== cluster)
        for (const { ref, value } of x.entries) importer.handle({ type: 'put', ref, value });
    importer.handle({ type: 'synced' });
    // Name conflicts are not errors of the manifests: the model decides
    // (a local policy wins, then the lowest origin) and says so, as the
    // live member reports it.
    for (const i of model.federation()?.imports ?? []) {
      if (i.state === 'shadowed-by-local')
        notes.push(
          `cluster ${cluster}: the federated ClusterNetworkPolicy ${i.name} of ${i.origin} is not enforced here: ${cluster}'s own ClusterNetworkPolicy of that name wins`,
        );
      else if (i.state.startsWith('lost-to:'))
        notes.push(
          `cluster ${cluster}: the federated ClusterNetworkPolicy ${i.name} of ${i.origin} is not enforced here: ${i.state.slice('lost-to:'.length)} exports one of that name too, and the lowest cluster name wins`,
        );
    }
    for (const r of importer.rejections())
      issues.push({
        source: `cluster ${cluster}`,
        object: `imported ${r.object}`,
        message: r.problems.join('; '),
      });
  }

  return {
    members: members.map(({ cluster, model }) => {
      const snapshot = model.snapshot();
      return {
        cluster,
        snapshot,
        tables: compile(snapshot),
        endpoints: snapshot.endpoints.filter((e) => e.cluster === cluster),
      };
    }),
    issues,
    notes,
    overlaps,
  };
}

/** Addresses claimed by pods of two or more clusters (a pod's own addresses never overlap it). */
function findOverlaps(exports: readonly Export[]): Overlap[] {
  const claims = new Map<string, Map<string, string[]>>();
  for (const x of exports)
    for (const e of x.endpoints)
      for (const text of e.ips) {
        const ip = formatIp(parseIp(text));
        const byCluster = claims.get(ip) ?? new Map<string, string[]>();
        claims.set(ip, byCluster);
        byCluster.set(x.cluster, [
          ...(byCluster.get(x.cluster) ?? []),
          `${x.cluster}/${endpointKey(e)}`,
        ]);
      }
  return [...claims]
    .filter(([, byCluster]) => byCluster.size > 1)
    .map(([ip, byCluster]) => ({ ip, pods: [...byCluster.values()].flat().sort() }))
    .sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

/** A pod of the federation, as a matrix row and column. */
interface FederatedPod extends MatrixPod {
  readonly member: MemberAnalysis;
  readonly endpoint: Endpoint;
}

/**
 * Whether `packet` from `from`'s member to `to`'s member is allowed: the
 * source's egress in its cluster and the destination's ingress in its
 * cluster (one RuleTables.allows when both are the same cluster).
 */
function allowsAcross(from: MemberAnalysis, to: MemberAnalysis, packet: Packet): boolean {
  if (from === to) return from.tables.allows(packet);
  return from.tables.allows(packet) && to.tables.allows(packet);
}

/**
 * Every pod of every cluster to every pod, per probe; `namespaces` keeps the
 * pods of those namespaces ("ns" in any cluster, "cluster/ns" in one), `keep`
 * the pods it accepts.
 */
export function federatedMatrix(
  f: FederationAnalysis,
  probes: readonly Probe[],
  namespaces: readonly string[] = [],
  keep: (e: Endpoint) => boolean = () => true,
): Matrix {
  const pods: FederatedPod[] = f.members.flatMap((member) =>
    member.endpoints
      .filter(
        (e) =>
          namespaces.length === 0 ||
          namespaces.includes(e.namespace) ||
          namespaces.includes(`${member.cluster}/${e.namespace}`),
      )
      .filter(keep)
      .map((endpoint) => ({
        key: `${member.cluster}/${endpointKey(endpoint)}`,
        ips: endpoint.ips.map(parseIp),
        member,
        endpoint,
      })),
  );
  return reachability(pods, probes, (from, to, packet) =>
    allowsAcross(from.member, to.member, packet),
  );
}

/** One end of a federated probe: the target, and the cluster whose pod it is (none: an outside address). */
export interface FederatedTarget {
  readonly target: Target;
  readonly member?: MemberAnalysis;
}

/**
 * "cluster/namespace/pod", or an address (of a pod of some cluster, or
 * outside them all); an error message when neither.
 */
export function resolveFederatedTarget(
  f: FederationAnalysis,
  text: string,
): FederatedTarget | string {
  const ip = tryParseIp(text);
  if (ip !== undefined) {
    const owner = ownerOf(f, ip);
    return owner === undefined
      ? { target: { kind: 'address', text, ip } }
      : { target: { kind: 'address', text, ip }, member: owner };
  }
  const parts = text.split('/');
  const clusters = f.members.map((m) => m.cluster).join(', ');
  if (parts.length !== 3)
    return `${JSON.stringify(text)}: with several clusters, name a pod as cluster/namespace/pod (clusters: ${clusters}) or give an IP address`;
  const member = f.members.find((m) => m.cluster === parts[0]);
  if (member === undefined)
    return `${JSON.stringify(text)}: no cluster ${parts[0]} was given (clusters: ${clusters})`;
  const t = resolveTarget(member.tables, `${parts[1]}/${parts[2]}`);
  if (typeof t === 'string' || t.kind !== 'pod' || !member.tables.endpoints.has(t.pod))
    return `${JSON.stringify(text)} is not a pod with an address in cluster ${member.cluster}'s manifests`;
  return { target: { ...t, text }, member };
}

/**
 * The cluster whose pod has this address; with an overlap, the first
 * cluster given among the claimants (the overlap itself is reported).
 */
function ownerOf(f: FederationAnalysis, ip: Ip): MemberAnalysis | undefined {
  return f.members.find((m) => m.tables.byIp.has(ip));
}

/**
 * A probe between two ends of a federation, explained side by side: the
 * egress as the source's cluster decides it, the ingress as the
 * destination's cluster decides it, each naming its deciding rule. Pods are
 * named `cluster/namespace/pod`. As `probe` (shared/policy/probe.ts) for
 * families: allowed only when every family the ends share allows.
 */
export function federatedProbe(
  f: FederationAnalysis,
  from: FederatedTarget,
  to: FederatedTarget,
  p: Probe,
): Explanation {
  const anyMember = f.members[0]!;
  const explanations = probePairs(from.target, to.target).map(({ src, dst }) => {
    const q = { src, dst, protocol: PROTOCOL_NUMBER[p.protocol], dstPort: p.port };
    const words = { src, dst, protocol: p.protocol, port: p.port };
    const at = (m: MemberAnalysis) => explain(m.tables, m.tables.decide(q), words);
    const s = from.member;
    const d = to.member;
    if (s === d) {
      const e = at(s ?? anyMember);
      return { ...qualify(e, s, d), family: familyName(src) };
    }
    const es = s === undefined ? undefined : at(s);
    const ed = d === undefined ? undefined : at(d);
    const egress = (es ?? ed)!.egress;
    const ingress = (ed ?? es)!.ingress;
    const combined: Explanation = {
      allowed: egress.allowed && ingress.allowed,
      protocol: p.protocol,
      port: p.port,
      from: (es ?? ed)!.from,
      to: (ed ?? es)!.to,
      egress,
      ingress,
    };
    return { ...qualify(combined, s, d), family: familyName(src) };
  });
  if (explanations.length === 1) {
    const { family: _, ...only } = explanations[0]!;
    return only;
  }
  const deciding = explanations.find((e) => !e.allowed) ?? explanations[0]!;
  return { ...deciding, families: explanations };
}

/** Names the pods of an explanation `cluster/namespace/pod`: the source's in its cluster, the destination's in its. */
function qualify(
  e: Explanation,
  s: MemberAnalysis | undefined,
  d: MemberAnalysis | undefined,
): Explanation {
  const name = (m: MemberAnalysis | undefined, key: string | undefined) =>
    m === undefined || key === undefined ? undefined : `${m.cluster}/${key}`;
  const side = (x: { ip: string; endpoint?: string }, m: MemberAnalysis | undefined) => {
    const n = name(m, x.endpoint);
    return n === undefined ? { ip: x.ip } : { ip: x.ip, endpoint: n };
  };
  const direction = (x: DirectionExplanation, m: MemberAnalysis | undefined) => {
    const n = name(m, x.endpoint);
    const { endpoint: _, ...rest } = x;
    return n === undefined ? rest : { ...rest, endpoint: n };
  };
  return {
    ...e,
    from: side(e.from, s),
    to: side(e.to, d),
    egress: direction(e.egress, s),
    ingress: direction(e.ingress, d),
  };
}
