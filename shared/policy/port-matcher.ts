/**
 * The service side of a compiled rule: which (protocol, destination port)
 * pairs it admits. Fixed entries are a flat Int32Array of
 * [protocol, firstPort, lastPort] triples (a handful per rule, so a linear scan
 * beats anything cleverer). Egress named ports depend on the destination: they
 * are resolved against every endpoint's container ports into a map from the
 * destination address to more triples.
 */
import type { Ip } from '../net/ip.js';

export class PortMatcher {
  constructor(
    /** [protocol, first, last]*; a whole protocol is [p, 0, 65535]. */
    readonly fixed: Int32Array,
    /** Destination address → [protocol, port, port]* (egress named ports). */
    readonly byDestination: ReadonlyMap<Ip, Int32Array> | undefined,
  ) {}

  matches(protocol: number, port: number, destination: Ip): boolean {
    if (scan(this.fixed, protocol, port)) return true;
    if (this.byDestination === undefined) return false;
    const entries = this.byDestination.get(destination);
    return entries !== undefined && scan(entries, protocol, port);
  }

  /** True when nothing can match (a named port that resolved nowhere). */
  get isEmpty(): boolean {
    return (
      this.fixed.length === 0 && (this.byDestination === undefined || this.byDestination.size === 0)
    );
  }
}

function scan(t: Int32Array, protocol: number, port: number): boolean {
  for (let i = 0; i < t.length; i += 3) {
    if (t[i] === protocol && port >= t[i + 1]! && port <= t[i + 2]!) return true;
  }
  return false;
}
