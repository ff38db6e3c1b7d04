// Load balancing through a real HAProxy with the shipped deploy/haproxy.cfg:
// two conductor processes, a steady stream of reports, one conductor killed
// (SIGKILL) mid-run — and not one report lost.
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelayMs } from '../common/delay.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { ServingStatus } from '../common/health.js';
import { createLogger } from '../common/logger.js';
import { createTestDatabase } from './support/database.js';
import {
  deployHaproxyConfig,
  findHaproxy,
  grpcHealthCheckFrames,
  haproxyMissingMessage,
  startConductorProxy,
  type RunningHaproxy,
} from './support/haproxy.js';

const haproxy = findHaproxy();
// Where haproxy is absent and this is not CI, say so and skip; in CI the test runs and fails with the reason.
const proxyTest = haproxy || process.env.CI ? test.serial : test.skip;
if (!haproxy && !process.env.CI) console.warn(`conductor-haproxy: skipped — ${haproxyMissingMessage}`);

const root = fileURLToPath(new URL('..', import.meta.url));
const conductorService = VimMonitorAction2ConductorDefinition.fullName;

function haveHaproxy(t: ExecutionContext): boolean {
  if (!haproxy) t.fail(haproxyMissingMessage);
  return Boolean(haproxy);
}

// A conductor in a process of its own, so it can be killed like a crash. It
// counts the transitions it stored (one "vim status changed" log line each).
const childSource = `
import { startConductor } from ${JSON.stringify(pathToFileURL(path.join(root, 'conductor/main.ts')).href)};
import { openDatabase } from ${JSON.stringify(pathToFileURL(path.join(root, 'db/connection.ts')).href)};
import { createLogger } from ${JSON.stringify(pathToFileURL(path.join(root, 'common/logger.ts')).href)};
let stored = 0;
const logger = createLogger({ level: 'info', write: (line) => { if (line.includes('"msg":"vim status changed"')) stored++; } });
const orm = await openDatabase({ url: process.env.VIMMON_TEST_DATABASE_URL });
const conductor = await startConductor({ logger, orm, address: '127.0.0.1:0' });
process.on('message', async (m) => {
  if (m === 'count') process.send({ stored });
  if (m === 'stop') { await conductor.stop(); await orm.close(); process.exit(0); }
});
process.send({ address: conductor.address });
`;

interface ConductorProcess {
  address: string;
  child: ChildProcess;
  stored(): Promise<number>;
  kill(): Promise<void>;
}

async function startConductorProcess(t: ExecutionContext, script: string, databaseUrl: string): Promise<ConductorProcess> {
  const child = fork(script, [], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, VIMMON_TEST_DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.teardown(kill);
  const address = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { address?: string }) => (m.address ? resolve(m.address) : reject(new Error('unexpected message'))));
    child.once('exit', (code) => reject(new Error(`conductor process exited with ${code} before it listened`)));
  });
  return {
    address,
    child,
    kill,
    stored: () =>
      new Promise<number>((resolve, reject) => {
        const onMessage = (m: { stored?: number }) => {
          if (typeof m.stored !== 'number') return;
          child.off('message', onMessage);
          resolve(m.stored);
        };
        child.on('message', onMessage);
        if (!child.send('count')) reject(new Error('conductor process is gone'));
      }),
  };
}

// The retry policy of the executor's reporter: these codes mean no conductor took the report.
const retryable = new Set([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED, Status.ABORTED, Status.CANCELLED]);

// A conductor killed between writing its response headers and its trailers:
// HAProxy can no longer retry (the answer has begun) and ends the client's
// stream with RST_STREAM(NO_ERROR), which grpc-js reports as INTERNAL. The
// outcome is unknown, not refused, and a report is idempotent: send it again.
function isCutStream(err: ClientError): boolean {
  return err.code === Status.INTERNAL && /RST_STREAM|without gRPC status/.test(err.details);
}

