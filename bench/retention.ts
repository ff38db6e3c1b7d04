// Retention (db/retention.ts) on big tables: how long a pass takes, the
// longest lock it holds, and what it does to a conductor's reports.
//
//   npm run bench:retention            (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
//
// In a scratch database: BENCH_ROWS (10,000,000) alarm rows and as many
// vim_event rows (of BENCH_VIMS, 10,000, VIMs), stored evenly over the last 60
// days, inserted with generate_series. Then, with a conductor in a process of
// its own and the load generator in another (bench/support/conductor-load.ts,
// BENCH_CONCURRENCY 64 calls in flight for BENCH_DURATION_MS, 10,000, after a
// 1 s warm-up), each of heartbeats and transitions (every report a status
// change: a vim_event row and a NOTIFY, the table the pass deletes from):
//   without   the load alone;
//   during    the same load while a retention pass with the defaults' age (30
//             days) removes about half of both tables in batches of
//             BENCH_BATCH (1,000) rows, each batch one statement and so its own
//             transaction, each followed by a pause BENCH_PAUSE_FACTOR (1) times
//             as long as it took (0: none).
// The pass starts with the load and runs on after it (its figures are of the
// whole pass). A batch's transaction time bounds every lock it holds (row
// locks on the rows it removes, RowExclusiveLock on the table: neither is
// one a report waits for); the bench gives the longest and the p99.
// Prints one JSON document.
import { fileURLToPath } from 'node:url';
import { openDatabase } from '../db/connection.js';
import { runRetentionPass, type RetentionBatch, type RetentionTable } from '../db/retention.js';
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
} from './support/conductor-load.js';

const self = fileURLToPath(import.meta.url);
const settings = conductorLoadSettings({ durationMs: 10_000, vims: 10_000 });
const rows = Number(process.env.BENCH_ROWS ?? 10_000_000);
const batchSize = Number(process.env.BENCH_BATCH ?? 1_000);
const pauseFactor = Number(process.env.BENCH_PAUSE_FACTOR ?? 1);
const day = 86_400_000;

const round = (x: number) => Math.round(x * 10) / 10;

function batchFigures(batches: RetentionBatch[]) {
  const ms = batches.map((b) => b.ms).sort((a, b) => a - b);
  return {
    batches: batches.length,
    rows: batches.reduce((a, b) => a + b.rows, 0),
    batchMsP50: round(ms[Math.floor(ms.length / 2)] ?? NaN),
    batchMsP99: round(ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))] ?? NaN),
    longestLockMs: round(ms.at(-1) ?? NaN),
  };
}

async function main(): Promise<void> {
  const db = await openBenchDatabase(settings.vims);
  try {
    const { sql, vims } = db;
    const machine = await describeMachine(sql);
    // Ids in time order, as they are made: the oldest rows have the lowest ids.
    const fillStarted = performance.now();
    process.stderr.write(`inserting ${rows} alarms and ${rows} vim_event rows\n`);
    await sql.query(
      `insert into alarm (type, severity, host, instance_id, detected_at, raised_at, stored_at)
       select 'INSTANCE_DOWN', 'critical', 'compute-' || (g % 1000), 'vm-' || g, t, t, t
         from generate_series(1, $1::bigint) g, lateral (select now() - interval '60 days' + (g * interval '60 days') / $1 as t) s`,
      [rows],
    );
    const alarmsMs = performance.now() - fillStarted;
    await sql.query(
      // No join: rows come (and draw their ids) in g's order, as time goes.
      `with v as (select array_agg(id order by id) as ids, array_agg(action_id order by id) as actions, count(*)::int as n from vim)
       insert into vim_event (vim_id, from_status, to_status, action_id, created_at)
       select v.ids[g % v.n + 1], 'REACHABLE', 'UNREACHABLE', v.actions[g % v.n + 1], now() - interval '60 days' + (g * interval '60 days') / $1
         from v, generate_series(1, $1::bigint) g`,
      [rows],
    );
    const fillMs = performance.now() - fillStarted;
    await sql.query('vacuum analyze alarm');
    await sql.query('vacuum analyze vim_event');
    const sizes = async () =>
      (
        await sql.query(
          `select (select count(*) from alarm)::bigint::text as alarms, (select count(*) from vim_event)::bigint::text as events,
                  pg_total_relation_size('alarm') as alarm_bytes, pg_total_relation_size('vim_event') as event_bytes`,
        )
      ).rows[0];
    const before = await sizes();
    process.stderr.write(`filled in ${Math.round(fillMs / 1000)} s: ${JSON.stringify(before)}\n`);

    const childEnv = conductorEnv(db.url, settings);
    const scenarios: Record<string, unknown> = {};
    const passes: Record<string, unknown> = {};
    const limits = { alarm: { maxAgeMs: 30 * day }, vim_event: { maxAgeMs: 30 * day } };

    const load = async (kind: LoadConfig['kind']) => {
      await db.resetVims();
      const conductor = await startServerChild(self, 'serve-conductor', { env: childEnv });
      try {
        const { cpuMsPer1000Calls: _cpu, ...result } = await runLoadChild({
          script: self,
          config: { target: conductor.address, kind, vims },
          settings,
          processes: { conductor: [conductor.process.pid!] },
          postgresBackends: db.backendPids,
        });
        return result;
      } finally {
        await conductor.stop();
      }
    };

    for (const kind of ['heartbeat', 'transition'] as const) {
      scenarios[`${kind}Without`] = await load(kind);
      process.stderr.write(`${kind} without: ${JSON.stringify(scenarios[`${kind}Without`])}\n`);
    }
    // The pass, beside each load in turn: the first load sees it on alarm and vim_event both (tables in
    // retentionTables order: vim_event, then alarm), the second sees what is left of it.
    const orm = await openDatabase({ url: db.url });
    try {
      const batches: Record<string, RetentionBatch[]> = { vim_event: [], alarm: [] };
      const passStarted = performance.now();
      const pass = runRetentionPass({
        orm,
        limits,
        batchSize,
        pauseFactor,
        onBatch: (table: RetentionTable, b) => batches[table]!.push(b),
      });
      let passMs: number | undefined;
      void pass.then(() => (passMs = performance.now() - passStarted));
      for (const kind of ['heartbeat', 'transition'] as const) {
        const result = await load(kind);
        scenarios[`${kind}During`] = { ...result, passStillRunningAtTheEnd: passMs === undefined };
        process.stderr.write(`${kind} during: ${JSON.stringify(scenarios[`${kind}During`])}\n`);
      }
      const results = await pass;
      passes.passMs = Math.round(passMs ?? performance.now() - passStarted);
      for (const r of results) passes[r.table] = { ...batchFigures(batches[r.table]!), removedThrough: r.removedThrough };
    } finally {
      await orm.close();
    }
    const after = await sizes();

    console.log(
      JSON.stringify(
        {
          bench: 'retention',
          machine,
          settings: { ...settings, rows, batchSize, pauseFactor, age: '30d over rows spread across 60 days' },
          fill: { alarmsS: Math.round(alarmsMs / 1000), totalS: Math.round(fillMs / 1000) },
          before,
          pass: passes,
          after,
          scenarios,
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
if (mode === 'load') serveLoad();
else if (mode === 'serve-conductor') void startConductorFromEnv().then(serveUntilStopped);
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
