// How the mesh grows from 10,000 to 100,000 VIMs on this machine. For each size
// (SIZES, default 10000,100000; QUICK=1: 1000,5000) on a scratch database of its
// own, a mesh of separate processes as operators run it (bench/support/scale-mesh.ts):
// 2 `vimmon server`, 3 `vimmon conductor`, 10 `vimmon executor`, the executors
// reaching the conductors through a comma list (grpc-js round robin). VIMs
// probe 50 real TCP listeners of this process over loopback (TCP probe, interval
// 60 s, report_interval and stale_after as the defaults give: 60 s and 180 s).
// Measured, each figure for every size and the growth from the first to the last:
//   registration   RegisterVim/s through the servers (this process's client, round
//                  robin over both, REGISTER_CONCURRENCY calls in flight);
//   monitored      time until every VIM has its action started and its first
//                  report stored (vim.action_started and last_report_at), from
//                  the first registration and from the last;
//   steady window  STEADY_S seconds once all are monitored (and SETTLE_S after):
//                  reports/s accepted by the conductors and the UpdateVim latency
//                  (their Prometheus counters and grpc_server_handling_seconds,
//                  merged across the 3), CPU of PostgreSQL (utime+stime from /proc
//                  of the backends of this database, and of every postgres
//                  process), of each role's processes, the executors' RSS;
//   reconcile pass nothing times the servers' reconciler, so after the window
//                  this process builds the very same reconciler (server/reconciler.ts)
//                  on the same database and executors and times, after a warm-up,
//                  RECONCILE_PASSES passes of each kind, alternating: with the
//                  full lost-action check (every live executor's ListActions against
//                  its rows, what a server adds every 5 min), with the instance check
//                  (each executor's instance id, what a server adds every 10 s) and
//                  the claim query alone (what a server runs every 2 s).
// PostgreSQL with autovacuum off (this machine's): the bench runs VACUUM (ANALYZE)
// of the vim tables every VACUUM_EVERY_S (30) itself, as autovacuum would.
// Progress on stderr, JSON on stdout (each size's result also on stderr once done). SIGINT ends every child, drops the
// scratch databases and closes the listeners before exiting.
//
//   npm run bench:scale
//   QUICK=1 npm run bench:scale
//   SIZES=10000 STEADY_S=120 npm run bench:scale
//   REPORT_INTERVAL_S=300 npm run bench:scale   (heartbeats every 5 min, probes still every 60 s)
//   ROLE_LOADER=dist npm run bench:scale      (the roles from dist/ on plain node)
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { createClient } from 'nice-grpc';
import { msToDuration } from '../common/duration.js';
import { createRoundRobinChannel } from '../common/grpc-client.js';
import { createLogger } from '../common/logger.js';
import { openDatabase, type Orm } from '../db/connection.js';
import { ProbeKind, VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createExecutorPool } from '../server/executors.js';
import { createHandoff } from '../server/handoff.js';
import { createReconciler } from '../server/reconciler.js';
import { createScratchDatabase, type ScratchDatabase } from '../test/support/scratch-database.js';
import { openTcpTarget, type TcpTarget } from '../test/support/targets.js';
import { eventually } from '../test/support/wait.js';
import { describeMachine } from './support/conductor-load.js';
import { startMesh, stopAll, type Mesh, type RoleProcess } from './support/scale-mesh.js';
import { bucketsBetween, countOf, mergedBuckets, quantileOf, scrape, sumOf, type Sample } from './support/scale-metrics.js';
import { cpuReading, cpuSince, postgresProcesses, treeCpuMs, treeRssMiB } from './support/scale-processes.js';

