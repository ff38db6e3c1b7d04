// UpdateVim throughput: the conductor beside a bare grpc-js unary echo server,
// measured in one run on this machine, directly and behind HAProxy.
//
//   npm run bench:conductor            (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
//
// Every server and the load generator run in processes of their own. The load
// generator keeps BENCH_CONCURRENCY (64) calls in flight on BENCH_CHANNELS (1)
// HTTP/2 connections for BENCH_DURATION_MS (5000) after BENCH_WARMUP_MS (1000);
// a call that fails or answers anything but the status sent counts as an
// error, not as a report. The conductor reports heartbeats for BENCH_VIMS
// (10000) rows in a fresh database, with a pool of BENCH_POOL_MAX (10) and
// BENCH_STATEMENTS_IN_FLIGHT (2) report statements at once.
// The machine is shared, so beside rates each scenario gives the CPU each part
// spent per 1000 calls (/proc: server processes, load generator, the
// PostgreSQL backends of the bench database, HAProxy) — steadier than rates.
// BENCH_CPU_PROF_DIR=dir writes a V8 CPU profile of each conductor process.
// Scenarios:
//   echo                     bare grpc-js echo (same path, messages, codecs)
//   conductor                one conductor, heartbeats (the common report)
//   conductorTransitions     one conductor, every report a status change (event + NOTIFY, durable commit)
//   conductorPairRoundRobin  two conductors, grpc-js round_robin over a list target (no proxy)
//   conductorPairHaproxy     two conductors behind HAProxy (deploy/haproxy.cfg)
//   echoPairHaproxy          two echo servers behind the same HAProxy config
// Prints one JSON document.
import { fork, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { createLogger } from '../common/logger.js';
import { toGrpcTarget } from '../common/grpc-client.js';
import { openDatabase } from '../db/connection.js';
import { startConductor } from '../conductor/main.js';
import { findHaproxy, startConductorProxy } from '../test/support/haproxy.js';
import { startEchoServer } from './support/echo-server.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';

const self = fileURLToPath(import.meta.url);

const settings = {
  durationMs: Number(process.env.BENCH_DURATION_MS ?? 5_000),
  warmupMs: Number(process.env.BENCH_WARMUP_MS ?? 1_000),
  concurrency: Number(process.env.BENCH_CONCURRENCY ?? 64),
  channels: Number(process.env.BENCH_CHANNELS ?? 1),
  vims: Number(process.env.BENCH_VIMS ?? 10_000),
  poolMax: Number(process.env.BENCH_POOL_MAX ?? 10),
  conductorStatementsInFlight: Number(process.env.BENCH_STATEMENTS_IN_FLIGHT ?? 2),
};

// ---------------------------------------------------------------- children

interface LoadConfig {
  target: string;
  /** Each worker's reports: heartbeats cycle over all VIMs; transitions flip each VIM the worker owns. */
  kind: 'heartbeat' | 'transition';
  vims: Array<{ id: string; actionId: string }>;
  concurrency: number;
  channels: number;
  durationMs: number;
  warmupMs: number;
  roundRobin: boolean;
}

export interface LoadResult {
  /** Every call answered in the run, warm-up and errors included (the CPU figures divide by it). */
  calls: number;
  reports: number;
  reportsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  errorsByKind: Record<string, number>;
}

async function runLoad(config: LoadConfig): Promise<LoadResult> {
  const channelOptions = {
    // Distinct connections per channel, not one shared subchannel.
    'grpc.use_local_subchannel_pool': 1,
    ...(config.roundRobin ? { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) } : {}),
  };
  const channels = Array.from({ length: config.channels }, () => createChannel(toGrpcTarget(config.target), undefined, channelOptions));
  const clients = channels.map((c) => createClient(VimMonitorAction2ConductorDefinition, c));
  const start = performance.now();
  const measureFrom = start + config.warmupMs;
  const end = measureFrom + config.durationMs;
  const latencies: number[] = [];
  const errorsByKind: Record<string, number> = {};
  let reports = 0;
  let calls = 0;
  const fail = (kind: string, at: number) => {
    if (at >= measureFrom) errorsByKind[kind] = (errorsByKind[kind] ?? 0) + 1;
  };

  await Promise.all(
    Array.from({ length: config.concurrency }, async (_, worker) => {
      const client = clients[worker % clients.length];
      // Transition workers own disjoint VIMs, so each report really changes the stored status.
      const own = config.kind === 'transition' ? config.vims.filter((_, i) => i % config.concurrency === worker) : config.vims;
      const next = new Map<string, VimStatus>();
      let i = config.kind === 'transition' ? 0 : worker;
      const step = config.kind === 'transition' ? 1 : config.concurrency;
      while (performance.now() < end) {
        const vim = own[i % own.length];
        i += step;
        let status = VimStatus.VIM_STATUS_REACHABLE;
        if (config.kind === 'transition') {
          status = next.get(vim.id) ?? VimStatus.VIM_STATUS_UNREACHABLE;
          next.set(vim.id, status === VimStatus.VIM_STATUS_REACHABLE ? VimStatus.VIM_STATUS_UNREACHABLE : VimStatus.VIM_STATUS_REACHABLE);
        }
        const t0 = performance.now();
        try {
          const reply = await client.updateVim({ vimId: vim.id, actionId: vim.actionId, status });
          const t1 = performance.now();
          calls++;
          if (reply.status !== status) fail(`answered ${VimStatus[reply.status] ?? reply.status}`, t0);
          else if (t0 >= measureFrom && t1 <= end) {
            reports++;
            latencies.push(t1 - t0);
          }
        } catch (err) {
          calls++;
          fail(err instanceof ClientError ? Status[err.code] : String(err), t0);
        }
      }
    }),
  );
  for (const c of channels) c.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : NaN);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const errors = Object.values(errorsByKind).reduce((a, b) => a + b, 0);
  return {
    calls,
    reports,
    reportsPerSecond: Math.round(reports / (config.durationMs / 1000)),
    p50Ms: round(pct(50)),
    p99Ms: round(pct(99)),
    maxMs: round(latencies.at(-1) ?? NaN),
    errors,
    errorsByKind,
  };
}

