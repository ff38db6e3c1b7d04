// The executor against a recording conductor: a real gRPC server written here
// with scripted replies, real TCP targets opened and closed by the tests.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, ServerError, Status, type Channel } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import {
  VimMonitorAction2ConductorDefinition,
  type UpdateVimRequest,
  type UpdateVimResponse,
} from '../gen/vimmon/conductor/v1/conductor.js';
import {
  ExecutorServiceDefinition,
  StopReason,
  type ExecutorServiceClient,
  type StartActionRequest,
  type WatchActionsResponse,
} from '../gen/vimmon/executor/v1/executor_service.js';
import type { MonitorPolicy, ProbeKind } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { msToDuration } from '../common/duration.js';
import { ActionEventHub, WatcherOverflowError, type ActionEvent } from '../executor/action-events.js';
import { startExecutor, type ExecutorOptions, type RunningExecutor } from '../executor/main.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

// ---------------------------------------------------------------- helpers

interface RecordedReport extends UpdateVimRequest {
  atMs: number;
}

type Script = (request: UpdateVimRequest) => UpdateVimResponse | Promise<UpdateVimResponse>;

interface RecordingConductor {
  address: string;
  port: number;
  /** The reports of the VIMs given to expect() (every report until expect() is first called). */
  reports: RecordedReport[];
  /**
   * Records only these VIMs' reports from now on: the conductor listens on a port the system handed
   * out, which an executor of another test whose conductor has closed may still be retrying.
   */
  expect(...requests: Array<{ vimId: string }>): void;
  /** Replaces how UpdateVim answers; the default stores whatever is reported. */
  script: Script;
  stop(): Promise<void>;
}

const storeAll: Script = (request) => ({ status: request.status, statusReason: request.statusReason });

async function startRecordingConductor(t: ExecutionContext, port = 0): Promise<RecordingConductor> {
  const conductor: RecordingConductor = {
    address: '',
    port: 0,
    reports: [],
    expect(...requests) {
      for (const r of requests) expected.add(r.vimId);
      conductor.reports = conductor.reports.filter((r) => expected.has(r.vimId));
    },
    script: storeAll,
    stop: async () => {},
  };
  const expected = new Set<string>();
  const server = createGrpcServer({
    logger: testLogger(),
    shutdownGraceMs: 500,
    services: [
      serviceEntry(VimMonitorAction2ConductorDefinition, {
        async updateVim(request) {
          if (expected.size === 0 || expected.has(request.vimId)) conductor.reports.push({ ...request, atMs: Date.now() });
          return conductor.script(request);
        },
      }),
    ],
  });
  conductor.port = await server.listen(`127.0.0.1:${port}`);
  conductor.address = `127.0.0.1:${conductor.port}`;
  let stopped: Promise<void> | undefined;
  conductor.stop = () => (stopped ??= server.shutdown());
  t.teardown(() => conductor.stop());
  return conductor;
}

