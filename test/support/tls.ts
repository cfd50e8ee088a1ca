/**
 * The test process' CA and certificates (testing/pki.ts), issued once on
 * first import, and CertificateFiles over them for programs run in-process.
 * Importing this sets WEIR_CERT/WEIR_KEY/WEIR_CA to an admin operator's
 * certificate: weirctl children and cli/clients.ts use it.
 */
import { join } from 'node:path';
import { silentLogger } from '../../shared/log.js';
import { CertificateFiles } from '../../shared/tls/credentials.js';
import { TestPki } from '../../testing/pki.js';

export const pki = await TestPki.create();
Object.assign(process.env, pki.operatorEnv('admin'));

export function filesIn(dir: string, refreshMs?: number): CertificateFiles {
  return new CertificateFiles(
    { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), ca: join(dir, 'ca.crt') },
    { log: silentLogger, ...(refreshMs !== undefined ? { refreshMs } : {}) },
  );
}

export const controllerTls = (): CertificateFiles => filesIn(pki.controller);
export const agentTls = async (node: string): Promise<CertificateFiles> =>
  filesIn(await pki.node(node));
