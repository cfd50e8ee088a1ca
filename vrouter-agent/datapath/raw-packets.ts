/**
 * A reusable batch of raw packets for `UserspaceDatapath.process`: push packets with
 * their zones, process, clear, repeat. The buffers are referenced, not copied.
 */
import type { RawPackets } from './userspace-datapath.js';

export class RawPacketBatch implements RawPackets {
  readonly buffers: Uint8Array[] = [];
  readonly lengths: number[] = [];
  readonly zones: number[] = [];
  private used = 0;

  get count(): number {
    return this.used;
  }

  /** Appends a packet (its first `length` bytes, default all) in `zone`; returns its position. */
  push(bytes: Uint8Array, zone: number, length: number = bytes.length): number {
    const i = this.used++;
    this.buffers[i] = bytes;
    this.zones[i] = zone;
    this.lengths[i] = length;
    return i;
  }

  clear(): void {
    this.used = 0;
  }
}
