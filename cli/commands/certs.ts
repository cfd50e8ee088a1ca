/**
 * `weirctl certs`: a CA and the certificates Weir's programs and operators
 * present, for a machine or a cluster without cert-manager (in a cluster,
 * deploy/base/certificates.yaml issues the same identities). Each writes a
 * directory in cert-manager's layout (tls.crt, tls.key, ca.crt), which is
 * what --tls-dir reads; the CA's directory holds ca.crt and ca.key.
 */
import { join } from 'node:path';
import {
  CONTROLLER_URI,
  type OperatorRole,
  nodeUri,
  operatorUri,
  parseIdentityUri,
  podUri,
} from '../../shared/tls/identity.js';
import { issueCa, issueCert, readCaDir, writeCaDir, writeTlsDir } from '../../shared/tls/issue.js';
import { type Io, UsageError } from '../io.js';

function days(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!(Number.isInteger(n) && n > 0 && n <= 36_500))
    throw new UsageError(`--days must be a whole number of days from 1 to 36500, not ${text}`);
  return n;
}

export async function certsCa(io: Io, opts: { out: string; days?: string }): Promise<number> {
  const ca = await issueCa({ days: days(opts.days, 3650) });
  await writeCaDir(opts.out, ca);
  io.stdout(
    `CA written to ${join(opts.out, 'ca.crt')} and ${join(opts.out, 'ca.key')} (keep ca.key secret)\n`,
  );
  return 0;
}

export type LeafKind = 'node' | 'pod' | 'controller' | 'operator';

export async function certsLeaf(
  io: Io,
  kind: LeafKind,
  name: string | undefined,
  opts: {
    caDir: string;
    out?: string;
    days?: string;
    role?: string;
    namespace?: string;
    dns?: string[];
  },
): Promise<number> {
  let uri: string;
  let commonName: string;
  if (kind === 'controller') {
    uri = CONTROLLER_URI;
    commonName = 'weir-controller';
  } else if (kind === 'operator') {
    const role = opts.role ?? 'read-only';
    if (role !== 'admin' && role !== 'read-only')
      throw new UsageError(`--role must be admin or read-only, not ${JSON.stringify(role)}`);
    uri = operatorUri(role as OperatorRole, name!);
    commonName = `weir-operator-${name}`;
  } else if (kind === 'pod') {
    uri = podUri(opts.namespace ?? 'weir-system', name!);
    commonName = `weir-agent-${name}`;
  } else {
    uri = nodeUri(name!);
    commonName = `weir-agent-${name}`;
  }
  if (parseIdentityUri(uri) === undefined)
    throw new UsageError(
      `${JSON.stringify(name)} cannot name an identity (letters, digits, ".", "-", "_"; at most 253)`,
    );
  const out =
    opts.out ??
    (kind === 'controller' ? 'controller' : kind === 'operator' ? `operator-${name}` : name!);
  const ca = await readCaDir(opts.caDir);
  const issued = await issueCert(ca, {
    uri,
    commonName,
    days: days(opts.days, 365),
    dnsNames: opts.dns ?? [],
  });
  await writeTlsDir(out, issued);
  io.stdout(`${uri} written to ${out}/ (tls.crt, tls.key, ca.crt): pass --tls-dir ${out}\n`);
  return 0;
}
