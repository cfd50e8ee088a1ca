/**
 * The NATS publisher (docs/nats.md): agents reach the Distributor over NATS
 * with exactly the semantics of the gRPC stream (hello with revision and
 * in-force hash, one update in flight, ACK/NACK with the hash), and the
 * updates travel through JetStream:
 *
 *   hello  (request weir.C.agent.N.hello)  ─> session, welcome reply
 *   beat   (request weir.C.agent.N.beat)   ─> keeps the session; an unknown
 *                                             session is answered ok:false
 *   update ─> each object: once per version into the objects bucket
 *             (KV weir_C_objects, R replicas), whatever the number of nodes
 *          ─> the node's manifest (head + object references) into stream
 *             WEIR_C_SPANS on weir.C.span.N (last message per node kept)
 *   ack/nack (requests weir.C.agent.N.ack|nack) ─> the session
 *
 * The node is the subject's token, never a field of the message, and NATS
 * permissions (permissions.ts) let an agent publish only under its own
 * token: no agent can speak for another node or write policy.
 *
 * An update is published when every object it references is stored (a
 * JetStream acknowledgement from the replicas), so an agent that sees a
 * manifest can fetch everything it names. When NATS is away the publisher
 * retries with backoff for as long as the session lives; the Distributor's
 * ACK timeout ends sessions that never answer.
 *
 * Objects are written by key with history (the versions still referenced
 * by in-flight manifests); keys of objects no span holds any longer are
 * purged after two sweeps: the bucket is bounded by the objects in force.
 */
