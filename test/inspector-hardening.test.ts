// The inspector against hostile or unlucky input, on a real PostgreSQL: a row
// the database refuses is quarantined and never blocks the store; a database
// that is down is waited for, with a bound on what waits; every text an event
// carries is bounded; every list reply fits gRPC's default 4 MiB.
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status, type Metadata } from 'nice-grpc';
import type { CallContext } from 'nice-grpc-common';
import { openDatabase } from '../db/connection.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import {
  type Alarm,
  AlarmType,
  GetStatusResponse,
  InspectorServiceDefinition,
  ListAlarmsResponse,
  ListFaultProfilesResponse,
  type InspectorServiceClient,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createAlarmStore, type AlarmRecord, type HostRecord } from '../inspector/alarm-store.js';
import { alarmSizeEstimate, createAlarmHub, type AlarmDraft, type AlarmHub, type AlarmHubOptions } from '../inspector/alarm-stream.js';
import { createFaultHandler } from '../inspector/fault.js';
import { startInspector, type InspectorOptions, type RunningInspector } from '../inspector/main.js';
import { createProfiler } from '../inspector/profiler.js';
import { createInspectorService, resumeAfterTrailer } from '../inspector/service.js';
import type { Orm } from '../db/connection.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

const MiB = 1024 * 1024;

function draft(host: string, i: number, extra: Partial<AlarmDraft> = {}): AlarmDraft {
  return {
    type: AlarmType.ALARM_TYPE_INSTANCE_DOWN,
    host,
    instanceId: `vm-${host}-${i}`,
    instanceName: `vm ${i}`,
    projectId: 'p1',
    vimId: '',
    vimName: '',
    state: 'error',
    severity: 'critical',
    cause: '',
    monitor: 'm',
    monitorEventId: `e${i}`,
    faultId: '',
    eventTime: new Date('2026-11-30T00:00:00Z'),
    detectedAt: new Date(),
    ...extra,
  };
}

function hostRow(host: string): HostRecord {
  return {
    host,
    state: 'down',
    faultId: randomUUID(),
    changedAt: new Date(),
    monitor: 'm',
    monitorEventId: 'x',
    severity: 'critical',
    instances: [],
    novaDoneAt: undefined,
  };
}

async function startHub(t: ExecutionContext, orm: Orm, options: Partial<AlarmHubOptions> = {}) {
  const hub = createAlarmHub({ store: createAlarmStore(orm), logger: testLogger(), ...options });
  await hub.start();
  const controller = new AbortController();
  const running = hub.run(controller.signal);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      controller.abort();
      await running;
    })());
  t.teardown(stop);
  return { hub, stop };
}

function collect(hub: AlarmHub, opts: { afterAlarmId: number; liveOnly?: boolean }, signal: AbortSignal) {
  const got: AlarmRecord[] = [];
  const done = (async () => {
    for await (const a of hub.subscribe(opts, signal)) got.push(a);
  })();
  return { got, done };
}

async function rows<T>(orm: Orm, sql: string): Promise<T[]> {
  return orm.em.fork().execute<T[]>(sql);
}

interface Harness {
  inspector: RunningInspector;
  client: InspectorServiceClient;
  stop(): Promise<void>;
}

async function inspectorFor(t: ExecutionContext, db: { url: string; orm: Orm }, options: Partial<InspectorOptions> = {}): Promise<Harness> {
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    resyncIntervalMs: 60_000,
    novaShutdownGraceMs: 100,
    ...options,
  });
  const channel = createChannel(inspector.address, undefined, { 'grpc.max_receive_message_length': 64 * MiB });
  const client = createClient(InspectorServiceDefinition, channel);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await inspector.stop();
      channel.close();
    })());
  t.teardown(stop);
  return { inspector, client, stop };
}

async function grpcError(p: Promise<unknown>): Promise<{ code: Status; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: Status; details: string };
  }
  throw new Error('expected an error');
}

const hostEvent = (hostname: string, extra: Record<string, unknown> = {}) => ({
  time: new Date(),
  type: 'compute.host.down',
  hostname,
  status: 'down',
  monitor: 'm',
  monitorEventId: `${hostname}-1`,
  ...extra,
});

