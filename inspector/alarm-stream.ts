// The alarm log: raises alarms, fans them out to subscribers, stores them.
//
// Alarm first, stored right after. raise() gives each alarm an id from a pool
// reserved ahead from the alarm table's sequence, hands it to every matching
// subscriber's queue and returns, all in one synchronous step: no disk, no
// network on the live path. One writer then stores what was raised, in id
// order, in one transaction per batch (the alarms in one multi-row INSERT,
// with the host state that goes with them), batching whatever piled up
// while the previous write ran (group commit).
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
import { UnavailableError } from '../common/errors.js';
import { backoffDelayMs, delay, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { AlarmFilter, AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmRecord, AlarmStore, HostRecord, NovaDoneMark, SaveBatch } from './alarm-store.js';

/** An alarm before it is raised: everything but its id and raise time. */
export type AlarmDraft = Omit<AlarmRecord, 'alarmId' | 'raisedAt'>;

export interface AlarmHubOptions {
  store: AlarmStore;
  logger: Logger;
  /** Alarms a subscriber may have waiting; one more ends its stream with RESOURCE_EXHAUSTED. */
  subscriberQueueSize?: number;
  /** Stored alarms kept in memory for catching up (every unstored one is kept too). */
  recentSize?: number;
  /** Ids reserved ahead, so that raising does not wait on the database. */
  idReserve?: number;
  /** Most alarms stored in one transaction (a bigger single raise is stored whole). */
  maxBatch?: number;
  retry?: BackoffOptions;
  /** Bound on the last store attempts once run()'s signal aborts. */
  finalFlushMs?: number;
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
}

export interface AlarmHub {
  /** Reads the last id and reserves the first ids. */
  start(): Promise<void>;
  /**
   * Sends the alarms to every matching subscriber and queues them, with the host
   * rows, for storage. Resolves once sent. The drafts become the alarms: callers
   * hand over fresh objects.
   */
  raise(drafts: AlarmDraft[], hosts?: HostRecord[]): Promise<AlarmRecord[]>;
  /** Queues host rows or Nova marks for storage, with no alarm. */
  record(hosts: HostRecord[], novaDone?: NovaDoneMark[]): void;
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

/** A subscriber fell more than its queue size behind; it resumes after lastDeliveredId. */
export class SubscriberOverflowError extends Error {
  override name = 'SubscriberOverflowError';
  constructor(readonly lastDeliveredId: number, queueSize: number) {
    super(
      `subscriber too slow: more than ${queueSize} alarms waiting; last alarm delivered: ${lastDeliveredId}; ` +
        `subscribe again with after_alarm_id=${lastDeliveredId}`,
    );
  }
}

type Match = ((a: AlarmRecord) => boolean) | undefined;
type KeyField = 'host' | 'projectId' | 'instanceId' | 'vimId';

interface Subscriber {
  match: Match;
  /** The filter's most selective list, to look a batch up by. */
  key: { field: KeyField; values: string[] } | undefined;
  /** Alarms at or below this id were delivered by the catch-up. */
  afterId: number;
  queue: Array<AlarmRecord | undefined>;
  head: number;
  overflowed: boolean;
  wake: (() => void) | undefined;
}

interface Job extends SaveBatch {
  lastAlarmId: number | undefined;
}

interface Waiting {
  drafts: AlarmDraft[];
  hosts: HostRecord[];
  resolve(alarms: AlarmRecord[]): void;
  reject(err: unknown): void;
}

const pageSize = 500;

export function createAlarmHub(options: AlarmHubOptions): AlarmHub {
  const { store, logger } = options;
  const queueSize = options.subscriberQueueSize ?? 10_000;
  const recentSize = options.recentSize ?? 10_000;
  const idReserve = options.idReserve ?? 4_096;
  const maxBatch = options.maxBatch ?? 5_000;
  const retry = options.retry ?? { baseDelayMs: 100, maxDelayMs: 5_000 };
  const finalFlushMs = options.finalFlushMs ?? 3_000;
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

  const pool: number[] = [];
  let poolHead = 0;
  const waiting: Waiting[] = [];
  let refilling: Promise<void> | undefined;

  const jobs: Job[] = [];
  let pendingStore = 0;
  let wakeWriter: (() => void) | undefined;
  let writerWakeScheduled = false;
  const storedWaiters: Array<{ id: number; resolve(): void }> = [];

  const subscribers = new Set<Subscriber>();

  const available = () => pool.length - poolHead;
  const windowStartId = () => (logHead < log.length ? log[logHead]!.alarmId : lastAlarmId + 1);

  function takeIds(n: number): number[] {
    const ids = pool.slice(poolHead, poolHead + n);
    poolHead += n;
    if (poolHead > 4_096 && poolHead * 2 > pool.length) {
      pool.splice(0, poolHead);
      poolHead = 0;
    }
    return ids;
  }

  function send(drafts: AlarmDraft[], hosts: HostRecord[]): AlarmRecord[] {
    const ids = takeIds(drafts.length);
    const raisedAt = new Date();
    const alarms = new Array<AlarmRecord>(drafts.length);
    // The drafts become the alarms (raise takes them over): no copy on the live path.
    for (let i = 0; i < drafts.length; i++) {
      const a = drafts[i] as AlarmRecord;
      a.alarmId = ids[i]!;
      a.raisedAt = raisedAt;
      alarms[i] = a;
    }
    if (alarms.length > 0) lastAlarmId = alarms[alarms.length - 1]!.alarmId;
    for (const a of alarms) log.push(a);
    fanOut(alarms);
    enqueue({ alarms, hosts, novaDone: [], lastAlarmId: alarms.at(-1)?.alarmId });
    // Topping up the pool is a query whose answer is thousands of rows: it waits
    // for the next turn, once the alarms of this raise are on their sockets.
    if (available() < idReserve / 2) setImmediate(() => void refill());
    return alarms;
  }

  function fanOut(alarms: AlarmRecord[]) {
    // A large batch is indexed by the field a subscriber filters on, so a
    // tenant's stream looks at its own VMs' alarms only, not at the host's all.
    const indexes = new Map<KeyField, Map<string, AlarmRecord[]>>();
    const indexed = (field: KeyField) => {
      let index = indexes.get(field);
      if (!index) {
        index = new Map();
        for (const a of alarms) {
          const group = index.get(a[field]);
          if (group) group.push(a);
          else index.set(a[field], [a]);
        }
        indexes.set(field, index);
      }
      return index;
    };
    for (const sub of subscribers) {
      let candidates = alarms;
      if (sub.key && alarms.length >= 32) {
        const index = indexed(sub.key.field);
        if (sub.key.values.length === 1) candidates = index.get(sub.key.values[0]!) ?? [];
        else candidates = sub.key.values.flatMap((v) => index.get(v) ?? []).sort((x, y) => x.alarmId - y.alarmId);
      }
      let pushed = false;
      for (const a of candidates) {
        if (a.alarmId > sub.afterId && (!sub.match || sub.match(a))) {
          sub.queue.push(a);
          pushed = true;
        }
      }
      if (sub.queue.length - sub.head > queueSize) {
        // Told, never silently dropped: the stream ends naming where to resume.
        sub.overflowed = true;
        sub.queue = [];
        sub.head = 0;
        subscribers.delete(sub);
      }
      if (pushed || sub.overflowed) sub.wake?.();
    }
  }

  function enqueue(job: Job) {
    if (job.alarms.length === 0 && job.hosts.length === 0 && job.novaDone.length === 0) return;
    jobs.push(job);
    pendingStore += job.alarms.length;
    // The writer starts after this turn of the event loop: the subscribers' writes
    // reach their sockets first, then the rows are serialised.
    if (!writerWakeScheduled) {
      writerWakeScheduled = true;
      setImmediate(() => {
        writerWakeScheduled = false;
        wakeWriter?.();
      });
    }
  }

  function refill(): Promise<void> {
    refilling ??= (async () => {
      let attempt = 0;
      try {
        while (!stopped) {
          while (waiting.length > 0 && available() >= waiting[0]!.drafts.length) {
            const w = waiting.shift()!;
            w.resolve(send(w.drafts, w.hosts));
          }
          if (waiting.length === 0 && available() >= idReserve / 2) return;
          const need = waiting.reduce((n, w) => n + w.drafts.length, 0);
          try {
            const ids = await store.reserveIds(Math.max(idReserve, need + idReserve / 2));
            attempt = 0;
            for (const id of ids) pool.push(id);
          } catch (err) {
            logger.warn('cannot reserve alarm ids; retrying', { err, waitingRaises: waiting.length });
            await delay(backoffDelayMs(attempt++, retry));
          }
        }
        for (const w of waiting.splice(0)) w.reject(new UnavailableError('inspector is shutting down'));
      } finally {
        refilling = undefined;
      }
    })();
    return refilling;
  }

  function markStored(job: Job) {
    pendingStore -= job.alarms.length;
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

  async function writeOnce(): Promise<boolean> {
    const batch: Job[] = [];
    let count = 0;
    for (const job of jobs) {
      if (batch.length > 0 && count + job.alarms.length > maxBatch) break;
      batch.push(job);
      count += job.alarms.length;
    }
    try {
      await store.save({
        alarms: batch.flatMap((j) => j.alarms),
        hosts: batch.flatMap((j) => j.hosts),
        novaDone: batch.flatMap((j) => j.novaDone),
      });
    } catch (err) {
      logger.warn('cannot store alarms; kept in memory and retried', { err, alarms: count, pending: pendingStore });
      return false;
    }
    jobs.splice(0, batch.length);
    for (const job of batch) markStored(job);
    return true;
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
      for (const id of await store.reserveIds(idReserve)) pool.push(id);
      started = true;
    },

    raise(drafts, hosts = []) {
      if (!started) return Promise.reject(new Error('alarm hub not started'));
      if (stopped) return Promise.reject(new UnavailableError('inspector is shutting down'));
      if (waiting.length === 0 && available() >= drafts.length) return Promise.resolve(send(drafts, hosts));
      // Out of reserved ids (a very large host, or the database slow to answer):
      // wait, in order, so ids still follow raise order.
      return new Promise((resolve, reject) => {
        waiting.push({ drafts, hosts, resolve, reject });
        void refill();
      });
    },

    record(hosts, novaDone = []) {
      enqueue({ alarms: [], hosts, novaDone, lastAlarmId: undefined });
    },

    whenStored(alarmId = lastAlarmId) {
      if (alarmId <= storedAlarmId) return Promise.resolve();
      return new Promise((resolve) => orderedInsert(alarmId, resolve));
    },

    async *subscribe(opts, signal) {
      const match = compileFilter(opts.filter);
      let cursor = opts.liveOnly ? lastAlarmId : opts.afterAlarmId;
      let lastDelivered = cursor;
      let sub: Subscriber | undefined;
      // Catch up from the table, then from the log, until the backlog is small.
      while (!sub) {
        if (signal.aborted) return;
        const start = windowStartId();
        if (cursor + 1 < start) {
          // Every raised alarm below `start` is stored, so the table answers for them.
          const page = await store.read(cursor, start, opts.filter, pageSize);
          for (const a of page) {
            yield a;
            lastDelivered = a.alarmId;
          }
          cursor = page.length < pageSize ? start - 1 : page[page.length - 1]!.alarmId;
          continue;
        }
        const i = indexAfter(cursor);
        if (log.length - i > joinBacklog) {
          const chunk = log.slice(i, i + joinBacklog);
          for (const a of chunk) {
            if (match && !match(a)) continue;
            yield a;
            lastDelivered = a.alarmId;
          }
          cursor = chunk[chunk.length - 1]!.alarmId;
          continue;
        }
        // Joining is synchronous with taking the log's tail: no gap, no duplicate.
        const tail = log.slice(i).filter((a) => !match || match(a));
        sub = { match, key: filterKey(opts.filter), afterId: cursor, queue: tail, head: 0, overflowed: false, wake: undefined };
        subscribers.add(sub);
      }
      try {
        // Writes since this stream last let the event loop run. Every stream's
        // first alarm after a wake-up goes out before any stream's second: a
        // burst of a thousand alarms to a hundred streams would otherwise be
        // encoded whole before the first byte reached a socket.
        let burst = 0;
        while (true) {
          if (sub.overflowed) throw new SubscriberOverflowError(lastDelivered, queueSize);
          if (sub.head < sub.queue.length) {
            if (burst === 1 || burst >= 32) {
              await new Promise<void>((resolve) => setImmediate(resolve));
              if (burst === 1) burst++;
              else burst = 2;
              continue;
            }
            const a = sub.queue[sub.head]!;
            sub.queue[sub.head++] = undefined;
            if (sub.head > 1_024 && sub.head * 2 > sub.queue.length) {
              sub.queue = sub.queue.slice(sub.head);
              sub.head = 0;
            }
            yield a;
            lastDelivered = a.alarmId;
            burst++;
            continue;
          }
          burst = 0;
          if (signal.aborted) return;
          await new Promise<void>((resolve) => {
            const done = () => {
              signal.removeEventListener('abort', done);
              if (sub!.wake === done) sub!.wake = undefined;
              resolve();
            };
            sub!.wake = done;
            signal.addEventListener('abort', done, { once: true });
          });
        }
      } finally {
        subscribers.delete(sub);
      }
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
        else await delay(backoffDelayMs(attempt++, retry), signal);
      }
      stopped = true;
      void refill(); // rejects raises still waiting for ids
      const deadline = Date.now() + finalFlushMs;
      while (jobs.length > 0 && Date.now() < deadline) {
        if (!(await writeOnce())) await delay(Math.min(200, Math.max(0, deadline - Date.now())));
      }
      if (pendingStore > 0) logger.error('alarms sent but not stored at shutdown', { alarms: pendingStore });
    },

    stats() {
      return { lastAlarmId, storedAlarmId, pendingStore, subscribers: subscribers.size };
    },
  };

  /** Absolute index in `log` of the first alarm with an id above `id`. */
  function indexAfter(id: number): number {
    let lo = logHead;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (log[mid]!.alarmId <= id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  return hub;
}

function filterKey(filter: AlarmFilter | undefined): Subscriber['key'] {
  if (!filter) return undefined;
  const lists: Array<[KeyField, string[]]> = [
    ['instanceId', filter.instanceIds],
    ['projectId', filter.projectIds],
    ['host', filter.hosts],
    ['vimId', filter.vimIds],
  ];
  let best: Subscriber['key'];
  for (const [field, values] of lists) {
    if (values.length > 0 && (!best || values.length < best.values.length)) best = { field, values: [...new Set(values)] };
  }
  return best;
}

/** undefined matches everything; each non-empty list must contain the alarm's field. */
export function compileFilter(filter: AlarmFilter | undefined): Match {
  if (!filter) return undefined;
  const set = <T>(values: readonly T[]) => (values.length > 0 ? new Set(values) : undefined);
  const hosts = set(filter.hosts);
  const projects = set(filter.projectIds);
  const instances = set(filter.instanceIds);
  const types = set<AlarmType>(filter.types);
  const vims = set(filter.vimIds);
  if (!hosts && !projects && !instances && !types && !vims) return undefined;
  return (a) =>
    (!types || types.has(a.type)) &&
    (!hosts || hosts.has(a.host)) &&
    (!projects || projects.has(a.projectId)) &&
    (!instances || instances.has(a.instanceId)) &&
    (!vims || vims.has(a.vimId));
}