interface Target {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** A TCP listener standing in for a VIM endpoint; close() makes it refuse. */
async function openTarget(t: ExecutionContext, port = 0): Promise<Target> {
  const server = net.createServer((socket) => socket.on('error', () => {}).destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= new Promise<void>((resolve) => server.close(() => resolve())));
  t.teardown(close);
  return { port: bound, url: `http://127.0.0.1:${bound}/v3`, close };
}

interface Harness {
  executor: RunningExecutor;
  client: ExecutorServiceClient;
  channel: Channel;
}

async function startHarness(t: ExecutionContext, conductorTarget: string, extra: Partial<ExecutorOptions> = {}): Promise<Harness> {
  const executor = await startExecutor({
    logger: testLogger(),
    address: '127.0.0.1:0',
    conductorTarget,
    reportTimeoutMs: 1_000,
    reportBackoff: { baseDelayMs: 50, maxDelayMs: 200 },
    ...extra,
  });
  const channel = createChannel(executor.address);
  t.teardown(async () => {
    channel.close();
    await executor.stop();
  });
  return { executor, channel, client: createClient(ExecutorServiceDefinition, channel) };
}

const ms = msToDuration;

function policy(p: {
  intervalMs?: number;
  timeoutMs?: number;
  reportIntervalMs?: number;
  unreachableAfter?: number;
  count?: number;
}): MonitorPolicy {
  return {
    probe: 0,
    interval: ms(p.intervalMs ?? 100),
    // Nearly the whole interval: a local connect lost to a busy machine must not read as a fault.
    timeout: ms(p.timeoutMs ?? 90),
    count: p.count ?? 1,
    unreachableAfter: p.unreachableAfter ?? 1,
    reportInterval: ms(p.reportIntervalMs ?? 60_000),
    staleAfter: undefined,
  };
}

function startRequest(url: string, monitor: MonitorPolicy, known = VimStatus.VIM_STATUS_PENDING): StartActionRequest {
  return {
    actionId: randomUUID(),
    vimId: randomUUID(),
    authUrl: url,
    monitor,
    knownStatus: known,
    sslCaCert: '',
    auth: undefined,
    reportFirstRound: false,
    knownStatusReason: 0,
  };
}

async function waitFor(t: ExecutionContext, what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      t.fail(`timed out after ${timeoutMs}ms waiting for ${what}`);
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (msToWait: number) => new Promise((r) => setTimeout(r, msToWait));

/** Collects a WatchActions stream in the background; `ended` settles with the stream's end. */
function collect(client: ExecutorServiceClient, vimIds: string[] = [], signal?: AbortSignal) {
  const events: WatchActionsResponse[] = [];
  const ended = (async () => {
    for await (const event of client.watchActions({ vimIds }, { signal })) events.push(event);
  })().then(
    () => undefined,
    (err: unknown) => err as { code?: Status; details?: string; name?: string },
  );
  return { events, ended };
}

async function grpcCode(t: ExecutionContext, p: Promise<unknown>, code: Status, field?: string): Promise<void> {
  const err = (await t.throwsAsync(p)) as unknown as { code: Status; details: string };
  t.is(err.code, code, err.details);
  if (field) t.true(err.details.startsWith(`${field}:`), `details name ${field}: ${err.details}`);
}

// ---------------------------------------------------------------- tests

test('a status change is reported at once, REACHABLE within interval + timeout of the start', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  // Two failed rounds to decide: one round lost to a busy machine is not the fault under test.
  const req = startRequest(target.url, policy({ intervalMs: 200, timeoutMs: 190, unreachableAfter: 2 }));
  conductor.expect(req);
  const started = Date.now();
  const { action, alreadyRunning } = await client.startAction(req);
  t.false(alreadyRunning);
  t.is(action!.vimId, req.vimId);
  await waitFor(t, 'the REACHABLE report', () => conductor.reports.length >= 1, 2_000);
  t.deepEqual(
    conductor.reports.map((r) => [r.vimId, r.actionId, r.status]),
    [[req.vimId, req.actionId, VimStatus.VIM_STATUS_REACHABLE]],
  );
  // At once: within a second or so, where waiting for the heartbeat would take 60 s. The
  // precise figure (interval + timeout, p99) is bench/detection-latency.ts's to measure.
  t.true(conductor.reports[0]!.atMs - started <= 1_500, `took ${conductor.reports[0]!.atMs - started}ms`);

  // The VIM goes away: UNREACHABLE reported within about one interval.
  const closedAt = Date.now();
  await target.close();
  await waitFor(t, 'the UNREACHABLE report', () => conductor.reports.length >= 2, 2_000);
  t.is(conductor.reports[1]!.status, VimStatus.VIM_STATUS_UNREACHABLE);
  t.true(conductor.reports[1]!.atMs - closedAt <= 1_500, `took ${conductor.reports[1]!.atMs - closedAt}ms`);

  // No change and a heartbeat far away: nothing more is sent.
  await sleep(500);
  t.is(conductor.reports.length, 2);
  const { actions } = await client.listActions({ vimIds: [req.vimId] });
  t.is(actions.length, 1);
  t.is(actions[0]!.decidedStatus, VimStatus.VIM_STATUS_UNREACHABLE);
  t.true(actions[0]!.rounds >= 4);
  t.true(actions[0]!.failedRoundsInRow >= 2);
  t.false(actions[0]!.lastRound!.ok);
  t.regex(actions[0]!.lastRound!.error, /ECONNREFUSED/);
  t.is(actions[0]!.lastReply!.storedStatus, VimStatus.VIM_STATUS_UNREACHABLE);
  t.false(actions[0]!.lastReply!.heartbeat);
  t.truthy(actions[0]!.startedAt);
  t.is(actions[0]!.monitor!.interval!.nanos, 200_000_000);
});

test('a status equal to the known one waits for the heartbeat, which comes every report_interval', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  // Thirty failed rounds in a row to decide (3 s, more than the test lasts): rounds lost to a busy machine
  // must not turn into a report; this is about heartbeats. (Five was once outrun by a loaded CI machine.)
  const req = startRequest(
    target.url,
    policy({ intervalMs: 100, timeoutMs: 90, reportIntervalMs: 300, unreachableAfter: 30 }),
    VimStatus.VIM_STATUS_REACHABLE,
  );
  conductor.expect(req);
  const watch = collect(client, [req.vimId]);
  await sleep(50); // the stream is open before the action starts
  const started = Date.now();
  await client.startAction(req);
  await sleep(200);
  // On a busy machine startAction itself may take a while, so judge by when reports came, not how many.
  t.true(
    conductor.reports.every((r) => r.atMs - started >= 280),
    'no report before the first heartbeat: REACHABLE was already stored',
  );
  await sleep(1_350);
  const reports = [...conductor.reports];
  const count = reports.length;
  // 1.55 s at one heartbeat per 300 ms: five, give or take scheduling.
  t.true(count >= 3 && count <= 6, `${count} heartbeats`);
  t.true(
    reports.every((r) => r.status === VimStatus.VIM_STATUS_REACHABLE),
    `statuses ${reports.map((r) => VimStatus[r.status]).join(', ')}`,
  );
  const gaps = reports.slice(1).map((r, i) => r.atMs - reports[i]!.atMs);
  // Heartbeats keep their rhythm from the first: one that runs late is followed by a shorter gap.
  t.true(
    gaps.every((g) => g >= 150 && g < 1_000),
    `gaps ${gaps.join(', ')}`,
  );
  t.true(reports[0]!.atMs - started >= 280);
  const replies = watch.events.filter((e) => e.reply).map((e) => e.reply!);
  t.true(replies.length >= 3);
  t.true(replies.every((r) => r.heartbeat && r.storedStatus === VimStatus.VIM_STATUS_REACHABLE));
  const rounds = watch.events.filter((e) => e.round);
  t.true(rounds.length >= 10, `${rounds.length} rounds`);
  t.truthy(watch.events.find((e) => e.started)?.started?.action);
});

