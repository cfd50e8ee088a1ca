/**
 * A small seeded pseudo-random generator (mulberry32): the same sequence for
 * the same seed on every run and machine. For generated traffic, randomised
 * tests and benchmark inputs (testing/), never for anything secret. Every
 * method draws from the one sequence, so the order of calls is part of what
 * a seed produces.
 */
export interface SeededRandom {
  /** Uniform integer in [0, 2^32). */
  u32(): number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  /** One item by weight: [[item, weight], ...]. */
  weighted<T>(items: ReadonlyArray<readonly [T, number]>): T;
  /** k distinct items (fewer if the list is shorter), in random order. */
  sample<T>(xs: readonly T[], k: number): T[];
}

export function seededRandom(seed: number): SeededRandom {
  let a = seed >>> 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => u32() / 4294967296;
  const int = (n: number) => Math.floor(next() * n);
  return {
    u32,
    next,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    chance: (p: number) => next() < p,
    weighted: <T>(items: ReadonlyArray<readonly [T, number]>): T => {
      let total = 0;
      for (const [, w] of items) total += w;
      let x = next() * total;
      for (const [item, w] of items) {
        x -= w;
        if (x < 0) return item;
      }
      return items[items.length - 1]![0];
    },
    sample: <T>(xs: readonly T[], k: number): T[] => {
      const rest = [...xs];
      const out: T[] = [];
      while (out.length < k && rest.length > 0) out.push(rest.splice(int(rest.length), 1)[0]!);
      return out;
    },
  };
}
