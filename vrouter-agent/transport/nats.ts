/**
 * The agent's controller connection over NATS (docs/nats.md): the same
 * protocol as the gRPC stream, on subjects under this node's own token.
 *
 *   subscribe weir.C.span.N (before anything else, so nothing is missed)
 *   hello (request) ─> welcome {session}: connected; fetch the last update
 *                      kept for this node (it may have come before the welcome)
 *   manifest on weir.C.span.N for this session ─> its objects: inline
 *      (small ones), else fetched from the bucket by sequence ─> check each
 *      against its content hash ─> the update, decoded as gRPC decodes it
 *      ─> Delivery
 *   ack/nack (publishes, no reply): also the beat; every later beat repeats
 *      the last answer, so a lost one arrives with the next beat
 *   beat (publish) beatMs after the last message sent; a request (answered)
 *      after a reconnection and when nothing was heard from the controller
 *      for CHECK_BEATS beats: ok:false ─> hello again at once; no answer
 *      twice (or no responders) ─> headless, hello again with backoff
 *   weir.C.live.N from the controller: a probe (request) ─> answered while
 *      connected (a dead connection is answered "no responders" by NATS);
 *      a notice {ok:false, session} (the controller does not know the
 *      session: restarted, or it gave up on us) ─> hello again at once
 *   NATS reconnected ─> beat at once: the session still lives ─> replay the
 *      last kept update (JetStream keeps it); otherwise hello again
 *
 * Whatever happens the agent resumes from what it has in force: every hello
 * carries its revision and in-force hash. A manifest or object that cannot
 * be fetched or does not hash as named is refused (NACK with the span still
 * in force), never applied in part.
 */
import {
  type Msg,
  type NatsConnection,
  NoRespondersError,
  RequestError,
  type Subscription,
} from '@nats-io/transport-node';
import { ValidationError, formatIssue } from '../../shared/errors.js';
import { NACK_ERROR_CHARS, truncate } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import {
  type ObjectRef,
  type SpanMessage,
  decodeManifestBody,
  decodeSpanMessage,
  decodeUpdate,
  headRevision,
} from '../../shared/nats/codec.js';
import { type NatsEndpoint, json, natsConnectUntil, parseJson } from '../../shared/nats/connect.js';
import { type NatsNames, agentInbox, directGet, natsNames } from '../../shared/nats/names.js';
import {
  type AgentHello,
  type ControllerTransport,
  type Delivery,
  DeliveryQueue,
  backoffMs,
} from './transport.js';

export interface NatsTransportOptions {
  readonly endpoint: NatsEndpoint;
  readonly cluster: string;
  readonly node: string;
  readonly log: Logger;
  readonly requestTimeoutMs?: number;
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
}

/** Bounds of the cache of fetched objects. */
const CACHE_MAX_BYTES = 32 * 1024 * 1024;
const CACHE_MAX_ENTRIES = 16_384;

/**
 * Encoded objects by KV key and content hash, least recently used first
 * out. A hit is as good as a fetch: decodeUpdate checks every object's
 * hash against its reference either way.
 */
export class ObjectCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(
    private readonly maxBytes = CACHE_MAX_BYTES,
    private readonly maxEntries = CACHE_MAX_ENTRIES,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(ref: ObjectRef): Buffer | undefined {
    const id = `${ref.k}\n${ref.h}`;
    const b = this.entries.get(id);
    if (b !== undefined) {
      this.entries.delete(id);
      this.entries.set(id, b);
    }
    return b;
  }

  put(ref: ObjectRef, bytes: Buffer): void {
    const id = `${ref.k}\n${ref.h}`;
    if (this.entries.has(id) || bytes.length > this.maxBytes / 4) return;
    this.entries.set(id, bytes);
    this.bytes += bytes.length;
    while (this.bytes > this.maxBytes || this.entries.size > this.maxEntries) {
      const [oldest, b] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.bytes -= b.length;
    }
  }
}

/** Object fetches in flight at once for one update. */
const FETCH_CONCURRENCY = 64;
/** After this many beats without a word from the controller, the beat asks for an answer. */
const CHECK_BEATS = 4;

interface AgentSession {
  readonly id: string;
  readonly beatMs: number;
  lastN: number;
  /** When the controller was last heard (welcome, update, probe, answered beat). */
  heard: number;
  /** The last ACK or NACK sent, repeated by every beat. */
  answer: Record<string, unknown> | undefined;
}

