/** Weir's version: package.json's, read once (from the sources or from dist/). */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

let version: string | undefined;

export function weirVersion(): string {
  if (version === undefined) {
    const file = ['../package.json', '../../package.json']
      .map((p) => fileURLToPath(new URL(p, import.meta.url)))
      .find((p) => existsSync(p));
    version =
      file === undefined
        ? 'unknown'
        : String(
            (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown',
          );
  }
  return version;
}
