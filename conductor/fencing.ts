// The action id in a VIM's row is a fencing token: a report is stored only when
// it comes from the row's current action. Everything a report does happens in
// ONE statement, hence one implicit transaction and one round trip:
//
//   input       the reports of this statement, as parallel arrays
//   current_row lock the live rows of (vim_id, action_id), reading their status;
//               a report of the row's successor action (a hand-over from a
//               draining executor) matches too, and takes over: see "Hand-over";
//               FOR UPDATE makes two concurrent reports for one VIM take turns
//               and each see the status the other stored (a plain snapshot read
//               could see a stale status and log a transition twice). Rows are
//               locked in id order, so two statements never deadlock.
//   stored      write status and last_report_at; on a transition also
//               status_changed_at and updated_at
//   event       on a transition (of the status or of its reason), one vim_event row
//               (from, to, reason, action, time)
//   notified    on a transition, pg_notify(vimStatusChannel, VimStatusNotification);
//               PostgreSQL delivers it at commit, so listeners never hear of a
//               transition that was rolled back. A SELECT CTE runs only when
//               referenced, so the final SELECT counts its rows.
//   commit_mode see "Durability" below.
//
// A report whose (vim_id, action_id) matches no live row comes back without a
// row: the action is stale, the VIM unknown or deregistered → BAD_ACTION.
//
// Hand-over: while an executor drains, the reconciler starts a successor action
// elsewhere and records it in successor_action_id, leaving action_id alone. The
// draining action's reports are accepted until the successor's first report,
// which the same statement stores and makes current (action_id, executor); from
// that commit on the old action gets BAD_ACTION. Make before break: the VIM's
// reports never pause longer than its heartbeat (a claim that fenced the old
// action first left a gap of up to one report interval plus the start).
//
// Group commit: reports that arrive while `maxStatementsInFlight` statements
// (2 by default) are already running wait and then go together, as one statement for all of
// them (at most `maxReportsPerStatement`, one per VIM so that a VIM's reports
// keep their order). Each report is still all-or-nothing with its event and
// NOTIFY, and fenced by its own row's action id. At low load every report goes
// alone at once; under load PostgreSQL does one commit, one plan execution and
// one round trip for many reports (measured: about a sixth of the database CPU
// per heartbeat at 32 per statement — see bench/conductor-throughput.ts).
// If a statement fails, every report in it gets the same error and its action
// reports again (UNAVAILABLE / ABORTED are retried by executors).
//
// Durability: a statement in which no report changes a status (only heartbeats)
// commits with synchronous_commit = off, set for its own transaction only. It
// then does not wait for its WAL to reach disk. A crash of PostgreSQL can lose
// the heartbeats acknowledged in the last ~3 × wal_writer_delay (600 ms by
// default): their last_report_at goes back to an earlier heartbeat of the same
// action, nothing else (status, action id and events are untouched by a
// heartbeat). The next heartbeat, one report_interval later, writes it again;
// the stale limit (> report_interval, 3 × by default) already tolerates one
// missing heartbeat, so the reconciler does not replace a live action because
// of it. A statement holding a transition (status, event, NOTIFY) keeps the
// server's synchronous_commit: a reply an action got for a transition is
// durable. The database stays consistent either way; only recent heartbeats
// can vanish. (With a synchronous standby, heartbeats do not wait for it either.)
import type { Pool } from 'pg';
import type { StoredReason, StoredStatus } from '../db/entities.js';
import type { Orm } from '../db/connection.js';
import { vimStatusChannel, type VimStatusNotification } from '../db/notifications.js';
import { AbortedError, ResourceExhaustedError, UnavailableError, isDatabaseUnavailable } from '../common/errors.js';
import type { HistogramSeries } from '../common/metrics.js';
import type { Report } from './report.js';

export type ReportOutcome = { accepted: true; status: StoredStatus; reason: StoredReason; changed: boolean } | { accepted: false };

export interface FencedStatusWriter {
  /**
   * Stores the report if report.actionId is the VIM's current action. A report whose signal
   * has aborted (its caller gave up: deadline or cancel) before its statement is dropped unwritten.
   */
  record(report: Report, signal?: AbortSignal): Promise<ReportOutcome>;
}

export interface FencedStatusWriterOptions {
  /** Statements running at once; reports beyond them wait and go together. Default 2. */
  maxStatementsInFlight?: number;
  /** Reports in one statement. Default 256. */
  maxReportsPerStatement?: number;
  /**
   * How long a statement waits for a VIM row another transaction holds (the
   * Tacker server's short updates do) before its reports fail with UNAVAILABLE
   * and are sent again; bounds how long one stuck lock can hold up the reports
   * grouped behind it. Default 2000.
   */
  lockTimeoutMs?: number;
  /**
   * Reports waiting for a statement at most; one more is refused at once with
   * RESOURCE_EXHAUSTED, which executors retry with backoff. Default 2048.
   */
  maxQueuedReports?: number;
  /** Observes how many reports each statement carried. */
  reportsPerStatement?: HistogramSeries;
}

