// Retention: the oldest rows of vim_event, vim_audit, alarm and alarm_quarantine go once they are
// older than an age or beyond a count, so the tables stay bounded over years.
//
// Batch deletes, not native partitions (ARCHITECTURE.md "Retention" says why, BENCHMARKS.md has the figures):
// the rows are narrow, the resume streams and the VIM event feed go by id, and a
// DELETE of the first few thousand ids by primary key takes only row locks and
// RowExclusiveLock, which no INSERT or UPDATE of a conductor waits on; dropping a
// partition takes AccessExclusiveLock on the parent, which every report's insert
// queues behind (and every query queued after that one).
//
// Each batch is one statement, so its own short transaction: it reads the first
// `batchSize` rows in id order and deletes the longest prefix of them that is
// beyond a limit. Only a prefix: everything at or below the highest id removed is
// gone, so "removed through N" (retention_mark, written by the same statement)
// says exactly which resume points lost rows. Ids come from sequences and are
// never handed out again, whatever is removed.
//
// Several servers or inspectors on one database: a pass holds a session advisory
// lock per table (pg_try_advisory_lock), so only one pass removes a table's rows
// at a time; the others skip it. A pass is idempotent: it removes what is beyond
// the limits now, and a second one right after finds nothing.
import { delay, isAbortError } from 'abort-controller-x';
import { ResumePointRemovedError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { RetentionMetrics } from '../common/metrics.js';
import { sql, typedSql, type Orm } from './connection.js';

export const retentionTables = ['vim_event', 'vim_audit', 'alarm', 'alarm_quarantine'] as const;
export type RetentionTable = (typeof retentionTables)[number];

const columns: Record<RetentionTable, { id: string; time: string }> = {
  vim_event: { id: 'id', time: 'created_at' },
  vim_audit: { id: 'id', time: 'created_at' },
  alarm: { id: 'alarm_id', time: 'stored_at' },
  alarm_quarantine: { id: 'alarm_id', time: 'quarantined_at' },
};

// Keys of pg_advisory_lock(int, int): a namespace of ours, then the table.
const lockNamespace = 0x76696d6d; // 'vimm'
const lockKey: Record<RetentionTable, number> = { vim_event: 1, vim_audit: 2, alarm: 3, alarm_quarantine: 4 };

/** Limits of one table; undefined: that limit is off. */
export interface RetentionLimits {
  /** Rows stored longer ago than this go. */
  maxAgeMs?: number;
  /** Rows beyond the newest this many go. */
  maxRows?: number;
}

export interface RetentionBatch {
  rows: number;
  /** How long the batch's transaction took (its locks are held that long at most). */
  ms: number;
}

export interface RetentionTableResult {
  table: RetentionTable;
  /** False when another pass held the table's lock: nothing was done here. */
  ran: boolean;
  deleted: number;
  batches: RetentionBatch[];
  /** The highest id removed so far, by this pass or before (0: none). */
  removedThrough: number;
}

export interface RetentionPassOptions {
  orm: Orm;
  limits: Partial<Record<RetentionTable, RetentionLimits>>;
  /** Rows a batch deletes at most. Default 1,000. */
  batchSize?: number;
  /** Batches per table and pass at most, so a pass ends even while rows arrive as fast as they go. Default 10,000. */
  maxBatches?: number;
  /**
   * After each batch, a pause this many times as long as the batch took, so a pass with much to do
   * (the first one over a long history) leaves PostgreSQL's CPU mostly to the reports: at 1 it
   * runs a statement at most half the time. Default 1; 0: no pause.
   */
  pauseFactor?: number;
  signal?: AbortSignal;
  onBatch?(table: RetentionTable, batch: RetentionBatch): void;
}

const noLimit = (l: RetentionLimits | undefined) => l === undefined || (l.maxAgeMs === undefined && l.maxRows === undefined);

/** One pass over the tables that have a limit; tables another pass holds are skipped. */
export async function runRetentionPass(options: RetentionPassOptions): Promise<RetentionTableResult[]> {
  const results: RetentionTableResult[] = [];
  for (const table of retentionTables) {
    const limits = options.limits[table];
    if (noLimit(limits)) continue;
    if (options.signal?.aborted) break;
    results.push(await passOverTable(options, table, limits!));
  }
  return results;
}

async function passOverTable(options: RetentionPassOptions, table: RetentionTable, limits: RetentionLimits): Promise<RetentionTableResult> {
  const batchSize = options.batchSize ?? 1_000;
  const maxBatches = options.maxBatches ?? 10_000;
  const result: RetentionTableResult = { table, ran: false, deleted: 0, batches: [], removedThrough: 0 };
  const knex = options.orm.em.fork().getConnection();
  const { id, time } = columns[table];
  const t = sql.id(table);
  const idc = sql.id(id);
  const timec = sql.id(time);
  // A session lock is taken and released on one connection: held for the pass, out of the pool.
  return typedSql(options.orm.em.fork())
    .connection()
    .execute(async (db) => {
      const locked = await sql<{ ok: boolean }>`select pg_try_advisory_lock(${lockNamespace}, ${lockKey[table]}) as ok`.execute(db);
      if (!locked.rows[0]?.ok) return result;
      result.ran = true;
      try {
        // Ids at or below this one are beyond the count (found once: an index-only scan from the newest end).
        let countBound = -1;
        if (limits.maxRows !== undefined) {
          // Aliased apart from the column: "order by id" would sort the text alias.
          const r = await sql<{
            bound: string;
          }>`select ${idc}::text as bound from ${t} order by ${idc} desc offset ${limits.maxRows} limit 1`.execute(db);
          if (r.rows[0]) countBound = Number(r.rows[0].bound);
        }
        for (let i = 0; i < maxBatches; i++) {
          if (options.signal?.aborted) break;
          const cutoff = limits.maxAgeMs === undefined ? null : new Date(Date.now() - limits.maxAgeMs).toISOString();
          const started = performance.now();
          const r = await sql<{ n: number; through: string | null }>`
          with head as (
            select ${idc} as id, ${timec} as at from ${t} order by ${idc} limit ${batchSize}
          ), keep as (
            select min(id) as id from head where not (id <= ${countBound} or (${cutoff}::timestamptz is not null and at < ${cutoff}::timestamptz))
          ), gone as (
            delete from ${t} where ${idc} in (select id from head where id < coalesce((select id from keep), 9223372036854775807)) returning ${idc} as id
          ), mark as (
            insert into retention_mark (table_name, removed_through)
            select ${table}, max(id) from gone having count(*) > 0
            on conflict (table_name) do update
              set removed_through = greatest(retention_mark.removed_through, excluded.removed_through), updated_at = now()
          )
          select count(*)::int as n, max(id)::text as through from gone`.execute(db);
          const rows = r.rows[0]?.n ?? 0;
          if (rows === 0) break;
          const batch = { rows, ms: performance.now() - started };
          result.deleted += rows;
          result.batches.push(batch);
          options.onBatch?.(table, batch);
          if (rows < batchSize) break;
          const pauseMs = batch.ms * (options.pauseFactor ?? 1);
          if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
        }
      } finally {
        await sql`select pg_advisory_unlock(${lockNamespace}, ${lockKey[table]})`.execute(db);
      }
      result.removedThrough = await removedThrough(knex, table);
      return result;
    });
}

interface Executes {
  execute(query: string, params?: unknown[]): Promise<unknown>;
}

async function removedThrough(connection: Executes, table: RetentionTable): Promise<number> {
  const rows = (await connection.execute('select removed_through::text as n from retention_mark where table_name = ?', [table])) as Array<{
    n: string;
  }>;
  return rows[0] ? Number(rows[0].n) : 0;
}

/** The highest id retention removed from table (0: none), and the oldest id it still holds (0: none). */
export async function retentionState(orm: Orm, table: RetentionTable): Promise<{ removedThrough: number; oldestHeld: number }> {
  const { id } = columns[table];
  const rows = (await orm.em
    .fork()
    .getConnection()
    .execute(
      `select (select removed_through::text from retention_mark where table_name = ?) as removed, (select min(${id})::text from ${table}) as oldest`,
      [table],
    )) as Array<{ removed: string | null; oldest: string | null }>;
  return { removedThrough: Number(rows[0]?.removed ?? 0), oldestHeld: Number(rows[0]?.oldest ?? 0) };
}

/**
 * Throws ResumePointRemovedError when retention removed rows of table after afterId
 * (afterId below the highest id removed); 0 is never out of range. Call it after
 * reading the rows that follow afterId: retention removes a prefix of ids and marks
 * it in the same statement, so a mark at or below afterId read after them means
 * that read missed nothing.
 */
export async function checkResumePoint(orm: Orm, table: RetentionTable, afterId: number, field: string, trailer: string): Promise<void> {
  if (afterId <= 0) return;
  const state = await retentionState(orm, table);
  if (state.removedThrough <= afterId) return;
  throw new ResumePointRemovedError(field, afterId, state.oldestHeld || state.removedThrough + 1, { trailer });
}

export interface RetentionRunOptions extends Omit<RetentionPassOptions, 'signal' | 'onBatch'> {
  logger: Logger;
  /** Between passes. */
  intervalMs: number;
  /** Before the first pass, so a starting process serves first. Default: a tenth of intervalMs. */
  firstDelayMs?: number;
  metrics?: RetentionMetrics;
}

/** Passes every intervalMs until signal aborts; a failed pass is logged and the next one runs as usual. */
export async function runRetention(options: RetentionRunOptions, signal: AbortSignal): Promise<void> {
  const { logger, metrics } = options;
  if (Object.values(options.limits).every(noLimit)) return;
  let wait = options.firstDelayMs ?? Math.round(options.intervalMs / 10);
  for (;;) {
    try {
      await delay(signal, wait);
    } catch (err) {
      if (isAbortError(err)) return;
      throw err;
    }
    wait = options.intervalMs;
    try {
      const results = await runRetentionPass({ ...options, signal });
      for (const r of results) {
        if (!r.ran) continue;
        const seconds = r.batches.reduce((sum, b) => sum + b.ms, 0) / 1_000;
        metrics?.passSeconds(r.table).observe(seconds);
        if (r.deleted === 0) continue;
        metrics?.deleted(r.table).inc(r.deleted);
        const longestMs = Math.max(...r.batches.map((b) => b.ms));
        logger.info('retention removed old rows', {
          table: r.table,
          rows: r.deleted,
          batches: r.batches.length,
          longestMs,
          removedThrough: r.removedThrough,
        });
      }
    } catch (err) {
      if (signal.aborted) return;
      logger.warn('retention pass failed; the next one tries again', { err: String(err) });
    }
  }
}
