/**
 * `weirctl nats federation-config`: the hub's and each member's nats-server
 * configuration for one federation (docs/federation-nats.md):
 *
 *   OUT/hub/weir-federation.conf        the hub: leafnode port, one user per member with
 *                                       exactly its permissions, and the hub operator's user
 *   OUT/hub/bucket.json                 the bucket's stream configuration (`nats stream add --config`)
 *   OUT/members/<cluster>/weir-federation-leaf.conf
 *                                       a member: its leafnode remote to the hub, as its user
 *   OUT/passwords/<user>                each user's password (0600); kept when already there,
 *                                       so adding a member changes no other member's
 *
 * The hub's configuration includes `hub/weir-federation.conf` and has
 * `jetstream { domain: hub }`; each member's includes its leaf file and
 * has `jetstream { domain: <cluster> }` (the files cannot set the domain:
 * the `jetstream` block is the operator's, with its storage).
 *
 * The member users are in the hub's top-level `authorization`, not in
 * `leafnodes { authorization }`: nats-server 2.9 accepts no permissions
 * there (facts in docs/federation-nats.md). Passwords only: a TLS leaf
 * identity would need `verify_and_map` on the leafnode port, which 2.9
 * maps for leaf connections only through the same top-level users; left
 * for when a deployment asks for it.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { keptPassword } from './nats-config.js';
import { join } from 'node:path';
import { ENTRY_MAX_BYTES } from '../../controller/federation/link.js';
import {
  FEDERATION_NAME,
  HUB_DOMAIN,
  federationMemberPermissions,
  federationStreamConfig,
} from '../../shared/nats/federation.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { natsConnect, parseNatsServers } from '../../shared/nats/connect.js';
import { NATS_CLUSTER_NAME } from '../../shared/nats/names.js';
import { UsageError, type Io } from '../io.js';

export interface NatsFederationConfigOptions {
  federation?: string;
  member?: string[];
  /** The URL members reach the hub's leafnode port at. */
  hubUrl?: string;
  /** The hub's leafnode listen address (host:port or port). */
  leafListen?: string;
  out?: string;
  /** Largest stream size in bytes (default FEDERATION_BUCKET_MAX_BYTES, 256 MiB). */
  maxBytes?: string;
}

/** The hub operator's user (creates the bucket; unrestricted). */
export const HUB_ADMIN_USER = 'weir-fed-admin';
export const memberUser = (cluster: string) => `member-${cluster}`;

/** Most members one federation names. */
const MAX_MEMBERS = 1_000;

export async function natsFederationConfig(
  io: Io,
  o: NatsFederationConfigOptions,
): Promise<number> {
  const federation = o.federation ?? '';
  if (!FEDERATION_NAME.test(federation))
    throw new UsageError(
      `--federation ${JSON.stringify(federation.slice(0, 80))} cannot name a NATS bucket (letters, digits, "_", "-"; at most 64)`,
    );
  if (o.out === undefined) throw new UsageError('--out DIR is required');
  const members = [...new Set(o.member ?? [])].sort();
  const bad = members.filter((m) => !NATS_CLUSTER_NAME.test(m));
  if (bad.length > 0)
    throw new UsageError(
      `--member: not cluster names (letters, digits, "_", "-"; at most 64): ${bad
        .slice(0, 5)
        .map((m) => JSON.stringify(m.slice(0, 80)))
        .join(', ')}`,
    );
  if (members.includes(HUB_DOMAIN))
    throw new UsageError(
      `--member ${HUB_DOMAIN}: the hub's JetStream domain is "${HUB_DOMAIN}"; a member's domain is its cluster name`,
    );
  if (members.length === 0) throw new UsageError('name the members: --member CLUSTER (repeatable)');
  if (members.length > MAX_MEMBERS) throw new UsageError(`at most ${MAX_MEMBERS} members`);
  const hubUrl = o.hubUrl ?? 'nats://hub:7422';
  if (!/^(nats|tls):\/\/[A-Za-z0-9.[\]:_-]+:\d{1,5}$/.test(hubUrl))
    throw new UsageError(
      `--hub-url ${JSON.stringify(hubUrl.slice(0, 80))} is not nats://host:port (the hub's leafnode port)`,
    );
  const leafListen = o.leafListen ?? '0.0.0.0:7422';
  if (!/^([A-Za-z0-9.[\]:_-]+:)?\d{1,5}$/.test(leafListen))
    throw new UsageError(
      `--leaf-listen ${JSON.stringify(leafListen.slice(0, 80))} is not [host:]port`,
    );
  let maxBytes: number | undefined;
  if (o.maxBytes !== undefined) {
    maxBytes = Number(o.maxBytes);
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0)
      throw new UsageError(`--max-bytes ${JSON.stringify(o.maxBytes)} is not a positive integer`);
  }

  const written: string[] = [];
  await mkdir(o.out, { recursive: true, mode: 0o700 });
  const pwDir = join(o.out, 'passwords');
  await mkdir(pwDir, { recursive: true, mode: 0o700 });
  const password = (user: string) => keptPassword(pwDir, user, written);

  const hub = federationHubConfig({
    federation,
    leafListen,
    admin: await password(HUB_ADMIN_USER),
    members: await Promise.all(
      members.map(async (cluster) => ({ cluster, password: await password(memberUser(cluster)) })),
    ),
  });
  const hubDir = join(o.out, 'hub');
  await mkdir(hubDir, { recursive: true, mode: 0o700 });
  const hubFile = join(hubDir, 'weir-federation.conf');
  await writeFile(hubFile, hub, { mode: 0o600 });
  written.push(hubFile);
  const bucketFile = join(hubDir, 'bucket.json');
  await writeFile(
    bucketFile,
    `${JSON.stringify(federationStreamConfig(federation, { maxMsgBytes: maxEntryBytes(), ...(maxBytes !== undefined ? { maxBytes } : {}) }), null, 2)}\n`,
  );
  written.push(bucketFile);
  for (const cluster of members) {
    const dir = join(o.out, 'members', cluster);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, 'weir-federation-leaf.conf');
    await writeFile(
      file,
      federationLeafConfig({ cluster, hubUrl, password: await password(memberUser(cluster)) }),
      { mode: 0o600 },
    );
    written.push(file);
  }
  io.stdout(
    `${written.map((f) => `wrote ${f}`).join('\n')}\n` +
      `federation ${federation}: ${members.length} member(s) (${members.join(', ')})\n` +
      `hub nats-server.conf:    include hub/weir-federation.conf   and  jetstream { domain: ${HUB_DOMAIN}, store_dir: ... }\n` +
      `  then create the bucket: weirctl nats federation-bucket --federation ${federation} --nats HUB_CLIENT_URL --nats-user ${HUB_ADMIN_USER} --nats-password-file passwords/${HUB_ADMIN_USER}\n` +
      `each member's nats-server.conf: include members/<cluster>/weir-federation-leaf.conf  and  jetstream { domain: <cluster>, ... }\n`,
  );
  return 0;
}

