#!/usr/bin/env node
// `npm start`: the whole system on one machine. The controller reads the demo
// cluster in deploy/examples (watched: edit the files and watch the agents
// follow), three agents play node-a, node-b and node-c, and weirctl talks to
// them. Ctrl-C stops everything.
//
// As root, where weir-agent has the kernel datapath, the demo is a lab
// instead (`weirctl lab`): a netns per node and pod, the agents enforcing on
// real packets, and a probe of real connections between the pods printed
// beside the analysis. WEIR_DEMO_DATAPATH=userspace asks for the userspace
// demo; when the lab cannot run, the demo says why and runs the userspace one.
//
// It reports only what it started. It holds its state directory (one demo
// per directory: WEIR_DEMO_STATE), listens where nothing else does (WEIR_LISTEN
// when given, refused when taken; else 127.0.0.1:7443, or a free port when
// that is taken), starts the agents only once the controller answering
// there is its own (status' pid), and is ready only when `weirctl status`
// from that controller shows each of its agents (by API address) connected
// and in sync. When any part exits or readiness times out
// (WEIR_DEMO_TIMEOUT_MS, default 60 s) it stops the rest and exits 1.
//
// Everything speaks mutual TLS, as in a cluster: at start the demo issues a
// CA and certificates into its state directory (tls/: the controller's,
// one per agent node, an admin operator's for weirctl); the hints it prints
// use them. WEIR_DEMO_INSECURE=1 runs everything with --insecure instead.
//
// `npm start -- --transport nats`: the same over NATS JetStream (docs/nats.md):
// it starts a local nats-server (NATS_SERVER, default /usr/sbin/nats-server)
// on a free port with JetStream in the state directory, and the agents
// publish their flow events there too. That server takes only TLS, with
// client certificates of the demo's CA mapped to the roles' users (the
// controller, each node's agent, the operator as flow reader), as
// `weirctl nats config --auth tls` configures one in a cluster.
import { execFile, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '../bin/launch.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const manifests = process.env.WEIR_DEMO_MANIFESTS ?? join(root, 'deploy', 'examples');
const timeoutMs = Number(process.env.WEIR_DEMO_TIMEOUT_MS ?? 60_000);
const nodes = ['node-a', 'node-b', 'node-c'];
const DEFAULT_LISTEN = '127.0.0.1:7443';
const argv = process.argv.slice(2);
const transportAt = argv.indexOf('--transport');
const transport = transportAt >= 0 ? argv[transportAt + 1] : 'grpc';
if (transport !== 'grpc' && transport !== 'nats') {
  process.stderr.write(`demo: --transport must be grpc or nats, not ${transport}\n`);
  process.exit(2);
}

const children = [];
let stopping = false;
let lock;

function say(message) {
  process.stderr.write(`demo: ${message}\n`);
}

/** Stops every part (SIGTERM, then SIGKILL after 5 s), releases the state dir, exits. */
async function stop(code) {
  if (stopping) return;
  stopping = true;
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = Promise.all(running.map((c) => new Promise((r) => c.once('exit', r))));
  for (const c of running) c.kill('SIGTERM');
  const kill = setTimeout(() => {
    for (const c of running) c.kill('SIGKILL');
  }, 5_000);
  await exited;
  clearTimeout(kill);
  await lock?.release().catch(() => undefined);
  process.exit(code);
}

function fail(message) {
  if (stopping) return;
  say(message);
  void stop(1);
}

// What a signal does: stop the parts (the lab demo replaces it with removing the lab).
let onSignal = () => void stop(0);
process.on('SIGINT', () => onSignal());
process.on('SIGTERM', () => onSignal());

/** The last lines of a part's log that say what went wrong. */
function lastWords(log) {
  let text = '';
  try {
    text = readFileSync(log, 'utf8');
  } catch {
    return '';
  }
  // The end of the log, not a number of lines: a usage text after the error is long.
  const lines = text
    .slice(-256 * 1024)
    .trimEnd()
    .split('\n');
  const said = [];
  for (const line of lines) {
    try {
      const l = JSON.parse(line);
      if (l.level >= 50) said.push(`${l.msg}${l.err?.message ? `: ${l.err.message}` : ''}`);
    } catch {
      if (/^(error|fatal)/.test(line)) said.push(line);
    }
  }
  return said.slice(-3).join('\n  ');
}

function start(state, name, bin, args) {
  const log = join(state, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [join(root, 'bin', bin), ...args], {
    stdio: ['ignore', fd, fd],
  });
  child.on('exit', (code, signal) => {
    const why = lastWords(log);
    fail(
      `${name} exited (${signal ?? `status ${code}`})${why ? `:\n  ${why}` : ''}\n  (log: ${log})`,
    );
  });
  children.push(child);
  return child;
}

/** Whether host:port can be listened on now. */
function portFree(host, port) {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', (err) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function freePort(host) {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function splitAddress(address) {
  const colon = address.lastIndexOf(':');
  return {
    host: address.slice(0, colon).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(colon + 1)),
  };
}

