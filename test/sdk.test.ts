// The client package (client/) against real roles: deadlines, retries of reads
// only, round robin, bearer tokens, TLS from PEM, and the resumable streams
// across a role's restart, a cut for falling behind, and a fatal status.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { createServer, ServerError, type Server } from 'nice-grpc';
import {
  AlarmType,
  ClientError,
  createVimmonClient,
  Metadata,
  OptionError,
  ProbeKind,
  Status,
  VimServiceDefinition,
  VimStatus,
  type VimmonClient,
  type WatchVimsResponse,
} from '../client/src/index.js';
import { alarmResumeTrailer } from '../client/src/alarm-cursor.js';
import { callDefaults } from '../client/src/call-defaults.js';
import { HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { DeliveredIds } from '../client/src/delivered-ids.js';
import { watchResumeTrailer } from '../client/src/vim-watch-cursor.js';
import { resumeAfterTrailer as inspectorAlarmTrailer } from '../inspector/alarm-stream.js';
import { resumeTrailer as serverWatchTrailer } from '../server/vim-watch.js';
import type { VimServiceImplementation } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startSdkMesh } from './support/sdk-mesh.js';
import { startSecureMesh } from './support/secure-mesh.js';
import { openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

function client(t: import('ava').ExecutionContext, options: Parameters<typeof createVimmonClient>[0]): VimmonClient {
  const c = createVimmonClient(options);
  t.teardown(() => c.close());
  return c;
}

/** Reads a resumable stream in the background until stopped; records what it got and how it ended. */
function consume<T>(iterable: AsyncIterable<T>) {
  const got: T[] = [];
  const state: { ended: boolean; error: unknown } = { ended: false, error: undefined };
  const done = (async () => {
    try {
      for await (const m of iterable) got.push(m);
    } catch (err) {
      state.error = err;
    } finally {
      state.ended = true;
    }
  })();
  return { got, state, done };
}

/** Until the role answers its health check again (its channel reconnects with backoff after a restart). */
const serving = (health: VimmonClient['health'][keyof VimmonClient['health']], what: string) =>
  eventually(async () => (await health.check({ service: '' })).status === 1, 30_000, `${what} serving`, 100);

const hostDown = (host: string, i: number) => ({
  events: [{ type: 'compute.host.down', hostname: host, status: 'down', monitor: 'sdk-test', monitorEventId: `e${i}` }],
});

test('subscribeAlarms resumes across an inspector stop and start on the same port: every alarm exactly once', async (t) => {
  const { inspector } = await startSdkMesh(t, { executors: 0, conductors: 0 });
  const c = client(t, { inspector: inspector.address, retry: { baseDelayMs: 20 } });
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const reconnects: Array<{ attempt: number; error: unknown; resumeAfter: number }> = [];
  const reader = consume(
    c.subscribeAlarms(
      { afterAlarmId: 0, filter: { types: [AlarmType.ALARM_TYPE_HOST_DOWN] } },
      { signal: controller.signal, onReconnect: (info) => reconnects.push(info), maxReconnectDelayMs: 300 },
    ),
  );
  let n = 0;
  const raise = async (count: number) => {
    for (let i = 0; i < count; i++, n++) await c.inspector.reportEvents(hostDown(`host-${n}`, n));
  };
  await raise(5);
  await eventually(() => reader.got.length === 5, 20_000, 'the first five alarms');
  await inspector.stop();
  await inspector.start();
  await serving(c.health.inspector, 'the restarted inspector');
  await raise(5);
  await eventually(() => reader.got.length >= 10, 30_000, 'ten alarms after the restart');
  // Another restart while nothing is raised, then more.
  await inspector.stop();
  await inspector.start();
  await serving(c.health.inspector, 'the inspector restarted again');
  await raise(3);
  await eventually(() => reader.got.length >= 13, 30_000, 'thirteen alarms after the second restart');
  const stored = (await c.inspector.listAlarms({ afterAlarmId: 0, pageSize: 100 })).alarms;
  await new Promise((r) => setTimeout(r, 300)); // a repeat would show by now
  t.deepEqual(
    reader.got.map((a) => a.alarmId),
    stored.map((a) => a.alarmId),
    'every stored alarm once, in order',
  );
  t.deepEqual(
    reader.got.map((a) => a.host),
    Array.from({ length: 13 }, (_, i) => `host-${i}`),
  );
  t.true(reconnects.length >= 2, 'it reconnected after each stop');
  t.true(
    reconnects.every((r) => r.error === undefined || (r.error instanceof ClientError && r.error.code === Status.UNAVAILABLE)),
    `reconnects after UNAVAILABLE: ${reconnects.map((r) => (r.error instanceof ClientError ? Status[r.error.code] : String(r.error))).join(', ')}`,
  );
  controller.abort();
  await reader.done;
  t.is(reader.state.error, undefined, 'an abort ends the iterable without an error');
});

test('a subscriber cut for falling behind (RESOURCE_EXHAUSTED) resumes from the server’s trailer and misses nothing', async (t) => {
  // A queue of 3 alarms: a report of 20 hosts overflows it in one turn.
  const { inspector } = await startSdkMesh(t, { executors: 0, conductors: 0, inspector: { subscriberQueueSize: 3 } });
  const c = client(t, { inspector: inspector.address });
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const codes: string[] = [];
  const reader = consume(
    c.subscribeAlarms(
      { liveOnly: true },
      {
        signal: controller.signal,
        maxReconnectDelayMs: 200,
        onReconnect: ({ error }) => codes.push(error instanceof ClientError ? Status[error.code] : String(error)),
      },
    ),
  );
  await eventually(async () => (await c.inspector.getStatus({})).subscribers === 1, 20_000, 'the subscription');
  const hosts = Array.from({ length: 20 }, (_, i) => `burst-${i}`);
  await c.inspector.reportEvents({
    events: hosts.map((h, i) => ({ type: 'compute.host.down', hostname: h, status: 'down', monitor: 'sdk-test', monitorEventId: `b${i}` })),
  });
  await eventually(() => reader.got.length >= 20, 20_000, 'the twenty alarms of the burst');
  await new Promise((r) => setTimeout(r, 300));
  t.true(codes.includes('RESOURCE_EXHAUSTED'), `the stream was cut for falling behind: ${codes.join(', ')}`);
  t.deepEqual(reader.got.map((a) => a.host).sort(), [...hosts].sort(), 'every alarm of the burst once');
  const ids = reader.got.map((a) => a.alarmId);
  t.deepEqual(
    ids,
    [...ids].sort((a, b) => a - b),
  );
});

test('watchVims resumes across a Tacker server stop and start on the same port: every change exactly once', async (t) => {
  const { mesh, server } = await startSdkMesh(t);
  const c = client(t, { server: server.address });
  const targets = await Promise.all([openTcpTarget(), openTcpTarget(), openTcpTarget()]);
  t.teardown(async () => {
    for (const target of targets) await target.close();
  });
  const monitor = {
    probe: ProbeKind.PROBE_KIND_TCP,
    interval: { seconds: 0, nanos: 100_000_000 },
    timeout: { seconds: 0, nanos: 50_000_000 },
  };
  const vims: Array<{ id: string }> = [];
  for (const [i, target] of targets.entries()) {
    vims.push((await c.server.registerVim({ name: `watched-${i}`, authUrl: target.url, monitor })).vim!);
  }
  const reachable = async () => (await c.server.listVims({})).vims.every((v) => v.status === VimStatus.VIM_STATUS_REACHABLE);
  await eventually(reachable, 30_000, 'every VIM reachable');
  const events = async () => (await mesh.query<{ id: string }>('select id from vim_event order by id')).map((r) => Number(r.id));
  const start = Math.max(0, ...(await events()));
  t.true(start > 0, 'the first probes stored their changes');

  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const reader = consume(c.watchVims({ afterEventId: start }, { signal: controller.signal, maxReconnectDelayMs: 300 }));
  const storedSince = async () => (await events()).filter((id) => id > start);
  const flap = async (i: number) => {
    const before = (await storedSince()).length;
    await targets[i]!.close();
    await eventually(async () => (await storedSince()).length >= before + 1, 30_000, `VIM ${i} unreachable`);
    await targets[i]!.reopen();
    await eventually(async () => (await storedSince()).length >= before + 2, 30_000, `VIM ${i} reachable again`);
  };
  await flap(0);
  await eventually(() => reader.got.length >= 2, 30_000, 'the first two changes');
  // The conductor goes on storing changes while the server is down.
  await server.stop();
  await flap(1);
  await flap(2);
  await server.start();
  await flap(0);
  const expected = await storedSince();
  await eventually(() => reader.got.length >= expected.length, 30_000, `${expected.length} changes`);
  await new Promise((r) => setTimeout(r, 300)); // a repeat would show by now
  const got = reader.got.map((m) => m.eventId);
  t.is(got.length, new Set(got).size, `no change twice: ${got.join(',')}`);
  t.deepEqual(
    [...got].sort((a, b) => a - b),
    expected,
    'every stored change once',
  );
  t.true(reader.got.every((m: WatchVimsResponse) => vims.some((v) => v.id === m.vimId)));
  t.false(reader.state.ended);
});

test('a status that would fail again ends the iterable with that error, without reconnecting', async (t) => {
  const { server, inspector } = await startSdkMesh(t, { executors: 0, conductors: 0 });
  const c = client(t, { server: server.address, inspector: inspector.address });
  let reconnects = 0;
  const onReconnect = () => reconnects++;
  const watch = consume(c.watchVims({ vimIds: ['not-a-uuid'] }, { onReconnect }));
  await watch.done;
  t.true(watch.state.error instanceof ClientError);
  t.is((watch.state.error as ClientError).code, Status.INVALID_ARGUMENT);
  const alarms = consume(c.subscribeAlarms({ filter: { hosts: ['a\u0000b'] } }, { onReconnect }));
  await alarms.done;
  t.is((alarms.state.error as ClientError).code, Status.INVALID_ARGUMENT);
  t.is(reconnects, 0);
});

test('leaving a for-await cancels the call; an abort ends a stream that is waiting to reconnect', async (t) => {
  const { inspector } = await startSdkMesh(t, { executors: 0, conductors: 0 });
  const c = client(t, { inspector: inspector.address });
  const subscribers = async () => (await c.inspector.getStatus({})).subscribers;
  await c.inspector.reportEvents(hostDown('leaver', 1));
  for await (const alarm of c.subscribeAlarms({ afterAlarmId: 0 })) {
    t.is(alarm.host, 'leaver');
    t.is(await subscribers(), 1);
    break;
  }
  await eventually(async () => (await subscribers()) === 0, 20_000, 'the cancelled subscription gone');

  // Nothing listens: the stream keeps reconnecting until aborted, then ends without an error.
  await inspector.stop();
  const controller = new AbortController();
  let attempts = 0;
  const reader = consume(
    c.subscribeAlarms({}, { signal: controller.signal, maxReconnectDelayMs: 100, onReconnect: ({ attempt }) => (attempts = attempt) }),
  );
  await eventually(() => attempts >= 3, 20_000, 'three reconnects');
  controller.abort();
  await reader.done;
  t.is(reader.state.error, undefined);
  // close() ends the streams of the client too.
  const other = consume(c.subscribeAlarms({}, { maxReconnectDelayMs: 100 }));
  c.close();
  await other.done;
  t.is(other.state.error, undefined);
});

/** A VimService that answers as a test tells it to, counting calls, on a real port. */
async function scriptedServer(t: import('ava').ExecutionContext, impl: Partial<VimServiceImplementation>) {
  const server: Server = createServer();
  const unimplemented = () => {
    throw new ServerError(Status.UNIMPLEMENTED, 'not in this script');
  };
  const full = Object.fromEntries(Object.keys(VimServiceDefinition.methods).map((m) => [m, unimplemented]));
  server.add(VimServiceDefinition, { ...full, ...impl } as VimServiceImplementation);
  const port = await server.listen('127.0.0.1:0');
  t.teardown(() => server.forceShutdown());
  return `127.0.0.1:${port}`;
}

const never = (signal: AbortSignal) => new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));

