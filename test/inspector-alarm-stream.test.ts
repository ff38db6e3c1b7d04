// The alarm log on a real PostgreSQL: ids, storage, replay-then-live with no
// gap or duplicate at the seam, slow and overflowing subscribers.
import test from 'ava';
import { UnavailableError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { AlarmType, type AlarmFilter } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createAlarmStore, type AlarmRecord } from '../inspector/alarm-store.js';
import {
  createAlarmHub,
  SubscriberOverflowError,
  type AlarmDraft,
  type AlarmHub,
  type AlarmHubOptions,
} from '../inspector/alarm-stream.js';
import { instantAlarmStore } from './support/instant-alarm-store.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const logger = createLogger({ level: 'silent' });

function draft(host: string, i: number, projectId = 'p1'): AlarmDraft {
  return {
    type: AlarmType.ALARM_TYPE_INSTANCE_DOWN,
    host,
    instanceId: `vm-${host}-${i}`,
    instanceName: `it's "vm" \\ ${i}`,
    projectId,
    vimId: '',
    vimName: '',
    state: 'error',
    severity: 'critical',
    cause: '',
    monitor: 'm',
    monitorEventId: `e${i}`,
    faultId: '',
    eventTime: new Date('2026-11-22T00:00:00Z'),
    detectedAt: new Date(),
  };
}

async function startHub(t: import('ava').ExecutionContext, db: TestDatabase, options: Partial<AlarmHubOptions> = {}) {
  const hub = createAlarmHub({ store: createAlarmStore(db.orm), logger, ...options });
  await hub.start();
  const controller = new AbortController();
  const running = hub.run(controller.signal);
  const stop = async () => {
    controller.abort();
    await running;
  };
  t.teardown(stop);
  return { hub, stop };
}

/** Collects from a subscription until `count` alarms or the signal ends it. */
function collect(hub: AlarmHub, opts: { afterAlarmId: number; filter?: AlarmFilter; liveOnly?: boolean }, signal: AbortSignal) {
  const got: AlarmRecord[] = [];
  const done = (async () => {
    for await (const a of hub.subscribe(opts, signal)) got.push(a);
  })();
  return { got, done };
}

async function until(cond: () => boolean, timeoutMs = 5_000) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('ids strictly increase, alarms are sent at once and stored in one batch', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db);
  const a = await hub.raise([draft('h1', 0), draft('h1', 1)]);
  const b = await hub.raise([draft('h2', 0)]);
  const ids = [...a, ...b].map((x) => x.alarmId);
  t.deepEqual(
    ids,
    [...ids].sort((x, y) => x - y),
  );
  t.is(new Set(ids).size, 3);
  await hub.whenStored();
  const stored = await createAlarmStore(db.orm).read(0, undefined, undefined, 100);
  t.deepEqual(
    stored.map((x) => x.alarmId),
    ids,
  );
  t.is(stored[0]!.instanceName, `it's "vm" \\ 0`);
  t.deepEqual(stored[0]!.eventTime, new Date('2026-11-22T00:00:00Z'));
  t.is(hub.stats().pendingStore, 0);
});

test('a restarted log continues after the stored ids', async (t) => {
  const db = await createTestDatabase(t);
  const first = await startHub(t, db);
  const a = await first.hub.raise([draft('h', 0)]);
  await first.stop();
  const second = await startHub(t, db);
  const b = await second.hub.raise([draft('h', 1)]);
  t.true(b[0]!.alarmId > a[0]!.alarmId);
  const c = new AbortController();
  const { got, done } = collect(second.hub, { afterAlarmId: 0 }, c.signal);
  await until(() => got.length === 2);
  c.abort();
  await done;
  t.deepEqual(
    got.map((x) => x.instanceId),
    ['vm-h-0', 'vm-h-1'],
  );
});

