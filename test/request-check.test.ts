// The request check at the edge: the wire walker on hand-made bytes, the
// guarded definitions, and real roles answering INVALID_ARGUMENT naming the
// field where they used to answer INTERNAL or hand the value to PostgreSQL.
// Also the safety net behind it (a value PostgreSQL refuses) and the edge
// checks outside gRPC (Doctor times, page tokens).
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import fc from 'fast-check';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { ServerError, Status } from 'nice-grpc';
import { InvalidArgumentError, isDatabaseUnavailable, isUnstorableValue } from '../common/errors.js';
import { toServerError } from '../common/grpc-server.js';
import { createLogger } from '../common/logger.js';
import { descriptorRegistry } from '../common/descriptors.js';
import { checkRequestBytes, guardDefinition, rejected, rejectionOf, requestLimits } from '../common/request-check.js';
import { startConductor } from '../conductor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import {
  UpdateVimRequest as ReportRequest,
  UpdateVimResponse as ReportResponse,
  VimMonitorAction2ConductorDefinition,
} from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition, ListActionsRequest } from '../gen/vimmon/executor/v1/executor_service.js';
import {
  AlarmFilter,
  FaultEvent,
  GetStatusRequest,
  GetStatusResponse,
  InspectorServiceDefinition,
  ListAlarmsRequest,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { UpdateVimRequest, VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startInspector } from '../inspector/main.js';
import { decodePageToken, encodePageToken } from '../server/vim-input.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';

const types = {
  report: 'vimmon.conductor.v1.UpdateVimRequest',
  reportEvents: 'vimmon.inspector.v1.ReportEventsRequest',
  listAlarms: 'vimmon.inspector.v1.ListAlarmsRequest',
  updateVim: 'vimmon.tacker.v1.UpdateVimRequest',
  listActions: 'vimmon.executor.v1.ListActionsRequest',
};

const bytesOf = (w: BinaryWriter) => w.finish();
/** A Timestamp or Duration with whatever seconds and nanos, as ts-proto could not write them. */
const timeBytes = (seconds: bigint, nanos: number) => bytesOf(new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos));
/** A FaultEvent with a raw time, and the rest from ts-proto. */
const eventWithTime = (time: Uint8Array) => {
  const w = new BinaryWriter().uint32(10).bytes(time);
  const rest = FaultEvent.encode(FaultEvent.fromPartial({ type: 'compute.host.down', hostname: 'h', status: 'down' })).finish();
  return Buffer.concat([w.finish(), rest]);
};
const reportEvents = (...events: Uint8Array[]) => {
  const w = new BinaryWriter();
  for (const e of events) w.uint32(10).bytes(e);
  return w.finish();
};
const goodEvent = () =>
  FaultEvent.encode(FaultEvent.fromPartial({ time: new Date(), type: 'compute.host.down', hostname: 'h', status: 'down' })).finish();

function violation(typeName: string, bytes: Uint8Array): string | undefined {
  return checkRequestBytes(typeName, bytes)?.message;
}

test('strings: NUL, invalid UTF-8, longer than 64 KiB; valid Unicode passes', (t) => {
  const report = (vimId: string) =>
    ReportRequest.encode({ vimId, status: VimStatus.VIM_STATUS_REACHABLE, actionId: randomUUID(), statusReason: 0 }).finish();
  t.is(violation(types.report, report(randomUUID())), undefined);
  t.is(violation(types.report, report('ünïcødé ✓ 𝄞 日本')), undefined);
  t.regex(violation(types.report, report('a\u0000b'))!, /^vim_id: contains U\+0000/);
  t.regex(violation(types.report, report('x'.repeat(requestLimits.maxStringBytes + 1)))!, /^vim_id: longer than 65536 bytes/);
  t.is(violation(types.report, report('x'.repeat(requestLimits.maxStringBytes))), undefined);
  // Invalid UTF-8 by hand: a lone continuation byte, an overlong '/', a surrogate, a truncated sequence.
  for (const bad of [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82]]) {
    const bytes = bytesOf(new BinaryWriter().uint32(26).bytes(new Uint8Array(bad)));
    t.regex(violation(types.report, bytes)!, /^action_id: not valid UTF-8/, JSON.stringify(bad));
  }
});

