// The action id in a VIM's row is a fencing token: a report is stored only when
// it comes from the row's current action. Everything a report does happens in
// ONE statement, hence one implicit transaction and one round trip:
//
//   current   lock the live row of (vim_id, action_id), reading its status;
//             FOR UPDATE makes two concurrent reports for one VIM take turns
//             and each see the status the other stored (a plain snapshot read
//             could see a stale status and log a transition twice)
//   stored    write status and last_report_at; on a transition also
//             status_changed_at and updated_at
//   event     on a transition, one vim_event row (from, to, action, time)
//   notified  on a transition, pg_notify(vimStatusChannel, VimStatusNotification);
//             PostgreSQL delivers it at commit, so listeners never hear of a
//             transition that was rolled back. A SELECT CTE runs only when
//             referenced, so the final SELECT counts its rows.
//
// No row → the action is stale, the VIM unknown or deregistered: BAD_ACTION.
//
// Durability: a heartbeat (a report that changes no status) commits with
// synchronous_commit = off, set for its own transaction only. It then does not
// wait for its WAL to reach disk. A crash of PostgreSQL can lose the heartbeats
// acknowledged in the last ~3 × wal_writer_delay (600 ms by default): their
// last_report_at goes back to an earlier heartbeat of the same action, nothing
// else (status, action id, events are untouched by a heartbeat). The next
// heartbeat, one report_interval later, writes it again; the stale limit
// (> report_interval, 3 × by default) already tolerates one missing heartbeat,
// so the reconciler does not replace a live action because of it. Transitions
// (status, event, NOTIFY) keep the server's synchronous_commit: a reply the
// action got for a transition is durable. The database stays consistent either
// way; only recent heartbeats can vanish. (Also true with a synchronous standby:
// heartbeats do not wait for it.)
import type { Pool } from 'pg';
import type { StoredStatus } from '../db/entities.js';
import type { Orm } from '../db/connection.js';
import { vimStatusChannel, type VimStatusNotification } from '../db/notifications.js';
import { AbortedError, UnavailableError } from '../common/errors.js';
import type { Report } from './report.js';

export type ReportOutcome = { accepted: true; status: StoredStatus; changed: boolean } | { accepted: false };

export interface FencedStatusWriter {
  /** Stores the report if report.actionId is the VIM's current action. */
  record(report: Report): Promise<ReportOutcome>;
}

// The channel is a constant identifier-like name; pg_notify takes it as text.
if (!/^[a-z_][a-z0-9_]*$/.test(vimStatusChannel)) throw new Error(`unexpected NOTIFY channel name ${vimStatusChannel}`);

// Keys of the JSON payload are those of VimStatusNotification (checked below).
const payloadKeys = {
  eventId: 'e.id',
  vimId: 'e.vim_id',
  vimName: 's.name',
  from: 'e.from_status',
  to: 'e.to_status',
  actionId: 'e.action_id',
  changedAt: 'e.created_at',
} satisfies Record<keyof VimStatusNotification, string>;

export const reportStatement = `
with current_row as (
  select id, status
  from vim
  where id = $1::uuid and action_id = $2::uuid and deleted_at is null
  for update
),
stored as (
  update vim v
  set status = $3::text,
      last_report_at = now(),
      status_changed_at = case when c.status = $3::text then v.status_changed_at else now() end,
      updated_at = case when c.status = $3::text then v.updated_at else now() end
  from current_row c
  where v.id = c.id
  returning v.id, v.name, c.status as from_status, v.status as to_status, v.status_changed_at
),
event as (
  insert into vim_event (vim_id, from_status, to_status, action_id, created_at)
  select id, from_status, to_status, $2::uuid, status_changed_at
  from stored
  where from_status <> to_status
  returning id, vim_id, from_status, to_status, action_id, created_at
),
notified as (
  select pg_notify('${vimStatusChannel}', json_build_object(${Object.entries(payloadKeys)
    .map(([key, column]) => `'${key}', ${column}`)
    .join(', ')})::text)
  from event e
  join stored s on s.id = e.vim_id
)
select s.to_status as status,
       s.from_status <> s.to_status as changed,
       (select count(*) from notified) as notified,
       set_config('synchronous_commit',
                  case when s.from_status <> s.to_status then current_setting('synchronous_commit') else 'off' end,
                  true) as commit_mode
from stored s`;

// A named statement is parsed and planned once per pooled connection, then
// only bound and executed: the report path is the conductor's hot path.
const statementName = 'vimmon_conductor_report_v1';

interface ReportRow {
  status: StoredStatus;
  changed: boolean;
}

export function createFencedStatusWriter(orm: Orm): FencedStatusWriter {
  // The ORM's own pg pool (MikroORM 7 exposes it as the connection's native
  // client): one pool per process, sized by whoever opened the database. Its
  // `execute()` path inlines parameters into the SQL text and goes through
  // Kysely, which costs a parse and plan per report; this one does not.
  let pool: Promise<Pool> | undefined;
  const getPool = () => (pool ??= orm.em.getConnection().getNativeClient());
  return {
    async record(report) {
      let rows: ReportRow[];
      try {
        const result = await (await getPool()).query<ReportRow>({
          name: statementName,
          text: reportStatement,
          values: [report.vimId, report.actionId, report.status],
        });
        rows = result.rows;
      } catch (err) {
        pool = undefined;
        throw translateDatabaseError(err);
      }
      const row = rows[0];
      if (!row) return { accepted: false };
      return { accepted: true, status: row.status, changed: row.changed };
    },
  };
}

/**
 * A database that cannot be reached (down, restarting, out of connections)
 * becomes UnavailableError, so the action backs off and reports again;
 * a serialization failure becomes AbortedError. Anything else stays as it is
 * and reaches the caller as INTERNAL, with details in the log only.
 */
export function translateDatabaseError(err: unknown): unknown {
  if (isDatabaseUnavailable(err)) return new UnavailableError('database unavailable', { cause: err });
  const code = sqlState(err);
  if (code === '40001' || code === '40P01') return new AbortedError('concurrent update, retry', { cause: err });
  return err;
}

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = sqlState(e);
    // 08 connection exception, 57P01-57P03 shutdown / crash / starting up, 53300 too many connections.
    if (code && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300')) return true;
    if (code && networkCodes.has(code)) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end/i.test(message)) {
      return true;
    }
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
