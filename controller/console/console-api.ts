/**
 * The console's JSON API (/api/...): what the controller already has, as
 * the pages need it. Reads only, like the Operator service it wraps:
 * status and policies from OperatorService, verdicts from the one
 * evaluator (the cluster compiled by OperatorService.compiled(), decided by
 * shared/policy: matrix.ts, probe.ts), flows from the flow relay.
 *
 * Contract: every query parameter is checked before anything is computed;
 * a bad one is 400 with `{ error, problems: [{ field, message }] }` naming
 * the parameter (an unknown parameter is a problem too, so a typo does not
 * silently widen a filter). A matrix holds at most CONSOLE_LIMITS.matrixPods
 * pods. JSON: numbers as numbers, times as RFC 3339 (null when never).
 */
import {
  type Issue,
  NotFoundError,
  ValidationError,
  WeirError,
  ErrorCode,
} from '../../shared/errors.js';
import type { FlowFilter, ListClusterFlowsReply } from '../../shared/generated/weir/v1/index.js';
import { FIELD_LIMITS, RELAY_LIMITS, nodeNameProblem, preview } from '../../shared/limits.js';
import { parseIp } from '../../shared/net/ip.js';
import { parseSince } from '../../shared/duration.js';
import { parseMatch } from '../../shared/flows/flow-match.js';
import { parseSelectorText } from '../../shared/policy/selector.js';
import { matrix } from '../../shared/policy/matrix.js';
import { parseProbe, probe, resolveTarget } from '../../shared/policy/probe.js';
import { endpointKey } from '../../shared/policy/types.js';
import type { ClusterModel } from '../model/cluster-model.js';
import type { OperatorService } from '../operator.js';
import type { FlowRelay } from '../relay/flow-relay.js';

export const CONSOLE_LIMITS = {
  /**
   * Pods in a matrix (rows and columns): 64 × 64 is 4,096 cells per probe,
   * each one evaluation (two for dual-stack pairs), and a grid a person can
   * still read; a namespace with more is shown by naming pods.
   */
  matrixPods: 64,
  /** Query parameters of one request, and values of one repeated parameter. */
  params: 32,
  values: 256,
} as const;

export interface ConsoleParts {
  readonly cluster: string;
  readonly operator: OperatorService;
  readonly model: ClusterModel;
  readonly relay: FlowRelay;
}

export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

const time = (unixMs: unknown): string | null =>
  Number(unixMs) > 0 ? new Date(Number(unixMs)).toISOString() : null;

/** Query parameters, checked: each known, within bounds, collected problems. */
class Query {
  readonly problems: Issue[] = [];
  constructor(
    private readonly params: URLSearchParams,
    known: readonly string[],
  ) {
    const names = [...new Set(params.keys())];
    if (names.length > CONSOLE_LIMITS.params)
      this.problems.push({ field: 'query', message: `has ${names.length} parameters` });
    for (const n of names)
      if (!known.includes(n))
        this.problems.push({
          field: n.length <= 64 ? n : `${n.slice(0, 64)}…`,
          message: `is not a parameter here (known: ${known.join(', ') || 'none'})`,
        });
  }

  text(name: string, max: number = FIELD_LIMITS.flowFilterField): string {
    const all = this.params.getAll(name);
    if (all.length > 1) this.problems.push({ field: name, message: 'is given more than once' });
    const v = all[0] ?? '';
    if (v.length > max)
      this.problems.push({ field: name, message: `is ${v.length} characters; at most ${max}` });
    return v;
  }

  /** A list: repeated, or comma-separated. */
  list(name: string): string[] {
    const out = this.params
      .getAll(name)
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter((v) => v !== '');
    if (out.length > CONSOLE_LIMITS.values)
      this.problems.push({
        field: name,
        message: `has ${out.length} values; at most ${CONSOLE_LIMITS.values}`,
      });
    for (const v of out)
      if (v.length > FIELD_LIMITS.flowFilterField)
        this.problems.push({ field: name, message: `a value is ${v.length} characters` });
    return out;
  }

