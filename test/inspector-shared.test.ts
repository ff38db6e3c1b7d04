// Two inspectors sharing one database (VIMMON_INSPECTOR_SHARED): each delivers
// every alarm, its own and the other's, live to its subscribers, with strictly
// increasing ids, and a subscriber resumes by after_alarm_id on the other
// inspector missing nothing and repeating nothing. The alarm table is the
// reference each stream is compared with.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient } from 'nice-grpc';
import { startConductor } from '../conductor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import type { Alarm, InspectorServiceClient } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { parseEnvironment } from '../common/env.js';
import { createAlarmStore } from '../inspector/alarm-store.js';
import { inspectorSettings } from '../inspector/main.js';
import type { TestDatabase } from './support/database.js';
import { hostEvent, startInspectorHarness, subscribeLive, type InspectorHarness } from './support/inspector-harness.js';
import { testLogger } from './support/logger.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { eventually } from './support/wait.js';

async function openstack(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

/** Two shared-mode inspectors on one database, the second with an ORM of its own as a second process would have. */
async function twoInspectors(t: ExecutionContext, d: OpenStackDouble): Promise<[InspectorHarness, InspectorHarness]> {
  const a = await startInspectorHarness(t, d, { shared: true });
  const db: TestDatabase = { ...a.db, orm: await a.db.open() };
  const b = await startInspectorHarness(t, d, { db, shared: true });
  return [a, b];
}

/** Every stored alarm id, in order. */
async function tableIds(db: TestDatabase): Promise<number[]> {
  return (await createAlarmStore(db.orm).read(0, undefined, undefined, 10_000)).map((a) => a.alarmId);
}

const ids = (alarms: Alarm[]) => alarms.map((a) => a.alarmId);

function strictlyIncreasing(t: ExecutionContext, list: number[], what: string) {
  for (let i = 1; i < list.length; i++) {
    if (list[i]! <= list[i - 1]!) {
      t.fail(`${what}: id ${list[i]} after ${list[i - 1]}`);
      return;
    }
  }
  t.pass();
}

test('a fault reported to one inspector reaches the other inspector’s subscriber live, in increasing ids', async (t) => {
  const d = await openstack(t);
  for (let i = 0; i < 3; i++) d.addServer({ name: `a${i}`, host: 'compute-a' });
  const [a, b] = await twoInspectors(t, d);
  const onA = await subscribeLive(t, a.client);
  const onB = await subscribeLive(t, b.client);

  const reply = await a.client.reportEvents({ events: [hostEvent('compute-a')] });
  t.is(reply.accepted, 1);
  await eventually(() => onB.got.length === 4 && onA.got.length === 4, 10_000, 'the alarms on both inspectors');
  t.is(onB.got[0]!.type, AlarmType.ALARM_TYPE_HOST_DOWN);
  t.deepEqual(ids(onB.got), await tableIds(a.db), 'B delivered the table, in order');
  t.deepEqual(ids(onA.got), ids(onB.got), 'A delivered the same');
  strictlyIncreasing(t, ids(onB.got), 'B');
  t.is(onB.result.error, undefined);
});

test('faults reported to both at once: every subscriber on either sees the union exactly once, in id order', async (t) => {
  const d = await openstack(t);
  const hosts = Array.from({ length: 8 }, (_, i) => `compute-${i}`);
  for (const host of hosts) for (let v = 0; v < 3; v++) d.addServer({ name: `${host}-vm${v}`, host });
  const [a, b] = await twoInspectors(t, d);
  const subs = [
    await subscribeLive(t, a.client),
    await subscribeLive(t, a.client),
    await subscribeLive(t, b.client),
    await subscribeLive(t, b.client),
  ];

  // Each host's fault to one inspector or the other, all at once; its recovery after, to the same one.
  await Promise.all(
    hosts.map(async (host, i) => {
      const to = i % 2 === 0 ? a : b;
      await to.client.reportEvents({ events: [hostEvent(host)] });
      await to.client.reportEvents({ events: [hostEvent(host, 'up')] });
    }),
  );
  const expected = hosts.length * 4 * 2; // host + 3 VMs, down then recovered
  await eventually(async () => (await tableIds(a.db)).length === expected, 15_000, 'every alarm stored');
  const stored = await tableIds(a.db);
  await eventually(() => subs.every((s) => s.got.length >= expected), 15_000, 'every alarm on every stream');
  for (const [i, s] of subs.entries()) {
    t.deepEqual(ids(s.got), stored, `stream ${i}: the table, exactly once, in id order`);
    t.is(s.result.error, undefined);
  }
});

/** Reads a stream from afterAlarmId until `stop` says so; returns what it got. */
async function readUntil(
  client: InspectorServiceClient,
  afterAlarmId: number,
  stop: (got: Alarm[]) => boolean,
  hosts: string[] = [],
): Promise<Alarm[]> {
  const controller = new AbortController();
  const got: Alarm[] = [];
  const filter = { hosts, projectIds: [], instanceIds: [], types: [], vimIds: [] };
  try {
    for await (const alarm of client.subscribeAlarms({ afterAlarmId, filter }, { signal: controller.signal })) {
      got.push(alarm);
      if (stop(got)) controller.abort();
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  return got;
}

test('a subscriber that leaves mid-stream and resumes with after_alarm_id on the other inspector misses nothing and repeats nothing', async (t) => {
  const d = await openstack(t);
  const hosts = Array.from({ length: 10 }, (_, i) => `compute-r${i}`);
  for (const host of hosts) for (let v = 0; v < 4; v++) d.addServer({ name: `${host}-vm${v}`, host });
  const [a, b] = await twoInspectors(t, d);
  const expected = hosts.length * 5;

  // Faults keep coming to both while the subscriber moves from A to B.
  const reporting = (async () => {
    for (const [i, host] of hosts.entries()) {
      await (i % 2 === 0 ? a : b).client.reportEvents({ events: [hostEvent(host)] });
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  })();
  const first = await readUntil(a.client, 0, (got) => got.length >= 12);
  const resumeAfter = first.at(-1)!.alarmId;
  const second = await readUntil(b.client, resumeAfter, (got) => first.length + got.length >= expected);
  await reporting;

  const seen = [...ids(first), ...ids(second)];
  t.deepEqual(seen, await tableIds(a.db), 'the table exactly: nothing missed, nothing repeated');
  strictlyIncreasing(t, seen, 'across the move');
  t.true(second.length > 0 && first.length >= 12);

  // A filtered stream alike: one host's alarms, caught up from the table on B.
  const host = hosts[3]!;
  const mine = first.concat(second).filter((x) => x.host === host);
  const filtered = await readUntil(b.client, 0, (got) => got.length >= mine.length, [host]);
  t.deepEqual(ids(filtered), ids(mine));
});

test('catching up on the other inspector after everything is stored: the table from after_alarm_id, then live', async (t) => {
  const d = await openstack(t);
  for (const host of ['compute-x', 'compute-y']) for (let v = 0; v < 2; v++) d.addServer({ name: `${host}-vm${v}`, host });
  const [a, b] = await twoInspectors(t, d);
  await a.client.reportEvents({ events: [hostEvent('compute-x')] });
  await eventually(async () => (await tableIds(a.db)).length === 3, 10_000, 'the first fault stored');
  const before = await tableIds(a.db);

  // From the first alarm on B: the rest of the stored ones, then the next fault (reported to A) live.
  const got = readUntil(b.client, before[0]!, (list) => list.length === 5);
  await eventually(async () => (await b.client.getStatus({})).subscribers === 1, 5_000, 'the subscriber on B');
  await a.client.reportEvents({ events: [hostEvent('compute-y')] });
  const list = await got;
  t.deepEqual(ids(list), (await tableIds(a.db)).slice(1));
  const page = await b.client.listAlarms({ afterAlarmId: 0, pageSize: 100 });
  t.deepEqual(ids(page.alarms), await tableIds(a.db), 'ListAlarms on B answers the table');
});

test('VIMMON_INSPECTOR_SHARED=on reaches the inspector; unset, its settings are as they were', (t) => {
  t.true(inspectorSettings(parseEnvironment({ VIMMON_INSPECTOR_SHARED: 'on' })).shared);
  t.false('shared' in inspectorSettings(parseEnvironment({})));
});

test('a VIM transition both inspectors hear is one alarm, on every stream of either', async (t) => {
  const a = await startInspectorHarness(t, undefined, { shared: true });
  const b = await startInspectorHarness(t, undefined, { db: { ...a.db, orm: await a.db.open() }, shared: true });
  const conductor = await startConductor({ logger: testLogger(), orm: a.db.orm, address: '127.0.0.1:0' });
  const channel = createChannel(conductor.address);
  t.teardown(async () => {
    channel.close();
    await conductor.stop();
  });
  const reports = createClient(VimMonitorAction2ConductorDefinition, channel);
  const vim = { id: randomUUID(), action: randomUUID() };
  await a.db.orm.em.fork().execute(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     values (?, 'edge-1', 'openstack', 'http://192.0.2.1:5000/v3', 'tcp', 1000, 500, 1, 1, 10000, 30000, 'REACHABLE', ?, now(), now(), now(), now())`,
    [vim.id, vim.action],
  );
  const onA = await subscribeLive(t, a.client);
  const onB = await subscribeLive(t, b.client);
  await reports.updateVim({ vimId: vim.id, actionId: vim.action, status: VimStatus.VIM_STATUS_UNREACHABLE });
  await reports.updateVim({ vimId: vim.id, actionId: vim.action, status: VimStatus.VIM_STATUS_REACHABLE });
  await eventually(async () => (await tableIds(a.db)).length === 2 && onA.got.length >= 2 && onB.got.length >= 2, 10_000, 'the two alarms');
  // Both inspectors raised each alarm; the table kept one of each, and that one reached every stream.
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const s of [onA, onB]) {
    t.deepEqual(
      s.got.map((x) => x.type),
      [AlarmType.ALARM_TYPE_VIM_UNREACHABLE, AlarmType.ALARM_TYPE_VIM_RECOVERED],
    );
    t.deepEqual(ids(s.got), await tableIds(a.db));
  }
});
