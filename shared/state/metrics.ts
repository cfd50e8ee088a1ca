/**
 * The metric both programs export for their state files: how many were
 * rejected (moved aside) since the process started, by file and reason.
 */
import { basename } from 'node:path';
import { Counter, type Registry } from 'prom-client';
import type { StateFileRejection } from './checksummed-file.js';

/** Registers `<prefix>_state_file_rejections_total{file,reason}`, read from `rejections` when scraped. */
export function registerStateFileMetrics(
  registry: Registry,
  prefix: string,
  rejections: () => readonly StateFileRejection[],
): void {
  new Counter({
    name: `${prefix}_state_file_rejections_total`,
    help: 'State files found corrupt, foreign or unverifiable and moved aside instead of used, by file and reason.',
    labelNames: ['file', 'reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rejections()) this.inc({ file: basename(r.file), reason: r.reason });
    },
  });
}
