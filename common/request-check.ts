// The first look at a request's bytes, before ts-proto decodes them, for every
// RPC of every role: what a hostile or broken client can put on the wire that
// no service's validation should have to think about.
//
//   strings    valid UTF-8 (ts-proto would silently substitute U+FFFD), no
//              U+0000 (PostgreSQL refuses it in text), at most 64 KiB
//   64-bit     |value| ≤ 2^53 − 1 (ts-proto's decode throws beyond, which
//   integers   grpc-js answers INTERNAL)
//   Timestamp  0001-01-01 to 9999-12-31, nanos 0..999999999 (ts-proto folds
//              them into a Date, so nothing after it could tell)
//   Duration   ±315576000000 s, nanos ±999999999 with the seconds' sign
//   repeated   at most 100,000 elements; nesting at most 32 deep
//
// A violation is an InvalidArgumentError whose field is the path in proto
// names (`events[0].time`, `vim.monitor.interval`). Field-specific limits stay
// in each service's validation.
//
// Our own walker rather than @bufbuild/protobuf's fromBinary: it follows the
// bytes exactly as ts-proto's generated decode does (same reader, same tag
// tests, same early end on tag 0 or an end-group tag), so every value ts-proto
// will hand a service has been seen here, with its path; and it is cheap (the
// conductor's UpdateVim runs at ~10k calls/s; its check takes about 0.3 µs,
// half of ts-proto's decode, see test/request-check.test.ts).
import { ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { TsProtoServiceDefinition } from 'nice-grpc';
import { descriptorRegistry } from './descriptors.js';
import { InvalidArgumentError } from './errors.js';

export const requestLimits = {
  maxStringBytes: 64 * 1024,
  maxRepeated: 100_000,
  maxDepth: 32,
} as const;

/** The key of the marker a guarded decode returns instead of a request; see rejectionOf. */
export const rejected: unique symbol = Symbol('vimmon.request-rejected');

export interface RejectedRequest {
  readonly [rejected]: InvalidArgumentError;
}

/** The violation a guarded decode found in this request, if it found one. */
export function rejectionOf(request: unknown): InvalidArgumentError | undefined {
  return typeof request === 'object' && request !== null ? (request as Partial<RejectedRequest>)[rejected] : undefined;
}

/**
 * Checks a request's wire bytes against its message type (fully-qualified
 * name). Undefined when they pass, and also when they do not parse: the
 * generated decoder then fails as it would have.
 */
export function checkRequestBytes(typeName: string, bytes: Uint8Array): InvalidArgumentError | undefined {
  const outcome = inspect(planFor(typeName), bytes);
  return outcome === unparsable ? undefined : outcome;
}

/**
 * A copy of a ts-proto service definition whose every request decode runs the
 * check first. A violation (or a decode that fails after the check passed)
 * comes out as a RejectedRequest, not an exception: grpc-js answers INTERNAL
 * to anything thrown while deserializing. The server's middleware turns it
 * into INVALID_ARGUMENT. Client-streaming methods are left as they are.
 */
export function guardDefinition<D extends TsProtoServiceDefinition>(definition: D): D {
  const service = descriptorRegistry().getService(definition.fullName);
  if (!service) throw new Error(`service ${definition.fullName} is not in gen/descriptor.binpb; run npm run gen`);
  const methods: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    if (method.requestStream) {
      methods[key] = method;
      continue;
    }
    const desc = service.methods.find((m) => m.name === method.name);
    if (!desc) throw new Error(`method ${definition.fullName}.${method.name} is not in gen/descriptor.binpb; run npm run gen`);
    const plan = planFor(desc.input.typeName);
    const original = method.requestType;
    const decode = (input: Uint8Array): unknown => {
      const outcome = inspect(plan, input);
      if (outcome instanceof InvalidArgumentError) return { [rejected]: outcome } satisfies RejectedRequest;
      if (outcome === unparsable) return original.decode(input);
      try {
        return original.decode(input);
      } catch (err) {
        return {
          [rejected]: new InvalidArgumentError('request', `cannot be decoded: ${(err as Error).message}`),
        } satisfies RejectedRequest;
      }
    };
    methods[key] = { ...method, requestType: { ...original, decode } };
  }
  return { ...definition, methods };
}