test('paths: repeated elements, nesting, FieldMask paths, packed and unpacked repeated fields', (t) => {
  const nulHost = FaultEvent.encode(FaultEvent.fromPartial({ type: 'compute.host.down', hostname: 'a\u0000', status: 'down' })).finish();
  t.regex(violation(types.reportEvents, reportEvents(goodEvent(), goodEvent(), nulHost))!, /^events\[2\]\.hostname: /);
  const invalidHost = bytesOf(new BinaryWriter().uint32(26).bytes(new Uint8Array([0xff, 0x41])));
  t.regex(violation(types.reportEvents, reportEvents(invalidHost))!, /^events\[0\]\.hostname: not valid UTF-8/);

  const hosts = ListAlarmsRequest.encode({
    filter: AlarmFilter.fromPartial({ hosts: ['a', 'b', 'c', 'd\u0000'] }),
    afterAlarmId: 0,
    pageSize: 0,
  }).finish();
  t.regex(violation(types.listAlarms, hosts)!, /^filter\.hosts\[3\]: /);

  const mask = UpdateVimRequest.encode({ vim: undefined, updateMask: ['name', 'desc\u0000ription'] }).finish();
  t.regex(violation(types.updateVim, mask)!, /^update_mask\.paths\[1\]: /);

  const vimIds = (n: number) => {
    const w = new BinaryWriter();
    for (let i = 0; i < n; i++) w.uint32(10).string('');
    return w.finish();
  };
  t.is(violation(types.listActions, vimIds(requestLimits.maxRepeated)), undefined);
  t.regex(violation(types.listActions, vimIds(requestLimits.maxRepeated + 1))!, /^vim_ids: at most 100000 elements/);
  const packedTypes = (n: number) => {
    const inner = new BinaryWriter().uint32(34).fork();
    for (let i = 0; i < n; i++) inner.int32(1);
    return bytesOf(new BinaryWriter().uint32(10).bytes(inner.join().finish()));
  };
  t.is(violation(types.listAlarms, packedTypes(10)), undefined);
  t.regex(violation(types.listAlarms, packedTypes(requestLimits.maxRepeated + 1))!, /^filter\.types: at most 100000/);
  // A real client's ListActions still passes.
  t.is(
    violation(
      types.listActions,
      ListActionsRequest.encode({ vimIds: [randomUUID(), randomUUID()], pageSize: 10, pageToken: 'abc' }).finish(),
    ),
    undefined,
  );
});

test('64-bit integers beyond 2^53 − 1, which ts-proto cannot decode', (t) => {
  const list = (id: bigint) => bytesOf(new BinaryWriter().uint32(16).uint64(id));
  t.is(violation(types.listAlarms, list(2n ** 53n - 1n)), undefined);
  t.regex(violation(types.listAlarms, list(2n ** 53n))!, /^after_alarm_id: out of range: at most 9007199254740991/);
  t.regex(violation(types.listAlarms, list(2n ** 64n - 1n))!, /^after_alarm_id: /);
  t.throws(() => ListAlarmsRequest.decode(list(2n ** 60n)), { message: /MAX_SAFE_INTEGER/ }, 'what the check saves the server from');
});

test('Timestamp and Duration bounds name the field itself', (t) => {
  const at = (seconds: bigint, nanos: number) =>
    violation(types.reportEvents, reportEvents(goodEvent(), eventWithTime(timeBytes(seconds, nanos))));
  t.is(at(1_700_000_000n, 999_999_999), undefined);
  t.is(at(-62_135_596_800n, 0), undefined, '0001-01-01T00:00:00Z');
  t.is(at(253_402_300_799n, 999_999_999), undefined, '9999-12-31T23:59:59.999999999Z');
  t.regex(at(-62_135_596_801n, 0)!, /^events\[1\]\.time: out of range/);
  t.regex(at(253_402_300_800n, 0)!, /^events\[1\]\.time: out of range/);
  t.regex(at(-99_999_999_999n, 0)!, /^events\[1\]\.time: /);
  t.regex(at(0n, 2_000_000_000)!, /^events\[1\]\.time: nanos out of range/);
  t.regex(at(0n, -1)!, /^events\[1\]\.time: nanos/);
  t.regex(at(2n ** 62n, 0)!, /^events\[1\]\.time: /);

  const interval = (seconds: bigint, nanos: number) => {
    const monitor = bytesOf(new BinaryWriter().uint32(18).bytes(timeBytes(seconds, nanos)));
    const vim = bytesOf(new BinaryWriter().uint32(10).string(randomUUID()).uint32(66).bytes(monitor));
    return violation(types.updateVim, bytesOf(new BinaryWriter().uint32(10).bytes(vim)));
  };
  t.is(interval(10n, 500), undefined);
  t.is(interval(-315_576_000_000n, -999_999_999), undefined);
  t.is(interval(-1n, -5), undefined);
  t.is(interval(0n, -5), undefined);
  t.regex(interval(315_576_000_001n, 0)!, /^vim\.monitor\.interval: out of range/);
  t.regex(interval(1n, 1_000_000_000)!, /^vim\.monitor\.interval: nanos/);
  t.regex(interval(1n, -1)!, /^vim\.monitor\.interval: seconds and nanos must have the same sign/);
  t.regex(interval(-1n, 1)!, /^vim\.monitor\.interval: /);
});

