/**
 * `weirctl flows`: an agent's flow table, with the pods and the policy and
 * rule behind every verdict — vRouter's `flow -l`, `flow --match`,
 * `flow --get` and `flow -r`, against an agent's FlowIntrospect API.
 *
 *   weirctl flows [--node NAME|HOST:PORT] [filters]   (no --node: every node's, through the controller)
 *   (per node:) weirctl flows --node NAME|HOST:PORT [filters] [--match "ip[:port],ip[:port] & proto tcp"] [-w] [-o ...]
 *   weirctl flows get ID --node ...

 * Every filter is evaluated by the agent (FlowFilter), --match included;
 * the flags are checked here first so that a mistake names the flag.
 *   weirctl flows stats --node ...
 */
import type * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { ValidationError } from '../../shared/errors.js';
import {
  type Match,
  PROTOCOL_NUMBERS,
  parseMatch as parseSharedMatch,
} from '../../shared/flows/flow-match.js';
import { parseSelectorText } from '../../shared/policy/selector.js';
import { TCP_STATES } from '../../vrouter-agent/introspect/flow-service.js';
import type {
  ClusterFlowEvent__Output,
  Flow__Output,
  FlowEvent__Output,
  FlowFilter,
  FlowStatsReply__Output,
  ListClusterFlowsReply__Output,
  ListFlowsReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import {
  type AgentTarget,
  agentAddress,
  call,
  controllerAddress,
  controllerAt,
  flowClient,
  grpcError,
  operatorClient,
} from '../clients.js';
import { parseSince } from '../../shared/duration.js';
import {
  type Column,
  emit,
  type Json,
  type OutputFlags,
  parseFormat,
  render,
  type View,
  wireToJson,
} from '../output.js';
import { UsageError, type Io } from '../io.js';

const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  1: 'ICMP',
  6: 'TCP',
  17: 'UDP',
  58: 'ICMPv6',
  132: 'SCTP',
};

export interface FlowOptions extends OutputFlags {
  node?: string;
  controller?: string;
  src?: string;
  dst?: string;
  port?: string;
  protocol?: string;
  action?: string;
  verdict?: string;
  policy?: string;
  rule?: string;
  pod?: string;
  fromPod?: string;
  toPod?: string;
  namespace?: string;
  fromNamespace?: string;
  toNamespace?: string;
  selector?: string;
  allNamespaces?: boolean;
  tcpState?: string;
  match?: string;
  since?: string;
  last?: string;
  watch?: boolean;
  limit: string;
}

/** The --match parser, as the agent runs it (shared/flows/flow-match.ts), with the flag's name in its errors. */
export function parseMatch(text: string): Match {
  try {
    return parseSharedMatch(text, '--match');
  } catch (err) {
    if (err instanceof ValidationError)
      throw new UsageError(err.issues.map((i) => `${i.field}: ${i.message}`).join('; '));
    throw err;
  }
}

/** --verdict as hubble names verdicts, and the actions the agent has. */
const VERDICTS: Readonly<Record<string, string>> = {
  allow: 'allow',
  allowed: 'allow',
  forwarded: 'allow',
  deny: 'deny',
  denied: 'deny',
  dropped: 'deny',
  hold: 'hold',
};

function oneOf(flag: string, value: string | undefined, allowed: readonly string[]): string {
  if (value === undefined) return '';
  if (!allowed.includes(value.toLowerCase()))
    throw new UsageError(
      `${flag} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`,
    );
  return value.toLowerCase();
}

/** `--since 10m`, `--since 90s`, `--since 2026-01-02T03:04:05Z`: a Unix time in ms. */
export function sinceMs(text: string, now = Date.now()): number {
  const t = parseSince(text, now);
  if (t === undefined)
    throw new UsageError(
      `--since must be a duration (30s, 10m, 1h30m) or an RFC 3339 time, not ${JSON.stringify(text)}`,
    );
  return t;
}

