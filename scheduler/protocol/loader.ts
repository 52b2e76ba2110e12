/**
 * Loads scheduler/protocol/damselfly.proto (the agent ↔ scheduler contract) once, with the options every
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

const PACKAGE = 'damselfly.v2';

let cached: Loaded | undefined;
let definition: protoLoader.PackageDefinition | undefined;

/** The damselfly.v2 package. Throws if the proto file is missing next to this module. */
export function loadProto(): Loaded {
  if (!cached) {
    definition = protoLoader.loadSync(PROTO_PATH, PROTO_OPTIONS);
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { damselfly: { v2: Loaded } };
    cached = pkg.damselfly.v2;
  }
  return cached;
}

interface FieldDescriptor {
  name: string;
  type: string;
  typeName: string;
  label: string;
}
/** What proto-loader keeps of a message type: its DescriptorProto. */
type MessageEntry = { type?: { name?: string; field?: FieldDescriptor[] } } | undefined;

/** A message of type `name` with every nested message field present (one level of each type). */
function sampleMessage(name: string, seen: Set<string>): Record<string, unknown> {
  const msg: Record<string, unknown> = {};
  const fields = (definition?.[`${PACKAGE}.${name}`] as MessageEntry)?.type?.field ?? [];
  for (const f of fields) {
    // Map fields (nested *Entry types, not in the definition) and types already on the path are left out.
    if (f.type !== 'TYPE_MESSAGE' || seen.has(f.typeName) || !definition?.[`${PACKAGE}.${f.typeName}`]) continue;
    const nested = sampleMessage(f.typeName, new Set([...seen, f.typeName]));
    msg[f.name] = f.label === 'LABEL_REPEATED' ? [nested] : nested;
  }
  return msg;
}

/**
 * Runs every method's serializers once, on messages with every nested message present, so
 * protobufjs generates its per-type code (encode, decode, fromObject, toObject) at start instead of
 * during the first download, where every agent of a swarm would pay for it at the same moment.
 * Returns how many methods were warmed.
 */
export function warmProto(): number {
  const { Scheduler, Dfdaemon } = loadProto();
  let warmed = 0;
  for (const service of [Scheduler.service, Dfdaemon.service]) {
    for (const m of Object.values(service)) {
      const types = [
        [m.requestSerialize, m.requestDeserialize, (m as { requestType?: MessageEntry }).requestType],
        [m.responseSerialize, m.responseDeserialize, (m as { responseType?: MessageEntry }).responseType],
      ] as const;
      try {
        for (const [serialize, deserialize, type] of types) {
          const name = type?.type?.name ?? '';
          deserialize(serialize(sampleMessage(name, new Set([name]))));
        }
        warmed++;
      } catch {
        // A message the sample does not fit only stays cold; the first real one generates its code.
      }
    }
  }
  return warmed;
}