test('bytes that do not parse pass through; unknown fields and wire-type mismatches are skipped as ts-proto skips them', (t) => {
  const good = ReportRequest.encode({
    vimId: randomUUID(),
    status: VimStatus.VIM_STATUS_REACHABLE,
    actionId: randomUUID(),
    statusReason: 0,
  }).finish();
  t.is(checkRequestBytes(types.report, good.subarray(0, good.length - 3)), undefined, 'truncated');
  t.is(checkRequestBytes(types.report, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), undefined, 'garbage');
  const unknownNul = Buffer.concat([good, bytesOf(new BinaryWriter().uint32((99 << 3) | 2).string('\u0000'))]);
  t.is(checkRequestBytes(types.report, unknownNul), undefined, 'unknown field 99');
  const varintVimId = Buffer.concat([good, bytesOf(new BinaryWriter().uint32(8).uint64(2n ** 63n))]);
  t.is(checkRequestBytes(types.report, varintVimId), undefined, 'vim_id as a varint: ts-proto skips it');
  t.is(ReportRequest.decode(varintVimId).vimId, ReportRequest.decode(good).vimId);
  // ts-proto stops at a zero tag; so does the walk, and what follows is never decoded.
  const afterZero = Buffer.concat([good, Buffer.from([0]), bytesOf(new BinaryWriter().uint32(10).string('\u0000'))]);
  t.is(checkRequestBytes(types.report, afterZero), undefined);
  t.is(ReportRequest.decode(afterZero).vimId, ReportRequest.decode(good).vimId);
  t.throws(() => checkRequestBytes('vimmon.nope.Nothing', good), { message: /not in gen\/descriptor\.binpb/ });
});

test('guardDefinition: decode returns a marker instead of throwing, keeps every other property', (t) => {
  const guarded = guardDefinition(InspectorServiceDefinition);
  t.is(guarded.fullName, InspectorServiceDefinition.fullName);
  t.is(guarded.methods.subscribeAlarms.responseType, InspectorServiceDefinition.methods.subscribeAlarms.responseType);
  t.is(guarded.methods.reportEvents.responseType, InspectorServiceDefinition.methods.reportEvents.responseType);
  t.is(guarded.methods.reportEvents.requestType.encode, InspectorServiceDefinition.methods.reportEvents.requestType.encode);
  t.is(guarded.methods.reportEvents.requestType.fromPartial, InspectorServiceDefinition.methods.reportEvents.requestType.fromPartial);
  t.is(guarded.methods.reportEvents.name, 'ReportEvents');
  t.deepEqual(Object.keys(guarded.methods), Object.keys(InspectorServiceDefinition.methods));

  const decode = guarded.methods.listAlarms.requestType.decode as (b: Uint8Array) => unknown;
  const marker = decode(bytesOf(new BinaryWriter().uint32(16).uint64(2n ** 60n)));
  t.true(rejectionOf(marker) instanceof InvalidArgumentError);
  t.is(rejectionOf(marker)!.field, 'after_alarm_id');
  t.true(rejected in (marker as object));
  const ok = decode(ListAlarmsRequest.encode({ filter: undefined, afterAlarmId: 7, pageSize: 3 }).finish());
  t.is(rejectionOf(ok), undefined);
  t.like(ok, { afterAlarmId: 7, pageSize: 3 });
  t.is(rejectionOf(undefined), undefined);
  t.is(rejectionOf('x'), undefined);
  t.throws(() => guardDefinition({ ...VimServiceDefinition, fullName: 'vimmon.nope.v1.Nothing' }), {
    message: /not in gen\/descriptor\.binpb/,
  });
});

