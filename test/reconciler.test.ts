// The reconciler alone against real PostgreSQL: it picks exactly the VIMs
// whose action is stale or was never confirmed, a second pass changes
// nothing, two reconcilers at once never hand out one VIM twice, nothing is
// claimed while no executor is live, a VIM whose start fails backs off, and the
// lost-action check asks executors at once without holding up other claims.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { Orm } from '../db/connection.js';
import { createExecutorPool, type ExecutorPool } from '../server/executors.js';
import { createHandoff, type Handoff } from '../server/handoff.js';
import { createReconciler } from '../server/reconciler.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { startRecordingExecutor } from './support/recording-executor.js';
import { eventually } from './support/wait.js';

async function insertVim(
  orm: Orm,
  o: { name: string; lastReportAgoMs?: number; assignedAgoMs: number; started: boolean; deleted?: boolean; executor?: string },
) {
  const id = randomUUID();
  const actionId = randomUUID();
  await orm.em
    .fork()
    .getConnection()
    .execute(
      `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, action_started, executor,
       created_at, updated_at, status_changed_at, last_report_at, deleted_at)
     values (?, ?, 'openstack', 'http://127.0.0.1:9/v3', 'tcp', 1000, 100, 1, 1, 1000, 3000, 'REACHABLE', ?,
       now() - ? * interval '1 millisecond', ?, ?, now(), now(), now(),
       ${o.lastReportAgoMs === undefined ? 'null' : `now() - ${o.lastReportAgoMs} * interval '1 millisecond'`},
       ${o.deleted ? 'now()' : 'null'})`,
      [id, o.name, actionId, o.assignedAgoMs, o.started, o.executor ?? 'gone:1'],
    );
  return { id, actionId };
}

async function setup(t: import('ava').ExecutionContext) {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const executor = await startRecordingExecutor(logger);
  t.teardown(() => executor.stop());
  const make = async (orm: Orm) => {
    const pool = createExecutorPool({ executors: [executor.address], logger });
    t.teardown(() => pool.close());
    const handoff = createHandoff({ orm, pool, logger });
    return createReconciler({
      orm,
      pool,
      handoff,
      logger,
      key: Buffer.alloc(32, 3),
      intervalMs: 100,
      // Far above a pass's time on a loaded machine: 'starting' must stay within its grace.
      startGraceMs: 10_000,
      lostActionCheckMs: 3_600_000,
    });
  };
  return { db, executor, make };
}

test('a pass replaces stale and unconfirmed actions only; a second pass changes nothing', async (t) => {
  const { db, executor, make } = await setup(t);
  const stale = await insertVim(db.orm, { name: 'stale', lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true });
  const fresh = await insertVim(db.orm, { name: 'fresh', lastReportAgoMs: 100, assignedAgoMs: 60_000, started: true });
  const unconfirmed = await insertVim(db.orm, { name: 'unconfirmed', assignedAgoMs: 30_000, started: false });
  const starting = await insertVim(db.orm, { name: 'starting', assignedAgoMs: 100, started: false });
  const newAction = await insertVim(db.orm, { name: 'new-action', lastReportAgoMs: 10_000, assignedAgoMs: 500, started: true });
  const deleted = await insertVim(db.orm, {
    name: 'deleted',
    lastReportAgoMs: 10_000,
    assignedAgoMs: 60_000,
    started: true,
    deleted: true,
  });
  const reconciler = await make(db.orm);

  t.is(await reconciler.pass(), 2);
  type Row = { id: string; action_id: string; action_started: boolean; executor: string };
  const list = (await db.orm.em.fork().getConnection().execute(`select id, action_id, action_started, executor from vim`)) as Row[];
  const rows = new Map(list.map((r) => [r.id, r]));
  const changed = (v: { id: string; actionId: string }) => rows.get(v.id)!.action_id !== v.actionId;
  t.true(changed(stale));
  t.true(changed(unconfirmed));
  t.false(changed(fresh));
  t.false(changed(starting), 'a start still within its grace is left alone');
  t.false(changed(newAction), 'a new action gets a whole stale window');
  t.false(changed(deleted));
  t.deepEqual(new Set(executor.starts.map((s) => s.vimId)), new Set([stale.id, unconfirmed.id]));
  t.true(rows.get(stale.id)!.action_started);
  t.is(rows.get(stale.id)!.executor, executor.address);
  t.true(
    executor.starts.every((s) => s.actionId === rows.get(s.vimId)!.action_id),
    'the executor got the ids now in the rows',
  );

  const before = JSON.stringify(await db.orm.em.fork().getConnection().execute(`select * from vim order by id`));
  t.is(await reconciler.pass(), 0);
  const after = JSON.stringify(await db.orm.em.fork().getConnection().execute(`select * from vim order by id`));
  t.is(after, before, 'the second pass is a no-op');
  t.is(executor.starts.length, 2);
});

