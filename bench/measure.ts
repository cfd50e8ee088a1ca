/**
 * Timing and memory helpers for the benchmarks.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

/** Milliseconds from a monotonic clock (performance.now(): the time base of GC entries). */
export function nowMs(): number {
  return performance.now();
}

/**
 * Records the main thread's garbage-collection pauses (perf_hooks 'gc'
 * entries), so that a timed interval can be split into GC and the rest.
 * Entries arrive asynchronously: call `settle()` (await) before asking.
 */
export class GcMonitor {
  private readonly pauses: Array<{ start: number; duration: number }> = [];
  private readonly observer: PerformanceObserver;

  constructor() {
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries())
        this.pauses.push({ start: e.startTime, duration: e.duration });
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** Lets pending entries be delivered. */
  async settle(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }

  /** Total pause time of collections that started within [from, to). */
  pausedIn(from: number, to: number): number {
    let t = 0;
    for (const p of this.pauses) if (p.start >= from && p.start < to) t += p.duration;
    return t;
  }

  /** Forgets entries (they accumulate otherwise). */
  clear(): void {
    this.pauses.length = 0;
  }

  stop(): void {
    this.observer.disconnect();
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The p-th percentile (nearest rank) of unsorted values; NaN for none. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

export function min(xs: readonly number[]): number {
  return xs.reduce((a, b) => Math.min(a, b), Infinity);
}

export function max(xs: readonly number[]): number {
  return xs.reduce((a, b) => Math.max(a, b), -Infinity);
}

/**
 * A way to force a full garbage collection: global.gc when node runs with
 * --expose-gc, otherwise the same function obtained by setting the flag at
 * run time and reading `gc` from a fresh V8 context (the flag takes effect for
 * contexts created after it is set). Undefined when neither works; callers
 * then fall back to plain heapUsed deltas.
 */
export function acquireGc(): (() => void) | undefined {
  const existing = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') return existing as () => void;
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn: unknown = vm.runInNewContext('gc');
    if (typeof fn === 'function') return fn as () => void;
  } catch {
    // fall through
  }
  return undefined;
}

export function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

/** Peak resident set size of the process so far, in bytes. */
export function maxRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

export function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 100) return `${x.toFixed(0)} ms`;
  if (x >= 10) return `${x.toFixed(1)} ms`;
  return `${x.toFixed(2)} ms`;
}

/** A rate per second, with a unit suffix. */
export function rate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return '-';
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} k/s`;
  return `${perSecond.toFixed(0)} /s`;
}

export function ns(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} ms`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} µs`;
  return `${x.toFixed(0)} ns`;
}

export function int(n: number): string {
  return n.toLocaleString('en-US');
}

/** Renders rows as an aligned text table; the first row is the header. Numbers-looking cells align right. */
export function table(rows: ReadonlyArray<readonly string[]>): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  const right = (c: string) => /^[-+~]?[0-9.,]+/.test(c) || c === '-';
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (right(c) && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const [head, ...rest] = rows;
  if (head === undefined) return '';
  return [
    `  ${line(head)}`,
    `  ${widths.map((w) => '-'.repeat(w)).join('  ')}`,
    ...rest.map((r) => `  ${line(r)}`),
  ].join('\n');
}

/**
 * CPU used by everything else on the machine while a section ran: the
 * machine's busy time (/proc/stat) minus this process's own CPU time. On a
 * shared machine this says how far to trust the numbers; undefined where
 * /proc/stat is unavailable.
 */
export class MachineLoad {
  private readonly wall0 = nowMs();
  private readonly machine0 = machineBusySeconds();
  private readonly self0 = process.cpuUsage();

  /** Average number of CPUs kept busy by other processes since construction. */
  otherCpus(): number | undefined {
    const m1 = machineBusySeconds();
    if (m1 === undefined || this.machine0 === undefined) return undefined;
    const self = process.cpuUsage(this.self0);
    const own = (self.user + self.system) / 1e6;
    const wall = (nowMs() - this.wall0) / 1000;
    return wall > 0 ? Math.max(0, (m1 - this.machine0 - own) / wall) : undefined;
  }
}

const CLOCK_TICKS_PER_SECOND = 100;

function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** The CPU model, for the report's machine line. */
export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) return m[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}
