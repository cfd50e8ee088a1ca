/**
 * `weirctl analyze`: offline what-if over manifest files.
 *
 *   matrix   every pod to every pod, per probe
 *   probe    one connection, with the tier, policy and rule that decided each side
 *   objects  the firewall objects the translation produced (the Contrail view)
 */
import { type Issue, ValidationError, formatIssue } from '../../shared/errors.js';
import type { DirectionExplanation, Explanation } from '../../shared/policy/explain.js';
import { snapshotToWire } from '../../shared/wire/policy.js';
import { parseProbe, probe, resolveTarget, type Probe } from '../../shared/policy/probe.js';
import { analyse, matrix, type Analysis, type Matrix } from '../analysis.js';
import { renderTable } from '../table.js';
import {
  analyseFederation,
  federatedMatrix,
  federatedProbe,
  resolveFederatedTarget,
  type FederationAnalysis,
} from '../federation-analysis.js';
import { matchesLabels, parseSelectorText } from '../../shared/policy/selector.js';
import type { Endpoint, LabelSelector } from '../../shared/policy/types.js';
import { UsageError, type Io } from '../io.js';
import {
  type Column,
  emit,
  type Json,
  type OutputFlags,
  parseFormat,
  wireToJson,
} from '../output.js';
import { policyName } from '../names.js';

export const ALLOWED_MARK = '✓';
export const DENIED_MARK = '✗';
/** After a mark: the pair's address families disagree (see the notes under the table). */
export const BY_FAMILY_MARK = '*';
/** The pair shares no address family: they cannot connect. */
export const NO_FAMILY_MARK = '-';

interface Common {
  filename: string[];
  /** Every --cluster given, in order. */
  cluster?: string[];
  /** --cluster NAME -f PATH… groups in command-line order (cli/main.ts). */
  groups?: ReadonlyArray<{ cluster: string; paths: readonly string[] }>;
  /** -f paths given before any --cluster. */
  loose?: readonly string[];
}

/** One cluster's analysis (none or one --cluster), or several clusters' (docs/federation.md). */
type Loaded =
  | { readonly kind: 'one'; readonly analysis: Analysis; readonly status: number }
  | { readonly kind: 'federation'; readonly analysis: FederationAnalysis; readonly status: number };

/** Prints the notes and problems of manifests; 2 when there were problems. */
function report(io: Io, notes: readonly string[], issues: readonly Issue[]): number {
  for (const note of notes) io.stderr(`note: ${note}\n`);
  for (const issue of issues) io.stderr(`error: ${formatIssue(issue)}\n`);
  if (issues.length > 0) {
    io.stderr(
      `${issues.length} problem(s) found: invalid objects and documents that cannot be read are left out of the result; of an object defined more than once, the first definition in path order is used\n`,
    );
  }
  return issues.length > 0 ? 2 : 0;
}

/** Loads and reports problems; the caller still prints what the valid objects give. */
async function load(io: Io, opts: Common): Promise<Loaded> {
  const groups = opts.groups ?? [];
  if (groups.length >= 2) {
    const loose = opts.loose ?? [];
    if (loose.length > 0)
      throw new UsageError(
        `-f ${loose[0]} comes before any --cluster: with several clusters, each -f/--filename follows the --cluster it belongs to (--cluster a -f A --cluster b -f B)`,
      );
    let analysis: FederationAnalysis;
    try {
      analysis = await analyseFederation(groups);
    } catch (err) {
      if (err instanceof ValidationError)
        throw new UsageError(err.issues.map((i) => `${i.field}: ${i.message}`).join('\n'));
      throw err;
    }
    return { kind: 'federation', analysis, status: report(io, analysis.notes, analysis.issues) };
  }
  if (opts.filename.length === 0)
    throw new UsageError('at least one -f/--filename PATH is required');
  const analysis = await analyse(opts.filename, { cluster: groups[0]?.cluster ?? 'local' });
  return { kind: 'one', analysis, status: report(io, analysis.notes, analysis.issues) };
}

