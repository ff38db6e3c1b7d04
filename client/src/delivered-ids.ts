// Which ids a resumable stream has handed to its consumer, so that a new
// connection resumes where the consumer is and drops what it already has.
//
// A server never sends an id twice on one connection; a repeat can only come
// from the replay a new connection starts with. Two kinds of stream:
//
// - ordered (SubscribeAlarms: alarm ids strictly increase): resume after the
//   last id handed, and drop any id at or below it;
// - unordered (WatchVims): event ids are drawn when a conductor's transaction
//   inserts the row and arrive in commit order, which across VIMs is not id
//   order: after 5 and 7 the stream may still bring 6, and that 6 is new, not a
//   repeat. "Resume after the highest id" would skip a 6 that committed while
//   the stream was down, so the ids handed are remembered and the stream
//   resumes after a floor below all of them (the point it started from); the
//   replay's ids that are remembered are dropped, every other one is new.
//
// Memory is bounded: at most `window` ids, each for at most `windowMs`. An id
// leaves from the bottom (the floor rises to it: nothing at or below the floor
// is replayed again) when the window is full or the id is older than windowMs.
// An id below the floor that commits after that is missed by a resume, as it
// would be by the server's own resume point; a conductor's transaction lasts
// milliseconds, not a minute.
//
// But not while the current connection may still replay it. A connection
// replays, in id order, what is stored above the point it resumed after, then
// goes live (and live never repeats). An id above the highest one this
// connection has brought so far may still come in its replay: forgetting it
// then (raising the floor over it) would take its replay for a late commit and
// hand it twice. So only ids at or below that mark leave, and the window may
// run over until the replay passes them, up to 4 × window (beyond that the
// oldest leave anyway: memory stays bounded, at the cost of a possible repeat).

export interface DeliveredIdsOptions {
  /** 'ordered': ids only increase; 'unordered': they may arrive out of numeric order. */
  order: 'ordered' | 'unordered';
  /** Unordered: ids remembered at most. Default 1,024. */
  window?: number;
  /** Unordered: how long an id is remembered (ms). Default 60 s. */
  windowMs?: number;
  /** Where the consumer already is (nothing at or below it is asked for again). Unset: no resume point yet. */
  after?: number;
  now?: () => number;
}

export class DeliveredIds {
  /** Ordered: the last id handed. Unordered: nothing at or below it will be replayed. */
  private floor: number | undefined;
  /** Unordered: ids handed above the floor, ascending, with when they were handed. */
  private readonly handed: Array<{ id: number; at: number }> = [];
  /** Unordered: a lower resume point the server named, until the next id arrives. */
  private hinted: number | undefined;
  /** Unordered: the highest id the current connection brought, or where it resumed; Infinity for a live-only one. */
  private connectionHigh = Number.POSITIVE_INFINITY;
  private readonly ordered: boolean;
  private readonly window: number;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(options: DeliveredIdsOptions) {
    this.ordered = options.order === 'ordered';
    this.window = Math.max(1, options.window ?? 1_024);
    this.windowMs = options.windowMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.floor = options.after;
  }

  /** True when id is new, and it is then recorded as handed; false for a repeat. */
  accept(id: number): boolean {
    this.hinted = undefined;
    if (this.ordered) {
      if (this.floor !== undefined && id <= this.floor) return false;
      this.floor = id;
      return true;
    }
    const now = this.now();
    this.prune(now);
    const fresh = this.record(id, now);
    // The replay is in id order: nothing at or below id comes again on this connection.
    if (id > this.connectionHigh) this.connectionHigh = id;
    return fresh;
  }

  private record(id: number, now: number): boolean {
    // At or below the floor: never replayed, so it is a late commit the live stream brought, not a repeat.
    if (this.floor !== undefined && id <= this.floor) return true;
    const i = this.indexOf(id);
    if (this.handed[i]?.id === id) return false;
    this.handed.splice(i, 0, { id, at: now });
    while (this.handed.length > this.window && this.forgettable()) this.raiseFloor(this.handed.shift()!.id);
    while (this.handed.length > 4 * this.window) this.raiseFloor(this.handed.shift()!.id);
    return true;
  }

  /**
   * A new connection is being opened: the id to resume after (as resumeAfter),
   * which is also where its replay starts.
   */
  connect(): number | undefined {
    const after = this.resumeAfter();
    // Unordered only; no resume point means a live-only stream: no replay to wait for.
    if (!this.ordered) this.connectionHigh = after ?? Number.POSITIVE_INFINITY;
    return after;
  }

  /**
   * The id to resume after, undefined while there is none. Unordered: the
   * floor, when there is one (every id handed above it is remembered, so the
   * replay of everything above it repeats nothing and brings every late
   * commit); before any, just below the lowest id handed (the stream started
   * live: what lies below its first id was never asked for).
   */
  resumeAfter(): number | undefined {
    if (this.ordered) return this.floor;
    this.prune(this.now());
    if (this.floor !== undefined) return this.floor;
    const lowest = this.handed[0]?.id;
    // after_event_id 0 means "live only", not "from the first": below id 1 there is nothing to replay anyway.
    const below = lowest === undefined ? undefined : Math.max(1, lowest - 1);
    if (this.hinted === undefined) return below;
    return below === undefined ? this.hinted : Math.min(below, this.hinted);
  }

  /**
   * A resume point the server named (its trailer, when it cut the stream).
   * Taken as the resume point while there is none; unordered, before any floor,
   * also when it is below the lowest id handed (a lower point only replays more,
   * and the replay's repeats are dropped), until the next id arrives.
   */
  hint(after: number): void {
    if (this.floor === undefined && this.handed.length === 0) this.floor = after;
    else if (!this.ordered) this.hinted = Math.min(this.hinted ?? after, after);
  }

  /** Unordered: how many ids are remembered. */
  get remembered(): number {
    return this.handed.length;
  }

  private raiseFloor(id: number): void {
    this.floor = Math.max(this.floor ?? 0, id);
  }

  private prune(now: number): void {
    while (this.handed.length > 0 && now - this.handed[0]!.at > this.windowMs && this.forgettable())
      this.raiseFloor(this.handed.shift()!.id);
  }

  /** Whether the lowest id remembered is one the current connection can no longer replay. */
  private forgettable(): boolean {
    return this.handed[0]!.id <= this.connectionHigh;
  }

  /** Where id is or would go in `handed` (binary search). */
  private indexOf(id: number): number {
    let lo = 0;
    let hi = this.handed.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.handed[mid]!.id < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