// --- plans: one per message type, built once from the descriptors ---------------

enum Kind {
  /** A scalar with nothing to check (int32, bool, enum, double, bytes …): read it as ts-proto does. */
  Plain,
  String,
  Int64,
  Uint64,
  Sint64,
  Fixed64,
  Sfixed64,
  Message,
  Timestamp,
  Duration,
}

interface FieldPlan {
  name: string;
  kind: Kind;
  /** The tag of one element (number << 3 | wire type). */
  tag: number;
  /** Repeated numeric fields also come packed under this tag; 0 when not. */
  packedTag: number;
  /** Index into the message's repeated counters, -1 when not repeated. */
  slot: number;
  read: ((r: BinaryReader) => unknown) | undefined;
  /** For Kind.Message. */
  messageName: string | undefined;
  message: MessagePlan | undefined;
}

interface MessagePlan {
  typeName: string;
  fields: Map<number, FieldPlan>;
  repeatedCount: number;
}

const plans = new Map<string, MessagePlan>();

function planFor(typeName: string): MessagePlan {
  let plan = plans.get(typeName);
  if (plan) return plan;
  const desc = descriptorRegistry().getMessage(typeName);
  if (!desc) throw new Error(`message ${typeName} is not in gen/descriptor.binpb`);
  plan = buildPlan(desc);
  plans.set(typeName, plan); // before its fields' types: a message may contain itself
  for (const field of plan.fields.values()) if (field.messageName) field.message = planFor(field.messageName);
  return plan;
}

const plainReaders: Partial<Record<ScalarType, (r: BinaryReader) => unknown>> = {
  [ScalarType.DOUBLE]: (r) => r.double(),
  [ScalarType.FLOAT]: (r) => r.float(),
  [ScalarType.INT32]: (r) => r.int32(),
  [ScalarType.UINT32]: (r) => r.uint32(),
  [ScalarType.SINT32]: (r) => r.sint32(),
  [ScalarType.FIXED32]: (r) => r.fixed32(),
  [ScalarType.SFIXED32]: (r) => r.sfixed32(),
  [ScalarType.BOOL]: (r) => r.bool(),
  [ScalarType.BYTES]: (r) => r.bytes(),
};

const scalarKinds: Partial<Record<ScalarType, Kind>> = {
  [ScalarType.STRING]: Kind.String,
  [ScalarType.INT64]: Kind.Int64,
  [ScalarType.UINT64]: Kind.Uint64,
  [ScalarType.SINT64]: Kind.Sint64,
  [ScalarType.FIXED64]: Kind.Fixed64,
  [ScalarType.SFIXED64]: Kind.Sfixed64,
};

function wireTypeOf(scalar: ScalarType): WireType {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}

function buildPlan(desc: DescMessage): MessagePlan {
  const fields = new Map<number, FieldPlan>();
  let repeatedCount = 0;
  for (const f of desc.fields) {
    const shape = fieldShape(f);
    const repeated = f.fieldKind === 'list' || f.fieldKind === 'map';
    const wire = shape.scalar === undefined ? WireType.LengthDelimited : wireTypeOf(shape.scalar);
    const packable = repeated && wire !== WireType.LengthDelimited;
    fields.set(f.number, {
      name: f.name,
      kind: shape.kind,
      tag: (f.number << 3) | wire,
      packedTag: packable ? (f.number << 3) | WireType.LengthDelimited : 0,
      slot: repeated ? repeatedCount++ : -1,
      read: shape.kind === Kind.Plain && shape.scalar !== undefined ? plainReaders[shape.scalar] : undefined,
      messageName: shape.messageName,
      message: undefined,
    });
  }
  return { typeName: desc.typeName, fields, repeatedCount };
}

