/**
 * weirctl run in this test process (cli/main.ts's main), its output
 * captured: what a test of a verb needs without spawning bin/weirctl. The
 * environment variables given are set for the run and restored after.
 */
import { main } from '../../cli/main.js';

export interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export async function runWeirctl(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<Run> {
  let out = '';
  let err = '';
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const code = await main(args, {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
    });
    return { code, out, err };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