function bounded(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${raw}`);
  return value;
}

const quick = process.env.QUICK === '1';
const sizes = (process.env.SIZES ?? (quick ? '1000,5000' : '10000,100000')).split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error(`SIZES: ${s} is not a size from 1 to 1000000`);
  return n;
});
// At least one report_interval, so that every VIM's heartbeat falls in the window.
const steadyS = bounded('STEADY_S', quick ? 60 : 150, 5, 3_600);
const settleS = bounded('SETTLE_S', quick ? 5 : 15, 0, 600);
const registerConcurrency = bounded('REGISTER_CONCURRENCY', 32, 1, 256);
const registerTimeoutS = bounded('REGISTER_TIMEOUT_S', 1_800, 10, 7_200);
const monitorTimeoutS = bounded('MONITOR_TIMEOUT_S', 900, 10, 7_200);
const reconcilePasses = bounded('RECONCILE_PASSES', 5, 1, 50);
const vacuumEveryS = bounded('VACUUM_EVERY_S', 30, 5, 3_600);
const meshSize = {
  servers: bounded('SERVERS', 2, 1, 8),
  conductors: bounded('CONDUCTORS', 3, 1, 8),
  executors: bounded('EXECUTORS', 10, 1, 32),
};
const loader = process.env.ROLE_LOADER === 'dist' ? 'dist' : 'tsx';
const executorNodeOptions = process.env.EXECUTOR_NODE_OPTIONS;
const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const intervalMs = 60_000;
// REPORT_INTERVAL_S: heartbeats every this many seconds (default 60, the interval); the stale
// limit is three of them, as the defaults give. A longer one is SCALING.md's lever on writes.
const reportIntervalMs = bounded('REPORT_INTERVAL_S', 60, 60, 3_600) * 1_000;
const targetCount = 50;

const logger = createLogger({ level: 'warn' });
const progress = (message: string) => process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;
const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;

// ---------------------------------------------------------------- what must be undone

const live = { processes: new Set<RoleProcess>(), databases: new Set<ScratchDatabase>(), targets: [] as TcpTarget[] };

async function cleanUp(): Promise<void> {
  await stopAll([...live.processes]);
  live.processes.clear();
  for (const db of live.databases) await db.drop().catch((err: unknown) => progress(`could not drop a scratch database: ${err}`));
  live.databases.clear();
  await Promise.all(live.targets.map((t) => t.close()));
  live.targets = [];
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130); // a second ^C: at once
  interrupted = true;
  progress('SIGINT: stopping every child and dropping the scratch databases');
  void cleanUp().finally(() => process.exit(130));
});

// ---------------------------------------------------------------- registration

interface Registration {
  requested: number;
  registered: number;
  errors: number;
  firstErrors: string[];
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** REGISTER_TIMEOUT_S ran out before every VIM was asked for. */
  timedOut: boolean;
}

async function registerVims(n: number, servers: RoleProcess[], ports: number[]): Promise<Registration> {
  const channel = createRoundRobinChannel(servers.map((s) => s.address).join(','));
  const client = createClient(VimServiceDefinition, channel);
  const monitor = {
    probe: ProbeKind.PROBE_KIND_TCP,
    interval: msToDuration(intervalMs),
    reportInterval: msToDuration(reportIntervalMs),
    staleAfter: msToDuration(3 * reportIntervalMs),
  };
  const latencies: number[] = [];
  const firstErrors: string[] = [];
  let next = 0;
  let registered = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = started + registerTimeoutS * 1_000;
  const ticker = setInterval(() => {
    const s = (performance.now() - started) / 1_000;
    progress(`  registered ${registered}/${n} (${Math.round(registered / s)}/s, ${errors} errors)`);
  }, 10_000);
  try {
    await Promise.all(
      Array.from({ length: registerConcurrency }, async () => {
        while (next < n && !interrupted && performance.now() < deadline) {
          const i = next++;
          const t0 = performance.now();
          try {
            await client.registerVim(
              { name: `scale-${i}`, authUrl: `http://127.0.0.1:${ports[i % ports.length]}/v3`, monitor },
              { signal: AbortSignal.timeout(30_000) },
            );
            registered++;
            latencies.push(performance.now() - t0);
          } catch (err) {
            errors++;
            if (firstErrors.length < 5) firstErrors.push(String(err).slice(0, 300));
          }
        }
      }),
    );
  } finally {
    clearInterval(ticker);
    channel.close();
  }
  const seconds = (performance.now() - started) / 1_000;
  latencies.sort((a, b) => a - b);
  return {
    requested: n,
    registered,
    errors,
    firstErrors,
    seconds: round1(seconds),
    perSecond: round1(registered / seconds),
    latencyMs: { p50: round1(percentile(latencies, 50)), p99: round1(percentile(latencies, 99)), max: round1(latencies.at(-1) ?? 0) },
    timedOut: next < n,
  };
}

// ---------------------------------------------------------------- the steady window

interface Snapshot {
  atMs: number;
  dbNow: Date;
  conductors: Sample[][];
  executors: Sample[][];
  servers: Sample[][];
  vimEvents: number;
}

