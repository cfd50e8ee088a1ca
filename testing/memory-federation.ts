/**
 * An in-memory federation hub for tests: one key/value space shared by
 * several FederationLinks, each a member that may write only its own
 * cluster's entries (as the NATS hub's permissions enforce), with the
 * link's events as nats-link.ts gives them (`connected`, a listing,
 * `synced`, then changes), and a switch to cut a link (or all of them) off
 * the hub and bring it back.
 *
 *   const hub = new MemoryFederationHub('f');
 *   const a = hub.link('a'); const b = hub.link('b');
 *   hub.cut('a'); ...; hub.restore('a');
 *
 * Values are copied through JSON on the way in and out, as the real store
 * holds bytes: no member can change another's entry by mutating an object.
 */
import {
  ENTRY_KINDS,
  ENTRY_MAX_BYTES,
  type EntryKind,
  type EntryRef,
  type FederationLink,
  type LinkEvent,
  type LinkState,
} from '../controller/federation/link.js';

export function memoryEntryKey(ref: EntryRef): string {
  return `${ref.kind}.${ref.cluster}.${Buffer.from(ref.name).toString('base64url')}`;
}

function parseKey(key: string): EntryRef | undefined {
  const [kind, cluster, name, ...rest] = key.split('.');
  if (rest.length > 0 || name === undefined || cluster === undefined) return undefined;
  if (!(ENTRY_KINDS as readonly string[]).includes(kind!)) return undefined;
  return { kind: kind as EntryKind, cluster, name: Buffer.from(name, 'base64url').toString() };
}

export class MemoryFederationHub {
  /** Key → the stored bytes (JSON text). */
  private readonly entries = new Map<string, string>();
  private readonly links = new Set<MemoryFederationLink>();
  /** Members cut off ("*": every member), also those whose link is made later. */
  private readonly cutOff = new Set<string>();

  constructor(readonly federation: string) {}

  link(cluster: string): MemoryFederationLink {
    const l = new MemoryFederationLink(this, cluster);
    this.links.add(l);
    if (this.cutOff.has('*') || this.cutOff.has(cluster)) l.setUp(false);
    return l;
  }

  /** Cuts one member (or every member) off the hub: its link reports `disconnected`. */
  cut(cluster?: string): void {
    this.cutOff.add(cluster ?? '*');
    for (const l of this.links) if (cluster === undefined || l.cluster === cluster) l.setUp(false);
  }

  /** Brings it back: `connected`, a fresh listing, `synced`. */
  restore(cluster?: string): void {
    if (cluster === undefined) this.cutOff.clear();
    else this.cutOff.delete(cluster);
    for (const l of this.links) if (cluster === undefined || l.cluster === cluster) l.setUp(true);
  }

  /** Writes raw text under any key, bypassing permissions (a corrupt or forged entry). */
  putRaw(key: string, text: string): void {
    this.entries.set(key, text);
    for (const l of this.links) l.deliver(key, text);
  }

  /** Drops an entry without telling anyone (a bucket lost or recreated): only a fresh listing shows it gone. */
  forget(ref: EntryRef): void {
    this.entries.delete(memoryEntryKey(ref));
  }

  /** What the hub holds now, parsed (for assertions). */
  keys(): string[] {
    return [...this.entries.keys()].sort();
  }

  get(ref: EntryRef): unknown {
    const t = this.entries.get(memoryEntryKey(ref));
    return t === undefined ? undefined : JSON.parse(t);
  }

  /** @internal */
  store(ref: EntryRef, value: unknown): void {
    const key = memoryEntryKey(ref);
    const text = JSON.stringify(value);
    this.entries.set(key, text);
    for (const l of this.links) l.deliver(key, text);
  }

  /** @internal */
  delete(ref: EntryRef): void {
    const key = memoryEntryKey(ref);
    if (!this.entries.delete(key)) return;
    for (const l of this.links) l.deliverDelete(key);
  }

  /** @internal */
  listing(): Array<[string, string]> {
    return [...this.entries];
  }

  /** @internal */
  detach(l: MemoryFederationLink): void {
    this.links.delete(l);
  }
}

export class MemoryFederationLink implements FederationLink {
  readonly federation: string;
  private up = true;
  private closed = false;
  private lastContact = Date.now();
  private lastError = '';
  private readonly queue: LinkEvent[] = [];
  private wake: (() => void) | undefined;
  private watching = false;

  constructor(
    private readonly hub: MemoryFederationHub,
    readonly cluster: string,
  ) {
    this.federation = hub.federation;
  }

  async put(ref: EntryRef, value: unknown): Promise<void> {
    this.check(ref);
    const text = JSON.stringify(value);
    if (Buffer.byteLength(text) > ENTRY_MAX_BYTES[ref.kind])
      throw new Error(`entry ${memoryEntryKey(ref)} is over ${ENTRY_MAX_BYTES[ref.kind]} bytes`);
    this.hub.store(ref, value);
  }

  async remove(ref: EntryRef): Promise<void> {
    this.check(ref);
    this.hub.delete(ref);
  }

  watch(): AsyncIterable<LinkEvent> {
    if (this.watching) throw new Error('one watcher per link');
    this.watching = true;
    if (this.up) this.pushListing();
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        while (!self.closed) {
          const e = self.queue.shift();
          if (e !== undefined) {
            yield e;
            continue;
          }
          await new Promise<void>((resolve) => {
            self.wake = resolve;
          });
        }
      },
    };
  }

  state(): LinkState {
    return {
      connected: this.up && !this.closed,
      lastContactUnixMs: this.up ? Date.now() : this.lastContact,
      lastError: this.lastError,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    this.hub.detach(this);
    this.wake?.();
  }

  /** @internal */
  setUp(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    if (!up) {
      this.lastContact = Date.now();
      this.lastError = 'cut off the hub (test)';
      if (this.watching) this.push({ type: 'disconnected', reason: this.lastError });
    } else {
      this.lastError = '';
      if (this.watching) this.pushListing();
    }
  }

  /** @internal */
  deliver(key: string, text: string): void {
    if (this.up && this.watching) this.push(this.eventOf(key, text));
  }

  /** @internal */
  deliverDelete(key: string): void {
    const ref = parseKey(key);
    if (this.up && this.watching && ref !== undefined) this.push({ type: 'delete', ref });
  }

  private eventOf(key: string, text: string): LinkEvent {
    const ref = parseKey(key);
    if (ref === undefined) return { type: 'invalid', key, reason: 'not a federation key' };
    if (Buffer.byteLength(text) > ENTRY_MAX_BYTES[ref.kind])
      return { type: 'invalid', key, ref, reason: `over ${ENTRY_MAX_BYTES[ref.kind]} bytes` };
    try {
      return { type: 'put', ref, value: JSON.parse(text) };
    } catch (err) {
      return { type: 'invalid', key, ref, reason: `not JSON: ${(err as Error).message}` };
    }
  }

  private pushListing(): void {
    this.push({ type: 'connected' });
    for (const [key, text] of this.hub.listing()) this.push(this.eventOf(key, text));
    this.push({ type: 'synced' });
  }

  private push(e: LinkEvent): void {
    this.queue.push(e);
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private check(ref: EntryRef): void {
    if (this.closed) throw new Error('link closed');
    if (!this.up) throw new Error('not connected to the hub');
    // The hub's permissions: a member writes only its own cluster's entries.
    if (ref.cluster !== this.cluster)
      throw new Error(`permission denied: ${this.cluster} may not write ${memoryEntryKey(ref)}`);
  }
}
