/**
 * The web console in a real browser: headless Chromium (the Debian package,
 * /usr/bin/chromium) driven by playwright-core, against a real controller
 * (`--ui-listen`) and agents (userspace datapath, synthetic traffic). Each
 * page is checked against what weirctl says of the same cluster: status
 * hashes, `analyze matrix` cells, `explain` verdicts; a flow made by the
 * synthetic traffic appears on the live page. Screenshots are kept in
 * test-artifacts/console/ (gitignored).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';
import { operatorUri } from '../../shared/tls/identity.js';
import { ROOT, WeirProcess, eventually, freePort, pki } from '../support/processes.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts', 'console');
/** The demo cluster and one NetworkPolicy that is rejected (a port out of range). */
const BROKEN = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: broken, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress:
    - ports: [{ port: 70000 }]
`;
const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is missing: install the Debian package chromium (CI does, .ci/run)`;

interface StatusJson {
  rejections: Array<{ object: string; problems: string[] }>;
  agents: Array<{ node: string; inSync: boolean; spanHash: string; inForceHash: string }>;
}
interface MatrixJson {
  pods: string[];
  probes: Array<{
    protocol: string;
    port: number;
    allowed: Record<string, Record<string, boolean>>;
  }>;
}
interface Side {
  allowed: boolean;
  rule?: { id: string };
  tier?: string;
}

