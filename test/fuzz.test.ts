// Hostile input against a real mesh in one process (Tacker server, conductor,
// executor, inspector; no authentication, no Nova, no AMQP), for every unary
// and server-streaming RPC, generated from the descriptors: ts-proto partials
// (nasty strings, numbers at their extremes, enums out of range, nested
// messages there or not; alone or laid over a request the method accepts),
// well-formed wire bytes with what ts-proto would never write (invalid UTF-8,
// 64-bit extremes, any Timestamp or Duration), random and mutated bytes; then
// Doctor's PUT /events. Without the request check this finds INTERNAL (64-bit
// ids) and NULs reaching PostgreSQL within a run. What must hold:
//   - no INTERNAL (nor UNKNOWN, nor UNAVAILABLE from a value that reached
//     PostgreSQL), except for raw bytes ts-proto itself cannot decode;
//   - every INVALID_ARGUMENT starts with a path of the request's fields;
//   - a refused RegisterVim/UpdateVim/DeregisterVim leaves the VIM rows and the
//     audit trail as they were; a refused ReportEvents takes no event; a
//     refused StartAction starts nothing;
//   - Doctor's endpoint answers 202/400/404/405/413, never 500;
//   - every role still answers its health check afterwards.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import { ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { createChannel, createClient, Status, type TsProtoServiceDefinition } from 'nice-grpc';
import { descriptorRegistry } from '../common/descriptors.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startInspector } from '../inspector/main.js';
import { encodePageToken, updatablePaths } from '../server/vim-input.js';
import { createTestDatabase } from './support/database.js';
import { startMesh } from './support/mesh.js';
import { createLogger } from '../common/logger.js';

const registry = descriptorRegistry();

interface Method {
  service: TsProtoServiceDefinition;
  key: string;
  path: string;
  input: DescMessage;
  serverStream: boolean;
  address: () => string;
}

interface Outcome {
  code: Status | 'ok';
  details: string;
}

// --- generators from the descriptors ------------------------------------------------

const known = { vimIds: [] as string[], actionIds: [] as string[] };
const nasty = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u0001\u001f\u007f',
  '\t\n\r',
  '\ud800',
  '\uFEFF',
  '\u202e',
  'é'.repeat(300),
  'x'.repeat(70_000),
  "'; drop table vim; --",
  '%00',
  '../../etc/passwd',
  '$(reboot)',
  '{"a":1}',
];
const cursor = (createdAt: string) => encodePageToken({ createdAt, id: randomUUID(), status: '' });
const hints: Record<string, fc.Arbitrary<string>> = {
  // id, vim_id, vim_ids, action_id, fault_id: the mesh's own, set once it runs.
  auth_url: fc.constantFrom(
    'http://127.0.0.1:1/v3',
    'https://[::1]:5000/v3',
    'ftp://x/',
    'http://a\u0000b/',
    'http://',
    'https://keystone.example:99999/v3',
    'http://169.254.169.254/',
  ),
  paths: fc.constantFrom(...updatablePaths, 'id', 'status', 'monitor.', '', 'credentials.password.password'),
  type: fc.constantFrom('compute.host.down', 'compute.host.nic.down'),
  status: fc.constantFrom('down', 'up', 'DOWN', 'sideways'),
  hostname: fc.constantFrom('compute-1', 'compute-2', 'Compute-1.'),
  host: fc.constantFrom('compute-1', 'compute-2'),
  hosts: fc.constantFrom('compute-1', 'compute-2'),
  name: fc.constantFrom('vim-a', 'vim-b', 'vim-fuzz'),
  page_token: fc.constantFrom(
    cursor(new Date().toISOString()),
    cursor('+099999-01-01T00:00:00.000Z'),
    cursor('0000-01-01T00:00:00.000Z'),
    cursor('-271821-04-20T00:00:00.000Z'),
    Buffer.from('{"createdAt":"2026-01-01T00:00:00.000Z","id":1}').toString('base64url'),
    Buffer.from('null').toString('base64url'),
    'AAAA',
    '!!!',
  ),
  service: fc.constantFrom('', 'vimmon.tacker.v1.VimService', 'nope'),
};

