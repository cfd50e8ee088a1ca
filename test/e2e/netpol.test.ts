/**
 * The upstream Kubernetes NetworkPolicy e2e cases (testing/netpol-cases.ts,
 * from kubernetes test/e2e/network/netpol) on real connections: one lab of
 * the x/y/z model on three nodes (pod a of every namespace on node-1, b on
 * node-2, c on node-3, so that every namespace pair has same-node and
 * cross-node pairs), the cases applied one after another by rewriting the
 * lab's directory (each case is a policy update of the one before: policies
 * created, changed and deleted, namespace and pod labels changed), every
 * observed matrix compared with `weirctl analyze matrix` on the same
 * manifests and with the upstream truth table.
 *
 * SCTP probes are left out: this kernel has no SCTP sockets. The cases run
 * are those of the upstream suite (WEIR_E2E_ALL=1 runs the others too).
 * Root and the kernel datapath only; CI runs it as root.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { analyse, matrix } from '../../cli/analysis.js';
import { labDown, labSync, labUp } from '../../cli/lab.js';
import { ProbeSession, matrixDifferences } from '../../cli/lab-probe.js';
import { parseProbe, type Probe } from '../../shared/policy/probe.js';
import { PODS, UPSTREAM_CASES, expectedMatrix, model } from '../../testing/netpol-cases.js';
import { enforcementSkip, writeManifests } from '../../testing/lab.js';

const skip = await enforcementSkip();
const NODE_OF: Record<string, string> = { a: 'node-1', b: 'node-2', c: 'node-3' };
const nodeOf = (target: string) => NODE_OF[target.split('/')[1]!]!;
const cases = UPSTREAM_CASES.filter(
  (c) =>
    (process.env.WEIR_E2E_ALL === '1' || c.e2e !== undefined) &&
    c.expect.some((p) => !p.probe.startsWith('SCTP/')),
);

describe('upstream NetworkPolicy e2e cases on real connections in the lab', { skip }, () => {
  let root: string;
  let dir: string;
  const lab = 'netpol';
  // One prober per pod for the whole suite, serving every port any case probes.
  let probers: ProbeSession | undefined;
  const serve = cases.flatMap((c) => c.expect.map((p) => parseProbe(p.probe) as Probe));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-lab-root-'));
    dir = await mkdtemp(join(tmpdir(), 'weir-lab-netpol-'));
    await writeManifests(dir, '00-cluster.yaml', model({}, nodeOf));
    const state = await labUp({ dir, lab, root, datapath: 'nftables' });
    probers = await ProbeSession.start(state, serve);
  });

  after(async () => {
    probers?.close();
    await labDown({ lab, root }).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  for (const c of cases) {
    test(c.name, async () => {
      await writeManifests(dir, '00-cluster.yaml', model(c.cluster, nodeOf));
      await writeManifests(dir, '10-policies.yaml', c.policies);
      const { state } = await labSync({ lab, root });
      const probes = c.expect
        .filter((p) => !p.probe.startsWith('SCTP/'))
        .map((p) => parseProbe(p.probe) as Probe);
      const observed = await probers!.run(state, probes, { timeoutMs: 1_500 });
      const analysis = await analyse([dir]);
      assert.deepEqual(analysis.issues, []);
      const failures = matrixDifferences(matrix(analysis.tables, probes), observed.matrix);
      for (const e of c.expect.filter((p) => !p.probe.startsWith('SCTP/'))) {
        const want = expectedMatrix(e.edits);
        const got = observed.matrix.probes.find((p) => `${p.protocol}/${p.port}` === e.probe)!;
        for (const f of PODS)
          for (const t of PODS)
            if (got.allowed[f]![t] !== want.get(`${f} ${t}`))
              failures.push(
                `${e.probe} ${f} -> ${t}: Kubernetes ${want.get(`${f} ${t}`) ? 'ALLOWS' : 'DENIES'}, observed ${got.allowed[f]![t] ? 'allowed' : 'denied'}`,
              );
      }
      assert.ok(
        failures.length === 0,
        `${c.e2e ? `[e2e: ${c.e2e}]\n` : ''}${failures.join('\n')}\nfailed connections:\n${observed.failures.join('\n')}`,
      );
    });
  }

  test('the lab runs at least 30 upstream cases', () => {
    assert.ok(cases.length >= 30, `${cases.length} cases`);
  });
});
