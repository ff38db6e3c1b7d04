// The inspector's edges: the gRPC contract (health, reflection, bad input,
// shutdown), alarm streams over the wire (resume, slow and fast subscribers,
// overflow), Doctor's PUT /events, VIM alarms from the conductor's NOTIFY, and
// Nova notifications from a real RabbitMQ reaching the cache.
import { randomUUID } from 'node:crypto';
import { instantAlarmStore } from './support/instant-alarm-store.js';
import { amqpEndpoint, canConnect } from './support/preflight.js';
import test, { type ExecutionContext } from 'ava';
import amqp from 'amqplib';
import { createChannel, createClient, createServer, type Metadata, Status, type Channel } from 'nice-grpc';
import { startConductor } from '../conductor/main.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { attachCaller, development } from '../common/auth/principal.js';
import { guardDefinition, rejectionOf } from '../common/request-check.js';
import {
  Alarm as GeneratedAlarm,
  AlarmType,
  InspectorServiceDefinition,
  SubscribeAlarmsRequest,
  type Alarm,
  type InspectorServiceClient,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createAlarmHub } from '../inspector/alarm-stream.js';
import {
  defaultAmqpUrl,
  inspectorSettingsFromEnv,
  startInspector,
  type InspectorOptions,
  type RunningInspector,
} from '../inspector/main.js';
import { createInspectorService, resumeAfterTrailer, servedInspectorDefinition } from '../inspector/service.js';
import { vimStatusChannel } from '../db/notifications.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { novaNotificationBody, openrcEnv, startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { walkReflection } from './support/reflection-client.js';
import { eventually } from './support/wait.js';

interface Harness {
  db: TestDatabase;
  inspector: RunningInspector;
  client: InspectorServiceClient;
  channel: Channel;
  stop(): Promise<void>;
}

async function inspectorFor(
  t: ExecutionContext,
  options: Partial<InspectorOptions> & { db?: TestDatabase; double?: OpenStackDouble } = {},
): Promise<Harness> {
  const db = options.db ?? (await createTestDatabase(t));
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: options.double ? openrcEnv(options.double) : {},
    resyncIntervalMs: 60_000,
    ...options,
  });
  const channel = createChannel(inspector.address);
  const client = createClient(InspectorServiceDefinition, channel);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await inspector.stop();
      channel.close();
    })());
  t.teardown(stop);
  return { db, inspector, client, channel, stop };
}

function subscribe(
  t: ExecutionContext,
  client: InspectorServiceClient,
  request: { afterAlarmId?: number; liveOnly?: boolean; filter?: { types?: AlarmType[]; hosts?: string[] } } = {},
) {
  const controller = new AbortController();
  const alarms: Alarm[] = [];
  const state: { error?: { code: Status; details: string }; trailer?: Metadata } = {};
  const done = (async () => {
    try {
      for await (const a of client.subscribeAlarms(request, { signal: controller.signal, onTrailer: (m) => (state.trailer = m) }))
        alarms.push(a);
    } catch (err) {
      if (!controller.signal.aborted) state.error = err as { code: Status; details: string };
    }
  })();
  t.teardown(() => controller.abort());
  return { alarms, state, done, cancel: () => controller.abort() };
}

const down = (hostname: string, status = 'down') => ({
  time: new Date(),
  type: 'compute.host.down',
  hostname,
  status,
  monitor: 'm',
  monitorEventId: `${hostname}-${status}`,
});

async function grpcError(p: Promise<unknown>): Promise<{ code: Status; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: Status; details: string };
  }
  throw new Error('expected an error');
}

