/**
 * A one-node topology of network namespaces for kernel datapath tests and
 * benchmarks (root only): a node namespace that routes between pod
 * namespaces, each pod with one veth whose peer sits in the node, IPv4 and
 * IPv6. Names are unique per run (`wk<pid><n>…`); `dispose()` removes every
 * namespace it made, and traffic stays inside them.
 *
 *   pod i:  eth0  10.200.<i>.2/24  fd00:200:<i>::2/64   default via .1 / ::1
 *   node:   vp<i> 10.200.<i>.1/24  fd00:200:<i>::1/64   forwarding on
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const PEER_SCRIPT = fileURLToPath(new URL('./netns-peer.mjs', import.meta.url));

/** Why kernel tests cannot run here, or undefined when they can. */
export function kernelSkipReason(addon: Record<string, unknown> | undefined): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables, NFQUEUE)';
  for (const p of ['/usr/sbin/ip', '/usr/sbin/nft'])
    if (!existsSync(p) && !existsSync(p.replace('/usr/sbin', '/sbin')))
      return `${p} is not installed (apt-get install iproute2 nftables)`;
  if (addon === undefined) return 'the native addon is not built (npm run build:native)';
  if (typeof addon.NfQueue !== 'function' || typeof addon.Conntrack !== 'function')
    return 'the native addon was built without the netfilter libraries (libnetfilter-queue-dev, libnetfilter-conntrack-dev, libmnl-dev)';
  return undefined;
}

