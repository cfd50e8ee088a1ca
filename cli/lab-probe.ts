/**
 * Real connections between the lab's pods: a prober (lab-prober.mjs) in
 * every pod netns serves the probed ports and connects to every pod on each
 * of them, in every address family the pair shares, all at once. The result
 * is a Matrix in exactly the shape `weirctl analyze matrix -o json` prints
 * (cli/analysis.ts), so that the two compare cell by cell.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '../shared/errors.js';
import type { Probe } from '../shared/policy/probe.js';
import type { Matrix } from './analysis.js';
import { isIpv6 } from './lab-net.js';
import type { LabState } from './lab-state.js';

export const DEFAULT_PROBE_TIMEOUT_MS = 2_000;
/** How long probers get to start and bind, each. */
const START_TIMEOUT_MS = 20_000;

type Family = 'IPv4' | 'IPv6';

export interface Observed {
  readonly matrix: Matrix;
  /** Probes not run, with why (SCTP: no sockets here). */
  readonly skipped: readonly string[];
  /** Why each failed connection failed: "TCP/80 x/a -> y/b IPv4: timeout". */
  readonly failures: readonly string[];
}

function proberPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 3; i++) {
    for (const p of [join(dir, 'lab-prober.mjs'), join(dir, 'cli', 'lab-prober.mjs')])
      if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new UnavailableError('cannot find cli/lab-prober.mjs beside weirctl');
}

const familyOf = (ip: string): Family => (isIpv6(ip) ? 'IPv6' : 'IPv4');

/** The first address of each family: what the analysis probes (shared/policy/probe.ts). */
function byFamily(ips: readonly string[]): Map<Family, string> {
  const m = new Map<Family, string>();
  for (const ip of ips) if (!m.has(familyOf(ip))) m.set(familyOf(ip), ip);
  return m;
}

interface Prober {
  readonly child: ChildProcess;
  readonly lines: AsyncIterator<Record<string, unknown>>;
}

