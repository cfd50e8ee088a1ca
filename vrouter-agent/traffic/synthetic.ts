/**
 * A traffic generator for the userspace datapath: connections between the
 * node's pods and the peers its span knows (pods on other nodes, a few
 * outside addresses), as real packets — TCP handshakes, data and FINs, UDP
 * request/reply, ICMP echo — on the ports its policies name. It lets a demo
 * or a test watch flows appear, be allowed or denied by the right rule, close
 * and age, without a kernel datapath. Deterministic for a seed.
 */
import type { Logger } from '../../shared/log.js';
import { formatIp, type Ip } from '../../shared/net/ip.js';
import { seededRandom, type SeededRandom } from '../../shared/random.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { VERDICT_ALLOW, type AttachedEndpoint } from '../datapath/datapath.js';
import { RawPacketBatch } from '../datapath/raw-packets.js';
import type { UserspaceDatapath } from '../datapath/userspace-datapath.js';
import { TcpFlag } from '../flows/flow-table.js';
import { buildPacket, type PacketSpec } from '../packet/build.js';

export interface SyntheticTrafficOptions {
  /** New connections per second. */
  readonly connectionsPerSecond: number;
  /** Connections open at once, at most. */
  readonly maxOpen?: number;
  readonly tickMs?: number;
  readonly seed?: number;
  readonly log: Logger;
}

/** Outside addresses a pod may talk to (documentation ranges: routed nowhere). */
const OUTSIDE = ['198.51.100.7', '203.0.113.200', '203.0.113.9', '192.0.2.44'];
const COMMON_PORTS = [80, 443, 53, 8080, 9090];

const text = (ip: Ip | string): string => (typeof ip === 'string' ? ip : formatIp(ip));

interface Connection {
  readonly zone: number;
  /** The initiator and the responder. */
  readonly a: { ip: string; port: number };
  readonly b: { ip: string; port: number };
  readonly protocol: 'tcp' | 'udp' | 'icmp';
  /** Packets still to send: [from a (true) or b, TCP flags]. */
  readonly script: Array<[boolean, number]>;
}

export class SyntheticTraffic implements Disposable {
  private timer: NodeJS.Timeout | undefined;
  private open: Connection[] = [];
  private readonly rand: SeededRandom;
  private nextPort = 30000;
  private readonly batch = new RawPacketBatch();

  constructor(
    private readonly datapath: () => UserspaceDatapath,
    private readonly options: SyntheticTrafficOptions,
  ) {
    this.rand = seededRandom(options.seed ?? 1);
  }

  start(): void {
    const tick = this.options.tickMs ?? 200;
    this.timer = setInterval(() => {
      try {
        this.step(tick);
      } catch (err) {
        this.options.log.warn({ err }, 'synthetic traffic step failed');
      }
    }, tick);
    this.timer.unref();
  }

  private random(): number {
    return this.rand.next();
  }

