// The fault-injection suite: a steady mesh of separate role processes, faults
// injected one at a time, restoration timed, and the run's whole history judged
// by chaos/history-checker.ts. JSON report on stdout, progress on stderr; exit 0
// only when the checker finds no violation and every fault was recovered from.
//
//   npx tsx chaos/main.ts                       (~5 min)
//   CHAOS_QUICK=1 npx tsx chaos/main.ts         (~90 s smoke run)
//   CHAOS_DURATION_S=600 CHAOS_VIMS=500 npx tsx chaos/main.ts
//
// Needs root (network namespace, nftables, PostgreSQL run as user postgres),
// haproxy, the Debian PostgreSQL binaries and rabbitmq-server (without the
// latter the RabbitMQ fault is left out and said so).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createVimmonClient, ProbeKind } from '../client/src/index.js';
import { msToDuration } from '../common/duration.js';
import { openDatabase } from '../db/connection.js';
import { startOpenStackDouble } from '../test/support/openstack-double.js';
import { openTcpTarget, type TcpTarget } from '../test/support/targets.js';
import { faultCycle, runFault, type FaultOutcome, type FaultSetting } from './faults.js';
import { faultFigures } from './fault-figures.js';
import { checkHistory } from './history-checker.js';
import { hostEvents } from './host-events.js';
import { startChaosMesh } from './mesh.js';
import { createChaosNetwork, hostAddress } from './network.js';
import { startChaosPostgres } from './postgres.js';
import { rabbitmqAvailable, startChaosRabbitmq, type ChaosRabbitmq } from './rabbitmq.js';
import {
  countReportedSince,
  fencedReportCounter,
  installHistoryTriggers,
  readLiveVims,
  readStoredAlarmIds,
  readStoredEventIds,
  readVimLog,
  recordAlarms,
  recordVimWatch,
  sendControlReport,
  startStaleReporter,
} from './recorders.js';

