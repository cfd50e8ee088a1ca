/**
 * weirctl federation status: the federation as the member's controller
 * sees it (docs/federation.md). One row per member (itself first): whether
 * it is live or stale and why, its last report's age, what it exports and
 * what of it is in force here; then each federated policy's realization on
 * every member (state, agents in sync / agents holding it); then every
 * rejection. `-o json|yaml` prints the reply whole.
 */
import type { FederationStatusReply__Output } from '../../shared/generated/weir/v1/index.js';
import { call, controllerAddress, controllerAt, operatorClient } from '../clients.js';
import { NotFoundError } from '../../shared/errors.js';
import type { Io } from '../io.js';
import {
  emit,
  type Json,
  type JsonObject,
  type OutputFlags,
  parseFormat,
  wireToJson,
} from '../output.js';
import { renderTable } from '../table.js';

function age(iso: Json | undefined, now: number): string {
  if (typeof iso !== 'string') return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 60
    ? `${s}s ago`
    : s < 3600
      ? `${Math.round(s / 60)}m ago`
      : `${Math.round(s / 3600)}h ago`;
}

function counts(c: Json | undefined): string {
  const o = (c ?? {}) as JsonObject;
  return c === null || c === undefined
    ? '-'
    : `${o.namespaces ?? 0}/${o.endpoints ?? 0}/${o.policies ?? 0}`;
}

export async function federationStatus(
  io: Io,
  opts: OutputFlags & { controller?: string },
): Promise<number> {
  parseFormat(opts.output);
  const address = await controllerAddress(opts.controller);
  const client = operatorClient(address);
  const reply = await call<object, FederationStatusReply__Output>(
    client,
    client.GetFederationStatus,
    {},
    controllerAt(address),
  );
  if (!reply.enabled) {
    const format = parseFormat(opts.output).kind;
    if (format === 'table' || format === 'wide')
      throw new NotFoundError(
        `the controller at ${address} is not a federation member (it runs without --federation; -o json says enabled: false)`,
      );
  }
  const document = wireToJson(reply, 'FederationStatusReply');
  const now = typeof document.now === 'string' ? Date.parse(document.now) : Date.now();
  emit(io, opts, {
    document,
    list: 'members',
    name: (m) => `member/${m.cluster}`,
    empty: 'no members\n',
    before: (d) =>
      `federation ${d.federation} as seen by ${d.cluster}: ${d.connected ? 'connected to the hub' : `NOT connected to the hub (${d.lastError || 'no contact yet'}; last contact ${age(d.lastContact, now)})`}${Number(d.pendingWrites) > 0 ? `, ${d.pendingWrites} entries not yet exported${d.exportError ? ` (${d.exportError})` : ''}` : ''}\n\n`,
    columns: [
      { header: 'MEMBER', cell: (m) => `${m.cluster}${m.self ? ' (this)' : ''}` },
      { header: 'STATE', cell: (m) => (m.stale ? `stale: ${m.staleReason}` : 'live') },
      { header: 'LAST REPORT', cell: (m) => age(m.lastReport, now) },
      { header: 'EXPORTED ns/ep/cnp', cell: (m) => counts(m.exported) },
      {
        header: 'HELD HERE',
        cell: (m) => (m.self ? `${counts(m.held)} at the hub` : counts(m.held)),
      },
      { header: 'UNLISTED', cell: (m) => String(m.unlisted ?? 0), wide: true },
      {
        header: 'POD CIDRS',
        cell: (m) => ((m.podCidrs as string[]) ?? []).join(',') || '-',
        wide: true,
      },
      { header: 'LAST SEEN', cell: (m) => age(m.lastSeen, now), wide: true },
    ],
    after: (d) => {
      let out = '';
      const policies = (d.policies ?? []) as JsonObject[];
      out += '\nfederated policies:\n';
      if (policies.length === 0) out += '  none\n';
      else {
        const rows: string[][] = [];
        for (const p of policies)
          for (const m of (p.members ?? []) as JsonObject[])
            rows.push([
              String(p.name),
              String(p.origin),
              p.tier === 'admin' ? 'Admin' : p.tier === 'baseline' ? 'Baseline' : String(p.tier),
              String(m.cluster),
              String(m.state),
              `${m.agentsInSync}/${m.agentsTotal}`,
              String(m.revision ?? ''),
            ]);
        out += renderTable(
          ['POLICY', 'ORIGIN', 'TIER', 'MEMBER', 'STATE', 'AGENTS IN SYNC', 'REVISION'],
          rows,
        )
          .split('\n')
          .map((l) => (l === '' ? l : `  ${l}`))
          .join('\n');
      }
      const rejections = (d.rejections ?? []) as JsonObject[];
      if (rejections.length > 0) {
        out += '\nrejected:\n';
        for (const r of rejections)
          for (const p of (r.problems ?? []) as string[]) out += `  ${r.object}: ${p}\n`;
      }
      return out;
    },
  });
  return 0;
}
