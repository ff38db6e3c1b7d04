// The inspector end to end against the Keystone + Nova double: which Nova calls
// a host fault makes, how many VMs it handles and how fast, failures and
// retries, duplicates, batches, recovery, restarts.
import test, { type ExecutionContext } from 'ava';
import { AlarmType, type Alarm, type InspectorServiceClient } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { profileDone, startInspectorHarness } from './support/inspector-harness.js';
import { eventually } from './support/wait.js';

async function openstack(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

const inspectorFor = startInspectorHarness;

/** A live subscription that records each alarm with its arrival time. */
function subscribe(
  t: ExecutionContext,
  client: InspectorServiceClient,
  request: { afterAlarmId?: number; liveOnly?: boolean } = { liveOnly: true },
) {
  const controller = new AbortController();
  const got: Array<{ alarm: Alarm; at: number }> = [];
  const result: { error?: unknown } = {};
  const done = (async () => {
    try {
      for await (const alarm of client.subscribeAlarms(request, { signal: controller.signal })) got.push({ alarm, at: performance.now() });
    } catch (err) {
      if (!controller.signal.aborted) result.error = err;
    }
  })();
  t.teardown(() => controller.abort());
  return { got, result, alarms: () => got.map((g) => g.alarm), cancel: () => controller.abort(), done };
}

const hostDown = (hostname: string, extra: Partial<{ status: string; monitorEventId: string; type: string }> = {}) => ({
  time: new Date(),
  type: 'compute.host.down',
  hostname,
  status: 'down',
  monitor: 'test-monitor',
  monitorEventId: `${hostname}-${Math.random().toString(36).slice(2)}`,
  ...extra,
});

const isReset = (m: string, p: string) => m === 'POST' && /\/servers\/[^/]+\/action$/.test(p);
const resetCalls = (d: OpenStackDouble) => d.computeCalls().filter((c) => isReset(c.method, c.path));
const resetTarget = (path: string) => /\/servers\/([^/]+)\/action$/.exec(path)![1]!;

test('a host fault resets exactly its VMs and forces exactly its host down, after the alarms', async (t) => {
  const d = await openstack(t);
  const onA = [0, 1, 2].map((i) => d.addServer({ name: `a${i}`, host: 'compute-a', projectId: `p${i}` }));
  const onB = [0, 1].map((i) => d.addServer({ name: `b${i}`, host: 'compute-b' }));
  d.setLatency(250, isReset);
  const { client } = await inspectorFor(t, d);
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');

  const sentAt = performance.now();
  const reply = await client.reportEvents({ events: [hostDown('compute-a')] });
  t.is(reply.accepted, 1);
  t.is(reply.faultIds.length, 1);
  await eventually(async () => sub.got.length === 4, 5_000, 'four alarms');
  const alarms = sub.alarms();
  t.is(alarms[0]!.type, AlarmType.ALARM_TYPE_HOST_DOWN);
  t.is(alarms[0]!.host, 'compute-a');
  t.deepEqual(
    alarms
      .slice(1)
      .map((a) => [a.type, a.instanceId, a.state, a.host])
      .sort(),
    onA.map((id) => [AlarmType.ALARM_TYPE_INSTANCE_DOWN, id, 'error', 'compute-a']).sort(),
  );
  t.deepEqual(
    alarms
      .slice(1)
      .map((a) => a.projectId)
      .sort(),
    ['p0', 'p1', 'p2'],
  );
  t.true(alarms.every((a) => a.faultId === reply.faultIds[0] && a.monitor === 'test-monitor'));

  const profile = await profileDone(client, reply.faultIds[0]!);
  t.is(profile.vmCount, 3);
  t.is(profile.vmsReset, 3);
  t.is(profile.vmsFailed, 0);
  t.truthy(profile.hostForcedDownAt);
  t.truthy(profile.lastVmResetAt);
  // The store commits on its own time: on a slow database after the Nova work is done.
  await eventually(
    async () => (await client.getFaultProfile({ faultId: reply.faultIds[0]! })).profile?.alarmsStoredAt,
    10_000,
    'alarms stored',
  );

  // Exactly one reset per VM of the host, each to "error"; nothing for the other host.
  const resets = resetCalls(d);
  t.deepEqual(resets.map((c) => resetTarget(c.path)).sort(), [...onA].sort());
  t.true(resets.every((c) => JSON.stringify(c.body) === JSON.stringify({ 'os-resetState': { state: 'error' } })));
  t.false(d.computeCalls().some((c) => onB.some((id) => c.path.includes(id))));
  t.deepEqual(
    d
      .servers()
      .filter((s) => s.vmState === 'error')
      .map((s) => s.id)
      .sort(),
    [...onA].sort(),
  );
  const services = d.services().filter((s) => s.binary === 'nova-compute');
  t.true(services.find((s) => s.host === 'compute-a')!.forcedDown);
  t.false(services.find((s) => s.host === 'compute-b')!.forcedDown);
  t.false(d.computeCalls().some((c) => c.method === 'PUT' && JSON.stringify(c.body).includes('compute-b')));

  // Alarms first: every alarm was at the subscriber before the first reset was answered.
  const firstResetDone = Math.min(...resets.map((c) => c.finishedAt!));
  t.true(Math.max(...sub.got.map((g) => g.at)) < firstResetDone);
  t.true(sub.got[0]!.at - sentAt < 250);
});

test('1, 10, 25, 50 and 1,000 VMs at 250 ms per reset-state: every VM handled, within the concurrency bound', async (t) => {
  const d = await openstack(t);
  const sizes = [1, 10, 25, 50, 1_000];
  const vms = new Map(sizes.map((n) => [n, Array.from({ length: n }, (_, i) => d.addServer({ name: `vm${i}`, host: `scale-${n}` }))]));
  d.setLatency(250, isReset);
  const concurrency = 64;
  const { client } = await inspectorFor(t, d, { novaConcurrency: concurrency });
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  for (const n of sizes) {
    const before = resetCalls(d).length;
    const start = performance.now();
    const { faultIds } = await client.reportEvents({ events: [hostDown(`scale-${n}`)] });
    await eventually(async () => sub.alarms().filter((a) => a.host === `scale-${n}`).length === n + 1, 10_000, `${n + 1} alarms`);
    const arrivals = sub.got.filter((g) => g.alarm.host === `scale-${n}`).map((g) => g.at - start);
    const firstAlarmMs = arrivals[0]!;
    const lastAlarmMs = arrivals[arrivals.length - 1]!;
    const profile = await profileDone(client, faultIds[0]!, 60_000);
    const elapsed = performance.now() - start;
    const calls = resetCalls(d).slice(before);
    t.is(calls.length, n, `${n}: one reset per VM`);
    t.deepEqual(calls.map((c) => resetTarget(c.path)).sort(), [...vms.get(n)!].sort(), `${n}: the host's VMs`);
    t.is(profile.vmsReset, n);
    // Never more than the bound in flight at once.
    const events = calls
      .flatMap((c) => [[c.receivedAt, 1] as const, [c.finishedAt!, -1] as const])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let inFlight = 0;
    let peak = 0;
    for (const [, delta] of events) peak = Math.max(peak, (inFlight += delta));
    t.true(peak <= concurrency, `${n}: peak ${peak}`);
    // Orders of magnitude only (timing goals are in bench/doctor-study.ts): rounds of
    // 250 ms; the first alarm long before the first round ends, even with this
    // process also playing Nova and the subscriber.
    const expected = 250 * Math.ceil(n / concurrency);
    t.true(elapsed >= expected * 0.9 && elapsed < expected * 10, `${n}: ${Math.round(elapsed)} ms for ${expected} ms of rounds`);
    t.true(firstAlarmMs < 250, `${n}: first alarm after ${Math.round(firstAlarmMs)} ms`);
    t.true(lastAlarmMs < 2_500, `${n}: last alarm after ${Math.round(lastAlarmMs)} ms`);
    t.log(
      `${n} VMs: first alarm ${firstAlarmMs.toFixed(1)} ms, last ${lastAlarmMs.toFixed(1)} ms, all reset ${Math.round(elapsed)} ms, peak ${peak} in flight`,
    );
  }
  t.is(d.servers().filter((s) => s.vmState === 'error').length, 1_086);
});

test('Nova failing: alarms are delivered all the same, failed calls are retried and reported', async (t) => {
  const d = await openstack(t);
  const flaky = d.addServer({ name: 'flaky', host: 'compute-f' });
  const broken = d.addServer({ name: 'broken', host: 'compute-f' });
  const gone = d.addServer({ name: 'gone', host: 'compute-f' });
  const fine = d.addServer({ name: 'fine', host: 'compute-f' });
  const { client } = await inspectorFor(t, d);
  d.removeServer(gone); // deleted after the snapshot: Nova answers 404
  d.failNext(2, 503, (m, p) => isReset(m, p) && p.includes(flaky));
  d.failNext(100, 500, (m, p) => isReset(m, p) && p.includes(broken));
  d.failNext(1, 503, (m, p) => m === 'PUT' && p.includes('os-services'));
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const { faultIds } = await client.reportEvents({ events: [hostDown('compute-f')] });
  await eventually(async () => sub.got.length === 5, 5_000, 'five alarms');
  const profile = await profileDone(client, faultIds[0]!);
  t.is(profile.vmsReset, 2);
  t.is(profile.vmsGone, 1);
  t.is(profile.vmsFailed, 1);
  t.true(profile.retries >= 2 + 3 + 1, `retries ${profile.retries}`);
  t.true(
    profile.errors.some((e) => e.includes(broken) && e.includes('after 4 attempts')),
    profile.errors.join('; '),
  );
  t.truthy(profile.hostForcedDownAt);
  const state = new Map(d.servers().map((s) => [s.id, s.vmState]));
  t.is(state.get(flaky), 'error');
  t.is(state.get(fine), 'error');
  t.not(state.get(broken), 'error');
  t.is(resetCalls(d).filter((c) => c.path.includes(broken)).length, 4);
  t.true(d.services().find((s) => s.host === 'compute-f')!.forcedDown);
});

test('Nova slow or down never delays the alarm', async (t) => {
  const d = await openstack(t);
  for (let i = 0; i < 50; i++) d.addServer({ host: 'compute-s' });
  const { client } = await inspectorFor(t, d, { novaShutdownGraceMs: 100 });
  d.setLatency(3_000); // every compute call
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const start = performance.now();
  await client.reportEvents({ events: [hostDown('compute-s')] });
  await eventually(async () => sub.got.length === 51, 2_000, 'the alarms');
  // Every alarm well before Nova could have answered one call (3 s); a loaded CI machine once
  // took 543 ms, over the 500 ms this asserted before.
  t.true(sub.got[50]!.at - start < 1_500, `${Math.round(sub.got[50]!.at - start)} ms`);
});

test('duplicates, batches and unknown types', async (t) => {
  const d = await openstack(t);
  d.addServer({ host: 'compute-1' });
  d.addServer({ host: 'compute-2' });
  const { client } = await inspectorFor(t, d);
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const reply = await client.reportEvents({
    events: [
      hostDown('compute-1'),
      hostDown('compute-1'),
      hostDown('compute-2'),
      hostDown('compute-3', { type: 'compute.host.flapping' }),
      hostDown('compute-1', { status: 'DOWN' }),
    ],
  });
  t.like(reply, { accepted: 4, ignored: 1, duplicates: 2 });
  t.is(reply.faultIds.length, 2);
  await Promise.all(reply.faultIds.map((id) => profileDone(client, id)));
  await eventually(async () => sub.got.length === 4, 5_000, 'four alarms');
  const calls = d.computeCalls().length;
  // Again, later: no alarm, no Nova call.
  const again = await client.reportEvents({ events: [hostDown('compute-2')] });
  t.like(again, { accepted: 1, duplicates: 1, faultIds: [] });
  await new Promise((r) => setTimeout(r, 200));
  t.is(sub.got.length, 4);
  t.is(d.computeCalls().length, calls);
  t.like(await client.getStatus({}), { eventsReceived: 6, eventsIgnored: 1, eventsDuplicate: 3 });
  t.is(resetCalls(d).length, 2);
});

test('recovery: "up" raises the recovered alarms and un-forces the host; a repeated "up" does nothing', async (t) => {
  const d = await openstack(t);
  const vm = d.addServer({ host: 'compute-r' });
  const { client } = await inspectorFor(t, d);
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const down = await client.reportEvents({ events: [hostDown('compute-r')] });
  await profileDone(client, down.faultIds[0]!);
  t.true(d.services().find((s) => s.host === 'compute-r')!.forcedDown);
  const up = await client.reportEvents({ events: [hostDown('compute-r', { status: 'up' })] });
  t.is(up.faultIds.length, 1);
  const profile = await profileDone(client, up.faultIds[0]!);
  t.truthy(profile.hostUnforcedAt, 'un-forced, and named so');
  t.truthy(profile.toHostUnforced);
  t.deepEqual(profile.hostForcedDownAt, profile.hostUnforcedAt, 'T04 as the contract always said for "up"');
  t.is((await client.getFaultProfile({ faultId: down.faultIds[0]! })).profile!.hostUnforcedAt, undefined, 'a "down" un-forces nothing');
  t.false(d.services().find((s) => s.host === 'compute-r')!.forcedDown);
  await eventually(async () => sub.got.length === 4, 5_000, 'four alarms');
  const recovered = sub.alarms().slice(2);
  t.deepEqual(
    recovered.map((a) => a.type),
    [AlarmType.ALARM_TYPE_HOST_RECOVERED, AlarmType.ALARM_TYPE_INSTANCE_RECOVERED],
  );
  t.is(recovered[1]!.instanceId, vm);
  t.is(recovered[0]!.severity, 'low');
  const again = await client.reportEvents({ events: [hostDown('compute-r', { status: 'up' })] });
  t.is(again.duplicates, 1);
  t.is((await client.getStatus({})).hostsDown.length, 0);
});

test('a restart remembers hosts down, and drives again the Nova work a shutdown cut short', async (t) => {
  const d = await openstack(t);
  const vms = Array.from({ length: 6 }, () => d.addServer({ host: 'compute-x' }));
  const first = await inspectorFor(t, d, { novaShutdownGraceMs: 50, novaConcurrency: 2 });
  d.setLatency(400, isReset);
  const sub = subscribe(t, first.client);
  await eventually(async () => (await first.client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  await first.client.reportEvents({ events: [hostDown('compute-x')] });
  await eventually(async () => sub.got.length === 7, 5_000, 'the alarms');
  await first.stop(); // 2 at a time × 400 ms: most resets are still to do
  await sub.done;
  t.regex(String(sub.result.error), /UNAVAILABLE/);
  t.true(d.servers().filter((s) => s.vmState === 'error').length < 6);

  d.setLatency(0, isReset);
  const second = await inspectorFor(t, d, { db: first.db });
  const status = await second.client.getStatus({});
  t.deepEqual(
    status.hostsDown.map((h) => h.host),
    ['compute-x'],
  );
  await eventually(async () => d.servers().filter((s) => s.vmState === 'error').length === 6, 10_000, 'every VM in error');
  await eventually(async () => (await second.client.getStatus({})).hostsDown[0]!.novaDone, 5_000, 'the work marked done');
  // Still down after the restart: a repeated event raises nothing.
  const sub2 = subscribe(t, second.client, { afterAlarmId: sub.got[6]!.alarm.alarmId });
  const again = await second.client.reportEvents({ events: [hostDown('compute-x')] });
  t.is(again.duplicates, 1);
  // "up" raises the recovered alarms for the VMs stored with the fault.
  await second.client.reportEvents({ events: [hostDown('compute-x', { status: 'up' })] });
  await eventually(async () => sub2.got.length === 7, 5_000, 'the recovered alarms');
  t.deepEqual(
    sub2
      .alarms()
      .slice(1)
      .map((a) => a.instanceId)
      .sort(),
    [...vms].sort(),
  );
  t.is(sub2.alarms()[0]!.type, AlarmType.ALARM_TYPE_HOST_RECOVERED);
});

test('without OpenStack settings the inspector runs, says what is missing and still raises host alarms', async (t) => {
  const { client } = await inspectorFor(t, undefined);
  const status = await client.getStatus({});
  t.false(status.novaConfigured);
  t.true(status.missingConfig.includes('OS_AUTH_URL'), status.missingConfig.join(','));
  t.true(status.missingConfig.includes('VIMMON_AMQP_URL'));
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const { faultIds } = await client.reportEvents({ events: [hostDown('lonely')] });
  await eventually(async () => sub.got.length === 1, 5_000, 'the host alarm');
  t.is(sub.alarms()[0]!.type, AlarmType.ALARM_TYPE_HOST_DOWN);
  const profile = await profileDone(client, faultIds[0]!);
  t.regex(profile.errors.join(), /Nova not called.*OS_AUTH_URL/);
});

test('under the Nova bound the host force-down goes before the queued resets, and a shutdown drops the calls still queued', async (t) => {
  const d = await openstack(t);
  const vms = Array.from({ length: 8 }, () => d.addServer({ host: 'compute-q' }));
  const { client, stop } = await inspectorFor(t, d, { novaConcurrency: 1, novaShutdownGraceMs: 50 });
  d.setLatency(300, isReset);
  const isForceDown = (m: string, p: string) => m === 'PUT' && p.includes('/os-services/');
  const before = d.computeCalls().length;
  await client.reportEvents({ events: [hostDown('compute-q')] });
  await eventually(
    async () =>
      d
        .computeCalls()
        .slice(before)
        .some((c) => isForceDown(c.method, c.path)),
    5_000,
    'the force-down',
  );
  const order = d
    .computeCalls()
    .slice(before)
    .filter((c) => isReset(c.method, c.path) || isForceDown(c.method, c.path));
  const forceAt = order.findIndex((c) => isForceDown(c.method, c.path));
  // Resets are asked for first; the one already running finishes, the force-down overtakes the rest.
  t.true(forceAt <= 1, `force-down after ${forceAt} resets`);
  const status = await client.getStatus({});
  t.true(status.novaCallsInFlight <= 1, `in flight ${status.novaCallsInFlight}`);
  t.true(status.novaCallsQueued > 0, `queued ${status.novaCallsQueued}`);
  await stop();
  const resetsAtStop = resetCalls(d).length;
  await new Promise((r) => setTimeout(r, 700));
  t.is(resetCalls(d).length, resetsAtStop, 'nothing queued reached Nova after the shutdown');
  t.true(resetsAtStop < vms.length, `${resetsAtStop} resets before the shutdown`);
});
