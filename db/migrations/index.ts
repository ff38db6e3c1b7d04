import { Migration20261122000000 } from './Migration20261122000000.js';
import { Migration20261122010000 } from './Migration20261122010000.js';

/** Every migration, in order. Listed here (not discovered by glob) so they run the same from source or a bundle. */
export const migrations = [
  { name: 'Migration20261122000000_vim', class: Migration20261122000000 },
  { name: 'Migration20261122010000_alarm', class: Migration20261122010000 },
];
