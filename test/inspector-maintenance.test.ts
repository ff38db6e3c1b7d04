// Maintenance end to end, against the OpenStack double: a host in maintenance
// raises its fault alarms marked expected and makes no Nova or Neutron call;
// the state is stored (a restart keeps it); subscribers get an alarm when it
// starts and when it ends; work left undone is driven when it ends; Doctor's
// POST /maintenance (Aodh's alarm body) does the same as the gRPC call.
import test from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { AlarmType, MaintenanceState, type InspectorServiceClient } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { hostEvent, profileDone, startInspectorHarness, subscribeLive } from './support/inspector-harness.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { eventually } from './support/wait.js';

const IN = MaintenanceState.MAINTENANCE_STATE_IN_MAINTENANCE;
const COMPLETE = MaintenanceState.MAINTENANCE_STATE_MAINTENANCE_COMPLETE;

/** Calls a fault could make: anything but the cache's snapshot and the version document. */
const faultCalls = (d: OpenStackDouble) => [
  ...d.computeCalls().filter((c) => !c.path.includes('/servers/detail') && !/\/v2\.1\/?$/.test(c.path)),
  ...d.networkCalls(),
];
const computeService = (d: OpenStackDouble, host: string) => d.services().find((s) => s.host === host && s.binary === 'nova-compute')!;

/** Aodh's REST notifier body for an event alarm on Doctor's admin tool's maintenance.host notification. */
function aodhMaintenanceAlarm(host: string, state: string, sessionId = 'session-1') {
  return {
    alarm_name: 'doctor-maintenance-host',
    alarm_id: '8a8f9a3c-5d71-4e6e-9b3e-7c0c5f6e1a11',
    severity: 'low',
    previous: 'insufficient data',
    current: 'alarm',
    reason: 'Event <id=6a1b,event_type=maintenance.host> hits the query <query=[]>.',
    reason_data: {
      type: 'event',
      event: {
        message_id: '6a1b0d9e-3f4a-4b8e-a1c2-0f9e8d7c6b5a',
        event_type: 'maintenance.host',
        generated: '2026-12-01T10:00:00.123456',
        raw: {},
        traits: [
          ['project_id', 1, 'b3a0c0ffee'],
          ['host', 1, host],
          ['state', 1, state],
          ['session_id', 1, sessionId],
        ],
      },
    },
  };
}

