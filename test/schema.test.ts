// The entities are the one description of the schema: after the committed
// migrations run, MikroORM finds nothing to change, so its standard commands
// (schema:update, migration:create) never drop an index, check, foreign key or
// default that a migration made.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { MikroORM } from '@mikro-orm/postgresql';
import { databaseConfig, openDatabase } from '../db/connection.js';
import { createScratchDatabase } from './support/scratch-database.js';
import { createTestDatabase } from './support/database.js';

test('after the committed migrations, the entities ask for no schema change', async (t) => {
  const { orm } = await createTestDatabase(t);
  const sql = await orm.schema.getUpdateSchemaSQL({ wrap: false });
  t.is(sql.trim(), '', 'the entities and the migrated database differ');
});

test('the committed snapshot describes the entities, so migration:create starts from them', async (t) => {
  const snapshot = fileURLToPath(new URL('../db/migrations/schema-snapshot.json', import.meta.url));
  t.true(existsSync(snapshot), `${snapshot} is missing`);
  // Nothing listens there: with a snapshot the check reads no database.
  const orm = new MikroORM(databaseConfig({ url: 'postgres://postgres@127.0.0.1:9/none' }));
  t.teardown(() => orm.close(true));
  t.false(await orm.migrator.checkSchema(), 'the entities changed without migration:create (no new migration, stale snapshot)');
});

test('roles starting together on a new database migrate it once: none fails', async (t) => {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    t.log('skipped: DATABASE_URL is not set');
    t.pass();
    return;
  }
  const db = await createScratchDatabase(serverUrl, 'vimmon_migrate_race');
  t.teardown(() => db.drop());
  // Without the migration lock, five of six failed here ("relation mikro_orm_migrations already exists").
  const opened = await Promise.allSettled(Array.from({ length: 6 }, () => openDatabase({ url: db.url })));
  for (const o of opened) if (o.status === 'fulfilled') await o.value.close(true);
  t.deepEqual(
    opened.map((o) => (o.status === 'fulfilled' ? 'ok' : String((o.reason as Error).message))),
    Array(6).fill('ok'),
  );
});
