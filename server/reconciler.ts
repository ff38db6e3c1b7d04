// Level-triggered: each pass reads which VIMs lack a working action and gives
// each a new action id and a new action. Rows are claimed FOR UPDATE SKIP LOCKED,
// so any number of Tacker servers reconcile at once without handing a VIM twice;
// a crash at any line leaves a row that the next pass (here or elsewhere) claims.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { delay, isAbortError } from 'abort-controller-x';
import pLimit from 'p-limit';
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { ReplacementReason, ServerMetrics } from '../common/metrics.js';
import type { ExpressionBuilder } from 'kysely';
import { sql, typedSql, type Database, type Orm } from '../db/connection.js';
import { VimSchema, type Vim } from '../db/entities.js';
import type { ExecutorPool } from './executors.js';
import { newActionColumns, type Handoff } from './handoff.js';
import { actionSpecOf } from './vim-view.js';

export interface ReconcilerOptions {
  orm: Orm;
  pool: ExecutorPool;
  handoff: Handoff;
  logger: Logger;
  /** Opens the sealed credentials: an action is given the VIM's CA certificate. */
  key: Buffer;
  intervalMs: number;
  /** An action not acknowledged by an executor this long after assignment is replaced. */
  startGraceMs?: number;
  batchSize?: number;
  concurrency?: number;
  /**
   * How often live executors are asked their instance id, and one that restarted since its
   * actions were last listed is asked which actions it runs (a restart loses them all). Also at
   * once when an executor's health changes. Default 10 s.
   */
  lostActionCheckMs?: number;
  /** How often every live executor's actions are listed whatever its instance id. Default 5 min. */
  lostActionFullCheckMs?: number;
  /** Executors asked at once by that check. Default 4. */
  lostActionCheckConcurrency?: number;
  /** Counts replacements by reason. */
  metrics?: ServerMetrics;
  /**
   * When a VIM's start failed on every executor tried, it is claimed again no sooner than
   * this backoff (attempt n: up to baseDelayMs·2ⁿ, capped, jittered). Default 2 s to 5 min.
   */
  startBackoff?: BackoffOptions;
}

export interface Reconciler {
  /** One pass; resolves to the number of VIMs given a new action. */
  pass(): Promise<number>;
  run(signal: AbortSignal): Promise<void>;
}

/** No report (nor assignment) within the VIM's stale limit: its action is stale. */
const overdue = (eb: ExpressionBuilder<Database, 'vim'>) =>
  eb(
    eb.fn('greatest', [eb.fn.coalesce('last_report_at', 'action_assigned_at'), eb.ref('action_assigned_at')]),
    '<',
    // Interval arithmetic on a column: raw, with the column still checked.
    sql<Date>`now() - ${eb.ref('stale_after_ms')} * interval '1 millisecond'`,
  );

/** now() less ms, as a timestamptz; the builder has no interval arithmetic. */
const msAgo = (ms: number) => sql<Date>`now() - ${ms} * interval '1 millisecond'`;

