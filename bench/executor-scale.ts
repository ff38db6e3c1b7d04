// How many VIMs one executor process monitors at a 10 s interval: the executor
// runs alone in a child process; this process holds a counting conductor and
// the local TCP targets (50 listening sockets shared by all VIMs). Actions are
// started through gRPC in steps of 1,000 → 2,000 → 5,000 → 10,000; for each
// step, after one interval to settle, the executor's CPU (from /proc/<pid>/stat,
// % of one core) and RSS are measured over a window of one report_interval, so
// that every action's heartbeat falls in it once. Prints JSON.
//
//   npm run bench:executor
//   STEPS=1000,2000 WINDOW_MS=10000 npm run bench:executor
//   EXECUTOR_NODE_OPTIONS=--max-semi-space-size=8 npm run bench:executor   (flags for the executor's Node only)
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { createChannel, createClient } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { msToDuration } from '../common/duration.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { createLogger } from '../common/logger.js';

const steps = (process.env.STEPS ?? '1000,2000,5000,10000').split(',').map(Number);
const intervalMs = 10_000;
const reportIntervalMs = 30_000; // the default heartbeat
const settleMs = Number(process.env.SETTLE_MS ?? intervalMs);
const windowMs = Number(process.env.WINDOW_MS ?? reportIntervalMs);
const targetCount = Number(process.env.TARGETS ?? 50);
const startConcurrency = 64;
const clockTicks = 100; // USER_HZ on Linux

const logger = createLogger({ level: 'warn' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
const child = spawn('npx', ['tsx', 'bench/support/executor-child.ts', `127.0.0.1:${conductorPort}`], {
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

function cpuTicks(): number {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function rssMiB(): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

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

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

const benchStarted = performance.now();
await sleep(1_000);
const idle = await measure(3_000);
const results = [];
for (const vims of steps) {
  const startRate = await startActions(vims - started);
  await sleep(settleMs);
  const w = await measure(windowMs);
  const { actions } = await client.listActions({});
  const reachable = actions.filter((a) => a.decidedStatus === VimStatus.VIM_STATUS_REACHABLE).length;
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
  policy: { probe: 'tcp', intervalMs, timeoutMs: 1_000, reportIntervalMs, targets: targetCount },
  settleMs,
  windowMs,
  idle: { cpuPercent: idle.cpuPercent, rssMiB: idle.rssMiB },
  steps: results,
  goal: { vims: 10_000, cpuPercentMax: 50, rssMiBMax: 512 },
  met: last.vims >= 10_000 && last.cpuPercent < 50 && last.peakRssMiB < 512 && last.reachable === last.vims,
  elapsedSeconds: round((performance.now() - benchStarted) / 1000),
};
process.stdout.write(JSON.stringify(output, null, 2) + '\n');

benchDone = true;
child.stdin!.end();
await new Promise((r) => child.once('exit', r));
channel.close();
for (const t of targets) t.close();
await conductor.shutdown();
