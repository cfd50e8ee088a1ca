/**
 * A throw-away CA for the NATS TLS tests: certificates with Weir's URI SAN
 * identities (TLS-CONVENTIONS), issued with the openssl command line that
 * Debian ships, each in the `--tls-dir` layout (tls.crt, tls.key, ca.crt).
 * Test only: keys are unencrypted P-256 in a temporary directory.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TlsFiles } from '../shared/nats/connect.js';

const run = promisify(execFile);
const OPENSSL = process.env.OPENSSL ?? 'openssl';

export interface Issued extends TlsFiles {
  /** The directory to pass as --tls-dir. */
  readonly dir: string;
}

export interface TestPki extends AsyncDisposable {
  readonly dir: string;
  /** The CA's certificate. */
  readonly ca: string;
  /** A certificate for `name` with these SANs ("URI:spiffe://...", "DNS:localhost", "IP:127.0.0.1"). */
  issue(name: string, sans: readonly string[]): Promise<Issued>;
}

export async function testPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-pki-'));
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run(OPENSSL, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    caKey,
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    '/CN=weir test CA',
  ]);
  let serial = 1;
  return {
    dir,
    ca,
    async issue(name, sans) {
      const out = join(dir, name.replace(/[^A-Za-z0-9._-]/g, '_'));
      await mkdir(out, { recursive: true });
      const key = join(out, 'tls.key');
      const csr = join(out, 'tls.csr');
      const cert = join(out, 'tls.crt');
      const ext = join(out, 'ext.cnf');
      await writeFile(
        ext,
        `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
      );
      await run(OPENSSL, ['req', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
      await run(OPENSSL, [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca,
        '-CAkey',
        caKey,
        '-set_serial',
        String(serial++),
        '-out',
        cert,
        '-days',
        '2',
        '-extfile',
        ext,
      ]);
      await copyFile(ca, join(out, 'ca.crt'));
      return { dir: out, cert, key, ca: join(out, 'ca.crt') };
    },
    async [Symbol.asyncDispose]() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}
