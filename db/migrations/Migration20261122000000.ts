import { Migration } from '@mikro-orm/migrations';

export class Migration20261122000000 extends Migration {
  override name = 'Migration20261122000000_vim';

  override up(): void {
    this.addSql(`
      create table vim (
        id uuid primary key,
        name text not null check (length(name) between 1 and 255),
        description text not null default '',
        type text not null,
        auth_url text not null,
        project text not null default '',
        credentials_kind text not null default 'none' check (credentials_kind in ('none', 'password', 'token')),
        credentials_sealed text,
        probe text not null check (probe in ('tcp', 'http', 'icmp')),
        interval_ms integer not null check (interval_ms > 0),
        timeout_ms integer not null check (timeout_ms > 0),
        probe_count integer not null check (probe_count > 0),
        unreachable_after integer not null check (unreachable_after > 0),
        report_interval_ms integer not null check (report_interval_ms > 0),
        stale_after_ms integer not null check (stale_after_ms > report_interval_ms),
        status text not null check (status in ('PENDING', 'REACHABLE', 'UNREACHABLE')),
        action_id uuid not null,
        action_assigned_at timestamptz not null,
        action_started boolean not null default false,
        executor text,
        is_default boolean not null default false,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        status_changed_at timestamptz not null,
        last_report_at timestamptz,
        deleted_at timestamptz
      )`);
    // Names are unique among live VIMs only, so a name is reusable after deregister.
    this.addSql(`create unique index vim_name_live on vim (name) where deleted_at is null`);
    this.addSql(`create unique index vim_default_live on vim (is_default) where is_default and deleted_at is null`);
    this.addSql(`create index vim_live_created on vim (created_at, id) where deleted_at is null`);
    this.addSql(`
      create table vim_event (
        id bigserial primary key,
        vim_id uuid not null references vim (id),
        from_status text not null,
        to_status text not null,
        action_id uuid not null,
        created_at timestamptz not null default now()
      )`);
    this.addSql(`create index vim_event_vim on vim_event (vim_id, id)`);
  }

  override down(): void {
    this.addSql(`drop table vim_event`);
    this.addSql(`drop table vim`);
  }
}
