/**
 * NetworkPolicy → firewall objects. Pure: the same policy always gives the
 * same objects with the same ids, whatever else the cluster holds.
 *
 *   NetworkPolicy ns/name
 *     podSelector            → applied-to AddressGroup (selector, own namespace)
 *     ingress[i].from[j]     → FirewallRule ingress, endpoint2 = peer group
 *     ingress[i] (no from)   → FirewallRule ingress, endpoint2 = any
 *     ingress[i].ports       → ServiceGroup (absent: any service)
 *     ipBlock cidr − except  → AddressGroup (static prefixes; never deny rules)
 *
 * Groups are named by what they contain, so two policies that select the same
 * pods or the same block share one group.
 */
import { createHash } from 'node:crypto';
import { excludeCidr } from 'cidr-tools';
import { BoundedCache } from '../../shared/collections.js';
import { InternalError } from '../../shared/errors.js';
import { parseCidr } from '../../shared/net/ip.js';
import { EVERYTHING, endpointSelectorKey } from '../../shared/policy/selector.js';
import type {
  Direction,
  EndpointSelector,
  FirewallPolicy,
  FirewallRule,
  IpBlock,
  LabelSelector,
  RuleEndpoint,
  Service,
  ServiceGroup,
} from '../../shared/policy/types.js';
import type { NetworkPolicyObject, PolicyPeer, PolicyRule } from '../kube/objects.js';

/** An address group as translation defines it; selector members are resolved by the cluster model. */
export type GroupSpec =
  | {
      readonly id: string;
      readonly kind: 'selector';
      readonly selector: EndpointSelector;
      /**
       * Set on the peer groups of a federated ClusterNetworkPolicy: the
       * federation whose members' pods (remote as well as local) the group
       * matches. Absent: local pods only.
       */
      readonly federation?: string;
    }
  | {
      readonly id: string;
      readonly kind: 'ipBlock';
      readonly ipBlock: IpBlock;
      readonly prefixes: readonly string[];
    }
  /** Nodes by their labels (a ClusterNetworkPolicy `nodes` peer); members are resolved by the cluster model. */
  | { readonly id: string; readonly kind: 'nodes'; readonly nodeSelector: LabelSelector };

export interface Translation {
  readonly policy: FirewallPolicy;
  readonly addressGroups: readonly GroupSpec[];
  readonly serviceGroups: readonly ServiceGroup[];
}

export function policyId(cluster: string, namespace: string, name: string): string {
  return `${cluster}/np/${namespace}/${name}`;
}

export function translateNetworkPolicy(np: NetworkPolicyObject, cluster: string): Translation {
  const groups = new Map<string, GroupSpec>();
  const services = new Map<string, ServiceGroup>();
  const id = policyId(cluster, np.namespace, np.name);

  const appliedTo = selectorGroup(cluster, {
    namespace: { name: np.namespace },
    pods: np.podSelector,
  });
  groups.set(appliedTo.id, appliedTo);
  const self: RuleEndpoint = { addressGroup: appliedTo.id };

  const rules: FirewallRule[] = [];
  const addRules = (direction: Direction, list: readonly PolicyRule[]) => {
    list.forEach((rule, i) => {
      let service: { serviceGroup?: string } = {};
      if (rule.ports.length > 0) {
        const sg = serviceGroupOf(cluster, rule.ports);
        services.set(sg.id, sg);
        service = { serviceGroup: sg.id };
      }
      const base = `${id}/${direction}/${i}`;
      if (rule.peers.length === 0) {
        rules.push({
          id: base,
          direction,
          endpoint1: self,
          endpoint2: { any: true },
          ...service,
          action: 'pass',
        });
        return;
      }
      rule.peers.forEach((peer, j) => {
        const g = peerGroup(cluster, np.namespace, peer);
        groups.set(g.id, g);
        rules.push({
          id: `${base}/${j}`,
          direction,
          endpoint1: self,
          endpoint2: { addressGroup: g.id },
          ...service,
          action: 'pass',
        });
      });
    });
  };
  // Rules of a direction the policy does not isolate are ignored, as Kubernetes does.
  if (np.ingressIsolation) addRules('ingress', np.ingress);
  if (np.egressIsolation) addRules('egress', np.egress);

  return {
    policy: {
      id,
      kind: 'NetworkPolicy',
      namespace: np.namespace,
      name: np.name,
      appliedTo: appliedTo.id,
      ingressIsolation: np.ingressIsolation,
      egressIsolation: np.egressIsolation,
      rules,
    },
    addressGroups: [...groups.values()],
    serviceGroups: [...services.values()],
  };
}

