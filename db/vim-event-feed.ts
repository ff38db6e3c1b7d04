// The stored VIM status transitions as one stream: a LISTEN on
// vimStatusChannel for what commits while connected, vim_event for what
// committed while not. server/watch-hub.ts (WatchVims) and
// inspector/vim-alarms.ts (VIM alarms) both consume it.
//
// Exactly once across lost connections, each VIM's transitions in order: see
// db/table-feed.ts, which this feed is an instance of (order 'arrival').
// Each VIM's transitions commit in id order (the conductor locks the VIM's
// row), and NOTIFYs arrive in commit order, so a VIM's transitions arrive in
// order whether heard or read.
import type { Kysely } from 'kysely';
import type { BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { Database } from './connection.js';
import { vimStatusChannel, type StoredReason, type StoredStatus } from './entities.js';
import { parseVimStatusNotification, type VimStatusNotification } from './notifications.js';
import { createTableFeed, rangeCondition, type Range } from './table-feed.js';

export type VimEventChange = VimStatusNotification;

export interface VimEventFeedOptions {
  /** For the feed's own connection (a pooled one cannot hold a LISTEN). */
  databaseUrl: string;
  logger: Logger;
  /**
   * Takes each batch of new transitions (every VIM's in its order). The feed
   * waits for it before it hands over more; notifications that pile up
   * meanwhile beyond maxPending are dropped and read from the table instead.
   * A batch it throws on counts as handed over (the error is logged).
   */
  onChanges(changes: VimEventChange[], signal: AbortSignal): void | Promise<void>;
  /**
   * Called once, at the first connection, when LISTEN is in force, with the
   * newest stored event id; returns the id after which transitions are handed
   * over (the stored ones first). Default: the newest one, i.e. what commits
   * from then on. A throw is retried like a lost connection.
   */
  startAfter?(newest: number): number | Promise<number>;
  /** application_name of the connection, so that an operator can tell it in pg_stat_activity. */
  applicationName?: string;
  /** Rows per read of the table. Default 1,000. */
  pageSize?: number;
  /** How often open gaps are checked (see above). Default 1,000 ms. */
  settleIntervalMs?: number;
  /** Open gaps (ranges of ids) kept at most. Default 10,000. */
  maxGaps?: number;
  /** Notifications waiting for onChanges before they are dropped and the table read instead. Default 10,000. */
  maxPending?: number;
  /** At the first connection, how far below the starting point missing ids may still commit. Default 1,000. */
  startLookback?: number;
  retry?: BackoffOptions;
}

export interface VimEventFeedStats {
  /** The highest id handed over, or where the feed started. */
  high: number;
  /** Ranges of ids at or below high that may still commit. */
  gaps: number;
  /** Notifications waiting to be handed over. */
  pending: number;
}

export interface VimEventFeed {
  run(signal: AbortSignal): Promise<void>;
  /** Resolves once LISTEN is in force and the stored transitions after the starting point are handed over. */
  ready(): Promise<void>;
  /**
   * Every transition with an id at or below this one was handed over, was
   * stored before the feed started, or will never commit: a reader that
   * starts from here misses nothing. 0 before the feed started.
   */
  watermark(): number;
  /**
   * Resolves once every transition committed before this call has been handed
   * to onChanges: a NOTIFY on a channel of this feed's own comes back after
   * them (notifications arrive in commit order), or the catch-up after a lost
   * connection covers them. Rejects with the signal's reason when it aborts
   * first, and when the feed stops.
   */
  barrier(signal: AbortSignal): Promise<void>;
  stats(): VimEventFeedStats;
}

function toChange(r: {
  id: number | string;
  vim_id: string;
  name: string;
  owner_project: string;
  from_status: string;
  to_status: string;
  status_reason: string;
  action_id: string;
  created_at: Date | string;
}): VimEventChange {
  return {
    eventId: Number(r.id), // int8 comes back as text
    vimId: r.vim_id,
    vimName: r.name,
    from: r.from_status as StoredStatus,
    to: r.to_status as StoredStatus,
    reason: r.status_reason as StoredReason,
    actionId: r.action_id,
    changedAt: new Date(r.created_at).toISOString(),
    ownerProject: r.owner_project,
  };
}

async function readTransitions(db: Kysely<Database>, after: number, ranges: readonly Range[], limit: number): Promise<VimEventChange[]> {
  const rows = await db
    .selectFrom('vim_event as e')
    .innerJoin('vim as v', 'v.id', 'e.vim_id')
    .select([
      'e.id',
      'e.vim_id',
      'v.name',
      'v.owner_project',
      'e.from_status',
      'e.to_status',
      'e.status_reason',
      'e.action_id',
      'e.created_at',
    ])
    .where(rangeCondition('e.id', after, ranges))
    .orderBy('e.id')
    .limit(limit)
    .execute();
  return rows.map(toChange);
}

export function createVimEventFeed(options: VimEventFeedOptions): VimEventFeed {
  return createTableFeed<VimEventChange>({
    ...options,
    table: 'vim_event',
    idColumn: 'id',
    channel: vimStatusChannel,
    noun: 'VIM status',
    parse: parseVimStatusNotification,
    read: readTransitions,
    idOf: (c) => c.eventId,
    order: 'arrival',
  });
}
