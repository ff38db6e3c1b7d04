import { Migration } from '@mikro-orm/migrations';

export class Migration20261201070659 extends Migration {
  override name = 'Migration20261201070659_successor';

  override up(): void | Promise<void> {
    // A hand-over from a draining executor: the successor runs beside the current action
    // until its first accepted report makes it current (conductor/fencing.ts).
    this.addSql(
      `alter table "vim" add "successor_action_id" uuid null, add "successor_executor" text null, add "successor_assigned_at" timestamptz null;`,
    );
  }

  override down(): void | Promise<void> {
    this.addSql(
      `alter table "vim" drop column "successor_action_id", drop column "successor_executor", drop column "successor_assigned_at";`,
    );
  }
}
