/**
 * The current cluster as the controller knows it: namespaces, pods and
 * network policies, each validated on the way in. Invalid objects are kept
 * aside with their issues (reported in status) and never reach translation;
 * the rest of the cluster is unaffected.
 *
 *   events ─> ClusterModel ─> snapshot(): translate every policy, resolve
 *                              every selector group, one PolicySnapshot
 */
import type { Issue } from '../../shared/errors.js';
import type { AddressGroup, Endpoint, FirewallPolicy, PolicySnapshot, ServiceGroup } from '../../shared/policy/types.js';
import { translateNetworkPolicy, type Translation } from '../translate/network-policy.js';
import { EndpointIndex } from './endpoint-index.js';
import { NAMESPACE_NAME_LABEL, type KubeObject, type NamespaceObject, type NetworkPolicyObject, type PodObject } from './kube-objects.js';

export type ModelEvent =
  | { readonly type: 'upsert'; readonly object: KubeObject }
  | { readonly type: 'delete'; readonly kind: KubeObject['kind']; readonly namespace: string; readonly name: string }
  /** An object that failed validation: any previous valid version is withdrawn. */
  | { readonly type: 'invalid'; readonly kind: KubeObject['kind']; readonly namespace: string; readonly name: string; readonly issues: readonly Issue[] };

/** Pods in these phases have stopped and hold no address that policy should follow. */
const FINISHED_PHASES = new Set(['Succeeded', 'Failed']);

export class ClusterModel {
  readonly cluster: string;
  private readonly namespaces = new Map<string, NamespaceObject>();
  private readonly pods = new Map<string, PodObject>();
  private readonly policies = new Map<string, NetworkPolicyObject>();
  private readonly rejected = new Map<string, readonly Issue[]>();
  private readonly translations = new WeakMap<NetworkPolicyObject, Translation>();

  constructor(options: { cluster: string }) {
    this.cluster = options.cluster;
  }

  apply(event: ModelEvent): void {
    if (event.type === 'upsert') {
      const o = event.object;
      const key = objectKey(o.kind, o.kind === 'Namespace' ? '' : o.namespace, o.name);
      this.rejected.delete(key);
      if (o.kind === 'Namespace') this.namespaces.set(o.name, o);
      else if (o.kind === 'Pod') this.pods.set(`${o.namespace}/${o.name}`, o);
      else this.policies.set(`${o.namespace}/${o.name}`, o);
      return;
    }
    const key = objectKey(event.kind, event.namespace, event.name);
    const mapKey = event.kind === 'Namespace' ? event.name : `${event.namespace}/${event.name}`;
    if (event.kind === 'Namespace') this.namespaces.delete(mapKey);
    else if (event.kind === 'Pod') this.pods.delete(mapKey);
    else this.policies.delete(mapKey);
    if (event.type === 'invalid') this.rejected.set(key, event.issues);
    else this.rejected.delete(key);
  }

  /** Objects rejected by validation, with every issue found. */
  rejections(): ReadonlyMap<string, readonly Issue[]> {
    return this.rejected;
  }

  networkPolicies(): NetworkPolicyObject[] {
    return [...this.policies.values()];
  }

  /** Namespace labels, including for namespaces known only from their pods. */
  namespaceLabels(name: string): Record<string, string> {
    return { ...(this.namespaces.get(name)?.labels ?? {}), [NAMESPACE_NAME_LABEL]: name };
  }

  /** Pods that are policy endpoints: running or pending with addresses, not on the host network. */
  endpoints(): Endpoint[] {
    const out: Endpoint[] = [];
    for (const p of this.pods.values()) {
      if (p.hostNetwork || p.ips.length === 0 || FINISHED_PHASES.has(p.phase)) continue;
      out.push({
        cluster: this.cluster,
        namespace: p.namespace,
        name: p.name,
        uid: p.uid,
        node: p.node,
        ips: p.ips,
        labels: p.labels,
        namespaceLabels: this.namespaceLabels(p.namespace),
        ports: p.ports,
      });
    }
    return out.sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  }

  /** Every policy translated, every selector group resolved. */
  snapshot(): PolicySnapshot {
    const endpoints = this.endpoints();
    const nsNames = new Set([...this.namespaces.keys(), ...endpoints.map((e) => e.namespace)]);
    const index = new EndpointIndex(
      [...nsNames].map((name) => ({ name, labels: this.namespaceLabels(name) })),
      endpoints,
    );
    const policies: FirewallPolicy[] = [];
    const groups = new Map<string, AddressGroup>();
    const services = new Map<string, ServiceGroup>();
    const sorted = [...this.policies.values()].sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
    for (const np of sorted) {
      let t = this.translations.get(np);
      if (t === undefined) this.translations.set(np, (t = translateNetworkPolicy(np, this.cluster)));
      policies.push(t.policy);
      for (const sg of t.serviceGroups) services.set(sg.id, sg);
      for (const g of t.addressGroups) {
        if (groups.has(g.id)) continue;
        if (g.kind === 'ipBlock') groups.set(g.id, g);
        else {
          const members = index.resolve(g.selector).map((e) => ({ endpoint: `${e.namespace}/${e.name}`, ips: e.ips }));
          groups.set(g.id, { id: g.id, kind: 'selector', selector: g.selector, members });
        }
      }
    }
    return {
      cluster: this.cluster,
      applicationPolicySet: { id: `${this.cluster}/aps`, cluster: this.cluster, tiers: [{ tier: 'namespace', policies: policies.map((p) => p.id) }] },
      policies,
      addressGroups: [...groups.values()].sort((a, b) => cmp(a.id, b.id)),
      serviceGroups: [...services.values()].sort((a, b) => cmp(a.id, b.id)),
      endpoints,
    };
  }
}

export function objectKey(kind: string, namespace: string, name: string): string {
  return namespace === '' ? `${kind} ${name}` : `${kind} ${namespace}/${name}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
