/** `weirctl version`: weirctl's version and the controller's, with a warning when they differ. */
import type { StatusReply__Output } from '../../shared/generated/weir/v1/index.js';
import { weirVersion } from '../../shared/version.js';
import { call, controllerAddress, controllerAt, operatorClient } from '../clients.js';
import type { Io } from '../io.js';
import { emit, type OutputFlags, parseFormat } from '../output.js';

export async function version(
  io: Io,
  opts: OutputFlags & { controller?: string; client?: boolean },
): Promise<number> {
  parseFormat(opts.output);
  const client = { version: weirVersion() };
  let server: { version: string; address: string } | null = null;
  if (!opts.client) {
    const address = await controllerAddress(opts.controller);
    try {
      // Inside the try: missing credentials are one more reason the server's version is missing.
      const c = operatorClient(address);
      const s = await call<object, StatusReply__Output>(c, c.GetStatus, {}, controllerAt(address));
      // A controller from before the field says nothing: "unknown", which differs.
      server = { version: s.version || 'unknown', address };
    } catch (err) {
      // As kubectl: the client's version, then why the server's is missing.
      io.stdout(`client  ${client.version}\n`);
      throw err;
    }
  }
  emit(io, opts, {
    document: { client, server },
    text: (d) =>
      `client  ${client.version}\n${d.server === null ? '' : `server  ${server!.version} (${server!.address})\n`}`,
  });
  if (server !== null && server.version !== client.version)
    io.stderr(
      `warning: weirctl ${client.version} and the controller ${server.version} differ: use the weirctl of the controller's release\n`,
    );
  return 0;
}