test('micro-benchmark: the check of an UpdateVim report costs about a microsecond', (t) => {
  const bytes = ReportRequest.encode({
    vimId: randomUUID(),
    status: VimStatus.VIM_STATUS_REACHABLE,
    actionId: randomUUID(),
    statusReason: 0,
  }).finish();
  const run = (n: number) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (checkRequestBytes(types.report, bytes)) throw new Error('rejected');
    return Number(process.hrtime.bigint() - start) / n / 1000;
  };
  run(20_000); // warm-up
  const perCheckUs = Math.min(run(100_000), run(100_000));
  const decodeStart = process.hrtime.bigint();
  for (let i = 0; i < 100_000; i++) ReportRequest.decode(bytes);
  const decodeUs = Number(process.hrtime.bigint() - decodeStart) / 100_000 / 1000;
  t.log(`check ${perCheckUs.toFixed(2)} µs per UpdateVim request (${bytes.length} bytes); ts-proto decode ${decodeUs.toFixed(2)} µs`);
  t.true(perCheckUs < 50, `${perCheckUs} µs`);
});

test('a value PostgreSQL refuses becomes INVALID_ARGUMENT, never UNAVAILABLE or INTERNAL', async (t) => {
  const logger = createLogger({ level: 'silent' });
  const db = await createTestDatabase(t);
  const execute = (sql: string, params: unknown[]) => db.orm.em.fork().getConnection().execute(sql, params);
  const refused = async (sql: string, params: unknown[]) => {
    try {
      await execute(sql, params);
    } catch (err) {
      return err;
    }
    throw new Error(`${sql} passed`);
  };
  // A NUL in SQL text the ORM inlined a value into (08P01), a NUL as a bound parameter (22021),
  // bad text for a type (22P02), a timestamp beyond PostgreSQL's range (22008), a number out of range (22003).
  const errors = [
    await refused('select ?::text as x', ['a\u0000b']),
    await (async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query('select $1::text as x', ['a\u0000b']);
      } catch (err) {
        return err;
      } finally {
        await client.end();
      }
      throw new Error('a bound NUL passed');
    })(),
    await refused('select ?::int as x', ['abc']),
    await refused('select ?::timestamptz as x', ['294277-01-01T00:00:00Z']),
    await refused('select ?::int as x', ['99999999999']),
    { cause: { code: '23514', message: 'new row violates check constraint' } },
  ];
  for (const err of errors) {
    t.true(isUnstorableValue(err), String(err));
    t.false(isDatabaseUnavailable(err), String(err));
    const mapped = toServerError(err, logger, '/x/Y');
    t.true(mapped instanceof ServerError);
    t.is(mapped.code, Status.INVALID_ARGUMENT, String(err));
    t.is(mapped.details, 'request: a value the database cannot store');
  }
  t.true(isDatabaseUnavailable({ code: '08006' }), 'a broken connection is still UNAVAILABLE');
  t.true(isDatabaseUnavailable({ code: 'ECONNREFUSED' }));
  t.is(toServerError({ code: '42P01' }, logger, '/x/Y').code, Status.INTERNAL, 'our own SQL errors stay INTERNAL');
});

test('page tokens: a cursor time that is not a real date in years 0001-9999 is malformed', (t) => {
  const id = randomUUID();
  const token = (createdAt: string) => encodePageToken({ createdAt, id, status: '' });
  const good = new Date().toISOString();
  t.deepEqual(decodePageToken(token(good), undefined), { createdAt: good, id, status: '' });
  t.truthy(decodePageToken(token('0001-01-01T00:00:00.000Z'), undefined));
  t.truthy(decodePageToken(token('9999-12-31T23:59:59.999Z'), undefined));
  for (const bad of [
    '0000-01-01T00:00:00.000Z',
    '+099999-01-01T00:00:00.000Z',
    '-000001-01-01T00:00:00.000Z',
    '2026-02-30T00:00:00.000Z',
    '2026-13-01T00:00:00.000Z',
    '99999',
    '2026-01-01',
    'Tue, 01 Jan 2026 00:00:00 GMT',
  ]) {
    t.throws(() => decodePageToken(token(bad), undefined), { instanceOf: InvalidArgumentError, message: /^page_token: malformed/ }, bad);
  }
});

