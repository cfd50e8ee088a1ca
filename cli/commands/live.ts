/**
 * weirctl against a running system: `status`, `policy list|get`, `explain`.
 * Tables for people by default, `-o json` for scripts. "In sync" and
 * "applied" are the controller's proof (in-force hash equals the computed
 * span's, agent connected now); nothing here derives them from revisions.
 */
import type { Explanation } from '../../shared/policy/explain.js';
import { parseProbe } from '../../shared/policy/probe.js';
import type {
  ExplainReply__Output,
  ListPoliciesReply__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import {
  agentAddress,
  agentClient,
  call,
  controllerAddress,
  controllerAt,
  operatorClient,
} from '../clients.js';
import { emit, type Json, type OutputFlags, parseFormat, wireToJson } from '../output.js';
import { UsageError, type Io } from '../io.js';
import { parseSelectorText } from '../../shared/policy/selector.js';
import { parseDuration, shortDuration } from '../../shared/duration.js';
import { explanationText, verdictStatus } from './analyze.js';
import { policyName } from '../names.js';

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function ago(iso: Json | undefined, now: number): string {
  return typeof iso === 'string' ? `${duration(now - Date.parse(iso))} ago` : '-';
}

type AgentRow = { [k: string]: Json };

/**
 * In sync is the controller's proof (the agent's in-force hash equals the
 * span computed for its node, connected now); otherwise say what is going on.
 */
function syncState(a: AgentRow): string {
  if (a.inSync) return 'yes';
  if (!a.connected) return 'no (disconnected)';
  if (a.pending) return 'no (sending)';
  if (a.nextRetry) return 'no (retrying)';
  return 'no';
}

/** Refusals in a row, and when the span is sent again. */
function retry(a: AgentRow, now: number): string {
  return typeof a.nextRetry === 'string'
    ? `${a.retryAttempts}, next in ${duration(Date.parse(a.nextRetry) - now)}`
    : String(a.retryAttempts);
}

/** Short hash prefixes, enough to tell two spans apart at a glance. */
const short = (h: Json | undefined) => (typeof h === 'string' && h ? h.slice(0, 10) : '-');

const median = (xs: readonly number[]) => xs[Math.floor((xs.length - 1) / 2)]!;

function latencyCell(values: Json | undefined): string {
  const v = Object.values(values as Record<string, number>).sort((a, b) => a - b);
  return v.length === 0 ? '-' : `${Math.round(median(v))}ms / ${Math.round(v[v.length - 1]!)}ms`;
}

const s_ = (v: Json | undefined) => (v === null || v === undefined ? '' : String(v));

/** Agents that have not proved sync: not connected, or their in-force hash is not their span's. */
const unsynced = (s: StatusReply__Output) => s.agents.filter((a) => !(a.connected && a.inSync));

export async function status(
  io: Io,
  opts: OutputFlags & { controller?: string; wait?: string | boolean; strict?: boolean },
): Promise<number> {
  parseFormat(opts.output);
  const address = await controllerAddress(opts.controller);
  let waitMs: number | undefined;
  if (opts.wait !== undefined && opts.wait !== false) {
    waitMs = opts.wait === true ? 60_000 : parseDuration(opts.wait);
    if (waitMs === undefined)
      throw new UsageError(
        `--wait takes a duration (--wait=2m; default 60s), not ${JSON.stringify(opts.wait)}`,
      );
  }
  const get = () => {
    const client = operatorClient(address);
    return call<object, StatusReply__Output>(client, client.GetStatus, {}, controllerAt(address));
  };
  let reply = await get();
  let exit = 0;
  if (waitMs !== undefined) {
    // --wait: until every agent proves sync (the controller's hash proof), polled.
    const end = Date.now() + waitMs;
    while (unsynced(reply).length > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, end - Date.now()))));
      reply = await get();
    }
    const behind = unsynced(reply);
    if (behind.length > 0) {
      io.stderr(
        `error: not every agent proved sync within ${shortDuration(waitMs)}: ${behind.map((a) => `${a.node} (${a.connected ? 'connected, not in sync' : 'disconnected'})`).join(', ')}\n`,
      );
      exit = 1;
    }
  }
  if (opts.strict) {
    const problems = [
      ...reply.agents.filter((a) => !a.connected).map((a) => `agent ${a.node} is disconnected`),
      ...reply.rejections.map((r) => `${r.object} is rejected`),
    ];
    if (problems.length > 0) {
      io.stderr(`error: --strict: ${problems.join('; ')}\n`);
      exit = 1;
    }
  }
  const now = Date.now();
  emit(io, opts, {
    document: wireToJson(reply, 'StatusReply'),
    list: 'agents',
    name: (a) => `node/${a.node}`,
    before: (s) => {
      const src = (s.source ?? {}) as { [k: string]: Json };
      return (
        `controller ${address}  cluster ${s.cluster}  revision ${s.revision}  policies ${s.policies}  endpoints ${s.endpoints}  ${s.insecure ? 'INSECURE (no TLS)' : 'mTLS'}\n` +
        `source     ${src.kind} ${src.location}  ${src.synced ? 'synced' : 'NOT SYNCED'}${src.lastError ? `  last error: ${src.lastError}` : ''}\n\n`
      );
    },
    empty: 'no agents\n',
    columns: [
      { header: 'NODE', cell: (a) => s_(a.node) },
      { header: 'CONNECTED', cell: (a) => (a.connected ? 'yes' : 'no') },
      { header: 'APPLIED', cell: (a) => s_(a.appliedRevision) },
      { header: 'SPAN', cell: (a) => s_(a.spanRevision) },
      { header: 'IN-SYNC', cell: syncState },
      { header: 'RETRIES', cell: (a) => retry(a, now) },
      { header: 'ENDPOINTS', cell: (a) => s_(a.localEndpoints) },
      { header: 'OBJECTS', cell: (a) => s_(a.spanObjects) },
      { header: 'LAST-ACK', cell: (a) => ago(a.lastAck, now) },
      { header: 'IN-FORCE-HASH', cell: (a) => short(a.inForceHash) },
      { header: 'SPAN-HASH', cell: (a) => short(a.spanHash) },
      { header: 'API', cell: (a) => s_(a.apiAddress) || '-', wide: true },
      { header: 'INSTANCE', cell: (a) => s_(a.instance) || '-', wide: true },
      { header: 'CONNECTED-SINCE', cell: (a) => s_(a.connectedSince) || '-', wide: true },
      { header: 'ERROR', cell: (a) => s_(a.lastError) },
    ],
    after: (s) => {
      let out = '';
      const warnings = s.warnings as string[];
      const rejections = s.rejections as Array<{ object: string; problems: string[] }>;
      if (warnings.length > 0) out += `\nwarnings:\n${warnings.map((w) => `  ${w}\n`).join('')}`;
      if (rejections.length > 0) {
        out += `\nrejected objects and manifest problems:\n`;
        for (const r of rejections) for (const p of r.problems) out += `  ${r.object}: ${p}\n`;
      }
      return out;
    },
  });
  return exit;
}