import { randomUUID } from 'node:crypto';
import {
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  type StreamConfig,
  StorageType,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import {
  type Msg,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  type Subscription,
} from '@nats-io/transport-node';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { type Issue, formatIssue } from '../../shared/errors.js';
import { NATS_LIMITS, preview } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import { LogLimiter, suppressedField } from '../../shared/log-limiter.js';
import {
  INLINE_OBJECTS_MAX,
  INLINE_OBJECT_MAX,
  type ObjectRef,
  encodeHead,
  encodeManifestBody,
  encodeObject,
  encodeSpanMessage,
  objectsOf,
} from '../../shared/nats/codec.js';
import { type NatsEndpoint, json, natsConnect, parseJson } from '../../shared/nats/connect.js';
import { type NatsNames, natsNames, tokenNode } from '../../shared/nats/names.js';
import { CONTROLLER_INBOX } from '../../shared/nats/permissions.js';
import { checkAck, checkHello, checkNack, type RawHello } from './admission.js';
import type { AgentHello, AgentSession, SessionHost } from './publisher.js';

export interface NatsPublisherOptions {
  readonly endpoint: NatsEndpoint;
  readonly cluster: string;
  readonly sessions: SessionHost;
  /** Whether an object of a node's span is particular to that node (an applied-to group cut to its members). */
  readonly nodeLocal: (node: string, spanKey: string) => boolean;
  /** Whether any span (or, for a node-local object, that node's) still holds the object. */
  readonly held: (spanKey: string, node?: string) => boolean;
  readonly log: Logger;
  /** JetStream replicas of the streams and the bucket (3 on a three-server cluster). */
  readonly replicas?: number;
  /** How often agents beat (told in the welcome); a session silent for 3 beats is closed. */
  readonly beatMs?: number;
  /** Flow events: how long and how many bytes the stream keeps. */
  readonly flowMaxAgeMs?: number;
  readonly flowMaxBytes?: number;
  /** Called with the bytes of every message written (objects and manifests). */
  readonly onBytesSent?: (bytes: number) => void;
  /** How often unheld objects are looked for. */
  readonly sweepMs?: number;
  /** How long to wait for JetStream to accept Weir's streams at start-up. */
  readonly setupTimeoutMs?: number;
}

/** Versions of one object the bucket keeps (a manifest in flight may name an older one). */
export const OBJECT_HISTORY = 8;
/** Manifests up to this size travel in each node's message; larger ones shared by nodes are stored once and pointed to. */
const INLINE_MANIFEST_MAX = 1_024;
const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
/** Liveness probes in flight at once (a stalled controller must not probe every session at once). */
const MAX_PROBES = 64;
/** An agent is told its session is unknown at most this often. */
const NOTICE_INTERVAL_MS = 1_000;
const MAX_NOTICED = 16_384;
/** Headroom under the server's max payload for headers and JSON framing. */
const PAYLOAD_HEADROOM = 16 * 1024;

interface Session {
  readonly id: string;
  readonly node: string;
  readonly hello: AgentHello;
  session: AgentSession | undefined;
  lastBeat: number;
  /** The manifest of the update last sent. */
  manifest: GroupManifest | undefined;
  /** The update in flight (its position in the session and revision), until answered. */
  pending: { n: number; revision: number } | undefined;
  /** A liveness probe is in flight. */
  probing: boolean;
  n: number;
  closed: boolean;
}

interface GroupManifest {
  readonly key: string;
  /** The encoded ManifestBody, once every object it names is stored. */
  readonly body: Promise<Buffer>;
  /** Where it is kept in the bucket, once a node's message points to it. */
  stored: Promise<{ k: string; s: number[] }> | undefined;
  /** Sessions whose current update this is. */
  holders: number;
  /** Sweeps that found a stored one unheld, in a row. */
  unheld: number;
}

interface Written {
  readonly hash: string;
  readonly seqs: Promise<number[]>;
  /** Sweeps that found it unheld, in a row. */
  unheld: number;
  readonly node: string | undefined;
  readonly spanKey: string;
}

export class NatsPublisher implements AsyncDisposable {
  private readonly names: NatsNames;
  private readonly sessions = new Map<string, Session>();
  /** Log lines agents cause, rate-limited per node. */
  private readonly logs = new LogLimiter();
  private readonly written = new Map<string, Written>();
  private readonly encoded = new WeakMap<object, ReturnType<typeof encodeObject>>();
  /** Manifests by update key: one per distinct update, while a session holds it. */
  private readonly groups = new Map<string, GroupManifest>();
  private queued: Array<{
    subject: string;
    body: Uint8Array;
    resolve: (v: unknown) => void;
    reject: (err: unknown) => void;
  }> = [];
  private sub: Subscription | undefined;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** Liveness probes in flight. */
  private probing = 0;
  /** When each node was last told its session is unknown. */
  private readonly noticed = new Map<string, number>();
  private maxValue = 1024 * 1024 - PAYLOAD_HEADROOM;

  private constructor(
    private readonly options: NatsPublisherOptions,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly kv: KV,
  ) {
    this.names = natsNames(options.cluster);
  }

  /** Connects (waiting for NATS), makes the streams and the bucket, and serves agents. */
  static async start(options: NatsPublisherOptions): Promise<NatsPublisher> {
    const log = options.log;
    const nc = await natsConnect(options.endpoint, {
      name: `weir-controller ${options.cluster}`,
      inboxPrefix: CONTROLLER_INBOX,
    });
    try {
      // A cluster elects its JetStream leaders for a few seconds after it starts: retry until then.
      const deadline = Date.now() + (options.setupTimeoutMs ?? 60_000);
      for (let attempt = 0; ; attempt++) {
        try {
          return await NatsPublisher.setUp(options, nc);
        } catch (err) {
          if (Date.now() > deadline) throw err;
          log.warn({ err, attempt }, 'NATS JetStream not ready; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  private static async setUp(
    options: NatsPublisherOptions,
    nc: NatsConnection,
  ): Promise<NatsPublisher> {
    const log = options.log;
    {
      const jsm = await jetstreamManager(nc, { timeout: 5_000 });
      const names = natsNames(options.cluster);
      const replicas = options.replicas ?? 1;
      await ensureStream(jsm, {
        name: names.spans.stream,
        subjects: [names.spans.wildcard],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        max_msgs_per_subject: 1,
        num_replicas: replicas,
        allow_direct: true,
        discard: DiscardPolicy.Old,
      });
      await ensureStream(jsm, {
        name: names.flows.stream,
        subjects: [names.flows.wildcard],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: replicas,
        max_age: (options.flowMaxAgeMs ?? 24 * 3600_000) * 1_000_000,
        max_bytes: options.flowMaxBytes ?? 1024 * 1024 * 1024,
        discard: DiscardPolicy.Old,
        allow_direct: true,
      });
      const kv = await new Kvm(nc).create(names.objects.bucket, {
        history: OBJECT_HISTORY,
        replicas,
        storage: StorageType.File,
      });
      const p = new NatsPublisher(options, nc, jetstream(nc), kv);
      p.maxValue = Math.max(64 * 1024, nc.info!.max_payload - PAYLOAD_HEADROOM);
      await p.adoptExisting();
      p.serve();
      log.info(
        { servers: nc.getServer(), replicas, maxPayload: nc.info!.max_payload },
        'publishing to NATS',
      );
      return p;
    }
  }

  /** Keys already in the bucket (a previous controller's): purged by the sweep once unheld, rewritten when needed. */
  private async adoptExisting(): Promise<void> {
    const chunks = new Map<string, number>();
    for await (const key of await this.kv.keys('o.>')) {
      const base = key.replace(/\.c\d+$/, '');
      chunks.set(base, (chunks.get(base) ?? 0) + 1);
    }
    for (const [key, count] of chunks) {
      const parsed = parseObjectKey(key);
      if (parsed === undefined) continue;
      this.written.set(key, {
        hash: '',
        seqs: Promise.resolve(new Array<number>(count).fill(0)),
        unheld: 0,
        node: parsed.node,
        spanKey: parsed.spanKey,
      });
    }
  }

  private serve(): void {
    const beatMs = this.options.beatMs ?? 2_000;
    this.sub = this.nc.subscribe(this.names.agentsWildcard, {
      callback: (err, msg) => {
        if (err) {
          this.options.log.error({ err }, 'agent subscription failed');
          return;
        }
        try {
          this.onAgentMessage(msg, beatMs);
        } catch (err) {
          this.options.log.error({ err, subject: msg.subject }, 'agent message failed');
        }
      },
    });
    // A session whose beat is late is probed (weir.C.live.N): the agent
    // answers while its connection lives, and once that is gone NATS itself
    // answers "no responders" at once, so a crashed agent is noticed about a
    // beat after its last one. Silence for 3 beats (a partition, where the
    // server does not know yet) ends the session whatever the probes say.
    const expire = setInterval(
      () => {
        const now = Date.now();
        for (const s of this.sessions.values()) {
          const silentMs = now - s.lastBeat;
          if (silentMs > 3 * beatMs + 1_000) {
            this.options.log.info(
              { node: s.node, silentMs },
              'agent stopped beating; session closed',
            );
            this.end(s);
          } else if (silentMs > beatMs * 1.5 && !s.probing && this.probing < MAX_PROBES)
            void this.probe(s, beatMs);
        }
      },
      Math.max(25, beatMs / 4),
    );
    const sweep = setInterval(() => void this.sweep(), this.options.sweepMs ?? 30_000);
    for (const t of [expire, sweep]) t.unref();
    this.timers.push(expire, sweep);
  }

  private onAgentMessage(msg: Msg, beatMs: number): void {
    const parts = msg.subject.split('.');
    const node = tokenNode(parts[3] ?? '');
    const what = parts[4];
    const answer = (v: unknown) => {
      if (msg.reply) msg.respond(json(v));
    };
    const refuse = (issues: readonly Issue[], what: string) => {
      const n = this.logs.take(node);
      if (n !== undefined)
        this.options.log.warn(
          { node: preview(node, 64), problems: issues.length, ...suppressedField(n) },
          `${what} refused`,
        );
      answer({ ok: false, error: issues.map(formatIssue).join('; ') });
    };
    // Bounded before parsing: a body is a few hundred bytes of JSON.
    if (msg.data.length > NATS_LIMITS.requestBytes) {
      refuse(
        [
          {
            object: 'request',
            message: `is ${msg.data.length} bytes; at most ${NATS_LIMITS.requestBytes}`,
          },
        ],
        what ?? 'request',
      );
      return;
    }
    const body = parseJson(msg.data);
    if (body === undefined) {
      answer({ ok: false, error: 'not a JSON object' });
      return;
    }
    if (what === 'hello') {
      const checked = checkHello(body as unknown as RawHello);
      const issues = Array.isArray(checked) ? [...checked] : [];
      if (!Array.isArray(checked) && checked.node !== node)
        issues.push({
          object: 'Hello',
          field: 'node',
          message: `${preview(checked.node, 64)} is not the subject's node ${preview(node, 64)}`,
        });
      if (Array.isArray(checked) || issues.length > 0) {
        refuse(issues, 'hello');
        return;
      }
      const hello: AgentHello = checked;
      const s: Session = {
        id: randomUUID(),
        node,
        hello,
        session: undefined,
        lastBeat: Date.now(),
        probing: false,
        manifest: undefined,
        pending: undefined,
        n: 0,
        closed: false,
      };
      // The welcome goes out before any update the hello sets off.
      try {
        this.options.sessions.admit(node);
      } catch (err) {
        // A limit (records of unknown nodes): nothing was kept.
        answer({ ok: false, error: (err as Error).message });
        return;
      }
      // The welcome goes out before any update the hello sets off.
      answer({ ok: true, session: s.id, revision: String(this.options.sessions.revision), beatMs });
      this.sessions.set(node, s);
      s.session = this.options.sessions.hello(hello, {
        send: (update, key) => this.send(s, update, key),
        close: (reason) => {
          if (s.closed) return;
          this.options.log.debug({ node, reason }, 'closing agent session');
          this.end(s, false);
        },
      });
      return;
    }
    const s = this.sessions.get(node);
    const current = s !== undefined && !s.closed && body.session === s.id ? s : undefined;
    if (current === undefined) {
      // A request (an agent checking) is answered; a publish (a beat, an
      // ACK) is told on the agent's own subject: either way it says hello.
      if (msg.reply) answer({ ok: false, error: 'no such session' });
      else this.unknownSession(node, body.session);
      return;
    }
    // Any message of the session is a beat (an ACK while updates flow is all the agent sends).
    current.lastBeat = Date.now();
    if (what === 'beat') {
      answer({ ok: true });
      // The agent's last answer, repeated by every beat: an ACK or NACK that was lost arrives with the next beat.
      const last = body.answer;
      if (last !== null && typeof last === 'object' && !Array.isArray(last)) {
        const a = last as Record<string, unknown>;
        if (a.what === 'ack' || a.what === 'nack') this.onAnswer(current, a.what, a, refuse);
      }
    } else if (what === 'ack' || what === 'nack') {
      if (this.onAnswer(current, what, body, refuse)) answer({ ok: true });
    } else answer({ ok: false, error: `unknown request ${what}` });
  }

  /**
   * An ACK or NACK, in its own message or repeated in a beat: given to the
   * Distributor once, for the update in flight it names (`n`, its position
   * in the session; an agent that does not send `n` is matched by
   * revision), so that repeats, late copies and answers to an earlier
   * update change nothing. False when refused.
   */
  private onAnswer(
    s: Session,
    what: 'ack' | 'nack',
    body: Record<string, unknown>,
    refuse: (issues: readonly Issue[], what: string) => void,
  ): boolean {
    const checked =
      what === 'ack'
        ? checkAck({ revision: body.revision, inForceHash: body.inForceHash })
        : checkNack({ revision: body.revision, error: body.error, inForceHash: body.inForceHash });
    if (Array.isArray(checked)) {
      refuse(checked, what);
      return false;
    }
    const c = checked as { revision: number; inForceHash: string; error?: string };
    const p = s.pending;
    if (p === undefined || c.revision !== p.revision) return true;
    if (body.n !== undefined && body.n !== p.n) return true;
    s.pending = undefined;
    if (what === 'nack') s.session?.nack(c.revision, c.error ?? '', c.inForceHash);
    else s.session?.ack(c.revision, c.inForceHash);
    return true;
  }

  /** Tells the agent of `node` that its session is not known here (at most once a second per node). */
  private unknownSession(node: string, session: unknown): void {
    if (typeof session !== 'string' || session.length > 128) return;
    const now = Date.now();
    if ((this.noticed.get(node) ?? 0) > now - NOTICE_INTERVAL_MS) return;
    if (this.noticed.size >= MAX_NOTICED) this.noticed.clear();
    this.noticed.set(node, now);
    try {
      this.nc.publish(this.names.live(node), json({ ok: false, session }));
    } catch {
      // NATS is away: the agent's next beat is answered the same way
    }
  }

  /**
   * Asks the session's agent whether it is there: "no responders" (its
   * connection is gone: the server dropped its subscription) ends the
   * session; an answer for this session counts as a beat; a timeout
   * (partition, overload) leaves it to the 3-beat bound.
   */
  private async probe(s: Session, beatMs: number): Promise<void> {
    s.probing = true;
    this.probing++;
    try {
      const r = await this.nc.request(this.names.live(s.node), json({ session: s.id }), {
        timeout: beatMs,
      });
      if (parseJson(r.data)?.session === s.id) s.lastBeat = Math.max(s.lastBeat, Date.now());
    } catch (err) {
      if (!s.closed && isNoResponders(err)) {
        this.options.log.info(
          { node: s.node, silentMs: Date.now() - s.lastBeat },
          "agent's NATS connection is gone (no responders to its probe); session closed",
        );
        this.end(s);
      }
    } finally {
      s.probing = false;
      this.probing--;
    }
  }

  /** Ends a session; `tell`: the Distributor did not end it itself. */
  private end(s: Session, tell = true): void {
    if (s.closed) return;
    s.closed = true;
    this.hold(s, undefined);
    if (this.sessions.get(s.node) === s) this.sessions.delete(s.node);
    if (tell) s.session?.close();
  }

  private send(s: Session, update: SpanUpdate, key: string): void {
    const n = ++s.n;
    s.pending = { n, revision: Number(update.revision) };
    void (async () => {
      for (let attempt = 0; !s.closed && !this.closed && s.n === n; attempt++) {
        try {
          await this.publish(s, n, update, key);
          return;
        } catch (err) {
          const delay = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6));
          this.options.log.warn(
            { err, node: s.node, revision: update.revision, retryInMs: delay },
            'publishing an update failed; retrying',
          );
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
    })();
  }

  private async publish(s: Session, n: number, update: SpanUpdate, key: string): Promise<void> {
    const m = this.manifestFor(s.node, update, key);
    this.hold(s, m);
    const body = await m.body;
    if (s.closed || s.n !== n) return;
    // Small, or this node's alone: in its message. Shared and large: stored
    // once for all of them, and each node's message points to it.
    const inline = body.length <= INLINE_MANIFEST_MAX || (m.holders <= 1 && m.stored === undefined);
    let where: Buffer | { k: string; s: number[] } = body;
    if (!inline || body.length > this.maxValue) {
      m.stored ??= (async () => {
        const k = this.names.objects.manifest(m.key);
        return { k, s: await this.putChunked(k, body) };
      })();
      m.stored.catch(() => {
        m.stored = undefined;
      });
      where = await m.stored;
      if (s.closed || s.n !== n) return;
    }
    const message = encodeSpanMessage(s.id, n, where);
    await this.outbox(this.names.spans.subject(s.node), message);
    this.options.onBytesSent?.(message.length);
  }

  /**
   * The manifest of an update, built once for every node that gets the same
   * update (the Distributor's key names its exact content; with objects
   * particular to the node, the node is part of the key), once its objects
   * are stored.
   */
  private manifestFor(node: string, update: SpanUpdate, key: string): GroupManifest {
    const objects = objectsOf(update).map(([kind, o]) => {
      let e = this.encoded.get(o);
      if (e === undefined) {
        e = encodeObject(kind, o);
        this.encoded.set(o, e);
      }
      return { e, local: this.options.nodeLocal(node, e.key) };
    });
    const groupKey = objects.some((x) => x.local) ? `${key}.n.${b64url(node)}` : key;
    let m = this.groups.get(groupKey);
    if (m !== undefined) return m;
    // Small objects travel in the manifest too (no fetch for the agent),
    // within a bound; every one is still written once to the bucket.
    let inlineBytes = 0;
    const inline = objects.map(({ e }) => {
      if (e.bytes.length > INLINE_OBJECT_MAX || inlineBytes + e.bytes.length > INLINE_OBJECTS_MAX)
        return false;
      inlineBytes += e.bytes.length;
      return true;
    });
    const body = (async () => {
      const refs = await Promise.all(
        objects.map(async ({ e, local }, i): Promise<ObjectRef> => {
          const k = this.names.objects.key(e.key, local ? node : undefined);
          const s = await this.writeOnce(k, e, local ? node : undefined);
          return inline[i]
            ? { k, o: e.key, h: e.hash, s, b: e.bytes }
            : { k, o: e.key, h: e.hash, s };
        }),
      );
      return encodeManifestBody({ head: encodeHead(update), objects: refs });
    })();
    m = { key: groupKey, body, stored: undefined, holders: 0, unheld: 0 };
    this.groups.set(groupKey, m);
    body.catch(() => {
      if (this.groups.get(groupKey) === m) this.groups.delete(groupKey);
    });
    return m;
  }

  /** The session's current update is `m` (what a replay after a reconnection reads). */
  private hold(s: Session, m: GroupManifest | undefined): void {
    if (s.manifest === m) return;
    if (s.manifest !== undefined) this.release(s.manifest);
    s.manifest = m;
    if (m !== undefined) m.holders++;
  }

  private release(m: GroupManifest): void {
    // Forgotten with its last holder unless stored (the sweep purges those:
    // a holder may come back meanwhile).
    if (--m.holders === 0 && m.stored === undefined && this.groups.get(m.key) === m)
      this.groups.delete(m.key);
  }

  /**
   * Publishes to JetStream in batches: everything queued in one turn goes
   * out in one socket write (one change reaches thousands of nodes at once).
   */
  private outbox(subject: string, body: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queued.push({ subject, body, resolve, reject });
      if (this.queued.length === 1)
        setImmediate(() => {
          const batch = this.queued;
          this.queued = [];
          for (const q of batch) this.js.publish(q.subject, q.body).then(q.resolve, q.reject);
        });
    });
  }

  /** The entries of one object version: written once, whatever the number of nodes that need it. */
  private writeOnce(
    key: string,
    e: { key: string; hash: string; bytes: Buffer },
    node: string | undefined,
  ): Promise<number[]> {
    const w = this.written.get(key);
    if (w !== undefined && w.hash === e.hash) {
      w.unheld = 0;
      return w.seqs;
    }
    const seqs = this.putChunked(key, e.bytes);
    this.written.set(key, { hash: e.hash, seqs, unheld: 0, node, spanKey: e.key });
    seqs.catch(() => {
      if (this.written.get(key)?.seqs === seqs) this.written.delete(key);
    });
    return seqs;
  }

  private async putChunked(key: string, bytes: Buffer): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = 0, off = 0; off < bytes.length || i === 0; i++, off += this.maxValue) {
      const part = bytes.subarray(off, off + this.maxValue);
      seqs.push(await this.kv.put(this.names.objects.chunk(key, i), part));
      this.options.onBytesSent?.(part.length);
    }
    return seqs;
  }

  /** Purges objects no span has held, and stored manifests no session has held, for two sweeps in a row. */
  private async sweep(): Promise<void> {
    for (const [key, m] of [...this.groups]) {
      if (m.holders > 0) {
        m.unheld = 0;
        continue;
      }
      if (++m.unheld < 2) continue;
      this.groups.delete(key);
      const w = await m.stored?.catch(() => undefined);
      if (w === undefined) continue;
      try {
        for (let i = 0; i < w.s.length; i++) await this.kv.purge(this.names.objects.chunk(w.k, i));
      } catch (err) {
        this.options.log.warn({ err, key: w.k }, 'purging an unheld manifest failed');
      }
    }
    for (const [key, w] of [...this.written]) {
      if (this.options.held(w.spanKey, w.node)) {
        w.unheld = 0;
        continue;
      }
      if (++w.unheld < 2) continue;
      this.written.delete(key);
      try {
        const chunks = (await w.seqs.catch(() => [0])).length || 1;
        for (let i = 0; i < chunks; i++) await this.kv.purge(this.names.objects.chunk(key, i));
      } catch (err) {
        this.options.log.warn({ err, key }, 'purging an unheld object failed');
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const s of [...this.sessions.values()]) this.end(s, false);
    this.sub?.unsubscribe();
    await this.nc.drain().catch(() => this.nc.close());
  }
}

function isNoResponders(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  return err instanceof RequestError && err.isNoResponders();
}

/** The span key (and node) of an object key as names.ts makes it; undefined for other keys. */
function parseObjectKey(key: string): { spanKey: string; node?: string } | undefined {
  const m = /^o\.([pgse])\.([A-Za-z0-9_-]+)(?:\.n\.([A-Za-z0-9_-]+))?$/.exec(key);
  if (m === null) return undefined;
  const d = (s: string) => Buffer.from(s, 'base64url').toString('utf8');
  return { spanKey: `${m[1]}:${d(m[2]!)}`, ...(m[3] !== undefined ? { node: d(m[3]) } : {}) };
}

/** Creates a stream, or brings an existing one to this configuration. */
async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
) {
  try {
    await jsm.streams.info(config.name);
  } catch {
    await jsm.streams.add(config);
    return;
  }
  const { name, ...rest } = config;
  const { num_replicas: _r, allow_direct: _d, ...updatable } = rest;
  void _r;
  void _d;
  await jsm.streams.update(name, updatable);
}