// --- through real roles ---------------------------------------------------------------

interface Raw {
  status?: { code: number; details: string };
  bytes?: Buffer;
}

function rawCall(t: ExecutionContext, address: string) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  return (path: string, body: Uint8Array) =>
    new Promise<Raw>((resolve) => {
      client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(body),
        (err, value) => {
          resolve(err ? { status: { code: err.code, details: err.details } } : { bytes: value });
        },
      );
    });
}

test('the conductor: NUL in vim_id is INVALID_ARGUMENT naming it; garbage is refused and the next call is answered', async (t) => {
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger: testLogger(), orm: db.orm, address: '127.0.0.1:0' });
  t.teardown(() => conductor.stop());
  const call = rawCall(t, conductor.address);
  const path = `/${VimMonitorAction2ConductorDefinition.fullName}/UpdateVim`;
  const report = (vimId: string) =>
    ReportRequest.encode({ vimId, status: VimStatus.VIM_STATUS_REACHABLE, actionId: randomUUID(), statusReason: 0 }).finish();

  const nul = await call(path, report(`${randomUUID()}\u0000`));
  t.is(nul.status?.code, Status.INVALID_ARGUMENT);
  t.regex(nul.status!.details, /^vim_id: contains U\+0000/);
  const big = await call(
    path,
    Buffer.concat([report(randomUUID()), bytesOf(new BinaryWriter().uint32(26).bytes(new Uint8Array([0xf8, 0x88])))]),
  );
  t.is(big.status?.code, Status.INVALID_ARGUMENT);
  t.regex(big.status!.details, /^action_id: not valid UTF-8/);
  const garbage = await call(path, new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
  t.truthy(garbage.status, 'garbage is an error');
  const good = await call(path, report(randomUUID()));
  t.is(good.status, undefined);
  t.is(ReportResponse.decode(good.bytes!).status, VimStatus.VIM_STATUS_BAD_ACTION, 'an unknown VIM, answered');
  const { count } = (await db.orm.em.fork().getConnection().execute('select count(*)::int as count from vim_event'))[0] as {
    count: number;
  };
  t.is(count, 0);
});

