/**
 * Coalesces bursts of work: `request()` asks for a run; runs happen at most
 * once per `minIntervalMs`, never overlap, and a request made during a run
 * gets one more run after it. (kube-network-policies' bounded frequency
 * runner, without the periodic part, which callers add with a timer.)
 *
 * `costFactor` bounds the share of time a costly run takes: after a run of
 * d ms the next starts no sooner than `costFactor` × d ms after it began
 * (so 20 keeps a run whose cost grows with the cluster under 5 % of the
 * time), and never sooner than `minIntervalMs`.
 */
export class CoalescingRunner {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private last = 0;
  private lastCostMs = 0;
  private closed = false;

  constructor(
    private readonly fn: () => Promise<void> | void,
    private readonly options: {
      minIntervalMs: number;
      costFactor?: number;
      onError: (err: unknown) => void;
    },
  ) {}

  request(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer !== undefined) return;
    const interval = Math.max(
      this.options.minIntervalMs,
      (this.options.costFactor ?? 0) * this.lastCostMs,
    );
    const wait = Math.max(0, this.last + interval - Date.now());
    this.timer = setTimeout(() => void this.run(), wait);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    this.running = true;
    this.last = Date.now();
    try {
      await this.fn();
    } catch (err) {
      this.options.onError(err);
    } finally {
      this.running = false;
      this.lastCostMs = Date.now() - this.last;
    }
    if (this.again) {
      this.again = false;
      this.request();
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
