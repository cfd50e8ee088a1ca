/**
 * The other members' entries, from the link, into this member's model.
 *
 *   LinkEvent ─> readEntry (validate: shape, key ↔ value, the Kubernetes readers)
 *             ├─ valid   ─> FederationModelEvent ─> model (the controller commits)
 *             └─ invalid ─> reported (key, field), the last valid version stays
 *
 * Never fail open:
 * - an invalid entry keeps its last valid version in force, and is
 *   reported naming its key and the field;
 * - an entry absent from a fresh listing (after a reconnect) is kept, and
 *   its member shown stale: only the owner's deletion removes an entry;
 * - what is in force is persisted (checksummed, in the controller's state
 *   directory) and loaded at start-up before the first commit, so a
 *   controller restarted while cut off from the hub enforces it at once.
 *
 * This member's own entries are not imported (the exporter reconciles
 * them, see ownListed()).
 */
import type { Logger } from 'pino';
import { LogLimiter, suppressedField } from '../../shared/log-limiter.js';
import { ChecksummedFile, type StateFileRejection } from '../../shared/state/checksummed-file.js';
import type { FederationModelEvent } from '../model/cluster-model.js';
import {
  FEDERATION_LIMITS,
  entryKey,
  readEntry,
  type EntryValue,
  type MemberReport,
} from './entries.js';
import { ENTRY_KINDS, type EntryKind, type EntryRef, type LinkEvent } from './link.js';

export const FEDERATION_STATE_FILE = 'federation.state';
const STATE_KIND = 'controller-federation';

/** A member whose report is older than this is stale (it reports every ~10 s). */
export const STALE_AFTER_MS = 35_000;

export interface ImporterOptions {
  readonly cluster: string;
  readonly federation: string;
  /** Applies an event to the model (the caller then commits). */
  readonly apply: (e: FederationModelEvent) => void;
  readonly log: Logger;
  /** Where imported state is persisted; absent: not persisted. */
  readonly stateDir?: string;
  readonly now?: () => number;
  /** Delay before persisting after a change (default 200 ms): changes come in bursts. */
  readonly persistDelayMs?: number;
}

interface Held {
  readonly ref: EntryRef;
  /** The value as received (what is persisted, re-validated on load). */
  readonly raw: unknown;
  readonly value: EntryValue;
  /** False when absent from the latest listing (kept; the member shown stale). */
  listed: boolean;
  readonly receivedUnixMs: number;
}

export interface ImportRejection {
  readonly key: string;
  /** "Namespace b/web", "ClusterNetworkPolicy x from b", or the key. */
  readonly object: string;
  readonly problems: readonly string[];
  readonly atUnixMs: number;
  /** Whether an earlier valid version stays in force. */
  readonly keptLastValid: boolean;
}

export interface ImportedMember {
  readonly cluster: string;
  readonly report: MemberReport | undefined;
  /** When an entry of the member last arrived (0: only from the state file). */
  readonly lastSeenUnixMs: number;
  readonly stale: boolean;
  /** Why stale, when stale. */
  readonly staleReason: string;
  readonly entries: Readonly<Record<'ns' | 'ep' | 'cnp', number>>;
  /** Entries kept although the latest listing lacked them. */
  readonly unlisted: number;
}

export class FederationImporter {
  private readonly held = new Map<string, Held>();
  private readonly rejected = new Map<string, ImportRejection>();
  /** This member's own entries as the latest listing (and later changes) showed them. */
  private readonly own = new Map<string, { ref: EntryRef; value: unknown }>();
  private readonly counts = new Map<string, Record<EntryKind, number>>();
  private readonly lastSeen = new Map<string, number>();
  private listing: Set<string> | undefined;
  private syncedOnce = false;
  private readonly limiter = new LogLimiter();
  private readonly now: () => number;
  private readonly file: ChecksummedFile | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private persistError = '';
  loadRejection: StateFileRejection | undefined;

  constructor(private readonly options: ImporterOptions) {
    this.now = options.now ?? Date.now;
    this.file =
      options.stateDir === undefined
        ? undefined
        : new ChecksummedFile(options.stateDir, FEDERATION_STATE_FILE, STATE_KIND, {
            writer: 'weir-controller',
          });
  }

  private get owner(): Record<string, string> {
    return { cluster: this.options.cluster, federation: this.options.federation };
  }

