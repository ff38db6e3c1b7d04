// The fault-injection suite's judge. It knows nothing of the mesh's fencing or
// feed code: it reads only what the suite recorded (the SDK streams, the stale
// reporter's calls) and what PostgreSQL recorded through the suite's own
// trigger on `vim` (chaos_vim_log), and says which invariant a history breaks.
//
// The trigger log is in commit order per VIM: an update holds the row's lock
// until commit, and the trigger draws its id while holding it.

/** One INSERT/UPDATE of a `vim` row. */
export interface VimLogRow {
  id: number;
  vimId: string;
  txid: number;
  /** clock_timestamp() inside the writing transaction (ms since the epoch). */
  atMs: number;
  /** null for the INSERT. */
  oldAction: string | null;
  newAction: string;
  oldStatus: string | null;
  newStatus: string;
  oldReportMs: number | null;
  newReportMs: number | null;
  deleted: boolean;
}

/** A conductor UpdateVim the stale reporter sent with an action id the VIM had before. */
export interface StaleCall {
  vimId: string;
  actionId: string;
  /** The status the call claimed (one the VIM's real action never reports). */
  sentStatus: string;
  startedAtMs: number;
  endedAtMs: number;
  /** The status answered (BAD_ACTION expected), or `error:CODE` when the call failed. */
  answer: string;
}

/** One WatchVims message as the resuming watcher got it. */
export interface WatchRecord {
  eventId: number;
  vimId: string;
  status: string;
  atMs: number;
  /** Reconnect attempts before it arrived: records with the same value came on one connection (or attempt). */
  connection?: number;
}

/** One alarm as a resuming subscriber got it. */
export interface AlarmRecord {
  alarmId: number;
  type: number;
  vimId: string;
  host: string;
  atMs: number;
  /** As WatchRecord's. */
  connection?: number;
}

export interface RunHistory {
  vimLog: VimLogRow[];
  staleCalls: StaleCall[];
  /** Every vim_event row at the end (retention off for the run). */
  storedEvents: Array<{ id: number; vimId: string }>;
  watcher: WatchRecord[];
  /** Every alarm id stored at the end. */
  storedAlarmIds: number[];
  subscribers: Array<{ name: string; records: AlarmRecord[] }>;
  /** Live VIMs at the end. */
  liveVims: Array<{ id: string; lastReportMs: number | null }>;
  /** Every live VIM must have an accepted report after this (the end of the last fault). */
  monitoredAfterMs: number;
}

export type ViolationKind =
  | 'action-reinstated'
  | 'report-from-retired-action'
  | 'action-chain-broken'
  | 'stale-call-accepted'
  | 'stale-call-trace'
  | 'event-missed'
  | 'event-repeated'
  | 'event-not-stored'
  | 'event-out-of-order'
  | 'alarm-missed'
  | 'alarm-repeated'
  | 'alarm-out-of-order'
  | 'vim-not-monitored';

export interface Violation {
  kind: ViolationKind;
  detail: string;
}

export interface CheckResult {
  violations: Violation[];
  /** Violations by kind (the list itself is capped). */
  counts: Partial<Record<ViolationKind, number>>;
  figures: {
    vimLogRows: number;
    reportsAccepted: number;
    actionChanges: number;
    staleCalls: Record<string, number>;
    eventsStored: number;
    eventsSeen: number;
    alarmsStored: number;
    subscribers: Array<{ name: string; seen: number; seenNeverStored: number }>;
    liveVims: number;
  };
}

const maxListed = 50;

/** When and on which connection a message arrived, for a violation's detail. */
const receipt = (r: { atMs: number; connection?: number }) =>
  ` at ${new Date(r.atMs).toISOString()}${r.connection === undefined ? '' : ` (connection ${r.connection})`}`;