test('two reconcilers at once hand each stale VIM out exactly once', async (t) => {
  const { db, executor, make } = await setup(t);
  const ids = [];
  for (let i = 0; i < 120; i++)
    ids.push((await insertVim(db.orm, { name: `s-${i}`, lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true })).id);
  const a = await make(await db.open());
  const b = await make(await db.open());
  const [na, nb] = await Promise.all([a.pass(), b.pass()]);
  t.is(na + nb, 120);
  const perVim = new Map<string, number>();
  for (const s of executor.starts) perVim.set(s.vimId, (perVim.get(s.vimId) ?? 0) + 1);
  t.is(perVim.size, 120);
  t.true([...perVim.values()].every((n) => n === 1));
});

/** A reconciler whose pool polls health (every 50 ms) as a server's does; launches counted. */
async function polled(
  t: import('ava').ExecutionContext,
  orm: Orm,
  executorAddress: string,
  o: { startGraceMs?: number; intervalMs?: number } = {},
) {
  const logger = testLogger();
  const pool = createExecutorPool({ executors: [executorAddress], logger, healthIntervalMs: 50 });
  const polling = new AbortController();
  const running = pool.run(polling.signal);
  t.teardown(async () => {
    polling.abort();
    await running;
    pool.close();
  });
  const real = createHandoff({ orm, pool, logger });
  const calls = { launches: 0, stops: 0 };
  // The real hand-off, its calls counted.
  const handoff: Handoff = {
    launch(...a) {
      calls.launches++;
      return real.launch(...a);
    },
    launchSuccessor(...a) {
      calls.launches++;
      return real.launchSuccessor(...a);
    },
    stop(...a) {
      calls.stops++;
      return real.stop(...a);
    },
  };
  const reconciler = createReconciler({
    orm,
    pool,
    handoff,
    logger,
    key: Buffer.alloc(32, 3),
    intervalMs: o.intervalMs ?? 100,
    startGraceMs: o.startGraceMs ?? 1_000,
    lostActionCheckMs: 3_600_000,
    startBackoff: { baseDelayMs: 200, maxDelayMs: 1_600 },
  });
  return { pool, reconciler, calls };
}

test('no executor live: a pass writes nothing and calls nothing; when one comes back its VIMs start at once', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  // An address where an executor was and is no more.
  const first = await startRecordingExecutor(logger);
  const address = first.address;
  await first.stop();
  const { pool, reconciler, calls } = await polled(t, db.orm, address, { intervalMs: 60_000 });
  await eventually(() => pool.usable().length === 0, 10_000, 'the executor known not live');
  const vims = [
    await insertVim(db.orm, { name: 'unconfirmed-1', assignedAgoMs: 5_000, started: false }),
    await insertVim(db.orm, { name: 'unconfirmed-2', assignedAgoMs: 5_000, started: false }),
    await insertVim(db.orm, { name: 'stale', lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true }),
  ];
  // xmin changes with every write of a row (an UPDATE makes a new row version).
  const versions = () => db.orm.em.fork().getConnection().execute(`select id, xmin::text as v, start_attempts from vim order by id`);
  const before = await versions();
  t.is(await reconciler.pass(), 0);
  t.is(await reconciler.pass(), 0);
  t.deepEqual(await versions(), before, 'no row written');
  t.deepEqual(calls, { launches: 0, stops: 0 }, 'no executor called');

  // Back on its address: the pool's health change wakes the loop (its interval is a minute).
  const loop = new AbortController();
  const looping = reconciler.run(loop.signal);
  t.teardown(async () => {
    loop.abort();
    await looping;
  });
  const back = await startRecordingExecutor(logger, address);
  t.teardown(() => back.stop());
  await eventually(() => back.starts.length === vims.length, 15_000, 'every VIM started on the executor that came back');
  t.deepEqual(back.starts.map((s) => s.vimId).sort(), vims.map((v) => v.id).sort());
});