function stringArb(fieldName: string): fc.Arbitrary<string> {
  const hinted = hints[fieldName];
  return fc.oneof(
    ...(hinted ? [{ weight: 3, arbitrary: hinted }] : []),
    { weight: 1, arbitrary: fc.string({ maxLength: 24 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
    { weight: 3, arbitrary: fc.constantFrom(...nasty) },
    { weight: 1, arbitrary: fc.uuid() },
    ...(hinted ? [{ weight: 2, arbitrary: fc.tuple(hinted, fc.constantFrom(...nasty)).map(([a, b]) => a + b.slice(0, 64)) }] : []),
  );
}

const int32 = fc.oneof(fc.constantFrom(0, 1, -1, 10, 100, 1000, 2_147_483_647, -2_147_483_648), fc.integer());
const uint32 = fc.oneof(fc.constantFrom(0, 1, 10, 100, 1000, 1001, 5000, 5001, 100_000, 4_294_967_295), fc.nat({ max: 4_294_967_295 }));
const uint64 = fc.oneof(fc.constantFrom(0, 1, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
const int64 = fc.oneof(uint64, fc.maxSafeInteger());
const date = fc.oneof(
  fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }),
  fc.constantFrom(
    new Date(0),
    new Date('0001-01-01T00:00:00Z'),
    new Date('9999-12-31T23:59:59.999Z'),
    new Date(-8.64e15),
    new Date(8.64e15),
  ),
  fc.constant(undefined).map(() => new Date()),
);
const duration = fc.record({
  seconds: fc.oneof(
    fc.constantFrom(0, 1, 10, 3600, 86_400, 315_576_000_000, 315_576_000_001, -1, -315_576_000_001),
    fc.integer({ min: -1e12, max: 1e12 }),
  ),
  nanos: fc.oneof(fc.constantFrom(0, 1, 100_000_000, 999_999_999, 1_000_000_000, -1, -999_999_999), fc.integer()),
});

function scalarArb(scalar: ScalarType, fieldName: string): fc.Arbitrary<unknown> {
  switch (scalar) {
    case ScalarType.STRING:
      return stringArb(fieldName);
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64;
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 16 });
    default:
      return fc.double();
  }
}

function enumArb(values: number[]): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...values) },
    { weight: 1, arbitrary: fc.integer({ min: -3, max: 12 }) },
    { weight: 1, arbitrary: int32 },
  );
}

function singleArb(f: DescField, depth: number): fc.Arbitrary<unknown> {
  if (f.fieldKind === 'scalar' || (f.fieldKind === 'list' && f.listKind === 'scalar')) return scalarArb(f.scalar, f.name);
  if (f.fieldKind === 'enum' || (f.fieldKind === 'list' && f.listKind === 'enum')) return enumArb(f.enum.values.map((v) => v.number));
  if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) {
    switch (f.message.typeName) {
      case 'google.protobuf.Timestamp':
        return date;
      case 'google.protobuf.Duration':
        return duration;
      case 'google.protobuf.FieldMask':
        return fc.array(stringArb('paths'), { maxLength: 4 });
      default:
        return messageArb(f.message, depth + 1);
    }
  }
  return fc.constant(undefined);
}

const messageArbs = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** A ts-proto partial of the message: every field there or not, oneof members included (even two at once). */
function messageArb(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  if (depth > 4) return fc.constant({});
  const cached = messageArbs.get(`${desc.typeName}/${depth}`);
  if (cached) return cached;
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) {
    const one = singleArb(f, depth);
    fields[f.localName] = f.fieldKind === 'list' ? fc.array(one, { maxLength: f.name.endsWith('paths') ? 4 : 3 }) : one;
  }
  const arb = fc.record(fields, { requiredKeys: [] });
  messageArbs.set(`${desc.typeName}/${depth}`, arb);
  return arb;
}

// --- well-formed wire bytes with values ts-proto would never write ---------------------

type Write = (w: BinaryWriter) => void;
const utf8 = new TextEncoder();
const hostileBytes = fc.oneof(
  fc.constantFrom([0xff], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82], [0x00], [0x61, 0x00]).map((b) => new Uint8Array(b)),
  fc.uint8Array({ maxLength: 12 }),
);
const int64Values = fc.oneof(
  fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n), 0n, -1n),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);