function bounded(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got ${raw}`);
  return n;
}

const quick = process.env.CHAOS_QUICK === '1';
const settings = {
  // Fault time: a full run is about 5 minutes with set-up and the end's checks, a quick one about 90 s.
  durationS: bounded('CHAOS_DURATION_S', quick ? 25 : 200, 10, 3_600),
  vims: bounded('CHAOS_VIMS', 300, 20, 2_000),
  intervalMs: bounded('CHAOS_INTERVAL_MS', 1_000, 200, 10_000),
  reportIntervalMs: bounded('CHAOS_REPORT_INTERVAL_MS', 2_000, 200, 30_000),
  settleMs: bounded('CHAOS_SETTLE_MS', 3_000, 0, 60_000),
  restoreLimitMs: bounded('CHAOS_RESTORE_LIMIT_MS', 90_000, 5_000, 600_000),
  flapEveryMs: bounded('CHAOS_FLAP_MS', 4_000, 500, 60_000),
  keepLogs: process.env.CHAOS_KEEP_LOGS === '1',
};
const stableTargetCount = 40;
const flappingTargetCount = 6;
const vimsPerFlappingTarget = 5;
const dropVimCount = 2;
const hosts = ['compute-1', 'compute-2', 'compute-3', 'compute-4'];

const startedAt = Date.now();
const progress = (line: string) => process.stderr.write(`[chaos +${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${line}\n`);

/** Cleanup steps, run last-in first-out whatever happened. */
const cleanups: Array<[string, () => Promise<void>]> = [];
async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    const [what, step] = cleanups.pop()!;
    await step().catch((err) => progress(`cleanup of ${what} failed: ${String(err)}`));
  }
}

const stopRun = new AbortController();
let signals = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    if (++signals > 1) {
      progress('second signal: exiting without finishing the cleanup');
      process.exit(1);
    }
    progress(`${signal}: ending the run and cleaning up`);
    stopRun.abort();
  });

/** Runs `step` every `everyMs` until stopped; a failing step waits for the next turn. */
function every(everyMs: number, step: () => Promise<void>) {
  const abort = new AbortController();
  const loop = (async () => {
    while (!abort.signal.aborted) {
      await sleep(everyMs, undefined, { signal: abort.signal }).catch(() => {});
      if (!abort.signal.aborted) await step().catch(() => {});
    }
  })();
  return async () => {
    abort.abort();
    await loop;
  };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (stopRun.signal.aborted) throw new Error(`stopped while waiting for ${what}`);
    await sleep(200);
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the suite needs root: network namespace, nftables, PostgreSQL run as user postgres');
  progress(`settings ${JSON.stringify(settings)}`);

  const network = await createChaosNetwork();
  cleanups.push(['network namespace and nftables table', () => network.close()]);
  const postgres = await startChaosPostgres();
  cleanups.push(['PostgreSQL cluster', () => postgres.destroy()]);
  const admin = new pg.Client({ connectionString: postgres.serverUrl });
  await admin.connect();
  await admin.query('create database vimmon');
  await admin.end();
  const databaseUrl = postgres.serverUrl.replace(/\/postgres$/, '/vimmon');
  // Migrations first, then the suite's trigger on the table they made.
  await (await openDatabase({ url: databaseUrl })).close(true);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => {}); // idle clients die with the database during its stop: the pool reconnects
  cleanups.push(['suite pool', () => pool.end()]);
  await installHistoryTriggers(pool);
  progress(`PostgreSQL on port ${postgres.port}, history trigger installed`);

  let rabbitmq: ChaosRabbitmq | undefined;
  let rabbitmqSkipped: string | undefined;
  if (!rabbitmqAvailable()) rabbitmqSkipped = 'rabbitmq-server is not installed';
  else
    try {
      rabbitmq = await startChaosRabbitmq(progress);
      cleanups.push(['RabbitMQ node', () => rabbitmq!.destroy()]);
      progress(`RabbitMQ node at ${rabbitmq.url}`);
    } catch (err) {
      rabbitmqSkipped = `a private RabbitMQ node could not be started: ${String(err).slice(0, 500)}`;
    }
  if (rabbitmqSkipped) progress(`RabbitMQ fault left out: ${rabbitmqSkipped}`);

  const openstack = await startOpenStackDouble();
  cleanups.push(['OpenStack double', () => openstack.close()]);
  for (const host of hosts) for (let i = 0; i < 3; i++) openstack.addServer({ host, name: `${host}-vm-${i}` });

  const stable: TcpTarget[] = [];
  const flapping: TcpTarget[] = [];
  for (let i = 0; i < stableTargetCount; i++) stable.push(await openTcpTarget(hostAddress));
  for (let i = 0; i < flappingTargetCount; i++) flapping.push(await openTcpTarget(hostAddress));
  const dropTarget = await openTcpTarget(hostAddress);
  cleanups.push(['targets', async () => void (await Promise.all([...stable, ...flapping, dropTarget].map((t) => t.close())))]);

  const logDir = mkdtempSync(path.join(tmpdir(), 'vimmon-chaos-logs-'));
  cleanups.push([
    'role logs',
    async () => {
      if (settings.keepLogs) progress(`role logs kept in ${logDir}`);
      else rmSync(logDir, { recursive: true, force: true });
    },
  ]);
  const mesh = await startChaosMesh({
    databaseUrl,
    amqpUrl: rabbitmq?.url,
    openstack,
    namespaceExec: network.exec,
    logDir,
    secretKey: randomBytes(32).toString('base64'),
    log: progress,
  });
  cleanups.push(['mesh', () => mesh.stop()]);
  progress(
    `mesh up: ${mesh
      .all()
      .map((r) => `${r.name}@${r.address}`)
      .join(' ')} haproxy@${mesh.haproxy.address}`,
  );

  const client = createVimmonClient({ server: mesh.server.address, inspector: mesh.inspector.address, deadline: 10_000 });
  const subscriberClients = [0, 1].map(() => createVimmonClient({ inspector: mesh.inspector.address }));
  cleanups.push([
    'clients',
    async () => {
      for (const c of [client, ...subscriberClients]) c.close();
    },
  ]);
  const watcher = recordVimWatch(client);
  const subscribers = subscriberClients.map((c) => recordAlarms(c));
  cleanups.push(['streams', async () => void (await Promise.all([watcher, ...subscribers].map((r) => r.stop())))]);
  await sleep(1_000); // the watch is live before the first transition

  // VIMs: the first on the target whose packets get dropped, then the flapping ones, the rest stable.
  const monitor = {
    probe: ProbeKind.PROBE_KIND_TCP,
    interval: msToDuration(settings.intervalMs),
    timeout: msToDuration(Math.min(500, settings.intervalMs / 2)),
    unreachableAfter: 2,
    reportInterval: msToDuration(settings.reportIntervalMs),
    staleAfter: msToDuration(3 * settings.reportIntervalMs),
  };
  const targetOf = (i: number) => {
    if (i < dropVimCount) return dropTarget;
    const f = i - dropVimCount;
    if (f < flappingTargetCount * vimsPerFlappingTarget) return flapping[f % flappingTargetCount]!;
    return stable[f % stableTargetCount]!;
  };
  const vimIds: string[] = [];
  const stableVimIds = new Set<string>();
  const registeredAt = Date.now();
  for (let i = 0; i < settings.vims; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, settings.vims - i) }, (_, j) =>
        client.server.registerVim({ name: `chaos-vim-${i + j}`, authUrl: targetOf(i + j).url, monitor }),
      ),
    );
    batch.forEach((r, j) => {
      vimIds.push(r.vim!.id);
      if (stable.includes(targetOf(i + j))) stableVimIds.add(r.vim!.id);
    });
  }
  await until(
    'every VIM reporting',
    async () => {
      const c = await countReportedSince(pool, registeredAt);
      return c.fresh === settings.vims;
    },
    120_000,
  );
  progress(`${settings.vims} VIMs registered and reporting`);

  // The control VIM takes no part in the stale reporter's or the updates' work: its one transition is the control's.
  const controlVimId = [...stableVimIds].at(-1)!;
  stableVimIds.delete(controlVimId);
  const controlCall = await sendControlReport(pool, mesh.haproxy.address, controlVimId);

  // Background life of the mesh: flapping targets, updates that retire action ids, the stale reporter.
  let flapTurn = 0;
  const stopFlapping = every(settings.flapEveryMs, async () => {
    const t = flapping[flapTurn++ % flapping.length]!;
    await (t.up ? t.close() : t.reopen());
  });
  let canaryTurn = 0;
  const canaries = [...stableVimIds].slice(0, 12);
  const stopUpdates = every(5_000, async () => {
    const id = canaries[canaryTurn++ % canaries.length]!;
    const timeoutMs = canaryTurn % 2 === 0 ? 500 : 450;
    await client.server.updateVim({
      vim: { id, monitor: { timeout: msToDuration(Math.min(timeoutMs, settings.intervalMs / 2)) } },
      updateMask: ['monitor.timeout'],
    });
  });
  const stale = startStaleReporter({ pool, conductorTarget: mesh.haproxy.address, vimIds: stableVimIds, periodMs: 250 });
  const fenced = fencedReportCounter(mesh.conductorMetrics);
  const stopFencedReads = every(2_000, fenced.read);
  const events = hostEvents(mesh.inspectorHttp, client, hosts);
  let backgroundStopped = false;
  const stopBackground = async () => {
    if (backgroundStopped) return;
    backgroundStopped = true;
    await Promise.all([stopFlapping(), stopUpdates(), stale.stop(), stopFencedReads()]);
  };
  cleanups.push(['background loops', stopBackground]);

  const setting: FaultSetting = {
    mesh,
    postgres,
    rabbitmq,
    network,
    dropPort: dropTarget.port,
    dropVimIds: vimIds.slice(0, dropVimCount),
    onHostEvent: events.send,
  };
  await sleep(settings.settleMs, undefined, { signal: stopRun.signal }).catch(() => {});
  const outcomes: FaultOutcome[] = [];
  const faultsEnd = Date.now() + settings.durationS * 1000;
  let lastFaultEnd = Date.now();
  for (let cycle = 0; Date.now() < faultsEnd && !stopRun.signal.aborted; cycle++) {
    for (const fault of faultCycle(setting, cycle)) {
      if (Date.now() >= faultsEnd || stopRun.signal.aborted) break;
      const outcome = await runFault(fault, setting, pool, settings.restoreLimitMs, progress);
      outcomes.push(outcome);
      lastFaultEnd = Date.now();
      const extra =
        (outcome.detectionMs !== undefined ? `, detected ${outcome.detectionMs} ms, recovered ${outcome.recoveryMs} ms after heal` : '') +
        (outcome.roleRecoveryMs !== undefined ? `, consumer connected ${outcome.roleRecoveryMs} ms after heal` : '') +
        (outcome.vimsOnTarget !== undefined ? `, ${outcome.vimsOnTarget} VIMs on it` : '');
      progress(
        `${outcome.kind} (${outcome.target}): restored ${outcome.restorationMs ?? 'NOT'} ms after injection, ${outcome.fromHealMs ?? '-'} ms after heal${extra}`,
      );
      await sleep(settings.settleMs, undefined, { signal: stopRun.signal }).catch(() => {});
    }
  }
  if (stopRun.signal.aborted) throw new Error('stopped by a signal');

  // The end: background off and flapping targets up, every VIM monitored again, streams caught up.
  await stopBackground();
  await fenced.read();
  for (const t of flapping) if (!t.up) await t.reopen();
  const finalFrom = lastFaultEnd;
  await until(
    'every VIM monitored and REACHABLE after the last fault',
    async () => {
      const live = await readLiveVims(pool);
      return live.length === settings.vims && live.every((v) => v.status === 'REACHABLE' && (v.lastReportMs ?? 0) > finalFrom);
    },
    120_000,
  ).catch((err) => progress(String(err)));
  // A quiet mesh now (no target changes): what is stored up to here is what the streams must have delivered.
  const eventCut = (await readStoredEventIds(pool)).at(-1)?.id ?? 0;
  const alarmCut = (await readStoredAlarmIds(pool)).at(-1) ?? 0;
  await until(
    'the streams caught up with the store',
    async () =>
      watcher.records.some((r) => r.eventId >= eventCut) === eventCut > 0 &&
      subscribers.every((s) => s.records.some((r) => r.alarmId >= alarmCut) === alarmCut > 0),
    30_000,
  ).catch((err) => progress(String(err)));
  await Promise.all([watcher, ...subscribers].map((r) => r.stop()));

  const result = checkHistory({
    vimLog: await readVimLog(pool),
    staleCalls: stale.calls,
    storedEvents: (await readStoredEventIds(pool)).filter((e) => e.id <= eventCut),
    watcher: watcher.records.filter((r) => r.eventId <= eventCut),
    storedAlarmIds: (await readStoredAlarmIds(pool)).filter((id) => id <= alarmCut),
    subscribers: subscribers.map((s, i) => ({ name: `subscriber-${i + 1}`, records: s.records.filter((r) => r.alarmId <= alarmCut) })),
    liveVims: await readLiveVims(pool),
    monitoredAfterMs: finalFrom,
  });

  const control = checkHistory({
    vimLog: (await readVimLog(pool)).filter((r) => r.vimId === controlVimId),
    staleCalls: [controlCall],
    storedEvents: [],
    watcher: [],
    storedAlarmIds: [],
    subscribers: [],
    liveVims: [],
    monitoredAfterMs: 0,
  }).counts;
  const controlSeen = control['stale-call-accepted'] === 1 && control['stale-call-trace'] === 1;

  const perKind = faultFigures(outcomes);
  const unrestored = outcomes.filter((o) => o.restorationMs === undefined || o.error).length;
  const ok = result.violations.length === 0 && unrestored === 0 && controlSeen;
  const report = {
    suite: 'chaos',
    ok,
    runSeconds: Math.round((Date.now() - startedAt) / 1000),
    settings: {
      ...settings,
      stableTargets: stableTargetCount,
      flappingVims: flappingTargetCount * vimsPerFlappingTarget,
      dropVims: dropVimCount,
    },
    policy: {
      probe: 'tcp',
      intervalMs: settings.intervalMs,
      timeoutMs: Math.min(500, settings.intervalMs / 2),
      unreachableAfter: 2,
      reportIntervalMs: settings.reportIntervalMs,
      staleAfterMs: 3 * settings.reportIntervalMs,
    },
    left_out: rabbitmqSkipped ? { 'rabbitmq-stop': rabbitmqSkipped } : {},
    faults: perKind,
    recorders: {
      watcherReconnectAttempts: watcher.reconnects,
      watcherReconnectTimes: watcher.reconnectTimes.map((t) => new Date(t).toISOString()),
      watcherFailure: watcher.failure ? String(watcher.failure) : undefined,
      subscriberReconnectAttempts: subscribers.map((s) => s.reconnects),
      subscriberFailures: subscribers.map((s) => (s.failure ? String(s.failure) : undefined)),
      hostEvents: events.counts,
      conductorFencedReports: fenced.total(),
    },
    checker: result,
    // A report from the current action, handed to the checker as if stale: it must be flagged, or the checker is blind.
    control: { call: controlCall, flagged: control, seen: controlSeen },
    outcomes,
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  progress(
    ok
      ? 'no violation'
      : `${result.violations.length} violation(s), ${unrestored} fault(s) not recovered from, checker control ${controlSeen ? 'seen' : 'NOT seen'}`,
  );
  return ok ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  progress(`run failed: ${(err as Error)?.stack ?? String(err)}`);
} finally {
  await cleanUp();
}
process.exit(code);