function liveStream(
  t: ExecutionContext,
  client: InspectorServiceClient,
  request: { afterAlarmId?: number; liveOnly?: boolean } = { liveOnly: true },
) {
  const controller = new AbortController();
  const alarms: Alarm[] = [];
  const done = (async () => {
    try {
      for await (const a of client.subscribeAlarms(request, { signal: controller.signal })) alarms.push(a);
    } catch {
      // ended by the test
    }
  })();
  t.teardown(() => controller.abort());
  return { alarms, done, cancel: () => controller.abort() };
}

test('a row the database refuses is quarantined: every other alarm is stored, later ones flow, a restart loses nothing and raises nothing again', async (t) => {
  const db = await createTestDatabase(t);
  // recentSize 0: a subscriber catching up reads the table, not memory.
  const first = await startHub(t, db.orm, { recentSize: 0 });
  const c = new AbortController();
  t.teardown(() => c.abort());
  const live = collect(first.hub, { afterAlarmId: 0, liveOnly: true }, c.signal);

  // Raised in one turn: the writer takes them as one batch, with a host row and a Nova mark.
  const row = hostRow('compute-batch');
  const batch1 = await Promise.all([
    first.hub.raise([draft('a', 0), draft('a', 1)]),
    first.hub.raise([draft('b', 0), draft('b\u0000x', 1), draft('b', 2)], [row]),
    first.hub.raise([draft('c', 0, { eventTime: new Date(-8.64e15) })]),
    first.hub.raise([draft('d', 0)]),
  ]);
  first.hub.record([], [{ host: row.host, faultId: row.faultId, at: new Date() }]);
  await first.hub.whenStored();
  // A second batch: an invalid date (refused before it reaches the database), then good ones.
  const batch2 = await first.hub.raise([draft('e', 0), draft('e', 1, { detectedAt: new Date(NaN) }), draft('e', 2)]);
  await first.hub.whenStored();
  const later = await first.hub.raise([draft('f', 0), draft('f', 1)]);
  await first.hub.whenStored();
  // The last one raised before the restart is a refused one.
  const lastRaised = await first.hub.raise([draft('g', 0, { cause: 'bad \u0000 cause' })]);
  await first.hub.whenStored();

  const all = [...batch1.flat(), ...batch2, ...later, ...lastRaised];
  const poison = [batch1[1]![1]!, batch1[2]![0]!, batch2[1]!, lastRaised[0]!];
  const poisonIds = new Set(poison.map((a) => a.alarmId));
  const good = all.filter((a) => !poisonIds.has(a.alarmId));
  t.is(good.length, 9);

  const stored = await rows<{ alarm_id: string }>(db.orm, `select alarm_id from alarm order by alarm_id`);
  t.deepEqual(
    stored.map((r) => Number(r.alarm_id)),
    good.map((a) => a.alarmId),
    'every good alarm is stored',
  );
  const quarantined = await rows<{ alarm_id: string; payload: string; error: string }>(
    db.orm,
    `select alarm_id, payload, error from alarm_quarantine order by alarm_id`,
  );
  t.deepEqual(
    quarantined.map((r) => Number(r.alarm_id)),
    poison.map((a) => a.alarmId),
  );
  t.regex(quarantined[0]!.error, /Unicode|\\u0000/);
  t.regex(quarantined[1]!.error, /out of range/);
  t.regex(quarantined[2]!.error, /Invalid time value/);
  const payload = JSON.parse(quarantined[0]!.payload) as AlarmRecord;
  t.is(payload.host, 'b\u0000x', 'the payload keeps the alarm as it was');
  t.is(payload.alarmId, poison[0]!.alarmId);
  const [host] = await rows<{ state: string; nova_done_at: unknown }>(
    db.orm,
    `select state, nova_done_at from inspector_host where host = 'compute-batch'`,
  );
  t.is(host?.state, 'down', 'the host row of a batch with a refused alarm is stored');
  t.truthy(host?.nova_done_at, 'and its Nova mark');

  t.like(first.hub.stats(), { quarantined: 4, dropped: 0, pendingStore: 0, storedAlarmId: lastRaised[0]!.alarmId });
  // Live subscribers saw everything when it was raised; a late one catches up from the table, without the refused ones.
  await eventually(() => live.got.length === all.length, 5_000, 'the live subscriber');
  t.deepEqual(
    live.got.map((a) => a.alarmId),
    all.map((a) => a.alarmId),
  );
  const late = collect(first.hub, { afterAlarmId: 0 }, c.signal);
  await eventually(() => late.got.length === good.length, 5_000, 'the catch-up');
  t.deepEqual(
    late.got.map((a) => a.alarmId),
    good.map((a) => a.alarmId),
  );

  // Restarted on the same database: the count is loaded, nothing raised again, ids move on.
  c.abort();
  await Promise.all([live.done, late.done]);
  await first.stop();
  const second = await startHub(t, db.orm);
  t.like(second.hub.stats(), { quarantined: 4, pendingStore: 0, lastAlarmId: lastRaised[0]!.alarmId });
  const next = await second.hub.raise([draft('h', 0)]);
  t.true(next[0]!.alarmId > lastRaised[0]!.alarmId);
  await second.hub.whenStored();
  const page = await second.hub.list(0, undefined, 100);
  t.deepEqual(
    page.alarms.map((a) => a.alarmId),
    [...good, ...next].map((a) => a.alarmId),
  );
  t.is((await rows<{ n: string }>(db.orm, `select count(*) as n from alarm_quarantine`))[0]!.n, '4');
  await second.stop();

  // GetStatus says so too.
  const { client } = await inspectorFor(t, db);
  t.like(await client.getStatus({}), { alarmsQuarantined: 4, lastAlarmId: next[0]!.alarmId });
});

