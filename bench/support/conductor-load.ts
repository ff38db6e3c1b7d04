// What bench/conductor-throughput.ts and bench/auth-overhead.ts share: their
// BENCH_* settings, the UpdateVim load generator, the child processes each
// bench forks of its own script (every server and the load generator in a
// process of its own), the CPU accounting around a load run, and the scratch
// database with the VIM rows the load reports on.
//
// A bench script started with a mode (its argv[2]) is a child and calls one of
// serveUntilStopped (a server) or serveLoad (mode `load`); the parent speaks to
// it over the IPC channel through startServerChild and runLoadChild:
//   server  the child sends {address}; any message from the parent stops it.
//   load    the parent sends a LoadConfig; the child answers with its
//           LoadResult and exits.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { ClientError, createChannel, createClient, Status, type ChannelCredentials } from 'nice-grpc';
import { VimStatus } from '../../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../../gen/vimmon/conductor/v1/conductor.js';
import { toGrpcTarget } from '../../common/grpc-client.js';
import { createLogger } from '../../common/logger.js';
import { openDatabase } from '../../db/connection.js';
import { startConductor, type ConductorOptions } from '../../conductor/main.js';
import { createScratchDatabase } from '../../test/support/scratch-database.js';

// ---------------------------------------------------------------- settings

/**
 * The BENCH_* settings of a load run and its conductors, from the environment:
 * BENCH_DURATION_MS and BENCH_VIMS default to what the bench gives, the others
 * to BENCH_WARMUP_MS 1000, BENCH_CONCURRENCY 64, BENCH_CHANNELS 1,
 * BENCH_POOL_MAX 10 and BENCH_STATEMENTS_IN_FLIGHT 2.
 */
export function conductorLoadSettings(defaults: { durationMs: number; vims: number }) {
  return {
    durationMs: Number(process.env.BENCH_DURATION_MS ?? defaults.durationMs),
    warmupMs: Number(process.env.BENCH_WARMUP_MS ?? 1_000),
    concurrency: Number(process.env.BENCH_CONCURRENCY ?? 64),
    channels: Number(process.env.BENCH_CHANNELS ?? 1),
    vims: Number(process.env.BENCH_VIMS ?? defaults.vims),
    poolMax: Number(process.env.BENCH_POOL_MAX ?? 10),
    conductorStatementsInFlight: Number(process.env.BENCH_STATEMENTS_IN_FLIGHT ?? 2),
  };
}

export type ConductorLoadSettings = ReturnType<typeof conductorLoadSettings>;

// ---------------------------------------------------------------- load generator

export interface BenchVim {
  id: string;
  actionId: string;
}

/** How long and how hard a load run drives its target (conductorLoadSettings reads them). */
export interface LoadSettings {
  concurrency: number;
  channels: number;
  durationMs: number;
  warmupMs: number;
}

