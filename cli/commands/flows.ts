/**
 * `weirctl flows`: an agent's flow table, with the pods and the policy and
 * rule behind every verdict — vRouter's `flow -l`, `flow --match`,
 * `flow --get` and `flow -r`, against an agent's FlowIntrospect API.
 *
 *   weirctl flows --node NAME|HOST:PORT [filters] [--match "ip[:port],ip[:port] & proto tcp"] [-w] [-o table|wide|json]
 *   weirctl flows get INDEX --node ...
 *   weirctl flows stats --node ...
 */
import type * as grpc from '@grpc/grpc-js';
import { tryParseIp } from '../../shared/net/ip.js';
import type {
  Flow__Output,
  FlowEvent__Output,
  FlowFilter,
  FlowStatsReply__Output,
  ListFlowsReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { UnavailableError } from '../../shared/errors.js';
import { type AgentTarget, agentAddress, call, flowClient } from '../clients.js';
import { UsageError, type Io } from '../io.js';
import { renderTable } from '../table.js';

const PROTOCOLS: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
};
const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  1: 'ICMP',
  6: 'TCP',
  17: 'UDP',
  58: 'ICMPv6',
  132: 'SCTP',
};

export interface FlowOptions {
  node?: string;
  controller?: string;
  src?: string;
  dst?: string;
  port?: string;
  protocol?: string;
  action?: string;
  policy?: string;
  rule?: string;
  pod?: string;
  namespace?: string;
  tcpState?: string;
  match?: string;
  watch?: boolean;
  limit: string;
  output: string;
}

/** One end of a --match: an address and maybe a port. */
export interface MatchEnd {
  readonly ip: string;
  readonly port?: number;
}

export interface Match {
  readonly a: MatchEnd;
  readonly b?: MatchEnd;
  readonly protocol?: number;
}

/**
 * vRouter's match syntax: "ip[:port][,ip[:port]][ & proto NAME]"; IPv6 in
 * brackets when it has a port ("[fd00::1]:80"). The two ends match in either
 * order, as `flow --match` does.
 */
export function parseMatch(text: string): Match {
  const [ends, ...clauses] = text.split('&').map((s) => s.trim());
  const end = (s: string): MatchEnd => {
    const m =
      /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ??
      (s.split(':').length === 2 ? /^([^:]+):(\d+)$/.exec(s) : null);
    const ip = m ? m[1]! : s;
    const port = m?.[2] !== undefined ? Number(m[2]) : undefined;
    if (tryParseIp(ip) === undefined)
      throw new UsageError(
        `--match: ${JSON.stringify(s)} is not an address (ip, ip:port, or [ipv6]:port)`,
      );
    if (port !== undefined && !(port >= 0 && port <= 65535))
      throw new UsageError(`--match: port ${port} is out of range`);
    return port === undefined ? { ip } : { ip, port };
  };
  const parts = (ends ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0 || parts.length > 2)
    throw new UsageError(
      '--match: expected "ip[:port]" or "ip[:port],ip[:port]", optionally followed by "& proto NAME"',
    );
  let protocol: number | undefined;
  for (const c of clauses) {
    const m = /^proto(?:col)?\s+(\S+)$/i.exec(c);
    const p = m
      ? (PROTOCOLS[m[1]!.toLowerCase()] ?? (/^\d+$/.test(m[1]!) ? Number(m[1]) : undefined))
      : undefined;
    if (p === undefined)
      throw new UsageError(
        `--match: ${JSON.stringify(c)}: expected "proto tcp|udp|sctp|icmp|icmpv6|NUMBER"`,
      );
    protocol = p;
  }
  return {
    a: end(parts[0]!),
    ...(parts[1] ? { b: end(parts[1]) } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
  };
}

export function matches(f: Flow__Output, m: Match): boolean {
  const endOk = (e: MatchEnd, ip: string, port: number) =>
    e.ip === ip && (e.port === undefined || e.port === port);
  const forward =
    endOk(m.a, f.source, f.sourcePort) &&
    (m.b === undefined || endOk(m.b, f.destination, f.destinationPort));
  const backward =
    endOk(m.a, f.destination, f.destinationPort) &&
    (m.b === undefined || endOk(m.b, f.source, f.sourcePort));
  return (m.protocol === undefined || f.protocol === m.protocol) && (forward || backward);
}

export function filterOf(o: FlowOptions): FlowFilter {
  const protocol =
    o.protocol === undefined
      ? 0
      : (PROTOCOLS[o.protocol.toLowerCase()] ??
        (/^\d+$/.test(o.protocol) ? Number(o.protocol) : NaN));
  if (Number.isNaN(protocol))
    throw new UsageError(
      `--protocol must be tcp, udp, sctp, icmp, icmpv6 or a number, not ${JSON.stringify(o.protocol)}`,
    );
  const port = o.port === undefined ? 0 : Number(o.port);
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535))
    throw new UsageError(`--port must be a port number, not ${JSON.stringify(o.port)}`);
  if (o.action !== undefined && !['allow', 'deny', 'hold'].includes(o.action))
    throw new UsageError('--action must be allow, deny or hold');
  return {
    sourceCidr: o.src ?? '',
    destinationCidr: o.dst ?? '',
    port,
    protocol,
    action: o.action ?? '',
    policy: o.policy ?? '',
    rule: o.rule ?? '',
    pod: o.pod ?? '',
    namespace: o.namespace ?? '',
    tcpState: o.tcpState ?? '',
  };
}

