/**
 * The lab's network, built with iproute2: a netns per node and per pod, a
 * veth from each pod to its node, a fabric bridge (in a netns of its own)
 * joining the nodes. Pod traffic is routed by the node netns: pod to pod on
 * one node and pod to remote pod cross the node's forward hook, pod to its
 * own node its input and output hooks, as on a Kubernetes node with a
 * routed CNI.
 *
 * Addressing (contract with lab.ts, which records what is made here):
 *   pod    eth0: the pod's addresses (/32, /128); IPv4 default via
 *          169.254.1.1 (on the link), IPv6 default via fe80::1
 *   node   p<i>: the node side of pod i's veth, fe80::1, a host route to
 *          each pod address; fab0: the node's InternalIP addresses
 *          and fe80::<index>, a host route to every other node's addresses,
 *          and to every remote pod via its node (IPv4 via the node's first
 *          IPv4 InternalIP, IPv6 via its fe80:: fabric address)
 *   fabric br0 with one port per node
 *
 * Every neighbour is permanent (MAC addresses are the lab's own, from the
 * index: mac()), so no first packet waits on ARP or neighbour discovery and
 * none is dropped from a full resolution queue when a probe opens hundreds of
 * connections at once.
 *
 * Every command runs with a deadline and fails with what iproute2 said; no
 * address or route is made outside the lab's own namespaces.
 */
import { execFile } from 'node:child_process';
import { UnavailableError } from '../shared/errors.js';

const COMMAND_TIMEOUT_MS = 10_000;

