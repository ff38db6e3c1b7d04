import { Migration } from '@mikro-orm/migrations';

export class Migration20261201070445 extends Migration {
  override name = 'Migration20261201070445_live_executor';

  override up(): void | Promise<void> {
    // The lost-action check reads one executor's live VIMs; without this it read every live row.
    this.addSql(`create index "vim_live_executor" on "vim" ("executor") where "deleted_at" is null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`drop index "vim_live_executor";`);
  }
}