export async function policyList(
  io: Io,
  opts: OutputFlags & {
    controller?: string;
    namespace?: string;
    allNamespaces?: boolean;
    selector?: string;
  },
  name = '',
): Promise<number> {
  parseFormat(opts.output);
  if (opts.selector !== undefined) {
    const s = parseSelectorText(opts.selector);
    if (typeof s === 'string') throw new UsageError(`-l/--selector: ${s}`);
  }
  if (opts.namespace !== undefined && opts.allNamespaces)
    throw new UsageError('-A/--all-namespaces and -n/--namespace are alternatives: give one');
  const address = await controllerAddress(opts.controller);
  const client = operatorClient(address);
  const reply = await call<{ name: string; labelSelector: string }, ListPoliciesReply__Output>(
    client,
    client.ListPolicies,
    { name, labelSelector: opts.selector ?? '' },
    controllerAt(address),
  );
  type O = { [k: string]: Json };
  const pol = (e: O) => e.policy as O;
  const real = (e: O) => e.realization as O;
  const document = wireToJson(reply, 'ListPoliciesReply');
  // -n: the namespace's NetworkPolicies, as kubectl get -n lists namespaced objects only.
  if (opts.namespace !== undefined)
    document.policies = (document.policies as O[]).filter(
      (e) => pol(e).kind !== 'ClusterNetworkPolicy' && pol(e).namespace === opts.namespace,
    );
  emit(io, opts, {
    document,
    list: 'policies',
    name: (e) => `policy/${policyName(pol(e))}`,
    empty: 'no policies\n',
    columns: [
      { header: 'POLICY', cell: (e) => policyName(pol(e)) },
      {
        header: 'TIER',
        cell: (e) =>
          pol(e).tier === 'TIER_ADMIN'
            ? 'Admin'
            : pol(e).tier === 'TIER_BASELINE'
              ? 'Baseline'
              : 'NetworkPolicy',
      },
      {
        header: 'PRIORITY',
        cell: (e) => (pol(e).kind === 'ClusterNetworkPolicy' ? String(pol(e).priority) : '-'),
      },
      {
        header: 'TYPES',
        cell: (e) =>
          [pol(e).ingressIsolation ? 'Ingress' : '', pol(e).egressIsolation ? 'Egress' : '']
            .filter(Boolean)
            .join(','),
      },
      { header: 'RULES', cell: (e) => String((pol(e).rules as Json[]).length) },
      { header: 'SELECTS', cell: (e) => String((e.selected as Json[]).length) },
      {
        header: 'APPLIED/NODES',
        cell: (e) => `${(real(e).applied as Json[]).length}/${(real(e).nodes as Json[]).length}`,
      },
      { header: 'REVISION', cell: (e) => s_(real(e).revision) },
      { header: 'PROPAGATION p50 / max', cell: (e) => latencyCell(real(e).latencyMs) },
      { header: 'RESYNC p50 / max', cell: (e) => latencyCell(real(e).resyncMs) },
      {
        header: 'LABELS',
        wide: true,
        cell: (e) =>
          Object.entries((e.labels ?? {}) as Record<string, string>)
            .sort(([x], [y]) => (x < y ? -1 : 1))
            .map(([k, v]) => `${k}=${v}`)
            .join(',') || '<none>',
      },
      { header: 'ID', cell: (e) => s_(pol(e).id), wide: true },
      { header: 'NODES', cell: (e) => (real(e).nodes as string[]).join(',') || '-', wide: true },
    ],
  });
  return 0;
}

