/**
 * The peer index of the cluster tiers. ClusterNetworkPolicies are few and
 * broad: a thousand of them give a pod hundreds of Admin and Baseline rules,
 * yet those rules draw their peers from a few dozen address groups (namespace
 * and pod selectors shared by every policy that names them, a handful of
 * networks). A linear first-match scan costs one prefix-set lookup per rule;
 * this index costs one address lookup per direction, whatever the number of
 * cluster policies.
 *
 *   PeerClasses: the address space cut at every range boundary of the
 *     indexed peer sets into elementary intervals; intervals that lie in the
 *     same sets share a class. classOf(address) is one binary search.
 *   ClassIndex (one per rule list): per class, the positions of the rules
 *     whose peer holds the class, ascending; the rules whose peer is any
 *     address, ascending.
 *
 * The first match of a list for (peer, protocol, port, destination) is the
 * lowest position among the any-peer rules and the rules of the peer's class
 * whose ports admit the packet: exactly what the linear scan finds, since a
 * rule's peer holds an address if and only if it holds the address's class.
 * The native evaluator (vrouter-agent/native/src/rule_eval.cc) builds the
 * same index from the rule image at load; the differential tests check both
 * against the linear scan and the reference reading.
 *
 * Bounded: building stops (and the lists stay linear) when the classes or the
 * per-list candidates would exceed CLASS_INDEX_BUDGET entries.
 */
import type { Ip } from '../net/ip.js';
import type { PrefixSet } from '../net/prefix-set.js';

/** Classes times lists plus candidates, summed over one compile, at most this many entries. */
export const CLASS_INDEX_BUDGET = 1 << 24;

const MAX_V4 = 0xffff_ffff;
const MAX_V6 = (1n << 128n) - 1n;

export class PeerClasses {
  private constructor(
    /** v4 interval starts, ascending, starting at 0; interval j ends where j + 1 starts. */
    private readonly starts4: Float64Array,
    private readonly classes4: Int32Array,
    private readonly starts6: readonly bigint[],
    private readonly classes6: Int32Array,
    /** Per class: the indices (into the sets it was built from) of the sets holding it, ascending. */
    readonly members: readonly Int32Array[],
  ) {}

  /** Number of classes (class 0: in none of the sets). */
  get count(): number {
    return this.members.length;
  }

  /** The class of an address. */
  classOf(ip: Ip): number {
    if (typeof ip === 'number') return this.classes4[upper(this.starts4, ip) - 1]!;
    const s = this.starts6;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid]! <= ip) lo = mid + 1;
      else hi = mid;
    }
    return this.classes6[lo - 1]!;
  }

  /** The classes of `sets`; undefined when there would be more than `budget`. */
  static of(sets: readonly PrefixSet[], budget = CLASS_INDEX_BUDGET): PeerClasses | undefined {
    const ids = new Map<string, number>([['', 0]]);
    const members: Int32Array[] = [new Int32Array(0)];
    const ranges = sets.map((s) => s.ranges());
    const sweep = <A extends number | bigint>(
      of: (r: { v4: readonly number[]; v6: readonly bigint[] }) => readonly A[],
      zero: A,
      max: A,
      next: (a: A) => A,
    ): { starts: A[]; classes: number[] } | undefined => {
      const events: Array<[A, number]> = []; // (address, set + 1 entering | -(set + 1) leaving)
      ranges.forEach((r, s) => {
        const v = of(r);
        for (let i = 0; i < v.length; i += 2) {
          events.push([v[i]!, s + 1]);
          if (v[i + 1]! !== max) events.push([next(v[i + 1]!), -(s + 1)]);
        }
      });
      events.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
      const active = new Set<number>();
      const starts: A[] = [zero];
      const classes: number[] = [0];
      for (let i = 0; i < events.length; ) {
        const at = events[i]![0];
        for (; i < events.length && events[i]![0] === at; i++) {
          const e = events[i]![1];
          if (e > 0) active.add(e - 1);
          else active.delete(-e - 1);
        }
        const sorted = Int32Array.from(active).sort();
        const key = sorted.join(',');
        let c = ids.get(key);
        if (c === undefined) {
          if (ids.size >= budget) return undefined;
          c = ids.size;
          ids.set(key, c);
          members.push(sorted);
        }
        if (starts[starts.length - 1] === at) classes[classes.length - 1] = c;
        else {
          starts.push(at);
          classes.push(c);
        }
      }
      return { starts, classes };
    };
    const v4 = sweep<number>(
      (r) => r.v4,
      0,
      MAX_V4,
      (a) => a + 1,
    );
    const v6 =
      v4 &&
      sweep<bigint>(
        (r) => r.v6,
        0n,
        MAX_V6,
        (a) => a + 1n,
      );
    if (v4 === undefined || v6 === undefined) return undefined;
    return new PeerClasses(
      Float64Array.from(v4.starts),
      Int32Array.from(v4.classes),
      v6.starts,
      Int32Array.from(v6.classes),
      members,
    );
  }
}

/** The first position in `starts` holding a value greater than `a` (starts[0] = 0 <= a). */
function upper(starts: Float64Array, a: number): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid]! <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One rule list's index over PeerClasses (see the top of this file). */
export interface ClassIndex {
  readonly classes: PeerClasses;
  /** Per class: positions of the rules whose peer holds it, ascending (classes alike share one array). */
  readonly byClass: readonly Int32Array[];
  /** Positions of the rules whose peer is any address, ascending. */
  readonly anyPeer: Int32Array;
  /** Entries this index holds (byClass length and distinct candidate arrays), for the budget. */
  readonly size: number;
}

/**
 * The index of a list whose peers are `peers` in list order (null: any
 * address), each non-null one among the sets `classes` was built from
 * (`setOf` gives its index there).
 */
export function classIndex(
  classes: PeerClasses,
  peers: readonly (PrefixSet | null)[],
  setOf: (s: PrefixSet) => number,
): ClassIndex {
  const anyPeer: number[] = [];
  // Positions by set index (the sets `classes` was built from); most sets are not in a given list.
  const bySet: number[][] = [];
  peers.forEach((p, i) => {
    if (p === null) {
      anyPeer.push(i);
      return;
    }
    const s = setOf(p);
    const list = bySet[s];
    if (list === undefined) bySet[s] = [i];
    else list.push(i);
  });
  // Classes in the same sets of this list have the same positions: found by a hash of those
  // sets, then compared; the positions are gathered once per distinct set of sets.
  const known = new Map<number, Array<{ sets: Int32Array; positions: Int32Array }>>();
  let size = classes.count;
  const mine = new Int32Array(classes.members.reduce((n, m) => Math.max(n, m.length), 0));
  const byClass = classes.members.map((sets) => {
    let n = 0;
    let hash = 0;
    for (let k = 0; k < sets.length; k++)
      if (bySet[sets[k]!] !== undefined) {
        mine[n++] = sets[k]!;
        hash = Math.imul(hash ^ sets[k]!, 0x01000193);
      }
    const these = mine.subarray(0, n);
    const candidates = known.get(hash);
    for (const c of candidates ?? []) if (equal(c.sets, these)) return c.positions;
    const gathered: number[] = [];
    for (const s of these) for (const i of bySet[s]!) gathered.push(i);
    const positions = Int32Array.from(gathered).sort();
    const entry = { sets: these.slice(), positions };
    if (candidates === undefined) known.set(hash, [entry]);
    else candidates.push(entry);
    size += positions.length;
    return positions;
  });
  return { classes, byClass, anyPeer: Int32Array.from(anyPeer), size };
}

function equal(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
