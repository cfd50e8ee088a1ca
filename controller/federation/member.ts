/**
 * One member of a federation: the link to the hub, the importer (others'
 * entries into the model) and the exporter (the model's entries out), and
 * the status `weirctl federation status` shows.
 *
 *   link.watch() ─> importer ─> model ─> (controller commits) ─> afterCommit() ─> exporter ─> link
 *                └─ synced ─> exporter.reconcile(own entries at the hub)
 *   every ~10 s: member report (liveness, counts, realization), retry of failed writes
 *
 * start() loads the persisted imports into the model before anything else:
 * the controller commits after it, so its first revision already enforces
 * what the federation last said, hub or no hub.
 */
import type { Logger } from 'pino';
import type { ClusterModel } from '../model/cluster-model.js';
import { podCidrOverlaps, type MemberReport } from './entries.js';
import { FederationExporter, REPORT_INTERVAL_MS, type ExporterStatus } from './exporter.js';
import { FederationImporter, type ImportedMember, type ImportRejection } from './importer.js';
import type { FederationLink, LinkState } from './link.js';

export interface Realization {
  readonly inSync: number;
  readonly total: number;
  readonly revision: number;
}

export interface FederationMemberOptions {
  readonly link: FederationLink;
  readonly model: ClusterModel;
  readonly log: Logger;
  readonly stateDir?: string;
  readonly podCidrs?: readonly string[];
  /** The model changed from imports: the controller should commit. */
  readonly onModelChange: () => void;
  /** A policy's realization on this member's agents (default: nothing known). */
  readonly realization?: (policyId: string) => Realization;
  readonly now?: () => number;
  readonly reportIntervalMs?: number;
  readonly persistDelayMs?: number;
}

/** One federated policy's state on one member. */
export interface PolicyRealization {
  readonly cluster: string;
  readonly state: string;
  readonly inSync: number;
  readonly total: number;
  readonly revision: number;
}

export interface FederationStatus {
  readonly federation: string;
  readonly cluster: string;
  readonly link: LinkState;
  readonly self: ExporterStatus & {
    readonly exported: { namespaces: number; endpoints: number; policies: number };
  };
  readonly members: ReadonlyArray<
    Omit<ImportedMember, 'report'> & {
      readonly lastReportUnixMs: number;
      readonly exported: MemberReport['exported'] | undefined;
      readonly podCidrs: readonly string[];
    }
  >;
  /** Every federated policy known here, with its state on each member that reported it. */
  readonly policies: ReadonlyArray<{
    readonly name: string;
    readonly origin: string;
    readonly tier: string;
    readonly members: readonly PolicyRealization[];
  }>;
  readonly rejections: ReadonlyArray<{
    readonly object: string;
    readonly problems: readonly string[];
    readonly key?: string;
  }>;
}

const NOTHING: Realization = { inSync: 0, total: 0, revision: 0 };

