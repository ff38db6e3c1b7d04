// The fault-injection suite's history checker on made-up histories: a clean
// one passes, and each kind of violation is reported (so the checker can fail).
import test from 'ava';
import { checkHistory, type RunHistory, type ViolationKind, type VimLogRow } from '../chaos/history-checker.js';

const vimA = '00000000-0000-4000-8000-00000000000a';
const vimB = '00000000-0000-4000-8000-00000000000b';
const a1 = '10000000-0000-4000-8000-000000000001';
const a2 = '10000000-0000-4000-8000-000000000002';
const b1 = '20000000-0000-4000-8000-000000000001';

function row(id: number, vimId: string, atMs: number, change: Partial<VimLogRow>): VimLogRow {
  return {
    id,
    vimId,
    txid: 1000 + id,
    atMs,
    oldAction: null,
    newAction: a1,
    oldStatus: null,
    newStatus: 'PENDING',
    oldReportMs: null,
    newReportMs: null,
    deleted: false,
    ...change,
  };
}

/** Two VIMs; A's action is replaced (a1 → a2) and a1 is then replayed by the stale reporter, fenced. */
function cleanHistory(): RunHistory {
  return {
    vimLog: [
      row(1, vimA, 1_000, { newAction: a1 }),
      row(2, vimB, 1_001, { newAction: b1 }),
      row(3, vimA, 2_000, { oldAction: a1, newAction: a1, oldStatus: 'PENDING', newStatus: 'REACHABLE', newReportMs: 2_000 }),
      row(4, vimB, 2_010, { oldAction: b1, newAction: b1, oldStatus: 'PENDING', newStatus: 'REACHABLE', newReportMs: 2_010 }),
      row(5, vimA, 3_000, {
        oldAction: a1,
        newAction: a2,
        oldStatus: 'REACHABLE',
        newStatus: 'REACHABLE',
        oldReportMs: 2_000,
        newReportMs: 2_000,
      }),
      row(6, vimA, 4_000, {
        oldAction: a2,
        newAction: a2,
        oldStatus: 'REACHABLE',
        newStatus: 'REACHABLE',
        oldReportMs: 2_000,
        newReportMs: 4_000,
      }),
      row(7, vimB, 4_500, {
        oldAction: b1,
        newAction: b1,
        oldStatus: 'REACHABLE',
        newStatus: 'REACHABLE',
        oldReportMs: 2_010,
        newReportMs: 4_500,
      }),
    ],
    staleCalls: [
      { vimId: vimA, actionId: a1, sentStatus: 'UNREACHABLE', startedAtMs: 3_500, endedAtMs: 3_520, answer: 'VIM_STATUS_BAD_ACTION' },
      { vimId: vimA, actionId: a1, sentStatus: 'UNREACHABLE', startedAtMs: 3_600, endedAtMs: 3_700, answer: 'error:UNAVAILABLE' },
    ],
    storedEvents: [
      { id: 1, vimId: vimA },
      { id: 2, vimId: vimB },
    ],
    // Commit order, not id order, across VIMs: allowed.
    watcher: [
      { eventId: 2, vimId: vimB, status: 'VIM_STATUS_REACHABLE', atMs: 2_011 },
      { eventId: 1, vimId: vimA, status: 'VIM_STATUS_REACHABLE', atMs: 2_012 },
    ],
    storedAlarmIds: [1, 2, 4],
    subscribers: [
      {
        name: 'subscriber-1',
        records: [1, 2, 3, 4].map((alarmId) => ({ alarmId, type: 3, vimId: vimA, host: '', atMs: 2_000 + alarmId })),
      },
      { name: 'subscriber-2', records: [1, 2, 4].map((alarmId) => ({ alarmId, type: 3, vimId: vimA, host: '', atMs: 2_000 + alarmId })) },
    ],
    liveVims: [
      { id: vimA, lastReportMs: 4_000 },
      { id: vimB, lastReportMs: 4_500 },
    ],
    monitoredAfterMs: 3_800,
  };
}

function kinds(h: RunHistory): ViolationKind[] {
  return [...new Set(checkHistory(h).violations.map((v) => v.kind))].sort();
}

