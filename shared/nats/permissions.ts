/**
 * Who may do what on NATS (docs/nats.md "Permissions"): one user per role,
 * as nats-server's `authorization { users: [...] }` (2.9 syntax; the
 * config format accepts JSON). The controller alone writes policy (span
 * subjects, the objects bucket, the JetStream API); an agent publishes
 * only under its own node's token (its hello, beats, ACK/NACK, flow events)
 * and reads only its own span subject, its own inbox, and objects by
 * sequence; a flow reader (weirctl) may only consume the flow stream.
 */
import { federationLinkLocalPermissions } from './federation.js';
import { agentInbox, natsNames, nodeToken } from './names.js';
import { CONTROLLER_URI, nodeUri, operatorUri } from '../tls/identity.js';

/**
 * A NATS user: with a password, or (no password) a certificate identity
 * that the server's `verify_and_map` maps to it: the certificate's URI SAN
 * is the user name (nats-server 2.9 maps URI SANs; TLS-CONVENTIONS names).
 */
export interface NatsUser {
  readonly user: string;
  readonly password?: string;
}

/** The certificate identities (URI SANs) of Weir's roles, as TLS-CONVENTIONS fixes them. */
export const identityUri = {
  controller: CONTROLLER_URI,
  node: nodeUri,
  operator: operatorUri,
} as const;

/**
 * nats-server's `tls` block: clients must present a certificate of `ca`;
 * with `map`, the certificate's identity is the user (no passwords), else
 * users still log in with passwords over the verified connection.
 */
export function natsTlsBlock(files: {
  cert: string;
  key: string;
  ca: string;
  map: boolean;
}): string {
  const q = JSON.stringify;
  return `tls { cert_file: ${q(files.cert)}, key_file: ${q(files.key)}, ca_file: ${q(files.ca)}, ${files.map ? 'verify_and_map' : 'verify'}: true, timeout: 2 }\n`;
}

/** Inbox prefixes of the controller and of flow readers (agents': names.agentInbox). */
export const CONTROLLER_INBOX = '_INBOX_WEIR_CONTROLLER';
export const READER_INBOX = '_INBOX_WEIR_READER';

export interface NatsRoles {
  readonly cluster: string;
  readonly controller: NatsUser;
  readonly agents: ReadonlyArray<NatsUser & { readonly node: string }>;
  readonly readers?: readonly NatsUser[];
  /**
   * The federation the cluster's controller is a member of (--federation):
   * its user may then also reach the hub through this server's leaf
   * connection (federationLinkLocalPermissions; the hub's own users decide
   * what it may write there).
   */
  readonly federation?: string;
}

interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** Publish once to the reply subject of each request received (the liveness probe's answer). */
  allow_responses?: { max: number; expires: string };
}

export function controllerPermissions(cluster: string, federation?: string): Permissions {
  const n = natsNames(cluster);
  const own: Permissions = {
    publish: {
      allow: [
        n.spans.wildcard,
        n.liveWildcard,
        `$KV.${n.objects.bucket}.>`,
        '$JS.API.>',
        '$JS.ACK.>',
        '$JS.FC.>',
        // replies to agents' requests
        '_INBOX.>',
      ],
    },
    subscribe: { allow: [n.agentsWildcard, `${CONTROLLER_INBOX}.>`] },
  };
  if (federation === undefined) return own;
  const link = federationLinkLocalPermissions(federation, cluster);
  return {
    publish: { allow: [...own.publish.allow, ...link.publish.allow] },
    subscribe: { allow: [...own.subscribe.allow, ...link.subscribe.allow] },
  };
}

export function agentPermissions(cluster: string, node: string): Permissions {
  const n = natsNames(cluster);
  return {
    publish: {
      allow: [
        n.agentAll(node),
        n.flows.subject(node),
        `$JS.API.DIRECT.GET.${n.objects.stream}`,
        `$JS.API.DIRECT.GET.${n.spans.stream}.${n.spans.subject(node)}`,
      ],
    },
    subscribe: { allow: [n.spans.subject(node), n.live(node), `${agentInbox(node)}.>`] },
    // Only the controller can send it requests (no one else may publish on its live subject).
    allow_responses: { max: 1, expires: '10s' },
  };
}

export function readerPermissions(cluster: string): Permissions {
  const n = natsNames(cluster);
  const s = n.flows.stream;
  return {
    publish: {
      allow: [
        '$JS.API.INFO',
        `$JS.API.STREAM.INFO.${s}`,
        `$JS.API.CONSUMER.CREATE.${s}`,
        `$JS.API.CONSUMER.CREATE.${s}.>`,
        `$JS.API.CONSUMER.INFO.${s}.>`,
        `$JS.API.CONSUMER.DELETE.${s}.>`,
        `$JS.API.CONSUMER.MSG.NEXT.${s}.>`,
        `$JS.ACK.${s}.>`,
        '$JS.FC.>',
      ],
    },
    subscribe: { allow: [`${READER_INBOX}.>`] },
  };
}

/** The `authorization` block for nats-server, as JSON text. */
export function natsAuthorization(roles: NatsRoles): string {
  const users = [
    {
      ...credentials(roles.controller),
      permissions: controllerPermissions(roles.cluster, roles.federation),
    },
    ...roles.agents.map((a) => ({
      ...credentials(a),
      permissions: agentPermissions(roles.cluster, a.node),
    })),
    ...(roles.readers ?? []).map((r) => ({
      ...credentials(r),
      permissions: readerPermissions(roles.cluster),
    })),
  ];
  return `authorization ${JSON.stringify({ users }, null, 2)}\n`;
}

const credentials = (u: NatsUser) =>
  u.password === undefined ? { user: u.user } : { user: u.user, password: u.password };

/** The conventional user name of a node's agent. */
export const agentUser = (node: string) => `agent-${nodeToken(node)}`;
