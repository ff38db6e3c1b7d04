// The authorization matrix: every method of every service, Doctor's HTTP
// endpoint, health and reflection, called by every kind of identity, against
// the whole mesh with authentication on. Each cell is the status the caller
// gets; allowed calls are built to succeed, so OK means "let through".
import { randomUUID } from 'node:crypto';
import { request } from 'node:https';
import test from 'ava';
import { ClientError, type Metadata, Status, type Channel } from 'nice-grpc';
import { msToDuration } from '../common/duration.js';
import { HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { ServerReflectionDefinition } from '../gen/grpc/reflection/v1/reflection.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { InspectorServiceDefinition, MaintenanceState } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { defaultPolicy } from '../common/auth/policy.js';
import { createClient, people, projectA, startSecureMesh, type Person, type SecureMesh } from './support/secure-mesh.js';
import { openTcpTarget } from './support/targets.js';

type Identity =
  | 'none'
  | 'badToken'
  | Person
  | 'certServer'
  | 'certConductor'
  | 'certExecutor'
  | 'certInspector'
  | 'certMonitor'
  | 'certNoRole'
  | 'certOtherDomain';
const identities: Identity[] = [
  'none',
  'badToken',
  ...(Object.keys(people) as Person[]),
  'certServer',
  'certConductor',
  'certExecutor',
  'certInspector',
  'certMonitor',
  'certNoRole',
  'certOtherDomain',
];

type Outcome = 'OK' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'NOT_FOUND';

interface Caller {
  channel(address: string): Channel;
  metadata: Metadata | undefined;
  token?: string;
  cert?: { cert: Buffer; key: Buffer };
}

/** Doctor's endpoint over HTTPS (the mesh serves it with the inspector's certificate). */
function httpsPut(
  mesh: SecureMesh,
  headers: Record<string, string>,
  body: string,
  cert?: { cert: Buffer; key: Buffer },
  { method, path } = { method: 'PUT', path: '/events' },
): Promise<number> {
  const [host, port] = [mesh.inspector.httpAddress.replace(/:\d+$/, ''), Number(mesh.inspector.httpAddress.split(':').pop())];
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, headers, ca: mesh.certs.ca, cert: cert?.cert, key: cert?.key }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function callerOf(mesh: SecureMesh, who: Identity): Caller {
  const certOf: Partial<Record<Identity, Parameters<SecureMesh['channel']>[1]>> = {
    certServer: mesh.certs.role('server'),
    certConductor: mesh.certs.role('conductor'),
    certExecutor: mesh.certs.role('executor'),
    certInspector: mesh.certs.role('inspector'),
    certMonitor: mesh.certs.role('monitor'),
    certNoRole: mesh.certs.noRole,
    certOtherDomain: mesh.certs.otherTrustDomain,
  };
  const token = who === 'badToken' ? 'vmt_not-a-token-anyone-issued' : who in people ? mesh.tokens[who as Person] : undefined;
  const channels = new Map<string, Channel>();
  return {
    token,
    cert: certOf[who],
    metadata: token ? mesh.bearer(token) : undefined,
    channel(address) {
      let c = channels.get(address);
      if (!c) channels.set(address, (c = mesh.channel(address, certOf[who])));
      return c;
    },
  };
}

async function outcomeOf(call: () => Promise<unknown>): Promise<Outcome | string> {
  try {
    await call();
    return 'OK';
  } catch (err) {
    if (err instanceof ClientError) return Status[err.code] as Outcome;
    throw err;
  }
}

/**
 * A server stream: its first message, or no error within waitMs, counts as let through. A refusal
 * comes from the middleware before any handler runs; a refusal that is expected is waited for
 * long (a bad token's check with Keystone can take seconds on a loaded machine), and a stream
 * expected through, which may stay silent, for 2 s (a refusal comes far sooner than that).
 */
async function streamOutcome(stream: AsyncIterable<unknown>, signal: AbortController, expectRefusal: boolean): Promise<Outcome | string> {
  const timer = setTimeout(() => signal.abort(), expectRefusal ? 30_000 : 2_000);
  try {
    for await (const _ of stream) break;
    return 'OK';
  } catch (err) {
    if (err instanceof ClientError) return Status[err.code] as Outcome;
    if ((err as Error).name === 'AbortError') return 'OK';
    throw err;
  } finally {
    clearTimeout(timer);
    signal.abort();
  }
}

test('every method × every identity gets the code the policy says', async (t) => {
  const mesh = await startSecureMesh(t);
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const adminVims = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.admin) },
  });
  const newVim = async () =>
    (
      await adminVims.registerVim({
        name: `vim-${randomUUID().slice(0, 8)}`,
        authUrl: target.url,
        ownerProject: projectA,
        monitor: { interval: msToDuration(1_000), timeout: msToDuration(200) },
      })
    ).vim!;
  const vimA = await newVim();

  // Who may do what; anyone not listed gets PERMISSION_DENIED, or UNAUTHENTICATED without a valid credential.
  const projectReaders: Identity[] = ['readerA', 'memberA', 'admin'];
  const allowed: Record<string, Identity[]> = {
    RegisterVim: ['memberA', 'admin'],
    GetVim: projectReaders,
    ListVims: ['readerA', 'memberA', 'memberB', 'admin'],
    UpdateVim: ['memberA', 'admin'],
    DeregisterVim: ['memberA', 'admin'],
    // Watches and lists are filtered to the caller's projects (checked below), not refused.
    WatchVims: ['readerA', 'memberA', 'memberB', 'admin'],
    ListVimAudit: projectReaders,
    ListVimEvents: projectReaders,
    StartAction: ['certServer'],
    StopAction: ['certServer'],
    ListActions: ['certServer', 'admin'],
    WatchActions: ['certServer', 'admin'],
    ConductorUpdateVim: ['certExecutor'],
    ReportEvents: ['monitor', 'certMonitor'],
    SubscribeAlarms: ['readerA', 'memberA', 'memberB', 'admin'],
    ListAlarms: ['readerA', 'memberA', 'memberB', 'admin'],
    ListFaultProfiles: ['admin'],
    GetFaultProfile: ['admin'],
    GetStatus: ['admin'],
    ListHostsDown: ['admin'],
    ListAffectedInstances: ['readerA', 'memberA', 'memberB', 'admin'],
    SetHostMaintenance: ['admin'],
    ListHostsInMaintenance: ['admin'],
    'PUT /events': ['monitor', 'certMonitor'],
    'POST /events': ['monitor', 'certMonitor'],
    'POST /maintenance': ['admin'],
    HealthCheck: identities,
    Reflection: identities,
  };
  // Where an allowed call still cannot succeed, the code it gets instead.
  const allowedOutcome: Record<string, Outcome> = { GetFaultProfile: 'NOT_FOUND', ListAffectedInstances: 'NOT_FOUND' };

  const matrix: Record<string, Record<Identity, string>> = {};
  for (const who of identities) {
    const c = callerOf(mesh, who);
    const opts = { '*': { metadata: c.metadata } };
    const vims = createClient(VimServiceDefinition, c.channel(mesh.server.address), opts);
    const executor = createClient(ExecutorServiceDefinition, c.channel(mesh.executor.address), opts);
    const conductor = createClient(VimMonitorAction2ConductorDefinition, c.channel(mesh.conductor.address), opts);
    const inspector = createClient(InspectorServiceDefinition, c.channel(mesh.inspector.address), opts);
    const health = createClient(HealthDefinition, c.channel(mesh.conductor.address), opts);
    const reflection = createClient(ServerReflectionDefinition, c.channel(mesh.inspector.address), opts);
    const doomed = allowed.DeregisterVim!.includes(who) ? await newVim() : vimA;
    const ac = () => new AbortController();
    // The streams first: their windows then overlap the unary calls below.
    const streams = {
      WatchVims: (() => {
        const s = ac();
        return streamOutcome(
          vims.watchVims({ vimIds: [vimA.id], sendInitial: true }, { signal: s.signal }),
          s,
          !allowed.WatchVims!.includes(who),
        );
      })(),
      WatchActions: (() => {
        const s = ac();
        return streamOutcome(executor.watchActions({}, { signal: s.signal }), s, !allowed.WatchActions!.includes(who));
      })(),
      SubscribeAlarms: (() => {
        const s = ac();
        return streamOutcome(
          inspector.subscribeAlarms({ liveOnly: true }, { signal: s.signal }),
          s,
          !allowed.SubscribeAlarms!.includes(who),
        );
      })(),
    };
    const row: Record<string, string> = {
      RegisterVim: await outcomeOf(() =>
        vims.registerVim({ name: `by-${who}-${randomUUID().slice(0, 6)}`, authUrl: target.url, ownerProject: projectA }),
      ),
      GetVim: await outcomeOf(() => vims.getVim({ id: vimA.id })),
      ListVims: await outcomeOf(() => vims.listVims({})),
      UpdateVim: await outcomeOf(() => vims.updateVim({ vim: { id: vimA.id, description: `by ${who}` }, updateMask: ['description'] })),
      DeregisterVim: await outcomeOf(() => vims.deregisterVim({ id: doomed.id })),
      WatchVims: await streams.WatchVims,
      ListVimAudit: await outcomeOf(() => vims.listVimAudit({ vimId: vimA.id })),
      ListVimEvents: await outcomeOf(() => vims.listVimEvents({ vimId: vimA.id })),
      StartAction: await outcomeOf(() =>
        executor.startAction({
          actionId: randomUUID(),
          vimId: randomUUID(),
          authUrl: target.url,
          monitor: { interval: msToDuration(1_000) },
        }),
      ),
      StopAction: await outcomeOf(() => executor.stopAction({ actionId: randomUUID() })),
      ListActions: await outcomeOf(() => executor.listActions({})),
      WatchActions: await streams.WatchActions,
      ConductorUpdateVim: await outcomeOf(() =>
        conductor.updateVim({ vimId: vimA.id, actionId: randomUUID(), status: VimStatus.VIM_STATUS_UNREACHABLE }),
      ),
      ReportEvents: await outcomeOf(() => inspector.reportEvents({ events: [{ type: 'compute.instance.ignored', hostname: 'h' }] })),
      SubscribeAlarms: await streams.SubscribeAlarms,
      ListAlarms: await outcomeOf(() => inspector.listAlarms({})),
      ListFaultProfiles: await outcomeOf(() => inspector.listFaultProfiles({})),
      GetFaultProfile: await outcomeOf(() => inspector.getFaultProfile({ faultId: randomUUID() })),
      GetStatus: await outcomeOf(() => inspector.getStatus({})),
      ListHostsDown: await outcomeOf(() => inspector.listHostsDown({})),
      ListAffectedInstances: await outcomeOf(() => inspector.listAffectedInstances({ faultId: randomUUID() })),
      // A host not in maintenance: allowed, it changes nothing.
      SetHostMaintenance: await outcomeOf(() =>
        inspector.setHostMaintenance({ host: 'compute-idle', state: MaintenanceState.MAINTENANCE_STATE_MAINTENANCE_COMPLETE }),
      ),
      ListHostsInMaintenance: await outcomeOf(() => inspector.listHostsInMaintenance({})),
      'PUT /events': await (async () => {
        const headers: Record<string, string> = { 'Content-Type': 'application/json' };
        if (c.token) headers['X-Auth-Token'] = c.token;
        return String(await httpsPut(mesh, headers, JSON.stringify([{ type: 'compute.instance.ignored', details: {} }]), c.cert));
      })(),
      // Doctor's collectd monitor's method.
      'POST /events': await (async () => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (c.token) headers['X-Auth-Token'] = c.token;
        const body = JSON.stringify([{ type: 'compute.instance.ignored', details: {} }]);
        return String(await httpsPut(mesh, headers, body, c.cert, { method: 'POST', path: '/events' }));
      })(),
      // Doctor's maintenance alarm, as Aodh posts it, for a host not in maintenance.
      'POST /maintenance': await (async () => {
        const headers: Record<string, string> = { 'Content-Type': 'application/json' };
        if (c.token) headers['X-Auth-Token'] = c.token;
        const body = JSON.stringify({
          alarm_name: 'maintenance',
          reason_data: {
            type: 'event',
            event: {
              event_type: 'maintenance.host',
              traits: [
                ['host', 1, 'compute-idle'],
                ['state', 1, 'MAINTENANCE_COMPLETE'],
              ],
            },
          },
        });
        return String(await httpsPut(mesh, headers, body, c.cert, { method: 'POST', path: '/maintenance' }));
      })(),
      HealthCheck: await outcomeOf(() => health.check({ service: '' })),
      Reflection: await outcomeOf(async () => {
        for await (const r of reflection.serverReflectionInfo(
          (async function* () {
            yield { host: '', listServices: '' };
          })(),
        )) {
          if (r.errorResponse) throw new Error(r.errorResponse.errorMessage);
        }
      }),
    };
    for (const [method, outcome] of Object.entries(row)) (matrix[method] ??= {} as Record<Identity, string>)[who] = outcome;
  }

  const unauthenticated = (who: Identity) => who === 'none' || who === 'badToken';
  for (const [method, row] of Object.entries(matrix)) {
    for (const who of identities) {
      const got = row[who];
      let want: string;
      const httpOk: Record<string, string> = { 'PUT /events': '202', 'POST /events': '202', 'POST /maintenance': '200' };
      if (method in httpOk) want = allowed[method]!.includes(who) ? httpOk[method]! : unauthenticated(who) ? '401' : '403';
      else if (allowed[method]!.includes(who)) want = allowedOutcome[method] ?? 'OK';
      else want = unauthenticated(who) ? 'UNAUTHENTICATED' : 'PERMISSION_DENIED';
      t.is(got, want, `${method} by ${who}`);
    }
  }
  // Every rule of the policy table is in the matrix, so a new method cannot go untested.
  const covered = new Set(Object.keys(allowed).map((m) => m.replace('ConductorUpdateVim', 'UpdateVim')));
  for (const [rule] of defaultPolicy) {
    const name = rule.startsWith('http:') ? rule.slice(5) : rule.split('/')[1]!;
    // metrics: the /metrics endpoint's rule, tested in test/metrics.test.ts.
    if (name === '*' || rule === 'metrics') continue;
    t.true(covered.has(name), `policy rule ${rule} is in the matrix`);
  }
});

