// Prometheus metrics as an operator scrapes them: roles started in this
// process on real PostgreSQL (and the OpenStack double for the inspector),
// real TCP targets that close, /metrics read over HTTP and parsed. Then the
// endpoint itself: who may scrape (401/403/200, HTTPS with client
// certificates), and, as `vimmon` processes, `off` binding nothing and a
// taken address failing by name. Last, the log lines of a call: method and
// request id on each, credentials on none.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Metadata, Status, type Channel, type ClientError } from 'nice-grpc';
import { createAuth } from '../common/auth/authenticator.js';
import { createPolicy } from '../common/auth/policy.js';
import { createStaticTokens, hashToken, newToken } from '../common/auth/static-tokens.js';
import { msToDuration as ms } from '../common/duration.js';
import { createLogger } from '../common/logger.js';
import { createMetrics, startMetricsEndpoint, type Metrics } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition, type MonitorPolicy } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startInspector } from '../inspector/main.js';
import { startServer } from '../server/main.js';
import { makeRoleCertificates } from './support/certificates.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { openrcEnv, startOpenStackDouble } from './support/openstack-double.js';
import { openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fast: Partial<MonitorPolicy> = { interval: ms(200), timeout: ms(100), reportInterval: ms(300), staleAfter: ms(1500) };

// --- reading /metrics ------------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text format, line by line: name{label="value",…} number. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample of name whose labels include these; undefined when there is none. */
function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

async function scrape(address: string): Promise<Sample[]> {
  const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/**
 * Scrapes until check(samples) holds, at most 20 s, then once more: a scrape writes the counters
 * out before the database read of the VIM counts answers, so the scrape after the one that saw a
 * status holds every count of what led to it. The failure names what was awaited and shows the last scrape.
 */
async function until(address: string, what: string, check: (s: Sample[]) => boolean): Promise<Sample[]> {
  let last: Sample[] = [];
  try {
    await eventually(
      async () => {
        last = await scrape(address);
        return check(last);
      },
      20_000,
      what,
      100,
    );
    return await scrape(address);
  } catch (err) {
    const vimmon = last.filter((s) => s.name.startsWith('vimmon_') && !s.name.endsWith('_bucket'));
    throw new Error(
      `${(err as Error).message}\nlast scrape:\n${vimmon.map((s) => `${s.name}${JSON.stringify(s.labels)} ${s.value}`).join('\n')}`,
    );
  }
}

async function endpointFor(t: ExecutionContext, metrics: Metrics): Promise<string> {
  const endpoint = await startMetricsEndpoint('127.0.0.1:0', {
    registry: metrics.registry,
    logger: testLogger(),
    variable: 'VIMMON_METRICS_ADDR',
  });
  t.teardown(() => endpoint.close());
  return endpoint.address;
}

function channelFor(t: ExecutionContext, address: string): Channel {
  const channel = createChannel(address);
  t.teardown(() => channel.close());
  return channel;
}

const grpc = (service: string, method: string, type = 'unary') => ({ grpc_type: type, grpc_service: service, grpc_method: method });
const vimService = 'vimmon.tacker.v1.VimService';
const conductorService = 'vimmon.conductor.v1.VimMonitorAction2Conductor';

// --- the monitor mesh -------------------------------------------------------------

test('the monitor mesh: calls by method and code, VIMs by status as a target closes, reports accepted, fenced and rejected, probes by kind', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const metrics = createMetrics();
  const roles: RunningRole[] = [];
  t.teardown(async () => {
    for (const r of roles) await r.stop();
  });
  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0', metrics });
  roles.unshift(conductor);
  const executor = await startExecutor({
    logger,
    address: '127.0.0.1:0',
    conductorTarget: conductor.address,
    reportBackoff: { baseDelayMs: 50, maxDelayMs: 500 },
    metrics,
  });
  roles.unshift(executor);
  const server = await startServer({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: Buffer.alloc(32, 5),
    reconcileIntervalMs: 200,
    startGraceMs: 1_000,
    executorHealthIntervalMs: 100,
    metrics,
  });
  roles.unshift(server);
  const address = await endpointFor(t, metrics);
  const vims = createClient(VimServiceDefinition, channelFor(t, server.address));
  const reports = createClient(VimMonitorAction2ConductorDefinition, channelFor(t, conductor.address));

  // The process and the build, in every role's endpoint.
  const first = await until(address, 'one live executor', (s) => sampleValue(s, 'vimmon_server_live_executors') === 1);
  const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  t.is(sampleValue(first, 'vimmon_build_info', { version }), 1);
  t.true(sampleValue(first, 'process_cpu_seconds_total')! > 0);
  t.true(sampleValue(first, 'process_resident_memory_bytes')! > 0);
  t.not(sampleValue(first, 'nodejs_eventloop_lag_seconds'), undefined);
  for (const status of ['pending', 'reachable', 'unreachable'])
    t.is(sampleValue(first, 'vimmon_vims', { status }), 0, `vimmon_vims{status="${status}"}`);

  // A call for a VIM nobody registered: counted under its method with the code grpc-go names.
  const missing = await t.throwsAsync<ClientError>(vims.getVim({ id: randomUUID() }));
  t.is(missing.code, Status.NOT_FOUND);
  const afterGet = await scrape(address);
  const getVim = grpc(vimService, 'GetVim');
  t.is(sampleValue(afterGet, 'grpc_server_started_total', getVim), 1);
  t.is(sampleValue(afterGet, 'grpc_server_handled_total', { ...getVim, grpc_code: 'NotFound' }), 1);
  t.is(sampleValue(afterGet, 'grpc_server_handled_total', { ...getVim, grpc_code: 'OK' }), undefined);
  t.is(sampleValue(afterGet, 'grpc_server_msg_received_total', getVim), 1);
  t.is(sampleValue(afterGet, 'grpc_server_msg_sent_total', getVim), 0);
  t.is(sampleValue(afterGet, 'grpc_server_handling_seconds_count', getVim), 1);
  t.is(sampleValue(afterGet, 'grpc_server_handling_seconds_bucket', { ...getVim, le: '+Inf' }), 1);

  // A reachable target, then the same target closed.
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const { vim } = await vims.registerVim({ name: 'metrics-tcp', authUrl: target.url, monitor: fast });
  // The conductor counts a report once its statement has answered, a moment after the commit the count of VIMs reads.
  const reachable = await until(
    address,
    'the VIM counted reachable, its report accepted',
    (s) =>
      sampleValue(s, 'vimmon_vims', { status: 'reachable' }) === 1 &&
      sampleValue(s, 'vimmon_conductor_reports_total', { outcome: 'accepted' })! >= 1,
  );
  t.is(sampleValue(reachable, 'vimmon_vims', { status: 'pending' }), 0);
  t.is(sampleValue(reachable, 'vimmon_vim_unreachable', { vim_id: vim!.id }), undefined, 'no series for a reachable VIM');
  t.is(sampleValue(reachable, 'vimmon_executor_actions', { executor: executor.address }), 1);
  t.true(sampleValue(reachable, 'vimmon_probe_duration_seconds_count', { kind: 'tcp', outcome: 'ok' })! >= 1);
  t.true(sampleValue(reachable, 'vimmon_conductor_reports_total', { outcome: 'accepted' })! >= 1);
  t.true(sampleValue(reachable, 'vimmon_conductor_reports_per_statement_count')! >= 1);
  t.is(sampleValue(reachable, 'grpc_server_handled_total', { ...grpc(vimService, 'RegisterVim'), grpc_code: 'OK' }), 1);
  t.true(
    sampleValue(reachable, 'grpc_server_handled_total', {
      ...grpc('vimmon.executor.v1.ExecutorService', 'StartAction'),
      grpc_code: 'OK',
    })! >= 1,
  );

  await target.close();
  const unreachable = await until(
    address,
    'the VIM counted unreachable',
    (s) => sampleValue(s, 'vimmon_vims', { status: 'unreachable' }) === 1,
  );
  t.is(sampleValue(unreachable, 'vimmon_vims', { status: 'reachable' }), 0);
  t.is(sampleValue(unreachable, 'vimmon_vim_unreachable', { vim_id: vim!.id, vim_name: 'metrics-tcp' }), 1);
  t.true(sampleValue(unreachable, 'vimmon_probe_duration_seconds_count', { kind: 'tcp', outcome: 'fail' })! >= 1);

  // Reports from an action that is not the VIM's: fenced; a malformed one: rejected.
  const before = await scrape(address);
  const fencedBefore = sampleValue(before, 'vimmon_conductor_reports_total', { outcome: 'fenced' })!;
  const rejectedBefore = sampleValue(before, 'vimmon_conductor_reports_total', { outcome: 'rejected' })!;
  const answer = await reports.updateVim({ vimId: vim!.id, actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE });
  t.is(answer.status, VimStatus.VIM_STATUS_BAD_ACTION);
  const bad = await t.throwsAsync<ClientError>(
    reports.updateVim({ vimId: 'not-a-uuid', actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE }),
  );
  t.is(bad.code, Status.INVALID_ARGUMENT);
  const after = await scrape(address);
  t.true(sampleValue(after, 'vimmon_conductor_reports_total', { outcome: 'fenced' })! >= fencedBefore + 1);
  t.true(sampleValue(after, 'vimmon_conductor_reports_total', { outcome: 'rejected' })! >= rejectedBefore + 1);
  t.is(sampleValue(after, 'grpc_server_handled_total', { ...grpc(conductorService, 'UpdateVim'), grpc_code: 'InvalidArgument' }), 1);

  // A WatchVims stream: open while it runs, Canceled when its client leaves.
  const watching = new AbortController();
  const stream = vims.watchVims({}, { signal: watching.signal });
  const reading = (async () => {
    try {
      for await (const _ of stream);
    } catch {}
  })();
  const watched = await until(address, 'one WatchVims stream', (s) => sampleValue(s, 'vimmon_watch_streams') === 1);
  t.is(sampleValue(watched, 'grpc_server_started_total', grpc(vimService, 'WatchVims', 'server_stream')), 1);
  watching.abort();
  await reading;
  const left = await until(
    address,
    'the stream gone, Canceled',
    (s) =>
      sampleValue(s, 'vimmon_watch_streams') === 0 &&
      sampleValue(s, 'grpc_server_handled_total', { ...grpc(vimService, 'WatchVims', 'server_stream'), grpc_code: 'Canceled' }) === 1,
  );
  t.is(sampleValue(left, 'grpc_server_handled_total', { ...grpc(vimService, 'WatchVims', 'server_stream'), grpc_code: 'OK' }), undefined);
  t.is(sampleValue(left, 'vimmon_watch_streams_cut_total'), 0);

  // The executor gone: no live executor, and the reconciler replaces nothing while none is
  // live (past the action's 1.5 s stale limit and many 200 ms passes), rather than claim in vain.
  await executor.stop();
  await until(address, 'no live executor', (s) => sampleValue(s, 'vimmon_server_live_executors') === 0);
  await new Promise((r) => setTimeout(r, 3_000));
  const gone = await scrape(address);
  t.is(sampleValue(gone, 'vimmon_reconciler_replacements_total', { reason: 'stale' }), 0);
  t.is(sampleValue(gone, 'vimmon_executor_actions', { executor: executor.address }), undefined, 'a stopped executor is not read');

  // Deregistered: counted nowhere.
  await vims.deregisterVim({ id: vim!.id });
  const deregistered = await until(
    address,
    'the VIM gone from the counts',
    (s) => sampleValue(s, 'vimmon_vims', { status: 'unreachable' }) === 0,
  );
  t.is(sampleValue(deregistered, 'vimmon_vim_unreachable', { vim_id: vim!.id }), undefined);
});

test('a database that does not answer: the VIM counts keep their last value and the failed reads are counted', async (t) => {
  const metrics = createMetrics({ processMetrics: false, censusTimeoutMs: 200 });
  const address = await endpointFor(t, metrics);
  let answer: 'ok' | 'fail' | 'hang' = 'ok';
  const stop = metrics.server().read({
    census: async () => {
      if (answer === 'fail') throw new Error('connection refused');
      if (answer === 'hang') await new Promise((r) => setTimeout(r, 5_000));
      return { byStatus: { pending: 1, reachable: 2, unreachable: 1 }, unreachable: [{ id: 'v-1', name: 'edge "1"' }] };
    },
    liveExecutors: () => 3,
    watchStreams: () => 0,
  });
  t.teardown(stop);
  const ok = await scrape(address);
  t.is(sampleValue(ok, 'vimmon_vims', { status: 'reachable' }), 2);
  t.is(sampleValue(ok, 'vimmon_vim_unreachable', { vim_id: 'v-1', vim_name: 'edge "1"' }), 1, 'a quote in a name is escaped and read back');
  t.is(sampleValue(ok, 'vimmon_server_live_executors'), 3);
  for (const mode of ['fail', 'hang'] as const) {
    answer = mode;
    const started = Date.now();
    const s = await scrape(address);
    if (mode === 'hang') t.true(Date.now() - started < 4_000, 'a scrape does not wait for a read past its timeout');
    t.is(sampleValue(s, 'vimmon_vims', { status: 'reachable' }), 2, `${mode}: the last value`);
    t.is(sampleValue(s, 'vimmon_vim_unreachable', { vim_id: 'v-1' }), 1);
  }
  t.true(sampleValue(await scrape(address), 'vimmon_vims_read_errors_total')! >= 2);
});

// --- the inspector ------------------------------------------------------------------

test('the inspector: alarms raised by type, event to alarm, Nova calls by operation, the VM cache, subscribers and the one cut', async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  d.addServer({ host: 'compute-m', name: 'vm-1' });
  d.addServer({ host: 'compute-m', name: 'vm-2' });
  const db = await createTestDatabase(t);
  const metrics = createMetrics({ processMetrics: false });
  const amqpUrl = process.env.VIMMON_AMQP_URL;
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: openrcEnv(d),
    amqpUrl,
    resyncIntervalMs: 60_000,
    // One alarm waiting at most: the three of the fault below cut the subscriber that does not read.
    subscriberQueueSize: 1,
    novaRetry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 100 },
    metrics,
  });
  t.teardown(() => inspector.stop());
  const address = await endpointFor(t, metrics);

  const cached = await until(address, 'the snapshot of two VMs', (s) => sampleValue(s, 'vimmon_vm_cache_vms') === 2);
  const age = sampleValue(cached, 'vimmon_vm_cache_snapshot_age_seconds')!;
  t.true(age >= 0 && age < 60, `snapshot age ${age}`);
  t.true(sampleValue(cached, 'vimmon_nova_calls_total', { operation: 'list_servers', outcome: 'ok' })! >= 1);
  if (amqpUrl) await until(address, 'the notifications consumer connected', (s) => sampleValue(s, 'vimmon_rabbitmq_connected') === 1);
  else t.is(sampleValue(cached, 'vimmon_rabbitmq_connected'), undefined, 'no consumer, no series');

  // A subscriber that never reads.
  const client = createClient(InspectorServiceDefinition, channelFor(t, inspector.address));
  const subscription = client.subscribeAlarms({ liveOnly: true })[Symbol.asyncIterator]();
  const ended = subscription.next().then(
    () => undefined,
    (err: unknown) => err as ClientError,
  );
  await until(address, 'one subscriber', (s) => sampleValue(s, 'vimmon_alarm_subscribers') === 1);

  const res = await fetch(`http://${inspector.httpAddress}/events`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify([
      { time: new Date().toISOString(), type: 'compute.host.down', details: { hostname: 'compute-m', status: 'down' } },
    ]),
  });
  t.is(res.status, 202);
  const raised = await until(
    address,
    'the alarms, the Nova calls',
    (s) =>
      sampleValue(s, 'vimmon_alarms_raised_total', { type: 'host_down' }) === 1 &&
      sampleValue(s, 'vimmon_nova_calls_total', { operation: 'reset_state', outcome: 'ok' }) === 2 &&
      sampleValue(s, 'vimmon_nova_calls_total', { operation: 'force_down', outcome: 'ok' }) === 1,
  );
  t.is(sampleValue(raised, 'vimmon_alarms_raised_total', { type: 'instance_down' }), 2);
  t.is(sampleValue(raised, 'vimmon_alarms_raised_total', { type: 'vim_unreachable' }), 0);
  t.is(sampleValue(raised, 'vimmon_event_to_alarm_seconds_count'), 1);
  t.true(sampleValue(raised, 'vimmon_event_to_alarm_seconds_sum')! < 5);
  t.is(sampleValue(raised, 'vimmon_nova_call_duration_seconds_count', { operation: 'reset_state', outcome: 'ok' }), 2);
  t.is(sampleValue(raised, 'vimmon_nova_calls_total', { operation: 'reset_state', outcome: 'error' }), 0);

  const err = await ended;
  t.is(err?.code, Status.RESOURCE_EXHAUSTED);
  const cut = await until(address, 'the subscriber cut', (s) => sampleValue(s, 'vimmon_alarm_subscribers') === 0);
  t.is(sampleValue(cut, 'vimmon_alarm_subscribers_cut_total'), 1);
  t.is(
    sampleValue(cut, 'grpc_server_handled_total', {
      ...grpc('vimmon.inspector.v1.InspectorService', 'SubscribeAlarms', 'server_stream'),
      grpc_code: 'ResourceExhausted',
    }),
    1,
  );

  // Nova failing: counted as errors, by operation.
  d.failNext(10, 500, (m, p) => m === 'PUT' && p.includes('os-services'));
  const up = await fetch(`http://${inspector.httpAddress}/events`, {
    method: 'PUT',
    body: JSON.stringify({ type: 'compute.host.down', details: { hostname: 'compute-m', status: 'up' } }),
  });
  t.is(up.status, 202);
  const failing = await until(
    address,
    'un-forcing the host failing',
    (s) => sampleValue(s, 'vimmon_nova_calls_total', { operation: 'force_up', outcome: 'error' })! >= 3,
  );
  t.is(sampleValue(failing, 'vimmon_alarms_raised_total', { type: 'host_recovered' }), 1);
});