export function run(file: string, args: readonly string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: timeoutMs }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${file} ${args.join(' ')}: ${String(stderr).trim() || err.message}`))
        : resolve(String(stdout)),
    );
  });
}

export function inNs(ns: string, args: readonly string[], timeoutMs?: number): Promise<string> {
  return run('ip', ['netns', 'exec', ns, ...args], timeoutMs);
}

export interface Pod {
  readonly name: string;
  readonly ns: string;
  readonly v4: string;
  readonly v6: string;
}

let counter = 0;

export class NodeTopology implements AsyncDisposable {
  readonly node: string;
  readonly pods: Pod[] = [];
  private readonly created: string[] = [];
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly prefix: string) {
    this.node = `${prefix}n`;
  }

  /** Creates the node and `podCount` pods (at most 50). */
  static async create(podCount: number): Promise<NodeTopology> {
    if (!(podCount >= 1 && podCount <= 50)) throw new RangeError('podCount must be 1..50');
    const t = new NodeTopology(`wk${process.pid}x${counter++}`);
    try {
      await t.addNs(t.node);
      await inNs(t.node, ['ip', 'link', 'set', 'lo', 'up']);
      await inNs(t.node, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      await inNs(t.node, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
      for (let i = 1; i <= podCount; i++) await t.addPod(i);
    } catch (err) {
      await t[Symbol.asyncDispose]();
      throw err;
    }
    return t;
  }

  private async addNs(name: string): Promise<void> {
    await run('ip', ['netns', 'add', name]);
    this.created.push(name);
  }

  private async addPod(i: number): Promise<void> {
    const ns = `${this.prefix}p${i}`;
    await this.addNs(ns);
    const host = `vp${i}`;
    await run('ip', [
      'link',
      'add',
      host,
      'netns',
      this.node,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    const v4 = `10.200.${i}.2`;
    const v6 = `fd00:200:${i}::2`;
    await inNs(this.node, ['ip', 'addr', 'add', `10.200.${i}.1/24`, 'dev', host]);
    await inNs(this.node, ['ip', '-6', 'addr', 'add', `fd00:200:${i}::1/64`, 'dev', host, 'nodad']);
    await inNs(this.node, ['ip', 'link', 'set', host, 'up']);
    await inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
    await inNs(ns, ['ip', 'addr', 'add', `${v4}/24`, 'dev', 'eth0']);
    await inNs(ns, ['ip', '-6', 'addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad']);
    await inNs(ns, ['ip', 'link', 'set', 'eth0', 'up']);
    await inNs(ns, ['ip', 'route', 'add', 'default', 'via', `10.200.${i}.1`]);
    await inNs(ns, ['ip', '-6', 'route', 'add', 'default', 'via', `fd00:200:${i}::1`]);
    this.pods.push({ name: `pod${i}`, ns, v4, v6 });
  }

  /** Starts a long-lived process in a namespace, killed by dispose(). */
  spawn(ns: string, args: readonly string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Starts an echo server in a pod and waits until it listens. */
  async serve(pod: Pod, proto: 'tcp' | 'udp', host: string, port: number): Promise<ChildProcess> {
    const child = this.spawn(pod.ns, [
      process.execPath,
      PEER_SCRIPT,
      'serve',
      proto,
      host,
      String(port),
    ]);
    await firstLine(child, 10_000, (l) => l === 'ready');
    return child;
  }

  /** One connection attempt from a pod: true when the echo came back. */
  async probe(
    from: Pod,
    proto: 'tcp' | 'udp',
    host: string,
    port: number,
    timeoutMs = 1500,
  ): Promise<boolean> {
    return (await this.probeResult(from, proto, host, port, timeoutMs)) === 'ok';
  }

  /** One connection attempt: "ok", or "fail:<why>" (fail:timeout, fail:ECONNREFUSED, ...). */
  async probeResult(
    from: Pod,
    proto: 'tcp' | 'udp',
    host: string,
    port: number,
    timeoutMs = 1500,
  ): Promise<string> {
    const out = await inNs(
      from.ns,
      [process.execPath, PEER_SCRIPT, 'probe', proto, host, String(port), String(timeoutMs)],
      timeoutMs + 10_000,
    );
    return out.trim();
  }

  /** A long-lived TCP connection from a pod. */
  async connection(from: Pod, host: string, port: number): Promise<Connection> {
    const child = this.spawn(from.ns, [
      process.execPath,
      PEER_SCRIPT,
      'connect',
      'tcp',
      host,
      String(port),
      '3000',
    ]);
    const c = new Connection(child);
    const first = await c.next(5_000);
    if (first !== 'connected')
      throw new Error(`connection ${from.name} → ${host}:${port}: ${first}`);
    return c;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.created.reverse())
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    this.created.length = 0;
  }
}

/** A line-driven TCP connection (netns-peer.mjs connect). */
export class Connection {
  private readonly lines: string[] = [];
  private waiter: ((l: string | undefined) => void) | undefined;
  private ended = false;

  constructor(readonly child: ChildProcess) {
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(l);
      } else this.lines.push(l);
    });
    rl.on('close', () => {
      this.ended = true;
      this.waiter?.(undefined);
    });
  }

  /** The next line, or 'timeout' / 'ended'. */
  next(timeoutMs: number): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.resolve('ended');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve('timeout');
      }, timeoutMs);
      this.waiter = (x) => {
        clearTimeout(timer);
        resolve(x ?? 'ended');
      };
    });
  }

  /** Sends a line; true when its echo arrives within the timeout. */
  async echo(text: string, timeoutMs = 1500): Promise<boolean> {
    this.child.stdin!.write(`${text}\n`);
    const reply = await this.next(timeoutMs);
    return reply === `reply:echo:${text}`;
  }

  close(): void {
    this.child.stdin!.end();
    this.child.kill('SIGKILL');
  }
}

function firstLine(
  child: ChildProcess,
  timeoutMs: number,
  want: (l: string) => boolean,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    let err = '';
    child.stderr?.on('data', (d) => {
      err += String(d);
    });
    const timer = setTimeout(
      () => reject(new Error(`no ready line within ${timeoutMs} ms: ${err}`)),
      timeoutMs,
    );
    rl.on('line', (l) => {
      if (want(l)) {
        clearTimeout(timer);
        rl.close();
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before ready: ${err}`));
    });
  });
}
