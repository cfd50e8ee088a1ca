/**
 * Which addresses a probe is about (shared/policy/probe.ts, behind `weirctl
 * analyze probe`, the controller's Explain and an agent's Evaluate): an
 * address is used as given, a pod is resolved in the other end's family, and
 * two dual-stack pods are checked in every family they share. And what the
 * explanation says of traffic with the pod's own node.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ValidationError } from '../../shared/errors.js';
import { probe, resolveTarget, type Target } from '../../shared/policy/probe.js';
import type { RuleTables } from '../../shared/policy/rule-tables.js';
import { build, namespace, networkPolicy, node, pod } from '../../testing/cluster.js';

/** srv admits its IPv4 clients only: a verdict that differs by family. */
function dualStack(): RuleTables {
  const { tables, issues } = build([
    namespace('a'),
    pod('a', 'cli', { labels: { app: 'cli' }, ips: ['10.0.2.1', 'fd00:2::1'] }),
    pod('a', 'srv', { labels: { app: 'srv' }, ips: ['10.0.1.1', 'fd00:1::1'] }),
    pod('a', 'v4only', { labels: { app: 'v4' }, ips: ['10.0.3.1'] }),
    pod('a', 'v6only', { labels: { app: 'v6' }, ips: ['fd00:4::1'] }),
    networkPolicy('a', 'srv-v4', {
      podSelector: { matchLabels: { app: 'srv' } },
      ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16' } }] }],
    }),
  ]);
  assert.deepEqual(issues, []);
  return tables;
}

function target(tables: RuleTables, text: string): Target {
  const t = resolveTarget(tables, text);
  if (typeof t === 'string') throw new Error(t);
  return t;
}

const TCP80 = { protocol: 'TCP', port: 80 } as const;

describe('probe resolution', () => {
  test('an explicit IPv6 source address is used as given and the pod target is resolved in IPv6', () => {
    const t = dualStack();
    const e = probe(t, target(t, 'fd00:2::1'), target(t, 'a/srv'), TCP80);
    assert.deepEqual([e.from.ip, e.to.ip], ['fd00:2::1', 'fd00:1::1']);
    assert.equal(e.from.endpoint, 'a/cli');
    assert.equal(e.allowed, false, 'srv admits only 10.0.0.0/16');
    assert.equal(e.families, undefined);
  });

  test('an explicit IPv6 destination address is reached from the pod source in IPv6', () => {
    const t = dualStack();
    const e = probe(t, target(t, 'a/cli'), target(t, 'fd00:1::1'), TCP80);
    assert.deepEqual([e.from.ip, e.to.ip, e.allowed], ['fd00:2::1', 'fd00:1::1', false]);
    const v4 = probe(t, target(t, 'a/cli'), target(t, '10.0.1.1'), TCP80);
    assert.deepEqual([v4.from.ip, v4.to.ip, v4.allowed], ['10.0.2.1', '10.0.1.1', true]);
  });

  test('a probe between two dual-stack pods checks both families and is allowed only when both allow', () => {
    const t = dualStack();
    const e = probe(t, target(t, 'a/cli'), target(t, 'a/srv'), TCP80);
    assert.equal(e.allowed, false);
    assert.deepEqual(
      e.families?.map((f) => [f.family, f.from.ip, f.to.ip, f.allowed]),
      [
        ['IPv4', '10.0.2.1', '10.0.1.1', true],
        ['IPv6', 'fd00:2::1', 'fd00:1::1', false],
      ],
    );
    assert.equal(e.family, 'IPv6', 'the top level explains the family that denied');
    assert.equal(e.to.ip, 'fd00:1::1');
  });

  test('a dual-stack pod and a single-stack pod are checked in the one family they share', () => {
    const t = dualStack();
    const e = probe(t, target(t, 'a/v4only'), target(t, 'a/srv'), TCP80);
    assert.deepEqual(
      [e.from.ip, e.to.ip, e.allowed, e.families],
      ['10.0.3.1', '10.0.1.1', true, undefined],
    );
  });

  test('ends that share no address family are refused, naming the field', () => {
    const t = dualStack();
    for (const [from, to, field, message] of [
      ['a/v4only', 'a/v6only', 'to', /no address family in common/],
      ['fd00:9::9', 'a/v4only', 'to', /a\/v4only has no IPv6 address/],
      ['a/v6only', '10.9.9.9', 'from', /a\/v6only has no IPv4 address/],
    ] as const) {
      assert.throws(
        () => probe(t, target(t, from), target(t, to), TCP80),
        (err: unknown) =>
          err instanceof ValidationError &&
          err.issues[0]?.field === field &&
          message.test(err.issues[0].message),
        `${from} -> ${to}`,
      );
    }
  });

  test('an explanation of traffic between a pod and its own node says that the isolating NetworkPolicy tier allows it', () => {
    const { tables, issues } = build([
      namespace('a'),
      node('n1', ['192.168.0.1']),
      node('n2', ['192.168.0.2']),
      pod('a', 'srv', { ips: ['10.0.1.1'], node: 'n1' }),
      networkPolicy('a', 'deny', { podSelector: {} }),
    ]);
    assert.deepEqual(issues, []);
    const own = probe(tables, target(tables, '192.168.0.1'), target(tables, 'a/srv'), TCP80);
    assert.equal(own.allowed, true);
    assert.equal(own.ingress.tier, 'node');
    assert.equal(
      own.ingress.reason,
      'isolated for ingress by a/deny; traffic between a pod and its own node is allowed by the NetworkPolicy tier: 192.168.0.1 is an address of node n1, where a/srv runs',
    );
    assert.deepEqual(
      own.ingress.policies.map((p) => p.name),
      ['deny'],
      'the policies that isolate the pod are still named',
    );
    const other = probe(tables, target(tables, '192.168.0.2'), target(tables, 'a/srv'), TCP80);
    assert.deepEqual([other.allowed, other.ingress.tier], [false, 'namespace']);
  });
});
