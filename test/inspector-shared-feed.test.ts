// The alarm feed of shared mode (db/alarm-feed.ts over db/table-feed.ts, order
// 'id') against real concurrent transactions: an alarm that commits before a
// lower id still open is held until that id commits or its transaction ends,
// so what the feed hands over is strictly increasing; an alarm too big for a
// NOTIFY arrives from the table.
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { alarmChannel, createAlarmFeed, type AlarmFeedRow } from '../db/alarm-feed.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createAlarmStore } from '../inspector/alarm-store.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

async function connect(t: ExecutionContext, url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  t.teardown(() => c.end());
  return c;
}

/** Inserts an alarm in the client's open transaction, announced as the store does; returns its id. */
async function insertAlarm(c: pg.Client, host: string): Promise<number> {
  const { rows } = await c.query<{ alarm_id: string }>(
    `with ins as (insert into alarm (type, host, severity, detected_at, raised_at)
                  values ('HOST_DOWN', $1, 'critical', now(), now()) returning *)
     select alarm_id, pg_notify($2, row_to_json(ins)::text) from ins`,
    [host, alarmChannel],
  );
  return Number(rows[0]!.alarm_id);
}

function startFeed(t: ExecutionContext, db: TestDatabase) {
  const got: AlarmFeedRow[] = [];
  const controller = new AbortController();
  const feed = createAlarmFeed({
    databaseUrl: db.url,
    logger: testLogger(),
    settleIntervalMs: 50,
    onChanges: (rows) => void got.push(...rows),
  });
  const running = feed.run(controller.signal);
  t.teardown(async () => {
    controller.abort();
    await running;
  });
  return { feed, got };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('an alarm committed above an id still open waits for it; ids handed over strictly increase', async (t) => {
  const db = await createTestDatabase(t);
  const { feed, got } = startFeed(t, db);
  await feed.ready();
  const slow = await connect(t, db.url);
  const fast = await connect(t, db.url);

  await slow.query('begin');
  const low = await insertAlarm(slow, 'slow');
  await fast.query('begin');
  const high = await insertAlarm(fast, 'fast');
  await fast.query('commit');
  t.true(low < high);
  // Heard, but held: the lower id may still commit.
  await sleep(300);
  t.deepEqual(
    got.map((r) => r.alarm_id),
    [],
    'nothing above the open id',
  );
  t.true(feed.watermark() < low);
  await slow.query('commit');
  await eventually(() => got.length === 2, 5_000, 'both alarms');
  t.deepEqual(
    got.map((r) => r.alarm_id),
    [low, high],
  );

  // A rolled-back insert leaves a gap that settles once its transaction is over.
  await slow.query('begin');
  const lost = await insertAlarm(slow, 'lost');
  const after = await insertAlarm(fast, 'after'); // autocommit
  await sleep(200);
  t.is(got.length, 2, 'held behind the open id');
  await slow.query('rollback');
  await eventually(() => got.length === 3, 5_000, 'the alarm after the rolled-back one');
  t.is(got[2]!.alarm_id, after);
  t.true(lost < after);
  t.is(feed.watermark(), after);
});

test('an alarm too big for a NOTIFY arrives from the table, between its neighbours', async (t) => {
  const db = await createTestDatabase(t);
  const { feed, got } = startFeed(t, db);
  await feed.ready();
  const store = createAlarmStore(db.orm, { idsAtInsert: true });
  const alarm = (host: string, cause = '') => ({
    alarmId: 0,
    type: AlarmType.ALARM_TYPE_HOST_DOWN,
    host,
    instanceId: '',
    instanceName: '',
    projectId: '',
    vimId: '',
    vimName: '',
    state: 'down',
    severity: 'critical',
    cause,
    monitor: 'm',
    monitorEventId: host,
    faultId: '',
    eventTime: undefined,
    detectedAt: new Date(),
    raisedAt: new Date(),
    expected: false,
  });
  const batch = [alarm('h1'), alarm('h2', 'x'.repeat(20_000)), alarm('h3')];
  await store.save({ alarms: batch, hosts: [], novaDone: [] });
  t.true(batch.every((a) => a.alarmId > 0));
  await eventually(() => got.length === 3, 5_000, 'the three alarms');
  t.deepEqual(
    got.map((r) => [r.alarm_id, r.host, r.cause.length]),
    batch.map((a) => [a.alarmId, a.host, a.cause.length]),
  );
});
