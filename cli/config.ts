/**
 * weirctl's connection settings: where the controller is and which
 * credentials to present, from flags, then the environment, then the
 * current context of the config file ($WEIR_CONFIG, default
 * ~/.config/weir/config.yaml), kubeconfig-style:
 *
 *   current-context: prod
 *   contexts:
 *     - name: prod
 *       controller: weir-controller.weir-system.svc:7443
 *       tls-dir: ~/.config/weir/prod        # tls.crt, tls.key, ca.crt
 *     - name: demo
 *       controller: 127.0.0.1:7443
 *       cert: /tmp/weir/tls.crt             # or the files one by one
 *       key: /tmp/weir/tls.key
 *       ca: /tmp/weir/ca.crt
 *     - name: lab
 *       controller: 127.0.0.1:7443
 *       insecure: true
 *     - name: staging                       # through the API server's port-forward
 *       kube-context: staging               # a context of the kubeconfig
 *       kubeconfig: ~/.kube/staging         # default $KUBECONFIG, ~/.kube/config
 *       kube-namespace: weir-system         # where the controller's Service is (default)
 *       tls-dir: ~/.config/weir/staging
 *
 * Without credentials and without --insecure, a command that calls a
 * server is refused with a line naming the flags.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { ValidationError } from '../shared/errors.js';
import { silentLogger } from '../shared/log.js';
import { CertificateFiles, type TlsFiles } from '../shared/tls/credentials.js';
import { UsageError } from './io.js';

export interface Context {
  name: string;
  controller?: string | undefined;
  'tls-dir'?: string;
  cert?: string;
  key?: string;
  ca?: string;
  insecure?: boolean;
  'kube-context'?: string | undefined;
  kubeconfig?: string | undefined;
  'kube-namespace'?: string | undefined;
}

export interface ConfigFile {
  'current-context'?: string;
  contexts: Context[];
}

/** What the global flags say (main.ts). */
export interface ConnectionFlags {
  cert?: string;
  key?: string;
  ca?: string;
  tlsDir?: string;
  insecure?: boolean;
  context?: string;
  kubeconfig?: string;
  kubeContext?: string;
  kubeNamespace?: string;
}

export function configPath(): string {
  return process.env.WEIR_CONFIG ?? join(homedir(), '.config', 'weir', 'config.yaml');
}

const CONTEXT_KEYS = new Set([
  'name',
  'controller',
  'tls-dir',
  'cert',
  'key',
  'ca',
  'insecure',
  'kube-context',
  'kubeconfig',
  'kube-namespace',
]);

/** The config file, checked; an empty one when there is none. */
export function readConfig(path = configPath()): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { contexts: [] };
    throw new UsageError(`${path}: cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  let doc: unknown;
  try {
    doc = parse(text) ?? {};
  } catch (err) {
    throw new UsageError(`${path}: not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const problems: string[] = [];
  const o = doc as Record<string, unknown>;
  if (typeof o !== 'object' || Array.isArray(o)) throw new UsageError(`${path}: not a mapping`);
  const current = o['current-context'];
  if (current !== undefined && typeof current !== 'string')
    problems.push('current-context: must be a string');
  const contexts = o.contexts ?? [];
  if (!Array.isArray(contexts)) problems.push('contexts: must be a list');
  const out: Context[] = [];
  for (const [i, c] of (Array.isArray(contexts) ? contexts : []).entries()) {
    const at = `contexts[${i}]`;
    if (typeof c !== 'object' || c === null) {
      problems.push(`${at}: must be a mapping`);
      continue;
    }
    for (const [k, v] of Object.entries(c)) {
      if (!CONTEXT_KEYS.has(k)) problems.push(`${at}.${k}: unknown field`);
      else if (k === 'insecure' ? typeof v !== 'boolean' : typeof v !== 'string')
        problems.push(`${at}.${k}: must be a ${k === 'insecure' ? 'boolean' : 'string'}`);
    }
    if (typeof (c as Context).name !== 'string') problems.push(`${at}.name: is required`);
    if ((c as Context).controller !== undefined && reachesByKube(c as Context))
      problems.push(
        `${at}: controller and kube-context/kubeconfig are alternatives (an address, or the port-forward): give one`,
      );
    out.push(c as Context);
  }
  if (problems.length > 0) throw new UsageError(`${path}: ${problems.join('; ')}`);
  return {
    ...(typeof current === 'string' ? { 'current-context': current } : {}),
    contexts: out,
  };
}