test('every unary call has a deadline (the default or its own); a stream has none', async (t) => {
  const address = await scriptedServer(t, {
    getVim: (_, { signal }) => never(signal),
    async *watchVims(_, { signal }) {
      yield { vimId: 'v', vimName: 'n', previousStatus: 0, status: 0, actionId: '', changedAt: undefined, eventId: 0 };
      await never(signal);
    },
  });
  const c = client(t, { server: address, deadline: 400 });
  const timed = async (call: () => Promise<unknown>) => {
    const started = Date.now();
    const error = await t.throwsAsync(call);
    return { code: (error as ClientError).code, ms: Date.now() - started };
  };
  const byDefault = await timed(() => c.server.getVim({ id: 'x' }));
  t.is(byDefault.code, Status.DEADLINE_EXCEEDED);
  t.true(byDefault.ms >= 350 && byDefault.ms < 10_000, `the default deadline: ${byDefault.ms} ms`);
  const ownDeadline = await timed(() => c.server.getVim({ id: 'x' }, { deadline: 1_500 }));
  t.is(ownDeadline.code, Status.DEADLINE_EXCEEDED);
  t.true(ownDeadline.ms >= 1_400, `the call's own deadline wins: ${ownDeadline.ms} ms`);

  // Both the plain and the resumable stream stay open well past the unary deadline.
  for (const open of [(signal: AbortSignal) => c.server.watchVims({}, { signal }), (signal: AbortSignal) => c.watchVims({}, { signal })]) {
    const controller = new AbortController();
    const it = open(controller.signal)[Symbol.asyncIterator]();
    t.is((await it.next()).value?.vimId, 'v');
    const next = it.next().then(
      (r) => (r.done ? 'done' : 'message'),
      (err: unknown) => `ended: ${String(err)}`,
    );
    const outcome = await Promise.race([next, new Promise((r) => setTimeout(() => r('still open'), 1_200))]);
    t.is(outcome, 'still open');
    controller.abort();
    await next;
  }
});