  integer(name: string, min: number, max: number, fallback: number): number {
    const v = this.text(name, 16);
    if (v === '') return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      this.problems.push({
        field: name,
        message: `${preview(v)} is not an integer from ${min} to ${max}`,
      });
      return fallback;
    }
    return n;
  }

  oneOf(name: string, allowed: readonly string[]): string {
    const v = this.text(name, 32);
    if (v !== '' && !allowed.includes(v))
      this.problems.push({
        field: name,
        message: `${preview(v)} is not one of ${allowed.join(', ')}`,
      });
    return v;
  }

  check(): void {
    if (this.problems.length > 0) throw new ValidationError(this.problems);
  }
}

const PROTOCOLS: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
};
const FILTER_PARAMS = [
  'source',
  'destination',
  'port',
  'protocol',
  'action',
  'policy',
  'rule',
  'pod',
  'namespace',
  'tcpState',
  'fromPod',
  'toPod',
  'fromNamespace',
  'toNamespace',
  'selector',
  'match',
  'since',
] as const;

/**
 * A FlowFilter from the flow page's parameters, named as `weirctl flows`
 * names its flags (source, destination, port, protocol as a name or a
 * number, action, policy, rule, pod, namespace, tcpState, fromPod, toPod,
 * fromNamespace, toNamespace, selector, match, since as a duration or an
 * RFC 3339 time). The agents evaluate it; what the wire cannot carry, and
 * the selector and match languages (so the page names the field at
 * fault), are checked here.
 */
export function flowFilterOf(q: Query, now = Date.now()): FlowFilter {
  const protocolText = q.text('protocol', 16).toLowerCase();
  let protocol = 0;
  if (protocolText !== '') {
    protocol = PROTOCOLS[protocolText] ?? Number(protocolText);
    if (!/^\d+$/.test(protocolText) && PROTOCOLS[protocolText] === undefined) protocol = -1;
    if (!(Number.isInteger(protocol) && protocol >= 0 && protocol <= 255)) {
      q.problems.push({
        field: 'protocol',
        message: `${preview(protocolText)} is not tcp, udp, sctp, icmp, icmpv6 or a number 0-255`,
      });
      protocol = 0;
    }
  }
  return {
    sourceCidr: q.text('source'),
    destinationCidr: q.text('destination'),
    port: q.integer('port', 0, 65_535, 0),
    protocol,
    action: q.oneOf('action', ['allow', 'deny', 'hold']),
    policy: q.text('policy'),
    rule: q.text('rule'),
    pod: q.text('pod'),
    namespace: q.text('namespace'),
    tcpState: q.oneOf('tcpState', ['syn', 'established', 'closing', 'closed']),
    fromPod: podName(q, 'fromPod'),
    toPod: podName(q, 'toPod'),
    fromNamespace: q.text('fromNamespace'),
    toNamespace: q.text('toNamespace'),
    podSelector: selectorText(q),
    match: matchText(q),
    sinceUnixMs: sinceOf(q, now),
  };
}

function podName(q: Query, field: 'fromPod' | 'toPod'): string {
  const v = q.text(field);
  if (v !== '' && !/^[^/\s]+\/[^/\s]+$/.test(v))
    q.problems.push({ field, message: `${preview(v)} is not NAMESPACE/NAME` });
  return v;
}

function selectorText(q: Query): string {
  const v = q.text('selector');
  if (v === '') return v;
  const s = parseSelectorText(v);
  if (typeof s === 'string') q.problems.push({ field: 'selector', message: s });
  return v;
}

function matchText(q: Query): string {
  const v = q.text('match');
  if (v === '') return v;
  try {
    parseMatch(v, 'match');
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    q.problems.push(...err.issues);
  }
  return v;
}

/** `since`: a duration back from now (10m) or an RFC 3339 time; 0 when not given. */
function sinceOf(q: Query, now: number): number {
  const v = q.text('since');
  if (v === '') return 0;
  const t = parseSince(v, now);
  if (t === undefined) {
    q.problems.push({
      field: 'since',
      message: `${preview(v)} is not a duration (30s, 10m, 1h30m) or an RFC 3339 time`,
    });
    return 0;
  }
  return t;
}

function nodesOf(q: Query): string[] {
  const nodes = q.list('node');
  if (nodes.length > RELAY_LIMITS.nodes)
    q.problems.push({ field: 'node', message: `names ${nodes.length} nodes` });
  for (const n of nodes) {
    const why = nodeNameProblem(n);
    if (why !== undefined) q.problems.push({ field: 'node', message: why });
  }
  return nodes;
}

