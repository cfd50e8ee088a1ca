/**
 * `weirctl nats config`: the nats-server configuration that gives each of
 * a cluster's roles exactly its permissions (shared/nats/permissions.ts,
 * docs/nats.md "Permissions"): the controller, one user per node's agent,
 * and flow readers.
 *
 *   --auth tls (default): users are certificate identities (URI SANs,
 *     spiffe://weir/node/<node>, ...), mapped by the server's
 *     `verify_and_map`; no passwords. Writes weir-authorization.conf and
 *     weir-tls.conf (the server's certificate files, --server-tls-dir).
 *   --auth password: users with random passwords, each written to
 *     passwords/<user> (0600) for the programs' --nats-password-file; a
 *     password already there is kept, so adding a node changes no other
 *     user's. With --server-tls-dir, weir-tls.conf requires TLS with
 *     verified client certificates as well.
 *
 * The server's configuration includes the files it writes:
 * `include weir-authorization.conf` (and `include weir-tls.conf`).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NATS_CLUSTER_NAME } from '../../shared/nats/names.js';
import {
  type NatsUser,
  agentUser,
  identityUri,
  natsAuthorization,
  natsTlsBlock,
} from '../../shared/nats/permissions.js';
import { UsageError, type Io } from '../io.js';

export interface NatsConfigOptions {
  cluster?: string;
  node?: string[];
  nodesFile?: string;
  reader?: string[];
  auth?: string;
  serverTlsDir?: string;
  out?: string;
  /** The federation this cluster is a member of: its controller may reach the hub (docs/federation-nats.md). */
  federation?: string;
}

/** Node names as Kubernetes allows them (and NATS subject tokens can carry, "." written "~"). */
const NODE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
/** Most nodes one configuration names (a line each in the server's config). */
const MAX_NODES = 100_000;

export async function natsConfig(io: Io, o: NatsConfigOptions): Promise<number> {
  const cluster = o.cluster ?? 'local';
  if (!NATS_CLUSTER_NAME.test(cluster))
    throw new UsageError(
      `--cluster ${JSON.stringify(cluster.slice(0, 80))} cannot name NATS subjects (letters, digits, "_", "-"; at most 64)`,
    );
  if (o.federation !== undefined && !NATS_CLUSTER_NAME.test(o.federation))
    throw new UsageError(
      `--federation ${JSON.stringify(o.federation.slice(0, 80))} cannot name a NATS bucket (letters, digits, "_", "-"; at most 64)`,
    );
  const auth = o.auth ?? 'tls';
  if (auth !== 'tls' && auth !== 'password')
    throw new UsageError(
      `--auth must be tls or password, not ${JSON.stringify(auth.slice(0, 80))}`,
    );
  if (o.out === undefined) throw new UsageError('--out DIR is required');
  const nodes = [...(o.node ?? [])];
  if (o.nodesFile !== undefined) {
    let text: string;
    try {
      text = await readFile(o.nodesFile, 'utf8');
    } catch (err) {
      throw new UsageError(`--nodes-file ${o.nodesFile}: ${(err as Error).message}`);
    }
    nodes.push(
      ...text
        .split('\n')
        .map((l) => l.replace(/#.*/, '').trim())
        .filter((l) => l !== ''),
    );
  }
  const bad = nodes.filter((n) => !NODE.test(n));
  if (bad.length > 0)
    throw new UsageError(
      `not node names (letters, digits, ".", "-", "_"; at most 253): ${bad
        .slice(0, 5)
        .map((n) => JSON.stringify(n.slice(0, 80)))
        .join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}`,
    );
  const unique = [...new Set(nodes)].sort();
  if (unique.length === 0)
    throw new UsageError('name the nodes: --node N (repeatable) or --nodes-file F');
  if (unique.length > MAX_NODES) throw new UsageError(`at most ${MAX_NODES} nodes`);
  const readers = [...new Set(o.reader ?? [])];
  if (auth === 'tls') {
    const badReader = readers.find(
      (r) => !/^(admin|read-only)\/[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(r),
    );
    if (badReader !== undefined)
      throw new UsageError(
        `--reader ${JSON.stringify(badReader.slice(0, 80))}: with --auth tls, a reader is an operator certificate's ROLE/NAME (admin/alice, read-only/bob)`,
      );
  } else {
    const badReader = readers.find((r) => !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(r));
    if (badReader !== undefined)
      throw new UsageError(`--reader ${JSON.stringify(badReader.slice(0, 80))} is not a user name`);
  }

  await mkdir(o.out, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  let users: {
    controller: NatsUser;
    agents: Array<NatsUser & { node: string }>;
    readers: NatsUser[];
  };
  if (auth === 'tls') {
    users = {
      controller: { user: identityUri.controller },
      agents: unique.map((node) => ({ node, user: identityUri.node(node) })),
      readers: readers.map((r) => {
        const [role, name] = r.split('/') as ['admin' | 'read-only', string];
        return { user: identityUri.operator(role, name) };
      }),
    };
  } else {
    const dir = join(o.out, 'passwords');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const password = (user: string) => keptPassword(dir, user, written);
    users = {
      controller: { user: 'controller', password: await password('controller') },
      agents: [],
      readers: [],
    };
    for (const node of unique)
      users.agents.push({ node, user: agentUser(node), password: await password(agentUser(node)) });
    for (const r of readers) users.readers.push({ user: r, password: await password(r) });
  }
  const authorization = join(o.out, 'weir-authorization.conf');
  await writeFile(
    authorization,
    `# Weir cluster ${cluster}: written by weirctl nats config (--auth ${auth}); docs/nats.md\n${natsAuthorization({ cluster, ...users, ...(o.federation !== undefined ? { federation: o.federation } : {}) })}`,
    { mode: 0o600 },
  );
  written.push(authorization);
  const includes = ['include weir-authorization.conf'];
  if (auth === 'tls' || o.serverTlsDir !== undefined) {
    const d = o.serverTlsDir ?? '/etc/nats/tls';
    const tls = join(o.out, 'weir-tls.conf');
    await writeFile(
      tls,
      `# the server's certificate and the CA every client's must chain to\n${natsTlsBlock({
        cert: join(d, 'tls.crt'),
        key: join(d, 'tls.key'),
        ca: join(d, 'ca.crt'),
        map: auth === 'tls',
      })}`,
    );
    written.push(tls);
    includes.push('include weir-tls.conf');
  }
  io.stdout(
    `${written.map((f) => `wrote ${f}`).join('\n')}\n` +
      `${unique.length} agent user(s), 1 controller, ${readers.length} reader(s) for cluster ${cluster}\n` +
      `add to each nats-server configuration (next to the files):\n${includes.map((l) => `  ${l}`).join('\n')}\n`,
  );
  return 0;
}

/**
 * A user's password in `dir` (first line of the file named after it): the
 * one already there, so that writing the configuration again changes no
 * password a server or a client already uses; else a fresh random one,
 * written 0600 and added to `written`.
 */
export async function keptPassword(dir: string, user: string, written: string[]): Promise<string> {
  const file = join(dir, user);
  const kept = await readFile(file, 'utf8').then(
    (t) => t.split('\n')[0]!.trim(),
    () => '',
  );
  if (kept !== '') return kept;
  const fresh = randomBytes(24).toString('base64url');
  await writeFile(file, `${fresh}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  written.push(file);
  return fresh;
}
