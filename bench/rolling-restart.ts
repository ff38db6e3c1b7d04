// A rolling restart of every executor, and how long each VIM went without an
// accepted report meanwhile. A Tacker server and a conductor run in this process
// (on a scratch database); EXECUTORS `vimmon executor` children (tsx) report to
// the conductor; VIMS VIMs probe real local TCP listeners (50, shared) at
// INTERVAL_MS with report_interval = interval. Two rounds, one run:
//   drain: each executor in turn gets SIGTERM (it drains: NOT_SERVING, its VIMs
//          move to the others, then it exits), is started again on its address,
//          and the next one goes once it is live;
//   kill:  the same with SIGKILL (what the mesh did before it could drain: the
//          VIMs wait for the lost-action check or the stale limit).
// Every accepted report is logged by a trigger on the vim rows (each new
// last_report_at); a VIM's gap is the longest time between two accepted reports
// from the round's start until every VIM has reported again after the last
// restart. Prints JSON: per round the gap's p50/p99/max in ms and in intervals,
// the round's duration, the VIMs over one interval, and the VIMs (and by how
// much) over the longest gap of a first round with no restart: the heartbeat's
// own gaps (a little over one interval: the report's latency), the yardstick.
//
//   npm run bench:rolling
//   VIMS=500 EXECUTORS=3 INTERVAL_MS=2000 npm run bench:rolling
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net, { type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { msToDuration } from '../common/duration.js';
import { createLogger } from '../common/logger.js';
import { startConductor } from '../conductor/main.js';
import { openDatabase } from '../db/connection.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { ProbeKind, VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../server/main.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const vims = Number(process.env.VIMS ?? 500);
const executorCount = Number(process.env.EXECUTORS ?? 3);
const intervalMs = Number(process.env.INTERVAL_MS ?? 2_000);
const staleAfterMs = Number(process.env.STALE_AFTER_MS ?? 3 * intervalMs);
const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const targetCount = 50;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** A free loopback port: the executors must be restarted where the server expects them. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function openTargets(): Promise<{ servers: Server[]; ports: number[] }> {
  const servers: Server[] = [];
  const ports: number[] = [];
  for (let i = 0; i < targetCount; i++) {
    const s = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.end();
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    servers.push(s);
    ports.push((s.address() as net.AddressInfo).port);
  }
  return { servers, ports };
}

interface Executor {
  address: string;
  child?: ChildProcess;
}

// ROLE_LOADER=dist: the executors from the compiled dist/ on plain node, as deployed (npm run build
// first); the default runs the sources through tsx, whose start compiles them (about a core-second
// per restart on this machine, taken from the other executors' heartbeats).
const loader = process.env.ROLE_LOADER === 'dist' ? 'dist' : 'tsx';
const executorCommand = loader === 'dist' ? ['dist/cli/main.js', 'executor'] : ['--import', 'tsx', 'cli/main.ts', 'executor'];

function spawnExecutor(e: Executor, conductorAddress: string): void {
  const child = spawn(process.execPath, executorCommand, {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      VIMMON_EXECUTOR_ADDR: e.address,
      VIMMON_CONDUCTOR_TARGET: conductorAddress,
      VIMMON_EXECUTOR_METRICS_ADDR: 'off',
      VIMMON_EXECUTOR_DRAIN_TIMEOUT: '30s',
      VIMMON_LOG_LEVEL: 'warn',
    },
  });
  e.child = child;
}

async function serving(address: string): Promise<boolean> {
  const channel = createChannel(address);
  try {
    const r = await createClient(HealthDefinition, channel).check(
      { service: 'vimmon.executor.v1.ExecutorService' },
      { signal: AbortSignal.timeout(1_000) },
    );
    return r.status === HealthCheckResponse_ServingStatus.SERVING;
  } catch {
    return false;
  } finally {
    channel.close();
  }
}

async function stopChild(e: Executor, signal: NodeJS.Signals): Promise<void> {
  const child = e.child!;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  await exited;
}