test('a VIM belongs to its registrar’s project: others neither see nor learn of it; every change is audited', async (t) => {
  const mesh = await startSecureMesh(t);
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const as = (who: Person) =>
    createClient(VimServiceDefinition, mesh.channel(mesh.server.address), { '*': { metadata: mesh.bearer(mesh.tokens[who]) } });
  const memberA = as('memberA');
  const { vim } = await memberA.registerVim({
    name: 'owned',
    authUrl: target.url,
    credentials: { password: { username: 'nfv', password: 'secret' } },
  });
  t.is(vim!.ownerProject, projectA, 'the registrar’s only project by default');

  const denied = await t.throwsAsync(as('memberA').registerVim({ name: 'elsewhere', authUrl: target.url, ownerProject: 'proj-b' }));
  t.is((denied as ClientError).code, Status.PERMISSION_DENIED);

  // Lists and watches: filtered, not refused.
  t.deepEqual(
    (await as('memberB').listVims({})).vims.map((v) => v.id),
    [],
  );
  t.deepEqual(
    (await as('readerA').listVims({})).vims.map((v) => v.id),
    [vim!.id],
  );
  const seen: string[] = [];
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 400);
  try {
    for await (const change of as('memberB').watchVims({ sendInitial: true }, { signal: ac.signal })) seen.push(change.vimId);
  } catch (err) {
    t.is((err as Error).name, 'AbortError');
  }
  t.deepEqual(seen, [], 'another project’s watcher gets nothing, not even the initial state');

  // The same answer whether the VIM exists or not, for those who may not see it.
  const missing = randomUUID();
  for (const id of [vim!.id, missing]) {
    const err = (await t.throwsAsync(as('memberB').getVim({ id }))) as ClientError;
    t.is(err.code, Status.PERMISSION_DENIED, `memberB GetVim ${id === missing ? 'missing' : 'existing'}`);
  }
  t.is(((await t.throwsAsync(as('admin').getVim({ id: missing }))) as ClientError).code, Status.NOT_FOUND);

  await memberA.updateVim({ vim: { id: vim!.id, description: 'rack 4' }, updateMask: ['description'] });
  await as('admin').deregisterVim({ id: vim!.id });
  const { records } = await as('readerA').listVimAudit({ vimId: vim!.id });
  t.deepEqual(
    records.map((r) => [r.action, r.principal, r.ownerProject, r.changedFields]),
    [
      [1, 'token:memberA', projectA, []],
      [2, 'token:memberA', projectA, ['description']],
      [3, 'token:admin', projectA, []],
    ],
  );
  t.is(records[0]!.principalProject, projectA);
  // Deregistration leaves no secret behind.
  const [row] = await mesh.db.orm.em
    .fork()
    .getConnection()
    .execute(`select credentials_sealed, credentials_kind from vim where id = ?`, [vim!.id]);
  t.deepEqual(row, { credentials_sealed: null, credentials_kind: 'none' });
});