// --- the endpoint ---------------------------------------------------------------------

test('who may scrape: no or a bad token 401, a reader 403, admin, monitor and an identity the policy names 200; GET only; / points to /metrics', async (t) => {
  const tokens = { admin: newToken(), reader: newToken(), monitor: newToken(), prometheus: newToken() };
  const auth = createAuth({
    mode: 'enforced',
    staticTokens: createStaticTokens([
      { name: 'admin', sha256: hashToken(tokens.admin), roles: ['admin'], projects: [] },
      { name: 'reader', sha256: hashToken(tokens.reader), roles: ['reader'], projects: ['p-1'] },
      { name: 'monitor', sha256: hashToken(tokens.monitor), roles: ['monitor'], projects: [] },
      { name: 'prometheus', sha256: hashToken(tokens.prometheus), roles: [], projects: [] },
    ]),
    policy: createPolicy([['metrics', ['admin', 'monitor', 'identity:token:prometheus']]]),
  });
  const metrics = createMetrics({ processMetrics: false });
  const endpoint = await startMetricsEndpoint('127.0.0.1:0', {
    registry: metrics.registry,
    logger: testLogger(),
    variable: 'VIMMON_METRICS_ADDR',
    authorize: (rule, credentials) => auth.authorize(rule, credentials),
  });
  t.teardown(() => endpoint.close());
  const get = (token?: string, pathname = '/metrics', method = 'GET') =>
    fetch(`http://${endpoint.address}${pathname}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });

  const anonymous = await get();
  t.is(anonymous.status, 401);
  t.is(anonymous.headers.get('www-authenticate'), 'Bearer');
  t.false((await anonymous.text()).includes('vimmon_build_info'));
  t.is((await get('vmt_not-a-token')).status, 401);
  t.is((await get(tokens.reader)).status, 403);
  t.is((await get(undefined, '/nowhere')).status, 401, 'a stranger learns nothing of the paths');
  for (const who of ['admin', 'monitor', 'prometheus'] as const) {
    const res = await get(tokens[who]);
    t.is(res.status, 200, who);
    t.regex(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    t.regex(await res.text(), /^vimmon_build_info\{version="[^"]+"\} 1$/m);
  }
  const pointer = await get(tokens.admin, '/');
  t.is(pointer.status, 200);
  t.regex(await pointer.text(), /\/metrics/);
  t.is((await get(tokens.admin, '/nowhere')).status, 404);
  const post = await get(tokens.admin, '/metrics', 'POST');
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'GET, HEAD');
  const head = await get(tokens.admin, '/metrics', 'HEAD');
  t.is(head.status, 200);
  t.is(await head.text(), '');
});

test('with TLS: HTTPS with the role certificate; a client certificate of the monitor identity is let in, none without a token is not', async (t) => {
  const certs = makeRoleCertificates();
  t.teardown(() => certs.remove());
  const auth = createAuth({ mode: 'enforced', trustDomain: certs.trustDomain });
  const metrics = createMetrics({ processMetrics: false });
  const endpoint = await startMetricsEndpoint('127.0.0.1:0', {
    registry: metrics.registry,
    logger: testLogger(),
    variable: 'VIMMON_SERVER_METRICS_ADDR',
    tls: { ...certs.role('server'), ca: certs.ca, clientCertificates: 'optional' },
    authorize: (rule, credentials) => auth.authorize(rule, credentials),
  });
  t.teardown(() => endpoint.close());
  const get = (client?: { cert: Buffer; key: Buffer }) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const [host, port] = endpoint.address.split(':');
      const req = httpsRequest({ host, port: Number(port), path: '/metrics', ca: certs.ca, servername: 'localhost', ...client }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
  t.is((await get()).status, 401);
  t.is((await get(certs.role('executor'))).status, 403, 'the executor identity holds no grant of the metrics rule');
  const monitor = await get(certs.role('monitor'));
  t.is(monitor.status, 200);
  t.regex(monitor.body, /vimmon_build_info/);
  t.is((await get(certs.stranger)).status, 401, "another CA's certificate is no identity");
});

// --- `vimmon` processes: off, port 0, a taken port, beyond loopback ---------------------

/** Inodes of the TCP sockets this process listens on (its fds matched against /proc/net/tcp*). */
function listeningSockets(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {}
  }
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && inodes.has(cols[9]!)) n++;
    }
  }
  return n;
}

interface Child {
  pid: number;
  log(): string;
  exited: Promise<number | null>;
  waitFor(text: string): Promise<void>;
}

/** `vimmon executor` (no database needed) from the sources, as an operator starts it. */
function vimmonExecutor(t: ExecutionContext, env: Record<string, string>): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'executor'], {
    cwd: root,
    env: { ...process.env, VIMMON_EXECUTOR_ADDR: '127.0.0.1:0', VIMMON_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (c) => {
      code = c;
      resolve(c);
    }),
  );
  t.teardown(() => {
    if (code === undefined) child.kill('SIGKILL');
  });
  return {
    pid: child.pid!,
    log: () => log,
    exited,
    waitFor: (text) =>
      eventually(() => log.includes(text) || code !== undefined, 60_000, text).then(() => {
        if (!log.includes(text)) throw new Error(`exited (${code}) without ${JSON.stringify(text)}:\n${log.slice(-2000)}`);
      }),
  };
}

test('a process: off binds nothing; port 0 serves and logs the address; a taken address stops it naming the variable; beyond loopback needs security', async (t) => {
  const off = vimmonExecutor(t, { VIMMON_EXECUTOR_METRICS_ADDR: 'off' });
  const on = vimmonExecutor(t, { VIMMON_EXECUTOR_METRICS_ADDR: '127.0.0.1:0' });
  const holder: Server = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const takenPort = (holder.address() as { port: number }).port;
  const taken = vimmonExecutor(t, { VIMMON_EXECUTOR_METRICS_ADDR: `127.0.0.1:${takenPort}` });
  const exposed = vimmonExecutor(t, { VIMMON_EXECUTOR_METRICS_ADDR: '0.0.0.0:0' });

  await off.waitFor('"vimmon running"');
  t.false(off.log().includes('metrics listening'));
  t.is(listeningSockets(off.pid), 1, 'the gRPC port alone');

  await on.waitFor('"vimmon running"');
  t.is(listeningSockets(on.pid), 2, 'gRPC and /metrics');
  const line = on
    .log()
    .split('\n')
    .find((l) => l.includes('"metrics listening"'))!;
  const { address } = JSON.parse(line) as { address: string };
  t.regex(address, /^127\.0\.0\.1:[1-9]\d*$/);
  const grpcAddress = /"executor@([^"]+)"/.exec(on.log())![1]!;
  const samples = await scrape(address);
  t.is(sampleValue(samples, 'vimmon_executor_actions', { executor: grpcAddress }), 0);
  t.is(sampleValue(samples, 'vimmon_vims', { status: 'pending' }), undefined, "an executor's endpoint has no server metrics");

  t.is(await taken.exited, 1);
  t.true(taken.log().includes(`VIMMON_EXECUTOR_METRICS_ADDR: 127.0.0.1:${takenPort} is already in use`), taken.log().slice(-2000));
  t.false(taken.log().includes('"vimmon running"'));

  t.is(await exposed.exited, 2);
  t.regex(exposed.log(), /VIMMON_EXECUTOR_METRICS_ADDR=0\.0\.0\.0:0 is not a loopback address/);
});

// --- per-call logs ----------------------------------------------------------------------

test('each log line of a call carries its method and request id (the client’s when well-formed, returned in x-request-id); no credential reaches the log', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', write: (l) => lines.push(l) });
  const token = newToken();
  const auth = createAuth({
    mode: 'enforced',
    staticTokens: createStaticTokens([{ name: 'executor-1', sha256: hashToken(token), roles: ['service:executor'], projects: [] }]),
  });
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0', auth });
  t.teardown(() => conductor.stop());
  const reports = createClient(VimMonitorAction2ConductorDefinition, channelFor(t, conductor.address));
  const method = '/vimmon.conductor.v1.VimMonitorAction2Conductor/UpdateVim';

  const call = async (requestId: string) => {
    let header: Metadata | undefined;
    const vimId = randomUUID();
    const answer = await reports.updateVim(
      { vimId, actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE },
      { metadata: Metadata({ authorization: `Bearer ${token}`, 'x-request-id': requestId }), onHeader: (h) => (header = h) },
    );
    t.is(answer.status, VimStatus.VIM_STATUS_BAD_ACTION, 'no such VIM: fenced, and logged at debug');
    const line = await eventually(() => lines.find((l) => l.includes(vimId)), 5_000, 'the log line of the call');
    return { line: JSON.parse(line) as Record<string, unknown>, returned: header?.get('x-request-id') };
  };

  const sent = 'req-42.a_B';
  const kept = await call(sent);
  t.like(kept.line, { msg: 'report fenced', role: 'conductor', method, requestId: sent });
  t.is(kept.returned, sent);

  for (const bad of ['has space', 'x'.repeat(65), 'semi;colon']) {
    const made = await call(bad);
    t.regex(made.returned as string, /^[0-9a-f-]{36}$/, `${JSON.stringify(bad)} replaced`);
    t.is(made.line.requestId, made.returned);
    t.is(made.line.method, method);
  }

  // A caller with a token the conductor does not know: refused, and its token is in no line either.
  const stranger = newToken();
  const refused = await t.throwsAsync<ClientError>(
    reports.updateVim(
      { vimId: randomUUID(), actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE },
      { metadata: Metadata({ authorization: `Bearer ${stranger}` }) },
    ),
  );
  t.is(refused.code, Status.UNAUTHENTICATED);
  for (const l of lines) {
    t.false(l.includes(token), l);
    t.false(l.includes(stranger), l);
  }

  // Whatever a line is given, under any key or inside a text, a credential comes out redacted.
  const out: string[] = [];
  const plain = createLogger({ level: 'debug', write: (l) => out.push(l) });
  plain.info(`retrying with Bearer ${token}`, {
    headers: { Authorization: `Bearer ${token}`, 'X-Auth-Token': 'gAAAAkeystone', cookie: 's=1' },
    note: `the dashboard sent ${token} again`,
    request: { access_token: 'at', client_secret: 'cs' },
  });
  const text = out.join('\n');
  for (const secret of [token, 'gAAAAkeystone', 's=1', '"at"', '"cs"']) t.false(text.includes(secret), `${secret} in ${text}`);
  t.regex(text, /retrying with Bearer \[Redacted\]/);
});