function startProber(netns: string, job: unknown): Prober {
  const child = spawn(
    'ip',
    ['netns', 'exec', netns, process.execPath, proberPath(), JSON.stringify(job)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
  const queue: Array<Record<string, unknown>> = [];
  const waiting: Array<(v: IteratorResult<Record<string, unknown>>) => void> = [];
  let buf = '';
  let ended = false;
  const push = (v: Record<string, unknown>) => {
    const w = waiting.shift();
    if (w) w({ value: v, done: false });
    else queue.push(v);
  };
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        push({ error: `unreadable line from the prober: ${line.slice(0, 200)}` });
      }
    }
  });
  child.on('exit', (code, signal) => {
    ended = true;
    if (queue.length === 0 && waiting.length > 0)
      push({
        error: `prober in ${netns} exited (${signal ?? code})${err ? `: ${err.trim()}` : ''}`,
      });
  });
  child.on('error', (e) => push({ error: `cannot start the prober in ${netns}: ${e.message}` }));
  const lines: AsyncIterator<Record<string, unknown>> = {
    next: () =>
      new Promise((resolve) => {
        const v = queue.shift();
        if (v !== undefined) resolve({ value: v, done: false });
        else if (ended)
          resolve({
            value: { error: `prober in ${netns} exited${err ? `: ${err.trim()}` : ''}` },
            done: false,
          });
        else waiting.push(resolve);
      }),
  };
  return { child, lines };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new UnavailableError(`${what} within ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/**
 * Probes every pod to every pod on every probe. A cell is allowed when the
 * connection carried data both ways in every family the pair shares (as the
 * analysis decides: allowed only when every shared family allows), and
 * `families` lists the pairs whose families disagree or share none.
 */
export async function probeLab(
  state: LabState,
  probes: readonly Probe[],
  options: { timeoutMs?: number } = {},
): Promise<Observed> {
  const skipped: string[] = [];
  const runnable = probes.filter((p) => {
    if (p.protocol !== 'SCTP') return true;
    skipped.push(
      `${p.protocol}/${p.port}: not probed: Node.js has no SCTP sockets (and this kernel has none: CONFIG_IP_SCTP is unset)`,
    );
    return false;
  });
  const pods = Object.keys(state.pods).sort();
  const families = new Map(pods.map((k) => [k, byFamily(state.pods[k]!.ips)]));
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const serve = [...new Map(runnable.map((p) => [`${p.protocol}/${p.port}`, p])).values()];
  const probers = new Map<string, Prober>();
  const id = (p: Probe, to: string, f: Family) => `${p.protocol}/${p.port}|${to}|${f}`;
  const results = new Map<string, Record<string, { ok: boolean; why?: string }>>();
  try {
    for (const from of pods) {
      const mine = families.get(from)!;
      const jobs: Array<{ id: string; protocol: string; ip: string; port: number }> = [];
      for (const p of runnable)
        for (const to of pods)
          for (const [f, ip] of families.get(to)!)
            if (mine.has(f))
              jobs.push({ id: id(p, to, f), protocol: p.protocol, ip, port: p.port });
      probers.set(
        from,
        startProber(state.pods[from]!.netns, {
          serve: serve.map((p) => ({ protocol: p.protocol, port: p.port })),
          probes: jobs,
          timeoutMs,
        }),
      );
    }
    // Every server up before any client starts: a refused connection is then policy's doing.
    await Promise.all(
      [...probers].map(async ([pod, p]) => {
        const first = await within(
          p.lines.next(),
          START_TIMEOUT_MS,
          `the prober of ${pod} did not start`,
        );
        if (first.value.error !== undefined)
          throw new UnavailableError(`the prober of ${pod}: ${String(first.value.error)}`);
      }),
    );
    for (const p of probers.values()) p.child.stdin!.write('go\n');
    await Promise.all(
      [...probers].map(async ([pod, p]) => {
        const r = await within(
          p.lines.next(),
          timeoutMs + START_TIMEOUT_MS,
          `the prober of ${pod} did not finish`,
        );
        if (r.value.error !== undefined)
          throw new UnavailableError(`the prober of ${pod}: ${String(r.value.error)}`);
        results.set(pod, r.value.results as Record<string, { ok: boolean; why?: string }>);
      }),
    );
  } finally {
    for (const p of probers.values()) {
      p.child.stdin!.end();
      const t = setTimeout(() => p.child.kill('SIGKILL'), 2_000);
      p.child.once('exit', () => clearTimeout(t));
    }
  }

  const failures: string[] = [];
  const matrix: Matrix = {
    pods,
    probes: runnable.map((p) => {
      const allowed: Record<string, Record<string, boolean>> = {};
      const disagree: Record<string, Record<string, Partial<Record<Family, boolean>>>> = {};
      for (const from of pods) {
        const row: Record<string, boolean> = {};
        for (const to of pods) {
          const perFamily: Partial<Record<Family, boolean>> = {};
          for (const f of families.get(to)!.keys()) {
            if (!families.get(from)!.has(f)) continue;
            const r = results.get(from)?.[id(p, to, f)];
            perFamily[f] = r?.ok === true;
            if (r?.ok !== true)
              failures.push(
                `${p.protocol}/${p.port} ${from} -> ${to} ${f}: ${r?.why ?? 'no result'}`,
              );
          }
          const verdicts = Object.values(perFamily);
          row[to] = verdicts.length > 0 && verdicts.every((v) => v);
          if (verdicts.length === 0 || verdicts.some((v) => v !== verdicts[0])) {
            disagree[from] ??= {};
            disagree[from]![to] = perFamily;
          }
        }
        allowed[from] = row;
      }
      return Object.keys(disagree).length === 0
        ? { protocol: p.protocol, port: p.port, allowed }
        : { protocol: p.protocol, port: p.port, allowed, families: disagree };
    }),
  };
  return { matrix, skipped, failures };
}

/** Every cell where two matrices differ, as sentences; pods only one side has are differences too. */
export function matrixDifferences(analysis: Matrix, observed: Matrix): string[] {
  const out: string[] = [];
  const a = new Set(analysis.pods);
  const o = new Set(observed.pods);
  for (const p of analysis.pods)
    if (!o.has(p)) out.push(`pod ${p}: in the analysis, not in the lab`);
  for (const p of observed.pods)
    if (!a.has(p)) out.push(`pod ${p}: in the lab, not in the analysis`);
  for (const op of observed.probes) {
    const ap = analysis.probes.find((x) => x.protocol === op.protocol && x.port === op.port);
    if (ap === undefined) continue;
    for (const from of observed.pods) {
      if (!a.has(from)) continue;
      for (const to of observed.pods) {
        if (!a.has(to)) continue;
        const want = ap.allowed[from]?.[to];
        const got = op.allowed[from]?.[to];
        const wf = familiesKey(ap.families?.[from]?.[to]);
        const gf = familiesKey(op.families?.[from]?.[to]);
        if (want !== got || wf !== gf)
          out.push(
            `${op.protocol}/${op.port} ${from} -> ${to}: analysis ${verdict(want, ap.families?.[from]?.[to])}, observed ${verdict(got, op.families?.[from]?.[to])}`,
          );
      }
    }
  }
  return out;
}

const familiesKey = (f: Partial<Record<Family, boolean>> | undefined) =>
  f === undefined ? '' : JSON.stringify(Object.entries(f).sort());

function verdict(
  allowed: boolean | undefined,
  families?: Partial<Record<Family, boolean>>,
): string {
  const base = allowed ? 'allowed' : 'denied';
  if (families === undefined) return base;
  const each = Object.entries(families);
  return each.length === 0
    ? 'no shared address family'
    : `${base} (${each.map(([f, ok]) => `${f} ${ok ? 'allowed' : 'denied'}`).join(', ')})`;
}