const uint64Values = fc.oneof(
  fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 60n, 2n ** 64n - 1n, 0n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const timeWire = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(-62_135_596_801n, -62_135_596_800n, 253_402_300_799n, 253_402_300_800n, -99_999_999_999n, 315_576_000_001n, 60n, -1n),
      int64Values,
    ),
    fc.oneof(
      fc.constantFrom(0, 999_999_999, 1_000_000_000, 2_000_000_000, -1, -999_999_999),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    ),
  )
  .map(([seconds, nanos]) => new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos).finish());

function scalarWire(scalar: ScalarType, fieldName: string, tag: (wt: number) => number): fc.Arbitrary<Write> {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return fc
        .oneof(
          stringArb(fieldName).map((v) => utf8.encode(v)),
          hostileBytes,
        )
        .map((b) => (w: BinaryWriter) => void w.uint32(tag(2)).bytes(b));
    case ScalarType.INT64:
      return int64Values.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).int64(v));
    case ScalarType.SINT64:
      return int64Values.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).sint64(v));
    case ScalarType.SFIXED64:
      return int64Values.map((v) => (w: BinaryWriter) => void w.uint32(tag(1)).sfixed64(v));
    case ScalarType.UINT64:
      return uint64Values.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).uint64(v));
    case ScalarType.FIXED64:
      return uint64Values.map((v) => (w: BinaryWriter) => void w.uint32(tag(1)).fixed64(v));
    case ScalarType.UINT32:
      return uint32.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).uint32(v));
    case ScalarType.FIXED32:
      return uint32.map((v) => (w: BinaryWriter) => void w.uint32(tag(5)).fixed32(v));
    case ScalarType.SFIXED32:
      return int32.map((v) => (w: BinaryWriter) => void w.uint32(tag(5)).sfixed32(v));
    case ScalarType.SINT32:
      return int32.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).sint32(v));
    case ScalarType.BOOL:
      return fc.boolean().map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).bool(v));
    case ScalarType.DOUBLE:
      return fc.double().map((v) => (w: BinaryWriter) => void w.uint32(tag(1)).double(v));
    case ScalarType.FLOAT:
      return fc.float().map((v) => (w: BinaryWriter) => void w.uint32(tag(5)).float(v));
    default:
      return int32.map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).int32(v));
  }
}

/** One element of the field, as a writer. */
function elementWire(f: DescField, depth: number): fc.Arbitrary<Write> {
  const tag = (wt: number) => (f.number << 3) | wt;
  if (f.fieldKind === 'scalar' || (f.fieldKind === 'list' && f.listKind === 'scalar')) return scalarWire(f.scalar, f.name, tag);
  if (f.fieldKind === 'enum' || (f.fieldKind === 'list' && f.listKind === 'enum'))
    return enumArb(f.enum.values.map((v) => v.number)).map((v) => (w: BinaryWriter) => void w.uint32(tag(0)).int32(v));
  if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) {
    const name = f.message.typeName;
    const inner = name === 'google.protobuf.Timestamp' || name === 'google.protobuf.Duration' ? timeWire : wireArb(f.message, depth + 1);
    return inner.map((b) => (w: BinaryWriter) => void w.uint32(tag(2)).bytes(b));
  }
  return fc.constant(() => {});
}

/** Fields one by one in the field's wire form: `only` picks one field (the rest come from a seed). */
function fieldsWire(desc: DescMessage, depth: number, only?: DescField): fc.Arbitrary<Uint8Array> {
  const fields = only ? [only] : desc.fields;
  const parts = fields.map((f) => {
    const one = elementWire(f, depth);
    const some = f.fieldKind === 'list' ? fc.array(one, { minLength: 1, maxLength: 3 }) : one.map((w) => [w]);
    return only ? some : fc.option(some, { nil: undefined, freq: 2 });
  });
  return fc.tuple(...parts).map((chosen) => {
    const w = new BinaryWriter();
    for (const writes of chosen) for (const write of writes ?? []) write(w);
    return w.finish();
  });
}

const wireArbs = new Map<string, fc.Arbitrary<Uint8Array>>();

/** Well-formed bytes of the message with any value the wire can carry: invalid UTF-8, 64-bit extremes, any Timestamp. */
function wireArb(desc: DescMessage, depth = 0): fc.Arbitrary<Uint8Array> {
  if (depth > 3) return fc.constant(new Uint8Array());
  const key = `${desc.typeName}/${depth}`;
  let arb = wireArbs.get(key);
  if (!arb) wireArbs.set(key, (arb = fieldsWire(desc, depth)));
  return arb;
}