export async function analyzeMatrix(
  io: Io,
  opts: Common &
    OutputFlags & {
      probe: string[];
      namespace: string[];
      allNamespaces?: boolean;
      selector?: string;
    },
): Promise<number> {
  const probes = (opts.probe.length > 0 ? opts.probe : ['TCP/80']).map((p) => {
    const parsed = parseProbe(p);
    if (typeof parsed === 'string') throw new UsageError(parsed);
    return parsed;
  });
  parseFormat(opts.output);
  const loaded = await load(io, opts);
  const { status } = loaded;
  const endpoints =
    loaded.kind === 'one'
      ? loaded.analysis.snapshot.endpoints
      : loaded.analysis.members.flatMap((m) => m.endpoints);
  const known = new Set(endpoints.map((e) => e.namespace));
  if (loaded.kind === 'federation')
    for (const e of endpoints) known.add(`${e.cluster}/${e.namespace}`);
  const unknown = opts.namespace.filter((ns) => !known.has(ns));
  if (unknown.length > 0)
    throw new UsageError(`--namespace: no pods with addresses in ${unknown.join(', ')}`);
  if (opts.allNamespaces && opts.namespace.length > 0)
    throw new UsageError('-A/--all-namespaces and -n/--namespace are alternatives: give one');
  let selector: LabelSelector | undefined;
  if (opts.selector !== undefined) {
    const s = parseSelectorText(opts.selector);
    if (typeof s === 'string') throw new UsageError(`-l/--selector: ${s}`);
    selector = s;
  }
  const keep =
    selector === undefined ? undefined : (e: Endpoint) => matchesLabels(e.labels, selector);
  const m =
    loaded.kind === 'one'
      ? matrix(loaded.analysis.tables, probes, opts.namespace, keep)
      : federatedMatrix(loaded.analysis, probes, opts.namespace, keep);
  emit(io, opts, {
    document: m as unknown as Json,
    name: () => m.pods.map((p) => `pod/${p}`).join('\n'),
    text: () => matrixTable(m),
  });
  return status;
}

export function matrixTable(m: Matrix): string {
  if (m.pods.length === 0) return 'no pods with addresses in the manifests\n';
  const parts: string[] = [];
  for (const p of m.probes) {
    const notes: string[] = [];
    const rows = m.pods.map((from) => [
      from,
      ...m.pods.map((to) => {
        const mark = p.allowed[from]![to] ? ALLOWED_MARK : DENIED_MARK;
        const fam = p.families?.[from]?.[to];
        if (fam === undefined) return mark;
        const each = Object.entries(fam);
        notes.push(
          each.length === 0
            ? `  ${NO_FAMILY_MARK} ${from} -> ${to}: no address family in common`
            : `  ${BY_FAMILY_MARK} ${from} -> ${to}: ${each.map(([f, ok]) => `${f} ${ok ? 'allowed' : 'denied'}`).join(', ')}`,
        );
        return each.length === 0 ? NO_FAMILY_MARK : `${mark}${BY_FAMILY_MARK}`;
      }),
    ]);
    parts.push(
      `${p.protocol}/${p.port}  (${ALLOWED_MARK} allowed, ${DENIED_MARK} denied; rows: from, columns: to)\n` +
        renderTable(['FROM \\ TO', ...m.pods], rows) +
        (notes.length > 0
          ? `  (${BY_FAMILY_MARK}: the address families disagree; allowed only when every family the pair shares allows)\n${notes.join('\n')}\n`
          : ''),
    );
  }
  return parts.join('\n');
}

export async function analyzeProbe(
  io: Io,
  opts: Common &
    OutputFlags & {
      from?: string;
      to?: string;
      port?: string;
      protocol: string;
      exitCode?: boolean;
    },
): Promise<number> {
  if (opts.from === undefined || opts.to === undefined || opts.port === undefined)
    throw new UsageError('--from, --to and --port are required');
  const p = parseProbe(`${opts.protocol}/${opts.port}`);
  if (typeof p === 'string') throw new UsageError(p);
  parseFormat(opts.output);
  const loaded = await load(io, opts);
  const { status } = loaded;
  let e: Explanation;
  try {
    if (loaded.kind === 'one') {
      const from = resolveTarget(loaded.analysis.tables, opts.from);
      if (typeof from === 'string') throw new UsageError(`--from: ${from}`);
      const to = resolveTarget(loaded.analysis.tables, opts.to);
      if (typeof to === 'string') throw new UsageError(`--to: ${to}`);
      e = probe(loaded.analysis.tables, from, to, p);
    } else {
      const from = resolveFederatedTarget(loaded.analysis, opts.from);
      if (typeof from === 'string') throw new UsageError(`--from: ${from}`);
      const to = resolveFederatedTarget(loaded.analysis, opts.to);
      if (typeof to === 'string') throw new UsageError(`--to: ${to}`);
      e = federatedProbe(loaded.analysis, from, to, p);
    }
  } catch (err) {
    if (err instanceof ValidationError)
      throw new UsageError(err.issues.map((i) => `--${i.field}: ${i.message}`).join('\n'));
    throw err;
  }
  emit(io, opts, { document: e as unknown as Json, text: () => explanationText(e, p) });
  // A manifest problem (2) is not hidden by the verdict's 1.
  return Math.max(status, verdictStatus(e, opts.exitCode));
}

