// The alarm log: raises alarms, fans them out to subscribers, has them stored.
// This is the single inspector's shortcut; inspectors sharing a database
// (VIMMON_INSPECTOR_SHARED) use shared-alarm-hub.ts instead, which says why.
//
// Alarm first, stored right after. raise() gives each alarm an id from a pool
// reserved ahead (alarm-ids.ts), hands it to every matching subscriber's queue
// and returns, all in one synchronous step: no disk, no network on the live
// path. The store writer (alarm-writer.ts) then stores what was raised, in id
// order, batching whatever piled up while its previous write ran.
//
// Why no subscriber ever sees a gap or a duplicate: every alarm stays in
// memory (`log`) until it is stored, and only stored alarms are trimmed from
// the front of the log. So at any instant every raised alarm with an id below
// the log's first is in the table. A subscriber catches up from the table
// (ids below the log's first) and from the log, then, in the same synchronous
// step in which it takes the log's tail, joins the live fan-out: alarms raised
// after that step reach its queue, none before. Ids come from the sequence in
// raise order, so they are strictly increasing across restarts too.
//
// The cost of sending first: if the process dies in the few milliseconds
// between raise and commit, live subscribers saw alarms the table never gets.
// The host's new state is written in the same transaction as its alarms, so
// after a restart the inspector does not believe the host down either, and the
// monitor's next "down" raises the alarms again (with new ids, never reused).
//
// A database that cannot be reached is waited for, and raise() refuses new
// alarms once maxPendingAlarms wait. An alarm the database refuses is put
// aside in alarm_quarantine and the watermark moves past it like past a
// stored one: a subscriber catching up from the table does not get it; a
// live one got it when it was raised.
import { UnavailableError } from '../common/errors.js';
import type { BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import { alarmTypeLabel, type CounterSeries, type InspectorMetrics } from '../common/metrics.js';
import { AlarmType, type AlarmFilter } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createAlarmIdPool } from './alarm-ids.js';
import { compileFilter, createAlarmSubscribers, indexAfterId, subscribeFrom, type CatchUpSource } from './alarm-subscribers.js';
import type { AlarmRecord, AlarmStore, HostRecord, NovaDoneMark } from './alarm-store.js';
import { createAlarmWriter, type StoreJob } from './alarm-writer.js';

export { alarmSizeEstimate, compileFilter, resumeAfterTrailer, SubscriberOverflowError } from './alarm-subscribers.js';

/** An alarm before it is raised: everything but its id and raise time; not expected unless said. */
export type AlarmDraft = Omit<AlarmRecord, 'alarmId' | 'raisedAt' | 'expected'> & { expected?: boolean };

export interface AlarmHubOptions {
  store: AlarmStore;
  logger: Logger;
  /** Alarms a subscriber may have waiting; one more ends its stream with RESOURCE_EXHAUSTED. */
  subscriberQueueSize?: number;
  /** Estimated bytes a subscriber may have waiting (see alarmSizeEstimate); more ends its stream alike. Default 8 MiB. */
  subscriberQueueBytes?: number;
  /** Alarms raised and not yet stored (database down) beyond which raise() answers UNAVAILABLE. Default 200,000. */
  maxPendingAlarms?: number;
  /** Stored alarms kept in memory for catching up (every unstored one is kept too). */
  recentSize?: number;
  /** Ids reserved ahead, so that raising does not wait on the database. */
  idReserve?: number;
  /** Most alarms stored in one transaction (a bigger single raise is stored whole). */
  maxBatch?: number;
  retry?: BackoffOptions;
  /** Bound on the last store attempts once run()'s signal aborts. */
  finalFlushMs?: number;
  /** Counts alarms raised by type and subscribers cut. */
  metrics?: InspectorMetrics;
}

export interface SubscribeOptions {
  filter?: AlarmFilter;
  /** Start after this id; 0 replays everything stored. */
  afterAlarmId: number;
  /** Only alarms raised from now on. */
  liveOnly?: boolean;
}

export interface AlarmHubStats {
  lastAlarmId: number;
  storedAlarmId: number;
  pendingStore: number;
  subscribers: number;
  /** Rows in alarm_quarantine: loaded at start, plus those put aside since. */
  quarantined: number;
  /** Alarms refused by the database and by the quarantine too, since start: logged, then dropped. */
  dropped: number;
}

