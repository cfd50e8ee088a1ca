/**
 * Rate limits for log lines a peer can cause: a token bucket per peer (a
 * node, or an address before the peer named one) inside a global bucket, so
 * that neither one peer nor many can flood the log. A line let through
 * after some were suppressed carries their count (`suppressed`), so the
 * log still says that something happened, and how often.
 *
 *   const n = limiter.take(node);
 *   if (n !== undefined) log.warn({ node, ...suppressedField(n) }, 'NACK');
 */
import { LOG_LIMITS } from './limits.js';

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

export class LogLimiter {
  private readonly peers = new Map<string, Bucket>();
  private readonly global: Bucket;
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly globalPerSecond: number;
  private readonly maxPeers: number;

  constructor(
    private readonly options: {
      burst?: number;
      perSecond?: number;
      globalPerSecond?: number;
      peers?: number;
      now?: () => number;
      /** Called once per suppressed line (a metric). */
      onSuppressed?: () => void;
    } = {},
  ) {
    this.burst = options.burst ?? LOG_LIMITS.burst;
    this.perSecond = options.perSecond ?? LOG_LIMITS.perSecond;
    this.globalPerSecond = options.globalPerSecond ?? LOG_LIMITS.globalPerSecond;
    this.maxPeers = options.peers ?? LOG_LIMITS.peers;
    this.global = { tokens: this.globalPerSecond, at: this.now(), suppressed: 0 };
  }

  /**
   * One line for `peer`: undefined when it is to be suppressed, else how
   * many of the peer's lines were suppressed since its last line let through.
   */
  take(peer: string): number | undefined {
    const now = this.now();
    let b = this.peers.get(peer);
    if (b === undefined) {
      b = { tokens: this.burst, at: now, suppressed: 0 };
      if (this.peers.size >= this.maxPeers) this.peers.delete(this.peers.keys().next().value!);
    } else this.peers.delete(peer); // re-inserted below: the map is in order of last use
    this.peers.set(peer, b);
    refill(b, now, this.perSecond, this.burst);
    refill(this.global, now, this.globalPerSecond, this.globalPerSecond);
    if (b.tokens < 1 || this.global.tokens < 1) {
      b.suppressed++;
      this.options.onSuppressed?.();
      return undefined;
    }
    b.tokens--;
    this.global.tokens--;
    const n = b.suppressed;
    b.suppressed = 0;
    return n;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}

function refill(b: Bucket, now: number, perSecond: number, cap: number): void {
  if (now > b.at) {
    b.tokens = Math.min(cap, b.tokens + ((now - b.at) * perSecond) / 1000);
    b.at = now;
  }
}

/** `{ suppressed: n }` when lines were suppressed, else nothing: spread into a log line. */
export function suppressedField(n: number): { suppressed?: number } {
  return n > 0 ? { suppressed: n } : {};
}