test('a batch of many alarms with one refused among them stores all the others', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db.orm);
  const drafts = Array.from({ length: 3_000 }, (_, i) => draft('big', i, i === 1_777 ? { instanceName: 'nul \u0000' } : {}));
  const raised = await hub.raise(drafts, [hostRow('big')]);
  await hub.whenStored();
  const [count] = await rows<{ n: string }>(db.orm, `select count(*) as n from alarm`);
  t.is(Number(count!.n), 2_999);
  const q = await rows<{ alarm_id: string }>(db.orm, `select alarm_id from alarm_quarantine`);
  t.deepEqual(
    q.map((r) => Number(r.alarm_id)),
    [raised[1_777]!.alarmId],
  );
  t.is((await rows(db.orm, `select 1 from inspector_host where host = 'big'`)).length, 1);
});

test('a database that is down is waited for (nothing quarantined); past maxPendingAlarms ReportEvents is UNAVAILABLE', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-test-hardening-'));
  chmodSync(dir, 0o755); // as root, PostgreSQL runs as user postgres
  let server: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: dir });
  t.teardown(async () => {
    await server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const port = server.port;
  const orm = await openDatabase({ url: server.url });
  t.teardown(() => orm.close(true));
  const { client, stop } = await inspectorFor(t, { url: server.url, orm }, { maxPendingAlarms: 20 });
  const live = liveStream(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  await client.reportEvents({ events: [hostEvent('before')] });
  await eventually(async () => (await client.getStatus({})).alarmsPendingStore === 0, 5_000, 'the first alarm stored');

  await server.stop();
  // Without OpenStack one alarm per host: 20 may wait.
  for (let i = 0; i < 4; i++) await client.reportEvents({ events: Array.from({ length: 5 }, (_, j) => hostEvent(`h${i}-${j}`)) });
  await eventually(() => live.alarms.length === 21, 5_000, 'the alarms sent while the database is down');
  await new Promise((r) => setTimeout(r, 500)); // the writer tries, and tries again
  const err = await grpcError(client.reportEvents({ events: [hostEvent('one-too-many')] }));
  t.is(err.code, Status.UNAVAILABLE);
  t.regex(err.details, /^alarm store is behind: 20 alarms .*; retry$/);
  t.like(await client.getStatus({}), { alarmsPendingStore: 20, alarmsQuarantined: 0 });
  t.deepEqual((await client.getStatus({})).hostsDown.map((h) => h.host).includes('one-too-many'), false, 'the refused host is not taken');

  server = await startEmbeddedPostgres({ dataDir: dir, port });
  await eventually(
    async () => (await client.getStatus({})).alarmsPendingStore === 0,
    30_000,
    'the alarms stored once the database is back',
  );
  // The refused report is taken when retried.
  t.like(await client.reportEvents({ events: [hostEvent('one-too-many')] }), { accepted: 1, duplicates: 0 });
  await eventually(async () => (await client.getStatus({})).alarmsPendingStore === 0, 5_000, 'stored');
  await stop();
  const [counts] = await rows<{ alarms: string; quarantined: string }>(
    orm,
    `select (select count(*) from alarm) as alarms, (select count(*) from alarm_quarantine) as quarantined`,
  );
  t.deepEqual(counts, { alarms: '22', quarantined: '0' });
});

test('event texts are bounded and their time is in years 0001-9999, through ReportEvents, naming the field; filters too', async (t) => {
  const db = await createTestDatabase(t);
  const { client } = await inspectorFor(t, db);
  const x = (n: number) => 'x'.repeat(n);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ hostname: x(256) }, 'events[0].hostname'],
    [{ hostname: 'a\tb' }, 'events[0].hostname'],
    [{ hostname: 'a\u0085b' }, 'events[0].hostname'],
    [{ monitor: x(256) }, 'events[0].monitor'],
    [{ monitor: 'zabbix\n1' }, 'events[0].monitor'],
    [{ monitorEventId: x(256) }, 'events[0].monitor_event_id'],
    [{ monitorEventId: 'a\u0000' }, 'events[0].monitor_event_id'],
    [{ source: x(256) }, 'events[0].source'],
    [{ cause: x(1_025) }, 'events[0].cause'],
    [{ cause: 'nul \u0000' }, 'events[0].cause'],
    [{ severity: x(65) }, 'events[0].severity'],
    [{ severity: 'crit\u0007' }, 'events[0].severity'],
    [{ time: new Date(-99_999_999_999_000) }, 'events[0].time'],
    [{ time: new Date('+010000-01-01T00:00:00Z') }, 'events[0].time'],
    [{ type: x(256) }, 'events[0].type'],
  ];
  for (const [extra, field] of cases) {
    const err = await grpcError(client.reportEvents({ events: [hostEvent('ok-host'), hostEvent('h', extra)] }));
    t.is(err.code, Status.INVALID_ARGUMENT, field);
    t.true(err.details.startsWith(`${field.replace('events[0]', 'events[1]')}:`), `${field}: ${err.details}`);
  }
  // At the limits: taken.
  const atLimits = {
    hostname: x(255),
    monitor: x(255),
    monitorEventId: x(255),
    source: x(255),
    cause: `${x(1_000)}\n${x(23)}`,
    severity: x(64),
    time: new Date('0001-01-01T00:00:00Z'),
  };
  t.like(await client.reportEvents({ events: [hostEvent('h', atLimits)] }), { accepted: 1 });
  t.is((await client.getStatus({})).eventsReceived, 1, 'the refused batches took nothing');

  const filterCases: Array<[Record<string, unknown>, string]> = [
    [{ hosts: Array.from({ length: 1_001 }, (_, i) => `h${i}`) }, 'filter.hosts'],
    [{ projectIds: ['p', x(256)] }, 'filter.project_ids[1]'],
    [{ instanceIds: Array.from({ length: 1_001 }, (_, i) => `i${i}`) }, 'filter.instance_ids'],
    [{ vimIds: [x(256)] }, 'filter.vim_ids[0]'],
    [{ types: Array.from({ length: 1_001 }, () => AlarmType.ALARM_TYPE_HOST_DOWN) }, 'filter.types'],
  ];
  for (const [filter, field] of filterCases) {
    const listErr = await grpcError(client.listAlarms({ filter }));
    t.is(listErr.code, Status.INVALID_ARGUMENT, field);
    t.true(listErr.details.startsWith(`${field}:`), listErr.details);
    const streamErr = await grpcError(client.subscribeAlarms({ filter })[Symbol.asyncIterator]().next());
    t.is(streamErr.code, Status.INVALID_ARGUMENT, field);
    t.true(streamErr.details.startsWith(`${field}:`), streamErr.details);
  }
  t.is((await client.listAlarms({ filter: { hosts: Array.from({ length: 1_000 }, (_, i) => `h${i}`) } })).alarms.length, 0);
});

