import { Migration } from '@mikro-orm/migrations';

export class Migration20261201015426 extends Migration {
  override name = 'Migration20261201015426_status_reason';

  override up(): void {
    // PROBE_KIND_AUTH: the probe authenticates with the VIM's credentials.
    this.addSql(`alter table "vim" drop constraint "vim_probe_check"`);
    this.addSql(`alter table "vim" add constraint "vim_probe_check" check (probe in ('tcp', 'http', 'icmp', 'auth'))`);
    // Why an UNREACHABLE VIM refused (its credentials, its certificate), on the VIM and on each of its events.
    this.addSql(`alter table "vim" add "status_reason" text not null default ''`);
    this.addSql(
      `alter table "vim" add constraint "vim_status_reason_check" check (status_reason in ('', 'CREDENTIALS_REJECTED', 'CERTIFICATE_REJECTED'))`,
    );
    this.addSql(`alter table "vim_event" add "status_reason" text not null default ''`);
    this.addSql(
      `alter table "vim_event" add constraint "vim_event_status_reason_check" check (status_reason in ('', 'CREDENTIALS_REJECTED', 'CERTIFICATE_REJECTED'))`,
    );
    // A VIM that refuses its credentials has an alarm of its own.
    this.addSql(`alter table "alarm" drop constraint "alarm_type_check"`);
    this.addSql(
      `alter table "alarm" add constraint "alarm_type_check" check (type in ('INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE', 'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED', 'HOST_MAINTENANCE_STARTED', 'HOST_MAINTENANCE_ENDED', 'VIM_CREDENTIALS_REJECTED'))`,
    );
  }

  override down(): void {
    this.addSql(`alter table "alarm" drop constraint "alarm_type_check"`);
    this.addSql(
      `alter table "alarm" add constraint "alarm_type_check" check (type in ('INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE', 'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED', 'HOST_MAINTENANCE_STARTED', 'HOST_MAINTENANCE_ENDED'))`,
    );
    this.addSql(`alter table "vim_event" drop constraint "vim_event_status_reason_check"`);
    this.addSql(`alter table "vim_event" drop column "status_reason"`);
    this.addSql(`alter table "vim" drop constraint "vim_status_reason_check"`);
    this.addSql(`alter table "vim" drop column "status_reason"`);
    this.addSql(`alter table "vim" drop constraint "vim_probe_check"`);
    this.addSql(`alter table "vim" add constraint "vim_probe_check" check (probe in ('tcp', 'http', 'icmp'))`);
  }
}