test('a VIM whose start keeps failing is retried at growing intervals, capped; a start resets the backoff', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const executor = await startRecordingExecutor(logger);
  t.teardown(() => executor.stop());
  const { pool, reconciler } = await polled(t, db.orm, executor.address, { startGraceMs: 50 });
  await eventually(() => pool.live().length === 1, 10_000, 'the executor live');
  executor.failStarts(1_000);
  const vim = await insertVim(db.orm, { name: 'failing', assignedAgoMs: 5_000, started: false });
  type Row = { start_attempts: number; claimed: string; next: string; left_ms: number };
  const read = async () =>
    (
      (await db.orm.em
        .fork()
        .getConnection()
        .execute(
          `select start_attempts, action_assigned_at::text as claimed, next_attempt_at::text as next,
             extract(epoch from next_attempt_at - now()) * 1000 as left_ms from vim where id = ?`,
          [vim.id],
        )) as Row[]
    )[0]!;
  // Passes as fast as a busy loop would make them; the backoff alone spaces the claims.
  const seen: Row[] = [];
  await eventually(
    async () => {
      await reconciler.pass();
      const r = await read();
      if (r.start_attempts > (seen.at(-1)?.start_attempts ?? 0)) {
        seen.push(r);
        t.true(Number(r.left_ms) <= 1_600, `attempt ${r.start_attempts}: waits ${r.left_ms} ms, within the 1.6 s cap`);
      }
      return r.start_attempts >= 6;
    },
    40_000,
    'six failed starts',
    25,
  );
  t.deepEqual(
    seen.map((r) => r.start_attempts),
    [1, 2, 3, 4, 5, 6],
    'one claim per backoff, none skipped or doubled',
  );
  for (let i = 0; i < seen.length; i++) {
    const r = seen[i]!;
    // The wait was set after the claim: at least half its cap (equal jitter) past the claim.
    const cap = Math.min(1_600, 200 * 2 ** i);
    const waitMs = Date.parse(r.next) - Date.parse(r.claimed);
    t.true(waitMs >= cap / 2, `attempt ${i + 1}: ${waitMs} ms ≥ ${cap / 2}`);
    // And no claim came before the time the previous failure set.
    if (i > 0) t.true(Date.parse(r.claimed) >= Date.parse(seen[i - 1]!.next), `claim ${i + 1} waited for its backoff`);
  }
  t.true(Date.parse(seen[4]!.next) - Date.parse(seen[4]!.claimed) >= 800, 'the waits grew: attempt 5 waited at least 0.8 s');

  // Starts work again: the next claim starts it, and the backoff is gone.
  executor.failStarts(0);
  await eventually(
    async () => {
      await reconciler.pass();
      return executor.starts.some((s) => s.vimId === vim.id);
    },
    10_000,
    'a successful start',
    25,
  );
  const after = (await db.orm.em
    .fork()
    .getConnection()
    .execute(`select start_attempts, next_attempt_at, action_started from vim where id = ?`, [vim.id])) as Array<Record<string, unknown>>;
  t.deepEqual(after[0], { start_attempts: 0, next_attempt_at: null, action_started: true });
});

test('the lost-action check asks executors at once, and stale VIMs are not held up behind it', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const a = await startRecordingExecutor(logger);
  const b = await startRecordingExecutor(logger);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  const real = createExecutorPool({ executors: [a.address, b.address], logger });
  t.teardown(() => real.close());
  const stale = await insertVim(db.orm, { name: 'stale', lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true });
  // The check's ListActions of each executor waits until both were asked and the stale VIM was
  // started: asked one after another, or with claims waiting behind the check, it never gets there.
  const asked = new Set<string>();
  const seen = { bothAskedAtOnce: [] as boolean[], staleStartedMeanwhile: [] as boolean[] };
  const pool: ExecutorPool = {
    ...real,
    // Both live, as the pool's health polls would say (this test does not run them).
    live: () => [a.address, b.address],
    async runningActions(executor, timeoutMs) {
      asked.add(executor);
      seen.bothAskedAtOnce.push(await eventually(() => asked.size === 2, 10_000, 'both executors asked').catch(() => false));
      seen.staleStartedMeanwhile.push(
        await eventually(() => [...a.starts, ...b.starts].some((s) => s.vimId === stale.id), 10_000, 'the stale VIM started').catch(
          () => false,
        ),
      );
      return real.runningActions(executor, timeoutMs);
    },
  };
  const reconciler = createReconciler({
    orm: db.orm,
    pool,
    handoff: createHandoff({ orm: db.orm, pool, logger }),
    logger,
    key: Buffer.alloc(32, 3),
    intervalMs: 60_000,
    startGraceMs: 1_000,
  });
  const onA = await insertVim(db.orm, {
    name: 'lost-on-a',
    lastReportAgoMs: 100,
    assignedAgoMs: 60_000,
    started: true,
    executor: a.address,
  });
  const onB = await insertVim(db.orm, {
    name: 'lost-on-b',
    lastReportAgoMs: 100,
    assignedAgoMs: 60_000,
    started: true,
    executor: b.address,
  });
  t.is(await reconciler.pass(), 3, 'the stale VIM, then the two whose actions their executors no longer run');
  t.deepEqual(seen.bothAskedAtOnce, [true, true], 'each executor asked while the other was');
  t.deepEqual(seen.staleStartedMeanwhile, [true, true], 'the stale VIM started before the check was over');
  const started = [...a.starts, ...b.starts].map((s) => s.vimId).sort();
  t.deepEqual(started, [stale.id, onA.id, onB.id].sort(), 'each started once');
});

