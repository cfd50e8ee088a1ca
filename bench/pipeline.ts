/**
 * The controller's full path from raw Kubernetes objects to rule tables,
 * phase by phase: validation (readKubeObject) → ClusterModel (upsert) →
 * snapshot() (translation and selector-group resolution) → compile().
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import {
  readKubeObject,
  type KubeObject,
  type NamespaceObject,
  type NetworkPolicyObject,
  type PodObject,
} from '../controller/kube/objects.js';
import { translateNetworkPolicy } from '../controller/translate/network-policy.js';
import { compile } from '../shared/policy/compile.js';
import type { RuleTables } from '../shared/policy/rule-tables.js';
import type { PolicySnapshot } from '../shared/policy/types.js';
import type { Raw } from '../testing/cluster.js';
import { nowMs } from './measure.js';

export const CLUSTER = 'bench';

export interface PhaseTimes {
  readonly validate: number;
  readonly model: number;
  readonly snapshot: number;
  readonly compile: number;
  readonly total: number;
}

export const PHASES = ['validate', 'model', 'snapshot', 'compile', 'total'] as const;

export interface PipelineResult {
  readonly times: PhaseTimes;
  /** Phase boundaries (nowMs()): start, after validate, model, snapshot, compile. */
  readonly marks: readonly [number, number, number, number, number];
  /** Time spent upserting each kind (part of the model phase). */
  readonly upserts: UpsertTimes;
  readonly model: ClusterModel;
  readonly snapshot: PolicySnapshot;
  readonly tables: RuleTables;
  readonly objects: readonly KubeObject[];
  /** Objects that failed validation or were ignored (there should be none). */
  readonly rejected: number;
  readonly firstIssue: string | undefined;
}

export function runPipeline(raw: readonly Raw[]): PipelineResult {
  const t0 = nowMs();
  const objects: KubeObject[] = [];
  let rejected = 0;
  let firstIssue: string | undefined;
  for (const r of raw) {
    const res = readKubeObject(r, 'bench');
    if (res.type === 'object') objects.push(res.object);
    else {
      rejected++;
      firstIssue ??= res.type === 'invalid' ? JSON.stringify(res.issues[0]) : res.note;
    }
  }
  const t1 = nowMs();
  const model = new ClusterModel({ cluster: CLUSTER });
  const upserts = upsertAll(model, objects);
  const t2 = nowMs();
  const snapshot = model.snapshot();
  const t3 = nowMs();
  const tables = compile(snapshot);
  const t4 = nowMs();
  return {
    times: {
      validate: t1 - t0,
      model: t2 - t1,
      snapshot: t3 - t2,
      compile: t4 - t3,
      total: t4 - t0,
    },
    marks: [t0, t1, t2, t3, t4],
    upserts,
    model,
    snapshot,
    tables,
    objects,
    rejected,
    firstIssue,
  };
}

export interface UpsertTimes {
  readonly Namespace: number;
  readonly Node: number;
  readonly Pod: number;
  readonly NetworkPolicy: number;
}

/** Upserts every object in order; times each run of consecutive objects of one kind. */
export function upsertAll(model: ClusterModel, objects: readonly KubeObject[]): UpsertTimes {
  const t = { Namespace: 0, Node: 0, Pod: 0, NetworkPolicy: 0, ClusterNetworkPolicy: 0 };
  let i = 0;
  while (i < objects.length) {
    const kind = objects[i]!.kind;
    const start = nowMs();
    for (; i < objects.length && objects[i]!.kind === kind; i++)
      model.apply({ type: 'upsert', object: objects[i]! });
    t[kind] += nowMs() - start;
  }
  return t;
}

/**
 * The model phase alone with the objects in another order (as informers
 * starting together may deliver them): namespaces, then policies, then pods.
 */
export function timeModelPoliciesFirst(objects: readonly KubeObject[]): {
  total: number;
  upserts: UpsertTimes;
  model: ClusterModel;
} {
  const rank = {
    Namespace: 0,
    Node: 0,
    NetworkPolicy: 1,
    ClusterNetworkPolicy: 1,
    Pod: 2,
  } as const;
  const ordered = [...objects].sort((a, b) => rank[a.kind] - rank[b.kind]);
  const model = new ClusterModel({ cluster: CLUSTER });
  const t0 = nowMs();
  const upserts = upsertAll(model, ordered);
  return { total: nowMs() - t0, upserts, model };
}

/** Translation alone (part of snapshot()), over already validated policies. */
export function timeTranslation(objects: readonly KubeObject[]): number {
  const policies = objects.filter((o): o is NetworkPolicyObject => o.kind === 'NetworkPolicy');
  const t0 = nowMs();
  let rules = 0;
  for (const np of policies) rules += translateNetworkPolicy(np, CLUSTER).policy.rules.length;
  const t = nowMs() - t0;
  if (rules < 0) throw new Error('unreachable');
  return t;
}

/** snapshot() on a model that has already translated every policy: group resolution and assembly only. */
export function timeResnapshot(model: ClusterModel): number {
  const t0 = nowMs();
  model.snapshot();
  return nowMs() - t0;
}

export function splitObjects(objects: readonly KubeObject[]): {
  namespaces: NamespaceObject[];
  pods: PodObject[];
  policies: NetworkPolicyObject[];
} {
  return {
    namespaces: objects.filter((o): o is NamespaceObject => o.kind === 'Namespace'),
    pods: objects.filter((o): o is PodObject => o.kind === 'Pod'),
    policies: objects.filter((o): o is NetworkPolicyObject => o.kind === 'NetworkPolicy'),
  };
}

export interface SnapshotStats {
  readonly endpoints: number;
  readonly policies: number;
  readonly rules: number;
  readonly selectorGroups: number;
  readonly ipBlockGroups: number;
  readonly groupMembers: number;
  readonly largestGroup: number;
  readonly serviceGroups: number;
  /** Sum over compiled endpoints of both directions' rule counts. */
  readonly tableRules: number;
  readonly maxTableRules: number;
  readonly ingressIsolated: number;
  readonly egressIsolated: number;
}

export function snapshotStats(snapshot: PolicySnapshot, tables: RuleTables): SnapshotStats {
  let groupMembers = 0;
  let largestGroup = 0;
  let selectorGroups = 0;
  let ipBlockGroups = 0;
  for (const g of snapshot.addressGroups) {
    if (g.kind === 'selector') {
      selectorGroups++;
      groupMembers += g.members.length;
      largestGroup = Math.max(largestGroup, g.members.length);
    } else ipBlockGroups++;
  }
  let tableRules = 0;
  let maxTableRules = 0;
  let ingressIsolated = 0;
  let egressIsolated = 0;
  for (const e of tables.endpoints.values()) {
    tableRules += e.ingress.rules.length + e.egress.rules.length;
    maxTableRules = Math.max(maxTableRules, e.ingress.rules.length, e.egress.rules.length);
    if (e.ingress.policies.length > 0) ingressIsolated++;
    if (e.egress.policies.length > 0) egressIsolated++;
  }
  return {
    endpoints: snapshot.endpoints.length,
    policies: snapshot.policies.length,
    rules: snapshot.policies.reduce((n, p) => n + p.rules.length, 0),
    selectorGroups,
    ipBlockGroups,
    groupMembers,
    largestGroup,
    serviceGroups: snapshot.serviceGroups.length,
    tableRules,
    maxTableRules,
    ingressIsolated,
    egressIsolated,
  };
}
