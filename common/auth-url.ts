import { InvalidArgumentError } from './errors.js';

export interface AuthUrl {
  /** Normalised href. */
  href: string;
  scheme: 'http' | 'https';
  /** Host without IPv6 brackets: "fd00::1", "keystone.example", "192.0.2.10". */
  host: string;
  /** Explicit port, or 80/443 by scheme. */
  port: number;
}

/** Validates a VIM's auth_url: an absolute http(s) URL with a host; IPv6 literals in brackets. */
export function parseAuthUrl(text: string, field = 'auth_url'): AuthUrl {
  if (!text) throw new InvalidArgumentError(field, 'required');
  if (text.length > 2048) throw new InvalidArgumentError(field, 'longer than 2048 characters');
  if (/\s/.test(text)) throw new InvalidArgumentError(field, 'must not contain white space');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError(field, `${JSON.stringify(text)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(field, `scheme must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  if (!url.hostname) throw new InvalidArgumentError(field, 'has no host');
  // Credentials belong in `credentials`, where they are encrypted and masked.
  if (url.username || url.password) throw new InvalidArgumentError(field, 'must not carry a user name or password');
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
  return { href: url.href, scheme, host, port };
}
