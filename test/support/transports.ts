/**
 * The transports an integration test runs over: every control-plane test
 * is one semantic, run over gRPC and over NATS JetStream (a real
 * nats-server on a free loopback port). WEIR_TEST_TRANSPORTS=grpc (or nats)
 * narrows it.
 *
 * NATS runs as in production: TLS, each program's own certificate (the one
 * it uses for gRPC, from the test process' CA, test/support/tls.ts) mapped
 * by the server to its role's user (shared/nats/permissions.ts): the
 * controller, one agent user per node the rig names. An agent of a node
 * the rig does not name is refused by the server.
 */
import { type NatsRig, startNats } from '../../testing/nats-server.js';
import type { TestPki } from '../../testing/pki.js';
import { pki as processPki } from './tls.js';

export type Transport = 'grpc' | 'nats';

export const TRANSPORTS: readonly Transport[] = (process.env.WEIR_TEST_TRANSPORTS ?? 'grpc,nats')
  .split(',')
  .filter((t): t is Transport => t === 'grpc' || t === 'nats');

/** The flags of the controller and of agents for one transport, and the NATS server behind them. */
export class TransportRig implements AsyncDisposable {
  nats: NatsRig | undefined;

  constructor(
    readonly transport: Transport,
    private readonly cluster: string,
    /** The nodes whose agents may connect over NATS. */
    private readonly nodes: readonly string[],
    /** The CA the programs' certificates come from (the test process' unless told). */
    readonly pki: TestPki = processPki,
  ) {}

  async start(): Promise<void> {
    if (this.transport === 'nats')
      this.nats = await startNats({
        identities: { pki: this.pki, cluster: this.cluster, nodes: this.nodes },
      });
  }

  controllerArgs(): string[] {
    return this.nats === undefined ? [] : ['--transport', 'nats', '--nats', this.nats.urls];
  }

  agentArgs(): string[] {
    return this.nats === undefined
      ? []
      : ['--transport', 'nats', '--nats', this.nats.urls, '--cluster', this.cluster];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.nats?.[Symbol.asyncDispose]();
  }
}
