/** Where a command writes; the real process streams, or buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The command line was wrong: exit status 2 with the message. */
export class UsageError extends Error {}

export const processIo: Io = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};