test('5,000 hosts down: GetStatus fits in 4 MiB with the first 1,000 and the total; ListHostsDown pages through each once', async (t) => {
  const db = await createTestDatabase(t);
  const { client } = await inspectorFor(t, db);
  const name = (i: number) => `compute-${String(i).padStart(5, '0')}-${'n'.repeat(230)}`;
  const order = Array.from({ length: 5_000 }, (_, i) => i).sort(() => Math.random() - 0.5);
  for (let k = 0; k < 5_000; k += 2_500) {
    await client.reportEvents({ events: order.slice(k, k + 2_500).map((i) => hostEvent(name(i), { cause: 'c'.repeat(1_000) })) });
  }
  const status = await client.getStatus({});
  const bytes = GetStatusResponse.encode(status).finish().length;
  t.true(bytes < 4 * MiB, `${bytes} bytes`);
  t.log(`GetStatus with 5,000 hosts down: ${(bytes / MiB).toFixed(2)} MiB`);
  t.is(status.hostsDownTotal, 5_000);
  t.is(status.hostsDown.length, 1_000);
  t.deepEqual(
    status.hostsDown.map((h) => h.host),
    Array.from({ length: 1_000 }, (_, i) => name(i)),
    'the first by host name',
  );

  const first = await client.listHostsDown({});
  t.is(first.hosts.length, 100, 'default page size');
  t.true((await client.listHostsDown({ pageSize: 5_000 })).hosts.length === 1_000, 'at most 1,000');
  const seen: string[] = [];
  let token = '';
  let pages = 0;
  do {
    const page = await client.listHostsDown({ pageSize: 700, pageToken: token });
    seen.push(...page.hosts.map((h) => h.host));
    t.true(page.hosts.every((h) => h.state === 'down' && h.faultId !== ''));
    token = page.nextPageToken;
    pages++;
  } while (token);
  t.is(pages, 8);
  t.deepEqual(
    seen,
    Array.from({ length: 5_000 }, (_, i) => name(i)),
    'each host once, in order',
  );
  for (const bad of ['not base64!', 'AAAA==', '_w', Buffer.from('x'.repeat(300)).toString('base64url')]) {
    const err = await grpcError(client.listHostsDown({ pageToken: bad }));
    t.is(err.code, Status.INVALID_ARGUMENT, bad);
    t.true(err.details.startsWith('page_token:'), err.details);
  }
  // A host back up leaves the list; a token naming a host that is gone still pages on.
  const lastOfFirst = first.hosts[99]!.host;
  await client.reportEvents({ events: [hostEvent(lastOfFirst, { status: 'up' })] });
  const after = await client.listHostsDown({ pageToken: first.nextPageToken });
  t.is(after.hosts[0]!.host, name(100));
  t.is((await client.getStatus({})).hostsDownTotal, 4_999);
});

