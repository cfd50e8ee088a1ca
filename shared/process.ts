/**
 * Process plumbing for the daemons' main.ts: argument errors, and an orderly
 * shutdown on SIGINT/SIGTERM (a second signal exits at once).
 */
import { ErrorCode, WeirError } from './errors.js';
import type { Logger } from './log.js';

/** The daemon's command line was wrong (code Invalid): runMain prints usage and exits 2. */
export class ArgumentError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Invalid, message);
  }
}

export function onShutdown(log: Logger, dispose: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    try {
      log.info({ signal }, 'shutting down');
    } catch {
      // Logging must not stand between a signal and the exit.
    }
    dispose().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** Runs a daemon's main; argument errors print usage and exit 2. */
export async function runMain(usage: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    if (
      err instanceof ArgumentError ||
      (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`error: ${(err as Error).message}\n${usage}`);
      process.exit(2);
    }
    // A WeirError the user can act on (a state dir in use, one that is unsafe) is said plainly.
    if (err instanceof WeirError && err.code !== ErrorCode.Internal) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`fatal: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  }
}