export interface LoadConfig extends LoadSettings {
  /** host:port, or with roundRobin a comma-separated list of them. */
  target: string;
  /** Each worker's reports: heartbeats (the default) cycle over all VIMs; transitions flip each VIM the worker owns. */
  kind?: 'heartbeat' | 'transition';
  vims: BenchVim[];
  /** grpc-js round_robin over the target's addresses (default: pick_first). */
  roundRobin?: boolean;
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

/**
 * Keeps config.concurrency UpdateVim calls in flight on config.channels HTTP/2
 * connections (TLS when credentials are given) for the warm-up and then the
 * measured duration. A call that fails or answers anything but the status sent
 * counts as an error, not as a report.
 */
export async function runLoad(config: LoadConfig, credentials?: ChannelCredentials): Promise<LoadResult> {
  const kind = config.kind ?? 'heartbeat';
  const channelOptions = {
    // Distinct connections per channel, not one shared subchannel.
    'grpc.use_local_subchannel_pool': 1,
    ...(config.roundRobin ? { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) } : {}),
  };
  const channels = Array.from({ length: config.channels }, () => createChannel(toGrpcTarget(config.target), credentials, channelOptions));
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
      const own = kind === 'transition' ? config.vims.filter((_, i) => i % config.concurrency === worker) : config.vims;
      const next = new Map<string, VimStatus>();
      let i = kind === 'transition' ? 0 : worker;
      const step = kind === 'transition' ? 1 : config.concurrency;
      while (performance.now() < end) {
        const vim = own[i % own.length];
        i += step;
        let status = VimStatus.VIM_STATUS_REACHABLE;
        if (kind === 'transition') {
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

// ---------------------------------------------------------------- in a child

/** Mode `load`: runs the LoadConfig the parent sends (over TLS when credentials gives some), answers with its LoadResult, exits. */
export function serveLoad<C extends LoadConfig>(credentials: (config: C) => ChannelCredentials | undefined = () => undefined): void {
  process.once('message', async (config: C) => {
    process.send!(await runLoad(config, credentials(config)));
    process.exit(0);
  });
}

/** A server mode: tells the parent the server's address, then stops it and exits at the parent's word. */
export function serveUntilStopped(server: { address: string; stop(): Promise<void> }): void {
  process.once('message', async () => {
    await server.stop();
    process.exit(0);
  });
  process.send!({ address: server.address });
}

const conductorEnvNames = {
  databaseUrl: 'BENCH_DATABASE_URL',
  poolMax: 'BENCH_POOL_MAX',
  statementsInFlight: 'BENCH_STATEMENTS_IN_FLIGHT',
} as const;

/** What a conductor child needs (startConductorFromEnv), as environment variables for forkBench. */
export function conductorEnv(
  databaseUrl: string,
  settings: Pick<ConductorLoadSettings, 'poolMax' | 'conductorStatementsInFlight'>,
): Record<string, string> {
  return {
    [conductorEnvNames.databaseUrl]: databaseUrl,
    [conductorEnvNames.poolMax]: String(settings.poolMax),
    [conductorEnvNames.statementsInFlight]: String(settings.conductorStatementsInFlight),
  };
}

/** A conductor on 127.0.0.1, port 0, with the database and limits conductorEnv passed; stop() closes its pool too. */
export async function startConductorFromEnv(
  options: Pick<ConductorOptions, 'tls' | 'auth'> = {},
): Promise<{ address: string; stop(): Promise<void> }> {
  const orm = await openDatabase({
    url: process.env[conductorEnvNames.databaseUrl]!,
    poolMax: Number(process.env[conductorEnvNames.poolMax]),
  });
  const conductor = await startConductor({
    logger: createLogger({ level: 'warn' }),
    orm,
    address: '127.0.0.1:0',
    maxStatementsInFlight: Number(process.env[conductorEnvNames.statementsInFlight]),
    ...options,
  });
  return {
    address: conductor.address,
    async stop() {
      await conductor.stop();
      await orm.close();
    },
  };
}

// ---------------------------------------------------------------- in the parent

export interface ForkOptions {
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Node options after this process's own (which carry tsx's loader). */
  execArgv?: string[];
}

/** The bench script `script` (its own file) in a process of its own, in `mode`, with an IPC channel. */
export function forkBench(script: string, mode: string, options: ForkOptions = {}): ChildProcess {
  return fork(script, [mode], {
    env: { ...process.env, ...options.env },
    execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

export interface ServerChild {
  process: ChildProcess;
  address: string;
  /** Asks the child to stop; kills it after 10 s. */
  stop(): Promise<void>;
}

/** forkBench in a server mode, once the child has said its address. */
export async function startServerChild(script: string, mode: string, options: ForkOptions = {}): Promise<ServerChild> {
  const proc = forkBench(script, mode, options);
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

let clockTicksPerSecond: number | undefined;

/** user + system CPU of a process so far, in ms (0 once it is gone). */
export function cpuMs(pid: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
  } catch {
    return 0;
  }
}

/** CPU ms per 1000 calls: of each named group of processes, of the load generator, and of the PostgreSQL backends. */
export type CpuShare<K extends string> = Record<K | 'loadGenerator' | 'postgres', number>;

export interface LoadChildOptions<C extends LoadConfig, K extends string> {
  /** The bench script; forked in mode `load`, it calls serveLoad. */
  script: string;
  env?: NodeJS.ProcessEnv;
  config: Omit<C, keyof LoadSettings>;
  settings: LoadSettings;
  /** The processes the run's CPU is charged to, under the name each group is reported by. */
  processes: Record<K, number[]>;
  /** The PostgreSQL backends serving the bench database (read before and after the run). */
  postgresBackends(): Promise<number[]>;
}

/** One run of the load generator in a process of its own, and the CPU each part spent on it. */
export async function runLoadChild<C extends LoadConfig, K extends string>(
  options: LoadChildOptions<C, K>,
): Promise<LoadResult & { cpuMsPer1000Calls: CpuShare<K> }> {
  const proc = forkBench(options.script, 'load', { env: options.env });
  const result = new Promise<LoadResult>((resolve, reject) => {
    proc.once('message', (m: LoadResult) => resolve(m));
    proc.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const names = Object.keys(options.processes) as K[];
  const sum = (pids: number[], from?: Map<number, number>) => pids.reduce((a, pid) => a + cpuMs(pid) - (from?.get(pid) ?? 0), 0);
  const groups = () => names.map((k) => sum(options.processes[k]));
  const backendsBefore = new Map((await options.postgresBackends()).map((pid) => [pid, cpuMs(pid)]));
  const before = { groups: groups(), load: cpuMs(proc.pid!) };
  const { concurrency, channels, durationMs, warmupMs } = options.settings;
  proc.send({ ...options.config, concurrency, channels, durationMs, warmupMs });
  const loadCpu = new Promise<number>((resolve) => proc.once('message', () => resolve(cpuMs(proc.pid!))));
  const r = await result;
  const after = { groups: groups(), load: await loadCpu };
  const postgres = sum(await options.postgresBackends(), backendsBefore);
  const per1000 = (ms: number) => Math.round((ms / Math.max(1, r.calls)) * 1000 * 10) / 10;
  return {
    ...r,
    cpuMsPer1000Calls: {
      ...Object.fromEntries(names.map((k, i) => [k, per1000(after.groups[i] - before.groups[i])])),
      loadGenerator: per1000(after.load - before.load),
      postgres: per1000(postgres),
    } as CpuShare<K>,
  };
}

// ---------------------------------------------------------------- the bench database

export interface BenchDatabase {
  url: string;
  /** A connection of the bench's own, for setup and queries between scenarios. */
  sql: pg.Client;
  /** The VIMs the load reports on. */
  vims: BenchVim[];
  /** Every VIM back to REACHABLE, and fresh planner statistics: the same start for each scenario. */
  resetVims(): Promise<void>;
  /** The pids of the PostgreSQL backends connected to the database, sql's own left out. */
  backendPids(): Promise<number[]>;
  /** Ends sql and drops the database. */
  close(): Promise<void>;
}

/** A fresh scratch database on DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres), migrated, with vimCount VIMs. */
export async function openBenchDatabase(vimCount: number): Promise<BenchDatabase> {
  const base = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = await createScratchDatabase(base, 'vimmon_bench');
  const sql = new pg.Client({ connectionString: scratch.url });
  const close = async () => {
    await sql.end(); // a no-op when it never connected
    await scratch.drop();
  };
  try {
    const orm = await openDatabase({ url: scratch.url }); // the migrations
    await orm.close();
    await sql.connect();
    const vims = await insertVims(sql, vimCount);
    return {
      url: scratch.url,
      sql,
      vims,
      async resetVims() {
        await sql.query(`update vim set status = 'REACHABLE' where status <> 'REACHABLE'`);
        await sql.query(`vacuum analyze vim`);
      },
      async backendPids() {
        const { rows } = await sql.query(`select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`, [
          new URL(scratch.url).pathname.slice(1),
        ]);
        return rows.map((row) => row.pid as number);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `count` REACHABLE VIMs in the (migrated) bench database, each with the action id its reports must carry. */
async function insertVims(sql: pg.Client, count: number): Promise<BenchVim[]> {
  const vims = Array.from({ length: count }, () => ({ id: randomUUID(), actionId: randomUUID() }));
  await sql.query(
    `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
                      report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
     select v.id, 'bench-' || v.ord, 'openstack', 'https://keystone.example:5000/v3', 'tcp', 10000, 2000, 1, 3, 60000, 180000,
            'REACHABLE', v.action_id, now(), now(), now(), now()
     from unnest($1::uuid[], $2::uuid[]) with ordinality as v(id, action_id, ord)`,
    [vims.map((v) => v.id), vims.map((v) => v.actionId)],
  );
  return vims;
}

/** The machine a run was measured on, for the head of a bench's JSON. */
export async function describeMachine(sql: pg.Client) {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    node: process.version,
    postgres: (await sql.query(`select current_setting('server_version') as v`)).rows[0].v as string,
  };
}
