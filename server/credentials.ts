// VIM credentials: validated at the edge, sealed with AES-256-GCM at rest (the
// VIM id is the associated data, so a sealed blob cannot be moved to another
// row), and masked on every way out.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Credentials } from '../gen/vimmon/tacker/v1/vim_service.js';
import type { AuthUrlOptions } from '../common/auth-url.js';
import { checkCaCertificates } from '../common/ca-certificates.js';
import { InvalidArgumentError } from '../common/errors.js';
import { credentialsKindOf, kindNames, MASK, validateCredentials, type PlainCredentials } from '../common/vim-credentials.js';

export {
  checkCredentialsFitType,
  kindNames,
  MASK,
  validateCredentials,
  type CredentialsKind,
  type PlainCredentials,
} from '../common/vim-credentials.js';

/**
 * What an UpdateVim of some `credentials…` paths does to the stored
 * credentials, checked before the row is read: `credentials` replaces them,
 * `credentials.<kind>` sets that kind (the fields of the previous kind go,
 * as Tacker does) and keeps the CA certificate, `credentials.ssl_ca_cert`
 * changes the CA certificate only. Undefined when no path names credentials.
 */
export function credentialsUpdate(
  c: Partial<Credentials> | undefined,
  paths: ReadonlySet<string>,
  field = 'vim.credentials',
  authUrl: AuthUrlOptions = {},
): ((current: PlainCredentials) => PlainCredentials) | undefined {
  if (paths.has('credentials')) {
    const replaced = validateCredentials(c, field, authUrl);
    return () => replaced;
  }
  const kindPaths = kindNames.filter((k) => paths.has(`credentials.${k}`));
  const caPath = paths.has('credentials.ssl_ca_cert');
  if (kindPaths.length === 0 && !caPath) return undefined;
  if (kindPaths.length > 1) throw new InvalidArgumentError('update_mask', `name one kind of credentials, not ${kindPaths.join(' and ')}`);
  let kind: PlainCredentials | undefined;
  if (kindPaths.length === 1) {
    const name = kindPaths[0]!;
    if (!c?.[name]) throw new InvalidArgumentError(`${field}.${name}`, 'required: the update_mask names it');
    kind = credentialsKindOf({ password: undefined, token: undefined, oidc: undefined, [name]: c[name], sslCaCert: '' }, field, authUrl);
  }
  const ca = caPath ? (c?.sslCaCert ? checkCaCertificates(c.sslCaCert, `${field}.ssl_ca_cert`) : undefined) : undefined;
  return (current) => {
    const next: PlainCredentials = kind ?? { ...current };
    const pem = caPath ? ca : current.sslCaCert;
    if (pem) next.sslCaCert = pem;
    else delete next.sslCaCert;
    return next;
  };
}

export function seal(c: PlainCredentials, key: Buffer, vimId: string): string | null {
  if (c.kind === 'none' && !c.sslCaCert) return null;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(vimId));
  const body = Buffer.concat([cipher.update(JSON.stringify(c), 'utf8'), cipher.final()]);
  return `v1:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`;
}

export function unseal(sealed: string | null | undefined, key: Buffer, vimId: string): PlainCredentials {
  if (!sealed) return { kind: 'none' };
  if (!sealed.startsWith('v1:')) throw new Error('unknown credentials format');
  const raw = Buffer.from(sealed.slice(3), 'base64');
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  decipher.setAAD(Buffer.from(vimId));
  decipher.setAuthTag(raw.subarray(12, 28));
  const json = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  return JSON.parse(json) as PlainCredentials;
}

/** What callers see: names, URLs and the CA certificate in clear, every secret as "***" (Tacker's masking). */
export function masked(c: PlainCredentials): Credentials | undefined {
  const out: Credentials = { password: undefined, token: undefined, oidc: undefined, sslCaCert: c.sslCaCert ?? '' };
  switch (c.kind) {
    case 'password':
      out.password = {
        username: c.username ?? '',
        password: MASK,
        userDomainName: c.userDomainName ?? '',
        projectDomainName: c.projectDomainName ?? '',
      };
      return out;
    case 'token':
      out.token = { bearerToken: MASK };
      return out;
    case 'oidc':
      out.oidc = {
        oidcTokenUrl: c.oidcTokenUrl ?? '',
        clientId: c.clientId ?? '',
        // Empty for a public client: there is no secret to hide.
        clientSecret: c.clientSecret ? MASK : '',
        username: c.username ?? '',
        password: MASK,
      };
      return out;
    default:
      return c.sslCaCert ? out : undefined;
  }
}

/** The credentials as a message with every secret in clear: for an executor's StartAction only, never for a caller. */
export function inClear(c: PlainCredentials): Credentials {
  return {
    password:
      c.kind === 'password'
        ? {
            username: c.username ?? '',
            password: c.password ?? '',
            userDomainName: c.userDomainName ?? '',
            projectDomainName: c.projectDomainName ?? '',
          }
        : undefined,
    token: c.kind === 'token' ? { bearerToken: c.bearerToken ?? '' } : undefined,
    oidc:
      c.kind === 'oidc'
        ? {
            oidcTokenUrl: c.oidcTokenUrl ?? '',
            clientId: c.clientId ?? '',
            clientSecret: c.clientSecret ?? '',
            username: c.username ?? '',
            password: c.password ?? '',
          }
        : undefined,
    // The executor is given the CA certificate on its own (StartActionRequest.ssl_ca_cert).
    sslCaCert: '',
  };
}

export function sameCredentials(a: PlainCredentials, b: PlainCredentials): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