export function output(value: string, allowed: readonly string[]): string {
  if (!allowed.includes(value))
    throw new UsageError(
      `-o/--output must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`,
    );
  return value;
}

const proto = (n: number) => PROTOCOL_NAMES[n] ?? String(n);
/** One end of a flow; ICMP shows no port (its slots hold the echo id and type, as vRouter keys them). */
const end = (ip: string, port: number, pod: string, protocol = 0) =>
  `${protocol === 1 || protocol === 58 ? ip : `${ip.includes(':') ? `[${ip}]` : ip}:${port}`}${pod ? ` (${pod})` : ''}`;
/** A gate in a few words: the deciding policy (with its tier when a cluster one, "DENY by" when it denied), "default", "DENY (P)", or "-" when not checked. */
const policyName = (r: Flow__Output['egress']) =>
  r?.decision === 'rule'
    ? `${r.action === 'deny' ? 'DENY by ' : ''}${r.tier === 'admin' || r.tier === 'baseline' ? `${r.tier} ` : ''}${r.policyName || r.policy}`
    : r?.decision === 'default'
      ? 'default'
      : r?.decision === 'node'
        ? 'node'
        : r?.decision === 'deny'
          ? `DENY${r.policyName ? ` (${r.policyName})` : ''}`
          : '-';
const verdict = (f: Flow__Output) =>
  f.action === 'deny' ? `deny (${f.dropReason || 'policy'})` : f.action;
const age = (f: Flow__Output, now: number) => {
  const s = Math.max(0, Math.round((now - Number(f.firstSeenUnixMs)) / 1000));
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${s % 60}s`
      : `${Math.floor(s / 3600)}h`;
};

export function flowTable(flows: readonly Flow__Output[], wide: boolean, now = Date.now()): string {
  if (flows.length === 0) return 'no flows\n';
  if (!wide) {
    return renderTable(
      [
        'INDEX',
        'PROTO',
        'SOURCE',
        'DESTINATION',
        'ACTION',
        'EGRESS POLICY',
        'INGRESS POLICY',
        'STATE',
        'PKTS FWD/REV',
        'AGE',
      ],
      flows.map((f) => [
        String(f.index),
        proto(f.protocol),
        end(f.source, f.sourcePort, f.sourcePod, f.protocol),
        end(f.destination, f.destinationPort, f.destinationPod, f.protocol),
        verdict(f),
        policyName(f.egress),
        policyName(f.ingress),
        f.tcpState || '-',
        `${f.forward?.packets ?? 0}/${f.reverse?.packets ?? 0}`,
        age(f, now),
      ]),
    );
  }
  return renderTable(
    [
      'INDEX',
      'ZONE',
      'PROTO',
      'SOURCE',
      'DESTINATION',
      'ACTION',
      'EGRESS RULE',
      'INGRESS RULE',
      'STATE',
      'PKTS FWD/REV',
      'BYTES FWD/REV',
      'FIRST SEEN',
      'LAST SEEN',
    ],
    flows.map((f) => [
      String(f.index),
      f.replyZone && f.replyZone !== f.zone ? `${f.zone}<>${f.replyZone}` : f.zone,
      proto(f.protocol),
      end(f.source, f.sourcePort, f.sourcePod, f.protocol),
      end(f.destination, f.destinationPort, f.destinationPod, f.protocol),
      verdict(f),
      f.egress?.rule || policyName(f.egress),
      f.ingress?.rule || policyName(f.ingress),
      f.tcpState || '-',
      `${f.forward?.packets ?? 0}/${f.reverse?.packets ?? 0}`,
      `${f.forward?.bytes ?? 0}/${f.reverse?.bytes ?? 0}`,
      new Date(Number(f.firstSeenUnixMs)).toISOString(),
      new Date(Number(f.lastSeenUnixMs)).toISOString(),
    ]),
  );
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

export async function flowsList(io: Io, o: FlowOptions): Promise<number> {
  if (o.node === undefined) throw new UsageError('--node NAME or --node HOST:PORT is required');
  const format = output(o.output, ['table', 'wide', 'json']);
  const limit = Number(o.limit);
  if (!(Number.isInteger(limit) && limit > 0))
    throw new UsageError('--limit must be a positive integer');
  const match = o.match === undefined ? undefined : parseMatch(o.match);
  const filter = filterOf(o);
  if (match?.protocol !== undefined) filter.protocol = match.protocol;
  const target = await agentAddress(o.node, o.controller);
  if (o.watch) return watch(io, target, filter, match, format);
  let flows: Flow__Output[];
  if (match === undefined) flows = await listAll(target, filter, limit);
  else {
    // The two ends match in either order: ask for both, keep what matches ports too.
    const host = (e: MatchEnd) => e.ip;
    const ab = await listAll(
      target,
      { ...filter, sourceCidr: host(match.a), destinationCidr: match.b ? host(match.b) : '' },
      limit,
    );
    const ba = await listAll(
      target,
      { ...filter, sourceCidr: match.b ? host(match.b) : '', destinationCidr: host(match.a) },
      limit,
    );
    const seen = new Set<number>();
    flows = [...ab, ...ba]
      .filter((f) => {
        if (!matches(f, match) || seen.has(f.index)) return false;
        seen.add(f.index);
        return true;
      })
      .sort((x, y) => x.index - y.index);
  }
  io.stdout(
    format === 'json' ? `${JSON.stringify(flows, null, 2)}\n` : flowTable(flows, format === 'wide'),
  );
  return 0;
}

/** One flow event as `--watch` prints it (`node`: prefixed, for a cluster-wide view). */
export function eventLine(e: FlowEvent__Output, f: Flow__Output, node?: string): string {
  const at = new Date(Number(e.atUnixMs)).toISOString().slice(11, 23);
  return `${at} ${node === undefined ? '' : `${node} `}${e.type.padEnd(11)} #${f.index} ${proto(f.protocol)} ${end(f.source, f.sourcePort, f.sourcePod, f.protocol)} -> ${end(f.destination, f.destinationPort, f.destinationPod, f.protocol)} ${verdict(f)}  egress: ${policyName(f.egress)}  ingress: ${policyName(f.ingress)}\n`;
}

