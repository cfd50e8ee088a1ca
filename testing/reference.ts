/**
 * A reference reading of Kubernetes NetworkPolicy and network-policy-api
 * ClusterNetworkPolicy semantics, written straight from the API
 * documentation over validated objects: no groups, no prefix sets, no
 * compilation, a scan of every policy per question. Per direction: the Admin
 * tier (policies by priority then name, rules in order; the first match
 * decides, Pass skips the rest of the tier), then the NetworkPolicy tier
 * (if a policy isolates the pod: traffic with the pod's own node allowed,
 * else a union of allows), then the Baseline tier, then allow. Tests compare
 * the real evaluator against it on random clusters; the benchmarks use it as
 * the naive baseline. It is not part of Weir.
 */
import type {
  ClusterNetworkPolicyObject,
  CnpPeer,
  CnpRule,
  NamespaceObject,
  NetworkPolicyObject,
  NodeObject,
  PodObject,
  PolicyPeer,
  PolicyRule,
} from '../controller/kube/objects.js';
import { NAMESPACE_NAME_LABEL } from '../controller/kube/objects.js';
import { parseCidr, parseIp, type Ip } from '../shared/net/ip.js';
import { matchesLabels } from '../shared/policy/selector.js';
import { PROTOCOL_NUMBER, type Labels, type Service } from '../shared/policy/types.js';

type Verdict = 'accept' | 'deny' | 'pass' | undefined;

export class ReferenceCluster {
  private readonly nsLabels = new Map<string, Labels>();
  private readonly byIp = new Map<Ip, PodObject>();
  private readonly nodes: readonly NodeObject[];
  private readonly admin: readonly ClusterNetworkPolicyObject[];
  private readonly baseline: readonly ClusterNetworkPolicyObject[];

  constructor(
    namespaces: readonly NamespaceObject[],
    pods: readonly PodObject[],
    private readonly policies: readonly NetworkPolicyObject[],
    more: {
      readonly nodes?: readonly NodeObject[];
      readonly clusterPolicies?: readonly ClusterNetworkPolicyObject[];
    } = {},
  ) {
    for (const n of namespaces) this.nsLabels.set(n.name, n.labels);
    for (const p of pods) {
      if (p.hostNetwork || p.phase === 'Succeeded' || p.phase === 'Failed') continue;
      for (const ip of p.ips) this.byIp.set(parseIp(ip), p);
    }
    this.nodes = more.nodes ?? [];
    const order = (a: ClusterNetworkPolicyObject, b: ClusterNetworkPolicyObject) =>
      a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const cnps = more.clusterPolicies ?? [];
    this.admin = cnps.filter((p) => p.tier === 'admin').sort(order);
    this.baseline = cnps.filter((p) => p.tier === 'baseline').sort(order);
  }

