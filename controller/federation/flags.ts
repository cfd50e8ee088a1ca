/**
 * The controller's federation flags (docs/federation.md), mirroring the
 * distribution's NATS flags (shared/nats/connect.ts) under --federation-*:
 * the federation link is its own connection, to the member's leaf
 * nats-server with the member's hub credentials, whatever --transport is.
 *
 *   --federation NAME                 join federation NAME (bucket weir_fed_NAME at the hub)
 *   --federation-nats URL[,URL...]    the member's nats-server (a leaf of the hub); env WEIR_FEDERATION_NATS
 *   --federation-nats-user NAME       env WEIR_FEDERATION_NATS_USER
 *   --federation-nats-password-file F env WEIR_FEDERATION_NATS_PASSWORD holds it directly
 *   --federation-nats-insecure        no TLS to that server even though the controller has certificates
 *   --federation-pod-cidrs CIDR,...   this cluster's pod CIDRs, reported for the overlap check
 */
import { readFileSync } from 'node:fs';
import { parseCidr } from '../../shared/net/ip.js';
import { type NatsEndpoint, parseNatsServers } from '../../shared/nats/connect.js';
import { NATS_CLUSTER_NAME } from '../../shared/nats/names.js';
import { ArgumentError } from '../../shared/process.js';
import type { TlsFiles } from '../../shared/tls/credentials.js';

export const FEDERATION_USAGE = `  --federation NAME      join federation NAME (docs/federation.md): import other members' pods and federated
                         ClusterNetworkPolicies, export this cluster's (independent of --transport)
  --federation-nats URL[,URL...]  this member's nats-server, a leaf node of the hub (env WEIR_FEDERATION_NATS)
  --federation-nats-user NAME     a password user of that nats-server (env WEIR_FEDERATION_NATS_USER; with TLS, the certificate is the identity)
  --federation-nats-password-file F  its password, first line of F (env WEIR_FEDERATION_NATS_PASSWORD holds it)
  --federation-nats-insecure      no TLS to that server even though the controller has certificates (warned)
  --federation-pod-cidrs CIDR,... this cluster's pod CIDRs, reported to the federation for the overlap check
`;

export const FEDERATION_FLAGS = {
  federation: { type: 'string' },
  'federation-nats': { type: 'string', default: process.env.WEIR_FEDERATION_NATS },
  'federation-nats-user': { type: 'string', default: process.env.WEIR_FEDERATION_NATS_USER },
  'federation-nats-password-file': { type: 'string' },
  'federation-nats-insecure': { type: 'boolean' },
  'federation-pod-cidrs': { type: 'string' },
} as const;

export interface FederationFlags {
  readonly name: string;
  readonly endpoint: NatsEndpoint;
  readonly podCidrs: readonly string[];
}

/**
 * The federation the flags ask for, or undefined without --federation;
 * throws ArgumentError naming the flag. `tls`: the controller's
 * certificate (undefined with --insecure), the link's client certificate
 * unless --federation-nats-insecure.
 */
export function federationFromFlags(
  values: {
    federation?: string | undefined;
    'federation-nats'?: string | undefined;
    'federation-nats-user'?: string | undefined;
    'federation-nats-password-file'?: string | undefined;
    'federation-nats-insecure'?: boolean | undefined;
    'federation-pod-cidrs'?: string | undefined;
  },
  cluster: string,
  tls: TlsFiles | undefined,
): FederationFlags | undefined {
  const name = values.federation;
  if (name === undefined) {
    // The address flags have environment defaults; these have none, so one given is a mistake.
    for (const flag of [
      'federation-nats-password-file',
      'federation-nats-insecure',
      'federation-pod-cidrs',
    ] as const)
      if (values[flag] !== undefined) throw new ArgumentError(`--${flag} needs --federation NAME`);
    return undefined;
  }
  if (!NATS_CLUSTER_NAME.test(name))
    throw new ArgumentError(
      `--federation ${JSON.stringify(name)} cannot name a NATS bucket (letters, digits, "_", "-"; at most 64)`,
    );
  if (!NATS_CLUSTER_NAME.test(cluster))
    throw new ArgumentError(
      `--cluster ${JSON.stringify(cluster)} cannot name a federation member (letters, digits, "_", "-"; at most 64)`,
    );
  if (values['federation-nats'] === undefined)
    throw new ArgumentError(
      "--federation needs --federation-nats URL (the member's leaf nats-server)",
    );
  const servers = parseNatsServers(values['federation-nats'], '--federation-nats');
  let password = process.env.WEIR_FEDERATION_NATS_PASSWORD;
  const file = values['federation-nats-password-file'];
  if (file !== undefined) {
    try {
      password = readFileSync(file, 'utf8').split('\n')[0]!.trim();
    } catch (err) {
      throw new ArgumentError(`--federation-nats-password-file ${file}: ${(err as Error).message}`);
    }
  }
  const user = values['federation-nats-user'];
  if (user === undefined && password !== undefined)
    throw new ArgumentError('a federation NATS password needs --federation-nats-user');
  const podCidrs: string[] = [];
  for (const text of (values['federation-pod-cidrs'] ?? '').split(',').map((s) => s.trim())) {
    if (text === '') continue;
    const c = parseCidr(text);
    if (typeof c === 'string')
      throw new ArgumentError(`--federation-pod-cidrs: ${JSON.stringify(text)}: ${c}`);
    podCidrs.push(c.text);
  }
  const linkTls = values['federation-nats-insecure'] ? undefined : tls;
  return {
    name,
    endpoint: {
      servers,
      ...(user !== undefined ? { user, password: password ?? '' } : {}),
      ...(linkTls !== undefined ? { tls: linkTls } : {}),
    },
    podCidrs,
  };
}
