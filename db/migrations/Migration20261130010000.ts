import { Migration } from '@mikro-orm/migrations';

export class Migration20261130010000 extends Migration {
  override name = 'Migration20261130010000_ownership';

  override up(): void {
    // Tacker's tenant_id: the project whose members may change the VIM and whose readers may see it.
    // VIMs registered before ownership existed belong to no project: only an admin sees them.
    this.addSql(`alter table vim add column owner_project text not null default '' check (length(owner_project) <= 255)`);
    this.addSql(`create index vim_live_owner on vim (owner_project, created_at, id) where deleted_at is null`);
    // Who changed what: one row per register, update and deregister.
    this.addSql(`
      create table vim_audit (
        id bigserial primary key,
        vim_id uuid not null references vim (id),
        action text not null check (action in ('register', 'update', 'deregister')),
        principal text not null,
        principal_project text not null default '',
        owner_project text not null default '',
        changed_fields text[] not null default '{}',
        created_at timestamptz not null default now()
      )`);
    this.addSql(`create index vim_audit_vim on vim_audit (vim_id, id)`);
  }

  override down(): void {
    this.addSql(`drop table vim_audit`);
    this.addSql(`drop index vim_live_owner`);
    this.addSql(`alter table vim drop column owner_project`);
  }
}
