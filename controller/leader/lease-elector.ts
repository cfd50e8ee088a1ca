/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it:
 *
 *   candidate ──(lease absent, released, or unchanged for leaseDuration)──> leader
 *       ^                                                                  │ renew every renewIntervalMs
 *       └── acquire() again <── lost <── another holder seen, or no successful renewal for renewDeadlineMs
 *
 * - Expiry is judged by the candidate's own clock: a lease is expired when
 *   its record (resourceVersion) has not changed for leaseDurationSeconds
 *   since this process first saw it that way. Clocks of different machines
 *   are never compared, at the price of a fresh candidate waiting a full
 *   duration before taking a lease whose holder died long ago.
 * - Every write is a replace carrying the resourceVersion that was read, so
 *   two candidates cannot both win (the loser gets 409 Conflict).
 * - A leader that cannot renew gives up after renewDeadlineMs, counted from
 *   the start of its last successful renewal; that is shorter than the lease
 *   duration, so it stops leading before anyone else may start.
 * - acquireTime and renewTime are MicroTime: the API server only parses them
 *   with six fractional digits (a Date's toISOString() has three and is
 *   refused with 400), so they are written with the client library's
 *   V1MicroTime.
 */
import { V1MicroTime, type KubeConfig } from '@kubernetes/client-node';
import { ClosedError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Readiness } from '../../shared/metrics.js';
import { KubeApi, KubeApiError, describeError } from '../kube/api.js';

export interface LeaseElectorOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly name: string;
  /** Unique per process: the lease's holderIdentity. */
  readonly identity: string;
  readonly log: Logger;
  /** Written into the lease: how long others wait after its last change before taking it (default 15). */
  readonly leaseDurationSec?: number;
  /** A leader that has not renewed for this long gives up (default 10 000; less than the lease duration). */
  readonly renewDeadlineMs?: number;
  /** How often a leader renews (default 2 000; less than the renew deadline). */
  readonly renewIntervalMs?: number;
  /** How often a candidate tries again (default 2 000). */
  readonly retryIntervalMs?: number;
  /** Clear the holder when disposed while leading, so that a successor need not wait for expiry (default true). */
  readonly releaseOnDispose?: boolean;
}

/** The parts of a Lease this reads and writes (the API's JSON). */
interface LeaseJson {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number | null;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number | null;
    [k: string]: unknown;
  };
}

type Attempt =
  | { readonly result: 'leading' }
  | { readonly result: 'held'; readonly holder: string }
  | { readonly result: 'conflict' };

const micro = (ms: number) => new V1MicroTime(ms).toISOString();

export class LeaseElector implements AsyncDisposable {
  private readonly api: KubeApi;
  private readonly log: Logger;
  private readonly path: string;
  private readonly leaseDurationSec: number;
  private readonly renewDeadlineMs: number;
  private readonly renewIntervalMs: number;
  private readonly retryIntervalMs: number;
  private readonly lostCallbacks: Array<(reason: string) => void> = [];
  private readonly abort = new AbortController();
  /** The lease as last read or written, and when (local clock) its resourceVersion last changed. */
  private observed: LeaseJson | undefined;
  private observedAt = 0;
  private leading = false;
  /** Start of the last successful write as leader. */
  private renewedAt = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private closed = false;
  /** When a Lease request last succeeded, the holder it showed, and the last failure (for standbyReadiness). */
  private contactAt: number | undefined;
  private contactHolder = '';
  private lastFailure = '';

