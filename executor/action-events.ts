// Action events for WatchActions. Each watcher has a bounded queue of its own
// (in events and in estimated bytes): publishing never waits, so a slow watcher
// cannot slow the actions or the other watchers; one that falls too far behind
// is ended with an overflow error. An event is one object shared by every
// watcher's queue; the message is built when the watcher sends it.
import { StreamBehindError } from '../common/errors.js';
import type { ActionObserver, MonitorAction, ReplyRecord, RoundRecord, StopReasonName } from './action.js';

export type { StopReasonName } from './action.js';

export type ActionEvent =
  | { type: 'started'; atMs: number; action: MonitorAction }
  | { type: 'round'; atMs: number; action: MonitorAction; round: RoundRecord }
  | { type: 'reply'; atMs: number; action: MonitorAction; reply: ReplyRecord }
  | { type: 'stopped'; atMs: number; action: MonitorAction; reason: StopReasonName };

/** A watcher let its queue fill up; it must reconnect (and re-list) to catch up. */
export class WatcherOverflowError extends StreamBehindError {
  override name = 'WatcherOverflowError';
  constructor(limit: number, byteLimit: number) {
    super(`watcher fell more than ${limit} events or ${byteLimit} bytes behind; reconnect and list the actions again`);
  }
}

/** Default bound of one watcher's queue in estimated bytes (eventBytes). */
export const defaultWatcherQueueBytes = 1024 * 1024;

/**
 * What an event holds that is its own, roughly: the event object, its round or
 * reply record and their error text (the action it names is shared and lives on).
 */
export function eventBytes(event: ActionEvent): number {
  switch (event.type) {
    case 'round':
      return 160 + 2 * event.round.error.length;
    case 'reply':
      return 128 + 2 * event.reply.error.length;
    default:
      return 64;
  }
}

class Watcher {
  private queue: ActionEvent[] = [];
  private head = 0;
  private bytes = 0;
  overflowed = false;
  wake: (() => void) | undefined;

  constructor(
    readonly vimIds: ReadonlySet<string> | undefined,
    readonly limit: number,
    readonly byteLimit: number,
  ) {}

  push(event: ActionEvent): void {
    if (this.overflowed) return;
    const bytes = eventBytes(event);
    if (this.queue.length - this.head >= this.limit || this.bytes + bytes > this.byteLimit) {
      this.overflowed = true;
      this.queue = [];
      this.head = 0;
      this.bytes = 0;
    } else {
      this.queue.push(event);
      this.bytes += bytes;
    }
    this.wake?.();
  }

  take(): ActionEvent | undefined {
    if (this.head >= this.queue.length) return undefined;
    const event = this.queue[this.head]!;
    this.queue[this.head++] = undefined as never;
    this.bytes -= eventBytes(event);
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head >= 1024) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return event;
  }
}

export interface ActionEventHubOptions {
  /** Estimated bytes (eventBytes) one watcher may have waiting before it overflows. Default 1 MiB. */
  watcherQueueBytes?: number;
}

export class ActionEventHub implements ActionObserver {
  private readonly watchers = new Set<Watcher>();
  private readonly watcherQueueBytes: number;

  constructor(options: ActionEventHubOptions = {}) {
    this.watcherQueueBytes = options.watcherQueueBytes ?? defaultWatcherQueueBytes;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  started(action: MonitorAction): void {
    if (this.watchers.size > 0) this.publish({ type: 'started', atMs: Date.now(), action });
  }

  round(action: MonitorAction, round: RoundRecord): void {
    if (this.watchers.size > 0) this.publish({ type: 'round', atMs: round.startedAtMs + round.latencyMs, action, round });
  }

  reply(action: MonitorAction, reply: ReplyRecord): void {
    if (this.watchers.size > 0) this.publish({ type: 'reply', atMs: reply.atMs, action, reply });
  }

  stopped(action: MonitorAction, reason: StopReasonName): void {
    if (this.watchers.size > 0) this.publish({ type: 'stopped', atMs: Date.now(), action, reason });
  }

  private publish(event: ActionEvent): void {
    for (const watcher of this.watchers) {
      if (!watcher.vimIds || watcher.vimIds.has(event.action.spec.vimId)) watcher.push(event);
    }
  }

  /**
   * Events of the given VIMs (all when undefined) from now on, until signal
   * aborts. Throws WatcherOverflowError once `limit` events, or more than the
   * hub's watcherQueueBytes, wait unread.
   */
  async *watch(vimIds: ReadonlySet<string> | undefined, limit: number, signal: AbortSignal): AsyncGenerator<ActionEvent, void> {
    if (signal.aborted) return;
    const watcher = new Watcher(vimIds, limit, this.watcherQueueBytes);
    this.watchers.add(watcher);
    try {
      while (!signal.aborted) {
        if (watcher.overflowed) throw new WatcherOverflowError(limit, watcher.byteLimit);
        const event = watcher.take();
        if (event) {
          yield event;
          continue;
        }
        await new Promise<void>((resolve) => {
          const wake = () => {
            watcher.wake = undefined;
            signal.removeEventListener('abort', wake);
            resolve();
          };
          watcher.wake = wake;
          signal.addEventListener('abort', wake, { once: true });
        });
      }
    } finally {
      this.watchers.delete(watcher);
    }
  }
}
