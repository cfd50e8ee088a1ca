/**
 * TLS for Weir's gRPC: which files a program uses (flags, one convention
 * for the controller and the agent: docs/security.md), the certificates
 * read from them and re-read when they change, and gRPC credentials built
 * on that. Every connection is mutual TLS against one CA; the peer's
 * identity is its certificate's URI SAN (identity.ts).
 *
 * Rotation without restart: CertificateFiles is a grpc-js CertificateProvider
 * that polls the files; grpc-js builds each new connection's TLS context
 * from the latest certificates it was given, so new connections use a new
 * certificate at once and open ones carry on. A change that does not load
 * (half-written, a key not matching the certificate, unparsable) leaves
 * the last good certificates in force and is logged once. grpc-js'
 * FileWatcherCertificateProvider was not used for this reason: it hands on
 * whatever it read, and a failed read withdraws the identity.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type PeerCertificate, createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ValidationError } from '../errors.js';
import type { Logger } from '../log.js';
import { type Identity, describeIdentity, identityOfCertificate } from './identity.js';

type CaListener = Parameters<grpc.experimental.CertificateProvider['addCaCertificateListener']>[0];
type IdListener = Parameters<
  grpc.experimental.CertificateProvider['addIdentityCertificateListener']
>[0];

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/** How a program's gRPC is secured: mutual TLS from files, or (only when asked) not at all. */
export type TlsChoice =
  | { readonly mode: 'mtls'; readonly files: TlsFiles }
  | { readonly mode: 'insecure' };

/** The controller's and the agent's TLS flags (parseArgs options). */
export const TLS_FLAGS = {
  'tls-dir': { type: 'string', default: process.env.WEIR_TLS_DIR },
  'tls-cert': { type: 'string', default: process.env.WEIR_TLS_CERT },
  'tls-key': { type: 'string', default: process.env.WEIR_TLS_KEY },
  'tls-ca': { type: 'string', default: process.env.WEIR_TLS_CA },
  insecure: { type: 'boolean' },
} as const;

export const TLS_USAGE = `  --tls-dir DIR          mutual TLS from DIR/tls.crt, DIR/tls.key, DIR/ca.crt, re-read when they change (env WEIR_TLS_DIR)
  --tls-cert F --tls-key F --tls-ca F   the same files one by one, over the dir's (env WEIR_TLS_CERT, WEIR_TLS_KEY, WEIR_TLS_CA)
  --insecure             no TLS and no client authentication: any local process may act as any node (warned at start, shown in status)
`;

/**
 * The choice the flags make; a string (the one-line error to print) when
 * they make none, a contradictory one, or name a file that does not exist
 * (the line names the flag that chose the file, and the file). gRPC and
 * NATS take their certificates from this one choice, so both refuse alike.
 */
export function tlsChoiceFromFlags(values: {
  'tls-dir'?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'tls-ca'?: string | undefined;
  insecure?: boolean | undefined;
}): TlsChoice | string {
  const dir = values['tls-dir'];
  const cert = values['tls-cert'] ?? (dir !== undefined ? join(dir, 'tls.crt') : undefined);
  const key = values['tls-key'] ?? (dir !== undefined ? join(dir, 'tls.key') : undefined);
  const ca = values['tls-ca'] ?? (dir !== undefined ? join(dir, 'ca.crt') : undefined);
  const any = [dir, values['tls-cert'], values['tls-key'], values['tls-ca']].some(
    (v) => v !== undefined,
  );
  if (values.insecure) {
    if (any) return '--insecure and the --tls-* flags are alternatives: give one';
    return { mode: 'insecure' };
  }
  if (cert === undefined || key === undefined || ca === undefined) {
    if (!any)
      return 'no certificates: give --tls-dir DIR (tls.crt, tls.key, ca.crt; weirctl certs makes them), or --insecure to run without TLS';
    const missing = [
      ...(cert === undefined ? ['--tls-cert'] : []),
      ...(key === undefined ? ['--tls-key'] : []),
      ...(ca === undefined ? ['--tls-ca'] : []),
    ];
    return `incomplete certificates: give ${missing.join(', ')} too, or --tls-dir DIR`;
  }
  for (const [flag, file] of [
    ['--tls-cert', cert],
    ['--tls-key', key],
    ['--tls-ca', ca],
  ] as const)
    if (!existsSync(file))
      return values[flag.slice(2) as 'tls-cert' | 'tls-key' | 'tls-ca'] !== undefined
        ? `${flag} ${file}: no such file`
        : `--tls-dir ${dir}: no such file ${file}`;
  return { mode: 'mtls', files: { cert, key, ca } };
}

/** What loads from the files: PEM text, checked, and the identity the certificate names. */
interface Loaded {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
  readonly identity: Identity;
  readonly notAfter: string;
  readonly text: string;
}

