/**
 * This member's entries at the hub, kept equal to its model:
 *
 *   ns.<me>.*    every local Namespace and its labels
 *   ep.<me>.*    every local endpoint (a pod with addresses; host-network
 *                and finished pods are no endpoints, so never exported)
 *   cnp.<me>.*   every local ClusterNetworkPolicy labelled weir.io/federated
 *   member.<me>  the report: every ~10 s, and when what it says changes
 *
 * Incremental: after each commit the model's federation changes
 * (drainFederationChanges) mark keys dirty, and only those are written.
 * After a (re)connect, the hub's listing of this member's entries is
 * compared with what the model says, and every difference is written:
 * what the hub lost is put back, what the model no longer has is removed.
 *
 * Writes that fail (the hub is away) stay dirty and are retried at the
 * next pump; the failure is logged once per spell, not per entry. At most
 * `maxInFlight` writes are outstanding at a time.
 */
import type { Logger } from 'pino';
import type { ClusterModel } from '../model/cluster-model.js';
import {
  endpointEntry,
  entryKey,
  namespaceEntry,
  policyEntry,
  type MemberReport,
} from './entries.js';
import type { EntryRef, FederationLink } from './link.js';

export const REPORT_INTERVAL_MS = 10_000;

export interface ExporterOptions {
  readonly link: FederationLink;
  readonly model: ClusterModel;
  readonly log: Logger;
  /** This member's pod CIDRs, for the overlap check other members make. */
  readonly podCidrs?: readonly string[];
  /** What the report says of imports and rejections (realization on this member's agents). */
  readonly report: () => Pick<MemberReport, 'imported' | 'rejected'>;
  readonly now?: () => number;
  readonly maxInFlight?: number;
}

export interface ExporterStatus {
  /** Entries of this member at the hub as last written. */
  readonly written: { namespaces: number; endpoints: number; policies: number };
  /** Keys still to write (a change not yet at the hub). */
  readonly pending: number;
  readonly lastReportUnixMs: number;
  /** The last write failure, "" after a success. */
  readonly lastError: string;
}

export class FederationExporter {
  /** Key → JSON text of what the hub holds for this member, as far as this exporter knows. */
  private readonly written = new Map<string, string>();
  private readonly refs = new Map<string, EntryRef>();
  private readonly dirty = new Set<string>();
  private pumping: Promise<void> | undefined;
  private again = false;
  private lastError = '';
  private lastReportAt = 0;
  private lastReportBody = '';
  private readonly now: () => number;

  constructor(private readonly options: ExporterOptions) {
    this.now = options.now ?? Date.now;
  }

  private get cluster(): string {
    return this.options.link.cluster;
  }

  /**
   * After a listing: `own` is what the hub holds for this member. Every
   * entry the model wants, and every entry the hub holds, is compared.
   */
  reconcile(own: ReadonlyMap<string, { ref: EntryRef; value: unknown }>): void {
    this.written.clear();
    for (const [key, { ref, value }] of own) {
      this.written.set(key, JSON.stringify(value));
      this.refs.set(key, ref);
      this.dirty.add(key);
    }
    const m = this.options.model;
    for (const ns of m.localNamespaces())
      this.mark({ kind: 'ns', cluster: this.cluster, name: ns.name });
    for (const e of m.endpoints())
      this.mark({ kind: 'ep', cluster: this.cluster, name: `${e.namespace}/${e.name}` });
    for (const p of m.federatedPolicies())
      this.mark({ kind: 'cnp', cluster: this.cluster, name: p.name });
    // The drained changes are covered by the full comparison.
    m.drainFederationChanges();
    this.lastReportBody = '';
  }

  /** Marks what the model changed since the last call (call after each commit). */
  changed(): void {
    const c = this.options.model.drainFederationChanges();
    for (const name of c.namespaces) this.mark({ kind: 'ns', cluster: this.cluster, name });
    for (const name of c.endpoints) this.mark({ kind: 'ep', cluster: this.cluster, name });
    for (const name of c.policies) this.mark({ kind: 'cnp', cluster: this.cluster, name });
  }

  /** Writes every dirty key; resolves when none is left or a write failed. */
  pump(): Promise<void> {
    if (this.pumping !== undefined) {
      this.again = true;
      return this.pumping;
    }
    this.pumping = (async () => {
      do {
        this.again = false;
        await this.drain();
      } while (this.again && this.lastError === '');
    })().finally(() => {
      this.pumping = undefined;
    });
    return this.pumping;
  }