async function post(httpAddress: string, path: string, body: unknown, method = 'POST') {
  const res = await fetch(`http://${httpAddress}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: method === 'GET' ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function grpcCode(call: Promise<unknown>): Promise<{ code: string; details: string }> {
  try {
    await call;
    return { code: 'OK', details: '' };
  } catch (err) {
    if (err instanceof ClientError) return { code: Status[err.code], details: err.details };
    throw err;
  }
}

const inMaintenance = async (client: InspectorServiceClient) => (await client.listHostsInMaintenance({})).hosts.map((h) => h.host);

test('in maintenance a fault raises expected alarms and calls nothing; a restart keeps it; once over, faults are handled again', async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  const vms = [d.addServer({ name: 'a0', host: 'compute-a' }), d.addServer({ name: 'a1', host: 'compute-a' })];
  d.addPort({ host: 'compute-a', deviceId: vms[0] });
  const first = await startInspectorHarness(t, d, { neutron: true, resetState: 'error' });
  const sub = await subscribeLive(t, first.client);

  const set = await first.client.setHostMaintenance({ host: 'compute-a', state: IN, sessionId: 'session-1', reason: 'kernel upgrade' });
  t.true(set.changed);
  t.like(set.maintenance, { host: 'compute-a', sessionId: 'session-1', reason: 'kernel upgrade', setBy: 'development' });
  t.false((await first.client.setHostMaintenance({ host: 'compute-a', state: IN })).changed, 'asked again: nothing changes');
  await eventually(() => sub.got.length === 1, 5_000, 'the maintenance alarm');
  t.like(sub.got[0], {
    type: AlarmType.ALARM_TYPE_HOST_MAINTENANCE_STARTED,
    host: 'compute-a',
    state: 'IN_MAINTENANCE',
    cause: 'kernel upgrade',
    monitorEventId: 'session-1',
    expected: false,
  });

  const calls = faultCalls(d).length;
  const down = await first.client.reportEvents({ events: [hostEvent('compute-a')] });
  const held = await profileDone(first.client, down.faultIds[0]!);
  await eventually(() => sub.got.length === 4, 5_000, 'the fault alarms');
  const faultAlarms = sub.got.slice(1);
  t.deepEqual(
    faultAlarms.map((a) => a.type).sort(),
    [AlarmType.ALARM_TYPE_INSTANCE_DOWN, AlarmType.ALARM_TYPE_INSTANCE_DOWN, AlarmType.ALARM_TYPE_HOST_DOWN].sort(),
  );
  t.true(faultAlarms.every((a) => a.expected && a.faultId === down.faultIds[0]));
  t.true(held.expected);
  t.true(held.errors.some((e) => /Nova and Neutron not called: host compute-a in maintenance since .* \(session session-1\)/.test(e)));
  t.like(held, { vmsReset: 0, portCount: 0 });
  t.is(held.hostForcedDownAt, undefined);
  t.deepEqual(faultCalls(d).slice(calls), [], 'no Nova, no Neutron call');
  t.false(computeService(d, 'compute-a').forcedDown);
  // Stored as expected, so a subscriber replaying the log sees it too.
  const stored = (await first.client.listAlarms({ filter: { hosts: ['compute-a'], types: [AlarmType.ALARM_TYPE_HOST_DOWN] } })).alarms;
  t.true(stored.length === 1 && stored[0]!.expected);

  // A restart keeps the host in maintenance, and keeps the work held back.
  await first.stop();
  const second = await startInspectorHarness(t, d, { neutron: true, resetState: 'error', db: first.db });
  t.deepEqual(await inMaintenance(second.client), ['compute-a']);
  t.is((await second.client.getStatus({})).hostsInMaintenance, 1);
  const sub2 = await subscribeLive(t, second.client);
  const up = await second.client.reportEvents({ events: [hostEvent('compute-a', 'up')] });
  t.true((await profileDone(second.client, up.faultIds[0]!)).expected);
  await eventually(() => sub2.got.length === 3, 5_000, 'the recovered alarms');
  t.true(sub2.got.every((a) => a.expected));
  t.deepEqual(faultCalls(d).slice(calls), [], 'still no call after the restart');

  // Over: its alarm, and the fault path is the normal one again.
  const over = await second.client.setHostMaintenance({ host: 'compute-a', state: COMPLETE, sessionId: 'session-1' });
  t.like(over, { changed: true, maintenance: undefined });
  await eventually(() => sub2.got.length === 4, 5_000, 'the end of maintenance alarm');
  t.like(sub2.got[3], { type: AlarmType.ALARM_TYPE_HOST_MAINTENANCE_ENDED, host: 'compute-a', state: 'MAINTENANCE_COMPLETE' });
  t.deepEqual(await inMaintenance(second.client), []);
  const again = await second.client.reportEvents({ events: [hostEvent('compute-a')] });
  const normal = await profileDone(second.client, again.faultIds[0]!);
  t.false(normal.expected);
  t.like(normal, { vmsReset: 2, portsUpdated: 1 });
  t.true(computeService(d, 'compute-a').forcedDown);
  await eventually(() => sub2.got.length === 7, 5_000, 'the fault alarms');
  t.true(sub2.got.slice(4).every((a) => !a.expected));
});

test('a host still down when its maintenance ends gets the fault handling it was spared', async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  d.addServer({ host: 'compute-a' });
  const { client } = await startInspectorHarness(t, d, { resetState: 'error' });
  await client.setHostMaintenance({ host: 'compute-a', state: IN });
  const down = await client.reportEvents({ events: [hostEvent('compute-a')] });
  await profileDone(client, down.faultIds[0]!);
  t.false(computeService(d, 'compute-a').forcedDown);
  t.false((await client.listHostsDown({})).hosts[0]!.novaDone, 'the work is pending, not done');

  await client.setHostMaintenance({ host: 'compute-a', state: COMPLETE });
  await eventually(() => computeService(d, 'compute-a').forcedDown, 10_000, 'the force-down');
  await eventually(async () => (await client.listHostsDown({})).hosts[0]?.novaDone, 10_000, 'the work done');
  t.is(d.servers()[0]!.vmState, 'error');
});

test("Doctor's POST /maintenance: Aodh's alarm body puts a host in maintenance and takes it out; bad bodies name the field", async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  const { client, inspector } = await startInspectorHarness(t, d);
  const sub = await subscribeLive(t, client);
  const http = inspector.httpAddress;

  const started = await post(http, '/maintenance', aodhMaintenanceAlarm('compute-7', 'IN_MAINTENANCE', 'abc-123'));
  t.deepEqual(started, { status: 200, body: { host: 'compute-7', state: 'IN_MAINTENANCE', changed: true } });
  const [listed] = (await client.listHostsInMaintenance({})).hosts;
  t.like(listed, { host: 'compute-7', sessionId: 'abc-123', reason: 'aodh alarm doctor-maintenance-host', setBy: 'development' });
  await eventually(() => sub.got.length === 1, 5_000, 'the start alarm');
  t.like(sub.got[0], { type: AlarmType.ALARM_TYPE_HOST_MAINTENANCE_STARTED, host: 'compute-7', monitorEventId: 'abc-123' });
  t.deepEqual((await post(http, '/maintenance', aodhMaintenanceAlarm('compute-7', 'IN_MAINTENANCE'))).body.changed, false);

  // Traits as objects (the event API's form) are read alike.
  const objects = aodhMaintenanceAlarm('compute-7', 'MAINTENANCE_COMPLETE');
  objects.reason_data.event.traits = objects.reason_data.event.traits.map(([name, type, value]) => ({ name, type, value })) as never;
  t.deepEqual(await post(http, '/maintenance', objects), {
    status: 200,
    body: { host: 'compute-7', state: 'MAINTENANCE_COMPLETE', changed: true },
  });
  await eventually(() => sub.got.length === 2, 5_000, 'the end alarm');
  t.is(sub.got[1]!.type, AlarmType.ALARM_TYPE_HOST_MAINTENANCE_ENDED);
  t.deepEqual(await inMaintenance(client), []);

  const bad: Array<[unknown, string]> = [
    ['{not json', 'body'],
    [[], 'body'],
    [{ alarm_name: 'x' }, 'reason_data'],
    [{ reason_data: { type: 'event' } }, 'reason_data.event'],
    [{ reason_data: { event: { traits: 'state=IN_MAINTENANCE' } } }, 'reason_data.event.traits'],
    [{ reason_data: { event: { traits: [['host', 1]] } } }, 'reason_data.event.traits[0]'],
    [aodhMaintenanceAlarm('compute-7', 'PLANNED_MAINTENANCE'), 'reason_data.event.traits.state'],
    [aodhMaintenanceAlarm('', 'IN_MAINTENANCE'), 'reason_data.event.traits.host'],
    [aodhMaintenanceAlarm('compute\u0000-7', 'IN_MAINTENANCE'), 'reason_data.event.traits.host'],
    [aodhMaintenanceAlarm('compute-7', 'IN_MAINTENANCE', 'x'.repeat(256)), 'reason_data.event.traits.session_id'],
  ];
  for (const [body, field] of bad) {
    const r = await post(http, '/maintenance', typeof body === 'string' ? body : JSON.stringify(body));
    t.is(r.status, 400, `${field}: ${JSON.stringify(r.body)}`);
    t.is(r.body.field, field);
    t.true(String(r.body.error).startsWith(`${field}: `));
  }
  t.is((await post(http, '/maintenance', '', 'GET')).status, 405);
  const tooLarge = await fetch(`http://${http}/maintenance`, { method: 'POST', body: 'x'.repeat(64 * 1024 + 1) });
  t.is(tooLarge.status, 413);
  t.deepEqual(await inMaintenance(client), [], 'nothing taken from a bad body');
  t.is(sub.got.length, 2);
});