test('report_first_round: a successor given REACHABLE reports its first round at once, then keeps the heartbeat', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  // A report interval of a minute: only report_first_round can explain a report within the test.
  const req = {
    ...startRequest(
      target.url,
      policy({ intervalMs: 100, timeoutMs: 90, reportIntervalMs: 60_000, unreachableAfter: 30 }),
      VimStatus.VIM_STATUS_REACHABLE,
    ),
    reportFirstRound: true,
  };
  conductor.expect(req);
  await client.startAction(req);
  await eventually(() => conductor.reports.length >= 1, 10_000, 'the first round reported');
  await sleep(500);
  t.is(conductor.reports.length, 1, 'one report, then the heartbeat rhythm (a minute)');
  t.is(conductor.reports[0]!.status, VimStatus.VIM_STATUS_REACHABLE);
});

test('an action given REACHABLE rides out failed rounds below unreachable_after: no PENDING report, then UNREACHABLE', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  await target.close();
  // A replacement action for a VIM stored REACHABLE whose target is now down: the first failed
  // rounds are a blip to ride out (as the action before it would), not a PENDING to report.
  const req = startRequest(
    target.url,
    policy({ intervalMs: 100, timeoutMs: 90, reportIntervalMs: 60_000, unreachableAfter: 4 }),
    VimStatus.VIM_STATUS_REACHABLE,
  );
  conductor.expect(req);
  await client.startAction(req);
  await waitFor(t, 'the UNREACHABLE report', () => conductor.reports.length >= 1, 5_000);
  await sleep(200);
  t.deepEqual(
    conductor.reports.map((r) => VimStatus[r.status]),
    ['VIM_STATUS_UNREACHABLE'],
  );
  const { actions } = await client.listActions({ vimIds: [req.vimId] });
  t.true(actions[0]!.rounds >= 4, `${actions[0]!.rounds} rounds before the report`);
});

