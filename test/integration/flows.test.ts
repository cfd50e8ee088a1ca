/**
 * Flows end to end: a controller and an agent as processes, the agent's
 * userspace datapath fed by generated traffic, read with weirctl; then a
 * policy change re-evaluates the flows the agent holds.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ROOT,
  WeirProcess,
  eventually,
  freePort,
  weirctl as runWeirctl,
} from '../support/processes.js';
import { listServices } from '../support/reflection.js';
import { spawn } from 'node:child_process';

interface WireFlow {
  id: number;
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

describe('flows through an agent', () => {
  let dir: string;
  let address: string;
  let agentApi: string;
  let controller: WeirProcess;
  let agent: WeirProcess;
  let controllerMetrics: string;
  let agentMetrics: string;

  const weirctl = (...args: string[]) => runWeirctl(address, ...args);
  const flows = async (...filters: string[]) => {
    const r = await weirctl('flows', '--node', 'node-c', '-o', 'json', ...filters);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as WireFlow[];
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-flows-'));
    await cp(join(ROOT, 'deploy', 'examples'), join(dir, 'manifests'), { recursive: true });
    address = `127.0.0.1:${await freePort()}`;
    agentApi = `127.0.0.1:${await freePort()}`;
    controllerMetrics = `127.0.0.1:${await freePort()}`;
    agentMetrics = `127.0.0.1:${await freePort()}`;
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(dir, 'manifests'),
      '--listen',
      address,
      '--metrics-listen',
      controllerMetrics,
    ]);
    await controller.waitFor((l) => l.msg === 'controller serving', 'the controller');
    agent = new WeirProcess('node-c', 'weir-agent', [
      '--node',
      'node-c',
      '--controller',
      address,
      '--state-dir',
      join(dir, 'node-c'),
      '--listen',
      agentApi,
      '--synthetic-traffic',
      '40',
      '--metrics-listen',
      agentMetrics,
    ]);
    await agent.waitFor((l) => l.msg === 'span applied', 'the span');
  });

  after(async () => {
    await Promise.all([controller?.kill(), agent?.kill()]);
    await rm(dir, { recursive: true, force: true });
  });

  test('every flow names its pods and, per direction, the policy that allowed or isolated it', async () => {
    const all = await eventually(async () => {
      const f = await flows();
      return f.some((x) => x.action === 'allow') && f.some((x) => x.action === 'deny')
        ? f
        : undefined;
    }, 'allowed and denied flows');
    for (const f of all) {
      const local = [f.sourcePod, f.destinationPod].filter(
        (p) => p === 'payments/checkout' || p === 'payments/ledger-db',
      );
      assert.ok(local.length > 0, `flow ${f.index} touches a pod of node-c`);
      if (f.action === 'deny') {
        const gate = f.dropReason === 'policy-egress' ? f.egress : f.ingress;
        assert.equal(
          gate.decision,
          'deny',
          `flow ${f.index}: the gate named by ${f.dropReason} denied`,
        );
        assert.match(gate.policyName, /payments\/(checkout-egress|ledger-db)/);
      } else {
        for (const gate of [f.egress, f.ingress]) assert.notEqual(gate.decision, 'deny');
      }
    }
    // Everything checkout sends is decided by its egress policy (it is isolated for egress).
    for (const f of all.filter((x) => x.sourcePod === 'payments/checkout')) {
      assert.ok(
        f.egress.decision === 'rule' || f.egress.decision === 'deny',
        JSON.stringify(f.egress),
      );
      if (f.egress.decision === 'rule')
        assert.equal(f.egress.policyName, 'payments/checkout-egress');
    }
  });

  test('filters select flows by action, pod, protocol and policy, and --match by endpoints in either order', async () => {
    const denied = await flows('--action', 'deny');
    assert.ok(denied.length > 0 && denied.every((f) => f.action === 'deny'));
    const db = await flows('--pod', 'payments/ledger-db');
    assert.ok(
      db.every(
        (f) => f.sourcePod === 'payments/ledger-db' || f.destinationPod === 'payments/ledger-db',
      ),
    );
    const tcp = await flows('--protocol', 'tcp');
    assert.ok(tcp.every((f) => f.protocol === 6));
    const byPolicy = await flows('--policy', 'payments/ledger-db');
    assert.ok(
      byPolicy.length > 0 &&
        byPolicy.every((f) =>
          [f.egress.policyName, f.ingress.policyName].some((n) => n.includes('payments/ledger-db')),
        ),
    );
    const one = db[0]!;
    const matched = await flows('--match', `${one.destination},${one.source}`);
    assert.ok(
      matched.some((f) => f.index === one.index),
      'found with the ends given in reverse order',
    );
  });

  test('flows get and flows stats read one flow in full and the counters by reason; a flow that is not there is NOT_FOUND', async () => {
    const [first] = await flows('--limit', '1');
    const get = await weirctl('flows', 'get', String(first!.id), '--node', agentApi, '-o', 'json');
    assert.equal(get.code, 0, get.err);
    assert.equal(JSON.parse(get.out).id, first!.id);
    assert.equal(JSON.parse(get.out).index, first!.index);
    const missing = await weirctl('flows', 'get', '4294967', '--node', agentApi);
    assert.equal(missing.code, 1, 'NOT_FOUND exits 1, as kubectl');
    assert.match(missing.err, /no flow 4294967 on this agent/);
    const byIndex = await weirctl('flows', 'get', '4294967', '--index', '--node', agentApi);
    assert.match(byIndex.err, /no flow at index 4294967/);
    assert.equal(missing.out, '');
    const stats = await weirctl('flows', 'stats', '--node', 'node-c', '-o', 'json');
    const s = JSON.parse(stats.out);
    assert.ok(Number(s.flows) > 0 && Number(s.inserted) >= Number(s.flows));
    assert.match(s.engine, /flow table (native|typescript), verdicts (native|typescript)/);
    assert.ok(
      Number(s.dropsByReason['policy-ingress']) + Number(s.dropsByReason['policy-egress']) > 0,
    );
  });

  test('a policy change re-evaluates the flows the agent holds: what it now denies is denied', async () => {
    // ledger-db stops taking anything: its allow rule goes.
    const before = await eventually(
      async () => {
        const f = (await flows('--pod', 'payments/ledger-db', '--action', 'allow')).filter(
          (x) => x.destinationPod === 'payments/ledger-db' && x.ingress.decision === 'rule',
        );
        return f.length > 0 ? f : undefined;
      },
      'a flow into ledger-db allowed by its policy',
      30_000,
    );
    const file = join(dir, 'manifests', '20-policies.yaml');
    const text = await readFile(file, 'utf8');
    await writeFile(
      file,
      text.replace(
        '    - from: [{ podSelector: { matchExpressions: [{ key: app, operator: In, values: [checkout] }] } }]\n      ports: [{ port: postgres }]',
        '    []',
      ),
    );
    await agent.waitFor(
      (l) => l.msg === 'flows re-evaluated against the new policy',
      're-evaluation',
      15_000,
    );
    const after = await flows('--pod', 'payments/ledger-db');
    let checked = 0;
    for (const f of before) {
      const now = after.find(
        (x) =>
          x.index === f.index && x.source === f.source && x.destinationPort === f.destinationPort,
      );
      if (now === undefined) continue; // aged out since (closed TCP flows stay 10 s, UDP 30 s)
      checked++;
      assert.equal(now.action, 'deny', `flow ${f.index} is denied now`);
      assert.equal(now.ingress.decision, 'deny');
    }
    assert.ok(checked > 0, 'at least one flow allowed before was still there to check');
  });

  test('weirctl flows -w streams flow events as they happen', async () => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'weirctl'), 'flows', '-w', '--node', agentApi, '-o', 'json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const events: Array<{ type: string; flow: WireFlow; at: string }> = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`only ${events.length} events in 15 s`)),
          15_000,
        );
        let buf = '';
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          for (const l of lines) if (l.trim()) events.push(JSON.parse(l));
          if (events.length >= 5) {
            clearTimeout(t);
            resolve();
          }
        });
      });
    } finally {
      child.kill('SIGINT');
    }
    assert.ok(events.some((e) => e.type === 'created'));
    for (const e of events) {
      assert.ok(
        ['created', 'verdict', 'reevaluated', 'closed', 'aged', 'evicted'].includes(e.type),
        e.type,
      );
      assert.ok(
        Math.abs(Date.parse(e.at) - Date.now()) < 60_000,
        'event times are wall-clock times',
      );
      assert.ok(e.flow.source && e.flow.destination);
    }
  });

  test('the agent API answers server reflection, so generic gRPC tools can call it', async () => {
    const services = await listServices(agentApi);
    for (const s of ['weir.v1.Agent', 'weir.v1.FlowIntrospect'])
      assert.ok(services.includes(s), `${s} in ${services.join(', ')}`);
    const controllerServices = await listServices(address);
    for (const s of ['weir.v1.ControlPlane', 'weir.v1.Operator'])
      assert.ok(controllerServices.includes(s), `${s} in ${controllerServices.join(', ')}`);
  });

  test('controller and agent publish Prometheus metrics with units in their names', async () => {
    const scrape = async (at: string) => (await fetch(`http://${at}/metrics`)).text();
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const c = await scrape(controllerMetrics);
    assert.ok(value(c, 'weir_controller_revision')! >= 1);
    assert.equal(value(c, 'weir_controller_source_synced'), 1);
    assert.equal(value(c, 'weir_controller_agents{state="connected"}'), 1);
    assert.ok(value(c, 'weir_controller_updates_sent_total{kind="snapshot"}')! >= 1);
    assert.ok(value(c, 'weir_controller_update_bytes_total')! > 0);
    assert.match(c, /^weir_controller_commit_seconds_bucket\{le="0\.005"\} \d+/m);
    assert.match(c, /^weir_controller_propagation_seconds_count \d+/m);
    const a = await scrape(agentMetrics);
    assert.ok(value(a, 'weir_agent_applied_revision')! >= 1);
    assert.equal(value(a, 'weir_agent_controller_connected'), 1);
    assert.equal(value(a, 'weir_agent_local_endpoints'), 2);
    assert.ok(value(a, 'weir_agent_flow_setups_total')! > 0);
    assert.ok(value(a, 'weir_agent_packets_total{verdict="allow"}')! > 0);
    assert.ok(
      value(a, 'weir_agent_drops_total{reason="policy-ingress"}')! +
        value(a, 'weir_agent_drops_total{reason="policy-egress"}')! >
        0,
    );
    assert.ok(value(a, 'weir_agent_updates_total{result="applied"}')! >= 1);
    assert.equal((await fetch(`http://${agentMetrics}/healthz`)).status, 200);
  });
});
