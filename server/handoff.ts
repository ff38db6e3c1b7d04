// Handing a VIM's action to an executor. The action id in the row is a fencing
// token: an action id is started at most once, on one executor. When a start
// fails we cannot know whether the action runs (the reply may be what was lost),
// so a retry on another executor always takes a NEW action id first; a stray
// action under the old id then gets BAD_ACTION at its first report.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { sql, typedSql, type Orm } from '../db/connection.js';
import type { ActionSpec, ExecutorPool } from './executors.js';

export interface HandoffOptions {
  orm: Orm;
  pool: ExecutorPool;
  logger: Logger;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** Executors tried (each with a fresh action id after the first) before the reconciler takes over. */
  maxAttempts?: number;
}

export interface Handoff {
  /** Starts spec.actionId on `executor`, falling back to others. Never throws: what fails, the reconciler heals. */
  launch(spec: ActionSpec, executor: string): Promise<{ started: boolean; actionId: string; executor: string }>;
  /**
   * Starts the row's successor action (spec.actionId) on `executor`, once: it takes over
   * with its first report (conductor/fencing.ts). When the start fails the successor is
   * cleared, so the VIM stays with its current action and a later pass tries again.
   */
  launchSuccessor(spec: ActionSpec, executor: string): Promise<boolean>;
  /** Best effort: a lost stop is covered by BAD_ACTION. */
  stop(executor: string | null | undefined, actionId: string): Promise<void>;
}

/**
 * The columns that make `actionId` on `executor` the VIM's new action (not yet acknowledged);
 * values or column references (a batch update).
 * A new current action ends any hand-over: its successor would take over from the old one.
 */
export function newActionColumns<A, E>(actionId: A, executor: E) {
  return {
    action_id: actionId,
    action_assigned_at: sql<Date>`now()`,
    action_started: false,
    executor,
    successor_action_id: null,
    successor_executor: null,
    successor_assigned_at: null,
  };
}

export function createHandoff(options: HandoffOptions): Handoff {
  const { orm, pool, logger } = options;
  const startTimeoutMs = options.startTimeoutMs ?? 3_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 1_000;
  const maxAttempts = options.maxAttempts ?? 2;

  const db = () => typedSql(orm.em.fork());

  async function markStarted(vimId: string, actionId: string, executor: string): Promise<boolean> {
    const r = await db()
      .updateTable('vim')
      // Acknowledged: the reconciler's backoff for this VIM starts over.
      .set({ action_started: true, executor, start_attempts: 0, next_attempt_at: null })
      .where('id', '=', vimId)
      .where('action_id', '=', actionId)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return r.numUpdatedRows === 1n;
  }

  async function reassign(vimId: string, fromActionId: string, executor: string): Promise<string | undefined> {
    const next = randomUUID();
    const r = await db()
      .updateTable('vim')
      .set(newActionColumns(next, executor))
      .where('id', '=', vimId)
      .where('action_id', '=', fromActionId)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return r.numUpdatedRows === 1n ? next : undefined;
  }

  const stop: Handoff['stop'] = async (executor, actionId) => {
    if (!executor) return;
    try {
      await pool.stop(executor, actionId, stopTimeoutMs);
    } catch (err) {
      logger.info('stop not confirmed; the action will be fenced at its next report', { executor, actionId, err: String(err) });
    }
  };

  return {
    stop,
    async launchSuccessor(spec, executor) {
      try {
        await pool.start(executor, { ...spec, reportAtOnce: false, reportFirstRound: true }, startTimeoutMs);
        return true;
      } catch (err) {
        logger.warn('StartAction of a successor failed; the VIM keeps its action', {
          vimId: spec.vimId,
          actionId: spec.actionId,
          executor,
          err: String(err),
        });
        void stop(executor, spec.actionId);
        await db()
          .updateTable('vim')
          .set({ successor_action_id: null, successor_executor: null, successor_assigned_at: null })
          .where('id', '=', spec.vimId)
          .where('successor_action_id', '=', spec.actionId)
          .execute()
          .catch((e: unknown) => logger.warn('could not clear the successor; it expires', { vimId: spec.vimId, err: String(e) }));
        return false;
      }
    },
    async launch(spec, executor) {
      const order = [executor, ...pool.candidates(spec.vimId).filter((e) => e !== executor)].slice(0, maxAttempts);
      let actionId = spec.actionId;
      for (let i = 0; i < order.length; i++) {
        const target = order[i]!;
        if (i > 0) {
          const next = await reassign(spec.vimId, actionId, target).catch((err) => {
            logger.warn('could not reassign the action', { vimId: spec.vimId, err: String(err) });
            return undefined;
          });
          if (!next) break; // deregistered, updated or taken over meanwhile
          actionId = next;
        }
        try {
          await pool.start(target, { ...spec, actionId }, startTimeoutMs);
        } catch (err) {
          logger.warn('StartAction failed', { vimId: spec.vimId, actionId, executor: target, err: String(err) });
          void stop(target, actionId);
          continue;
        }
        try {
          if (!(await markStarted(spec.vimId, actionId, target))) {
            // The VIM moved on while we started: this action is now stale.
            void stop(target, actionId);
          }
        } catch (err) {
          logger.warn('could not record the start; the reconciler will retry', { vimId: spec.vimId, err: String(err) });
        }
        return { started: true, actionId, executor: target };
      }
      return { started: false, actionId, executor };
    },
  };
}