  constructor(private readonly options: LeaseElectorOptions) {
    this.leaseDurationSec = options.leaseDurationSec ?? 15;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.renewIntervalMs = options.renewIntervalMs ?? 2_000;
    this.retryIntervalMs = options.retryIntervalMs ?? 2_000;
    if (!Number.isInteger(this.leaseDurationSec) || this.leaseDurationSec < 1)
      throw new RangeError('leaseDurationSec must be a whole number of seconds, at least 1');
    if (this.renewDeadlineMs >= this.leaseDurationSec * 1000)
      throw new RangeError('renewDeadlineMs must be less than the lease duration');
    if (this.renewIntervalMs >= this.renewDeadlineMs)
      throw new RangeError('renewIntervalMs must be less than renewDeadlineMs');
    this.log = options.log.child({
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
    this.api = new KubeApi(options.kubeConfig, { userAgent: 'weir-controller/leader-election' });
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases`;
  }

  isLeader(): boolean {
    // Also false once the deadline has passed, even if the timer that notices it has not run yet.
    return this.leading && Date.now() - this.renewedAt < this.renewDeadlineMs;
  }

  /**
   * A candidate's readiness (/readyz while it stands by): ready while its
   * Lease requests succeed, i.e. it can take over when the leader stops
   * renewing. Not ready when no request succeeded within the lease duration
   * (or three retries, whichever is longer), nor while it leads but the
   * controller has not started serving.
   */
  standbyReadiness(): Readiness {
    if (this.closed) return { ready: false, reason: 'shutting down' };
    if (this.isLeader()) return { ready: false, reason: 'leading; the controller is starting' };
    const windowMs = Math.max(this.leaseDurationSec * 1000, 3 * this.retryIntervalMs);
    const failure = this.lastFailure ? `: ${this.lastFailure}` : '';
    if (this.contactAt === undefined)
      return { ready: false, reason: `standing by; the Lease has not been read yet${failure}` };
    const since = Date.now() - this.contactAt;
    if (since > windowMs)
      return {
        ready: false,
        reason: `standing by, but no Lease request succeeded for ${Math.round(since / 1000)} s${failure}`,
      };
    return {
      ready: true,
      reason: `standing by; the lease is held by ${this.contactHolder || '(nobody)'}`,
    };
  }

  /** Called once each time leadership is lost (not when it is released by dispose). */
  onLost(cb: (reason: string) => void): void {
    this.lostCallbacks.push(cb);
  }

  /**
   * Resolves once this process leads; retries every retryIntervalMs until
   * then. Rejects when the signal aborts or the elector is disposed. While it
   * waits, its timer keeps the process alive: a process waiting to lead has
   * nothing else to do.
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    let waitingLogged = false;
    for (;;) {
      signal?.throwIfAborted();
      if (this.closed) throw new ClosedError('the lease elector is disposed');
      if (this.leading) return;
      const started = Date.now();
      try {
        const a = await this.attempt(signal, this.options.renewDeadlineMs);
        this.contactAt = Date.now();
        this.contactHolder = a.result === 'held' ? a.holder : '';
        this.lastFailure = '';
        if (a.result === 'leading') {
          this.lead(started);
          return;
        }
        if (a.result === 'held') {
          if (!waitingLogged) this.log.info({ holder: a.holder }, 'waiting for the lease');
          else this.log.debug({ holder: a.holder }, 'lease held by another');
          waitingLogged = true;
        } else this.log.debug('lease changed while acquiring; trying again');
      } catch (err) {
        if (signal?.aborted || this.closed) continue;
        this.lastFailure = describeError(err);
        this.log.warn({ err: describeError(err) }, 'lease request failed; trying again');
      }
      await this.sleep(this.retryIntervalMs, signal);
    }
  }

  private lead(started: number): void {
    this.leading = true;
    this.renewedAt = started;
    this.log.info(
      {
        leaseDurationSec: this.leaseDurationSec,
        transitions: this.observed?.spec?.leaseTransitions ?? 0,
      },
      'leading',
    );
    this.scheduleRenew(this.renewIntervalMs);
  }

  private scheduleRenew(delayMs: number): void {
    if (this.closed || !this.leading) return;
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      this.renewing = this.renew().finally(() => (this.renewing = undefined));
    }, delayMs);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    if (this.closed || !this.leading) return;
    const started = Date.now();
    try {
      // Never wait on a request past the moment leadership must be given up.
      const left = this.renewDeadlineMs - (started - this.renewedAt);
      const a = await this.attempt(this.abort.signal, Math.max(1, left));
      if (this.closed) return;
      if (a.result === 'leading') {
        this.renewedAt = started;
        this.log.trace('lease renewed');
        this.scheduleRenew(this.renewIntervalMs);
        return;
      }
      if (a.result === 'held') return this.lose(`the lease is held by ${a.holder}`);
      this.log.warn('lease renewal conflicted; reading it again');
    } catch (err) {
      if (this.closed) return;
      this.log.warn({ err: describeError(err) }, 'lease renewal failed');
    }
    const left = this.renewDeadlineMs - (Date.now() - this.renewedAt);
    if (left <= 0)
      return this.lose(`the lease could not be renewed for ${this.renewDeadlineMs} ms`);
    this.scheduleRenew(Math.min(Math.ceil(this.renewIntervalMs / 2), left));
  }

  private lose(reason: string): void {
    if (!this.leading) return;
    this.leading = false;
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.log.warn({ reason }, 'leadership lost');
    for (const cb of this.lostCallbacks) {
      try {
        cb(reason);
      } catch (err) {
        this.log.error({ err }, 'a leadership-lost callback threw');
      }
    }
  }

  /** One read and, when the lease is free, expired or ours, one write. Throws on API errors other than 404 and 409. */
  private async attempt(
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<Attempt> {
    const now = Date.now();
    const opts = { signal, timeoutMs };
    let lease: LeaseJson | undefined;
    try {
      lease = await this.api.request<LeaseJson>(
        'GET',
        `${this.path}/${encodeURIComponent(this.options.name)}`,
        opts,
      );
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    if (lease === undefined) {
      const body: LeaseJson = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.options.name, namespace: this.options.namespace },
        spec: {
          holderIdentity: this.options.identity,
          leaseDurationSeconds: this.leaseDurationSec,
          acquireTime: micro(now),
          renewTime: micro(now),
          leaseTransitions: 0,
        },
      };
      try {
        this.observe(await this.api.request<LeaseJson>('POST', this.path, { ...opts, body }), now);
        return { result: 'leading' };
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 409) return { result: 'conflict' };
        throw err;
      }
    }
    this.observe(lease, now);
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.options.identity;
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationSec) * 1000;
    if (!mine && holder !== '' && (this.leading || now < this.observedAt + durationMs))
      return { result: 'held', holder };
    const transitions = spec.leaseTransitions ?? 0;
    const body: LeaseJson = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.options.identity,
        leaseDurationSeconds: this.leaseDurationSec,
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : micro(now),
        renewTime: micro(now),
        leaseTransitions: mine ? transitions : transitions + 1,
      },
    };
    try {
      this.observe(
        await this.api.request<LeaseJson>(
          'PUT',
          `${this.path}/${encodeURIComponent(this.options.name)}`,
          { ...opts, body },
        ),
        now,
      );
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) return { result: 'conflict' };
      throw err;
    }
    if (!mine)
      this.log.info(
        { previous: holder || '(released)', transitions: transitions + 1 },
        'lease taken',
      );
    return { result: 'leading' };
  }

  private observe(lease: LeaseJson, now: number): void {
    if (
      this.observed?.metadata?.resourceVersion !== lease.metadata?.resourceVersion ||
      this.observed === undefined
    )
      this.observedAt = now;
    this.observed = lease;
  }

  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const stop = () => {
        clearTimeout(t);
        signal?.removeEventListener('abort', stop);
        this.abort.signal.removeEventListener('abort', stop);
        if (signal?.aborted) reject(signal.reason);
        else if (this.closed) reject(new ClosedError('the lease elector is disposed'));
        else resolve();
      };
      const t = setTimeout(stop, ms);
      signal?.addEventListener('abort', stop, { once: true });
      this.abort.signal.addEventListener('abort', stop, { once: true });
    });
  }

  /** Stops renewing and, when leading, clears the holder so that a successor can start at once. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    const wasLeading = this.isLeader();
    this.leading = false;
    this.abort.abort(); // a renewal in flight, a candidate's wait
    await this.renewing;
    if (!wasLeading || this.options.releaseOnDispose === false) return;
    try {
      const lease = await this.api.request<LeaseJson>(
        'GET',
        `${this.path}/${encodeURIComponent(this.options.name)}`,
        { timeoutMs: 5_000 },
      );
      if (lease.spec?.holderIdentity !== this.options.identity) return;
      const now = Date.now();
      await this.api.request('PUT', `${this.path}/${encodeURIComponent(this.options.name)}`, {
        timeoutMs: 5_000,
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            acquireTime: micro(now),
            renewTime: micro(now),
          },
        },
      });
      this.log.info('lease released');
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'releasing the lease failed; it will expire');
    }
  }
}
