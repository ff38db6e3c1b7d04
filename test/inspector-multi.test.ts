// Two inspectors on one database against the OpenStack double: a host's Nova
// work is driven by one of them only (the holder of the host's lease), and the
// other takes it over when the one driving it stops mid-fault; alike with the
// alarms shared (VIMMON_INSPECTOR_SHARED) and not.
import test, { type ExecutionContext } from 'ava';
import { createAlarmStore } from '../inspector/alarm-store.js';
import type { HostRecord } from '../inspector/alarm-store.js';
import { createHostLeases } from '../inspector/host-lease.js';
import { createTakeover } from '../inspector/takeover.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { hostEvent, startInspectorHarness, subscribeLive } from './support/inspector-harness.js';
import { testLogger } from './support/logger.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { eventually } from './support/wait.js';

const isReset = (m: string, p: string) => m === 'POST' && /\/servers\/[^/]+\/action$/.test(p);
const isForce = (m: string, p: string) => m === 'PUT' && p.includes('os-services');
const resetTarget = (path: string) => /\/servers\/([^/]+)\/action$/.exec(path)![1]!;

async function openstack(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

/** The second inspector of a database, with an ORM of its own as a second process would have. */
async function secondOn(db: TestDatabase): Promise<TestDatabase> {
  return { ...db, orm: await db.open() };
}

async function storedHost(db: TestDatabase, host: string) {
  return (await createAlarmStore(db.orm).loadHosts({ host }))[0];
}

test('a host lease is held by one session at a time, counted, and goes with its connection', async (t) => {
  const db = await createTestDatabase(t);
  const a = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  const b = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  t.teardown(() => Promise.all([a.close(), b.close()]));

  t.is(await a.take('compute-1'), 'taken');
  t.is(await b.take('compute-1'), 'held-elsewhere');
  t.is(await b.take('compute-2'), 'taken', 'another host is free');
  t.is(await a.take('compute-1'), 'taken', 'taken again by its holder: counted');
  await a.release('compute-1');
  t.is(await b.take('compute-1'), 'held-elsewhere', 'one holder left');
  await a.release('compute-1');
  t.false(a.holds('compute-1'));
  t.is(await b.take('compute-1'), 'taken', 'released with the last holder');
  await b.close();
  t.is(await a.take('compute-1'), 'taken', 'gone with the connection');
  t.is(await a.take('compute-2'), 'taken');
});

test('a takeover pass takes the stored faults not done whose lease is free, and a pass after the work is done takes nothing', async (t) => {
  const db = await createTestDatabase(t);
  const store = createAlarmStore(db.orm);
  const holder = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  const leases = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  t.teardown(() => Promise.all([holder.close(), leases.close()]));
  const row = (host: string, novaDoneAt?: Date): HostRecord => ({
    host,
    state: 'down',
    faultId: crypto.randomUUID(),
    changedAt: new Date(),
    monitor: 'm',
    monitorEventId: host,
    severity: 'critical',
    instances: [{ id: 'vm-1', name: 'vm', projectId: 'p' }],
    novaDoneAt,
  });
  const undone = row('compute-u');
  await store.save({ alarms: [], hosts: [undone, row('compute-d', new Date())], novaDone: [] });
  const handed: HostRecord[] = [];
  const takeover = createTakeover({
    store,
    leases,
    takeOver: (r) => handed.push(r) > 0,
    logger: testLogger(),
    intervalMs: 60_000,
    graceMs: 0,
  });

  t.is(await holder.take('compute-u'), 'taken');
  t.deepEqual(await takeover.pass(), [], 'its holder is alive');
  t.is(handed.length, 0);
  await holder.release('compute-u');

  t.deepEqual(await takeover.pass(), ['compute-u'], 'the holder gone');
  t.is(handed[0]!.faultId, undone.faultId);
  t.deepEqual(handed[0]!.instances, undone.instances);
  t.false(leases.holds('compute-u'), 'the pass keeps no lease of its own');

  await store.save({ alarms: [], hosts: [], novaDone: [{ host: 'compute-u', faultId: undone.faultId, at: new Date() }] });
  t.deepEqual(await takeover.pass(), [], 'done: nothing to take');
  t.deepEqual(await takeover.pass(), [], 'and again nothing');
  t.is(handed.length, 1);
});

test('a fault is taken only once it has been seen not done for the grace: the inspector that stored it takes its lease a moment after', async (t) => {
  const db = await createTestDatabase(t);
  const store = createAlarmStore(db.orm);
  const storing = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  const leases = createHostLeases({ databaseUrl: db.url, logger: testLogger() });
  t.teardown(() => Promise.all([storing.close(), leases.close()]));
  const handed: HostRecord[] = [];
  const graceMs = 300;
  const takeover = createTakeover({
    store,
    leases,
    takeOver: (r) => handed.push(r) > 0,
    logger: testLogger(),
    intervalMs: 60_000,
    graceMs,
  });
  const fault = (faultId: string): HostRecord => ({
    host: 'compute-g',
    state: 'down',
    faultId,
    changedAt: new Date(),
    monitor: 'm',
    monitorEventId: faultId,
    severity: 'critical',
    instances: [{ id: 'vm-1', name: 'vm', projectId: 'p' }],
    novaDoneAt: undefined,
  });

  // Stored, its lease not yet taken: a pass now leaves it and keeps no lease.
  const first = fault(crypto.randomUUID());
  await store.save({ alarms: [], hosts: [first], novaDone: [] });
  t.deepEqual(await takeover.pass(), [], 'just stored: left to the inspector that stored it');
  t.is(await storing.take('compute-g'), 'taken', 'the lease is free for the inspector that stored it');
  await new Promise((resolve) => setTimeout(resolve, graceMs + 50));
  t.deepEqual(await takeover.pass(), [], 'past the grace, but driven: its lease is held');

  // A newer fault on the host waits its own grace, even while the lease is free.
  await storing.release('compute-g');
  const second = fault(crypto.randomUUID());
  await store.save({ alarms: [], hosts: [second], novaDone: [] });
  t.deepEqual(await takeover.pass(), [], 'a new fault on the host: seen afresh');
  await new Promise((resolve) => setTimeout(resolve, graceMs + 50));
  t.deepEqual(await takeover.pass(), ['compute-g'], 'seen not done for the grace, its lease free: taken');
  t.deepEqual(
    handed.map((r) => r.faultId),
    [second.faultId],
  );
});

async function drivenOnce(t: ExecutionContext, shared: boolean) {
  const d = await openstack(t);
  const vms = [0, 1, 2].map((i) => d.addServer({ name: `a${i}`, host: 'compute-a' }));
  // Long enough that the other inspector's takeover passes run many times while the work is under way.
  d.setLatency(400, isReset);
  const first = await startInspectorHarness(t, d, { takeoverIntervalMs: 50, shared });
  await startInspectorHarness(t, d, { db: await secondOn(first.db), takeoverIntervalMs: 50, shared });
  const sub = await subscribeLive(t, first.client);

  const reply = await first.client.reportEvents({ events: [hostEvent('compute-a')] });
  t.is(reply.accepted, 1);
  await eventually(async () => sub.got.length === 4, 10_000, 'the alarms');
  t.is(sub.got[0]!.type, AlarmType.ALARM_TYPE_HOST_DOWN);
  await eventually(async () => (await storedHost(first.db, 'compute-a'))?.novaDoneAt, 20_000, 'the Nova work marked done');

  const forces = d.computeCalls().filter((c) => isForce(c.method, c.path));
  t.is(forces.length, 1, 'one force-down');
  const resets = d.computeCalls().filter((c) => isReset(c.method, c.path));
  t.deepEqual(resets.map((c) => resetTarget(c.path)).sort(), [...vms].sort(), 'one reset per VM');
}

test('two inspectors on one database: the fault reported to one is driven once, and the other leaves it', (t) => drivenOnce(t, false));
test('two inspectors sharing alarms: the fault reported to one is driven once, and the other leaves it', (t) => drivenOnce(t, true));

async function stoppedMidFault(t: ExecutionContext, shared: boolean) {
  const d = await openstack(t);
  const vms = [0, 1, 2].map((i) => d.addServer({ name: `k${i}`, host: 'compute-k' }));
  // The resets hang: the first inspector is stopped while they are under way.
  d.setLatency(15_000, isReset);
  const first = await startInspectorHarness(t, d, { novaShutdownGraceMs: 0, takeoverIntervalMs: 100, shared });
  const second = await startInspectorHarness(t, d, { db: await secondOn(first.db), takeoverIntervalMs: 100, shared });

  const reply = await first.client.reportEvents({ events: [hostEvent('compute-k')] });
  t.is(reply.accepted, 1);
  await eventually(() => d.services().find((s) => s.host === 'compute-k')?.forcedDown, 10_000, 'the host forced down');
  await eventually(() => d.computeCalls().filter((c) => isReset(c.method, c.path)).length === 3, 10_000, 'the resets asked for');
  const row = await eventually(() => storedHost(first.db, 'compute-k'), 10_000, 'the fault stored');
  t.is(row.faultId, reply.faultIds[0]);
  t.falsy(row.novaDoneAt, 'not done: the resets hang');

  // Cut short, no grace: what a crash leaves, the fault stored and its work not done. The other
  // inspector may take the lease as soon as the first lets it go, before stop() returns: its calls
  // count from the moment the stop began (those sent before the latency drops take 15 s more).
  const stoppedAt = performance.now();
  await first.stop();
  t.falsy((await storedHost(first.db, 'compute-k'))?.novaDoneAt);
  d.setLatency(0, isReset);

  await eventually(async () => (await storedHost(second.db, 'compute-k'))?.novaDoneAt, 45_000, 'the other inspector to finish the work');
  const after = d.computeCalls().filter((c) => isReset(c.method, c.path) && c.receivedAt > stoppedAt);
  t.deepEqual([...new Set(after.map((c) => resetTarget(c.path)))].sort(), [...vms].sort(), 'every VM reset by the other inspector');
  t.true(
    after.every((c) => c.status !== undefined && c.status < 300),
    'answered',
  );
  t.true(d.servers().every((s) => s.vmState === 'error'));
  t.true(d.services().find((s) => s.host === 'compute-k')!.forcedDown);
  t.is((await storedHost(second.db, 'compute-k'))!.faultId, reply.faultIds[0], 'the same fault, finished');
}

test('an inspector stopped mid-fault: the other takes its Nova work over and finishes it', (t) => stoppedMidFault(t, false));
test('an inspector sharing alarms stopped mid-fault: the other takes its Nova work over and finishes it', (t) => stoppedMidFault(t, true));