test('contract: health, reflection v1 and v1alpha, INVALID_ARGUMENT naming the field, NOT_FOUND, a bad batch changes nothing', async (t) => {
  const { inspector, client } = await inspectorFor(t);
  const health = createClient(HealthDefinition, createChannel(inspector.address));
  t.is((await health.check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
  t.is((await health.check({ service: InspectorServiceDefinition.fullName })).status, HealthCheckResponse_ServingStatus.SERVING);
  for (const version of ['v1', 'v1alpha'] as const) {
    const walk = await walkReflection(inspector.address, version);
    t.true(walk.services.includes(InspectorServiceDefinition.fullName));
    const methods = walk
      .service(InspectorServiceDefinition.fullName)!
      .methods.map((m) => m.name)
      .sort();
    t.deepEqual(methods, [
      'GetFaultProfile',
      'GetStatus',
      'ListAffectedInstances',
      'ListAlarms',
      'ListFaultProfiles',
      'ListHostsDown',
      'ListHostsInMaintenance',
      'ReportEvents',
      'SetHostMaintenance',
      'SubscribeAlarms',
    ]);
  }
  const cases: Array<[Promise<unknown>, string]> = [
    [client.reportEvents({ events: [] }), 'events'],
    [client.reportEvents({ events: [down('a'), { ...down(''), hostname: ' ' }] }), 'events[1].hostname'],
    [client.reportEvents({ events: [down('a', 'sideways')] }), 'events[0].status'],
    [client.reportEvents({ events: [{ ...down('a'), type: '' }] }), 'events[0].type'],
    [client.listAlarms({ filter: { types: [AlarmType.ALARM_TYPE_UNSPECIFIED] } }), 'filter.types[0]'],
    [client.getFaultProfile({ faultId: '' }), 'fault_id'],
  ];
  for (const [call, field] of cases) {
    const err = await grpcError(call);
    t.is(err.code, Status.INVALID_ARGUMENT, field);
    t.true(err.details.startsWith(`${field}:`), err.details);
  }
  const streamErr = await grpcError(
    client
      .subscribeAlarms({ filter: { types: [42 as AlarmType] } })
      [Symbol.asyncIterator]()
      .next(),
  );
  t.is(streamErr.code, Status.INVALID_ARGUMENT);
  t.regex(streamErr.details, /^filter\.types\[0\]/);
  t.is((await grpcError(client.getFaultProfile({ faultId: randomUUID() }))).code, Status.NOT_FOUND);
  const status = await client.getStatus({});
  t.is(status.eventsReceived, 0, 'the bad batch was refused whole');
  t.is(status.lastAlarmId, 0);
});

test('shutdown ends alarm streams with UNAVAILABLE', async (t) => {
  const { client, stop } = await inspectorFor(t);
  const sub = subscribe(t, client);
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  await stop();
  await sub.done;
  t.is(sub.state.error?.code, Status.UNAVAILABLE);
});

test('a subscriber reconnecting with after_alarm_id gets exactly what it missed, then live alarms', async (t) => {
  const { client } = await inspectorFor(t);
  const first = subscribe(t, client);
  await client.reportEvents({ events: [down('h1'), down('h2')] });
  await eventually(() => first.alarms.length === 2, 5_000, 'two alarms');
  first.cancel();
  await first.done;
  const last = first.alarms[1]!.alarmId;
  await client.reportEvents({ events: [down('h3'), down('h4'), down('h1', 'up')] });
  const second = subscribe(t, client, { afterAlarmId: last });
  await eventually(() => second.alarms.length === 3, 5_000, 'the three missed');
  await client.reportEvents({ events: [down('h5')] });
  await eventually(() => second.alarms.length === 4, 5_000, 'the live one');
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(
    second.alarms.map((a) => [a.type, a.host]),
    [
      [AlarmType.ALARM_TYPE_HOST_DOWN, 'h3'],
      [AlarmType.ALARM_TYPE_HOST_DOWN, 'h4'],
      [AlarmType.ALARM_TYPE_HOST_RECOVERED, 'h1'],
      [AlarmType.ALARM_TYPE_HOST_DOWN, 'h5'],
    ],
  );
  const ids = second.alarms.map((a) => a.alarmId);
  t.true(ids.every((id, i) => (i === 0 ? id > last : id > ids[i - 1]!)));
  // ListAlarms pages over the same log.
  const page1 = await client.listAlarms({ afterAlarmId: 0, pageSize: 4 });
  const page2 = await client.listAlarms({ afterAlarmId: page1.nextAfterAlarmId, pageSize: 4 });
  t.deepEqual(
    [...page1.alarms, ...page2.alarms].map((a) => a.alarmId),
    [...first.alarms, ...second.alarms].map((a) => a.alarmId),
  );
  const recovered = await client.listAlarms({ filter: { types: [AlarmType.ALARM_TYPE_HOST_RECOVERED] } });
  t.deepEqual(
    recovered.alarms.map((a) => a.host),
    ['h1'],
  );
});

test('a slow subscriber does not hold back a fast one; on overflow it gets RESOURCE_EXHAUSTED naming where to resume', async (t) => {
  const { client } = await inspectorFor(t, { subscriberQueueSize: 1_000 });
  const fast = subscribe(t, client, { liveOnly: true });
  // The slow one reads one alarm, then nothing until the end: its HTTP/2 window
  // fills, then its queue.
  const slowController = new AbortController();
  t.teardown(() => slowController.abort());
  let trailer: Metadata | undefined;
  const slow = client
    .subscribeAlarms({ liveOnly: true }, { signal: slowController.signal, onTrailer: (m) => (trailer = m) })
    [Symbol.asyncIterator]();
  const slowFirst = slow.next().then(
    (r) => ({ alarm: r.value as Alarm }),
    (err: unknown) => ({ err }),
  );
  await eventually(async () => (await client.getStatus({})).subscribers === 2, 5_000, 'two subscribers');
  // Bursts smaller than the queue; the fast one keeps up with each.
  const bursts = 25;
  const perBurst = 400;
  let sent = 0;
  const start = performance.now();
  for (let b = 0; b < bursts; b++) {
    await client.reportEvents({ events: Array.from({ length: perBurst }, (_, i) => down(`host-${b}-${i}`)) });
    sent += perBurst;
    await eventually(() => fast.alarms.length === sent, 10_000, `burst ${b} at the fast subscriber`);
  }
  t.log(`fast subscriber: ${sent} alarms in ${Math.round(performance.now() - start)} ms`);
  t.is(fast.state.error, undefined);
  const first = await slowFirst;
  t.truthy('alarm' in first && first.alarm, 'the slow one got its first alarm');
  const received: Alarm[] = [(first as { alarm: Alarm }).alarm];
  const err = await grpcError(
    (async () => {
      for (let r = await slow.next(); !r.done; r = await slow.next()) received.push(r.value);
    })(),
  );
  t.is(err.code, Status.RESOURCE_EXHAUSTED);
  const lastReceived = received[received.length - 1]!.alarmId;
  t.true(received.length < sent, `the slow one got ${received.length}`);
  t.true(err.details.includes(`after_alarm_id=${lastReceived}`), err.details);
  t.is(trailer?.get(resumeAfterTrailer), String(lastReceived));
  // It resumes where it was told and gets the rest, once each.
  const resumed = subscribe(t, client, { afterAlarmId: lastReceived });
  await eventually(() => received.length + resumed.alarms.length === sent, 20_000, 'the rest');
  t.deepEqual(
    [...received, ...resumed.alarms].map((a) => a.host),
    fast.alarms.map((a) => a.host),
  );
});

/** Counts Alarm.encode calls for alarms of hosts starting with prefix, from now until the test ends. */
function countAlarmEncodes(t: ExecutionContext, prefix: string): { count: number } {
  // Wrapped before any server is built: nice-grpc's stock path keeps the encode it finds then.
  const counter = { count: 0 };
  const original = GeneratedAlarm.encode;
  GeneratedAlarm.encode = (message, writer) => {
    if (message.host.startsWith(prefix)) counter.count++;
    return original(message, writer);
  };
  t.teardown(() => {
    GeneratedAlarm.encode = original;
  });
  return counter;
}

test('SubscribeAlarms encodes an alarm once, however many streams it goes to', async (t) => {
  const prefix = `once-${randomUUID()}-`;
  const encodes = countAlarmEncodes(t, prefix);
  const { client } = await inspectorFor(t);
  const streams = [
    subscribe(t, client, { liveOnly: true }),
    subscribe(t, client, { liveOnly: true }),
    subscribe(t, client, { liveOnly: true }),
  ];
  await eventually(async () => (await client.getStatus({})).subscribers === streams.length, 5_000, 'the subscribers');
  await client.reportEvents({ events: Array.from({ length: 20 }, (_, i) => down(`${prefix}${i}`)) });
  await eventually(() => streams.every((s) => s.alarms.length === 20), 5_000, 'the alarms on every stream');
  for (const s of streams) t.deepEqual(s.alarms, streams[0]!.alarms);
  t.is(encodes.count, 20);
});

test('the generic form of the service: requests checked, alarms encoded once for every stream', async (t) => {
  const prefix = `generic-${randomUUID()}-`;
  const encodes = countAlarmEncodes(t, prefix);
  const store = instantAlarmStore();
  const hub = createAlarmHub({ store, logger: testLogger() });
  await hub.start();
  const storing = new AbortController();
  const running = hub.run(storing.signal);
  // Only SubscribeAlarms is called: the other parts are not needed.
  const service = createInspectorService({ hub, fault: undefined as never, profiler: undefined as never, status: undefined as never });
  const server = createServer().use(async function* (call, context) {
    attachCaller(context, development);
    return yield* call.next(call.request, context);
  });
  const served = servedInspectorDefinition(guardDefinition(InspectorServiceDefinition));
  const nulHost = SubscribeAlarmsRequest.encode(SubscribeAlarmsRequest.fromPartial({ filter: { hosts: ['a\u0000'] } })).finish();
  t.regex(
    rejectionOf(served.subscribeAlarms.requestDeserialize(nulHost))?.message ?? 'not rejected',
    /^filter\.hosts\[0\]: /,
    'requests are checked',
  );
  server.add(served, service);
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  t.teardown(async () => {
    channel.close();
    server.forceShutdown();
    storing.abort();
    await running;
  });
  const client = createClient(InspectorServiceDefinition, channel);
  const streams = [subscribe(t, client, { liveOnly: true }), subscribe(t, client, { liveOnly: true })];
  await eventually(() => hub.stats().subscribers === streams.length, 5_000, 'the subscribers');
  const raised = await hub.raise(
    Array.from({ length: 10 }, (_, i) => ({
      type: AlarmType.ALARM_TYPE_HOST_DOWN,
      host: `${prefix}${i}`,
      instanceId: '',
      instanceName: '',
      projectId: '',
      vimId: '',
      vimName: '',
      state: 'down',
      severity: 'critical',
      cause: '',
      monitor: 'm',
      monitorEventId: `e${i}`,
      faultId: '',
      eventTime: new Date('2026-11-22T00:00:00Z'),
      detectedAt: new Date('2026-11-22T00:00:01Z'),
    })),
  );
  await eventually(() => streams.every((s) => s.alarms.length === raised.length), 5_000, 'the alarms on every stream');
  for (const s of streams)
    t.deepEqual(
      s.alarms,
      raised.map((a) => GeneratedAlarm.fromPartial(a)),
    );
  t.is(encodes.count, raised.length);
});

test('Doctor PUT /events: single, batch, malformed; answered before the work is done', async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  for (let i = 0; i < 5; i++) d.addServer({ host: 'compute-d' });
  const { inspector, client } = await inspectorFor(t, { double: d, novaShutdownGraceMs: 100 });
  await eventually(async () => (await client.getStatus({})).cachedVms === 5, 10_000, 'the cache');
  d.setLatency(2_000); // Nova slow: the reply must not wait for it
  const sub = subscribe(t, client, { liveOnly: true });
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const url = `http://${inspector.httpAddress}/events`;
  const put = (body: string, method = 'PUT', target = url) =>
    fetch(target, { method, body: method === 'GET' ? undefined : body, headers: { 'content-type': 'application/json' } });

  const start = performance.now();
  const single = await put(
    JSON.stringify({
      time: '2026-11-22T10:00:00.250',
      type: 'compute.host.down',
      details: { hostname: 'compute-d', status: 'down', monitor: 'zabbix1', monitor_event_id: '111' },
    }),
  );
  const replyMs = performance.now() - start;
  t.is(single.status, 202);
  t.deepEqual(await single.json(), { accepted: 1, ignored: 0 });
  t.true(replyMs < 1_000, `${Math.round(replyMs)} ms`);
  await eventually(() => sub.alarms.length === 6, 5_000, 'host and VM alarms');
  t.deepEqual(sub.alarms[0]!.eventTime, new Date('2026-11-22T10:00:00.250Z'), 'a Doctor time without a zone is UTC');
  t.like(sub.alarms[0], { monitor: 'zabbix1', monitorEventId: '111', type: AlarmType.ALARM_TYPE_HOST_DOWN });

  const batch = await put(
    JSON.stringify([
      { time: '2026-11-22T10:00:01Z', type: 'compute.host.down', details: { hostname: 'compute-e', status: 'down' } },
      { time: '2026-11-22T10:00:01Z', type: 'compute.host.down', details: { hostname: 'compute-d', status: 'down' } },
      { time: '2026-11-22T10:00:01Z', type: 'compute.host.nic.down', details: { hostname: 'compute-e' } },
    ]),
  );
  t.is(batch.status, 202);
  t.deepEqual(await batch.json(), { accepted: 2, ignored: 1 });
  await eventually(() => sub.alarms.length === 7, 5_000, 'compute-e down');
  await eventually(async () => (await client.getStatus({})).eventsDuplicate === 1, 5_000, 'the duplicate counted');

  const bad: Array<[string, number, RegExp]> = [
    ['{"type": "compute.host.down", ', 400, /^body: not JSON/],
    ['[]', 400, /at least one event/],
    ['[{"type": "compute.host.down", "details": {"status": "down"}}]', 400, /^\[0\]\.details\.hostname: required/],
    ['{"type": "compute.host.down", "details": {"hostname": "h", "status": "maybe"}}', 400, /^details\.status: expected "down" or "up"/],
    [
      '[{"time": "yesterday", "type": "compute.host.down", "details": {"hostname": "h", "status": "down"}}]',
      400,
      /^\[0\]\.time: not an ISO 8601/,
    ],
    ['[{"details": {"hostname": "h", "status": "down"}}]', 400, /^\[0\]\.type: required/],
    ['[42]', 400, /^\[0\]: expected an event object/],
  ];
  for (const [body, status, reason] of bad) {
    const r = await put(body);
    t.is(r.status, status, body);
    const json = (await r.json()) as { error: string };
    t.regex(json.error, reason, body);
  }
  t.is((await put('', 'GET')).status, 405);
  t.is((await put('', 'DELETE')).headers.get('allow'), 'PUT, POST');
  t.is((await put('{}', 'PUT', `http://${inspector.httpAddress}/v2/events`)).status, 404);
  t.is((await put('x'.repeat(5 * 1024 * 1024))).status, 413);
  await new Promise((r) => setTimeout(r, 100));
  t.is(sub.alarms.length, 7, 'refused bodies raised nothing');
});

test('VIM status transitions stored by the conductor become VIM alarms, once each, caught up after a restart', async (t) => {
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger: testLogger(), orm: db.orm, address: '127.0.0.1:0' });
  t.teardown(() => conductor.stop());
  const reports = createClient(VimMonitorAction2ConductorDefinition, createChannel(conductor.address));
  const vimId = randomUUID();
  const actionId = randomUUID();
  await db.orm.em.fork().execute(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     values (?, 'edge-1', 'openstack', 'http://192.0.2.1:5000/v3', 'tcp', 1000, 500, 1, 1, 10000, 30000, 'PENDING', ?, now(), now(), now(), now())`,
    [vimId, actionId],
  );
  const first = await inspectorFor(t, { db });
  const sub = subscribe(t, first.client, { filter: { types: [AlarmType.ALARM_TYPE_VIM_UNREACHABLE, AlarmType.ALARM_TYPE_VIM_RECOVERED] } });
  await eventually(async () => (await first.client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
  const report = (status: VimStatus) => reports.updateVim({ vimId, actionId, status });
  await report(VimStatus.VIM_STATUS_REACHABLE); // PENDING → REACHABLE: no alarm
  await report(VimStatus.VIM_STATUS_UNREACHABLE);
  await report(VimStatus.VIM_STATUS_UNREACHABLE); // a heartbeat, no transition
  await eventually(() => sub.alarms.length === 1, 5_000, 'VIM_UNREACHABLE');
  t.like(sub.alarms[0], {
    type: AlarmType.ALARM_TYPE_VIM_UNREACHABLE,
    vimId,
    vimName: 'edge-1',
    state: 'UNREACHABLE',
    severity: 'critical',
  });
  // The same NOTIFY again (as after a reconnect) raises nothing new.
  const [event] = await db.orm.em.fork().execute<{ id: string }[]>(`select max(id) as id from vim_event`);
  await db.orm.em.fork().execute(`select pg_notify(?, ?)`, [
    vimStatusChannel,
    JSON.stringify({
      eventId: Number(event!.id),
      vimId,
      vimName: 'edge-1',
      from: 'REACHABLE',
      to: 'UNREACHABLE',
      actionId,
      changedAt: new Date().toISOString(),
    }),
  ]);
  await report(VimStatus.VIM_STATUS_REACHABLE);
  await eventually(() => sub.alarms.length === 2, 5_000, 'VIM_RECOVERED');
  t.like(sub.alarms[1], { type: AlarmType.ALARM_TYPE_VIM_RECOVERED, vimId, severity: 'low' });
  await new Promise((r) => setTimeout(r, 100));
  t.is(sub.alarms.length, 2);

  // A transition while the inspector is down is raised when it comes back.
  const lastSeen = sub.alarms[1]!.alarmId;
  await first.stop();
  await report(VimStatus.VIM_STATUS_UNREACHABLE);
  const second = await inspectorFor(t, { db });
  const sub2 = subscribe(t, second.client, { afterAlarmId: lastSeen });
  await eventually(() => sub2.alarms.length === 1, 5_000, 'the missed transition');
  t.like(sub2.alarms[0], { type: AlarmType.ALARM_TYPE_VIM_UNREACHABLE, vimId });
  await new Promise((r) => setTimeout(r, 200));
  t.is(sub2.alarms.length, 1);
  const stored = await second.client.listAlarms({ filter: { vimIds: [vimId] } });
  t.is(stored.alarms.length, 3);
});

const amqpUrl = process.env.VIMMON_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

// Decided at load time: without RabbitMQ (and not in CI) this test is skipped with the reason; in CI it fails.
const amqpAt = amqpEndpoint(amqpUrl);
const amqpProblem = canConnect(amqpAt.host, amqpAt.port)
  ? undefined
  : `RabbitMQ not reachable at ${amqpUrl.replace(/\/\/[^@]*@/, '//***@')}: set VIMMON_AMQP_URL or start rabbitmq-server`;
if (amqpProblem && !process.env.CI) console.warn(`inspector-service: RabbitMQ test skipped — ${amqpProblem}`);

(!amqpProblem || process.env.CI ? test : test.skip)(
  'RabbitMQ: a VM Nova announced after the snapshot is found when its host fails',
  async (t) => {
    if (amqpProblem) return t.fail(amqpProblem);
    const connection = await amqp.connect(amqpUrl, { timeout: 2_000 });
    t.teardown(() => connection.close().catch(() => {}));
    const d = await startOpenStackDouble();
    t.teardown(() => d.close());
    const known = d.addServer({ host: 'compute-n' });
    const { client } = await inspectorFor(t, { double: d, amqpUrl });
    await eventually(async () => (await client.getStatus({})).cachedVms === 1, 10_000, 'the snapshot');
    const late = d.addServer({ host: 'compute-n', name: 'late' });
    const channel = await connection.createConfirmChannel();
    await channel.assertExchange('nova', 'topic', { durable: false });
    // The consumer binds its queue once connected; publish until the cache has it.
    await eventually(
      async () => {
        channel.publish(
          'nova',
          'versioned_notifications.info',
          Buffer.from(novaNotificationBody('instance.create.end', { id: late, host: 'compute-n', name: 'late' })),
        );
        await channel.waitForConfirms();
        return (await client.getStatus({})).cachedVms === 2;
      },
      10_000,
      'the notification in the cache',
    );
    const sub = subscribe(t, client, { liveOnly: true });
    await eventually(async () => (await client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');
    await client.reportEvents({ events: [down('compute-n')] });
    await eventually(() => sub.alarms.length === 3, 5_000, 'three alarms');
    t.deepEqual(
      sub.alarms
        .slice(1)
        .map((a) => a.instanceId)
        .sort(),
      [known, late].sort(),
    );
    await eventually(() => d.servers().every((s) => s.vmState === 'error'), 5_000, 'both VMs in error');
  },
);

test('settings from the environment: defaults, AMQP off, bad values named', (t) => {
  t.deepEqual(inspectorSettingsFromEnv({}), {
    amqpUrl: defaultAmqpUrl,
    resyncIntervalMs: 300_000,
    novaConcurrency: 64,
    subscriberQueueSize: 10_000,
    subscriberQueueBytes: 8 * 1024 * 1024,
    maxPendingAlarms: 200_000,
    maxHostsDown: 100_000,
    resetState: 'error',
    neutron: false,
  });
  t.like(
    inspectorSettingsFromEnv({
      VIMMON_AMQP_URL: 'off',
      VIMMON_INSPECTOR_RESYNC: '30s',
      VIMMON_INSPECTOR_NOVA_CONCURRENCY: '256',
      VIMMON_INSPECTOR_SUBSCRIBER_QUEUE: '50000',
      VIMMON_INSPECTOR_SUBSCRIBER_QUEUE_BYTES: '1048576',
      VIMMON_INSPECTOR_MAX_PENDING_ALARMS: '1000',
      VIMMON_INSPECTOR_MAX_HOSTS_DOWN: '5000',
    }),
    {
      amqpUrl: undefined,
      resyncIntervalMs: 30_000,
      novaConcurrency: 256,
      subscriberQueueSize: 50_000,
      subscriberQueueBytes: 1_048_576,
      maxPendingAlarms: 1_000,
      maxHostsDown: 5_000,
    },
  );
  t.is(inspectorSettingsFromEnv({ VIMMON_AMQP_URL: 'amqp://u:p@mq:5672/nova' }).amqpUrl, 'amqp://u:p@mq:5672/nova');
  t.throws(() => inspectorSettingsFromEnv({ VIMMON_INSPECTOR_NOVA_CONCURRENCY: '0' }), { message: /^VIMMON_INSPECTOR_NOVA_CONCURRENCY/ });
  t.throws(() => inspectorSettingsFromEnv({ VIMMON_INSPECTOR_MAX_HOSTS_DOWN: 'lots' }), { message: /^VIMMON_INSPECTOR_MAX_HOSTS_DOWN/ });
  t.throws(() => inspectorSettingsFromEnv({ VIMMON_INSPECTOR_RESYNC: 'often' }), { message: /^VIMMON_INSPECTOR_RESYNC/ });
  t.true(inspectorSettingsFromEnv({ VIMMON_INSPECTOR_NEUTRON: 'ON' }).neutron);
  t.false(inspectorSettingsFromEnv({ VIMMON_INSPECTOR_NEUTRON: 'off' }).neutron);
  t.throws(() => inspectorSettingsFromEnv({ VIMMON_INSPECTOR_NEUTRON: 'yes' }), {
    message: /^VIMMON_INSPECTOR_NEUTRON: expected on or off/,
  });
});
