// The conductor against a real PostgreSQL: the fence, the event trail, the
// NOTIFY, validation at the edge, and the contract every role serves.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition, type VimMonitorAction2ConductorClient } from '../gen/vimmon/conductor/v1/conductor.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { createLogger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import { parseVimStatusNotification, vimStatusChannel, type VimStatusNotification } from '../db/notifications.js';
import type { Orm } from '../db/connection.js';
import { startConductor, type ConductorOptions } from '../conductor/main.js';
import { createFencedStatusWriter, type ReportOutcome } from '../conductor/fencing.js';
import { UnavailableError } from '../common/errors.js';
import { createTestDatabase, unreachableDatabase, type TestDatabase } from './support/database.js';
import { walkReflection } from './support/reflection-client.js';

const logger = createLogger({ level: 'silent' });
const conductorService = VimMonitorAction2ConductorDefinition.fullName;

interface Harness {
  db: TestDatabase;
  sql: pg.Client;
  conductor: RunningRole;
  client: VimMonitorAction2ConductorClient;
}

async function startHarness(
  t: ExecutionContext,
  orm?: Orm,
  options: Pick<ConductorOptions, 'maxStatementsInFlight' | 'maxReportsPerStatement' | 'maxQueuedReports'> = {},
): Promise<Harness> {
  const db = await createTestDatabase(t);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  t.teardown(() => sql.end());
  const conductor = await startConductor({ logger, orm: orm ?? db.orm, address: '127.0.0.1:0', ...options });
  t.teardown(() => conductor.stop());
  const channel = createChannel(conductor.address);
  t.teardown(() => channel.close());
  return { db, sql, conductor, client: createClient(VimMonitorAction2ConductorDefinition, channel) };
}

interface VimRowInput {
  status?: 'PENDING' | 'REACHABLE' | 'UNREACHABLE';
  actionId?: string;
  deleted?: boolean;
}