describe('the web console in Chromium', { skip }, () => {
  let dir: string;
  let manifests: string;
  let address: string;
  let ui: string;
  let controller: WeirProcess;
  const agents: WeirProcess[] = [];
  let context: BrowserContext;
  let page: Page;

  const weirctl = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [join(ROOT, 'bin', 'weirctl'), ...args],
        { env: { ...process.env, WEIR_CONTROLLER: address } },
        // analyze exits 2 when objects are rejected, and still prints the valid objects' result.
        (e, out, err) =>
          e && !(args[0] === 'analyze' && e.code === 2)
            ? reject(new Error(`weirctl ${args.join(' ')}: ${err}`))
            : resolve(out),
      ),
    );
  const shot = (name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-console-'));
    await mkdir(ARTIFACTS, { recursive: true });
    manifests = join(dir, 'manifests');
    await cp(join(ROOT, 'deploy', 'examples'), manifests, { recursive: true });
    await writeFile(join(manifests, '30-broken.yaml'), BROKEN);
    address = `127.0.0.1:${await freePort()}`;
    const uiPort = await freePort();
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      manifests,
      '--listen',
      address,
      '--ui-listen',
      `127.0.0.1:${uiPort}`,
    ]);
    const serving = await controller.waitFor((l) => typeof l.url === 'string', 'the console');
    ui = String(serving.url);
    for (const node of ['node-a', 'node-c']) {
      const a = new WeirProcess(node, 'weir-agent', [
        '--node',
        node,
        '--controller',
        address,
        '--state-dir',
        join(dir, node),
        '--listen',
        `127.0.0.1:${await freePort()}`,
        '--synthetic-traffic',
        '20',
      ]);
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.waitFor((l) => l.msg === 'span applied', a.name)));
    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1400, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  after(async () => {
    await context?.close();
    await Promise.all([controller?.kill(), ...agents.map((a) => a.kill())]);
    await rm(dir, { recursive: true, force: true });
  });

  test('the cluster page lists every agent with the sync proof and hashes `weirctl status -o json` reports', async () => {
    const status = await eventually(async () => {
      const s = JSON.parse(await weirctl('status', '-o', 'json')) as StatusJson;
      const up = s.agents.filter((a) => a.node === 'node-a' || a.node === 'node-c');
      return up.length === 2 && up.every((a) => a.inSync) ? s : undefined;
    }, 'node-a and node-c in sync');
    await page.goto(`${ui}#/cluster`);
    await page.waitForSelector('#agents tr[data-node="node-a"][data-in-sync="true"]');
    for (const a of status.agents) {
      const row = page.locator(`#agents tr[data-node="${a.node}"]`);
      assert.equal(await row.getAttribute('data-in-sync'), String(a.inSync), a.node);
      assert.equal(
        await row.locator('td[data-field="spanHash"]').getAttribute('data-value'),
        a.spanHash,
        `${a.node} span hash`,
      );
      assert.equal(
        await row.locator('td[data-field="inForceHash"]').getAttribute('data-value'),
        a.inForceHash,
        `${a.node} in-force hash`,
      );
    }
    assert.equal(await page.locator('#agents tbody tr').count(), status.agents.length);
    // Rejected objects, each problem with its field, as status reports them.
    assert.ok(status.rejections.length > 0, 'the broken policy is rejected');
    for (const r of status.rejections) {
      const rows = await page
        .locator(`#rejected tr[data-object="${r.object}"]`)
        .evaluateAll((trs) =>
          trs.map((tr) => {
            const [, field, message] = [...tr.querySelectorAll('td')].map((td) => td.textContent);
            return field ? `${field}: ${message}` : (message ?? '');
          }),
        );
      assert.deepEqual(rows, r.problems, r.object);
    }
    await shot('cluster');
  });

  test('the reachability page shows, cell for cell, what `weirctl analyze matrix` computes from the same manifests', async () => {
    const expected = JSON.parse(
      await weirctl(
        'analyze',
        'matrix',
        '-f',
        manifests,
        '--probe',
        'TCP/80',
        '--probe',
        'TCP/5432',
        '-o',
        'json',
      ),
    ) as MatrixJson;
    await page.goto(`${ui}#/matrix?probe=TCP/80,TCP/5432`);
    await page.waitForSelector('#matrix-out[data-ready="true"]');
    for (const p of expected.probes) {
      const cells = await page
        .locator(`table[data-probe="${p.protocol}/${p.port}"] td[data-from]`)
        .evaluateAll((tds) =>
          tds.map((td) => [
            td.getAttribute('data-from'),
            td.getAttribute('data-to'),
            td.getAttribute('data-allowed'),
          ]),
        );
      const shown: Record<string, Record<string, boolean>> = {};
      for (const [from, to, allowed] of cells) {
        shown[from!] ??= {};
        shown[from!]![to!] = allowed === 'true';
      }
      assert.deepEqual(shown, p.allowed, `${p.protocol}/${p.port}`);
    }
    await shot('matrix');
  });

  test('a policy page shows its rules, the pods it selects, the nodes that proved it, and marks what it grants', async () => {
    const id = 'local/np/payments/ledger-db';
    await page.goto(`${ui}#/policy/${encodeURIComponent(id)}`);
    await page.waitForSelector('#policy #matrix-out[data-ready="true"]');
    assert.deepEqual(await page.locator('#selected li').allTextContents(), ['payments/ledger-db']);
    const realization = page.locator('#realization tr[data-node="node-c"]');
    assert.match((await realization.textContent()) ?? '', /✓/, 'node-c proved it');
    assert.ok((await page.locator('#rules tbody tr').count()) > 0);
    await page.fill('#matrix-form input[name="probe"]', 'TCP/5432');
    await page.click('#matrix-form button');
    await page.waitForSelector(
      'td.granted[data-from="payments/checkout"][data-to="payments/ledger-db"]',
    );
    await shot('policy');
  });

  test('explain gives the verdict and the deciding rule of each side that `weirctl explain` gives', async () => {
    for (const [from, to, port] of [
      ['payments/checkout', 'payments/ledger-db', '5432'],
      ['shop/web', 'payments/ledger-db', '5432'],
      ['shop/web', '10.244.3.20', '7000'],
    ] as const) {
      const cli = JSON.parse(
        await weirctl('explain', '--from', from, '--to', to, '--port', port, '-o', 'json'),
      ) as { allowed: boolean; egress: Side; ingress: Side };
      await page.goto(`${ui}#/explain?from=${from}&to=${to}&protocol=TCP&port=${port}`);
      await page.waitForSelector('#explain-out[data-ready="true"]');
      assert.equal(
        await page.locator('#explain-out .verdict').getAttribute('data-allowed'),
        String(cli.allowed),
        `${from} -> ${to}:${port}`,
      );
      for (const d of ['egress', 'ingress'] as const) {
        const side = page.locator(`#explain-out .side[data-direction="${d}"]`);
        assert.equal(
          await side.getAttribute('data-allowed'),
          String(cli[d].allowed),
          `${d} of ${from} -> ${to}`,
        );
        const rule = side.locator('[data-field="rule"]');
        assert.equal(
          (await rule.count()) > 0 ? await rule.textContent() : undefined,
          cli[d].rule?.id,
          `${d} rule`,
        );
      }
    }
    await shot('explain');
  });

  test('a flow the synthetic traffic makes appears on the live page with its node, tier, policy and rule', async () => {
    await page.goto(`${ui}#/flows?pod=payments/checkout`);
    const row = page.locator('#flow-rows tr[data-node="node-c"]').first();
    await row.waitFor({ timeout: 30_000 });
    assert.ok(
      (await row.getAttribute('data-source-pod')) === 'payments/checkout' ||
        (await row.getAttribute('data-destination-pod')) === 'payments/checkout',
    );
    assert.equal(
      await page.locator('#flow-rows tr[data-node="node-a"]').count(),
      0,
      'filtered by the agents',
    );
    await page.waitForSelector('#flow-rows tr td:has-text("payments/checkout-egress")');
    assert.match(
      (await page.locator('#flow-nodes li[data-node="node-c"]').textContent()) ?? '',
      /watching/,
    );
    await shot('flows');
  });

  test('the flow form takes the direction, selector and time filters weirctl flows takes', async () => {
    await page.goto(`${ui}#/flows`);
    await page.fill('#flow-filter input[name="fromPod"]', 'payments/checkout');
    await page.fill('#flow-filter input[name="since"]', '1h');
    await page.click('#flow-filter button[type="submit"]');
    const row = page.locator('#flow-rows tr[data-node="node-c"]').first();
    await row.waitFor({ timeout: 30_000 });
    // Only flows that payments/checkout starts: the agents evaluate the direction.
    for (const r of await page.locator('#flow-rows tr').all())
      assert.equal(await r.getAttribute('data-source-pod'), 'payments/checkout');
    assert.match(page.url(), /fromPod=payments%2Fcheckout/);
    // A bad value is refused by the controller with the field named on the page.
    await page.fill('#flow-filter input[name="since"]', 'yesterday');
    await page.click('#flow-filter button[type="submit"]');
    await page.waitForSelector('#flows :text("since")');
  });
});

