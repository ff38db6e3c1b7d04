// How many VIMs one executor process monitors at a 10 s interval: the executor
// runs alone in a child process, compiled JavaScript on plain node as `vimmon`
// runs it (bench/support/executor-child.ts, compiled into dist-bench/ with the
// shipped tree's settings); this process holds a counting conductor and
// the local TCP targets (50 listening sockets shared by all VIMs). Actions are
// started through gRPC in steps of 1,000 → 2,000 → 5,000 → 10,000; for each
// step, after one interval to settle, the executor's CPU (from /proc/<pid>/stat,
// % of one core) and RSS are measured over a window of one report_interval, so
// that every action's heartbeat falls in it once. Prints JSON.
//
// LOADERS=1 measures instead, side by side, an idle `vimmon executor` from dist/
// on plain node and one run through tsx: the RSS a TypeScript loader costs.
//
//   npm run bench:executor
//   STEPS=1000,2000 WINDOW_MS=10000 npm run bench:executor
//   EXECUTOR_NODE_OPTIONS=--max-semi-space-size=8 npm run bench:executor   (flags for the executor's Node only)
//   EXECUTOR_LOADER=tsx npm run bench:executor   (the child through tsx, to compare)
//   LOADERS=1 npm run bench:executor
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { msToDuration } from '../common/duration.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { createLogger } from '../common/logger.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const clockTicks = 100; // USER_HZ on Linux

function cpuTicksOf(pid: number): number {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function rssMiBOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/** The process and its descendants (a loader may run helpers of its own, as tsx runs esbuild). */
function processTree(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
  );
  return [pid, ...children.flatMap(processTree)];
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (process.env.LOADERS) {
  await compareLoaders();
  process.exit(0);
}

/**
 * The executor child compiled as `npm run build` compiles the shipped tree (the
 * child's imports with it), so that what is measured is the JavaScript vimmon ships.
 */
function compileChild(): string {
  const out = path.join(root, 'dist-bench');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  const config = path.join(out, 'tsconfig.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: '../tsconfig.build.json',
      compilerOptions: { rootDir: '..', outDir: '.' },
      include: [],
      files: ['../bench/support/executor-child.ts'],
    }),
  );
  execFileSync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', config], { stdio: 'inherit' });
  mkdirSync(path.join(out, 'gen'), { recursive: true });
  copyFileSync(path.join(root, 'gen', 'descriptor.binpb'), path.join(out, 'gen', 'descriptor.binpb'));
  return path.join(out, 'bench', 'support', 'executor-child.js');
}

const steps = (process.env.STEPS ?? '1000,2000,5000,10000').split(',').map(Number);
const intervalMs = 10_000;
const reportIntervalMs = 30_000; // the default heartbeat
const settleMs = Number(process.env.SETTLE_MS ?? intervalMs);
const windowMs = Number(process.env.WINDOW_MS ?? reportIntervalMs);
const targetCount = Number(process.env.TARGETS ?? 50);
const startConcurrency = 64;

const logger = createLogger({ level: 'warn' });

// ---- the counting conductor
let reports = 0;
const conductor = createGrpcServer({
  logger,
  services: [
    serviceEntry(VimMonitorAction2ConductorDefinition, {
      async updateVim(request) {
        reports++;
        return { status: request.status };
      },
    }),
  ],
});
const conductorPort = await conductor.listen('127.0.0.1:0');

// ---- the targets
let accepts = 0;
const targets: net.Server[] = [];
for (let i = 0; i < targetCount; i++) {
  const server = net.createServer((socket) => {
    accepts++;
    socket.on('error', () => {});
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => r()));
  targets.push(server);
}
const targetUrls = targets.map((s) => `http://127.0.0.1:${(s.address() as net.AddressInfo).port}/v3`);

// ---- the executor, alone in its process
// EXECUTOR_LOADER=tsx: the child's TypeScript through tsx instead, to compare.
const throughTsx = process.env.EXECUTOR_LOADER === 'tsx';
const childArgs = throughTsx ? ['--import', 'tsx', 'bench/support/executor-child.ts'] : [compileChild()];
const child = spawn(process.execPath, [...childArgs, `127.0.0.1:${conductorPort}`], {
  cwd: root,
  stdio: ['pipe', 'pipe', 'inherit'],
  env: process.env.EXECUTOR_NODE_OPTIONS ? { ...process.env, NODE_OPTIONS: process.env.EXECUTOR_NODE_OPTIONS } : process.env,
});
let benchDone = false;
child.once('exit', (code, signal) => {
  if (benchDone) return;
  process.stderr.write(`executor child exited early (code ${code}, signal ${signal})\n`);
  process.exit(1);
});
const lines = createInterface({ input: child.stdout! });
const pending: Array<(line: string) => void> = [];
lines.on('line', (line) => pending.shift()?.(line));
const nextLine = () => new Promise<string>((resolve) => pending.push(resolve));
const hello = JSON.parse(await nextLine()) as { address: string; pid: number };
const pid = hello.pid;