test('ListAlarms: a page of 1,000 with 1,000-character causes fits; longer alarms cut the page by size and the next continues without a gap', async (t) => {
  const db = await createTestDatabase(t);
  // Alarms with long fields (a VM name as Nova gave it), stored by the hub before the inspector starts.
  const seeding = await startHub(t, db.orm);
  const long = await seeding.hub.raise(
    Array.from({ length: 1_500 }, (_, i) => draft('long', i, { cause: 'c'.repeat(1_000), instanceName: 'n'.repeat(3_000) })),
  );
  await seeding.hub.whenStored();
  await seeding.stop();
  const { client } = await inspectorFor(t, db);
  const events = Array.from({ length: 1_200 }, (_, i) => hostEvent(`host-${i}`, { cause: 'k'.repeat(1_000) }));
  await client.reportEvents({ events });

  const got: Alarm[] = [];
  let after = 0;
  let pages = 0;
  while (true) {
    const page = await client.listAlarms({ afterAlarmId: after, pageSize: 1_000 });
    const bytes = ListAlarmsResponse.encode(page).finish().length;
    t.true(bytes < 4 * MiB, `page ${pages}: ${bytes} bytes`);
    if (page.alarms.length === 0) break;
    got.push(...page.alarms);
    t.is(page.nextAfterAlarmId, page.alarms[page.alarms.length - 1]!.alarmId);
    after = page.nextAfterAlarmId;
    pages++;
  }
  const ids = got.map((a) => a.alarmId);
  t.is(got.length, 2_700);
  t.deepEqual(
    ids.slice(0, 1_500),
    long.map((a) => a.alarmId),
    'no gap, no duplicate',
  );
  t.true(ids.every((id, i) => i === 0 || id > ids[i - 1]!));
  t.true(pages >= 4, `${pages} pages: the long alarms were cut by size`);
  t.log(`2,700 alarms in ${pages} pages of at most 1,000`);
  // A page of 1,000 of the Doctor-sized alarms is whole.
  const doctorPage = await client.listAlarms({ afterAlarmId: long[long.length - 1]!.alarmId, pageSize: 1_000 });
  t.is(doctorPage.alarms.length, 1_000);
  t.true(doctorPage.alarms.every((a) => a.cause.length === 1_000));
  t.true(ListAlarmsResponse.encode(doctorPage).finish().length < 4 * MiB);
});

