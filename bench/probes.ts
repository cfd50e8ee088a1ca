/**
 * Probe packets for the verdict benchmarks: a fixed pseudo-random list of
 * (source, destination, protocol, destination port) over a generated cluster.
 *
 * Mix: most sources are pods (a few are outside addresses reaching into the
 * cluster); destinations are pods of the same namespace, pods elsewhere,
 * kube-dns, or outside addresses (partner networks, their excepted holes, the
 * internet, private space that is not pods). Protocols are mostly TCP, then
 * UDP (DNS, statsd), a little SCTP. Ports are half the destination pod's own
 * container ports (so named-port rules are exercised) and half a set of
 * common service ports and ranges.
 */
import type { Packet } from '../shared/policy/rule-tables.js';
import {
  PARTNER_NETWORKS,
  type RealisticCluster,
  type PodInfo,
} from '../testing/random-cluster.js';
import { seededRandom } from '../shared/random.js';

const TCP = 6;
const UDP = 17;
const SCTP = 132;

const COMMON_PORTS = [
  80, 443, 8080, 8443, 9090, 9091, 9100, 5432, 6379, 3306, 53, 22, 9092, 9200, 3000, 4443, 10254,
];

export function generateProbes(cluster: RealisticCluster, count: number, seed = 0xbe7c4): Packet[] {
  const rng = seededRandom(seed);
  const pods = cluster.pods;
  const partners = PARTNER_NETWORKS.map(
    ([cidr, except]) => [v4Range(cidr), v4Range(except)] as const,
  );
  const external = (): number => {
    const kind = rng.int(10);
    if (kind < 4) {
      // Inside a partner network; now and then inside its excepted hole.
      const [net, hole] = rng.pick(partners);
      const [lo, hi] = rng.chance(0.2) ? hole : net;
      return lo + rng.int(hi - lo + 1);
    }
    if (kind < 7) return ((rng.range(11, 223) << 24) >>> 0) + rng.int(1 << 24); // the internet (mostly)
    if (kind < 8) return ((10 << 24) >>> 0) + rng.int(1 << 24); // 10/8, mostly not pods
    if (kind < 9) return (((192 << 24) | (168 << 16)) + rng.int(1 << 16)) >>> 0;
    return (((172 << 24) | (16 << 16)) + rng.int(1 << 20)) >>> 0;
  };
  const randomPod = (): PodInfo => pods[rng.int(pods.length)]!;
  const podIn = (ns: number): PodInfo => pods[rng.pick(cluster.podsByNamespace[ns]!)]!;

  const out: Packet[] = new Array(count);
  for (let i = 0; i < count; i++) {
    let src: number;
    let dst: number;
    let dstPod: PodInfo | undefined;
    let protocol: number;
    let port: number;
    const kind = rng.next();
    if (kind < 0.08) {
      // From outside into a pod.
      src = external();
      dstPod = randomPod();
      dst = dstPod.ip;
    } else {
      const from = randomPod();
      src = from.ip;
      const d = rng.next();
      if (d < 0.35) dstPod = podIn(from.namespace);
      else if (d < 0.75) dstPod = randomPod();
      else if (d < 0.82 && cluster.dnsPods.length > 0) dstPod = pods[rng.pick(cluster.dnsPods)]!;
      else if (d < 0.821) dstPod = from; // to itself
      dst = dstPod === undefined ? external() : dstPod.ip;
    }
    if (dstPod?.dns && rng.chance(0.9)) {
      protocol = rng.chance(0.8) ? UDP : TCP;
      port = 53;
    } else if (dstPod !== undefined && dstPod.ports.length > 0 && rng.chance(0.5)) {
      const p = rng.pick(dstPod.ports);
      protocol = p.protocol === 'UDP' ? UDP : p.protocol === 'SCTP' ? SCTP : TCP;
      port = p.port;
    } else {
      const r = rng.next();
      if (r < 0.9) {
        protocol = TCP;
        port = rng.chance(0.85)
          ? rng.pick(COMMON_PORTS)
          : rng.chance(0.5)
            ? rng.range(30000, 32767)
            : rng.range(1024, 65535);
      } else if (r < 0.98) {
        protocol = UDP;
        port = rng.pick([53, 53, 8125, 5000, 5050, 5100, 123, 443]);
      } else {
        protocol = SCTP;
        port = rng.pick([3868, 9100, 38412]);
      }
    }
    out[i] = { src, dst, protocol, dstPort: port };
  }
  return out;
}

function v4Range(cidr: string): readonly [number, number] {
  const [addr, len] = cidr.split('/') as [string, string];
  let n = 0;
  for (const part of addr.split('.')) n = n * 256 + Number(part);
  const size = 2 ** (32 - Number(len));
  return [n, n + size - 1];
}