/** The flow watch's request from /api/flows/watch parameters (throws ValidationError). */
export function watchRequestOf(params: URLSearchParams): {
  filter: FlowFilter;
  nodes: string[];
} {
  const q = new Query(params, [...FILTER_PARAMS, 'node']);
  const filter = flowFilterOf(q);
  const nodes = nodesOf(q);
  q.check();
  return { filter, nodes };
}

/** An error as the API answers it: 400 with problems, 404, 429, 503 or 500. */
export function errorReply(err: unknown): ApiReply {
  if (err instanceof ValidationError)
    return {
      status: 400,
      body: {
        error: err.message,
        problems: err.issues.map((i) => ({ field: i.field ?? '', message: i.message })),
      },
    };
  if (err instanceof NotFoundError) return { status: 404, body: { error: err.message } };
  if (err instanceof WeirError) {
    const status =
      err.code === ErrorCode.Exhausted ? 429 : err.code === ErrorCode.Unavailable ? 503 : 500;
    return { status, body: { error: err.message } };
  }
  return { status: 500, body: { error: (err as Error).message ?? String(err) } };
}

export class ConsoleApi {
  constructor(private readonly parts: ConsoleParts) {}

  /** GET /api/<path>; `client` is who asks, for the relay's limits. */
  async get(path: string, params: URLSearchParams, client: string): Promise<ApiReply> {
    try {
      switch (path) {
        case 'cluster':
          return this.ok(this.cluster(new Query(params, [])));
        case 'pods':
          return this.ok(this.pods(new Query(params, ['namespace'])));
        case 'policies':
          return this.ok(this.policies(new Query(params, [])));
        case 'policy':
          return this.ok(this.policy(new Query(params, ['name'])));
        case 'matrix':
          return this.ok(this.matrix(new Query(params, ['namespace', 'pods', 'probe', 'policy'])));
        case 'explain':
          return this.ok(this.explain(new Query(params, ['from', 'to', 'protocol', 'port'])));
        case 'flows':
          return this.ok(
            await this.flows(new Query(params, [...FILTER_PARAMS, 'node', 'limit']), client),
          );
        default:
          return { status: 404, body: { error: `no API /api/${path.slice(0, 64)}` } };
      }
    } catch (err) {
      return errorReply(err);
    }
  }

  private ok(body: unknown): ApiReply {
    return { status: 200, body };
  }

  /** The cluster page: agents with their proof, rejected objects with their fields. */
  private cluster(q: Query) {
    q.check();
    const s = this.parts.operator.status();
    const rejected = [...this.parts.model.rejections()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([object, issues]) => ({
        object,
        problems: issues.map((i) => ({ field: i.field ?? '', message: i.message })),
      }));
    const sourceProblems = (s.rejections ?? []).slice(rejected.length).map((r) => ({
      object: r.object,
      problems: (r.problems ?? []).map((p) => ({ field: '', message: p })),
    }));
    const revision = Number(s.revision ?? 0);
    return {
      cluster: s.cluster,
      revision,
      source: s.source,
      policies: s.policies,
      endpoints: s.endpoints,
      insecure: s.insecure,
      warnings: s.warnings,
      agents: (s.agents ?? []).map((a) => {
        const applied = Number(a.appliedRevision ?? 0);
        const span = Number(a.spanRevision ?? 0);
        return {
          node: a.node,
          connected: a.connected,
          inSync: a.inSync,
          appliedRevision: applied,
          spanRevision: span,
          // Lag: revisions of this node's span the agent has not proved (0 in sync).
          lagRevisions: a.inSync ? 0 : Math.max(0, span - applied),
          spanHash: a.spanHash,
          inForceHash: a.inForceHash,
          hashesEqual: a.spanHash !== '' && a.spanHash === a.inForceHash,
          pending: a.pending,
          lastError: a.lastError,
          lastAck: time(a.lastAckUnixMs),
          connectedSince: time(a.connectedSinceUnixMs),
          spanObjects: a.spanObjects,
          localEndpoints: a.localEndpoints,
          apiAddress: a.apiAddress,
          retryAttempts: a.retryAttempts,
          nextRetry: time(a.nextRetryUnixMs),
        };
      }),
      rejected: [...rejected, ...sourceProblems],
    };
  }