/** The backends serving one database, from their process titles ("… USER DATABASE HOST(PORT) STATE"). */
const backendsOf = (database: string) =>
  postgresProcesses()
    .filter((p) => p.title.split(' ').includes(database))
    .map((p) => p.pid);

/** CPU from now until the returned function is called, as % of one core, by group of processes. */
function cpuWindow(mesh: Mesh, database: string) {
  const startedAt = performance.now();
  const roles = new Map(mesh.all().map((p) => [p, treeCpuMs(p.pid)]));
  const postgresDb = cpuReading(backendsOf(database));
  const postgresAll = cpuReading(postgresProcesses().map((p) => p.pid));
  const bench = process.cpuUsage();
  return () => {
    const ms = performance.now() - startedAt;
    const pct = (cpuMsSpent: number) => round2((cpuMsSpent / ms) * 100);
    const group = (ps: RoleProcess[]) => pct(ps.reduce((s, p) => s + treeCpuMs(p.pid) - roles.get(p)!, 0));
    const benchCpu = process.cpuUsage(bench);
    return {
      servers: group(mesh.servers),
      conductors: group(mesh.conductors),
      executors: group(mesh.executors),
      eachExecutor: mesh.executors.map((p) => pct(treeCpuMs(p.pid) - roles.get(p)!)),
      /** The backends of this database (the servers', conductors' and this process's connections). */
      postgresBackends: pct(cpuSince(postgresDb, backendsOf(database))),
      /** Every postgres process, its background writers included, and whatever else uses the server meanwhile. */
      postgresAll: pct(
        cpuSince(
          postgresAll,
          postgresProcesses().map((p) => p.pid),
        ),
      ),
      /** This process: the registering client, the 50 TCP listeners every probe connects to, the scrapes. */
      benchProcess: pct((benchCpu.user + benchCpu.system) / 1_000),
    };
  };
}

async function snapshot(mesh: Mesh, sql: pg.Client): Promise<Snapshot> {
  // 30 s: at 100,000 VIMs on 2 cores a saturated role answered its /metrics after more than 5 s,
  // and the lost scrape cost the whole size its figures.
  const scrapeAll = (ps: RoleProcess[]) => Promise.all(ps.map((p) => scrape(p.metricsAddress, 30_000)));
  const [conductors, executors, servers] = await Promise.all([
    scrapeAll(mesh.conductors),
    scrapeAll(mesh.executors),
    scrapeAll(mesh.servers),
  ]);
  const { rows } = await sql.query(`select now() as now, (select count(*) from vim_event)::int as events`);
  return { atMs: performance.now(), dbNow: rows[0].now as Date, conductors, executors, servers, vimEvents: rows[0].events as number };
}

