/**
 * What the generated policies contain, counted on the validated objects, so
 * that the report shows the mix the numbers were measured on.
 */
import type { NetworkPolicyObject, PolicyPeer } from '../controller/kube/objects.js';

export interface PolicyMix {
  readonly policies: number;
  readonly ingressIsolating: number;
  readonly egressIsolating: number;
  /** Isolating with no rules at all (default deny). */
  readonly denyOnly: number;
  readonly rules: number;
  readonly allowAllRules: number;
  readonly peers: number;
  readonly podSelectorPeers: number;
  readonly namespaceSelectorPeers: number;
  readonly namespaceMatchExpressions: number;
  readonly combinedPeers: number;
  readonly emptyNamespaceSelector: number;
  readonly ipBlockPeers: number;
  readonly ipBlockWithExcept: number;
  readonly namedPorts: number;
  readonly numericPorts: number;
  readonly portRanges: number;
  readonly udp: number;
  readonly sctp: number;
}

export function policyMix(policies: readonly NetworkPolicyObject[]): PolicyMix {
  const m = {
    policies: policies.length,
    ingressIsolating: 0,
    egressIsolating: 0,
    denyOnly: 0,
    rules: 0,
    allowAllRules: 0,
    peers: 0,
    podSelectorPeers: 0,
    namespaceSelectorPeers: 0,
    namespaceMatchExpressions: 0,
    combinedPeers: 0,
    emptyNamespaceSelector: 0,
    ipBlockPeers: 0,
    ipBlockWithExcept: 0,
    namedPorts: 0,
    numericPorts: 0,
    portRanges: 0,
    udp: 0,
    sctp: 0,
  };
  const peer = (p: PolicyPeer) => {
    m.peers++;
    if (p.kind === 'ipBlock') {
      m.ipBlockPeers++;
      if (p.ipBlock.except.length > 0) m.ipBlockWithExcept++;
      return;
    }
    if (p.namespaceSelector === undefined) m.podSelectorPeers++;
    else {
      m.namespaceSelectorPeers++;
      if (p.namespaceSelector.requirements.length === 0) m.emptyNamespaceSelector++;
      if (p.namespaceSelector.requirements.some((r) => r.operator !== 'In' || r.values.length > 1))
        m.namespaceMatchExpressions++;
      if (p.podSelector !== undefined) m.combinedPeers++;
    }
  };
  for (const np of policies) {
    if (np.ingressIsolation) m.ingressIsolating++;
    if (np.egressIsolation) m.egressIsolating++;
    const rules = [
      ...(np.ingressIsolation ? np.ingress : []),
      ...(np.egressIsolation ? np.egress : []),
    ];
    if (rules.length === 0) m.denyOnly++;
    for (const r of rules) {
      m.rules++;
      if (r.peers.length === 0 && r.ports.length === 0) m.allowAllRules++;
      r.peers.forEach(peer);
      for (const s of r.ports) {
        if (s.port.kind === 'named') m.namedPorts++;
        else if (s.port.kind === 'range' && s.port.end > s.port.start) m.portRanges++;
        else if (s.port.kind === 'range') m.numericPorts++;
        if (s.protocol === 'UDP') m.udp++;
        if (s.protocol === 'SCTP') m.sctp++;
      }
    }
  }
  return m;
}