/** The filter the flags describe, checked: a UsageError naming the flag and the allowed values. */
export function filterOf(o: FlowOptions): FlowFilter {
  const protocol =
    o.protocol === undefined
      ? 0
      : (PROTOCOL_NUMBERS[o.protocol.toLowerCase()] ??
        (/^\d+$/.test(o.protocol) && Number(o.protocol) <= 255 ? Number(o.protocol) : NaN));
  if (Number.isNaN(protocol))
    throw new UsageError(
      `--protocol must be tcp, udp, sctp, icmp, icmpv6 or a number 0-255, not ${JSON.stringify(o.protocol)}`,
    );
  const port = o.port === undefined ? 0 : Number(o.port);
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535))
    throw new UsageError(`--port must be a port number, not ${JSON.stringify(o.port)}`);
  const action = oneOf('--action', o.action, ['allow', 'deny', 'hold']);
  const verdict = oneOf('--verdict', o.verdict, Object.keys(VERDICTS));
  if (action !== '' && verdict !== '' && VERDICTS[verdict] !== action)
    throw new UsageError('--action and --verdict disagree: give one');
  const tcpState = oneOf('--tcp-state', o.tcpState, TCP_STATES);
  if (o.match !== undefined) parseMatch(o.match);
  if (o.selector !== undefined) {
    const s = parseSelectorText(o.selector);
    if (typeof s === 'string') throw new UsageError(`-l/--selector: ${s}`);
  }
  if (o.allNamespaces && o.namespace !== undefined)
    throw new UsageError('-A/--all-namespaces and -n/--namespace are alternatives: give one');
  for (const [flag, v] of [
    ['--pod', o.pod],
    ['--from-pod', o.fromPod],
    ['--to-pod', o.toPod],
  ] as const)
    if (v !== undefined && !/^[^/\s]+\/[^/\s]+$/.test(v))
      throw new UsageError(`${flag} must be NAMESPACE/NAME, not ${JSON.stringify(v)}`);
  return {
    sourceCidr: o.src ?? '',
    destinationCidr: o.dst ?? '',
    port,
    protocol,
    action: action || (verdict ? VERDICTS[verdict]! : ''),
    policy: o.policy ?? '',
    rule: o.rule ?? '',
    pod: o.pod ?? '',
    namespace: o.namespace ?? '',
    tcpState,
    fromPod: o.fromPod ?? '',
    toPod: o.toPod ?? '',
    fromNamespace: o.fromNamespace ?? '',
    toNamespace: o.toNamespace ?? '',
    match: o.match ?? '',
    podSelector: o.selector ?? '',
  };
}

const proto = (n: number) => PROTOCOL_NAMES[n] ?? String(n);
/** One end of a flow; ICMP shows no port (its slots hold the echo id and type, as vRouter keys them). */
const end = (ip: string, port: number, pod: string, protocol = 0) =>
  `${protocol === 1 || protocol === 58 ? ip : `${ip.includes(':') ? `[${ip}]` : ip}:${port}`}${pod ? ` (${pod})` : ''}`;
/** A gate in a few words: the deciding policy (with its tier when a cluster one, "DENY by" when it denied), "default", "DENY (P)", or "-" when not checked. */
const policyName = (
  r:
    | Pick<FlowRuleJson, 'decision' | 'action' | 'tier' | 'policyName' | 'policy'>
    | null
    | undefined,
) =>
  r?.decision === 'rule'
    ? `${r.action === 'deny' ? 'DENY by ' : ''}${r.tier === 'admin' || r.tier === 'baseline' ? `${r.tier} ` : ''}${r.policyName || r.policy}`
    : r?.decision === 'default'
      ? 'default'
      : r?.decision === 'node'
        ? 'node'
        : r?.decision === 'deny'
          ? `DENY${r.policyName ? ` (${r.policyName})` : ''}`
          : '-';
const verdict = (f: { action: string; dropReason: string }) =>
  f.action === 'deny' ? `deny (${f.dropReason || 'policy'})` : f.action;
type F = { [k: string]: Json };
const n = (v: Json | undefined) => (typeof v === 'number' ? v : 0);
const str = (v: Json | undefined) => (typeof v === 'string' ? v : '');
const rule = (v: Json | undefined) => (v ?? null) as FlowRuleJson | null;
interface FlowRuleJson {
  decision: string;
  rule: string;
  policy: string;
  policyName: string;
  tier: string;
  action: string;
}
const counters = (f: F, k: 'forward' | 'reverse', what: 'packets' | 'bytes') =>
  n((f[k] as F | null)?.[what]);
