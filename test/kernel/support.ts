/**
 * A one-node cluster on real packets: a node namespace running the real
 * controller (on manifests in a temporary directory) and the real agent with
 * the nftables datapath, and pod namespaces routed by the node
 * (testing/netns.ts). Everything it makes is removed by dispose().
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespace, networkPolicy, node, pod, type Raw } from '../../testing/cluster.js';
import { inNs, NodeTopology, type Pod } from '../../testing/netns.js';
import { eventually, ROOT, WeirProcess } from '../support/processes.js';

export const NODE = 'n1';
const CONTROLLER = '127.0.0.1:7443';
const AGENT_API = '127.0.0.1:7444';
const METRICS = '127.0.0.1:7445';

export interface WireFlow {
  index: number;
  protocol: number;
  source: string;
  destination: string;
  destinationPort: number;
  sourcePod: string;
  destinationPod: string;
  action: string;
  dropReason: string;
  egress: { decision: string; policyName: string; rule: string };
  ingress: { decision: string; policyName: string; rule: string };
}

/** web (prod), api (prod), tool (dev), all on n1. */
export class KernelCluster implements AsyncDisposable {
  controller: WeirProcess | undefined;
  agent: WeirProcess | undefined;
  private appliedSeen = 0;

  private constructor(
    readonly topo: NodeTopology,
    readonly dir: string,
  ) {}

  get web(): Pod {
    return this.topo.pods[0]!;
  }
  get api(): Pod {
    return this.topo.pods[1]!;
  }
  get tool(): Pod {
    return this.topo.pods[2]!;
  }

  static async create(): Promise<KernelCluster> {
    const topo = await NodeTopology.create(3);
    const dir = await mkdtemp(join(tmpdir(), 'weir-kernel-'));
    const c = new KernelCluster(topo, dir);
    try {
      await c.writeManifest('00-cluster', c.baseObjects());
      c.controller = new WeirProcess(
        'controller',
        'weir-controller',
        [
          '--manifests',
          join(dir, 'manifests'),
          '--listen',
          CONTROLLER,
          '--state-dir',
          join(dir, 'controller'),
        ],
        {},
        topo.node,
      );
      await c.controller.waitFor((l) => l.msg === 'controller serving', 'the controller', 60_000);
    } catch (err) {
      await c[Symbol.asyncDispose]();
      throw err;
    }
    return c;
  }

  baseObjects(): Raw[] {
    const [web, api, tool] = this.topo.pods as [Pod, Pod, Pod];
    return [
      namespace('prod', { env: 'prod' }),
      namespace('dev', { env: 'dev' }),
      node(NODE, [
        '10.200.1.1',
        '10.200.2.1',
        '10.200.3.1',
        'fd00:200:1::1',
        'fd00:200:2::1',
        'fd00:200:3::1',
      ]),
      pod('prod', 'web', { labels: { app: 'web' }, ips: [web.v4, web.v6], node: NODE }),
      pod('prod', 'api', {
        labels: { app: 'api' },
        ips: [api.v4, api.v6],
        node: NODE,
        ports: [{ name: 'http', port: 8080 }],
      }),
      pod('dev', 'tool', { labels: { app: 'tool' }, ips: [tool.v4, tool.v6], node: NODE }),
    ];
  }

  /** api admits `from` (a pod label app=...) on TCP/8080 and UDP/5353, nothing else. */
  static apiIngress(from: string): Raw {
    return networkPolicy('prod', 'api-in', {
      podSelector: { matchLabels: { app: 'api' } },
      ingress: [
        {
          from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: from } } }],
          ports: [{ port: 8080 }, { protocol: 'UDP', port: 5353 }],
        },
      ],
    });
  }

  async writeManifest(name: string, objects: Raw | Raw[]): Promise<void> {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(this.dir, 'manifests'), { recursive: true });
    const list = Array.isArray(objects) ? objects : [objects];
    // One object per file: the manifest reader takes documents, JSON is YAML.
    for (let i = 0; i < list.length; i++)
      await writeFile(join(this.dir, 'manifests', `${name}-${i}.json`), JSON.stringify(list[i]));
  }

  async removeManifest(name: string): Promise<void> {
    await unlink(join(this.dir, 'manifests', `${name}-0.json`));
  }

  /** Starts the agent (nftables datapath) and waits until it applied a span with the three pods. */
  async startAgent(failMode: 'open' | 'closed' = 'open', policies = 1): Promise<WeirProcess> {
    this.agent = new WeirProcess(
      NODE,
      'weir-agent',
      [
        '--node',
        NODE,
        '--controller',
        CONTROLLER,
        '--state-dir',
        join(this.dir, 'agent'),
        '--listen',
        AGENT_API,
        '--datapath',
        'nftables',
        '--fail-mode',
        failMode,
        '--metrics-listen',
        METRICS,
      ],
      {},
      this.topo.node,
    );
    this.appliedSeen = 0;
    await this.agent.waitFor(
      (l) =>
        // A fresh agent applies the controller's span; a restarted one enforces its persisted span at once.
        (l.msg === 'span applied' && l.endpoints === 3 && (l.policies as number) >= policies) ||
        (l.msg === 'enforcing persisted span' && (l.policies as number) >= policies),
      'the span',
      60_000,
    );
    this.appliedSeen = this.agent.lines.length;
    return this.agent;
  }

  /** Waits for the agent's next 'span applied' after the last one seen (a manifest edit reached it). */
  async nextSpan(pred: (l: Record<string, unknown>) => boolean = () => true): Promise<void> {
    const agent = this.agent!;
    await agent.waitFor(
      (l) => l.msg === 'span applied' && pred(l),
      'the next span',
      60_000,
      this.appliedSeen,
    );
    this.appliedSeen = agent.lines.length;
  }

  /** weirctl inside the node namespace. */
  weirctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) =>
      execFile(
        'ip',
        ['netns', 'exec', this.topo.node, process.execPath, join(ROOT, 'bin', 'weirctl'), ...args],
        { env: { ...process.env, WEIR_CONTROLLER: CONTROLLER } },
        (e, out, err) => resolve({ code: e ? Number(e.code) : 0, out, err }),
      ),
    );
  }

  async flows(): Promise<WireFlow[]> {
    const r = await this.weirctl('flows', '--node', NODE, '-o', 'json');
    if (r.code !== 0) throw new Error(`weirctl flows: ${r.err}`);
    return JSON.parse(r.out) as WireFlow[];
  }

  async eventuallyFlow(pred: (f: WireFlow) => boolean, what: string): Promise<WireFlow> {
    return eventually(async () => (await this.flows()).find(pred), what, 15_000);
  }

  /** The agent's Prometheus metrics (fetched inside the node namespace). */
  async metrics(): Promise<string> {
    return inNs(this.topo.node, [
      process.execPath,
      '-e',
      `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ]);
  }

  /** Weir's conntrack entries in the node: `conntrack -L` lines with a mark tagged 0b10. */
  async conntrack(family: 4 | 6 = 4): Promise<string[]> {
    const out = await inNs(this.topo.node, [
      'conntrack',
      '-L',
      '-f',
      family === 4 ? 'ipv4' : 'ipv6',
      '-m',
      '0x80000000/0xc0000000',
    ]).catch(() => '');
    return out.split('\n').filter((l) => l.trim() !== '');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([this.agent?.kill(), this.controller?.kill()]);
    await this.topo[Symbol.asyncDispose]();
    await rm(this.dir, { recursive: true, force: true });
  }
}