async function child(mode: string): Promise<void> {
  const send = (m: unknown) => process.send!(m);
  if (mode === 'load') {
    process.once('message', async (config: LoadConfig) => {
      send(await runLoad(config));
      process.exit(0);
    });
    return;
  }
  let stop: () => Promise<void>;
  let address: string;
  if (mode === 'serve-echo') {
    const echo = await startEchoServer();
    address = echo.address;
    stop = echo.stop;
  } else {
    const orm = await openDatabase({ url: process.env.BENCH_DATABASE_URL!, poolMax: Number(process.env.BENCH_POOL_MAX) });
    const conductor = await startConductor({
      logger: createLogger({ level: 'warn' }),
      orm,
      address: '127.0.0.1:0',
      maxStatementsInFlight: Number(process.env.BENCH_STATEMENTS_IN_FLIGHT),
    });
    address = conductor.address;
    stop = async () => {
      await conductor.stop();
      await orm.close();
    };
  }
  process.once('message', async () => {
    await stop();
    process.exit(0);
  });
  send({ address });
}

// ---------------------------------------------------------------- orchestration

interface ChildHandle {
  process: ChildProcess;
  address: string;
  stop(): Promise<void>;
}

function forkSelf(mode: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  const profile = process.env.BENCH_CPU_PROF_DIR && mode === 'serve-conductor' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
  return fork(self, [mode], { env: { ...process.env, ...env }, execArgv: [...process.execArgv, ...profile], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

async function startServer(mode: 'serve-echo' | 'serve-conductor', env?: NodeJS.ProcessEnv): Promise<ChildHandle> {
  const proc = forkSelf(mode, env);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const address = await new Promise<string>((resolve, reject) => {
    proc.once('message', (m: { address: string }) => resolve(m.address));
    proc.once('exit', (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
  return {
    process: proc,
    address,
    async stop() {
      proc.send('stop');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** user + system CPU of a process so far, in ms (0 once it is gone). */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
  } catch {
    return 0;
  }
}

interface CpuProbe {
  servers: number[];
  proxy?: number;
  /** The PostgreSQL backends serving the bench database (not the server's background writers). */
  postgresBackends(): Promise<number[]>;
}

type CpuShare = Record<'servers' | 'loadGenerator' | 'postgres' | 'haproxy', number>;

async function load(config: Omit<LoadConfig, 'concurrency' | 'channels' | 'durationMs' | 'warmupMs'>, probe: CpuProbe): Promise<LoadResult & { cpuMsPer1000Calls: CpuShare }> {
  const proc = forkSelf('load');
  const result = new Promise<LoadResult>((resolve, reject) => {
    proc.once('message', (m: LoadResult) => resolve(m));
    proc.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const sum = (pids: number[], from?: Map<number, number>) => pids.reduce((a, pid) => a + cpuMs(pid) - (from?.get(pid) ?? 0), 0);
  const backendsBefore = new Map((await probe.postgresBackends()).map((pid) => [pid, cpuMs(pid)]));
  const before = { servers: sum(probe.servers), load: cpuMs(proc.pid!), haproxy: probe.proxy ? cpuMs(probe.proxy) : 0 };
  proc.send({ ...config, concurrency: settings.concurrency, channels: settings.channels, durationMs: settings.durationMs, warmupMs: settings.warmupMs });
  const loadCpu = new Promise<number>((resolve) => proc.once('message', () => resolve(cpuMs(proc.pid!))));
  const r = await result;
  const after = { servers: sum(probe.servers), load: await loadCpu, haproxy: probe.proxy ? cpuMs(probe.proxy) : 0 };
  const postgres = sum(await probe.postgresBackends(), backendsBefore);
  const per1000 = (ms: number) => Math.round((ms / Math.max(1, r.calls)) * 1000 * 10) / 10;
  return {
    ...r,
    cpuMsPer1000Calls: {
      servers: per1000(after.servers - before.servers),
      loadGenerator: per1000(after.load - before.load),
      postgres: per1000(postgres),
      haproxy: per1000(after.haproxy - before.haproxy),
    },
  };
}

async function main(): Promise<void> {
  const base = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = await createScratchDatabase(base, 'vimmon_bench');
  const databaseUrl = scratch.url;
  const haproxy = findHaproxy();
  const scenarios: Record<string, Awaited<ReturnType<typeof load>> | { skipped: string }> = {};
  let sql: pg.Client | undefined;
  try {
    const orm = await openDatabase({ url: databaseUrl });
    await orm.close();
    sql = new pg.Client({ connectionString: databaseUrl });
    await sql.connect();
    const vims = Array.from({ length: settings.vims }, () => ({ id: randomUUID(), actionId: randomUUID() }));
    await sql.query(
      `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                        report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
       select v.id, 'bench-' || v.ord, 'openstack', 'https://keystone.example:5000/v3', 'tcp', 10000, 2000, 1, 3, 60000, 180000,
              'REACHABLE', v.action_id, now(), now(), now(), now()
       from unnest($1::uuid[], $2::uuid[]) with ordinality as v(id, action_id, ord)`,
      [vims.map((v) => v.id), vims.map((v) => v.actionId)],
    );
    const reset = async () => {
      await sql!.query(`update vim set status = 'REACHABLE' where status <> 'REACHABLE'`);
      await sql!.query(`vacuum analyze vim`);
    };
    const conductorEnv = {
      BENCH_DATABASE_URL: databaseUrl,
      BENCH_POOL_MAX: String(settings.poolMax),
      BENCH_STATEMENTS_IN_FLIGHT: String(settings.conductorStatementsInFlight),
    };

    const run = async (
      label: string,
      servers: Array<'serve-echo' | 'serve-conductor'>,
      via: 'direct' | 'round-robin' | 'haproxy',
      kind: LoadConfig['kind'] = 'heartbeat',
    ) => {
      if (via === 'haproxy' && !haproxy) {
        scenarios[label] = { skipped: 'haproxy is not installed (apt-get install -y haproxy)' };
        return;
      }
      await reset();
      const started = await Promise.all(servers.map((m) => startServer(m, conductorEnv)));
      try {
        let target = started.map((s) => s.address).join(',');
        let proxy: Awaited<ReturnType<typeof startConductorProxy>> | undefined;
        if (via === 'haproxy') {
          proxy = await startConductorProxy({ conductors: [started[0].address, started[1].address] });
          await proxy.waitForServers((s) => s.every((x) => x.status === 'UP'));
          target = proxy.address;
        }
        try {
          scenarios[label] = await load(
            { target, kind, vims, roundRobin: via === 'round-robin' },
            {
              servers: started.map((x) => x.process.pid!),
              proxy: proxy?.pid,
              postgresBackends: async () =>
                (await sql!.query(`select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`, [new URL(databaseUrl).pathname.slice(1)])).rows.map((row) => row.pid as number),
            },
          );
        } finally {
          await proxy?.stop();
        }
      } finally {
        await Promise.all(started.map((s) => s.stop()));
      }
      process.stderr.write(`${label}: ${JSON.stringify(scenarios[label])}\n`);
    };

    await run('echo', ['serve-echo'], 'direct');
    await run('conductor', ['serve-conductor'], 'direct');
    await run('conductorTransitions', ['serve-conductor'], 'direct', 'transition');
    await run('conductorPairRoundRobin', ['serve-conductor', 'serve-conductor'], 'round-robin');
    await run('conductorPairHaproxy', ['serve-conductor', 'serve-conductor'], 'haproxy');
    await run('echoPairHaproxy', ['serve-echo', 'serve-echo'], 'haproxy');
    const { rows } = await sql.query(`select count(*)::int as n from vim_event`);
    const events = rows[0].n as number;

    const rate = (k: string) => (scenarios[k] as LoadResult | undefined)?.reportsPerSecond;
    const ratio = (a?: number, b?: number) => (a !== undefined && b ? Math.round((a / b) * 100) / 100 : null);
    const conductorToEcho = ratio(rate('conductor'), rate('echo'));
    console.log(
      JSON.stringify(
        {
          benchmark: 'conductor-throughput',
          command: 'npm run bench:conductor',
          machine: {
            cpus: os.cpus().length,
            cpuModel: os.cpus()[0]?.model,
            node: process.version,
            postgres: (await sql.query(`select current_setting('server_version') as v`)).rows[0].v,
            haproxy: haproxy ? execFileSync(haproxy, ['-v']).toString().split('\n')[0] : null,
          },
          settings,
          scenarios,
          transitionEventsWritten: events,
          ratios: {
            conductorToEcho,
            conductorTransitionsToEcho: ratio(rate('conductorTransitions'), rate('echo')),
            conductorPairHaproxyToEchoPairHaproxy: ratio(rate('conductorPairHaproxy'), rate('echoPairHaproxy')),
            conductorPairRoundRobinToEcho: ratio(rate('conductorPairRoundRobin'), rate('echo')),
          },
          targets: { conductorAtLeastHalfOfEcho: conductorToEcho !== null && conductorToEcho >= 0.5 },
        },
        null,
        2,
      ),
    );
  } finally {
    await sql?.end();
    await scratch.drop();
  }
}

const mode = process.argv[2];
if (mode) await child(mode);
else await main();
