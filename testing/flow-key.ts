/**
 * Flow keys as tests and benchmarks make them.
 */
import type { FlowKey } from '../vrouter-agent/flows/index.js';

/**
 * The key of a packet's reply, in `zone` (default the packet's): addresses
 * swapped, and ports swapped except for ICMP and ICMPv6, whose flow slots
 * (identifier, request type) a reply shares with its request.
 */
export function replyKey(k: FlowKey, zone = k.zone): FlowKey {
  const fixed = k.protocol === 1 || k.protocol === 58;
  return {
    zone,
    protocol: k.protocol,
    src: k.dst,
    dst: k.src,
    sport: fixed ? k.sport : k.dport,
    dport: fixed ? k.dport : k.sport,
  };
}