// --- raw calls ----------------------------------------------------------------------------

function rawClients() {
  const clients = new Map<string, grpc.Client>();
  const clientFor = (address: string) => {
    let c = clients.get(address);
    if (!c) clients.set(address, (c = new grpc.Client(address, grpc.credentials.createInsecure())));
    return c;
  };
  const call = (method: Method, body: Uint8Array): Promise<Outcome> => {
    const client = clientFor(method.address());
    const bytes = Buffer.from(body);
    if (!method.serverStream) {
      return new Promise((resolve) => {
        client.makeUnaryRequest(
          method.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          { deadline: Date.now() + 10_000 },
          (err) => resolve(err ? { code: err.code as number as Status, details: err.details } : { code: 'ok', details: '' }),
        );
      });
    }
    // A stream that is fine stays open: cancelled after a moment, it counts as ok.
    return new Promise((resolve) => {
      const stream = client.makeServerStreamRequest(
        method.path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
      );
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        stream.cancel();
        resolve({ code: 'ok', details: '' });
      }, 30);
      stream.on('data', () => {});
      stream.on('error', (err: grpc.ServiceError) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(
          err.code === grpc.status.CANCELLED ? { code: 'ok', details: '' } : { code: err.code as number as Status, details: err.details },
        );
      });
      stream.on('status', (s: grpc.StatusObject) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(s.code === grpc.status.OK ? { code: 'ok', details: '' } : { code: s.code as number as Status, details: s.details });
      });
    });
  };
  return {
    call,
    close: () => {
      for (const c of clients.values()) c.close();
    },
  };
}

/** The path names fields (or oneofs) of the request, element indexes only on repeated fields. */
function pathResolves(input: DescMessage, details: string): boolean {
  const m = /^([a-z][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z][a-z0-9_]*(?:\[\d+\])?)*): /.exec(details);
  if (!m) return false;
  let desc: DescMessage | undefined = input;
  for (const segment of m[1]!.split('.')) {
    if (!desc) return false;
    const [, name, index] = /^([a-z0-9_]+)(\[\d+\])?$/.exec(segment)!;
    const field: DescField | undefined = desc.fields.find((f) => f.name === name);
    if (!field) return desc.oneofs.some((o) => o.name === name);
    if (index && field.fieldKind !== 'list') return false;
    desc = field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message') ? field.message : undefined;
  }
  return true;
}

/** A request each method accepts: random fields laid over it reach past the first check. */
function seedOf(method: Method): Record<string, unknown> {
  const policy = { interval: { seconds: 60, nanos: 0 }, timeout: { seconds: 1, nanos: 0 }, count: 1, unreachableAfter: 1 };
  const [vimId, otherVimId] = known.vimIds;
  const seeds: Record<string, Record<string, unknown>> = {
    'VimService/registerVim': {
      name: `fuzz-${randomUUID()}`,
      description: 'a VIM',
      type: 1,
      authUrl: 'http://127.0.0.1:1/v3',
      project: 'admin',
      credentials: { password: { username: 'admin', password: 'secret', userDomainName: 'Default', projectDomainName: 'Default' } },
      monitor: policy,
    },
    'VimService/getVim': { id: vimId },
    'VimService/listVims': { pageSize: 10 },
    'VimService/updateVim': {
      vim: { id: otherVimId, name: 'fuzz-b', description: 'changed', monitor: policy },
      updateMask: ['description'],
    },
    'VimService/deregisterVim': { id: randomUUID() },
    'VimService/watchVims': { sendInitial: true },
    'VimService/listVimAudit': { vimId },
    'VimService/listVimEvents': { vimId },
    'ExecutorService/startAction': {
      actionId: randomUUID(),
      vimId: randomUUID(),
      authUrl: 'http://127.0.0.1:1/v3',
      monitor: policy,
      knownStatus: 1,
    },
    'ExecutorService/stopAction': { actionId: randomUUID() },
    'ExecutorService/listActions': { pageSize: 10 },
    'VimMonitorAction2Conductor/updateVim': { vimId, actionId: known.actionIds[0], status: 2 },
    'InspectorService/reportEvents': {
      events: [
        { time: new Date(), type: 'compute.host.down', hostname: `compute-${randomUUID().slice(0, 4)}`, status: 'down', monitor: 'm' },
      ],
    },
    'InspectorService/subscribeAlarms': { liveOnly: true },
    'InspectorService/listAlarms': { pageSize: 10 },
    'InspectorService/listFaultProfiles': { limit: 5 },
    'InspectorService/listHostsDown': { pageSize: 10 },
    'InspectorService/listAffectedInstances': { host: 'compute-1', pageSize: 10 },
    'InspectorService/setHostMaintenance': { host: `compute-${randomUUID().slice(0, 4)}`, state: 2 },
    'InspectorService/listHostsInMaintenance': { pageSize: 10 },
  };
  return seeds[`${method.service.name}/${method.key}`] ?? {};
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof Uint8Array);

