/**
 * The Weir gRPC services, loaded from proto/ at run time with the options the
 * generated types assume (PLATFORM.md): 64-bit integers and enums as strings,
 * defaults filled in, oneof names present.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
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

/** Keepalives so that a vanished peer is noticed in seconds, not at the next write. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
  'grpc.max_send_message_length': 256 * 1024 * 1024,
  // Under TLS, the name sent (SNI) and nothing more: servers are checked by
  // their certificate's identity (URI SAN, shared/tls/credentials.ts), not
  // by host name, and an IP address may not be sent as SNI (RFC 6066).
  'grpc.ssl_target_name_override': 'weir',
};

export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
  'grpc.max_send_message_length': 256 * 1024 * 1024,
};
