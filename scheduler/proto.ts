/**
 * Loads scheduler/damselfly.proto (the agent ↔ scheduler contract) once, with the options every
 * side uses, and exposes the service definitions for grpc-js servers and clients.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_PATH = fileURLToPath(new URL('./damselfly.proto', import.meta.url));

export const PROTO_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

interface Loaded {
  Scheduler: grpc.ServiceClientConstructor;
  Dfdaemon: grpc.ServiceClientConstructor;
}

let cached: Loaded | undefined;

/** The damselfly.v2 package. Throws if the proto file is missing next to this module. */
export function loadProto(): Loaded {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_PATH, PROTO_OPTIONS);
    const pkg = grpc.loadPackageDefinition(def) as unknown as { damselfly: { v2: Loaded } };
    cached = pkg.damselfly.v2;
  }
  return cached;
}
