/**
 * The Weir console's pages, in the browser: no framework, the DOM built
 * with `h`, routing by fragment (#/cluster, #/policy/ID, #/matrix,
 * #/flows, #/explain). Everything it shows comes from the controller's
 * /api/ (controller/console/console-api.ts); nothing is decided here.
 * Elements the browser tests read carry data-* attributes (data-node,
 * data-field, data-from/data-to): they are the page's contract with them.
 */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((e: Event) => void) | undefined>;

function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children)
    if (c !== null && c !== undefined && c !== false)
      el.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  return el;
}

const main = () => document.getElementById('main')!;

class ApiError extends Error {
  constructor(
    message: string,
    readonly problems: Array<{ field: string; message: string }> = [],
  ) {
    super(message);
  }
}

async function api<T>(path: string, params: Record<string, string> = {}): Promise<T> {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== ''));
  const res = await fetch(`/api/${path}${q.size > 0 ? `?${q}` : ''}`);
  const body = await res.json();
  if (!res.ok) throw new ApiError(body.error ?? res.statusText, body.problems ?? []);
  return body as T;
}

function errorBox(err: unknown): HTMLElement {
  const e = err as ApiError;
  return h(
    'div',
    { class: 'error', role: 'alert' },
    e.message,
    e.problems?.length
      ? h('ul', {}, ...e.problems.map((p) => h('li', {}, h('code', {}, p.field), ': ', p.message)))
      : null,
  );
}

const mark = (ok: boolean) => h('span', { class: ok ? 'ok' : 'bad' }, ok ? '✓' : '✗');
const when = (t: string | null) =>
  t === null ? h('span', { class: 'muted' }, 'never') : new Date(t).toLocaleString();
const table = (head: string[], rows: HTMLElement[], attrs: Attrs = {}) =>
  h(
    'table',
    attrs,
    h('thead', {}, h('tr', {}, ...head.map((c) => h('th', {}, c)))),
    h('tbody', {}, ...rows),
  );

// --- the cluster ---------------------------------------------------------------

interface Agent {
  node: string;
  connected: boolean;
  inSync: boolean;
  appliedRevision: number;
  spanRevision: number;
  lagRevisions: number;
  spanHash: string;
  inForceHash: string;
  hashesEqual: boolean;
  pending: number;
  lastError: string;
  lastAck: string | null;
  apiAddress: string;
}
interface Cluster {
  cluster: string;
  revision: number;
  source: { kind: string; location: string; synced: boolean; lastError: string };
  policies: number;
  endpoints: number;
  insecure: boolean;
  warnings: string[];
  agents: Agent[];
  rejected: Array<{ object: string; problems: Array<{ field: string; message: string }> }>;
}
interface PolicyRow {
  id: string;
  kind: string;
  namespace: string;
  name: string;
  tier: string;
  selected: number;
  nodes: number;
  applied: number;
  rules: number;
}

