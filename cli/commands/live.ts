/**
 * weirctl against a running system: `status`, `policy list|get`, `explain`.
 * Tables for people by default, `-o json` for scripts.
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

function ago(unixMs: string, now: number): string {
  const ms = Number(unixMs);
  if (!ms) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60
    ? `${s}s ago`
    : s < 3600
      ? `${Math.round(s / 60)}m ago`
      : `${Math.round(s / 3600)}h ago`;
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
    `controller ${address}  cluster ${s.cluster}  revision ${s.revision}  policies ${s.policies}  endpoints ${s.endpoints}\n` +
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
          'LAG',
          'ENDPOINTS',
          'OBJECTS',
          'LAST-ACK',
          'ERROR',
        ],
        s.agents.map((a) => [
          a.node,
          a.connected ? 'yes' : 'no',
          a.appliedRevision,
          a.spanRevision,
          a.inSync ? 'yes' : a.pending ? 'sending' : 'no',
          // Revisions of this node's span the agent has not applied yet.
          a.inSync ? '0' : String(Math.max(0, Number(a.spanRevision) - Number(a.appliedRevision))),
          String(a.localEndpoints),
          String(a.spanObjects),
          ago(a.lastAckUnixMs, now),
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
      const latencies = Object.values(r.latencyMs).sort((a, b) => a - b);
      const lat =
        latencies.length === 0
          ? '-'
          : `${Math.round(latencies[Math.floor((latencies.length - 1) / 2)]!)}ms / ${Math.round(latencies[latencies.length - 1]!)}ms`;
      const types = [p.ingressIsolation ? 'Ingress' : '', p.egressIsolation ? 'Egress' : '']
        .filter(Boolean)
        .join(',');
      return [
        `${p.namespace}/${p.name}`,
        types,
        String(p.rules.length),
        String(e.selected.length),
        `${r.applied.length}/${r.nodes.length}`,
        r.revision,
        lat,
      ];
    });
    io.stdout(
      renderTable(
        ['POLICY', 'TYPES', 'RULES', 'SELECTS', 'APPLIED/NODES', 'REVISION', 'LATENCY p50 / max'],
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
