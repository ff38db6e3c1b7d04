// The database: the ORM, brought up to date by the committed migrations, and
// typed SQL (Kysely typed by the entities) for statements beyond the unit of
// work, so that a misspelt table or column fails tsc rather than a call.
import { fileURLToPath } from 'node:url';
import { defineConfig, MikroORM, type EntityManager, type InferKyselyDB, type Kysely, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import { sql, type AliasedRawBuilder, type Selectable } from 'kysely';
import { entities } from './entities.js';
import { migrations } from './migrations/index.js';

// Kysely's raw-fragment tag and row type, from here: the one module that imports kysely.
export { sql, type Selectable };

export interface DatabaseOptions {
  url: string;
  /** Pool size per process. */
  poolMax?: number;
  debug?: boolean;
  /** Receives MikroORM's own log lines (migrations applied; with debug, its queries, not those of typedSql). */
  log?: (message: string) => void;
}

export type Orm = MikroORM;

/**
 * The committed migrations and the schema snapshot beside them. Resolved from
 * this module, so it is the same folder whatever the working directory; from a
 * build in dist/ it holds no snapshot, which only `migration:create` and
 * `migration:check` read.
 */
const migrationsFolder = fileURLToPath(new URL('./migrations', import.meta.url));

/** The ORM's options; also what a `mikro-orm` CLI config file should export. */
export function databaseConfig(options: DatabaseOptions): Options {
  return defineConfig({
    clientUrl: options.url,
    entities,
    extensions: [Migrator],
    migrations: {
      // Listed (not discovered by glob) so they run the same from source or a bundle.
      migrationsList: migrations,
      transactional: true,
      allOrNothing: true,
      // migration:create diffs the entities against this snapshot (db/migrations/schema-snapshot.json)
      // and rewrites it; running migrations never writes it, so a deployed process touches no file.
      snapshot: true,
      snapshotOnMigrate: false,
      snapshotName: 'schema-snapshot',
      path: migrationsFolder,
      pathTs: migrationsFolder,
      emit: 'ts',
    },
    pool: { min: 0, max: options.poolMax ?? 10 },
    debug: options.debug ?? false,
    logger: options.log ?? (() => {}),
    allowGlobalContext: false,
    ensureDatabase: false,
  });
}

/** Connects and brings the schema up to date through the committed migrations. */
export async function openDatabase(options: DatabaseOptions): Promise<Orm> {
  const orm = await MikroORM.init(databaseConfig(options));
  try {
    await oneMigratorAtATime(options.url, () => orm.migrator.up());
  } catch (err) {
    await orm.close(true);
    throw err;
  }
  return orm;
}

/** The advisory lock key migrations run under: 'vimmon:migrate' as a 64-bit number. */
const migrationLockKey = 0x76696d6d6f6e6d67n;

/**
 * Runs the migrations under a session advisory lock of their own: roles started
 * together on a new database (pods of a rollout, `vimmon all` beside a conductor)
 * would otherwise each create the same tables, and all but one fail. The lock is
 * on a connection of its own (the migrator's transaction is on the pool), and
 * ending that connection releases it, also when the process dies.
 */
async function oneMigratorAtATime<T>(url: string, migrate: () => Promise<T>): Promise<T> {
  const session = new pg.Client({ connectionString: url });
  await session.connect();
  try {
    await session.query('select pg_advisory_lock($1)', [migrationLockKey.toString()]);
    return await migrate();
  } finally {
    await session.end();
  }
}

/** The tables as the entities declare them, by column name: a misspelt table or column fails tsc. */
export type Database = InferKyselyDB<(typeof entities)[number]>;

/**
 * Typed SQL on em's connection, or its transaction inside `em.transactional`.
 * Values of entity columns are converted as the entities declare (timestamps
 * to Date, bigint to number), so rows hold what their types say. Aggregates,
 * casts and raw fragments are not converted: give those sql<T> the type
 * PostgreSQL sends (bigint and timestamptz arrive as text). A column name two
 * joined tables share is converted as either: select it as `<alias>_<column>`.
 */
export function typedSql(em: EntityManager): Kysely<Database> {
  return em.getKysely<Database>({ convertValues: true });
}

/**
 * `jsonb_to_recordset($1) as r(column type, ...)`: any number of rows as one
 * parameter (a fixed parameter count whatever the batch). `columns` gives each
 * column's SQL type; Row is what the columns hold once PostgreSQL has cast them.
 */
export function recordset<Row extends object>(
  columns: { [K in keyof Row & string]: string },
  rows: ReadonlyArray<{ [K in keyof Row & string]: unknown }>,
): AliasedRawBuilder<Row, 'r'> {
  const definitions = sql.join(Object.entries(columns).map(([name, type]) => sql`${sql.id(name)} ${sql.raw(type as string)}`));
  return sql<Row>`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)`.as<'r'>(sql`r(${definitions})`);
}