describe('the web console over --ui-tls in Chromium', { skip }, () => {
  let dir: string;
  let controller: WeirProcess;
  let ui: string;
  let browser: Browser;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-console-tls-'));
    await mkdir(ARTIFACTS, { recursive: true });
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(ROOT, 'deploy', 'examples'),
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--ui-listen',
      `127.0.0.1:${await freePort()}`,
      '--ui-tls',
    ]);
    const serving = await controller.waitFor((l) => typeof l.url === 'string', 'the console');
    ui = String(serving.url);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
    });
  });

  after(async () => {
    await browser?.close();
    await controller?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  /** A browser profile presenting this operator certificate to the console (none: no certificate). */
  const contextWith = (operatorDir: string | undefined) =>
    browser.newContext({
      // The controller's certificate names its SPIFFE identity, not 127.0.0.1, and Weir's CA is
      // not the browser's: what is under test is the client certificate the console demands.
      ignoreHTTPSErrors: true,
      ...(operatorDir === undefined
        ? {}
        : {
            clientCertificates: [
              {
                origin: new URL(ui).origin,
                certPath: join(operatorDir, 'tls.crt'),
                keyPath: join(operatorDir, 'tls.key'),
              },
            ],
          }),
    });

  test('an operator certificate of Weir CA opens the cluster page over HTTPS', async () => {
    assert.match(ui, /^https:\/\//);
    const context = await contextWith(pki.operator('admin'));
    try {
      const page = await context.newPage();
      await page.goto(`${ui}#/cluster`);
      await page.waitForSelector('#agents');
      await page.screenshot({ path: join(ARTIFACTS, 'cluster-tls.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });

  test('a browser without a client certificate, or with another CA’s, gets no page', async () => {
    const foreign = await pki.foreign('console-operator', operatorUri('admin', 'intruder'));
    for (const [who, certDir] of [
      ['no certificate', undefined],
      ['another CA', foreign],
    ] as const) {
      const context = await contextWith(certDir);
      try {
        const page = await context.newPage();
        const outcome = await page.goto(`${ui}api/cluster`).then(
          (r) => `HTTP ${r?.status()}`,
          (err: Error) => `refused: ${err.message.split('\n')[0]}`,
        );
        assert.ok(
          outcome.startsWith('refused') || /HTTP (401|403)/.test(outcome),
          `${who}: ${outcome}`,
        );
      } finally {
        await context.close();
      }
    }
  });
});