test('reads are retried after UNAVAILABLE; calls that change state, and other errors, are not', async (t) => {
  const calls = { listVims: 0, registerVim: 0, getVim: 0, listVimAudit: 0 };
  const address = await scriptedServer(t, {
    async listVims() {
      if (calls.listVims++ === 0) throw new ServerError(Status.UNAVAILABLE, 'first attempt refused');
      return { vims: [], nextPageToken: '' };
    },
    async registerVim() {
      calls.registerVim++;
      throw new ServerError(Status.UNAVAILABLE, 'refused');
    },
    async getVim() {
      calls.getVim++;
      throw new ServerError(Status.INVALID_ARGUMENT, 'id: not a UUID');
    },
    async listVimAudit() {
      calls.listVimAudit++;
      throw new ServerError(Status.UNAVAILABLE, 'always refused');
    },
  });
  const retried: number[] = [];
  const c = client(t, { server: address, retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 50 } });
  t.deepEqual((await c.server.listVims({})).vims, []);
  t.is(calls.listVims, 2, 'ListVims: refused once, retried once');
  t.is((await t.throwsAsync<ClientError>(() => c.server.registerVim({ name: 'x' })))!.code, Status.UNAVAILABLE);
  t.is(calls.registerVim, 1, 'RegisterVim is never sent twice');
  t.is((await t.throwsAsync<ClientError>(() => c.server.getVim({ id: 'x' })))!.code, Status.INVALID_ARGUMENT);
  t.is(calls.getVim, 1, 'INVALID_ARGUMENT is not retried');
  await t.throwsAsync(() => c.server.listVimAudit({ vimId: 'x' }, { onRetryableError: (_e, attempt) => retried.push(attempt) }));
  t.is(calls.listVimAudit, 3, 'maxAttempts counts every attempt');
  t.deepEqual(retried, [0, 1]);
  const noRetry = client(t, { server: address, retry: false });
  calls.listVimAudit = 0;
  await t.throwsAsync(() => noRetry.server.listVimAudit({ vimId: 'x' }));
  t.is(calls.listVimAudit, 1, 'retry: false');
});