export interface AlarmHub {
  /** Reads the last id and reserves the first ids. */
  start(): Promise<void>;
  /**
   * Sends the alarms to every matching subscriber and queues them, with the host
   * rows, for storage. Resolves once sent. The drafts become the alarms: callers
   * hand over fresh objects. Rejects with UnavailableError, raising nothing, when
   * more than maxPendingAlarms would wait to be stored.
   */
  raise(drafts: AlarmDraft[], hosts?: HostRecord[]): Promise<AlarmRecord[]>;
  /** Queues host rows or Nova marks for storage, with no alarm; resolves once they are stored (never, if they cannot be before shutdown). */
  record(hosts: HostRecord[], novaDone?: NovaDoneMark[]): Promise<void>;
  /** Resolves once every alarm up to alarmId (default: all raised so far) is stored. */
  whenStored(alarmId?: number): Promise<void>;
  /** Replay after afterAlarmId, then live alarms; throws SubscriberOverflowError when too slow. */
  subscribe(options: SubscribeOptions, signal: AbortSignal): AsyncGenerator<AlarmRecord>;
  /** Up to limit alarms after afterAlarmId that match, and where the next page starts. */
  list(afterAlarmId: number, filter: AlarmFilter | undefined, limit: number): Promise<{ alarms: AlarmRecord[]; nextAfterAlarmId: number }>;
  /** The store writer and the id reservations; on abort, a last bounded attempt to store what is pending. */
  run(signal: AbortSignal): Promise<void>;
  stats(): AlarmHubStats;
}

const pageSize = 500;

