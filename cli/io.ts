/** Where a command writes; the real process streams, or buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The command line was wrong: exit status 2 with the message. */
export class UsageError extends Error {}

// A reader that goes away (`weirctl flows -w | head`) ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

export const processIo: Io = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};