async function insertVims(sql: pg.Client, count: number): Promise<Array<{ id: string; actionId: string }>> {
  const vims = Array.from({ length: count }, () => ({ id: randomUUID(), actionId: randomUUID() }));
  await sql.query(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                      report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     select v.id, 'vim-' || v.ord, 'openstack', 'https://keystone.example:5000/v3', 'tcp', 1000, 500, 1, 3, 10000, 30000,
            'PENDING', v.action_id, now(), now(), now(), now()
     from unnest($1::uuid[], $2::uuid[]) with ordinality as v(id, action_id, ord)`,
    [vims.map((v) => v.id), vims.map((v) => v.actionId)],
  );
  return vims;
}

test('the health check bytes in deploy/haproxy.cfg are a grpc.health.v1 Check for the conductor service', (t) => {
  const config = readFileSync(deployHaproxyConfig, 'utf8');
  const sent = [...config.matchAll(/^\s*tcp-check send-binary ([0-9a-f]+)/gm)].map((m) => m[1]);
  const frames = grpcHealthCheckFrames(conductorService);
  t.deepEqual(sent, [frames.preface, frames.settings, frames.headers, frames.data]);
  t.regex(config, /^\s*tcp-check expect binary 00000000020801\b/m, 'expects HealthCheckResponse{status: SERVING}');
  t.regex(config, /^\s*balance roundrobin/m);
  t.regex(config, /^\s*bind "\$\{VIMMON_LB_BIND-[^}]+\}" proto h2/m);
  t.is([...config.matchAll(/^\s*server \S+ "\$\{VIMMON_CONDUCTOR_\d-[^}]+\}" proto h2/gm)].length, 2);
});

proxyTest('a conductor killed mid-run behind haproxy loses no report; the other serves the rest', async (t) => {
  if (!haveHaproxy(t)) return;
  t.timeout(60_000);
  const db = await createTestDatabase(t);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  t.teardown(() => sql.end());

  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-conductor-haproxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, 'conductor-process.mjs');
  writeFileSync(script, childSource);
  const [survivor, victim] = await Promise.all([startConductorProcess(t, script, db.url), startConductorProcess(t, script, db.url)]);

  const proxy = await startConductorProxy({ conductors: [survivor.address, victim.address] });
  t.teardown(() => proxy.stop());
  await proxy.waitForServers((s) => s.length === 2 && s.every((x) => x.status === 'UP'));

  const channel = createChannel(proxy.address);
  t.teardown(() => channel.close());
  const client = createClient(VimMonitorAction2ConductorDefinition, channel);

  // Each VIM's reports go one after another, each a transition (alternating
  // statuses), so the database must hold exactly one event per report.
  const vimCount = 16;
  const reportsPerVim = 200;
  const total = vimCount * reportsPerVim;
  const killAfter = Math.floor(total / 3);
  const vims = await insertVims(sql, vimCount);
  let acknowledged = 0;
  let retries = 0;
  let cutStreams = 0;
  let killedAtAck: number | undefined;
  let storedAtKill: { survivor: number; victim: number } | undefined;
  let killing: Promise<void> | undefined;
  const lastSent = new Map<string, VimStatus>();

  const kill = async () => {
    const [s, v] = await Promise.all([survivor.stored(), victim.stored()]);
    storedAtKill = { survivor: s, victim: v };
    killedAtAck = acknowledged;
    await victim.kill();
  };

  const report = async (vimId: string, actionId: string, status: VimStatus) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await client.updateVim({ vimId, actionId, status }, { signal: AbortSignal.timeout(5_000) });
      } catch (err) {
        const cut = err instanceof ClientError && isCutStream(err);
        const code = err instanceof ClientError ? err.code : (err as Error).name === 'AbortError' ? Status.DEADLINE_EXCEEDED : undefined;
        if ((!cut && (code === undefined || !retryable.has(code))) || attempt >= 50) throw err;
        if (cut) cutStreams++;
        retries++;
        await sleep(backoffDelayMs(attempt, { baseDelayMs: 20, maxDelayMs: 500 }));
      }
    }
  };

  await Promise.all(
    vims.map(async (vim) => {
      for (let i = 0; i < reportsPerVim; i++) {
        const status = i % 2 === 0 ? VimStatus.VIM_STATUS_REACHABLE : VimStatus.VIM_STATUS_UNREACHABLE;
        const reply = await report(vim.id, vim.actionId, status);
        if (reply.status !== status)
          throw new Error(`report ${i} of ${vim.id}: sent ${VimStatus[status]}, stored ${VimStatus[reply.status]}`);
        lastSent.set(vim.id, status);
        acknowledged++;
        if (acknowledged === killAfter) killing = kill();
      }
    }),
  );
  await killing;
  t.log(`reports ${total}, client retries ${retries} (cut streams ${cutStreams}), killed after ${killedAtAck} acknowledgements`);

  // Both served before the kill.
  t.truthy(storedAtKill);
  t.true(storedAtKill!.survivor > 0, 'the survivor stored reports before the kill');
  t.true(storedAtKill!.victim > 0, 'the victim stored reports before the kill');

  // Every report accepted, and the database agrees.
  t.is(acknowledged, total);
  const { rows } = await sql.query<{ vim_id: string; n: number; statuses: string[]; status: string; last_report_at: Date | null }>(
    `select v.id as vim_id, count(e.id)::int as n, array_agg(e.from_status || '>' || e.to_status order by e.id) as statuses,
            v.status, v.last_report_at
     from vim v left join vim_event e on e.vim_id = v.id group by v.id`,
  );
  t.is(rows.length, vimCount);
  for (const row of rows) {
    t.is(row.n, reportsPerVim, `one event per report for ${row.vim_id}`);
    t.is(row.status, lastSent.get(row.vim_id) === VimStatus.VIM_STATUS_REACHABLE ? 'REACHABLE' : 'UNREACHABLE');
    t.truthy(row.last_report_at);
    const chain = row.statuses;
    t.is(chain[0], 'PENDING>REACHABLE');
    t.true(
      chain.slice(1).every((step, i) => step.split('>')[0] === chain[i].split('>')[1]),
      'every event continues from the previous one',
    );
  }

  // The survivor served the rest: everything acknowledged after the kill, but
  // for reports in flight at that moment (at most one per VIM), which the victim
  // may have stored before it died.
  const survivorStored = await survivor.stored();
  const afterKill = total - killedAtAck!;
  t.true(
    survivorStored - storedAtKill!.survivor >= afterKill - vimCount,
    `survivor stored ${survivorStored - storedAtKill!.survivor} of ${afterKill} after the kill`,
  );
  const stats = await proxy.waitForServers((s) => s.find((x) => x.server === 'conductor2')?.status.startsWith('DOWN') ?? false, 5_000);
  t.true(stats.find((x) => x.server === 'conductor1')!.status.startsWith('UP'));
});

proxyTest('haproxy’s health check speaks grpc.health.v1: a conductor answering NOT_SERVING is taken out and comes back', async (t) => {
  if (!haveHaproxy(t)) return;
  t.timeout(30_000);
  const logger = createLogger({ level: 'silent' });
  const servers = [0, 1].map(() =>
    createGrpcServer({
      logger,
      services: [serviceEntry(VimMonitorAction2ConductorDefinition, { updateVim: async (r) => ({ status: r.status }) })],
    }),
  );
  const addresses = await Promise.all(servers.map(async (s) => `127.0.0.1:${await s.listen('127.0.0.1:0')}`));
  for (const s of servers) t.teardown(() => s.shutdown());
  const proxy: RunningHaproxy = await startConductorProxy({ conductors: [addresses[0], addresses[1]] });
  t.teardown(() => proxy.stop());
  await proxy.waitForServers((s) => s.length === 2 && s.every((x) => x.status === 'UP'));

  servers[1].health.set(conductorService, ServingStatus.NOT_SERVING);
  const down = await proxy.waitForServers((s) => s.find((x) => x.server === 'conductor2')!.status === 'DOWN');
  t.is(down.find((x) => x.server === 'conductor1')!.status, 'UP');

  // While it is out, every call goes to the other one.
  const channel = createChannel(proxy.address);
  t.teardown(() => channel.close());
  const client = createClient(VimMonitorAction2ConductorDefinition, channel);
  const before = await proxy.serverStats();
  for (let i = 0; i < 20; i++)
    await client.updateVim({ vimId: randomUUID(), actionId: randomUUID(), status: VimStatus.VIM_STATUS_REACHABLE });
  const after = await proxy.serverStats();
  const served = (name: string) => after.find((x) => x.server === name)!.responses2xx - before.find((x) => x.server === name)!.responses2xx;
  t.is(served('conductor1'), 20);
  t.is(served('conductor2'), 0);

  servers[1].health.set(conductorService, ServingStatus.SERVING);
  await proxy.waitForServers((s) => s.every((x) => x.status === 'UP'));
  t.pass();
});