async function main() {
  const scratch = await createScratchDatabase(baseUrl, 'vimmon_bench');
  const logger = createLogger({ level: 'warn' });
  const orm = await openDatabase({ url: scratch.url });
  const conductorOrm = await openDatabase({ url: scratch.url });
  const conductor = await startConductor({ logger, orm: conductorOrm, address: '127.0.0.1:0' });
  const executors: Executor[] = [];
  for (let i = 0; i < executorCount; i++) executors.push({ address: `127.0.0.1:${await freePort()}` });
  for (const e of executors) spawnExecutor(e, conductor.address);
  await until('every executor serving', async () => (await Promise.all(executors.map((e) => serving(e.address)))).every(Boolean), 60_000);
  const server = await startServer({
    logger,
    orm,
    databaseUrl: scratch.url,
    address: '127.0.0.1:0',
    executors: executors.map((e) => e.address),
    key: randomBytes(32),
    reconcileIntervalMs: 2_000,
  });
  const targets = await openTargets();
  const channel = createChannel(server.address);
  const client = createClient(VimServiceDefinition, channel);
  const monitor = {
    probe: ProbeKind.PROBE_KIND_TCP,
    interval: msToDuration(intervalMs),
    timeout: msToDuration(Math.min(500, intervalMs / 2)),
    reportInterval: msToDuration(intervalMs),
    staleAfter: msToDuration(staleAfterMs),
  };
  for (let i = 0; i < vims; i += 50)
    await Promise.all(
      Array.from({ length: Math.min(50, vims - i) }, (_, j) =>
        client.registerVim({ name: `vim-${i + j}`, authUrl: `http://127.0.0.1:${targets.ports[(i + j) % targetCount]}/v3`, monitor }),
      ),
    );

  // Every accepted report, as a trigger on the rows logs each new last_report_at (exact: a
  // sample of the rows would miss a report followed by another within the sampling period).
  const db = orm.em.fork().getConnection();
  await db.execute(`create table bench_report_log (vim_id uuid not null, at timestamptz not null, action_id uuid not null)`);
  await db.execute(`create function bench_log_report() returns trigger language plpgsql as $$ begin
      insert into bench_report_log values (new.id, new.last_report_at, new.action_id); return null; end $$`);
  await db.execute(`create trigger bench_log_report after update of last_report_at on vim for each row
      when (new.last_report_at is distinct from old.last_report_at) execute function bench_log_report()`);
  /** Accepted reports per VIM (ms since the epoch, ascending, with the action) from `since` on. */
  const reportsSince = async (since: number) => {
    const rows = (await db.execute(
      `select vim_id, (extract(epoch from at) * 1000)::float8 as at, action_id from bench_report_log
        where at >= to_timestamp(${since} / 1000.0) order by at`,
    )) as Array<{ vim_id: string; at: number; action_id: string }>;
    const out = new Map<string, Array<{ at: number; action: string }>>();
    for (const r of rows) {
      const list = out.get(r.vim_id) ?? [];
      list.push({ at: r.at, action: r.action_id });
      out.set(r.vim_id, list);
    }
    return out;
  };
  const nowMs = async () =>
    Number(((await db.execute(`select (extract(epoch from now()) * 1000)::float8 as t`)) as Array<{ t: number }>)[0]!.t);
  /** Every VIM reported after `since` (database time). */
  const allReportedSince = async (since: number) => {
    const rows = (await db.execute(
      `select count(distinct vim_id)::int as n from bench_report_log where at > to_timestamp(${since} / 1000.0)`,
    )) as Array<{ n: number }>;
    return rows[0]!.n === vims;
  };

  const settleFrom = await nowMs();
  await until('every VIM reporting', () => allReportedSince(settleFrom), 120_000);
  await sleep(2 * intervalMs);

  /** signal undefined: no restart, a window of 5 intervals (the heartbeat's own gaps, for comparison). */
  async function round(signal: NodeJS.Signals | undefined) {
    const startedAt = await nowMs();
    if (!signal) await sleep(5 * intervalMs);
    else
      for (const e of executors) {
        await stopChild(e, signal);
        spawnExecutor(e, conductor.address);
        await until(`${e.address} serving again`, () => serving(e.address), 60_000);
      }
    const lastRestart = await nowMs();
    await until('every VIM reporting after the last restart', () => allReportedSince(lastRestart), 10 * staleAfterMs + 60_000);
    const endedAt = await nowMs();
    const gaps: number[] = [];
    // Gaps that end with a new action's first report (a hand-over), and those within one action.
    const handOver: number[] = [];
    const sameAction: number[] = [];
    // From two report intervals before the round: every VIM's last report before it is in.
    for (const seen of (await reportsSince(startedAt - 2 * intervalMs)).values()) {
      // The last report before the round, then every one in it.
      const first = seen.findLastIndex((r) => r.at <= startedAt);
      const times = seen.slice(Math.max(0, first)).filter((r) => r.at <= endedAt);
      let gap = 0;
      for (let i = 1; i < times.length; i++) {
        const g = times[i]!.at - times[i - 1]!.at;
        gap = Math.max(gap, g);
        (times[i]!.action === times[i - 1]!.action ? sameAction : handOver).push(g);
      }
      gaps.push(gap);
    }
    handOver.sort((a, b) => a - b);
    sameAction.sort((a, b) => a - b);
    gaps.sort((a, b) => a - b);
    const figure = (ms: number) => ({ ms: Math.round(ms), intervals: Math.round((ms / intervalMs) * 100) / 100 });
    return {
      signal: signal ?? 'none',
      durationMs: Math.round(endedAt - startedAt),
      longestGap: { p50: figure(percentile(gaps, 50)), p99: figure(percentile(gaps, 99)), max: figure(gaps.at(-1)!) },
      vimsOverOneInterval: gaps.filter((g) => g > intervalMs).length,
      // Every gap between two reports, by kind: p99 and max (ms).
      handOverGaps:
        handOver.length > 0
          ? { count: handOver.length, p99: figure(percentile(handOver, 99)), max: figure(handOver.at(-1)!) }
          : { count: 0 },
      sameActionGaps:
        sameAction.length > 0
          ? { count: sameAction.length, p99: figure(percentile(sameAction, 99)), max: figure(sameAction.at(-1)!) }
          : { count: 0 },
      vimsOverOneAndAHalfIntervals: gaps.filter((g) => g > 1.5 * intervalMs).length,
      gaps,
    };
  }

  const steadyRound = await round(undefined);
  const drainRound = await round('SIGTERM');
  await sleep(2 * intervalMs);
  const killRound = await round('SIGKILL');
  // The heartbeat's own longest gap (no restart) is the yardstick: a restart round is judged by
  // how many VIMs went longer than that, and by how much.
  const yardstick = steadyRound.gaps.at(-1)!;
  const judged = ({ gaps, ...r }: typeof steadyRound) => ({
    ...r,
    vimsOverSteadyMax: gaps.filter((g) => g > yardstick).length,
    maxOverSteadyMaxMs: Math.round(Math.max(0, gaps.at(-1)! - yardstick)),
  });
  const [steady, drain, kill] = [judged(steadyRound), judged(drainRound), judged(killRound)];

  console.log(
    JSON.stringify(
      {
        bench: 'rolling-restart',
        loader,
        vims,
        executors: executorCount,
        intervalMs,
        reportIntervalMs: intervalMs,
        staleAfterMs,
        rounds: { steady, drain, kill },
      },
      null,
      2,
    ),
  );

  channel.close();
  await server.stop();
  for (const e of executors) await stopChild(e, 'SIGKILL');
  await conductor.stop();
  for (const s of targets.servers) s.close();
  await orm.close(true);
  await conductorOrm.close(true);
  await scratch.drop();
}

await main();