const ageOf = (f: F, now: number) => {
  const s = Math.max(0, Math.round((now - Date.parse(str(f.firstSeen))) / 1000));
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${s % 60}s`
      : `${Math.floor(s / 3600)}h`;
};

/** The columns of a flow listing (-o wide adds rule ids, bytes, times). */
export function flowColumns(now = Date.now()): Column[] {
  const flow = (f: F) => f as unknown as FlowLike;
  return [
    { header: 'ID', cell: (f) => String(f.id) },
    { header: 'ZONE', cell: (f) => zoneText(flow(f)), wide: true },
    { header: 'PROTO', cell: (f) => proto(n(f.protocol)) },
    { header: 'SOURCE', cell: (f) => endText(flow(f), 'source') },
    { header: 'DESTINATION', cell: (f) => endText(flow(f), 'destination') },
    { header: 'ACTION', cell: (f) => verdict(flow(f)) },
    { header: 'EGRESS POLICY', cell: (f) => policyName(rule(f.egress)) },
    { header: 'INGRESS POLICY', cell: (f) => policyName(rule(f.ingress)) },
    { header: 'EGRESS RULE', cell: (f) => rule(f.egress)?.rule || '-', wide: true },
    { header: 'INGRESS RULE', cell: (f) => rule(f.ingress)?.rule || '-', wide: true },
    { header: 'STATE', cell: (f) => str(f.tcpState) || '-' },
    {
      header: 'PKTS FWD/REV',
      cell: (f) => `${counters(f, 'forward', 'packets')}/${counters(f, 'reverse', 'packets')}`,
    },
    {
      header: 'BYTES FWD/REV',
      cell: (f) => `${counters(f, 'forward', 'bytes')}/${counters(f, 'reverse', 'bytes')}`,
      wide: true,
    },
    { header: 'AGE', cell: (f) => ageOf(f, now) },
    { header: 'FIRST SEEN', cell: (f) => str(f.firstSeen), wide: true },
    { header: 'LAST SEEN', cell: (f) => str(f.lastSeen), wide: true },
  ];
}

/** What the printers read of a flow, wire or JSON. */
interface FlowLike {
  zone: string;
  replyZone: string;
  protocol: number;
  source: string;
  sourcePort: number;
  sourcePod: string;
  destination: string;
  destinationPort: number;
  destinationPod: string;
  action: string;
  dropReason: string;
  egress: FlowRuleJson | null;
  ingress: FlowRuleJson | null;
}
const zoneText = (f: FlowLike) =>
  f.replyZone && f.replyZone !== f.zone ? `${f.zone}<>${f.replyZone}` : f.zone;
const endText = (f: FlowLike, side: 'source' | 'destination') =>
  side === 'source'
    ? end(f.source, f.sourcePort, f.sourcePod, f.protocol)
    : end(f.destination, f.destinationPort, f.destinationPod, f.protocol);

/** A flow listing as a View (`flows`, and the NATS stream's replay). */
export function flowsView(flows: readonly Flow__Output[]): View {
  return {
    document: flows.map((f) => wireToJson(f, 'Flow')),
    columns: flowColumns(),
    name: (f) => `flow/${f.id}`,
    empty: 'no flows\n',
  };
}

async function listAll(
  target: AgentTarget,
  filter: FlowFilter,
  limit: number,
): Promise<Flow__Output[]> {
  const out: Flow__Output[] = [];
  let pageToken = '';
  do {
    const client = flowClient(target.address, target.node);
    const page = await call<object, ListFlowsReply__Output>(
      client,
      client.ListFlows,
      { filter, pageSize: Math.min(1000, limit - out.length), pageToken },
      `the agent at ${target.address}`,
    );
    out.push(...page.flows);
    pageToken = page.nextPageToken;
  } while (pageToken !== '' && out.length < limit);
  return out;
}

const positive = (flag: string, v: string) => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0))
    throw new UsageError(`${flag} must be a positive integer, not ${JSON.stringify(v)}`);
  return n;
};

export async function flowsList(io: Io, o: FlowOptions): Promise<number> {
  parseFormat(o.output);
  const limit = positive('--limit', o.limit);
  const last = o.last === undefined ? undefined : positive('--last', o.last);
  const filter = filterOf(o);
  if (o.since !== undefined) filter.sinceUnixMs = String(sinceMs(o.since));
  // No --node: every agent's flows, relayed by the controller (as Hubble Relay).
  if (o.node === undefined) return clusterFlows(io, o, filter, limit, last);
  const target = await agentAddress(o.node, o.controller);
  if (o.watch) return watch(io, target, filter, o);
  const flows = await listAll(target, filter, limit);
  emit(io, o, flowsView(lastOf(flows, last, (f) => f)));
  return 0;
}

/** --last N: the N flows seen most recently, oldest first (as hubble observe --last). */
function lastOf<T>(list: T[], last: number | undefined, flow: (x: T) => Flow__Output): T[] {
  if (last === undefined) return list;
  const seen = (x: T) => Number(flow(x).lastSeenUnixMs);
  return list.sort((a, b) => seen(a) - seen(b)).slice(-last);
}

/** The flows of every connected agent, with the node in each row; a node that did not answer is a warning. */
async function clusterFlows(
  io: Io,
  o: FlowOptions,
  filter: FlowFilter,
  limit: number,
  last: number | undefined,
): Promise<number> {
  const address = await controllerAddress(o.controller);
  if (o.watch) return clusterWatch(io, address, filter, o);
  const client = operatorClient(address);
  const reply = await call<object, ListClusterFlowsReply__Output>(
    client,
    client.ListClusterFlows,
    { filter, limitPerNode: limit, nodes: [] },
    controllerAt(address),
  );
  for (const p of reply.problems) io.stderr(`warning: node ${p.node}: ${p.error}\n`);
  const flows = lastOf(
    reply.flows.filter((x) => x.flow !== null),
    last,
    (x) => x.flow!,
  );
  emit(io, o, {
    document: flows.map((x) => ({ node: x.node, ...wireToJson(x.flow!, 'Flow') })),
    columns: [{ header: 'NODE', cell: (f) => String(f.node) }, ...flowColumns()],
    name: (f) => `flow/${String(f.node)}/${String(f.id)}`,
    empty: 'no flows\n',
  });
  return 0;
}

function clusterWatch(
  io: Io,
  address: string,
  filter: FlowFilter,
  flags: OutputFlags,
): Promise<number> {
  const client = operatorClient(address);
  const stream = (
    client as unknown as {
      WatchClusterFlows(req: object): grpc.ClientReadableStream<ClusterFlowEvent__Output>;
    }
  ).WatchClusterFlows({ filter, nodes: [] });
  const format = parseFormat(flags.output).kind;
  if ((format === 'table' || format === 'wide') && flags.headers !== false)
    io.stdout(`watching flows of every node through ${address} (Ctrl-C to stop)\n`);
  return follow(stream, client, controllerAt(address), (m) => {
    if (m.error) io.stderr(`node ${m.node}: ${m.error}\n`);
    if (Number(m.dropped) > 0) io.stderr(`node ${m.node}: ${m.dropped} events dropped\n`);
    if (m.event?.flow) io.stdout(eventText({ ...m.event, node: m.node }, flags));
  });
}

/** Reads a server stream until it ends or Ctrl-C cancels it (exit 0); any other end is an error about `what`. */
function follow<T>(
  stream: grpc.ClientReadableStream<T>,
  client: { close(): void },
  what: string,
  onData: (m: T) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    stream.on('data', onData);
    stream.on('error', (err: grpc.ServiceError) => {
      client.close();
      if (err.code === 1)
        resolve(0); // cancelled
      else reject(grpcError(err, what));
    });
    stream.on('end', () => {
      client.close();
      resolve(0);
    });
    process.once('SIGINT', () => stream.cancel());
  });
}

/** One flow event as `--watch` prints it (`node`: prefixed, for a cluster-wide view). */
export function eventLine(e: FlowEvent__Output, f: Flow__Output, node?: string): string {
  const at = new Date(Number(e.atUnixMs)).toISOString().slice(11, 23);
  return `${at} ${node === undefined ? '' : `${node} `}${e.type.padEnd(11)} #${f.id} ${proto(f.protocol)} ${end(f.source, f.sourcePort, f.sourcePod, f.protocol)} -> ${end(f.destination, f.destinationPort, f.destinationPod, f.protocol)} ${verdict(f)}  egress: ${policyName(f.egress)}  ingress: ${policyName(f.ingress)}\n`;
}

