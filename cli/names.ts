import type { Json } from './output.js';

/** A policy's name as weirctl prints it: namespace/name, or cnp/name for a ClusterNetworkPolicy. */
export function policyName(p: { [k: string]: Json | undefined }): string {
  return p.kind === 'ClusterNetworkPolicy' ? `cnp/${p.name}` : `${p.namespace}/${p.name}`;
}
