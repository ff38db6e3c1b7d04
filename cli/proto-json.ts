// Messages for programs (-o json|yaml) in the canonical proto JSON mapping, as
// grpcurl prints them: lowerCamel names, enum names, RFC 3339 times and "1.5s"
// durations. ts-proto's toJSON writes a Duration as {seconds, nanos}, so the
// message goes through its bytes and the contracts' descriptors instead.
import { fromBinary, type JsonValue, toJson } from '@bufbuild/protobuf';
import { descriptorRegistry } from '../common/descriptors.js';

interface Encoder<T> {
  encode(message: T): { finish(): Uint8Array };
}

/** typeName: the message's fully-qualified proto name, e.g. vimmon.tacker.v1.Vim. */
export function protoJson<T>(typeName: string, type: Encoder<T>, message: T): JsonValue {
  const registry = descriptorRegistry();
  const schema = registry.getMessage(typeName);
  if (!schema) throw new Error(`no message ${typeName} in the contracts`);
  return toJson(schema, fromBinary(schema, type.encode(message).finish()), { registry });
}
