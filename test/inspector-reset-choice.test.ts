// The reset-state choice (VIMMON_INSPECTOR_RESET_STATE) end to end against the
// Keystone + Nova double: with "error" every VM of a failed host is reset, with
// "off" the host is only forced down and Nova's host_status (microversion
// 2.16+, admins) reads DOWN for its VMs; recovery is right in both. And
// ListAffectedInstances: the VMs on a host from the cache, with the host's
// state, paged, scoped to the caller's projects.
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import { createAuth } from '../common/auth/authenticator.js';
import { createStaticTokens, hashToken, newToken } from '../common/auth/static-tokens.js';
import { EnvironmentError, parseEnvironment } from '../common/env.js';
import {
  AlarmType,
  InspectorServiceDefinition,
  type Alarm,
  type InspectorServiceClient,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { inspectorSettings, startInspector, type InspectorOptions } from '../inspector/main.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { openrcEnv, startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { eventually } from './support/wait.js';

interface Harness {
  d: OpenStackDouble;
  client: InspectorServiceClient;
  alarms: Alarm[];
  clientAs(token: string): InspectorServiceClient;
}

async function harness(t: ExecutionContext, d: OpenStackDouble, options: Partial<InspectorOptions> = {}): Promise<Harness> {
  const db = await createTestDatabase(t);
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: openrcEnv(d),
    resyncIntervalMs: 60_000,
    novaRetry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 100 },
    ...options,
  });
  const channels: Channel[] = [];
  const clientAs = (token: string) => {
    const channel = createChannel(inspector.address);
    channels.push(channel);
    return createClient(InspectorServiceDefinition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } });
  };
  const channel = createChannel(inspector.address);
  channels.push(channel);
  const client = createClient(InspectorServiceDefinition, channel);
  const alarms: Alarm[] = [];
  const stream = new AbortController();
  const subscribed = options.auth
    ? Promise.resolve()
    : (async () => {
        try {
          for await (const a of client.subscribeAlarms({ liveOnly: true }, { signal: stream.signal })) alarms.push(a);
        } catch (err) {
          if (!stream.signal.aborted) throw err;
        }
      })();
  t.teardown(async () => {
    stream.abort();
    await subscribed;
    for (const c of channels) c.close();
    await inspector.stop();
  });
  if (!options.auth) {
    await eventually(async () => (await client.getStatus({})).cachedVms === d.servers().length, 10_000, 'the cache snapshot');
    await eventually(async () => (await client.getStatus({})).subscribers === 1, 10_000, 'the subscriber');
  }
  return { d, client, alarms, clientAs };
}

async function double(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

/** GET /servers/detail?all_tenants=1&host=… as a consumer reads Nova: one call for every VM on the host. */
async function novaServersOn(d: OpenStackDouble, host: string, token: string, microversion: string) {
  const r = await fetch(`${d.computeUrl}/servers/detail?all_tenants=1&host=${encodeURIComponent(host)}`, {
    headers: { 'X-Auth-Token': token, 'OpenStack-API-Version': `compute ${microversion}` },
  });
  if (r.status !== 200) throw new Error(`servers/detail answered ${r.status}`);
  return ((await r.json()) as { servers: Array<{ id: string; status: string; host_status?: string }> }).servers;
}

const down = (host: string, status: 'down' | 'up' = 'down') => ({
  time: new Date(),
  type: 'compute.host.down',
  hostname: host,
  status,
  monitor: 'm',
  monitorEventId: `${host}-${status}`,
});

const resetCalls = (d: OpenStackDouble) => d.computeCalls().filter((c) => c.method === 'POST' && /\/servers\/[^/]+\/action$/.test(c.path));

async function grpcError(p: Promise<unknown>): Promise<{ code: Status; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: Status; details: string };
  }
  throw new Error('expected an error');
}

test('the setting: error by default, off, anything else refused naming the variable', (t) => {
  t.is(inspectorSettings(parseEnvironment({})).resetState, 'error');
  t.is(inspectorSettings(parseEnvironment({ VIMMON_INSPECTOR_RESET_STATE: 'off' })).resetState, 'off');
  t.is(inspectorSettings(parseEnvironment({ VIMMON_INSPECTOR_RESET_STATE: ' Error ' })).resetState, 'error');
  const err = t.throws(() => parseEnvironment({ VIMMON_INSPECTOR_RESET_STATE: 'active' }), { instanceOf: EnvironmentError });
  t.regex(err!.message, /^VIMMON_INSPECTOR_RESET_STATE: expected error or off, got "active"$/);
});

