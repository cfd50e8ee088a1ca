#!/usr/bin/env node
// Builds the native addon (vrouter-agent/native) with node-gyp against the
// local Node headers. Without a compiler the build fails and Weir runs on its
// TypeScript implementations (the loader says so); set WEIR_REQUIRE_NATIVE=1
// (CI does) to make that failure fatal.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const r = spawnSync(process.execPath, [gyp, 'rebuild', '--loglevel=warn', '-j', 'max'], {
  cwd: join(root, 'vrouter-agent', 'native'),
  stdio: 'inherit',
});
if (r.status !== 0) {
  const msg = 'weir: the native addon did not build; the TypeScript implementations will be used';
  if (process.env.WEIR_REQUIRE_NATIVE === '1') {
    console.error(`${msg} (WEIR_REQUIRE_NATIVE=1: failing)`);
    process.exit(1);
  }
  console.warn(msg);
}