  private pods(q: Query) {
    const namespaces = q.list('namespace');
    q.check();
    return this.parts.model
      .snapshot()
      .endpoints.filter((e) => namespaces.length === 0 || namespaces.includes(e.namespace))
      .map((e) => ({ pod: endpointKey(e), namespace: e.namespace, node: e.node, ips: e.ips }))
      .sort((a, b) => (a.pod < b.pod ? -1 : 1));
  }

  private policies(q: Query) {
    q.check();
    const r = this.parts.operator.listPolicies({ name: '', labelSelector: '' });
    return {
      revision: Number(r.revision),
      policies: (r.policies ?? []).map((e) => ({
        id: e.policy!.id,
        kind: e.policy!.kind,
        namespace: e.policy!.namespace,
        name: e.policy!.name,
        tier: tierName(e.policy!.tier),
        priority: e.policy!.priority,
        rules: e.policy!.rules?.length ?? 0,
        selected: e.selected?.length ?? 0,
        nodes: e.realization?.nodes?.length ?? 0,
        applied: e.realization?.applied?.length ?? 0,
      })),
    };
  }

  /** A policy page: its firewall objects, the pods it selects, the nodes it reached and when. */
  private policy(q: Query) {
    const name = q.text('name', FIELD_LIMITS.policyName);
    if (name === '') q.problems.push({ field: 'name', message: 'is required' });
    q.check();
    const r = this.parts.operator.listPolicies({ name, labelSelector: '' });
    const e = r.policies![0]!;
    const real = e.realization!;
    const reached = this.parts.operator.reachedUnixMs(e.policy!.id!);
    const namespaces = [
      ...new Set((e.selected ?? []).map((p) => p.slice(0, p.indexOf('/')))),
    ].sort();
    return {
      revision: Number(r.revision),
      policy: { ...e.policy, tier: tierName(e.policy!.tier) },
      addressGroups: r.addressGroups,
      serviceGroups: r.serviceGroups,
      selected: e.selected ?? [],
      namespaces,
      realization: {
        revision: Number(real.revision),
        nodes: (real.nodes ?? []).map((node) => ({
          node,
          applied: (real.applied ?? []).includes(node),
          reachedAt: time(reached[node] ?? 0),
          latencyMs: (real.latencyMs as Record<string, number>)[node] ?? null,
          resyncMs: (real.resyncMs as Record<string, number>)[node] ?? null,
        })),
      },
    };
  }

  /**
   * Reachability: the pods of namespaces, or named pods, each to each, per
   * probe; with `policy`, which allowed cells that policy's rules grant
   * (it decided the egress or the ingress side) and which denied ones it
   * isolates (the denying side is isolated by it, no rule matched).
   */
  private matrix(q: Query) {
    const namespaces = q.list('namespace');
    const pods = q.list('pods');
    const probeTexts = q.list('probe');
    const policyName = q.text('policy', FIELD_LIMITS.policyName);
    const probes = (probeTexts.length > 0 ? probeTexts : ['TCP/80']).flatMap((t) => {
      const p = parseProbe(t);
      if (typeof p === 'string') {
        q.problems.push({ field: 'probe', message: p });
        return [];
      }
      return [p];
    });
    if (probes.length > 8)
      q.problems.push({ field: 'probe', message: `has ${probes.length} probes; at most 8` });
    q.check();
    const tables = this.parts.operator.compiled();
    const known = new Set(tables.snapshot.endpoints.map(endpointKey));
    const unknown = pods.filter((p) => !known.has(p));
    if (unknown.length > 0)
      q.problems.push({
        field: 'pods',
        message: `no pods with addresses named ${unknown.slice(0, 5).join(', ')}`,
      });
    const count = tables.snapshot.endpoints.filter(
      (e) =>
        (namespaces.length === 0 || namespaces.includes(e.namespace)) &&
        (pods.length === 0 || pods.includes(endpointKey(e))),
    ).length;
    if (count > CONSOLE_LIMITS.matrixPods)
      q.problems.push({
        field: pods.length > 0 ? 'pods' : 'namespace',
        message: `selects ${count} pods; a matrix shows at most ${CONSOLE_LIMITS.matrixPods}: name pods, or a narrower namespace`,
      });
    let policyId: string | undefined;
    if (policyName !== '')
      policyId = this.parts.operator.listPolicies({ name: policyName, labelSelector: '' })
        .policies![0]!.policy!.id;
    q.check();
    const m = matrix(
      tables,
      probes,
      namespaces,
      pods.length > 0 ? (e) => pods.includes(endpointKey(e)) : undefined,
    );
    if (policyId === undefined) return m;
    const id = policyId;
    return {
      ...m,
      policy: id,
      probes: m.probes.map((p) => {
        const grants: Record<string, string[]> = {};
        const isolates: Record<string, string[]> = {};
        for (const from of m.pods)
          for (const to of m.pods) {
            const f = resolveTarget(tables, from);
            const t = resolveTarget(tables, to);
            if (typeof f === 'string' || typeof t === 'string') continue;
            const x = probe(tables, f, t, p);
            const sides = [x.egress, x.ingress];
            const add = (into: Record<string, string[]>) => {
              into[from] ??= [];
              into[from].push(to);
            };
            if (x.allowed && sides.some((d) => d.rule?.policy.id === id)) add(grants);
            const denying = sides.find((d) => !d.allowed);
            if (
              !x.allowed &&
              denying !== undefined &&
              denying.rule === undefined &&
              denying.policies.some((r) => r.id === id)
            )
              add(isolates);
          }
        return { ...p, grants, isolates };
      }),
    };
  }

