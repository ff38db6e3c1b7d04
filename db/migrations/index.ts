import { Migration20261122000000 } from './Migration20261122000000.js';
import { Migration20261122010000 } from './Migration20261122010000.js';
import { Migration20261130000000 } from './Migration20261130000000.js';
import { Migration20261130010000 } from './Migration20261130010000.js';
import { Migration20261201014854 } from './Migration20261201014854.js';
import { Migration20261201015159 } from './Migration20261201015159.js';
import { Migration20261201015426 } from './Migration20261201015426.js';
import { Migration20261201021403 } from './Migration20261201021403.js';
import { Migration20261201021705 } from './Migration20261201021705.js';
import { Migration20261201070445 } from './Migration20261201070445.js';
import { Migration20261201070659 } from './Migration20261201070659.js';

/**
 * Every migration, in order. Listed here (not discovered by glob) so they run the same from source or a bundle.
 * A schema change starts in the entities; `mikro-orm migration:create` (config: databaseConfig in
 * ../connection.ts) diffs them against schema-snapshot.json, writes the migration here and the new
 * snapshot; list the migration below. test/schema.test.ts fails until the three agree.
 */
export const migrations = [
  { name: 'Migration20261122000000_vim', class: Migration20261122000000 },
  { name: 'Migration20261122010000_alarm', class: Migration20261122010000 },
  { name: 'Migration20261130000000_alarm_quarantine', class: Migration20261130000000 },
  { name: 'Migration20261130010000_ownership', class: Migration20261130010000 },
  { name: 'Migration20261201014854_maintenance', class: Migration20261201014854 },
  { name: 'Migration20261201015159_oidc_credentials', class: Migration20261201015159 },
  { name: 'Migration20261201015426_status_reason', class: Migration20261201015426 },
  { name: 'Migration20261201021403_retention', class: Migration20261201021403 },
  { name: 'Migration20261201021705_start_backoff', class: Migration20261201021705 },
  { name: 'Migration20261201070445_live_executor', class: Migration20261201070445 },
  { name: 'Migration20261201070659_successor', class: Migration20261201070659 },
];
