/**
 * Fan-out of flow events to subscribers, each an AsyncIterableIterator with
 * its own bounded queue. A publisher never waits: a subscriber whose queue is
 * full loses the newest events, and a single 'lost' event (counting them)
 * takes their place in its stream. Publishers check `watching` first so that
 * nobody builds events no one reads.
 */
import type { FlowEvent } from './datapath.js';

type Lost = { type: 'lost'; count: number };

class Subscription implements AsyncIterableIterator<FlowEvent> {
  private readonly queue: FlowEvent[] = [];
  private head = 0;
  private waiting: ((r: IteratorResult<FlowEvent>) => void) | undefined;
  private done = false;

  constructor(
    private readonly capacity: number,
    private readonly onEnd: (s: Subscription) => void,
    private readonly onLost: () => void,
  ) {}

  push(e: FlowEvent): void {
    if (this.done) return;
    if (this.waiting !== undefined) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: e, done: false });
      return;
    }
    const queued = this.queue.length - this.head;
    if (queued >= this.capacity) {
      this.onLost();
      const last = this.queue[this.queue.length - 1];
      if (last !== undefined && last.type === 'lost') (last as Lost).count++;
      else this.queue.push({ type: 'lost', count: 1 });
      return;
    }
    this.queue.push(e);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    this.onEnd(this);
    const w = this.waiting;
    this.waiting = undefined;
    w?.({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<FlowEvent>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head++]!;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  return(): Promise<IteratorResult<FlowEvent>> {
    this.end();
    this.queue.length = 0;
    this.head = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<FlowEvent> {
    return this;
  }
}

export class FlowEventHub {
  private readonly subscribers = new Set<Subscription>();
  published = 0;
  lost = 0;

  /** True while anyone is subscribed. */
  get watching(): boolean {
    return this.subscribers.size > 0;
  }

  get watchers(): number {
    return this.subscribers.size;
  }

  publish(e: FlowEvent): void {
    this.published++;
    for (const s of this.subscribers) s.push(e);
  }

  subscribe(bufferSize: number, signal: AbortSignal | undefined): AsyncIterableIterator<FlowEvent> {
    if (!Number.isInteger(bufferSize) || bufferSize < 1)
      throw new RangeError(`bufferSize ${bufferSize} is not a positive integer`);
    const s = new Subscription(
      bufferSize,
      (x) => this.subscribers.delete(x),
      () => this.lost++,
    );
    if (signal?.aborted) {
      s.end();
      return s;
    }
    this.subscribers.add(s);
    signal?.addEventListener('abort', () => s.end(), { once: true });
    return s;
  }

  /** Ends every stream (after the events already queued). */
  close(): void {
    for (const s of [...this.subscribers]) s.end();
  }
}
