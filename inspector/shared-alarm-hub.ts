// The alarm hub of inspectors sharing one database (VIMMON_INSPECTOR_SHARED):
// every inspector delivers every alarm, its own and the others', live, with
// strictly increasing ids on each stream, and a subscriber resumes by
// after_alarm_id on any of them, missing nothing and repeating nothing.
//
// Why not the single inspector's shortcut (alarm-stream.ts). Ids reserved
// ahead in blocks cannot work across inspectors: A's unused block lies below
// B's ids, and A's later alarms would land below a point B's subscribers have
// passed. So here an alarm's id is drawn at insert, inside the transaction
// that stores it with its host's new state (alarm-store.ts, idsAtInsert), and
// the transaction announces it (NOTIFY). Every inspector, the one that raised
// included, delivers alarms from the table through db/alarm-feed.ts: in id
// order, up to the feed's watermark (below it every alarm is delivered or
// will never commit). The cost is a commit and a NOTIFY on the live path
// (bench/inspector-shared.ts measures it against the shortcut).
//
// Catching up. `log` holds the alarms the feed delivered, in id order; every
// alarm with an id in (logFloor, released] is in it. A subscriber reads the
// table up to logFloor, then the log, and joins the live fan-out in the same
// synchronous step in which it takes the log's tail (alarm-subscribers.ts):
// what the feed delivers after that step reaches its queue, nothing before.
//
// A raise resolves once its alarms are stored, with their ids; a VIM alarm
// another inspector stored first for the same transition is left out (the
// other's reaches subscribers through the feed). An alarm the database
// refuses is put aside in alarm_quarantine with an id of its own and reaches
// no subscriber: it never committed. If the connection is lost during COMMIT
// the batch is stored again when it had in fact committed: its alarms then
// appear twice, with new ids.
import { delay } from 'abort-controller-x';
import type { BackoffOptions } from '../common/delay.js';
import { UnavailableError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { alarmTypeLabel, type CounterSeries, type InspectorMetrics } from '../common/metrics.js';
import { createAlarmFeed } from '../db/alarm-feed.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { rowToAlarm, type AlarmRecord, type AlarmStore } from './alarm-store.js';
import type { AlarmHub } from './alarm-stream.js';
import { createAlarmSubscribers, indexAfterId, subscribeFrom, type CatchUpSource } from './alarm-subscribers.js';
import { createAlarmWriter } from './alarm-writer.js';

export interface SharedAlarmHubOptions {
  /** An alarm store made with idsAtInsert. */
  store: AlarmStore;
  /** For the feed's LISTEN connection. */
  databaseUrl: string;
  logger: Logger;
  subscriberQueueSize?: number;
  subscriberQueueBytes?: number;
  /** Alarms raised and not yet stored beyond which raise() answers UNAVAILABLE. Default 200,000. */
  maxPendingAlarms?: number;
  /** Delivered alarms kept in memory for catching up. Default 10,000. */
  recentSize?: number;
  /** Most alarms stored in one transaction. Default 5,000. */
  maxBatch?: number;
  retry?: BackoffOptions;
  /** Bound on the last store attempts once run()'s signal aborts. */
  finalFlushMs?: number;
  /**
   * How often the feed checks its open gaps (ids that may still commit; an alarm above one waits).
   * Default 100 ms: a check is one pg_locks query, made only while a gap is open (a rolled-back
   * insert, or a VIM alarm the other inspector stored first).
   */
  settleIntervalMs?: number;
  metrics?: InspectorMetrics;
}

const pageSize = 500;

export function createSharedAlarmHub(options: SharedAlarmHubOptions): AlarmHub {
  const { store, logger, metrics } = options;
  const queueSize = options.subscriberQueueSize ?? 10_000;
  const queueBytes = options.subscriberQueueBytes ?? 8 * 1024 * 1024;
  const maxPending = options.maxPendingAlarms ?? 200_000;
  const recentSize = options.recentSize ?? 10_000;
  const retry = options.retry ?? { baseDelayMs: 100, maxDelayMs: 5_000 };
  const joinBacklog = Math.max(1, Math.min(1_000, Math.floor(queueSize / 2)));

  let started = false;
  let stopped = false;
  /** Every alarm at or below this id is in the table, or never will be. */
  let released = 0;
  /** Every alarm delivered by the feed with an id above logFloor is in log[logHead…]. */
  let logFloor = 0;
  let log: AlarmRecord[] = [];
  let logHead = 0;
  /** Jobs queued for storage, and stored (the writer stores them in queue order). */
  let enqueued = 0;
  let storedJobs = 0;
  const storedWaiters: Array<{ seq: number; resolve(): void }> = [];

  const subscribers = createAlarmSubscribers({ queueSize, queueBytes, metrics });
  const writer = createAlarmWriter({
    store,
    logger,
    maxBatch: options.maxBatch ?? 5_000,
    retry,
    finalFlushMs: options.finalFlushMs ?? 3_000,
    onStored(job) {
      storedJobs++;
      job.stored?.();
      while (storedWaiters.length > 0 && storedWaiters[0]!.seq <= storedJobs) storedWaiters.shift()!.resolve();
    },
  });
  const raisedByType: Array<CounterSeries | undefined> = [];
  const countRaised = (type: AlarmType) => (raisedByType[type] ??= metrics!.alarmRaised(alarmTypeLabel(AlarmType[type]))).inc();

  const feed = createAlarmFeed({
    databaseUrl: options.databaseUrl,
    logger,
    settleIntervalMs: options.settleIntervalMs ?? 100,
    retry: { baseDelayMs: 200, maxDelayMs: 5_000 },
    startAfter(newest) {
      logFloor = newest;
      return newest;
    },
    onChanges(rows) {
      const alarms = rows.filter((r) => r.alarm_id > logFloor).map(rowToAlarm);
      for (const a of alarms) log.push(a);
      released = Math.max(released, feed.watermark());
      subscribers.fanOut(alarms);
      trim();
    },
  });
  const feedStop = new AbortController();
  let feedRunning: Promise<void> | undefined;

  function trim() {
    const excess = log.length - logHead - recentSize;
    if (excess <= 0) return;
    logHead += excess;
    logFloor = log[logHead - 1]!.alarmId;
    if (logHead > 16_384 && logHead * 2 > log.length) {
      log = log.slice(logHead);
      logHead = 0;
    }
  }

  const catchUp: CatchUpSource = {
    tableFloor: () => logFloor,
    log: () => log,
    indexAfter,
    store,
    pageSize,
    joinBacklog,
  };

  /** Absolute index in `log` of the first alarm with an id above `id`. */
  function indexAfter(id: number): number {
    return indexAfterId(log, logHead, id);
  }

  return {
    async start() {
      await writer.start();
      feedRunning = feed.run(feedStop.signal);
      await feed.ready();
      // Ids below the starting point that may still commit (a transaction open at start) are
      // delivered, or given up, before any subscriber joins: the table answers for all below.
      while (feed.watermark() < logFloor) await delay(feedStop.signal, 20);
      released = Math.max(released, logFloor);
      started = true;
    },

    raise(drafts, hosts = []) {
      if (!started) return Promise.reject(new Error('alarm hub not started'));
      if (stopped) return Promise.reject(new UnavailableError('inspector is shutting down'));
      const behind = writer.pending;
      if (behind > 0 && behind + drafts.length > maxPending) {
        return Promise.reject(
          new UnavailableError(`alarm store is behind: ${behind} alarms raised and not yet stored, at most ${maxPending} may wait; retry`),
        );
      }
      const raisedAt = new Date();
      const alarms = drafts.map((d) => {
        const a = d as AlarmRecord;
        a.alarmId = 0; // drawn at insert
        a.raisedAt = raisedAt;
        a.expected ??= false;
        return a;
      });
      enqueued++;
      return new Promise((resolve) =>
        writer.enqueue({
          alarms,
          hosts,
          novaDone: [],
          lastAlarmId: undefined,
          stored: () => {
            const stored = alarms.filter((a) => a.alarmId > 0);
            if (metrics) for (const a of stored) countRaised(a.type);
            resolve(stored);
          },
        }),
      );
    },

    record(hosts, novaDone = []) {
      if (hosts.length === 0 && novaDone.length === 0) return Promise.resolve();
      enqueued++;
      return new Promise((resolve) => writer.enqueue({ alarms: [], hosts, novaDone, lastAlarmId: undefined, stored: resolve }));
    },

    whenStored(alarmId) {
      // An alarm with an id is stored: its raise resolved after the commit.
      if (alarmId !== undefined || storedJobs >= enqueued) return Promise.resolve();
      return new Promise((resolve) => storedWaiters.push({ seq: enqueued, resolve }));
    },

    subscribe(opts, signal) {
      const after = opts.liveOnly ? released : opts.afterAlarmId;
      return subscribeFrom(subscribers, catchUp, opts.filter, after, signal);
    },

    async list(afterAlarmId, filter, limit) {
      const upTo = released;
      if (afterAlarmId >= upTo) return { alarms: [], nextAfterAlarmId: afterAlarmId };
      const alarms = await store.read(afterAlarmId, upTo + 1, filter, limit);
      if (alarms.length === limit) return { alarms, nextAfterAlarmId: alarms[alarms.length - 1]!.alarmId };
      return { alarms, nextAfterAlarmId: upTo };
    },

    async run(signal) {
      try {
        await writer.run(signal);
        stopped = true;
        await writer.flush();
      } finally {
        feedStop.abort();
        await feedRunning;
      }
    },

    stats() {
      const { quarantined, dropped } = writer.refused;
      return {
        lastAlarmId: released,
        storedAlarmId: released,
        pendingStore: writer.pending,
        subscribers: subscribers.size,
        quarantined,
        dropped,
      };
    },
  };
}
