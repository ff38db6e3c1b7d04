// Level-triggered: each pass reads which VIMs lack a working action and gives
// each a new action id and a new action. Rows are claimed FOR UPDATE SKIP LOCKED,
// so any number of Tacker servers reconcile at once without handing a VIM twice;
// a crash at any line leaves a row that the next pass (here or elsewhere) claims.
import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { backoffDelayMs, delay } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { Orm } from '../db/connection.js';
import { VimSchema, type Vim } from '../db/entities.js';
import type { ExecutorPool } from './executors.js';
import type { Handoff } from './handoff.js';
import { monitorOf } from './vim-view.js';

export interface ReconcilerOptions {
  orm: Orm;
  pool: ExecutorPool;
  handoff: Handoff;
  logger: Logger;
  intervalMs: number;
  /** An action not acknowledged by an executor this long after assignment is replaced. */
  startGraceMs?: number;
  batchSize?: number;
  concurrency?: number;
  /** How often live executors are asked which actions they run (restarted executors lose theirs). */
  lostActionCheckMs?: number;
}

export interface Reconciler {
  /** One pass; resolves to the number of VIMs given a new action. */
  pass(): Promise<number>;
  run(signal: AbortSignal): Promise<void>;
}

interface ClaimedRow {
  id: string;
  action_id: string;
  executor: string | null;
}

export function createReconciler(options: ReconcilerOptions): Reconciler {
  const { orm, pool, handoff, logger } = options;
  const startGraceMs = options.startGraceMs ?? 5_000;
  const batchSize = options.batchSize ?? 200;
  const concurrency = options.concurrency ?? 32;

  const lostActionCheckMs = options.lostActionCheckMs ?? 10_000;
  let lastLostCheck = 0;

  /** Actions a live executor should run but does not (it restarted): (vim id, action id) pairs. */
  async function findLostActions(): Promise<Array<[string, string]>> {
    const lost: Array<[string, string]> = [];
    for (const executor of pool.live()) {
      // Rows first, then the executor's list: an action started after this read is not judged.
      const expected = await (orm.em.fork() as EntityManager).execute<Array<{ id: string; action_id: string }>>(
        `select id, action_id from vim
          where deleted_at is null and executor = ? and action_started
            and action_assigned_at < now() - ? * interval '1 millisecond'`,
        [executor, startGraceMs],
      );
      if (expected.length === 0) continue;
      let running: Set<string>;
      try {
        running = await pool.runningActions(executor, 5_000);
      } catch {
        continue; // unreachable now: the stale limit covers it
      }
      for (const r of expected) if (!running.has(r.action_id)) lost.push([r.id, r.action_id]);
    }
    if (lost.length > 0) logger.warn('executors lost actions (restarted?); replacing them', { count: lost.length });
    return lost;
  }

  async function claim(lost: Array<[string, string]>): Promise<Array<{ row: Vim; oldActionId: string; oldExecutor: string | null }>> {
    const em = orm.em.fork() as EntityManager;
    // Postgres array literals: one parameter each, whatever the number of lost actions.
    const lostVims = `{${lost.map(([id]) => id).join(',')}}`;
    const lostActions = `{${lost.map(([, a]) => a).join(',')}}`;
    return em.transactional(async (tem) => {
      const rows = await tem.execute<ClaimedRow[]>(
        `select id, action_id, executor from vim
          where deleted_at is null
            and ((not action_started and action_assigned_at < now() - ? * interval '1 millisecond')
              or greatest(coalesce(last_report_at, action_assigned_at), action_assigned_at)
                   < now() - stale_after_ms * interval '1 millisecond'
              or (id, action_id) in (select unnest(?::uuid[]), unnest(?::uuid[])))
          order by action_assigned_at
          limit ?
          for update skip locked`,
        [startGraceMs, lostVims, lostActions, batchSize],
      );
      const out: Array<{ row: Vim; oldActionId: string; oldExecutor: string | null }> = [];
      for (const r of rows) {
        const actionId = randomUUID();
        const executor = pool.candidates(r.id)[0]!;
        const [updated] = await tem.execute<Array<Record<string, unknown>>>(
          `update vim set action_id = ?, action_assigned_at = now(), action_started = false, executor = ?
            where id = ? returning *`,
          [actionId, executor, r.id],
        );
        out.push({ row: tem.map(VimSchema, updated! as never) as Vim, oldActionId: r.action_id, oldExecutor: r.executor });
      }
      return out;
    });
  }

  async function pass(): Promise<number> {
    let total = 0;
    const checkLost = Date.now() - lastLostCheck >= lostActionCheckMs;
    if (checkLost) lastLostCheck = Date.now();
    // Rows already reassigned no longer match their old action id, so later batches skip them.
    const lost = checkLost ? await findLostActions() : [];
    while (true) {
      const claimed = await claim(lost);
      total += claimed.length;
      const queue = [...claimed];
      await Promise.all(
        Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
          for (let c = queue.shift(); c; c = queue.shift()) {
            logger.info('giving the VIM a new action', { vimId: c.row.id, from: c.oldActionId, to: c.row.actionId, executor: c.row.executor });
            void handoff.stop(c.oldExecutor, c.oldActionId);
            await handoff.launch(
              { actionId: c.row.actionId, vimId: c.row.id, authUrl: c.row.authUrl, monitor: monitorOf(c.row), knownStatus: c.row.status },
              c.row.executor!,
            );
          }
        }),
      );
      if (claimed.length < batchSize) return total;
    }
  }

  return {
    pass,
    async run(signal) {
      let failures = 0;
      while (!signal.aborted) {
        try {
          await pass();
          failures = 0;
          await delay(options.intervalMs, signal);
        } catch (err) {
          failures++;
          logger.warn('reconcile pass failed', { err: String(err), failures });
          await delay(backoffDelayMs(failures, { baseDelayMs: options.intervalMs, maxDelayMs: 30_000 }), signal);
        }
      }
    },
  };
}
