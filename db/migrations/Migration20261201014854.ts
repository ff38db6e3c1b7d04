import { Migration } from '@mikro-orm/migrations';

export class Migration20261201014854 extends Migration {
  override name = 'Migration20261201014854_maintenance';

  override up(): void {
    // Hosts under planned maintenance: kept across restarts, read at start.
    this.addSql(
      `create table "inspector_maintenance" ("host" text not null, "since" timestamptz not null, "session_id" text not null default '', "reason" text not null default '', "set_by" text not null default '', primary key ("host"))`,
    );
    // Alarms of a host in maintenance are marked expected; maintenance starts and ends are alarms too.
    this.addSql(`alter table "alarm" drop constraint "alarm_type_check"`);
    this.addSql(`alter table "alarm" add "expected" boolean not null default false`);
    this.addSql(
      `alter table "alarm" add constraint "alarm_type_check" check (type in ('INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE', 'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED', 'HOST_MAINTENANCE_STARTED', 'HOST_MAINTENANCE_ENDED'))`,
    );
  }

  override down(): void {
    this.addSql(`drop table if exists "inspector_maintenance"`);
    this.addSql(`alter table "alarm" drop constraint "alarm_type_check"`);
    this.addSql(`alter table "alarm" drop column "expected"`);
    this.addSql(
      `alter table "alarm" add constraint "alarm_type_check" check (type in ('INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE', 'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED'))`,
    );
  }
}