export function createReconciler(options: ReconcilerOptions): Reconciler {
  const { orm, pool, handoff, logger } = options;
  const startGraceMs = options.startGraceMs ?? 5_000;
  const batchSize = options.batchSize ?? 200;
  const concurrency = options.concurrency ?? 32;
  const startBackoff = options.startBackoff ?? { baseDelayMs: 2_000, maxDelayMs: 5 * 60_000 };

  // How often a hand-over is looked at until its successor has taken over.
  const takeOverPollMs = 100;
  const lostActionCheckMs = options.lostActionCheckMs ?? 10_000;
  const lostActionFullCheckMs = options.lostActionFullCheckMs ?? 5 * 60_000;
  const lostActionCheckConcurrency = options.lostActionCheckConcurrency ?? 4;
  let lastLostCheck = 0;
  let lastFullCheck = 0;
  // Per executor, the instance id of the process whose whole list was last compared with the
  // rows: while it answers with the same id it has lost nothing (it did not restart), and one
  // ListActions of one action says so. Listing every action of every executor every check
  // cost the executors and servers more CPU than the VIMs' own reports at 50,000 VIMs.
  const checkedInstance = new Map<string, string>();

  /**
   * Actions a live executor should run but does not (it restarted): (vim id, action id) pairs.
   * The executors are asked at once, a few at a time: one after another, a pass took the sum
   * of every executor's ListActions (23.7 s for 10 executors of 9,000 actions, BENCHMARKS.md
   * "Scale"), and a hung one held the others for its whole deadline.
   */
  async function findLostActions(full: boolean): Promise<Array<[string, string]>> {
    const lost: Array<[string, string]> = [];
    const slots = pLimit(lostActionCheckConcurrency);
    await Promise.all(pool.live().map((executor) => slots(() => checkExecutor(executor, lost, full))));
    if (lost.length > 0) logger.warn('executors lost actions (restarted?); replacing them', { count: lost.length });
    return lost;
  }

  async function checkExecutor(executor: string, lost: Array<[string, string]>, full: boolean): Promise<void> {
    if (!full) {
      let instanceId: string;
      try {
        instanceId = await pool.instanceId(executor, 2_000);
      } catch {
        return; // unreachable now: the stale limit covers it
      }
      if (checkedInstance.get(executor) === instanceId) return;
    }
    // Rows first, then the executor's list: an action started after this read is not judged.
    const rows = await typedSql(orm.em.fork())
      .selectFrom('vim')
      .select(['id', 'action_id'])
      .select((eb) => eb('action_assigned_at', '<', msAgo(startGraceMs)).as('judged'))
      .where('deleted_at', 'is', null)
      .where('executor', '=', executor)
      .where((eb) => eb.ref('action_started'))
      .execute();
    if (rows.length === 0) return;
    let running: { instanceId: string; actions: Set<string> };
    try {
      // Listed in pages by action id: an action that runs throughout the listing is in
      // it; one started meanwhile may not be, and is not judged (assigned after the read).
      running = await pool.runningActions(executor, 5_000);
    } catch {
      return; // unreachable now, or restarted while listed: the stale limit or the next check
    }
    for (const r of rows) if (r.judged && !running.actions.has(r.action_id)) lost.push([r.id, r.action_id]);
    // Trusted from now on unless an action too young to judge is missing from the listing: it
    // may have been lost by a restart just before it, and this same id would hide that. (Young
    // ones that are listed run on this instance: a later restart changes the id.)
    if (rows.some((r) => !r.judged && !running.actions.has(r.action_id))) checkedInstance.delete(executor);
    else checkedInstance.set(executor, running.instanceId);
  }

  interface Claimed {
    row: Vim;
    oldActionId: string;
    oldExecutor: string | null;
    reason: ReplacementReason;
    /**
     * A hand-over: row.successorActionId runs beside the current action (still reporting on
     * its draining executor) and takes over with its first report; the old one is stopped then.
     */
    successor: boolean;
  }

  async function claim(lost: Array<[string, string]>, draining: string[], limit: number): Promise<Claimed[]> {
    // Arrays: one parameter each, whatever the number of lost actions.
    const lostVims = lost.map(([id]) => id);
    const lostActions = lost.map(([, a]) => a);
    const drainingSet = new Set(draining);
    return orm.em.fork().transactional(async (tem) => {
      const db = typedSql(tem);
      const rows = await db
        .selectFrom('vim')
        .select(['id', 'action_id', 'executor', 'action_started'])
        .select((eb) => overdue(eb).as('overdue'))
        .where('deleted_at', 'is', null)
        // Backing off after failed starts: not yet.
        .where((eb) => eb.or([eb('next_attempt_at', 'is', null), eb('next_attempt_at', '<=', sql<Date>`now()`)]))
        .where((eb) =>
          eb.or([
            eb.and([eb.not(eb.ref('action_started')), eb('action_assigned_at', '<', msAgo(startGraceMs))]),
            overdue(eb),
            eb(
              eb.refTuple('id', 'action_id'),
              'in',
              // unnest of the array parameters: raw, with no column in it to check.
              db
                .selectNoFrom([
                  sql<string>`unnest(${lostVims}::uuid[])`.as('id'),
                  sql<string>`unnest(${lostActions}::uuid[])`.as('action_id'),
                ])
                .$asTuple('id', 'action_id'),
            ),
            // A draining executor's VIMs move at once, not after their stale limit: each gets a
            // successor, again when one did not take over within the start grace.
            ...(draining.length > 0
              ? [
                  eb.and([
                    eb('executor', 'in', draining),
                    eb.or([
                      eb('successor_action_id', 'is', null),
                      eb('successor_assigned_at', '<', msAgo(startGraceMs)),
                      eb('successor_executor', 'in', draining),
                    ]),
                  ]),
                ]
              : []),
          ]),
        )
        .orderBy('action_assigned_at')
        .limit(limit)
        .forUpdate()
        .skipLocked()
        .execute();
      const lostPairs = new Set(lost.map(([id, action]) => `${id}/${action}`));
      const decided = rows.map((r) => {
        // Which condition above claimed it, the lost list first (its action had started):
        // a row matching more than one is counted once.
        const reason: ReplacementReason = lostPairs.has(`${r.id}/${r.action_id}`)
          ? 'lost'
          : r.executor !== null && drainingSet.has(r.executor)
            ? 'drained'
            : r.action_started
              ? 'stale'
              : 'unconfirmed';
        // Make before break where the current action still reports: a drained VIM whose action
        // runs and is not overdue keeps it until the successor's first report (conductor/fencing.ts).
        const successor = reason === 'drained' && r.action_started && !r.overdue;
        return { r, reason, successor, actionId: randomUUID(), executor: pool.candidates(r.id)[0]! };
      });
      // One UPDATE per kind for the whole batch: the claimed rows stay locked until commit, and
      // a conductor report of one of them waits that long (and the reports grouped behind it).
      // Row by row, 200 updates held them for hundreds of milliseconds: heartbeats of VIMs not
      // even moving came late (BENCHMARKS.md, rolling restart).
      const updated = new Map<string, Record<string, unknown>>();
      for (const successor of [true, false]) {
        const batch = decided.filter((d) => d.successor === successor);
        if (batch.length === 0) continue;
        // unnest of the array parameters: raw, with no column in it to check.
        const input = db
          .selectNoFrom([
            sql<string>`unnest(${batch.map((d) => d.r.id)}::uuid[])`.as('id'),
            sql<string>`unnest(${batch.map((d) => d.actionId)}::uuid[])`.as('new_action_id'),
            sql<string>`unnest(${batch.map((d) => d.executor)}::text[])`.as('new_executor'),
          ])
          .as('x');
        const written = await db
          .updateTable('vim')
          .from(input)
          .set((eb) =>
            successor
              ? {
                  successor_action_id: eb.ref('x.new_action_id'),
                  successor_executor: eb.ref('x.new_executor'),
                  successor_assigned_at: sql<Date>`now()`,
                }
              : newActionColumns(eb.ref('x.new_action_id'), eb.ref('x.new_executor')),
          )
          .whereRef('vim.id', '=', 'x.id')
          .returningAll('vim')
          .execute();
        for (const w of written) updated.set(w.id, w);
      }
      const out: Claimed[] = decided.map(({ r, reason, successor }) => ({
        row: tem.map(VimSchema, updated.get(r.id)!),
        oldActionId: r.action_id,
        oldExecutor: r.executor,
        reason,
        successor,
      }));
      return out;
    });
  }

  /** Records a failed start: the next claim of this VIM waits, longer with each failure in a row. */
  async function backOff(row: Vim, actionId: string): Promise<void> {
    const attempts = row.startAttempts + 1;
    const waitMs = backoffDelayMs(attempts - 1, startBackoff);
    try {
      await typedSql(orm.em.fork())
        .updateTable('vim')
        .set({ start_attempts: attempts, next_attempt_at: sql<Date>`now() + ${waitMs} * interval '1 millisecond'` })
        .where('id', '=', row.id)
        .where('action_id', '=', actionId) // not if it moved on meanwhile
        .execute();
      logger.info('start failed on every executor tried; backing off', { vimId: row.id, attempts, waitMs });
    } catch (err) {
      logger.warn('could not record the backoff; the VIM is retried at the next pass', { vimId: row.id, err: String(err) });
    }
  }

  /**
   * Stops each old action once its successor has taken over (its first report, which it
   * sends after its first round). One that has not within the start grace keeps its old
   * action: it is stopped by BAD_ACTION when the next pass's successor takes over, or by the
   * end of its executor's drain.
   */
  async function stopWhenTakenOver(handedOver: Claimed[]): Promise<void> {
    const waiting = new Map(handedOver.map((c) => [c.row.id, c]));
    const deadline = Date.now() + startGraceMs;
    try {
      while (waiting.size > 0 && Date.now() < deadline) {
        await sleep(takeOverPollMs);
        const rows = await typedSql(orm.em.fork())
          .selectFrom('vim')
          .select(['id', 'action_id'])
          .where('id', 'in', [...waiting.keys()])
          .execute();
        for (const r of rows) {
          const c = waiting.get(r.id)!;
          // Taken over by this successor, or moved on otherwise: the old action is not the VIM's.
          if (r.action_id !== c.oldActionId) {
            waiting.delete(r.id);
            void handoff.stop(c.oldExecutor, c.oldActionId);
          }
        }
      }
    } catch (err) {
      logger.warn('could not follow the hand-overs; the old actions stop at their next report', { err: String(err) });
    }
  }

  async function pass(): Promise<number> {
    let total = 0;
    // With no executor that may take an action, a claim would only write rows and make
    // calls that fail: wait (the pool's change wakes the loop when one comes back).
    if (pool.usable().length === 0) return 0;
    // Only toward a known-live executor: a drained VIM must not land on another draining one.
    const draining = pool.live().length > 0 ? pool.draining() : [];
    // Stale, unconfirmed and drained VIMs first: they need no executor's answer, so the lost-action
    // check (a ListActions of every executor) does not hold them up.
    total += await claimAndStart([], draining);
    if (Date.now() - lastLostCheck >= lostActionCheckMs) {
      lastLostCheck = Date.now();
      const full = lastLostCheck - lastFullCheck >= lostActionFullCheckMs;
      if (full) lastFullCheck = lastLostCheck;
      // Rows already reassigned no longer match their old action id, so later batches skip them.
      const lost = await findLostActions(full);
      if (lost.length > 0) total += await claimAndStart(lost, draining);
    }
    return total;
  }

  /** Claims in batches, and starts the new actions, until a batch comes back short. */
  async function claimAndStart(lost: Array<[string, string]>, draining: string[]): Promise<number> {
    let total = 0;
    while (true) {
      const limit = batchSize;
      const claimed = await claim(lost, draining, limit);
      total += claimed.length;
      for (const c of claimed) options.metrics?.reconcilerReplacements.inc({ reason: c.reason });
      const queue = [...claimed];
      const handedOver: Claimed[] = [];
      await Promise.all(
        Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
          for (let c = queue.shift(); c; c = queue.shift()) {
            if (c.successor) {
              const to = c.row.successorActionId!;
              logger.info('handing the VIM over to a successor action', {
                vimId: c.row.id,
                from: c.oldActionId,
                to,
                executor: c.row.successorExecutor,
                reason: c.reason,
              });
              const spec = { ...actionSpecOf(c.row, options.key), actionId: to };
              if (await handoff.launchSuccessor(spec, c.row.successorExecutor!)) handedOver.push(c);
              continue;
            }
            logger.info('giving the VIM a new action', {
              vimId: c.row.id,
              from: c.oldActionId,
              to: c.row.actionId,
              executor: c.row.executor,
              reason: c.reason,
            });
            const launched = await handoff.launch({ ...actionSpecOf(c.row, options.key), reportAtOnce: true }, c.row.executor!);
            // The old action is fenced from the claim on; stopping it frees its executor sooner.
            void handoff.stop(c.oldExecutor, c.oldActionId);
            if (!launched.started) await backOff(c.row, launched.actionId);
          }
        }),
      );
      // Not awaited: the old actions report until their successors take over, and the next
      // batch need not wait for that.
      if (handedOver.length > 0) void stopWhenTakenOver(handedOver);
      if (claimed.length < limit) return total;
    }
  }

  return {
    pass,
    async run(signal) {
      let failures = 0;
      // An executor's health change (one draining, one back) ends the wait: its VIMs move now.
      let wake = new AbortController();
      const unsubscribe = pool.onChange(() => {
        // One back may be a restarted one: ask the executors their instance ids at this pass.
        lastLostCheck = 0;
        wake.abort();
      });
      signal.addEventListener('abort', unsubscribe, { once: true });
      while (!signal.aborted) {
        wake = new AbortController();
        try {
          await pass();
          failures = 0;
        } catch (err) {
          failures++;
          logger.warn('reconcile pass failed', { err: String(err), failures });
        }
        const wait =
          failures === 0 ? options.intervalMs : backoffDelayMs(failures, { baseDelayMs: options.intervalMs, maxDelayMs: 30_000 });
        // An abort ends the wait, and the loop: run() resolves, it does not throw.
        await delay(AbortSignal.any([signal, wake.signal]), wait).catch((err: unknown) => {
          if (!isAbortError(err)) throw err;
        });
      }
    },
  };
}