/** A flow event in the chosen format: JSON and YAML one document per event (JSON lines, YAML `---`). */
export function eventText(e: FlowEvent__Output & { node?: string }, flags: OutputFlags): string {
  const format = parseFormat(flags.output);
  const doc = {
    ...(e.node !== undefined ? { node: e.node } : {}),
    ...wireToJson(e, 'FlowEvent'),
  };
  if (format.kind === 'json') return `${JSON.stringify(doc)}\n`;
  if (format.kind === 'yaml') return `---\n${toYaml(doc, { aliasDuplicateObjects: false })}`;
  if (format.kind === 'jsonpath' || format.kind === 'name')
    return render(flags, { document: doc, name: (d) => `flow/${(d.flow as { id: Json }).id}` });
  return eventLine(e, e.flow!, e.node);
}

function watch(
  io: Io,
  target: AgentTarget,
  filter: FlowFilter,
  flags: OutputFlags,
): Promise<number> {
  const client = flowClient(target.address, target.node);
  const stream = (
    client as unknown as { WatchFlows(req: object): grpc.ClientReadableStream<FlowEvent__Output> }
  ).WatchFlows({ filter });
  const format = parseFormat(flags.output).kind;
  if ((format === 'table' || format === 'wide') && flags.headers !== false)
    io.stdout(`watching flows on ${target.address} (Ctrl-C to stop)\n`);
  return follow(stream, client, `the agent at ${target.address}`, (e) => {
    if (e.flow !== null) io.stdout(eventText(e, flags));
  });
}