async function insertVim(sql: pg.Client, input: VimRowInput = {}): Promise<{ id: string; actionId: string }> {
  const id = randomUUID();
  const actionId = input.actionId ?? randomUUID();
  await sql.query(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                      report_interval_ms, stale_after_ms, status, action_id, action_assigned_at,
                      created_at, updated_at, status_changed_at, deleted_at)
     values ($1, $2, 'openstack', 'https://keystone.example:5000/v3', 'tcp', 1000, 500, 1, 3, 10000, 30000, $3, $4,
             now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',
             case when $5::boolean then now() - interval '1 minute' end)`,
    [id, `vim-${id.slice(0, 8)}`, input.status ?? 'PENDING', actionId, input.deleted ?? false],
  );
  return { id, actionId };
}

async function vimRow(sql: pg.Client, id: string) {
  const { rows } = await sql.query(`select * from vim where id = $1`, [id]);
  return rows[0] as Record<string, unknown> & {
    status: string;
    last_report_at: Date | null;
    status_changed_at: Date;
    updated_at: Date;
    action_id: string;
  };
}

async function events(sql: pg.Client, vimId: string) {
  const { rows } = await sql.query(
    `select id, from_status, to_status, action_id, created_at from vim_event where vim_id = $1 order by id`,
    [vimId],
  );
  return rows as Array<{ id: string; from_status: string; to_status: string; action_id: string; created_at: Date }>;
}

async function listen(t: ExecutionContext, url: string): Promise<VimStatusNotification[]> {
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  t.teardown(() => listener.end());
  const received: VimStatusNotification[] = [];
  listener.on('notification', (n) => {
    if (n.channel !== vimStatusChannel) return;
    const parsed = parseVimStatusNotification(n.payload ?? '');
    if (parsed) received.push(parsed);
  });
  await listener.query(`listen ${vimStatusChannel}`);
  return received;
}

/** Notifications arrive asynchronously: a round trip on the listener's server flushes nothing, so poll briefly. */
async function settle(predicate: () => boolean, ms = 1_000): Promise<void> {
  const until = Date.now() + ms;
  while (!predicate() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
}

async function rejectsWith(t: ExecutionContext, call: Promise<unknown>, code: Status, field?: string) {
  const err = await t.throwsAsync(call, { instanceOf: ClientError });
  t.is(err?.code, code, err?.details);
  if (field) t.regex(err?.details ?? '', new RegExp(`^${field}:`), `details name ${field}`);
}

test('an accepted report stores the status and the time of the report', async (t) => {
  const { sql, client } = await startHarness(t);
  const vim = await insertVim(sql, { status: 'PENDING' });
  const before = await sql.query(`select now() as now`);
  const reply = await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE });
  t.is(reply.status, VimStatus.VIM_STATUS_REACHABLE);
  const row = await vimRow(sql, vim.id);
  t.is(row.status, 'REACHABLE');
  t.truthy(row.last_report_at);
  t.true(row.last_report_at!.getTime() >= (before.rows[0].now as Date).getTime());
  t.is(row.action_id, vim.actionId, 'a report of the current action leaves the fencing token as it is');
});

test('a transition writes one event row and one NOTIFY, in the same commit', async (t) => {
  const { db, sql, client } = await startHarness(t);
  const notifications = await listen(t, db.url);
  const vim = await insertVim(sql, { status: 'PENDING' });
  const old = await vimRow(sql, vim.id);

  const reply = await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_UNREACHABLE });
  t.is(reply.status, VimStatus.VIM_STATUS_UNREACHABLE);

  const row = await vimRow(sql, vim.id);
  t.true(row.status_changed_at.getTime() > old.status_changed_at.getTime());
  t.true(row.updated_at.getTime() > old.updated_at.getTime());
  const trail = await events(sql, vim.id);
  t.is(trail.length, 1);
  t.like(trail[0], { from_status: 'PENDING', to_status: 'UNREACHABLE', action_id: vim.actionId });
  t.is(trail[0].created_at.getTime(), row.status_changed_at.getTime());

  await settle(() => notifications.length >= 1);
  await new Promise((r) => setTimeout(r, 100)); // a second NOTIFY would have arrived by now
  t.is(notifications.length, 1);
  t.deepEqual(notifications[0], {
    eventId: Number(trail[0].id),
    vimId: vim.id,
    vimName: `vim-${vim.id.slice(0, 8)}`,
    from: 'PENDING',
    to: 'UNREACHABLE',
    reason: '',
    actionId: vim.actionId,
    changedAt: notifications[0].changedAt,
    ownerProject: '',
  });
  t.is(new Date(notifications[0].changedAt).getTime(), row.status_changed_at.getTime());
});

test('a heartbeat (same status) refreshes last_report_at and writes no event and no NOTIFY', async (t) => {
  const { db, sql, client } = await startHarness(t);
  const notifications = await listen(t, db.url);
  const vim = await insertVim(sql, { status: 'REACHABLE' });
  const old = await vimRow(sql, vim.id);

  const first = await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE });
  const afterFirst = await vimRow(sql, vim.id);
  await new Promise((r) => setTimeout(r, 5));
  const second = await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE });
  const afterSecond = await vimRow(sql, vim.id);

  t.is(first.status, VimStatus.VIM_STATUS_REACHABLE);
  t.is(second.status, VimStatus.VIM_STATUS_REACHABLE);
  t.true(afterSecond.last_report_at!.getTime() > afterFirst.last_report_at!.getTime());
  t.is(afterSecond.status_changed_at.getTime(), old.status_changed_at.getTime());
  t.is(afterSecond.updated_at.getTime(), old.updated_at.getTime());
  t.deepEqual(await events(sql, vim.id), []);
  await new Promise((r) => setTimeout(r, 150));
  t.is(notifications.length, 0);
});

test('a stale action, an unknown VIM and a deregistered VIM get BAD_ACTION and change nothing', async (t) => {
  const { db, sql, client } = await startHarness(t);
  const notifications = await listen(t, db.url);
  const live = await insertVim(sql, { status: 'REACHABLE' });
  const deleted = await insertVim(sql, { status: 'REACHABLE', deleted: true });
  const liveBefore = await vimRow(sql, live.id);
  const deletedBefore = await vimRow(sql, deleted.id);

  const stale = await client.updateVim({ vimId: live.id, actionId: randomUUID(), status: VimStatus.VIM_STATUS_UNREACHABLE });
  const unknown = await client.updateVim({ vimId: randomUUID(), actionId: live.actionId, status: VimStatus.VIM_STATUS_UNREACHABLE });
  const gone = await client.updateVim({ vimId: deleted.id, actionId: deleted.actionId, status: VimStatus.VIM_STATUS_UNREACHABLE });

  t.is(stale.status, VimStatus.VIM_STATUS_BAD_ACTION);
  t.is(unknown.status, VimStatus.VIM_STATUS_BAD_ACTION);
  t.is(gone.status, VimStatus.VIM_STATUS_BAD_ACTION);
  t.deepEqual(await vimRow(sql, live.id), liveBefore);
  t.deepEqual(await vimRow(sql, deleted.id), deletedBefore);
  const { rows } = await sql.query(`select count(*)::int as n from vim_event`);
  t.is(rows[0].n, 0);
  await new Promise((r) => setTimeout(r, 100));
  t.is(notifications.length, 0);
});

test('a hand-over: the current action is accepted until its successor reports, which makes the successor current; then the old one is fenced', async (t) => {
  const { db, sql, client } = await startHarness(t);
  const notifications = await listen(t, db.url);
  const vim = await insertVim(sql, { status: 'REACHABLE' });
  const successor = randomUUID();
  await sql.query(
    `update vim set action_started = true, executor = 'old:1', successor_action_id = $2, successor_executor = 'new:1',
            successor_assigned_at = now() - interval '2 seconds', start_attempts = 3 where id = $1`,
    [vim.id, successor],
  );
  const REACHABLE = VimStatus.VIM_STATUS_REACHABLE;
  // Before the take-over the old action still speaks for the VIM.
  t.is((await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: REACHABLE })).status, REACHABLE);
  t.is((await vimRow(sql, vim.id)).action_id, vim.actionId);
  const beforeTakeOver = (await vimRow(sql, vim.id)).last_report_at!;

  t.is((await client.updateVim({ vimId: vim.id, actionId: successor, status: REACHABLE })).status, REACHABLE);
  const row = await vimRow(sql, vim.id);
  t.is(row.action_id, successor, 'the successor is the VIM’s action from its first report');
  t.is(row.executor, 'new:1');
  t.is(row.action_started, true);
  t.is(row.successor_action_id, null);
  t.is(row.successor_executor, null);
  t.is(row.successor_assigned_at, null);
  t.is(row.start_attempts, 0);
  t.true(row.last_report_at!.getTime() >= beforeTakeOver.getTime(), 'the take-over stored its report');
  t.deepEqual(await events(sql, vim.id), [], 'same status: a heartbeat, no transition');

  t.is(
    (await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_UNREACHABLE })).status,
    VimStatus.VIM_STATUS_BAD_ACTION,
    'the old action is fenced once the successor took over',
  );
  t.is((await vimRow(sql, vim.id)).status, 'REACHABLE');
  // A successor that reports a change takes over with a transition in its own name.
  const next = randomUUID();
  await sql.query(`update vim set successor_action_id = $2, successor_executor = 'new:2', successor_assigned_at = now() where id = $1`, [
    vim.id,
    next,
  ]);
  t.is(
    (await client.updateVim({ vimId: vim.id, actionId: next, status: VimStatus.VIM_STATUS_UNREACHABLE })).status,
    VimStatus.VIM_STATUS_UNREACHABLE,
  );
  const trail = await events(sql, vim.id);
  t.is(trail.length, 1);
  t.is(trail[0].action_id, next);
  t.is(trail[0].from_status, 'REACHABLE');
  await settle(() => notifications.length === 1);
  t.is(notifications.length, 1);
  t.is((await vimRow(sql, vim.id)).executor, 'new:2');
});

test('concurrent reports from two actions for one VIM: only the row’s action is ever accepted, and the trail stays a chain', async (t) => {
  const { sql, client } = await startHarness(t);
  const vim = await insertVim(sql, { status: 'PENDING' });
  const intruder = randomUUID();
  const statuses = [VimStatus.VIM_STATUS_REACHABLE, VimStatus.VIM_STATUS_UNREACHABLE];
  const rounds = 60;
  const calls = [];
  for (let i = 0; i < rounds; i++) {
    const status = statuses[i % 2];
    calls.push(
      client.updateVim({ vimId: vim.id, actionId: vim.actionId, status }).then((r) => ({ owner: true, sent: status, got: r.status })),
    );
    calls.push(
      client.updateVim({ vimId: vim.id, actionId: intruder, status }).then((r) => ({ owner: false, sent: status, got: r.status })),
    );
  }
  const replies = await Promise.all(calls);
  for (const reply of replies) {
    if (reply.owner) t.is(reply.got, reply.sent, 'the owner’s report is stored as sent');
    else t.is(reply.got, VimStatus.VIM_STATUS_BAD_ACTION, 'the intruder is fenced');
  }
  const trail = await events(sql, vim.id);
  t.true(trail.length >= 1);
  t.true(trail.every((e) => e.action_id === vim.actionId));
  // FOR UPDATE makes each report see the status the previous one stored: no event repeats a transition.
  t.is(trail[0].from_status, 'PENDING');
  for (let i = 1; i < trail.length; i++) t.is(trail[i].from_status, trail[i - 1].to_status, `event ${i} continues the chain`);
  for (const e of trail) t.not(e.from_status, e.to_status);
  const row = await vimRow(sql, vim.id);
  t.is(row.status, trail.at(-1)!.to_status);
  t.is(row.action_id, vim.actionId);
});

test('group commit: a burst of mixed reports shares statements and each is still fenced, evented and announced on its own', async (t) => {
  const { db, sql } = await startHarness(t);
  const notifications = await listen(t, db.url);
  // One statement at a time: everything after the first report waits and goes together.
  const writer = createFencedStatusWriter(db.orm, { maxStatementsInFlight: 1 });
  const vims = await Promise.all(
    Array.from({ length: 40 }, (_, i) => insertVim(sql, { status: i % 2 === 0 ? 'PENDING' : 'REACHABLE', deleted: i % 10 === 9 })),
  );
  const calls: Array<Promise<{ kind: string; vim: { id: string; actionId: string }; outcome: ReportOutcome }>> = [];
  vims.forEach((vim, i) => {
    const deleted = i % 10 === 9;
    const kind = deleted ? 'deleted' : i % 2 === 0 ? 'transition' : 'heartbeat';
    calls.push(writer.record({ vimId: vim.id, actionId: vim.actionId, status: 'REACHABLE' }).then((outcome) => ({ kind, vim, outcome })));
    // A stale action and an unknown VIM in the same burst.
    calls.push(
      writer.record({ vimId: vim.id, actionId: randomUUID(), status: 'UNREACHABLE' }).then((outcome) => ({ kind: 'stale', vim, outcome })),
    );
    calls.push(
      writer
        .record({ vimId: randomUUID(), actionId: vim.actionId, status: 'UNREACHABLE' })
        .then((outcome) => ({ kind: 'unknown', vim, outcome })),
    );
  });
  const results = await Promise.all(calls);
  let transitions = 0;
  for (const { kind, outcome } of results) {
    if (kind === 'transition') {
      transitions++;
      t.deepEqual(outcome, { accepted: true, status: 'REACHABLE', reason: '', changed: true });
    } else if (kind === 'heartbeat') t.deepEqual(outcome, { accepted: true, status: 'REACHABLE', reason: '', changed: false });
    else t.deepEqual(outcome, { accepted: false }, kind);
  }
  const { rows } = await sql.query(`select vim_id, from_status, to_status, action_id from vim_event order by id`);
  t.is(rows.length, transitions);
  const byVim = new Map(vims.map((v, i) => [v.id, i]));
  for (const row of rows) {
    const i = byVim.get(row.vim_id)!;
    t.is(i % 2, 0, 'only PENDING VIMs changed');
    t.like(row, { from_status: 'PENDING', to_status: 'REACHABLE', action_id: vims[i].actionId });
  }
  const statuses = await sql.query(`select id, status, last_report_at from vim`);
  for (const row of statuses.rows) {
    const i = byVim.get(row.id)!;
    if (i % 10 === 9) t.is(row.last_report_at, null, 'a deregistered VIM is untouched');
    else t.is(row.status, 'REACHABLE');
  }
  await settle(() => notifications.length >= transitions);
  await new Promise((r) => setTimeout(r, 100));
  t.is(notifications.length, transitions);
  t.deepEqual(new Set(notifications.map((n) => n.eventId)).size, transitions, 'one NOTIFY per event');
});

test('a VIM row held by another transaction delays only its own statement, then gives UNAVAILABLE', async (t) => {
  const { db, sql } = await startHarness(t);
  const held = await insertVim(sql, { status: 'REACHABLE' });
  const free = await insertVim(sql, { status: 'REACHABLE' });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('begin');
  await holder.query(`select 1 from vim where id = $1 for update`, [held.id]);

  // A lock timeout far above one statement's time on a busy machine: the other VIM must finish well inside it.
  const writer = createFencedStatusWriter(db.orm, { maxStatementsInFlight: 2, lockTimeoutMs: 2_000 });
  const started = Date.now();
  const blocked = writer.record({ vimId: held.id, actionId: held.actionId, status: 'UNREACHABLE' }).then(
    () => ({ settledMs: Date.now() - started, error: undefined as unknown }),
    (error: unknown) => ({ settledMs: Date.now() - started, error }),
  );
  await new Promise((r) => setTimeout(r, 50));
  const other = await writer.record({ vimId: free.id, actionId: free.actionId, status: 'UNREACHABLE' });
  const otherMs = Date.now() - started;
  t.deepEqual(other, { accepted: true, status: 'UNREACHABLE', reason: '', changed: true });
  const outcome = await blocked;
  t.true(outcome.error instanceof UnavailableError, String(outcome.error));
  t.true(outcome.settledMs >= 2_000, `waited ${outcome.settledMs} ms for the lock`);
  t.true(otherMs < outcome.settledMs, 'the other VIM did not wait behind it');
  await holder.query('rollback');
  t.is((await vimRow(sql, held.id)).status, 'REACHABLE');
  t.deepEqual(await writer.record({ vimId: held.id, actionId: held.actionId, status: 'UNREACHABLE' }), {
    accepted: true,
    status: 'UNREACHABLE',
    reason: '',
    changed: true,
  });
});

/**
 * A conductor storing one report per statement, one statement at a time, whose statement is stuck
 * on a VIM row another transaction holds (until release(); the conductor's lock timeout is 2 s):
 * the reports sent meanwhile wait in its queue.
 */
async function stalledConductor(t: ExecutionContext, maxQueuedReports?: number) {
  const { db, sql, client } = await startHarness(t, undefined, { maxStatementsInFlight: 1, maxReportsPerStatement: 1, maxQueuedReports });
  const vim = () => insertVim(sql, { status: 'REACHABLE' });
  const held = await vim();
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('begin');
  await holder.query(`select 1 from vim where id = $1 for update`, [held.id]);
  const report = (v: { id: string; actionId: string }, signal?: AbortSignal) =>
    client.updateVim({ vimId: v.id, actionId: v.actionId, status: VimStatus.VIM_STATUS_UNREACHABLE }, { signal });
  const blocked = report(held).then(
    () => undefined,
    (err: unknown) => err,
  );
  await new Promise((r) => setTimeout(r, 200));
  return {
    sql,
    vim,
    report,
    async release() {
      await holder.query('rollback');
      await blocked;
    },
  };
}

test('a conductor behind on its statements answers RESOURCE_EXHAUSTED at once beyond its queue bound; what it queued is stored', async (t) => {
  // Two reports waiting at most.
  const { sql, vim, report, release } = await stalledConductor(t, 2);
  const queued = [await vim(), await vim()];
  const refused = await vim();
  const waiting = queued.map((v) => report(v));
  await new Promise((r) => setTimeout(r, 100));
  const err = await t.throwsAsync(report(refused), { instanceOf: ClientError });
  t.is(err?.code, Status.RESOURCE_EXHAUSTED, err?.details);
  t.regex(err?.details ?? '', /busy/);
  await release();
  for (const answer of await Promise.all(waiting)) t.is(answer.status, VimStatus.VIM_STATUS_UNREACHABLE);
  for (const v of queued) t.is((await vimRow(sql, v.id)).status, 'UNREACHABLE');
  t.is((await vimRow(sql, refused.id)).last_report_at, null, 'the refused report wrote nothing');
  t.is((await events(sql, refused.id)).length, 0);
});

test('a report whose caller gave up before its statement is dropped unwritten', async (t) => {
  const { sql, vim, report, release } = await stalledConductor(t);
  const given = await vim();
  const kept = await vim();
  const giveUp = new AbortController();
  const abandoned = report(given, giveUp.signal).then(
    () => 'answered',
    () => 'gave up',
  );
  const waiting = report(kept);
  await new Promise((r) => setTimeout(r, 100));
  giveUp.abort(); // as an executor's deadline does
  t.is(await abandoned, 'gave up');
  // Time for the cancel to reach the conductor before its turn comes.
  await new Promise((r) => setTimeout(r, 200));
  await release();
  t.is((await waiting).status, VimStatus.VIM_STATUS_UNREACHABLE);
  t.is((await vimRow(sql, kept.id)).status, 'UNREACHABLE');
  const row = await vimRow(sql, given.id);
  t.is(row.status, 'REACHABLE', 'the given-up report was not written');
  t.is(row.last_report_at, null);
  t.is((await events(sql, given.id)).length, 0);
});

test('bad input gets INVALID_ARGUMENT naming the field, before the database is asked', async (t) => {
  const { sql, client } = await startHarness(t);
  const vim = await insertVim(sql);
  const ok = { vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE };
  await rejectsWith(t, client.updateVim({ ...ok, vimId: '' }), Status.INVALID_ARGUMENT, 'vim_id');
  await rejectsWith(t, client.updateVim({ ...ok, vimId: 'not-a-uuid' }), Status.INVALID_ARGUMENT, 'vim_id');
  await rejectsWith(t, client.updateVim({ ...ok, vimId: `${vim.id}'; drop table vim; --` }), Status.INVALID_ARGUMENT, 'vim_id');
  await rejectsWith(t, client.updateVim({ ...ok, actionId: '' }), Status.INVALID_ARGUMENT, 'action_id');
  await rejectsWith(t, client.updateVim({ ...ok, actionId: `{${vim.actionId}}` }), Status.INVALID_ARGUMENT, 'action_id');
  await rejectsWith(t, client.updateVim({ ...ok, status: VimStatus.VIM_STATUS_UNSPECIFIED }), Status.INVALID_ARGUMENT, 'status');
  await rejectsWith(t, client.updateVim({ ...ok, status: VimStatus.VIM_STATUS_BAD_ACTION }), Status.INVALID_ARGUMENT, 'status');
  await rejectsWith(t, client.updateVim({ ...ok, status: 99 as VimStatus }), Status.INVALID_ARGUMENT, 'status');
  const row = await vimRow(sql, vim.id);
  t.is(row.status, 'PENDING');
  t.is(row.last_report_at, null);
  // An upper-case UUID is still a UUID.
  const reply = await client.updateVim({ ...ok, vimId: vim.id.toUpperCase(), actionId: vim.actionId.toUpperCase() });
  t.is(reply.status, VimStatus.VIM_STATUS_REACHABLE);
});