test('a list of addresses is balanced round robin over every listener', async (t) => {
  const counts = [0, 0];
  const addresses = [];
  for (const i of [0, 1]) {
    addresses.push(
      await scriptedServer(t, {
        async listVims() {
          counts[i]!++;
          return { vims: [], nextPageToken: '' };
        },
      }),
    );
  }
  const c = client(t, { server: addresses });
  // Until both connections are up, calls go to whichever is.
  await eventually(
    async () => {
      await c.server.listVims({});
      return counts[0]! > 0 && counts[1]! > 0;
    },
    20_000,
    'calls reaching both listeners',
    10,
  );
  counts[0] = counts[1] = 0;
  for (let i = 0; i < 20; i++) await c.server.listVims({});
  t.true(counts[0]! >= 5 && counts[1]! >= 5, `spread: ${counts.join(' / ')}`);
  t.is(counts[0]! + counts[1]!, 20);
  // The same as one comma-separated string.
  const joined = client(t, { server: addresses.join(',') });
  await joined.server.listVims({});
});

test('a bearer token reaches the server on every call; TLS and mutual TLS from PEM', async (t) => {
  const mesh = await startSecureMesh(t);
  const tls = { ca: mesh.certs.ca };
  let asked = 0;
  const reader = client(t, { server: mesh.server.address, inspector: mesh.inspector.address, tls, token: mesh.tokens.readerA });
  const admin = client(t, {
    inspector: mesh.inspector.address,
    tls: { ca: mesh.certs.ca.toString() },
    token: async () => {
      asked++;
      return mesh.tokens.admin;
    },
  });
  const anonymous = client(t, { server: mesh.server.address, inspector: mesh.inspector.address, tls });
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'OK',
      (err: unknown) => (err instanceof ClientError ? Status[err.code] : String(err)),
    );

  t.is(await code(reader.server.listVims({})), 'OK');
  t.is(await code(anonymous.server.listVims({})), 'UNAUTHENTICATED');
  // Who the token says the caller is decides: GetStatus is for admins only.
  t.is(await code(reader.inspector.getStatus({})), 'PERMISSION_DENIED');
  t.is(await code(admin.inspector.getStatus({})), 'OK');
  t.is(await code(admin.inspector.getStatus({})), 'OK');
  t.is(asked, 2, 'the token function is asked for every call');
  // A call's own metadata keeps the token.
  t.is(await code(reader.server.listVims({}, { metadata: Metadata({ 'x-request-id': 'r1' }) })), 'OK');
  // The resumable streams carry it too; without it the stream ends with UNAUTHENTICATED, not reconnecting.
  let reconnected = false;
  const refused = consume(anonymous.subscribeAlarms({ liveOnly: true }, { onReconnect: () => (reconnected = true) }));
  await refused.done;
  t.is((refused.state.error as ClientError)?.code, Status.UNAUTHENTICATED);
  t.false(reconnected);
  const it = admin.subscribeAlarms({ liveOnly: true })[Symbol.asyncIterator]();
  const first = it.next();
  await eventually(async () => (await admin.inspector.getStatus({})).subscribers === 1, 20_000, 'an admin subscription');
  const monitor = client(t, { inspector: mesh.inspector.address, tls, token: mesh.tokens.monitor });
  await monitor.inspector.reportEvents({ events: [{ type: 'compute.host.down', hostname: 'secure-1', status: 'down', monitor: 'm' }] });
  t.is((await first).value?.host, 'secure-1');
  await it.return?.();

  // Mutual TLS: the executor's certificate is the only identity the conductor takes reports from.
  const report = { vimId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE, actionId: randomUUID() };
  const executorCert = mesh.certs.role('executor');
  const asExecutor = client(t, {
    conductor: mesh.conductor.address,
    tls: { ca: mesh.certs.ca, cert: executorCert.cert, key: executorCert.key },
  });
  t.is((await asExecutor.conductor.updateVim(report)).status, VimStatus.VIM_STATUS_BAD_ACTION, 'heard (and fenced: no such VIM)');
  const withoutCert = client(t, { conductor: mesh.conductor.address, tls });
  t.is(await code(withoutCert.conductor.updateVim(report)), 'UNAUTHENTICATED');

  // The server's name: checked against the address's host, or serverName.
  const byName = client(t, {
    server: mesh.server.address,
    tls: { ca: mesh.certs.ca, serverName: 'localhost' },
    token: mesh.tokens.readerA,
  });
  t.is(await code(byName.server.listVims({})), 'OK');
  const fast = { deadline: 3_000, retry: false as const };
  const wrongName = client(t, { server: mesh.server.address, tls: { ca: mesh.certs.ca, serverName: 'elsewhere.example' }, ...fast });
  t.is(await code(wrongName.server.listVims({})), 'UNAVAILABLE');
  const systemRoots = client(t, { server: mesh.server.address, tls: true, ...fast });
  t.is(await code(systemRoots.server.listVims({})), 'UNAVAILABLE', 'the mesh CA is not among the system roots');
  const plaintext = client(t, { server: mesh.server.address, ...fast });
  t.is(await code(plaintext.server.listVims({})), 'UNAVAILABLE');
});

