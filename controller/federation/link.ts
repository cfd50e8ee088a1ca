/**
 * The federation's shared store as a member controller sees it
 * (docs/federation.md): one key/value space at the hub that every member
 * writes its own entries into and reads everyone's entries from.
 *
 *   member controller ──put/remove own entries──> hub store <──watch── every member
 *
 * Keys name a kind, the cluster that owns the entry, and the entry's name:
 *
 *   ns.<cluster>.<b64url(namespace)>      an exported namespace and its labels
 *   ep.<cluster>.<b64url(ns/pod)>         an exported endpoint (pod with addresses)
 *   cnp.<cluster>.<b64url(name)>          a federated ClusterNetworkPolicy, in Kubernetes' own JSON
 *   member.<cluster>.<b64url("self")>     the member's report: last contact, counts, imports and their realization
 *
 * A member may write only entries of its own cluster: the NATS
 * implementation enforces it with server permissions, so a member cannot
 * export another cluster's endpoints or policies whatever its code does.
 * Values are untrusted JSON: the link delivers them as bytes it could
 * decode, and the importer validates them (a value that is not JSON, or
 * too large, arrives as `invalid`, never as a put).
 *
 * Implementations: nats-link.ts (JetStream KV at the hub's domain, over the
 * member's leaf node) and testing/memory-federation.ts (tests).
 */

export type EntryKind = 'ns' | 'ep' | 'cnp' | 'member';
export const ENTRY_KINDS: readonly EntryKind[] = ['ns', 'ep', 'cnp', 'member'];

export interface EntryRef {
  readonly kind: EntryKind;
  /** The cluster that owns the entry (the only one allowed to write it). */
  readonly cluster: string;
  /** Namespace name, "namespace/pod", policy name, or "self" for `member`. */
  readonly name: string;
}

/** Largest value accepted per kind, in bytes of JSON (a CNP may carry many rules). */
export const ENTRY_MAX_BYTES: Readonly<Record<EntryKind, number>> = {
  ns: 64 * 1024,
  ep: 64 * 1024,
  cnp: 256 * 1024,
  member: 256 * 1024,
};

export type LinkEvent =
  /** Connected (again) to the hub; a full listing follows, ending with `synced`. */
  | { readonly type: 'connected' }
  /** An entry as stored now (initial listing or a later change). */
  | { readonly type: 'put'; readonly ref: EntryRef; readonly value: unknown }
  /**
   * The listing after `connected` is complete: entries not seen since then
   * are gone from the hub (the importer decides what that means; a member
   * absent from a listing is stale, not deleted).
   */
  | { readonly type: 'synced' }
  /** The owner removed the entry. */
  | { readonly type: 'delete'; readonly ref: EntryRef }
  /** An entry that cannot be read: bad key, not JSON, over ENTRY_MAX_BYTES. */
  | {
      readonly type: 'invalid';
      readonly key: string;
      readonly reason: string;
      readonly ref?: EntryRef;
    }
  /** Lost the hub; entries stay as last seen, a `connected` follows when it is back. */
  | { readonly type: 'disconnected'; readonly reason: string };

export interface LinkState {
  readonly connected: boolean;
  /** When the hub last answered (0: never). */
  readonly lastContactUnixMs: number;
  /** Why not connected, when not. */
  readonly lastError: string;
}

export interface FederationLink extends AsyncDisposable {
  readonly federation: string;
  /** This member's cluster name: the only cluster whose entries it may write. */
  readonly cluster: string;
  /** Stores an entry of this cluster; rejects (throws) when not connected or refused. */
  put(ref: EntryRef, value: unknown): Promise<void>;
  /** Removes an entry of this cluster. */
  remove(ref: EntryRef): Promise<void>;
  /** Every change, starting with `connected` and a full listing; one watcher per link. */
  watch(): AsyncIterable<LinkEvent>;
  state(): LinkState;
}
