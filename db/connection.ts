import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { entities } from './entities.js';
import { migrations } from './migrations/index.js';

export interface DatabaseOptions {
  url: string;
  /** Pool size per process. */
  poolMax?: number;
  debug?: boolean;
  /** Receives MikroORM's own log lines (migrations applied, queries when debug). */
  log?: (message: string) => void;
}

export type Orm = MikroORM;

/** Connects and brings the schema up to date through the committed migrations. */
export async function openDatabase(options: DatabaseOptions): Promise<Orm> {
  const orm = await MikroORM.init({
    clientUrl: options.url,
    entities,
    extensions: [Migrator],
    // No snapshot file: the schema lives in the committed migrations alone.
    migrations: { migrationsList: migrations, transactional: true, allOrNothing: true, snapshot: false },
    pool: { min: 0, max: options.poolMax ?? 10 },
    debug: options.debug ?? false,
    logger: options.log ?? (() => {}),
    allowGlobalContext: false,
    ensureDatabase: false,
  });
  await orm.migrator.up();
  return orm;
}
