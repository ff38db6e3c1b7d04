// Handing a VIM's action to an executor. The action id in the row is a fencing
// token: an action id is started at most once, on one executor. When a start
// fails we cannot know whether the action runs (the reply may be what was lost),
// so a retry on another executor always takes a NEW action id first; a stray
// action under the old id then gets BAD_ACTION at its first report.
import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../common/logger.js';
import type { Orm } from '../db/connection.js';
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
  /** Best effort: a lost stop is covered by BAD_ACTION. */
  stop(executor: string | null | undefined, actionId: string): Promise<void>;
}

export function createHandoff(options: HandoffOptions): Handoff {
  const { orm, pool, logger } = options;
  const startTimeoutMs = options.startTimeoutMs ?? 3_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 1_000;
  const maxAttempts = options.maxAttempts ?? 2;

  const em = (): EntityManager => orm.em.fork() as EntityManager;

  async function markStarted(vimId: string, actionId: string, executor: string): Promise<boolean> {
    const r = await em().execute<{ affectedRows: number }>(
      `update vim set action_started = true, executor = ? where id = ? and action_id = ? and deleted_at is null`,
      [executor, vimId, actionId],
      'run',
    );
    return r.affectedRows === 1;
  }

  async function reassign(vimId: string, fromActionId: string, executor: string): Promise<string | undefined> {
    const next = randomUUID();
    const r = await em().execute<{ affectedRows: number }>(
      `update vim set action_id = ?, action_assigned_at = now(), action_started = false, executor = ?
         where id = ? and action_id = ? and deleted_at is null`,
      [next, executor, vimId, fromActionId],
      'run',
    );
    return r.affectedRows === 1 ? next : undefined;
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
