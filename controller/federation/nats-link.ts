/**
 * The federation link over NATS (docs/federation-nats.md): the hub's KV
 * bucket `weir_fed_<F>`, reached through this member's own nats-server
 * (a leaf node of the hub) and the hub's JetStream domain.
 *
 *   controller ──client──> member nats-server ══leaf══> hub nats-server (domain hub, bucket weir_fed_F)
 *
 * Why a supervisor of its own rather than nats.js' KV watch: the client's
 * connection is to the member's server, which stays up when the hub goes
 * away, so the client's own status says nothing about the hub. The link
 * decides "connected" from the hub's answers: a stream-info probe every
 * `probeMs` and the watch consumer's heartbeats. On losing them it says
 * `disconnected` and keeps nothing half-done; when the hub answers again
 * it says `connected` and lists everything afresh (a new consumer from the
 * last value of every key, delete markers included, so a removal made
 * while this member was away is seen), then `synced`. nats.js' ordered
 * consumer would instead resume from its last sequence silently, which
 * gives the importer no point at which the listing is complete.
 *
 * Values are untrusted: a key that is not `<kind>.<cluster>.<b64url>`, a
 * value over ENTRY_MAX_BYTES (or `maxEntryBytes`) or not JSON arrives as
 * `invalid`, never as a put. What a member may write is enforced by the
 * hub's permissions (shared/nats/federation.ts); this side refuses to even
 * try another cluster's key.
 */
import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ClosedError,
  InternalError,
  PermissionError,
  UnavailableError,
  ValidationError,
} from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { type NatsEndpoint, natsConnectUntil } from '../../shared/nats/connect.js';
import {
  FEDERATION_BUCKET_MAX_BYTES,
  HUB_DOMAIN,
  federationNames,
  federationStreamConfig,
} from '../../shared/nats/federation.js';
import { NATS_CLUSTER_NAME } from '../../shared/nats/names.js';
import {
  ENTRY_KINDS,
  ENTRY_MAX_BYTES,
  type EntryKind,
  type EntryRef,
  type FederationLink,
  type LinkEvent,
  type LinkState,
} from './link.js';

/** Longest key accepted (kind, cluster, base64url of a name of at most MAX_NAME_BYTES). */
export const MAX_KEY_CHARS = 1024;
/** Longest entry name, in UTF-8 bytes ("namespace/pod": 253 + 1 + 253, with room). */
export const MAX_NAME_BYTES = 600;

export interface NatsFederationLinkOptions {
  readonly federation: string;
  readonly cluster: string;
  /** This member's nats-server (a leaf of the hub), with the link's credentials. */
  readonly endpoint: NatsEndpoint;
  readonly log: Logger;
  /** Smaller limits than ENTRY_MAX_BYTES (never larger: other members hold to those). */
  readonly maxEntryBytes?: Partial<Record<EntryKind, number>>;
  /** How far (bytes of entry values) the watcher may fall behind before the link lists again (default LINK_QUEUE_MAX_BYTES). */
  readonly maxQueueBytes?: number;
  /** The hub's JetStream domain (default `hub`). */
  readonly hubDomain?: string;
  /**
   * Create the bucket when the hub has none (needs a user that may create
   * streams: the hub's operator, tests). Members' users may not: they wait
   * for it, saying so once.
   */
  readonly createBucket?: boolean;
  /** How often the hub is asked whether it is there (default 2 s); also the put timeout. */
  readonly probeMs?: number;
  /** Pause between attempts to reach the hub (default 500 ms). */
  readonly retryMs?: number;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

/** The bucket key of an entry. */
export function entryKey(ref: EntryRef): string {
  return `${ref.kind}.${ref.cluster}.${b64(ref.name)}`;
}

/** An entry's reference from its key, or why the key is not one. */
export function parseEntryKey(key: string): EntryRef | string {
  if (key.length > MAX_KEY_CHARS) return `key longer than ${MAX_KEY_CHARS} characters`;
  const parts = key.split('.');
  if (parts.length !== 3) return 'key is not <kind>.<cluster>.<base64url name>';
  const [kind, cluster, encoded] = parts as [string, string, string];
  if (!(ENTRY_KINDS as readonly string[]).includes(kind))
    return `unknown kind ${JSON.stringify(kind.slice(0, 40))}`;
  if (!NATS_CLUSTER_NAME.test(cluster))
    return `cluster ${JSON.stringify(cluster.slice(0, 80))} is not a cluster name`;
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return 'name is not base64url';
  const name = Buffer.from(encoded, 'base64url').toString('utf8');
  if (b64(name) !== encoded) return 'name is not canonical base64url of UTF-8 text';
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `name longer than ${MAX_NAME_BYTES} bytes`;
  if (kind === 'member' && name !== 'self') return 'a member entry is named "self"';
  return { kind: kind as EntryKind, cluster, name };
}

/** Problems with a reference this member wants to write. */
function refProblems(ref: EntryRef, cluster: string): string[] {
  const problems: string[] = [];
  if (!(ENTRY_KINDS as readonly string[]).includes(ref.kind))
    problems.push(`kind ${JSON.stringify(ref.kind)} is not one of ${ENTRY_KINDS.join(', ')}`);
  if (ref.cluster !== cluster)
    problems.push(
      `cluster ${JSON.stringify(ref.cluster)}: this member (${cluster}) writes only its own entries`,
    );
  if (ref.name === '' || Buffer.byteLength(ref.name) > MAX_NAME_BYTES)
    problems.push(`name must be 1 to ${MAX_NAME_BYTES} bytes`);
  if (ref.kind === 'member' && ref.name !== 'self') problems.push('a member entry is named "self"');
  return problems;
}

/**
 * A queue of events for the one watcher, woken when one arrives. Bounded
 * by the bytes of the values it holds: a watcher that falls that far
 * behind (other members' entries arriving faster than it applies them)
 * gets nothing more of this listing; the link lists again instead
 * (push returns false), which loses nothing, since a listing carries
 * every key's last value and delete marker.
 */
class EventQueue {
  private readonly items: Array<{ event: LinkEvent; bytes: number }> = [];
  private bytes = 0;
  private wake: (() => void) | undefined;
  closed = false;