function fieldShape(f: DescField): { kind: Kind; scalar?: ScalarType; messageName?: string } {
  const messageShape = (typeName: string) =>
    typeName === 'google.protobuf.Timestamp'
      ? { kind: Kind.Timestamp }
      : typeName === 'google.protobuf.Duration'
        ? { kind: Kind.Duration }
        : { kind: Kind.Message, messageName: typeName };
  const scalarShape = (scalar: ScalarType) => ({ kind: scalarKinds[scalar] ?? Kind.Plain, scalar });
  switch (f.fieldKind) {
    case 'scalar':
      return scalarShape(f.scalar);
    case 'enum':
      return scalarShape(ScalarType.INT32);
    case 'message':
      return messageShape(f.message.typeName);
    case 'list':
      if (f.listKind === 'scalar') return scalarShape(f.scalar);
      if (f.listKind === 'enum') return scalarShape(ScalarType.INT32);
      return messageShape(f.message.typeName);
    case 'map':
      // ts-proto decodes each entry as a message of the synthetic entry type.
      return { kind: Kind.Message, messageName: f.proto.typeName.replace(/^\./, '') };
  }
}

// --- the walk ------------------------------------------------------------------

const unparsable = Symbol('unparsable');

/** The path of the message being walked: field names, and the element index (-1: none). */
interface Walk {
  reader: BinaryReader;
  names: string[];
  indexes: number[];
}

function inspect(plan: MessagePlan, bytes: Uint8Array): InvalidArgumentError | typeof unparsable | undefined {
  const walk: Walk = { reader: new BinaryReader(bytes), names: [], indexes: [] };
  try {
    walkMessage(walk, plan, undefined, 0);
    return undefined;
  } catch (err) {
    return err instanceof InvalidArgumentError ? err : unparsable;
  }
}

function violation(walk: Walk, field: FieldPlan, index: number, reason: string): InvalidArgumentError {
  let path = '';
  for (let i = 0; i < walk.names.length; i++) {
    path += (i ? '.' : '') + walk.names[i] + (walk.indexes[i]! >= 0 ? `[${walk.indexes[i]}]` : '');
  }
  path += (path ? '.' : '') + field.name + (index >= 0 ? `[${index}]` : '');
  return new InvalidArgumentError(path, reason);
}

/** Mirrors the loop of ts-proto's generated decode(reader, length). */
function walkMessage(walk: Walk, plan: MessagePlan, length: number | undefined, depth: number): void {
  const reader = walk.reader;
  const end = length === undefined ? reader.len : reader.pos + length;
  const counts = plan.repeatedCount > 0 ? new Uint32Array(plan.repeatedCount) : undefined;
  while (reader.pos < end) {
    const tag = reader.uint32();
    const field = plan.fields.get(tag >>> 3);
    if (field !== undefined) {
      if (tag === field.tag) {
        walkElement(walk, field, counts, depth);
        continue;
      }
      if (tag === field.packedTag && field.packedTag !== 0) {
        const end2 = reader.uint32() + reader.pos;
        while (reader.pos < end2) walkElement(walk, field, counts, depth);
        continue;
      }
    }
    if ((tag & 7) === WireType.EndGroup || tag === 0) break;
    reader.skip(tag & 7);
  }
}

