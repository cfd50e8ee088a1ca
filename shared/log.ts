/**
 * Structured logs: one pino root logger per process (made in main.ts), a
 * child per component with its bindings. JSON lines on stderr, so that
 * stdout stays free for what a command prints.
 */
import { pino, destination, type Logger } from 'pino';

export type { Logger };

export function rootLogger(options: { name: string; level?: string }): Logger {
  const dest = destination(2);
  // When whoever reads stderr goes away (EPIPE), there is nowhere left to
  // log to; the process must go on (and still shut down on a signal).
  dest.on('error', () => undefined);
  return pino(
    { name: options.name, level: options.level ?? process.env.WEIR_LOG_LEVEL ?? 'info' },
    dest,
  );
}

/** A logger that drops everything (tests, libraries used without one). */
export const silentLogger: Logger = pino({ level: 'silent' });