test('replay then live: no gap and no duplicate while alarms keep coming, from the table and from memory', async (t) => {
  const db = await createTestDatabase(t);
  // A small window so that the replay crosses from the table into memory.
  const store = createAlarmStore(db.orm);
  let tableReads = 0;
  const counting = {
    ...store,
    read: (...args: Parameters<typeof store.read>) => {
      tableReads++;
      return store.read(...args);
    },
  };
  const { hub } = await startHub(t, db, { store: counting, recentSize: 50, subscriberQueueSize: 100_000 });
  let raising = true;
  let raised = 0;
  const producer = (async () => {
    while (raising && raised < 3_000) {
      await hub.raise([draft('h', raised++), draft('h', raised++), draft('h', raised++)]);
      await new Promise((r) => setImmediate(r));
    }
  })();
  await until(() => raised > 600);
  // Subscribers joining at different points, each resuming after a different id.
  const subs: Array<{ after: number; got: AlarmRecord[]; done: Promise<void>; c: AbortController }> = [];
  for (const after of [0, 7, 150]) {
    await hub.whenStored(); // the producer goes on: the window has moved past `after`
    const c = new AbortController();
    subs.push({ after, c, ...collect(hub, { afterAlarmId: after }, c.signal) });
    const mark = raised;
    await until(() => raised > mark + 150 || raised >= 3_000);
  }
  raising = false;
  await producer;
  await hub.whenStored();
  const all = await createAlarmStore(db.orm).read(0, undefined, undefined, 100_000);
  t.is(all.length, raised);
  for (const s of subs) {
    const expected = all.filter((a) => a.alarmId > s.after).map((a) => a.alarmId);
    await until(() => s.got.length >= expected.length);
    s.c.abort();
    await s.done;
    t.deepEqual(
      s.got.map((a) => a.alarmId),
      expected,
      `after ${s.after}`,
    );
  }
  t.true(tableReads >= 3);
});

test('a reconnecting subscriber gets what it missed, once', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db);
  const c1 = new AbortController();
  const first = collect(hub, { afterAlarmId: 0 }, c1.signal);
  await hub.raise([draft('h', 0), draft('h', 1)]);
  await until(() => first.got.length === 2);
  c1.abort();
  await first.done;
  const last = first.got[1]!.alarmId;
  // Raised while it was away: some stored, some maybe not yet.
  await hub.raise([draft('h', 2)]);
  await hub.whenStored();
  const pending = hub.raise([draft('h', 3), draft('h', 4)]);
  const c2 = new AbortController();
  const second = collect(hub, { afterAlarmId: last }, c2.signal);
  await pending;
  await hub.raise([draft('h', 5)]);
  await until(() => second.got.length === 4);
  await new Promise((r) => setTimeout(r, 50));
  c2.abort();
  await second.done;
  t.deepEqual(
    second.got.map((a) => a.instanceId),
    ['vm-h-2', 'vm-h-3', 'vm-h-4', 'vm-h-5'],
  );
});