test('off: the host forced down only; Nova reads host_status DOWN for every VM in one call; recovery un-forces it', async (t) => {
  const d = await double(t);
  const vms = ['a', 'b', 'c'].map((n, i) => d.addServer({ host: 'compute-1', name: `vm-${n}`, projectId: `p-${i % 2}` }));
  const elsewhere = d.addServer({ host: 'compute-2', name: 'vm-x' });
  const h = await harness(t, d, { resetState: 'off' });
  t.is((await h.client.getStatus({})).resetState, 'off');
  const admin = d.issueToken({ userName: 'consumer', projectId: d.projectId, roles: ['admin'] });
  t.deepEqual(
    (await novaServersOn(d, 'compute-1', admin, '2.16')).map((s) => s.host_status),
    ['UP', 'UP', 'UP'],
  );

  const reply = await h.client.reportEvents({ events: [down('compute-1')] });
  const faultId = reply.faultIds[0]!;
  await eventually(() => h.alarms.length === 4, 10_000, 'the alarms');
  const instanceAlarms = h.alarms.filter((a) => a.type === AlarmType.ALARM_TYPE_INSTANCE_DOWN);
  t.deepEqual(instanceAlarms.map((a) => a.instanceId).sort(), [...vms].sort());
  for (const a of instanceAlarms) t.is(a.state, 'host_down', 'the VM is not reset: its host is down');
  const profile = await eventually(
    async () => {
      const p = (await h.client.getFaultProfile({ faultId })).profile;
      return p?.completedAt ? p : undefined;
    },
    10_000,
    'the Nova work',
  );
  t.like(profile, { resetState: 'off', vmsReset: 0, vmsFailed: 0, vmCount: 3 });
  t.truthy(profile.hostForcedDownAt);
  t.deepEqual(profile.errors, []);
  t.is(resetCalls(d).length, 0, 'no os-resetState call');
  t.true(d.services().find((s) => s.host === 'compute-1' && s.binary === 'nova-compute')!.forcedDown);

  // What a consumer reads from Nova, in one call for the host's VMs.
  const after = await novaServersOn(d, 'compute-1', admin, '2.16');
  t.deepEqual(after.map((s) => s.id).sort(), [...vms].sort());
  for (const s of after) t.like(s, { status: 'ACTIVE', host_status: 'DOWN' });
  t.is((await novaServersOn(d, 'compute-1', admin, '2.15'))[0]!.host_status, undefined, 'no host_status before 2.16');
  const tenant = d.issueToken({ userName: 'tenant', projectId: d.projectId, roles: ['member'] });
  t.is((await novaServersOn(d, 'compute-1', tenant, '2.16'))[0]!.host_status, undefined, 'host_status is for admins by default');
  t.deepEqual(
    (await novaServersOn(d, 'compute-2', admin, '2.16')).map((s) => [s.id, s.host_status]),
    [[elsewhere, 'UP']],
  );

  // The inspector's own answer, from its cache.
  const affected = await h.client.listAffectedInstances({ host: 'compute-1' });
  t.like(affected.host, { host: 'compute-1', state: 'down', faultId, vmCount: 3, novaDone: true });
  t.truthy(affected.host?.forcedDownAt);
  t.deepEqual(
    affected.instances.map((i) => i.instanceId),
    [...vms].sort(),
  );
  t.deepEqual(
    affected.instances.map((i) => i.vmState),
    ['active', 'active', 'active'],
  );
  t.is(affected.nextPageToken, '');
  t.deepEqual(await h.client.listAffectedInstances({ faultId }), affected, 'by fault id, the same');
  const hostsDown = await h.client.listHostsDown({});
  t.deepEqual(hostsDown.hosts[0]!.forcedDownAt, affected.host!.forcedDownAt);

  const up = await h.client.reportEvents({ events: [down('compute-1', 'up')] });
  await eventually(() => h.alarms.length === 8, 10_000, 'the recovered alarms');
  for (const a of h.alarms.filter((x) => x.type === AlarmType.ALARM_TYPE_INSTANCE_RECOVERED)) t.is(a.state, '');
  await eventually(async () => (await h.client.getFaultProfile({ faultId: up.faultIds[0]! })).profile?.completedAt, 10_000, 'the recovery');
  t.like((await h.client.getFaultProfile({ faultId: up.faultIds[0]! })).profile, { resetState: '', vmsReset: 0 });
  t.false(d.services().find((s) => s.host === 'compute-1' && s.binary === 'nova-compute')!.forcedDown);
  for (const s of await novaServersOn(d, 'compute-1', admin, '2.16')) t.like(s, { status: 'ACTIVE', host_status: 'UP' });
  t.is(resetCalls(d).length, 0, 'still no os-resetState call');
  const recovered = await h.client.listAffectedInstances({ host: 'compute-1' });
  t.like(recovered.host, { state: 'up', faultId: up.faultIds[0]!, forcedDownAt: undefined });
  t.is(recovered.instances.length, 3);
  t.is((await grpcError(h.client.listAffectedInstances({ faultId }))).code, Status.NOT_FOUND, 'the down fault is over');
});