test('a database that cannot be reached gives UNAVAILABLE, so the action retries', async (t) => {
  const { orm: unreachable } = await unreachableDatabase(t);
  const { client } = await startHarness(t, unreachable);
  await rejectsWith(
    t,
    client.updateVim({ vimId: randomUUID(), actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE }),
    Status.UNAVAILABLE,
  );
});

test('health is SERVING for the server and for the conductor service', async (t) => {
  const { conductor } = await startHarness(t);
  const channel = createChannel(conductor.address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  t.is((await health.check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
  t.is((await health.check({ service: conductorService })).status, HealthCheckResponse_ServingStatus.SERVING);
});

for (const version of ['v1', 'v1alpha'] as const) {
  test(`reflection ${version} lists the service and a client with no .proto file can describe UpdateVim`, async (t) => {
    const { conductor } = await startHarness(t);
    const walk = await walkReflection(conductor.address, version);
    t.true(walk.services.includes(conductorService), 'lists the conductor');
    t.true(walk.services.includes('grpc.health.v1.Health'), 'lists health');
    const method = walk.service(conductorService)?.methods.find((m) => m.name === 'UpdateVim');
    t.is(method?.input.typeName, 'vimmon.conductor.v1.UpdateVimRequest');
    t.is(method?.output.typeName, 'vimmon.conductor.v1.UpdateVimResponse');
    // The status enum lives in an imported file, fetched by file_by_filename.
    t.true(walk.files.has('vimmon/common/v1/status.proto'), 'resolved the imported status.proto');
    t.is(method?.input.fields.find((f) => f.name === 'status')?.enum?.typeName, 'vimmon.common.v1.VimStatus');
  });
}

test('stop() is idempotent, ends serving and leaves the caller’s database open', async (t) => {
  const { db, sql, conductor, client } = await startHarness(t);
  const vim = await insertVim(sql);
  await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE });
  await Promise.all([conductor.stop(), conductor.stop()]);
  await conductor.stop();
  await rejectsWith(
    t,
    client.updateVim({ vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE }),
    Status.UNAVAILABLE,
  );
  const rows = await db.orm.em.fork().getConnection().execute(`select count(*)::int as n from vim`);
  t.is(rows[0].n, 1);
});