test('a clean history passes, and an alarm seen but never stored is counted apart', (t) => {
  const result = checkHistory(cleanHistory());
  t.deepEqual(result.violations, []);
  t.is(result.figures.reportsAccepted, 4);
  t.is(result.figures.actionChanges, 1);
  t.deepEqual(result.figures.staleCalls, { VIM_STATUS_BAD_ACTION: 1, 'error:UNAVAILABLE': 1 });
  t.deepEqual(
    result.figures.subscribers.map((s) => s.seenNeverStored),
    [1, 0],
  );
});

test('a replaced action id given back to its VIM is reported', (t) => {
  const h = cleanHistory();
  h.vimLog.push(row(8, vimA, 5_000, { oldAction: a2, newAction: a1, oldStatus: 'REACHABLE', newStatus: 'REACHABLE' }));
  t.deepEqual(kinds(h), ['action-reinstated']);
});

test('a report stored for a replaced action is reported', (t) => {
  const h = cleanHistory();
  // As the log would show a row whose current action is one replaced before, reached without a logged change.
  h.vimLog.push(
    row(8, vimA, 5_000, {
      oldAction: a1,
      newAction: a1,
      oldStatus: 'REACHABLE',
      newStatus: 'REACHABLE',
      oldReportMs: 4_000,
      newReportMs: 5_000,
    }),
  );
  t.deepEqual(kinds(h), ['action-chain-broken', 'report-from-retired-action']);
});

test('a stale call answered with a status is reported', (t) => {
  const h = cleanHistory();
  h.staleCalls[0]!.answer = 'VIM_STATUS_UNREACHABLE';
  t.deepEqual(kinds(h), ['stale-call-accepted']);
});

test('a stale call answered BAD_ACTION that still left its status in the log is reported', (t) => {
  const h = cleanHistory();
  // Committed while the call was under way: the claimed status reached the row.
  h.vimLog.push(
    row(8, vimA, 3_510, { oldAction: a2, newAction: a2, oldStatus: 'REACHABLE', newStatus: 'UNREACHABLE', newReportMs: 3_510 }),
  );
  t.deepEqual(kinds(h), ['stale-call-trace']);
});

test('a transition the watcher missed is reported', (t) => {
  const h = cleanHistory();
  h.storedEvents.push({ id: 3, vimId: vimA });
  t.deepEqual(kinds(h), ['event-missed']);
});

test('a transition the watcher got twice is reported', (t) => {
  const h = cleanHistory();
  h.watcher.push({ ...h.watcher[1]! });
  t.deepEqual(kinds(h), ['event-out-of-order', 'event-repeated']);
});

test('a transition seen but never stored is reported', (t) => {
  const h = cleanHistory();
  h.watcher.push({ eventId: 9, vimId: vimB, status: 'VIM_STATUS_UNREACHABLE', atMs: 5_000 });
  t.deepEqual(kinds(h), ['event-not-stored']);
});

test("a VIM's transitions out of id order are reported", (t) => {
  const h = cleanHistory();
  h.storedEvents.push({ id: 5, vimId: vimA });
  h.watcher.unshift({ eventId: 5, vimId: vimA, status: 'VIM_STATUS_UNREACHABLE', atMs: 2_000 });
  t.deepEqual(kinds(h), ['event-out-of-order']);
});

test('an alarm a subscriber missed is reported', (t) => {
  const h = cleanHistory();
  h.subscribers[1]!.records.splice(1, 1);
  t.deepEqual(kinds(h), ['alarm-missed']);
});

test('an alarm a subscriber got twice is reported', (t) => {
  const h = cleanHistory();
  h.subscribers[0]!.records.push({ ...h.subscribers[0]!.records[3]! });
  t.deepEqual(kinds(h), ['alarm-out-of-order', 'alarm-repeated']);
});

test('alarms out of id order are reported', (t) => {
  const h = cleanHistory();
  const r = h.subscribers[1]!.records;
  [r[0], r[1]] = [r[1]!, r[0]!];
  t.deepEqual(kinds(h), ['alarm-out-of-order']);
});

test('a VIM with no report after the last fault is reported', (t) => {
  const h = cleanHistory();
  h.liveVims.push({ id: '00000000-0000-4000-8000-00000000000c', lastReportMs: null });
  h.liveVims[0]!.lastReportMs = 3_000;
  const result = checkHistory(h);
  t.deepEqual(kinds(h), ['vim-not-monitored']);
  t.is(result.counts['vim-not-monitored'], 2);
});
