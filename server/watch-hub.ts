// One stream of VIM status transitions per server (db/vim-event-feed.ts: its
// own LISTEN connection, caught up from vim_event after a lost connection)
// fanned out to every WatchVims stream. Each transition becomes one
// WatchVimsResponse, built here once and shared by every stream (never
// mutated). A watcher connected throughout sees every stored transition
// exactly once, whatever order their transactions committed in.
import type { Logger } from '../common/logger.js';
import { reasonToProto, statusToProto } from '../common/vim-status.js';
import type { VimStatusNotification } from '../db/notifications.js';
import { createVimEventFeed } from '../db/vim-event-feed.js';
import type { WatchVimsResponse } from '../gen/vimmon/tacker/v1/vim_service.js';

export type VimChange = VimStatusNotification;

/** A transition as the hub hands it to its listeners. */
export interface SharedChange {
  change: VimChange;
  /** Built once for every stream: read it, never change it. */
  message: Readonly<WatchVimsResponse>;
  /** messageBytes(message), computed once. */
  bytes: number;
}

export interface WatchHub {
  subscribe(listener: (shared: SharedChange) => void): () => void;
  /** Resolves once LISTEN is in force (streams opened before that may miss a change). */
  ready(): Promise<void>;
  /**
   * An event id at or below which every stored transition was delivered (or
   * stored before the hub started, or will never commit): a stream that
   * starts from here misses nothing. At start: the newest stored one (lower
   * while a transaction that may still commit an id below it is open).
   */
  highWater(): number;
  /**
   * Resolves once every transition committed before this call has been
   * handed to the listeners, after a lost connection too (VimEventFeed.barrier).
   * Rejects with the signal's reason when it aborts first, and when the hub stops.
   */
  barrier(signal: AbortSignal): Promise<void>;
  /** For tests: how many listeners are subscribed. */
  readonly listenerCount: number;
  run(signal: AbortSignal): Promise<void>;
}

/**
 * The heap a WatchVimsResponse built by toWatchMessage holds, roughly: measured
 * at about 330 bytes for one built from a NOTIFY payload (two UUIDs, a short
 * name, a Date); 160 bytes plus two per character of its strings is close.
 */
export function messageBytes(m: Readonly<WatchVimsResponse>): number {
  return 160 + 2 * (m.vimId.length + m.vimName.length + m.actionId.length);
}

export function toWatchMessage(c: VimChange): WatchVimsResponse {
  return {
    vimId: c.vimId,
    vimName: c.vimName,
    previousStatus: statusToProto(c.from),
    status: statusToProto(c.to),
    actionId: c.actionId,
    changedAt: new Date(c.changedAt),
    eventId: c.eventId,
    statusReason: reasonToProto(c.reason),
  };
}

export function createWatchHub(options: { databaseUrl: string; logger: Logger }): WatchHub {
  const { logger } = options;
  const listeners = new Set<(c: SharedChange) => void>();
  const fanOut = (c: VimChange) => {
    if (listeners.size === 0) return;
    const message = toWatchMessage(c);
    const shared: SharedChange = { change: c, message, bytes: messageBytes(message) };
    for (const l of listeners) {
      try {
        l(shared);
      } catch (err) {
        // One stream's failure must not keep the change from the others.
        logger.error('a watcher failed to take a change', { err, eventId: c.eventId });
      }
    }
  };
  const feed = createVimEventFeed({
    databaseUrl: options.databaseUrl,
    logger,
    applicationName: 'vimmon watch hub',
    onChanges: (changes) => {
      for (const c of changes) fanOut(c);
    },
  });

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ready: () => feed.ready(),
    highWater: () => feed.watermark(),
    barrier: (signal) => feed.barrier(signal),
    get listenerCount() {
      return listeners.size;
    },
    run: (signal) => feed.run(signal),
  };
}
