/**
 * `weirctl lab` itself, on one lab: it builds a netns per node and per pod
 * from manifests, proves sync with the manifests as they are now, probes
 * with real connections in analyze matrix's JSON shape, follows edits of
 * the directory (pods added and removed), refuses invalid manifests naming
 * the object and field, and `down` removes everything, also what a crashed
 * run left behind. Root only (network namespaces); CI runs it as root.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../../cli/main.js';
import { labDown, labSync, labUp, requireState } from '../../cli/lab.js';
import { listNetns, addNetns } from '../../cli/lab-net.js';
import { netnsPrefix, type LabState } from '../../cli/lab-state.js';
import { namespace, networkPolicy, pod } from '../../testing/cluster.js';
import { labSkip, writeManifests } from '../../testing/lab.js';
import { freePort } from '../../testing/ports.js';

const skip = await labSkip();

function buffered() {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: (t: string) => {
        out += t;
      },
      stderr: (t: string) => {
        err += t;
      },
    },
    out: () => out,
    err: () => err,
  };
}

const CLUSTER = [
  namespace('front'),
  namespace('back'),
  // No nodeName and no Node objects: the lab makes --nodes 2 and places the pods.
  pod('front', 'web', { labels: { app: 'web' }, ips: ['10.50.1.1'] }),
  pod('front', 'cli', { labels: { app: 'cli' }, ips: ['10.50.1.2'] }),
  pod('back', 'db', { labels: { app: 'db' }, ips: ['10.50.2.1'] }),
];
const DENY_DB = networkPolicy('back', 'db-from-web', {
  podSelector: { matchLabels: { app: 'db' } },
  ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } }] }],
});

describe('weirctl lab', { skip }, () => {
  let root: string;
  let dir: string;
  const lab = 'plumbing';
  let state: LabState;
  let ui: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-lab-root-'));
    // weirctl (main) finds the lab through the environment, as a user's shell would.
    process.env.WEIR_LAB_ROOT = root;
    dir = await mkdtemp(join(tmpdir(), 'weir-lab-manifests-'));
    await writeManifests(dir, 'cluster.yaml', CLUSTER);
    ui = `127.0.0.1:${await freePort()}`;
    state = await labUp({ dir, lab, root, nodes: 2, uiListen: ui });
  });

  after(async () => {
    await labDown({ lab, root }).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  test('up makes a netns per node and per pod, places unscheduled pods round-robin, and proves sync', async () => {
    assert.deepEqual(Object.keys(state.nodes).sort(), ['node-1', 'node-2']);
    assert.deepEqual(Object.keys(state.pods).sort(), ['back/db', 'front/cli', 'front/web']);
    const placed = Object.values(state.pods).map((p) => p.node);
    assert.ok(placed.includes('node-1') && placed.includes('node-2'), `placement: ${placed}`);
    const names = new Set(await listNetns());
    for (const ns of [
      state.fabric,
      ...Object.values(state.nodes).map((n) => n.netns),
      ...Object.values(state.pods).map((p) => p.netns),
    ])
      assert.ok(names.has(ns), `netns ${ns} exists`);
  });

  test('probe -o json prints the shape of analyze matrix -o json for the same probes, over every pod pair', async () => {
    const probe = buffered();
    const probeExit = await main(
      ['lab', 'probe', '--lab', lab, '--probe', 'TCP/80', '--probe', 'UDP/53', '-o', 'json'],
      probe.io,
    );
    assert.equal(probeExit, 0, probe.err());
    const analysis = buffered();
    assert.equal(
      await main(
        ['analyze', 'matrix', '-f', dir, '--probe', 'TCP/80', '--probe', 'UDP/53', '-o', 'json'],
        analysis.io,
      ),
      0,
    );
    const observed = JSON.parse(probe.out());
    const analysed = JSON.parse(analysis.out());
    assert.deepEqual(Object.keys(observed), Object.keys(analysed));
    assert.deepEqual(observed.pods, analysed.pods);
    assert.deepEqual(
      observed.probes.map(
        (p: {
          protocol: string;
          port: number;
          allowed: Record<string, Record<string, boolean>>;
        }) => [
          p.protocol,
          p.port,
          Object.keys(p.allowed),
          Object.values(p.allowed).map((r) => Object.keys(r)),
        ],
      ),
      analysed.probes.map(
        (p: {
          protocol: string;
          port: number;
          allowed: Record<string, Record<string, boolean>>;
        }) => [
          p.protocol,
          p.port,
          Object.keys(p.allowed),
          Object.values(p.allowed).map((r) => Object.keys(r)),
        ],
      ),
    );
    // No policy: every pair connects for real.
    for (const p of observed.probes)
      for (const row of Object.values(p.allowed) as Array<Record<string, boolean>>)
        assert.ok(
          Object.values(row).every((v) => v),
          JSON.stringify(p),
        );
  });

  test('with --ui-listen the controller serves the console: every lab agent in sync, the real connections as flows', async () => {
    const cluster = (await (await fetch(`http://${ui}/api/cluster`)).json()) as {
      agents: Array<{ node: string; inSync: boolean }>;
    };
    assert.deepEqual(
      cluster.agents.map((a) => [a.node, a.inSync]),
      [
        ['node-1', true],
        ['node-2', true],
      ],
    );
    // The probes above made real TCP connections from front/web; the agents' flows say so.
    const flows = (await (
      await fetch(`http://${ui}/api/flows?fromPod=front/web&protocol=tcp&limit=100`)
    ).json()) as { flows: Array<{ node: string; flow: { sourcePod?: string } }> };
    assert.ok(flows.flows.length > 0, JSON.stringify(flows));
  });

  test('a console address that is not loopback is refused before anything is made', async () => {
    const r = buffered();
    const code = await main(
      ['lab', 'up', '-f', dir, '--lab', 'other', '--ui-listen', '0.0.0.0:7480'],
      r.io,
    );
    assert.equal(code, 2);
    assert.match(r.err(), /--ui-listen must be a loopback HOST:PORT .* not "0\.0\.0\.0:7480"/);
  });

  test('probe --compare prints each cell the lab and the analysis disagree on, and exits 1 exactly when there is one', async () => {
    await writeManifests(dir, 'policy.yaml', [DENY_DB]);
    const r = buffered();
    const code = await main(
      ['lab', 'probe', '--lab', lab, '--probe', 'TCP/5432', '--compare', '--probe-timeout', '1'],
      r.io,
    );
    const { state: s } = await requireState({ lab, root });
    const differences = r
      .out()
      .split('\n')
      .filter((l) => l.startsWith('  TCP/5432'));
    if (s.datapath === 'nftables') {
      assert.equal(code, 0, r.out() + r.err());
      assert.match(r.out(), /no difference from the analysis/);
    } else {
      // The userspace datapath enforces nothing: the cells the policy denies differ, and only those.
      assert.equal(code, 1, r.out() + r.err());
      assert.deepEqual(differences.sort(), [
        '  TCP/5432 front/cli -> back/db: analysis denied, observed allowed',
      ]);
    }
  });

  test('an edited directory is what the next probe probes: a pod added gets a netns, a pod removed loses its own', async () => {
    const removed = state.pods['front/cli']!.netns;
    await writeManifests(dir, 'cluster.yaml', [
      ...CLUSTER.filter((o) => (o.metadata as { name: string }).name !== 'cli'),
      pod('back', 'cache', { labels: { app: 'cache' }, ips: ['10.50.2.2', 'fd00:50::2'] }),
    ]);
    const { state: now } = await labSync({ lab, root });
    assert.deepEqual(Object.keys(now.pods).sort(), ['back/cache', 'back/db', 'front/web']);
    const names = new Set(await listNetns());
    assert.ok(!names.has(removed), `netns ${removed} removed`);
    assert.ok(names.has(now.pods['back/cache']!.netns));
    const r = buffered();
    assert.equal(
      await main(['lab', 'probe', '--lab', lab, '--probe', 'TCP/80', '-o', 'json'], r.io),
      0,
      r.err(),
    );
    assert.deepEqual(JSON.parse(r.out()).pods, ['back/cache', 'back/db', 'front/web']);
  });

  test('an invalid manifest fails the probe naming the object and the field, and the lab keeps what it had', async () => {
    await writeManifests(dir, 'policy.yaml', [
      networkPolicy('back', 'broken', {
        podSelector: {},
        ingress: [{ ports: [{ port: 'not a port name!' }] }],
      }),
    ]);
    const r = buffered();
    const code = await main(['lab', 'probe', '--lab', lab], r.io);
    assert.equal(code, 2, r.err());
    assert.match(r.err(), /NetworkPolicy back\/broken/);
    assert.match(r.err(), /spec\.ingress\[0\]\.ports\[0\]\.port/);
    assert.deepEqual(Object.keys((await requireState({ lab, root })).state.pods).sort(), [
      'back/cache',
      'back/db',
      'front/web',
    ]);
    await rm(join(dir, 'policy.yaml'));
  });

  test('down removes every netns, process and file of the lab, also what a crashed run made without recording it', async () => {
    const crashed = 'crashed';
    const s = await labUp({ dir, lab: crashed, root, nodes: 1 });
    // As if `up` had died between making a namespace and recording it.
    const stray = `${netnsPrefix(s.id)}p999`;
    await addNetns(stray);
    await labDown({ lab: crashed, root });
    const left = (await listNetns()).filter((n) => n.startsWith(netnsPrefix(s.id)));
    assert.deepEqual(left, []);
    assert.ok(!(await readdir(root)).includes(crashed));
    for (const pid of [s.controllerPid, ...Object.values(s.nodes).map((n) => n.agentPid)]) {
      assert.throws(() => process.kill(pid!, 0), `process ${pid} is gone`);
    }
    // The other lab is untouched.
    assert.ok((await listNetns()).includes(state.fabric));
  });
});