test('rounds follow the interval from round start, neither faster nor overlapping', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  const req = startRequest(target.url, policy({ intervalMs: 100, timeoutMs: 50 }));
  conductor.expect(req);
  const watch = collect(client, [req.vimId]);
  await sleep(50);
  await client.startAction(req);
  await sleep(1_050);
  await client.stopAction({ actionId: req.actionId });
  const starts = watch.events.filter((e) => e.round).map((e) => e.round!.startedAt!.getTime());
  t.true(starts.length >= 8 && starts.length <= 12, `${starts.length} rounds in ~1 s at 100 ms`);
  const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
  t.true(
    gaps.every((g) => g >= 95),
    `gaps ${gaps.join(', ')}`,
  );
});

test('BAD_ACTION: the action exits, leaves ListActions and is announced as stopped with that reason', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client, executor } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  const fenced = startRequest(target.url, policy({ intervalMs: 100 }));
  conductor.expect(fenced);
  const other = startRequest(target.url, policy({ intervalMs: 100 }));
  conductor.expect(other);
  conductor.script = (r) =>
    r.actionId === fenced.actionId ? { status: VimStatus.VIM_STATUS_BAD_ACTION, statusReason: 0 } : { status: r.status, statusReason: 0 };
  const watch = collect(client, [fenced.vimId]);
  await sleep(50);
  await client.startAction(fenced);
  await client.startAction(other);
  await waitFor(
    t,
    'the fenced action to leave ListActions',
    async () => (await client.listActions({ vimIds: [fenced.vimId] })).actions.length === 0,
    3_000,
  );
  await waitFor(t, 'the stopped event', () => watch.events.some((e) => e.stopped), 2_000);
  const stopped = watch.events.find((e) => e.stopped)!;
  t.is(stopped.actionId, fenced.actionId);
  t.is(stopped.stopped!.reason, StopReason.STOP_REASON_BAD_ACTION);
  const reply = watch.events.find((e) => e.reply)!.reply!;
  t.is(reply.storedStatus, VimStatus.VIM_STATUS_BAD_ACTION);
  // It made exactly one report and no more rounds after it.
  await sleep(300);
  t.is(conductor.reports.filter((r) => r.actionId === fenced.actionId).length, 1);
  const last = watch.events.length;
  await sleep(300);
  t.is(watch.events.length, last);
  t.true(
    watch.events.every((e) => e.vimId === fenced.vimId),
    'the filter keeps other VIMs out',
  );
  // The other action is not affected.
  const { actions } = await client.listActions({});
  t.deepEqual(
    actions.map((a) => a.actionId),
    [other.actionId],
  );
  t.is(executor.stats().actions, 1);
});