async function steadyWindow(mesh: Mesh, sql: pg.Client, database: string) {
  const loadAverageAtStart = os.loadavg().map(round2);
  const cpu = cpuWindow(mesh, database);
  const before = await snapshot(mesh, sql);
  for (let left = steadyS; left > 0; left -= 30) {
    progress(`  steady window: ${left} s left`);
    await sleep(Math.min(30, left) * 1_000);
    if (interrupted) throw new Error('interrupted');
  }
  const after = await snapshot(mesh, sql);
  const cpuPercentOfOneCore = cpu();
  const windowMs = after.atMs - before.atMs;
  const reports = (outcome: string) =>
    sumOf(after.conductors, 'vimmon_conductor_reports_total', { outcome }) -
    sumOf(before.conductors, 'vimmon_conductor_reports_total', { outcome });
  const updateVim = { grpc_service: 'vimmon.conductor.v1.VimMonitorAction2Conductor', grpc_method: 'UpdateVim' };
  const latency = bucketsBetween(
    mergedBuckets(before.conductors, 'grpc_server_handling_seconds', updateVim),
    mergedBuckets(after.conductors, 'grpc_server_handling_seconds', updateVim),
  );
  const ms = (q: number) => {
    const v = quantileOf(latency, q);
    return v && { estimate: round2(v.estimate * 1_000), atMost: v.atMost === Number.POSITIVE_INFINITY ? 'above 10000' : v.atMost * 1_000 };
  };
  const { rows } = await sql.query(`select count(*)::int as n from vim where deleted_at is null and last_report_at >= $1`, [before.dbNow]);
  const rssMiB = (ps: RoleProcess[]) => round1(ps.reduce((sum, p) => sum + treeRssMiB(p.pid), 0));
  const accepted = reports('accepted');
  const perReport = (percent: number) => (accepted > 0 ? round2(((percent / 100) * windowMs) / accepted) : null);
  const replacements = (s: Sample[][]) => sumOf(s, 'vimmon_reconciler_replacements_total');
  return {
    seconds: round1(windowMs / 1_000),
    loadAverage: { start: loadAverageAtStart, end: os.loadavg().map(round2) },
    reportsPerSecond: {
      accepted: round1((accepted * 1_000) / windowMs),
      fenced: round1((reports('fenced') * 1_000) / windowMs),
      rejected: round1((reports('rejected') * 1_000) / windowMs),
      /** Answered RESOURCE_EXHAUSTED by a conductor whose queue was full (sent again after a backoff). */
      busy: round1((reports('busy') * 1_000) / windowMs),
      /** What the policy asks for: one heartbeat per VIM per report_interval. */
      expected: round1(sumOf(after.executors, 'vimmon_executor_actions') / (reportIntervalMs / 1_000)),
    },
    vimsReportedInWindow: rows[0].n as number,
    vimEventsInWindow: after.vimEvents - before.vimEvents,
    reconcilerReplacementsInWindow: replacements(after.servers) - replacements(before.servers),
    updateVimMs: { calls: countOf(latency), p50: ms(0.5), p99: ms(0.99), bucketsSeconds: 'grpc_server_handling_seconds: 5 ms to 10 s' },
    cpuPercentOfOneCore,
    cpuMsPerAcceptedReport: {
      conductors: perReport(cpuPercentOfOneCore.conductors),
      postgresBackends: perReport(cpuPercentOfOneCore.postgresBackends),
      executors: perReport(cpuPercentOfOneCore.executors),
    },
    rssMiB: { executors: rssMiB(mesh.executors), conductors: rssMiB(mesh.conductors), servers: rssMiB(mesh.servers) },
    executors: mesh.executors.map((p, i) => ({
      name: p.name,
      actions: sumOf([after.executors[i]!], 'vimmon_executor_actions'),
      cpuPercentOfOneCore: cpuPercentOfOneCore.eachExecutor[i],
      rssMiB: round1(treeRssMiB(p.pid)),
    })),
  };
}

// ---------------------------------------------------------------- what autovacuum would do

/**
 * With autovacuum off (as on this project's shared PostgreSQL) nothing ever
 * ANALYZEs the new tables: the planner, believing `vim` empty, joins a
 * conductor's group of reports against every live row (a hash join over the
 * whole table per statement) instead of looking each one up by id. This does
 * what autovacuum would, every `everyS`, on a connection of its own; with
 * autovacuum on it does nothing.
 */
async function startMaintenance(url: string, everyS: number) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // the database is dropped under it at the end
  await client.connect();
  const autovacuum = (await client.query('show autovacuum')).rows[0].autovacuum as string;
  let running = autovacuum !== 'on';
  const runs: number[] = [];
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await client.query('vacuum (analyze) vim, vim_event, vim_audit').catch((err: unknown) => progress(`  vacuum failed: ${err}`));
      runs.push(performance.now() - t0);
      for (let waited = 0; running && waited < everyS * 1_000; waited += 500) await sleep(500);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await client.end().catch(() => {});
      const sorted = [...runs].sort((a, b) => a - b);
      return {
        autovacuum,
        benchVacuumAnalyze: autovacuum === 'on' ? 'not needed' : `every ${everyS} s`,
        runs: runs.length,
        msMedian: round1(percentile(sorted, 50)),
        msMax: round1(sorted.at(-1) ?? 0),
      };
    },
  };
}

// ---------------------------------------------------------------- a reconcile pass, timed

