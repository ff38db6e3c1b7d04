// Each test file gets a database of its own on a real PostgreSQL: the server at
// DATABASE_URL when set (CI), otherwise an embedded PostgreSQL started once per
// worker process in a temporary folder.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import test, { type ExecutionContext } from 'ava';
import { openDatabase, type Orm } from '../../db/connection.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../db/embedded.js';

let embedded: Promise<EmbeddedDatabase> | undefined;

// Stop this worker's embedded PostgreSQL after its tests: a running server
// would keep the worker alive until ava's timeout.
test.after.always(async () => {
  if (embedded) await (await embedded).stop();
});

async function serverUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  embedded ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-test-pg-'));
    // As root, PostgreSQL runs as user postgres, which must be able to enter the folder.
    chmodSync(dir, 0o755);
    const db = await startEmbeddedPostgres({ dataDir: dir });
    return {
      url: db.url,
      async stop() {
        await db.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  })();
  return (await embedded).url;
}

export interface TestDatabase {
  url: string;
  orm: Orm;
  /** A fresh ORM on the same database (a second process would have its own). */
  open(): Promise<Orm>;
}

export async function createTestDatabase(t: ExecutionContext): Promise<TestDatabase> {
  const base = await serverUrl();
  const name = `vimmon_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  const url = u.toString();
  const orms: Orm[] = [];
  const open = async () => {
    const orm = await openDatabase({ url });
    orms.push(orm);
    return orm;
  };
  const orm = await open();
  t.teardown(async () => {
    for (const o of orms) await o.close(true);
    const a = new pg.Client({ connectionString: base });
    await a.connect();
    await a.query(`drop database if exists ${name} with (force)`);
    await a.end();
  });
  return { url, orm, open };
}
