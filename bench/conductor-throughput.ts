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
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findHaproxy, startConductorProxy } from '../test/support/haproxy.js';
import { startEchoServer } from './support/echo-server.js';
import {
  conductorEnv,
  conductorLoadSettings,
  describeMachine,
  openBenchDatabase,
  runLoadChild,
  serveLoad,
  serveUntilStopped,
  startConductorFromEnv,
  startServerChild,
  type LoadConfig,
  type LoadResult,
} from './support/conductor-load.js';

const self = fileURLToPath(import.meta.url);

const settings = conductorLoadSettings({ durationMs: 5_000, vims: 10_000 });

type ServerMode = 'serve-echo' | 'serve-conductor';

// ---------------------------------------------------------------- children

async function child(mode: string): Promise<void> {
  if (mode === 'load') return serveLoad();
  serveUntilStopped(mode === 'serve-echo' ? await startEchoServer() : await startConductorFromEnv());
}

// ---------------------------------------------------------------- orchestration

const cpuProfile = process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];

const startServer = (mode: ServerMode, env: NodeJS.ProcessEnv) =>
  startServerChild(self, mode, { env, execArgv: mode === 'serve-conductor' ? cpuProfile : [] });

interface CpuProbe {
  servers: number[];
  proxy?: number;
  /** The PostgreSQL backends serving the bench database (not the server's background writers). */
  postgresBackends(): Promise<number[]>;
}

async function load(config: Pick<LoadConfig, 'target' | 'kind' | 'vims' | 'roundRobin'>, probe: CpuProbe) {
  const { cpuMsPer1000Calls: cpu, ...result } = await runLoadChild({
    script: self,
    config,
    settings,
    processes: { servers: probe.servers, haproxy: probe.proxy ? [probe.proxy] : [] },
    postgresBackends: probe.postgresBackends,
  });
  // The fields in the order this bench has always printed them.
  return {
    ...result,
    cpuMsPer1000Calls: { servers: cpu.servers, loadGenerator: cpu.loadGenerator, postgres: cpu.postgres, haproxy: cpu.haproxy },
  };
}

async function main(): Promise<void> {
  const haproxy = findHaproxy();
  const scenarios: Record<string, Awaited<ReturnType<typeof load>> | { skipped: string }> = {};
  const db = await openBenchDatabase(settings.vims);
  try {
    const { sql, vims } = db;
    const childEnv = conductorEnv(db.url, settings);

    const run = async (
      label: string,
      servers: ServerMode[],
      via: 'direct' | 'round-robin' | 'haproxy',
      kind: LoadConfig['kind'] = 'heartbeat',
    ) => {
      if (via === 'haproxy' && !haproxy) {
        scenarios[label] = { skipped: 'haproxy is not installed (apt-get install -y haproxy)' };
        return;
      }
      await db.resetVims();
      const started = await Promise.all(servers.map((m) => startServer(m, childEnv)));
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
              postgresBackends: db.backendPids,
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
            ...(await describeMachine(sql)),
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
    await db.close();
  }
}

const mode = process.argv[2];
if (mode) await child(mode);
else await main();
