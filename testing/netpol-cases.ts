/**
 * The upstream Kubernetes e2e NetworkPolicy suite (kubernetes/kubernetes,
 * test/e2e/network/netpol/network_policy.go) as data: the x/y/z model, the
 * policies of each case and its e2e-style truth tables. Replayed through the
 * pipeline by test/policy/upstream-e2e.test.ts and on real connections in
 * the lab by test/e2e/.
 *
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
 */
import { namespace, pod, networkPolicy, type Raw } from './cluster.js';

// ---------------------------------------------------------------------------
// Model

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
export const PODS: readonly string[] = NAMESPACES.flatMap((ns) =>
  POD_NAMES.map((p) => `${ns}/${p}`),
);

export type Port = { name?: string; port: number; protocol?: string };
const SERVE_PORTS: Port[] = [80, 81].flatMap((port) =>
  ['TCP', 'UDP', 'SCTP'].map((protocol) => ({
    name: `serve-${port}-${protocol.toLowerCase()}`,
    port,
    protocol,
  })),
);

/** The address of "ns/pod" in the model. */
export function ip(target: string): string {
  const [ns, name] = target.split('/') as [string, string];
  return `10.0.${(NAMESPACES as readonly string[]).indexOf(ns) + 1}.${(POD_NAMES as readonly string[]).indexOf(name) + 1}`;
}

export interface Variation {
  /** Extra labels: "ns/pod" for a pod, "ns" for a namespace. */
  labels?: Record<string, Record<string, string>>;
  /** Extra container ports declared by "ns/pod", besides the six serve-* ports. */
  ports?: Record<string, Port[]>;
}

/** The model's objects; `nodeOf` places each pod ("ns/pod"), all on node-1 by default. */
export function model(
  v: Variation = {},
  nodeOf: (target: string) => string = () => 'node-1',
): Raw[] {
  return [
    ...NAMESPACES.map((ns) => namespace(ns, { ns, ...v.labels?.[ns] })),
    ...PODS.map((target) => {
      const [ns, name] = target.split('/') as [string, string];
      return pod(ns, name, {
        labels: { pod: name, ...v.labels?.[target] },
        ips: [ip(target)],
        ports: [...SERVE_PORTS, ...(v.ports?.[target] ?? [])],
        node: nodeOf(target),
      });
    }),
  ];
}

// ---------------------------------------------------------------------------
// Policy builders (API shape)

type Selector = Raw;
const labels = (matchLabels: Record<string, string>): Selector => ({ matchLabels });
const ALL: Selector = {};
function expr(
  key: string,
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist',
  values?: string[],
): Selector {
  return { matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] };
}
const podSel = (s: Selector): Raw => ({ podSelector: s });
const nsSel = (s: Selector): Raw => ({ namespaceSelector: s });
const both = (ns: Selector, pods: Selector): Raw => ({ namespaceSelector: ns, podSelector: pods });
const cidr = (block: string, except?: string[]): Raw => ({
  ipBlock: { cidr: block, ...(except ? { except } : {}) },
});
const nsName = (name: string): Selector => labels({ 'kubernetes.io/metadata.name': name });
const port = (p?: number | string, protocol?: string, endPort?: number): Raw => ({
  ...(p !== undefined ? { port: p } : {}),
  ...(protocol ? { protocol } : {}),
  ...(endPort !== undefined ? { endPort } : {}),
});
const from = (peers?: Raw[], ports?: Raw[]): Raw => ({
  ...(peers ? { from: peers } : {}),
  ...(ports ? { ports } : {}),
});
const to = (peers?: Raw[], ports?: Raw[]): Raw => ({
  ...(peers ? { to: peers } : {}),
  ...(ports ? { ports } : {}),
});

/** A policy the way the e2e helpers build it: policyTypes lists exactly the directions given. */
function policy(
  ns: string,
  name: string,
  podSelector: Selector,
  rules: { ingress?: Raw[]; egress?: Raw[] },
): Raw {
  const policyTypes = [...(rules.ingress ? ['Ingress'] : []), ...(rules.egress ? ['Egress'] : [])];
  return networkPolicy(ns, name, { podSelector, policyTypes, ...rules });
}
const ingress = (ns: string, name: string, s: Selector, ...rules: Raw[]) =>
  policy(ns, name, s, { ingress: rules });
const egress = (ns: string, name: string, s: Selector, ...rules: Raw[]) =>
  policy(ns, name, s, { egress: rules });
const denyIngress = (ns: string, s: Selector = ALL) => ingress(ns, 'deny-ingress', s);
const denyEgress = (ns: string, s: Selector = ALL) => egress(ns, 'deny-egress', s);

// ---------------------------------------------------------------------------
// Expectations

export const Y = true;
export const N = false;
export type Edit = readonly [from: string, to: string, allowed: boolean];
export interface Probe {
  readonly probe: string;
  readonly edits: readonly Edit[];
}
/** Everything allowed on `probe`, then the edits in order. */
const on = (probe: string, ...edits: Edit[]): Probe => ({ probe, edits });

