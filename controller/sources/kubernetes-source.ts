/**
 * The Kubernetes source: Namespaces, Nodes, Pods and NetworkPolicies (all
 * namespaces) followed with @kubernetes/client-node informers, each object
 * read by readKubeObject exactly as the API server sent it.
 *
 *   API server ─list (JSON, paged)─┐
 *              ─watch (JSON lines)─┴─> ListWatch (one per kind: cache, resourceVersion)
 *                                        │ add / update / delete        │ error: the library stops
 *                                        v                              v
 *                           readKubeObject ─> sink          restart loop here: backoff, start() again
 *                           (upsert | invalid | delete)     (same ListWatch, so its cache survives)
 *
 * What the library does, and what this file adds (client-node 2.0.1,
 * src/cache.ts and src/watch.ts):
 * - ListWatch lists, then watches from the list's resourceVersion. On 410
 *   Gone (an HTTP 410, or a watch ERROR event with code 410 followed by the
 *   end of the stream) it lists again and diffs the new list against its
 *   cache: objects that vanished get `delete` callbacks, so deletions made
 *   while the watch was away are reconciled *as long as the same ListWatch
 *   is restarted*. A new informer would start from an empty cache and never
 *   report them; the restart loop therefore calls `start()` on the same one.
 * - On any other error (a list that fails, a watch answered with 5xx, a
 *   connection reset) it calls its `error` callbacks and stops for good.
 *   The restart loop below owns retries: exponential backoff between
 *   `restartMinDelayMs` and `restartMaxDelayMs`, reset once a watch is
 *   connected again; `state().lastError` says why until then.
 * - A watch that ends cleanly is re-opened from the last resourceVersion
 *   after the library's own delay (1 s doubling to 30 s while no event
 *   arrives; capped by `watchReconnectMaxDelayMs`). Its default delay timer
 *   is not unref()'d and cannot be cancelled, so a `delayFn` is passed.
 * - `stop()` cannot abort a watch whose request is still connecting, and
 *   lets a list in progress go on to open a watch. The Watch given to each
 *   ListWatch is wrapped so that a source being disposed opens nothing and
 *   aborts what it finds. (This is why ListWatch is built here directly:
 *   `makeInformer` is `new ListWatch(path, new Watch(kc), listFn, false)`
 *   and takes neither.)
 * - Lists go through the library's own HTTP stack (kubeconfig credentials
 *   and TLS, undici) but are parsed as plain JSON. The typed list calls
 *   (CoreV1Api.listPodForAllNamespaces, ...) deserialize into model classes
 *   whose property names are not always the API's: a NetworkPolicy ingress
 *   rule's `from` becomes `_from`, which readKubeObject would read as "no
 *   peers", i.e. allow from everywhere. Watch events already arrive as JSON.
 *   List items carry no kind or apiVersion; both are set here.
 * - Watches ask for bookmarks (`allowWatchBookmarks=true`): ListWatch keeps
 *   the resourceVersion of a bookmark, so a quiet kind resumes from a recent
 *   version after a reconnect instead of hitting 410 and listing again.
 * - `metadata.managedFields` is dropped before objects reach the cache, and
 *   a Node keeps only its metadata and `status.addresses`: its status is
 *   large (images, conditions) and rewritten by every kubelet heartbeat,
 *   which then reads as an unchanged Node and costs no revision.
 */
