/**
 * A federation of member clusters as processes, for fleet tests
 * (docs/federation.md): the hub and one leaf nats-server per member
 * (testing/nats-server.ts' startFederationHub, configured by `weirctl nats
 * federation-config`'s code), and per member a real controller
 * (bin/weir-controller with --federation/--federation-nats, manifests from
 * a temporary directory it watches) and one agent per node. Members are
 * addressed by cluster name; each one's manifests can be rewritten while
 * it runs, and its controller killed and started again on the same
 * address and state directory.
 *
 * It lives in test/support (not testing/) because it starts programs with
 * WeirProcess, which is test support.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FederationNats, startFederationHub } from '../../testing/nats-server.js';
import { WeirProcess, freePort, pki, weirctl } from './processes.js';

export interface FleetMemberSpec {
  readonly cluster: string;
  /** The member's manifests: file name → YAML text. */
  readonly files: Readonly<Record<string, string>>;
  /** Nodes that get an agent (names as in the manifests' Nodes and pods' nodeName). */
  readonly nodes: readonly string[];
}

export interface FleetMember {
  readonly cluster: string;
  /** The controller's Operator API address (weirctl's --controller). */
  readonly address: string;
  readonly manifests: string;
  readonly stateDir: string;
  controller: WeirProcess;
  readonly agents: Map<string, WeirProcess>;
}

/** The controller's federation flags (controller/federation/flags.ts); `controllerArgs` can replace them. */
export const federationFlags = (federation: string, memberNatsUrl: string): string[] => [
  '--federation',
  federation,
  '--federation-nats',
  memberNatsUrl,
];

export class FederationFleet implements AsyncDisposable {
  private constructor(
    readonly federation: string,
    readonly nats: FederationNats,
    readonly dir: string,
    private readonly members: Map<string, FleetMember>,
    private readonly controllerArgs: (m: FleetMember) => string[],
  ) {}

  static async start(options: {
    federation: string;
    members: readonly FleetMemberSpec[];
    /** Extra or replacement controller flags (default: federationFlags). */
    controllerArgs?: (m: FleetMember, nats: FederationNats) => string[];
  }): Promise<FederationFleet> {
    const dir = await mkdtemp(join(tmpdir(), 'weir-fleet-'));
    // Member servers as production has them: TLS, Weir's certificate users (the controller's
    // certificate is its link's user), written by weirctl nats config --federation's code.
    const nats = await startFederationHub({
      federation: options.federation,
      members: options.members.map((m) => m.cluster),
      memberIdentities: (cluster) => ({
        pki,
        nodes: options.members.find((m) => m.cluster === cluster)!.nodes,
      }),
    });
    const members = new Map<string, FleetMember>();
    const args =
      options.controllerArgs !== undefined
        ? (m: FleetMember) => options.controllerArgs!(m, nats)
        : (m: FleetMember) => federationFlags(options.federation, nats.members[m.cluster]!.url);
    const fleet = new FederationFleet(options.federation, nats, dir, members, args);
    try {
      for (const spec of options.members) {
        const manifests = join(dir, spec.cluster, 'manifests');
        const stateDir = join(dir, spec.cluster, 'state');
        await mkdir(manifests, { recursive: true });
        await mkdir(stateDir, { recursive: true });
        for (const [file, text] of Object.entries(spec.files))
          await writeFile(join(manifests, file), text);
        const member: FleetMember = {
          cluster: spec.cluster,
          address: `127.0.0.1:${await freePort()}`,
          manifests,
          stateDir,
          controller: undefined as unknown as WeirProcess,
          agents: new Map(),
        };
        members.set(spec.cluster, member);
      }
      await Promise.all(options.members.map((spec) => fleet.startController(spec.cluster)));
      await Promise.all(
        options.members.flatMap((spec) =>
          spec.nodes.map((node) => fleet.startAgent(spec.cluster, node)),
        ),
      );
      await Promise.all(
        options.members.flatMap((spec) =>
          spec.nodes.map((node) =>
            fleet
              .member(spec.cluster)
              .agents.get(node)!
              .waitFor((l) => l.msg === 'span applied', `${spec.cluster}/${node}'s span`),
          ),
        ),
      );
    } catch (err) {
      await fleet[Symbol.asyncDispose]();
      throw err;
    }
    return fleet;
  }

  member(cluster: string): FleetMember {
    const m = this.members.get(cluster);
    if (m === undefined) throw new Error(`no member ${cluster} in the fleet`);
    return m;
  }

  /** Starts (again) the member's controller on its address and state directory. */
  async startController(cluster: string): Promise<WeirProcess> {
    const m = this.member(cluster);
    m.controller = new WeirProcess(`controller-${cluster}`, 'weir-controller', [
      '--manifests',
      m.manifests,
      '--listen',
      m.address,
      '--cluster',
      cluster,
      '--state-dir',
      m.stateDir,
      ...this.controllerArgs(m),
    ]);
    await m.controller.waitFor((l) => l.msg === 'controller serving', `${cluster}'s controller`);
    return m.controller;
  }

  async startAgent(cluster: string, node: string): Promise<WeirProcess> {
    const m = this.member(cluster);
    const stateDir = join(this.dir, cluster, 'agents', node);
    await mkdir(stateDir, { recursive: true });
    const agent = new WeirProcess(`agent-${cluster}-${node}`, 'weir-agent', [
      '--node',
      node,
      '--controller',
      m.address,
      '--state-dir',
      stateDir,
      '--listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    m.agents.set(node, agent);
    return agent;
  }

  /** Rewrites (or adds) one of the member's manifest files; its controller watches the directory. */
  async writeManifest(cluster: string, file: string, text: string): Promise<void> {
    await writeFile(join(this.member(cluster).manifests, file), text);
  }

  /** Deletes one of the member's manifest files (an empty file would keep its objects in force). */
  async removeManifest(cluster: string, file: string): Promise<void> {
    await rm(join(this.member(cluster).manifests, file), { force: true });
  }

  /** weirctl against the member's controller. */
  weirctl(cluster: string, ...args: string[]) {
    return weirctl(this.member(cluster).address, ...args);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(
      [...this.members.values()].flatMap((m) => [
        m.controller?.kill(),
        ...[...m.agents.values()].map((a) => a.kill()),
      ]),
    );
    await this.nats[Symbol.asyncDispose]();
    await rm(this.dir, { recursive: true, force: true });
  }
}
