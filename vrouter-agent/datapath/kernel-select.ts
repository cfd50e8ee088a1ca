/**
 * Which datapath the agent runs (`weir-agent --datapath`): the kernel one
 * (nftables + NFQUEUE + conntrack) where it can run, else the userspace one,
 * with the reason either way, for status, metrics and logs.
 *
 *   --datapath nftables   the kernel datapath or fail (exit, the reason logged)
 *   --datapath userspace  the userspace datapath (synthetic traffic only)
 *   (default: auto)       nftables when kernelDatapathAvailability() says it can
 *                         run and it starts (and no synthetic traffic is asked
 *                         for); otherwise userspace, saying why
 */
import type { Logger } from '../../shared/log.js';
import { compile } from '../../shared/policy/compile.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { snapshotFromWire } from '../../shared/wire/policy.js';
import { SpanState } from '../store/span-state.js';
import type { Datapath } from './datapath.js';
import { KernelDatapath, kernelDatapathAvailability } from './kernel-datapath.js';
import type { FailMode } from './kernel-ruleset.js';

export type DatapathChoice = 'auto' | 'nftables' | 'userspace';

export interface DatapathSelection {
  /** The kernel datapath, or undefined for the agent's default userspace one. */
  readonly datapath: KernelDatapath | undefined;
  readonly kind: Datapath['kind'];
  readonly reason: string;
}

export async function selectDatapath(options: {
  readonly choice: DatapathChoice;
  /** The agent generates synthetic traffic (userspace only): auto picks userspace. */
  readonly syntheticTraffic?: boolean;
  readonly failMode: FailMode;
  readonly queue: number;
  /** The tables of an empty span (the agent loads its own next). */
  readonly tables: RuleTables;
  readonly log: Logger;
}): Promise<DatapathSelection> {
  const { choice, log } = options;
  if (choice === 'userspace')
    return { datapath: undefined, kind: 'userspace', reason: 'requested (--datapath userspace)' };
  if (choice === 'auto' && options.syntheticTraffic)
    return {
      datapath: undefined,
      kind: 'userspace',
      reason: 'auto: --synthetic-traffic feeds the userspace datapath',
    };
  const avail = kernelDatapathAvailability();
  if (!avail.available && choice === 'auto') {
    log.warn(
      { reason: avail.reason },
      'kernel datapath unavailable: running the userspace datapath',
    );
    return {
      datapath: undefined,
      kind: 'userspace',
      reason: `kernel datapath unavailable: ${avail.reason}`,
    };
  }
  try {
    const datapath = await KernelDatapath.create({
      tables: options.tables,
      failMode: options.failMode,
      queue: options.queue,
      log: log.child({ component: 'datapath' }),
    });
    return {
      datapath,
      kind: 'nftables',
      reason: choice === 'auto' ? `auto: ${avail.reason}` : 'requested (--datapath nftables)',
    };
  } catch (err) {
    if (choice === 'nftables') throw err;
    log.warn({ err }, 'kernel datapath failed to start: running the userspace datapath');
    return {
      datapath: undefined,
      kind: 'userspace',
      reason: `kernel datapath failed to start: ${(err as Error).message}`,
    };
  }
}

/** The rule tables of an empty span for `node`, as the agent compiles them before any span loads. */
export function emptySpanTables(node: string): RuleTables {
  return compile(snapshotFromWire(SpanState.empty().toSnapshot()), {
    isLocal: (e) => e.node === node,
  });
}
