/**
 * The network-policy-api ClusterNetworkPolicy conformance scenarios
 * (testing/cnp-conformance.ts) on real connections: one lab of upstream's
 * cluster (four houses of two pods, pod 0 on kind-a and pod 1 on kind-b),
 * each scenario's steps applied one after another by rewriting the lab's
 * directory, every probed cell compared with the upstream expectation and
 * the whole observed matrix with `weirctl analyze matrix` on the same
 * manifests. The agents enforce with the kernel datapath, so the Admin and
 * Baseline tiers travel in spans and are decided by the native rule image.
 *
 * Left out, with the reason printed: SCTP probes (this kernel has no SCTP
 * sockets) and probes from or to the host-network centaur pods (the lab
 * does not run host-network pods; test/policy/cnp-conformance.test.ts
 * covers them through the analysis). Root and the kernel datapath only.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { analyse, matrix } from '../../cli/analysis.js';
import { labDown, labSync, labUp } from '../../cli/lab.js';
import { ProbeSession, matrixDifferences } from '../../cli/lab-probe.js';
import type { Probe } from '../../shared/policy/probe.js';
import type { Raw } from '../../testing/cluster.js';
import {
  type Probe as CnpProbe,
  SCENARIOS,
  applyChanges,
  baseCluster,
  podKey,
} from '../../testing/cnp-conformance.js';
import { enforcementSkip, writeManifests } from '../../testing/lab.js';

const skip = await enforcementSkip();

/** Why a probe is not run on real connections, or undefined. */
const leftOut = ([from, to, protocol]: CnpProbe): string | undefined =>
  protocol === 'SCTP'
    ? 'no SCTP sockets on this kernel'
    : from.startsWith('centaur/') || to.startsWith('centaur/')
      ? 'host-network pods are not run by the lab'
      : undefined;

const portsOf = (probes: readonly CnpProbe[]): Probe[] => {
  const seen = new Map<string, Probe>();
  for (const p of probes)
    if (leftOut(p) === undefined) seen.set(`${p[2]}/${p[3]}`, { protocol: p[2], port: p[3] });
  return [...seen.values()];
};

describe('ClusterNetworkPolicy conformance scenarios on real connections in the lab', {
  skip,
}, () => {
  let root: string;
  let dir: string;
  const lab = 'cnp';
  let probers: ProbeSession | undefined;
  const serve = portsOf(SCENARIOS.flatMap((s) => s.steps.flatMap((st) => st.probes)));
  const left = new Map<string, number>();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-lab-root-'));
    dir = await mkdtemp(join(tmpdir(), 'weir-lab-cnp-'));
    await writeManifests(dir, '00-cluster.yaml', baseCluster());
    const state = await labUp({ dir, lab, root, datapath: 'nftables' });
    probers = await ProbeSession.start(state, serve);
  });

  after(async () => {
    probers?.close();
    await labDown({ lab, root }).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
    for (const [why, n] of left) console.log(`# ${n} probe(s) left out: ${why}`);
  });

  for (const scenario of SCENARIOS) {
    describe(`${scenario.name} (upstream ${scenario.upstream})`, () => {
      let objects: Raw[] = [...baseCluster(), ...scenario.policies];
      for (const step of scenario.steps) {
        test(step.name, async (t) => {
          objects = applyChanges(objects, step.changes ?? []);
          await writeManifests(dir, '00-cluster.yaml', objects);
          for (const p of step.probes) {
            const why = leftOut(p);
            if (why !== undefined) left.set(why, (left.get(why) ?? 0) + 1);
          }
          const probes = portsOf(step.probes);
          if (probes.length === 0) {
            const why = [...new Set(step.probes.map(leftOut))].join('; ');
            t.skip(`every probe of this step is left out: ${why}`);
            return;
          }
          const { state } = await labSync({ lab, root });
          const observed = await probers!.run(state, probes, { timeoutMs: 1_500 });
          const analysis = await analyse([dir]);
          assert.deepEqual(analysis.issues, []);
          const failures = matrixDifferences(matrix(analysis.tables, probes), observed.matrix);
          for (const p of step.probes) {
            if (leftOut(p) !== undefined) continue;
            const [from, to, protocol, port, want] = p;
            const got = observed.matrix.probes.find(
              (m) => m.protocol === protocol && m.port === port,
            )?.allowed[podKey(from)]?.[podKey(to)];
            if (got !== want)
              failures.push(
                `${protocol}/${port} ${from} -> ${to}: upstream ${want ? 'ALLOWS' : 'DENIES'}, observed ${got === undefined ? 'nothing' : got ? 'allowed' : 'denied'}`,
              );
          }
          assert.ok(
            failures.length === 0,
            `${failures.join('\n')}\nfailed connections:\n${observed.failures.join('\n')}`,
          );
        });
      }
    });
  }
});