test('filters: hosts, projects, types; live only', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db);
  await hub.raise([draft('a', 0, 'p1'), draft('b', 0, 'p2')]);
  await hub.whenStored();
  const c = new AbortController();
  const byHost = collect(
    hub,
    { afterAlarmId: 0, filter: { hosts: ['b'], projectIds: [], instanceIds: [], types: [], vimIds: [] } },
    c.signal,
  );
  const byProject = collect(
    hub,
    {
      afterAlarmId: 0,
      filter: { hosts: [], projectIds: ['p1'], instanceIds: [], types: [AlarmType.ALARM_TYPE_INSTANCE_DOWN], vimIds: [] },
    },
    c.signal,
  );
  const hostsOnly = collect(
    hub,
    { afterAlarmId: 0, filter: { hosts: [], projectIds: [], instanceIds: [], types: [AlarmType.ALARM_TYPE_HOST_DOWN], vimIds: [] } },
    c.signal,
  );
  const live = collect(hub, { afterAlarmId: 0, liveOnly: true }, c.signal);
  await until(() => byHost.got.length === 1 && byProject.got.length === 1);
  await hub.raise([draft('a', 1, 'p1'), draft('b', 1, 'p2')]);
  await until(() => byHost.got.length === 2 && byProject.got.length === 2 && live.got.length === 2);
  c.abort();
  await Promise.all([byHost.done, byProject.done, hostsOnly.done, live.done]);
  t.deepEqual(
    byHost.got.map((a) => a.instanceId),
    ['vm-b-0', 'vm-b-1'],
  );
  t.deepEqual(
    byProject.got.map((a) => a.instanceId),
    ['vm-a-0', 'vm-a-1'],
  );
  t.deepEqual(hostsOnly.got, []);
  t.deepEqual(
    live.got.map((a) => a.instanceId),
    ['vm-a-1', 'vm-b-1'],
  );
  const page = await hub.list(0, { hosts: ['a'], projectIds: [], instanceIds: [], types: [], vimIds: [] }, 1);
  t.deepEqual(
    page.alarms.map((a) => a.instanceId),
    ['vm-a-0'],
  );
  const next = await hub.list(page.nextAfterAlarmId, { hosts: ['a'], projectIds: [], instanceIds: [], types: [], vimIds: [] }, 10);
  t.deepEqual(
    next.alarms.map((a) => a.instanceId),
    ['vm-a-1'],
  );
});

test('a slow subscriber does not hold back a fast one; on overflow it is told where to resume and misses nothing', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db, { subscriberQueueSize: 20 });
  const c = new AbortController();
  t.teardown(() => c.abort());
  const fast = collect(hub, { afterAlarmId: 0 }, c.signal);
  // The slow one takes its first alarm and then stops reading.
  const slow = hub.subscribe({ afterAlarmId: 0 }, c.signal);
  const firstRaise = await hub.raise([draft('h', 0)]);
  const slowFirst = await slow.next();
  t.is((slowFirst.value as AlarmRecord).alarmId, firstRaise[0]!.alarmId);
  for (let i = 1; i <= 40; i++) {
    const sentAt = performance.now();
    await hub.raise([draft('h', i)]);
    await until(() => fast.got.length === i + 1);
    t.true(performance.now() - sentAt < 1_000);
  }
  // The slow one now reads: what was queued before the overflow is gone, and it is told where it stopped.
  const err = await t.throwsAsync(async () => {
    while (!(await slow.next()).done);
  });
  t.true(err instanceof SubscriberOverflowError);
  const overflow = err as SubscriberOverflowError;
  t.is(overflow.lastDeliveredId, firstRaise[0]!.alarmId);
  t.regex(overflow.message, new RegExp(`after_alarm_id=${firstRaise[0]!.alarmId}`));
  // Resuming from there gives everything after, exactly once.
  const resumed = collect(hub, { afterAlarmId: overflow.lastDeliveredId }, c.signal);
  await until(() => resumed.got.length === 40);
  t.deepEqual(
    resumed.got.map((a) => a.alarmId),
    fast.got.slice(1).map((a) => a.alarmId),
  );
  t.is(hub.stats().subscribers, 2);
});

test('a raise larger than the reserved ids waits for more, in order', async (t) => {
  const db = await createTestDatabase(t);
  const { hub } = await startHub(t, db, { idReserve: 8 });
  const big = hub.raise(Array.from({ length: 30 }, (_, i) => draft('big', i)));
  const small = hub.raise([draft('small', 0)]);
  const [b, s] = await Promise.all([big, small]);
  const ids = b.map((a) => a.alarmId);
  t.deepEqual(
    ids,
    [...ids].sort((x, y) => x - y),
  );
  t.true(s[0]!.alarmId > ids[ids.length - 1]!);
  await hub.whenStored();
  t.is((await createAlarmStore(db.orm).read(0, undefined, undefined, 100)).length, 31);
});