test('error (the default): every VM reset to error as well, the alarms say so; recovery leaves the VMs to their owners', async (t) => {
  const d = await double(t);
  const vms = [0, 1].map((i) => d.addServer({ host: 'compute-1', projectId: `p-${i}` }));
  const h = await harness(t, d);
  t.is((await h.client.getStatus({})).resetState, 'error');
  const faultId = (await h.client.reportEvents({ events: [down('compute-1')] })).faultIds[0]!;
  await eventually(() => h.alarms.length === 3, 10_000, 'the alarms');
  for (const a of h.alarms.filter((x) => x.type === AlarmType.ALARM_TYPE_INSTANCE_DOWN)) t.is(a.state, 'error');
  const profile = await eventually(
    async () => {
      const p = (await h.client.getFaultProfile({ faultId })).profile;
      return p?.completedAt ? p : undefined;
    },
    10_000,
    'the Nova work',
  );
  t.like(profile, { resetState: 'error', vmsReset: 2 });
  t.deepEqual(
    resetCalls(d)
      .map((c) => c.path.split('/').at(-2))
      .sort(),
    [...vms].sort(),
  );
  const admin = d.issueToken({ userName: 'consumer', projectId: d.projectId, roles: ['admin'] });
  for (const s of await novaServersOn(d, 'compute-1', admin, '2.16')) t.like(s, { status: 'ERROR', host_status: 'DOWN' });

  await h.client.reportEvents({ events: [down('compute-1', 'up')] });
  await eventually(() => !d.services().find((s) => s.host === 'compute-1' && s.binary === 'nova-compute')!.forcedDown, 10_000, 'un-forced');
  for (const s of await novaServersOn(d, 'compute-1', admin, '2.16')) t.like(s, { status: 'ERROR', host_status: 'UP' });
  t.is(resetCalls(d).length, 2, 'recovery resets nothing back');
});

test('ListAffectedInstances: one of host or fault_id, paged by instance id, an evacuated VM leaves the list', async (t) => {
  const d = await double(t);
  const vms = Array.from({ length: 5 }, (_, i) => d.addServer({ host: 'compute-1', name: `vm-${i}` }));
  const h = await harness(t, d, { resetState: 'off', resyncIntervalMs: 300 });
  const field = async (p: Promise<unknown>) => {
    const err = await grpcError(p);
    t.is(err.code, Status.INVALID_ARGUMENT, err.details);
    return err.details.split(':')[0];
  };
  t.is(await field(h.client.listAffectedInstances({})), 'host');
  t.is(await field(h.client.listAffectedInstances({ host: 'compute-1', faultId: 'f' })), 'fault_id');
  t.is(await field(h.client.listAffectedInstances({ host: 'h'.repeat(256) })), 'host');
  t.is(await field(h.client.listAffectedInstances({ faultId: 'f'.repeat(256) })), 'fault_id');
  t.is(await field(h.client.listAffectedInstances({ host: 'compute-1', pageToken: 'not a token' })), 'page_token');
  t.is((await grpcError(h.client.listAffectedInstances({ faultId: 'no-such-fault' }))).code, Status.NOT_FOUND);

  // A host the inspector knows nothing of is up, its VMs listed all the same.
  const unknown = await h.client.listAffectedInstances({ host: 'compute-1' });
  t.like(unknown.host, { host: 'compute-1', state: 'up', faultId: '', since: undefined, vmCount: 0 });
  t.is(unknown.instances.length, 5);
  t.deepEqual((await h.client.listAffectedInstances({ host: 'compute-9' })).instances, [], 'an empty host: no VM');

  const faultId = (await h.client.reportEvents({ events: [down('compute-1')] })).faultIds[0]!;
  const seen: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await h.client.listAffectedInstances({ faultId, pageSize: 2, pageToken });
    t.true(page.instances.length <= 2);
    t.like(page.host, { state: 'down', faultId, vmCount: 5 });
    seen.push(...page.instances.map((i) => i.instanceId));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken && pages < 10);
  t.is(pages, 3);
  t.deepEqual(seen, [...vms].sort(), 'every VM once, in id order');

  // Evacuated: the cache (here its periodic snapshot) moves the VM off the host; the fault still counts it.
  d.moveServer(vms[0]!, 'compute-2');
  await eventually(
    async () => (await h.client.listAffectedInstances({ host: 'compute-1' })).instances.length === 4,
    10_000,
    'the evacuated VM gone from the host',
  );
  const now = await h.client.listAffectedInstances({ host: 'compute-1' });
  t.false(now.instances.some((i) => i.instanceId === vms[0]));
  t.is(now.host?.vmCount, 5, 'vm_count: the VMs of the fault');
  t.deepEqual(
    (await h.client.listAffectedInstances({ host: 'compute-2' })).instances.map((i) => i.instanceId),
    [vms[0]],
  );
});