test('with no conductor the action keeps probing, retries, and delivers the latest status when one comes back', async (t) => {
  // The port is held by a listener that drops every connection, so no other test's conductor can
  // take it (tests of a file run side by side); it is let go just before this test's conductor starts.
  const holder = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    if (holder.listening) holder.close();
  });
  const port = (holder.address() as AddressInfo).port;
  const { client, executor } = await startHarness(t, `127.0.0.1:${port}`);
  const target = await openTarget(t);
  const req = startRequest(target.url, policy({ intervalMs: 100, reportIntervalMs: 60_000 }));
  await client.startAction(req);
  await sleep(600);
  // A busy machine may not have finished the first failed report yet: wait for it, not a fixed time.
  await waitFor(
    t,
    'a failed report',
    async () => (await client.listActions({ vimIds: [req.vimId] })).actions[0]?.lastReply !== undefined,
    5_000,
  );
  let [action] = (await client.listActions({ vimIds: [req.vimId] })).actions;
  t.true(action!.rounds >= 4, `${action!.rounds} rounds while no conductor answers`);
  t.is(action!.decidedStatus, VimStatus.VIM_STATUS_REACHABLE);
  t.not(action!.lastReply!.error, '');
  t.is(action!.lastReply!.storedStatus, VimStatus.VIM_STATUS_UNSPECIFIED);
  const unanswered = executor.stats().unansweredReports;
  t.true(unanswered >= 2, `${unanswered} retries`);
  t.true(unanswered < 60, `${unanswered} retries in 600 ms is a spin, not a backoff`);

  // The status changes while nobody listens; then a conductor appears.
  await target.close();
  await waitFor(
    t,
    'UNREACHABLE decided',
    async () => (await client.listActions({ vimIds: [req.vimId] })).actions[0]!.decidedStatus === VimStatus.VIM_STATUS_UNREACHABLE,
  );
  await new Promise<void>((resolve) => holder.close(() => resolve()));
  const conductor = await startRecordingConductor(t, port);
  conductor.expect(req);
  await waitFor(t, 'the report to be delivered', () => conductor.reports.length >= 1, 10_000);
  t.is(conductor.reports[0]!.status, VimStatus.VIM_STATUS_UNREACHABLE, 'the latest status, not the stale REACHABLE');
  await sleep(300);
  t.is(conductor.reports.length, 1, 'one delivery; no queue of old reports follows');
  [action] = (await client.listActions({ vimIds: [req.vimId] })).actions;
  t.is(action!.lastReply!.storedStatus, VimStatus.VIM_STATUS_UNREACHABLE);
  t.is(action!.lastReply!.error, '');
});

test('a conductor error that is not about availability is retried at the heartbeat rate, not in a loop', async (t) => {
  const conductor = await startRecordingConductor(t);
  conductor.script = () => {
    throw new ServerError(Status.INVALID_ARGUMENT, 'vim_id: not known here');
  };
  const { client, executor } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  const req = startRequest(target.url, policy({ intervalMs: 100, reportIntervalMs: 400 }));
  conductor.expect(req);
  await client.startAction(req);
  await sleep(1_000);
  const n = conductor.reports.length;
  // At the heartbeat rate: a few, where a retry loop would make hundreds.
  t.true(n >= 1 && n <= 5, `${n} reports in 1 s at a 400 ms heartbeat`);
  t.is(executor.stats().rejectedReports, n);
  const [action] = (await client.listActions({ vimIds: [req.vimId] })).actions;
  t.regex(action!.lastReply!.error, /INVALID_ARGUMENT/);
  t.true(action!.rounds >= 8, 'probing goes on');
});