  private namespaceLabels(ns: string): Labels {
    return this.nsLabels.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  allows(src: Ip, dst: Ip, protocol: number, port: number): boolean {
    const from = this.byIp.get(src);
    const to = this.byIp.get(dst);
    if (from !== undefined && from === to) return true;
    if (from !== undefined && !this.direction(from, 'egress', to, dst, protocol, port))
      return false;
    if (to !== undefined && !this.direction(to, 'ingress', from, src, protocol, port)) return false;
    return true;
  }

  /** Whether `self`'s policies of every tier admit the peer for this direction. */
  private direction(
    self: PodObject,
    dir: 'ingress' | 'egress',
    peer: PodObject | undefined,
    peerIp: Ip,
    protocol: number,
    port: number,
  ): boolean {
    const destination = dir === 'ingress' ? self : peer;
    const a = this.tier(this.admin, self, dir, peer, peerIp, destination, protocol, port);
    if (a === 'accept') return true;
    if (a === 'deny') return false;
    const np = this.networkPolicies(self, dir, peer, peerIp, protocol, port);
    if (np !== undefined) {
      // Kubernetes: traffic to and from the node where a pod runs is always allowed (by this tier).
      const own = this.nodes.find((n) => n.name === self.node);
      return np || own?.addresses.some((x) => parseIp(x.address) === peerIp) === true;
    }
    return (
      this.tier(this.baseline, self, dir, peer, peerIp, destination, protocol, port) !== 'deny'
    );
  }

  /** The first matching rule's action among a tier's policies whose subject holds self. */
  private tier(
    policies: readonly ClusterNetworkPolicyObject[],
    self: PodObject,
    dir: 'ingress' | 'egress',
    peer: PodObject | undefined,
    peerIp: Ip,
    destination: PodObject | undefined,
    protocol: number,
    port: number,
  ): Verdict {
    for (const p of policies) {
      if (
        !matchesLabels(this.namespaceLabels(self.namespace), p.subject.namespaceSelector) ||
        !matchesLabels(self.labels, p.subject.podSelector)
      )
        continue;
      for (const r of dir === 'ingress' ? p.ingress : p.egress) {
        if (!r.peers.some((x) => this.cnpPeerMatches(x, peer, peerIp))) continue;
        if (!cnpPortsMatch(r, destination, protocol, port)) continue;
        return r.action === 'Accept' ? 'accept' : r.action === 'Deny' ? 'deny' : 'pass';
      }
    }
    return undefined;
  }

  private cnpPeerMatches(x: CnpPeer, peer: PodObject | undefined, peerIp: Ip): boolean {
    if (x.kind === 'networks') return x.cidrs.some((c) => inside(c, peerIp));
    if (x.kind === 'nodes')
      return this.nodes.some(
        (n) =>
          matchesLabels(n.labels, x.selector) &&
          n.addresses.some((a) => parseIp(a.address) === peerIp),
      );
    return (
      peer !== undefined &&
      matchesLabels(this.namespaceLabels(peer.namespace), x.namespaceSelector) &&
      matchesLabels(peer.labels, x.podSelector)
    );
  }

  /** The NetworkPolicy tier: undefined when no policy isolates self for the direction. */
  private networkPolicies(
    self: PodObject,
    dir: 'ingress' | 'egress',
    peer: PodObject | undefined,
    peerIp: Ip,
    protocol: number,
    port: number,
  ): boolean | undefined {
    const selecting = this.policies.filter(
      (p) =>
        p.namespace === self.namespace &&
        (dir === 'ingress' ? p.ingressIsolation : p.egressIsolation) &&
        matchesLabels(self.labels, p.podSelector),
    );
    if (selecting.length === 0) return undefined;
    const destination = dir === 'ingress' ? self : peer;
    return selecting.some((p) =>
      (dir === 'ingress' ? p.ingress : p.egress).some((r) =>
        this.ruleAdmits(p, r, peer, peerIp, destination, protocol, port),
      ),
    );
  }

  private ruleAdmits(
    p: NetworkPolicyObject,
    r: PolicyRule,
    peer: PodObject | undefined,
    peerIp: Ip,
    destination: PodObject | undefined,
    protocol: number,
    port: number,
  ): boolean {
    const peerOk =
      r.peers.length === 0 || r.peers.some((x) => this.peerMatches(p, x, peer, peerIp));
    const portOk =
      r.ports.length === 0 ||
      r.ports.some((s) => {
        if (PROTOCOL_NUMBER[s.protocol] !== protocol) return false;
        if (s.port.kind === 'all') return true;
        if (s.port.kind === 'range') return port >= s.port.start && port <= s.port.end;
        const name = s.port.name;
        return destination?.ports.some(
          (cp) => cp.name === name && cp.protocol === s.protocol && cp.port === port,
        );
      });
    return peerOk && portOk;
  }

  private peerMatches(
    p: NetworkPolicyObject,
    x: PolicyPeer,
    peer: PodObject | undefined,
    peerIp: Ip,
  ): boolean {
    if (x.kind === 'ipBlock')
      return inside(x.ipBlock.cidr, peerIp) && !x.ipBlock.except.some((e) => inside(e, peerIp));
    if (peer === undefined) return false;
    const nsOk =
      x.namespaceSelector === undefined
        ? peer.namespace === p.namespace
        : matchesLabels(this.namespaceLabels(peer.namespace), x.namespaceSelector);
    return nsOk && (x.podSelector === undefined || matchesLabels(peer.labels, x.podSelector));
  }
}

function inside(text: string, ip: Ip): boolean {
  const c = parseCidr(text);
  if (typeof c === 'string') throw new Error(c);
  return typeof c.start === typeof ip && ip >= c.start && ip <= c.end;
}

function cnpPortsMatch(
  r: CnpRule,
  destination: PodObject | undefined,
  protocol: number,
  port: number,
): boolean {
  if (r.protocols.length === 0) return true;
  return r.protocols.some((s: Service) => {
    if (PROTOCOL_NUMBER[s.protocol] !== protocol) return false;
    if (s.port.kind === 'all') return true;
    if (s.port.kind === 'range') return port >= s.port.start && port <= s.port.end;
    const name = s.port.name;
    return (
      destination?.ports.some(
        (cp) => cp.name === name && cp.protocol === s.protocol && cp.port === port,
      ) ?? false
    );
  });
}
