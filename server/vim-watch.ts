// One WatchVims stream: the stored changes after a resume point, the initial
// state, then live changes from the hub, with a bounded cost per stream.
//
// The hub builds each change's message once and every stream queues a pointer
// to it. A stream's queue is bounded in count and in estimated bytes; a stream
// beyond either is cut from the fan-out at once (its queue freed) and ends, when
// its generator next runs, with ResumableStreamError (RESOURCE_EXHAUSTED) naming
// the after_event_id to resume with. A client that does not read leaves this
// generator suspended at `yield` (nice-grpc waits for 'drain'), which is why the
// bound is enforced where changes are pushed, not where they are sent.
//
// What a stream costs at most, at the defaults (heap figures measured by
// test/vim-watch.test.ts and bench/hostile-streams.ts):
//   - the call itself (grpc-js call and HTTP/2 stream, nice-grpc and middleware
//     frames, this generator): about 25 KB of heap and 5 KB outside it;
//   - what gRPC holds for a client that does not read: the 16 messages grpc-js
//     takes before nice-grpc waits for 'drain', and up to the HTTP/2 window
//     (64 KiB) of encoded data on its way out;
//   - live changes not yet sent: at most queueBytes (1 MiB, estimated with
//     messageBytes, about 3,400 changes) and queueLimit (10,000) slots of 8
//     bytes. Messages are shared: a stream pays for a message only while no
//     other stream holds it, so streams of the same VIMs hold one copy between
//     them and each pays for its slots (at most ~40 KB at the byte bound);
//   - while it sends the initial state or a replay: one page of rows, ~0.4 KB
//     a row (pages grow from 50 to pageSize rows, so a client that does not read
//     pins ~20 KB, one that reads up to ~200 KB at 500), and a page's event ids.
// So ~1.3 MiB at worst for a stream whose queued messages are its alone (it
// watches VIMs no other stream watches and has fallen ~3,400 changes behind);
// ~140 KB by this count for one of many streams of the same VIMs. The bench
// measured ~270 KB of RSS each (allocator and V8 headroom included): 2,000 of
// them took `vimmon all` from 263 to 798 MiB, and nothing caps the sum across
// callers but the per-principal stream cap.
import pLimit from 'p-limit';
import { StreamBehindError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { reasonToProto, statusToProto } from '../common/vim-status.js';
import { typedSql, type Orm } from '../db/connection.js';
import type { StoredReason, StoredStatus } from '../db/entities.js';
import { checkResumePoint } from '../db/retention.js';
import type { WatchVimsRequest, WatchVimsResponse } from '../gen/vimmon/tacker/v1/vim_service.js';
import { messageBytes, toWatchMessage, type WatchHub } from './watch-hub.js';

export interface VimWatchOptions {
  orm: Orm;
  hub: WatchHub;
  logger: Logger;
  /** Estimated bytes (messageBytes) of unsent changes a stream may hold before it is cut. Default 1 MiB. */
  queueBytes?: number;
  /** Unsent changes a stream may hold before it is cut. Default 10,000. */
  queueLimit?: number;
  /** Initial-state and replay reads running at once, over all streams. Default 2. */
  concurrentReads?: number;
  /** Rows per read of the initial state or of a replay (the largest page). Default 500. */
  pageSize?: number;
  /** Told when a stream is cut for falling behind. */
  onCut?: () => void;
}

export interface VimWatch {
  /**
   * The stream of one WatchVims call; vim_ids must be validated UUIDs. Only
   * changes of VIMs whose owner project `visible` accepts are sent. Ends when
   * signal aborts; throws ResumableStreamError when the caller fell behind.
   */
  watch(
    request: WatchVimsRequest,
    signal: AbortSignal,
    visible: (ownerProject: string) => boolean,
  ): AsyncGenerator<WatchVimsResponse, void>;
}

/** The trailer that carries ResumableStreamError's resume point. */
export const resumeTrailer = 'vimmon-resume-after-event-id';

/** The trailer of OUT_OF_RANGE (after_event_id below what retention removed): the oldest event id still held. */
export const oldestHeldTrailer = 'vimmon-oldest-event-id';

/** A stream fell behind and was cut; a new one with after_event_id = resumeAfterEventId misses nothing. */
export class ResumableStreamError extends StreamBehindError {
  override name = 'ResumableStreamError';
  constructor(readonly resumeAfterEventId: number) {
    super(`watcher fell behind; resume with after_event_id=${resumeAfterEventId}`, {
      trailer: resumeTrailer,
      value: String(resumeAfterEventId),
    });
  }
}

const firstPageSize = 50;

export function createVimWatch(options: VimWatchOptions): VimWatch {
  const { orm, hub, logger } = options;
  const queueLimit = options.queueLimit ?? 10_000;
  const queueBytes = options.queueBytes ?? 1024 * 1024;
  const pageSize = options.pageSize ?? 500;
  // Catch-up reads of every stream share a few pooled connections: a thousand watchers
  // connecting at once must not queue the unary calls behind them for the pool.
  const readSlots = pLimit(options.concurrentReads ?? 2);
  const db = () => typedSql(orm.em.fork());
  // Pages grow: a stream whose client does not read stops after a few messages
  // and then holds only a small page.
  const nextPageSize = (previous: number) => Math.min(pageSize, Math.max(firstPageSize, previous * 2));

  /** The live VIMs (of vimIds when given) in id order, a page at a time. */
  async function* initialPages(vimIds: readonly string[] | undefined, signal: AbortSignal) {
    let after: string | undefined;
    let size = 0;
    while (!signal.aborted) {
      size = nextPageSize(size);
      let query = db()
        .selectFrom('vim')
        .select(['id', 'name', 'owner_project', 'status', 'status_reason', 'action_id', 'status_changed_at'])
        .where('deleted_at', 'is', null);
      if (after !== undefined) query = query.where('id', '>', after);
      // One array parameter, whatever the number of ids.
      if (vimIds) query = query.where('id', '=', (eb) => eb.fn.any(eb.val(vimIds)));
      const page = query.orderBy('id').limit(size);
      const rows = await readSlots(() => page.execute());
      if (rows.length > 0) yield rows;
      if (rows.length < size) return;
      after = rows[rows.length - 1]!.id;
    }
  }

  /** Stored events after afterEventId (of vimIds when given) in id order, a page at a time. */
  async function* eventPages(afterEventId: number, vimIds: readonly string[] | undefined, signal: AbortSignal) {
    let cursor = afterEventId;
    let size = 0;
    while (!signal.aborted) {
      size = nextPageSize(size);
      let query = db()
        .selectFrom('vim_event as e')
        .innerJoin('vim as v', 'v.id', 'e.vim_id')
        // Both tables have an id: as e_id the event's is converted (bigint to number) as vim_event's, which a bare id is not.
        .select([
          'e.id as e_id',
          'e.vim_id',
          'v.name',
          'v.owner_project',
          'e.from_status',
          'e.to_status',
          'e.status_reason',
          'e.action_id',
          'e.created_at',
        ])
        .where('e.id', '>', cursor);
      if (vimIds) query = query.where('e.vim_id', '=', (eb) => eb.fn.any(eb.val(vimIds)));
      const page = query.orderBy('e.id').limit(size);
      const rows = await readSlots(() => page.execute());
      // Rows retention removed after the cursor would be a silent gap: OUT_OF_RANGE instead.
      await checkResumePoint(orm, 'vim_event', cursor, 'after_event_id', oldestHeldTrailer);
      if (rows.length > 0) yield rows;
      if (rows.length < size) return;
      cursor = rows[rows.length - 1]!.e_id;
    }
  }

  async function* watch(
    request: WatchVimsRequest,
    signal: AbortSignal,
    visible: (ownerProject: string) => boolean,
  ): AsyncGenerator<WatchVimsResponse, void> {
    if (!(await untilReady(hub, signal))) return;
    const vimIds = request.vimIds.length > 0 ? request.vimIds : undefined;
    const vimIdSet = vimIds && new Set(vimIds);
    const wanted = (vimId: string, ownerProject: string) => (!vimIdSet || vimIdSet.has(vimId)) && visible(ownerProject);

    // Where a new stream would pick up: the newest change this one sent, or where it
    // started; lowered below the oldest change it had queued unsent, because
    // transactions commit out of id order (a resume may then repeat a change, never skip one).
    let resumePoint = request.afterEventId > 0 ? request.afterEventId : hub.highWater();
    const sent = (eventId: number) => {
      resumePoint = Math.max(resumePoint, eventId);
    };

    const queue = new ChangeQueue(queueLimit, queueBytes);
    const resumeAfter = () => Math.min(resumePoint, queue.lowestUnsent - 1);
    const fellBehind = () => new ResumableStreamError(resumeAfter());
    // Subscribed before any table is read, so nothing committed from here on is missed.
    const unsubscribe = hub.subscribe(({ change, message, bytes }) => {
      if (!wanted(change.vimId, change.ownerProject) || queue.push(message, bytes)) return;
      unsubscribe();
      if (!queue.cut) return;
      options.onCut?.();
      logger.info('WatchVims stream fell behind; cut', { resumeAfterEventId: resumeAfter(), queueLimit, queueBytes });
    });
    const onAbort = () => {
      unsubscribe();
      queue.close();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // Told before anything is sent, the initial state included; eventPages checks again as it reads.
      await checkResumePoint(orm, 'vim_event', request.afterEventId, 'after_event_id', oldestHeldTrailer);
      if (request.sendInitial) {
        for await (const rows of initialPages(vimIds, signal)) {
          for (const r of rows) {
            if (!visible(r.owner_project)) continue;
            if (signal.aborted) return;
            if (queue.cut) throw fellBehind();
            yield {
              vimId: r.id,
              vimName: r.name,
              previousStatus: statusToProto(r.status),
              status: statusToProto(r.status),
              actionId: r.action_id,
              changedAt: r.status_changed_at,
              eventId: 0,
              statusReason: reasonToProto(r.status_reason),
            };
          }
        }
      }

      if (request.afterEventId > 0) {
        for await (const rows of eventPages(request.afterEventId, vimIds, signal)) {
          // Every NOTIFY of these rows (committed before the read) is in the queue
          // after the barrier; drop those copies. A change that commits after the read
          // is not in the page and comes live. Transactions can commit out of id
          // order, so this goes by the ids of the page, never by a maximum.
          try {
            await hub.barrier(signal);
          } catch {
            return; // aborted
          }
          const messages: WatchVimsResponse[] = [];
          const replayed = new Set<number>();
          for (const r of rows) {
            if (!wanted(r.vim_id, r.owner_project)) continue;
            const m = toWatchMessage({
              eventId: r.e_id,
              vimId: r.vim_id,
              vimName: r.name,
              from: r.from_status as StoredStatus,
              to: r.to_status as StoredStatus,
              reason: r.status_reason as StoredReason,
              actionId: r.action_id,
              changedAt: r.created_at.toISOString(),
              ownerProject: r.owner_project,
            });
            messages.push(m);
            replayed.add(m.eventId);
          }
          queue.discard(replayed);
          for (const m of messages) {
            if (signal.aborted) return;
            if (queue.cut) throw fellBehind();
            sent(m.eventId);
            yield m;
          }
        }
      }

      while (!signal.aborted) {
        if (queue.cut) throw fellBehind();
        const m = queue.take();
        if (!m) {
          await queue.changed();
          continue;
        }
        sent(m.eventId);
        yield m;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      onAbort();
    }
  }

  return { watch };
}

/** False when signal aborted first. */
async function untilReady(hub: WatchHub, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  let onAbort!: () => void;
  const aborted = new Promise<false>((resolve) => {
    onAbort = () => resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([hub.ready().then(() => !signal.aborted), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The live changes one stream has not sent yet, bounded in count and in
 * estimated bytes. Exceeding either empties it for good (cut).
 */
class ChangeQueue {
  private items: Array<Readonly<WatchVimsResponse> | undefined> = [];
  private head = 0;
  private held = 0;
  private heldBytes = 0;
  private waiter: (() => void) | undefined;
  private closed = false;
  /** The stream fell behind: nothing more is queued. */
  cut = false;
  /** Once cut: the lowest event id it dropped unsent. */
  lowestUnsent = Number.MAX_SAFE_INTEGER;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  /** Queues a change; false once the stream is cut (by this change or before) or closed. */
  push(message: Readonly<WatchVimsResponse>, bytes: number): boolean {
    if (this.cut || this.closed) return false;
    if (this.held + 1 > this.maxCount || this.heldBytes + bytes > this.maxBytes) {
      this.cut = true;
      let lowest = message.eventId;
      for (let i = this.head; i < this.items.length; i++) lowest = Math.min(lowest, this.items[i]?.eventId ?? lowest);
      this.lowestUnsent = lowest;
      this.clear();
      this.notify();
      return false;
    }
    this.items.push(message);
    this.held++;
    this.heldBytes += bytes;
    this.notify();
    return true;
  }

  take(): Readonly<WatchVimsResponse> | undefined {
    while (this.head < this.items.length) {
      const m = this.items[this.head];
      this.items[this.head++] = undefined;
      if (m) {
        this.held--;
        this.heldBytes -= messageBytes(m);
        this.compact();
        return m;
      }
    }
    this.compact();
    return undefined;
  }

  /** Drops the queued changes with these event ids (sent by a replay). */
  discard(eventIds: ReadonlySet<number>): void {
    if (eventIds.size === 0) return;
    for (let i = this.head; i < this.items.length; i++) {
      const m = this.items[i];
      if (m && eventIds.has(m.eventId)) {
        this.items[i] = undefined;
        this.held--;
        this.heldBytes -= messageBytes(m);
      }
    }
  }

  /** Resolves at the next push, cut or close. */
  changed(): Promise<void> {
    if (this.closed || this.cut) return Promise.resolve();
    return new Promise<void>((resolve) => (this.waiter = resolve));
  }

  close(): void {
    this.closed = true;
    this.clear();
    this.notify();
  }

  private clear(): void {
    this.items = [];
    this.head = 0;
    this.held = 0;
    this.heldBytes = 0;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  private notify(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
