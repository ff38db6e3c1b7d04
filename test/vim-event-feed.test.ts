// Stored VIM status transitions through db/vim-event-feed.ts and its two
// consumers (the watch hub, the VIM alarm source) when the LISTEN connection
// is lost: a subscriber connected throughout gets every transition exactly
// once, including one that committed during the outage below an id already
// delivered (transactions commit out of id order), and a backlog of more than
// one page. The outage is made by refusing new connections to the database
// and ending the listener's backend, so that what commits meanwhile is heard
// of by no NOTIFY and must come from the table. Then the feed's own rules:
// when a gap in the ids is given up, the bound on gaps, the start point, a
// consumer slower than the notifications.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { createVimEventFeed, type VimEventChange, type VimEventFeedOptions } from '../db/vim-event-feed.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmDraft, AlarmHub } from '../inspector/alarm-stream.js';
import { createVimAlarmSource } from '../inspector/vim-alarms.js';
import { createWatchHub, type WatchHub } from '../server/watch-hub.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

/** A connection of the test's own, closed at teardown. */
async function connect(t: ExecutionContext, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a test that ends a transaction's backend on purpose reads the error where it queries
  await client.connect();
  t.teardown(() => client.end().catch(() => {}));
  return client;
}

async function insertVim(client: pg.Client): Promise<string> {
  const id = randomUUID();
  await client.query(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     values ($1, $2, 'openstack', 'http://192.0.2.1:5000/v3', 'tcp', 1000, 500, 1, 1, 10000, 30000, 'PENDING', gen_random_uuid(), now(), now(), now(), now())`,
    [id, `vim-${id.slice(0, 8)}`],
  );
  return id;
}

/**
 * Stores `count` transitions of one VIM and announces each, in one statement
 * and so one transaction, as the conductor does. Returns their ids.
 */
async function emit(client: pg.Client, vimId: string, count = 1, to = 'UNREACHABLE'): Promise<number[]> {
  const r = await client.query<{ ids: string[] | null }>(
    `with e as (
       insert into vim_event (vim_id, from_status, to_status, action_id, created_at)
       select v.id, 'REACHABLE', $3, v.action_id, now() from vim v, generate_series(1, $2::int) where v.id = $1
       returning id, vim_id, from_status, to_status, action_id, created_at)
     select array_agg(e.id order by e.id) as ids,
            count(pg_notify('vimmon_vim_status', json_build_object('eventId', e.id, 'vimId', e.vim_id, 'vimName', v.name, 'from', e.from_status,
              'to', e.to_status, 'actionId', e.action_id, 'changedAt', e.created_at, 'ownerProject', v.owner_project)::text)) as notified
       from e join vim v on v.id = e.vim_id`,
    [vimId, count, to],
  );
  return (r.rows[0]!.ids ?? []).map(Number);
}

/**
 * Closes the database to new connections and ends every backend on it but
 * those of `keep`: the listener's connection is gone and cannot come back
 * until `reopen`.
 */
async function cutListener(t: ExecutionContext, db: TestDatabase, keep: pg.Client[]): Promise<{ reopen(): Promise<void> }> {
  const pids = await Promise.all(keep.map(async (c) => (await c.query<{ pid: number }>(`select pg_backend_pid() as pid`)).rows[0]!.pid));
  // A database cannot be closed from a session on it: the server's maintenance database can.
  const url = new URL(db.url);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const server = await connect(t, url.toString());
  const allow = (yes: boolean) => server.query(`alter database ${pg.escapeIdentifier(name)} allow_connections ${yes}`);
  await allow(false);
  t.teardown(() => allow(true).catch(() => {}));
  const ended = await server.query(
    `select pg_terminate_backend(pid, 10000) from pg_stat_activity where datname = $1 and pid <> all($2::int[]) and backend_type = 'client backend'`,
    [name, pids],
  );
  if (ended.rowCount === 0) throw new Error('no listener to end');
  return { reopen: () => allow(true).then(() => undefined) };
}

/** A hub whose changes are recorded, event id by event id, from when it is ready. */
async function startHub(t: ExecutionContext, db: TestDatabase) {
  const hub: WatchHub = createWatchHub({ databaseUrl: db.url, logger: testLogger() });
  const loops = new AbortController();
  const running = hub.run(loops.signal);
  t.teardown(async () => {
    loops.abort();
    await running;
  });
  await hub.ready();
  const seen: number[] = [];
  hub.subscribe(({ change }) => seen.push(change.eventId));
  return { hub, seen };
}

/** Ids stored after `after`, in id order. */
async function storedAfter(client: pg.Client, after: number): Promise<number[]> {
  return (await client.query<{ id: string }>(`select id from vim_event where id > $1 order by id`, [after])).rows.map((r) => Number(r.id));
}

const sorted = (ids: number[]) => [...ids].sort((a, b) => a - b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a transition that commits during an outage below an id already delivered reaches a watcher connected throughout, once', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const early = await connect(t, db.url);
  const late = await connect(t, db.url);
  const vimId = await insertVim(admin);
  const [before] = (await admin.query<{ id: string }>(`select coalesce(max(id), 0) as id from vim_event`)).rows;
  const { hub, seen } = await startHub(t, db);

  const [first] = await emit(admin, vimId);
  await eventually(() => seen.includes(first!), 5_000, 'a live transition');

  // `early` takes the lower id and commits last, after the listener is gone.
  await early.query('begin');
  const [low] = await emit(early, vimId);
  await late.query('begin');
  const [high] = await emit(late, vimId);
  await late.query('commit');
  t.true(low! < high!);
  await eventually(() => seen.includes(high!), 5_000, 'the higher id, live');

  const cut = await cutListener(t, db, [admin, early, late]);
  await early.query('commit');
  await cut.reopen();
  const back = new AbortController();
  t.teardown(() => back.abort());
  await hub.barrier(back.signal); // resolves once the hub is back and has caught up

  const [last] = await emit(admin, vimId);
  await eventually(() => seen.includes(last!), 10_000, 'a live transition after the outage');
  await sleep(300); // nothing more comes
  const stored = await storedAfter(admin, Number(before!.id));
  t.deepEqual(sorted(seen), stored, `delivered ${seen.join(',')}; stored ${stored.join(',')}`);
  t.is(new Set(seen).size, seen.length, 'no transition twice');
});

test('a backlog of more than 10,000 transitions stored during an outage is delivered whole, once', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const vimId = await insertVim(admin);
  const { hub, seen } = await startHub(t, db);
  const [first] = await emit(admin, vimId);
  await eventually(() => seen.includes(first!), 5_000, 'a live transition');

  const cut = await cutListener(t, db, [admin]);
  const backlog = await emit(admin, vimId, 12_345);
  await cut.reopen();
  const back = new AbortController();
  t.teardown(() => back.abort());
  await hub.barrier(back.signal);

  const [last] = await emit(admin, vimId);
  await eventually(() => seen.includes(last!), 20_000, 'a live transition after the outage');
  await sleep(300);
  const delivered = new Set(seen);
  const missing = backlog.filter((id) => !delivered.has(id));
  t.is(missing.length, 0, `${missing.length} of the backlog missing, from ${missing[0]} to ${missing.at(-1)}`);
  t.deepEqual(sorted(seen), [first!, ...backlog, last!]);
  t.is(new Set(seen).size, seen.length, 'no transition twice');
});

test('VIM alarms: a transition that commits late, more than a hundred ids below the newest, still raises its alarm, once', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const slow = await connect(t, db.url);
  const watched = await insertVim(admin);
  const busy = await insertVim(admin);
  const raised: AlarmDraft[] = [];
  const hub = {
    raise: async (drafts: AlarmDraft[]) => {
      raised.push(...drafts);
      return [];
    },
  } as unknown as AlarmHub;
  const source = createVimAlarmSource({ databaseUrl: db.url, orm: db.orm, hub, logger: testLogger() });
  const loops = new AbortController();
  const running = source.run(loops.signal);
  t.teardown(async () => {
    loops.abort();
    await running;
  });
  // Transitions stored before it first connects count as history: go down until one is heard.
  await eventually(
    async () => {
      await emit(admin, busy, 1, 'REACHABLE');
      await emit(admin, busy, 1, 'UNREACHABLE');
      await sleep(100);
      return raised.some((a) => a.vimId === busy);
    },
    10_000,
    'the alarm source running',
  );

  // `watched` goes down in a transaction that commits after 150 other transitions
  // and after the listener is gone.
  await slow.query('begin');
  const [down] = await emit(slow, watched);
  await emit(admin, busy, 150, 'PENDING');
  const cut = await cutListener(t, db, [admin, slow]);
  await slow.query('commit');
  await cut.reopen();

  const alarm = await eventually(() => raised.find((a) => a.vimId === watched), 10_000, `the alarm of event ${down}`);
  t.like(alarm, { type: AlarmType.ALARM_TYPE_VIM_UNREACHABLE, vimEventId: down });
  const [up] = await emit(admin, watched, 1, 'REACHABLE');
  await eventually(() => raised.some((a) => a.vimEventId === up), 5_000, 'the recovery');
  await sleep(300);
  t.deepEqual(
    raised.filter((a) => a.vimId === watched).map((a) => [AlarmType[a.type], a.vimEventId]),
    [
      ['ALARM_TYPE_VIM_UNREACHABLE', down],
      ['ALARM_TYPE_VIM_RECOVERED', up],
    ],
  );
});

// ---------------------------------------------------------------- the feed itself

function startFeed(t: ExecutionContext, db: TestDatabase, options: Partial<VimEventFeedOptions> = {}) {
  const got: VimEventChange[] = [];
  const feed = createVimEventFeed({
    databaseUrl: db.url,
    logger: testLogger(),
    onChanges: (changes) => {
      got.push(...changes);
    },
    ...options,
  });
  const loops = new AbortController();
  const running = feed.run(loops.signal);
  t.teardown(async () => {
    loops.abort();
    await running;
  });
  return { feed, got, ids: () => got.map((c) => c.eventId) };
}

test('a gap is kept while the transaction that may fill it is open, and forgotten once it rolls back', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const open = await connect(t, db.url);
  const vimId = await insertVim(admin);
  const { feed, ids } = startFeed(t, db, { settleIntervalMs: 50 });
  await feed.ready();

  await open.query('begin');
  const [pending] = await emit(open, vimId);
  const [committed] = await emit(admin, vimId);
  await eventually(() => ids().includes(committed!), 5_000, 'the committed transition');
  await sleep(500); // ten checks
  t.is(feed.watermark(), pending! - 1, 'nothing at or above the open id is complete');
  t.is(feed.stats().gaps, 1);

  await open.query('rollback');
  await eventually(() => feed.stats().gaps === 0, 5_000, 'the gap forgotten');
  t.is(feed.watermark(), committed!);
  t.deepEqual(ids(), [committed!]);
});

test('open gaps are bounded: beyond maxGaps the lowest are forgotten', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const stuck = await connect(t, db.url);
  const other = await connect(t, db.url);
  const vimId = await insertVim(admin);
  const { feed, ids } = startFeed(t, db, { settleIntervalMs: 50, maxGaps: 3 });
  await feed.ready();
  // A transaction that holds vim_event's insert lock throughout: no gap can be settled.
  await stuck.query('begin');
  await emit(stuck, vimId);
  for (let i = 0; i < 5; i++) {
    await other.query('begin');
    await emit(other, vimId);
    await other.query('rollback');
    await emit(admin, vimId);
  }
  await eventually(() => ids().length === 5, 5_000, 'the committed transitions');
  await sleep(300);
  t.is(feed.stats().gaps, 3);
  await stuck.query('rollback');
  await eventually(() => feed.stats().gaps === 0, 5_000, 'every gap settled');
});

test('a transition drawn before the feed started and committed after is handed over; a start point replays in pages', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const late = await connect(t, db.url);
  const [vimId, otherVim] = [await insertVim(admin), await insertVim(admin)];
  const stored = await emit(admin, vimId, 30);
  await late.query('begin');
  const [drawn] = await emit(late, otherVim);
  const [newest] = await emit(admin, vimId);

  // From now: the open id is below the start, yet not history.
  const now = startFeed(t, db);
  // From the 10th stored transition, seven rows a page.
  let startedWith = 0;
  const replay = startFeed(t, db, {
    pageSize: 7,
    startAfter: (n) => {
      startedWith = n;
      return stored[9]!;
    },
  });
  await Promise.all([now.feed.ready(), replay.feed.ready()]);
  t.is(startedWith, newest!);
  t.deepEqual(replay.ids(), [...stored.slice(10), newest!], 'the stored transitions after the start point, in order');
  t.deepEqual(now.ids(), []);
  t.true(now.feed.watermark() < drawn!);

  // It commits while both are cut off: the table must say so.
  const cut = await cutListener(t, db, [admin, late]);
  await late.query('commit');
  await cut.reopen();
  const back = new AbortController();
  t.teardown(() => back.abort());
  await Promise.all([now.feed.barrier(back.signal), replay.feed.barrier(back.signal)]);
  t.deepEqual(now.ids(), [drawn!]);
  t.deepEqual(replay.ids(), [...stored.slice(10), newest!, drawn!]);
  t.is(now.feed.watermark(), newest!);
});

test('a consumer slower than the notifications: they are dropped and read from the table, every VIM in order, each once', async (t) => {
  const db = await createTestDatabase(t);
  const admin = await connect(t, db.url);
  const vims: string[] = [];
  for (let i = 0; i < 4; i++) vims.push(await insertVim(admin));
  const writers = await Promise.all(vims.map(() => connect(t, db.url)));
  const got: VimEventChange[] = [];
  let dropped = 0;
  const logger = testLogger();
  const { feed } = startFeed(t, db, {
    maxPending: 10,
    pageSize: 16,
    logger: Object.assign(Object.create(logger) as typeof logger, {
      warn: (message: string, fields?: Record<string, unknown>) => {
        if (message.includes('pile up')) dropped++;
        logger.warn(message, fields);
      },
    }),
    onChanges: async (changes) => {
      got.push(...changes);
      await sleep(50);
    },
  });
  await feed.ready();
  const emitted = (
    await Promise.all(
      vims.map(async (vimId, i) => {
        const ids: number[] = [];
        for (let n = 0; n < 150; n++) ids.push(...(await emit(writers[i]!, vimId)));
        return ids;
      }),
    )
  ).flat();
  await eventually(() => got.length >= emitted.length, 20_000, `${emitted.length} transitions`);
  await sleep(300);
  t.true(dropped > 0, 'notifications were dropped');
  const ids = got.map((c) => c.eventId);
  t.is(new Set(ids).size, ids.length, 'no transition twice');
  t.deepEqual(sorted(ids), sorted(emitted));
  for (const vimId of vims) {
    const mine = got.filter((c) => c.vimId === vimId).map((c) => c.eventId);
    t.deepEqual(mine, sorted(mine), 'a VIM in order');
  }
});