/**
 * One recording executor, a pool that calls it live and counts its listings and instance-id
 * calls, and a reconciler whose every pass runs the lost-action check.
 */
async function checkingEveryPass(t: import('ava').ExecutionContext, startGraceMs: number) {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const first = await startRecordingExecutor(logger);
  const address = first.address;
  const executor = { current: first };
  t.teardown(() => executor.current.stop());
  const real = createExecutorPool({ executors: [address], logger });
  t.teardown(() => real.close());
  const calls = { listings: 0, instanceIds: 0 };
  const pool: ExecutorPool = {
    ...real,
    live: () => [address],
    runningActions(...a) {
      calls.listings++;
      return real.runningActions(...a);
    },
    instanceId(...a) {
      calls.instanceIds++;
      return real.instanceId(...a);
    },
  };
  const reconciler = createReconciler({
    orm: db.orm,
    pool,
    handoff: createHandoff({ orm: db.orm, pool, logger }),
    logger,
    key: Buffer.alloc(32, 3),
    intervalMs: 60_000,
    startGraceMs,
    lostActionCheckMs: 0, // every pass asks
  });
  /** Stops the executor and starts a new process on its address: a new instance id, no actions. */
  const restart = async () => {
    await executor.current.stop();
    executor.current = await startRecordingExecutor(logger, address);
  };
  return { db, address, executor, calls, reconciler, restart };
}

test('the lost-action check lists an executor again only when its instance id changed: once it restarted, its VIMs move at once', async (t) => {
  const { db, address, executor, calls, reconciler, restart } = await checkingEveryPass(t, 1_000);
  // Its executor never ran it: the first (full) listing finds it lost.
  const vim = await insertVim(db.orm, { name: 'on-a', lastReportAgoMs: 100, assignedAgoMs: 60_000, started: true, executor: address });
  t.is(await reconciler.pass(), 1);
  t.is(calls.listings, 1, 'the first check lists the executor (no instance id known)');
  const age = () =>
    db.orm.em
      .fork()
      .getConnection()
      .execute(`update vim set action_assigned_at = now() - interval '1 minute', last_report_at = now() where id = ?`, [vim.id]);
  await age(); // the new action is old enough to judge, and reporting
  t.is(await reconciler.pass(), 0);
  t.is(await reconciler.pass(), 0);
  t.is(calls.listings, 1, 'the same instance: not listed again');
  t.true(calls.instanceIds >= 2);

  // A restart on the same address: a new instance that runs nothing.
  await restart();
  const replaced = await eventually(async () => (await reconciler.pass()) || undefined, 20_000, 'the restarted executor’s VIM replaced');
  t.is(replaced, 1);
  t.is(calls.listings, 2, 'listed once more, after the restart');
  t.is(executor.current.starts.length, 1, 'started on the restarted executor');
  t.is(executor.current.starts[0]!.vimId, vim.id);
});

test('an action too young to judge and missing from the listing keeps its executor listed until it can be judged', async (t) => {
  const { db, address, executor, calls, reconciler } = await checkingEveryPass(t, 1_500);
  // Acknowledged a moment ago, yet not running there: lost by a restart just before the listing.
  const vim = await insertVim(db.orm, { name: 'young', lastReportAgoMs: 10, assignedAgoMs: 10, started: true, executor: address });
  t.is(await reconciler.pass(), 0, 'too young to judge');
  t.is(await reconciler.pass(), 0);
  t.is(calls.listings, 2, 'listed again: the instance id is not trusted to hide it');
  const replaced = await eventually(async () => (await reconciler.pass()) || undefined, 20_000, 'judged lost once old enough');
  t.is(replaced, 1);
  t.is(executor.current.starts[0]!.vimId, vim.id);
});