test('bad options are refused by name; a role without an address fails when first called', async (t) => {
  const refused = (options: unknown, option: string) => {
    const error = t.throws(() => createVimmonClient(options as Parameters<typeof createVimmonClient>[0]), { instanceOf: OptionError });
    t.is(error?.option, option, error?.message);
    t.true(error!.message.startsWith(`${option}: `));
  };
  refused({ server: '' }, 'server');
  refused({ server: ['127.0.0.1:1', ''] }, 'server');
  refused({ inspector: 'localhost' }, 'inspector');
  refused({ executor: '127.0.0.1:99999' }, 'executor');
  refused({ conductor: ['db1.example:50052', 'db2.example:50052'] }, 'conductor');
  refused({ server: ['127.0.0.1:1', '[::1]:2'] }, 'server');
  refused({ deadline: 0 }, 'deadline');
  refused({ deadline: Number.NaN }, 'deadline');
  refused({ retry: { maxAttempts: 0 } }, 'retry.maxAttempts');
  refused({ retry: { baseDelayMs: -1 } }, 'retry.baseDelayMs');
  refused({ token: 'two words' }, 'token');
  refused({ token: 'line\nbreak' }, 'token');
  refused({ token: '' }, 'token');
  refused({ server: '127.0.0.1:1', tls: { ca: '/etc/ssl/ca.pem' } }, 'tls.ca');
  refused({ server: '127.0.0.1:1', tls: { cert: '-----BEGIN CERTIFICATE-----\n' } }, 'tls.key');
  refused({ server: '127.0.0.1:1', tls: { serverName: 'a b' } }, 'tls.serverName');

  const c = client(t, { server: '127.0.0.1:1' });
  const missing = await t.throwsAsync(() => c.executor.listActions({}), { instanceOf: OptionError });
  t.regex(missing!.message, /no executor address given/);
  await t.throwsAsync(() => c.health.conductor.check({}), { message: /no conductor address given/ });
  const stream = c.subscribeAlarms({});
  await t.throwsAsync(
    async () => {
      for await (const _ of stream) break;
    },
    { message: /no inspector address given/ },
  );
  const badDelay = c.watchVims({}, { maxReconnectDelayMs: Number.NaN })[Symbol.asyncIterator]();
  await t.throwsAsync(() => badDelay.next(), { message: /^maxReconnectDelayMs: / });
  // A token function that returns something unusable fails the call, naming it.
  const badToken = client(t, { server: '127.0.0.1:1', token: () => 'has space' });
  await t.throwsAsync(() => badToken.server.listVims({}), { message: /^token \(from the token function\): / });
});