test('StopAction is idempotent and the action is gone at once', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  const req = startRequest(target.url, policy({ intervalMs: 100, reportIntervalMs: 200 }));
  conductor.expect(req);
  const watch = collect(client, [req.vimId]);
  await sleep(50);
  await client.startAction(req);
  await waitFor(t, 'a first report', () => conductor.reports.length >= 1);
  const before = Date.now();
  t.deepEqual(await client.stopAction({ actionId: req.actionId }), { stopped: true });
  t.true(Date.now() - before < 1_000);
  t.deepEqual((await client.listActions({})).actions, []);
  t.deepEqual(await client.stopAction({ actionId: req.actionId }), { stopped: false });
  t.deepEqual(await client.stopAction({ actionId: randomUUID() }), { stopped: false });
  const reports = conductor.reports.length;
  await sleep(500);
  t.is(conductor.reports.length, reports, 'no report after the stop');
  const stopped = watch.events.filter((e) => e.stopped);
  t.is(stopped.length, 1);
  t.is(stopped[0]!.stopped!.reason, StopReason.STOP_REASON_STOPPED);
});

test('StartAction is idempotent for a running action_id; a second action for the same VIM is allowed', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const target = await openTarget(t);
  const req = startRequest(target.url, policy({ intervalMs: 100 }));
  conductor.expect(req);
  const first = await client.startAction(req);
  const again = await client.startAction(req);
  t.false(first.alreadyRunning);
  t.true(again.alreadyRunning);
  t.is(again.action!.actionId, req.actionId);
  t.is((await client.listActions({})).actions.length, 1);
  // The same id for another VIM is a caller's mistake, not a repeat.
  await grpcCode(t, client.startAction({ ...req, vimId: randomUUID() }), Status.ALREADY_EXISTS);
  // Another action id for the same VIM runs beside it; fencing picks the winner.
  const second = await client.startAction({ ...req, actionId: randomUUID() });
  t.false(second.alreadyRunning);
  t.is((await client.listActions({ vimIds: [req.vimId] })).actions.length, 2);
  // The defaults are filled in, and the ids come back in one form.
  const upper = {
    ...startRequest(target.url, {
      probe: 0,
      interval: undefined,
      timeout: undefined,
      count: 0,
      unreachableAfter: 0,
      reportInterval: undefined,
      staleAfter: undefined,
    }),
  };
  upper.actionId = upper.actionId.toUpperCase();
  const { action } = await client.startAction(upper);
  t.is(action!.actionId, upper.actionId.toLowerCase());
  t.deepEqual(action!.monitor!.interval, { seconds: 10, nanos: 0 });
  t.deepEqual(action!.monitor!.timeout, { seconds: 1, nanos: 0 });
  t.is(action!.monitor!.count, 1);
  t.is(action!.monitor!.unreachableAfter, 1);
  t.deepEqual(action!.monitor!.reportInterval, { seconds: 30, nanos: 0 });
});

test('bad input gets INVALID_ARGUMENT naming the field', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client } = await startHarness(t, conductor.address);
  const good = startRequest('https://[fd00::1]:5000/v3', policy({ intervalMs: 1_000, timeoutMs: 100 }));
  conductor.expect(good);
  const cases: Array<[string, Partial<StartActionRequest>]> = [
    ['action_id', { actionId: '' }],
    ['action_id', { actionId: 'not-a-uuid' }],
    ['vim_id', { vimId: '42' }],
    ['auth_url', { authUrl: '' }],
    ['auth_url', { authUrl: 'ftp://keystone.example/v3' }],
    ['auth_url', { authUrl: 'https://admin:pw@keystone.example/v3' }],
    ['monitor.interval', { monitor: { ...good.monitor!, interval: ms(10) } }],
    ['monitor.timeout', { monitor: { ...good.monitor!, timeout: ms(600), count: 2 } }],
    ['monitor.count', { monitor: { ...good.monitor!, count: 11 } }],
    ['monitor.unreachable_after', { monitor: { ...good.monitor!, unreachableAfter: 1_000 } }],
    ['monitor.report_interval', { monitor: { ...good.monitor!, reportInterval: ms(500) } }],
    ['monitor.probe', { monitor: { ...good.monitor!, probe: 99 as ProbeKind } }],
    ['known_status', { knownStatus: VimStatus.VIM_STATUS_BAD_ACTION }],
  ];
  for (const [field, change] of cases) {
    await grpcCode(t, client.startAction({ ...good, ...change }), Status.INVALID_ARGUMENT, field);
  }
  await grpcCode(t, client.stopAction({ actionId: 'x' }), Status.INVALID_ARGUMENT, 'action_id');
  await grpcCode(t, client.listActions({ vimIds: [randomUUID(), 'nope'] }), Status.INVALID_ARGUMENT, 'vim_ids[1]');
  const watch = collect(client, ['nope']);
  t.is((await watch.ended)?.code, Status.INVALID_ARGUMENT);
  t.is((await client.listActions({})).actions.length, 0, 'nothing was started');
  // An IPv6 literal auth_url is fine.
  t.false((await client.startAction(good)).alreadyRunning);
});

