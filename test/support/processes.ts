/**
 * Real Weir processes for integration tests: started from bin/ with their
 * JSON logs captured, so that a test can wait for a logged event; killed in
 * `after` hooks whatever happens.
 *
 * With mutual TLS, as in production: a test CA and certificates are issued
 * once per test process (testing/pki.ts); a controller gets the
 * controller's, an agent its node's (unless its arguments or environment
 * choose other certificates, or --insecure), and weirctl, and the clients
 * of cli/clients.ts, an admin operator's through WEIR_CERT/WEIR_KEY/WEIR_CA
 * (set in this process' environment, so children inherit it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { freePort } from '../../testing/ports.js';
import { pki } from './tls.js';

export { freePort, pki };

/** WEIR_TLS_DIR for a program started with `args`, unless they choose for themselves. */
function tlsEnv(
  bin: string,
  args: readonly string[],
  env: Record<string, string>,
): Record<string, string> {
  const chosen = ['--insecure', '--tls-dir', '--tls-cert'].some((f) => args.includes(f));
  if (chosen || env.WEIR_TLS_DIR !== undefined || env.WEIR_TLS_CERT !== undefined) return {};
  if (bin === 'weir-controller') return { WEIR_TLS_DIR: pki.controller };
  if (bin === 'weir-agent') {
    const at = args.indexOf('--node');
    const node = at >= 0 ? args[at + 1] : (env.NODE_NAME ?? process.env.NODE_NAME);
    if (node !== undefined && /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(node))
      return { WEIR_TLS_DIR: pki.nodeSync(node) };
  }
  return {};
}

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface LogLine {
  readonly msg?: string;
  readonly level?: number;
  readonly [k: string]: unknown;
}

export class WeirProcess {
  readonly lines: LogLine[] = [];
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  private exited: Promise<number | null>;
  readonly child: ChildProcess;

  constructor(
    readonly name: string,
    bin: string,
    args: string[],
    env: Record<string, string> = {},
    /** Run inside this network namespace (`ip netns exec`, which execs: the pid is the program's). */
    netns?: string,
  ) {
    const argv = [join(ROOT, 'bin', bin), ...args];
    this.child = spawn(
      netns ? 'ip' : process.execPath,
      netns ? ['netns', 'exec', netns, process.execPath, ...argv] : argv,
      {
        cwd: ROOT,
        // Outside a namespace of its own, an agent must not program the host's netfilter: userspace.
        env: {
          ...process.env,
          WEIR_LOG_LEVEL: 'debug',
          ...(netns ? {} : { WEIR_DATAPATH: 'userspace' }),
          ...tlsEnv(bin, args, env),
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let buf = '';
    this.child.stderr!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      let nl: number;
      for (nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: text };
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    this.child.stdout!.resume();
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Resolves with the first log line (past or future) the predicate accepts. */
  waitFor(
    pred: (l: LogLine) => boolean,
    what: string,
    timeoutMs = 30_000,
    since = 0,
  ): Promise<LogLine> {
    const seen = this.lines.slice(since).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: timed out waiting for ${what}\n${this.lines
                .slice(-15)
                .map((l) => JSON.stringify(l))
                .join('\n')}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }

  /** SIGKILL: no orderly shutdown, as a crash. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the exit status. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** Polls until `check` returns a value other than undefined. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Runs bin/weirctl against the controller at `controller`: its exit code and output. */
export function weirctl(
  controller: string,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'weirctl'), ...args],
      { env: { ...process.env, WEIR_CONTROLLER: controller } },
      (e, out, err) => resolve({ code: e ? Number(e.code) : 0, out, err }),
    ),
  );
}
