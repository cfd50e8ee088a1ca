/**
 * The console is an operator surface and must not open a way around mutual
 * TLS: without --ui-tls it binds loopback only (anything else is refused at
 * start) and answers only its own loopback Host; with --ui-tls it is HTTPS
 * requiring an operator certificate. Its API checks every parameter, naming
 * the field, and caps the matrix. Real controllers on loopback, free ports.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, WeirProcess, freePort, pki } from '../support/processes.js';

/** Runs weir-controller to its exit (it should refuse to start). */
const refused = (...args: string[]) =>
  new Promise<{ code: number; err: string }>((resolve) =>
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'weir-controller'), ...args],
      {
        env: {
          ...process.env,
          ...(args.includes('--insecure') ? {} : { WEIR_TLS_DIR: pki.controller }),
        },
        timeout: 20_000,
      },
      (e, _out, err) => resolve({ code: e ? Number(e.code) : 0, err }),
    ),
  );

const get = async (url: string, headers: Record<string, string> = {}) => {
  const res = await fetch(url, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe('the console refuses to serve without TLS beyond loopback', () => {
  test('a non-loopback --ui-listen without --ui-tls is refused at start, naming the flag and the way out', async () => {
    for (const listen of ['0.0.0.0:7480', '[::]:7480', '192.0.2.1:7480', ':7480']) {
      const r = await refused(
        '--manifests',
        join(ROOT, 'deploy', 'examples'),
        '--listen',
        '127.0.0.1:0',
        '--ui-listen',
        listen,
      );
      assert.notEqual(r.code, 0, listen);
      assert.match(r.err, /--ui-listen .*loopback address only.*--ui-tls/s, listen);
    }
  });

  test('--ui-tls needs the controller’s certificates and a --ui-listen', async () => {
    const insecure = await refused(
      '--insecure',
      '--listen',
      '127.0.0.1:0',
      '--ui-listen',
      '127.0.0.1:0',
      '--ui-tls',
    );
    assert.notEqual(insecure.code, 0);
    assert.match(insecure.err, /--ui-tls .*needs --tls-dir/);
    const alone = await refused('--listen', '127.0.0.1:0', '--ui-tls');
    assert.notEqual(alone.code, 0);
    assert.match(alone.err, /give --ui-listen/);
  });
});

describe('the console over HTTPS (--ui-tls)', () => {
  let controller: WeirProcess;
  let url: string;
  before(async () => {
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      join(ROOT, 'deploy', 'examples'),
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--ui-listen',
      `127.0.0.1:${await freePort()}`,
      '--ui-tls',
    ]);
    url = String((await controller.waitFor((l) => typeof l.url === 'string', 'the console')).url);
  });
  after(() => controller?.kill());

  /** GET /api/cluster over HTTPS presenting the certificate in `dir` (none: undefined); the status, or the error. */
  const ask = (dir: string | undefined) =>
    new Promise<number | string>((resolve) => {
      const u = new URL('/api/cluster', url);
      const req = httpsRequest(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          ca: readFileSync(join(pki.controller, 'ca.crt')),
          // Weir's certificates name identities (URI SAN), not hosts.
          checkServerIdentity: () => undefined,
          ...(dir !== undefined
            ? { cert: readFileSync(join(dir, 'tls.crt')), key: readFileSync(join(dir, 'tls.key')) }
            : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', (err) => resolve(err.message));
      req.end();
    });

  test('an operator certificate of either role reads it; an agent’s is refused (403), and no certificate gets no TLS session', async () => {
    assert.match(url, /^https:\/\//);
    assert.equal(await ask(pki.operator('read-only')), 200);
    assert.equal(await ask(pki.operator('admin')), 200);
    assert.equal(await ask(await pki.node('node-a')), 403);
    const none = await ask(undefined);
    assert.equal(typeof none, 'string', `no certificate: ${none}`);
  });
});

describe('the console over loopback HTTP', () => {
  let dir: string;
  let controller: WeirProcess;
  let url: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-console-sec-'));
    await cp(join(ROOT, 'deploy', 'examples'), dir, { recursive: true });
    // A namespace of 70 pods: more than a matrix shows.
    const pods = Array.from({ length: 70 }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `p${i}`, namespace: 'big', labels: { app: 'big' } },
      spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'x' }] },
      status: { phase: 'Running', podIP: `10.250.0.${i + 1}` },
    }));
    await writeFile(
      join(dir, '30-big.yaml'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'big' } }, ...pods],
      }),
    );
    controller = new WeirProcess('controller', 'weir-controller', [
      '--manifests',
      dir,
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--ui-listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    url = String((await controller.waitFor((l) => typeof l.url === 'string', 'the console')).url);
    await controller.waitFor((l) => l.msg === 'revision committed', 'a revision');
  });
  after(async () => {
    await controller?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  test('the controller warns at start that any local user can read a plain-HTTP console', () => {
    const line = controller.lines.find((l) => l.url === url);
    assert.equal(line?.level, 40);
    assert.match(String(line?.msg), /any local user/);
  });

  test('a request naming another Host (a DNS-rebinding page) is refused', async () => {
    const u = new URL(url);
    const r = await new Promise<number>((resolve, reject) => {
      import('node:http').then(({ request }) => {
        const req = request(
          {
            host: u.hostname,
            port: u.port,
            path: '/api/cluster',
            headers: { host: `attacker.example:${u.port}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    });
    assert.equal(r, 403);
    assert.equal((await get(new URL('/api/cluster', url).href)).status, 200);
  });

  test('bad query parameters are 400 with every problem naming its field', async () => {
    const cases: Array<[string, string[]]> = [
      ['/api/matrix?namespace=big', ['namespace']],
      ['/api/matrix?probe=TCP/99999&colour=red', ['probe', 'colour']],
      ['/api/matrix?pods=shop/nobody', ['pods']],
      ['/api/explain?from=shop/web&port=http', ['to', 'port']],
      ['/api/flows?protocol=bogus&tcpState=open&limit=0', ['protocol', 'tcpState', 'limit']],
      ['/api/flows?node=Not_A_Node', ['node']],
      ['/api/flows/watch?action=maybe', ['action']],
      [
        '/api/flows?fromPod=nope&selector=tier%20in&match=10.0.0.1:99999&since=yesterday',
        ['fromPod', 'selector', 'match', 'since'],
      ],
      ['/api/policy', ['name']],
    ];
    for (const [path, fields] of cases) {
      const r = await get(new URL(path, url).href);
      assert.equal(r.status, 400, path);
      const problems = r.body.problems as Array<{ field: string; message: string }>;
      assert.deepEqual(
        [...new Set(problems.map((p) => p.field))].sort(),
        [...fields].sort(),
        `${path}: ${JSON.stringify(problems)}`,
      );
    }
    const big = await get(new URL('/api/matrix?namespace=big', url).href);
    assert.match(
      String((big.body.problems as Array<{ message: string }>)[0]!.message),
      /selects 70 pods; a matrix shows at most 64/,
    );
  });

  test('a matrix of named pods within the cap is served; a policy that does not exist is 404', async () => {
    const pods = Array.from({ length: 64 }, (_, i) => `big/p${i}`).join(',');
    const m = await get(new URL(`/api/matrix?pods=${pods}`, url).href);
    assert.equal(m.status, 200);
    assert.equal((m.body.pods as string[]).length, 64);
    const none = await get(new URL('/api/policy?name=shop/nothing', url).href);
    assert.equal(none.status, 404);
  });
});
