/**
 * A CA and certificates for tests, benchmarks and harnesses that start the
 * real programs: issued once per process into a temporary directory
 * (shared/tls/issue.ts), in --tls-dir layout. The programs run with mutual
 * TLS as they do in production; nothing here weakens a check.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROLLER_URI, type OperatorRole, nodeUri, operatorUri } from '../shared/tls/identity.js';
import { type IssuedCa, issueCa, issueCert, writeCaDir, writeTlsDir } from '../shared/tls/issue.js';
import type { TlsFiles } from '../shared/tls/credentials.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Nodes issued up front (the rest on first use, synchronously, by `weirctl certs node`). */
const COMMON_NODES = ['node-a', 'node-b', 'node-c', 'node-d', 'node-x'];

export class TestPki {
  private constructor(
    readonly dir: string,
    readonly ca: IssuedCa,
  ) {}

  static async create(dir = mkdtempSync(join(tmpdir(), 'weir-pki-'))): Promise<TestPki> {
    const ca = await issueCa({ name: 'weir-test-ca' });
    await writeCaDir(join(dir, 'ca'), ca);
    const pki = new TestPki(dir, ca);
    await pki.issue('controller', CONTROLLER_URI);
    await pki.issue('operator-admin', operatorUri('admin', 'test'));
    await pki.issue('operator-read-only', operatorUri('read-only', 'test'));
    for (const n of COMMON_NODES) await pki.node(n);
    return pki;
  }

  /** Issues a certificate for `uri` into DIR/name (once); its directory. */
  async issue(name: string, uri: string, ca: IssuedCa = this.ca): Promise<string> {
    const out = join(this.dir, name);
    if (!existsSync(join(out, 'tls.crt')))
      await writeTlsDir(out, await issueCert(ca, { uri, commonName: name }));
    return out;
  }

  /**
   * A NATS server's certificate (DIR/nats-server, once): no Weir identity,
   * named by host (localhost, 127.0.0.1), which is what NATS clients check.
   */
  async natsServer(): Promise<string> {
    const out = join(this.dir, 'nats-server');
    if (!existsSync(join(out, 'tls.crt')))
      await writeTlsDir(
        out,
        await issueCert(this.ca, {
          commonName: 'nats-server',
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1'],
        }),
      );
    return out;
  }

  get controller(): string {
    return join(this.dir, 'controller');
  }

  operator(role: OperatorRole): string {
    return join(this.dir, `operator-${role}`);
  }

  async node(node: string): Promise<string> {
    return this.issue(`node-${node}`, nodeUri(node));
  }

  /** An agent's directory now (a spawn needs it synchronously): issued by weirctl when new. */
  nodeSync(node: string): string {
    const out = join(this.dir, `node-${node}`);
    if (!existsSync(join(out, 'tls.crt')))
      execFileSync(
        process.execPath,
        [
          join(ROOT, 'bin', 'weirctl'),
          'certs',
          'node',
          node,
          '--ca-dir',
          join(this.dir, 'ca'),
          '--out',
          out,
        ],
        { stdio: 'ignore' },
      );
    return out;
  }

  /** The client environment weirctl reads (WEIR_CERT, WEIR_KEY, WEIR_CA) for an operator. */
  operatorEnv(role: OperatorRole = 'admin'): Record<string, string> {
    const d = this.operator(role);
    return {
      WEIR_CERT: join(d, 'tls.crt'),
      WEIR_KEY: join(d, 'tls.key'),
      WEIR_CA: join(d, 'ca.crt'),
    };
  }

  /** Another CA's certificate for the same identity: what a server must refuse. */
  async foreign(name: string, uri: string): Promise<string> {
    return this.issue(`foreign-${name}`, uri, await issueCa({ name: 'not-weir' }));
  }
}

/** The files of a --tls-dir layout directory. */
export const tlsFiles = (dir: string): TlsFiles => ({
  cert: join(dir, 'tls.crt'),
  key: join(dir, 'tls.key'),
  ca: join(dir, 'ca.crt'),
});

/** The flags that give a program its certificates. */
export const tlsDirArgs = (dir: string): string[] => ['--tls-dir', dir];