test('delivered ids: out-of-order ids across resumes are handed exactly once, in bounded memory', (t) => {
  // A server that stores ids 1..n and delivers each connection's ids in an order of its own
  // (late commits), cut at random points; each connection replays what is stored after the
  // resume point (only what has committed by then), then goes live.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60 }),
      fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 60, maxLength: 60 }),
      fc.array(fc.integer({ min: 1, max: 80 }), { maxLength: 6 }),
      (n, lateness, cuts) => {
        // Commit order: each id may commit up to `lateness` places after its turn.
        const commitOrder = Array.from({ length: n }, (_, i) => i + 1).sort(
          (a, b) => a + lateness[a - 1]! - (b + lateness[b - 1]!) || a - b,
        );
        const ids = new DeliveredIds({ order: 'unordered', window: 16, after: 0 });
        const handed: number[] = [];
        let committed = 0; // how many of commitOrder have committed
        let resumeAfter: number | undefined;
        const cutPoints = [...new Set(cuts)].sort((a, b) => a - b);
        const connect = () => {
          // A replay of what is stored above the resume point, in id order.
          if (resumeAfter !== undefined) {
            const stored = commitOrder
              .slice(0, committed)
              .filter((id) => id > resumeAfter!)
              .sort((a, b) => a - b);
            for (const id of stored) if (ids.accept(id)) handed.push(id);
          }
        };
        connect();
        for (let step = 0; committed < n; step++) {
          if (cutPoints.includes(step)) {
            resumeAfter = ids.connect();
            // While down, a few more commit.
            committed = Math.min(n, committed + 2);
            connect();
            continue;
          }
          const id = commitOrder[committed++]!;
          if (ids.accept(id)) handed.push(id);
        }
        const sorted = [...handed].sort((a, b) => a - b);
        // The window may run over while a replay has not passed the ids it holds (at most 4 ×).
        return handed.length === new Set(handed).size && sorted.length === n && ids.remembered <= 4 * 16;
      },
    ),
  );
  // An id handed a minute ago comes again in the replay of a new connection that resumed below it:
  // it leaves the window only once that replay has passed it, so it is dropped, not taken for a
  // late commit (which is what the window's floor alone would say of it).
  let clock = 0;
  const aged = new DeliveredIds({ order: 'unordered', windowMs: 60_000, now: () => clock });
  t.true(aged.accept(537));
  t.true(aged.accept(538));
  t.is(aged.connect(), 536, 'a live stream resumes just below the lowest id it handed');
  clock = 61_000;
  t.false(aged.accept(537), 'the replay repeats 537: dropped');
  t.false(aged.accept(538), 'and 538');
  t.true(aged.accept(539));
  t.true(aged.accept(530), 'below the replay, after it: a late commit, handed');
  t.is(aged.connect(), 538, 'the replay passed 537 and 538: they left the window, the floor rose');
  const ordered = new DeliveredIds({ order: 'ordered', after: 0 });
  t.true(ordered.accept(3));
  t.false(ordered.accept(3));
  t.false(ordered.accept(2));
  t.is(ordered.resumeAfter(), 3);
  // The trailers the client reads are the ones the roles write.
  t.is(watchResumeTrailer, serverWatchTrailer);
  t.is(alarmResumeTrailer, inspectorAlarmTrailer);
  const live = new DeliveredIds({ order: 'unordered' });
  t.is(live.resumeAfter(), undefined);
  live.hint(40);
  t.is(live.resumeAfter(), 40, "the server's trailer gives a live stream its first resume point");
});

test('the contracts mark every Get and List free of side effects (and SetHostMaintenance idempotent), and only those are retried', (t) => {
  const definitions = [VimServiceDefinition, InspectorServiceDefinition, ExecutorServiceDefinition, VimMonitorAction2ConductorDefinition];
  let reads = 0;
  for (const definition of definitions) {
    const defaults = callDefaults(definition, 1_000, { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 100 });
    for (const [key, method] of Object.entries(definition.methods)) {
      if (method.responseStream) {
        t.false(key in defaults, `${method.name}: a stream gets no deadline and no retry`);
        continue;
      }
      // Reads, and SetHostMaintenance, which asks for a state (IDEMPOTENT): sent twice, the same outcome.
      const safe = /^(Get|List)[A-Z]/.test(method.name) || method.name === 'SetHostMaintenance';
      reads += safe ? 1 : 0;
      t.is(defaults[key]!.retry, safe, `${definition.fullName}/${method.name}`);
      t.is(defaults[key]!.deadline, 1_000);
    }
  }
  t.is(reads, 13);
  t.true(callDefaults(HealthDefinition, 1_000, { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 100 }).check!.retry === true);
});
