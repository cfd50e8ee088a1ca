// Runs one of Weir's programs from a checkout: the build in dist/ (npm ci
// builds it) when it is at least as new as the sources, the TypeScript
// sources through tsx otherwise (a developer who edited without rebuilding
// gets what they edited).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const SOURCE_DIRS = ['shared', 'controller', 'vrouter-agent', 'cli'];

function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'build' || e.name === 'generated') continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(join(root, d))) walk(join(root, d));
  return newest;
}

async function sources(module) {
  const { register } = await import('tsx/esm/api');
  register();
  return import(new URL(`../${module}.ts`, import.meta.url).href);
}

export async function launch(module) {
  const built = new URL(`../dist/${module}.js`, import.meta.url);
  const stamp = join(root, 'dist', '.build-stamp');
  const fresh = existsSync(built) && existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource();
  if (fresh) return import(built.href);
  try {
    return await sources(module);
  } catch (err) {
    if (existsSync(built) && err?.code === 'ERR_MODULE_NOT_FOUND') {
      process.stderr.write(
        'weir: the build in dist/ is older than the sources and tsx is not installed; running the old build (npm run build)\n',
      );
      return import(built.href);
    }
    throw err;
  }
}
