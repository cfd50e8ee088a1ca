// Runs one of Weir's programs from a checkout: the build (npm ci builds it)
// when there is one, the TypeScript sources through tsx otherwise.
import { existsSync } from 'node:fs';

export async function launch(module) {
  const built = new URL(`../dist/${module}.js`, import.meta.url);
  if (existsSync(built)) return import(built.href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(new URL(`../${module}.ts`, import.meta.url).href);
}
