/**
 * Issuing Weir's certificates: a CA, and leaf certificates naming one
 * identity (identity.ts) by URI SAN, ECDSA P-256, signed by that CA.
 * @peculiar/x509 over Node's WebCrypto; `weirctl certs`, the demo and the
 * tests issue through here. In a cluster cert-manager does this instead
 * (deploy/base/certificates.yaml), with the same identities.
 *
 * Files are written in the layout cert-manager writes into a Secret:
 * DIR/tls.crt, DIR/tls.key, DIR/ca.crt (a CA's own directory: ca.crt and
 * ca.key). Each file is written to a temporary name and renamed, so a
 * reader never sees half a file; keys are 0600.
 */
import { webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { ValidationError } from '../errors.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
/** WebCrypto's CryptoKey as @peculiar/x509's types name it (the DOM one). */
type X509Key = Parameters<typeof x509.X509CertificateGenerator.create>[0] extends {
  signingKey: infer K;
}
  ? K
  : never;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface IssuedCa {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface IssuedCert {
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  // 16 random bytes, the top bit clear: a positive INTEGER of at most 20 octets (RFC 5280).
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0]! &= 0x7f;
  return Buffer.from(b).toString('hex');
}

/** A self-signed CA (10 years unless told). */
export async function issueCa(options: { name?: string; days?: number } = {}): Promise<IssuedCa> {
  const keys = await keyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${options.name ?? 'weir-ca'}, O=weir`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.days ?? 3650) * DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/**
 * A leaf certificate for one identity URI (1 year unless told), usable as
 * both TLS server and client: the controller and the agents are both.
 * Without a URI it names no Weir identity (Weir's servers refuse it as a
 * client) and is checked by host name instead: a NATS server's, with
 * `dnsNames` and `ipAddresses` naming where clients reach it. At least one
 * name is required.
 */
export async function issueCert(
  ca: IssuedCa,
  options: {
    uri?: string;
    commonName: string;
    days?: number;
    dnsNames?: readonly string[];
    ipAddresses?: readonly string[];
  },
): Promise<IssuedCert> {
  const names = [
    ...(options.uri !== undefined ? [{ type: 'url' as const, value: options.uri }] : []),
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length === 0)
    throw new ValidationError([
      {
        object: `certificate ${options.commonName}`,
        field: 'subjectAltName',
        message: 'needs a URI, a DNS name or an IP address',
      },
    ]);
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(ca.keyPem),
    ALGORITHM,
    false,
    ['sign'],
  );
  const keys = await keyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${options.commonName}, O=weir`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.days ?? 365) * DAY_MS),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey as unknown as X509Key,
    signingKey: caKey as unknown as X509Key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(
        [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
        false,
      ),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return {
    certPem: cert.toString('pem'),
    keyPem: await keyPem(keys.privateKey),
    caPem: ca.certPem,
  };
}

async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

/** Writes a CA's directory: ca.crt and ca.key (0600). */
export async function writeCaDir(dir: string, ca: IssuedCa): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeAtomically(join(dir, 'ca.key'), ca.keyPem, 0o600);
  await writeAtomically(join(dir, 'ca.crt'), ca.certPem, 0o644);
}

/** Reads a CA's directory as writeCaDir wrote it. */
export async function readCaDir(dir: string): Promise<IssuedCa> {
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file), 'utf8');
    } catch (err) {
      throw new ValidationError([
        {
          object: `CA directory ${dir}`,
          field: file,
          message: `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); create it with weirctl certs ca --out ${dir}`,
        },
      ]);
    }
  };
  return { certPem: await read('ca.crt'), keyPem: await read('ca.key') };
}

/**
 * Writes tls.key, tls.crt and ca.crt into DIR. The key goes first and the
 * certificate last: a reader that finds a key not matching the certificate
 * keeps what it had (credentials.ts) and reads again.
 */
export async function writeTlsDir(dir: string, issued: IssuedCert): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeAtomically(join(dir, 'ca.crt'), issued.caPem, 0o644);
  await writeAtomically(join(dir, 'tls.key'), issued.keyPem, 0o600);
  await writeAtomically(join(dir, 'tls.crt'), issued.certPem, 0o644);
}
