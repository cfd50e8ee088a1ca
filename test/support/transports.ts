/**
 * The transports an integration test runs over: every control-plane test
 * is one semantic, run over gRPC and over NATS JetStream (a real
 * nats-server on a free loopback port). WEIR_TEST_TRANSPORTS=grpc (or nats)
 * narrows it.
 */
import { type NatsRig, startNats } from '../../testing/nats-server.js';

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
  ) {}

  async start(): Promise<void> {
    if (this.transport === 'nats') this.nats = await startNats();
  }

  // Plain NATS (--insecure): these tests are about semantics; NATS with TLS
  // and certificate identities is test/integration/nats-flows.test.ts and
  // test/distribute/nats-tls.test.ts.
  controllerArgs(): string[] {
    return this.nats === undefined
      ? []
      : ['--transport', 'nats', '--nats', this.nats.urls, '--nats-insecure'];
  }

  agentArgs(): string[] {
    return this.nats === undefined
      ? []
      : [
          '--transport',
          'nats',
          '--nats',
          this.nats.urls,
          '--nats-insecure',
          '--cluster',
          this.cluster,
        ];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.nats?.[Symbol.asyncDispose]();
  }
}
