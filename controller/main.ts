/**
 * weir-controller: wiring only. Reads options, makes the root logger, starts
 * the controller on its source, shuts down in order on a signal.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { rootLogger } from '../shared/log.js';
import { ArgumentError, onShutdown, runMain } from '../shared/process.js';
import { Controller } from './controller.js';
import { ManifestSource } from './sources/manifest-source.js';

const USAGE = `usage: weir-controller [--manifests DIR] [--listen HOST:PORT] [--state-dir DIR] [--cluster NAME] [--log-level LEVEL]
  --manifests DIR      read cluster state from manifests in DIR, watched (default: the demo in deploy/examples)
  --listen HOST:PORT   gRPC for agents and weirctl (default 127.0.0.1:7443; env WEIR_LISTEN)
  --state-dir DIR      keep the revision counter and agents' ACKed spans here, for delta resync after a restart
  --cluster NAME       cluster name, prefixed to every object id (default "local")
`;

/** The embedded default: the demo cluster shipped with Weir. */
export const DEMO_MANIFESTS = ['../deploy/examples', '../../deploy/examples'].map((p) => fileURLToPath(new URL(p, import.meta.url)));

export async function main(argv: string[]): Promise<void> {
  await runMain(USAGE, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        manifests: { type: 'string' },
        listen: { type: 'string', default: process.env.WEIR_LISTEN ?? '127.0.0.1:7443' },
        'state-dir': { type: 'string' },
        cluster: { type: 'string', default: 'local' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return;
    }
    const log = rootLogger({ name: 'weir-controller', level: values['log-level'] });
    const { existsSync } = await import('node:fs');
    const dir = values.manifests ?? DEMO_MANIFESTS.find((d) => existsSync(d));
    if (dir === undefined || !existsSync(dir)) throw new ArgumentError(`manifest directory ${dir ?? '(demo)'} does not exist`);
    const source = new ManifestSource(dir, { log: log.child({ component: 'manifests' }) });
    const controller = new Controller({ cluster: values.cluster!, source, listen: values.listen!, stateDir: values['state-dir'], log });
    onShutdown(log, () => controller[Symbol.asyncDispose]());
    await controller.start();
  });
}
