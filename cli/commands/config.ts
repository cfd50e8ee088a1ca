/** `weirctl config`: the contexts of weirctl's config file (cli/config.ts), kubeconfig-style. */
import {
  type Context,
  configPath,
  readConfig,
  saveContext,
  useContext,
  viewConfig,
} from '../config.js';
import type { Io } from '../io.js';
import { renderTable } from '../table.js';

export async function configView(io: Io): Promise<number> {
  io.stdout(await viewConfig());
  return 0;
}

export async function configGetContexts(io: Io): Promise<number> {
  const config = readConfig();
  if (config.contexts.length === 0) {
    io.stdout(`no contexts in ${configPath()}\n`);
    return 0;
  }
  io.stdout(
    renderTable(
      ['CURRENT', 'NAME', 'CONTROLLER', 'CREDENTIALS'],
      config.contexts.map((c) => [
        c.name === config['current-context'] ? '*' : '',
        c.name,
        c.controller ?? '',
        c.insecure ? 'INSECURE' : (c['tls-dir'] ?? c.cert ?? ''),
      ]),
    ),
  );
  return 0;
}

export async function configUseContext(io: Io, name: string): Promise<number> {
  await useContext(name);
  io.stdout(`switched to context ${name}\n`);
  return 0;
}

export async function configSetContext(
  io: Io,
  name: string,
  opts: {
    controller?: string;
    tlsDir?: string;
    cert?: string;
    key?: string;
    ca?: string;
    insecure?: boolean;
    use?: boolean;
  },
): Promise<number> {
  const c: Context = { name };
  if (opts.controller !== undefined) c.controller = opts.controller;
  if (opts.tlsDir !== undefined) c['tls-dir'] = opts.tlsDir;
  if (opts.cert !== undefined) c.cert = opts.cert;
  if (opts.key !== undefined) c.key = opts.key;
  if (opts.ca !== undefined) c.ca = opts.ca;
  if (opts.insecure !== undefined) c.insecure = opts.insecure;
  await saveContext(c, opts.use === true);
  io.stdout(`context ${name} saved in ${configPath()}${opts.use ? ' and in use' : ''}\n`);
  return 0;
}
