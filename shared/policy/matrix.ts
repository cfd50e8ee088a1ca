/**
 * Reachability as a matrix: every pod to every pod, per probe, decided by
 * the one evaluator (RuleTables.allows) in every address family a pair
 * shares. What `weirctl analyze matrix` prints (cli/analysis.ts, which
 * computes it the same way over manifests) and what the console shows over
 * the controller's model, so both give the same cells for the same cluster.
 */
import { ValidationError } from '../errors.js';
import { parseIp, type Ip } from '../net/ip.js';
import { familyName, probePairs, type Probe, type Target } from './probe.js';
import type { Packet, RuleTables } from './rule-tables.js';
import { PROTOCOL_NUMBER, type Endpoint, endpointKey, type Protocol } from './types.js';

export interface Matrix {
  readonly pods: readonly string[];
  readonly probes: ReadonlyArray<{
    readonly protocol: Protocol;
    readonly port: number;
    /** Per pair: allowed only when every address family the two pods share allows it. */
    readonly allowed: Record<string, Record<string, boolean>>;
    /**
     * Only the pairs whose families disagree ({"IPv4": true, "IPv6": false}),
     * or that share no family ({}: they cannot connect, shown as denied).
     * Absent when there are none.
     */
    readonly families?: Record<string, Record<string, Partial<Record<'IPv4' | 'IPv6', boolean>>>>;
  }>;
}

/**
 * Every pod to every pod, in every address family the pair shares (dual-stack
 * pods are checked on IPv4 and on IPv6); `namespaces`, when given, keeps the
 * pods of those namespaces only (rows and columns), and `keep` only the pods
 * it accepts (weirctl's -l, the console's chosen pods).
 */
export function matrix(
  tables: RuleTables,
  probes: readonly Probe[],
  namespaces: readonly string[] = [],
  keep: (e: Endpoint) => boolean = () => true,
): Matrix {
  const endpoints = [...tables.snapshot.endpoints]
    .filter((e) => namespaces.length === 0 || namespaces.includes(e.namespace))
    .filter(keep)
    .map((e) => ({ key: endpointKey(e), ips: e.ips.map(parseIp) }));
  return reachability(endpoints, probes, (_from, _to, packet) => tables.allows(packet));
}

/** One row and column of a reachability matrix: a pod's name as shown, and its addresses. */
export interface MatrixPod {
  readonly key: string;
  readonly ips: readonly Ip[];
}

/**
 * The matrix over any pods, with `allows` deciding each (source, destination)
 * address pair: one RuleTables for one cluster (matrix above), the source's
 * and the destination's clusters' tables for pods of a federation
 * (cli/federation-analysis.ts). Pods are sorted by key.
 */
export function reachability<P extends MatrixPod>(
  pods: readonly P[],
  probes: readonly Probe[],
  allows: (from: P, to: P, packet: Packet) => boolean,
): Matrix {
  const endpoints = [...pods].sort((a, b) => (a.key < b.key ? -1 : 1));
  const keys = endpoints.map((e) => e.key);
  const targets: Target[] = endpoints.map((e) => ({
    kind: 'pod',
    text: e.key,
    pod: e.key,
    ips: e.ips,
  }));
  const pairs = targets.map((from) => targets.map((to) => sharedFamilies(from, to)));
  return {
    pods: keys,
    probes: probes.map(({ protocol, port }) => {
      const allowed: Record<string, Record<string, boolean>> = {};
      const families: Record<
        string,
        Record<string, Partial<Record<'IPv4' | 'IPv6', boolean>>>
      > = {};
      endpoints.forEach((from, i) => {
        const row: Record<string, boolean> = {};
        endpoints.forEach((to, j) => {
          const perFamily: Partial<Record<'IPv4' | 'IPv6', boolean>> = {};
          for (const { src, dst } of pairs[i]![j]!) {
            perFamily[familyName(src) as 'IPv4' | 'IPv6'] = allows(from, to, {
              src,
              dst,
              protocol: PROTOCOL_NUMBER[protocol],
              dstPort: port,
            });
          }
          const verdicts = Object.values(perFamily);
          row[to.key] = verdicts.length > 0 && verdicts.every((v) => v);
          if (verdicts.length === 0 || verdicts.some((v) => v !== verdicts[0])) {
            families[keys[i]!] ??= {};
            families[keys[i]!]![to.key] = perFamily;
          }
        });
        allowed[keys[i]!] = row;
      });
      return Object.keys(families).length === 0
        ? { protocol, port, allowed }
        : { protocol, port, allowed, families };
    }),
  };
}

/** The address pairs of two pods, one per shared family; none when they share no family. */
function sharedFamilies(from: Target, to: Target): Array<{ src: Ip; dst: Ip }> {
  try {
    return probePairs(from, to);
  } catch (err) {
    if (err instanceof ValidationError) return [];
    throw err;
  }
}
