// What Prometheus metrics cost the conductor: UpdateVim heartbeats per second
// with metrics on and scraped every second, beside metrics off, in one run.
//
//   npm run -s bench:metrics           (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
//
// Two conductors run for the whole bench, each as operators run it (`vimmon
// conductor`, from the sources, in a process of its own, on one fresh database
// of BENCH_VIMS (10000) rows): one with VIMMON_CONDUCTOR_METRICS_ADDR on a
// loopback port, which this process scrapes every BENCH_SCRAPE_INTERVAL_MS
// (1000) as Prometheus would, the other with it `off`. The load generator is
// bench/conductor-throughput.ts's (bench/support/conductor-load.ts: same calls,
// same CPU accounting, in a process of its own). After a warm-up round that is
// not counted, runs alternate off, on, off, on… BENCH_ROUNDS (4) times, each
// BENCH_WARMUP_MS (1000) + BENCH_DURATION_MS (5000), so that the shared
// machine's drift falls on both sides alike. The ratio is of the medians (on /
// off), beside each round's own; likewise the conductor's CPU per 1000 calls,
// which the machine's noise moves less than rates.
// BENCH_CONCURRENCY (64), BENCH_CHANNELS (1); QUICK=1: 2 rounds of 2000 ms on 2000 VIMs.
// JSON on stdout, progress on stderr.
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { freePort } from '../test/support/targets.js';
import { eventually } from '../test/support/wait.js';
import {
  conductorLoadSettings,
  describeMachine,
  openBenchDatabase,
  runLoadChild,
  serveLoad,
  type BenchDatabase,
  type CpuShare,
  type LoadConfig,
  type LoadResult,
} from './support/conductor-load.js';

const self = fileURLToPath(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));
const quick = process.env.QUICK === '1';

const settings = {
  ...conductorLoadSettings({ durationMs: quick ? 2_000 : 5_000, vims: quick ? 2_000 : 10_000 }),
  rounds: Number(process.env.BENCH_ROUNDS ?? (quick ? 2 : 4)),
  scrapeIntervalMs: Number(process.env.BENCH_SCRAPE_INTERVAL_MS ?? 1_000),
};

type Mode = 'off' | 'on';

interface Conductor {
  address: string;
  pid: number;
  /** host:port of /metrics, when on. */
  metricsAddress?: string;
  stop(): Promise<void>;
}

