// The alarm store writer: one writer stores what was raised, in id order, in
// one transaction per batch (the alarms in one multi-row INSERT, with the
// host state that goes with them), batching whatever piled up while the
// previous write ran (group commit).
//
// One row never holds up the rest. A database that cannot be reached is
// waited for (the batch is retried with backoff; the hub refuses new alarms
// once too many wait). A batch the database refuses for any other reason is
// split until the rows at fault are found: every other alarm is stored, with
// the host rows and Nova marks of the batch, and each refused alarm is put
// aside in alarm_quarantine (logged, counted); the watermark then moves past
// it like past a stored one.
import { delay } from 'abort-controller-x';
import { isDatabaseUnavailable } from '../common/errors.js';
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import { storableText, type AlarmRecord, type AlarmStore, type HostRecord, type NovaDoneMark, type SaveBatch } from './alarm-store.js';

/** What one raise (or record) queues for storage. */
export interface StoreJob extends SaveBatch {
  /** The job's last alarm id; undefined when it holds no alarm. */
  lastAlarmId: number | undefined;
  /** Called once the job is stored. */
  stored?: () => void;
}

export interface AlarmWriterOptions {
  store: Pick<AlarmStore, 'save' | 'quarantine' | 'quarantinedCount'>;
  logger: Logger;
  /** Most alarms stored in one transaction (a bigger single job is stored whole). */
  maxBatch: number;
  retry: BackoffOptions;
  /** Bound on flush(). */
  finalFlushMs: number;
  /** Each job once stored (or its refused rows put aside), in queue order. */
  onStored(job: StoreJob): void;
}

export interface AlarmWriter {
  /** Reads how many alarms are in quarantine. */
  start(): Promise<void>;
  /** Queues a job; an empty one is dropped. */
  enqueue(job: StoreJob): void;
  /** Stores queued jobs until the signal aborts. */
  run(signal: AbortSignal): Promise<void>;
  /** The last attempts, bounded by finalFlushMs, to store what is still queued. */
  flush(): Promise<void>;
  /** Alarms queued and not yet stored. */
  readonly pending: number;
  /** Rows in alarm_quarantine (loaded at start, plus those put aside since), and alarms the quarantine refused too (dropped). */
  readonly refused: Readonly<RefusedCounts>;
}

interface RefusedCounts {
  quarantined: number;
  dropped: number;
}

export function createAlarmWriter(options: AlarmWriterOptions): AlarmWriter {
  const { store, logger, maxBatch, retry, finalFlushMs, onStored } = options;
  const jobs: StoreJob[] = [];
  let pending = 0;
  let wakeWriter: (() => void) | undefined;
  let wakeScheduled = false;
  const refused: RefusedCounts = { quarantined: 0, dropped: 0 };

  async function writeOnce(): Promise<boolean> {
    const batch: StoreJob[] = [];
    let count = 0;
    for (const job of jobs) {
      if (batch.length > 0 && count + job.alarms.length > maxBatch) break;
      batch.push(job);
      count += job.alarms.length;
    }
    try {
      try {
        await store.save(merged(batch));
      } catch (err) {
        if (isRetryable(err)) throw err;
        logger.warn('the database refused a batch of alarms; finding the rows at fault', { error: databaseMessage(err), alarms: count });
        // Every statement is idempotent: if the database goes away halfway, the
        // whole batch is retried and what was stored is not stored twice.
        await saveIsolating(store, logger, batch, err, refused);
      }
    } catch (err) {
      logger.warn('cannot store alarms; kept in memory and retried', { err, alarms: count, pending });
      return false;
    }
    jobs.splice(0, batch.length);
    for (const job of batch) {
      pending -= job.alarms.length;
      onStored(job);
    }
    return true;
  }

  return {
    async start() {
      refused.quarantined = await store.quarantinedCount();
    },

    enqueue(job) {
      if (job.alarms.length === 0 && job.hosts.length === 0 && job.novaDone.length === 0) return;
      jobs.push(job);
      pending += job.alarms.length;
      // The writer starts after this turn of the event loop: the subscribers' writes
      // reach their sockets first, then the rows are serialised.
      if (!wakeScheduled) {
        wakeScheduled = true;
        setImmediate(() => {
          wakeScheduled = false;
          wakeWriter?.();
        });
      }
    },

    async run(signal) {
      let attempt = 0;
      while (!signal.aborted) {
        if (jobs.length === 0) {
          await new Promise<void>((resolve) => {
            const done = () => {
              signal.removeEventListener('abort', done);
              if (wakeWriter === done) wakeWriter = undefined;
              resolve();
            };
            wakeWriter = done;
            signal.addEventListener('abort', done, { once: true });
          });
          continue;
        }
        if (await writeOnce()) attempt = 0;
        // Rejects only on abort (with the signal's reason, whatever it is): the loop then ends.
        else await delay(signal, backoffDelayMs(attempt++, retry)).catch(() => undefined);
      }
    },

    async flush() {
      const deadline = AbortSignal.timeout(finalFlushMs);
      while (jobs.length > 0 && !deadline.aborted) {
        if (!(await writeOnce())) await delay(deadline, 200).catch(() => undefined);
      }
      if (pending > 0) logger.error('alarms sent but not stored at shutdown', { alarms: pending });
    },

    get pending() {
      return pending;
    },

    get refused() {
      return refused;
    },
  };
}

