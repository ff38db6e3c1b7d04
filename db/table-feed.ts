// The rows of a table whose ids are drawn at insert, as one stream: a LISTEN
// on the table's channel for what commits while connected, the table for what
// committed while not. db/vim-event-feed.ts (vim_event) and db/alarm-feed.ts
// (alarm, inspectors sharing a database) are its two tables.
//
// Exactly once, across lost connections. Ids are drawn at insert and
// concurrent transactions commit out of id order, so "every id above the last
// one handed over" is not what is left to hand over: an id below it can still
// commit. The feed keeps `high`, the highest id accepted (or where it
// started), and `gaps`, the ranges of ids at or below it that it has not
// accepted and that may still commit. Every other id at or below `high` was
// accepted, or was stored before the feed started. A row is new when its id is
// above `high` or inside a gap; anything else is a repeat (a replayed page, a
// NOTIFY heard after its row was read) and dropped. After a reconnect, and
// whenever the feed fell behind its notifications, it reads the table above
// `high` and inside the gaps, in pages, until a page comes back short: no cap,
// nothing repeated.
//
// When a gap is forgotten. An INSERT holds RowExclusiveLock on the table from
// before it draws an id until its transaction ends, and an id below a
// committed one was drawn before it. So the transactions that may still commit
// an id of a gap are among those that held that lock when the gap was noticed
// (pg_locks, read after). A gap is given that set of virtual transaction ids
// at the first check after it appears; at a later check, once none of them
// holds the lock any more, the gap's ids are read one last time (whatever
// committed is visible now) and the gap is dropped. A gap filled in the
// meantime (its NOTIFY came) is gone already: in steady state gaps are the
// statements in flight and last milliseconds; a rolled-back insert leaves one
// that goes at the second check (in id order at the first, when no writer is
// left by then). Memory stays bounded by maxGaps even when a
// transaction never ends: beyond it the lowest gaps are forgotten, with a
// warning. (The sequence must hand out ids in order: CACHE 1.)
//
// At the first connection the ids below the starting point that may still
// commit are not known one by one: when some transaction holds the lock, the
// ids missing among the last startLookback below it become gaps, guarded by
// those transactions; an id further down is taken to be settled (a
// transaction open across a thousand later rows is not expected).
//
// Order. With order 'arrival', notifications are handed over in arrival
// (commit) order, and a page read from the table is merged with the
// notifications already heard up to the page's last id and handed over in id
// order: rows a writer commits one after the other arrive in that order. With
// order 'id', accepted rows are held and handed over in id order up to the
// watermark (just below the lowest open gap), so the ids handed over are
// strictly increasing across batches; a row waits for the gaps below it to
// fill or settle (the time of a commit in steady state). Held rows are bounded
// by maxPending: beyond it the lowest gaps are forgotten, with a warning.
import { randomBytes } from 'node:crypto';
import { delay, isAbortError } from 'abort-controller-x';
import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import { sql, type Database } from './connection.js';

/** A range of ids, both ends included. */
export interface Range {
  lo: number;
  /** Infinity: no upper end (the ids above high). */
  hi: number;
}

/** What a NOTIFY payload says: a row, a row to read from the table (too big to travel), or nothing readable (undefined). */
export type Heard<T> = T | 'in-table' | undefined;

