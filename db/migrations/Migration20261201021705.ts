import { Migration } from '@mikro-orm/migrations';

export class Migration20261201021705 extends Migration {
  override name = 'Migration20261201021705_start_backoff';

  override up(): void | Promise<void> {
    // The reconciler's backoff per VIM, stored so that a restarted server keeps it.
    this.addSql(`alter table "vim" add "start_attempts" int not null default 0, add "next_attempt_at" timestamptz null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "vim" drop column "start_attempts", drop column "next_attempt_at";`);
  }
}
