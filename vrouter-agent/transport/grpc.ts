/**
 * The agent's controller connection over gRPC: one ControlPlane.Connect
 * stream at a time; Hello first, the controller's Welcome makes it
 * connected, then SpanUpdates in, Ack/Nack out on the same stream. A lost
 * stream reconnects with backoff (at once when the stream had worked).
 */
import type * as grpc from '@grpc/grpc-js';
import type {
  AgentMessage,
  ControllerMessage__Output,
} from '../../shared/generated/weir/v1/index.js';
import { channelOptions, weirProto } from '../../shared/grpc/proto.js';
import { MESSAGE_LIMITS } from '../../shared/limits.js';
import type { Logger } from '../../shared/log.js';
import { type CertificateFiles, channelCredentials } from '../../shared/tls/credentials.js';
import {
  type AgentHello,
  type ControllerTransport,
  type Delivery,
  DeliveryQueue,
  backoffMs,
} from './transport.js';

type Stream = grpc.ClientDuplexStream<AgentMessage, ControllerMessage__Output>;

export class GrpcTransport implements ControllerTransport {
  private client: grpc.Client | undefined;
  private call: Stream | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly queue = new DeliveryQueue();
  private hello: (() => AgentHello) | undefined;
  connected = false;

  constructor(
    /** "host:port" of the controller. */
    readonly peer: string,
    private readonly options: {
      log: Logger;
      /** Mutual TLS: this agent's certificates; the server must be the controller. Undefined: --insecure. */
      tls: CertificateFiles | undefined;
      reconnectMinMs?: number;
      reconnectMaxMs?: number;
    },
  ) {}

  updates(hello: () => AgentHello): AsyncIterable<Delivery> {
    this.hello = hello;
    this.connect(0);
    return this.queue;
  }

  private connect(attempt: number): void {
    if (this.closed) return;
    const { log } = this.options;
    const { proto } = weirProto();
    this.client ??= new proto.weir.v1.ControlPlane(
      this.peer,
      channelCredentials(this.options.tls, (id) =>
        id.kind === 'controller' ? undefined : `${id.uri} is not the controller`,
      ),
      channelOptions(MESSAGE_LIMITS.spanReceiveBytes),
    );
    const call = (this.client as unknown as { Connect(): Stream }).Connect();
    this.call = call;
    let gotData = false;
    const lost = (why: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      if (this.connected)
        log.warn({ why }, 'controller stream lost; enforcing the last span (headless)');
      this.connected = false;
      if (this.closed) return;
      const next = gotData ? 0 : attempt + 1;
      const delay = backoffMs(
        next,
        this.options.reconnectMinMs ?? 200,
        this.options.reconnectMaxMs ?? 5_000,
      );
      this.retry = setTimeout(() => this.connect(next), delay);
      this.retry.unref();
    };
    call.on('data', (msg: ControllerMessage__Output) => {
      // The controller answers the hello with a welcome before anything else.
      if (!gotData) {
        gotData = true;
        this.connected = true;
        log.info({ controller: this.peer }, 'connected to controller');
      }
      if (msg.kind !== 'update' || !msg.update) return;
      const update = msg.update;
      const current = () => this.call === call;
      const pushed = this.queue.push({
        update,
        ack: (inForceHash) => {
          if (current()) call.write({ ack: { revision: update.revision, inForceHash } });
        },
        nack: (error, inForceHash) => {
          if (current()) call.write({ nack: { revision: update.revision, error, inForceHash } });
        },
      });
      if (!pushed) {
        lost('the controller sent more updates than the agent can queue');
        call.cancel();
      }
    });
    call.on('error', (err: grpc.ServiceError) => lost(err.details || err.message));
    call.on('end', () => lost('stream ended by the controller'));
    const h = this.hello!();
    call.write({
      hello: {
        node: h.node,
        appliedRevision: String(h.appliedRevision),
        instance: h.instance,
        apiAddress: h.apiAddress,
        inForceHash: h.inForceHash,
      },
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closed = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    const call = this.call;
    this.call = undefined;
    this.connected = false;
    call?.cancel();
    this.client?.close();
    this.queue.end();
  }
}
