/**
 * The federation without a hub: what one member's exporter would write
 * for its model, and what another member's importer would make of it, as
 * plain functions. Offline analysis (`weirctl analyze --cluster NAME` over
 * several clusters' manifests) builds each member's view with these, so it
 * goes through the same entry values and the same validation as the
 * running system, and decides the same.
 *
 *   const events = importEvents(exportedEntries(modelOfB)).events;
 *   for (const e of events) modelOfA.apply(e);
 */
import type { ClusterModel, FederationModelEvent } from '../model/cluster-model.js';
import { endpointEntry, entryKey, namespaceEntry, policyEntry, readEntry } from './entries.js';
import type { EntryRef } from './link.js';

export interface Entry {
  readonly ref: EntryRef;
  readonly value: unknown;
}

/** Every entry a member's exporter writes for this model now (but its report), sorted by key. */
export function exportedEntries(model: ClusterModel): Entry[] {
  const cluster = model.cluster;
  const out: Entry[] = [];
  for (const ns of model.localNamespaces())
    out.push({
      ref: { kind: 'ns', cluster, name: ns.name },
      value: namespaceEntry(cluster, ns.name, ns.labels),
    });
  for (const e of model.endpoints())
    out.push({
      ref: { kind: 'ep', cluster, name: `${e.namespace}/${e.name}` },
      value: endpointEntry(cluster, e),
    });
  for (const p of model.federatedPolicies())
    out.push({ ref: { kind: 'cnp', cluster, name: p.name }, value: policyEntry(cluster, p) });
  // Through JSON, as the hub holds bytes.
  return out
    .map((x) => ({ ref: x.ref, value: JSON.parse(JSON.stringify(x.value)) as unknown }))
    .sort((a, b) => (entryKey(a.ref) < entryKey(b.ref) ? -1 : 1));
}

/** The model events an importer makes of entries, and the entries it refuses (key, problems). */
export function importEvents(entries: readonly Entry[]): {
  events: FederationModelEvent[];
  rejected: Array<{ key: string; problems: string[] }>;
} {
  const events: FederationModelEvent[] = [];
  const rejected: Array<{ key: string; problems: string[] }> = [];
  for (const { ref, value } of entries) {
    const r = readEntry(ref, value);
    if (!r.ok) {
      rejected.push({ key: entryKey(ref), problems: r.problems });
      continue;
    }
    const v = r.value;
    if (v.kind === 'ns')
      events.push({
        type: 'remote-namespace',
        cluster: ref.cluster,
        name: v.name,
        labels: v.labels,
      });
    else if (v.kind === 'ep') events.push({ type: 'remote-endpoint', endpoint: v.endpoint });
    else if (v.kind === 'cnp')
      events.push({ type: 'imported-policy', origin: ref.cluster, object: v.object });
  }
  return { events, rejected };
}
