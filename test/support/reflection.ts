/**
 * A minimal gRPC server-reflection client (grpc.reflection.v1), as generic
 * tools such as grpcurl use it: lists the services a server exposes.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CHANNEL_OPTIONS } from '../../shared/grpc/proto.js';
import { channelCredentials } from '../../shared/tls/credentials.js';
import { filesIn, pki } from './tls.js';

const require = createRequire(import.meta.url);
const protoRoot = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');

export async function listServices(address: string): Promise<string[]> {
  const def = protoLoader.loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [protoRoot],
    keepCase: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: {
      reflection: {
        v1: {
          ServerReflection: new (
            a: string,
            c: grpc.ChannelCredentials,
            o?: grpc.ChannelOptions,
          ) => grpc.Client;
        };
      };
    };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(
    address,
    // As weirctl: the test process' operator certificate (test/support/tls.ts), any Weir server.
    channelCredentials(filesIn(pki.operator('admin')), () => undefined),
    CHANNEL_OPTIONS,
  );
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = (
        client as unknown as {
          ServerReflectionInfo(): grpc.ClientDuplexStream<
            object,
            { list_services_response?: { service: Array<{ name: string }> } }
          >;
        }
      ).ServerReflectionInfo();
      call.on('data', (r) => {
        resolve(
          (r.list_services_response?.service ?? []).map((s: { name: string }) => s.name).sort(),
        );
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}
