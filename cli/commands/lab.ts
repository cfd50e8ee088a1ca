/**
 * `weirctl lab up|probe|down`: the commands over cli/lab.ts. Progress goes
 * to stderr, results to stdout; `probe -o json` prints exactly what
 * `weirctl analyze matrix -o json` prints for the same probes.
 */
import { join } from 'node:path';
import { parseProbe, type Probe } from '../../shared/policy/probe.js';
import { analyse, matrix } from '../analysis.js';
import { UsageError, type Io } from '../io.js';
import { controllerSocket, labDir, labDown, labSync, labUp } from '../lab.js';
import { DEFAULT_PROBE_TIMEOUT_MS, matrixDifferences, probeLab } from '../lab-probe.js';
import { matrixTable } from './analyze.js';
import { formatIssue } from '../../shared/errors.js';

interface Common {
  lab?: string;
}

function seconds(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!(Number.isFinite(n) && n > 0 && n <= 3600))
    throw new UsageError(
      `${flag} must be a number of seconds from 0 to 3600, not ${JSON.stringify(text)}`,
    );
  return n * 1000;
}

const LOOPBACK_LISTEN = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]):\d{1,5}$/;

export async function labUpCommand(
  io: Io,
  opts: Common & {
    filename: string[];
    nodes?: string;
    datapath: string;
    failMode?: string;
    timeout?: string;
    uiListen?: string;
  },
): Promise<number> {
  if (opts.filename.length !== 1)
    throw new UsageError(
      'give the manifest directory once: -f DIR (the lab watches one directory)',
    );
  let nodes: number | undefined;
  if (opts.nodes !== undefined) {
    nodes = Number(opts.nodes);
    if (!(Number.isInteger(nodes) && nodes >= 1 && nodes <= 64))
      throw new UsageError(
        `--nodes must be a whole number from 1 to 64, not ${JSON.stringify(opts.nodes)}`,
      );
  }
  if (opts.failMode !== undefined && !['open', 'closed'].includes(opts.failMode))
    throw new UsageError(
      `--fail-mode must be open or closed, not ${JSON.stringify(opts.failMode)}`,
    );
  // The console is plain HTTP here (the lab's operator certificate is not in a browser): loopback only.
  if (opts.uiListen !== undefined && !LOOPBACK_LISTEN.test(opts.uiListen))
    throw new UsageError(
      `--ui-listen must be a loopback HOST:PORT (127.0.0.1:7480, [::1]:7480), not ${JSON.stringify(opts.uiListen)}: the lab's console is plain HTTP`,
    );
  const state = await labUp({
    dir: opts.filename[0]!,
    lab: opts.lab,
    nodes,
    datapath: opts.datapath,
    failMode: opts.failMode,
    ...(opts.uiListen !== undefined ? { uiListen: opts.uiListen } : {}),
    timeoutMs: seconds(opts.timeout, '--timeout', 60_000),
    say: (l) => io.stderr(`lab: ${l}\n`),
  });
  io.stdout(
    `lab ${state.name} is up and in sync: ${Object.keys(state.nodes).length} nodes, ${Object.keys(state.pods).length} pods, ${state.datapath} datapath, manifests ${state.dir}\n` +
      `  controller: weirctl status --controller ${controllerSocket(labDir({ lab: opts.lab }))} --tls-dir ${join(labDir({ lab: opts.lab }), 'tls', 'operator')}\n` +
      (state.uiListen !== undefined ? `  console:    http://${state.uiListen}/\n` : '') +
      `  probe:      weirctl lab probe${opts.lab ? ` --lab ${opts.lab}` : ''} --probe TCP/80 --compare\n` +
      `  remove:     weirctl lab down${opts.lab ? ` --lab ${opts.lab}` : ''}\n`,
  );
  return 0;
}

export async function labProbeCommand(
  io: Io,
  opts: Common & {
    probe: string[];
    output: string;
    compare?: boolean;
    timeout?: string;
    probeTimeout?: string;
  },
): Promise<number> {
  const probes: Probe[] = (opts.probe.length > 0 ? opts.probe : ['TCP/80']).map((p) => {
    const parsed = parseProbe(p);
    if (typeof parsed === 'string') throw new UsageError(parsed);
    return parsed;
  });
  if (!['table', 'json'].includes(opts.output))
    throw new UsageError(
      `-o/--output must be one of table, json, not ${JSON.stringify(opts.output)}`,
    );
  const say = (l: string) => io.stderr(`lab: ${l}\n`);
  const { state } = await labSync({
    lab: opts.lab,
    timeoutMs: seconds(opts.timeout, '--timeout', 60_000),
    say,
  });
  const observed = await probeLab(state, probes, {
    timeoutMs: seconds(opts.probeTimeout, '--probe-timeout', DEFAULT_PROBE_TIMEOUT_MS),
  });
  for (const s of observed.skipped) say(s);
  io.stdout(
    opts.output === 'json' ? `${JSON.stringify(observed.matrix)}\n` : matrixTable(observed.matrix),
  );
  if (!opts.compare) return 0;
  const analysis = await analyse([state.dir]);
  for (const issue of analysis.issues) io.stderr(`error: ${formatIssue(issue)}\n`);
  const ran = probes.filter((p) => p.protocol !== 'SCTP');
  const differences = matrixDifferences(matrix(analysis.tables, ran), observed.matrix);
  const out = opts.output === 'json' ? io.stderr : io.stdout;
  if (differences.length === 0) {
    out(`no difference from the analysis (weirctl analyze matrix -f ${state.dir})\n`);
    return 0;
  }
  if (observed.failures.length > 0)
    io.stderr(
      `connections that failed, and how:\n${observed.failures.map((f) => `  ${f}\n`).join('')}`,
    );
  out(
    `${differences.length} difference(s) from the analysis (weirctl analyze matrix -f ${state.dir}):\n${differences.map((d) => `  ${d}\n`).join('')}`,
  );
  return 1;
}

export async function labDownCommand(io: Io, opts: Common): Promise<number> {
  const { removed } = await labDown({ lab: opts.lab, say: (l) => io.stderr(`lab: ${l}\n`) });
  io.stdout(
    removed === 0
      ? `lab ${opts.lab ?? 'default'}: nothing to remove\n`
      : `lab ${opts.lab ?? 'default'} removed (${removed} network namespaces)\n`,
  );
  return 0;
}
