/**
 * Kubernetes objects as Weir reads them: Namespaces, Nodes, Pods,
 * NetworkPolicies and ClusterNetworkPolicies validated and normalised from their API shape (JSON as the API server or a
 * manifest gives it). Validation follows the API server's own rules
 * (k8s.io/kubernetes pkg/apis/networking/validation) and reports every problem
 * with the object and field it concerns; a rejected object never stops the
 * others.
 */
import type { Issue } from '../../shared/errors.js';
import { Reader, isRecord } from './common.js';
import {
  readClusterNetworkPolicy,
  type ClusterNetworkPolicyObject,
} from './cluster-network-policy.js';
import { readNamespace, type NamespaceObject } from './namespace.js';
import { readNetworkPolicy, type NetworkPolicyObject } from './network-policy.js';
import { readNode, type NodeObject } from './node.js';
import { readPod, type PodObject } from './pod.js';

export { NAMESPACE_NAME_LABEL, type NamespaceObject } from './namespace.js';
export type { NetworkPolicyObject, PolicyPeer, PolicyRule } from './network-policy.js';
export type { NodeAddress, NodeObject } from './node.js';
export type { PodObject } from './pod.js';
export type {
  ClusterNetworkPolicyObject,
  CnpAction,
  CnpPeer,
  CnpPods,
  CnpRule,
} from './cluster-network-policy.js';

export type KubeObject =
  | NamespaceObject
  | NodeObject
  | PodObject
  | NetworkPolicyObject
  | ClusterNetworkPolicyObject;

/** Kinds without a namespace: their objects are named by name alone. */
export function isClusterScoped(
  kind: KubeObject['kind'],
): kind is 'Namespace' | 'Node' | 'ClusterNetworkPolicy' {
  return kind === 'Namespace' || kind === 'Node' || kind === 'ClusterNetworkPolicy';
}

/** An object's namespace; '' for cluster-scoped kinds. */
export function namespaceOf(o: KubeObject): string {
  return o.kind === 'Pod' || o.kind === 'NetworkPolicy' ? o.namespace : '';
}

/** What reading one raw object gave: the object, or the reason it was skipped or rejected. */
export type ReadResult =
  | { readonly type: 'object'; readonly object: KubeObject }
  | { readonly type: 'ignored'; readonly note: string }
  | {
      readonly type: 'invalid';
      readonly issues: readonly Issue[];
      readonly identity?: ObjectIdentity;
    };

/** Which object, when a rejected one can still be named (so that its previous version can be withdrawn). */
export interface ObjectIdentity {
  readonly kind: KubeObject['kind'];
  /** Empty for namespaces. */
  readonly namespace: string;
  readonly name: string;
}

/** The kinds Weir reads, with the apiVersion it reads each at. */
export const READ_KINDS: Readonly<Record<string, string>> = {
  Namespace: 'v1',
  Node: 'v1',
  Pod: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  ClusterNetworkPolicy: 'policy.networking.k8s.io/v1alpha2',
};

/** Validates one object of any kind. `source` names where it came from (a file, "kubernetes"). */
export function readKubeObject(raw: unknown, source?: string): ReadResult {
  if (!isRecord(raw)) return invalid({ source, message: 'not an object' });
  const kind = typeof raw.kind === 'string' ? raw.kind : undefined;
  const apiVersion = typeof raw.apiVersion === 'string' ? raw.apiVersion : undefined;
  const meta = isRecord(raw.metadata) ? raw.metadata : {};
  const label = `${kind ?? '(no kind)'} ${typeof meta.namespace === 'string' ? `${meta.namespace}/` : ''}${typeof meta.name === 'string' ? meta.name : '(no name)'}`;
  if (kind === undefined)
    return invalid({ source, object: label, field: 'kind', message: 'required' });
  const want = READ_KINDS[kind];
  if (want === undefined) return { type: 'ignored', note: `${kind} is not a kind Weir reads` };
  if (apiVersion !== want)
    return {
      type: 'ignored',
      note: `${kind} with apiVersion ${apiVersion ?? '(none)'} is not read (Weir reads ${want})`,
    };
  const r = new Reader(source);
  let object: KubeObject | undefined;
  if (kind === 'Namespace') object = readNamespace(r, raw);
  else if (kind === 'Node') object = readNode(r, raw);
  else if (kind === 'Pod') object = readPod(r, raw);
  else if (kind === 'ClusterNetworkPolicy') object = readClusterNetworkPolicy(r, raw);
  else object = readNetworkPolicy(r, raw);
  if (r.issues.length > 0 || object === undefined) {
    // A name that is itself invalid does not identify an object (it may be a typo of one).
    const named = !r.issues.some(
      (i) => i.field === 'metadata.name' || i.field === 'metadata.namespace',
    );
    const name = named && typeof meta.name === 'string' && meta.name !== '' ? meta.name : undefined;
    const namespace = isClusterScoped(kind as KubeObject['kind'])
      ? ''
      : typeof meta.namespace === 'string' && meta.namespace !== ''
        ? meta.namespace
        : 'default';
    return {
      type: 'invalid',
      issues: r.issues,
      ...(name ? { identity: { kind: kind as KubeObject['kind'], namespace, name } } : {}),
    };
  }
  return { type: 'object', object };
}

function invalid(issue: Issue): ReadResult {
  return { type: 'invalid', issues: [issue] };
}