async function clusterPage(): Promise<HTMLElement> {
  const [c, p] = await Promise.all([
    api<Cluster>('cluster'),
    api<{ policies: PolicyRow[] }>('policies'),
  ]);
  document.getElementById('revision')!.textContent = `${c.cluster} · revision ${c.revision}`;
  const hash = (v: string) =>
    v === '' ? h('span', { class: 'muted' }, 'none') : h('code', { class: 'hash', title: v }, v);
  const agents = c.agents.map((a) =>
    h(
      'tr',
      { 'data-node': a.node, 'data-in-sync': String(a.inSync) },
      h('td', { 'data-field': 'node' }, a.node),
      h('td', { 'data-field': 'connected' }, mark(a.connected)),
      h('td', { 'data-field': 'inSync' }, mark(a.inSync), a.inSync ? ' in sync' : ' not in sync'),
      h('td', { 'data-field': 'appliedRevision' }, a.appliedRevision),
      h('td', { 'data-field': 'spanRevision' }, a.spanRevision),
      h('td', { 'data-field': 'lag' }, a.lagRevisions === 0 ? '0' : `${a.lagRevisions} behind`),
      h('td', { 'data-field': 'spanHash', 'data-value': a.spanHash }, hash(a.spanHash)),
      h('td', { 'data-field': 'inForceHash', 'data-value': a.inForceHash }, hash(a.inForceHash)),
      h('td', { 'data-field': 'hashesEqual' }, mark(a.hashesEqual)),
      h('td', {}, when(a.lastAck)),
      h('td', {}, a.lastError || h('span', { class: 'muted' }, '—')),
    ),
  );
  return h(
    'section',
    { id: 'cluster' },
    h('h1', {}, `Cluster ${c.cluster}`),
    h(
      'p',
      {},
      `Revision ${c.revision} · source ${c.source.kind} ${c.source.location} `,
      c.source.synced ? mark(true) : h('span', { class: 'bad' }, 'not synced'),
      ` · ${c.policies} policies · ${c.endpoints} endpoints`,
    ),
    c.insecure
      ? h(
          'div',
          { class: 'warning' },
          'The controller runs with --insecure: no TLS, no client authentication.',
        )
      : null,
    ...c.warnings.map((w) => h('div', { class: 'warning' }, w)),
    h('h2', {}, 'Agents'),
    h(
      'p',
      { class: 'muted' },
      'In sync means: connected, the source synced, and the hash of the span the agent has in force equal to the hash the controller computed for its node.',
    ),
    table(
      [
        'Node',
        'Connected',
        'In sync',
        'Applied',
        'Span rev.',
        'Lag',
        'Span hash (controller)',
        'In-force hash (agent)',
        'Equal',
        'Last ACK',
        'Last error',
      ],
      agents,
      { id: 'agents' },
    ),
    h('h2', {}, `Rejected objects (${c.rejected.length})`),
    c.rejected.length === 0
      ? h('p', { class: 'muted' }, 'None: every object is valid and enforced.')
      : table(
          ['Object', 'Field', 'Problem'],
          c.rejected.flatMap((r) =>
            r.problems.map((p, i) =>
              h(
                'tr',
                { 'data-object': r.object },
                h('td', {}, i === 0 ? r.object : ''),
                h('td', {}, h('code', {}, p.field)),
                h('td', {}, p.message),
              ),
            ),
          ),
          { id: 'rejected' },
        ),
    h('h2', {}, 'Policies, in evaluation order'),
    table(
      ['Policy', 'Kind', 'Tier', 'Rules', 'Selects', 'On nodes', 'Proved on'],
      p.policies.map((x) =>
        h(
          'tr',
          { 'data-policy': x.id },
          h(
            'td',
            {},
            h(
              'a',
              { href: `#/policy/${encodeURIComponent(x.id)}` },
              x.namespace ? `${x.namespace}/${x.name}` : `cnp/${x.name}`,
            ),
          ),
          h('td', {}, x.kind),
          h('td', {}, x.tier),
          h('td', {}, x.rules),
          h('td', {}, `${x.selected} pods`),
          h('td', {}, x.nodes),
          h(
            'td',
            {},
            x.applied === x.nodes
              ? mark(true)
              : h('span', { class: 'bad' }, `${x.applied}/${x.nodes}`),
          ),
        ),
      ),
      { id: 'policies' },
    ),
  );
}

// --- reachability ----------------------------------------------------------------

interface MatrixProbe {
  protocol: string;
  port: number;
  allowed: Record<string, Record<string, boolean>>;
  families?: Record<string, Record<string, Record<string, boolean>>>;
  grants?: Record<string, string[]>;
  isolates?: Record<string, string[]>;
}
interface Matrix {
  pods: string[];
  probes: MatrixProbe[];
  policy?: string;
}