function peerGroup(cluster: string, namespace: string, peer: PolicyPeer): GroupSpec {
  if (peer.kind === 'ipBlock') return ipBlockGroup(cluster, peer.ipBlock);
  return selectorGroup(cluster, {
    // podSelector alone: the policy's namespace. namespaceSelector (even {}): the namespaces it matches.
    namespace:
      peer.namespaceSelector === undefined
        ? { name: namespace }
        : { selector: peer.namespaceSelector },
    pods: peer.podSelector ?? EVERYTHING,
  });
}

export function selectorGroup(cluster: string, selector: EndpointSelector): GroupSpec {
  return {
    id: `${cluster}/ag/sel-${shortHash(endpointSelectorKey(selector))}`,
    kind: 'selector',
    selector,
  };
}

/**
 * A selector group over the pods of every member of a federation (a
 * federated policy's peer). The scope enters the id, so it never shares an
 * id, or members, with the local group of the same selector.
 */
export function federatedSelectorGroup(
  cluster: string,
  federation: string,
  selector: EndpointSelector,
): GroupSpec {
  return {
    id: `${cluster}/ag/fed-${shortHash(`federation:${federation}\u0000${endpointSelectorKey(selector)}`)}`,
    kind: 'selector',
    selector,
    federation,
  };
}

export function ipBlockGroup(cluster: string, ipBlock: IpBlock): GroupSpec {
  const excepts = [...ipBlock.except].sort();
  const key = `${ipBlock.cidr} except ${excepts.join(',')}`;
  return {
    id: `${cluster}/ag/cidr-${shortHash(key)}`,
    kind: 'ipBlock',
    ipBlock: { cidr: ipBlock.cidr, except: excepts },
    prefixes: remainingPrefixes(key, ipBlock.cidr, excepts),
  };
}

/** `cidr` minus `excepts`, as prefixes. Many policies name the same blocks: each is computed once. */
const remainders = new BoundedCache<string, readonly string[]>(10_000);
function remainingPrefixes(
  key: string,
  cidr: string,
  excepts: readonly string[],
): readonly string[] {
  return remainders.get(key, () => {
    const remaining = excepts.length === 0 ? [cidr] : excludeCidr(cidr, [...excepts]);
    return remaining.map((p) => {
      const c = parseCidr(p.includes('/') ? p : `${p}/${p.includes(':') ? 128 : 32}`);
      if (typeof c === 'string') throw new InternalError(`cidr-tools returned ${p}: ${c}`);
      return c.text;
    });
  });
}

export function serviceGroupOf(cluster: string, ports: readonly Service[]): ServiceGroup {
  const text = (s: Service) =>
    `${s.protocol}/${s.port.kind === 'all' ? '*' : s.port.kind === 'named' ? s.port.name : s.port.start === s.port.end ? s.port.start : `${s.port.start}-${s.port.end}`}`;
  const unique = [...new Map(ports.map((s) => [text(s), s])).entries()].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  return {
    id: `${cluster}/sg/${shortHash(unique.map(([k]) => k).join(','))}`,
    services: unique.map(([, s]) => s),
  };
}

/** 64 bits of sha256, as hex: ids from content. Policies repeat selectors, so results are remembered. */
const hashes = new BoundedCache<string, string>(100_000);
export function shortHash(text: string): string {
  return hashes.get(text, () => createHash('sha256').update(text).digest('hex').slice(0, 16));
}
