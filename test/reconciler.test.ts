// The reconciler alone against real PostgreSQL: it picks exactly the VIMs
// whose action is stale or was never confirmed, a second pass changes
// nothing, and two reconcilers at once never hand out one VIM twice.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { Orm } from '../db/connection.js';
import { createExecutorPool } from '../server/executors.js';
import { createHandoff } from '../server/handoff.js';
import { createReconciler } from '../server/reconciler.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { startRecordingExecutor } from './support/recording-executor.js';

async function insertVim(orm: Orm, o: { name: string; lastReportAgoMs?: number; assignedAgoMs: number; started: boolean; deleted?: boolean }) {
  const id = randomUUID();
  const actionId = randomUUID();
  await orm.em.fork().getConnection().execute(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, action_started, executor,
       created_at, updated_at, status_changed_at, last_report_at, deleted_at)
     values (?, ?, 'openstack', 'http://127.0.0.1:9/v3', 'tcp', 1000, 100, 1, 1, 1000, 3000, 'REACHABLE', ?,
       now() - ? * interval '1 millisecond', ?, 'gone:1', now(), now(), now(),
       ${o.lastReportAgoMs === undefined ? 'null' : `now() - ${o.lastReportAgoMs} * interval '1 millisecond'`},
       ${o.deleted ? 'now()' : 'null'})`,
    [id, o.name, actionId, o.assignedAgoMs, o.started],
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
    return createReconciler({ orm, pool, handoff, logger, intervalMs: 100, startGraceMs: 1_000, lostActionCheckMs: 3_600_000 });
  };
  return { db, executor, make };
}

test('a pass replaces stale and unconfirmed actions only; a second pass changes nothing', async (t) => {
  const { db, executor, make } = await setup(t);
  const stale = await insertVim(db.orm, { name: 'stale', lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true });
  const fresh = await insertVim(db.orm, { name: 'fresh', lastReportAgoMs: 100, assignedAgoMs: 60_000, started: true });
  const unconfirmed = await insertVim(db.orm, { name: 'unconfirmed', assignedAgoMs: 5_000, started: false });
  const starting = await insertVim(db.orm, { name: 'starting', assignedAgoMs: 100, started: false });
  const newAction = await insertVim(db.orm, { name: 'new-action', lastReportAgoMs: 10_000, assignedAgoMs: 500, started: true });
  const deleted = await insertVim(db.orm, { name: 'deleted', lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true, deleted: true });
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
  t.true(executor.starts.every((s) => s.actionId === rows.get(s.vimId)!.action_id), 'the executor got the ids now in the rows');

  const before = JSON.stringify(await db.orm.em.fork().getConnection().execute(`select * from vim order by id`));
  t.is(await reconciler.pass(), 0);
  const after = JSON.stringify(await db.orm.em.fork().getConnection().execute(`select * from vim order by id`));
  t.is(after, before, 'the second pass is a no-op');
  t.is(executor.starts.length, 2);
});

test('two reconcilers at once hand each stale VIM out exactly once', async (t) => {
  const { db, executor, make } = await setup(t);
  const ids = [];
  for (let i = 0; i < 120; i++) ids.push((await insertVim(db.orm, { name: `s-${i}`, lastReportAgoMs: 10_000, assignedAgoMs: 60_000, started: true })).id);
  const a = await make(await db.open());
  const b = await make(await db.open());
  const [na, nb] = await Promise.all([a.pass(), b.pass()]);
  t.is(na + nb, 120);
  const perVim = new Map<string, number>();
  for (const s of executor.starts) perVim.set(s.vimId, (perVim.get(s.vimId) ?? 0) + 1);
  t.is(perVim.size, 120);
  t.true([...perVim.values()].every((n) => n === 1));
});