test('a watcher that falls behind gets RESOURCE_EXHAUSTED; the actions do not slow down', async (t) => {
  const conductor = await startRecordingConductor(t);
  const { client, executor } = await startHarness(t, conductor.address, { watchQueueLimit: 16 });
  const target = await openTarget(t);
  const requests = Array.from({ length: 40 }, () => startRequest(target.url, policy({ intervalMs: 100 })));
  conductor.expect(...requests);
  const stream = client.watchActions({})[Symbol.asyncIterator]();
  const first = stream.next(); // the stream is open; now read nothing for a while
  await sleep(50);
  await Promise.all(requests.map((r) => client.startAction(r)));
  const roundsBefore = executor.stats().rounds;
  await sleep(2_500);
  const rounds = executor.stats().rounds - roundsBefore;
  // 1,000 on an idle machine. An order of magnitude only (a loaded machine runs fewer): actions held
  // up by the watcher would stop at the 16 events its queue takes.
  t.true(rounds >= 40 * 5, `${rounds} rounds in 2.5 s for 40 actions at 100 ms`);
  await first;
  let error: { code?: Status } | undefined;
  let read = 1;
  try {
    while (!(await stream.next()).done) read++;
  } catch (err) {
    error = err as { code?: Status };
  }
  t.is(error?.code, Status.RESOURCE_EXHAUSTED, `after ${read} events`);
  t.is(executor.stats().watchers, 0);
});

test('event hub: bounded per-watcher queue, filter by VIM, end on abort', async (t) => {
  const hub = new ActionEventHub();
  const controller = new AbortController();
  const fake = (vimId: string) => ({ spec: { vimId } }) as never;
  const slow = hub.watch(undefined, 3, controller.signal);
  const filtered = hub.watch(new Set(['b']), 100, controller.signal);
  const pendingSlow = slow.next();
  const pendingFiltered = filtered.next();
  await sleep(0);
  t.is(hub.watcherCount, 2);
  hub.started(fake('a'));
  hub.started(fake('b'));
  t.is(((await pendingFiltered).value as ActionEvent).action.spec.vimId, 'b');
  t.is(((await pendingSlow).value as ActionEvent).action.spec.vimId, 'a');
  for (let i = 0; i < 10; i++) hub.stopped(fake('a'), 'STOPPED');
  await t.throwsAsync(
    async () => {
      for (;;) if ((await slow.next()).done) break;
    },
    { instanceOf: WatcherOverflowError },
  );
  const next = filtered.next();
  controller.abort();
  t.true((await next).done);
  t.is(hub.watcherCount, 0);
});

