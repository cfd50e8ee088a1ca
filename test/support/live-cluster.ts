/**
 * A controller and one agent as real processes (the demo's manifests, the
 * agent's userspace datapath fed by synthetic traffic), and weirctl run in
 * this process against them: what the CLI tests and the docs/cli.md
 * examples share.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Run, runWeirctl } from './weirctl-in-process.js';
import { ROOT, WeirProcess, freePort } from './processes.js';

export type { Run };

export class LiveCluster {
  controller!: WeirProcess;
  agent!: WeirProcess;
  address = '';
  agentApi = '';
  dir = '';

  /** `node`: the agent's node (deploy/examples places pods on node-a, node-b, node-c). */
  async start(node = 'node-c'): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'weir-cli-'));
    await cp(join(ROOT, 'deploy', 'examples'), join(this.dir, 'manifests'), { recursive: true });
    this.address = `127.0.0.1:${await freePort()}`;
    this.agentApi = `127.0.0.1:${await freePort()}`;
    this.controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(this.dir, 'manifests'),
      '--listen',
      this.address,
      '--metrics-listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    await this.controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
    this.agent = new WeirProcess(node, 'weir-agent', [
      '--node',
      node,
      '--controller',
      this.address,
      '--state-dir',
      join(this.dir, node),
      '--listen',
      this.agentApi,
      '--synthetic-traffic',
      '40',
      '--metrics-listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    await this.agent.waitFor((l) => l.msg === 'span applied', 'the span');
  }

  async stop(): Promise<void> {
    await Promise.all([this.controller?.kill(), this.agent?.kill()]);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  /** weirctl in this process, against this cluster (WEIR_CONTROLLER), with `stdin` when given. */
  async weirctl(args: readonly string[]): Promise<Run> {
    return runWeirctl(args, { WEIR_CONTROLLER: this.address });
  }
}