  /**
   * Loads the persisted imports into the model (call before the first
   * commit). Each entry is validated again, as if it had just arrived.
   * A damaged or foreign file is moved aside and reported; the member then
   * starts with nothing imported.
   */
  async load(): Promise<number> {
    if (this.file === undefined) return 0;
    const r = await this.file.read(this.owner);
    if (r.type === 'absent') return 0;
    if (r.type === 'rejected') {
      this.loadRejection = r.rejection;
      this.options.log.warn({ rejection: r.rejection }, 'federation state file not used');
      return 0;
    }
    let body: unknown;
    try {
      body = JSON.parse(r.body.toString('utf8'));
    } catch (err) {
      this.loadRejection = await this.file.reject('corrupt', `not JSON: ${(err as Error).message}`);
      return 0;
    }
    const entries = (body as { entries?: unknown })?.entries;
    if (!Array.isArray(entries)) {
      this.loadRejection = await this.file.reject('corrupt', 'no entries list');
      return 0;
    }
    let loaded = 0;
    for (const x of entries) {
      const ref = (x as { ref?: EntryRef })?.ref;
      if (
        ref === undefined ||
        typeof ref.cluster !== 'string' ||
        typeof ref.name !== 'string' ||
        !(ENTRY_KINDS as readonly string[]).includes(ref.kind)
      )
        continue;
      if (this.accept(ref, (x as { value: unknown }).value, 0, false)) loaded++;
    }
    this.options.log.info({ entries: loaded }, 'federation state loaded');
    return loaded;
  }

  handle(e: LinkEvent): void {
    switch (e.type) {
      case 'connected':
        this.listing = new Set();
        this.own.clear();
        return;
      case 'synced': {
        const seen = this.listing ?? new Set<string>();
        this.listing = undefined;
        this.syncedOnce = true;
        let unlisted = 0;
        for (const [key, h] of this.held) {
          h.listed = seen.has(key);
          if (!h.listed) unlisted++;
        }
        if (unlisted > 0)
          this.options.log.warn(
            { entries: unlisted },
            'federation entries missing from the hub listing kept in force',
          );
        return;
      }
      case 'disconnected':
        return;
      case 'put': {
        const key = entryKey(e.ref);
        this.listing?.add(key);
        if (e.ref.cluster === this.options.cluster) {
          this.own.set(key, { ref: e.ref, value: e.value });
          return;
        }
        this.lastSeen.set(e.ref.cluster, this.now());
        this.accept(e.ref, e.value, this.now(), true);
        return;
      }
      case 'delete': {
        const key = entryKey(e.ref);
        if (e.ref.cluster === this.options.cluster) {
          this.own.delete(key);
          return;
        }
        this.lastSeen.set(e.ref.cluster, this.now());
        this.rejected.delete(key);
        const h = this.held.get(key);
        if (h === undefined) return;
        this.held.delete(key);
        this.count(h.ref, -1);
        this.withdraw(h);
        this.schedulePersist();
        return;
      }
      case 'invalid': {
        if (e.ref?.cluster === this.options.cluster) return;
        this.listing?.add(e.key);
        this.reject(e.key, e.ref, [e.reason]);
        return;
      }
    }
  }

  /** This member's own entries at the hub (from the latest listing and changes since). */
  ownListed(): ReadonlyMap<string, { ref: EntryRef; value: unknown }> {
    return this.own;
  }

  /** Whether a listing has completed since start (the exporter waits for one to reconcile). */
  get synced(): boolean {
    return this.syncedOnce;
  }