test('SetHostMaintenance checks every field, names it, and pages ListHostsInMaintenance by host name', async (t) => {
  const { client } = await startInspectorHarness(t, undefined);
  const cases: Array<[Parameters<InspectorServiceClient['setHostMaintenance']>[0], string]> = [
    [{ host: 'compute-1' }, 'state'],
    [{ host: '', state: IN }, 'host'],
    [{ host: '  ', state: IN }, 'host'],
    [{ host: 'a\tb', state: IN }, 'host'],
    [{ host: 'h'.repeat(256), state: IN }, 'host'],
    [{ host: 'compute-1', state: IN, sessionId: 's'.repeat(256) }, 'session_id'],
    [{ host: 'compute-1', state: IN, reason: 'r'.repeat(1_025) }, 'reason'],
    [{ host: 'compute-1', state: IN, reason: 'a\u0000b' }, 'reason'],
    [{ host: 'compute-1', state: 7 as MaintenanceState }, 'state'],
  ];
  for (const [request, field] of cases) {
    const { code, details } = await grpcCode(client.setHostMaintenance(request));
    t.is(code, 'INVALID_ARGUMENT', JSON.stringify(request).slice(0, 80));
    t.true(details.startsWith(`${field}: `), details);
  }
  t.deepEqual(await inMaintenance(client), []);

  const hosts = Array.from({ length: 7 }, (_, i) => `compute-${String.fromCharCode(103 - i)}`); // g … a
  for (const host of hosts) await client.setHostMaintenance({ host, state: IN });
  const seen: string[] = [];
  let pageToken = '';
  do {
    const page = await client.listHostsInMaintenance({ pageSize: 3, pageToken });
    t.true(page.hosts.length <= 3);
    seen.push(...page.hosts.map((h) => h.host));
    pageToken = page.nextPageToken;
  } while (pageToken);
  t.deepEqual(seen, [...hosts].sort());
  t.is((await grpcCode(client.listHostsInMaintenance({ pageToken: 'not a token!' }))).code, 'INVALID_ARGUMENT');
  t.is((await client.getStatus({})).hostsInMaintenance, 7);
});