import { hostname } from 'node:os';
import {
  type KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { KubeApi, KubeApiError, describeError } from '../kube/api.js';
import { InternalError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { KubeModelEvent as ModelEvent } from '../model/cluster-model.js';
import { isClusterScoped, readKubeObject, type KubeObject } from '../kube/objects.js';
import type { ClusterSource, SourceEvent, SourceState } from './source.js';

// ---------------------------------------------------------------------------
// The source.

interface Resource {
  readonly kind: KubeObject['kind'];
  readonly apiVersion: string;
  /** Every object of the kind, all namespaces. */
  readonly path: string;
  /** What of an object is kept (in the informer's cache too); all of it when absent. */
  readonly slim?: (o: KubernetesObject) => KubernetesObject;
  /**
   * Served only when a CRD is installed. A list answered 404 means the
   * cluster has no such objects (none can exist without the CRD): it is an
   * empty list, and the informer keeps retrying (with the restart backoff)
   * until the CRD appears. Status shows the 404 meanwhile.
   */
  readonly crd?: string;
}

const RESOURCES: readonly Resource[] = [
  { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' },
  {
    kind: 'Node',
    apiVersion: 'v1',
    path: '/api/v1/nodes',
    slim: (o) => {
      const status = (o as { status?: { addresses?: unknown } }).status;
      return {
        apiVersion: o.apiVersion,
        kind: o.kind,
        metadata: o.metadata,
        ...(status?.addresses === undefined ? {} : { status: { addresses: status.addresses } }),
      } as KubernetesObject;
    },
  },
  { kind: 'Pod', apiVersion: 'v1', path: '/api/v1/pods' },
  {
    kind: 'NetworkPolicy',
    apiVersion: 'networking.k8s.io/v1',
    path: '/apis/networking.k8s.io/v1/networkpolicies',
  },
  {
    kind: 'ClusterNetworkPolicy',
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    path: '/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies',
    crd: 'clusternetworkpolicies.policy.networking.k8s.io (deploy/crds/)',
  },
];

/** Bounds on one list: pages of `listPageSize`, at most this many. */
const MAX_LIST_PAGES = 100_000;
/** Rejection Events remembered for de-duplication, and queued for sending. */
const MAX_REMEMBERED_REJECTIONS = 10_000;
const MAX_QUEUED_EVENTS = 256;
const EVENT_SENDERS = 4;
/** The API's limit on an Event message is 1 kB in events.k8s.io; keep to it. */
const MAX_EVENT_MESSAGE = 1024;

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** Backoff between restarts of a stopped informer: the first delay, doubled per failure up to the maximum. */
  readonly restartMinDelayMs?: number;
  readonly restartMaxDelayMs?: number;
  /** Caps the library's own delay before re-opening a watch that ended cleanly (it grows to 30 s). */
  readonly watchReconnectMaxDelayMs?: number;
  /** Objects per list page (`limit`). */
  readonly listPageSize?: number;
  readonly requestTimeoutMs?: number;
  /** The same rejection of the same object is recorded as an Event at most once per interval. */
  readonly rejectionEventIntervalMs?: number;
  /** Events' reportingInstance (default: the host name). */
  readonly instance?: string;
}

/** One kind followed by one ListWatch, and its restart state. */
interface Follower {
  readonly resource: Resource;
  readonly informer: ListWatch<KubernetesObject>;
  /** The first list has been delivered. */
  listed: boolean;
  /** Failures since a watch last connected. */
  failures: number;
  lastError: string;
  restartTimer: NodeJS.Timeout | undefined;
}

export class KubernetesSource implements ClusterSource {
  private readonly api: KubeApi;
  private readonly followers: Follower[] = [];
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private readonly watches = new Set<AbortController>();
  private readonly sleepers = new Set<() => void>();
  private sink: ((event: SourceEvent) => void) | undefined;
  private synced = false;
  private closed = false;
  /** Rejection (object and message) → when last sent, oldest first. */
  private readonly reported = new Map<string, number>();
  private readonly eventQueue: Array<() => Promise<void>> = [];
  private eventSenders = 0;
  private eventSequence = 0;

  constructor(private readonly options: KubernetesSourceOptions) {
    this.log = options.log;
    this.api = new KubeApi(options.kubeConfig, { requestTimeoutMs: options.requestTimeoutMs });
  }

  state(): SourceState {
    const errors = this.followers.map((f) => f.lastError).filter((e) => e !== '');
    return {
      kind: 'kubernetes',
      location: this.api.server,
      synced: this.synced,
      lastError: errors.join('; '),
    };
  }

  async start(sink: (event: SourceEvent) => void): Promise<void> {
    if (this.sink !== undefined)
      throw new InternalError('the Kubernetes source is already started');
    this.sink = sink;
    for (const resource of RESOURCES) {
      const watch = new GuardedWatch(this.options.kubeConfig, {
        closed: () => this.closed,
        opening: () => this.onWatchOpening(f),
        connected: () => this.onWatchConnected(f),
        track: (c) => this.watches.add(c),
        untrack: (c) => this.watches.delete(c),
        transform: (o) => this.normalize(resource, o),
      });
      const f: Follower = {
        resource,
        informer: new ListWatch<KubernetesObject>(
          resource.path,
          watch,
          () => this.list(resource),
          false,
          undefined,
          undefined,
          {
            delayFn: (ms) => this.sleep(Math.min(ms, this.options.watchReconnectMaxDelayMs ?? ms)),
          },
        ),
        listed: false,
        failures: 0,
        lastError: '',
        restartTimer: undefined,
      };
      f.informer.on('add', (o) => this.onObject(resource, o));
      f.informer.on('update', (o) => this.onObject(resource, o));
      f.informer.on('delete', (o) => this.onDelete(resource, o));
      f.informer.on('error', (err) => this.onInformerError(f, err));
      this.followers.push(f);
    }
    this.log.info(
      { server: this.api.server, resources: RESOURCES.map((r) => r.path) },
      'following the API server',
    );
    for (const f of this.followers) this.run(f);
  }

  /** Starts (or restarts) one informer; a failure to even start counts as an informer error. */
  private run(f: Follower): void {
    f.informer.start().catch((err: unknown) => this.onInformerError(f, err));
  }

  // --- informer callbacks ------------------------------------------------------

  private onObject(resource: Resource, raw: KubernetesObject): void {
    if (this.closed) return;
    const r = readKubeObject(this.normalize(resource, raw), 'kubernetes');
    if (r.type === 'object') this.emit({ type: 'upsert', object: r.object });
    else if (r.type === 'invalid') {
      if (r.identity !== undefined) this.emit({ type: 'invalid', ...r.identity, issues: r.issues });
      else
        this.log.warn(
          { kind: resource.kind, problems: r.issues.map((i) => i.message) },
          'an object without a name was skipped',
        );
    } else this.log.debug({ kind: resource.kind, note: r.note }, 'object ignored');
  }

  private onDelete(resource: Resource, raw: KubernetesObject): void {
    if (this.closed) return;
    const name = raw.metadata?.name;
    if (typeof name !== 'string' || name === '') return;
    const namespace = isClusterScoped(resource.kind) ? '' : raw.metadata?.namespace || 'default';
    this.emit({ type: 'delete', kind: resource.kind, namespace, name });
  }

  private emit(event: SourceEvent): void {
    try {
      this.sink?.(event);
    } catch (err) {
      this.log.error({ err, event: event.type }, 'the sink threw on a source event');
    }
  }

  /** A watch is about to be opened: the first time, the kind's initial list has been delivered. */
  private onWatchOpening(f: Follower): void {
    if (f.listed) return;
    f.listed = true;
    this.log.info(
      {
        kind: f.resource.kind,
        objects: f.informer.list().length,
        resourceVersion: f.informer.latestResourceVersion(),
      },
      'initial list delivered',
    );
    if (!this.synced && this.followers.every((x) => x.listed)) {
      this.synced = true;
      this.emit({ type: 'synced' });
    }
  }

  private onWatchConnected(f: Follower): void {
    if (f.failures === 0 && f.lastError === '') return;
    this.log.info(
      {
        kind: f.resource.kind,
        failures: f.failures,
        resourceVersion: f.informer.latestResourceVersion(),
      },
      'informer recovered',
    );
    f.failures = 0;
    f.lastError = '';
  }

  /** The library has stopped this informer: restart it after a backoff. */
  private onInformerError(f: Follower, err: unknown): void {
    if (this.closed) return;
    if (f.restartTimer !== undefined) return; // one restart at a time
    f.failures += 1;
    const min = this.options.restartMinDelayMs ?? 1_000;
    const max = Math.max(min, this.options.restartMaxDelayMs ?? 30_000);
    // Exponential, with up to 20% jitter so that the three informers do not retry in step.
    const delayMs = Math.round(
      Math.min(max, min * 2 ** Math.min(f.failures - 1, 30) * (1 + Math.random() * 0.2)),
    );
    // List failures say which request failed; anything else came from the library's watch.
    f.lastError = `${f.resource.kind}: ${err instanceof KubeApiError ? '' : 'watch: '}${describeError(err)}`;
    this.log.warn(
      { err, kind: f.resource.kind, failures: f.failures, delayMs },
      'informer stopped; restarting after a delay',
    );
    if (f.failures === 1) this.emit({ type: 'error', message: f.lastError }); // once per outage; the log has every attempt
    f.restartTimer = setTimeout(() => {
      f.restartTimer = undefined;
      if (this.closed) return;
      this.log.info(
        {
          kind: f.resource.kind,
          failures: f.failures,
          resourceVersion: f.informer.latestResourceVersion(),
        },
        'restarting informer',
      );
      this.run(f);
    }, delayMs);
    f.restartTimer.unref();
  }

  // --- lists ---------------------------------------------------------------------

  /** Every object of a kind, in pages; JSON as the API server sent it, with kind and apiVersion set. */
  private async list(resource: Resource): Promise<KubernetesListObject<KubernetesObject>> {
    const items: KubernetesObject[] = [];
    let resourceVersion = '';
    let next: string | undefined;
    const limit = this.options.listPageSize ?? 500;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (next !== undefined) query.set('continue', next);
      let body: { metadata?: { resourceVersion?: string; continue?: string }; items?: unknown[] };
      try {
        body = await this.api.request('GET', `${resource.path}?${query}`, {
          signal: this.abort.signal,
        });
      } catch (err) {
        if (!(resource.crd !== undefined && err instanceof KubeApiError && err.status === 404))
          throw err;
        // No CRD, no objects of the kind: an empty list (deleting any cached ones).
        this.log.warn(
          { kind: resource.kind, crd: resource.crd },
          'the kind is not served (is its CRD installed?): none exist; checking again later',
        );
        body = { metadata: { resourceVersion: '' }, items: [] };
        next = undefined;
        items.length = 0;
      }
      if (page === 0) resourceVersion = body.metadata?.resourceVersion ?? '';
      for (const item of body.items ?? [])
        items.push(this.normalize(resource, item as KubernetesObject));
      next = body.metadata?.continue || undefined;
      if (next === undefined) break;
    }
    this.log.debug({ kind: resource.kind, objects: items.length, resourceVersion }, 'listed');
    return {
      apiVersion: resource.apiVersion,
      kind: `${resource.kind}List`,
      metadata: { resourceVersion },
      items,
    };
  }

  /** The API's JSON with kind and apiVersion (list items have neither) and without managedFields. */
  private normalize(resource: Resource, o: KubernetesObject): KubernetesObject {
    if (typeof o !== 'object' || o === null) return o;
    if (resource.slim !== undefined) o = resource.slim(o);
    if (
      o.kind === resource.kind &&
      o.apiVersion === resource.apiVersion &&
      o.metadata?.managedFields === undefined
    )
      return o;
    const metadata = o.metadata === undefined ? undefined : { ...o.metadata };
    if (metadata !== undefined) delete metadata.managedFields;
    return {
      ...o,
      kind: resource.kind,
      apiVersion: resource.apiVersion,
      ...(metadata !== undefined ? { metadata } : {}),
    };
  }

  private sleep(ms: number): Promise<void> {
    if (this.closed || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      this.sleepers.add(done);
    });
  }

  // --- rejections as Events ----------------------------------------------------------

  /**
   * Records a Warning Event "PolicyRejected" on the rejected object, as
   * `kubectl describe` shows it. At most once per `rejectionEventIntervalMs`
   * for the same object and problems; a few in flight at a time, the rest
   * queued up to a bound and then dropped. Never throws.
   */
  reportRejected(rejection: Extract<ModelEvent, { type: 'invalid' }>): void {
    try {
      if (this.closed) return;
      const problems = rejection.issues.map((i) =>
        [i.field, i.message].filter((p) => p !== undefined && p !== '').join(': '),
      );
      let message = `Weir rejected this ${rejection.kind}: ${problems.join('; ')}`;
      if (message.length > MAX_EVENT_MESSAGE)
        message = `${message.slice(0, MAX_EVENT_MESSAGE - 1)}…`;
      const object = `${rejection.kind} ${rejection.namespace}/${rejection.name}`;
      const key = `${object}\n${message}`;
      const now = Date.now();
      const last = this.reported.get(key);
      if (last !== undefined && now - last < (this.options.rejectionEventIntervalMs ?? 600_000)) {
        this.log.debug({ object }, 'rejection already recorded as an Event recently');
        return;
      }
      this.reported.delete(key);
      this.reported.set(key, now);
      if (this.reported.size > MAX_REMEMBERED_REJECTIONS)
        this.reported.delete(this.reported.keys().next().value!);
      if (this.eventQueue.length >= MAX_QUEUED_EVENTS) {
        this.log.warn({ object }, 'too many rejection Events queued; this one is dropped');
        return;
      }
      const event = this.rejectionEvent(rejection, message, now);
      this.eventQueue.push(async () => {
        try {
          await this.api.request(
            'POST',
            `/api/v1/namespaces/${encodeURIComponent(event.metadata.namespace)}/events`,
            { body: event, signal: this.abort.signal },
          );
          this.log.debug({ object, event: event.metadata.name }, 'rejection recorded as an Event');
        } catch (err) {
          if (!this.closed)
            this.log.warn({ err, object }, 'recording the rejection as an Event failed');
        }
      });
      this.pumpEvents();
    } catch (err) {
      this.log.warn({ err }, 'recording a rejection failed');
    }
  }

  private rejectionEvent(
    r: Extract<ModelEvent, { type: 'invalid' }>,
    message: string,
    now: number,
  ) {
    const resource = RESOURCES.find((x) => x.kind === r.kind)!;
    const namespaced = !isClusterScoped(r.kind);
    const cached = this.followers
      .find((f) => f.resource === resource)
      ?.informer.get(r.name, namespaced ? r.namespace : undefined);
    // client-go names Events "<object>.<unix nanoseconds in hex>"; the sequence keeps names unique within a millisecond.
    const suffix = (BigInt(now) * 1_000_000n + BigInt(this.eventSequence++ % 1_000_000)).toString(
      16,
    );
    const timestamp = new Date(Math.floor(now / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const instance = this.options.instance ?? hostname();
    return {
      apiVersion: 'v1',
      kind: 'Event',
      // Events about cluster-scoped objects live in "default", as client-go records them.
      metadata: {
        name: `${r.name.slice(0, 200)}.${suffix}`,
        namespace: namespaced ? r.namespace : 'default',
      },
      involvedObject: {
        apiVersion: resource.apiVersion,
        kind: r.kind,
        name: r.name,
        ...(namespaced ? { namespace: r.namespace } : {}),
        ...(cached?.metadata?.uid ? { uid: cached.metadata.uid } : {}),
        ...(cached?.metadata?.resourceVersion
          ? { resourceVersion: cached.metadata.resourceVersion }
          : {}),
      },
      reason: 'PolicyRejected',
      message,
      type: 'Warning',
      source: { component: 'weir-controller', host: instance },
      firstTimestamp: timestamp,
      lastTimestamp: timestamp,
      count: 1,
      reportingComponent: 'weir-controller',
      reportingInstance: instance,
    };
  }

  private pumpEvents(): void {
    while (this.eventSenders < EVENT_SENDERS && this.eventQueue.length > 0 && !this.closed) {
      const send = this.eventQueue.shift()!;
      this.eventSenders += 1;
      void send().finally(() => {
        this.eventSenders -= 1;
        this.pumpEvents();
      });
    }
  }

  // --- lifecycle -----------------------------------------------------------------------

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.eventQueue.length = 0;
    for (const f of this.followers) {
      if (f.restartTimer !== undefined) clearTimeout(f.restartTimer);
      f.restartTimer = undefined;
    }
    for (const wake of [...this.sleepers]) wake();
    await Promise.all(this.followers.map((f) => f.informer.stop()));
    for (const c of this.watches) c.abort();
    this.watches.clear();
  }
}

/**
 * The library's Watch, guarded for a source being disposed (opens nothing,
 * aborts what was opening), asking for bookmarks, reporting when a watch is
 * opened and when it connected, and transforming objects before ListWatch
 * caches them.
 */
class GuardedWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly hooks: {
      closed(): boolean;
      opening(): void;
      connected(): void;
      track(c: AbortController): void;
      untrack(c: AbortController): void;
      transform(o: KubernetesObject): KubernetesObject;
    },
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.hooks.closed()) {
      const c = new AbortController();
      c.abort();
      return c;
    }
    this.hooks.opening();
    let ended = false;
    let failed = false;
    let controller: AbortController | undefined;
    controller = await super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true },
      (phase, obj, watchObj) =>
        callback(
          phase,
          phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED'
            ? this.hooks.transform(obj)
            : obj,
          watchObj,
        ),
      (err) => {
        ended = true;
        failed = Boolean(err);
        if (controller !== undefined) this.hooks.untrack(controller);
        done(err);
      },
    );
    if (this.hooks.closed()) {
      controller.abort();
      return controller;
    }
    if (!ended) this.hooks.track(controller);
    if (!failed) this.hooks.connected();
    return controller;
  }
}
