import { Migration } from '@mikro-orm/migrations';

export class Migration20261130000000 extends Migration {
  override name = 'Migration20261130000000_alarm_quarantine';

  override up(): void {
    // Alarms the database refused to store (a value out of its range, a NUL):
    // put aside here so that one bad row never holds up the alarms after it.
    // The payload is the alarm as JSON text, not jsonb, which refuses \u0000.
    this.addSql(`
      create table alarm_quarantine (
        alarm_id bigint primary key,
        payload text not null,
        error text not null,
        quarantined_at timestamptz not null default now()
      )`);
  }

  override down(): void {
    this.addSql(`drop table alarm_quarantine`);
  }
}