function watch(
  io: Io,
  target: AgentTarget,
  filter: FlowFilter,
  match: Match | undefined,
  format: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = flowClient(target.address, target.node);
    const stream = (
      client as unknown as { WatchFlows(req: object): grpc.ClientReadableStream<FlowEvent__Output> }
    ).WatchFlows({ filter });
    if (format !== 'json') io.stdout(`watching flows on ${target.address} (Ctrl-C to stop)\n`);
    stream.on('data', (e: FlowEvent__Output) => {
      const f = e.flow;
      if (f === null || (match !== undefined && !matches(f, match))) return;
      if (format === 'json') io.stdout(`${JSON.stringify(e)}\n`);
      else {
        io.stdout(eventLine(e, f));
      }
    });
    stream.on('error', (err: grpc.ServiceError) => {
      client.close();
      if (err.code === 1)
        resolve(0); // cancelled
      else
        reject(
          new UnavailableError(
            `watching flows on ${target.address}: ${err.details || err.message}`,
          ),
        );
    });
    stream.on('end', () => {
      client.close();
      resolve(0);
    });
    process.once('SIGINT', () => stream.cancel());
  });
}

export async function flowsGet(
  io: Io,
  index: string,
  o: { node?: string; controller?: string; output: string },
): Promise<number> {
  if (o.node === undefined) throw new UsageError('--node is required');
  const format = output(o.output, ['json', 'table']);
  if (!/^\d+$/.test(index))
    throw new UsageError(`flow index must be a number, not ${JSON.stringify(index)}`);
  const target = await agentAddress(o.node, o.controller);
  const client = flowClient(target.address, target.node);
  const f = await call<object, Flow__Output>(
    client,
    client.GetFlow,
    { index: Number(index) },
    `the agent at ${target.address}`,
  );
  if (format === 'json') io.stdout(`${JSON.stringify(f, null, 2)}\n`);
  else {
    const rows: Array<[string, string]> = [
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
    io.stdout(`${rows.map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`);
  }
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
  o: { node?: string; controller?: string; output: string },
): Promise<number> {
  if (o.node === undefined) throw new UsageError('--node is required');
  const format = output(o.output, ['table', 'json']);
  const target = await agentAddress(o.node, o.controller);
  const client = flowClient(target.address, target.node);
  const s = await call<object, FlowStatsReply__Output>(
    client,
    client.FlowStats,
    {},
    `the agent at ${target.address}`,
  );
  if (format === 'json') {
    io.stdout(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const nonZero = (m: Record<string, string | number>) =>
    Object.entries(m)
      .filter(([, v]) => Number(v) > 0)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  io.stdout(
    `${[
      `engine        ${s.engine}`,
      `flows         ${s.flows} of ${s.maxFlows} (peak ${s.peak}), ${s.holds} on hold`,
      `setup rate    ${s.setupRatePerSecond.toFixed(1)} flows/s`,
      `packets       ${s.packets}`,
      `inserted      ${s.inserted}, removed ${s.removed} (${nonZero(s.removedByCause)})`,
      `drops         ${nonZero(s.dropsByReason)}`,
      `refused       ${nonZero(s.refusedByReason)}`,
    ].join('\n')}\n`,
  );
  return 0;
}
