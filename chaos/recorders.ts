// What the suite records for the history checker, apart from the mesh's own
// code paths: a trigger log of every change to `vim` (installed by the suite in
// its own database), the resuming SDK watcher and alarm subscribers, and the
// stale reporter that replays retired action ids to the conductors.
import type pg from 'pg';
import { ClientError, createVimmonClient, Status, VimStatus, type VimmonClient } from '../client/src/index.js';
import { VimStatusReason } from '../gen/vimmon/common/v1/status.js';
import type { AlarmRecord, StaleCall, VimLogRow, WatchRecord } from './history-checker.js';

/** One row per INSERT/UPDATE of `vim`, with the committing transaction and the clock at the change. */
const triggerSql = `
create table if not exists chaos_vim_log (
  id bigserial primary key,
  vim_id uuid not null,
  txid bigint not null default txid_current(),
  at timestamptz not null default clock_timestamp(),
  old_action uuid,
  new_action uuid not null,
  old_status text,
  new_status text not null,
  old_report timestamptz,
  new_report timestamptz,
  deleted boolean not null
);
create or replace function chaos_vim_log_row() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    insert into chaos_vim_log (vim_id, new_action, new_status, new_report, deleted)
      values (new.id, new.action_id, new.status, new.last_report_at, new.deleted_at is not null);
  else
    insert into chaos_vim_log (vim_id, old_action, new_action, old_status, new_status, old_report, new_report, deleted)
      values (new.id, old.action_id, new.action_id, old.status, new.status, old.last_report_at, new.last_report_at, new.deleted_at is not null);
  end if;
  return null;
end $$;
drop trigger if exists chaos_vim_log_trigger on vim;
create trigger chaos_vim_log_trigger after insert or update on vim for each row execute function chaos_vim_log_row();
`;

export async function installHistoryTriggers(pool: pg.Pool): Promise<void> {
  await pool.query(triggerSql);
}

const ms = (d: Date | null | undefined) => (d ? d.getTime() : null);

export async function readVimLog(pool: pg.Pool): Promise<VimLogRow[]> {
  const { rows } = await pool.query(
    `select id::float8 as id, vim_id, txid::float8 as txid, at, old_action, new_action, old_status, new_status, old_report, new_report, deleted
     from chaos_vim_log order by id`,
  );
  return rows.map((r) => ({
    id: r.id,
    vimId: r.vim_id,
    txid: r.txid,
    atMs: r.at.getTime(),
    oldAction: r.old_action,
    newAction: r.new_action,
    oldStatus: r.old_status,
    newStatus: r.new_status,
    oldReportMs: ms(r.old_report),
    newReportMs: ms(r.new_report),
    deleted: r.deleted,
  }));
}

export async function readStoredEventIds(pool: pg.Pool): Promise<Array<{ id: number; vimId: string }>> {
  const { rows } = await pool.query(`select id::float8 as id, vim_id from vim_event order by id`);
  return rows.map((r) => ({ id: r.id, vimId: r.vim_id }));
}

export async function readStoredAlarmIds(pool: pg.Pool): Promise<number[]> {
  const { rows } = await pool.query(`select alarm_id::float8 as id from alarm order by alarm_id`);
  return rows.map((r) => r.id as number);
}

export async function readLiveVims(pool: pg.Pool): Promise<Array<{ id: string; lastReportMs: number | null; status: string }>> {
  const { rows } = await pool.query(`select id, last_report_at, status from vim where deleted_at is null`);
  return rows.map((r) => ({ id: r.id, lastReportMs: ms(r.last_report_at), status: r.status }));
}

/** Live VIMs, and how many of them have an accepted report after `sinceMs`. */
export async function countReportedSince(pool: pg.Pool, sinceMs: number): Promise<{ live: number; fresh: number }> {
  const { rows } = await pool.query(
    `select count(*)::int as live, count(*) filter (where last_report_at > to_timestamp($1::float8 / 1000))::int as fresh
     from vim where deleted_at is null`,
    [sinceMs],
  );
  return { live: rows[0].live, fresh: rows[0].fresh };
}

export interface StreamRecorder<T> {
  readonly records: T[];
  /** Reconnect attempts (the SDK's onReconnect calls). */
  reconnects: number;
  /** When each attempt began (the first thousand). */
  readonly reconnectTimes: number[];
  /** Ends the stream; resolves when its loop has returned. */
  stop(): Promise<void>;
  /** The error that ended the loop, if it ended by itself. */
  readonly failure: unknown;
}

function recordStream<M, T>(
  open: (signal: AbortSignal, onReconnect: () => void) => AsyncIterable<M>,
  map: (m: M, connection: number) => T,
): StreamRecorder<T> {
  const abort = new AbortController();
  const recorder = {
    records: [] as T[],
    reconnects: 0,
    reconnectTimes: [] as number[],
    failure: undefined as unknown,
    stop: async () => {},
  };
  const onReconnect = () => {
    recorder.reconnects++;
    if (recorder.reconnectTimes.length < 1_000) recorder.reconnectTimes.push(Date.now());
  };
  const loop = (async () => {
    try {
      for await (const m of open(abort.signal, onReconnect)) recorder.records.push(map(m, recorder.reconnects));
    } catch (err) {
      if (!abort.signal.aborted) recorder.failure = err;
    }
  })();
  recorder.stop = async () => {
    abort.abort();
    await loop;
  };
  return recorder;
}