export async function explainLive(
  io: Io,
  opts: OutputFlags & {
    controller?: string;
    agent?: string;
    from?: string;
    to?: string;
    port?: string;
    protocol: string;
    exitCode?: boolean;
  },
): Promise<number> {
  if (opts.from === undefined || opts.to === undefined || opts.port === undefined)
    throw new UsageError('--from, --to and --port are required');
  parseFormat(opts.output);
  const p = parseProbe(`${opts.protocol}/${opts.port}`);
  if (typeof p === 'string') throw new UsageError(p);
  const req = { from: opts.from, to: opts.to, protocol: p.protocol, port: p.port };
  let reply: ExplainReply__Output;
  let by = '';
  if (opts.agent !== undefined) {
    const target = await agentAddress(opts.agent, opts.controller);
    const client = agentClient(target.address, target.node);
    reply = await call(client, client.Evaluate, req, `the agent at ${target.address}`);
    by = `, as enforced by the agent ${target.node ? `of node ${target.node} ` : ''}at ${target.address}`;
  } else {
    const address = await controllerAddress(opts.controller);
    const client = operatorClient(address);
    reply = await call(client, client.Explain, req, controllerAt(address));
  }
  const e = JSON.parse(reply.explanationJson) as Explanation;
  emit(io, opts, {
    document: { revision: Number(reply.revision), ...(e as unknown as { [k: string]: Json }) },
    text: () => `${explanationText(e, p)}(revision ${reply.revision}${by})\n`,
  });
  return verdictStatus(e, opts.exitCode);
}