test('the database failing delays no alarm: they are sent, kept, and stored once it answers again', async (t) => {
  const db = await createTestDatabase(t);
  const store = createAlarmStore(db.orm);
  let failures = 3;
  const flaky = {
    ...store,
    save: async (batch: Parameters<typeof store.save>[0]) => {
      // As pg reports a database that is down: retried, never taken for a bad row.
      if (failures-- > 0) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      return store.save(batch);
    },
  };
  const { hub } = await startHub(t, db, { store: flaky, retry: { baseDelayMs: 20, maxDelayMs: 50 } });
  const c = new AbortController();
  const live = collect(hub, { afterAlarmId: 0, liveOnly: true }, c.signal);
  const start = performance.now();
  await hub.raise([draft('h', 0), draft('h', 1)]);
  await until(() => live.got.length === 2);
  t.true(performance.now() - start < 1_000);
  t.true(hub.stats().pendingStore > 0 || failures < 0);
  // A subscriber arriving meanwhile gets them from memory.
  const late = collect(hub, { afterAlarmId: 0 }, c.signal);
  await until(() => late.got.length === 2);
  await hub.whenStored();
  t.true(failures < 0, 'the writer retried');
  t.is(hub.stats().pendingStore, 0);
  t.is((await store.read(0, undefined, undefined, 10)).length, 2);
  c.abort();
  await Promise.all([live.done, late.done]);
});

test('raises never wait forever for ids, even when a refill finds the pool already full', async (t) => {
  // A store answering at once: a refill can complete before the one send() scheduled
  // runs, which then finds nothing to do and returns without awaiting.
  const store = instantAlarmStore();
  const hub = createAlarmHub({ store, logger, idReserve: 8 });
  await hub.start();
  const controller = new AbortController();
  const running = hub.run(controller.signal);
  t.teardown(async () => {
    controller.abort();
    await running;
  });
  for (let round = 0; round < 200; round++) {
    const raised = await Promise.race([
      hub.raise([draft('h', 3 * round), draft('h', 3 * round + 1), draft('h', 3 * round + 2)]),
      new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 2_000)),
    ]);
    if (raised === 'stuck') return t.fail(`raise ${round} waited for ids that never came`);
    if (round % 3 === 0) await new Promise((r) => setImmediate(r));
  }
  t.is(hub.stats().lastAlarmId, 600);
});

test('shutdown: raises waiting for ids are refused at once, whatever the backoff, and the last store attempts are bounded', async (t) => {
  const down = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  let next = 1;
  let reservations = 0;
  const store = {
    // The first reservation answers; then the database is gone.
    reserveIds: async (n: number) => {
      if (reservations++ > 0) throw down();
      return Array.from({ length: n }, () => next++);
    },
    lastAlarmId: async () => 0,
    save: async () => {
      throw down();
    },
    quarantine: async () => true,
    quarantinedCount: async () => 0,
    read: async () => [],
    loadHosts: async () => [],
  };
  const hub = createAlarmHub({ store, logger, idReserve: 8, retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 }, finalFlushMs: 300 });
  await hub.start();
  const controller = new AbortController();
  const running = hub.run(controller.signal);
  t.teardown(() => controller.abort());
  t.is((await hub.raise([draft('h', 0), draft('h', 1)])).length, 2, 'sent though it cannot be stored');
  const waiting = hub.raise(Array.from({ length: 30 }, (_, i) => draft('big', i)));
  const outcome = waiting.then(
    () => 'raised',
    (err: unknown) => err,
  );
  await until(() => reservations >= 2);
  const start = performance.now();
  controller.abort();
  const err = await outcome;
  t.true(err instanceof UnavailableError, String(err));
  await running;
  const elapsed = performance.now() - start;
  t.true(elapsed < 3_000, `stopped in ${Math.round(elapsed)} ms`);
  t.is(hub.stats().pendingStore, 2, 'still not stored: the final attempts gave up at their bound');
  await t.throwsAsync(hub.raise([draft('h', 2)]), { instanceOf: UnavailableError });
});