/** The flags that give a program its certificates (or --insecure); set in main(). */
let tlsArgs = () => [];

function weirctl(listen, ...args) {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [join(root, 'bin', 'weirctl'), ...args, '--controller', listen, ...tlsArgs('operator')],
      { encoding: 'utf8', timeout: 15_000 },
      (err, out, errOut) => (err ? reject(new Error(errOut.trim() || err.message)) : resolve(out)),
    ),
  );
}

/** Polls `weirctl status -o json` until `check` returns a value; fails the demo at the deadline. */
async function until(listen, deadline, what, check) {
  let last = 'no answer yet';
  while (!stopping) {
    try {
      const s = JSON.parse(await weirctl(listen, 'status', '-o', 'json'));
      const r = check(s);
      if (typeof r !== 'string') return r;
      last = r;
    } catch (err) {
      last = err.message.split('\n')[0];
    }
    if (Date.now() >= deadline) {
      fail(`${what} within ${timeoutMs / 1000} s: ${last}`);
      return undefined;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}

/** Why the demo cannot be a lab here, or undefined when it can. */
async function labUnavailable() {
  if (process.env.WEIR_DEMO_DATAPATH === 'userspace') return 'WEIR_DEMO_DATAPATH=userspace';
  const { labUnsupported, agentDatapaths } = await launch('cli/lab');
  const why = await labUnsupported();
  if (why !== undefined) return why;
  if (!(await agentDatapaths()).nftables)
    return 'this weir-agent has no kernel datapath (--datapath nftables)';
  return undefined;
}

const DEMO_PROBES = ['TCP/8080', 'TCP/9000', 'TCP/6379', 'TCP/7000', 'TCP/5432', 'TCP/9090'];

/** The web console (docs/console.md): loopback HTTP, WEIR_DEMO_UI or 127.0.0.1:7480 when free. */
async function consoleAddress() {
  if (process.env.WEIR_DEMO_UI !== undefined) return process.env.WEIR_DEMO_UI;
  return (await portFree('127.0.0.1', 7480))
    ? '127.0.0.1:7480'
    : `127.0.0.1:${await freePort('127.0.0.1')}`;
}

/** The demo as a lab: real namespaces, real packets, enforced by the kernel datapath. */
async function labDemo(state) {
  const env = { ...process.env, WEIR_LAB_ROOT: join(state, 'lab') };
  const weirctlLab = (args, timeout) =>
    new Promise((resolve, reject) =>
      execFile(
        process.execPath,
        [join(root, 'bin', 'weirctl'), 'lab', ...args, '--lab', 'demo'],
        { encoding: 'utf8', timeout, env },
        (err, out, errOut) =>
          err && err.code !== 1
            ? reject(new Error(errOut.trim() || err.message))
            : resolve({ out, err: errOut, code: err ? 1 : 0 }),
      ),
    );
  const down = async (code) => {
    if (stopping) return;
    stopping = true;
    await weirctlLab(['down'], 60_000).catch((err) => say(`weirctl lab down: ${err.message}`));
    await lock?.release().catch(() => undefined);
    process.exit(code);
  };
  onSignal = () => void down(0);
  try {
    await weirctlLab(['down'], 60_000); // what an earlier demo left
    say(
      'building the lab: a network namespace per node and per pod, the controller, an agent per node',
    );
    const ui = await consoleAddress();
    await weirctlLab(
      [
        'up',
        '-f',
        manifests,
        '--datapath',
        'nftables',
        '--timeout',
        String(timeoutMs / 1000),
        '--ui-listen',
        ui,
      ],
      timeoutMs + 60_000,
    );
    const probeArgs = ['probe', ...DEMO_PROBES.flatMap((p) => ['--probe', p]), '--compare'];
    const probe = await weirctlLab(probeArgs, timeoutMs + 60_000);
    process.stdout.write(`Weir demo in a lab: the cluster in ${manifests} on real network namespaces, enforced by
each node's agent in the kernel (nftables, NFQUEUE, conntrack). Real TCP connections from every pod
to every pod on each pod's port (✓ connected, ✗ refused by policy):

${probe.out}
Edit a file in ${manifests} and probe again (the lab waits until every agent enforces the edit):
  export WEIR_LAB_ROOT=${join(state, 'lab')}
  bin/weirctl lab probe --lab demo --probe TCP/9000 --compare
  bin/weirctl analyze matrix -f ${manifests} --probe TCP/9000
  bin/weirctl status --controller unix:${join(state, 'lab', 'demo', 'controller', 'controller.sock')} --tls-dir ${join(state, 'lab', 'demo', 'tls', 'operator')}

Console: http://${ui}/  (the cluster, policies, reachability, live flows of the lab's real connections,
explain; plain HTTP on loopback)

Ctrl-C removes the lab.
ready
`);
    // The lab runs detached; this process only waits for Ctrl-C to remove it.
    setInterval(() => undefined, 60_000);
  } catch (err) {
    say(`the lab demo failed: ${err.message}`);
    await down(1);
  }
}

async function main() {
  const state = process.env.WEIR_DEMO_STATE ?? join(root, 'state', 'demo');
  // One demo per state directory: the agents' spans, the controller's state and the logs are its own.
  const { prepareStateDir } = await launch('shared/state/state-dir');
  const { StateDirLock } = await launch('shared/state/lock');
  const { silentLogger } = await launch('shared/log');
  try {
    await prepareStateDir(state);
    lock = await StateDirLock.acquire(state, {
      program: 'weir demo',
      detail: 'npm start',
      log: silentLogger,
      waitMs: 0,
      onCompromised: () => fail(`another process took the state directory ${state}`),
    });
  } catch (err) {
    say(`${err.message} (set WEIR_DEMO_STATE to run another demo beside it)`);
    process.exit(1);
  }

  const noLab = await labUnavailable();
  if (noLab === undefined) {
    await labDemo(state);
    return;
  }
  if (process.env.WEIR_DEMO_DATAPATH !== 'userspace')
    say(
      `${noLab}: running the userspace demo (the agents decide generated traffic, not real packets)`,
    );

  let listen = process.env.WEIR_LISTEN;
  if (listen !== undefined) {
    const { host, port } = splitAddress(listen);
    if (!(Number.isInteger(port) && port > 0 && port < 65536)) {
      say(`WEIR_LISTEN=${listen} must be HOST:PORT with a port from 1 to 65535`);
      await stop(2);
    }
    if (!(await portFree(host, port))) {
      say(
        `${listen} is in use (another demo, or a controller?): stop it, or set WEIR_LISTEN to a free address`,
      );
      await stop(1);
    }
  } else {
    const { host, port } = splitAddress(DEFAULT_LISTEN);
    listen = (await portFree(host, port)) ? DEFAULT_LISTEN : `${host}:${await freePort(host)}`;
    if (listen !== DEFAULT_LISTEN)
      say(`${DEFAULT_LISTEN} is in use; the controller listens on ${listen}`);
  }
  const deadline = Date.now() + timeoutMs;

  const tlsDir = join(state, 'tls');
  if (process.env.WEIR_DEMO_INSECURE === '1') {
    say('WEIR_DEMO_INSECURE=1: everything runs with --insecure (no TLS, no client authentication)');
    tlsArgs = () => ['--insecure'];
  } else {
    // A fresh CA per demo run: certificates of an earlier run are replaced.
    const { issueCa, issueCert, writeCaDir, writeTlsDir } = await launch('shared/tls/issue');
    const { CONTROLLER_URI, nodeUri, operatorUri } = await launch('shared/tls/identity');
    const ca = await issueCa({ name: 'weir-demo-ca' });
    await writeCaDir(join(tlsDir, 'ca'), ca);
    const issue = async (name, uri) =>
      writeTlsDir(join(tlsDir, name), await issueCert(ca, { uri, commonName: name }));
    await issue('controller', CONTROLLER_URI);
    await issue('operator', operatorUri('admin', 'demo'));
    for (const node of nodes) await issue(node, nodeUri(node));
    tlsArgs = (who) => ['--tls-dir', join(tlsDir, who)];
  }

  let natsArgs = [];
  let natsUrl;
  if (transport === 'nats') {
    const port = await freePort('127.0.0.1');
    natsUrl = `nats://127.0.0.1:${port}`;
    const log = join(state, 'nats-server.log');
    const fd = openSync(log, 'a');
    const server = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';
    const config = join(state, 'nats-server.conf');
    const lines = [
      `listen: 127.0.0.1:${port}`,
      `jetstream { store_dir: ${JSON.stringify(join(state, 'nats'))} }`,
    ];
    if (process.env.WEIR_DEMO_INSECURE !== '1') {
      // As in a cluster (docs/nats.md "TLS and identities"): TLS, and each
      // program's certificate mapped to its role's user, as `weirctl nats
      // config --auth tls` writes them; the server's own certificate is
      // named by host (localhost, 127.0.0.1), as NATS clients check it.
      const { issueCert, readCaDir, writeTlsDir } = await launch('shared/tls/issue');
      const ca = await readCaDir(join(tlsDir, 'ca'));
      await writeTlsDir(
        join(tlsDir, 'nats-server'),
        await issueCert(ca, {
          commonName: 'nats-server',
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1'],
        }),
      );
      const { natsConfig } = await launch('cli/commands/nats-config');
      const conf = join(state, 'nats-conf');
      await natsConfig(
        { stdout: () => undefined, stderr: (t) => say(t.trimEnd()) },
        {
          cluster: 'local',
          node: nodes,
          reader: ['admin/demo'],
          auth: 'tls',
          serverTlsDir: join(tlsDir, 'nats-server'),
          out: conf,
        },
      );
      lines.push(
        'include "nats-conf/weir-tls.conf"',
        'include "nats-conf/weir-authorization.conf"',
      );
    }
    writeFileSync(config, `${lines.join('\n')}\n`);
    const child = spawn(server, ['-c', config], { stdio: ['ignore', fd, fd] });
    child.on('error', (err) =>
      fail(`cannot start ${server}: ${err.message} (apt-get install nats-server)`),
    );
    child.on('exit', (code, signal) =>
      fail(`nats-server exited (${signal ?? `status ${code}`}) (log: ${log})`),
    );
    children.push(child);
    while (await portFree('127.0.0.1', port)) {
      if (Date.now() > deadline) return fail('nats-server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    // The programs' certificates (tlsArgs) are their NATS identities too; with --insecure, neither has TLS.
    natsArgs = ['--transport', 'nats', '--nats', natsUrl];
  }

  const ui = await consoleAddress();
  const controller = start(state, 'controller', 'weir-controller', [
    '--manifests',
    manifests,
    '--listen',
    listen,
    '--ui-listen',
    ui,
    '--state-dir',
    join(state, 'controller'),
    ...tlsArgs('controller'),
    ...natsArgs,
  ]);
  // Agents connect only once the controller answering is the one started here.
  const ours = (s) =>
    s.pid === controller.pid
      ? s
      : `${listen} is answered by a controller this demo did not start (pid ${s.pid})`;
  if ((await until(listen, deadline, 'the controller did not answer', ours)) === undefined) return;

  const apis = new Map();
  for (const node of nodes) {
    const api = `127.0.0.1:${await freePort('127.0.0.1')}`;
    apis.set(node, api);
    // The agents run the userspace datapath on generated traffic between the demo's pods.
    start(state, node, 'weir-agent', [
      '--node',
      node,
      '--controller',
      listen,
      '--state-dir',
      join(state, node),
      '--listen',
      api,
      // As root the agent would pick the kernel datapath, which takes no generated traffic.
      '--datapath',
      'userspace',
      '--synthetic-traffic',
      '5',
      ...tlsArgs(node),
      ...natsArgs,
    ]);
  }
  // Ready: our controller, and each of our agents (told apart by its API address) connected and in sync.
  const ready = await until(listen, deadline, 'the demo did not converge', (s) => {
    const o = ours(s);
    if (typeof o === 'string') return o;
    const missing = nodes.filter(
      (n) =>
        !s.agents.some(
          (a) => a.node === n && a.apiAddress === apis.get(n) && a.connected && a.inSync,
        ),
    );
    return missing.length === 0 ? s : `not in sync yet: ${missing.join(', ')}`;
  });
  if (ready === undefined) return;
  const table = await weirctl(listen, 'status').catch((err) =>
    fail(`weirctl status failed: ${err.message}`),
  );
  if (stopping) return;
  process.stdout.write(`Weir demo: the controller (pid ${controller.pid}) serves ${listen} with the cluster in ${manifests}
(watched: edit a file and the agents follow); agents ${nodes.join(', ')}${natsUrl ? `, over NATS JetStream at ${natsUrl}` : ''}; logs in ${state}.

Console: http://${ui}/  (the cluster, policies, reachability, live flows, explain; plain HTTP on loopback:
any local user of this machine can read it, see docs/console.md)

${table}
Point weirctl at it (${process.env.WEIR_DEMO_INSECURE === '1' ? 'INSECURE: no TLS' : `mutual TLS: an admin operator's certificate in ${join(tlsDir, 'operator')}`}) and try:
  export WEIR_CONTROLLER=${listen}
${
  process.env.WEIR_DEMO_INSECURE === '1'
    ? '  alias weirctl="bin/weirctl --insecure"\n'
    : `  export WEIR_CERT=${join(tlsDir, 'operator', 'tls.crt')} WEIR_KEY=${join(tlsDir, 'operator', 'tls.key')} WEIR_CA=${join(tlsDir, 'operator', 'ca.crt')}\n`
}  bin/weirctl status
  bin/weirctl policy list
  bin/weirctl explain --from shop/web --to shop/cart --port 9000
  bin/weirctl flows --node node-b                 (flows, with the policy behind each verdict)
  bin/weirctl flows --node node-c --action deny -o wide
  bin/weirctl flows stats --node node-a
  bin/weirctl analyze matrix -f ${manifests} --probe TCP/9000
${natsUrl ? `  bin/weirctl flows --follow --source nats --nats ${natsUrl}${process.env.WEIR_DEMO_INSECURE === '1' ? ' --insecure' : ''} --since 5m   (every node's flow events)\n` : ''}
Ctrl-C stops everything.
ready
`);
}

main().catch((err) => fail(err.stack ?? String(err)));