export interface Case {
  /** What Kubernetes does, as a sentence. */
  name: string;
  /** The upstream e2e test this replays (its It() title), if any. */
  e2e?: string;
  cluster?: Variation;
  policies: Raw[];
  expect: Probe[];
  /** Checks against addresses outside the model: [from, to, probe, allowed]. */
  also?: Array<readonly [string, string, string, boolean]>;
}

export function matches(pattern: string, target: string): boolean {
  const [pn, pp] = pattern === '*' ? ['*', '*'] : (pattern.split('/') as [string, string]);
  const [tn, tp] = target.split('/') as [string, string];
  return (pn === '*' || pn === tn) && (pp === '*' || pp === tp);
}

export function expectedMatrix(edits: readonly Edit[]): Map<string, boolean> {
  const m = new Map<string, boolean>();
  for (const f of PODS) for (const t of PODS) m.set(`${f} ${t}`, true);
  for (const [fp, tp, allowed] of edits) {
    const hit = PODS.some((f) => matches(fp, f)) && PODS.some((t) => matches(tp, t));
    if (!hit) throw new Error(`expectation edit [${fp}, ${tp}] matches no pod pair`);
    for (const f of PODS)
      for (const t of PODS) if (matches(fp, f) && matches(tp, t)) m.set(`${f} ${t}`, allowed);
  }
  for (const p of PODS) m.set(`${p} ${p}`, true);
  return m;
}

// ---------------------------------------------------------------------------
// Cases

const X_A = labels({ pod: 'a' });
const NOT_X = expr('kubernetes.io/metadata.name', 'NotIn', ['x']);