/** `--exit-code`'s status for a verdict: 1 when denied, as `kubectl auth can-i`; 0 otherwise. */
export function verdictStatus(e: Explanation, exitCode: boolean | undefined): number {
  return exitCode && !e.allowed ? 1 : 0;
}

export function explanationText(e: Explanation, p: Probe): string {
  const who = (s: { ip: string; endpoint?: string }) =>
    s.endpoint ? `${s.endpoint} (${s.ip})` : s.ip;
  const verdict = (x: Explanation) => (x.allowed ? 'ALLOWED' : 'DENIED');
  const lines: string[] = [];
  const sides = (x: Explanation, indent: string) => {
    const side = (d: DirectionExplanation, where: string) => {
      const v = !d.enforced ? 'not checked' : d.allowed ? 'allowed' : 'denied';
      const tier = d.tier === 'node' ? ' [own node]' : d.tier ? ` [${d.tier} tier]` : '';
      lines.push(`${indent}${d.direction.padEnd(7)} at ${where}: ${v}${tier}: ${d.reason}`);
    };
    side(x.egress, who(x.from));
    side(x.ingress, who(x.to));
  };
  if (e.families === undefined) {
    lines.push(`${p.protocol}/${p.port} from ${who(e.from)} to ${who(e.to)}: ${verdict(e)}`);
    sides(e, '  ');
  } else {
    const name = (s: { ip: string; endpoint?: string }) => s.endpoint ?? s.ip;
    lines.push(
      `${p.protocol}/${p.port} from ${name(e.from)} to ${name(e.to)}: ${verdict(e)} (${e.families.map((f) => `${f.family} ${f.allowed ? 'allowed' : 'denied'}`).join(', ')}; allowed only when every family allows)`,
    );
    for (const f of e.families) {
      lines.push(`  ${f.family}: ${who(f.from)} to ${who(f.to)}: ${verdict(f)}`);
      sides(f, '    ');
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function analyzeObjects(io: Io, opts: Common & OutputFlags): Promise<number> {
  parseFormat(opts.output);
  const loaded = await load(io, opts);
  const { status } = loaded;
  if (loaded.kind === 'federation') {
    emitFederationObjects(io, opts, loaded.analysis);
    return status;
  }
  const { analysis } = loaded;
  emit(io, opts, {
    document: wireToJson(snapshotToWire(analysis.snapshot), 'PolicySnapshot'),
    list: 'policies',
    name: (p) => `policy/${policyName(p)}`,
    empty: 'no policies\n',
    columns: policyColumns,
  });
  return status;
}

type O = { [k: string]: Json };

const policyColumns: readonly Column[] = [
  { header: 'POLICY', cell: (p) => policyName(p) },
  { header: 'KIND', cell: (p) => String(p.kind) },
  {
    header: 'TIER',
    cell: (p) =>
      String(p.tier)
        .replace(/^TIER_/, '')
        .toLowerCase(),
  },
  { header: 'RULES', cell: (p) => String((p.rules as O[]).length) },
  { header: 'APPLIED-TO', cell: (p) => String(p.appliedTo) },
  { header: 'ID', cell: (p) => String(p.id), wide: true },
];

/**
 * Several clusters' objects: each member's whole snapshot under `members`
 * (-o json, yaml), and for tables and -o name every member's policies —
 * its own and those it imported — in one list, `cluster` first.
 */
function emitFederationObjects(io: Io, opts: OutputFlags, f: FederationAnalysis): void {
  const members = f.members.map((m) => ({
    cluster: m.cluster,
    snapshot: wireToJson(snapshotToWire(m.snapshot), 'PolicySnapshot'),
  }));
  const policies = members.flatMap((m) =>
    (((m.snapshot as O).policies ?? []) as O[]).map((p) => ({ cluster: m.cluster, ...p })),
  );
  emit(io, opts, {
    document: { members, policies } as unknown as Json,
    list: 'policies',
    name: (p) => `policy/${p.cluster}/${policyName(p)}`,
    empty: 'no policies\n',
    columns: [{ header: 'CLUSTER', cell: (p) => String(p.cluster) }, ...policyColumns],
  });
}
