// Hostile streams: every role in one process (`vimmon all`, a child of this
// one), 400 VIMs on real local TCP targets probed every second, 100 of them
// flapping every 5 s (their listeners closed and reopened), and 2,000 WatchVims
// (send_initial) plus 2,000 SubscribeAlarms (after_alarm_id 0) streams that are
// never read, held by client processes of their own. For the load window the
// mesh's RSS is sampled every second (/proc/<pid>/status VmRSS) while an
// ordinary client calls ListVims (page_size 50) every 100 ms. Then the hostile
// clients read what they hold, and the bench counts how their streams ended.
// Prints one JSON document.
//
//   npm run -s bench:streams                 (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
//   QUICK=1 npm run -s bench:streams         (100 VIMs, 25 flapping, 500 + 500 streams, 15 s)
//   VIMS=400 FLAPPING=100 WATCH_STREAMS=2000 ALARM_STREAMS=2000 DURATION_MS=60000 CONNECTIONS=20 npm run -s bench:streams
//   FLAPPING=400 FLAP_EVERY_MS=2000 npm run -s bench:streams   (10× the changes: streams reach their bound)
//   MESH_CPU_PROF_DIR=/tmp/prof npm run -s bench:streams   (a CPU profile of the mesh process)
//
// "Never read" means what a client that stops reading does to the server: each
// stream is read once (read(0)), so grpc-js starts its read loop, takes 16
// messages into the stream's buffer, and then HTTP/2 flow control holds the
// server. (A grpc-js stream never asked for data at all takes in everything the
// server sends and holds it in the client: no pressure on the server's memory.)
// Between the server's generator and such a client, gRPC and HTTP/2 buffers hold
// about 1,170 WatchVims messages (~135 KB) per stream before the generator is
// held at its yield: only changes beyond those wait in the stream's queue.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import pg from 'pg';
import { msToDuration } from '../common/duration.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';
import { freePort, openTcpTarget, type TcpTarget } from '../test/support/targets.js';

const self = fileURLToPath(import.meta.url);
const quick = process.env.QUICK === '1';
const num = (name: string, full: number, short: number) => Number(process.env[name] ?? (quick ? short : full));
const settings = {
  vims: num('VIMS', 400, 100),
  flapping: num('FLAPPING', 100, 25),
  flapEveryMs: num('FLAP_EVERY_MS', 5_000, 5_000),
  probeIntervalMs: 1_000,
  watchStreams: num('WATCH_STREAMS', 2_000, 500),
  alarmStreams: num('ALARM_STREAMS', 2_000, 500),
  connectionsPerKind: num('CONNECTIONS', 20, 5),
  durationMs: num('DURATION_MS', 60_000, 15_000),
  listEveryMs: 100,
  listDeadlineMs: 2_000,
  /** How long the hostile clients read, once asked, before they count a stream as still open. */
  finishMs: num('FINISH_MS', 30_000, 10_000),
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number) => Math.round(x * 10) / 10;

// ---------------------------------------------------------------- hostile client (a child process)

interface HostileConfig {
  kind: 'watch' | 'alarms';
  address: string;
  streams: number;
  connections: number;
  finishMs: number;
}

async function hostile(config: HostileConfig): Promise<void> {
  const path = config.kind === 'watch' ? '/vimmon.tacker.v1.VimService/WatchVims' : '/vimmon.inspector.v1.InspectorService/SubscribeAlarms';
  // WatchVimsRequest { send_initial: true }; SubscribeAlarmsRequest {} (after_alarm_id 0). Messages stay encoded.
  const request = config.kind === 'watch' ? Buffer.from([0x10, 1]) : Buffer.alloc(0);
  const clients = Array.from(
    { length: config.connections },
    () => new grpc.Client(config.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );
  const streams = Array.from({ length: config.streams }, (_, i) => {
    const s = clients[i % clients.length]!.makeServerStreamRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      request,
    );
    // How it ended: the status, whenever grpc-js reports it (before or after the reading).
    let status: string | undefined;
    const ended = new Promise<string>((resolve) => {
      s.on('status', (st: grpc.StatusObject) => resolve((status ??= grpc.status[st.code] ?? String(st.code))));
    });
    s.on('error', () => {});
    s.read(0);
    return { s, ended };
  });
  process.send!({ opened: streams.length });
  process.once('message', async () => {
    const ends = await Promise.all(
      streams.map(({ s, ended }) => {
        s.on('data', () => {}); // read it all now
        return Promise.race([ended, sleep(config.finishMs).then(() => 'still open after reading')]);
      }),
    );
    for (const { s } of streams) s.cancel();
    const counts: Record<string, number> = {};
    for (const e of ends) counts[e] = (counts[e] ?? 0) + 1;
    process.send!({ ends: counts, rssMiB: round(process.memoryUsage().rss / 2 ** 20) });
    for (const c of clients) c.close();
    setTimeout(() => process.exit(0), 100);
  });
}

