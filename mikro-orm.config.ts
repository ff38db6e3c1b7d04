// For MikroORM's own commands (`npx mikro-orm migration:check`, `migration:create`):
// the same configuration the roles use, against DATABASE_URL.
import { databaseConfig } from './db/connection.js';

export default databaseConfig({ url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' });
