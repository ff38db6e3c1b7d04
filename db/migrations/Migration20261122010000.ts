import { Migration } from '@mikro-orm/migrations';

export class Migration20261122010000 extends Migration {
  override name = 'Migration20261122010000_alarm';

  override up(): void {
    // The inspector reserves ids from this sequence before it raises alarms, so
    // alarm_id is the order subscribers saw, across restarts too.
    this.addSql(`
      create table alarm (
        alarm_id bigserial primary key,
        type text not null check (type in ('INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE',
          'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED')),
        host text not null default '',
        instance_id text not null default '',
        instance_name text not null default '',
        project_id text not null default '',
        vim_id uuid,
        vim_name text not null default '',
        state text not null default '',
        severity text not null,
        cause text not null default '',
        monitor text not null default '',
        monitor_event_id text not null default '',
        fault_id uuid,
        vim_event_id bigint,
        event_time timestamptz,
        detected_at timestamptz not null,
        raised_at timestamptz not null,
        stored_at timestamptz not null default now()
      )`);
    this.addSql(`create index alarm_host on alarm (host, alarm_id) where host <> ''`);
    this.addSql(`create index alarm_project on alarm (project_id, alarm_id) where project_id <> ''`);
    this.addSql(`create index alarm_fault on alarm (fault_id) where fault_id is not null`);
    // One alarm per VIM status transition, however often the NOTIFY is replayed.
    this.addSql(`create unique index alarm_vim_event on alarm (vim_event_id, type) where vim_event_id is not null`);
    // Host state survives restarts: a repeated "down" after a restart raises nothing,
    // and Nova work cut short by a shutdown is driven again at start.
    this.addSql(`
      create table inspector_host (
        host text primary key,
        state text not null check (state in ('down', 'up')),
        fault_id uuid not null,
        changed_at timestamptz not null,
        monitor text not null default '',
        monitor_event_id text not null default '',
        severity text not null default '',
        instances jsonb not null default '[]',
        nova_done_at timestamptz
      )`);
  }

  override down(): void {
    this.addSql(`drop table inspector_host`);
    this.addSql(`drop table alarm`);
  }
}