test('maxHostsDown: a new host beyond it is RESOURCE_EXHAUSTED and nothing of the batch is raised', async (t) => {
  const db = await createTestDatabase(t);
  const { client } = await inspectorFor(t, db, { maxHostsDown: 3 });
  const live = liveStream(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  await client.reportEvents({ events: [hostEvent('a'), hostEvent('b'), hostEvent('c')] });
  await eventually(() => live.alarms.length === 3, 5_000, 'three alarms');
  // "a" up frees one place, "d" takes it, "e" is one too many: the whole batch is refused.
  const err = await grpcError(client.reportEvents({ events: [hostEvent('a', { status: 'up' }), hostEvent('d'), hostEvent('e')] }));
  t.is(err.code, Status.RESOURCE_EXHAUSTED);
  t.regex(err.details, /host "e"/);
  // A host already down is a duplicate, not a new one.
  t.like(await client.reportEvents({ events: [hostEvent('c')] }), { duplicates: 1 });
  const alone = await grpcError(client.reportEvents({ events: [hostEvent('d')] }));
  t.is(alone.code, Status.RESOURCE_EXHAUSTED);
  t.regex(alone.details, /host "d"/);
  await new Promise((r) => setTimeout(r, 100));
  t.is(live.alarms.length, 3, 'nothing raised for the refused batches');
  const status = await client.getStatus({});
  t.deepEqual(
    status.hostsDown.map((h) => h.host),
    ['a', 'b', 'c'],
  );
  t.is(status.eventsReceived, 4);
  // Once one is back up, another may go down.
  await client.reportEvents({ events: [hostEvent('a', { status: 'up' }), hostEvent('d')] });
  await eventually(() => live.alarms.length === 5, 5_000, 'the recovered and the new');
  t.deepEqual(
    (await client.getStatus({})).hostsDown.map((h) => h.host),
    ['b', 'c', 'd'],
  );
});

test('hosts back up are forgotten beyond a bound, which changes nothing: an unknown host is up', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db.orm);
  const fault = createFaultHandler({
    logger: testLogger(),
    hub,
    profiler: createProfiler({ logger: testLogger() }),
    vms: { vmsOnHost: () => [] },
    nova: undefined,
    novaConcurrency: 1,
    hosts: [],
    maxHostsUpKept: 10,
  });
  t.teardown(() => fault.stop(0));
  const event = (host: string, status: 'down' | 'up') => ({
    kind: 'host' as const,
    host,
    status,
    time: undefined,
    monitor: 'm',
    monitorEventId: '',
    cause: '',
    severity: '',
  });
  for (let i = 0; i < 100; i++) {
    await fault.report([event(`h${i}`, 'down')]);
    await fault.report([event(`h${i}`, 'up')]);
  }
  t.is(fault.stats().hostsKnown, 10);
  t.like(await fault.report([event('h0', 'up')]), { duplicates: 1 });
  t.like(await fault.report([event('h0', 'down')]), { duplicates: 0, accepted: 1 });
  t.is(fault.hostsDown().total, 1);
});

