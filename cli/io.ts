import { ErrorCode, WeirError } from '../shared/errors.js';

/** Where a command writes; the real process streams, or buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The command line was wrong (code Invalid): exit status 2 with the message. */
export class UsageError extends WeirError {
  constructor(message: string) {
    super(ErrorCode.Invalid, message);
  }
}

/**
 * weirctl's exit status for an error of each code, as kubectl's: 1 when the
 * command could not be carried out, a named object not found included; 2
 * when the command line (or a manifest it names) is wrong, which a retry
 * cannot fix.
 */
export const EXIT_STATUS: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.Invalid]: 2,
  [ErrorCode.NotFound]: 1,
  [ErrorCode.Unavailable]: 1,
  [ErrorCode.Closed]: 1,
  [ErrorCode.Denied]: 1,
  [ErrorCode.Exhausted]: 1,
  [ErrorCode.Internal]: 1,
};

// A reader that goes away (`weirctl flows -w | head`) ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

export const processIo: Io = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};
