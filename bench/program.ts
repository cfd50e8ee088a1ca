/**
 * The real controller program as a benchmark drives it: `bin/weir-controller`
 * spawned as a process, its JSON log lines collected, its CPU time and
 * memory read from /proc. Shared by the benchmarks that time the programs
 * rather than the code in-process (manifests.ts, controller-scale.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CLOCK_TICKS_PER_SECOND = 100;

export interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly [k: string]: unknown;
}

/** A process's CPU time (user + system) in ms, from /proc/PID/stat. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_SECOND) * 1000;
  } catch {
    return undefined;
  }
}

/** A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB. */
export function processMemoryMiB(pid: number, which: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`${which}:\\s+(\\d+) kB`).exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Warns when a checkout's build (what bin/ runs) is missing or older than its sources. */
export function checkBuild(label: string, checkout: string): void {
  const stamp = join(checkout, 'dist', '.build-stamp');
  if (!existsSync(stamp))
    process.stderr.write(`${label}: ${checkout} has no build (npm run build): timing tsx\n`);
  else if (
    statSync(stamp).mtimeMs < statSync(join(checkout, 'controller', 'controller.ts')).mtimeMs
  )
    process.stderr.write(`${label}: the build in ${checkout} may be stale (npm run build)\n`);
}

/** A spawned controller: its log, and a way to wait for a line. */
export class ControllerProcess {
  readonly lines: LogLine[] = [];
  readonly startedAt = Date.now();
  private buffered = '';

  private constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('utf8');
      let nl = this.buffered.indexOf('\n');
      while (nl >= 0) {
        const text = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(text) as LogLine);
        } catch {
          // not a log line
        }
        nl = this.buffered.indexOf('\n');
      }
    });
  }

  /** `bin/weir-controller` of `checkout` with `args`, logging at info. */
  static start(
    checkout: string,
    args: readonly string[],
    nodeOptions: readonly string[] = [],
  ): ControllerProcess {
    const bin = join(checkout, 'bin', 'weir-controller');
    return new ControllerProcess(
      spawn(process.execPath, [...nodeOptions, bin, ...args, '--log-level', 'info'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The first line from index `since` on that `pred` accepts, within `timeoutMs`. */
  async waitFor(
    pred: (l: LogLine) => boolean,
    timeoutMs: number,
    since = 0,
  ): Promise<LogLine | undefined> {
    const end = Date.now() + timeoutMs;
    let from = since;
    while (Date.now() < end && !this.exited) {
      for (; from < this.lines.length; from++) if (pred(this.lines[from]!)) return this.lines[from];
      await sleep(5);
    }
    return undefined;
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      this.child.on('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
