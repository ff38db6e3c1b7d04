// Retention (db/retention.ts) on a real PostgreSQL: rows beyond an age or a
// count go, oldest first, in batches, the newest kept; only a prefix of ids goes,
// and retention_mark says how far; two passes at once remove each row once; a
// conductor's report is not held up by a pass. Then what a resuming stream is
// told: WatchVims and SubscribeAlarms below the highest id removed end with
// OUT_OF_RANGE naming the oldest id held (message, ErrorInfo, trailer), at the
// edge and above they replay, and the SDK hands the gap to its consumer as a
// ResumeGapError instead of reconnecting.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { ClientError, createChannel, createClient, createClientFactory, type Metadata, Status } from 'nice-grpc';
import { ErrorInfo, errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import { createVimmonClient } from '../client/src/client.js';
import { ResumeGapError } from '../client/src/resumable-stream.js';
import { parseEnvironment, retentionSettings } from '../common/env.js';
import { createMetrics } from '../common/metrics.js';
import type { Orm } from '../db/connection.js';
import { runRetention, runRetentionPass, type RetentionTable } from '../db/retention.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createTestDatabase } from './support/database.js';
import { startInspectorHarness } from './support/inspector-harness.js';
import { createAlarmStore } from '../inspector/alarm-store.js';
import { testLogger } from './support/logger.js';
import { startMesh } from './support/mesh.js';
import { startServer } from '../server/main.js';
import { eventually } from './support/wait.js';

const day = 86_400_000;

async function query<T = Record<string, unknown>>(orm: Orm, sql: string, params: unknown[] = []): Promise<T[]> {
  return (await orm.em.fork().getConnection().execute(sql, params)) as T[];
}

/** `count` alarms stored `ageDays` ago, in one statement; their ids. */
async function insertAlarms(orm: Orm, count: number, ageDays: number): Promise<number[]> {
  const rows = await query<{ id: string }>(
    orm,
    `insert into alarm (type, severity, host, detected_at, raised_at, stored_at)
     select 'HOST_DOWN', 'critical', 'host-' || g, now(), now(), now() - make_interval(days => ?) from generate_series(1, ?) g
     returning alarm_id::text as id`,
    [ageDays, count],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

/** `count` alarms the database refused, quarantined `ageDays` ago, with ids drawn from alarm's sequence; their ids. */
async function insertQuarantined(orm: Orm, count: number, ageDays: number): Promise<number[]> {
  const rows = await query<{ id: string }>(
    orm,
    `insert into alarm_quarantine (alarm_id, payload, error, quarantined_at)
     select nextval(pg_get_serial_sequence('alarm', 'alarm_id')), '{}', 'refused', now() - make_interval(days => ?) from generate_series(1, ?)
     returning alarm_id::text as id`,
    [ageDays, count],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

async function insertVim(orm: Orm): Promise<{ id: string; actionId: string }> {
  const id = randomUUID();
  const actionId = randomUUID();
  await query(
    orm,
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     values (?, ?, 'openstack', 'http://192.0.2.1:5000/v3', 'tcp', 3600000, 500, 1, 1, 3600000, 7200000, 'REACHABLE', ?, now(), now(), now(), now())`,
    [id, `vim-${id.slice(0, 8)}`, actionId],
  );
  return { id, actionId };
}

/** `count` transitions of a VIM created `ageDays` ago (not announced: they stand for history); their ids. */
async function insertEvents(orm: Orm, vimId: string, count: number, ageDays = 0): Promise<number[]> {
  const rows = await query<{ id: string }>(
    orm,
    `insert into vim_event (vim_id, from_status, to_status, action_id, created_at)
     select v.id, 'REACHABLE', 'UNREACHABLE', v.action_id, now() - make_interval(days => ?) from vim v, generate_series(1, ?) where v.id = ?
     returning id::text as id`,
    [ageDays, count, vimId],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

async function ids(orm: Orm, table: RetentionTable): Promise<number[]> {
  const column = table === 'alarm' || table === 'alarm_quarantine' ? 'alarm_id' : 'id';
  const rows = await query<{ n: string }>(orm, `select ${column}::text as n from ${table} order by ${column}`);
  return rows.map((r) => Number(r.n));
}

async function mark(orm: Orm, table: RetentionTable): Promise<number> {
  const rows = await query<{ n: string }>(orm, `select removed_through::text as n from retention_mark where table_name = ?`, [table]);
  return rows[0] ? Number(rows[0].n) : 0;
}

// ---------------------------------------------------------------- the passes

test('rows older than the age go in batches of batchSize, oldest first; the newer ones stay; a second pass finds nothing', async (t) => {
  const { orm } = await createTestDatabase(t);
  const old = await insertAlarms(orm, 1_000, 40);
  const fresh = await insertAlarms(orm, 300, 1);
  const results = await runRetentionPass({ orm, limits: { alarm: { maxAgeMs: 30 * day } }, batchSize: 100 });
  t.is(results.length, 1);
  const r = results[0]!;
  t.true(r.ran);
  t.is(r.deleted, 1_000);
  t.deepEqual(
    r.batches.map((b) => b.rows),
    Array(10).fill(100),
  );
  t.deepEqual(await ids(orm, 'alarm'), fresh);
  t.is(r.removedThrough, old.at(-1)!);
  t.is(await mark(orm, 'alarm'), old.at(-1)!);

  const again = await runRetentionPass({ orm, limits: { alarm: { maxAgeMs: 30 * day } }, batchSize: 100 });
  t.is(again[0]!.deleted, 0);
  t.deepEqual(await ids(orm, 'alarm'), fresh);
});

test('beyond the count only the newest maxRows stay, for every table; a table with no limit is left alone', async (t) => {
  const { orm } = await createTestDatabase(t);
  const alarms = await insertAlarms(orm, 250, 0);
  const vim = await insertVim(orm);
  const events = await insertEvents(orm, vim.id, 120);
  await query(orm, `insert into vim_audit (vim_id, action, principal) select ?, 'update', 'p-' || g from generate_series(1, 30) g`, [
    vim.id,
  ]);
  const audits = await ids(orm, 'vim_audit');
  const results = await runRetentionPass({
    orm,
    limits: { alarm: { maxRows: 100 }, vim_event: { maxRows: 50 } },
    batchSize: 64,
  });
  t.deepEqual(results.map((r) => [r.table, r.deleted]).sort(), [
    ['alarm', 150],
    ['vim_event', 70],
  ]);
  t.deepEqual(await ids(orm, 'alarm'), alarms.slice(150));
  t.deepEqual(await ids(orm, 'vim_event'), events.slice(70));
  t.deepEqual(await ids(orm, 'vim_audit'), audits);
  // 150 rows in batches of at most 64.
  t.deepEqual(
    results.find((r) => r.table === 'alarm')!.batches.map((b) => b.rows),
    [64, 64, 22],
  );
  t.is(await mark(orm, 'vim_event'), events[69]!);

  // Both limits: whichever reaches further.
  const more = await runRetentionPass({ orm, limits: { vim_audit: { maxRows: 10, maxAgeMs: 30 * day } } });
  t.is(more[0]!.deleted, 20);
  t.deepEqual(await ids(orm, 'vim_audit'), audits.slice(20));
});

test('quarantined alarms go by age and by count; an id removed from the quarantine is never counted down from', async (t) => {
  const { orm } = await createTestDatabase(t);
  const stored = await insertAlarms(orm, 5, 0);
  const old = await insertQuarantined(orm, 40, 40);
  const fresh = await insertQuarantined(orm, 30, 0);
  const [byAge] = await runRetentionPass({ orm, limits: { alarm_quarantine: { maxAgeMs: 30 * day } }, batchSize: 16 });
  t.is(byAge!.deleted, old.length);
  t.deepEqual(await ids(orm, 'alarm_quarantine'), fresh);
  const [byCount] = await runRetentionPass({ orm, limits: { alarm_quarantine: { maxRows: 10 } }, batchSize: 16 });
  t.is(byCount!.deleted, 20);
  t.deepEqual(await ids(orm, 'alarm_quarantine'), fresh.slice(20));
  t.deepEqual(await ids(orm, 'alarm'), stored, 'stored alarms are left alone');

  // The newest alarm raised was quarantined, and retention removed it with every stored alarm:
  // the next inspector must still start above it, or a subscriber's resume point would be reused.
  const last = await insertQuarantined(orm, 1, 40);
  await query(orm, `update alarm set stored_at = now() - interval '40 days'`);
  await runRetentionPass({ orm, limits: { alarm: { maxAgeMs: 30 * day }, alarm_quarantine: { maxRows: 0, maxAgeMs: 30 * day } } });
  t.deepEqual(await ids(orm, 'alarm'), []);
  t.deepEqual(await ids(orm, 'alarm_quarantine'), []);
  t.is(await createAlarmStore(orm).lastAlarmId(), last[0]!, 'the highest id ever raised');
});

test('only a prefix of ids goes: an old row after a newer one waits until the newer one goes', async (t) => {
  const { orm } = await createTestDatabase(t);
  const first = await insertAlarms(orm, 5, 40);
  const newer = await insertAlarms(orm, 1, 1);
  const late = await insertAlarms(orm, 5, 40);
  const r = await runRetentionPass({ orm, limits: { alarm: { maxAgeMs: 30 * day } }, batchSize: 3 });
  t.is(r[0]!.deleted, 5);
  t.deepEqual(await ids(orm, 'alarm'), [...newer, ...late]);
  // So everything at or below the mark is gone, and nothing above it.
  t.is(await mark(orm, 'alarm'), first.at(-1)!);
});

test('two passes at once on two connections pools remove each row once, without an error', async (t) => {
  const db = await createTestDatabase(t);
  const old = await insertAlarms(db.orm, 3_000, 40);
  const fresh = await insertAlarms(db.orm, 10, 0);
  const other = await db.open();
  const limits = { alarm: { maxAgeMs: 30 * day } };
  const [a, b] = await Promise.all([
    runRetentionPass({ orm: db.orm, limits, batchSize: 100 }),
    runRetentionPass({ orm: other, limits, batchSize: 100 }),
  ]);
  t.is(a[0]!.deleted + b[0]!.deleted, old.length);
  t.deepEqual(await ids(db.orm, 'alarm'), fresh);
  t.is(await mark(db.orm, 'alarm'), old.at(-1)!);
});

test('while one pass holds a table, another skips it', async (t) => {
  const db = await createTestDatabase(t);
  await insertAlarms(db.orm, 500, 40);
  const other = await db.open();
  let inner: Awaited<ReturnType<typeof runRetentionPass>> | undefined;
  const outer = await runRetentionPass({
    orm: db.orm,
    limits: { alarm: { maxAgeMs: 30 * day } },
    batchSize: 100,
    // Inside the first batch's report the lock is held: a second pass now must skip the table.
    onBatch: async () => {
      inner ??= await runRetentionPass({ orm: other, limits: { alarm: { maxAgeMs: 30 * day } }, batchSize: 100 });
    },
  });
  t.false(inner![0]!.ran);
  t.is(inner![0]!.deleted, 0);
  t.true(outer[0]!.ran);
  t.is(outer[0]!.deleted, 500);
});

test("a conductor's report is not held up by a pass: none waits on a lock the pass holds", async (t) => {
  const mesh = await startMesh(t, { executors: 0, reconcileIntervalMs: 60_000 });
  const orm = mesh.db.orm;
  const vim = await insertVim(orm);
  // History to remove: 60,000 old transitions of another VIM.
  const history = await insertVim(orm);
  await insertEvents(orm, history.id, 60_000, 40);
  const channel = createChannel(mesh.conductors[0]!.address);
  t.teardown(() => channel.close());
  const conductor = createClient(VimMonitorAction2ConductorDefinition, channel);

  let passing = true;
  const lockWaits: string[] = [];
  const latencies: number[] = [];
  const reports = (async () => {
    let up = false;
    while (passing) {
      up = !up;
      const started = performance.now();
      const reply = await conductor.updateVim({
        vimId: vim.id,
        actionId: vim.actionId,
        status: up ? VimStatus.VIM_STATUS_REACHABLE : VimStatus.VIM_STATUS_UNREACHABLE,
      });
      latencies.push(performance.now() - started);
      t.not(reply.status, VimStatus.VIM_STATUS_UNSPECIFIED);
    }
  })();
  const sampling = (async () => {
    while (passing) {
      // Waits on the pass's statements in this database only: pg_stat_activity is cluster-wide, and
      // other test files' migrations wait on their own advisory locks meanwhile (as does the NOTIFY
      // queue lock that concurrent reports of other databases hold at commit): not the pass's doing.
      const rows = await query<{ query: string }>(
        mesh.db.orm,
        `select left(a.query, 80) || ' waited on ' || left(b.query, 80) as query
           from pg_stat_activity a join pg_stat_activity b on b.pid = any(pg_blocking_pids(a.pid))
          where a.wait_event_type = 'Lock' and a.datname = current_database()
            and (b.query like '%retention_mark%' or b.query like '%advisory%')`,
      );
      lockWaits.push(...rows.map((r) => r.query));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const [result] = await runRetentionPass({ orm: await mesh.db.open(), limits: { vim_event: { maxAgeMs: 30 * day } }, batchSize: 500 });
  passing = false;
  await Promise.all([reports, sampling]);
  t.is(result!.deleted, 60_000);
  t.true(result!.batches.length >= 120);
  t.deepEqual(lockWaits, []);
  t.true(latencies.length > 0);
  // Order of magnitude only (the machine is shared): a report waiting on the pass would take as long as the pass.
  const longest = Math.max(...latencies);
  t.log(`pass ${result!.batches.length} batches, ${latencies.length} reports during it, longest report ${longest.toFixed(1)} ms`);
  t.true(longest < 5_000);
  // The reports' own transitions (every report but the first changes the status) are newer than the age: kept.
  t.is((await query(orm, `select 1 from vim_event where vim_id = ?`, [vim.id])).length, latencies.length - 1);
});

test('runRetention runs passes on its interval, counts what it removed and stops with its signal', async (t) => {
  const { orm } = await createTestDatabase(t);
  await insertAlarms(orm, 120, 40);
  const metrics = createMetrics({ processMetrics: false });
  const abort = new AbortController();
  const running = runRetention(
    { orm, logger: testLogger(), limits: { alarm: { maxAgeMs: 30 * day } }, intervalMs: 50, firstDelayMs: 0, metrics: metrics.retention() },
    abort.signal,
  );
  await eventually(async () => (await ids(orm, 'alarm')).length === 0, 10_000, 'the old alarms to go');
  await insertAlarms(orm, 7, 40);
  await eventually(async () => (await ids(orm, 'alarm')).length === 0, 10_000, 'the next pass');
  abort.abort();
  await running;
  const text = await metrics.registry.metrics();
  t.regex(text, /vimmon_retention_deleted_total\{table="alarm"\} 127/);
  t.regex(text, /vimmon_retention_pass_seconds_count\{table="alarm"\} [1-9]/);
});

test('the Tacker server removes old VIM events and audit rows, the inspector old alarms, each only its own tables', async (t) => {
  const db = await createTestDatabase(t);
  const vim = await insertVim(db.orm);
  const events = await insertEvents(db.orm, vim.id, 30, 40);
  const fresh = await insertEvents(db.orm, vim.id, 5, 0);
  await query(
    db.orm,
    `insert into vim_audit (vim_id, action, principal, created_at) values (?, 'update', 'p', now() - interval '40 days')`,
    [vim.id],
  );
  const old = await insertAlarms(db.orm, 30, 40);
  const kept = await insertAlarms(db.orm, 5, 0);
  const oldQuarantined = await insertQuarantined(db.orm, 12, 40);
  const keptQuarantined = await insertQuarantined(db.orm, 3, 0);
  const limits = {
    vim_event: { maxAgeMs: 30 * day },
    vim_audit: { maxAgeMs: 30 * day },
    alarm: { maxAgeMs: 30 * day },
    alarm_quarantine: { maxAgeMs: 30 * day },
  };
  const retention = { intervalMs: 100, batchSize: 7, limits };
  const server = await startServer({
    logger: testLogger(),
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [],
    key: Buffer.alloc(32, 3),
    reconcileIntervalMs: 60_000,
    retention,
  });
  t.teardown(() => server.stop());
  // One pass goes through vim_event, then vim_audit.
  await eventually(
    async () => (await ids(db.orm, 'vim_event')).length === fresh.length && (await ids(db.orm, 'vim_audit')).length === 0,
    20_000,
    'the old events and audit rows to go',
  );
  t.deepEqual(await ids(db.orm, 'vim_event'), fresh);
  t.deepEqual(await ids(db.orm, 'vim_audit'), []);
  t.is(await mark(db.orm, 'vim_event'), events.at(-1)!);
  // Alarms, stored and quarantined, are the inspector's.
  t.is((await ids(db.orm, 'alarm')).length, old.length + kept.length);
  t.is((await ids(db.orm, 'alarm_quarantine')).length, oldQuarantined.length + keptQuarantined.length);
  await startInspectorHarness(t, undefined, { db, retention });
  await eventually(
    async () =>
      (await ids(db.orm, 'alarm')).length === kept.length && (await ids(db.orm, 'alarm_quarantine')).length === keptQuarantined.length,
    20_000,
    'the old alarms and quarantined alarms to go',
  );
  t.deepEqual(await ids(db.orm, 'alarm'), kept);
  t.deepEqual(await ids(db.orm, 'alarm_quarantine'), keptQuarantined);
});

test('VIMMON_RETENTION_*: days, off and 0, and a bad value named', (t) => {
  const s = retentionSettings(
    parseEnvironment({ VIMMON_RETENTION_EVENT_AGE: '7d', VIMMON_RETENTION_ALARM_ROWS: 'off', VIMMON_RETENTION_ALARM_AGE: '0' }),
  );
  t.is(s.limits.vim_event.maxAgeMs, 7 * day);
  t.is(s.limits.vim_event.maxRows, 10_000_000);
  t.is(s.limits.alarm.maxRows, undefined);
  t.is(s.limits.alarm.maxAgeMs, undefined);
  t.is(s.limits.vim_audit.maxAgeMs, 365 * day);
  t.is(s.intervalMs, 5 * 60_000);
  const defaults = retentionSettings(parseEnvironment({}));
  t.is(defaults.limits.alarm.maxAgeMs, 30 * day);
  t.is(defaults.limits.alarm_quarantine.maxAgeMs, 30 * day);
  t.is(defaults.limits.alarm_quarantine.maxRows, 100_000);
  t.is(retentionSettings(parseEnvironment({ VIMMON_RETENTION_QUARANTINE_ROWS: '500' })).limits.alarm_quarantine.maxRows, 500);
  t.throws(() => parseEnvironment({ VIMMON_RETENTION_AUDIT_AGE: 'forever' }), { message: /^VIMMON_RETENTION_AUDIT_AGE: expected an age/ });
  t.throws(() => parseEnvironment({ VIMMON_RETENTION_EVENT_ROWS: '-3' }), {
    message: /^VIMMON_RETENTION_EVENT_ROWS: expected a whole number/,
  });
});

// ---------------------------------------------------------------- resuming streams

interface Ending {
  received: number[];
  error?: ClientError;
  trailer?: Metadata;
}

/** Reads a stream until `want` messages came or it ended; the ids it got and how it ended. */
async function readStream(
  open: (options: { signal: AbortSignal; onTrailer(m: Metadata): void }) => AsyncIterable<{ id: number }>,
  want: number,
) {
  const abort = new AbortController();
  const ending: Ending = { received: [] };
  const timer = setTimeout(() => abort.abort(), 20_000);
  try {
    for await (const m of open({ signal: abort.signal, onTrailer: (trailer) => (ending.trailer = trailer) })) {
      ending.received.push(m.id);
      if (ending.received.length >= want) break;
    }
  } catch (err) {
    if (err instanceof ClientError) ending.error = err;
    else if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
  }
  return ending;
}

function assertOutOfRange(t: ExecutionContext, ending: Ending, field: string, oldest: number, trailer: string) {
  t.deepEqual(ending.received, []);
  t.is(ending.error?.code, Status.OUT_OF_RANGE);
  t.true(ending.error!.details.startsWith(`${field}: `), ending.error!.details);
  t.regex(ending.error!.details, new RegExp(`oldest id still held is ${oldest}\\b`));
  t.is(ending.trailer?.get(trailer), String(oldest));
}

test('WatchVims after an id retention removed: OUT_OF_RANGE naming the oldest event held; at the edge and above it replays; 0 is live', async (t) => {
  const mesh = await startMesh(t, { executors: 0, reconcileIntervalMs: 60_000 });
  const orm = mesh.db.orm;
  const vim = await insertVim(orm);
  const events = await insertEvents(orm, vim.id, 100);
  await runRetentionPass({ orm, limits: { vim_event: { maxRows: 40 } } });
  const oldest = events[60]!;
  t.is(await mark(orm, 'vim_event'), events[59]!);
  const client = mesh.vims();
  const watch = (afterEventId: number, want: number) =>
    readStream(async function* (options) {
      for await (const m of client.watchVims({ afterEventId }, options)) yield { id: m.eventId };
    }, want);

  assertOutOfRange(t, await watch(events[58]!, 1), 'after_event_id', oldest, 'vimmon-oldest-event-id');
  assertOutOfRange(t, await watch(events[0]!, 1), 'after_event_id', oldest, 'vimmon-oldest-event-id');
  // The edge (oldest - 1): nothing after it was removed.
  const edge = await watch(events[59]!, 40);
  t.is(edge.error, undefined);
  t.deepEqual(edge.received, events.slice(60));
  const above = await watch(oldest, 39);
  t.deepEqual(above.received, events.slice(61));

  // 0 is never out of range: a live stream that gets the next stored change.
  const live = readStream(async function* (options) {
    for await (const m of client.watchVims({ afterEventId: 0 }, options)) yield { id: m.eventId };
  }, 1);
  const conductorChannel = createChannel(mesh.conductors[0]!.address);
  t.teardown(() => conductorChannel.close());
  const conductor = createClient(VimMonitorAction2ConductorDefinition, conductorChannel);
  // Repeated until the live stream has one: it may connect after the first report.
  let done = false;
  void live.then(() => (done = true));
  let up = false;
  while (!done) {
    up = !up;
    await conductor.updateVim({
      vimId: vim.id,
      actionId: vim.actionId,
      status: up ? VimStatus.VIM_STATUS_UNREACHABLE : VimStatus.VIM_STATUS_REACHABLE,
    });
    await new Promise((r) => setTimeout(r, 100));
  }
  const got = await live;
  t.is(got.error, undefined);
  t.true(got.received[0]! > events.at(-1)!);
});

test('SubscribeAlarms after an id retention removed: OUT_OF_RANGE naming the oldest alarm held, with an ErrorInfo; the edge replays', async (t) => {
  const db = await createTestDatabase(t);
  const alarms = await insertAlarms(db.orm, 100, 0);
  await runRetentionPass({ orm: db.orm, limits: { alarm: { maxRows: 40 } } });
  const oldest = alarms[60]!;
  const { client, inspector } = await startInspectorHarness(t, undefined, { db });
  const subscribe = (afterAlarmId: number, want: number) =>
    readStream(async function* (options) {
      for await (const a of client.subscribeAlarms({ afterAlarmId }, options)) yield { id: a.alarmId };
    }, want);

  assertOutOfRange(t, await subscribe(alarms[58]!, 1), 'after_alarm_id', oldest, 'vimmon-oldest-alarm-id');
  const edge = await subscribe(alarms[59]!, 40);
  t.is(edge.error, undefined);
  t.deepEqual(edge.received, alarms.slice(60));
  // 0 replays what is held.
  t.deepEqual((await subscribe(0, 40)).received, alarms.slice(60));

  // The detail a program reads: google.rpc.ErrorInfo in grpc-status-details-bin.
  const channel = createChannel(inspector.address);
  t.teardown(() => channel.close());
  const rich = createClientFactory().use(errorDetailsClientMiddleware).create(InspectorServiceDefinition, channel);
  const err = await t.throwsAsync(async () => {
    for await (const _ of rich.subscribeAlarms({ afterAlarmId: alarms[10]! })) break;
  });
  t.true(err instanceof RichClientError);
  const info = (err as RichClientError).extra.find((d) => d.$type === ErrorInfo.$type) as ErrorInfo | undefined;
  t.is(info?.reason, 'RESUME_POINT_REMOVED');
  t.is(info?.metadata.oldest_held_id, String(oldest));
  t.is(info?.metadata.field, 'after_alarm_id');
});

test('the SDK hands OUT_OF_RANGE to its consumer as a ResumeGapError with the oldest id held, without reconnecting', async (t) => {
  const db = await createTestDatabase(t);
  const alarms = await insertAlarms(db.orm, 50, 0);
  await runRetentionPass({ orm: db.orm, limits: { alarm: { maxRows: 20 } } });
  const { inspector } = await startInspectorHarness(t, undefined, { db });
  const sdk = createVimmonClient({ inspector: inspector.address });
  t.teardown(() => sdk.close());
  let reconnects = 0;
  const err = await t.throwsAsync(async () => {
    for await (const _ of sdk.subscribeAlarms({ afterAlarmId: alarms[5]! }, { onReconnect: () => reconnects++ })) break;
  });
  t.true(err instanceof ResumeGapError, String(err));
  const gap = err as ResumeGapError;
  t.is(gap.code, Status.OUT_OF_RANGE);
  t.is(gap.oldestHeldId, alarms[30]!);
  t.is(gap.resumeAfter, alarms[5]!);
  t.is(reconnects, 0);
  // Resuming where it says goes on.
  const got: number[] = [];
  for await (const a of sdk.subscribeAlarms({ afterAlarmId: gap.oldestHeldId! - 1 })) {
    got.push(a.alarmId);
    if (got.length === 20) break;
  }
  t.deepEqual(got, alarms.slice(30));
});