interface ChildStats {
  actions: number;
  rounds: number;
  reports: number;
  unansweredReports: number;
  rejectedReports: number;
  heapUsed: number;
  heapTotal: number;
  newSpace: number;
  oldSpace: number;
}
async function childStats(): Promise<ChildStats> {
  const line = nextLine();
  child.stdin!.write('stats\n');
  return JSON.parse(await line) as ChildStats;
}

const cpuTicks = () => cpuTicksOf(pid);
const rssMiB = () => rssMiBOf(pid);

const channel = createChannel(hello.address);
const client = createClient(ExecutorServiceDefinition, channel);
const monitor = {
  interval: msToDuration(intervalMs),
  timeout: msToDuration(1_000),
  reportInterval: msToDuration(reportIntervalMs),
};

let started = 0;
async function startActions(n: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: startConcurrency }, async () => {
      while (next < n) {
        const i = started + next++;
        await client.startAction({
          actionId: randomUUID(),
          vimId: randomUUID(),
          authUrl: targetUrls[i % targetUrls.length],
          monitor,
          knownStatus: VimStatus.VIM_STATUS_PENDING,
        });
      }
    }),
  );
  started += n;
  return n / ((performance.now() - t0) / 1000);
}

interface Window {
  cpuPercent: number;
  rssMiB: number;
  peakRssMiB: number;
  roundsPerSec: number;
  reportsPerSec: number;
  connectionsPerSec: number;
  unansweredReports: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  newSpaceMiB: number;
  oldSpaceMiB: number;
}

async function measure(ms: number): Promise<Window> {
  const s0 = await childStats();
  const c0 = cpuTicks();
  const r0 = reports;
  const a0 = accepts;
  const t0 = performance.now();
  let maxRss = 0;
  const end = t0 + ms;
  while (performance.now() < end) {
    await sleep(Math.min(1_000, end - performance.now()));
    maxRss = Math.max(maxRss, rssMiB().rss);
  }
  const c1 = cpuTicks();
  const s1 = await childStats();
  const seconds = (performance.now() - t0) / 1000;
  const mem = rssMiB();
  return {
    cpuPercent: round(((c1 - c0) / clockTicks / seconds) * 100),
    rssMiB: round(Math.max(maxRss, mem.rss)),
    peakRssMiB: round(mem.peak),
    roundsPerSec: round((s1.rounds - s0.rounds) / seconds),
    reportsPerSec: round((reports - r0) / seconds),
    connectionsPerSec: round((accepts - a0) / seconds),
    unansweredReports: s1.unansweredReports - s0.unansweredReports,
    heapUsedMiB: round(s1.heapUsed / 2 ** 20),
    heapTotalMiB: round(s1.heapTotal / 2 ** 20),
    newSpaceMiB: round(s1.newSpace / 2 ** 20),
    oldSpaceMiB: round(s1.oldSpace / 2 ** 20),
  };
}

