/**
 * A set of addresses stored as sorted, disjoint, non-adjacent ranges, one
 * array per family; membership is a binary search. This is what rule tables
 * hold for an address group: a /8 with a thousand excepts or ten thousand pod
 * addresses cost the same handful of comparisons per lookup.
 */
import { type Ip, type Cidr, formatIp } from './ip.js';

export class PrefixSet {
  static readonly EMPTY = new PrefixSet(new Float64Array(0), []);

  /** v4 ranges as [start0, end0, start1, end1, ...] (Float64 holds 0 .. 2^32-1 exactly). */
  private readonly v4: Float64Array;
  /** v6 ranges, same layout. */
  private readonly v6: readonly bigint[];

  private constructor(v4: Float64Array, v6: readonly bigint[]) {
    this.v4 = v4;
    this.v6 = v6;
  }

  /** Builds a set from addresses and CIDRs in any order; overlaps merge. */
  static from(items: Iterable<Ip | Cidr>): PrefixSet {
    const v4: Array<[number, number]> = [];
    const v6: Array<[bigint, bigint]> = [];
    for (const item of items) {
      if (typeof item === 'number') v4.push([item, item]);
      else if (typeof item === 'bigint') v6.push([item, item]);
      else if (item.family === 4) v4.push([item.start as number, item.end as number]);
      else v6.push([item.start as bigint, item.end as bigint]);
    }
    if (v4.length === 0 && v6.length === 0) return PrefixSet.EMPTY;
    return new PrefixSet(Float64Array.from(merge(v4, 1)), merge(v6, 1n));
  }

  has(ip: Ip): boolean {
    if (typeof ip === 'number') {
      const r = this.v4;
      let lo = 0;
      let hi = (r.length >> 1) - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (ip < r[mid * 2]!) hi = mid - 1;
        else if (ip > r[mid * 2 + 1]!) lo = mid + 1;
        else return true;
      }
      return false;
    }
    const r = this.v6;
    let lo = 0;
    let hi = (r.length >> 1) - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ip < r[mid * 2]!) hi = mid - 1;
      else if (ip > r[mid * 2 + 1]!) lo = mid + 1;
      else return true;
    }
    return false;
  }

  get isEmpty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  /** Whether `o` holds exactly the same addresses. */
  equals(o: PrefixSet): boolean {
    if (o === this) return true;
    if (o.v4.length !== this.v4.length || o.v6.length !== this.v6.length) return false;
    for (let i = 0; i < this.v4.length; i++) if (o.v4[i] !== this.v4[i]) return false;
    for (let i = 0; i < this.v6.length; i++) if (o.v6[i] !== this.v6[i]) return false;
    return true;
  }

  /** Number of disjoint ranges held. */
  get rangeCount(): number {
    return (this.v4.length + this.v6.length) / 2;
  }

  /** The ranges as [first, last, first, last, ...] per family: ascending, disjoint, inclusive. */
  ranges(): { readonly v4: readonly number[]; readonly v6: readonly bigint[] } {
    return { v4: Array.from(this.v4), v6: this.v6 };
  }

  /** The ranges as text, "a" for single addresses and "a-b" otherwise. */
  describe(): string[] {
    const out: string[] = [];
    const push = (s: Ip, e: Ip) =>
      out.push(s === e ? formatIp(s) : `${formatIp(s)}-${formatIp(e)}`);
    for (let i = 0; i < this.v4.length; i += 2) push(this.v4[i]!, this.v4[i + 1]!);
    for (let i = 0; i < this.v6.length; i += 2) push(this.v6[i]!, this.v6[i + 1]!);
    return out;
  }
}

function merge<T extends number | bigint>(ranges: Array<[T, T]>, one: T): T[] {
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: T[] = [];
  for (const [start, end] of ranges) {
    const last = out.length - 1;
    // Merge overlapping and adjacent ranges (end + 1 === start).
    if (last > 0 && start <= (out[last] as T as number) + (one as number)) {
      if (end > out[last]!) out[last] = end;
    } else {
      out.push(start, end);
    }
  }
  return out;
}