export async function flowsGet(
  io: Io,
  id: string,
  o: OutputFlags & { node?: string; controller?: string; index?: boolean },
): Promise<number> {
  if (o.node === undefined) throw new UsageError('--node is required');
  parseFormat(o.output);
  if (!/^\d+$/.test(id) || (!o.index && id === '0'))
    throw new UsageError(
      `a flow id is a positive number (the ID column), not ${JSON.stringify(id)}`,
    );
  const target = await agentAddress(o.node, o.controller);
  const client = flowClient(target.address, target.node);
  const f = await call<object, Flow__Output>(
    client,
    client.GetFlow,
    o.index ? { index: Number(id) } : { id },
    `the agent at ${target.address}`,
  );
  emit(io, o, {
    document: wireToJson(f, 'Flow'),
    name: (x) => `flow/${x.id}`,
    text: () => {
      const rows: Array<[string, string]> = [
        ['id', `${f.id} (agent instance ${f.agentInstance || '-'})`],
        ['index', String(f.index)],
        [
          'zone',
          f.replyZone && f.replyZone !== f.zone
            ? `${f.zone} (replies arrive at ${f.replyZone})`
            : f.zone,
        ],
        ['protocol', proto(f.protocol)],
        ['source', end(f.source, f.sourcePort, f.sourcePod, f.protocol)],
        ['destination', end(f.destination, f.destinationPort, f.destinationPod, f.protocol)],
        ['action', verdict(f)],
        ['egress', gateText(f.egress)],
        ['ingress', gateText(f.ingress)],
        ['tcp state', f.tcpState || '-'],
        ['forward', `${f.forward?.packets ?? 0} packets, ${f.forward?.bytes ?? 0} bytes`],
        ['reverse', `${f.reverse?.packets ?? 0} packets, ${f.reverse?.bytes ?? 0} bytes`],
        ['first seen', new Date(Number(f.firstSeenUnixMs)).toISOString()],
        ['last seen', new Date(Number(f.lastSeenUnixMs)).toISOString()],
      ];
      return `${rows.map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`;
    },
  });
  return 0;
}

function gateText(r: Flow__Output['egress']): string {
  switch (r?.decision) {
    case 'rule': {
      const tier = r.tier === 'admin' || r.tier === 'baseline' ? `${r.tier} ` : '';
      return `${r.action === 'deny' ? 'denied' : 'allowed'} by ${tier}${r.policyName} rule ${r.rule}`;
    }
    case 'default':
      return 'allowed: no policy isolates the pod in this direction';
    case 'node':
      return 'allowed: traffic between a pod and its own node is not subject to NetworkPolicy';
    case 'deny':
      return `denied: isolated by ${r.policyName || 'a policy'}, no rule matched`;
    default:
      return 'not checked here (the pod is not on this node)';
  }
}

export async function flowsStats(
  io: Io,
  o: OutputFlags & { node?: string; controller?: string },
): Promise<number> {
  if (o.node === undefined) throw new UsageError('--node is required');
  parseFormat(o.output);
  const target = await agentAddress(o.node, o.controller);
  const client = flowClient(target.address, target.node);
  const s = await call<object, FlowStatsReply__Output>(
    client,
    client.FlowStats,
    {},
    `the agent at ${target.address}`,
  );
  const nonZero = (m: Record<string, string | number>) =>
    Object.entries(m)
      .filter(([, v]) => Number(v) > 0)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  emit(io, o, {
    document: wireToJson(s, 'FlowStatsReply'),
    text: () =>
      `${[
        `engine        ${s.engine}`,
        `flows         ${s.flows} of ${s.maxFlows} (peak ${s.peak}), ${s.holds} on hold`,
        `setup rate    ${s.setupRatePerSecond.toFixed(1)} flows/s`,
        `packets       ${s.packets}`,
        `inserted      ${s.inserted}, removed ${s.removed} (${nonZero(s.removedByCause)})`,
        `drops         ${nonZero(s.dropsByReason)}`,
        `refused       ${nonZero(s.refusedByReason)}`,
      ].join('\n')}\n`,
  });
  return 0;
}