export async function writeConfig(config: ConfigFile, path = configPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, stringify(config), { mode: 0o600 });
  await rename(tmp, path);
}

/** The settings flags gave this run (main.ts sets them before any command runs). */
let flags: ConnectionFlags = {};
export function setConnectionFlags(f: ConnectionFlags): void {
  flags = f;
  resolved = undefined;
}

let resolved: { context: Context | undefined; tls: CertificateFiles | undefined } | undefined;

const expand = (p: string) => (p.startsWith('~/') ? join(homedir(), p.slice(2)) : resolve(p));

/** The context in force: --context, else the file's current-context; undefined when none. */
export function currentContext(): Context | undefined {
  const config = readConfig();
  const name = flags.context ?? config['current-context'];
  if (name === undefined) return undefined;
  const c = config.contexts.find((x) => x.name === name);
  if (c === undefined)
    throw new UsageError(
      `no context ${JSON.stringify(name)} in ${configPath()} (have: ${config.contexts.map((x) => x.name).join(', ') || 'none'})`,
    );
  return c;
}

/** The files one set of settings names, or undefined when it names none. */
function filesOf(s: {
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
  dir?: string | undefined;
}): TlsFiles | undefined {
  const cert = s.cert ?? (s.dir !== undefined ? join(s.dir, 'tls.crt') : undefined);
  const key = s.key ?? (s.dir !== undefined ? join(s.dir, 'tls.key') : undefined);
  const ca = s.ca ?? (s.dir !== undefined ? join(s.dir, 'ca.crt') : undefined);
  if (cert === undefined && key === undefined && ca === undefined) return undefined;
  if (cert === undefined || key === undefined || ca === undefined)
    throw new UsageError('give --cert, --key and --ca together (or --tls-dir DIR)');
  return { cert: expand(cert), key: expand(key), ca: expand(ca) };
}

/**
 * The certificate files to present, by precedence: the flags, then
 * WEIR_CERT/WEIR_KEY/WEIR_CA, then the context; undefined for --insecure
 * (or an insecure context); a UsageError naming the flags when there are
 * none. gRPC (clientTls) and NATS (weirctl flows --source nats) both use it.
 */
export function clientTlsFiles(): TlsFiles | undefined {
  const context = currentContext();
  const fromFlags = filesOf({
    cert: flags.cert,
    key: flags.key,
    ca: flags.ca,
    dir: flags.tlsDir,
  });
  const fromEnv = filesOf({
    cert: process.env.WEIR_CERT,
    key: process.env.WEIR_KEY,
    ca: process.env.WEIR_CA,
  });
  const fromContext =
    context !== undefined
      ? filesOf({ cert: context.cert, key: context.key, ca: context.ca, dir: context['tls-dir'] })
      : undefined;
  if (flags.insecure && fromFlags !== undefined)
    throw new UsageError('--insecure and --cert/--key/--ca/--tls-dir are alternatives: give one');
  const files = flags.insecure ? undefined : (fromFlags ?? fromEnv ?? fromContext);
  if (files === undefined && !flags.insecure && context?.insecure !== true)
    throw new UsageError(
      `no credentials: give --tls-dir DIR or --cert F --key F --ca F (env WEIR_CERT, WEIR_KEY, WEIR_CA), a context in ${configPath()}, or --insecure`,
    );
  return files;
}