/** Runs a command with a deadline; its stdout, or an error naming the command and what it said. */
export function run(
  argv: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      argv[0]!,
      argv.slice(1),
      { encoding: 'utf8', timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new UnavailableError(
              `${argv.join(' ')}: ${stderr.trim() || (err.killed ? 'timed out' : err.message)}`,
            ),
          );
        else resolve(stdout);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Runs iproute2 commands (one per line, `ip -batch`) in one namespace: one process for many. */
export async function ipBatch(
  netns: string,
  commands: readonly string[],
  options: { force?: boolean } = {},
): Promise<void> {
  if (commands.length === 0) return;
  await run(['ip', '-n', netns, ...(options.force ? ['-force'] : []), '-batch', '-'], {
    input: `${commands.join('\n')}\n`,
  });
}

/** Writes sysctls inside a namespace (`ip netns exec NS sysctl`). */
export async function sysctl(
  netns: string,
  settings: Record<string, string | number>,
): Promise<void> {
  await run([
    'ip',
    'netns',
    'exec',
    netns,
    'sysctl',
    '-qw',
    ...Object.entries(settings).map(([k, v]) => `${k}=${v}`),
  ]);
}

/** Every network namespace name on the machine. */
export async function listNetns(): Promise<string[]> {
  const out = await run(['ip', 'netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!.trim())
    .filter((n) => n !== '');
}

export async function addNetns(name: string): Promise<void> {
  await run(['ip', 'netns', 'add', name]);
  await ipBatch(name, ['link set lo up']);
}

/** Removes a namespace, killing what runs in it first; a namespace already gone is fine. */
export async function deleteNetns(name: string): Promise<void> {
  const pids = await run(['ip', 'netns', 'pids', name]).catch(() => '');
  for (const pid of pids.split('\n').filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await run(['ip', 'netns', 'delete', name]).catch((err: Error) => {
    if (!/No such file|not found|does not exist/i.test(err.message)) throw err;
  });
}

export const isIpv6 = (ip: string) => ip.includes(':');
export const hostPrefix = (ip: string) => `${ip}/${isIpv6(ip) ? 128 : 32}`;

/** The fabric netns: one bridge. */
export async function makeFabric(netns: string): Promise<void> {
  await addNetns(netns);
  await ipBatch(netns, ['link add br0 type bridge', 'link set br0 up']);
}

export interface NodeLink {
  readonly netns: string;
  /** The node's index in the lab: its fabric port n<index>, its fe80::<index>. */
  readonly index: number;
  /** The node's addresses (InternalIP), put on fab0. */
  readonly addresses: readonly string[];
}

/** The lab's MAC addresses: locally administered, one kind per link end, the index in the last two bytes. */
export function mac(kind: 'pod' | 'node-veth' | 'fabric', index: number): string {
  const k = { pod: '10', 'node-veth': '20', fabric: '30' }[kind];
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `02:${k}:00:00:${hex((index >> 8) & 255)}:${hex(index & 255)}`;
}

/** The IPv4 gateway every pod routes through: its node's end of the veth (a permanent neighbour, no address). */
export const POD_GATEWAY = '169.254.1.1';

/** The IPv6 next hop of a node on the fabric. */
export const fabricLinkLocal = (index: number) => `fe80::f:${index.toString(16)}`;

/** A node netns joined to the fabric, forwarding, with its addresses. */
export async function makeNode(fabric: string, node: NodeLink): Promise<void> {
  await addNetns(node.netns);
  await sysctl(node.netns, {
    'net.ipv4.ip_forward': 1,
    'net.ipv6.conf.all.forwarding': 1,
    'net.ipv4.conf.all.rp_filter': 0,
    'net.ipv4.conf.default.rp_filter': 0,
  });
  await ipBatch(fabric, [
    `link add n${node.index} type veth peer name fab0 netns ${node.netns}`,
    `link set n${node.index} master br0`,
    `link set n${node.index} up`,
  ]);
  await ipBatch(node.netns, [
    `link set fab0 address ${mac('fabric', node.index)}`,
    'link set fab0 up',
    `addr add ${fabricLinkLocal(node.index)}/64 dev fab0 nodad`,
    ...node.addresses.map((a) => `addr add ${hostPrefix(a)} dev fab0${isIpv6(a) ? ' nodad' : ''}`),
  ]);
}

export interface PodLink {
  readonly netns: string;
  /** The node-side veth, p<index>. */
  readonly index: number;
  readonly ips: readonly string[];
}

/** A pod netns with its addresses, joined to its node by a veth. */
export async function makePod(nodeNetns: string, pod: PodLink): Promise<void> {
  await addNetns(pod.netns);
  const veth = `p${pod.index}`;
  await ipBatch(nodeNetns, [
    `link add ${veth} type veth peer name eth0 netns ${pod.netns}`,
    `link set ${veth} address ${mac('node-veth', pod.index)}`,
    `link set ${veth} up`,
    `addr add fe80::1/64 dev ${veth} nodad`,
  ]);
  const v4 = pod.ips.filter((ip) => !isIpv6(ip));
  const v6 = pod.ips.filter(isIpv6);
  const gateway = mac('node-veth', pod.index);
  await ipBatch(pod.netns, [
    `link set eth0 address ${mac('pod', pod.index)}`,
    'link set eth0 up',
    ...v4.map((ip) => `addr add ${hostPrefix(ip)} dev eth0`),
    ...v6.map((ip) => `addr add ${hostPrefix(ip)} dev eth0 nodad`),
    ...(v4.length > 0
      ? [
          `neigh replace ${POD_GATEWAY} lladdr ${gateway} dev eth0 nud permanent`,
          `route add ${POD_GATEWAY}/32 dev eth0 scope link`,
          `route add default via ${POD_GATEWAY} dev eth0`,
        ]
      : []),
    ...(v6.length > 0
      ? [
          `neigh replace fe80::1 lladdr ${gateway} dev eth0 nud permanent`,
          'route add ::/0 via fe80::1 dev eth0',
        ]
      : []),
  ]);
  await ipBatch(
    nodeNetns,
    pod.ips.flatMap((ip) => [
      `neigh replace ${ip} lladdr ${mac('pod', pod.index)} dev ${veth} nud permanent`,
      `route replace ${hostPrefix(ip)} dev ${veth}`,
    ]),
  );
}

/** Removes pod i's veth (its routes go with it) and its netns. */
export async function removePod(nodeNetns: string, pod: PodLink): Promise<void> {
  await ipBatch(nodeNetns, [`link del p${pod.index}`]).catch(() => undefined);
  await deleteNetns(pod.netns);
}

/**
 * One route a node needs on the fabric, as an iproute2 route spec
 * ("10.0.2.1/32 via 192.168.255.2 dev fab0 onlink").
 */
export type FabricRoute = string;

/** The fabric routes of one node: every other node's addresses, every remote pod via its node. */
export function fabricRoutes(
  self: string,
  nodes: ReadonlyMap<string, NodeLink>,
  pods: ReadonlyArray<{ node: string; ips: readonly string[] }>,
): FabricRoute[] {
  const routes: FabricRoute[] = [];
  for (const [name, n] of nodes) {
    if (name === self) continue;
    for (const a of n.addresses) routes.push(`${hostPrefix(a)} dev fab0`);
  }
  for (const p of pods) {
    if (p.node === self) continue;
    const n = nodes.get(p.node);
    if (n === undefined) continue;
    const v4 = n.addresses.find((a) => !isIpv6(a));
    for (const ip of p.ips) {
      if (isIpv6(ip)) routes.push(`${hostPrefix(ip)} via ${fabricLinkLocal(n.index)} dev fab0`);
      else if (v4 !== undefined) routes.push(`${hostPrefix(ip)} via ${v4} dev fab0 onlink`);
    }
  }
  return routes;
}

/** Permanent neighbours of one node on the fabric: every other node's addresses and fe80:: next hop. */
export function fabricNeighbours(self: string, nodes: ReadonlyMap<string, NodeLink>): string[] {
  const out: string[] = [];
  for (const [name, n] of nodes) {
    if (name === self) continue;
    for (const a of [...n.addresses, fabricLinkLocal(n.index)])
      out.push(`neigh replace ${a} lladdr ${mac('fabric', n.index)} dev fab0 nud permanent`);
  }
  return out;
}

/** Brings a node's fabric routes from `had` to `want`: deletes the stale ones, replaces the rest. */
export async function syncRoutes(
  netns: string,
  had: readonly FabricRoute[],
  want: readonly FabricRoute[],
): Promise<void> {
  const keep = new Set(want.map(routeDestination));
  await ipBatch(
    netns,
    [
      ...had
        .filter((r) => !keep.has(routeDestination(r)))
        .map((r) => `route del ${routeDestination(r)} dev fab0`),
    ],
    { force: true },
  ).catch(() => undefined);
  await ipBatch(
    netns,
    want.map((r) => `route replace ${r}`),
  );
}

const routeDestination = (r: FabricRoute) => r.split(' ')[0]!;
