/**
 * The agent's side of distribution, whatever carries it (gRPC, NATS): the
 * seam between the agent, which applies spans and proves them, and the
 * transport, which connects, says hello, delivers updates and carries the
 * answers back.
 *
 *   transport.updates(hello) ─> Delivery, Delivery, ...   (in order, across
 *                                                          reconnections)
 *   each Delivery: apply ─> ack(hash) | nack(error, hash)
 *
 * Contract of every implementation:
 * - `hello()` is read at every (re)connection, so that the controller always
 *   learns the revision and in-force hash the agent holds at that moment and
 *   resumes from exactly that content.
 * - `connected` is true only once the controller answered this
 *   connection's hello (a welcome), and false as soon as the connection is
 *   known to be lost; the agent is headless meanwhile and keeps enforcing.
 * - A Delivery's ack/nack go to the connection it arrived on; once that
 *   connection is gone they are dropped (the next hello says the same).
 * - Deliveries queue in arrival order and are bounded (a controller sends one
 *   at a time per node): a peer that floods the queue loses its connection.
 * - Disposing ends the iteration.
 */
import type { SpanUpdate__Output } from '../../shared/generated/weir/v1/index.js';

export interface AgentHello {
  readonly node: string;
  /** The revision of the span in force; 0: none. */
  readonly appliedRevision: number;
  /** This agent process. */
  readonly instance: string;
  /** "host:port" of the agent's own API. */
  readonly apiAddress: string;
  /** The content hash of the span in force (shared/wire/span-hash.ts). */
  readonly inForceHash: string;
}

/** Exactly one of `update` and `problem`. */
export interface Delivery {
  readonly update?: SpanUpdate__Output;
  /** The transport received an update it could not assemble (a part missing, a hash wrong): the agent refuses it. */
  readonly problem?: string;
  /** Applied, persisted and enforced; `inForceHash` is the hash of the span now in force. */
  ack(inForceHash: string): void;
  /** Refused; `inForceHash` is the hash of the span still in force. */
  nack(error: string, inForceHash: string): void;
}

export interface ControllerTransport extends AsyncDisposable {
  /** Where the controller is, for logs and status ("127.0.0.1:7443", "nats://..."). */
  readonly peer: string;
  /** The controller answered the current connection's hello. */
  readonly connected: boolean;
  /** Connects (and reconnects, with backoff) and yields every update, until disposed. Called once. */
  updates(hello: () => AgentHello): AsyncIterable<Delivery>;
}

/** Most deliveries queued unconsumed before the connection is dropped as flooding. */
export const MAX_QUEUED_DELIVERIES = 1024;

/**
 * The queue behind `updates()`: transports push, the agent pulls. Bounded:
 * `push` returns false when full (the transport drops that connection).
 */
export class DeliveryQueue implements AsyncIterable<Delivery> {
  private readonly items: Delivery[] = [];
  private waiter: ((r: IteratorResult<Delivery>) => void) | undefined;
  private ended = false;

  push(d: Delivery): boolean {
    if (this.ended) return true;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: d, done: false });
      return true;
    }
    if (this.items.length >= MAX_QUEUED_DELIVERIES) return false;
    this.items.push(d);
    return true;
  }

  end(): void {
    this.ended = true;
    this.items.length = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return {
      next: () => {
        const d = this.items.shift();
        if (d !== undefined) return Promise.resolve({ value: d, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiter = resolve;
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** Reconnection delay: exponential from `min` to `max`, jittered to 50–100%. */
export function backoffMs(attempt: number, min: number, max: number): number {
  return Math.min(max, min * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2);
}