async function timeReconcilePasses(orm: Orm, mesh: Mesh, key: Buffer) {
  const executors = mesh.executors.map((e) => e.address);
  const pool = createExecutorPool({ executors, logger });
  const stopPool = new AbortController();
  const polling = pool.run(stopPool.signal);
  try {
    await eventually(() => pool.live().length === executors.length, 30_000, 'every executor live to the timed reconciler', 100);
    const handoff = createHandoff({ orm, pool, logger });
    const reconciler = (lostActionCheckMs: number, lostActionFullCheckMs: number) =>
      createReconciler({ orm, pool, handoff, logger, key, intervalMs: 2_000, lostActionCheckMs, lostActionFullCheckMs });
    // Every pass asks every live executor: for all its actions (full), or for its instance id and
    // all its actions only if that changed since the last listing (what a server does every 10 s,
    // with a full listing every 5 min); never: the claim alone (what a server runs every 2 s).
    const fullChecking = reconciler(0, 0);
    const instanceChecking = reconciler(0, Number.MAX_SAFE_INTEGER);
    const claiming = reconciler(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const timed = async (r: ReturnType<typeof reconciler>) => {
      const t0 = performance.now();
      const replaced = await r.pass();
      return { ms: round1(performance.now() - t0), replaced };
    };
    // The instance checker's first pass lists every executor (no instance id known yet).
    const warmUp = [await timed(fullChecking), await timed(instanceChecking)];
    const withCheck: Array<{ ms: number; replaced: number }> = [];
    const withInstanceCheck: Array<{ ms: number; replaced: number }> = [];
    const claimOnly: Array<{ ms: number; replaced: number }> = [];
    for (let i = 0; i < reconcilePasses; i++) {
      withCheck.push(await timed(fullChecking));
      withInstanceCheck.push(await timed(instanceChecking));
      claimOnly.push(await timed(claiming));
    }
    const t0 = performance.now();
    const listed = await pool.runningActions(executors[0]!, 60_000);
    const listActionsMs = round1(performance.now() - t0);
    const summary = (passes: Array<{ ms: number }>) => {
      const ms = passes.map((p) => p.ms).sort((a, b) => a - b);
      return { median: percentile(ms, 50), max: ms.at(-1)!, passes: ms };
    };
    return {
      warmUpMs: warmUp.map((p) => p.ms),
      withLostActionCheckMs: summary(withCheck),
      withInstanceCheckMs: summary(withInstanceCheck),
      claimOnlyMs: summary(claimOnly),
      replaced: [...warmUp, ...withCheck, ...withInstanceCheck, ...claimOnly].reduce((s, p) => s + p.replaced, 0),
      listActionsOfOneExecutor: { actions: listed.actions.size, ms: listActionsMs },
    };
  } finally {
    stopPool.abort();
    await polling;
    pool.close();
  }
}

// ---------------------------------------------------------------- one size

async function runSize(n: number, ports: number[]) {
  progress(`size ${n}: scratch database, ${meshSize.servers} servers, ${meshSize.conductors} conductors, ${meshSize.executors} executors`);
  const scratch = await createScratchDatabase(baseUrl, 'vimmon_scale');
  live.databases.add(scratch);
  const database = new URL(scratch.url).pathname.slice(1);
  const orm = await openDatabase({ url: scratch.url, poolMax: 4 }); // the migrations, before the roles start
  const sql = new pg.Client({ connectionString: scratch.url });
  sql.on('error', () => {}); // dropped with its database on SIGINT; the query in flight fails instead
  await sql.connect();
  const maintenance = await startMaintenance(scratch.url, vacuumEveryS);
  const key = randomBytes(32);
  let mesh: Mesh | undefined;
  let maintenanceResult: Awaited<ReturnType<typeof maintenance.stop>> | undefined;
  try {
    const meshStarted = performance.now();
    mesh = await startMesh({ ...meshSize, databaseUrl: scratch.url, secretKey: key.toString('base64'), loader, executorNodeOptions }, (p) =>
      live.processes.add(p),
    );
    const meshStartS = round1((performance.now() - meshStarted) / 1_000);
    const idleExecutorRssMiB = round1(mesh.executors.reduce((s, p) => s + treeRssMiB(p.pid), 0) / mesh.executors.length);
    progress(`  mesh up in ${meshStartS} s; registering ${n} VIMs, ${registerConcurrency} calls in flight`);

    const registrationStarted = performance.now();
    const registrationCpu = cpuWindow(mesh, database);
    const registered = await registerVims(n, mesh.servers, ports);
    const registrationCpuPercent = registrationCpu();
    // CPU per registration: what extrapolates, where the rate itself depends on what else runs.
    const perRegistration = (percent: number) => round2((percent / 100) * ((registered.seconds * 1_000) / registered.registered));
    const registration = {
      ...registered,
      cpuPercentOfOneCore: registrationCpuPercent,
      cpuMsPerRegistration: {
        servers: perRegistration(registrationCpuPercent.servers),
        executors: perRegistration(registrationCpuPercent.executors),
        conductors: perRegistration(registrationCpuPercent.conductors),
        postgresBackends: perRegistration(registrationCpuPercent.postgresBackends),
      },
    };
    const registrationEnded = performance.now();
    progress(
      `  registered ${registration.registered} in ${registration.seconds} s (${registration.perSecond}/s, ${registration.errors} errors)`,
    );

    const count = async () =>
      (
        await sql.query(
          `select count(*)::int as total, (count(*) filter (where action_started and last_report_at is not null))::int as monitored
           from vim where deleted_at is null`,
        )
      ).rows[0] as { total: number; monitored: number };
    let counts = await count();
    const monitorDeadline = performance.now() + monitorTimeoutS * 1_000;
    let lastLog = 0;
    while (counts.monitored < counts.total && performance.now() < monitorDeadline && !interrupted) {
      if (performance.now() - lastLog > 10_000) {
        progress(`  monitored ${counts.monitored}/${counts.total}`);
        lastLog = performance.now();
      }
      await sleep(1_000);
      counts = await count();
    }
    const monitoredAt = performance.now();
    const allMonitored = counts.monitored === counts.total && counts.total === registration.registered && registration.registered > 0;
    const monitored = {
      vims: counts.monitored,
      of: counts.total,
      all: allMonitored,
      fromFirstRegistrationS: round1((monitoredAt - registrationStarted) / 1_000),
      afterLastRegistrationS: round1((monitoredAt - registrationEnded) / 1_000),
    };
    progress(`  monitored ${counts.monitored}/${counts.total}, ${monitored.afterLastRegistrationS} s after the last registration`);
    if (!allMonitored)
      throw Object.assign(new Error(`only ${counts.monitored} of ${counts.total} VIMs monitored after ${monitorTimeoutS} s`), {
        registration,
        monitored,
      });

    await sleep(settleS * 1_000);
    const steady = await steadyWindow(mesh, sql, database);
    progress(
      `  steady: ${steady.reportsPerSecond.accepted} reports/s, UpdateVim p99 ${steady.updateVimMs.p99?.estimate} ms, postgres ${steady.cpuPercentOfOneCore.postgresBackends} %`,
    );
    const reconcile = await timeReconcilePasses(orm, mesh, key);
    progress(
      `  reconcile pass ${reconcile.withLostActionCheckMs.median} ms with the full lost-action check, ${reconcile.withInstanceCheckMs.median} ms with the instance check, ${reconcile.claimOnlyMs.median} ms without`,
    );
    maintenanceResult = await maintenance.stop();
    const { rows } = await sql.query(
      `select pg_database_size(current_database())::float8 as db, pg_total_relation_size('vim')::float8 as vim,
              pg_total_relation_size('vim_event')::float8 as vim_event, pg_total_relation_size('vim_audit')::float8 as vim_audit`,
    );
    const mib = (b: number) => round1(b / 1024 / 1024);
    return {
      /** The VIMs reached: registered (all of them monitored); `requested` in registration. */
      vims: registration.registered,
      meshStartS,
      idleExecutorRssMiB,
      registration,
      monitored,
      steady,
      reconcilePass: reconcile,
      maintenance: maintenanceResult,
      databaseMiB: { total: mib(rows[0].db), vim: mib(rows[0].vim), vimEvent: mib(rows[0].vim_event), vimAudit: mib(rows[0].vim_audit) },
    };
  } finally {
    progress(`  size ${n}: stopping the mesh, dropping the database`);
    if (!maintenanceResult) await maintenance.stop();
    if (mesh) await mesh.stop();
    for (const p of mesh?.all() ?? []) live.processes.delete(p);
    await sql.end();
    await orm.close(true);
    await scratch.drop();
    live.databases.delete(scratch);
  }
}

// ---------------------------------------------------------------- growth

type SizeResult = Awaited<ReturnType<typeof runSize>>;

function growth(results: SizeResult[]) {
  if (results.length < 2) return undefined;
  const first = results[0]!;
  const last = results.at(-1)!;
  const figures: Record<string, (r: SizeResult) => number | undefined> = {
    registrationPerSecond: (r) => r.registration.perSecond,
    monitoredAfterLastRegistrationS: (r) => r.monitored.afterLastRegistrationS,
    reconcilePassWithLostActionCheckMs: (r) => r.reconcilePass.withLostActionCheckMs.median,
    reconcilePassWithInstanceCheckMs: (r) => r.reconcilePass.withInstanceCheckMs.median,
    reconcilePassClaimOnlyMs: (r) => r.reconcilePass.claimOnlyMs.median,
    reportsPerSecond: (r) => r.steady.reportsPerSecond.accepted,
    updateVimP99Ms: (r) => r.steady.updateVimMs.p99?.estimate,
    postgresBackendsCpuPercent: (r) => r.steady.cpuPercentOfOneCore.postgresBackends,
    postgresAllCpuPercent: (r) => r.steady.cpuPercentOfOneCore.postgresAll,
    executorsCpuPercent: (r) => r.steady.cpuPercentOfOneCore.executors,
    executorsRssMiB: (r) => r.steady.rssMiB.executors,
    conductorsCpuPercent: (r) => r.steady.cpuPercentOfOneCore.conductors,
    serversCpuPercent: (r) => r.steady.cpuPercentOfOneCore.servers,
    registrationServersCpuMsPerVim: (r) => r.registration.cpuMsPerRegistration.servers,
    registrationPostgresCpuMsPerVim: (r) => r.registration.cpuMsPerRegistration.postgresBackends,
    conductorsCpuMsPerReport: (r) => r.steady.cpuMsPerAcceptedReport.conductors ?? undefined,
    postgresCpuMsPerReport: (r) => r.steady.cpuMsPerAcceptedReport.postgresBackends ?? undefined,
    databaseMiB: (r) => r.databaseMiB.total,
  };
  return {
    from: first.vims,
    to: last.vims,
    vimsRatio: round2(last.vims / first.vims),
    figures: Object.fromEntries(
      Object.entries(figures).map(([name, of]) => {
        const a = of(first);
        const b = of(last);
        return [name, { [first.vims]: a, [last.vims]: b, ratio: a && b !== undefined ? round2(b / a) : null }];
      }),
    ),
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  const machine = {
    ...(await describeMachine(admin)),
    memoryGiB: round1(os.totalmem() / 1024 ** 3),
    loadAverageAtStart: os.loadavg().map(round2),
  };
  await admin.end();
  for (let i = 0; i < targetCount; i++) live.targets.push(await openTcpTarget());
  const ports = live.targets.map((t) => t.port);
  const results: SizeResult[] = [];
  let stoppedAt: { vims: number; error: string; partial?: unknown } | undefined;
  for (const n of sizes) {
    if (interrupted) break;
    try {
      const result = await runSize(n, ports);
      results.push(result);
      // Kept even if a later, larger size fails or is interrupted.
      progress(`size ${n} done: ${JSON.stringify(result)}`);
      // REGISTER_TIMEOUT_S ran out: this is as far as registration got; a larger size would not get further.
      if (result.registration.timedOut) break;
    } catch (err) {
      const partial = (err as { registration?: unknown; monitored?: unknown }).registration
        ? { registration: (err as { registration: unknown }).registration, monitored: (err as { monitored: unknown }).monitored }
        : undefined;
      stoppedAt = { vims: n, error: String(err), partial };
      progress(`size ${n} failed: ${err}`);
      break;
    }
  }
  await cleanUp();
  console.log(
    JSON.stringify(
      {
        bench: 'scale',
        machine,
        mesh: { ...meshSize, conductorTarget: 'comma list, grpc-js round robin', loader, executorNodeOptions: executorNodeOptions ?? null },
        policy: { probe: 'tcp', intervalMs, reportIntervalMs, staleAfterMs: 3 * reportIntervalMs, targets: targetCount },
        settings: { sizes, steadyS, settleS, registerConcurrency, registerTimeoutS, reconcilePasses, vacuumEveryS },
        largestSizeReached: results.at(-1)?.vims ?? 0,
        sizes: results,
        growth: growth(results),
        ...(stoppedAt ? { stoppedAt } : {}),
      },
      null,
      2,
    ),
  );
}

try {
  await main();
} catch (err) {
  progress(`failed: ${err instanceof Error ? err.stack : err}`);
  await cleanUp();
  process.exitCode = 1;
}
