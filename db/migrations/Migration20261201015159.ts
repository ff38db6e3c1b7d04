import { Migration } from '@mikro-orm/migrations';

export class Migration20261201015159 extends Migration {
  override name = 'Migration20261201015159_oidc_credentials';

  override up(): void {
    // Kubernetes VIMs may hold OpenID Connect credentials (Tacker's oidc_token_url, client_id, client_secret, username, password).
    this.addSql(`alter table "vim" drop constraint "vim_credentials_kind_check"`);
    this.addSql(
      `alter table "vim" add constraint "vim_credentials_kind_check" check (credentials_kind in ('none', 'password', 'token', 'oidc'))`,
    );
  }

  override down(): void {
    this.addSql(`alter table "vim" drop constraint "vim_credentials_kind_check"`);
    this.addSql(`alter table "vim" add constraint "vim_credentials_kind_check" check (credentials_kind in ('none', 'password', 'token'))`);
  }
}