/** Reads and checks the files; a ValidationError naming the file and what is wrong. */
function load(files: TlsFiles): Loaded {
  const problems: Array<{ field: string; message: string }> = [];
  const read = (field: keyof TlsFiles): Buffer | undefined => {
    try {
      return readFileSync(files[field]);
    } catch (err) {
      problems.push({
        field: files[field],
        message: `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      });
      return undefined;
    }
  };
  const cert = read('cert');
  const key = read('key');
  const ca = read('ca');
  const fail = () => new ValidationError(problems.map((p) => ({ object: 'TLS', ...p })));
  if (cert === undefined || key === undefined || ca === undefined) throw fail();
  let x: X509Certificate | undefined;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    problems.push({
      field: files.cert,
      message: `is not a certificate: ${(err as Error).message}`,
    });
  }
  try {
    const k = createPrivateKey(key);
    if (x !== undefined && !x.checkPrivateKey(k))
      problems.push({ field: files.key, message: `is not the key of ${files.cert}` });
  } catch (err) {
    problems.push({ field: files.key, message: `is not a private key: ${(err as Error).message}` });
  }
  let caCert: X509Certificate | undefined;
  try {
    caCert = new X509Certificate(ca);
    if (!caCert.ca) problems.push({ field: files.ca, message: 'is not a CA certificate' });
  } catch (err) {
    problems.push({ field: files.ca, message: `is not a certificate: ${(err as Error).message}` });
  }
  if (x !== undefined && caCert !== undefined && !x.verify(caCert.publicKey))
    problems.push({ field: files.cert, message: `is not signed by the CA in ${files.ca}` });
  const identity = x !== undefined ? identityOfCertificate(x) : 'unparsable';
  if (typeof identity === 'string' && x !== undefined)
    problems.push({ field: files.cert, message: identity });
  if (problems.length > 0) throw fail();
  try {
    createSecureContext({ cert, key, ca });
  } catch (err) {
    problems.push({
      field: files.cert,
      message: `does not make a TLS context: ${(err as Error).message}`,
    });
    throw fail();
  }
  return {
    cert,
    key,
    ca,
    identity: identity as Identity,
    notAfter: x!.validTo,
    text: `${cert.toString()}\0${key.toString()}\0${ca.toString()}`,
  };
}

/**
 * A program's own certificates, from files, re-read every `refreshMs`
 * (default 2 s); a grpc-js CertificateProvider for both the CA and the
 * identity. The constructor reads them once and throws (ValidationError)
 * when they do not load: a program does not start on bad certificates.
 */
export class CertificateFiles implements grpc.experimental.CertificateProvider {
  private current: Loaded;
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();
  private readonly timer: NodeJS.Timeout;
  /** The text of the last change refused, so that it is logged once. */
  private refused = '';

  constructor(
    readonly files: TlsFiles,
    private readonly options: { log: Logger; refreshMs?: number },
  ) {
    this.current = load(files);
    this.timer = setInterval(() => this.reload(), options.refreshMs ?? 2_000);
    this.timer.unref();
  }

  /** Who these certificates say this program is. */
  get identity(): Identity {
    return this.current.identity;
  }

  get notAfter(): string {
    return this.current.notAfter;
  }

  /** Reads the files now; true when they changed and loaded. */
  reload(): boolean {
    let next: Loaded;
    try {
      next = load(this.files);
    } catch (err) {
      const why = (err as Error).message;
      if (why !== this.refused) {
        this.refused = why;
        this.options.log.warn(
          { err: { message: why }, identity: describeIdentity(this.current.identity) },
          'certificate files changed but do not load; the previous certificates stay in force',
        );
      }
      return false;
    }
    this.refused = '';
    if (next.text === this.current.text) return false;
    this.current = next;
    this.options.log.info(
      { identity: describeIdentity(next.identity), notAfter: next.notAfter },
      'certificates reloaded; new connections use them',
    );
    for (const l of this.caListeners) l({ caCertificate: next.ca });
    for (const l of this.idListeners) l({ certificate: next.cert, privateKey: next.key });
    return true;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const { ca } = this.current;
    process.nextTick(() => listener({ caCertificate: ca }));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.add(listener);
    const { cert, key } = this.current;
    process.nextTick(() => listener({ certificate: cert, privateKey: key }));
  }
  removeIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.delete(listener);
  }

  [Symbol.dispose](): void {
    clearInterval(this.timer);
  }
}

/** Server credentials that require a client certificate from the CA. */
export function serverCredentials(files: CertificateFiles | undefined): grpc.ServerCredentials {
  if (files === undefined) return grpc.ServerCredentials.createInsecure();
  // One provider gives both (grpc-js 1.14 swaps the two arguments internally; with one it does not matter).
  return grpc.experimental.createCertificateProviderServerCredentials(files, files, true);
}

/**
 * Channel credentials presenting `files`' certificate, accepting a server
 * only when its certificate (from the CA) names an identity `expect`
 * accepts: Weir's certificates name identities by URI SAN, not host name,
 * so the host name is not what is checked. `expect` returns why not, or
 * undefined.
 */
export function channelCredentials(
  files: CertificateFiles | undefined,
  expect: (id: Identity) => string | undefined,
): grpc.ChannelCredentials {
  if (files === undefined) return grpc.credentials.createInsecure();
  return grpc.experimental.createCertificateProviderChannelCredentials(files, files, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const id = identityOfCertificate(cert.raw);
      if (typeof id === 'string') return new Error(`the server's ${id}`);
      const why = expect(id);
      return why === undefined ? undefined : new Error(why);
    },
  });
}

/** The identity of a server call's client certificate; a string (why) when there is none. */
export function peerIdentity(call: {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}): Identity | string {
  const auth = call.getAuthContext();
  const raw = auth?.sslPeerCertificate?.raw;
  if (raw === undefined || raw.length === 0) return 'no client certificate';
  return identityOfCertificate(raw);
}
