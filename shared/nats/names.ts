/**
 * Weir's names on NATS (docs/nats.md): one cluster's subjects, its
 * JetStream stream of span updates, its KV bucket of objects, its stream of
 * flow events. Everything a node may publish or read is under a subject
 * token of its own, so that per-node permissions are subject permissions.
 *
 *   weir.<cluster>.agent.<node>.hello|beat|ack|nack   agent → controller (requests)
 *   weir.<cluster>.span.<node>                        controller → agent (stream WEIR_<cluster>_SPANS)
 *   weir.<cluster>.live.<node>                        controller → agent (request: is this session's agent there?)
 *   $KV.weir_<cluster>_objects.<key>                  objects, once per version (KV bucket)
 *   weir.<cluster>.flows.<node>                       flow events (stream WEIR_<cluster>_FLOWS)
 */

/** Cluster names usable in subjects, stream and bucket names. */
export const NATS_CLUSTER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Node names are DNS-like ("[A-Za-z0-9._-]"): "." separates subject tokens, so it becomes "~". */
export function nodeToken(node: string): string {
  return node.replaceAll('.', '~');
}

export function tokenNode(token: string): string {
  return token.replaceAll('~', '.');
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

export function natsNames(cluster: string) {
  const root = `weir.${cluster}`;
  return {
    cluster,
    /** An agent's requests to the controller. */
    agent: (node: string, what: 'hello' | 'beat' | 'ack' | 'nack') =>
      `${root}.agent.${nodeToken(node)}.${what}`,
    /** Everything one agent may send the controller. */
    agentAll: (node: string) => `${root}.agent.${nodeToken(node)}.>`,
    /** What the controller listens to. */
    agentsWildcard: `${root}.agent.*.*`,
    /**
     * The agent's liveness probe (core request, answered by the agent): when the
     * agent's connection is gone the server answers "no responders" at once.
     */
    live: (node: string) => `${root}.live.${nodeToken(node)}`,
    liveWildcard: `${root}.live.*`,
    spans: {
      stream: `WEIR_${cluster}_SPANS`,
      subject: (node: string) => `${root}.span.${nodeToken(node)}`,
      wildcard: `${root}.span.*`,
    },
    objects: {
      bucket: `weir_${cluster}_objects`,
      stream: `KV_weir_${cluster}_objects`,
      /**
       * The KV key of a span object ("p:<id>", ...): its kind letter and its
       * id in base64url; an object whose content is particular to a node (an
       * applied-to group cut down to the node's members) also names the node.
       */
      key: (spanKey: string, node?: string) =>
        `o.${spanKey[0]}.${b64(spanKey.slice(2))}${node === undefined ? '' : `.n.${b64(node)}`}`,
      /** Where the manifest of an update (by the Distributor's key) is kept when it is too large to travel inline. */
      manifest: (updateKey: string) => `m.${updateKey}`,
      /** Chunk i (≥ 1) of a value kept in several entries. */
      chunk: (key: string, i: number) => (i === 0 ? key : `${key}.c${i}`),
    },
    flows: {
      stream: `WEIR_${cluster}_FLOWS`,
      subject: (node: string) => `${root}.flows.${nodeToken(node)}`,
      wildcard: `${root}.flows.*`,
    },
  };
}

export type NatsNames = ReturnType<typeof natsNames>;

/** Direct-get subject of a stream (by sequence), and of the last message on one subject. */
export const directGet = (stream: string, subject?: string) =>
  subject === undefined
    ? `$JS.API.DIRECT.GET.${stream}`
    : `$JS.API.DIRECT.GET.${stream}.${subject}`;

/** Request inboxes of one node's connection: only that node may subscribe to them. */
export const agentInbox = (node: string) => `_INBOX.${nodeToken(node)}`;
