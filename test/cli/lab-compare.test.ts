/**
 * `weirctl lab probe --compare`: every cell where the lab's observed matrix
 * and the analysis disagree is a difference, in both directions and per
 * address family; pods only one side has are differences too. (The lab's
 * own runs are in test/e2e/.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Matrix } from '../../cli/analysis.js';
import { matrixDifferences } from '../../cli/lab-probe.js';

const PODS = ['a/x', 'a/y'];
const all = (v: boolean) =>
  Object.fromEntries(PODS.map((f) => [f, Object.fromEntries(PODS.map((t) => [t, v]))]));
const m = (
  allowed: Matrix['probes'][number]['allowed'],
  extra: Partial<Matrix['probes'][number]> = {},
  pods = PODS,
): Matrix => ({
  pods,
  probes: [{ protocol: 'TCP', port: 80, allowed, ...extra }],
});

describe('lab probe --compare', () => {
  const cases: Array<[string, Matrix, Matrix, string[]]> = [
    ['equal matrices have no difference', m(all(true)), m(all(true)), []],
    [
      'a cell the analysis denies and the lab let through is a difference',
      m({ ...all(true), 'a/x': { 'a/x': true, 'a/y': false } }),
      m(all(true)),
      ['TCP/80 a/x -> a/y: analysis denied, observed allowed'],
    ],
    [
      'a cell the analysis allows and the lab blocked is a difference',
      m(all(true)),
      m({ ...all(true), 'a/y': { 'a/x': false, 'a/y': true } }),
      ['TCP/80 a/y -> a/x: analysis allowed, observed denied'],
    ],
    [
      'families that disagree differently are a difference, whatever their order',
      m(all(false), { families: { 'a/x': { 'a/y': { IPv4: true, IPv6: false } } } }),
      m(all(false), { families: { 'a/x': { 'a/y': { IPv6: true, IPv4: false } } } }),
      [
        'TCP/80 a/x -> a/y: analysis denied (IPv4 allowed, IPv6 denied), observed denied (IPv6 allowed, IPv4 denied)',
      ],
    ],
    [
      'the same families in another order are no difference',
      m(all(false), { families: { 'a/x': { 'a/y': { IPv4: true, IPv6: false } } } }),
      m(all(false), { families: { 'a/x': { 'a/y': { IPv6: false, IPv4: true } } } }),
      [],
    ],
    [
      'a pod only the lab has is a difference',
      m(all(true)),
      m({ ...all(true), 'a/z': { 'a/x': true } }, {}, [...PODS, 'a/z']),
      ['pod a/z: in the lab, not in the analysis'],
    ],
  ];
  for (const [name, analysis, observed, want] of cases)
    test(name, () => assert.deepEqual(matrixDifferences(analysis, observed), want));
});