/**
 * The credentials to present: undefined for --insecure (or an insecure
 * context); a UsageError naming the flags when there are none.
 */
export function clientTls(): CertificateFiles | undefined {
  if (resolved === undefined) {
    const context = currentContext();
    const files = clientTlsFiles();
    let tls: CertificateFiles | undefined;
    try {
      tls = files === undefined ? undefined : new CertificateFiles(files, { log: silentLogger });
    } catch (err) {
      if (!(err instanceof ValidationError) || files === undefined) throw err;
      // Name the flag (or where it came from) with the file: what to change.
      const origin =
        flags.cert !== undefined || flags.tlsDir !== undefined
          ? 'flag'
          : process.env.WEIR_CERT !== undefined
            ? 'env'
            : 'context';
      const flagOf = (file: string | undefined) => {
        const which = file === files.cert ? 'cert' : file === files.key ? 'key' : 'ca';
        if (origin === 'env') return `WEIR_${which.toUpperCase()}`;
        if (origin === 'context') return `context ${context?.name} ${which}`;
        return flags.tlsDir !== undefined && flags[which] === undefined
          ? '--tls-dir'
          : `--${which}`;
      };
      throw new UsageError(
        err.issues.map((i) => `${flagOf(i.field)} ${i.field}: ${i.message}`).join('\n'),
      );
    }
    resolved = { context, tls };
  }
  return resolved.tls;
}

/** The controller's address from the context in force, if it names one. */
export function contextController(): string | undefined {
  return currentContext()?.controller;
}

function reachesByKube(c: Context): boolean {
  return c['kube-context'] !== undefined || c.kubeconfig !== undefined;
}

/**
 * The port-forward route to the controller, when this run asks for one:
 * --kube-context or --kubeconfig, else the context in force's
 * kube-context/kubeconfig. Undefined: reach the controller by address.
 */
export function kubeRoute():
  | { kubeconfig?: string; context?: string; namespace: string }
  | undefined {
  const namespace = (ns: string | undefined) => ns ?? 'weir-system';
  if (flags.kubeContext !== undefined || flags.kubeconfig !== undefined)
    return {
      ...(flags.kubeconfig !== undefined ? { kubeconfig: expand(flags.kubeconfig) } : {}),
      ...(flags.kubeContext !== undefined ? { context: flags.kubeContext } : {}),
      namespace: namespace(flags.kubeNamespace),
    };
  const c = currentContext();
  if (c === undefined || !reachesByKube(c)) return undefined;
  return {
    ...(c.kubeconfig !== undefined ? { kubeconfig: expand(c.kubeconfig) } : {}),
    ...(c['kube-context'] !== undefined ? { context: c['kube-context'] } : {}),
    namespace: namespace(flags.kubeNamespace ?? c['kube-namespace']),
  };
}

export async function saveContext(context: Context, use: boolean): Promise<void> {
  const config = readConfig();
  const i = config.contexts.findIndex((c) => c.name === context.name);
  // A key set to undefined is removed (set-context replacing one way of reaching the controller by another).
  const merged: Record<string, unknown> =
    i >= 0 ? { ...config.contexts[i], ...context } : { ...context };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  if (i >= 0) config.contexts[i] = merged as unknown as Context;
  else config.contexts.push(merged as unknown as Context);
  if (use) config['current-context'] = context.name;
  await writeConfig(config);
}

export async function useContext(name: string): Promise<void> {
  const config = readConfig();
  if (!config.contexts.some((c) => c.name === name))
    throw new UsageError(
      `no context ${JSON.stringify(name)} in ${configPath()} (have: ${config.contexts.map((c) => c.name).join(', ') || 'none'})`,
    );
  config['current-context'] = name;
  await writeConfig(config);
}

/** The file as text, for `weirctl config view`. */
export async function viewConfig(): Promise<string> {
  try {
    return await readFile(configPath(), 'utf8');
  } catch {
    return stringify(readConfig());
  }
}