function merged(batch: SaveBatch[]): SaveBatch {
  if (batch.length === 1) return batch[0]!;
  return { alarms: batch.flatMap((j) => j.alarms), hosts: batch.flatMap((j) => j.hosts), novaDone: batch.flatMap((j) => j.novaDone) };
}

/**
 * A failure that says nothing about the rows: the database cannot be reached
 * (isDatabaseUnavailable), or it is short of something for a while (SQLSTATE
 * class 40 serialization failure or deadlock, 53 insufficient resources, 58
 * system error, 57014 statement cancelled, 55P03 lock not available). The
 * batch is retried whole, later; splitting it would only quarantine good rows.
 */
function isRetryable(err: unknown): boolean {
  if (isDatabaseUnavailable(err)) return true;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string' || code.length !== 5) continue;
    if (/^(40|53|58)/.test(code) || code === '57014' || code === '55P03') return true;
  }
  return false;
}

/** The database's own message (the ORM's carries the detail), or the error's. */
function databaseMessage(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? ` (SQLSTATE ${e.code})` : '';
  return storableText(`${message}${code}`, 1_000);
}

/**
 * Stores a batch the database refused (err), all but the rows at fault: jobs
 * are split in halves until one raise is alone, then its alarms are split down
 * to single ones; a single alarm refused goes to alarm_quarantine. The raise's
 * host rows and Nova marks are stored after its alarms (a crash in between
 * leaves the host not recorded: the next report raises again, nothing is
 * lost); a host row or mark refused on its own is logged and left out.
 * Throws only what isRetryable says, for the caller to retry the whole batch.
 */
async function saveIsolating(
  store: AlarmWriterOptions['store'],
  logger: Logger,
  batch: SaveBatch[],
  err: unknown,
  counts: RefusedCounts,
): Promise<void> {
  const attempt = async (part: SaveBatch): Promise<unknown> => {
    try {
      await store.save(part);
      return undefined;
    } catch (e) {
      if (isRetryable(e)) throw e;
      return e ?? new Error('save failed');
    }
  };

  const quarantine = async (alarm: AlarmRecord, refusal: unknown) => {
    const error = databaseMessage(refusal);
    logger.error('the database refused an alarm; put aside in alarm_quarantine, the alarms after it are stored', {
      alarmId: alarm.alarmId,
      type: alarm.type,
      host: storableText(alarm.host, 255),
      error,
    });
    try {
      if (await store.quarantine(alarm, error)) counts.quarantined++;
    } catch (qErr) {
      if (isRetryable(qErr)) throw qErr;
      counts.dropped++;
      logger.error('the alarm cannot be quarantined either; dropped', {
        alarmId: alarm.alarmId,
        error,
        quarantineError: databaseMessage(qErr),
      });
    }
  };

  const alarms = async (list: AlarmRecord[], refusal: unknown): Promise<void> => {
    if (list.length === 1) return quarantine(list[0]!, refusal);
    const mid = list.length >>> 1;
    for (const half of [list.slice(0, mid), list.slice(mid)]) {
      const e = await attempt({ alarms: half, hosts: [], novaDone: [] });
      if (e !== undefined) await alarms(half, e);
    }
  };

  const rows = async (hosts: HostRecord[], marks: NovaDoneMark[], refusal: unknown): Promise<void> => {
    if (hosts.length + marks.length === 1) {
      const what = hosts[0] ? { host: storableText(hosts[0].host, 255), faultId: hosts[0].faultId } : { mark: marks[0] };
      logger.error('the database refused a host state; left out', { ...what, error: databaseMessage(refusal) });
      return;
    }
    const mid = (hosts.length + marks.length) >>> 1;
    const halves: Array<[HostRecord[], NovaDoneMark[]]> = [
      [hosts.slice(0, mid), marks.slice(0, Math.max(0, mid - hosts.length))],
      [hosts.slice(mid), marks.slice(Math.max(0, mid - hosts.length))],
    ];
    for (const [h, m] of halves) {
      if (h.length + m.length === 0) continue;
      const e = await attempt({ alarms: [], hosts: h, novaDone: m });
      if (e !== undefined) await rows(h, m, e);
    }
  };

  const jobs = async (list: SaveBatch[], refusal: unknown): Promise<void> => {
    if (list.length > 1) {
      const mid = list.length >>> 1;
      for (const half of [list.slice(0, mid), list.slice(mid)]) {
        const e = await attempt(merged(half));
        if (e !== undefined) await jobs(half, e);
      }
      return;
    }
    const job = list[0]!;
    const hasRows = job.hosts.length + job.novaDone.length > 0;
    if (job.alarms.length > 0) {
      // Alone, the alarms were refused already unless the rows were the cause.
      const e = hasRows ? await attempt({ alarms: job.alarms, hosts: [], novaDone: [] }) : refusal;
      if (e !== undefined) await alarms(job.alarms, e);
    }
    if (hasRows) {
      const e = job.alarms.length > 0 ? await attempt({ alarms: [], hosts: job.hosts, novaDone: job.novaDone }) : refusal;
      if (e !== undefined) await rows(job.hosts, job.novaDone, e);
    }
  };

  await jobs(batch, err);
}
