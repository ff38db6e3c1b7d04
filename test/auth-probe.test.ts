// PROBE_KIND_AUTH: a VIM whose endpoint answers but whose credentials no
// longer work is UNREACHABLE with the reason CREDENTIALS_REJECTED, found
// within one report interval, not REACHABLE. Against the Keystone double
// (password expired, token revoked) and a Kubernetes API server double over
// HTTPS (bearer token revoked, OpenID Connect user refused), through the
// whole mesh; the reason reaches the VIM, its events, WatchVims and the
// inspector's alarms; no secret reaches a log line, ListActions or WatchActions.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status, type Channel } from 'nice-grpc';
import { createLogger } from '../common/logger.js';
import { vimChange } from '../cli/vim-request.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { VimStatus, VimStatusReason } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import {
  ExecutorServiceDefinition,
  WatchActionsResponse,
  type ExecutorServiceClient,
  type ProbeRound,
} from '../gen/vimmon/executor/v1/executor_service.js';
import { AlarmType, InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import {
  ProbeKind,
  VimServiceDefinition,
  VimType,
  type DeepPartial,
  type MonitorPolicy,
  type RegisterVimRequest,
  type VimServiceClient,
  type WatchVimsResponse,
} from '../gen/vimmon/tacker/v1/vim_service.js';
import { startInspector } from '../inspector/main.js';
import { startServer } from '../server/main.js';
import { makeCertificates, type Certificates } from './support/certificates.js';
import { createTestDatabase } from './support/database.js';
import { startKubernetesDouble, type KubernetesDouble } from './support/kubernetes-double.js';
import { testLogger } from './support/logger.js';
import { startMesh, type Mesh } from './support/mesh.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { startRecordingExecutor } from './support/recording-executor.js';
import { eventually } from './support/wait.js';

const reportIntervalMs = 2_000;
const intervalMs = 500;
// Three failed rounds before a VIM with no answer is UNREACHABLE: a round lost to a busy
// machine is not what is tested here. A refusal is an answer and decides at once.
const monitor: DeepPartial<MonitorPolicy> = {
  probe: ProbeKind.PROBE_KIND_AUTH,
  interval: { seconds: 0, nanos: intervalMs * 1e6 },
  timeout: { seconds: 0, nanos: intervalMs * 1e6 },
  unreachableAfter: 3,
  reportInterval: { seconds: reportIntervalMs / 1000, nanos: 0 },
};

let certs: Certificates;
test.before(() => {
  certs = makeCertificates();
});
test.after.always(() => certs?.remove());

async function keystone(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

async function kubernetes(t: ExecutionContext): Promise<KubernetesDouble> {
  const d = await startKubernetesDouble({ cert: certs.cert, key: certs.key });
  t.teardown(() => d.close());
  return d;
}

function openstackVim(d: OpenStackDouble, name: string): DeepPartial<RegisterVimRequest> {
  return {
    name,
    type: VimType.VIM_TYPE_OPENSTACK,
    authUrl: d.authUrl,
    project: d.credentials.projectName,
    credentials: {
      password: {
        username: d.credentials.username,
        password: d.credentials.password,
        userDomainName: d.credentials.userDomainName,
        projectDomainName: d.credentials.projectDomainName,
      },
    },
    monitor,
  };
}

/** Every WatchActions event of these VIMs from now on. */
function watchActions(t: ExecutionContext, client: ExecutorServiceClient, vimIds: string[]) {
  const abort = new AbortController();
  const events: WatchActionsResponse[] = [];
  void (async () => {
    for await (const e of client.watchActions({ vimIds }, { signal: abort.signal })) events.push(e);
  })().catch(() => {});
  t.teardown(() => abort.abort());
  const rounds = () => events.filter((e) => e.round).map((e) => e.round!);
  return { events, rounds };
}

/** Every WatchVims message of these VIMs from now on. */
function watchVims(t: ExecutionContext, client: VimServiceClient, vimIds: string[]) {
  const abort = new AbortController();
  const messages: WatchVimsResponse[] = [];
  void (async () => {
    for await (const m of client.watchVims({ vimIds }, { signal: abort.signal })) messages.push(m);
  })().catch(() => {});
  t.teardown(() => abort.abort());
  return messages;
}

async function until(mesh: Mesh, id: string, status: VimStatus, reason: VimStatusReason, what: string) {
  return eventually(
    async () => {
      const { vim } = await mesh.vims().getVim({ id });
      return vim!.status === status && vim!.statusReason === reason && vim;
    },
    30_000,
    what,
  );
}

const keystoneTokenPosts = (d: OpenStackDouble) =>
  d.calls.filter((c) => c.method === 'POST' && c.path.startsWith('/identity/v3/auth/tokens'));

test('OpenStack: an expired password is CREDENTIALS_REJECTED at the first check after it expired; checks come at most once per report_interval', async (t) => {
  const mesh = await startMesh(t);
  const d = await keystone(t);
  const { vim } = await mesh.vims().registerVim(openstackVim(d, 'keystone-password'));
  const id = vim!.id;
  const actions = watchActions(t, mesh.executorClient(0), [id]);
  const changes = watchVims(t, mesh.vims(), [id]);
  await until(mesh, id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'REACHABLE');

  // Let several rounds pass: the credentials are checked on some of them only.
  await eventually(() => actions.rounds().length >= 8, 30_000, 'eight rounds');
  const checked = actions.rounds().filter((r) => r.credentialsChecked);
  t.true(checked.length >= 1);
  t.true(checked.length < actions.rounds().length, 'not every round authenticates');
  for (let i = 1; i < checked.length; i++) {
    const gap = checked[i]!.startedAt!.getTime() - checked[i - 1]!.startedAt!.getTime();
    t.true(gap >= reportIntervalMs - 50, `two checks ${gap} ms apart, report_interval ${reportIntervalMs} ms`);
  }
  // Each check is one Keystone token request with the VIM's project scope and no catalog.
  const posts = keystoneTokenPosts(d);
  t.true(posts.length >= checked.length && posts.length <= checked.length + 1);
  t.regex(posts[0]!.path, /\?nocatalog$/);
  const scope = (posts[0]!.body as { auth: { scope: { project: { name: string } } } }).auth.scope;
  t.is(scope.project.name, d.credentials.projectName);
  t.is(posts[0]!.status, 201);

  const expiredAt = Date.now();
  d.passwordExpired = true;
  const rejected = await until(
    mesh,
    id,
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED,
    'CREDENTIALS_REJECTED',
  );
  t.is(rejected.status, VimStatus.VIM_STATUS_UNREACHABLE);
  // The first check after the expiry found it: within one report interval (and the round it waited for).
  const firstCheckAfter = actions.rounds().find((r) => r.credentialsChecked && r.startedAt!.getTime() >= expiredAt) as ProbeRound;
  t.truthy(firstCheckAfter);
  t.is(firstCheckAfter.statusReason, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  t.is(firstCheckAfter.decidedStatus, VimStatus.VIM_STATUS_UNREACHABLE);
  t.regex(firstCheckAfter.error, /^Keystone refused the credentials: 401 The password is expired/);
  t.true(firstCheckAfter.startedAt!.getTime() - expiredAt <= reportIntervalMs + intervalMs + 3_000);
  // Between two checks the refusal stands, though the endpoint answers every GET.
  await eventually(
    () =>
      actions.rounds().filter((r) => !r.credentialsChecked && r.startedAt!.getTime() > firstCheckAfter.startedAt!.getTime()).length >= 2,
    30_000,
    'two plain rounds after the refusal',
  );
  for (const r of actions.rounds().filter((r) => r.startedAt!.getTime() > firstCheckAfter.startedAt!.getTime())) {
    t.is(r.decidedStatus, VimStatus.VIM_STATUS_UNREACHABLE);
    t.is(r.statusReason, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  }

  // The reason is on the stored event and on the watchers' change.
  const { events } = await mesh.vims().listVimEvents({ vimId: id });
  const last = events.at(-1)!;
  t.is(last.previousStatus, VimStatus.VIM_STATUS_REACHABLE);
  t.is(last.status, VimStatus.VIM_STATUS_UNREACHABLE);
  t.is(last.statusReason, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  await eventually(() => changes.some((c) => c.eventId === last.eventId), 10_000, 'the change on WatchVims');
  t.is(changes.find((c) => c.eventId === last.eventId)!.statusReason, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);

  // The executor holds the password, and shows it to nobody.
  const listed = await mesh.executorClient(0).listActions({ vimIds: [id] });
  t.is(listed.actions[0]!.decidedStatusReason, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  const shown = JSON.stringify([listed, actions.events.map((e) => WatchActionsResponse.toJSON(e))]);
  t.false(shown.includes(d.credentials.password));

  // A new password policy later: the next check accepts it again.
  d.passwordExpired = false;
  await until(mesh, id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'REACHABLE again');
  const back = (await mesh.vims().listVimEvents({ vimId: id })).events.at(-1)!;
  t.is(back.status, VimStatus.VIM_STATUS_REACHABLE);
  t.is(back.statusReason, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED);
});

test('OpenStack: a revoked token is CREDENTIALS_REJECTED (Keystone: 404 Failed to validate token)', async (t) => {
  const mesh = await startMesh(t);
  const d = await keystone(t);
  const token = d.issueToken({ userName: d.credentials.username, projectId: d.projectId, roles: ['admin'] });
  const { vim } = await mesh.vims().registerVim({
    ...openstackVim(d, 'keystone-token'),
    credentials: { token: { bearerToken: token } },
  });
  await until(mesh, vim!.id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'REACHABLE');
  const body = keystoneTokenPosts(d)[0]!.body as { auth: { identity: { methods: string[] } } };
  t.deepEqual(body.auth.identity.methods, ['token']);
  d.revokeToken(token);
  await until(
    mesh,
    vim!.id,
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED,
    'CREDENTIALS_REJECTED',
  );
  const { actions } = await mesh.executorClient(0).listActions({ vimIds: [vim!.id] });
  t.regex(actions[0]!.lastRound!.error, /^Keystone refused the credentials: 404 Failed to validate token/);
});

test('Kubernetes: a revoked bearer token is CREDENTIALS_REJECTED; an API server that stops answering is UNREACHABLE without a reason', async (t) => {
  const mesh = await startMesh(t);
  const revoked = await kubernetes(t);
  const stopped = await kubernetes(t);
  const kubeVim = (d: KubernetesDouble, name: string, token: string): DeepPartial<RegisterVimRequest> => ({
    name,
    type: VimType.VIM_TYPE_KUBERNETES,
    authUrl: d.url,
    credentials: { token: { bearerToken: token }, sslCaCert: certs.ca.toString() },
    monitor,
  });
  revoked.tokens.add('sa-token-a');
  stopped.tokens.add('sa-token-b');
  const a = (await mesh.vims().registerVim(kubeVim(revoked, 'k8s-revoked', 'sa-token-a'))).vim!;
  const b = (await mesh.vims().registerVim(kubeVim(stopped, 'k8s-stopped', 'sa-token-b'))).vim!;
  await until(mesh, a.id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'a REACHABLE');
  await until(mesh, b.id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'b REACHABLE');
  t.true(revoked.versionCalls.some((c) => c.scheme === 'Bearer' && c.status === 200));

  revoked.tokens.delete('sa-token-a');
  await stopped.close();
  await until(mesh, a.id, VimStatus.VIM_STATUS_UNREACHABLE, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED, 'a rejected');
  await until(mesh, b.id, VimStatus.VIM_STATUS_UNREACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'b UNREACHABLE, no reason');
  const { actions } = await mesh.executorClient(0).listActions({ vimIds: [a.id] });
  t.regex(actions[0]!.lastRound!.error, /^the Kubernetes API server refused the credentials: 401/);
  t.true(revoked.versionCalls.some((c) => c.scheme === 'Bearer' && c.status === 401));
});

test('Kubernetes with OpenID Connect: the id_token of a password grant opens /version; a refused user is CREDENTIALS_REJECTED', async (t) => {
  const mesh = await startMesh(t);
  const d = await kubernetes(t);
  d.oidc.users.set('end-user', 'end-user-pa55');
  const { vim } = await mesh.vims().registerVim({
    name: 'k8s-oidc',
    type: VimType.VIM_TYPE_KUBERNETES,
    authUrl: d.url,
    credentials: {
      oidc: {
        oidcTokenUrl: d.oidcTokenUrl,
        clientId: d.oidc.clientId,
        clientSecret: d.oidc.clientSecret,
        username: 'end-user',
        password: 'end-user-pa55',
      },
      sslCaCert: certs.ca.toString(),
    },
    monitor,
  });
  await until(mesh, vim!.id, VimStatus.VIM_STATUS_REACHABLE, VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED, 'REACHABLE');
  t.deepEqual(d.tokenCalls[0], { grantType: 'password', username: 'end-user', status: 200 });
  t.true(
    d.versionCalls.some((c) => c.scheme === 'Bearer' && c.status === 200),
    'the issued id_token opened /version',
  );

  d.oidc.users.set('end-user', 'changed-by-the-user');
  await until(
    mesh,
    vim!.id,
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED,
    'CREDENTIALS_REJECTED',
  );
  const { actions } = await mesh.executorClient(0).listActions({ vimIds: [vim!.id] });
  t.is(actions[0]!.lastRound!.error, 'the OpenID provider refused the credentials: 401 invalid_grant: Invalid user credentials');
});

test('credentials go only to a verified endpoint: without the VIM CA a private-CA API server is CERTIFICATE_REJECTED and gets no credential', async (t) => {
  const mesh = await startMesh(t);
  const d = await kubernetes(t);
  d.tokens.add('sa-token');
  const { vim } = await mesh.vims().registerVim({
    name: 'k8s-no-ca',
    type: VimType.VIM_TYPE_KUBERNETES,
    authUrl: d.url,
    credentials: { token: { bearerToken: 'sa-token' } },
    monitor,
  });
  await until(
    mesh,
    vim!.id,
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatusReason.VIM_STATUS_REASON_CERTIFICATE_REJECTED,
    'CERTIFICATE_REJECTED',
  );
  t.is(d.versionCalls.length, 0);
  const { actions } = await mesh.executorClient(0).listActions({ vimIds: [vim!.id] });
  t.regex(actions[0]!.lastRound!.error, /^certificate verify failed: /);
});

test('PROBE_KIND_AUTH needs credentials; only its actions carry them; the contracts refuse a reason without UNREACHABLE', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const recording = await startRecordingExecutor(logger);
  const server = await startServer({
    logger,
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [recording.address],
    key: Buffer.alloc(32, 5),
    reconcileIntervalMs: 60_000,
  });
  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0' });
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: conductor.address });
  const channels: Channel[] = [];
  const channel = (address: string) => {
    const c = createChannel(address);
    channels.push(c);
    return c;
  };
  t.teardown(async () => {
    for (const c of channels) c.close();
    await server.stop();
    await executor.stop();
    await conductor.stop();
    await recording.stop();
  });
  const vims = createClient(VimServiceDefinition, channel(server.address));
  const refused = async (p: Promise<unknown>, field: string) => {
    const err = (await t.throwsAsync(p)) as unknown as { code: Status; details: string };
    t.is(err.code, Status.INVALID_ARGUMENT, err.details);
    t.true(err.details.startsWith(`${field}:`), err.details);
  };
  await refused(vims.registerVim({ name: 'none', authUrl: 'http://192.0.2.1:5000/v3', monitor }), 'monitor.probe');

  const tcp = await vims.registerVim({
    name: 'tcp',
    authUrl: 'http://192.0.2.1:5000/v3',
    credentials: { password: { username: 'u', password: 'tcp-secret' } },
  });
  const auth = await vims.registerVim({
    name: 'auth',
    authUrl: 'http://192.0.2.1:5000/v3',
    project: 'nfv',
    credentials: { password: { username: 'u', password: 'auth-secret', userDomainName: 'Default' } },
    monitor,
  });
  const startOf = (vimId: string) => recording.starts.filter((s) => s.vimId === vimId).at(-1)!;
  t.is(startOf(tcp.vim!.id).auth, undefined, 'a TCP probe is given no secret');
  t.is(startOf(auth.vim!.id).auth!.credentials!.password!.password, 'auth-secret');
  t.is(startOf(auth.vim!.id).auth!.project, 'nfv');

  await refused(
    vims
      .updateVim({ vim: { id: tcp.vim!.id, credentials: {} }, updateMask: ['credentials'] })
      .then(() =>
        vims.updateVim({ vim: { id: tcp.vim!.id, monitor: { probe: ProbeKind.PROBE_KIND_AUTH } }, updateMask: ['monitor.probe'] }),
      ),
    'vim.monitor.probe',
  );
  await refused(vims.updateVim({ vim: { id: auth.vim!.id, credentials: {} }, updateMask: ['credentials'] }), 'vim.credentials');
  // Back to TCP: the new action is given no secret.
  await vims.updateVim({ vim: { id: auth.vim!.id, monitor: { probe: ProbeKind.PROBE_KIND_TCP } }, updateMask: ['monitor.probe'] });
  t.is(startOf(auth.vim!.id).auth, undefined);

  const executorClient = createClient(ExecutorServiceDefinition, channel(executor.address));
  const start = (o: Record<string, unknown>) =>
    executorClient.startAction({ actionId: randomUUID(), vimId: randomUUID(), authUrl: 'http://192.0.2.1:5000/v3', ...o });
  const credentials = { password: { username: 'u', password: 'p' } };
  await refused(start({ auth: { credentials } }), 'auth');
  await refused(start({ monitor: { probe: ProbeKind.PROBE_KIND_AUTH } }), 'auth');
  await refused(start({ monitor: { probe: ProbeKind.PROBE_KIND_AUTH }, auth: { credentials: {} } }), 'auth.credentials');
  await refused(
    start({
      monitor: { probe: ProbeKind.PROBE_KIND_AUTH },
      auth: { credentials: { oidc: { oidcTokenUrl: 'https://idp/t', clientId: 'c', username: 'u', password: 'p' } } },
    }),
    'auth.credentials.oidc',
  );

  const reports = createClient(VimMonitorAction2ConductorDefinition, channel(conductor.address));
  await refused(
    reports.updateVim({
      vimId: randomUUID(),
      actionId: randomUUID(),
      status: VimStatus.VIM_STATUS_REACHABLE,
      statusReason: VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED,
    }),
    'status_reason',
  );
  await refused(
    reports.updateVim({
      vimId: randomUUID(),
      actionId: randomUUID(),
      status: VimStatus.VIM_STATUS_UNREACHABLE,
      statusReason: 99 as VimStatusReason,
    }),
    'status_reason',
  );
});

test('alarms: CREDENTIALS_REJECTED raises VIM_CREDENTIALS_REJECTED, no answer then VIM_UNREACHABLE, REACHABLE VIM_RECOVERED; a change of reason alone is an event', async (t) => {
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger: testLogger(), orm: db.orm, address: '127.0.0.1:0' });
  const inspector = await startInspector({
    logger: testLogger(),
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    resyncIntervalMs: 60_000,
  });
  const cch = createChannel(conductor.address);
  const ich = createChannel(inspector.address);
  t.teardown(async () => {
    cch.close();
    ich.close();
    await inspector.stop();
    await conductor.stop();
  });
  const vimId = randomUUID();
  const actionId = randomUUID();
  await db.orm.em.fork().execute(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
       report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     values (?, 'alarmed', 'openstack', 'http://192.0.2.1:5000/v3', 'auth', 1000, 500, 1, 1, 10000, 30000, 'REACHABLE', ?, now(), now(), now(), now())`,
    [vimId, actionId],
  );
  const reports = createClient(VimMonitorAction2ConductorDefinition, cch);
  const report = (status: VimStatus, statusReason = VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED) =>
    reports.updateVim({ vimId, actionId, status, statusReason });
  const alarms = createClient(InspectorServiceDefinition, ich);
  const types = async () => (await alarms.listAlarms({ filter: { vimIds: [vimId] } })).alarms.map((a) => a.type);

  const answer = await report(VimStatus.VIM_STATUS_UNREACHABLE, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  t.deepEqual(answer, { status: VimStatus.VIM_STATUS_UNREACHABLE, statusReason: VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED });
  await eventually(async () => (await types()).length === 1, 20_000, 'the first alarm');
  const [first] = (await alarms.listAlarms({ filter: { vimIds: [vimId] } })).alarms;
  t.is(first!.type, AlarmType.ALARM_TYPE_VIM_CREDENTIALS_REJECTED);
  t.is(first!.severity, 'critical');
  t.is(first!.cause, 'VIM status REACHABLE → UNREACHABLE (credentials rejected)');

  // The same again is a heartbeat: no event, no alarm.
  await report(VimStatus.VIM_STATUS_UNREACHABLE, VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED);
  // The reason alone changes: an event, and the alarm of the new kind.
  await report(VimStatus.VIM_STATUS_UNREACHABLE);
  await report(VimStatus.VIM_STATUS_REACHABLE);
  await eventually(async () => (await types()).length === 3, 20_000, 'three alarms');
  t.deepEqual(await types(), [
    AlarmType.ALARM_TYPE_VIM_CREDENTIALS_REJECTED,
    AlarmType.ALARM_TYPE_VIM_UNREACHABLE,
    AlarmType.ALARM_TYPE_VIM_RECOVERED,
  ]);
  const events = await db.orm.em
    .fork()
    .execute(`select from_status, to_status, status_reason from vim_event where vim_id = ? order by id`, [vimId]);
  t.deepEqual(events, [
    { from_status: 'REACHABLE', to_status: 'UNREACHABLE', status_reason: 'CREDENTIALS_REJECTED' },
    { from_status: 'UNREACHABLE', to_status: 'UNREACHABLE', status_reason: '' },
    { from_status: 'UNREACHABLE', to_status: 'REACHABLE', status_reason: '' },
  ]);
});

test('no secret reaches a log line, at debug, through a whole run with an OIDC VIM and a refusal', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(line) });
  const d = await kubernetes(t);
  const secrets = { password: 'oidc-user-pa55word', clientSecret: d.oidc.clientSecret };
  d.oidc.users.set('end-user', secrets.password);
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0' });
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: conductor.address });
  const server = await startServer({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: Buffer.alloc(32, 6),
    reconcileIntervalMs: 200,
  });
  const channel = createChannel(server.address);
  t.teardown(async () => {
    channel.close();
    await server.stop();
    await executor.stop();
    await conductor.stop();
  });
  const vims = createClient(VimServiceDefinition, channel);
  const { vim } = await vims.registerVim({
    name: 'logged',
    type: VimType.VIM_TYPE_KUBERNETES,
    authUrl: d.url,
    credentials: {
      oidc: {
        oidcTokenUrl: d.oidcTokenUrl,
        clientId: d.oidc.clientId,
        clientSecret: secrets.clientSecret,
        username: 'end-user',
        password: secrets.password,
      },
      sslCaCert: certs.ca.toString(),
    },
    monitor,
  });
  const status = async () => (await vims.getVim({ id: vim!.id })).vim!;
  await eventually(async () => (await status()).status === VimStatus.VIM_STATUS_REACHABLE, 30_000, 'REACHABLE');
  d.oidc.users.set('end-user', 'another');
  await eventually(
    async () => (await status()).statusReason === VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED,
    30_000,
    'CREDENTIALS_REJECTED',
  );
  t.true(
    lines.some((l) => l.includes('"msg":"VIM registered"')),
    'the registration is logged',
  );
  t.true(
    lines.some((l) => l.includes('"reason":"CREDENTIALS_REJECTED"')),
    'the refusal is logged',
  );
  // And a line that names the secrets the way the code names them.
  logger.info('credentials at hand', { clientSecret: secrets.clientSecret, bearerToken: 'sa-token-x', password: secrets.password });
  const all = lines.join('\n');
  for (const s of [...Object.values(secrets), 'sa-token-x']) t.false(all.includes(s), `a log line holds ${s.slice(0, 4)}…`);
  t.regex(lines.at(-1)!, /"clientSecret":"\[Redacted\]".*"bearerToken":"\[Redacted\]"/);
});

test('the command line takes probe=auth in --monitor and --set', async (t) => {
  const io = { out() {}, err() {}, env: {}, tty: false };
  const change = await vimChange(io, ['monitor.probe=auth'], {});
  t.is(change.vim.monitor!.probe, ProbeKind.PROBE_KIND_AUTH);
  t.deepEqual(change.paths, ['monitor.probe']);
  const err = await vimChange(io, ['monitor.probe=kerberos'], {}).catch((e: Error) => e);
  t.regex(String(err), /expected tcp, http, icmp or auth/);
});
