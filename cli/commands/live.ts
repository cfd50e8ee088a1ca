/**
 * weirctl against a running system: `status`, `policy list|get`, `explain`.
 * Tables for people by default, `-o json` for scripts. "In sync" and
 * "applied" are the controller's proof (in-force hash equals the computed
 * span's, agent connected now); nothing here derives them from revisions.
 */
import { stringify as toYaml } from 'yaml';
import type { Explanation } from '../../shared/policy/explain.js';
import { parseProbe } from '../../shared/policy/probe.js';
import type {
  ExplainReply__Output,
  ListPoliciesReply__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { agentClient, call, controllerAddress, operatorClient } from '../clients.js';
import { UsageError, type Io } from '../io.js';
import { renderTable } from '../table.js';
import { explanationText } from './analyze.js';

function output(value: string, allowed: readonly string[]): string {
  if (!allowed.includes(value))
    throw new UsageError(
      `-o/--output must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`,
    );
  return value;
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function ago(unixMs: string, now: number): string {
  const ms = Number(unixMs);
  return ms ? `${duration(now - ms)} ago` : '-';
}

type AgentRow = StatusReply__Output['agents'][number];

/**
 * In sync is the controller's proof (the agent's in-force hash equals the
 * span computed for its node, connected now); otherwise say what is going on.
 */
function syncState(a: AgentRow): string {
  if (a.inSync) return 'yes';
  if (!a.connected) return 'no (disconnected)';
  if (a.pending) return 'no (sending)';
  if (Number(a.nextRetryUnixMs)) return 'no (retrying)';
  return 'no';
}

/** Refusals in a row, and when the span is sent again. */
function retry(a: AgentRow, now: number): string {
  const at = Number(a.nextRetryUnixMs);
  return at ? `${a.retryAttempts}, next in ${duration(at - now)}` : String(a.retryAttempts);
}

/** Short hash prefixes, enough to tell two spans apart at a glance. */
const short = (h: string) => (h ? h.slice(0, 10) : '-');

const median = (xs: readonly number[]) => xs[Math.floor((xs.length - 1) / 2)]!;

function latencyCell(values: Record<string, number>): string {
  const v = Object.values(values).sort((a, b) => a - b);
  return v.length === 0 ? '-' : `${Math.round(median(v))}ms / ${Math.round(v[v.length - 1]!)}ms`;
}

export async function status(
  io: Io,
  opts: { controller?: string; output: string },
): Promise<number> {
  const format = output(opts.output, ['table', 'json']);
  const address = controllerAddress(opts.controller);
  const client = operatorClient(address);
  const s = await call<object, StatusReply__Output>(
    client,
    client.GetStatus,
    {},
    `the controller at ${address}`,
  );
  if (format === 'json') {
    io.stdout(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const now = Date.now();
  const src = s.source;
  io.stdout(
    `controller ${address}  cluster ${s.cluster}  revision ${s.revision}  policies ${s.policies}  endpoints ${s.endpoints}  ${s.insecure ? 'INSECURE (no TLS)' : 'mTLS'}\n` +
      `source     ${src?.kind} ${src?.location}  ${src?.synced ? 'synced' : 'NOT SYNCED'}${src?.lastError ? `  last error: ${src.lastError}` : ''}\n\n`,
  );
  if (s.agents.length === 0) io.stdout('no agents\n');
  else {
    io.stdout(
      renderTable(
        [
          'NODE',
          'CONNECTED',
          'APPLIED',
          'SPAN',
          'IN-SYNC',
          'RETRIES',
          'ENDPOINTS',
          'OBJECTS',
          'LAST-ACK',
          'IN-FORCE-HASH',
          'SPAN-HASH',
          'ERROR',
        ],
        s.agents.map((a) => [
          a.node,
          a.connected ? 'yes' : 'no',
          a.appliedRevision,
          a.spanRevision,
          syncState(a),
          retry(a, now),
          String(a.localEndpoints),
          String(a.spanObjects),
          ago(a.lastAckUnixMs, now),
          short(a.inForceHash),
          short(a.spanHash),
          a.lastError,
        ]),
      ),
    );
  }
  if (s.warnings.length > 0) {
    io.stdout(`\nwarnings:\n`);
    for (const w of s.warnings) io.stdout(`  ${w}\n`);
  }
  if (s.rejections.length > 0) {
    io.stdout(`\nrejected objects and manifest problems:\n`);
    for (const r of s.rejections) for (const p of r.problems) io.stdout(`  ${r.object}: ${p}\n`);
  }
  return 0;
}

export async function policyList(
  io: Io,
  opts: { controller?: string; output: string },
  name = '',
): Promise<number> {
  const format = output(opts.output, name ? ['yaml', 'json'] : ['table', 'json', 'yaml']);
  const address = controllerAddress(opts.controller);
  const client = operatorClient(address);
  const reply = await call<{ name: string }, ListPoliciesReply__Output>(
    client,
    client.ListPolicies,
    { name },
    `the controller at ${address}`,
  );
  if (format === 'json') io.stdout(`${JSON.stringify(reply, null, 2)}\n`);
  else if (format === 'yaml') io.stdout(toYaml(reply, { aliasDuplicateObjects: false }));
  else {
    const rows = reply.policies.map((e) => {
      const p = e.policy!;
      const r = e.realization!;
      const types = [p.ingressIsolation ? 'Ingress' : '', p.egressIsolation ? 'Egress' : '']
        .filter(Boolean)
        .join(',');
      const cluster = p.kind === 'ClusterNetworkPolicy';
      return [
        cluster ? `cnp/${p.name}` : `${p.namespace}/${p.name}`,
        p.tier === 'TIER_ADMIN'
          ? 'Admin'
          : p.tier === 'TIER_BASELINE'
            ? 'Baseline'
            : 'NetworkPolicy',
        cluster ? String(p.priority) : '-',
        types,
        String(p.rules.length),
        String(e.selected.length),
        `${r.applied.length}/${r.nodes.length}`,
        r.revision,
        latencyCell(r.latencyMs),
        latencyCell(r.resyncMs),
      ];
    });
    io.stdout(
      renderTable(
        [
          'POLICY',
          'TIER',
          'PRIORITY',
          'TYPES',
          'RULES',
          'SELECTS',
          'APPLIED/NODES',
          'REVISION',
          'PROPAGATION p50 / max',
          'RESYNC p50 / max',
        ],
        rows,
      ),
    );
  }
  return 0;
}

export async function explainLive(
  io: Io,
  opts: {
    controller?: string;
    agent?: string;
    from?: string;
    to?: string;
    port?: string;
    protocol: string;
    output: string;
  },
): Promise<number> {
  if (opts.from === undefined || opts.to === undefined || opts.port === undefined)
    throw new UsageError('--from, --to and --port are required');
  const format = output(opts.output, ['table', 'json']);
  const p = parseProbe(`${opts.protocol}/${opts.port}`);
  if (typeof p === 'string') throw new UsageError(p);
  const req = { from: opts.from, to: opts.to, protocol: p.protocol, port: p.port };
  let reply: ExplainReply__Output;
  if (opts.agent !== undefined) {
    const client = agentClient(opts.agent);
    reply = await call(client, client.Evaluate, req, `the agent at ${opts.agent}`);
  } else {
    const address = controllerAddress(opts.controller);
    const client = operatorClient(address);
    reply = await call(client, client.Explain, req, `the controller at ${address}`);
  }
  const e = JSON.parse(reply.explanationJson) as Explanation;
  io.stdout(
    format === 'json'
      ? `${JSON.stringify({ revision: Number(reply.revision), ...e }, null, 2)}\n`
      : `${explanationText(e, p)}(revision ${reply.revision}${opts.agent ? `, as enforced by the agent at ${opts.agent}` : ''})\n`,
  );
  return 0;
}
