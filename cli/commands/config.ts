/** `weirctl config`: the contexts of weirctl's config file (cli/config.ts), kubeconfig-style. */
import {
  type Context,
  configPath,
  readConfig,
  saveContext,
  useContext,
  viewConfig,
} from '../config.js';
import { type Io, UsageError } from '../io.js';
import { emit, type Json, type OutputFlags, parseFormat } from '../output.js';

export async function configView(io: Io): Promise<number> {
  io.stdout(await viewConfig());
  return 0;
}

export async function configGetContexts(io: Io, flags: OutputFlags): Promise<number> {
  parseFormat(flags.output);
  const config = readConfig();
  const current = config['current-context'];
  emit(io, flags, {
    document: {
      currentContext: current ?? null,
      contexts: config.contexts.map((c) => ({ ...c, current: c.name === current })) as Json[],
    },
    list: 'contexts',
    name: (c) => `context/${c.name}`,
    empty: `no contexts in ${configPath()}\n`,
    columns: [
      { header: 'CURRENT', cell: (c) => (c.current ? '*' : '') },
      { header: 'NAME', cell: (c) => String(c.name) },
      {
        header: 'CONTROLLER',
        cell: (c) =>
          c['kube-context'] !== undefined || c.kubeconfig !== undefined
            ? `port-forward (${c['kube-context'] ?? 'current kube context'})`
            : String(c.controller ?? ''),
      },
      {
        header: 'CREDENTIALS',
        cell: (c) => (c.insecure ? 'INSECURE' : String(c['tls-dir'] ?? c.cert ?? '')),
      },
    ],
  });
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
    kubeContext?: string;
    kubeconfig?: string;
    kubeNamespace?: string;
  },
): Promise<number> {
  const c: Context = { name };
  const kube = opts.kubeContext !== undefined || opts.kubeconfig !== undefined;
  if (opts.controller !== undefined && kube)
    throw new UsageError(
      '--controller and --kube-context/--kubeconfig are alternatives (an address, or the port-forward): give one',
    );
  // Each way of reaching the controller replaces the other in a saved context.
  if (opts.controller !== undefined) {
    c.controller = opts.controller;
    c['kube-context'] = undefined;
    c.kubeconfig = undefined;
    c['kube-namespace'] = undefined;
  }
  if (kube) {
    c.controller = undefined;
    c['kube-context'] = opts.kubeContext;
    c.kubeconfig = opts.kubeconfig;
  }
  if (opts.kubeNamespace !== undefined) c['kube-namespace'] = opts.kubeNamespace;
  if (opts.tlsDir !== undefined) c['tls-dir'] = opts.tlsDir;
  if (opts.cert !== undefined) c.cert = opts.cert;
  if (opts.key !== undefined) c.key = opts.key;
  if (opts.ca !== undefined) c.ca = opts.ca;
  if (opts.insecure !== undefined) c.insecure = opts.insecure;
  await saveContext(c, opts.use === true);
  io.stdout(`context ${name} saved in ${configPath()}${opts.use ? ' and in use' : ''}\n`);
  return 0;
}
