// The live fan-out of alarms to SubscribeAlarms streams, for the alarm log
// (alarm-stream.ts) and the shared-mode hub (shared-alarm-hub.ts) alike. Each
// stream has a bounded queue (alarms and estimated bytes): a stream that falls
// further behind is cut, told where to resume, and never delays the others.
// fanOut() is synchronous: what a hub fans out in one step reaches every
// queue in that step, so a stream that joins between two steps gets exactly
// the alarms fanned out after it joined.
import { StreamBehindError } from '../common/errors.js';
import type { InspectorMetrics } from '../common/metrics.js';
import type { AlarmFilter, AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmRecord, AlarmStore } from './alarm-store.js';
import { firstIndexAbove } from '../common/sorted-index.js';

/** Trailer of a RESOURCE_EXHAUSTED SubscribeAlarms: the after_alarm_id to resume with. */
export const resumeAfterTrailer = 'vimmon-resume-after-alarm-id';

/** A subscriber fell more than its queue's bound behind; it resumes after lastDeliveredId. */
export class SubscriberOverflowError extends StreamBehindError {
  override name = 'SubscriberOverflowError';
  /** bound: what was exceeded, e.g. "10000 alarms" or "8388608 bytes (estimated)"; a number is a count of alarms. */
  constructor(
    readonly lastDeliveredId: number,
    bound: number | string,
  ) {
    super(
      `subscriber too slow: more than ${typeof bound === 'number' ? `${bound} alarms` : bound} waiting; last alarm delivered: ${lastDeliveredId}; ` +
        `subscribe again with after_alarm_id=${lastDeliveredId}`,
      { trailer: resumeAfterTrailer, value: String(lastDeliveredId) },
    );
  }
}

/**
 * What an alarm weighs in a subscriber's queue, without encoding it (the
 * fan-out path must stay cheap): its text fields plus a fixed allowance for
 * the id, type and times. Close to, and above, the encoded size for ASCII text.
 */
export function alarmSizeEstimate(a: AlarmRecord): number {
  return (
    64 +
    a.host.length +
    a.instanceId.length +
    a.instanceName.length +
    a.projectId.length +
    a.vimId.length +
    a.vimName.length +
    a.state.length +
    a.severity.length +
    a.cause.length +
    a.monitor.length +
    a.monitorEventId.length +
    a.faultId.length
  );
}

export type Match = ((a: AlarmRecord) => boolean) | undefined;
type KeyField = 'host' | 'projectId' | 'instanceId' | 'vimId';

interface Subscriber {
  match: Match;
  /** The filter's most selective list, to look a batch up by. */
  key: { field: KeyField; values: string[] } | undefined;
  /** Alarms at or below this id were delivered by the catch-up. */
  afterId: number;
  queue: Array<AlarmRecord | undefined>;
  head: number;
  /** alarmSizeEstimate of the alarms from head on. */
  queuedBytes: number;
  /** What was exceeded, once it was. */
  overflowed: string | undefined;
  wake: (() => void) | undefined;
}

export type { Subscriber as AlarmSubscription };

export interface AlarmSubscribersOptions {
  /** Alarms a subscriber may have waiting; one more ends its stream with RESOURCE_EXHAUSTED. */
  queueSize: number;
  /** Estimated bytes a subscriber may have waiting; more ends its stream alike. */
  queueBytes: number;
  /** Counts subscribers cut. */
  metrics?: InspectorMetrics;
}

export interface AlarmSubscribers {
  readonly size: number;
  /** Puts each alarm on the queue of every subscriber it matches, above the subscriber's afterId. */
  fanOut(alarms: AlarmRecord[]): void;
  /** A subscriber with backlog queued (already filtered); alarms fanned out from now on with ids above afterId follow it. */
  join(filter: AlarmFilter | undefined, match: Match, afterId: number, backlog: AlarmRecord[]): Subscriber;
  /** The subscriber's queue, then waits for more until the signal aborts; throws SubscriberOverflowError when it was cut. */
  deliver(sub: Subscriber, lastDelivered: number, signal: AbortSignal): AsyncGenerator<AlarmRecord>;
}

