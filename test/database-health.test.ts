// gRPC health tells the truth about the database: a conductor whose PostgreSQL
// goes away answers NOT_SERVING (so a load balancer takes it out), UpdateVim
// answers UNAVAILABLE meanwhile, and both come back with the database. A
// server that is shutting down stays NOT_SERVING whatever the database does.
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { runDatabaseHealth } from '../common/database-health.js';
import { createHealthRegistry, ServingStatus } from '../common/health.js';
import { createLogger } from '../common/logger.js';
import { startConductor } from '../conductor/main.js';
import { openDatabase } from '../db/connection.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import { HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { startServer } from '../server/main.js';
import { unreachableDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

const conductorService = VimMonitorAction2ConductorDefinition.fullName;
const fast = { intervalMs: 200, timeoutMs: 1_000, failuresBeforeDown: 2 };

test('a conductor whose PostgreSQL goes away turns NOT_SERVING, answers UNAVAILABLE, and serves again when it is back', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-test-dbhealth-'));
  chmodSync(dir, 0o755); // as root, PostgreSQL runs as user postgres, which must enter the folder
  let pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: dir });
  t.teardown(async () => {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const orm = await openDatabase({ url: pg.url, poolMax: 4 });
  t.teardown(() => orm.close(true));
  const conductor = await startConductor({ logger: testLogger(), orm, address: '127.0.0.1:0', databaseHealth: fast });
  t.teardown(() => conductor.stop());
  const channel = createChannel(conductor.address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  const client = createClient(VimMonitorAction2ConductorDefinition, channel);
  // A time limit on every call: one that never ends must fail the test naming itself, not hang the run.
  const within = () => ({ signal: AbortSignal.timeout(10_000) });
  const statuses = async () => [
    (await health.check({ service: '' }, within())).status,
    (await health.check({ service: conductorService }, within())).status,
  ];

  const vimId = randomUUID();
  const actionId = randomUUID();
  await orm.em
    .fork()
    .getConnection()
    .execute(
      `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                      report_interval_ms, stale_after_ms, status, action_id, action_assigned_at,
                      created_at, updated_at, status_changed_at)
     values (?, 'dbhealth', 'openstack', 'https://keystone.example:5000/v3', 'tcp', 1000, 500, 1, 3, 10000, 30000, 'PENDING', ?,
             now(), now(), now(), now())`,
      [vimId, actionId],
    );
  t.deepEqual(await statuses(), [ServingStatus.SERVING, ServingStatus.SERVING]);

  await pg.stop();
  const downAt = Date.now();
  await eventually(
    async () => (await statuses()).every((s) => s === ServingStatus.NOT_SERVING),
    5_000,
    'NOT_SERVING on "" and on the conductor service',
  );
  t.log(`NOT_SERVING ${Date.now() - downAt} ms after the database stopped`);
  const err = await t.throwsAsync(client.updateVim({ vimId, actionId, status: VimStatus.VIM_STATUS_REACHABLE }, within()), {
    instanceOf: ClientError,
  });
  t.is((err as ClientError).code, Status.UNAVAILABLE, (err as ClientError).details);

  // A new start on the same data folder and port: the ORM's pool reconnects by itself.
  pg = await startEmbeddedPostgres({ dataDir: dir, port: pg.port });
  await eventually(async () => (await statuses()).every((s) => s === ServingStatus.SERVING), 5_000, 'SERVING again');
  const reply = await client.updateVim({ vimId, actionId, status: VimStatus.VIM_STATUS_REACHABLE }, within());
  t.is(reply.status, VimStatus.VIM_STATUS_REACHABLE);
  const [row] = await orm.em.fork().getConnection().execute(`select status, last_report_at from vim where id = ?`, [vimId]);
  t.is(row.status, 'REACHABLE');
  t.truthy(row.last_report_at, 'the report was stored');
});

test('a Tacker server with no database turns NOT_SERVING', async (t) => {
  const { url, orm } = await unreachableDatabase(t);
  const server = await startServer({
    logger: testLogger(),
    orm,
    databaseUrl: url,
    address: '127.0.0.1:0',
    executors: ['127.0.0.1:9'],
    key: Buffer.alloc(32, 1),
    reconcileIntervalMs: 60_000,
    databaseHealth: fast,
  });
  t.teardown(() => server.stop());
  const channel = createChannel(server.address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  await eventually(async () => (await health.check({ service: '' })).status === ServingStatus.NOT_SERVING, 5_000, 'NOT_SERVING');
  t.pass();
});

test('the registry: dependency state and shutdown are kept apart, and a shut-down server never serves again', async (t) => {
  const registry = createHealthRegistry();
  registry.set('', ServingStatus.SERVING);
  registry.set('a.Service', ServingStatus.SERVING);
  registry.set('b.Service', ServingStatus.NOT_SERVING);
  const check = async (service: string) => (await registry.implementation.check({ service }, {} as never)).status;
  registry.setServing(false);
  t.is(await check(''), ServingStatus.NOT_SERVING);
  t.is(await check('a.Service'), ServingStatus.NOT_SERVING);
  registry.setServing(true);
  t.is(await check('a.Service'), ServingStatus.SERVING);
  t.is(await check('b.Service'), ServingStatus.NOT_SERVING, 'an entry set NOT_SERVING stays so');
  registry.setAllNotServing();
  registry.setServing(false);
  registry.setServing(true);
  registry.set('a.Service', ServingStatus.SERVING);
  t.is(await check(''), ServingStatus.NOT_SERVING);
  t.is(await check('a.Service'), ServingStatus.NOT_SERVING);
});

test('the loop: down after N failures in a row, logged once; up again at the first success, logged once', async (t) => {
  const registry = createHealthRegistry();
  registry.set('', ServingStatus.SERVING);
  const lines: Array<{ level: string; msg: string }> = [];
  const logger = createLogger({ level: 'info', write: (line) => lines.push(JSON.parse(line)) });
  const outcomes = [true, false, true, false, false, false, false, 'hang', true, true];
  const seen: string[] = [];
  const stop = new AbortController();
  const statusAfter: ServingStatus[] = [];
  const loop = runDatabaseHealth({
    health: registry,
    logger,
    signal: stop.signal,
    intervalMs: 5,
    timeoutMs: 50,
    failuresBeforeDown: 2,
    check: async () => {
      statusAfter.push((await registry.implementation.check({ service: '' }, {} as never)).status!);
      const next = outcomes[seen.length] ?? true;
      seen.push(String(next));
      if (seen.length >= outcomes.length + 1) stop.abort();
      if (next === 'hang') return new Promise(() => {}); // ignores its signal: the timeout ends it
      if (!next) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    },
  });
  await loop;
  // Status seen by each check, i.e. the result of the checks before it.
  t.deepEqual(statusAfter.slice(0, 10), [
    ServingStatus.SERVING, // start
    ServingStatus.SERVING, // ok
    ServingStatus.SERVING, // one failure is not enough
    ServingStatus.SERVING, // ok resets the count
    ServingStatus.SERVING, // one failure
    ServingStatus.NOT_SERVING, // two in a row
    ServingStatus.NOT_SERVING,
    ServingStatus.NOT_SERVING,
    ServingStatus.NOT_SERVING, // the hang timed out: a failure
    ServingStatus.SERVING, // back
  ]);
  t.deepEqual(
    lines.map((l) => `${l.level} ${l.msg}`),
    ['warn database unreachable: not serving until it answers again', 'info database reachable again: serving'],
  );
});