test('ListAffectedInstances with authentication: admins see every VM, readers theirs and the host only through one of them', async (t) => {
  const d = await double(t);
  const a = [0, 1].map(() => d.addServer({ host: 'compute-1', projectId: 'proj-a' }));
  const b = d.addServer({ host: 'compute-1', projectId: 'proj-b' });
  d.addServer({ host: 'compute-2', projectId: 'proj-b' });
  const people = {
    admin: { roles: ['admin'], projects: [] as string[] },
    readerA: { roles: ['reader'], projects: ['proj-a'] },
    readerC: { roles: ['reader'], projects: ['proj-c'] },
    monitor: { roles: ['monitor'], projects: [] as string[] },
  };
  const tokens = Object.fromEntries(Object.keys(people).map((n) => [n, newToken()])) as Record<keyof typeof people, string>;
  const auth = createAuth({
    mode: 'enforced',
    staticTokens: createStaticTokens(
      Object.entries(people).map(([name, p]) => ({
        name,
        sha256: hashToken(tokens[name as keyof typeof people]),
        roles: p.roles,
        projects: p.projects,
      })),
    ),
  });
  const h = await harness(t, d, { auth });
  const admin = h.clientAs(tokens.admin);
  await eventually(async () => (await admin.getStatus({})).cachedVms === 4, 10_000, 'the cache snapshot');
  const faultId = (await h.clientAs(tokens.monitor).reportEvents({ events: [down('compute-1')] })).faultIds[0]!;

  const all = await admin.listAffectedInstances({ host: 'compute-1' });
  t.deepEqual(
    all.instances.map((i) => i.instanceId),
    [...a, b].sort(),
  );
  t.like(all.host, { state: 'down', faultId, vmCount: 3 });

  const readerA = h.clientAs(tokens.readerA);
  for (const query of [{ host: 'compute-1' }, { faultId }]) {
    const mine = await readerA.listAffectedInstances(query);
    t.deepEqual(
      mine.instances.map((i) => i.instanceId),
      [...a].sort(),
    );
    t.true(
      mine.instances.every((i) => i.projectId === 'proj-a'),
      'nothing of another project',
    );
    t.like(mine.host, { state: 'down', faultId, vmCount: 2 });
  }
  const denied = await grpcError(readerA.listAffectedInstances({ host: 'compute-2' }));
  t.is(denied.code, Status.PERMISSION_DENIED, 'no VM of theirs on that host');
  t.is((await grpcError(h.clientAs(tokens.readerC).listAffectedInstances({ host: 'compute-1' }))).code, Status.PERMISSION_DENIED);
  t.is((await grpcError(h.clientAs(tokens.monitor).listAffectedInstances({ host: 'compute-1' }))).code, Status.PERMISSION_DENIED);
  t.is((await grpcError(h.client.listAffectedInstances({ host: 'compute-1' }))).code, Status.UNAUTHENTICATED);
});
