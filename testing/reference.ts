/**
 * A reference reading of Kubernetes NetworkPolicy semantics, written straight
 * from the API documentation over validated objects: no groups, no prefix
 * sets, no compilation, a scan of every policy per question. Tests compare
 * the real evaluator against it on random clusters; the benchmarks use it as
 * the naive baseline. It is not part of Weir.
 */
import type {
  NamespaceObject,
  NetworkPolicyObject,
  PodObject,
  PolicyPeer,
  PolicyRule,
} from '../controller/kube/objects.js';
import { NAMESPACE_NAME_LABEL } from '../controller/kube/objects.js';
import { parseCidr, parseIp, type Ip } from '../shared/net/ip.js';
import { matchesLabels } from '../shared/policy/selector.js';
import { PROTOCOL_NUMBER, type Labels } from '../shared/policy/types.js';

export class ReferenceCluster {
  private readonly nsLabels = new Map<string, Labels>();
  private readonly byIp = new Map<Ip, PodObject>();

  constructor(
    namespaces: readonly NamespaceObject[],
    pods: readonly PodObject[],
    private readonly policies: readonly NetworkPolicyObject[],
  ) {
    for (const n of namespaces) this.nsLabels.set(n.name, n.labels);
    for (const p of pods) {
      if (p.hostNetwork || p.phase === 'Succeeded' || p.phase === 'Failed') continue;
      for (const ip of p.ips) this.byIp.set(parseIp(ip), p);
    }
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

  /** Whether `self`'s policies for this direction admit the peer. `to` of the packet is self for ingress, peer for egress. */
  private direction(
    self: PodObject,
    dir: 'ingress' | 'egress',
    peer: PodObject | undefined,
    peerIp: Ip,
    protocol: number,
    port: number,
  ): boolean {
    const selecting = this.policies.filter(
      (p) =>
        p.namespace === self.namespace &&
        (dir === 'ingress' ? p.ingressIsolation : p.egressIsolation) &&
        matchesLabels(self.labels, p.podSelector),
    );
    if (selecting.length === 0) return true;
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
    if (x.kind === 'ipBlock') {
      const inside = (text: string) => {
        const c = parseCidr(text);
        if (typeof c === 'string') throw new Error(c);
        return typeof c.start === typeof peerIp && peerIp >= c.start && peerIp <= c.end;
      };
      return inside(x.ipBlock.cidr) && !x.ipBlock.except.some(inside);
    }
    if (peer === undefined) return false;
    const nsOk =
      x.namespaceSelector === undefined
        ? peer.namespace === p.namespace
        : matchesLabels(this.namespaceLabels(peer.namespace), x.namespaceSelector);
    return nsOk && (x.podSelector === undefined || matchesLabels(peer.labels, x.podSelector));
  }
}
