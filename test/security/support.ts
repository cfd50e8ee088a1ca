/**
 * A real controller in this process (manifests of the demo, gRPC on a free
 * loopback port, its log captured as bytes and lines), and raw clients that
 * speak to it as an attacker would: any message, any size.
 */
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Controller } from '../../controller/controller.js';
import { ManifestSource } from '../../controller/sources/manifest-source.js';
import type {
  AgentMessage,
  ControllerMessage__Output,
  StatusReply__Output,
} from '../../shared/generated/weir/v1/index.js';
import { channelOptions, weirProto } from '../../shared/grpc/proto.js';
import type { Logger } from '../../shared/log.js';
import { DEMO_MANIFESTS } from '../../controller/main.js';
import { existsSync } from 'node:fs';
import { eventually } from '../support/processes.js';

/** A pino logger whose lines are kept: their total size, and each parsed. */
export class CapturedLog {
  bytes = 0;
  readonly lines: Array<Record<string, unknown>> = [];
  readonly logger: Logger;
  constructor(level = 'info') {
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.bytes += chunk.length;
        for (const text of chunk.toString().split('\n'))
          if (text !== '') this.lines.push(JSON.parse(text) as Record<string, unknown>);
        cb();
      },
    });
    this.logger = pino({ level }, sink);
  }
}

export const DEMO_DIR = DEMO_MANIFESTS.find((d) => existsSync(d))!;

export interface ControllerRig {
  readonly controller: Controller;
  readonly log: CapturedLog;
  readonly address: string;
  status(): Promise<StatusReply__Output>;
  close(): Promise<void>;
}

export async function startController(
  options: { stateDir?: string; maxUnknownAgents?: number; agentRecordTtlMs?: number } = {},
): Promise<ControllerRig> {
  const log = new CapturedLog();
  const controller = new Controller({
    cluster: 'local',
    source: new ManifestSource(DEMO_DIR, { log: log.logger }),
    listen: '127.0.0.1:0',
    log: log.logger,
    // Plain gRPC: the limits hold for any peer, and the raw clients these
    // tests drive need no certificate (mTLS itself: test/security/mtls.test.ts).
    tls: undefined,
    ...options,
  });
  await controller.start();
  const address = `127.0.0.1:${controller.port}`;
  const { proto } = weirProto();
  const operator = new proto.weir.v1.Operator(
    address,
    grpc.credentials.createInsecure(),
    channelOptions(512 * 1024 * 1024),
  );
  const status = () =>
    new Promise<StatusReply__Output>((resolve, reject) =>
      operator.GetStatus({}, (err, reply) => (err ? reject(err) : resolve(reply!))),
    );
  await eventually(async () => ((await status()).source?.synced ? true : undefined), 'synced');
  return {
    controller,
    log,
    address,
    status,
    close: async () => {
      operator.close();
      await controller[Symbol.asyncDispose]();
    },
  };
}

/** One Connect stream: write any message, read what comes back, and how it ended. */
export class RawAgentStream {
  private readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
  readonly received: ControllerMessage__Output[] = [];
  readonly ended: Promise<grpc.StatusObject>;

  constructor(address: string) {
    const { proto } = weirProto();
    this.client = new proto.weir.v1.ControlPlane(
      address,
      grpc.credentials.createInsecure(),
      channelOptions(512 * 1024 * 1024),
    );
    this.call = (
      this.client as unknown as {
        Connect(): grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;
      }
    ).Connect();
    this.call.on('data', (m: ControllerMessage__Output) => this.received.push(m));
    this.ended = new Promise((resolve) => {
      this.call.on('status', resolve);
      this.call.on('error', () => undefined);
    });
  }

  write(m: AgentMessage): void {
    this.call.write(m);
  }

  /** The first update received, once it has come. */
  update(): Promise<NonNullable<ControllerMessage__Output['update']>> {
    return eventually(
      async () => this.received.find((m) => m.kind === 'update')?.update ?? undefined,
      'an update',
    );
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}