  private pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[Math.floor(this.random() * xs.length)];
  }

  /** Ports the policies of these tables name (ranges' first ports, named ports resolved on local pods), and common ones. */
  private ports(tables: RuleTables): number[] {
    const out = new Set(COMMON_PORTS);
    for (const sg of tables.snapshot.serviceGroups) {
      for (const s of sg.services) {
        if (s.port.kind === 'range') out.add(s.port.start);
        else if (s.port.kind === 'named')
          for (const e of tables.snapshot.endpoints)
            for (const p of e.ports) if (p.name === s.port.name) out.add(p.port);
      }
    }
    return [...out];
  }

  /** Advances every open connection by one packet and opens new ones. */
  step(tickMs: number): void {
    const dp = this.datapath();
    const attached = dp.attached();
    if (attached.length === 0) return;
    const tables = dp.tables;
    const peers = [
      ...tables.snapshot.addressGroups.flatMap((g) =>
        g.kind === 'selector' ? g.members.flatMap((m) => m.ips) : [],
      ),
      ...attached.flatMap((a) => a.ips.map(text)),
      ...OUTSIDE,
    ].filter((ip) => !ip.includes(':'));
    const ports = this.ports(tables);
    const wanted = Math.max(1, Math.round((this.options.connectionsPerSecond * tickMs) / 1000));
    for (let i = 0; i < wanted && this.open.length < (this.options.maxOpen ?? 200); i++) {
      const local = this.pick(attached)!;
      const own = local.ips.map(text).find((ip) => !ip.includes(':')) ?? '';
      const peer = this.pick(peers);
      if (own === '' || peer === undefined || peer === own) continue;
      this.open.push(this.connection(local, own, peer, ports));
    }

    // A packet enters in the zone of its local sender, else of its local receiver.
    const zoneOf = new Map<string, number>();
    for (const a of attached) for (const ip of a.ips) zoneOf.set(text(ip), a.zone);
    this.batch.clear();
    const sent: Connection[] = [];
    for (const c of this.open) {
      const next = c.script.shift();
      if (next === undefined) continue;
      const [fromA, flags] = next;
      const [src, dst] = fromA ? [c.a, c.b] : [c.b, c.a];
      const spec: PacketSpec =
        c.protocol === 'icmp'
          ? {
              src: src.ip,
              dst: dst.ip,
              protocol: 'icmp',
              icmp: { type: fromA ? 8 : 0, id: c.a.port },
              payload: 56,
            }
          : {
              src: src.ip,
              dst: dst.ip,
              protocol: c.protocol,
              sport: src.port,
              dport: dst.port,
              ...(c.protocol === 'tcp' ? { tcpFlags: flags } : {}),
              payload: flags & TcpFlag.syn ? 0 : 200,
            };
      this.batch.push(buildPacket(spec), zoneOf.get(src.ip) ?? zoneOf.get(dst.ip) ?? c.zone);
      sent.push(c);
    }
    if (this.batch.count === 0) return;
    const verdicts = dp.process(this.batch);
    // A dropped packet ends its connection (clients give up; retries would only be dropped again).
    this.open = sent.filter(
      (c, i) => verdicts.verdicts[i] === VERDICT_ALLOW && c.script.length > 0,
    );
  }

  private connection(
    local: AttachedEndpoint,
    own: string,
    peer: string,
    ports: readonly number[],
  ): Connection {
    const outbound = this.random() < 0.5;
    const roll = this.random();
    const protocol: Connection['protocol'] = roll < 0.7 ? 'tcp' : roll < 0.9 ? 'udp' : 'icmp';
    const service = this.pick(ports) ?? 80;
    this.nextPort = this.nextPort >= 60999 ? 30000 : this.nextPort + 1;
    const ephemeral = this.nextPort;
    const [a, b] = outbound
      ? [
          { ip: own, port: ephemeral },
          { ip: peer, port: service },
        ]
      : [
          { ip: peer, port: ephemeral },
          { ip: own, port: service },
        ];
    const data: Array<[boolean, number]> = [];
    for (let i = 0, n = 1 + Math.floor(this.random() * 4); i < n; i++)
      data.push([true, TcpFlag.ack | TcpFlag.psh], [false, TcpFlag.ack | TcpFlag.psh]);
    const script: Array<[boolean, number]> =
      protocol === 'tcp'
        ? [
            [true, TcpFlag.syn],
            [false, TcpFlag.syn | TcpFlag.ack],
            [true, TcpFlag.ack],
            ...data,
            ...(this.random() < 0.8
              ? ([
                  [true, TcpFlag.fin | TcpFlag.ack],
                  [false, TcpFlag.fin | TcpFlag.ack],
                  [true, TcpFlag.ack],
                ] as Array<[boolean, number]>)
              : []),
          ]
        : protocol === 'udp'
          ? [
              [true, 0],
              [false, 0],
            ]
          : [
              [true, 0],
              [false, 0],
            ];
    return { zone: local.zone, a, b, protocol, script };
  }

  [Symbol.dispose](): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
