// A VIM's auth_url, which the executor connects to: validated so that what a
// caller wrote is what gets probed. WHATWG URL parsing is lenient (it skips
// extra slashes, reads 0x7f.1 or 2130706433 as 127.0.0.1), so the text as
// written is checked too. Errors never echo credentials nor more than 200
// characters of what was sent.
import net from 'node:net';
import type { AddressDenyList } from './address-deny.js';
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

export interface AuthUrlOptions {
  /** Refuse a host that is a literal address in one of these ranges (VIMMON_PROBE_DENY). */
  deny?: AddressDenyList;
}

const echoLimit = 200;

/** Validates a VIM's auth_url: an absolute http(s) URL with a host; IPv6 literals in brackets. */
export function parseAuthUrl(text: string, field = 'auth_url', options: AuthUrlOptions = {}): AuthUrl {
  if (!text) throw new InvalidArgumentError(field, 'required');
  if (text.length > 2048) throw new InvalidArgumentError(field, 'longer than 2048 characters');
  if (/\s/.test(text)) throw new InvalidArgumentError(field, 'must not contain white space');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError(field, `${echo(text)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    const given = url.protocol.replace(/:$/, '');
    throw new InvalidArgumentError(field, `scheme must be http or https, not ${given.length <= 20 ? given : echo(given)}`);
  }
  // As written, not as parsed: `https:///x` and `http:/x` parse with host "x".
  const authority = /^https?:\/\/([^/?#\\]*)/i.exec(text)?.[1];
  if (!authority || !url.hostname) throw new InvalidArgumentError(field, 'has no host (expected scheme://host[:port]/…)');
  // Credentials belong in `credentials`, where they are encrypted and masked.
  if (url.username || url.password || authority.includes('@'))
    throw new InvalidArgumentError(field, 'must not carry a user name or password');
  if (url.port === '0') throw new InvalidArgumentError(field, 'port 0 cannot be probed');
  const scheme = url.protocol === 'https:' ? 'https' : 'http';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (net.isIPv4(host)) {
    // 0x7f.1, 2130706433, 127.1 and 0177.0.0.1 all parse as 127.0.0.1: an
    // address is accepted only in its dotted-decimal form, so that every
    // reader of the stored URL sees the address that is probed.
    const written = authority.replace(/:\d*$/, '');
    if (written !== host) throw new InvalidArgumentError(field, `host ${echo(written)} is a numeric form of ${host}: write ${host}`);
  }
  const range = net.isIP(host) ? options.deny?.match(host) : undefined;
  if (range !== undefined) throw new InvalidArgumentError(field, `${host} is in a denied range (${range}, VIMMON_PROBE_DENY)`);
  const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
  return { href: url.href, scheme, host, port };
}

/**
 * Quoted, at most 200 characters, with anything that may be a user:password@
 * masked: up to the last "@", since a malformed URL's authority has no clear end.
 */
function echo(text: string): string {
  const masked = text.replace(/^([a-z][a-z0-9+.-]*:[/\\]*)(.*)@/i, (_, start: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${start}${colon >= 0 ? `${userinfo.slice(0, colon)}:***` : '***'}@`;
  });
  return JSON.stringify(masked.length > echoLimit ? `${masked.slice(0, echoLimit - 1)}…` : masked);
}