test('alarms: readers get those of their projects (instances by project, VIMs by owner); host alarms and profiles are admin’s', async (t) => {
  const mesh = await startSecureMesh(t, {
    servers: [
      { host: 'compute-1', projectId: projectA },
      { host: 'compute-1', projectId: projectA },
      { host: 'compute-1', projectId: 'proj-b' },
    ],
  });
  const as = (who: Person) =>
    createClient(InspectorServiceDefinition, mesh.channel(mesh.inspector.address), { '*': { metadata: mesh.bearer(mesh.tokens[who]) } });
  const { eventually } = await import('./support/wait.js');
  await eventually(async () => (await as('admin').getStatus({})).cachedVms === 3, 10_000, 'the cache knows the servers');
  const target = await openTcpTarget();
  const vims = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.memberA) },
  });
  const { vim } = await vims.registerVim({
    name: 'a-vim',
    authUrl: target.url,
    // A probe timeout that a loaded machine cannot outrun: a round timed out while the target is
    // still up would add an UNREACHABLE (and a sixth alarm) before the one the test causes.
    monitor: { interval: msToDuration(500), timeout: msToDuration(450) },
  });
  await eventually(async () => (await vims.getVim({ id: vim!.id })).vim!.status === VimStatus.VIM_STATUS_REACHABLE, 5_000, 'REACHABLE');
  await target.close();
  await as('monitor').reportEvents({
    events: [{ type: 'compute.host.down', hostname: 'compute-1', status: 'down', monitor: 'm', monitorEventId: '1' }],
  });
  let stored: string[] = [];
  await eventually(
    async () => {
      stored = (await as('admin').listAlarms({})).alarms.map((a) => `${a.type}:${a.projectId}`);
      return stored.length === 5;
    },
    10_000,
    'host, three instances, the VIM',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; stored: ${stored.join(', ') || 'none'}`);
  });

  const kinds = async (who: Person) => (await as(who).listAlarms({})).alarms.map((a) => `${a.type}:${a.projectId}`).sort();
  t.deepEqual(await kinds('admin'), ['1:proj-a', '1:proj-a', '1:proj-b', '2:', '3:proj-a']);
  t.deepEqual(await kinds('readerA'), ['1:proj-a', '1:proj-a', '3:proj-a']);
  t.deepEqual(await kinds('memberB'), ['1:proj-b']);
  const denied = (await t.throwsAsync(
    as('memberB').listAlarms({ filter: { projectIds: [projectA], hosts: [], instanceIds: [], types: [], vimIds: [] } }),
  )) as ClientError;
  t.is(denied.code, Status.PERMISSION_DENIED);
  // The stream replays with the same scope.
  const seen: string[] = [];
  const ac = new AbortController();
  // Read until the three in scope came (10 s at most on a busy machine), then 300 ms more: anything
  // out of scope would be replayed with them.
  const limit = setTimeout(() => ac.abort(), 10_000);
  let grace: NodeJS.Timeout | undefined;
  try {
    for await (const a of as('readerA').subscribeAlarms({ afterAlarmId: 0 }, { signal: ac.signal })) {
      seen.push(`${a.type}:${a.projectId}`);
      if (seen.length >= 3) grace ??= setTimeout(() => ac.abort(), 300);
    }
  } catch {
    // aborted
  } finally {
    clearTimeout(limit);
    clearTimeout(grace);
  }
  t.deepEqual(seen.sort(), ['1:proj-a', '1:proj-a', '3:proj-a']);
  t.is(((await t.throwsAsync(as('readerA').listFaultProfiles({}))) as ClientError).code, Status.PERMISSION_DENIED);
  t.true((await as('admin').listFaultProfiles({})).profiles.length >= 1);
});

test('a page of VIMs with every field at its longest still fits the default 4 MiB message', async (t) => {
  const mesh = await startSecureMesh(t);
  const admin = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.admin) },
  });
  const long = (n: number) => 'x'.repeat(n);
  for (let i = 0; i < 1_000; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, (_, j) =>
        admin.registerVim({
          name: `${String(i + j).padStart(4, '0')}-${long(250)}`,
          description: long(1024),
          authUrl: `http://127.0.0.1:9/${long(2000)}`,
          project: long(255),
          ownerProject: long(255),
          credentials: { password: { username: long(255), password: 'p', userDomainName: long(255), projectDomainName: long(255) } },
        }),
      ),
    );
  }
  const seen = new Set<string>();
  let pageToken = '';
  let pages = 0;
  do {
    const page = await admin.listVims({ pageSize: 1_000, pageToken });
    t.true(page.vims.length > 0);
    for (const v of page.vims) seen.add(v.id);
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken);
  t.is(seen.size, 1_000, 'every VIM once');
  t.true(pages >= 2, `${pages} pages: the first was cut by size`);
});
