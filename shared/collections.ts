/** Multimap helpers: a Map of Sets that drops empty sets. */
export function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s === undefined) m.set(k, new Set([v]));
  else s.add(v);
}

export function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (s === undefined) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/** String order for sort(): equal strings compare 0. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Memoizes a pure function of a key, keeping at most `max` entries (the
 * oldest go first), so that a long-running process cannot grow it without
 * bound.
 */
export class BoundedCache<K, V> {
  private readonly entries = new Map<K, V>();
  constructor(private readonly max: number) {}

  get(key: K, compute: () => V): V {
    let v = this.entries.get(key);
    if (v === undefined) {
      v = compute();
      this.entries.set(key, v);
      if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as K);
    }
    return v;
  }
}
