// Each test file gets a database of its own on a real PostgreSQL: the server at
// DATABASE_URL when set (CI), otherwise an embedded PostgreSQL started once per
// worker process in a temporary folder.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { MikroORM } from '@mikro-orm/postgresql';
import { openDatabase, type Orm } from '../../db/connection.js';
import { entities } from '../../db/entities.js';
import { freePort } from './targets.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../db/embedded.js';
import { createScratchDatabase } from './scratch-database.js';

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
  const scratch = await createScratchDatabase(await serverUrl(), 'vimmon_t');
  const url = scratch.url;
  const orms: Orm[] = [];
  const open = async () => {
    const orm = await openDatabase({ url });
    orms.push(orm);
    return orm;
  };
  const orm = await open();
  t.teardown(async () => {
    for (const o of orms) await o.close(true);
    await scratch.drop();
  });
  return { url, orm, open };
}

/**
 * An ORM for a port nothing listens on. Constructed, not init(): nothing
 * connects until the first query, which fails as a database that is down does.
 */
export async function unreachableDatabase(t: ExecutionContext): Promise<{ url: string; orm: Orm }> {
  const url = `postgres://postgres@127.0.0.1:${await freePort()}/vimmon`;
  const orm = new MikroORM({ clientUrl: url, entities, pool: { min: 0, max: 2 }, allowGlobalContext: false });
  t.teardown(() => orm.close(true));
  return { url, orm };
}