/** The VIM watcher: every WatchVims message from the first VIM's first change on, resuming after the last event id. */
export function recordVimWatch(client: VimmonClient): StreamRecorder<WatchRecord> {
  return recordStream(
    (signal, onReconnect) => client.watchVims({ afterEventId: 0 }, { signal, onReconnect, maxReconnectDelayMs: 1_000 }),
    (m, connection) => ({
      eventId: m.eventId,
      vimId: m.vimId,
      status: VimStatus[m.status] ?? String(m.status),
      atMs: Date.now(),
      connection,
    }),
  );
}

/** An alarm subscriber from the first stored alarm on, resuming after the last alarm id. */
export function recordAlarms(client: VimmonClient): StreamRecorder<AlarmRecord> {
  return recordStream(
    (signal, onReconnect) => client.subscribeAlarms({ afterAlarmId: 0 }, { signal, onReconnect, maxReconnectDelayMs: 1_000 }),
    (m, connection) => ({ alarmId: m.alarmId, type: m.type, vimId: m.vimId, host: m.host, atMs: Date.now(), connection }),
  );
}

/**
 * The live control of the stale-call checks: a report from a VIM's current
 * action claiming UNREACHABLE for a reachable VIM. The conductor must store it;
 * handed to the checker as if it were stale, it must come out as accepted and
 * traced, or the checker could not see a real breach.
 */
export async function sendControlReport(pool: pg.Pool, conductorTarget: string, vimId: string): Promise<StaleCall> {
  const { rows } = await pool.query(`select action_id from vim where id = $1`, [vimId]);
  const actionId = rows[0].action_id as string;
  const client = createVimmonClient({ conductor: conductorTarget, deadline: 5_000, retry: false });
  const call: StaleCall = { vimId, actionId, sentStatus: 'UNREACHABLE', startedAtMs: Date.now(), endedAtMs: 0, answer: '' };
  try {
    const reply = await client.conductor.updateVim({
      vimId,
      actionId,
      status: VimStatus.VIM_STATUS_UNREACHABLE,
      statusReason: VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED,
    });
    call.answer = VimStatus[reply.status] ?? String(reply.status);
  } catch (err) {
    call.answer = err instanceof ClientError ? `error:${Status[err.code]}` : `error:${String(err)}`;
  } finally {
    call.endedAtMs = Date.now();
    client.close();
  }
  return call;
}

export interface StaleReporter {
  readonly calls: StaleCall[];
  stop(): Promise<void>;
}

export interface StaleReporterOptions {
  pool: pg.Pool;
  /** The conductors' proxy, as the executors reach it. */
  conductorTarget: string;
  /** VIMs whose target never goes down: the stale reporter claims they are UNREACHABLE, which only a stale report could store. */
  vimIds: ReadonlySet<string>;
  periodMs: number;
}

/**
 * Sends conductor UpdateVim calls with action ids each VIM had before (learnt
 * from the trigger log) claiming UNREACHABLE for VIMs that are reachable all
 * along; every call must be answered BAD_ACTION and leave no trace.
 */
export function startStaleReporter(o: StaleReporterOptions): StaleReporter {
  const client = createVimmonClient({ conductor: o.conductorTarget, deadline: 5_000, retry: false });
  const calls: StaleCall[] = [];
  const abort = new AbortController();
  const retired: Array<{ vimId: string; actionId: string }> = [];
  let lastLogId = 0;
  let turn = 0;
  const learn = async () => {
    const { rows } = await o.pool.query(
      `select id::float8 as id, vim_id, old_action from chaos_vim_log
       where id > $1 and old_action is not null and old_action <> new_action order by id limit 1000`,
      [lastLogId],
    );
    for (const r of rows) {
      lastLogId = r.id;
      if (o.vimIds.has(r.vim_id)) retired.push({ vimId: r.vim_id, actionId: r.old_action });
    }
  };
  const loop = (async () => {
    while (!abort.signal.aborted) {
      await new Promise((r) => setTimeout(r, o.periodMs));
      if (abort.signal.aborted) break;
      await learn().catch(() => {}); // the database may be down: try again next turn
      if (retired.length === 0) continue;
      const pick = retired[turn++ % retired.length]!;
      const call: StaleCall = { ...pick, sentStatus: 'UNREACHABLE', startedAtMs: Date.now(), endedAtMs: 0, answer: '' };
      try {
        const reply = await client.conductor.updateVim({
          vimId: pick.vimId,
          actionId: pick.actionId,
          status: VimStatus.VIM_STATUS_UNREACHABLE,
          statusReason: VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED,
        });
        call.answer = VimStatus[reply.status] ?? String(reply.status);
      } catch (err) {
        call.answer = err instanceof ClientError ? `error:${Status[err.code]}` : `error:${String(err)}`;
      }
      call.endedAtMs = Date.now();
      calls.push(call);
    }
  })();
  return {
    calls,
    async stop() {
      abort.abort();
      await loop;
      client.close();
    },
  };
}

/** Reads the conductors' fenced-report counters now and then, summing across their restarts. */
export function fencedReportCounter(urls: string[]) {
  const last = new Map<string, number>();
  let total = 0;
  const read = async () => {
    for (const url of urls) {
      const text = await fetch(url, { signal: AbortSignal.timeout(2_000) })
        .then((r) => r.text())
        .catch(() => '');
      const m = /^vimmon_conductor_reports_total\{outcome="fenced"\} (\d+)/m.exec(text);
      if (!m) continue;
      const now = Number(m[1]);
      const before = last.get(url) ?? 0;
      total += now >= before ? now - before : now; // a restarted conductor counts from 0
      last.set(url, now);
    }
  };
  return { read, total: () => total };
}