function startHostile(config: HostileConfig): {
  child: ChildProcess;
  opened: Promise<number>;
  finish(): Promise<{ ends: Record<string, number>; rssMiB: number }>;
} {
  const child = fork(self, ['hostile'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages: Array<(m: unknown) => void> = [];
  child.on('message', (m) => messages.shift()?.(m));
  const next = <T>() => new Promise<T>((resolve) => messages.push(resolve as (m: unknown) => void));
  const opened = next<{ opened: number }>().then((m) => m.opened);
  child.send(config);
  return {
    child,
    opened,
    finish: () => {
      const result = next<{ ends: Record<string, number>; rssMiB: number }>();
      child.send('finish');
      return result;
    },
  };
}

// ---------------------------------------------------------------- orchestration

/** Undone in reverse order when the bench ends, whether it succeeded or not. */
const cleanups: Array<() => unknown> = [];

async function main(): Promise<void> {
  const startedAt = new Date();
  const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const db = await createScratchDatabase(baseUrl, 'vimmon_bench_streams');
  cleanups.push(() => db.drop());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vimmon-bench-streams-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  chmodSync(dataDir, 0o755);
  const logFile = path.join(dataDir, 'mesh.log');
  // Targets first: a port they took cannot then be handed to the mesh.
  const targets: TcpTarget[] = [];
  cleanups.push(async () => {
    for (const t of targets) await t.close();
  });
  for (let i = 0; i < settings.vims; i++) targets.push(await openTcpTarget());
  const [serverPort, conductorPort, executorPort, inspectorPort, httpPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const server = `127.0.0.1:${serverPort}`;
  const inspector = `127.0.0.1:${inspectorPort}`;

  const log = openSync(logFile, 'a');
  // MESH_CPU_PROF_DIR=dir: a V8 CPU profile of the mesh, written when it exits.
  const profile = process.env.MESH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.MESH_CPU_PROF_DIR}`] : [];
  const mesh = spawn(process.execPath, [...profile, '--import', 'tsx', 'cli/main.ts', 'all'], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      VIMMON_DATA_DIR: dataDir,
      VIMMON_SERVER_ADDR: server,
      VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${conductorPort}`,
      VIMMON_EXECUTOR_ADDR: `127.0.0.1:${executorPort}`,
      VIMMON_INSPECTOR_ADDR: inspector,
      VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      VIMMON_AMQP_URL: 'off',
      VIMMON_METRICS_ADDR: 'off',
      // The cap per caller (default 1,000) would end this bench's streams first: measure memory, not the cap.
      VIMMON_STREAMS_PER_PRINCIPAL: '5000',
      // Info: the log (a file) then says which streams were cut for falling behind.
      VIMMON_LOG_LEVEL: process.env.VIMMON_LOG_LEVEL ?? 'info',
    },
    stdio: ['ignore', 'ignore', log],
  });
  const pid = mesh.pid!;
  let meshExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolve) =>
    mesh.once('exit', (code, signal) => {
      meshExit = { code, signal };
      resolve();
    }),
  );
  cleanups.push(async () => {
    if (meshExit) return;
    mesh.kill('SIGTERM');
    if (!(await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]))) mesh.kill('SIGKILL');
  });

  const channel = createChannel(server);
  const vimsClient = createClient(VimServiceDefinition, channel);
  const health = createClient(HealthDefinition, channel);
  cleanups.push(() => channel.close());
  const serving = async () => {
    try {
      return (
        (await health.check({ service: '' }, { signal: AbortSignal.timeout(1_000) })).status === HealthCheckResponse_ServingStatus.SERVING
      );
    } catch {
      return false;
    }
  };
  const setupStarted = performance.now();
  while (!(await serving())) {
    if (meshExit)
      throw new Error(`the mesh exited during start: ${JSON.stringify(meshExit)}\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    await sleep(200);
  }

  // ---- 400 VIMs, probed every second
  const monitor = { interval: msToDuration(settings.probeIntervalMs), timeout: msToDuration(500), unreachableAfter: 1 };
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < settings.vims) {
        const i = next++;
        await vimsClient.registerVim({ name: `bench-${i}`, authUrl: targets[i]!.url, monitor });
      }
    }),
  );
  const counter = new pg.Client({ connectionString: db.url });
  await counter.connect();
  cleanups.push(() => counter.end());
  const count = async (sql: string, params: unknown[] = []) => Number((await counter.query(sql, params)).rows[0].n);
  while ((await count(`select count(*) as n from vim where status = 'REACHABLE'`)) < settings.vims) await sleep(200);
  const setupSeconds = round((performance.now() - setupStarted) / 1000);

  const rssMiB = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
    } catch {
      return NaN; // gone
    }
  };
  const cpuTicks = () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]); // utime + stime, in 1/100 s
    } catch {
      return NaN;
    }
  };
  const rssStart = rssMiB();
  const samples: number[] = [];
  const cpuSamples: number[] = [];
  const eventsBefore = await count(`select coalesce(max(id), 0) as n from vim_event`);
  const alarmsBefore = await count(`select count(*) as n from alarm`);

  // ---- the load window: flapping, hostile streams, ListVims, RSS
  const windowStarted = performance.now();
  const windowStartedAt = Date.now();
  const windowEnd = windowStarted + settings.durationMs;
  const running = { on: true };
  let reopenRetries = 0;
  const reopen = async (t: TcpTarget) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await t.reopen();
      } catch (err) {
        // Its port can be, for a moment, the source port of some connection (ephemeral ports are shared).
        if (attempt === 100) throw err;
        reopenRetries++;
        await sleep(100);
      }
    }
  };
  const flapper = (async () => {
    let down = false;
    while (running.on) {
      await sleep(settings.flapEveryMs);
      if (!running.on) break;
      down = !down;
      await Promise.all(targets.slice(0, settings.flapping).map((t) => (down ? t.close() : reopen(t))));
    }
    if (down) await Promise.all(targets.slice(0, settings.flapping).map((t) => reopen(t)));
  })();
  flapper.catch(() => {}); // awaited below
  const sampler = (async () => {
    let ticks = cpuTicks();
    while (running.on) {
      samples.push(rssMiB());
      await sleep(1_000);
      const now = cpuTicks();
      cpuSamples.push(now - ticks); // % of one core over that second
      ticks = now;
    }
  })();
  const latencies: number[] = [];
  /** [seconds into the window, latency ms or NaN for an error] */
  const timeline: Array<[number, number]> = [];
  const listErrors: Record<string, number> = {};
  const lister = (async () => {
    while (running.on) {
      const t0 = performance.now();
      try {
        await vimsClient.listVims({ pageSize: 50 }, { signal: AbortSignal.timeout(settings.listDeadlineMs) });
        latencies.push(performance.now() - t0);
        timeline.push([(t0 - windowStarted) / 1000, performance.now() - t0]);
      } catch (err) {
        timeline.push([(t0 - windowStarted) / 1000, NaN]);
        const name = (err as Error).name;
        const kind =
          err instanceof ClientError
            ? Status[err.code]
            : name === 'TimeoutError' || name === 'AbortError'
              ? `no answer within ${settings.listDeadlineMs} ms`
              : String(err);
        listErrors[kind] = (listErrors[kind] ?? 0) + 1;
      }
      await sleep(Math.max(0, settings.listEveryMs - (performance.now() - t0)));
    }
  })();

  const watchers = startHostile({
    kind: 'watch',
    address: server,
    streams: settings.watchStreams,
    connections: settings.connectionsPerKind,
    finishMs: settings.finishMs,
  });
  const subscribers = startHostile({
    kind: 'alarms',
    address: inspector,
    streams: settings.alarmStreams,
    connections: settings.connectionsPerKind,
    finishMs: settings.finishMs,
  });
  cleanups.push(() => {
    watchers.child.kill();
    subscribers.child.kill();
  });
  const opened = { watchVims: await watchers.opened, subscribeAlarms: await subscribers.opened, afterSeconds: 0 };
  opened.afterSeconds = round((performance.now() - windowStarted) / 1000);

  while (performance.now() < windowEnd && !meshExit) await sleep(200);
  running.on = false;
  await Promise.all([flapper, sampler, lister]);
  const rssEnd = rssMiB();
  const aliveAtEnd = !meshExit && (await serving());
  const transitions = (await count(`select coalesce(max(id), 0) as n from vim_event`)) - eventsBefore;
  const alarms = (await count(`select count(*) as n from alarm`)) - alarmsBefore;

  // ---- how the hostile streams end once read
  const [watchEnds, alarmEnds] = await Promise.all([watchers.finish(), subscribers.finish()]);
  const rssAfterRead = rssMiB();

  latencies.sort((a, b) => a - b);
  const pctOf = (sorted: number[], p: number) =>
    sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!) : NaN;
  const pct = (p: number) => pctOf(latencies, p);
  const tenSeconds = [];
  for (let from = 0; from < settings.durationMs / 1000; from += 10) {
    const inWindow = timeline.filter(([at]) => at >= from && at < from + 10);
    const ok = inWindow
      .map(([, ms]) => ms)
      .filter((ms) => !Number.isNaN(ms))
      .sort((a, b) => a - b);
    const cpu = cpuSamples.slice(from, from + 10);
    tenSeconds.push({
      fromS: from,
      calls: inWindow.length,
      errors: inWindow.length - ok.length,
      p50Ms: pctOf(ok, 50),
      p99Ms: pctOf(ok, 99),
      maxMs: round(ok.at(-1) ?? NaN),
      meshCpuPercent: round(cpu.reduce((a, b) => a + b, 0) / Math.max(1, cpu.length)),
      meshRssMiB: round(samples[Math.min(samples.length - 1, from + 9)] ?? NaN),
    });
  }
  const meshLog = readFileSync(logFile, 'utf8');
  const cutAt = meshLog
    .split('\n')
    .filter((l) => l.includes('fell behind'))
    .map((l) => round((Date.parse((JSON.parse(l) as { time: string }).time) - windowStartedAt) / 1000));
  const out = {
    benchmark: 'hostile-streams',
    command: quick ? 'QUICK=1 npm run -s bench:streams' : 'npm run -s bench:streams',
    startedAt: startedAt.toISOString(),
    machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    settings,
    setupSeconds,
    opened,
    transitionsInWindow: transitions,
    alarmsInWindow: alarms,
    meshRssMiB: {
      start: round(rssStart),
      peak: round(Math.max(...samples.filter((x) => !Number.isNaN(x)))),
      end: round(rssEnd),
      afterClientsRead: round(rssAfterRead),
      samples: samples.map(round),
    },
    listVims: {
      calls: latencies.length + Object.values(listErrors).reduce((a, b) => a + b, 0),
      ok: latencies.length,
      errors: listErrors,
      p50Ms: pct(50),
      p99Ms: pct(99),
      maxMs: round(latencies.at(-1) ?? NaN),
      byTenSeconds: tenSeconds,
    },
    streamEnds: {
      watchVims: watchEnds.ends,
      subscribeAlarms: alarmEnds.ends,
      clientRssMiB: { watchVims: watchEnds.rssMiB, subscribeAlarms: alarmEnds.rssMiB },
    },
    /** WatchVims streams the server cut from its fan-out (its log), and when (s into the window). */
    watchVimsCut: {
      streams: cutAt.length,
      firstS: cutAt.length ? Math.min(...cutAt) : null,
      lastS: cutAt.length ? Math.max(...cutAt) : null,
    },
    meshAliveAtEnd: aliveAtEnd,
    meshExit: meshExit ?? null,
    heapOutOfMemory: meshLog.includes('heap out of memory'),
    targetReopenRetries: reopenRetries,
    elapsedSeconds: round((Date.now() - startedAt.getTime()) / 1000),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

if (process.argv[2] === 'hostile') {
  process.once('message', (config: HostileConfig) => void hostile(config));
} else {
  try {
    await main();
  } finally {
    for (const undo of cleanups.reverse()) {
      try {
        await undo();
      } catch (err) {
        process.stderr.write(`cleanup: ${String(err)}\n`);
      }
    }
  }
  process.exit(0);
}