export interface TableFeedOptions<T> {
  /** For the feed's own connection (a pooled one cannot hold a LISTEN). */
  databaseUrl: string;
  logger: Logger;
  /** The table (its insert lock tells which ids may still commit); its ids are drawn at insert from a CACHE 1 sequence. */
  table: keyof Database & string;
  /** The table's id column. */
  idColumn: string;
  /** The NOTIFY channel every insert announces its rows on, in the inserting transaction. */
  channel: string;
  /** What the rows are, in log lines ("VIM status", "alarm"). */
  noun: string;
  /** A NOTIFY payload as a row. */
  parse(payload: string): Heard<T>;
  /** Up to limit rows with id above after and inside one of ranges, in id order; on the feed's connection. */
  read(db: Kysely<Database>, after: number, ranges: readonly Range[], limit: number): Promise<T[]>;
  idOf(row: T): number;
  /** 'arrival' (default): notifications in commit order; 'id': strictly increasing ids, up to the watermark. */
  order?: 'arrival' | 'id';
  /**
   * Takes each batch of new rows. The feed waits for it before it hands over
   * more; notifications that pile up meanwhile beyond maxPending are dropped
   * and read from the table instead. A batch it throws on counts as handed
   * over (the error is logged).
   */
  onChanges(changes: T[], signal: AbortSignal): void | Promise<void>;
  /**
   * Called once, at the first connection, when LISTEN is in force, with the
   * newest stored id; returns the id after which rows are handed over (the
   * stored ones first). Default: the newest one, i.e. what commits from then
   * on. A throw is retried like a lost connection.
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
  /** Notifications waiting for onChanges (and, in id order, rows held) before they are dropped and the table read instead. Default 10,000. */
  maxPending?: number;
  /** At the first connection, how far below the starting point missing ids may still commit. Default 1,000. */
  startLookback?: number;
  retry?: BackoffOptions;
}

export interface TableFeedStats {
  /** The highest id accepted, or where the feed started. */
  high: number;
  /** Ranges of ids at or below high that may still commit. */
  gaps: number;
  /** Notifications waiting to be handed over (and, in id order, rows held below an open gap). */
  pending: number;
}

export interface TableFeed {
  run(signal: AbortSignal): Promise<void>;
  /** Resolves once LISTEN is in force and the stored rows after the starting point are accepted. */
  ready(): Promise<void>;
  /**
   * Every row with an id at or below this one was accepted, was stored
   * before the feed started, or will never commit: a reader that starts from
   * here misses nothing. 0 before the feed started. In id order, every row
   * accepted at or below it was handed over.
   */
  watermark(): number;
  /**
   * Resolves once every row committed before this call has been accepted: a
   * NOTIFY on a channel of this feed's own comes back after them
   * (notifications arrive in commit order), or the catch-up after a lost
   * connection covers them. In arrival order accepted is handed over; in id
   * order a row may still be held below an open gap. Rejects with the
   * signal's reason when it aborts first, and when the feed stops.
   */
  barrier(signal: AbortSignal): Promise<void>;
  stats(): TableFeedStats;
}

interface Gap extends Range {
  /** Virtual transaction ids that held the table's insert lock after the gap was noticed; unset until the next check. */
  guard?: readonly string[];
  /** Its last read is under way: it goes when the read is over. */
  settling?: boolean;
}

type Pending<T> = { change: T } | { barrier: string };

interface Barrier {
  /** The connection its NOTIFY goes out on; undefined if none was up (the next catch-up releases it). */
  via: pg.Client | undefined;
  resolve(): void;
  reject(reason: unknown): void;
}

/** Gap ranges per read of the table, so that one statement stays small. */
const rangesPerRead = 100;

/**
 * Who may hold an id of the table not committed yet: the transactions holding
 * the lock an INSERT takes on it (fast-path locks included). Other databases'
 * relations can share the oid, hence the database filter.
 */
const writersOf = (table: string) => sql<string[]>`array(
  select distinct l.virtualtransaction from pg_locks l
   where l.locktype = 'relation' and l.mode = 'RowExclusiveLock' and l.relation = ${table}::regclass
     and l.database = (select oid from pg_database where datname = current_database())
     and l.pid is distinct from pg_backend_pid())`;

/**
 * Typed queries on the feed's one connection: its reads then come in order
 * with what it hears. Values arrive as pg decodes them (bigint as text), not
 * converted as typedSql's are: ids go through Number().
 */
