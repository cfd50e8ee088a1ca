/**
 * First fragments' ports, so that the rest of a datagram follows its flow
 * (vRouter keeps a fragment table for the same reason). Keyed by zone,
 * family, addresses, IP identification and — for IPv4, whose id is per
 * protocol — the protocol. Bounded: the oldest entry goes when full; entries
 * live `timeoutMs` from the last first fragment seen with that key.
 */
export interface FragmentPorts {
  /** The datagram's upper-layer protocol (the first fragment's, after IPv6 extension headers). */
  readonly protocol: number;
  readonly sport: number;
  readonly dport: number;
}

interface Entry extends FragmentPorts {
  readonly expiresMs: number;
}

export class FragmentTracker {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries: number,
    private readonly timeoutMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The key of a fragment: `bytes` holds its addresses at `srcOffset`/`dstOffset`. */
  static key(
    zone: number,
    family: number,
    protocol: number,
    id: number,
    bytes: Uint8Array,
    srcOffset: number,
    dstOffset: number,
  ): string {
    const n = family === 4 ? 4 : 16;
    let text = `${zone}|${family}|${family === 4 ? protocol : 0}|${id}|`;
    for (let i = 0; i < n; i++) text += String.fromCharCode(bytes[srcOffset + i]!);
    for (let i = 0; i < n; i++) text += String.fromCharCode(bytes[dstOffset + i]!);
    return text;
  }

  remember(key: string, ports: FragmentPorts, nowMs: number): void {
    if (this.maxEntries === 0) return;
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, {
      protocol: ports.protocol,
      sport: ports.sport,
      dport: ports.dport,
      expiresMs: nowMs + this.timeoutMs,
    });
  }

  find(key: string, nowMs: number): FragmentPorts | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (nowMs >= e.expiresMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Drops expired entries (oldest first: insertion order is expiry order). */
  expire(nowMs: number): void {
    for (const [key, e] of this.entries) {
      if (nowMs < e.expiresMs) break;
      this.entries.delete(key);
    }
  }

  clear(): void {
    this.entries.clear();
  }
}
