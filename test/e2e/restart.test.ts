/**
 * Restarts and policy changes on real connections in the lab: an agent
 * killed with SIGKILL leaves established connections working (conntrack
 * carries them, not the agent); a killed controller changes nothing the
 * pods see; a policy change cuts an open connection the new policy denies.
 * Root and the kernel datapath only; CI runs it as root.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { analyse, matrix } from '../../cli/analysis.js';
import { labDown, labSync, labUp, requireState } from '../../cli/lab.js';
import { matrixDifferences, probeLab } from '../../cli/lab-probe.js';
import type { LabState } from '../../cli/lab-state.js';
import type { Probe } from '../../shared/policy/probe.js';
import { namespace, networkPolicy, node, pod } from '../../testing/cluster.js';
import { connect, echoServer, enforcementSkip, writeManifests } from '../../testing/lab.js';

const skip = await enforcementSkip();
const PORT = 7070;
/** The long-lived connections' port: the probes' own servers hold PORT. */
const ECHO = 7071;
const PROBES: Probe[] = [{ protocol: 'TCP', port: PORT }];

const CLUSTER = [
  namespace('app'),
  node('node-1', ['192.168.77.1']),
  node('node-2', ['192.168.77.2']),
  pod('app', 'client', { labels: { app: 'client' }, ips: ['10.77.1.1'], node: 'node-1' }),
  pod('app', 'server', { labels: { app: 'server' }, ips: ['10.77.2.1'], node: 'node-2' }),
  pod('app', 'other', { labels: { app: 'other' }, ips: ['10.77.2.2'], node: 'node-2' }),
];
const ONLY_CLIENT = networkPolicy('app', 'server-from-client', {
  podSelector: { matchLabels: { app: 'server' } },
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }],
});
const NOBODY = networkPolicy('app', 'server-from-client', {
  podSelector: { matchLabels: { app: 'server' } },
  ingress: [],
});

describe('restarts and policy changes on open connections in the lab', { skip }, () => {
  let root: string;
  let dir: string;
  const lab = 'restart';
  let state: LabState;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-lab-root-'));
    dir = await mkdtemp(join(tmpdir(), 'weir-lab-restart-'));
    await writeManifests(dir, 'cluster.yaml', CLUSTER);
    await writeManifests(dir, 'policy.yaml', [ONLY_CLIENT]);
    state = await labUp({ dir, lab, root, datapath: 'nftables', failMode: 'closed' });
  });

  after(async () => {
    await labDown({ lab, root }).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  async function agreesWithAnalysis(s: LabState): Promise<void> {
    const observed = await probeLab(s, PROBES, { timeoutMs: 1_500 });
    const analysis = await analyse([dir]);
    assert.deepEqual(matrixDifferences(matrix(analysis.tables, PROBES), observed.matrix), []);
  }

  test('an agent killed with SIGKILL leaves an established connection working, and the lab comes back in sync', async () => {
    const server = await echoServer(state.pods['app/server']!.netns, ECHO);
    const conn = await connect(state.pods['app/client']!.netns, '10.77.2.1', ECHO);
    try {
      assert.ok(await conn.say('before'), 'the connection works before the kill');
      for (const n of Object.values(state.nodes)) process.kill(n.agentPid!, 'SIGKILL');
      assert.ok(
        await conn.say('while-the-agents-are-gone'),
        'conntrack carries it without the agents',
      );
      const { state: back } = await labSync({ lab, root });
      assert.ok(await conn.say('after'), 'and after they are back');
      await agreesWithAnalysis(back);
      state = back;
    } finally {
      conn.close();
      server.stop();
    }
  });

  test('a controller killed with SIGKILL changes nothing the pods see', async () => {
    const before = await probeLab(state, PROBES, { timeoutMs: 1_500 });
    process.kill(state.controllerPid!, 'SIGKILL');
    const during = await probeLab(state, PROBES, { timeoutMs: 1_500 });
    assert.deepEqual(during.matrix, before.matrix);
    const { state: back } = await labSync({ lab, root });
    assert.notEqual(back.controllerPid, state.controllerPid);
    await agreesWithAnalysis(back);
    state = back;
  });

  test('a policy change cuts an open connection the new policy denies', async () => {
    const server = await echoServer(state.pods['app/server']!.netns, ECHO);
    const conn = await connect(state.pods['app/client']!.netns, '10.77.2.1', ECHO);
    try {
      assert.ok(await conn.say('allowed'));
      await writeManifests(dir, 'policy.yaml', [NOBODY]);
      state = (await labSync({ lab, root })).state;
      assert.equal(
        await conn.say('denied now', 2_000),
        false,
        'the denied connection no longer carries data',
      );
      await agreesWithAnalysis((await requireState({ lab, root })).state);
    } finally {
      conn.close();
      server.stop();
      await writeManifests(dir, 'policy.yaml', [ONLY_CLIENT]);
    }
  });
});