export function createAlarmSubscribers(options: AlarmSubscribersOptions): AlarmSubscribers {
  const { queueSize, queueBytes, metrics } = options;
  const subscribers = new Set<Subscriber>();

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
          sub.queuedBytes += alarmSizeEstimate(a);
          pushed = true;
        }
      }
      if (sub.queue.length - sub.head > queueSize) overflow(sub, `${queueSize} alarms`);
      else if (sub.queuedBytes > queueBytes) overflow(sub, `${queueBytes} bytes (estimated)`);
      if (pushed || sub.overflowed !== undefined) sub.wake?.();
    }
  }

  function overflow(sub: Subscriber, bound: string) {
    // Told, never silently dropped: the stream ends naming where to resume.
    metrics?.alarmSubscribersCut.inc();
    sub.overflowed = bound;
    sub.queue = [];
    sub.head = 0;
    sub.queuedBytes = 0;
    subscribers.delete(sub);
  }

  return {
    get size() {
      return subscribers.size;
    },

    fanOut,

    join(filter, match, afterId, backlog) {
      const sub: Subscriber = {
        match,
        key: filterKey(filter),
        afterId,
        queue: backlog,
        head: 0,
        queuedBytes: backlog.reduce((n, a) => n + alarmSizeEstimate(a), 0),
        overflowed: undefined,
        wake: undefined,
      };
      subscribers.add(sub);
      return sub;
    },

    async *deliver(sub, lastDelivered, signal) {
      try {
        // Writes since this stream last let the event loop run. Every stream's
        // first alarm after a wake-up goes out before any stream's second: a
        // burst of a thousand alarms to a hundred streams would otherwise be
        // encoded whole before the first byte reached a socket.
        let burst = 0;
        while (true) {
          if (sub.overflowed !== undefined) throw new SubscriberOverflowError(lastDelivered, sub.overflowed);
          if (sub.head < sub.queue.length) {
            if (burst === 1 || burst >= 32) {
              await new Promise<void>((resolve) => setImmediate(resolve));
              if (burst === 1) burst++;
              else burst = 2;
              continue;
            }
            const a = sub.queue[sub.head]!;
            sub.queue[sub.head++] = undefined;
            sub.queuedBytes -= alarmSizeEstimate(a);
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
  };
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

/** Where a subscriber catches up from: the table below a floor, the in-memory log above it. */
export interface CatchUpSource {
  /** Every alarm at or below this id is in the table (or never will be); those above it are in the log. */
  tableFloor(): number;
  /** The log: alarms in increasing id order, those before `logHead` trimmed. */
  log(): readonly AlarmRecord[];
  /** Absolute index in log() of the first alarm with an id above `id`. */
  indexAfter(id: number): number;
  store: Pick<AlarmStore, 'read' | 'checkResumePoint'>;
  /** Rows per table read. */
  pageSize: number;
  /** A log backlog above this is sent in chunks before joining, so a join never queues more. */
  joinBacklog: number;
}

/**
 * One SubscribeAlarms stream, in both modes: catches up from the table (below
 * the floor) and then from the log, until the backlog is small, and joins the
 * live fan-out in the same synchronous step in which it takes the log's tail
 * (no gap, no duplicate); then delivers what the fan-out queues for it.
 */
export async function* subscribeFrom(
  subscribers: AlarmSubscribers,
  source: CatchUpSource,
  filter: AlarmFilter | undefined,
  afterAlarmId: number,
  signal: AbortSignal,
): AsyncGenerator<AlarmRecord> {
  const match = compileFilter(filter);
  const { store, pageSize, joinBacklog } = source;
  let cursor = afterAlarmId;
  let lastDelivered = cursor;
  let sub: Subscriber | undefined;
  while (!sub) {
    if (signal.aborted) return;
    const floor = source.tableFloor();
    if (cursor < floor) {
      const page = await store.read(cursor, floor + 1, filter, pageSize);
      // Alarms retention removed after the cursor would be a silent gap: OUT_OF_RANGE instead.
      await store.checkResumePoint?.(cursor);
      for (const a of page) {
        yield a;
        lastDelivered = a.alarmId;
      }
      cursor = page.length < pageSize ? floor : page[page.length - 1]!.alarmId;
      continue;
    }
    const log = source.log();
    const i = source.indexAfter(cursor);
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
    sub = subscribers.join(
      filter,
      match,
      cursor,
      log.slice(i).filter((a) => !match || match(a)),
    );
  }
  yield* subscribers.deliver(sub, lastDelivered, signal);
}

/** Index in `log` (from `from` on, ids increasing) of the first alarm with an id above `id`. */
export function indexAfterId(log: readonly AlarmRecord[], from: number, id: number): number {
  return firstIndexAbove(log, id, (a) => a.alarmId, from);
}