  /**
   * Writes the member report when it says something new, or when the
   * last one is `REPORT_INTERVAL_MS` old (its age is the member's liveness).
   */
  async report(force = false): Promise<void> {
    const m = this.options.model;
    const f = m.federation();
    const extra = this.options.report();
    const body = {
      cluster: this.cluster,
      podCidrs: [...(this.options.podCidrs ?? [])],
      exported: f?.exported ?? { namespaces: 0, endpoints: 0, policies: 0 },
      imported: extra.imported,
      rejected: extra.rejected,
    };
    const text = JSON.stringify(body);
    const now = this.now();
    if (!force && text === this.lastReportBody && now - this.lastReportAt < REPORT_INTERVAL_MS)
      return;
    const report: MemberReport = { ...body, atUnixMs: now };
    try {
      await this.options.link.put({ kind: 'member', cluster: this.cluster, name: 'self' }, report);
      this.lastReportBody = text;
      this.lastReportAt = now;
      this.succeeded();
    } catch (err) {
      this.failed(err);
    }
  }

  status(): ExporterStatus {
    const written = { namespaces: 0, endpoints: 0, policies: 0 };
    for (const key of this.written.keys()) {
      const kind = this.refs.get(key)?.kind;
      if (kind === 'ns') written.namespaces++;
      else if (kind === 'ep') written.endpoints++;
      else if (kind === 'cnp') written.policies++;
    }
    return {
      written,
      pending: this.dirty.size,
      lastReportUnixMs: this.lastReportAt,
      lastError: this.lastError,
    };
  }

  // ---------------------------------------------------------------------------

  private mark(ref: EntryRef): void {
    const key = entryKey(ref);
    this.refs.set(key, ref);
    this.dirty.add(key);
  }

  /** The value the model wants under a key of this member, or undefined (none: remove it). */
  private desired(ref: EntryRef): unknown {
    const m = this.options.model;
    if (ref.kind === 'ns') {
      const ns = m.localNamespace(ref.name);
      return ns && namespaceEntry(this.cluster, ns.name, ns.labels);
    }
    if (ref.kind === 'ep') {
      const e = m.endpoint(ref.name);
      return e && endpointEntry(this.cluster, e);
    }
    if (ref.kind === 'cnp') {
      const p = m.localClusterPolicy(ref.name);
      return p?.federated ? policyEntry(this.cluster, p) : undefined;
    }
    return undefined;
  }

  private async drain(): Promise<void> {
    const max = this.options.maxInFlight ?? 32;
    while (this.dirty.size > 0) {
      const batch = [...this.dirty].slice(0, max);
      const results = await Promise.all(batch.map((key) => this.write(key)));
      if (results.some((ok) => !ok)) return; // the hub is away: retry at the next pump
    }
  }

  private async write(key: string): Promise<boolean> {
    const ref = this.refs.get(key)!;
    if (ref.kind === 'member') {
      this.dirty.delete(key); // the report is written by report()
      return true;
    }
    const want = this.desired(ref);
    const text = want === undefined ? undefined : JSON.stringify(want);
    const have = this.written.get(key);
    try {
      if (text === have) {
        // nothing to do
      } else if (text === undefined) {
        await this.options.link.remove(ref);
        this.written.delete(key);
      } else {
        await this.options.link.put(ref, want);
        this.written.set(key, text);
      }
      // A change that came while writing marks the key again; compare again then.
      if (this.desiredText(ref) === this.written.get(key)) this.dirty.delete(key);
      this.succeeded();
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  private desiredText(ref: EntryRef): string | undefined {
    const want = this.desired(ref);
    return want === undefined ? undefined : JSON.stringify(want);
  }

  private succeeded(): void {
    if (this.lastError !== '') this.options.log.info('federation export resumed');
    this.lastError = '';
  }

  private failed(err: unknown): void {
    // Once per spell of failures: every key fails alike while the hub is away.
    if (this.lastError === '')
      this.options.log.warn(
        { err, pending: this.dirty.size },
        'federation export failed; will retry',
      );
    this.lastError = (err as Error)?.message ?? String(err);
  }
}
