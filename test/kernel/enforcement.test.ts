/**
 * The kernel datapath on real packets (root, network namespaces): the real
 * controller and agent in a node namespace that routes three pod
 * namespaces; real TCP and UDP connections over IPv4 and IPv6.
 *
 *   web (prod) ──▶ api (prod, isolated: admits app=web on TCP/8080, UDP/5353)
 *   tool (dev) ──▶ api: denied (default deny); web ↔ tool: not isolated
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inNs, kernelSkipReason, PEER_SCRIPT } from '../../testing/netns.js';
import { nativeAddon } from '../../vrouter-agent/native/loader.js';
import { decodeMark } from '../../vrouter-agent/datapath/kernel-datapath.js';
import { eventually } from '../support/processes.js';
import { KernelCluster } from './support.js';

const skip = kernelSkipReason(nativeAddon());
if (skip) console.log(`# skipping the kernel datapath tests: ${skip}`);

describe('the kernel datapath enforces policy on real connections', { skip }, () => {
  let c: KernelCluster;

  before(async () => {
    c = await KernelCluster.create();
    await c.writeManifest('10-api-in', KernelCluster.apiIngress('web'));
    await c.startAgent('open');
    for (const [host, proto, port] of [
      [c.api.v4, 'tcp', 8080],
      [c.api.v6, 'tcp', 8080],
      [c.api.v4, 'udp', 5353],
      [c.api.v6, 'udp', 5353],
      [c.api.v4, 'tcp', 9090],
      [c.tool.v4, 'tcp', 8080],
      [c.tool.v6, 'tcp', 8080],
    ] as const)
      await c.topo.serve(
        host === c.tool.v4 || host === c.tool.v6 ? c.tool : c.api,
        proto,
        host,
        port,
      );
  });

  after(async () => {
    await c?.[Symbol.asyncDispose]();
  });

  // The observed matrix, as a table: from, to (address), protocol, port, allowed.
  const cases = () =>
    [
      ['web', c.api.v4, 'tcp', 8080, true],
      ['web', c.api.v6, 'tcp', 8080, true],
      ['web', c.api.v4, 'udp', 5353, true],
      ['web', c.api.v6, 'udp', 5353, true],
      ['web', c.api.v4, 'tcp', 9090, false],
      ['tool', c.api.v4, 'tcp', 8080, false],
      ['tool', c.api.v6, 'tcp', 8080, false],
      ['tool', c.api.v4, 'udp', 5353, false],
      ['web', c.tool.v4, 'tcp', 8080, true],
      ['web', c.tool.v6, 'tcp', 8080, true],
      ['api', c.tool.v4, 'tcp', 8080, true],
    ] as const;

  test('each connection is allowed or denied as the policy says, IPv4 and IPv6, TCP and UDP, with replies', async () => {
    const pods = { web: c.web, api: c.api, tool: c.tool };
    const seen: string[] = [];
    const want: string[] = [];
    for (const [from, host, proto, port, allowed] of cases()) {
      const ok = await c.topo.probe(pods[from], proto, host, port, allowed ? 3000 : 1200);
      seen.push(`${from} → ${host} ${proto}/${port}: ${ok ? 'allowed' : 'denied'}`);
      want.push(`${from} → ${host} ${proto}/${port}: ${allowed ? 'allowed' : 'denied'}`);
    }
    assert.deepEqual(seen, want);
  });

  test('an allowed connection carries its rule id in the conntrack mark, and the agent lists it with rule and policy', async () => {
    assert.ok(await c.topo.probe(c.web, 'tcp', c.api.v4, 8080, 3000));
    const lines = await c.conntrack(4);
    // The original direction: web → api:8080.
    const orig = new RegExp(`src=${c.web.v4} dst=${c.api.v4} sport=\\d+ dport=8080 `);
    const line = lines.find((l) => orig.test(l));
    assert.ok(line, `a Weir conntrack entry web → api:8080 in\n${lines.join('\n')}`);
    const mark = Number(/mark=(\d+)/.exec(line)![1]);
    const decoded = decodeMark(mark);
    assert.ok(decoded, `mark ${mark.toString(16)} is Weir's`);
    assert.equal(decoded.ingress.kind, 'rule', 'the ingress gate is a rule');
    assert.equal(decoded.egress.kind, 'default', 'web is not isolated for egress');
    const flow = await c.eventuallyFlow(
      (f) => f.destination === c.api.v4 && f.destinationPort === 8080 && f.action === 'allow',
      'the agent lists web → api:8080',
    );
    assert.equal(flow.sourcePod, 'prod/web');
    assert.equal(flow.destinationPod, 'prod/api');
    assert.equal(flow.ingress.decision, 'rule');
    assert.match(flow.ingress.policyName, /api-in/);
    assert.notEqual(flow.ingress.rule, '');
  });

  test('a denied first packet is listed as a drop flow with its reason', async () => {
    assert.equal(await c.topo.probe(c.tool, 'tcp', c.api.v4, 8080, 800), false);
    const flow = await c.eventuallyFlow(
      (f) => f.destination === c.api.v4 && f.sourcePod === 'dev/tool' && f.action === 'deny',
      'a deny flow tool → api',
    );
    assert.equal(flow.dropReason, 'policy-ingress');
    assert.equal(flow.ingress.decision, 'deny');
  });

  test('traffic between a pod and its own node passes under a default deny, both ways', async () => {
    // The node reaches api on a port no rule admits (as kubelet probes do) ...
    const out = await inNs(c.topo.node, [
      process.execPath,
      PEER_SCRIPT,
      'probe',
      'tcp',
      c.api.v4,
      '9090',
      '2000',
    ]);
    assert.equal(out.trim(), 'ok', 'node → api:9090');
    // ... and api reaches a server on its node's address.
    const server = c.topo.spawn(c.topo.node, [
      process.execPath,
      PEER_SCRIPT,
      'serve',
      'tcp',
      '10.200.2.1',
      '9100',
    ]);
    await eventually(
      async () => ((await c.topo.probe(c.api, 'tcp', '10.200.2.1', 9100, 1000)) ? true : undefined),
      'api → its node',
      10_000,
    );
    server.kill('SIGKILL');
  });

  test('metrics say which datapath runs, how it queues, its fail mode, and count slow-path verdicts', async () => {
    const text = await c.metrics();
    assert.match(
      text,
      /weir_agent_datapath_info\{kind="nftables",queue_method="(xtables-nfqueue|nft-queue)",fail_mode="open",reason="requested \(--datapath nftables\)"\} 1/,
    );
    const allowed = Number(
      /weir_agent_slow_path_verdicts_total\{verdict="allow"\} (\d+)/.exec(text)?.[1],
    );
    const denied = Number(
      /weir_agent_slow_path_verdicts_total\{verdict="deny"\} (\d+)/.exec(text)?.[1],
    );
    assert.ok(allowed > 0 && denied > 0, `allow ${allowed}, deny ${denied}`);
    assert.match(
      text,
      /weir_agent_first_packet_verdict_seconds\{quantile="0.99",stage="decided"\} /,
    );
  });
});