/** The seed with one field (at some depth) taken from the random partial. */
function overlay(seed: Record<string, unknown>, random: Record<string, unknown>, choice: number): Record<string, unknown> {
  const keys = Object.keys(random);
  if (keys.length === 0) return seed;
  const key = keys[choice % keys.length]!;
  const [a, b] = [seed[key], random[key]];
  const value = isPlainObject(a) && isPlainObject(b) && choice % 3 !== 0 ? overlay(a, b, Math.floor(choice / 7)) : b;
  return { ...seed, [key]: value };
}

/** A logger that keeps the error lines (what the inspector could not do in the background, too). */
const errorsInto = (lines: string[]) => createLogger({ level: 'error', write: (line) => lines.push(line.slice(0, 600)) });

/** Every alarm raised so far stored, none refused by the database. */
async function alarmsAllStored(address: string): Promise<string | undefined> {
  const channel = createChannel(address);
  try {
    const client = createClient(InspectorServiceDefinition, channel);
    for (let i = 0; i < 50; i++) {
      const status = await client.getStatus({});
      if (status.alarmsQuarantined > 0) return `${status.alarmsQuarantined} alarms quarantined`;
      if (status.alarmsPendingStore === 0) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
    return 'alarms still pending after 5 s';
  } finally {
    channel.close();
  }
}

const bad = new Set<Status>([Status.INTERNAL, Status.UNKNOWN, Status.UNAVAILABLE, Status.DATA_LOSS]);

test('hostile requests to every role: no INTERNAL, INVALID_ARGUMENT names a field, nothing half-stored, roles still healthy', async (t) => {
  const started = performance.now();
  const mesh = await startMesh(t, { reconcileIntervalMs: 1_000 });
  const inspectorErrors: string[] = [];
  const inspector = await startInspector({
    logger: errorsInto(inspectorErrors),
    orm: await mesh.db.open(),
    databaseUrl: mesh.db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    amqpUrl: undefined,
    resyncIntervalMs: 60_000,
    novaShutdownGraceMs: 100,
  });
  t.teardown(() => inspector.stop());

  // Real VIMs for the ids to hit, written as the server would (not through RegisterVim: it is under test).
  for (const name of ['fuzz-a', 'fuzz-b']) {
    const [id, actionId] = [randomUUID(), randomUUID()];
    await mesh.query(
      `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                        report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, action_started,
                        created_at, updated_at, status_changed_at)
       values (?, ?, 'openstack', 'http://127.0.0.1:1/v3', 'tcp', 60000, 1000, 1, 1, 60000, 180000, 'PENDING', ?, now(), true, now(), now(), now())`,
      [id, name, actionId],
    );
    known.vimIds.push(id);
    known.actionIds.push(actionId);
  }
  const inspectorClient = createClient(InspectorServiceDefinition, createChannel(inspector.address));
  const reported = await inspectorClient.reportEvents({
    events: [{ time: new Date(), type: 'compute.host.down', hostname: 'compute-1', status: 'down' }],
  });
  hints.id = hints.vim_id = hints.vim_ids = fc.constantFrom(...known.vimIds);
  hints.action_id = fc.constantFrom(...known.actionIds);
  hints.fault_id = fc.constantFrom(...reported.faultIds);

  const services: Array<[TsProtoServiceDefinition, () => string]> = [
    [VimServiceDefinition, () => mesh.servers[0]!.address],
    [ExecutorServiceDefinition, () => mesh.executors[0]!.address],
    [VimMonitorAction2ConductorDefinition, () => mesh.conductors[0]!.address],
    [InspectorServiceDefinition, () => inspector.address],
  ];
  const methods: Method[] = [];
  for (const [service, address] of services) {
    const desc = registry.getService(service.fullName)!;
    for (const [key, m] of Object.entries(service.methods)) {
      if (m.requestStream) continue;
      const path = `/${service.fullName}/${m.name}`;
      const input = desc.methods.find((d) => d.name === m.name)!.input;
      methods.push({ service, key, path, input, serverStream: m.responseStream, address, [fc.toStringMethod]: () => path } as Method);
    }
  }
  t.true(methods.length >= 18, `${methods.length} methods`);

  const raw = rawClients();
  t.teardown(() => raw.close());
  const snapshot = async () =>
    JSON.stringify([
      await mesh.query(
        `select id, name, description, type, auth_url, project, credentials_kind, credentials_sealed, probe, interval_ms, timeout_ms, probe_count,
                unreachable_after, report_interval_ms, stale_after_ms, is_default, deleted_at, owner_project from vim order by id`,
      ),
      await mesh.query(`select count(*)::int as n from vim_audit`).catch(() => []),
    ]);
  const eventsReceived = async () => (await inspectorClient.getStatus({})).eventsReceived;
  const executorClient = mesh.executorClient(0);

  const seen = new Map<string, Map<string, number>>();
  const failures: string[] = [];
  const record = (method: Method, outcome: Outcome) => {
    const byCode = seen.get(method.key) ?? new Map<string, number>();
    seen.set(method.key, byCode);
    const code = outcome.code === 'ok' ? 'OK' : Status[outcome.code];
    byCode.set(code, (byCode.get(code) ?? 0) + 1);
  };

  /** Sends one request and checks what must hold; returns a failure or undefined. */
  const exercise = async (method: Method, body: Uint8Array, kind: 'partial' | 'wire' | 'raw'): Promise<string | undefined> => {
    const requestType = method.service.methods[method.key]!.requestType;
    // INTERNAL is excused only for bytes that are not a message at all. A value out of
    // ts-proto's range (it throws too) is no excuse.
    let decoded: unknown;
    let decodable = true;
    try {
      decoded = requestType.decode(body);
    } catch (err) {
      decodable = /(MAX|MIN)_SAFE_INTEGER/.test((err as Error).message);
    }
    const mutating = method.key === 'registerVim' || method.key === 'updateVim' || method.key === 'deregisterVim';
    const before = mutating ? await snapshot() : undefined;
    const eventsBefore = method.key === 'reportEvents' ? await eventsReceived() : undefined;
    const outcome = await raw.call(method, body);
    record(method, outcome);
    const where = `${method.path} ${kind} ${Buffer.from(body).toString('hex').slice(0, 400)}`;
    if (outcome.code === 'ok') {
      // The known VIMs stay for the requests after this one.
      if (method.key === 'deregisterVim') await mesh.query(`update vim set deleted_at = null where id in (?, ?)`, known.vimIds);
      return undefined;
    }
    if (bad.has(outcome.code) && !(outcome.code === Status.INTERNAL && !decodable))
      return `${Status[outcome.code]} ${outcome.details} ← ${where}`;
    if (
      outcome.code === Status.INVALID_ARGUMENT &&
      !pathResolves(method.input, outcome.details) &&
      !(outcome.details.startsWith('request: cannot be decoded') && !decodable)
    ) {
      return `INVALID_ARGUMENT without a field path: ${JSON.stringify(outcome.details.slice(0, 200))} ← ${where}`;
    }
    if (before !== undefined && (await snapshot()) !== before)
      return `${Status[outcome.code]} ${outcome.details} but the VIM rows changed ← ${where}`;
    if (eventsBefore !== undefined && (await eventsReceived()) !== eventsBefore)
      return `${Status[outcome.code]} ${outcome.details} but events were taken ← ${where}`;
    if (method.key === 'startAction' && decoded) {
      const actionId = (decoded as { actionId: string }).actionId;
      const listed = await executorClient.listActions({}).catch(() => ({ actions: [] }));
      if (listed.actions.some((a) => a.actionId === actionId && !known.actionIds.includes(actionId)))
        return `StartAction refused but ${actionId} runs ← ${where}`;
    }
    return undefined;
  };

  const methodArb = fc.constantFrom(...methods);
  const partialCase = methodArb.chain((method) =>
    fc
      .tuple(messageArb(method.input), fc.oneof({ weight: 1, arbitrary: fc.constant(-1) }, { weight: 3, arbitrary: fc.nat() }))
      .map(([random, choice]) => {
        const partial = choice < 0 ? random : overlay(seedOf(method), random, choice);
        const type = method.service.methods[method.key]!.requestType;
        let body: Uint8Array | undefined;
        try {
          body = type.encode(type.fromPartial!(partial as never)).finish();
        } catch {
          body = undefined; // a value ts-proto itself will not write (e.g. a NaN where an integer goes)
        }
        return { method, body };
      }),
  );
  await fc.assert(
    fc.asyncProperty(partialCase, async ({ method, body }) => {
      if (!body) return;
      const failure = await exercise(method, body, 'partial').catch((err: Error) => `${err.stack} ← ${method.path}`);
      if (failure) failures.push(failure);
    }),
    { numRuns: 1200 },
  );

  // Well-formed bytes: a whole message, or a seed request with one field replaced (the last occurrence wins).
  const wireCase = methodArb.chain((method) =>
    fc
      .oneof(
        wireArb(method.input),
        fc.constantFrom(...method.input.fields, undefined).chain((field) =>
          (field ? fieldsWire(method.input, 0, field) : fc.constant(new Uint8Array())).map((field) => {
            const type = method.service.methods[method.key]!.requestType;
            return Buffer.concat([type.encode(type.fromPartial!(seedOf(method) as never)).finish(), field]);
          }),
        ),
      )
      .map((body) => ({ method, body: new Uint8Array(body) })),
  );
  await fc.assert(
    fc.asyncProperty(wireCase, async ({ method, body }) => {
      const failure = await exercise(method, body, 'wire').catch((err: Error) => `${err.stack} ← ${method.path}`);
      if (failure) failures.push(failure);
    }),
    { numRuns: 1200 },
  );

  // Raw bytes: random ones, and valid encodings with bytes changed, cut or inserted.
  const mutated = partialCase.chain(({ method, body }) =>
    fc
      .array(fc.tuple(fc.constantFrom('set', 'cut', 'insert'), fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })
      .map((edits) => {
        let b = Buffer.from(body ?? []);
        for (const [op, at, value] of edits) {
          const i = b.length ? at % (b.length + (op === 'insert' ? 1 : 0)) : 0;
          if (op === 'set' && b.length) b[i] = value;
          else if (op === 'cut') b = b.subarray(0, i);
          else if (op === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([value]), b.subarray(i)]);
        }
        return { method, body: new Uint8Array(b) };
      }),
  );
  const rawCase = fc.oneof(
    mutated,
    fc.tuple(methodArb, fc.uint8Array({ maxLength: 96 })).map(([method, body]) => ({ method, body })),
  );
  await fc.assert(
    fc.asyncProperty(rawCase, async ({ method, body }) => {
      const failure = await exercise(method, body, 'raw').catch((err: Error) => `${err.stack} ← ${method.path}`);
      if (failure) failures.push(failure);
    }),
    { numRuns: 500 },
  );

  for (const [key, codes] of seen) t.log(`${key}: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
  t.deepEqual([...new Set(failures)].slice(0, 20), [], `${failures.length} failures`);

  // Everyone still answers.
  for (const address of [mesh.servers[0]!.address, mesh.executors[0]!.address, mesh.conductors[0]!.address, inspector.address]) {
    const channel = createChannel(address);
    const health = createClient(HealthDefinition, channel);
    t.is((await health.check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING, address);
    channel.close();
  }
  t.is((await mesh.vims().listVims({})).vims.length >= 2, true);
  t.is(await alarmsAllStored(inspector.address), undefined);
  t.deepEqual(inspectorErrors.slice(0, 10), [], 'the inspector logged no error');
  t.log(`${Math.round(performance.now() - started)} ms`);
});

test("Doctor's PUT /events: arbitrary JSON and bytes get 202/400/404/405/413, never 500; the inspector still answers", async (t) => {
  const db = await createTestDatabase(t);
  const inspectorErrors: string[] = [];
  const inspector = await startInspector({
    logger: errorsInto(inspectorErrors),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    amqpUrl: undefined,
    resyncIntervalMs: 60_000,
    novaShutdownGraceMs: 100,
  });
  t.teardown(() => inspector.stop());
  const allowed = new Set([202, 400, 404, 405, 413]);

  const timeArb = fc.oneof(
    date.map((d) => d.toISOString()),
    date.map((d) => d.toISOString().replace(/\.\d+Z$|Z$/, '')),
    fc.tuple(date, fc.integer({ min: 0, max: 999_999 })).map(([d, us]) => `${d.toISOString().slice(0, 19)}.${String(us).padStart(6, '0')}`),
    fc.constantFrom(
      '0000-01-01T00:00:00',
      '99999-01-01T00:00:00',
      '2026-13-45T00:00:00',
      '2026-02-29T00:00:00',
      'yesterday',
      '',
      '2026-11-22T10:00:00+99:99',
    ),
    fc.string(),
    fc.integer(),
    fc.constant(null),
  );
  const text = fc.oneof(
    fc.string({ maxLength: 16 }),
    fc.string({ unit: 'binary', maxLength: 16 }),
    fc.constantFrom(...nasty.slice(0, -7)),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
  );
  const event = fc.record(
    {
      time: timeArb,
      type: fc.oneof(fc.constant('compute.host.down'), text),
      details: fc.oneof(
        fc.record(
          {
            hostname: fc.oneof(fc.constantFrom('compute-1', 'compute-2'), text),
            status: fc.oneof(fc.constantFrom('down', 'up'), text),
            monitor: text,
            monitor_event_id: text,
            severity: text,
            cause: text,
          },
          { requiredKeys: [] },
        ),
        fc.jsonValue(),
      ),
      source: text,
    },
    { requiredKeys: [] },
  );
  const body = fc.oneof(
    { weight: 4, arbitrary: fc.array(event, { maxLength: 3 }).map((e) => Buffer.from(JSON.stringify(e))) },
    { weight: 2, arbitrary: event.map((e) => Buffer.from(JSON.stringify(e))) },
    { weight: 2, arbitrary: fc.json().map((j) => Buffer.from(j)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  );
  const request = fc.record({
    body,
    method: fc.oneof(
      { weight: 8, arbitrary: fc.constant('PUT') },
      { weight: 1, arbitrary: fc.constantFrom('POST', 'GET', 'DELETE', 'PATCH') },
    ),
    path: fc.oneof(
      { weight: 8, arbitrary: fc.constant('/events') },
      { weight: 1, arbitrary: fc.constantFrom('/', '/events/', '/v2/events', '/events?x=1', '/%00') },
    ),
  });
  const unexpected: string[] = [];
  await fc.assert(
    fc.asyncProperty(request, async ({ body, method, path }) => {
      const r = await fetch(`http://${inspector.httpAddress}${path}`, { method, body: method === 'GET' ? undefined : body });
      const reply = await r.text();
      if (!allowed.has(r.status)) unexpected.push(`${r.status} ${reply} ← ${method} ${path} ${body.toString('hex').slice(0, 300)}`);
      if (r.status === 400 && !/^(body|details|type|time|source|\[\d+\])/.test((JSON.parse(reply) as { error: string }).error)) {
        unexpected.push(`400 without a field: ${reply}`);
      }
    }),
    { numRuns: 800 },
  );
  t.deepEqual(unexpected.slice(0, 20), []);
  const tooLarge = await fetch(`http://${inspector.httpAddress}/events`, { method: 'PUT', body: 'x'.repeat(4 * 1024 * 1024 + 1) });
  t.is(tooLarge.status, 413);
  const good = await fetch(`http://${inspector.httpAddress}/events`, {
    method: 'PUT',
    body: JSON.stringify({
      time: '2026-11-22T10:00:00.123456',
      type: 'compute.host.down',
      details: { hostname: `h-${randomUUID()}`, status: 'down' },
    }),
  });
  t.is(good.status, 202);
  t.is(await alarmsAllStored(inspector.address), undefined);
  t.deepEqual(inspectorErrors.slice(0, 10), [], 'the inspector logged no error');
  const channel = createChannel(inspector.address);
  t.teardown(() => channel.close());
  t.is((await createClient(HealthDefinition, channel).check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
});
