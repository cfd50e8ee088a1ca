/** Nodes as Weir reads them: their labels and the addresses traffic to and from them uses. */
import type { Labels } from '../../shared/policy/types.js';
import type { Reader } from './common.js';

/** A node address Weir reads: the ones traffic between a pod and its node comes from or goes to. */
export interface NodeAddress {
  readonly type: 'InternalIP' | 'ExternalIP';
  /** Normalised text (RFC 5952 for IPv6). */
  readonly address: string;
}

export interface NodeObject {
  readonly kind: 'Node';
  readonly name: string;
  readonly uid: string;
  /** metadata.labels, for cluster-scoped policy tiers (ClusterNetworkPolicy `nodes` peers). */
  readonly labels: Labels;
  /**
   * status.addresses of type InternalIP and ExternalIP, in the order given,
   * without repeats. Hostname, InternalDNS and ExternalDNS are names, not
   * addresses, and are left out.
   */
  readonly addresses: readonly NodeAddress[];
}

export function readNode(r: Reader, raw: Record<string, unknown>): NodeObject | undefined {
  const meta = r.metadata(raw, 'Node', false);
  if (meta === undefined) return undefined;
  const status = r.record(raw.status, 'status') ?? {};
  const addresses: NodeAddress[] = [];
  (r.array(status.addresses, 'status.addresses') ?? []).forEach((a, i) => {
    const f = `status.addresses[${i}]`;
    const rec = r.record(a, f);
    if (rec === undefined) return;
    const type = r.string(rec.type, `${f}.type`);
    const text = r.string(rec.address, `${f}.address`);
    if (type === undefined || type === '') r.issue(`${f}.type`, 'required');
    // Other types (Hostname, InternalDNS, ExternalDNS) are names, not addresses.
    else if (type === 'InternalIP' || type === 'ExternalIP') {
      const ip = r.address(text, `${f}.address`);
      if (ip !== undefined && !addresses.some((x) => x.address === ip))
        addresses.push({ type, address: ip });
    }
  });
  return { kind: 'Node', name: meta.name, uid: meta.uid, labels: meta.labels, addresses };
}