  rejections(): ImportRejection[] {
    return [...this.rejected.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  members(linkConnected: boolean): ImportedMember[] {
    const clusters = new Set([...this.counts.keys(), ...this.lastSeen.keys()]);
    const now = this.now();
    return [...clusters].sort().map((cluster) => {
      const report = this.reportOf(cluster);
      const c = this.counts.get(cluster);
      let unlisted = 0;
      for (const h of this.held.values()) if (h.ref.cluster === cluster && !h.listed) unlisted++;
      const reportHeld = this.held.get(entryKey({ kind: 'member', cluster, name: 'self' }));
      const staleReason = !linkConnected
        ? 'this member is not connected to the hub'
        : report === undefined
          ? 'no member report'
          : reportHeld?.listed === false
            ? 'its report is missing from the hub listing'
            : now - report.atUnixMs > STALE_AFTER_MS
              ? `last report ${Math.round((now - report.atUnixMs) / 1000)} s ago`
              : '';
      return {
        cluster,
        report,
        lastSeenUnixMs: this.lastSeen.get(cluster) ?? 0,
        stale: staleReason !== '',
        staleReason,
        entries: { ns: c?.ns ?? 0, ep: c?.ep ?? 0, cnp: c?.cnp ?? 0 },
        unlisted,
      };
    });
  }

  reportOf(cluster: string): MemberReport | undefined {
    const h = this.held.get(entryKey({ kind: 'member', cluster, name: 'self' }));
    return h?.value.kind === 'member' ? h.value.report : undefined;
  }

  /** Why persisting failed last, or "". */
  get persistProblem(): string {
    return this.persistError;
  }

  /** Waits for any pending write of the state file. */
  async flush(): Promise<void> {
    if (this.persistTimer !== undefined) {
      clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
      this.writing = this.writing.then(() => this.persist());
    }
    await this.writing;
  }

  close(): void {
    if (this.persistTimer !== undefined) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
  }

  // ---------------------------------------------------------------------------

  /** Validates and applies one entry; returns whether it is in force now. */
  private accept(ref: EntryRef, raw: unknown, at: number, persist: boolean): boolean {
    const key = entryKey(ref);
    const before = this.held.get(key);
    if (before === undefined) {
      const c = this.counts.get(ref.cluster);
      if (c === undefined && this.counts.size >= FEDERATION_LIMITS.clusters) {
        this.reject(key, ref, [`more than ${FEDERATION_LIMITS.clusters} members: not imported`]);
        return false;
      }
      const limit = FEDERATION_LIMITS.entriesPerCluster[ref.kind];
      if ((c?.[ref.kind] ?? 0) >= limit) {
        this.reject(key, ref, [
          `${ref.cluster} has more than ${limit} ${ref.kind} entries: not imported`,
        ]);
        return false;
      }
    }
    const r = readEntry(ref, raw);
    if (!r.ok) {
      this.reject(key, ref, r.problems);
      return false;
    }
    this.rejected.delete(key);
    const h: Held = { ref, raw, value: r.value, listed: true, receivedUnixMs: at };
    this.held.set(key, h);
    if (before === undefined) this.count(ref, 1);
    this.put(h);
    if (persist) this.schedulePersist();
    return true;
  }

  private put(h: Held): void {
    const v = h.value;
    const cluster = h.ref.cluster;
    if (v.kind === 'ns')
      this.options.apply({ type: 'remote-namespace', cluster, name: v.name, labels: v.labels });
    else if (v.kind === 'ep') this.options.apply({ type: 'remote-endpoint', endpoint: v.endpoint });
    else if (v.kind === 'cnp')
      this.options.apply({ type: 'imported-policy', origin: cluster, object: v.object });
  }

  private withdraw(h: Held): void {
    const v = h.value;
    const cluster = h.ref.cluster;
    if (v.kind === 'ns')
      this.options.apply({ type: 'remote-namespace-delete', cluster, name: v.name });
    else if (v.kind === 'ep')
      this.options.apply({
        type: 'remote-endpoint-delete',
        cluster,
        namespace: v.endpoint.namespace,
        name: v.endpoint.name,
      });
    else if (v.kind === 'cnp')
      this.options.apply({ type: 'imported-policy-delete', origin: cluster, name: v.object.name });
  }

  private reject(key: string, ref: EntryRef | undefined, problems: readonly string[]): void {
    const keptLastValid = this.held.has(key);
    const object = ref === undefined ? key : describeRef(ref);
    this.rejected.set(key, { key, object, problems, atUnixMs: this.now(), keptLastValid });
    // One line per rejected entry, rate-limited per member: a member cannot flood this log.
    const n = this.limiter.take(ref?.cluster ?? '?');
    if (n !== undefined)
      this.options.log.warn(
        { key, object, problems, keptLastValid, ...suppressedField(n) },
        'federation entry rejected',
      );
  }

  private count(ref: EntryRef, d: number): void {
    let c = this.counts.get(ref.cluster);
    if (c === undefined) {
      c = { ns: 0, ep: 0, cnp: 0, member: 0 };
      this.counts.set(ref.cluster, c);
    }
    c[ref.kind] += d;
    if (Object.values(c).every((n) => n === 0)) this.counts.delete(ref.cluster);
  }

  private schedulePersist(): void {
    if (this.file === undefined || this.persistTimer !== undefined) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      this.writing = this.writing.then(() => this.persist());
    }, this.options.persistDelayMs ?? 200);
    this.persistTimer.unref();
  }

  private async persist(): Promise<void> {
    if (this.file === undefined) return;
    const entries = [...this.held.values()].map((h) => ({ ref: h.ref, value: h.raw }));
    try {
      await this.file.write(this.owner, JSON.stringify({ version: 1, entries }));
      if (this.persistError !== '') this.options.log.info('federation state file written again');
      this.persistError = '';
    } catch (err) {
      // Logged once per failure spell: what is in force stays in force, only a restart would lose it.
      if (this.persistError === '')
        this.options.log.error({ err, file: this.file.path }, 'federation state not persisted');
      this.persistError = (err as Error).message;
    }
  }
}

function describeRef(ref: EntryRef): string {
  if (ref.kind === 'ns') return `Namespace ${ref.cluster}/${ref.name}`;
  if (ref.kind === 'ep') return `Pod ${ref.cluster}/${ref.name}`;
  if (ref.kind === 'cnp') return `ClusterNetworkPolicy ${ref.name} from ${ref.cluster}`;
  return `member report of ${ref.cluster}`;
}