/** Largest message the bucket stores: the largest entry and room for its headers. */
export const maxEntryBytes = () => Math.max(...Object.values(ENTRY_MAX_BYTES)) + 4096;

/**
 * The hub's part of its nats-server configuration: the leafnode port and
 * the users (the operator's, unrestricted; one per member, as
 * federationMemberPermissions says). Shared by the CLI and the tests.
 */
export function federationHubConfig(o: {
  federation: string;
  leafListen: string;
  admin: string;
  members: ReadonlyArray<{ cluster: string; password: string }>;
}): string {
  const users = [
    { user: HUB_ADMIN_USER, password: o.admin },
    ...o.members.map((m) => ({
      user: memberUser(m.cluster),
      password: m.password,
      permissions: federationMemberPermissions(o.federation, m.cluster),
    })),
  ];
  return (
    `# Weir federation ${o.federation}: written by weirctl nats federation-config; docs/federation-nats.md\n` +
    `leafnodes { listen: ${JSON.stringify(o.leafListen)} }\n` +
    `authorization ${JSON.stringify({ users }, null, 2)}\n`
  );
}

/** A member's leafnode remote to the hub, as its user. */
export function federationLeafConfig(o: {
  cluster: string;
  hubUrl: string;
  password: string;
}): string {
  const url = new URL(o.hubUrl);
  url.username = memberUser(o.cluster);
  url.password = o.password;
  return (
    `# Weir federation member ${o.cluster}: written by weirctl nats federation-config; docs/federation-nats.md\n` +
    `leafnodes { remotes: [ { url: ${JSON.stringify(url.toString().replace(/\/$/, ''))} } ] }\n`
  );
}

export interface NatsFederationBucketOptions {
  federation?: string;
  nats?: string;
  natsUser?: string;
  natsPasswordFile?: string;
}

/**
 * `weirctl nats federation-bucket`: creates the federation's bucket at the
 * hub (as the hub operator's user: members may not create streams), or
 * says it is there already. The configuration is federationStreamConfig's.
 */
export async function natsFederationBucket(
  io: Io,
  o: NatsFederationBucketOptions,
): Promise<number> {
  const federation = o.federation ?? '';
  if (!FEDERATION_NAME.test(federation))
    throw new UsageError(
      `--federation ${JSON.stringify(federation.slice(0, 80))} cannot name a NATS bucket`,
    );
  let servers: string[];
  try {
    servers = parseNatsServers(o.nats);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let password: string | undefined = process.env.WEIR_NATS_PASSWORD;
  if (o.natsPasswordFile !== undefined) {
    try {
      password = (await readFile(o.natsPasswordFile, 'utf8')).split('\n')[0]!.trim();
    } catch (err) {
      throw new UsageError(`--nats-password-file ${o.natsPasswordFile}: ${(err as Error).message}`);
    }
  }
  const nc = await natsConnect(
    {
      servers,
      ...(o.natsUser !== undefined ? { user: o.natsUser, password: password ?? '' } : {}),
    },
    { name: 'weirctl-federation-bucket', maxReconnectAttempts: 0, waitOnFirstConnect: false },
  );
  try {
    const jsm = await jetstreamManager(nc);
    const config = federationStreamConfig(federation, { maxMsgBytes: maxEntryBytes() });
    try {
      const info = await jsm.streams.info(config.name);
      io.stdout(`bucket ${config.name} exists (${info.state.messages} entries)\n`);
    } catch {
      await jsm.streams.add(config);
      io.stdout(`created bucket ${config.name}\n`);
    }
  } finally {
    await nc.close();
  }
  return 0;
}