  constructor(readonly maxBytes: number) {}

  push(event: LinkEvent, bytes = 0): boolean {
    if (this.closed) return true;
    if (this.bytes + bytes > this.maxBytes) {
      this.items.length = 0;
      this.bytes = 0;
      return false;
    }
    this.items.push({ event, bytes });
    this.bytes += bytes;
    this.wake?.();
    return true;
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *drain(): AsyncGenerator<LinkEvent> {
    for (;;) {
      while (this.items.length > 0) {
        const { event, bytes } = this.items.shift()!;
        this.bytes -= bytes;
        yield event;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }
}

/**
 * What the watcher may be behind by, in bytes of entry values, before the
 * link lists again: the bucket's default size, so that a whole listing fits.
 */
export const LINK_QUEUE_MAX_BYTES = FEDERATION_BUCKET_MAX_BYTES;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Opens the link: returns at once (a controller cut off from the hub, or
 * from its own nats-server, starts and enforces what it persisted), and
 * reaches the hub in the background, for ever, until disposed.
 */
export async function openNatsFederationLink(
  o: NatsFederationLinkOptions,
): Promise<FederationLink> {
  if (!NATS_CLUSTER_NAME.test(o.federation))
    throw new ValidationError([
      {
        field: '--federation',
        message: `${JSON.stringify(o.federation.slice(0, 80))} cannot name a NATS bucket (letters, digits, "_", "-"; at most 64)`,
      },
    ]);
  if (!NATS_CLUSTER_NAME.test(o.cluster))
    throw new ValidationError([
      {
        field: '--cluster',
        message: `${JSON.stringify(o.cluster.slice(0, 80))} cannot name NATS subjects`,
      },
    ]);
  const limits: Record<EntryKind, number> = { ...ENTRY_MAX_BYTES };
  for (const k of ENTRY_KINDS) {
    const v = o.maxEntryBytes?.[k];
    if (v !== undefined) limits[k] = Math.min(v, ENTRY_MAX_BYTES[k]);
  }
  const names = federationNames(o.federation, o.hubDomain ?? HUB_DOMAIN);
  const probeMs = o.probeMs ?? 2_000;
  const retryMs = o.retryMs ?? 500;
  const log = o.log.child({ federation: o.federation, bucket: names.bucket });
  const stop = new AbortController();
  const queue = new EventQueue(o.maxQueueBytes ?? LINK_QUEUE_MAX_BYTES);
  let watching = false;
  let watcherAttached: () => void = () => undefined;
  const attached = new Promise<void>((resolve) => {
    watcherAttached = resolve;
  });

  let nc: NatsConnection | undefined;
  let kv: KV | undefined;
  let connected = false;
  let lastContactUnixMs = 0;
  let lastError = 'not connected yet';
  const contact = () => {
    lastContactUnixMs = Date.now();
  };

  const setDisconnected = (reason: string) => {
    lastError = reason;
    if (!connected) return;
    connected = false;
    // debug: the member (member.ts) logs the event for the controller.
    log.debug({ reason }, 'federation hub lost');
    queue.push({ type: 'disconnected', reason });
  };

  /** One key's message into an event. */
  const toEvent = (m: JsMsg): LinkEvent => {
    const key = m.subject.startsWith(names.keyPrefix)
      ? m.subject.slice(names.keyPrefix.length)
      : m.subject;
    const ref = parseEntryKey(key);
    if (typeof ref === 'string') return { type: 'invalid', key: key.slice(0, 200), reason: ref };
    const op = m.headers?.get('KV-Operation') ?? '';
    if (op === 'DEL' || op === 'PURGE') return { type: 'delete', ref };
    if (m.data.length > limits[ref.kind])
      return {
        type: 'invalid',
        key,
        ref,
        reason: `value of ${m.data.length} bytes is over the ${limits[ref.kind]} bytes of a ${ref.kind} entry`,
      };
    let value: unknown;
    try {
      value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(m.data));
    } catch (err) {
      return { type: 'invalid', key, ref, reason: `value is not JSON: ${message(err)}` };
    }
    return { type: 'put', ref, value };
  };

  /**
   * Asks the hub for the bucket; creates it when it has none and this link
   * may (the hub operator's), else says once that it waits for it. True
   * when the bucket is there.
   */
  let saidMissing = false;
  const bucketThere = async (bucket: KV): Promise<boolean> => {
    try {
      await bucket.status();
      return true;
    } catch (err) {
      if (!/not found/i.test(message(err))) throw err;
    }
    contact();
    if (o.createBucket === true) {
      const jsm = await jetstreamManager(nc!, { domain: o.hubDomain ?? HUB_DOMAIN });
      await jsm.streams.add(
        federationStreamConfig(o.federation, {
          maxMsgBytes: Math.max(...Object.values(ENTRY_MAX_BYTES)) + 4096,
        }),
      );
      log.info('federation bucket created at the hub');
      await bucket.status();
      return true;
    }
    if (!saidMissing) log.warn('the hub has no federation bucket yet; waiting for it');
    saidMissing = true;
    lastError = `the hub has no bucket ${names.bucket}`;
    return false;
  };

  /**
   * One session with the hub: the fresh listing, then changes, until the
   * hub stops answering (probe, heartbeats) or the link closes.
   */
  const session = async (js: JetStreamClient, bucket: KV): Promise<string> => {
    const ended = new AbortController();
    let why = '';
    const end = (reason: string) => {
      if (why === '') why = reason;
      ended.abort();
    };
    const onStop = () => end('closed');
    stop.signal.addEventListener('abort', onStop);
    let messages: ConsumerMessages | undefined;
    const over = new Promise<void>((resolve) =>
      ended.signal.addEventListener('abort', () => resolve()),
    );
    try {
      endSession = end;
      if (!(await bucketThere(bucket))) return 'missing';
      contact();
      connected = true;
      lastError = '';
      log.debug('federation hub connected');
      queue.push({ type: 'connected' });
      void (async () => {
        while (!ended.signal.aborted) {
          await sleep(probeMs, ended.signal);
          if (ended.signal.aborted) return;
          try {
            await bucket.status();
            contact();
          } catch (err) {
            end(`the hub did not answer: ${message(err)}`);
          }
        }
      })();
      // The listing waits for the watcher: puts work before it, and nothing
      // is queued that no one reads.
      await Promise.race([attached, over]);
      if (ended.signal.aborted) return why;
      // An ordered push consumer from the last value of every key (its
      // deliver subject is under this member's inbox prefix, which the hub
      // lets only this member receive).
      const consumer = await js.consumers.getPushConsumer(names.stream, {
        filter_subjects: names.subjects,
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
      const info = await consumer.info(true);
      contact();
      let pending = info.num_pending;
      if (pending === 0) queue.push({ type: 'synced' });
      messages = await consumer.consume({
        callback: (m: JsMsg) => {
          contact();
          if (!queue.push(toEvent(m), m.data.length)) {
            end(
              `the importer fell ${queue.maxBytes} bytes of entries behind the hub; listing again`,
            );
            return;
          }
          if (pending > 0 && --pending === 0) queue.push({ type: 'synced' });
        },
      });
      void (async () => {
        for await (const s of messages!.status()) {
          if (s.type === 'heartbeat' || s.type === 'flow_control') contact();
          else if (s.type === 'heartbeats_missed') end('the hub stopped sending heartbeats');
          else if (s.type === 'consumer_deleted' || s.type === 'consumer_not_found')
            end('the hub lost the watch consumer');
          else if (s.type === 'stream_not_found') end(`the hub has no bucket ${names.bucket}`);
        }
      })().catch(() => undefined);
      void messages.closed().then(() => end('the watch ended'));
      await over;
      return why;
    } finally {
      endSession = undefined;
      stop.signal.removeEventListener('abort', onStop);
      ended.abort();
      messages?.stop();
    }
  };

  /** Ends the current session (the member's own server went away). */
  let endSession: ((reason: string) => void) | undefined;
  /** Sessions in a row that ended with the watcher too far behind. */
  let behind = 0;

  const supervisor = (async () => {
    nc = await natsConnectUntil(
      o.endpoint,
      {
        name: `weir-federation-${o.cluster}`,
        inboxPrefix: names.inbox(o.cluster),
        timeout: probeMs,
      },
      stop.signal,
      (err) => {
        lastError = `member nats-server: ${message(err)}`;
      },
      retryMs,
    );
    if (nc === undefined) return;
    void (async () => {
      for await (const s of nc!.status())
        if (s.type === 'disconnect') endSession?.('lost the member nats-server');
    })().catch(() => undefined);
    const js = jetstream(nc, { domain: o.hubDomain ?? HUB_DOMAIN, timeout: probeMs });
    while (!stop.signal.aborted) {
      try {
        kv ??= await new Kvm(js).open(names.bucket);
        const why = await session(js, kv);
        if (why === 'missing') lastError = `the hub has no bucket ${names.bucket}`;
        else if (why !== 'closed') setDisconnected(why);
        // Fell behind: list again, but not at once (the watcher catches its breath).
        behind = why.startsWith('the importer fell') ? behind + 1 : 0;
        if (behind > 0) {
          if (behind === 1) log.warn({ reason: why }, 'federation link fell behind; listing again');
          await sleep(Math.min(retryMs * 2 ** behind, 30_000), stop.signal);
        }
      } catch (err) {
        setDisconnected(`the hub did not answer: ${message(err)}`);
      }
      await sleep(retryMs, stop.signal);
    }
  })().catch((err: unknown) => log.error({ err }, 'federation link stopped'));

  const write = async (ref: EntryRef, value: Uint8Array | undefined): Promise<void> => {
    if (stop.signal.aborted) throw new ClosedError('federation link closed');
    const problems = refProblems(ref, o.cluster);
    if (problems.length > 0)
      throw new ValidationError(
        problems.map((p) => ({ object: `federation entry ${ref.kind} ${ref.name}`, message: p })),
      );
    if (value !== undefined && value.length > limits[ref.kind])
      throw new ValidationError([
        {
          object: `federation entry ${ref.kind} ${ref.name}`,
          message: `${value.length} bytes of JSON is over the ${limits[ref.kind]} bytes of a ${ref.kind} entry`,
        },
      ]);
    const bucket = kv;
    if (!connected || bucket === undefined)
      throw new UnavailableError(`federation hub not connected: ${lastError}`);
    const key = entryKey(ref);
    try {
      if (value === undefined) await bucket.delete(key);
      else await bucket.put(key, value);
      contact();
    } catch (err) {
      const text = message(err);
      // The hub drops a publish its permissions refuse without a word (2.9.10): no
      // responder (nats.js says "jetstream is not enabled") or no acknowledgement.
      if (/timeout|not enabled|no responders|503/i.test(text))
        throw new UnavailableError(
          `the hub did not acknowledge ${key} (refused by its permissions, or unreachable)`,
          { cause: err },
        );
      if (/permission/i.test(text)) throw new PermissionError(`the hub refused ${key}: ${text}`);
      throw new UnavailableError(`writing ${key} at the hub: ${text}`, { cause: err });
    }
  };

  return {
    federation: o.federation,
    cluster: o.cluster,
    put: (ref, value) => {
      let text: string | undefined;
      try {
        text = JSON.stringify(value) as string | undefined;
      } catch {
        text = undefined; // a cycle, a BigInt: not JSON
      }
      if (text === undefined)
        return Promise.reject(
          new ValidationError([
            { object: `federation entry ${ref.kind} ${ref.name}`, message: 'value is not JSON' },
          ]),
        );
      return write(ref, new TextEncoder().encode(text));
    },
    remove: (ref) => write(ref, undefined),
    watch(): AsyncIterable<LinkEvent> {
      if (watching) throw new InternalError('a federation link has one watcher');
      watching = true;
      watcherAttached();
      return queue.drain();
    },
    state(): LinkState {
      return { connected, lastContactUnixMs, lastError };
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      queue.close();
      await supervisor;
      await nc?.close().catch(() => undefined);
    },
  };
}
