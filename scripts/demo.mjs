#!/usr/bin/env node
// `npm start`: the whole system on one machine. The controller reads the demo
// cluster in deploy/examples (watched: edit the files and watch the agents
// follow), three agents play node-a, node-b and node-c, and weirctl talks to
// them. Ctrl-C stops everything.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const listen = process.env.WEIR_LISTEN ?? '127.0.0.1:7443';
const manifests = process.env.WEIR_DEMO_MANIFESTS ?? join(root, 'deploy', 'examples');
const state = process.env.WEIR_DEMO_STATE ?? join(root, 'state', 'demo');
const nodes = ['node-a', 'node-b', 'node-c'];
mkdirSync(state, { recursive: true });

const children = [];
function start(name, bin, args) {
  const log = openSync(join(state, `${name}.log`), 'a');
  const child = spawn(process.execPath, [join(root, 'bin', bin), ...args], {
    stdio: ['ignore', log, log],
  });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${signal ?? code}); see ${join(state, `${name}.log`)}`);
      stop(1);
    }
  });
  children.push(child);
}

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500).unref();
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

start('controller', 'weir-controller', [
  '--manifests',
  manifests,
  '--listen',
  listen,
  '--state-dir',
  join(state, 'controller'),
]);
// The agents run the userspace datapath on generated traffic between the demo's pods.
for (const node of nodes)
  start(node, 'weir-agent', [
    '--node',
    node,
    '--controller',
    listen,
    '--state-dir',
    join(state, node),
    '--synthetic-traffic',
    '5',
  ]);

// Wait until every agent is in sync, then show the status.
const weirctl = (...args) =>
  execFileSync(process.execPath, [join(root, 'bin', 'weirctl'), ...args, '--controller', listen], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
const deadline = Date.now() + 60_000;
for (;;) {
  try {
    const s = JSON.parse(weirctl('status', '-o', 'json'));
    if (nodes.every((n) => s.agents.some((a) => a.node === n && a.inSync))) break;
  } catch {
    // not up yet
  }
  if (Date.now() > deadline) {
    console.error(`the demo did not converge in 60 s; logs are in ${state}`);
    stop(1);
    break;
  }
  await new Promise((r) => setTimeout(r, 250));
}
if (!stopping) {
  process.stdout.write(`Weir demo: the controller serves ${listen} with the cluster in ${manifests}
(watched: edit a file and the agents follow); agents ${nodes.join(', ')}; logs in ${state}.

${weirctl('status')}
Point weirctl at it and try:
  export WEIR_CONTROLLER=${listen}
  bin/weirctl status
  bin/weirctl policy list
  bin/weirctl explain --from shop/web --to shop/cart --port 9000
  bin/weirctl flows --node node-b                 (flows, with the policy behind each verdict)
  bin/weirctl flows --node node-c --action deny -o wide
  bin/weirctl flows stats --node node-a
  bin/weirctl analyze matrix -f ${manifests} --probe TCP/9000

Ctrl-C stops everything.
ready
`);
}
