/**
 * Real nats-server processes for tests and benchmarks (Debian's 2.9.10,
 * PLATFORM.md): on free loopback ports, JetStream storage in temporary
 * directories. A single server, or a three-server cluster whose streams
 * can be R3. Servers can be killed (SIGKILL) and started again on the same
 * ports and storage.
 *
 * Security, as in production (docs/nats.md "TLS and identities"):
 * `identities` gives the servers TLS with client certificates mapped to
 * Weir's per-role users, configured by what `weirctl nats config --auth
 * tls` writes (the same code), with certificates of the test process' CA
 * (testing/pki.ts): the controller, one user per named node, and flow
 * readers. This is the one way tests start a NATS with TLS. Without it the
 * servers take plain connections (with `authorization`, password users):
 * for tests about plain NATS only, which say so.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { natsConfig } from '../cli/commands/nats-config.js';
import {
  HUB_ADMIN_USER,
  memberUser,
  natsFederationBucket,
  natsFederationConfig,
} from '../cli/commands/nats-federation-config.js';
import type { TestPki } from './pki.js';
import { freePort } from './ports.js';

export const NATS_SERVER = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';

async function listening(port: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: '127.0.0.1', port }, () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nats-server on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class NatsServerProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly log: string[] = [];

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly config: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** The process id while running (0 otherwise). */
  get pid(): number {
    return this.running ? (this.child!.pid ?? 0) : 0;
  }

  get running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  async start(): Promise<void> {
    const child = spawn(NATS_SERVER, ['-c', this.config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    for (const s of [child.stdout!, child.stderr!])
      s.on('data', (b: Buffer) => {
        this.log.push(...b.toString().split('\n').filter(Boolean));
        if (this.log.length > 2_000) this.log.splice(0, this.log.length - 2_000);
      });
    this.exited = new Promise((resolve) => child.on('exit', () => resolve()));
    await listening(this.port, 10_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${this.log.slice(-5).join('\n')}`);
    });
  }

  /** SIGKILL, as a crash. */
  async kill(): Promise<void> {
    if (this.running) this.child!.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.running) this.child!.kill('SIGTERM');
    await this.exited;
  }
}

export interface NatsRig extends AsyncDisposable {
  readonly servers: NatsServerProcess[];
  /** Every server's URL, comma-separated (what --nats takes). */
  readonly urls: string;
  readonly dir: string;
}

/** Who a TLS NATS lets in: each a user with its role's permissions (shared/nats/permissions.ts). */
export interface NatsIdentities {
  readonly pki: TestPki;
  /** The Weir cluster (--cluster) whose subjects the users are given. */
  readonly cluster: string;
  /** One agent user per node (spiffe://weir/node/N); the node's certificate is issued too. */
  readonly nodes: readonly string[];
  /** Flow readers: operator certificates, ROLE/NAME (read-only/test names testing/pki.ts' operator). */
  readonly readers?: readonly string[];
  /** The federation the cluster is a member of (`weirctl nats config --federation`). */
  readonly federation?: string;
}

/**
 * Writes the `weirctl nats config --auth tls` files for `identities` into
 * DIR (weir-tls.conf, weir-authorization.conf) with the pki's NATS server
 * certificate, and returns their paths (a configuration includes them by
 * a path relative to itself, as nats-server resolves includes).
 */
export async function writeNatsIdentities(
  dir: string,
  identities: NatsIdentities,
): Promise<string[]> {
  const { pki } = identities;
  const server = await pki.natsServer();
  for (const node of identities.nodes) await pki.node(node);
  const out: string[] = [];
  const code = await natsConfig(
    { stdout: (t) => void out.push(t), stderr: (t) => void out.push(t) },
    {
      cluster: identities.cluster,
      node: [...identities.nodes],
      reader: [...(identities.readers ?? [])],
      ...(identities.federation !== undefined ? { federation: identities.federation } : {}),
      auth: 'tls',
      serverTlsDir: server,
      out: dir,
    },
  );
  if (code !== 0) throw new Error(`weirctl nats config: ${out.join('')}`);
  return ['weir-tls.conf', 'weir-authorization.conf'].map((f) => join(dir, f));
}

/**
 * `size` servers (1, or 3 for a cluster) with JetStream. `identities`: TLS
 * and certificate users (above); else plain connections, with
 * `authorization` (an `authorization { ... }` block of password users,
 * shared/nats/permissions.ts) or anyone.
 */
export async function startNats(
  options: {
    size?: number;
    identities?: NatsIdentities;
    authorization?: string;
    maxPayload?: number;
  } = {},
): Promise<NatsRig> {
  const size = options.size ?? 1;
  const dir = await mkdtemp(join(tmpdir(), 'weir-nats-'));
  if (options.identities !== undefined && options.authorization !== undefined)
    throw new Error('startNats: identities and authorization are alternatives');
  const security =
    options.identities !== undefined
      ? (await writeNatsIdentities(join(dir, 'conf'), options.identities)).map(
          (f) => `include ${JSON.stringify(relative(dir, f))}`,
        )
      : [options.authorization ?? ''];
  const ports = await Promise.all(Array.from({ length: size }, freePort));
  const routes = size > 1 ? await Promise.all(Array.from({ length: size }, freePort)) : [];
  const servers: NatsServerProcess[] = [];
  for (let i = 0; i < size; i++) {
    const name = `n${i + 1}`;
    const store = join(dir, name);
    await mkdir(store, { recursive: true });
    const lines = [
      `server_name: ${name}`,
      `listen: 127.0.0.1:${ports[i]}`,
      `jetstream { store_dir: ${JSON.stringify(store)} }`,
      ...(options.maxPayload !== undefined ? [`max_payload: ${options.maxPayload}`] : []),
      ...(size > 1
        ? [
            `cluster { name: weir, listen: 127.0.0.1:${routes[i]}, routes: [${routes
              .filter((_, j) => j !== i)
              .map((p) => `nats-route://127.0.0.1:${p}`)
              .join(', ')}] }`,
          ]
        : []),
      ...security,
    ];
    const config = join(dir, `${name}.conf`);
    await writeFile(config, `${lines.join('\n')}\n`);
    servers.push(new NatsServerProcess(name, ports[i]!, config));
  }
  await Promise.all(servers.map((s) => s.start()));
  return {
    servers,
    urls: servers.map((s) => s.url).join(','),
    dir,
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((s) => s.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A federation's NATS: the hub and one leaf server per member (docs/federation-nats.md). */
export interface FederationNats extends AsyncDisposable {
  readonly federation: string;
  /** The hub (JetStream domain `hub`); its client port takes the operator's and members' users. */
  readonly hub: NatsServerProcess;
  /** Each member's own server (JetStream domain = the cluster), a leaf of the hub; plain clients. */
  readonly members: Readonly<Record<string, NatsServerProcess>>;
  /** The hub operator's user and password (unrestricted: creates the bucket, writes raw entries). */
  readonly admin: { readonly user: string; readonly password: string };
  /** Each member's user and password at the hub (what its leaf connection logs in as). */
  readonly memberUsers: Readonly<
    Record<string, { readonly user: string; readonly password: string }>
  >;
  readonly dir: string;
}

/**
 * A hub and a leaf server per member, configured by what `weirctl nats
 * federation-config` writes (the same code), with the federation's bucket
 * created by `weirctl nats federation-bucket`'s code (unless `bucket:
 * false`). Every server can be killed and started again on the same ports
 * and storage.
 */
export async function startFederationHub(options: {
  federation: string;
  members: readonly string[];
  bucket?: boolean;
  /** Lines added to a member server's configuration (its own Weir users: an `authorization` block). */
  memberConfig?: (cluster: string) => string;
  /**
   * Member servers with TLS and Weir's certificate users, as production
   * (writeNatsIdentities, with the federation): the controller's
   * certificate is then its link's NATS user.
   */
  memberIdentities?: (cluster: string) => Omit<NatsIdentities, 'cluster' | 'federation'>;
}): Promise<FederationNats> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-fed-nats-'));
  const hubPort = await freePort();
  const leafPort = await freePort();
  const out: string[] = [];
  const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void out.push(t) };
  const code = await natsFederationConfig(io, {
    federation: options.federation,
    member: [...options.members],
    hubUrl: `nats://127.0.0.1:${leafPort}`,
    leafListen: `127.0.0.1:${leafPort}`,
    out: join(dir, 'conf'),
  });
  if (code !== 0) throw new Error(`weirctl nats federation-config: ${out.join('')}`);
  const pw = async (user: string) =>
    (await readFile(join(dir, 'conf', 'passwords', user), 'utf8')).split('\n')[0]!.trim();
  const server = async (
    name: string,
    port: number,
    domain: string,
    include: string,
    extra = '',
  ) => {
    const store = join(dir, name);
    await mkdir(store, { recursive: true });
    const config = join(dir, `${name}.conf`);
    await writeFile(
      config,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${port}`,
        `jetstream { store_dir: ${JSON.stringify(store)}, domain: ${domain} }`,
        `include ${JSON.stringify(include)}`,
        extra,
        '',
      ].join('\n'),
    );
    return new NatsServerProcess(name, port, config);
  };
  const hub = await server('hub', hubPort, 'hub', 'conf/hub/weir-federation.conf');
  const members: Record<string, NatsServerProcess> = {};
  const memberUsers: Record<string, { user: string; password: string }> = {};
  for (const m of options.members) {
    const ids = options.memberIdentities?.(m);
    const security =
      ids === undefined
        ? []
        : (
            await writeNatsIdentities(join(dir, 'conf', 'members', m, 'weir'), {
              ...ids,
              cluster: m,
              federation: options.federation,
            })
          ).map((f) => `include ${JSON.stringify(relative(dir, f))}`);
    members[m] = await server(
      `member-${m}`,
      await freePort(),
      m,
      `conf/members/${m}/weir-federation-leaf.conf`,
      [options.memberConfig?.(m) ?? '', ...security].join('\n'),
    );
    memberUsers[m] = { user: memberUser(m), password: await pw(memberUser(m)) };
  }
  const admin = { user: HUB_ADMIN_USER, password: await pw(HUB_ADMIN_USER) };
  const all = [hub, ...Object.values(members)];
  await Promise.all(all.map((s) => s.start()));
  if (options.bucket !== false) {
    const bucketCode = await natsFederationBucket(io, {
      federation: options.federation,
      nats: hub.url,
      natsUser: admin.user,
      natsPasswordFile: join(dir, 'conf', 'passwords', HUB_ADMIN_USER),
    });
    if (bucketCode !== 0) throw new Error(`weirctl nats federation-bucket: ${out.join('')}`);
  }
  return {
    federation: options.federation,
    hub,
    members,
    admin,
    memberUsers,
    dir,
    async [Symbol.asyncDispose]() {
      await Promise.all(all.map((s) => s.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