export function createAlarmHub(options: AlarmHubOptions): AlarmHub {
  const { store, logger } = options;
  const queueSize = options.subscriberQueueSize ?? 10_000;
  const queueBytes = options.subscriberQueueBytes ?? 8 * 1024 * 1024;
  const maxPending = options.maxPendingAlarms ?? 200_000;
  const recentSize = options.recentSize ?? 10_000;
  const retry = options.retry ?? { baseDelayMs: 100, maxDelayMs: 5_000 };
  // A catch-up longer than this is served in chunks before joining the live fan-out.
  const joinBacklog = Math.max(1, Math.min(1_000, Math.floor(queueSize / 2)));

  let lastAlarmId = 0;
  let storedAlarmId = 0;
  let started = false;
  let stopped = false;

  // Raised alarms in id order from logHead; everything before logHead is stored.
  let log: AlarmRecord[] = [];
  let logHead = 0;
  let storedIndex = 0; // absolute index in `log` of the first alarm not yet stored

  const ids = createAlarmIdPool({ store, logger, reserve: options.idReserve ?? 4_096, retry });
  const writer = createAlarmWriter({
    store,
    logger,
    maxBatch: options.maxBatch ?? 5_000,
    retry,
    finalFlushMs: options.finalFlushMs ?? 3_000,
    onStored: markStored,
  });
  const storedWaiters: Array<{ id: number; resolve(): void }> = [];

  const subscribers = createAlarmSubscribers({ queueSize, queueBytes, metrics: options.metrics });
  const { metrics } = options;
  const raisedByType: Array<CounterSeries | undefined> = [];
  const countRaised = (type: AlarmType) => (raisedByType[type] ??= metrics!.alarmRaised(alarmTypeLabel(AlarmType[type]))).inc();

  const windowStartId = () => (logHead < log.length ? log[logHead]!.alarmId : lastAlarmId + 1);

  function send(taken: number[], drafts: AlarmDraft[], hosts: HostRecord[]): AlarmRecord[] {
    const raisedAt = new Date();
    const alarms = new Array<AlarmRecord>(drafts.length);
    // The drafts become the alarms (raise takes them over): no copy on the live path.
    for (let i = 0; i < drafts.length; i++) {
      const a = drafts[i] as AlarmRecord;
      a.alarmId = taken[i]!;
      a.raisedAt = raisedAt;
      a.expected ??= false;
      alarms[i] = a;
    }
    if (alarms.length > 0) lastAlarmId = alarms[alarms.length - 1]!.alarmId;
    for (const a of alarms) log.push(a);
    subscribers.fanOut(alarms);
    if (metrics) for (const a of alarms) countRaised(a.type);
    writer.enqueue({ alarms, hosts, novaDone: [], lastAlarmId: alarms.at(-1)?.alarmId });
    return alarms;
  }

  function markStored(job: StoreJob) {
    job.stored?.();
    if (job.lastAlarmId === undefined) return;
    storedAlarmId = job.lastAlarmId;
    storedIndex += job.alarms.length;
    while (storedWaiters.length > 0 && storedWaiters[0]!.id <= storedAlarmId) storedWaiters.shift()!.resolve();
    // Trim stored alarms beyond the recent window; never an unstored one.
    const excess = Math.min(storedIndex, log.length - recentSize) - logHead;
    if (excess > 0) logHead += excess;
    if (logHead > 16_384 && logHead * 2 > log.length) {
      log = log.slice(logHead);
      storedIndex -= logHead;
      logHead = 0;
    }
  }

  function orderedInsert(id: number, resolve: () => void) {
    let i = storedWaiters.length;
    while (i > 0 && storedWaiters[i - 1]!.id > id) i--;
    storedWaiters.splice(i, 0, { id, resolve });
  }

  const hub: AlarmHub = {
    async start() {
      lastAlarmId = await store.lastAlarmId();
      storedAlarmId = lastAlarmId;
      await writer.start();
      await ids.start();
      started = true;
    },

    raise(drafts, hosts = []) {
      if (!started) return Promise.reject(new Error('alarm hub not started'));
      if (stopped) return Promise.reject(new UnavailableError('inspector is shutting down'));
      // Memory is what holds alarms until they are stored: bounded. Alarms already
      // sent are kept whatever happens; new ones are refused, and the caller retries.
      const behind = writer.pending + ids.waiting;
      if (behind > 0 && behind + drafts.length > maxPending) {
        return Promise.reject(
          new UnavailableError(`alarm store is behind: ${behind} alarms raised and not yet stored, at most ${maxPending} may wait; retry`),
        );
      }
      // Sent at once when the ids are in hand; out of reserved ids (a very large host,
      // or the database slow to answer), once more come, after the raises before it.
      return Promise.resolve(ids.take(drafts.length, (taken) => send(taken, drafts, hosts)));
    },

    record(hosts, novaDone = []) {
      if (hosts.length === 0 && novaDone.length === 0) return Promise.resolve();
      return new Promise((resolve) => writer.enqueue({ alarms: [], hosts, novaDone, lastAlarmId: undefined, stored: resolve }));
    },

    whenStored(alarmId = lastAlarmId) {
      if (alarmId <= storedAlarmId) return Promise.resolve();
      return new Promise((resolve) => orderedInsert(alarmId, resolve));
    },

    subscribe(opts, signal) {
      const after = opts.liveOnly ? lastAlarmId : opts.afterAlarmId;
      return subscribeFrom(subscribers, catchUp, opts.filter, after, signal);
    },

    async list(afterAlarmId, filter, limit) {
      const match = compileFilter(filter);
      const alarms: AlarmRecord[] = [];
      let cursor = afterAlarmId;
      const start = windowStartId();
      if (cursor + 1 < start) {
        const page = await store.read(cursor, start, filter, limit);
        alarms.push(...page);
        if (page.length === limit) return { alarms, nextAfterAlarmId: page[page.length - 1]!.alarmId };
        cursor = start - 1;
      }
      for (let i = indexAfter(cursor); i < log.length && alarms.length < limit; i++) {
        const a = log[i]!;
        if (!match || match(a)) alarms.push(a);
        cursor = a.alarmId;
      }
      return { alarms, nextAfterAlarmId: Math.max(cursor, afterAlarmId) };
    },

    async run(signal) {
      await writer.run(signal);
      stopped = true;
      ids.stop();
      await writer.flush();
    },

    stats() {
      const { quarantined, dropped } = writer.refused;
      return { lastAlarmId, storedAlarmId, pendingStore: writer.pending, subscribers: subscribers.size, quarantined, dropped };
    },
  };

  const catchUp: CatchUpSource = {
    tableFloor: () => windowStartId() - 1,
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

  return hub;
}