/** Over every page of ListActions. */
async function countReachable(): Promise<number> {
  let count = 0;
  let pageToken = '';
  do {
    const page = await client.listActions({ pageSize: 5_000, pageToken });
    count += page.actions.filter((a) => a.decidedStatus === VimStatus.VIM_STATUS_REACHABLE).length;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return count;
}

const benchStarted = performance.now();
await sleep(1_000);
const idle = await measure(3_000);
const results = [];
for (const vims of steps) {
  const startRate = await startActions(vims - started);
  await sleep(settleMs);
  const w = await measure(windowMs);
  const reachable = await countReachable();
  const step = {
    vims,
    startActionsPerSec: round(startRate),
    ...w,
    reachable,
    expectedRoundsPerSec: vims / (intervalMs / 1000),
    expectedReportsPerSec: round(vims / (reportIntervalMs / 1000)),
    cpuPercentPer1000Vims: round((w.cpuPercent / vims) * 1000),
    rssMiBPer1000Vims: round((w.rssMiB / vims) * 1000),
    marginalRssMiBPer1000Vims: round(((w.rssMiB - idle.rssMiB) / vims) * 1000),
  };
  results.push(step);
  process.stderr.write(`${JSON.stringify(step)}\n`);
}

const last = results[results.length - 1]!;
const output = {
  bench: 'executor-scale',
  command: 'npm run bench:executor',
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}` },
  executor: {
    run: `node ${childArgs.map((a) => (path.isAbsolute(a) ? path.relative(root, a) : a)).join(' ')}`,
    nodeOptions: process.env.EXECUTOR_NODE_OPTIONS ?? '',
  },
  policy: { probe: 'tcp', intervalMs, timeoutMs: 1_000, reportIntervalMs, targets: targetCount },
  settleMs,
  windowMs,
  idle: { cpuPercent: idle.cpuPercent, rssMiB: idle.rssMiB },
  steps: results,
  goal: { vims: 10_000, cpuPercentMax: 50, rssMiBMax: 512 },
  met: last.vims >= 10_000 && last.cpuPercent < 50 && last.peakRssMiB < 512 && last.reachable === last.vims,
  elapsedSeconds: round((performance.now() - benchStarted) / 1000),
};
process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);

benchDone = true;
child.stdin!.end();
await new Promise((r) => child.once('exit', r));
channel.close();
for (const t of targets) t.close();
await conductor.shutdown();

/**
 * An idle `vimmon executor` from dist/ on plain node and one through tsx, each
 * started alone (time to "vimmon running"), then sampled side by side: the RSS
 * of the node process and of its process tree (tsx's esbuild service included).
 */
async function compareLoaders(): Promise<void> {
  execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  const settleMs = Number(process.env.SETTLE_MS ?? 5_000);
  const windowMs = Number(process.env.WINDOW_MS ?? 10_000);
  const variants = [
    { name: 'dist, plain node', command: 'node dist/cli/main.js executor', args: ['dist/cli/main.js', 'executor'] },
    { name: 'tsx', command: 'node --import tsx cli/main.ts executor', args: ['--import', 'tsx', 'cli/main.ts', 'executor'] },
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VIMMON_EXECUTOR_ADDR: '127.0.0.1:0',
    VIMMON_EXECUTOR_METRICS_ADDR: 'off',
    VIMMON_LOG_LEVEL: 'info',
  };
  delete env.NODE_OPTIONS;
  const running: Array<(typeof variants)[number] & { child: ChildProcess; startMs: number }> = [];
  try {
    for (const v of variants) {
      const t0 = performance.now();
      const child = spawn(process.execPath, v.args, { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
      running.push({ ...v, child, startMs: NaN });
      let log = '';
      const startMs = await new Promise<number>((resolve, reject) => {
        child.stderr!.on('data', (d) => {
          log += d;
          if (log.includes('"vimmon running"')) resolve(performance.now() - t0);
        });
        child.once('exit', (code) => reject(new Error(`${v.command} exited with ${code}:\n${log.slice(-2000)}`)));
      });
      running.at(-1)!.startMs = startMs;
    }
    await sleep(settleMs);
    const samples = running.map(() => ({ rss: [] as number[], tree: [] as number[] }));
    const end = performance.now() + windowMs;
    while (performance.now() < end) {
      running.forEach((r, i) => {
        samples[i]!.rss.push(rssMiBOf(r.child.pid!).rss);
        samples[i]!.tree.push(processTree(r.child.pid!).reduce((sum, pid) => sum + rssMiBOf(pid).rss, 0));
      });
      await sleep(500);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const results = running.map((r, i) => ({
      variant: r.name,
      command: r.command,
      startSeconds: round(r.startMs / 1000),
      rssMiB: round(median(samples[i]!.rss)),
      maxRssMiB: round(Math.max(...samples[i]!.rss)),
      processTreeRssMiB: round(median(samples[i]!.tree)),
    }));
    const [plain, tsx] = results as [(typeof results)[number], (typeof results)[number]];
    const output = {
      bench: 'executor-idle-loaders',
      command: 'LOADERS=1 npm run bench:executor',
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}` },
      settleMs,
      windowMs,
      results,
      tsxOverPlain: {
        rss: round(tsx.rssMiB / plain.rssMiB),
        processTreeRss: round(tsx.processTreeRssMiB / plain.processTreeRssMiB),
        start: round(tsx.startSeconds / plain.startSeconds),
      },
    };
    process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
  } finally {
    await Promise.all(
      running.map(
        (r) =>
          new Promise((resolve) => {
            if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve(undefined);
            r.child.once('exit', resolve);
            r.child.kill('SIGTERM');
          }),
      ),
    );
  }
}
