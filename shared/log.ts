/**
 * Structured logs: one pino root logger per process (made in main.ts), a
 * child per component with its bindings. JSON lines on stderr, so that
 * stdout stays free for what a command prints.
 */
import { pino, destination, type Logger } from 'pino';

export type { Logger };

export function rootLogger(options: { name: string; level?: string }): Logger {
  return pino({ name: options.name, level: options.level ?? process.env.WEIR_LOG_LEVEL ?? 'info' }, destination(2));
}

/** A logger that drops everything (tests, libraries used without one). */
export const silentLogger: Logger = pino({ level: 'silent' });
