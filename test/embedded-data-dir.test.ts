// Where the embedded PostgreSQL keeps its data when vimmon runs as root and the
// server, run as user postgres, cannot enter the project's folder (a clone in a
// 0700 `mktemp -d` or home folder): the default folder's database moves to a
// reachable one, the same on every start; a folder the user chose does not move.
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { startEmbeddedPostgres } from '../db/embedded.js';

// As another user the server runs as that user, and no folder is out of its reach.
const asRoot = process.getuid?.() === 0;
const rootTest = asRoot ? test : test.skip;

/** A 0700 folder, as `mktemp -d` makes, standing for the clone; its `.vimmon` is the default data folder. */
function clone(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-clone-'));
  t.is(statSync(dir).mode & 0o777, 0o700);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Removes a moved data folder after the test, and the shared parent if nothing else is in it. */
function removeLater(t: ExecutionContext, dir: () => string | undefined, clonePath: string): void {
  t.teardown(() => {
    const d = dir();
    if (!d || !path.basename(d).startsWith(path.basename(clonePath))) return;
    rmSync(d, { recursive: true, force: true });
    try {
      rmdirSync(path.dirname(d));
    } catch {}
  });
}

async function query<T>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

rootTest(
  'the default folder out of postgres reach: the database lives in a reachable folder, said so, and found again on restart',
  async (t) => {
    const project = clone(t);
    const dataDir = path.join(project, '.vimmon');
    const notices: string[] = [];
    let moved: string | undefined;
    removeLater(t, () => moved, project);

    const first = await startEmbeddedPostgres({ dataDir, relocatable: true, onNotice: (m) => notices.push(m) });
    moved = first.dataDir;
    try {
      t.not(first.dataDir, dataDir);
      t.false(first.dataDir.startsWith(project + path.sep), 'outside the folder postgres cannot enter');
      t.deepEqual(notices, [
        `the embedded PostgreSQL runs as user postgres, which cannot enter ${project}: its data is in ${first.dataDir} instead (set VIMMON_DATA_DIR to choose the folder)`,
      ]);
      const st = statSync(first.dataDir);
      t.is(st.uid, 0, "root's folder, not one another user could have made");
      t.is(st.mode & 0o777, 0o755);
      await query(first.url, 'create table kept (n int); insert into kept values (42)');
    } finally {
      await first.stop();
    }

    const second = await startEmbeddedPostgres({ dataDir, relocatable: true, onNotice: (m) => notices.push(m) });
    try {
      t.is(second.dataDir, first.dataDir, 'the same project finds the same folder');
      t.deepEqual(await query<{ n: number }>(second.url, 'select n from kept'), [{ n: 42 }], 'and its data');
      t.is(notices.length, 2, 'said again at every start');
    } finally {
      await second.stop();
    }
  },
);

rootTest('two projects out of reach get two folders', async (t) => {
  const a = clone(t);
  const b = clone(t);
  let movedA: string | undefined;
  let movedB: string | undefined;
  removeLater(t, () => movedA, a);
  removeLater(t, () => movedB, b);
  const dbA = await startEmbeddedPostgres({ dataDir: path.join(a, '.vimmon'), relocatable: true });
  movedA = dbA.dataDir;
  try {
    const dbB = await startEmbeddedPostgres({ dataDir: path.join(b, '.vimmon'), relocatable: true });
    movedB = dbB.dataDir;
    await dbB.stop();
  } finally {
    await dbA.stop();
  }
  t.not(movedA, movedB);
});

rootTest('a folder the user chose is not moved: the clear error stays', async (t) => {
  const project = clone(t);
  const dataDir = path.join(project, 'state');
  const notices: string[] = [];
  const err = await t.throwsAsync(startEmbeddedPostgres({ dataDir, onNotice: (m) => notices.push(m) }));
  t.is(
    err?.message,
    `the embedded PostgreSQL runs as user postgres, which cannot enter ${project}: set VIMMON_DATA_DIR to a folder it can reach (e.g. under /var/lib or /tmp), or set DATABASE_URL`,
  );
  t.deepEqual(notices, []);
});

rootTest('a default folder that already holds a database is not moved away from it', async (t) => {
  const project = clone(t);
  const dataDir = path.join(project, '.vimmon');
  mkdirSync(path.join(dataDir, 'postgres'), { recursive: true });
  writeFileSync(path.join(dataDir, 'postgres', 'PG_VERSION'), '18\n');
  const err = await t.throwsAsync(startEmbeddedPostgres({ dataDir, relocatable: true }));
  t.is(
    err?.message,
    `the embedded PostgreSQL runs as user postgres, which cannot enter ${project}, and ${dataDir} holds a database: let postgres enter ${project}, set VIMMON_DATA_DIR, or set DATABASE_URL`,
  );
});
