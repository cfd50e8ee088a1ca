/** A controller that sends what the test says and records what agents answer (a real gRPC server on loopback). */
import * as grpc from '@grpc/grpc-js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import type {
  AgentMessage__Output,
  ControllerMessage,
  SpanUpdate,
} from '../../shared/generated/weir/v1/index.js';
import { serverOptions, weirProto } from '../../shared/grpc/proto.js';
import { eventually } from './processes.js';

export class ScriptedController {
  readonly answers: AgentMessage__Output[] = [];
  private call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage> | undefined;
  private readonly server = new grpc.Server(serverOptions(MESSAGE_LIMITS.controllerReceiveBytes));
  port = 0;

  async start(): Promise<void> {
    const { proto } = weirProto();
    this.server.addService(proto.weir.v1.ControlPlane.service, {
      Connect: (call: grpc.ServerDuplexStream<AgentMessage__Output, ControllerMessage>) => {
        this.call = call;
        call.on('data', (m: AgentMessage__Output) => this.answers.push(m));
        call.on('error', () => undefined);
      },
    });
    this.port = await new Promise((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
  }

  send(update: SpanUpdate): void {
    this.call!.write({ update });
  }

  welcome(): void {
    this.call!.write({ welcome: { revision: '0' } });
  }

  /** The n-th answer (1-based), once it has come. */
  answer(n: number): Promise<AgentMessage__Output> {
    return eventually(
      async () => (this.answers.length >= n ? this.answers[n - 1] : undefined),
      `answer ${n}`,
    );
  }

  stop(): void {
    this.server.forceShutdown();
  }
}