  /** Explain: each side's verdict and why, as `weirctl explain` (the Operator service's Explain). */
  private explain(q: Query) {
    const from = q.text('from', FIELD_LIMITS.probeTarget);
    const to = q.text('to', FIELD_LIMITS.probeTarget);
    const protocol = q.oneOf('protocol', ['TCP', 'UDP', 'SCTP']);
    const port = q.integer('port', 1, 65_535, 0);
    if (from === '')
      q.problems.push({ field: 'from', message: 'is required (namespace/pod or an address)' });
    if (to === '')
      q.problems.push({ field: 'to', message: 'is required (namespace/pod or an address)' });
    if (port === 0 && !q.problems.some((p) => p.field === 'port'))
      q.problems.push({ field: 'port', message: 'is required' });
    for (const [field, v] of [
      ['from', from],
      ['to', to],
    ] as const)
      if (v !== '' && !v.includes('/') && parseIp(v) === undefined)
        q.problems.push({
          field,
          message: `${preview(v)} is neither namespace/pod nor an address`,
        });
    q.check();
    const r = this.parts.operator.explain({ from, to, protocol: protocol || 'TCP', port });
    return { revision: Number(r.revision), explanation: JSON.parse(r.explanationJson ?? 'null') };
  }

  private async flows(q: Query, client: string): Promise<unknown> {
    const filter = flowFilterOf(q);
    const nodes = nodesOf(q);
    const limit = q.integer('limit', 1, RELAY_LIMITS.listPerNode, 100);
    q.check();
    const r: ListClusterFlowsReply = await this.parts.relay.list(
      { filter, nodes, limitPerNode: limit },
      client,
    );
    return {
      flows: (r.flows ?? []).map((f) => ({ node: f.node, flow: flowJson(f.flow) })),
      problems: r.problems,
    };
  }
}

const TIERS: Readonly<Record<string, string>> = {
  TIER_ADMIN: 'admin',
  TIER_BASELINE: 'baseline',
  TIER_UNSPECIFIED: 'namespace',
};
function tierName(t: unknown): string {
  return TIERS[String(t)] ?? (t === 1 ? 'admin' : t === 2 ? 'baseline' : 'namespace');
}

/** A wire Flow as JSON: counters and times as numbers. */
export function flowJson(f: unknown): unknown {
  if (f === null || f === undefined) return null;
  const x = f as Record<string, unknown> & {
    forward?: { packets: string; bytes: string };
    reverse?: { packets: string; bytes: string };
  };
  const counters = (c?: { packets: string | number; bytes: string | number }) => ({
    packets: Number(c?.packets ?? 0),
    bytes: Number(c?.bytes ?? 0),
  });
  return {
    ...x,
    forward: counters(x.forward),
    reverse: counters(x.reverse),
    firstSeen: time(x.firstSeenUnixMs as string),
    lastSeen: time(x.lastSeenUnixMs as string),
  };
}