export class NatsTransport implements ControllerTransport {
  private nc: NatsConnection | undefined;
  private sub: Subscription | undefined;
  private live: Subscription | undefined;
  private readonly names: NatsNames;
  private readonly queue = new DeliveryQueue();
  /** Objects already fetched and proven, by key and content hash: not fetched again. */
  private readonly cache = new ObjectCache();
  private hello: (() => AgentHello) | undefined;
  private session: AgentSession | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  private helloing = false;
  /** The last update that arrived while a hello was unanswered: it may be for the session being opened. */
  private early: Uint8Array | undefined;
  private helloAttempt = 0;
  private beatTimer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private missedBeats = 0;
  /** Manifests are handled one at a time, in arrival order. */
  private chain: Promise<void> = Promise.resolve();
  connected = false;
  readonly peer: string;

  constructor(private readonly options: NatsTransportOptions) {
    this.names = natsNames(options.cluster);
    this.peer = options.endpoint.servers.join(',');
  }

  updates(hello: () => AgentHello): AsyncIterable<Delivery> {
    this.hello = hello;
    void this.run();
    return this.queue;
  }

  private get log(): Logger {
    return this.options.log;
  }

  private async run(): Promise<void> {
    const nc = await natsConnectUntil(
      this.options.endpoint,
      { name: `weir-agent ${this.options.node}`, inboxPrefix: agentInbox(this.options.node) },
      this.abort.signal,
      (err) => this.log.debug({ err, servers: this.peer }, 'NATS not reachable yet'),
    );
    if (nc === undefined) return;
    this.nc = nc;
    this.sub = nc.subscribe(this.names.spans.subject(this.options.node), {
      callback: (err, msg) => {
        if (err) this.log.error({ err }, 'span subscription failed');
        else this.enqueue(msg.data);
      },
    });
    // The controller's liveness probe: answered while this connection lives;
    // once it is gone the server itself answers the controller "no responders".
    this.live = nc.subscribe(this.names.live(this.options.node), {
      callback: (err, msg) => {
        if (err) this.log.error({ err }, 'liveness subscription failed');
        else this.onLive(msg);
      },
    });
    await nc.flush();
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          if (this.connected) this.log.warn({ server: s.server }, 'NATS connection lost; headless');
          this.connected = false;
        } else if (s.type === 'reconnect') {
          this.log.info({ server: s.server }, 'NATS reconnected');
          void this.beat(true);
        }
      }
    })();
    void this.sayHello();
  }

  /** A probe (a request) is answered; a notice that our session is unknown sends a hello. */
  private onLive(msg: Msg): void {
    const s = this.session;
    if (msg.reply) {
      msg.respond(json({ ok: true, session: s?.id ?? '' }));
      if (s !== undefined) s.heard = Date.now();
      return;
    }
    const notice = parseJson(msg.data);
    if (s === undefined || notice?.ok !== false || notice.session !== s.id) return;
    this.log.info({ session: s.id }, 'controller does not know this session; saying hello');
    this.connected = false;
    void this.sayHello();
  }

  /** Fire and forget: what is lost is repeated by the next beat. */
  private publish(what: 'beat' | 'ack' | 'nack', body: unknown): void {
    try {
      this.nc!.publish(this.names.agent(this.options.node, what), json(body));
    } catch (err) {
      this.log.debug({ err, what }, 'publish failed; the next beat repeats it');
    }
  }

  private async request(what: 'hello' | 'beat', body: unknown) {
    const reply = await this.nc!.request(this.names.agent(this.options.node, what), json(body), {
      timeout: this.options.requestTimeoutMs ?? 2_000,
    });
    return parseJson(reply.data) ?? {};
  }

  private async sayHello(): Promise<void> {
    if (this.closed || this.helloing) return;
    this.helloing = true;
    clearTimeout(this.retry);
    clearTimeout(this.beatTimer);
    this.session = undefined;
    try {
      const h = this.hello!();
      const r = await this.request('hello', {
        node: h.node,
        appliedRevision: String(h.appliedRevision),
        instance: h.instance,
        apiAddress: h.apiAddress,
        inForceHash: h.inForceHash,
      });
      if (r.ok !== true || typeof r.session !== 'string')
        throw new ValidationError([
          { object: 'Welcome', field: 'ok', message: String(r.error ?? 'refused') },
        ]);
      const beatMs = Number(r.beatMs) > 0 ? Math.min(60_000, Number(r.beatMs)) : 2_000;
      this.session = { id: r.session, beatMs, lastN: 0, heard: Date.now(), answer: undefined };
      this.connected = true;
      this.missedBeats = 0;
      this.helloAttempt = 0;
      this.log.info({ controller: this.peer, session: r.session }, 'connected to controller');
      this.scheduleBeat();
      const early = this.early;
      this.early = undefined;
      if (early !== undefined) this.enqueue(early);
      this.replayLast();
    } catch (err) {
      this.connected = false;
      const delay = backoffMs(
        this.helloAttempt++,
        this.options.reconnectMinMs ?? 200,
        this.options.reconnectMaxMs ?? 5_000,
      );
      this.log.debug({ err, retryInMs: delay }, 'hello unanswered');
      this.retry = setTimeout(() => void this.sayHello(), delay);
      this.retry.unref();
    } finally {
      this.helloing = false;
    }
  }

  private scheduleBeat(): void {
    clearTimeout(this.beatTimer);
    if (this.closed || this.session === undefined) return;
    // Jittered (90–100% of the period) so that agents started together do not beat together.
    const delay = this.session.beatMs * (0.9 + Math.random() / 10);
    this.beatTimer = setTimeout(() => void this.beat(false), delay);
    this.beatTimer.unref();
  }

  /** `reconnected`: NATS came back; replay what was kept meanwhile if the session survived. */
  private async beat(reconnected: boolean): Promise<void> {
    const s = this.session;
    if (this.closed) return;
    if (s === undefined) {
      if (reconnected) void this.sayHello();
      return;
    }
    const body = { session: s.id, ...(s.answer !== undefined ? { answer: s.answer } : {}) };
    // Most beats are publishes; one after a reconnection, or after CHECK_BEATS
    // beats with no word from the controller, asks, so that a controller
    // that is gone (or forgot us without a notice reaching us) is noticed.
    if (!reconnected && Date.now() - s.heard <= CHECK_BEATS * s.beatMs) {
      this.publish('beat', body);
      this.scheduleBeat();
      return;
    }
    try {
      const r = await this.request('beat', body);
      if (this.session !== s) return;
      s.heard = Date.now();
      if (r.ok !== true) {
        this.log.info({ session: s.id }, 'controller does not know this session; saying hello');
        this.connected = false;
        void this.sayHello();
        return;
      }
      this.missedBeats = 0;
      if (!this.connected) this.log.info({ session: s.id }, 'controller reachable again');
      this.connected = true;
      if (reconnected) this.replayLast();
      this.scheduleBeat();
    } catch (err) {
      if (this.session !== s) return;
      // No responders: no controller subscribes at all.
      if (isNoResponders(err)) this.missedBeats++;
      if (++this.missedBeats >= 2) {
        if (this.connected)
          this.log.warn({ err }, 'controller not answering; enforcing the last span (headless)');
        this.connected = false;
        void this.sayHello();
      } else this.scheduleBeat();
    }
  }

  /** The last update JetStream keeps for this node: one that came before the welcome, or during a disconnect. */
  private replayLast(): void {
    const nc = this.nc!;
    this.chain = this.chain.then(async () => {
      try {
        const m = await nc.request(
          directGet(this.names.spans.stream, this.names.spans.subject(this.options.node)),
          new Uint8Array(),
          { timeout: this.options.requestTimeoutMs ?? 2_000 },
        );
        if (m.headers?.code === 404 || m.data.length === 0) return;
        await this.handle(m.data);
      } catch (err) {
        this.log.warn({ err }, 'reading the last kept update failed');
      }
    });
  }

  private enqueue(data: Uint8Array): void {
    this.chain = this.chain.then(() => this.handle(data));
  }

  private async handle(data: Uint8Array): Promise<void> {
    let m: SpanMessage;
    try {
      m = decodeSpanMessage(data);
    } catch (err) {
      this.log.error({ err }, 'unreadable update message ignored');
      return;
    }
    const s = this.session;
    if (s === undefined && this.helloing) {
      // Core delivery can overtake the welcome (and, on a cluster, JetStream's commit of it).
      this.early = data;
      return;
    }
    if (s === undefined || m.session !== s.id || m.n <= s.lastN) return;
    s.lastN = m.n;
    s.heard = Date.now();
    const answer = (what: 'ack' | 'nack', body: Record<string, unknown>) =>
      this.answer(s, what, { n: m.n, ...body });
    let head: Buffer | undefined = m.manifest?.head;
    try {
      const manifest = m.manifest ?? decodeManifestBody(await this.fetch(m.pointer.k, m.pointer.s));
      head = manifest.head;
      const objects = await this.fetchAll(manifest.objects);
      const update = decodeUpdate(manifest.head, objects);
      // Proven (each hashes as its reference says): kept for the next update naming it.
      for (const o of objects) this.cache.put(o.ref, o.bytes);
      if (this.session !== s) return;
      this.push({
        update,
        ack: (inForceHash) => answer('ack', { revision: update.revision, inForceHash }),
        nack: (error, inForceHash) =>
          answer('nack', {
            revision: update.revision,
            error: truncate(error, NACK_ERROR_CHARS),
            inForceHash,
          }),
      });
    } catch (err) {
      // Refused whole: the revision is the head's, when it can be read.
      const problem =
        err instanceof ValidationError
          ? err.issues.map(formatIssue).join('; ')
          : (err as Error).message;
      let revision = '0';
      try {
        if (head !== undefined) revision = headRevision(head);
      } catch {
        // an unreadable head leaves revision 0; the controller ignores a NACK for a revision not in flight
      }
      this.log.error({ err, revision }, 'update could not be assembled; refusing it');
      this.push({
        problem: `update could not be assembled: ${problem}`,
        ack: () => {},
        nack: (error, inForceHash) =>
          answer('nack', { revision, error: truncate(error, NACK_ERROR_CHARS), inForceHash }),
      });
    }
  }

  private push(d: Delivery): void {
    if (!this.queue.push(d)) {
      this.log.error('more updates queued than the agent can hold; saying hello again');
      void this.sayHello();
    }
  }

  /**
   * An ACK or NACK: published once, and repeated by every beat of the
   * session until the next one (the controller takes it once, for the
   * update it names by `n`). It counts as a beat: the next is a beat later.
   */
  private answer(s: AgentSession, what: 'ack' | 'nack', body: Record<string, unknown>): void {
    if (this.session !== s || this.closed) return;
    s.answer = { what, ...body };
    this.publish(what, { session: s.id, ...body });
    this.scheduleBeat();
  }

  /** The entries of one value, concatenated; each must be the entry of the expected key. */
  private async fetch(key: string, seqs: readonly number[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let i = 0; i < seqs.length; i++) {
      const want = `$KV.${this.names.objects.bucket}.${this.names.objects.chunk(key, i)}`;
      const m: Msg = await this.nc!.request(
        directGet(this.names.objects.stream),
        json({ seq: seqs[i] }),
        { timeout: this.options.requestTimeoutMs ?? 2_000 },
      );
      if (m.headers?.code === 404)
        throw new ValidationError([
          { object: key, field: 'seq', message: `entry ${seqs[i]} is no longer in NATS` },
        ]);
      const subject = m.headers?.get('Nats-Subject');
      if (subject !== want)
        throw new ValidationError([
          {
            object: key,
            field: 'seq',
            message: `entry ${seqs[i]} is ${subject || 'not an entry'}`,
          },
        ]);
      parts.push(Buffer.from(m.data));
    }
    return Buffer.concat(parts);
  }

  private async fetchAll(
    refs: readonly ObjectRef[],
  ): Promise<Array<{ ref: ObjectRef; bytes: Buffer }>> {
    const out = new Array<{ ref: ObjectRef; bytes: Buffer }>(refs.length);
    let next = 0;
    const worker = async () => {
      while (next < refs.length) {
        const i = next++;
        const ref = refs[i]!;
        out[i] = {
          ref,
          bytes: ref.b ?? this.cache.get(ref) ?? (await this.fetch(ref.k, ref.s)),
        };
      }
    };
    await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, refs.length) }, worker));
    return out;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    this.abort.abort();
    this.connected = false;
    clearTimeout(this.retry);
    clearTimeout(this.beatTimer);
    this.queue.end();
    this.sub?.unsubscribe();
    this.live?.unsubscribe();
    await this.nc?.close().catch(() => {});
  }
}

function isNoResponders(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  return err instanceof RequestError && err.isNoResponders();
}