export function checkHistory(h: RunHistory): CheckResult {
  const violations: Violation[] = [];
  const counts: Partial<Record<ViolationKind, number>> = {};
  const add = (kind: ViolationKind, detail: string) => {
    counts[kind] = (counts[kind] ?? 0) + 1;
    if (violations.length < maxListed) violations.push({ kind, detail });
  };

  // Fencing, from the trigger log: an action id once replaced never speaks for its VIM again.
  const current = new Map<string, string>();
  const retired = new Map<string, Set<string>>();
  let reportsAccepted = 0;
  let actionChanges = 0;
  const rowsByVim = new Map<string, VimLogRow[]>();
  for (const row of [...h.vimLog].sort((a, b) => a.id - b.id)) {
    let list = rowsByVim.get(row.vimId);
    if (!list) rowsByVim.set(row.vimId, (list = []));
    list.push(row);
    const gone = retired.get(row.vimId) ?? new Set<string>();
    retired.set(row.vimId, gone);
    const before = current.get(row.vimId);
    if (row.oldAction !== null && before !== undefined && row.oldAction !== before)
      add('action-chain-broken', `vim ${row.vimId} log ${row.id}: old action ${row.oldAction}, last logged ${before}`);
    if (row.oldAction !== null && row.oldAction !== row.newAction) {
      actionChanges++;
      if (gone.has(row.newAction)) add('action-reinstated', `vim ${row.vimId} log ${row.id}: action ${row.newAction} was replaced before`);
      gone.add(row.oldAction);
    } else if (row.oldAction !== null && (row.newReportMs !== row.oldReportMs || row.newStatus !== row.oldStatus)) {
      reportsAccepted++;
      if (gone.has(row.newAction))
        add('report-from-retired-action', `vim ${row.vimId} log ${row.id}: report stored for action ${row.newAction}, replaced before`);
    }
    current.set(row.vimId, row.newAction);
  }

  // The stale reporter: BAD_ACTION every time, and no stored trace of what it claimed.
  const staleCalls: Record<string, number> = {};
  for (const call of h.staleCalls) {
    staleCalls[call.answer] = (staleCalls[call.answer] ?? 0) + 1;
    if (call.answer !== 'VIM_STATUS_BAD_ACTION' && !call.answer.startsWith('error:'))
      add('stale-call-accepted', `vim ${call.vimId} action ${call.actionId}: answered ${call.answer}`);
    const trace = (rowsByVim.get(call.vimId) ?? []).find(
      (row) =>
        row.atMs >= call.startedAtMs &&
        row.atMs <= call.endedAtMs &&
        row.newStatus === call.sentStatus &&
        (row.oldStatus !== row.newStatus || row.newReportMs !== row.oldReportMs),
    );
    if (trace)
      add(
        'stale-call-trace',
        `vim ${call.vimId} action ${call.actionId}: log ${trace.id} stored ${trace.newStatus} during the call (answered ${call.answer})`,
      );
  }

  // The resuming watcher: every stored transition exactly once, each VIM's in id order, nothing else.
  const stored = new Set(h.storedEvents.map((e) => e.id));
  const seenEvents = new Map<number, WatchRecord[]>();
  const lastPerVim = new Map<string, number>();
  for (const r of h.watcher) {
    seenEvents.set(r.eventId, [...(seenEvents.get(r.eventId) ?? []), r]);
    if (!stored.has(r.eventId)) add('event-not-stored', `event ${r.eventId} (vim ${r.vimId}) seen, not in vim_event`);
    const last = lastPerVim.get(r.vimId) ?? 0;
    if (r.eventId <= last) add('event-out-of-order', `vim ${r.vimId}: event ${r.eventId} after ${last}${receipt(r)}`);
    else lastPerVim.set(r.vimId, r.eventId);
  }
  for (const [id, seen] of seenEvents)
    if (seen.length > 1) add('event-repeated', `event ${id} seen ${seen.length} times:${seen.map(receipt).join(';')}`);
  for (const e of h.storedEvents) if (!seenEvents.has(e.id)) add('event-missed', `event ${e.id} (vim ${e.vimId}) never seen`);

  // Each resuming subscriber: every stored alarm exactly once, in id order. An alarm seen but never
  // stored (sent just before the inspector was killed, as the design allows) is counted, not a violation.
  const storedAlarms = new Set(h.storedAlarmIds);
  const subscribers = h.subscribers.map(({ name, records }) => {
    const seen = new Map<number, AlarmRecord[]>();
    let last = 0;
    let seenNeverStored = 0;
    for (const r of records) {
      seen.set(r.alarmId, [...(seen.get(r.alarmId) ?? []), r]);
      if (!storedAlarms.has(r.alarmId)) seenNeverStored++;
      if (r.alarmId <= last) add('alarm-out-of-order', `${name}: alarm ${r.alarmId} after ${last}${receipt(r)}`);
      else last = r.alarmId;
    }
    for (const [id, rs] of seen)
      if (rs.length > 1) add('alarm-repeated', `${name}: alarm ${id} seen ${rs.length} times:${rs.map(receipt).join(';')}`);
    for (const id of h.storedAlarmIds) if (!seen.has(id)) add('alarm-missed', `${name}: alarm ${id} never seen`);
    return { name, seen: records.length, seenNeverStored };
  });

  // Every registered VIM monitored again at the end.
  for (const v of h.liveVims)
    if (v.lastReportMs === null || v.lastReportMs <= h.monitoredAfterMs)
      add(
        'vim-not-monitored',
        `vim ${v.id}: last report ${v.lastReportMs === null ? 'never' : new Date(v.lastReportMs).toISOString()}, end of faults ${new Date(h.monitoredAfterMs).toISOString()}`,
      );

  return {
    violations,
    counts,
    figures: {
      vimLogRows: h.vimLog.length,
      reportsAccepted,
      actionChanges,
      staleCalls,
      eventsStored: h.storedEvents.length,
      eventsSeen: h.watcher.length,
      alarmsStored: h.storedAlarmIds.length,
      subscribers,
      liveVims: h.liveVims.length,
    },
  };
}
