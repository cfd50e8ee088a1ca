/**
 * The federation's names on NATS (docs/federation-nats.md): one KV bucket
 * at the hub, reached from every member through its own nats-server's leaf
 * connection and the hub's JetStream domain, and the permissions of each
 * member's user at the hub, which are what stops member A from writing
 * member B's entries whatever A's code does.
 *
 *   $JS.hub.API.$KV.weir_fed_<F>.<kind>.<cluster>.<b64url(name)>   a member's put (through the domain)
 *   $KV.weir_fed_<F>.<kind>.<cluster>.<b64url(name)>               the stored subject
 *   _INBOX_WEIR_FED_<cluster>.>                                     a member's replies
 *
 * nats-server 2.9.10 facts these rest on are in docs/federation-nats.md
 * ("Facts"); the ones that matter most: a KV put through a domain is
 * published on `$JS.<domain>.API.$KV...`, so allowing the domain's whole
 * API would let a member write (and purge) every key; and the hub's user
 * permissions on a leaf connection read as a client's (publish: into the
 * hub; subscribe: out of it).
 */
import { NATS_CLUSTER_NAME } from './names.js';

/** The hub's JetStream domain. */
export const HUB_DOMAIN = 'hub';

export const FEDERATION_NAME = NATS_CLUSTER_NAME;

export function federationNames(federation: string, hubDomain = HUB_DOMAIN) {
  const bucket = `weir_fed_${federation}`;
  const stream = `KV_${bucket}`;
  const api = `$JS.${hubDomain}.API`;
  return {
    federation,
    bucket,
    stream,
    api,
    /** Every stored subject of the bucket. */
    subjects: `$KV.${bucket}.>`,
    /** The prefix of a stored key's subject (the key follows). */
    keyPrefix: `$KV.${bucket}.`,
    /** A member's reply inbox prefix: only that member may receive on it. */
    inbox: (cluster: string) => `_INBOX_WEIR_FED_${cluster}`,
  };
}

interface Permissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/**
 * What member `cluster`'s user at the hub may do: write its own keys
 * (kind.cluster.name, through the domain's API subject or directly), read
 * the bucket (stream info, an ordered consumer, direct and message get),
 * and receive on its own inbox only. No stream or consumer management
 * beyond its own consumers, no `_INBOX.>` (it could forge another member's
 * replies), no other member's inbox.
 */
export function federationMemberPermissions(
  federation: string,
  cluster: string,
  hubDomain = HUB_DOMAIN,
): Permissions {
  const n = federationNames(federation, hubDomain);
  const s = n.stream;
  const a = n.api;
  return {
    publish: {
      allow: [
        `${a}.$KV.${n.bucket}.*.${cluster}.*`,
        `$KV.${n.bucket}.*.${cluster}.*`,
        `${a}.INFO`,
        `${a}.STREAM.INFO.${s}`,
        `${a}.CONSUMER.CREATE.${s}`,
        `${a}.CONSUMER.CREATE.${s}.>`,
        `${a}.CONSUMER.INFO.${s}.>`,
        `${a}.CONSUMER.DELETE.${s}.>`,
        `${a}.DIRECT.GET.${s}`,
        `${a}.DIRECT.GET.${s}.>`,
        `${a}.STREAM.MSG.GET.${s}`,
        `$JS.FC.${s}.>`,
      ],
    },
    subscribe: { allow: [`${n.inbox(cluster)}.>`] },
  };
}

/**
 * What the federation link's own user needs on the *member's* server (when
 * that server has Weir's authorization): the hub's API subjects (the leaf
 * connection carries them on) and its inbox. The hub still decides what
 * reaches it.
 */
export function federationLinkLocalPermissions(
  federation: string,
  cluster: string,
  hubDomain = HUB_DOMAIN,
): Permissions {
  const n = federationNames(federation, hubDomain);
  return {
    publish: { allow: [`${n.api}.>`, `$JS.FC.${n.stream}.>`] },
    subscribe: { allow: [`${n.inbox(cluster)}.>`] },
  };
}

/**
 * What the federation's bucket holds at most by default (256 MiB: ten
 * clusters of 10,000 pods take about 50 MiB), and what a member's link
 * lets its importer fall behind by: a full listing always fits, so a
 * member that lists again after falling behind can catch up.
 */
export const FEDERATION_BUCKET_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The bucket's stream as the hub's operator creates it (nats.js Kvm would
 * allow roll-ups, and `Nats-Rollup: all` on a member's own key would purge
 * every member's): one value per key, deletes as markers (kept, so a fresh
 * listing shows a removal that happened while a member was away), no
 * purge or roll-up through the API, values bounded.
 */
export function federationStreamConfig(
  federation: string,
  options: { maxMsgBytes: number; maxBytes?: number; replicas?: number },
) {
  const n = federationNames(federation);
  return {
    name: n.stream,
    subjects: [n.subjects],
    max_msgs_per_subject: 1,
    max_msg_size: options.maxMsgBytes,
    max_bytes: options.maxBytes ?? FEDERATION_BUCKET_MAX_BYTES,
    allow_rollup_hdrs: false,
    deny_delete: true,
    deny_purge: true,
    allow_direct: true,
    num_replicas: options.replicas ?? 1,
    discard: 'new' as const,
    storage: 'file' as const,
  };
}
