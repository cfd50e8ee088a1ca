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

const sctpSkipped = (p: Probe) =>
  `${p.protocol}/${p.port}: not probed: Node.js has no SCTP sockets (and this kernel has none: CONFIG_IP_SCTP is unset)`;

/**
 * Probers started once in every pod, serving a fixed set of ports, for
 * several runs: what a suite probing one lab again and again uses instead of
 * starting nine processes per probe. Bound to the pods (and their netns) of
 * the state it started with; a run on a lab whose pods changed is refused.
 */
export class ProbeSession {
  private constructor(
    private readonly pods: ReadonlyMap<string, { netns: string; ips: readonly string[] }>,
    private readonly serving: ReadonlySet<string>,
    private readonly probers: ReadonlyMap<string, Prober>,
  ) {}

  /** Starts a prober in every pod serving each port of `serve` (SCTP left out), and waits until all listen. */
  static async start(state: LabState, serve: readonly Probe[]): Promise<ProbeSession> {
    const ports = [
      ...new Map(
        serve.filter((p) => p.protocol !== 'SCTP').map((p) => [`${p.protocol}/${p.port}`, p]),
      ).values(),
    ];
    const probers = new Map<string, Prober>();
    const session = new ProbeSession(
      new Map(Object.entries(state.pods).map(([k, p]) => [k, { netns: p.netns, ips: p.ips }])),
      new Set(ports.map((p) => `${p.protocol}/${p.port}`)),
      probers,
    );
    try {
      for (const [pod, p] of Object.entries(state.pods))
        probers.set(
          pod,
          startProber(p.netns, {
            serve: ports.map((x) => ({ protocol: x.protocol, port: x.port })),
          }),
        );
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
    } catch (err) {
      session.close();
      throw err;
    }
    return session;
  }

  /**
   * Probes every pod to every pod on every probe. A cell is allowed when
   * the connection carried data both ways in every family the pair shares
   * (as the analysis decides: allowed only when every shared family
   * allows), and `families` lists the pairs whose families disagree or
   * share none.
   */
  async run(
    state: LabState,
    probes: readonly Probe[],
    options: { timeoutMs?: number } = {},
  ): Promise<Observed> {
    const same =
      Object.keys(state.pods).length === this.pods.size &&
      Object.entries(state.pods).every(([k, p]) => this.pods.get(k)?.netns === p.netns);
    if (!same) throw new UnavailableError("the lab's pods changed since the probers started");
    const skipped = probes.filter((p) => p.protocol === 'SCTP').map(sctpSkipped);
    const runnable = probes.filter((p) => p.protocol !== 'SCTP');
    const missing = runnable.filter((p) => !this.serving.has(`${p.protocol}/${p.port}`));
    if (missing.length > 0)
      throw new UnavailableError(
        `the probers do not serve ${missing.map((p) => `${p.protocol}/${p.port}`).join(', ')}`,
      );
    const pods = [...this.pods.keys()].sort();
    const families = new Map(pods.map((k) => [k, byFamily(this.pods.get(k)!.ips)]));
    const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const id = (p: Probe, to: string, f: Family) => `${p.protocol}/${p.port}|${to}|${f}`;
    const results = new Map<string, Record<string, { ok: boolean; why?: string }>>();
    for (const from of pods) {
      const mine = families.get(from)!;
      const jobs: Array<{ id: string; protocol: string; ip: string; port: number }> = [];
      for (const p of runnable)
        for (const to of pods)
          for (const [f, ip] of families.get(to)!)
            if (mine.has(f))
              jobs.push({ id: id(p, to, f), protocol: p.protocol, ip, port: p.port });
      this.probers
        .get(from)!
        .child.stdin!.write(`${JSON.stringify({ probes: jobs, timeoutMs })}\n`);
    }
    await Promise.all(
      [...this.probers].map(async ([pod, p]) => {
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
    return observedMatrix(pods, families, runnable, results, id, skipped);
  }

  close(): void {
    for (const p of this.probers.values()) {
      p.child.stdin!.end();
      const t = setTimeout(() => p.child.kill('SIGKILL'), 2_000);
      p.child.once('exit', () => clearTimeout(t));
    }
  }
}

/** One run of a fresh session: what `weirctl lab probe` does. */
export async function probeLab(
  state: LabState,
  probes: readonly Probe[],
  options: { timeoutMs?: number } = {},
): Promise<Observed> {
  const session = await ProbeSession.start(state, probes);
  try {
    return await session.run(state, probes, options);
  } finally {
    session.close();
  }
}

function observedMatrix(
  pods: readonly string[],
  families: ReadonlyMap<string, Map<Family, string>>,
  runnable: readonly Probe[],
  results: ReadonlyMap<string, Record<string, { ok: boolean; why?: string }>>,
  id: (p: Probe, to: string, f: Family) => string,
  skipped: string[],
): Observed {
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