test('the byte bound of a subscriber ends a stream that does not read with RESOURCE_EXHAUSTED and the id to resume after', async (t) => {
  const db = await createTestDatabase(t);
  const { client } = await inspectorFor(t, db, { subscriberQueueBytes: 256 * 1024, subscriberQueueSize: 100_000 });
  const fast = liveStream(t, client);
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  let trailer: Metadata | undefined;
  const slow = client
    .subscribeAlarms({ liveOnly: true }, { signal: controller.signal, onTrailer: (m) => (trailer = m) })
    [Symbol.asyncIterator]();
  const slowFirst = slow.next().then(
    (r) => ({ alarm: r.value as Alarm }),
    (err: unknown) => ({ err }),
  );
  await eventually(async () => (await client.getStatus({})).subscribers === 2, 5_000, 'two subscribers');
  // Bursts of about 200 KiB (each fits the bound), 7 MiB in all.
  let sent = 0;
  for (let b = 0; b < 30; b++) {
    await client.reportEvents({ events: Array.from({ length: 200 }, (_, i) => hostEvent(`host-${b}-${i}`, { cause: 'z'.repeat(1_000) })) });
    sent += 200;
    await eventually(() => fast.alarms.length === sent, 10_000, `burst ${b} at the fast subscriber`);
  }
  t.true(alarmSizeEstimate(fast.alarms[0]! as AlarmRecord) > 1_000);
  const first = await slowFirst;
  t.true('alarm' in first, 'the slow one got its first alarm');
  const received: Alarm[] = [(first as { alarm: Alarm }).alarm];
  const err = await grpcError(
    (async () => {
      for (let r = await slow.next(); !r.done; r = await slow.next()) received.push(r.value);
    })(),
  );
  t.is(err.code, Status.RESOURCE_EXHAUSTED);
  t.regex(err.details, /bytes/);
  const last = received[received.length - 1]!.alarmId;
  t.true(received.length < sent, `the slow one got ${received.length}`);
  t.is(trailer?.get(resumeAfterTrailer), String(last));
  t.true(err.details.includes(`after_alarm_id=${last}`), err.details);
  t.is((await client.getStatus({})).subscribers, 1, 'the fast one goes on');
});

test('ListFaultProfiles: a full page of 1,000 of the largest profiles fits', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db.orm);
  const profiler = createProfiler({ logger: testLogger() });
  const fault = createFaultHandler({
    logger: testLogger(),
    hub,
    profiler,
    vms: { vmsOnHost: () => [] },
    nova: undefined,
    novaConcurrency: 1,
    hosts: [],
  });
  t.teardown(() => fault.stop(0));
  for (let i = 0; i < 1_000; i++) {
    const p = profiler.start({
      faultId: randomUUID(),
      host: `${i}-${'h'.repeat(250)}`,
      status: 'down',
      monitor: 'm'.repeat(255),
      monitorEventId: 'e'.repeat(255),
      eventTime: new Date(),
      receivedAt: new Date(),
    });
    p.vmsFound(1_000);
    p.alarmsSent(1_001);
    p.alarmsStored();
    p.hostForced();
    p.vmReset();
    for (let e = 0; e < 30; e++) p.vmFailed(`reset-state ${randomUUID()}: ${'Nova said no. '.repeat(400)}`);
    p.complete('cut short by shutdown; driven again at next start');
  }
  const sample = profiler.list({ limit: 1 })[0]!;
  t.true(sample.errors.every((e) => e.length <= 300));
  const service = createInspectorService({
    fault,
    hub,
    profiler,
    status: () => ({ cachedVms: 0, cacheSyncedAt: undefined, novaConfigured: false, notificationsConfigured: false, missingConfig: [] }),
  });
  const reply = ListFaultProfilesResponse.fromPartial(await service.listFaultProfiles({ host: '', limit: 5_000 }, {} as CallContext));
  const bytes = ListFaultProfilesResponse.encode(reply).finish().length;
  t.is(reply.profiles.length, 1_000);
  t.true(bytes < 3 * MiB, `${bytes} bytes`);
  t.log(`a page of 1,000 profiles: ${(bytes / MiB).toFixed(2)} MiB`);
});
