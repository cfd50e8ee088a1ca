/** Namespaces as Weir reads them. */
import type { Labels } from '../../shared/policy/types.js';
import type { Reader } from './common.js';

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export interface NamespaceObject {
  readonly kind: 'Namespace';
  readonly name: string;
  readonly uid: string;
  /** Includes kubernetes.io/metadata.name, as the API server sets it. */
  readonly labels: Labels;
}

export function readNamespace(
  r: Reader,
  raw: Record<string, unknown>,
): NamespaceObject | undefined {
  const meta = r.metadata(raw, 'Namespace', false);
  if (meta === undefined) return undefined;
  // The API server sets this label on every namespace and no one can change it.
  return {
    kind: 'Namespace',
    name: meta.name,
    uid: meta.uid,
    labels: { ...meta.labels, [NAMESPACE_NAME_LABEL]: meta.name },
  };
}
