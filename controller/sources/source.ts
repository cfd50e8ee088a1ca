/**
 * Where cluster state comes from. Every source delivers the same typed
 * events: the initial state, then `synced`, then changes as they happen.
 */
import type { KubeModelEvent as ModelEvent } from '../model/cluster-model.js';

export type SourceEvent =
  | ModelEvent
  | { readonly type: 'synced' }
  | { readonly type: 'error'; readonly message: string };

export interface SourceState {
  readonly kind: 'manifests' | 'kubernetes';
  /** A directory, or the API server's address. */
  readonly location: string;
  readonly synced: boolean;
  readonly lastError: string;
  /**
   * What the source rejected or cannot read, per object or file, each
   * problem a line that says where (file:line) and what stays in force
   * instead; shown with the model's rejections in status.
   */
  readonly problems?: readonly SourceProblem[];
}

export interface SourceProblem {
  /** "NetworkPolicy shop/web", or "file sub/x.yaml". */
  readonly object: string;
  readonly problems: readonly string[];
}

export interface ClusterSource extends AsyncDisposable {
  /** Starts delivering events; resolves once started (not once synced). */
  start(sink: (event: SourceEvent) => void): Promise<void>;
  state(): SourceState;
  /**
   * Tells the object's owner that it was rejected (the Kubernetes source
   * records an Event on it). Best effort: never throws.
   */
  reportRejected?(rejection: Extract<ModelEvent, { type: 'invalid' }>): void;
}