function kyselyOn(client: pg.Client): Kysely<Database> {
  const poolClient = {
    query: (text: string, values: readonly unknown[]) => client.query(text, [...values]),
    release() {},
  } as unknown as PostgresPoolClient;
  const pool: PostgresPool = { options: {}, connect: async () => poolClient, end: async () => {} };
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** `id > after and (id between lo and hi or …)` on column, for a reader of the table. */
export function rangeCondition(column: string, after: number, ranges: readonly Range[]) {
  const c = sql.ref(column);
  const within = sql.join(
    ranges.map((r) => (r.hi === Infinity ? sql`${c} >= ${r.lo}` : sql`${c} between ${r.lo} and ${r.hi}`)),
    sql` or `,
  );
  return sql<boolean>`${c} > ${after} and (${within})`;
}

export function createTableFeed<T>(options: TableFeedOptions<T>): TableFeed {
  const { logger, noun, idOf, table, idColumn } = options;
  const byId = options.order === 'id';
  const pageSize = options.pageSize ?? 1_000;
  const settleIntervalMs = options.settleIntervalMs ?? 1_000;
  const maxGaps = options.maxGaps ?? 10_000;
  const maxPending = options.maxPending ?? 10_000;
  const startLookback = options.startLookback ?? 1_000;
  const retry = options.retry ?? { baseDelayMs: 200, maxDelayMs: 10_000 };
  const writers = writersOf(table);
  // The barrier channel is this feed's alone: no other listener hears its notifications.
  const barrierChannel = `vimmon_feed_barrier_${randomBytes(6).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]*$/.test(options.channel)) throw new Error(`not a channel name: ${options.channel}`);

  let started = false;
  let high = 0;
  let gaps: Gap[] = []; // disjoint, by lo
  let forgotten = 0; // gap ids dropped by maxGaps (or held rows) since the last warning
  let pending: Array<Pending<T>> = [];
  let pendingChanges = 0;
  /** In id order: rows accepted and not handed over yet, by id. */
  let held: T[] = [];
  /** The table must be read: connected anew, or notifications were dropped or unreadable. */
  let behind = false;
  let current: pg.Client | undefined;
  const barriers = new Map<string, Barrier>();
  let barrierSeq = 0;
  /** Barrier tokens to NOTIFY on the current connection. */
  let unsent: string[] = [];
  let markReady!: () => void;
  const readyPromise = new Promise<void>((resolve) => (markReady = resolve));
  let waiter: (() => void) | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  const watermark = () => (gaps.length > 0 ? Math.min(high, gaps[0]!.lo - 1) : high);

  /** Records id as accepted; false when it was already (or is history). */
  function accept(id: number): boolean {
    if (id > high) {
      if (id > high + 1) gaps.push({ lo: high + 1, hi: id - 1 });
      high = id;
      if (gaps.length > maxGaps) {
        for (const g of gaps.splice(0, gaps.length - maxGaps)) forgotten += g.hi - g.lo + 1;
      }
      return true;
    }
    // The last gap starting at or below id.
    let a = 0;
    let b = gaps.length - 1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (gaps[m]!.lo <= id) a = m + 1;
      else b = m - 1;
    }
    const g = gaps[b];
    if (!g || g.hi < id) return false;
    const rest: Gap[] = [];
    if (g.lo < id) rest.push({ ...g, hi: id - 1 });
    if (id < g.hi) rest.push({ ...g, lo: id + 1 });
    gaps.splice(b, 1, ...rest);
    return true;
  }

  /** In id order: holds the rows, and gives back those at or below the watermark, in id order. */
  function release(changes: T[]): T[] {
    let sorted = true;
    for (const c of changes) {
      if (held.length > 0 && idOf(c) < idOf(held.at(-1)!)) sorted = false;
      held.push(c);
    }
    if (!sorted) held.sort((x, y) => idOf(x) - idOf(y));
    // Bounded: a gap that holds too many rows back is forgotten, like one beyond maxGaps.
    while (held.length > maxPending && gaps.length > 0 && gaps[0]!.lo <= idOf(held[held.length - maxPending - 1]!)) {
      const g = gaps.shift()!;
      forgotten += g.hi - g.lo + 1;
    }
    const mark = watermark();
    let n = 0;
    while (n < held.length && idOf(held[n]!) <= mark) n++;
    if (n === 0) return [];
    const out = held.slice(0, n);
    held = held.slice(n);
    return out;
  }

  async function hand(accepted: T[], signal: AbortSignal) {
    const changes = byId ? release(accepted) : accepted;
    if (changes.length === 0) return;
    try {
      await options.onChanges(changes, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      logger.error(`a consumer of ${noun} rows failed`, { err, first: idOf(changes[0]!), count: changes.length });
    }
  }

  function onNotification(msg: pg.Notification) {
    if (msg.channel === barrierChannel) {
      pending.push({ barrier: msg.payload ?? '' });
    } else {
      const change = msg.payload ? options.parse(msg.payload) : undefined;
      if (change === 'in-table') {
        // Too big for a NOTIFY: committed, so in the table.
        behind = true;
      } else if (change === undefined || !Number.isSafeInteger(idOf(change)) || idOf(change) <= 0) {
        logger.warn(`unreadable ${noun} notification; reading the table`, { payload: msg.payload?.slice(0, 200) });
        behind = true;
      } else if (pendingChanges >= maxPending) {
        // Committed, so in the table: read from there once the consumer is ready again.
        logger.warn(`${noun} notifications pile up; reading the table instead`, { dropped: pendingChanges + 1 });
        pending = pending.filter((p) => 'barrier' in p);
        pendingChanges = 0;
        behind = true;
      } else {
        pending.push({ change });
        pendingChanges++;
      }
    }
    wake();
  }

  /** Takes the pending notifications of ids up to bound, leaving the rest (and every barrier) in order. */
  function takePending(bound: number): T[] {
    const taken: T[] = [];
    pending = pending.filter((p) => {
      if ('barrier' in p || idOf(p.change) > bound) return true;
      taken.push(p.change);
      return false;
    });
    pendingChanges -= taken.length;
    return taken;
  }

  /**
   * Hands over every stored row in ranges not accepted yet, in pages, each
   * merged with the notifications already heard up to where the page ends.
   */
  async function readRanges(db: Kysely<Database>, ranges: readonly Range[], signal: AbortSignal) {
    for (let i = 0; i < ranges.length && !signal.aborted; i += rangesPerRead) {
      const chunk = ranges.slice(i, i + rangesPerRead);
      let cursor = chunk[0]!.lo - 1;
      while (!signal.aborted) {
        const rows = await options.read(db, cursor, chunk, pageSize);
        const full = rows.length === pageSize;
        // What was heard up to the last row read goes with the page, in id order. What was heard
        // above it committed after the read: it stays pending, to go in arrival order, or to be
        // read again from the table if notifications were dropped meanwhile. (Taking it with the
        // page handed a VIM's later row while its earlier one, whose notification had been
        // dropped, was left to a gap read: out of order.)
        const bound = rows.length > 0 ? idOf(rows.at(-1)!) : cursor;
        const merged = [...rows, ...takePending(bound)].sort((x, y) => idOf(x) - idOf(y));
        await hand(
          merged.filter((c) => accept(idOf(c))),
          signal,
        );
        if (!full) break;
        cursor = bound;
      }
    }
  }

  /** What committed while nobody listened (or what was dropped): the gaps and everything above high. */
  async function catchUp(db: Kysely<Database>, signal: AbortSignal) {
    // Notifications heard so far are of committed rows: the reads cover them, in order.
    takePending(Infinity);
    await readRanges(db, [...gaps.map(({ lo, hi }) => ({ lo, hi })), { lo: high + 1, hi: Infinity }], signal);
  }

  /** Guards new gaps; reads one last time, then drops, the gaps whose guards have all ended. */
  async function settle(db: Kysely<Database>, signal: AbortSignal) {
    if (forgotten > 0) {
      logger.warn(`too many open gaps in ${table} ids; the lowest are forgotten`, { ids: forgotten, maxGaps });
      forgotten = 0;
    }
    const { writers: now } = await db.selectNoFrom(writers.as('writers')).executeTakeFirstOrThrow();
    const live = new Set(now);
    const verdicts = new Map<readonly string[], boolean>();
    const ended = (guard: readonly string[]) => {
      let v = verdicts.get(guard);
      if (v === undefined) verdicts.set(guard, (v = guard.every((w) => !live.has(w))));
      return v;
    };
    const done: Gap[] = [];
    for (const g of gaps) {
      if (g.guard === undefined) {
        g.guard = now;
        // No writer left after the gap was noticed: none can still commit into it. In id order
        // the gap holds back every row above it, so it goes now rather than at the next check.
        if (byId && now.length === 0) done.push(g);
      } else if (ended(g.guard)) done.push(g);
    }
    if (done.length === 0) return;
    for (const g of done) g.settling = true;
    try {
      // Pieces split off these gaps while they are read carry the mark along.
      await readRanges(
        db,
        done.map(({ lo, hi }) => ({ lo, hi })),
        signal,
      );
    } catch (err) {
      for (const g of gaps) g.settling = undefined; // not read: still open
      throw err;
    }
    gaps = gaps.filter((g) => !g.settling);
    // The watermark moved: rows held above the settled gaps go out.
    await hand([], signal);
  }

  /** At the first connection: where to start, and the ids below it that may still commit. */
  async function begin(db: Kysely<Database>) {
    // One statement: pg_locks is read after its snapshot, so a transaction that
    // drew an id up to `newest` and had not committed then is among `writers`.
    const first = await sql<{ newest: string | number | null; writers: string[] }>`
      select max(${sql.ref(idColumn)}) as newest, ${writers} as writers from ${sql.table(table)}`.execute(db);
    const { newest: stored, writers: guard } = first.rows[0]!;
    const newest = Number(stored ?? 0);
    const after = options.startAfter ? await options.startAfter(newest) : newest;
    const found: Gap[] = [];
    const top = Math.min(after, newest);
    if (guard.length > 0 && top > 0) {
      const from = Math.max(0, top - startLookback);
      const { rows } = await sql<{ id: string | number }>`
        select ${sql.ref(idColumn)} as id from ${sql.table(table)}
         where ${sql.ref(idColumn)} > ${from} and ${sql.ref(idColumn)} <= ${top} order by 1`.execute(db);
      let previous = from;
      for (const { id } of rows) {
        const n = Number(id);
        if (n > previous + 1) found.push({ lo: previous + 1, hi: n - 1, guard });
        previous = n;
      }
      if (top > previous) found.push({ lo: previous + 1, hi: top, guard });
    }
    high = after;
    gaps = found;
  }

  async function drain(signal: AbortSignal) {
    const items = pending;
    pending = [];
    pendingChanges = 0;
    let batch: T[] = [];
    for (const [i, item] of items.entries()) {
      if ('change' in item) {
        if (accept(idOf(item.change))) batch.push(item.change);
        continue;
      }
      await hand(batch, signal);
      batch = [];
      if (behind) {
        // Something before this barrier is only in the table now: it waits for the catch-up.
        const rest = items.slice(i);
        pending = [...rest, ...pending];
        pendingChanges += rest.filter((p) => 'change' in p).length;
        return;
      }
      settleBarrier(item.barrier);
    }
    await hand(batch, signal);
  }

  function settleBarrier(token: string) {
    const b = barriers.get(token);
    barriers.delete(token);
    b?.resolve();
  }

  /** After a catch-up on client: barriers whose NOTIFY does not go out on it are covered by the catch-up. */
  function releaseBarriersNotOn(client: pg.Client) {
    for (const [token, b] of barriers) {
      if (b.via === client) continue;
      barriers.delete(token);
      b.resolve();
    }
  }

  /** NOTIFY itself, from the loop (one query at a time on the connection): it comes back after every notification committed before it. */
  async function sendBarriers(client: pg.Client) {
    const tokens = unsent;
    unsent = [];
    for (const token of tokens) {
      if (barriers.get(token)?.via !== client) continue; // released or aborted meanwhile
      await client.query(`select pg_notify($1, $2)`, [barrierChannel, token]);
    }
  }

  /** Resolves at wake(), at abort, or after ms. */
  function nap(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (waiter === done) waiter = undefined;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      waiter = done;
      if (signal.aborted) done();
      else signal.addEventListener('abort', done, { once: true });
    });
  }

  /** One connection's life, level-triggered: read the table when behind, hand over what was heard, check gaps, wait. */
  async function serve(
    client: pg.Client,
    db: Kysely<Database>,
    link: { lost: boolean; error?: unknown },
    signal: AbortSignal,
    connectedAgain: () => void,
  ) {
    let lastSettle = Date.now();
    while (!signal.aborted && !link.lost) {
      if (behind) {
        behind = false;
        await catchUp(db, signal);
        releaseBarriersNotOn(client);
        markReady();
        connectedAgain();
        continue;
      }
      if (unsent.length > 0) {
        await sendBarriers(client);
        continue;
      }
      if (pending.length > 0) {
        await drain(signal);
        continue;
      }
      const wait = gaps.length > 0 ? lastSettle + settleIntervalMs - Date.now() : Infinity;
      if (wait <= 0) {
        await settle(db, signal);
        lastSettle = Date.now();
        continue;
      }
      await nap(wait, signal);
    }
    if (link.lost && !signal.aborted) throw link.error ?? new Error('connection ended');
  }

  return {
    ready: () => readyPromise,
    watermark,
    stats: () => ({ high, gaps: gaps.length, pending: pendingChanges + held.length }),
    barrier(signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      const token = String(++barrierSeq);
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          barriers.delete(token);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const via = current;
        barriers.set(token, {
          via,
          resolve: () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          },
          reject: (reason) => {
            signal.removeEventListener('abort', onAbort);
            reject(reason);
          },
        });
        if (via) {
          unsent.push(token);
          wake();
        }
      });
    },
    async run(signal) {
      let attempt = 0;
      while (!signal.aborted) {
        const client = new pg.Client({
          connectionString: options.databaseUrl,
          application_name: options.applicationName ?? `vimmon ${table} feed`,
        });
        const link: { lost: boolean; error?: unknown } = { lost: false };
        const lost = (err?: unknown) => {
          if (link.lost) return;
          link.lost = true;
          link.error = err;
          wake();
        };
        client.on('error', lost);
        client.on('end', () => lost());
        client.on('notification', onNotification);
        try {
          await client.connect();
          // LISTEN takes no parameter: both channel names are checked identifiers.
          await client.query(`listen ${options.channel}`);
          await client.query(`listen ${barrierChannel}`);
          const db = kyselyOn(client);
          if (!started) {
            await begin(db);
            started = true;
          }
          current = client;
          // Whatever committed while nobody listened is only in the table.
          behind = true;
          await serve(client, db, link, signal, () => (attempt = 0));
        } catch (err) {
          if (signal.aborted) break;
          logger.warn(`${noun} listener lost its connection; reconnecting`, { err: String(err), attempt });
        } finally {
          if (current === client) current = undefined;
          client.removeListener('notification', onNotification);
          await client.end().catch(() => {});
        }
        try {
          await delay(signal, backoffDelayMs(attempt++, retry));
        } catch (err) {
          if (!isAbortError(err)) throw err;
        }
      }
      for (const b of barriers.values()) b.reject(new Error(`the ${noun} feed stopped`));
      barriers.clear();
    },
  };
}
