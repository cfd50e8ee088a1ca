/**
 * The embedded default source: a directory of manifests, watched. On any
 * change under it (and every `rescanIntervalMs` as a safety net) the
 * directory is read again and compared with what was delivered: changed
 * objects are upserted, vanished ones deleted, invalid ones rejected (which
 * withdraws their previous valid version).
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../../shared/log.js';
import { CoalescingRunner } from '../../shared/runner.js';
import { formatIssue, type Issue } from '../../shared/errors.js';
import { namespaceOf, type KubeObject } from '../kube/objects.js';
import { readManifests } from './manifests.js';
import type { ClusterSource, SourceEvent, SourceState } from './source.js';

interface Known {
  readonly kind: KubeObject['kind'];
  readonly namespace: string;
  readonly name: string;
  /** JSON of the object, or of the issues when invalid. */
  readonly content: string;
  readonly invalid: boolean;
}

export class ManifestSource implements ClusterSource {
  private readonly known = new Map<string, Known>();
  private watcher: FSWatcher | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private runner: CoalescingRunner | undefined;
  private synced = false;
  private lastError = '';

  constructor(
    private readonly dir: string,
    private readonly options: { log: Logger; rescanIntervalMs?: number; debounceMs?: number },
  ) {}

  state(): SourceState {
    return {
      kind: 'manifests',
      location: this.dir,
      synced: this.synced,
      lastError: this.lastError,
    };
  }

  async start(sink: (event: SourceEvent) => void): Promise<void> {
    const log = this.options.log;
    const read = async () => {
      const r = await readManifests([this.dir]);
      this.deliver(r.objects, r.invalid, sink);
      const problems = r.issues.map(formatIssue);
      this.lastError =
        problems.length > 0 ? `${problems.length} problem(s); first: ${problems[0]}` : '';
      for (const p of problems) log.warn({ problem: p }, 'manifest rejected');
      for (const n of r.notes) log.debug({ note: n }, 'manifest note');
      if (!this.synced) {
        this.synced = true;
        sink({ type: 'synced' });
      }
    };
    await read();
    this.runner = new CoalescingRunner(read, {
      minIntervalMs: this.options.debounceMs ?? 100,
      onError: (err) => log.error({ err }, 'reading manifests failed'),
    });
    try {
      this.watcher = watch(this.dir, { recursive: true }, () => this.runner?.request());
      this.watcher.on('error', (err) =>
        log.warn({ err }, 'watching manifests failed; relying on periodic rescans'),
      );
    } catch (err) {
      log.warn({ err }, 'cannot watch the manifest directory; relying on periodic rescans');
    }
    this.rescan = setInterval(() => this.runner?.request(), this.options.rescanIntervalMs ?? 5_000);
    this.rescan.unref();
  }

  private deliver(
    objects: readonly KubeObject[],
    invalid: ReadonlyArray<{
      kind: KubeObject['kind'];
      namespace: string;
      name: string;
      issues: readonly Issue[];
    }>,
    sink: (e: SourceEvent) => void,
  ): void {
    const seen = new Set<string>();
    for (const o of objects) {
      const namespace = namespaceOf(o);
      const key = `${o.kind} ${namespace}/${o.name}`;
      seen.add(key);
      const content = JSON.stringify(o);
      const prev = this.known.get(key);
      if (prev !== undefined && !prev.invalid && prev.content === content) continue;
      this.known.set(key, { kind: o.kind, namespace, name: o.name, content, invalid: false });
      sink({ type: 'upsert', object: o });
    }
    for (const i of invalid) {
      const key = `${i.kind} ${i.namespace}/${i.name}`;
      if (seen.has(key)) continue; // a valid definition elsewhere wins
      seen.add(key);
      const content = JSON.stringify(i.issues.map((x) => [x.field, x.message]));
      const prev = this.known.get(key);
      if (prev?.invalid && prev.content === content) continue;
      this.known.set(key, {
        kind: i.kind,
        namespace: i.namespace,
        name: i.name,
        content,
        invalid: true,
      });
      sink({
        type: 'invalid',
        kind: i.kind,
        namespace: i.namespace,
        name: i.name,
        issues: i.issues,
      });
    }
    for (const [key, k] of this.known) {
      if (seen.has(key)) continue;
      this.known.delete(key);
      sink({ type: 'delete', kind: k.kind, namespace: k.namespace, name: k.name });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.rescan !== undefined) clearInterval(this.rescan);
    this.runner?.close();
  }
}
