/**
 * Coalesces bursts of work: `request()` asks for a run; runs happen at most
 * once per `minIntervalMs`, never overlap, and a request made during a run
 * gets one more run after it. (kube-network-policies' bounded frequency
 * runner, without the periodic part, which callers add with a timer.)
 */
export class CoalescingRunner {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private last = 0;
  private closed = false;

  constructor(
    private readonly fn: () => Promise<void> | void,
    private readonly options: { minIntervalMs: number; onError: (err: unknown) => void },
  ) {}

  request(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer !== undefined) return;
    const wait = Math.max(0, this.last + this.options.minIntervalMs - Date.now());
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