export class FederationMember {
  readonly importer: FederationImporter;
  readonly exporter: FederationExporter;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: FederationMemberOptions) {
    const { link, model, log } = options;
    this.importer = new FederationImporter({
      cluster: link.cluster,
      federation: link.federation,
      apply: (e) => model.apply(e),
      log,
      ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.persistDelayMs === undefined ? {} : { persistDelayMs: options.persistDelayMs }),
    });
    this.exporter = new FederationExporter({
      link,
      model,
      log,
      podCidrs: options.podCidrs ?? [],
      report: () => this.reportBody(),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  /** Loads persisted imports into the model; then follows the hub. Commit after it returns. */
  async start(): Promise<void> {
    await this.importer.load();
    void this.follow();
    this.timer = setInterval(() => {
      void this.exporter.report();
      void this.exporter.pump();
    }, this.options.reportIntervalMs ?? REPORT_INTERVAL_MS);
    this.timer.unref();
  }

  /** After each commit: export what the model changed. */
  afterCommit(): void {
    this.exporter.changed();
    void this.exporter.pump().then(() => this.exporter.report());
  }

  status(): FederationStatus {
    const { link, model } = this.options;
    const state = link.state();
    const view = model.federation();
    const members = this.importer.members(state.connected);
    const reports = members.flatMap((m) => (m.report === undefined ? [] : [m.report]));
    const self = this.reportBody();
    const policies = new Map<
      string,
      { name: string; origin: string; tier: string; members: PolicyRealization[] }
    >();
    const add = (cluster: string, i: MemberReport['imported'][number]) => {
      const k = `${i.name}\u0000${i.origin}`;
      let p = policies.get(k);
      if (p === undefined) {
        p = { name: i.name, origin: i.origin, tier: i.tier, members: [] };
        policies.set(k, p);
      }
      p.members.push({ cluster, state: i.state, ...i.agents, revision: i.revision });
    };
    for (const i of self.imported) add(link.cluster, i);
    for (const r of reports) for (const i of r.imported) add(r.cluster, i);
    for (const p of policies.values()) p.members.sort((a, b) => (a.cluster < b.cluster ? -1 : 1));
    const overlaps = podCidrOverlaps([
      { cluster: link.cluster, podCidrs: this.options.podCidrs ?? [] },
      ...reports.map((r) => ({ cluster: r.cluster, podCidrs: r.podCidrs })),
    ]);
    return {
      federation: link.federation,
      cluster: link.cluster,
      link: state,
      self: {
        ...this.exporter.status(),
        exported: view?.exported ?? { namespaces: 0, endpoints: 0, policies: 0 },
      },
      members: members.map(({ report, ...m }) => ({
        ...m,
        lastReportUnixMs: report?.atUnixMs ?? 0,
        exported: report?.exported,
        podCidrs: report?.podCidrs ?? [],
      })),
      policies: [...policies.values()].sort((a, b) =>
        a.name === b.name ? (a.origin < b.origin ? -1 : 1) : a.name < b.name ? -1 : 1,
      ),
      rejections: [
        ...self.rejected,
        ...overlaps.map((o) => ({ object: 'pod CIDRs', problems: [o] })),
      ],
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.importer.close();
    await this.importer.flush();
  }

  // ---------------------------------------------------------------------------

  private async follow(): Promise<void> {
    const { link, log } = this.options;
    try {
      for await (const e of link.watch()) {
        if (this.closed) return;
        this.importer.handle(e);
        if (e.type === 'put' || e.type === 'delete') {
          if (e.ref.cluster !== link.cluster) this.options.onModelChange();
        } else if (e.type === 'synced') {
          this.exporter.reconcile(this.importer.ownListed());
          void this.exporter.pump().then(() => this.exporter.report(true));
        } else if (e.type === 'disconnected')
          log.warn({ reason: e.reason }, 'federation hub lost; imports stay in force');
        else if (e.type === 'connected') log.info('federation hub connected');
      }
    } catch (err) {
      if (!this.closed) log.error({ err }, 'federation link watch ended');
    }
  }

  /** The report's imports (and this member's own federated policies) and rejections. */
  private reportBody(): Pick<MemberReport, 'imported' | 'rejected'> {
    const { model, link } = this.options;
    const view = model.federation();
    const realization = this.options.realization ?? (() => NOTHING);
    const imported: Array<MemberReport['imported'][number]> = [];
    // This member's own federated policies: their realization at the origin.
    for (const p of model.federatedPolicies()) {
      const id = `${link.cluster}/cnp/${p.name}`;
      imported.push({
        origin: link.cluster,
        name: p.name,
        tier: p.tier,
        state: 'in-force',
        agents: pick(realization(id)),
        revision: realization(id).revision,
      });
    }
    for (const i of view?.imports ?? []) {
      const r = i.policy === undefined ? NOTHING : realization(i.policy);
      imported.push({
        origin: i.origin,
        name: i.name,
        tier: i.tier,
        state: i.state,
        agents: pick(r),
        revision: r.revision,
      });
    }
    const rejected: Array<{ object: string; problems: readonly string[] }> = [
      ...(view?.rejections ?? []),
      ...this.importer.rejections().map((r: ImportRejection) => ({
        object: `${r.object} (${r.key})${r.keptLastValid ? ', last valid version kept' : ''}`,
        problems: r.problems,
      })),
    ];
    return { imported: imported.slice(0, 2000), rejected: rejected.slice(0, 2000) };
  }
}

function pick(r: Realization): { inSync: number; total: number } {
  return { inSync: r.inSync, total: r.total };
}
