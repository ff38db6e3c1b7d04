import { Migration } from '@mikro-orm/migrations';

export class Migration20261201021403 extends Migration {
  override name = 'Migration20261201021403_retention';

  override up(): void | Promise<void> {
    // Retention removes each table's oldest rows; this says how far, so that a resume below it is answered OUT_OF_RANGE.
    this.addSql(
      `create table "retention_mark" ("table_name" text not null, "removed_through" bigint not null, "updated_at" timestamptz not null default now(), primary key ("table_name"));`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(`drop table if exists "retention_mark" cascade;`);
  }
}
