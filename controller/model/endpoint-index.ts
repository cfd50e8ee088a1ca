/**
 * Resolves endpoint selectors to endpoints without scanning the cluster:
 * namespaces and pods are indexed by label (key=value and key), and each
 * selector starts from the smallest candidate set its requirements allow.
 */
import { matchesLabels } from '../../shared/policy/selector.js';
import { endpointKey, type Endpoint, type EndpointSelector, type LabelSelector, type Labels } from '../../shared/policy/types.js';

class LabelIndex<T> {
  private readonly byPair = new Map<string, T[]>();
  private readonly byKey = new Map<string, T[]>();
  readonly all: T[] = [];

  add(item: T, labels: Labels): void {
    this.all.push(item);
    for (const [k, v] of Object.entries(labels)) {
      push(this.byPair, `${k}\u0000${v}`, item);
      push(this.byKey, k, item);
    }
  }

  /** The smallest list that must contain every match of the selector. */
  candidates(selector: LabelSelector): readonly T[] {
    let best: readonly T[] = this.all;
    for (const r of selector.requirements) {
      let list: readonly T[] | undefined;
      if (r.operator === 'Exists') list = this.byKey.get(r.key) ?? [];
      else if (r.operator === 'In' && r.values.length === 1) list = this.byPair.get(`${r.key}\u0000${r.values[0]}`) ?? [];
      else if (r.operator === 'In') list = r.values.flatMap((v) => this.byPair.get(`${r.key}\u0000${v}`) ?? []);
      if (list !== undefined && list.length < best.length) best = list;
    }
    return best;
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list === undefined) m.set(k, [v]);
  else list.push(v);
}

export class EndpointIndex {
  private readonly namespaces = new LabelIndex<{ name: string; labels: Labels }>();
  private readonly pods = new LabelIndex<Endpoint>();
  private readonly byNamespace = new Map<string, Endpoint[]>();

  constructor(namespaces: Iterable<{ name: string; labels: Labels }>, endpoints: Iterable<Endpoint>) {
    for (const ns of namespaces) this.namespaces.add(ns, ns.labels);
    for (const e of endpoints) {
      this.pods.add(e, e.labels);
      push(this.byNamespace, e.namespace, e);
    }
  }

  /** Endpoints the selector matches, sorted by key. */
  resolve(s: EndpointSelector): Endpoint[] {
    let namespaces: string[];
    if ('name' in s.namespace) namespaces = [s.namespace.name];
    else {
      const sel = s.namespace.selector;
      namespaces = this.namespaces.candidates(sel).filter((ns) => matchesLabels(ns.labels, sel)).map((ns) => ns.name);
    }
    const viaNamespaces = namespaces.reduce((n, ns) => n + (this.byNamespace.get(ns)?.length ?? 0), 0);
    const viaLabels = this.pods.candidates(s.pods);
    let out: Endpoint[];
    if (viaLabels.length < viaNamespaces) {
      const wanted = new Set(namespaces);
      out = viaLabels.filter((e) => wanted.has(e.namespace) && matchesLabels(e.labels, s.pods));
    } else {
      out = namespaces.flatMap((ns) => (this.byNamespace.get(ns) ?? []).filter((e) => matchesLabels(e.labels, s.pods)));
    }
    const unique = [...new Set(out)];
    return unique.sort((a, b) => cmp(endpointKey(a), endpointKey(b)));
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
