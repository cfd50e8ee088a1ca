/**
 * Who may do what on NATS (docs/nats.md "Permissions"): one user per role,
 * as nats-server's `authorization { users: [...] }` (2.9 syntax; the
 * config format accepts JSON). The controller alone writes policy (span
 * subjects, the objects bucket, the JetStream API); an agent publishes
 * only under its own node's token (its hello, beats, ACK/NACK, flow events)
 * and reads only its own span subject, its own inbox, and objects by
 * sequence; a flow reader (weirctl) may only consume the flow stream.
 */
import { agentInbox, natsNames, nodeToken } from './names.js';

export interface NatsUser {
  readonly user: string;
  readonly password: string;
}

/** Inbox prefixes of the controller and of flow readers (agents': names.agentInbox). */
export const CONTROLLER_INBOX = '_INBOX_WEIR_CONTROLLER';
export const READER_INBOX = '_INBOX_WEIR_READER';

export interface NatsRoles {
  readonly cluster: string;
  readonly controller: NatsUser;
  readonly agents: ReadonlyArray<NatsUser & { readonly node: string }>;
  readonly readers?: readonly NatsUser[];
}

interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** Publish once to the reply subject of each request received (the liveness probe's answer). */
  allow_responses?: { max: number; expires: string };
}

export function controllerPermissions(cluster: string): Permissions {
  const n = natsNames(cluster);
  return {
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
    { ...credentials(roles.controller), permissions: controllerPermissions(roles.cluster) },
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

const credentials = (u: NatsUser) => ({ user: u.user, password: u.password });

/** The conventional user name of a node's agent. */
export const agentUser = (node: string) => `agent-${nodeToken(node)}`;
