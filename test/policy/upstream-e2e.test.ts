/**
 * The upstream Kubernetes e2e NetworkPolicy suite (kubernetes/kubernetes,
 * test/e2e/network/netpol/network_policy.go), replayed as table tests
 * through Weir's real pipeline, plus cases for the corners of the API the
 * e2e suite does not reach (matchExpressions operators, named ports only
 * some pods declare, endPort, ipBlock ingress, policyTypes defaulting, ...).
 *
 * Model (as the e2e suite builds it): namespaces x, y, z labelled ns=<name>
 * (the pipeline adds kubernetes.io/metadata.name itself), pods a, b, c in each
 * labelled pod=<name>, every pod declaring container ports 80 and 81 on TCP,
 * UDP and SCTP named serve-<port>-<protocol>. Pod ns[i]/pod[j] has address
 * 10.0.<i+1>.<j+1>.
 *
 * Expectations are e2e-style truth tables: everything allowed, then a list
 * of [from, to, allowed] edits applied in order, where from/to are "x/a",
 * "x/*" (a namespace), "*\/a" (a pod name in every namespace) or "*". Every
 * probe checks all 81 (from, to) pairs; a pod talking to itself is always
 * allowed. `also` adds checks against addresses outside the pod network.
 * The cases are data in testing/netpol-cases.ts, shared with the lab e2e suite.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { build, allows } from '../../testing/cluster.js';
import {
  PODS,
  UPSTREAM_CASES as cases,
  expectedMatrix,
  model,
  type Probe,
} from '../../testing/netpol-cases.js';

function table(cell: (from: string, to: string) => string): string {
  const head = ['-', ...PODS].join('\t');
  return [head, ...PODS.map((f) => [f, ...PODS.map((t) => cell(f, t))].join('\t'))].join('\n');
}

function checkProbe(tables: ReturnType<typeof build>['tables'], p: Probe): string | undefined {
  const want = expectedMatrix(p.edits);
  const wrong: string[] = [];
  const got = new Map<string, boolean>();
  for (const f of PODS) {
    for (const t of PODS) {
      const verdict = allows(tables, f, t, p.probe);
      got.set(`${f} ${t}`, verdict);
      if (verdict !== want.get(`${f} ${t}`)) {
        wrong.push(
          `  ${f} -> ${t}: Kubernetes ${want.get(`${f} ${t}`) ? 'ALLOWS' : 'DENIES'}, Weir ${verdict ? 'allowed' : 'denied'}`,
        );
      }
    }
  }
  if (wrong.length === 0) return undefined;
  const mark = (b: boolean | undefined) => (b ? '.' : 'X');
  return [
    `${p.probe}: ${wrong.length} of 81 pairs differ (from -> to):`,
    ...wrong,
    `expected (. allowed, X denied):`,
    table((f, t) => mark(want.get(`${f} ${t}`))),
    `observed (* marks a difference):`,
    table(
      (f, t) =>
        mark(got.get(`${f} ${t}`)) + (got.get(`${f} ${t}`) === want.get(`${f} ${t}`) ? '' : '*'),
    ),
  ].join('\n');
}

// ---------------------------------------------------------------------------

describe('upstream Kubernetes e2e NetworkPolicy cases, on the full 9x9 x/y/z model', () => {
  for (const c of cases) {
    test(c.name, () => {
      const built = build([...model(c.cluster), ...c.policies]);
      assert.deepEqual(built.issues, [], 'fixture must be valid');
      const failures = c.expect
        .map((p) => checkProbe(built.tables, p))
        .filter((f): f is string => f !== undefined);
      for (const [f, t, probe, want] of c.also ?? []) {
        const got = allows(built.tables, f, t, probe);
        if (got !== want)
          failures.push(
            `${probe}: ${f} -> ${t}: Kubernetes ${want ? 'ALLOWS' : 'DENIES'}, Weir ${got ? 'allowed' : 'denied'}`,
          );
      }
      assert.ok(
        failures.length === 0,
        `${c.e2e ? `[e2e: ${c.e2e}]\n` : ''}${failures.join('\n\n')}`,
      );
    });
  }

  test('the case table has unique names and at least 40 cases', () => {
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
    assert.ok(cases.length >= 40);
  });
});
