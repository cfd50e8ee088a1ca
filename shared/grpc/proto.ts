/**
 * The Weir gRPC services, loaded from proto/ at run time with the options the
 * generated types assume (PLATFORM.md): 64-bit integers and enums as strings,
 * defaults filled in, oneof names present.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { MESSAGE_LIMITS } from '../limits.js';
import type { ProtoGrpcType as AgentProto } from '../generated/agent.js';
import type { ProtoGrpcType as IntrospectProto } from '../generated/introspect.js';

type ProtoGrpcType = AgentProto & IntrospectProto;

/** proto/ from the sources (shared/grpc) or from the build (dist/shared/grpc). */
export const PROTO_DIR = ['../../proto', '../../../proto']
  .map((p) => fileURLToPath(new URL(p, import.meta.url)))
  .find((p) => existsSync(p))!;

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let loaded: { definition: protoLoader.PackageDefinition; proto: ProtoGrpcType } | undefined;

export function weirProto(): { definition: protoLoader.PackageDefinition; proto: ProtoGrpcType } {
  if (loaded === undefined) {
    const definition = protoLoader.loadSync(
      ['weir/v1/agent.proto', 'weir/v1/policy.proto', 'weir/v1/introspect.proto'],
      LOADER_OPTIONS,
    );
    loaded = {
      definition,
      proto: grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType,
    };
  }
  return loaded;
}

const KEEPALIVE = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
} as const;

/**
 * Client channels: keepalives so that a vanished peer is noticed in seconds,
 * not at the next write; replies bounded by `maxReceiveBytes` (what the
 * server legitimately sends: spans for an agent, replies for weirctl;
 * shared/limits.ts).
 */
export function channelOptions(maxReceiveBytes: number): grpc.ChannelOptions {
  return {
    ...KEEPALIVE,
    'grpc.max_receive_message_length': maxReceiveBytes,
    'grpc.max_send_message_length': MESSAGE_LIMITS.sendBytes,
    // Under TLS, the name sent (SNI) and nothing more: servers are checked by
    // their certificate's identity (URI SAN, shared/tls/credentials.ts), not
    // by host name, and an IP address may not be sent as SNI (RFC 6066).
    'grpc.ssl_target_name_override': 'weir',
  };
}

/**
 * Servers: keepalives as for channels, and requests bounded by
 * `maxReceiveBytes`, sized to what a legitimate peer of the services on
 * that server sends (shared/limits.ts). A larger message is refused by
 * grpc-js with RESOURCE_EXHAUSTED before it is decoded.
 */
export function serverOptions(maxReceiveBytes: number): grpc.ServerOptions {
  return {
    ...KEEPALIVE,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    'grpc.max_receive_message_length': maxReceiveBytes,
    'grpc.max_send_message_length': MESSAGE_LIMITS.sendBytes,
  };
}

/** weirctl's channels (and tools'): replies as large as the cluster. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = channelOptions(
  MESSAGE_LIMITS.replyReceiveBytes,
);