// The channel is a constant identifier-like name; pg_notify takes it as text.
if (!/^[a-z_][a-z0-9_]*$/.test(vimStatusChannel)) throw new Error(`unexpected NOTIFY channel name ${vimStatusChannel}`);

// Keys of the JSON payload are those of VimStatusNotification (checked by the compiler).
const payloadKeys = {
  eventId: 'e.id',
  vimId: 'e.vim_id',
  vimName: 's.name',
  from: 'e.from_status',
  to: 'e.to_status',
  reason: 'e.status_reason',
  actionId: 'e.action_id',
  changedAt: 'e.created_at',
  ownerProject: 's.owner_project',
} satisfies Record<keyof VimStatusNotification, string>;

// Two inputs, one body. A report alone binds scalars: PostgreSQL keeps one
// generic plan for it. A group binds arrays: its plan depends on their length,
// so PostgreSQL re-plans it each time, a cost shared by the whole group.
// $4 is this transaction's lock_timeout: the rows are sorted (ORDER BY below)
// before the first is locked, so it is set before any lock wait begins.
// $5 the status reasons. A change of reason alone is a transition like a change of status.
const singleInput = `select $1::uuid as vim_id, $2::uuid as action_id, $3::text as status, $5::text as status_reason,
  set_config('lock_timeout', $4::text, true) as lock_timeout`;
const groupInput = `select r.*, set_config('lock_timeout', $4::text, true) as lock_timeout
  from unnest($1::uuid[], $2::uuid[], $3::text[], $5::text[]) as r(vim_id, action_id, status, status_reason)`;

const statementBody = `
current_row as (
  select v.id, v.status as from_status, v.status_reason as from_reason, i.status as to_status, i.status_reason as to_reason,
         i.action_id, (v.status <> i.status or v.status_reason <> i.status_reason) as changed,
         (v.successor_action_id is not null and v.successor_action_id = i.action_id) as takes_over
  from input i
  join vim v on v.id = i.vim_id
  where (v.action_id = i.action_id or v.successor_action_id = i.action_id) and v.deleted_at is null
  order by v.id
  for update of v
),
stored as (
  update vim v
  set status = c.to_status,
      status_reason = c.to_reason,
      last_report_at = now(),
      status_changed_at = case when c.changed then now() else v.status_changed_at end,
      updated_at = case when c.changed then now() else v.updated_at end,
      action_id = c.action_id,
      executor = case when c.takes_over then v.successor_executor else v.executor end,
      action_assigned_at = case when c.takes_over then coalesce(v.successor_assigned_at, now()) else v.action_assigned_at end,
      action_started = v.action_started or c.takes_over,
      successor_action_id = case when c.takes_over then null else v.successor_action_id end,
      successor_executor = case when c.takes_over then null else v.successor_executor end,
      successor_assigned_at = case when c.takes_over then null else v.successor_assigned_at end,
      start_attempts = case when c.takes_over then 0 else v.start_attempts end,
      next_attempt_at = case when c.takes_over then null else v.next_attempt_at end
  from current_row c
  where v.id = c.id
  returning v.id, v.name, v.owner_project, c.from_status, v.status as to_status, v.status_reason as to_reason, c.changed,
            c.action_id, v.status_changed_at
),
event as (
  insert into vim_event (vim_id, from_status, to_status, status_reason, action_id, created_at)
  select id, from_status, to_status, to_reason, action_id, status_changed_at
  from stored
  where changed
  returning id, vim_id, from_status, to_status, status_reason, action_id, created_at
),
notified as (
  select pg_notify('${vimStatusChannel}', json_build_object(${Object.entries(payloadKeys)
    .map(([key, column]) => `'${key}', ${column}`)
    .join(', ')})::text)
  from event e
  join stored s on s.id = e.vim_id
),
commit_mode as (
  select set_config('synchronous_commit',
                    case when exists (select from stored where changed)
                         then current_setting('synchronous_commit') else 'off' end,
                    true) as mode,
         (select count(*) from notified) as notified
)
select s.id, s.to_status as status, s.to_reason as status_reason, s.changed
from stored s
cross join commit_mode`;

export const reportStatements = {
  single: `with input as (${singleInput}),${statementBody}`,
  group: `with input as (${groupInput}),${statementBody}`,
};

// Named statements are parsed once per pooled connection, then only bound and executed.
const statementNames = { single: 'vimmon_conductor_report_single_v4', group: 'vimmon_conductor_report_group_v4' };

interface ReportRow {
  id: string;
  status: StoredStatus;
  status_reason: StoredReason;
  changed: boolean;
}