function walkElement(walk: Walk, field: FieldPlan, counts: Uint32Array | undefined, depth: number): void {
  let index = -1;
  if (field.slot >= 0) {
    index = counts![field.slot]!++;
    if (index >= requestLimits.maxRepeated) throw violation(walk, field, -1, `at most ${requestLimits.maxRepeated} elements`);
  }
  const reader = walk.reader;
  switch (field.kind) {
    case Kind.Plain:
      field.read!(reader);
      return;
    case Kind.String:
      checkString(walk, field, index, reader.bytes());
      return;
    case Kind.Int64:
      checkSafe(walk, field, index, reader.int64());
      return;
    case Kind.Uint64:
      checkSafe(walk, field, index, reader.uint64());
      return;
    case Kind.Sint64:
      checkSafe(walk, field, index, reader.sint64());
      return;
    case Kind.Fixed64:
      checkSafe(walk, field, index, reader.fixed64());
      return;
    case Kind.Sfixed64:
      checkSafe(walk, field, index, reader.sfixed64());
      return;
    case Kind.Timestamp:
    case Kind.Duration:
      checkTime(walk, field, index, reader.uint32());
      return;
    case Kind.Message: {
      if (depth + 1 > requestLimits.maxDepth) throw violation(walk, field, index, `nested more than ${requestLimits.maxDepth} deep`);
      const length = reader.uint32();
      walk.names.push(field.name);
      walk.indexes.push(index);
      walkMessage(walk, field.message!, length, depth + 1);
      walk.names.pop();
      walk.indexes.pop();
      return;
    }
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function checkString(walk: Walk, field: FieldPlan, index: number, bytes: Uint8Array): void {
  if (bytes.length > requestLimits.maxStringBytes) throw violation(walk, field, index, `longer than ${requestLimits.maxStringBytes} bytes`);
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    // In UTF-8 a zero byte is U+0000 and nothing else.
    if (b === 0) throw violation(walk, field, index, 'contains U+0000 (NUL)');
    if (b >= 0x80) ascii = false;
  }
  if (ascii) return;
  try {
    strictUtf8.decode(bytes);
  } catch {
    throw violation(walk, field, index, 'not valid UTF-8');
  }
}

const maxSafe = BigInt(Number.MAX_SAFE_INTEGER);

function checkSafe(walk: Walk, field: FieldPlan, index: number, raw: bigint | string): void {
  const v = typeof raw === 'bigint' ? raw : BigInt(raw);
  if (v > maxSafe || v < -maxSafe) throw violation(walk, field, index, `out of range: at most ${Number.MAX_SAFE_INTEGER}`);
}

// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as google/protobuf/timestamp.proto fixes them.
const minTimestampSeconds = -62_135_596_800;
const maxTimestampSeconds = 253_402_300_799;
// About 10,000 years, as google/protobuf/duration.proto fixes it.
const maxDurationSeconds = 315_576_000_000;
const maxNanos = 999_999_999;
const minTimestamp = BigInt(minTimestampSeconds);
const maxTimestamp = BigInt(maxTimestampSeconds);
const maxDuration = BigInt(maxDurationSeconds);

/** A Timestamp or Duration, walked as ts-proto's decode walks it; a violation names the field itself. */
function checkTime(walk: Walk, field: FieldPlan, index: number, length: number): void {
  const reader = walk.reader;
  const end = reader.pos + length;
  let seconds = 0n;
  let nanos = 0;
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 8) {
      const raw = reader.int64();
      seconds = typeof raw === 'bigint' ? raw : BigInt(raw);
      continue;
    }
    if (tag === 16) {
      nanos = reader.int32();
      continue;
    }
    if ((tag & 7) === WireType.EndGroup || tag === 0) break;
    reader.skip(tag & 7);
  }
  if (field.kind === Kind.Timestamp) {
    if (seconds < minTimestamp || seconds > maxTimestamp) {
      throw violation(
        walk,
        field,
        index,
        `out of range: seconds must be within ${minTimestampSeconds} and ${maxTimestampSeconds} (0001-01-01 to 9999-12-31)`,
      );
    }
    if (nanos < 0 || nanos > maxNanos) throw violation(walk, field, index, `nanos out of range: 0 to ${maxNanos}`);
    return;
  }
  if (seconds > maxDuration || seconds < -maxDuration) {
    throw violation(walk, field, index, `out of range: seconds must be within ±${maxDurationSeconds}`);
  }
  if (nanos > maxNanos || nanos < -maxNanos) throw violation(walk, field, index, `nanos out of range: ±${maxNanos}`);
  if ((seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) {
    throw violation(walk, field, index, 'seconds and nanos must have the same sign');
  }
}
