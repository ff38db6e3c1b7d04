// VIM credentials as a Credentials message carries them, checked: one kind
// of the ones Tacker knows (Keystone password, bearer token, OpenID Connect)
// and the CA certificate. The Tacker server checks what callers send; the
// executor checks what it is given for PROBE_KIND_AUTH by the same rules.
// Sealing and masking are the Tacker server's (server/credentials.ts).
import type { Credentials } from '../gen/vimmon/tacker/v1/vim_service.js';
import { parseAuthUrl, type AuthUrlOptions } from './auth-url.js';
import { checkCaCertificates } from './ca-certificates.js';
import { InvalidArgumentError } from './errors.js';

export type CredentialsKind = 'none' | 'password' | 'token' | 'oidc';

export interface PlainCredentials {
  kind: CredentialsKind;
  username?: string;
  password?: string;
  userDomainName?: string;
  projectDomainName?: string;
  bearerToken?: string;
  oidcTokenUrl?: string;
  clientId?: string;
  clientSecret?: string;
  /** PEM. Not a secret, but sealed with the rest, as Tacker encrypts it with the rest. */
  sslCaCert?: string;
}

/** The kinds a `credentials.<kind>` update path may name. */
export type KindName = Exclude<CredentialsKind, 'none'>;
export const kindNames: readonly KindName[] = ['password', 'token', 'oidc'];

export const MASK = '***';

function limited(value: string, field: string, max = 1024): string {
  if (value.length > max) throw new InvalidArgumentError(field, `longer than ${max} characters`);
  return value;
}

/** A secret as sent: required, not the mask a read returned, bounded. */
function secret(value: string, field: string, max = 1024): string {
  if (!value) throw new InvalidArgumentError(field, 'required');
  if (value === MASK) throw new InvalidArgumentError(field, 'is the mask; send the real value');
  return limited(value, field, max);
}

function setKinds(c: Partial<Credentials>): KindName[] {
  return kindNames.filter((k) => c[k] !== undefined);
}

/**
 * The fields of the kind a Credentials message carries (its ssl_ca_cert not
 * read); { kind: 'none' } when it carries none. `authUrl` holds the ranges an
 * OpenID provider's URL may not name (VIMMON_PROBE_DENY): the executor connects there.
 */
export function credentialsKindOf(c: Partial<Credentials> | undefined, field: string, authUrl: AuthUrlOptions): PlainCredentials {
  const kinds = c ? setKinds(c) : [];
  if (kinds.length === 0) return { kind: 'none' };
  if (kinds.length > 1) throw new InvalidArgumentError(field, `set either password, token or oidc, not ${kinds.join(' and ')}`);
  if (c!.password) {
    const p = c!.password;
    const f = `${field}.password`;
    if (!p.username) throw new InvalidArgumentError(`${f}.username`, 'required');
    return {
      kind: 'password',
      username: limited(p.username, `${f}.username`, 255),
      password: secret(p.password, `${f}.password`),
      userDomainName: limited(p.userDomainName, `${f}.user_domain_name`, 255),
      projectDomainName: limited(p.projectDomainName, `${f}.project_domain_name`, 255),
    };
  }
  if (c!.oidc) {
    const o = c!.oidc;
    const f = `${field}.oidc`;
    if (!o.clientId) throw new InvalidArgumentError(`${f}.client_id`, 'required');
    if (!o.username) throw new InvalidArgumentError(`${f}.username`, 'required');
    const oidc: PlainCredentials = {
      kind: 'oidc',
      oidcTokenUrl: parseAuthUrl(o.oidcTokenUrl, `${f}.oidc_token_url`, authUrl).href,
      clientId: limited(o.clientId, `${f}.client_id`, 255),
      username: limited(o.username, `${f}.username`, 255),
      password: secret(o.password, `${f}.password`),
    };
    // A public client has no secret (Keycloak's "client authentication" off).
    if (o.clientSecret) oidc.clientSecret = secret(o.clientSecret, `${f}.client_secret`);
    return oidc;
  }
  return { kind: 'token', bearerToken: secret(c!.token!.bearerToken, `${field}.token.bearer_token`, 16384) };
}

function withCaCert(c: PlainCredentials, pem: string | undefined, field: string): PlainCredentials {
  return pem ? { ...c, sslCaCert: checkCaCertificates(pem, `${field}.ssl_ca_cert`) } : c;
}

/** A whole Credentials message: one kind (or none) and the CA certificate. */
export function validateCredentials(
  c: Partial<Credentials> | undefined,
  field = 'credentials',
  authUrl: AuthUrlOptions = {},
): PlainCredentials {
  return withCaCert(credentialsKindOf(c, field, authUrl), c?.sslCaCert, field);
}

/** Tacker takes OpenID Connect for Kubernetes VIMs only: Keystone's federation needs more than these fields. */
export function checkCredentialsFitType(c: PlainCredentials, type: 'openstack' | 'kubernetes', field: string): void {
  if (c.kind === 'oidc' && type !== 'kubernetes')
    throw new InvalidArgumentError(field, 'OpenID Connect credentials are for Kubernetes VIMs (type VIM_TYPE_KUBERNETES)');
}