function matrixView(m: Matrix): HTMLElement {
  if (m.pods.length === 0) return h('p', { class: 'muted' }, 'No pods with addresses here.');
  return h(
    'div',
    {},
    ...m.probes.map((p) =>
      h(
        'div',
        {},
        h('h2', {}, `${p.protocol}/${p.port}`),
        h(
          'table',
          { class: 'matrix', 'data-probe': `${p.protocol}/${p.port}` },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'from ↓ to →'),
              ...m.pods.map((to) => h('th', { class: 'to' }, to)),
            ),
          ),
          h(
            'tbody',
            {},
            ...m.pods.map((from) =>
              h(
                'tr',
                {},
                h('th', {}, from),
                ...m.pods.map((to) => {
                  const ok = p.allowed[from]?.[to] === true;
                  const granted = p.grants?.[from]?.includes(to) === true;
                  const isolated = p.isolates?.[from]?.includes(to) === true;
                  const fam = p.families?.[from]?.[to];
                  const title = `${from} → ${to} ${p.protocol}/${p.port}: ${ok ? 'allowed' : 'denied'}${granted ? ', granted by this policy' : ''}${isolated ? ', denied: this policy isolates and no rule allows' : ''}${
                    fam
                      ? ` (${
                          Object.entries(fam)
                            .map(([f, v]) => `${f} ${v ? 'allowed' : 'denied'}`)
                            .join(', ') || 'no address family in common'
                        })`
                      : ''
                  }`;
                  return h(
                    'td',
                    {
                      class: `${ok ? 'allow' : 'deny'}${granted ? ' granted' : ''}${isolated ? ' isolated' : ''}`,
                      'data-from': from,
                      'data-to': to,
                      'data-allowed': String(ok),
                      title,
                    },
                    ok ? '✓' : '✗',
                    fam ? '*' : '',
                  );
                }),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** A matrix form and its grid: namespace(s), pods, probes; `policy` marks what it grants. */
async function matrixPanel(initial: Record<string, string>, policy?: string): Promise<HTMLElement> {
  const pods = await api<Array<{ pod: string; namespace: string }>>('pods');
  const namespaces = [...new Set(pods.map((p) => p.namespace))].sort();
  const out = h('div', { id: 'matrix-out' });
  const ns = h('input', {
    name: 'namespace',
    value: initial.namespace ?? '',
    list: 'namespaces',
    placeholder: 'all, or a,b',
  }) as HTMLInputElement;
  const sel = h('input', {
    name: 'pods',
    value: initial.pods ?? '',
    placeholder: 'ns/pod,ns/pod',
  }) as HTMLInputElement;
  const probes = h('input', {
    name: 'probe',
    value: initial.probe ?? 'TCP/80',
    placeholder: 'TCP/80,UDP/53',
  }) as HTMLInputElement;
  const run = async () => {
    out.replaceChildren(h('p', { class: 'muted' }, 'Computing…'));
    try {
      const m = await api<Matrix>('matrix', {
        namespace: ns.value.trim(),
        pods: sel.value.trim(),
        probe: probes.value.trim(),
        ...(policy !== undefined ? { policy } : {}),
      });
      out.replaceChildren(
        policy !== undefined
          ? h(
              'p',
              { class: 'muted' },
              'Cells outlined green are allowed by a rule of this policy (on the egress or the ingress side); dashed red are denied because it isolates the pod and no rule allows.',
            )
          : h(
              'p',
              { class: 'muted' },
              'Each cell: may the row pod open a connection to the column pod, both sides (egress at the source, ingress at the destination) decided by the evaluator the agents use.',
            ),
        matrixView(m),
      );
      out.setAttribute('data-ready', 'true');
    } catch (err) {
      out.replaceChildren(errorBox(err));
      out.setAttribute('data-ready', 'true');
    }
  };
  const form = h(
    'form',
    {
      id: 'matrix-form',
      onsubmit: (e: Event) => {
        e.preventDefault();
        void run();
      },
    },
    h('label', {}, 'Namespace', ns),
    h('datalist', { id: 'namespaces' }, ...namespaces.map((n) => h('option', { value: n }))),
    h('label', {}, 'Pods', sel),
    h('label', {}, 'Probes', probes),
    h('button', { type: 'submit' }, 'Show'),
  );
  void run();
  return h('div', {}, form, out);
}

async function matrixPage(params: URLSearchParams): Promise<HTMLElement> {
  return h(
    'section',
    { id: 'matrix' },
    h('h1', {}, 'Reachability'),
    await matrixPanel(Object.fromEntries(params)),
  );
}

// --- a policy ----------------------------------------------------------------------

interface PolicyPage {
  policy: {
    id: string;
    kind: string;
    namespace: string;
    name: string;
    tier: string;
    priority: number;
    appliedTo: string;
    ingressIsolation: boolean;
    egressIsolation: boolean;
    rules: Array<{
      id: string;
      direction: string;
      action: string;
      endpoint2: Record<string, unknown>;
      serviceGroup: string;
      name: string;
    }>;
  };
  addressGroups: Array<{ id: string } & Record<string, unknown>>;
  serviceGroups: Array<{ id: string } & Record<string, unknown>>;
  selected: string[];
  namespaces: string[];
  realization: {
    revision: number;
    nodes: Array<{
      node: string;
      applied: boolean;
      reachedAt: string | null;
      latencyMs: number | null;
      resyncMs: number | null;
    }>;
  };
}

async function policyPage(id: string): Promise<HTMLElement> {
  const p = await api<PolicyPage>('policy', { name: id });
  const x = p.policy;
  const peer = (e: Record<string, unknown>) => {
    const [k, v] = Object.entries(e).find(([, v]) => v !== null && v !== undefined && v !== '') ?? [
      '',
      '',
    ];
    return h('code', {}, `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  };
  return h(
    'section',
    { id: 'policy', 'data-policy': x.id },
    h('h1', {}, `${x.kind} ${x.namespace ? `${x.namespace}/` : ''}${x.name}`),
    h(
      'p',
      {},
      `Tier ${x.tier}${x.kind === 'ClusterNetworkPolicy' ? `, priority ${x.priority}` : ''} · applied to `,
      h('code', {}, x.appliedTo),
      ` · isolates ${[x.ingressIsolation ? 'ingress' : '', x.egressIsolation ? 'egress' : ''].filter(Boolean).join(' and ') || 'nothing'}`,
      ` · id `,
      h('code', {}, x.id),
    ),
    h('h2', {}, 'Firewall rules'),
    table(
      ['Rule', 'Direction', 'Action', 'Peer', 'Services'],
      x.rules.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, h('code', {}, r.id), r.name ? ` (${r.name})` : ''),
          h('td', {}, r.direction),
          h('td', {}, r.action),
          h('td', {}, peer(r.endpoint2)),
          h('td', {}, r.serviceGroup ? h('code', {}, r.serviceGroup) : 'any'),
        ),
      ),
      { id: 'rules' },
    ),
    h('h2', {}, 'Address and service groups'),
    h(
      'pre',
      { id: 'groups' },
      JSON.stringify({ addressGroups: p.addressGroups, serviceGroups: p.serviceGroups }, null, 2),
    ),
    h('h2', {}, `Selects ${p.selected.length} pods`),
    h('ul', { id: 'selected' }, ...p.selected.map((s) => h('li', {}, s))),
    h('h2', {}, 'Where it is enforced'),
    p.realization.nodes.length === 0
      ? h('p', { class: 'muted' }, 'No node holds it: it selects no pod that runs on a node.')
      : table(
          ['Node', 'Proved', 'Reached', 'Propagation'],
          p.realization.nodes.map((n) =>
            h(
              'tr',
              { 'data-node': n.node },
              h('td', {}, n.node),
              h('td', {}, mark(n.applied)),
              h('td', {}, when(n.reachedAt)),
              h(
                'td',
                {},
                n.latencyMs !== null
                  ? `${n.latencyMs.toFixed(1)} ms`
                  : n.resyncMs !== null
                    ? `by resync, ${n.resyncMs.toFixed(1)} ms`
                    : '—',
              ),
            ),
          ),
          { id: 'realization' },
        ),
    h('h2', {}, 'Reachability it grants'),
    await matrixPanel({ namespace: p.namespaces.join(',') }, x.id),
  );
}

// --- live flows --------------------------------------------------------------------

const FLOW_FILTERS = [
  'node',
  'pod',
  'namespace',
  'source',
  'destination',
  'protocol',
  'port',
  'action',
  'policy',
  'rule',
  'tcpState',
  'fromPod',
  'toPod',
  'fromNamespace',
  'toNamespace',
  'selector',
  'match',
  'since',
] as const;

/** What each free-text filter takes, as `weirctl flows` documents its flags. */
const FLOW_FILTER_HINTS: Partial<Record<(typeof FLOW_FILTERS)[number], string>> = {
  pod: 'ns/pod (either end)',
  fromPod: 'ns/pod (source)',
  toPod: 'ns/pod (destination)',
  source: 'CIDR or address',
  destination: 'CIDR or address',
  selector: 'app=web,tier in (a,b)',
  match: '10.0.0.1:80,10.0.0.2 & proto tcp',
  since: '10m or RFC 3339',
};
interface FlowRule {
  decision: string;
  rule: string;
  policyName: string;
  tier?: string;
  action?: string;
}
interface Flow {
  index: number;
  protocol: number;
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
  sourcePod: string;
  destinationPod: string;
  action: string;
  dropReason: string;
  egress: FlowRule | null;
  ingress: FlowRule | null;
  tcpState: string;
}
interface WatchMessage {
  node: string;
  dropped: number;
  error: string;
  event: { type: string; at: string; flow: Flow } | null;
}

let live: EventSource | undefined;
const PROTOCOL_NAMES: Record<number, string> = {
  1: 'ICMP',
  6: 'TCP',
  17: 'UDP',
  58: 'ICMPv6',
  132: 'SCTP',
};
const gate = (r: FlowRule | null) =>
  r === null
    ? ''
    : r.decision === 'rule'
      ? h(
          'span',
          {},
          `${r.tier ?? ''} `,
          h('strong', {}, r.policyName),
          ' ',
          h('code', { class: 'muted' }, r.rule.split('/').slice(-3).join('/')),
          r.action === 'deny' ? ' (deny)' : '',
        )
      : r.decision === 'deny'
        ? h('span', { class: 'bad' }, `isolated by ${r.policyName}`)
        : h('span', { class: 'muted' }, r.decision);

function flowsPage(params: URLSearchParams): HTMLElement {
  const inputs = FLOW_FILTERS.map((f) => {
    if (f === 'action' || f === 'tcpState') {
      const values =
        f === 'action' ? ['allow', 'deny', 'hold'] : ['syn', 'established', 'closing', 'closed'];
      const s = h(
        'select',
        { name: f },
        h('option', { value: '' }, 'any'),
        ...values.map((v) => h('option', { value: v, selected: params.get(f) === v }, v)),
      ) as HTMLSelectElement;
      return s;
    }
    return h('input', {
      name: f,
      value: params.get(f) ?? '',
      size: f === 'port' ? 5 : f === 'match' ? 28 : 14,
      placeholder: FLOW_FILTER_HINTS[f] ?? '',
    }) as HTMLInputElement;
  });
  const rows = h('tbody', { id: 'flow-rows' });
  const nodes = h('ul', { id: 'flow-nodes' });
  const problem = h('div', {});
  const perNode = new Map<string, HTMLElement>();
  const nodeLine = (node: string, text: string, cls = '') => {
    let li = perNode.get(node);
    if (li === undefined) {
      li = h('li', { 'data-node': node });
      perNode.set(node, li);
      nodes.append(li);
    }
    li.className = cls;
    li.replaceChildren(h('strong', {}, node), ': ', text);
  };
  const drops = new Map<string, number>();
  const start = (filter: Record<string, string>) => {
    live?.close();
    rows.replaceChildren();
    nodes.replaceChildren();
    perNode.clear();
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== ''));
    history.replaceState(null, '', `#/flows${q.size > 0 ? `?${q}` : ''}`);
    live = new EventSource(`/api/flows/watch${q.size > 0 ? `?${q}` : ''}`);
    live.onmessage = (m) => {
      const e = JSON.parse(m.data) as WatchMessage;
      if (e.dropped > 0) drops.set(e.node, (drops.get(e.node) ?? 0) + e.dropped);
      const dropped = drops.get(e.node)
        ? ` · ${drops.get(e.node)} events dropped (the page fell behind)`
        : '';
      if (e.error !== '') nodeLine(e.node, `${e.error}${dropped}`, 'bad');
      else if (e.event === null) nodeLine(e.node, `watching${dropped}`, 'ok');
      if (e.event === null) return;
      const f = e.event.flow;
      const end = (pod: string, ip: string, port: number) =>
        h('span', { title: `${ip}:${port}` }, pod || ip, port ? `:${port}` : '');
      rows.prepend(
        h(
          'tr',
          {
            class: f.action,
            'data-node': e.node,
            'data-source-pod': f.sourcePod,
            'data-destination-pod': f.destinationPod,
            'data-action': f.action,
          },
          h('td', {}, new Date(e.event.at).toLocaleTimeString()),
          h('td', {}, e.node),
          h('td', {}, e.event.type),
          h('td', {}, PROTOCOL_NAMES[f.protocol] ?? String(f.protocol)),
          h('td', {}, end(f.sourcePod, f.source, f.sourcePort)),
          h('td', {}, end(f.destinationPod, f.destination, f.destinationPort)),
          h('td', {}, f.action, f.dropReason ? ` (${f.dropReason})` : ''),
          h('td', {}, f.tcpState),
          h('td', {}, gate(f.egress)),
          h('td', {}, gate(f.ingress)),
        ),
      );
      while (rows.childElementCount > 300) rows.lastElementChild?.remove();
    };
    live.addEventListener('failed', (m) => {
      const body = JSON.parse((m as MessageEvent).data);
      problem.replaceChildren(errorBox(new ApiError(body.error, body.problems)));
      live?.close();
    });
    live.onerror = () => {
      // A refused watch (400, 429) ends the stream: ask the API why, once.
      if (live?.readyState === EventSource.CLOSED)
        void api('flows', { ...Object.fromEntries(q), limit: '1' }).catch((err) =>
          problem.replaceChildren(errorBox(err)),
        );
    };
  };
  const form = h(
    'form',
    {
      id: 'flow-filter',
      onsubmit: (e: Event) => {
        e.preventDefault();
        problem.replaceChildren();
        start(
          Object.fromEntries(
            inputs.map((i) => [(i as HTMLInputElement).name, (i as HTMLInputElement).value.trim()]),
          ),
        );
      },
    },
    ...inputs.map((i) => h('label', {}, (i as HTMLInputElement).name, i)),
    h('button', { type: 'submit' }, 'Watch'),
  );
  start(Object.fromEntries(params));
  return h(
    'section',
    { id: 'flows' },
    h('h1', {}, 'Live flows'),
    h(
      'p',
      { class: 'muted' },
      'Every agent’s flow events as they happen, relayed by the controller; filters as weirctl flows takes them, evaluated by the agents.',
    ),
    form,
    problem,
    nodes,
    table(
      [
        'Time',
        'Node',
        'Event',
        'Proto',
        'Source',
        'Destination',
        'Action',
        'TCP',
        'Egress (tier policy rule)',
        'Ingress (tier policy rule)',
      ],
      [],
      { id: 'flow-table' },
    ).appendChild(rows).parentElement!,
  );
}

// --- explain --------------------------------------------------------------------------

interface Side {
  direction: string;
  enforced: boolean;
  endpoint?: string;
  allowed: boolean;
  tier?: string;
  policies: Array<{ id: string; kind: string; namespace: string; name: string }>;
  rule?: {
    id: string;
    policy: { id: string; name: string; namespace: string; kind: string };
    field: string;
    action: string;
    peer: string;
    ports: string;
  };
  reason: string;
}
interface Explanation {
  allowed: boolean;
  protocol: string;
  port: number;
  from: { ip: string; endpoint?: string };
  to: { ip: string; endpoint?: string };
  egress: Side;
  ingress: Side;
}

async function explainPage(params: URLSearchParams): Promise<HTMLElement> {
  const pods = await api<Array<{ pod: string }>>('pods');
  const end = (name: string) => {
    const list = `${name}-pods`;
    return h('input', {
      name,
      value: params.get(name) ?? '',
      list,
      placeholder: 'namespace/pod or an address',
      size: 26,
    });
  };
  const from = end('from') as HTMLInputElement;
  const to = end('to') as HTMLInputElement;
  const protocol = h(
    'select',
    { name: 'protocol' },
    ...['TCP', 'UDP', 'SCTP'].map((p) =>
      h('option', { value: p, selected: params.get('protocol') === p }, p),
    ),
  ) as HTMLSelectElement;
  const port = h('input', {
    name: 'port',
    value: params.get('port') ?? '',
    size: 6,
  }) as HTMLInputElement;
  const out = h('div', { id: 'explain-out' });
  const side = (s: Side) =>
    h(
      'div',
      { class: 'side', 'data-direction': s.direction, 'data-allowed': String(s.allowed) },
      h(
        'h2',
        {},
        `${s.direction} at ${s.endpoint ?? 'an address outside the cluster'}: `,
        mark(s.allowed),
        s.allowed ? ' allowed' : ' denied',
      ),
      h('p', { 'data-field': 'reason' }, s.reason),
      s.enforced
        ? null
        : h('p', { class: 'muted' }, 'Not enforced here: that end is not a pod Weir enforces for.'),
      s.tier ? h('p', {}, 'Tier: ', h('strong', { 'data-field': 'tier' }, s.tier)) : null,
      s.rule
        ? h(
            'p',
            {},
            'Rule ',
            h('code', { 'data-field': 'rule' }, s.rule.id),
            ` (${s.rule.action}) of ${s.rule.policy.kind} `,
            h(
              'strong',
              { 'data-field': 'policy' },
              s.rule.policy.namespace
                ? `${s.rule.policy.namespace}/${s.rule.policy.name}`
                : s.rule.policy.name,
            ),
            ` at ${s.rule.field}: peer ${s.rule.peer}, ports ${s.rule.ports}`,
          )
        : null,
      s.policies.length > 0
        ? h(
            'p',
            {},
            'Policies selecting it: ',
            s.policies
              .map((p) => (p.namespace ? `${p.namespace}/${p.name}` : `cnp/${p.name}`))
              .join(', '),
          )
        : null,
    );
  const run = async () => {
    history.replaceState(
      null,
      '',
      `#/explain?${new URLSearchParams({ from: from.value, to: to.value, protocol: protocol.value, port: port.value })}`,
    );
    try {
      const r = await api<{ revision: number; explanation: Explanation }>('explain', {
        from: from.value.trim(),
        to: to.value.trim(),
        protocol: protocol.value,
        port: port.value.trim(),
      });
      const e = r.explanation;
      out.replaceChildren(
        h(
          'p',
          { class: 'verdict', 'data-allowed': String(e.allowed) },
          mark(e.allowed),
          ` ${e.from.endpoint ?? e.from.ip} → ${e.to.endpoint ?? e.to.ip} ${e.protocol}/${e.port}: ${e.allowed ? 'allowed' : 'denied'}`,
          h('span', { class: 'muted' }, ` (revision ${r.revision})`),
        ),
        h('div', { class: 'sides' }, side(e.egress), side(e.ingress)),
      );
    } catch (err) {
      out.replaceChildren(errorBox(err));
    }
    out.setAttribute('data-ready', 'true');
  };
  const form = h(
    'form',
    {
      id: 'explain-form',
      onsubmit: (e: Event) => {
        e.preventDefault();
        out.removeAttribute('data-ready');
        void run();
      },
    },
    h('label', {}, 'From', from),
    h('datalist', { id: 'from-pods' }, ...pods.map((p) => h('option', { value: p.pod }))),
    h('label', {}, 'To', to),
    h('datalist', { id: 'to-pods' }, ...pods.map((p) => h('option', { value: p.pod }))),
    h('label', {}, 'Protocol', protocol),
    h('label', {}, 'Port', port),
    h('button', { type: 'submit' }, 'Explain'),
  );
  if (params.get('from') && params.get('to') && params.get('port')) void run();
  return h('section', { id: 'explain' }, h('h1', {}, 'Explain a connection'), form, out);
}

// --- routing ----------------------------------------------------------------------------

let refresh: number | undefined;

async function route(): Promise<void> {
  const hash = location.hash.replace(/^#/, '') || '/cluster';
  const [path, query] = [hash.split('?')[0]!, new URLSearchParams(hash.split('?')[1] ?? '')];
  const [, page, ...rest] = path.split('/');
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle(
      'active',
      a.getAttribute('href') === `#/${page === 'policy' ? 'cluster' : page}`,
    );
  if (refresh !== undefined) clearInterval(refresh);
  refresh = undefined;
  if (page !== 'flows') {
    live?.close();
    live = undefined;
  }
  try {
    let view: HTMLElement;
    if (page === 'cluster') {
      view = await clusterPage();
      // The cluster page follows the controller (sync, lag) while it is shown.
      refresh = window.setInterval(() => {
        void clusterPage().then(
          (v) => main().replaceChildren(v),
          () => undefined,
        );
      }, 2_000);
    } else if (page === 'policy') view = await policyPage(decodeURIComponent(rest.join('/')));
    else if (page === 'matrix') view = await matrixPage(query);
    else if (page === 'flows') view = flowsPage(query);
    else if (page === 'explain') view = await explainPage(query);
    else view = h('p', {}, `No page ${path}.`);
    main().replaceChildren(view);
  } catch (err) {
    main().replaceChildren(errorBox(err));
  }
}

window.addEventListener('hashchange', () => void route());
void route();