/** `vimmon conductor` from the sources (tsx), its metrics on a free loopback port or off; resolves once its health is SERVING. */
async function startConductorProcess(databaseUrl: string, mode: Mode): Promise<Conductor> {
  const port = await freePort();
  const metricsAddress = mode === 'on' ? `127.0.0.1:${await freePort()}` : undefined;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIMMON_') && k !== 'NODE_OPTIONS'));
  const child: ChildProcess = spawn(process.execPath, ['--import=tsx', path.join(root, 'cli', 'main.ts'), 'conductor'], {
    cwd: root,
    env: {
      ...env,
      DATABASE_URL: databaseUrl,
      VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${port}`,
      VIMMON_CONDUCTOR_METRICS_ADDR: metricsAddress ?? 'off',
      VIMMON_LOG_LEVEL: 'error',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  const stop = async () => {
    if (exitCode !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const address = `127.0.0.1:${port}`;
  const channel = createChannel(address);
  try {
    const health = createClient(HealthDefinition, channel);
    await eventually(
      async () => {
        if (exitCode !== undefined) throw new Error(`vimmon conductor (metrics ${mode}) exited with ${exitCode}`);
        const r = await health.check({ service: '' }, { signal: AbortSignal.timeout(2_000) });
        return r.status === HealthCheckResponse_ServingStatus.SERVING;
      },
      60_000,
      `vimmon conductor (metrics ${mode}) SERVING`,
      200,
    );
  } catch (err) {
    await stop();
    throw err;
  } finally {
    channel.close();
  }
  return { address, pid: child.pid!, metricsAddress, stop };
}

interface Scrape {
  at: number;
  ms: number;
  bytes: number;
  ok: boolean;
}

/** GET /metrics every intervalMs, as Prometheus would (one at a time, 1 s timeout), until stopped. */
function scrapeEvery(metricsAddress: string, intervalMs: number) {
  const scrapes: Scrape[] = [];
  let last = '';
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const res = await fetch(`http://${metricsAddress}/metrics`, {
          headers: { accept: 'text/plain;version=0.0.4' },
          signal: AbortSignal.timeout(1_000),
        });
        last = await res.text();
        scrapes.push({ at: started, ms: performance.now() - started, bytes: last.length, ok: res.ok });
      } catch {
        scrapes.push({ at: started, ms: performance.now() - started, bytes: 0, ok: false });
      }
      await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - (performance.now() - started))));
    }
  })();
  return {
    scrapes,
    last: () => last,
    async stop() {
      running = false;
      await loop;
    },
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const loadAverageAtStart = os.loadavg().map(round2);
  let db: BenchDatabase | undefined;
  const conductors: Conductor[] = [];
  let scraper: ReturnType<typeof scrapeEvery> | undefined;
  try {
    db = await openBenchDatabase(settings.vims);
    const { sql, vims } = db;
    const off = await startConductorProcess(db.url, 'off');
    conductors.push(off);
    const on = await startConductorProcess(db.url, 'on');
    conductors.push(on);
    scraper = scrapeEvery(on.metricsAddress!, settings.scrapeIntervalMs);
    const byMode = { off, on };

    const runs: Array<{ round: number; mode: Mode; scrapesDuringRun: number } & LoadResult & { cpuMsPer1000Calls: CpuShare<'conductor'> }> =
      [];
    // Round 0 warms both conductors up (JIT, pooled connections) and is not counted: in trial
    // runs the first round of each cost 1.3-1.7x the CPU per call of the later ones.
    for (let round = 0; round <= settings.rounds; round++) {
      for (const mode of ['off', 'on'] as const) {
        await db.resetVims();
        const conductor = byMode[mode];
        const from = performance.now();
        const result = await runLoadChild<LoadConfig, 'conductor'>({
          script: self,
          config: { target: conductor.address, vims },
          settings,
          processes: { conductor: [conductor.pid] },
          postgresBackends: db.backendPids,
        });
        const scrapesDuringRun = mode === 'on' ? scraper.scrapes.filter((s) => s.at >= from).length : 0;
        if (round > 0) runs.push({ round, mode, scrapesDuringRun, ...result });
        process.stderr.write(
          `${round === 0 ? 'warm-up' : `round ${round}`} ${mode}: ${result.reportsPerSecond} reports/s, p99 ${result.p99Ms} ms, ${result.errors} errors\n`,
        );
      }
    }
    await scraper.stop();

    const of = (mode: Mode) => runs.filter((r) => r.mode === mode);
    const summary = (mode: Mode) => ({
      medianReportsPerSecond: median(of(mode).map((r) => r.reportsPerSecond)),
      medianP99Ms: median(of(mode).map((r) => r.p99Ms)),
      medianConductorCpuMsPer1000Calls: median(of(mode).map((r) => r.cpuMsPer1000Calls.conductor)),
      errors: of(mode).reduce((a, r) => a + r.errors, 0),
    });
    const offSummary = summary('off');
    const onSummary = summary('on');
    const ratio = round2(onSummary.medianReportsPerSecond / offSummary.medianReportsPerSecond);
    const perRound = (value: (r: (typeof runs)[number]) => number) =>
      Array.from({ length: settings.rounds }, (_, i) => round2(value(of('on')[i]) / value(of('off')[i])));
    const scrapes = scraper.scrapes;
    const exposition = scraper.last();
    const series = exposition.split('\n').filter((l) => l && !l.startsWith('#')).length;
    // The "on" side must really have been on: the scrapes answered and carry the conductor's own series.
    const checks = {
      scrapesAnswered: scrapes.length > 0 && scrapes.every((s) => s.ok),
      conductorSeriesExposed: /^vimmon_conductor_reports_total\{[^}]*outcome="accepted"[^}]*\} [1-9]/m.test(exposition),
      noErrors: offSummary.errors + onSummary.errors === 0,
    };
    console.log(
      JSON.stringify(
        {
          benchmark: 'metrics-overhead',
          command: 'npm run -s bench:metrics',
          machine: {
            ...(await describeMachine(sql)),
            /** 1, 5 and 15 min load averages: others' work on the shared machine. */
            loadAverage: { atStart: loadAverageAtStart, atEnd: os.loadavg().map(round2) },
          },
          settings: { ...settings, quick },
          runs,
          off: offSummary,
          on: onSummary,
          ratios: {
            reportsPerSecondOnToOff: ratio,
            /** Each round's on / off: how far the machine's noise moves one pair. */
            roundReportsPerSecond: perRound((r) => r.reportsPerSecond),
            conductorCpuPerCallOnToOff: round2(onSummary.medianConductorCpuMsPer1000Calls / offSummary.medianConductorCpuMsPer1000Calls),
            roundConductorCpuPerCall: perRound((r) => r.cpuMsPer1000Calls.conductor),
          },
          scrape: {
            intervalMs: settings.scrapeIntervalMs,
            count: scrapes.length,
            failed: scrapes.filter((s) => !s.ok).length,
            p50Ms: round2(median(scrapes.map((s) => s.ms))),
            maxMs: round2(Math.max(...scrapes.map((s) => s.ms))),
            bytes: exposition.length,
            series,
          },
          checks,
          targets: { onAtLeast95PercentOfOff: ratio >= 0.95 },
        },
        null,
        2,
      ),
    );
    if (!Object.values(checks).every(Boolean)) process.exitCode = 1;
  } finally {
    await scraper?.stop();
    for (const c of conductors) await c.stop();
    await db?.close();
  }
}

const mode = process.argv[2];
if (mode === 'load') serveLoad();
else await main();
