// The embedded PostgreSQL of `npm start`: a postmaster killed outright is
// started again on the same data folder and port, clients reconnect, and the
// bound on restarts gives up rather than looping.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import { eventually } from './support/wait.js';

async function startTemporary(t: ExecutionContext): Promise<{ db: EmbeddedPostgres; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-test-restart-'));
  // As root, PostgreSQL runs as user postgres, which must be able to enter the folder.
  chmodSync(dir, 0o755);
  const db = await startEmbeddedPostgres({ dataDir: dir });
  t.teardown(async () => {
    await db.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  return { db, dir };
}

async function selectOne(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ one: number }>('select 1 as one');
    return rows[0]!.one;
  } finally {
    await client.end().catch(() => {});
  }
}

/** pids of processes whose command line names the folder (the postmaster: `postgres -D <dir>/postgres …`). */
function processesOf(dir: string): number[] {
  const r = spawnSync('pgrep', ['-f', dir], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

const hasPgrep = spawnSync('pgrep', ['--version']).status === 0;

test('a postmaster killed with SIGKILL is restarted on the same port, and clients reconnect', async (t) => {
  const { db, dir } = await startTemporary(t);
  t.is(await selectOne(db.url), 1);
  const restarts: Array<{ deadPid: number | undefined; restartsInWindow: number }> = [];
  const failures: unknown[] = [];
  const watching = new AbortController();
  const watch = db.watch(watching.signal, {
    checkIntervalMs: 200,
    onRestart: (e) => restarts.push(e),
    onRestartFailed: (err) => failures.push(err),
    onGiveUp: (err) => t.fail(String(err)),
  });
  t.teardown(() => watching.abort());

  const pid = db.postmasterPid()!;
  t.true(db.isRunning());
  process.kill(pid, 'SIGKILL');
  await eventually(() => restarts.length === 1, 30_000, 'the watcher to restart PostgreSQL', 50);
  t.is(restarts[0]!.deadPid, pid);
  t.is(restarts[0]!.restartsInWindow, 1);
  t.deepEqual(failures, []);
  const newPid = db.postmasterPid();
  t.truthy(newPid);
  t.not(newPid, pid);
  t.true(db.isRunning());
  // The same URL (same port) answers again: a pool reconnects by itself.
  t.is(await selectOne(db.url), 1);

  // A clean stop while watched: the watch ends and no postgres process is left.
  await db.stop();
  await watch;
  t.false(db.isRunning());
  t.is(restarts.length, 1, 'a clean stop is not taken for a death');
  if (hasPgrep) t.deepEqual(processesOf(dir), []);
  else t.log('pgrep is missing: process check skipped');
});

test('past the bound of restarts the watcher gives up and leaves the server down', async (t) => {
  const { db } = await startTemporary(t);
  const restarts: number[] = [];
  let gaveUp: Error | undefined;
  const watching = new AbortController();
  t.teardown(() => watching.abort());
  const watch = db.watch(watching.signal, {
    checkIntervalMs: 100,
    maxRestarts: 1,
    windowMs: 60_000,
    onRestart: (e) => restarts.push(e.restartsInWindow),
    onGiveUp: (err) => (gaveUp = err),
  });
  process.kill(db.postmasterPid()!, 'SIGKILL');
  await eventually(() => restarts.length === 1, 30_000, 'the first restart', 50);
  process.kill(db.postmasterPid()!, 'SIGKILL');
  await watch; // ends when it gives up
  t.regex(String(gaveUp), /died 2 times within 60 s/);
  t.is(restarts.length, 1);
  await eventually(() => !db.isRunning(), 5_000, 'the killed postmaster to be gone');
  await t.notThrowsAsync(db.stop(), 'stopping a server that stayed down is not an error');
});