export const UPSTREAM_CASES: Case[] = [
  // --- Upstream: "NetworkPolicy between server and client" -----------------
  {
    name: 'a policy with no ingress rules isolates every pod of its namespace for ingress and leaves egress alone',
    e2e: "should support a 'default-deny-ingress' policy",
    policies: [denyIngress('x')],
    expect: [on('TCP/80', ['*', 'x/*', N])],
  },
  {
    name: 'a policy with no ingress and no egress rules isolates its namespace in both directions',
    e2e: "should support a 'default-deny-all' policy",
    policies: [policy('x', 'deny-all', ALL, { ingress: [], egress: [] })],
    expect: [on('TCP/80', ['*', 'x/*', N], ['x/*', '*', N])],
  },
  {
    name: 'a podSelector peer admits only the matching pods of the policy’s own namespace',
    e2e: 'should enforce policy to allow traffic from pods within server namespace based on PodSelector',
    policies: [ingress('x', 'x-a-allows-x-b', X_A, from([podSel(labels({ pod: 'b' }))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y])],
  },
  {
    name: 'a second policy allowing all sources to one pod opens that pod alone under a namespace default-deny',
    e2e: 'should enforce policy to allow ingress traffic for a target',
    policies: [denyIngress('x'), ingress('x', 'allow-all-to-a', X_A, from([both(ALL, ALL)]))],
    expect: [on('TCP/80', ['*', 'x/b', N], ['*', 'x/c', N])],
  },
  {
    name: 'an empty namespaceSelector admits every pod in every namespace',
    e2e: 'should enforce policy to allow ingress traffic from pods in all namespaces',
    policies: [ingress('x', 'allow-from-another-ns', X_A, from([nsSel(labels({}))]))],
    expect: [on('TCP/80'), on('TCP/81')],
  },
  {
    name: 'a namespaceSelector peer admits every pod of the matching namespaces and no other',
    e2e: 'should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector',
    policies: [
      ingress('x', 'allow-client-a-via-ns-selector', X_A, from([nsSel(labels({ ns: 'y' }))])),
    ],
    expect: [on('TCP/80', ['x/*', 'x/a', N], ['z/*', 'x/a', N])],
  },
  {
    name: 'a podSelector peer with matchExpressions In admits the listed pods',
    e2e: 'should enforce policy based on PodSelector with MatchExpressions',
    policies: [ingress('x', 'x-a-allows-x-b', X_A, from([podSel(expr('pod', 'In', ['b']))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y])],
  },
  {
    name: 'a namespaceSelector peer with matchExpressions In admits the listed namespaces',
    e2e: 'should enforce policy based on NamespaceSelector with MatchExpressions',
    policies: [
      ingress(
        'x',
        'allow-ns-y-match-selector',
        X_A,
        from([nsSel(expr('kubernetes.io/metadata.name', 'In', ['y']))]),
      ),
    ],
    expect: [on('TCP/80', ['x/*', 'x/a', N], ['z/*', 'x/a', N])],
  },
  {
    name: 'two separate peers are ORed: other namespaces, or pod b of the own namespace',
    e2e: 'should enforce policy based on PodSelector or NamespaceSelector',
    policies: [
      ingress(
        'x',
        'allow-ns-y-match-selector',
        X_A,
        from([nsSel(NOT_X), podSel(labels({ pod: 'b' }))]),
      ),
    ],
    expect: [on('TCP/80', ['x/c', 'x/a', N])],
  },
  {
    name: 'namespaceSelector and podSelector in one peer are ANDed: pod b of namespaces other than x',
    e2e: 'should enforce policy based on PodSelector and NamespaceSelector',
    policies: [
      ingress(
        'x',
        'allow-ns-y-podselector-and-nsselector',
        X_A,
        from([both(NOT_X, labels({ pod: 'b' }))]),
      ),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['y/b', 'x/a', Y], ['z/b', 'x/a', Y])],
  },
  {
    name: 'an ANDed peer with matchExpressions on both selectors admits pods b and c of other namespaces',
    e2e: 'should enforce policy based on Multiple PodSelectors and NamespaceSelectors',
    policies: [
      ingress('x', 'allow-ns-y-z-pod-b-c', X_A, from([both(NOT_X, expr('pod', 'In', ['b', 'c']))])),
    ],
    expect: [on('TCP/80', ['x/*', 'x/a', N], ['*/a', 'x/a', N])],
  },
  {
    name: 'several podSelector peers in one rule admit the union of their pods',
    e2e: 'should enforce policy based on any PodSelectors',
    policies: [
      ingress(
        'x',
        'allow-ns-x-pod-b-c',
        X_A,
        from([podSel(labels({ pod: 'b' })), podSel(labels({ pod: 'c' }))]),
      ),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y], ['x/c', 'x/a', Y])],
  },
  {
    name: 'an ANDed peer with matchLabels admits exactly one pod of another namespace',
    e2e: 'should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector',
    policies: [ingress('x', 'allow-ns-y-pod-a', X_A, from([both(nsName('y'), X_A)]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['y/a', 'x/a', Y])],
  },
  {
    name: 'a rule with a numeric port admits its peers on that port only',
    e2e: 'should enforce policy based on Ports',
    policies: [ingress('x', 'allow-port-81', X_A, from([nsSel(nsName('y'))], [port(81, 'TCP')]))],
    expect: [
      on('TCP/81', ['x/*', 'x/a', N], ['z/*', 'x/a', N]),
      on('TCP/80', ['*', 'x/a', N]),
      on('UDP/81', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'stacked policies selecting the same pod are a union: a second policy opens port 80 as well',
    e2e: 'should enforce multiple, stacked policies with overlapping podSelectors',
    policies: [
      ingress('x', 'allow-port-81', X_A, from([nsSel(nsName('y'))], [port(81, 'TCP')])),
      ingress('x', 'allow-port-80', X_A, from([nsSel(nsName('y'))], [port(80, 'TCP')])),
    ],
    expect: [
      on('TCP/80', ['x/*', 'x/a', N], ['z/*', 'x/a', N]),
      on('TCP/81', ['x/*', 'x/a', N], ['z/*', 'x/a', N]),
      on('TCP/82', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'ingress: [{}] (one empty rule) admits everything on every port and protocol',
    e2e: 'should support allow-all policy',
    policies: [ingress('x', 'allow-all', ALL, {})],
    expect: [on('TCP/80'), on('TCP/81'), on('UDP/80'), on('SCTP/81')],
  },
  {
    name: 'a named port without a protocol admits the TCP container port of that name only',
    e2e: 'should allow ingress access on one named port',
    policies: [ingress('x', 'allow-81-by-name', ALL, from(undefined, [port('serve-81-tcp')]))],
    expect: [on('TCP/81'), on('TCP/80', ['*', 'x/*', N]), on('UDP/81', ['*', 'x/*', N])],
  },
  {
    name: 'a named port combined with a namespaceSelector admits that namespace on that port only',
    e2e: 'should allow ingress access from namespace on one named port',
    policies: [
      ingress(
        'x',
        'allow-y-80-by-name',
        X_A,
        from([nsSel(nsName('y'))], [port('serve-80-tcp', 'TCP')]),
      ),
    ],
    expect: [on('TCP/80', ['x/*', 'x/a', N], ['z/*', 'x/a', N]), on('TCP/81', ['*', 'x/a', N])],
  },
  {
    name: 'an egress named port is resolved on the destination pod',
    e2e: 'should allow egress access on one named port',
    policies: [egress('x', 'allow-egress-80-by-name', ALL, to(undefined, [port('serve-80-tcp')]))],
    expect: [on('TCP/80'), on('TCP/81', ['x/*', '*', N]), on('UDP/80', ['x/*', '*', N])],
  },
  {
    name: 'ingress: [] (no rules) denies every source, unlike ingress: [{}]',
    e2e: 'should enforce updated policy (after the update)',
    policies: [
      networkPolicy('x', 'allow-all-mutate-to-deny-all', {
        podSelector: {},
        policyTypes: ['Ingress'],
        ingress: [],
      }),
    ],
    expect: [on('TCP/81', ['*', 'x/*', N])],
  },
  {
    name: 'a namespaceSelector on a label no namespace carries admits nothing',
    e2e: 'should allow ingress access from updated namespace (before the label)',
    policies: [ingress('x', 'allow-ns2', X_A, from([nsSel(labels({ ns2: 'updated' }))]))],
    expect: [on('TCP/80', ['*', 'x/a', N])],
  },
  {
    name: 'a namespaceSelector admits a namespace once it carries the label',
    e2e: 'should allow ingress access from updated namespace (after the label)',
    cluster: { labels: { y: { ns2: 'updated' } } },
    policies: [ingress('x', 'allow-ns2', X_A, from([nsSel(labels({ ns2: 'updated' }))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['y/*', 'x/a', Y])],
  },
  {
    name: 'a podSelector with two labels does not admit a pod carrying only one of them',
    e2e: 'should allow ingress access from updated pod (before the label)',
    policies: [
      ingress('x', 'allow-pod2', X_A, from([podSel(labels({ pod: 'b', pod2: 'updated' }))])),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N])],
  },
  {
    name: 'a podSelector with two labels admits a pod once it carries both',
    e2e: 'should allow ingress access from updated pod (after the label)',
    cluster: { labels: { 'x/b': { pod2: 'updated' } } },
    policies: [
      ingress('x', 'allow-pod2', X_A, from([podSel(labels({ pod: 'b', pod2: 'updated' }))])),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y])],
  },
  {
    name: 'an empty podSelector peer admits all pods of the own namespace and none of the others',
    e2e: 'should deny ingress from pods on other namespaces',
    policies: [
      networkPolicy('x', 'deny-empty-policy', {
        podSelector: {},
        ingress: [{ from: [{ podSelector: { matchLabels: {} } }] }],
      }),
    ],
    expect: [on('TCP/80', ['y/*', 'x/*', N], ['z/*', 'x/*', N])],
  },
  {
    name: 'a policy whose podSelector matches no pod isolates nothing',
    e2e: 'should deny ingress access to updated pod (before the label)',
    policies: [denyIngress('x', labels({ target: 'isolated' }))],
    expect: [on('TCP/80')],
  },
  {
    name: 'a pod becomes isolated once it carries the label the policy selects',
    e2e: 'should deny ingress access to updated pod (after the label)',
    cluster: { labels: { 'x/a': { target: 'isolated' } } },
    policies: [denyIngress('x', labels({ target: 'isolated' }))],
    expect: [on('TCP/80', ['*', 'x/a', N])],
  },
  {
    name: 'an egress policy with no rules denies all egress from the selected pod only',
    e2e: 'should deny egress from pods based on PodSelector',
    policies: [denyEgress('x', X_A)],
    expect: [on('TCP/80', ['x/a', '*', N])],
  },
  {
    name: 'an egress policy with no rules and an empty podSelector denies all egress from the namespace',
    e2e: 'should deny egress from all pods in a namespace',
    policies: [denyEgress('x')],
    expect: [on('TCP/80', ['x/*', '*', N]), on('UDP/53', ['x/*', '*', N])],
  },
  {
    name: 'ingress and egress rules in one policy are enforced together',
    e2e: 'should work with Ingress, Egress specified together',
    policies: [
      policy('x', 'both', X_A, {
        ingress: [from([podSel(labels({ pod: 'b' }))])],
        egress: [to(undefined, [port(80)])],
      }),
    ],
    expect: [
      on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y]),
      on('TCP/81', ['*', 'x/a', N], ['x/a', '*', N], ['x/b', 'x/a', Y]),
    ],
  },
  {
    name: 'egress from the client must allow the connection even when the server’s ingress admits it',
    e2e: 'should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)',
    policies: [
      egress('x', 'allow-to-ns-y-pod-a', X_A, to([both(nsName('y'), X_A)])),
      ingress('y', 'allow-from-xa-on-ya', X_A, from([both(nsName('x'), X_A)])),
      ingress('y', 'allow-from-xa-on-yb', labels({ pod: 'b' }), from([both(nsName('x'), X_A)])),
    ],
    expect: [on('TCP/80', ['x/a', '*', N], ['*', 'y/a', N], ['x/a', 'y/a', Y], ['*', 'y/b', N])],
  },
  {
    name: 'an egress ANDed peer admits exactly one pod of another namespace',
    e2e: 'should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector',
    policies: [egress('x', 'allow-to-ns-y-pod-a', X_A, to([both(nsName('y'), X_A)]))],
    expect: [on('TCP/80', ['x/a', '*', N], ['x/a', 'y/a', Y])],
  },
  {
    name: 'a port entry with a protocol and no port admits every port of that protocol only',
    e2e: 'should enforce ingress policy allowing any port traffic to a server on a specific protocol',
    policies: [
      ingress('x', 'allow-ingress-by-proto', X_A, from(undefined, [port(undefined, 'TCP')])),
    ],
    expect: [
      on('TCP/80'),
      on('TCP/81'),
      on('TCP/65535'),
      on('UDP/80', ['*', 'x/a', N]),
      on('SCTP/80', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'a numeric port without a protocol means TCP',
    e2e: 'should enforce multiple ingress policies with ingress allow-all policy taking precedence (first policy alone)',
    policies: [ingress('x', 'allow-ingress-port-80', ALL, from(undefined, [port(80)]))],
    expect: [
      on('TCP/80'),
      on('TCP/81', ['*', 'x/*', N]),
      on('UDP/80', ['*', 'x/*', N]),
      on('SCTP/80', ['*', 'x/*', N]),
    ],
  },
  {
    name: 'an allow-all ingress policy opens what a narrower policy on the same pods leaves closed',
    e2e: 'should enforce multiple ingress policies with ingress allow-all policy taking precedence',
    policies: [
      ingress('x', 'allow-ingress-port-80', ALL, from(undefined, [port(80)])),
      ingress('x', 'allow-ingress', ALL, {}),
    ],
    expect: [on('TCP/81'), on('UDP/80')],
  },
  {
    name: 'an egress port without a protocol means TCP',
    e2e: 'should enforce multiple egress policies with egress allow-all policy taking precedence (first policy alone)',
    policies: [egress('x', 'allow-egress-port-80', ALL, to(undefined, [port(80)]))],
    expect: [on('TCP/80'), on('TCP/81', ['x/*', '*', N]), on('UDP/80', ['x/*', '*', N])],
  },
  {
    name: 'an allow-all egress policy opens what a narrower egress policy leaves closed',
    e2e: 'should enforce multiple egress policies with egress allow-all policy taking precedence',
    policies: [
      egress('x', 'allow-egress-port-80', ALL, to(undefined, [port(80)])),
      egress('x', 'allow-egress', ALL, {}),
    ],
    expect: [on('TCP/81'), on('UDP/80')],
  },
  {
    name: 'with no policies every pod reaches every pod',
    e2e: 'should stop enforcing policies after they are deleted (after the deletion)',
    policies: [],
    expect: [on('TCP/80'), on('UDP/81'), on('SCTP/80')],
  },
  {
    name: 'an egress ipBlock of one pod’s /32 admits that pod alone',
    e2e: 'should allow egress access to server in CIDR block',
    policies: [
      egress('x', 'allow-client-a-via-cidr-egress-rule', X_A, to([cidr(`${ip('y/b')}/32`)])),
    ],
    expect: [on('TCP/80', ['x/a', '*', N], ['x/a', 'y/b', Y])],
    also: [['x/a', '192.168.1.1', 'TCP/80', N]],
  },
  {
    name: 'an ipBlock except carves one pod’s /32 out of a large CIDR',
    e2e: 'should enforce except clause while egress access to server in CIDR block',
    policies: [
      egress(
        'x',
        'allow-client-a-via-cidr-egress-rule',
        X_A,
        to([cidr('0.0.0.0/4', [`${ip('x/b')}/32`])]),
      ),
    ],
    expect: [on('TCP/80', ['x/a', 'x/b', N])],
    also: [
      ['x/a', '10.200.0.1', 'TCP/80', Y],
      ['x/a', '16.0.0.1', 'TCP/80', N],
      ['x/a', '8.8.8.8', 'UDP/53', Y],
    ],
  },
  {
    name: 'an address excepted from one policy’s ipBlock is still admitted by another policy’s ipBlock',
    e2e: 'should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed',
    policies: [
      egress('x', 'allow-cidr-except-b', X_A, to([cidr('0.0.0.0/4', [`${ip('x/b')}/32`])])),
      egress('x', 'allow-b', X_A, to([cidr(`${ip('x/b')}/32`)])),
    ],
    expect: [on('TCP/80')],
  },
  {
    name: 'replacing the except policy with a /32 policy leaves egress to that pod alone',
    e2e: 'should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed (after the update)',
    policies: [
      egress('x', 'allow-client-a-via-cidr-egress-rule', X_A, to([cidr(`${ip('x/b')}/32`)])),
    ],
    expect: [on('TCP/80', ['x/a', '*', N], ['x/a', 'x/b', Y])],
  },
  {
    name: 'egress allow-all and ingress deny on the same pod are independent',
    e2e: 'should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector',
    policies: [egress('x', 'allow-egress-for-target', X_A, {}), denyIngress('x', X_A)],
    expect: [on('TCP/80', ['*', 'x/a', N])],
  },
  {
    name: 'an SCTP port rule does not admit TCP on the same port',
    e2e: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
    policies: [
      denyIngress('x'),
      ingress('x', 'allow-only-sctp-81', X_A, from(undefined, [port(81, 'SCTP')])),
    ],
    expect: [on('TCP/81', ['*', 'x/*', N]), on('SCTP/81', ['*', 'x/*', N], ['*', 'x/a', Y])],
  },
  {
    name: 'a policy admitting only SCTP still isolates the pod for TCP',
    e2e: "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
    policies: [ingress('x', 'allow-only-sctp-80', X_A, from(undefined, [port(80, 'SCTP')]))],
    expect: [
      on('TCP/81', ['*', 'x/a', N]),
      on('TCP/80', ['*', 'x/a', N]),
      on('SCTP/80'),
      on('SCTP/81', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'a UDP port rule does not admit TCP on the same port',
    e2e: 'should not allow access by TCP when a policy specifies only UDP',
    policies: [ingress('x', 'allow-only-udp-81', X_A, from(undefined, [port(81, 'UDP')]))],
    expect: [on('TCP/81', ['*', 'x/a', N]), on('UDP/81'), on('UDP/80', ['*', 'x/a', N])],
  },
  {
    name: 'namespaceSelector matchLabels on kubernetes.io/metadata.name works without the namespace labelling itself',
    e2e: 'should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label',
    policies: [ingress('x', 'allow-ns-y-immutable-label', X_A, from([nsSel(nsName('y'))]))],
    expect: [on('TCP/80', ['x/*', 'x/a', N], ['z/*', 'x/a', N])],
  },
  {
    name: 'an egress namespaceSelector NotIn on kubernetes.io/metadata.name excludes that namespace',
    e2e: 'should enforce policy based on NamespaceSelector with MatchExpressions using default ns label',
    policies: [
      egress(
        'x',
        'allow-not-y',
        X_A,
        to([nsSel(expr('kubernetes.io/metadata.name', 'NotIn', ['y']))]),
      ),
    ],
    expect: [on('TCP/80', ['x/a', 'y/*', N])],
  },
  // --- Upstream: "... using UDP" and "... using SCTP" ------------------------
  {
    name: 'default-deny ingress applies to UDP and SCTP as to TCP',
    e2e: "should support a 'default-deny-ingress' policy (UDP and SCTP contexts)",
    policies: [denyIngress('x')],
    expect: [
      on('UDP/80', ['*', 'x/*', N]),
      on('SCTP/80', ['*', 'x/*', N]),
      on('UDP/81', ['*', 'x/*', N]),
    ],
  },
  {
    name: 'a UDP port rule admits its namespace on that UDP port only',
    e2e: 'should enforce policy based on Ports (UDP context)',
    policies: [ingress('x', 'allow-81-udp', X_A, from([nsSel(nsName('y'))], [port(81, 'UDP')]))],
    expect: [
      on('UDP/81', ['x/*', 'x/a', N], ['z/*', 'x/a', N]),
      on('TCP/81', ['*', 'x/a', N]),
      on('UDP/80', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'an SCTP port rule admits its namespace on that SCTP port only',
    e2e: 'should enforce policy based on Ports (SCTP context)',
    policies: [ingress('x', 'allow-81-sctp', X_A, from([nsSel(nsName('y'))], [port(81, 'SCTP')]))],
    expect: [
      on('SCTP/81', ['x/*', 'x/a', N], ['z/*', 'x/a', N]),
      on('TCP/81', ['*', 'x/a', N]),
      on('UDP/81', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'a rule without ports admits an ANDed peer on UDP and SCTP alike',
    e2e: 'should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector (UDP and SCTP contexts)',
    policies: [ingress('x', 'allow-ns-y-pod-a', X_A, from([both(nsName('y'), X_A)]))],
    expect: [
      on('UDP/80', ['*', 'x/a', N], ['y/a', 'x/a', Y]),
      on('SCTP/80', ['*', 'x/a', N], ['y/a', 'x/a', Y]),
    ],
  },
  // --- Beyond the e2e suite -------------------------------------------------
  {
    name: 'a policy podSelector with NotIn selects every pod of its namespace except the listed ones',
    policies: [denyIngress('x', expr('pod', 'NotIn', ['a']))],
    expect: [on('TCP/80', ['*', 'x/b', N], ['*', 'x/c', N])],
  },
  {
    name: 'a policy podSelector with Exists selects the pods carrying the key, DoesNotExist the others',
    cluster: { labels: { 'x/b': { tier: 'front' } } },
    policies: [
      denyIngress('x', expr('tier', 'Exists')),
      denyEgress('x', expr('tier', 'DoesNotExist')),
    ],
    expect: [on('TCP/80', ['*', 'x/b', N], ['x/a', '*', N], ['x/c', '*', N])],
  },
  {
    name: 'a peer podSelector with Exists under an empty namespaceSelector admits the labelled pods of all namespaces',
    cluster: { labels: { 'x/b': { tier: 'front' }, 'z/c': { tier: 'back' } } },
    policies: [ingress('x', 'from-tiered', X_A, from([both(ALL, expr('tier', 'Exists'))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y], ['z/c', 'x/a', Y])],
  },
  {
    name: 'a peer podSelector with DoesNotExist admits the own-namespace pods lacking the key',
    cluster: { labels: { 'x/b': { tier: 'front' } } },
    policies: [ingress('x', 'from-untiered', X_A, from([podSel(expr('tier', 'DoesNotExist'))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/c', 'x/a', Y])],
  },
  {
    name: 'a peer namespaceSelector with DoesNotExist admits the namespaces lacking the key',
    cluster: { labels: { y: { restricted: 'true' } } },
    policies: [
      ingress('x', 'from-unrestricted', ALL, from([nsSel(expr('restricted', 'DoesNotExist'))])),
    ],
    expect: [on('TCP/80', ['y/*', 'x/*', N])],
  },
  {
    name: 'a peer namespaceSelector with Exists on the ns label admits every namespace',
    policies: [ingress('x', 'from-any-labelled-ns', X_A, from([nsSel(expr('ns', 'Exists'))]))],
    expect: [on('TCP/80')],
  },
  {
    name: 'an empty namespaceSelector ANDed with a podSelector admits that pod name in every namespace',
    policies: [ingress('x', 'from-any-b', X_A, from([both(ALL, labels({ pod: 'b' }))]))],
    expect: [on('TCP/80', ['*', 'x/a', N], ['*/b', 'x/a', Y])],
  },
  {
    name: 'a podSelector alone in a peer never reaches into other namespaces',
    policies: [ingress('y', 'from-own-a', ALL, from([podSel(X_A)]))],
    expect: [on('TCP/80', ['*', 'y/*', N], ['y/a', 'y/*', Y])],
  },
  {
    name: 'an ingress named port admits each pod on its own number, and not pods that do not declare it',
    cluster: {
      ports: {
        'x/a': [{ name: 'http-alt', port: 8080, protocol: 'TCP' }],
        'x/b': [{ name: 'http-alt', port: 9090, protocol: 'TCP' }],
      },
    },
    policies: [ingress('x', 'allow-http-alt', ALL, from(undefined, [port('http-alt')]))],
    expect: [
      on('TCP/8080', ['*', 'x/b', N], ['*', 'x/c', N]),
      on('TCP/9090', ['*', 'x/a', N], ['*', 'x/c', N]),
      on('TCP/80', ['*', 'x/*', N]),
    ],
  },
  {
    name: 'an egress named port admits only destinations that declare it, each on its own number',
    cluster: {
      ports: {
        'y/a': [{ name: 'http-alt', port: 8080 }],
        'y/b': [{ name: 'http-alt', port: 9090 }],
      },
    },
    policies: [egress('x', 'to-http-alt', X_A, to(undefined, [port('http-alt')]))],
    expect: [
      on('TCP/8080', ['x/a', '*', N], ['x/a', 'y/a', Y]),
      on('TCP/9090', ['x/a', '*', N], ['x/a', 'y/b', Y]),
      on('UDP/8080', ['x/a', '*', N]),
    ],
  },
  {
    name: 'a named port with an explicit protocol does not match a same-named port of another protocol',
    cluster: {
      ports: {
        'x/b': [{ name: 'dns', port: 53, protocol: 'UDP' }],
        'x/c': [{ name: 'dns', port: 53, protocol: 'TCP' }],
      },
    },
    policies: [ingress('x', 'allow-dns-udp', ALL, from(undefined, [port('dns', 'UDP')]))],
    expect: [on('UDP/53', ['*', 'x/a', N], ['*', 'x/c', N]), on('TCP/53', ['*', 'x/*', N])],
  },
  {
    name: 'an ingress endPort range admits every port from port to endPort inclusive',
    policies: [ingress('x', 'allow-range', X_A, from(undefined, [port(81, 'TCP', 90)]))],
    expect: [
      on('TCP/80', ['*', 'x/a', N]),
      on('TCP/81'),
      on('TCP/85'),
      on('TCP/90'),
      on('TCP/91', ['*', 'x/a', N]),
      on('UDP/85', ['*', 'x/a', N]),
    ],
  },
  {
    name: 'an egress endPort range without a protocol is a TCP range',
    policies: [
      egress('x', 'egress-range', ALL, to([nsSel(nsName('y'))], [port(80, undefined, 81)])),
    ],
    expect: [
      on('TCP/80', ['x/*', '*', N], ['x/*', 'y/*', Y]),
      on('TCP/81', ['x/*', '*', N], ['x/*', 'y/*', Y]),
      on('TCP/82', ['x/*', '*', N]),
      on('UDP/80', ['x/*', '*', N]),
    ],
  },
  {
    name: 'an ingress ipBlock with an except admits the block’s pods and outside addresses but not the excepted pod',
    policies: [
      ingress('x', 'from-y-subnet', X_A, from([cidr('10.0.2.0/24', [`${ip('y/b')}/32`])])),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['y/a', 'x/a', Y], ['y/c', 'x/a', Y])],
    also: [
      ['10.0.2.200', 'x/a', 'TCP/80', Y],
      ['10.0.3.200', 'x/a', 'TCP/80', N],
      ['10.0.3.200', 'x/b', 'TCP/80', Y],
    ],
  },
  {
    name: 'an egress ipBlock of 0.0.0.0/0 except the pod network reaches the outside but no pod',
    policies: [egress('x', 'internet-only', X_A, to([cidr('0.0.0.0/0', ['10.0.0.0/8'])]))],
    expect: [on('TCP/80', ['x/a', '*', N])],
    also: [
      ['x/a', '8.8.8.8', 'TCP/443', Y],
      ['x/a', '10.1.1.1', 'TCP/443', N],
      ['x/b', '10.1.1.1', 'TCP/443', Y],
    ],
  },
  {
    name: 'deny-all with an egress exception for DNS admits UDP 53 to anywhere and nothing else',
    policies: [
      policy('x', 'deny-all-tcp-allow-dns', ALL, {
        ingress: [],
        egress: [to(undefined, [port(53, 'UDP')])],
      }),
    ],
    expect: [
      on('UDP/53', ['*', 'x/*', N]),
      on('TCP/53', ['*', 'x/*', N], ['x/*', '*', N]),
      on('TCP/80', ['*', 'x/*', N], ['x/*', '*', N]),
    ],
    also: [
      ['x/a', '10.96.0.10', 'UDP/53', Y],
      ['x/a', '10.96.0.10', 'TCP/53', N],
      ['x/a', '8.8.8.8', 'TCP/443', N],
    ],
  },
  {
    name: 'without policyTypes, a policy with only ingress rules isolates ingress only',
    policies: [
      networkPolicy('x', 'defaulted-ingress', {
        podSelector: X_A,
        ingress: [from([podSel(labels({ pod: 'b' }))])],
      }),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y])],
  },
  {
    name: 'without policyTypes, a policy with egress rules isolates egress and ingress (and has no ingress rules)',
    policies: [
      networkPolicy('x', 'defaulted-both', { podSelector: X_A, egress: [to([podSel(ALL)])] }),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/a', 'y/*', N], ['x/a', 'z/*', N])],
  },
  {
    name: 'policyTypes [Egress] ignores the policy’s ingress rules and leaves ingress open',
    policies: [
      networkPolicy('x', 'egress-only', {
        podSelector: X_A,
        policyTypes: ['Egress'],
        ingress: [from([podSel(labels({ pod: 'b' }))])],
        egress: [{}],
      }),
    ],
    expect: [on('TCP/80')],
  },
  {
    name: 'policyTypes [Ingress] ignores the policy’s egress rules and leaves egress open',
    policies: [
      networkPolicy('x', 'ingress-only', {
        podSelector: X_A,
        policyTypes: ['Ingress'],
        ingress: [{}],
        egress: [to([podSel(labels({ pod: 'b' }))])],
      }),
    ],
    expect: [on('TCP/80')],
  },
  {
    name: 'policyTypes [Ingress] with no ingress field at all denies all ingress',
    policies: [
      networkPolicy('x', 'ingress-absent', { podSelector: ALL, policyTypes: ['Ingress'] }),
    ],
    expect: [on('TCP/80', ['*', 'x/*', N])],
  },
  {
    name: 'a rule with from: [] and ports: [] admits every source on every port',
    policies: [ingress('x', 'empty-lists', ALL, { from: [], ports: [] })],
    expect: [on('TCP/80'), on('UDP/81'), on('SCTP/80')],
  },
  {
    name: 'rules of one policy are a union, each with its own ports: peers do not borrow another rule’s ports',
    policies: [
      ingress(
        'x',
        'two-rules',
        X_A,
        from([podSel(labels({ pod: 'b' }))], [port(80)]),
        from([nsSel(nsName('z'))], [port(81)]),
      ),
    ],
    expect: [
      on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y]),
      on('TCP/81', ['*', 'x/a', N], ['z/*', 'x/a', Y]),
    ],
  },
  {
    name: 'two policies with different peers on the same pod are a union',
    policies: [
      ingress('x', 'from-b', X_A, from([podSel(labels({ pod: 'b' }))])),
      ingress('x', 'from-y', X_A, from([nsSel(labels({ ns: 'y' }))])),
    ],
    expect: [on('TCP/80', ['*', 'x/a', N], ['x/b', 'x/a', Y], ['y/*', 'x/a', Y])],
  },
  {
    name: 'a policy only governs pods of its own namespace even when its selector matches pods elsewhere',
    policies: [denyIngress('z', X_A), denyEgress('y', labels({ pod: 'c' }))],
    expect: [on('TCP/80', ['*', 'z/a', N], ['y/c', '*', N])],
  },
];