interface Pending {
  report: Report;
  signal: AbortSignal | undefined;
  resolve(outcome: ReportOutcome): void;
  reject(err: unknown): void;
}

export function createFencedStatusWriter(orm: Orm, options: FencedStatusWriterOptions = {}): FencedStatusWriter {
  const maxInFlight = options.maxStatementsInFlight ?? 2;
  const maxBatch = options.maxReportsPerStatement ?? 256;
  const lockTimeout = `${Math.max(1, Math.round(options.lockTimeoutMs ?? 2_000))}ms`;
  // Bounded, so that a conductor behind on its statements answers at once instead of holding
  // calls past the executors' deadline: they gave up and sent again, the queue grew with reports
  // nobody waited for, and a conductor holding tens of thousands of open calls was seen to die
  // (BENCHMARKS.md, scale). A report is of bounded size (ids are UUIDs, status and reason are
  // enums: conductor/report.ts), so a bound in reports is one in bytes.
  const maxQueued = options.maxQueuedReports ?? 2_048;
  // The ORM's own pg pool (MikroORM 7 exposes it as the connection's native
  // client): one pool per process, sized by whoever opened the database. Its
  // `execute()` path inlines parameters into the SQL text and goes through
  // Kysely, which costs a parse and plan per statement; this one does not.
  let pool: Promise<Pool> | undefined;
  const getPool = () => (pool ??= orm.em.getConnection().getNativeClient());
  const queue: Pending[] = [];
  let inFlight = 0;

  // One pass over the queue, not a splice per report taken: under overload the queue is
  // long, and removing reports one by one made each batch cost queue length × batch size.
  const takeBatch = (): Pending[] => {
    const batch: Pending[] = [];
    const vims = new Set<string>();
    const rest: Pending[] = [];
    for (const item of queue) {
      if (item.signal?.aborted) {
        // Its caller gave up and will report again: writing it would be work for nobody.
        item.reject(new AbortedError('the report was given up before its turn'));
        continue;
      }
      // One report per VIM per statement: a later one waits for the next.
      if (batch.length >= maxBatch || vims.has(item.report.vimId)) rest.push(item);
      else {
        vims.add(item.report.vimId);
        batch.push(item);
      }
    }
    queue.length = 0;
    queue.push(...rest);
    return batch;
  };

  const execute = async (batch: Pending[]) => {
    options.reportsPerStatement?.observe(batch.length);
    let rows: ReportRow[];
    try {
      const kind = batch.length === 1 ? 'single' : 'group';
      const values =
        kind === 'single'
          ? [batch[0].report.vimId, batch[0].report.actionId, batch[0].report.status, lockTimeout, batch[0].report.reason ?? '']
          : [
              batch.map((p) => p.report.vimId),
              batch.map((p) => p.report.actionId),
              batch.map((p) => p.report.status),
              lockTimeout,
              batch.map((p) => p.report.reason ?? ''),
            ];
      const result = await (await getPool()).query<ReportRow>({ name: statementNames[kind], text: reportStatements[kind], values });
      rows = result.rows;
    } catch (err) {
      pool = undefined;
      const translated = translateDatabaseError(err);
      for (const p of batch) p.reject(translated);
      return;
    }
    const byVim = new Map(rows.map((r) => [r.id, r]));
    for (const p of batch) {
      const row = byVim.get(p.report.vimId);
      p.resolve(row ? { accepted: true, status: row.status, reason: row.status_reason, changed: row.changed } : { accepted: false });
    }
  };

  const pump = () => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = takeBatch();
      if (batch.length === 0) return; // every waiting report was given up
      inFlight++;
      void execute(batch).finally(() => {
        inFlight--;
        pump();
      });
    }
  };

  return {
    record(report, signal) {
      if (queue.length >= maxQueued)
        return Promise.reject(
          new ResourceExhaustedError(`conductor busy: ${queue.length} reports wait for the database; report again after a backoff`),
        );
      return new Promise<ReportOutcome>((resolve, reject) => {
        queue.push({ report, signal, resolve, reject });
        pump();
      });
    },
  };
}

/**
 * A database that cannot be reached (down, restarting, out of connections)
 * becomes UnavailableError, so the action backs off and reports again;
 * a serialization failure or deadlock becomes AbortedError. Anything else
 * stays as it is and reaches the caller as INTERNAL, with details in the log only.
 */
export function translateDatabaseError(err: unknown): unknown {
  if (isDatabaseUnavailable(err)) return new UnavailableError('database unavailable', { cause: err });
  const code = sqlState(err);
  if (code === '55P03') return new UnavailableError('VIM row held by another transaction; report again', { cause: err });
  if (code === '40001' || code === '40P01') return new AbortedError('concurrent update, retry', { cause: err });
  return err;
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