test('the inspector: times, 64-bit ids and UTF-8 over gRPC; Doctor times over HTTP', async (t) => {
  const db = await createTestDatabase(t);
  const inspector = await startInspector({
    logger: testLogger(),
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
  const call = rawCall(t, inspector.address);
  const service = InspectorServiceDefinition.fullName;
  const expectInvalid = async (path: string, body: Uint8Array, field: RegExp) => {
    const r = await call(`/${service}/${path}`, body);
    t.is(r.status?.code, Status.INVALID_ARGUMENT, String(field));
    t.regex(r.status?.details ?? '', field);
  };
  await expectInvalid('ReportEvents', reportEvents(eventWithTime(timeBytes(-99_999_999_999n, 0))), /^events\[0\]\.time: out of range/);
  await expectInvalid('ReportEvents', reportEvents(eventWithTime(timeBytes(1_700_000_000n, 2_000_000_000))), /^events\[0\]\.time: nanos/);
  await expectInvalid(
    'ReportEvents',
    reportEvents(bytesOf(new BinaryWriter().uint32(26).bytes(new Uint8Array([0x68, 0xc3, 0x28])))),
    /^events\[0\]\.hostname: not valid UTF-8/,
  );
  await expectInvalid('ListAlarms', bytesOf(new BinaryWriter().uint32(16).uint64(2n ** 60n)), /^after_alarm_id: out of range/);
  await expectInvalid('SubscribeAlarms', bytesOf(new BinaryWriter().uint32(16).uint64(2n ** 60n)), /^after_alarm_id: /);
  const garbage = await call(`/${service}/GetStatus`, new Uint8Array([0x0a, 0x80]));
  t.truthy(garbage.status, 'garbage is an error');
  const status = await call(`/${service}/GetStatus`, GetStatusRequest.encode({}).finish());
  t.is(status.status, undefined);
  t.is(GetStatusResponse.decode(status.bytes!).eventsReceived, 0, 'nothing refused was taken');

  const put = (time: string) =>
    fetch(`http://${inspector.httpAddress}/events`, {
      method: 'PUT',
      body: JSON.stringify([{ time, type: 'compute.host.down', details: { hostname: `h-${randomUUID()}`, status: 'down' } }]),
    });
  for (const bad of [
    '0000-01-01T00:00:00',
    '99999-01-01T00:00:00',
    '2026-13-45T00:00:00',
    '2026-02-29T00:00:00',
    '2026-11-22T24:00:00',
    '2026-11-22T10:00:00+24:00',
    '0001-01-01T00:00:00+01:00',
    '9999-12-31T23:59:59-01:00',
  ]) {
    const r = await put(bad);
    t.is(r.status, 400, bad);
    const json = (await r.json()) as { error: string; field: string };
    t.is(json.field, '[0].time', bad);
    t.regex(json.error, /^\[0\]\.time: not an ISO 8601 timestamp in years 0001 to 9999/);
  }
  for (const good of [
    '2026-11-22T10:00:00.123456',
    '2026-11-22T10:00:00',
    '2026-11-22 10:00:00.5',
    '2026-11-22T10:00',
    '2026-11-22T10:00:00.123456+05:30',
    '2026-11-22T10:00:00Z',
    '2024-02-29T10:00:00-0800',
    '0001-01-01T00:00:00',
    '9999-12-31T23:59:59.999999',
  ]) {
    const r = await put(good);
    t.is(r.status, 202, good);
  }
});

test('the walk sees what ts-proto decodes: whatever ts-proto cannot hold in a number, or a NUL it would hand on, is a violation', (t) => {
  const requestTypes = [
    VimServiceDefinition,
    ExecutorServiceDefinition,
    VimMonitorAction2ConductorDefinition,
    InspectorServiceDefinition,
  ].flatMap((s) =>
    Object.values(s.methods).map((m) => ({
      name: descriptorRegistry()
        .getService(s.fullName)!
        .methods.find((d) => d.name === m.name)!.input.typeName,
      type: m.requestType,
    })),
  );
  // Field-like chunks: numbers 1-12, any wire type, varints up to 2^64, nested chunks.
  const leaf = fc.tuple(
    fc.integer({ min: 1, max: 12 }),
    fc.constantFrom(0, 1, 2, 5),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    fc.uint8Array({ maxLength: 8 }),
  );
  const write = (w: BinaryWriter, [no, wt, n, b]: [number, number, bigint, Uint8Array]) => {
    w.uint32((no << 3) | wt);
    if (wt === 0) w.uint64(n);
    else if (wt === 1) w.fixed64(n);
    else if (wt === 5) w.fixed32(Number(n & 0xffffffffn));
    else w.bytes(b);
  };
  const message = fc
    .array(
      fc.oneof(
        leaf.map((l) => ({ l })),
        fc.tuple(fc.integer({ min: 1, max: 12 }), fc.array(leaf, { maxLength: 4 })).map(([no, inner]) => ({ no, inner })),
      ),
      { maxLength: 6 },
    )
    .map((items) => {
      const w = new BinaryWriter();
      for (const item of items) {
        if ('l' in item) write(w, item.l);
        else {
          const iw = new BinaryWriter();
          for (const l of item.inner) write(iw, l);
          w.uint32((item.no << 3) | 2).bytes(iw.finish());
        }
      }
      return w.finish();
    });
  const hasNul = (v: unknown): boolean =>
    typeof v === 'string'
      ? v.includes('\u0000')
      : Array.isArray(v)
        ? v.some(hasNul)
        : v !== null && typeof v === 'object' && !(v instanceof Date)
          ? Object.values(v).some(hasNul)
          : false;
  fc.assert(
    fc.property(fc.constantFrom(...requestTypes), fc.oneof(message, fc.uint8Array({ maxLength: 40 })), ({ name, type }, bytes) => {
      const found = checkRequestBytes(name, bytes);
      let decoded: unknown;
      try {
        decoded = type.decode(bytes);
      } catch (err) {
        if (/SAFE_INTEGER/.test((err as Error).message)) return found !== undefined;
        return true;
      }
      return found !== undefined || !hasNul(decoded);
    }),
    { numRuns: 20_000 },
  );
  t.pass();
});
