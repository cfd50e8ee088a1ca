/**
 * ClusterNetworkPolicy → firewall objects. Pure, like the NetworkPolicy
 * translation, and sharing its groups (equal selectors, blocks and ports give
 * the same group ids whichever kind of policy names them).
 *
 *   ClusterNetworkPolicy name (tier, priority)
 *     subject                    → applied-to AddressGroup (selector)
 *     ingress[i].from[j]         → FirewallRule ingress, endpoint2 = peer group
 *     egress[i].to[j] pods/namespaces/nodes
 *                                → FirewallRule egress, endpoint2 = peer group
 *     egress[i].to[j].networks[k]→ FirewallRule egress per CIDR (ipBlock group)
 *     rule.protocols             → ServiceGroup (absent: any protocol and port)
 *     rule.action                → Accept: pass (Contrail's allow), Deny: deny,
 *                                  Pass: next-tier
 *
 * The policy's tier and priority travel on the FirewallPolicy; the cluster
 * model orders the application policy set by them.
 *
 * A federated policy (labelled weir.io/federated, translated with the
 * federation's name) differs in one thing: its `pods`/`namespaces` peers
 * become federation-scoped groups, matching the pods of every member. Its
 * subject stays local (each member enforces on its own pods) and so do
 * its `nodes` and `networks` peers.
 */
import type {
  FirewallPolicy,
  FirewallRule,
  RuleAction,
  ServiceGroup,
} from '../../shared/policy/types.js';
import type { ClusterNetworkPolicyObject, CnpAction, CnpPeer, CnpRule } from '../kube/objects.js';
import { selectorText } from '../../shared/policy/selector.js';
import {
  federatedSelectorGroup,
  ipBlockGroup,
  selectorGroup,
  serviceGroupOf,
  shortHash,
  type GroupSpec,
  type Translation,
} from './network-policy.js';

export function clusterPolicyId(cluster: string, name: string): string {
  return `${cluster}/cnp/${name}`;
}

const ACTION: Readonly<Record<CnpAction, RuleAction>> = {
  Accept: 'pass',
  Deny: 'deny',
  Pass: 'next-tier',
};

export function translateClusterNetworkPolicy(
  cnp: ClusterNetworkPolicyObject,
  cluster: string,
  /** The federation this member belongs to; only a federated policy's peers use it. */
  federation?: string,
): Translation {
  const scope = cnp.federated ? federation : undefined;
  const groups = new Map<string, GroupSpec>();
  const services = new Map<string, ServiceGroup>();
  const id = clusterPolicyId(cluster, cnp.name);
  const appliedTo = selectorGroup(cluster, {
    namespace: { selector: cnp.subject.namespaceSelector },
    pods: cnp.subject.podSelector,
  });
  groups.set(appliedTo.id, appliedTo);
  const self = { addressGroup: appliedTo.id };

  const rules: FirewallRule[] = [];
  const addRules = (direction: 'ingress' | 'egress', list: readonly CnpRule[]) => {
    list.forEach((rule, i) => {
      let service: { serviceGroup?: string } = {};
      if (rule.protocols.length > 0) {
        const sg = serviceGroupOf(cluster, rule.protocols);
        services.set(sg.id, sg);
        service = { serviceGroup: sg.id };
      }
      const common = {
        direction,
        endpoint1: self,
        ...service,
        action: ACTION[rule.action],
        ...(rule.name === '' ? {} : { name: rule.name }),
      };
      rule.peers.forEach((peer, j) => {
        for (const [suffix, g] of peerGroups(cluster, peer, scope)) {
          groups.set(g.id, g);
          rules.push({
            id: `${id}/${direction}/${i}/${j}${suffix}`,
            ...common,
            endpoint2: { addressGroup: g.id },
          });
        }
      });
    });
  };
  addRules('ingress', cnp.ingress);
  addRules('egress', cnp.egress);

  const policy: FirewallPolicy = {
    id,
    kind: 'ClusterNetworkPolicy',
    namespace: '',
    name: cnp.name,
    appliedTo: appliedTo.id,
    // "Has rules for the direction": a cluster policy never isolates.
    ingressIsolation: cnp.ingress.length > 0,
    egressIsolation: cnp.egress.length > 0,
    rules,
    tier: cnp.tier,
    priority: cnp.priority,
  };
  return { policy, addressGroups: [...groups.values()], serviceGroups: [...services.values()] };
}

/** The groups of one peer, each with its rule id suffix ("" or "/<cidr index>"). */
function peerGroups(
  cluster: string,
  peer: CnpPeer,
  federation: string | undefined,
): Array<[string, GroupSpec]> {
  if (peer.kind === 'pods') {
    const selector = { namespace: { selector: peer.namespaceSelector }, pods: peer.podSelector };
    return [
      [
        '',
        federation === undefined
          ? selectorGroup(cluster, selector)
          : federatedSelectorGroup(cluster, federation, selector),
      ],
    ];
  }
  if (peer.kind === 'nodes')
    return [
      [
        '',
        {
          id: `${cluster}/ag/nodes-${shortHash(`nodes:${selectorText(peer.selector)}`)}`,
          kind: 'nodes',
          nodeSelector: peer.selector,
        },
      ],
    ];
  return peer.cidrs.map((cidr, k) => [`/${k}`, ipBlockGroup(cluster, { cidr, except: [] })]);
}
