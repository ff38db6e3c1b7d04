import test from 'ava';
import { createChannel, createClient, Status, type Channel } from 'nice-grpc';
import pg from 'pg';
import { startConductor } from '../conductor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { InvalidArgumentError } from '../common/errors.js';
import { resolveMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import {
  MonitorPolicy,
  ProbeKind,
  Vim,
  VimServiceDefinition,
  type UpdateVimRequest,
  type VimServiceClient,
} from '../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../server/main.js';
import { vimUpdate } from '../server/vim-input.js';
import { createTestDatabase, unreachableDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { startRecordingExecutor } from './support/recording-executor.js';

const key = Buffer.alloc(32, 7);

async function setup(t: import('ava').ExecutionContext, opts: { reconcileIntervalMs?: number; startGraceMs?: number } = {}) {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const executor = await startRecordingExecutor(logger);
  const server = await startServer({
    logger,
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key,
    reconcileIntervalMs: opts.reconcileIntervalMs ?? 60_000,
    startGraceMs: opts.startGraceMs,
  });
  const channel: Channel = createChannel(server.address);
  t.teardown(async () => {
    channel.close();
    await server.stop();
    await executor.stop();
  });
  return { db, executor, server, client: createClient(VimServiceDefinition, channel) as VimServiceClient };
}

const base = {
  name: 'cloud-a',
  authUrl: 'https://keystone.example:5000/v3',
  credentials: { password: { username: 'admin', password: 's3cret-pw', userDomainName: 'Default', projectDomainName: 'Default' } },
};

async function grpcError(t: import('ava').ExecutionContext, p: Promise<unknown>, code: Status, field?: string) {
  const err = (await t.throwsAsync(p)) as unknown as { code: Status; details: string };
  t.is(err.code, code, err.details);
  if (field) t.true(err.details.startsWith(`${field}:`) || err.details.includes(field), `details name ${field}: ${err.details}`);
}

test('register stores PENDING with a fresh action, starts it, and never returns or stores secrets in clear', async (t) => {
  const { client, executor, db } = await setup(t);
  const { vim } = await client.registerVim(base);
  t.is(vim!.status, VimStatus.VIM_STATUS_PENDING);
  t.regex(vim!.actionId, /^[0-9a-f-]{36}$/);
  t.is(vim!.credentials!.password!.password, '***');
  t.is(vim!.credentials!.password!.username, 'admin');
  t.is(vim!.monitor!.probe, ProbeKind.PROBE_KIND_TCP);
  t.is(vim!.monitor!.interval!.seconds, 10);
  t.is(executor.starts.length, 1);
  t.is(executor.starts[0]!.actionId, vim!.actionId);
  t.is(executor.starts[0]!.authUrl, 'https://keystone.example:5000/v3');
  const [row] = await db.orm.em.fork().getConnection().execute(`select * from vim where id = ?`, [vim!.id]);
  t.false(JSON.stringify(row).includes('s3cret-pw'));
  t.true(row.action_started);
  const got = await client.getVim({ id: vim!.id });
  t.is(got.vim!.credentials!.password!.password, '***');
});

test('bad input gets INVALID_ARGUMENT naming the field and writes nothing', async (t) => {
  const { client, db } = await setup(t);
  await grpcError(t, client.registerVim({ ...base, name: '' }), Status.INVALID_ARGUMENT, 'name');
  await grpcError(t, client.registerVim({ ...base, authUrl: 'ftp://x/' }), Status.INVALID_ARGUMENT, 'auth_url');
  await grpcError(t, client.registerVim({ ...base, authUrl: 'not a url' }), Status.INVALID_ARGUMENT, 'auth_url');
  await grpcError(t, client.registerVim({ ...base, authUrl: 'https://u:p@h/v3' }), Status.INVALID_ARGUMENT, 'auth_url');
  await grpcError(
    t,
    client.registerVim({ ...base, monitor: { interval: { seconds: 0, nanos: 5_000_000 } } }),
    Status.INVALID_ARGUMENT,
    'monitor.interval',
  );
  await grpcError(t, client.registerVim({ ...base, monitor: { count: 50 } }), Status.INVALID_ARGUMENT, 'monitor.count');
  await grpcError(
    t,
    client.registerVim({ ...base, credentials: { password: { username: 'u', password: '' } } }),
    Status.INVALID_ARGUMENT,
    'credentials.password.password',
  );
  await grpcError(t, client.getVim({ id: 'nope' }), Status.INVALID_ARGUMENT, 'id');
  await grpcError(t, client.listVims({ pageSize: -1 }), Status.INVALID_ARGUMENT, 'page_size');
  await grpcError(t, client.listVims({ pageToken: 'garbage' }), Status.INVALID_ARGUMENT, 'page_token');
  await grpcError(t, client.listVims({ status: VimStatus.VIM_STATUS_BAD_ACTION }), Status.INVALID_ARGUMENT, 'status');
  const [{ n }] = await db.orm.em.fork().getConnection().execute(`select count(*)::int as n from vim`);
  t.is(n, 0);
});

test('IPv6 literal auth_url is accepted as given', async (t) => {
  const { client, executor } = await setup(t);
  const { vim } = await client.registerVim({ ...base, authUrl: 'https://[fd00::1]:5000/v3' });
  t.is(vim!.authUrl, 'https://[fd00::1]:5000/v3');
  t.is(executor.starts[0]!.authUrl, 'https://[fd00::1]:5000/v3');
});

test('names are unique among live VIMs and reusable after deregister; one default at most', async (t) => {
  const { client, executor } = await setup(t);
  const { vim } = await client.registerVim({ ...base, isDefault: true });
  await grpcError(t, client.registerVim(base), Status.ALREADY_EXISTS, 'name');
  await grpcError(t, client.registerVim({ ...base, name: 'cloud-b', isDefault: true }), Status.ALREADY_EXISTS, 'is_default');
  await client.deregisterVim({ id: vim!.id });
  t.deepEqual(executor.stops, [vim!.actionId]);
  await grpcError(t, client.getVim({ id: vim!.id }), Status.NOT_FOUND);
  await grpcError(t, client.deregisterVim({ id: vim!.id }), Status.NOT_FOUND);
  const again = await client.registerVim({ ...base, isDefault: true });
  t.not(again.vim!.id, vim!.id);
});

test('list pages through every VIM once, and filters by status', async (t) => {
  const { client } = await setup(t);
  for (let i = 0; i < 5; i++) await client.registerVim({ ...base, name: `vim-${i}` });
  const seen: string[] = [];
  let token = '';
  let pages = 0;
  do {
    const r = await client.listVims({ pageSize: 2, pageToken: token });
    seen.push(...r.vims.map((v) => v.name));
    token = r.nextPageToken;
    pages++;
  } while (token);
  t.deepEqual(seen, ['vim-0', 'vim-1', 'vim-2', 'vim-3', 'vim-4']);
  t.is(pages, 3);
  t.is((await client.listVims({ status: VimStatus.VIM_STATUS_PENDING })).vims.length, 5);
  t.is((await client.listVims({ status: VimStatus.VIM_STATUS_REACHABLE })).vims.length, 0);
});

test('update: plain fields keep the action; auth_url or monitor get a new action and stop the old one', async (t) => {
  const { client, executor } = await setup(t);
  const { vim } = await client.registerVim(base);
  const first = vim!.actionId;
  const r1 = await client.updateVim({ vim: { id: vim!.id, description: 'lab' }, updateMask: ['description'] });
  t.is(r1.vim!.description, 'lab');
  t.is(r1.vim!.actionId, first);
  t.is(executor.starts.length, 1);

  const r2 = await client.updateVim({ vim: { id: vim!.id, authUrl: 'http://10.0.0.9:5000/v3' }, updateMask: ['auth_url'] });
  t.not(r2.vim!.actionId, first);
  t.is(r2.vim!.status, VimStatus.VIM_STATUS_PENDING);
  t.is(executor.starts.at(-1)!.actionId, r2.vim!.actionId);
  t.is(executor.starts.at(-1)!.authUrl, 'http://10.0.0.9:5000/v3');
  t.deepEqual(executor.stops, [first]);

  const r3 = await client.updateVim({
    vim: { id: vim!.id, monitor: { interval: { seconds: 5, nanos: 0 } } },
    updateMask: ['monitor.interval'],
  });
  t.not(r3.vim!.actionId, r2.vim!.actionId);
  t.is(r3.vim!.monitor!.interval!.seconds, 5);
  t.is(r3.vim!.monitor!.timeout!.seconds, 1, 'other policy fields kept');
  t.deepEqual(executor.stops, [first, r2.vim!.actionId]);

  await grpcError(t, client.updateVim({ vim: { id: vim!.id }, updateMask: [] }), Status.INVALID_ARGUMENT, 'update_mask');
  await grpcError(t, client.updateVim({ vim: { id: vim!.id }, updateMask: ['status'] }), Status.INVALID_ARGUMENT, 'update_mask');
  await grpcError(t, client.updateVim({ vim: { id: vim!.id, name: '' }, updateMask: ['name'] }), Status.INVALID_ARGUMENT, 'vim.name');
  await grpcError(
    t,
    client.updateVim({ vim: { id: vim!.id, monitor: { count: 99 } }, updateMask: ['monitor.count'] }),
    Status.INVALID_ARGUMENT,
    'vim.monitor.count',
  );
  const after = await client.getVim({ id: vim!.id });
  t.is(after.vim!.actionId, r3.vim!.actionId, 'a rejected update changes nothing');
  await grpcError(
    t,
    client.updateVim({ vim: { id: '00000000-0000-4000-8000-000000000000', description: 'x' }, updateMask: ['description'] }),
    Status.NOT_FOUND,
  );
});

test('a failed start is healed by the reconciler with a new action id', async (t) => {
  const { client, executor } = await setup(t, { reconcileIntervalMs: 100, startGraceMs: 300 });
  executor.failStarts(2); // the register attempt and its one fallback
  const { vim } = await client.registerVim(base);
  t.is(executor.starts.length, 0);
  const deadline = Date.now() + 5_000;
  while (executor.starts.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(executor.starts.length, 1);
  const now = await client.getVim({ id: vim!.id });
  t.is(executor.starts[0]!.actionId, now.vim!.actionId);
  t.not(now.vim!.actionId, vim!.actionId, 'never the same action id twice');
});

test('WatchVims streams transitions stored by a conductor, with the initial state first', async (t) => {
  const { client, db } = await setup(t);
  const logger = testLogger();
  const conductor = await startConductor({ logger, orm: db.orm, address: '127.0.0.1:0' });
  const cch = createChannel(conductor.address);
  t.teardown(async () => {
    cch.close();
    await conductor.stop();
  });
  const { vim } = await client.registerVim(base);
  const abort = new AbortController();
  const stream = client.watchVims({ sendInitial: true, vimIds: [vim!.id] }, { signal: abort.signal })[Symbol.asyncIterator]();
  const initial = await stream.next();
  t.is(initial.value.status, VimStatus.VIM_STATUS_PENDING);
  t.is(initial.value.eventId, 0);
  const conductorClient = createClient(VimMonitorAction2ConductorDefinition, cch);
  const reply = await conductorClient.updateVim({ vimId: vim!.id, actionId: vim!.actionId, status: VimStatus.VIM_STATUS_REACHABLE });
  t.is(reply.status, VimStatus.VIM_STATUS_REACHABLE);
  const change = await stream.next();
  t.is(change.value.previousStatus, VimStatus.VIM_STATUS_PENDING);
  t.is(change.value.status, VimStatus.VIM_STATUS_REACHABLE);
  t.is(change.value.actionId, vim!.actionId);
  t.true(change.value.eventId > 0);
  abort.abort();
  await stream.next().then(
    () => t.fail('stream should end with the abort'),
    (e: { name: string }) => t.is(e.name, 'AbortError'),
  );
});

test('server shutdown ends WatchVims streams with UNAVAILABLE', async (t) => {
  const { client, server } = await setup(t);
  const stream = client.watchVims({})[Symbol.asyncIterator]();
  const pending = stream.next();
  await new Promise((r) => setTimeout(r, 100));
  await server.stop();
  const err = (await t.throwsAsync(pending)) as unknown as { code: Status };
  t.is(err.code, Status.UNAVAILABLE);
});

test('credentials are sealed to their row: a copied ciphertext does not open elsewhere', async (t) => {
  const { client, db } = await setup(t);
  const a = await client.registerVim({ ...base, name: 'a' });
  const b = await client.registerVim({ ...base, name: 'b', credentials: { token: { bearerToken: 'tok' } } });
  const conn = new pg.Client({ connectionString: db.url });
  await conn.connect();
  await conn.query(`update vim set credentials_sealed = (select credentials_sealed from vim where id = $1) where id = $2`, [
    a.vim!.id,
    b.vim!.id,
  ]);
  await conn.end();
  const err = (await t.throwsAsync(client.getVim({ id: b.vim!.id }))) as unknown as { code: Status };
  t.is(err.code, Status.INTERNAL);
});

test('a database that cannot be reached gives UNAVAILABLE, not INTERNAL', async (t) => {
  const { url, orm } = await unreachableDatabase(t);
  const executor = await startRecordingExecutor(testLogger());
  const server = await startServer({
    logger: testLogger(),
    orm,
    databaseUrl: url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key,
    reconcileIntervalMs: 60_000,
  });
  const channel = createChannel(server.address);
  t.teardown(async () => {
    channel.close();
    await server.stop();
    await executor.stop();
  });
  const client = createClient(VimServiceDefinition, channel);
  await grpcError(t, client.registerVim(base), Status.UNAVAILABLE);
  await grpcError(t, client.listVims({}), Status.UNAVAILABLE);
});

test('vimUpdate: only the fields the mask names are read and checked; monitor.<field> changes that field alone', (t) => {
  const id = '00000000-0000-4000-8000-000000000001';
  const vim = (fields: Partial<Vim>): Vim => ({ ...Vim.fromPartial({ id }), ...fields });
  // An invalid name outside the mask is not looked at.
  const plain = vimUpdate({ vim: vim({ name: '', description: 'lab', isDefault: false }), updateMask: ['description', 'isDefault'] });
  t.is(plain.id, id);
  t.deepEqual([...plain.paths], ['description', 'is_default'], 'camelCase paths become snake_case');
  t.is(plain.name, undefined);
  t.is(plain.description, 'lab');
  t.is(plain.isDefault, false, 'is_default named: false is a value, not "unchanged"');
  const current: MonitorSettings = { ...resolveMonitorPolicy(undefined), intervalMs: 20_000, timeoutMs: 2_000 };
  t.is(plain.monitor(current), current, 'no monitor path: the current settings');

  const interval = vimUpdate({
    vim: vim({ monitor: { ...MonitorPolicy.fromPartial({ count: 9 }), interval: { seconds: 30, nanos: 0 } } }),
    updateMask: ['monitor.interval'],
  });
  t.deepEqual(interval.monitor(current), { ...current, intervalMs: 30_000 }, 'count, not named, keeps its value');
  const whole = vimUpdate({ vim: vim({ monitor: MonitorPolicy.fromPartial({ count: 2 }) }), updateMask: ['monitor'] });
  t.deepEqual(whole.monitor(current), resolveMonitorPolicy({ ...MonitorPolicy.fromPartial({}), count: 2 }), 'monitor replaces every field');

  const failure = (request: UpdateVimRequest) => {
    const err = t.throws(() => vimUpdate(request).monitor(current), { instanceOf: InvalidArgumentError });
    return err?.field;
  };
  t.is(failure({ vim: undefined, updateMask: ['name'] }), 'vim');
  t.is(failure({ vim: vim({ id: 'nope' }), updateMask: ['name'] }), 'vim.id');
  t.is(failure({ vim: vim({}), updateMask: ['monitor', 'monitor.count'] }), 'update_mask');
  t.is(failure({ vim: vim({ authUrl: 'ftp://x' }), updateMask: ['auth_url'] }), 'vim.auth_url');
  t.is(failure({ vim: vim({ monitor: MonitorPolicy.fromPartial({ count: 99 }) }), updateMask: ['monitor.count'] }), 'vim.monitor.count');
});