test('event hub: a watcher queue is bounded in bytes too (long error texts overflow before the count)', async (t) => {
  const hub = new ActionEventHub({ watcherQueueBytes: 10_000 });
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const action = { spec: { vimId: 'a' } } as never;
  const round = (error: string) =>
    ({ startedAtMs: 0, ok: false, attempts: 1, successes: 0, latencyMs: 1, error, decidedStatus: 'UNREACHABLE' }) as never;
  const slow = hub.watch(undefined, 1_000, controller.signal);
  const first = slow.next();
  await sleep(0);
  hub.round(action, round('short'));
  t.truthy((await first).value);
  // Each about 160 + 2 × 1,000 bytes: the fifth passes 10,000 bytes, far below 1,000 events.
  for (let i = 0; i < 5; i++) hub.round(action, round('x'.repeat(1_000)));
  const error = await t.throwsAsync(
    async () => {
      for (;;) if ((await slow.next()).done) break;
    },
    { instanceOf: WatcherOverflowError },
  );
  t.regex(error!.message, /10000 bytes/);
  t.is(hub.watcherCount, 0);
});

test.serial('shutdown ends WatchActions with UNAVAILABLE, aborts every action and leaves nothing running', async (t) => {
  const conductor = await startRecordingConductor(t);
  const executor = await startExecutor({ logger: testLogger(), address: '127.0.0.1:0', conductorTarget: conductor.address });
  const channel = createChannel(executor.address);
  t.teardown(() => channel.close());
  const client = createClient(ExecutorServiceDefinition, channel);
  const target = await openTarget(t);
  const watch = collect(client);
  await sleep(50);
  const req = startRequest(target.url, policy({ intervalMs: 100, reportIntervalMs: 200 }));
  conductor.expect(req);
  await client.startAction(req);
  await waitFor(t, 'a report', () => conductor.reports.length >= 1);
  const before = Date.now();
  await executor.stop();
  t.true(Date.now() - before < 2_000, `stop took ${Date.now() - before}ms`);
  const ended = await watch.ended;
  t.is(ended?.code, Status.UNAVAILABLE, ended?.details);
  t.is(executor.stats().actions, 0);
  const reports = conductor.reports.length;
  await sleep(400);
  t.is(conductor.reports.length, reports, 'no report after stop');
  await executor.stop(); // idempotent
});

test('a process that starts an executor, runs actions and watchers, and stops it exits by itself', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const script = `
    import net from 'node:net';
    import { createChannel, createClient } from 'nice-grpc';
    import { randomUUID } from 'node:crypto';
    import { startExecutor } from '${root}executor/main.ts';
    import { ExecutorServiceDefinition } from '${root}gen/vimmon/executor/v1/executor_service.ts';
    import { createLogger } from '${root}common/logger.ts';
    const target = net.createServer((s) => s.destroy());
    await new Promise((r) => target.listen(0, '127.0.0.1', r));
    const url = 'http://127.0.0.1:' + target.address().port + '/';
    // No conductor listens at this address: reports are being retried when it stops.
    const executor = await startExecutor({ logger: createLogger({ level: 'silent' }), address: '127.0.0.1:0', conductorTarget: '127.0.0.1:1' });
    const channel = createChannel(executor.address);
    const client = createClient(ExecutorServiceDefinition, channel);
    const watching = (async () => { try { for await (const e of client.watchActions({})) {} } catch {} })();
    for (let i = 0; i < 20; i++) {
      await client.startAction({ actionId: randomUUID(), vimId: randomUUID(), authUrl: url,
        monitor: { interval: { seconds: 0, nanos: 100e6 }, timeout: { seconds: 0, nanos: 50e6 } } });
    }
    await new Promise((r) => setTimeout(r, 500));
    await executor.stop();
    await watching;
    channel.close();
    target.close();
    console.log('stopped');
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const started = Date.now();
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running 20 s after start');
    }, 20_000);
    child.on('exit', (c, s) => {
      clearTimeout(timer);
      resolve(c ?? String(s));
    });
  });
  t.is(code, 0, out);
  t.regex(out, /stopped/);
  t.log(`child ran and exited in ${Date.now() - started}ms`);
});
