// VIM credentials: validated at the edge, sealed with AES-256-GCM at rest (the
// VIM id is the associated data, so a sealed blob cannot be moved to another
// row), and masked on every way out.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Credentials } from '../gen/vimmon/tacker/v1/vim_service.js';
import { InvalidArgumentError } from '../common/errors.js';

export type CredentialsKind = 'none' | 'password' | 'token';

export interface PlainCredentials {
  kind: CredentialsKind;
  username?: string;
  password?: string;
  userDomainName?: string;
  projectDomainName?: string;
  bearerToken?: string;
}

export const MASK = '***';

function limited(value: string, field: string, max = 1024): string {
  if (value.length > max) throw new InvalidArgumentError(field, `longer than ${max} characters`);
  return value;
}

export function validateCredentials(c: Credentials | undefined, field = 'credentials'): PlainCredentials {
  if (!c || (!c.password && !c.token)) return { kind: 'none' };
  if (c.password && c.token) throw new InvalidArgumentError(field, 'set either password or token, not both');
  if (c.password) {
    const p = c.password;
    if (!p.username) throw new InvalidArgumentError(`${field}.password.username`, 'required');
    if (!p.password) throw new InvalidArgumentError(`${field}.password.password`, 'required');
    if (p.password === MASK) throw new InvalidArgumentError(`${field}.password.password`, 'is the mask; send the real password');
    return {
      kind: 'password',
      username: limited(p.username, `${field}.password.username`, 255),
      password: limited(p.password, `${field}.password.password`),
      userDomainName: limited(p.userDomainName, `${field}.password.user_domain_name`, 255),
      projectDomainName: limited(p.projectDomainName, `${field}.password.project_domain_name`, 255),
    };
  }
  const t = c.token!;
  if (!t.bearerToken) throw new InvalidArgumentError(`${field}.token.bearer_token`, 'required');
  if (t.bearerToken === MASK) throw new InvalidArgumentError(`${field}.token.bearer_token`, 'is the mask; send the real token');
  return { kind: 'token', bearerToken: limited(t.bearerToken, `${field}.token.bearer_token`, 16384) };
}

export function seal(c: PlainCredentials, key: Buffer, vimId: string): string | null {
  if (c.kind === 'none') return null;
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

/** What callers see: names in clear, every secret as "***". */
export function masked(c: PlainCredentials): Credentials | undefined {
  if (c.kind === 'password') {
    return {
      password: {
        username: c.username ?? '',
        password: MASK,
        userDomainName: c.userDomainName ?? '',
        projectDomainName: c.projectDomainName ?? '',
      },
      token: undefined,
    };
  }
  if (c.kind === 'token') return { password: undefined, token: { bearerToken: MASK } };
  return undefined;
}

export function sameCredentials(a: PlainCredentials, b: PlainCredentials): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
