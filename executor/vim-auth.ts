// Authenticating with a VIM as its credentials say, to learn whether they
// still work (PROBE_KIND_AUTH): an endpoint that answers while the password
// has expired or the token was revoked is of no use to the orchestrator.
//
//   OpenStack   POST {auth_url}/auth/tokens?nocatalog, Keystone v3 password
//               or token method, scoped to the VIM's project when it has one
//   Kubernetes  GET {auth_url}/version with the bearer token, the user and
//               password (basic), or an OpenID Connect id_token fetched from
//               oidc_token_url with the password grant (as Tacker does)
//
// 401 and 403, and an OpenID provider refusing to issue a token, are a
// refusal; a 2xx an acceptance; any other answer says nothing about the
// credentials. Secrets go only into the requests: an AuthCheck keeps them in
// a private field, out of JSON and of the logs, and no message of a peer is
// echoed without being cut short and cleaned.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type tls from 'node:tls';
import { DeniedAddressError, type AddressDenyList } from '../common/address-deny.js';
import type { AuthUrl } from '../common/auth-url.js';
import type { PlainCredentials } from '../common/vim-credentials.js';
import type { AttemptResult } from './probe.js';
import type { Trust } from './trust.js';

export interface VimAuthSpec {
  type: 'openstack' | 'kubernetes';
  /** OpenStack: the project the token is scoped to; '' for an unscoped token. */
  project: string;
  credentials: PlainCredentials;
  /** credentials.oidcTokenUrl, parsed. */
  oidcTokenUrl?: AuthUrl;
}

/**
 * One action's authentication: what it presents, when the next one is due
 * (at most one per `everyMs`, the first at once) and the last refusal.
 */
export class AuthCheck {
  readonly #spec: VimAuthSpec;
  private nextAtMs = 0;
  /** The last authentication's refusal, repeated by every round until one succeeds. */
  refusal: Readonly<AttemptResult> | undefined = undefined;

  constructor(
    spec: VimAuthSpec,
    readonly everyMs: number,
  ) {
    this.#spec = spec;
  }

  get spec(): VimAuthSpec {
    return this.#spec;
  }

  /** Whether an authentication is due now; if so, the next one is due everyMs from now. */
  take(nowMs = performance.now()): boolean {
    if (nowMs < this.nextAtMs) return false;
    this.nextAtMs = nowMs + this.everyMs;
    return true;
  }

  /** The same credentials, project and type (an action started twice must be given the same). */
  sameAs(other: AuthCheck | undefined): boolean {
    return other !== undefined && JSON.stringify(this.#spec) === JSON.stringify(other.#spec) && this.everyMs === other.everyMs;
  }

  /** What a log line or a JSON dump of an action shows: never a secret. */
  toJSON(): Record<string, string> {
    return { type: this.#spec.type, kind: this.#spec.credentials.kind };
  }
}

export type AuthOutcome =
  /** The VIM accepted the credentials. */
  | { kind: 'accepted' }
  /** The VIM (or its OpenID provider) refused them. */
  | { kind: 'rejected'; error: string }
  /** The VIM answered, but not about the credentials (a 404, a 500). */
  | { kind: 'inconclusive'; error: string }
  /** No answer: the error of the connection (refused, timed out, a certificate that does not verify, a denied address). */
  | { kind: 'failed'; error: unknown };

export interface AuthConnection {
  /** dns.lookup without the denied addresses; undefined when nothing is denied. */
  lookup: net.LookupFunction | undefined;
  deny: AddressDenyList;
  /** The VIM's CAs; unset: the system's, since secrets are sent (never to a certificate nobody verified). */
  trust: Trust | undefined;
}

/** One authentication within timeoutMs (both requests of OpenID Connect included). */
export async function authenticate(
  check: AuthCheck,
  target: AuthUrl,
  connection: AuthConnection,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<AuthOutcome> {
  const limit = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  try {
    const { spec } = check;
    return spec.type === 'openstack' ? await keystone(spec, target, connection, limit) : await kubernetes(spec, target, connection, limit);
  } catch (err) {
    if (limit.aborted && !signal.aborted) return { kind: 'failed', error: new Error(`no answer within ${timeoutMs}ms`) };
    return { kind: 'failed', error: err };
  }
}

async function keystone(spec: VimAuthSpec, target: AuthUrl, connection: AuthConnection, signal: AbortSignal): Promise<AuthOutcome> {
  const c = spec.credentials;
  const identity =
    c.kind === 'password'
      ? {
          methods: ['password'],
          password: { user: { name: c.username, domain: { name: c.userDomainName || 'Default' }, password: c.password } },
        }
      : { methods: ['token'], token: { id: c.bearerToken } };
  const auth: Record<string, unknown> = { identity };
  if (spec.project) auth.scope = { project: { name: spec.project, domain: { name: c.projectDomainName || 'Default' } } };
  const url = new URL(`${keystoneV3(target.href)}/auth/tokens?nocatalog`);
  const answer = await send(url, connection, signal, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ auth }),
  });
  if (answer.status >= 200 && answer.status < 300) return { kind: 'accepted' };
  const said = keystoneMessage(answer.body);
  // A token Keystone cannot validate (expired, revoked) is a 404 "Failed to validate token" to the token method.
  const refused = answer.status === 401 || answer.status === 403 || (c.kind === 'token' && answer.status === 404);
  if (refused) return { kind: 'rejected', error: `Keystone refused the credentials: ${answer.status}${said ? ` ${said}` : ''}` };
  return { kind: 'inconclusive', error: `Keystone answered ${answer.status}${said ? ` ${said}` : ''}` };
}

/** Keystone's v3 root: auth_url as given when it ends in /v3, else with /v3 added (http://keystone:5000 → …:5000/v3). */
export function keystoneV3(href: string): string {
  const base = href.replace(/[?#].*$/, '').replace(/\/+$/, '');
  return /\/v3$/.test(base) ? base : `${base}/v3`;
}

async function kubernetes(spec: VimAuthSpec, target: AuthUrl, connection: AuthConnection, signal: AbortSignal): Promise<AuthOutcome> {
  const c = spec.credentials;
  let authorization: string;
  if (c.kind === 'oidc') {
    const token = await oidcToken(spec, connection, signal);
    if (typeof token !== 'string') return token;
    authorization = `Bearer ${token}`;
  } else if (c.kind === 'password') {
    authorization = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  } else {
    authorization = `Bearer ${c.bearerToken}`;
  }
  const url = new URL('version', target.href.endsWith('/') ? target.href : `${target.href}/`);
  const answer = await send(url, connection, signal, { method: 'GET', headers: { authorization, accept: 'application/json' } });
  if (answer.status >= 200 && answer.status < 300) return { kind: 'accepted' };
  if (answer.status === 401 || answer.status === 403)
    return { kind: 'rejected', error: `the Kubernetes API server refused the credentials: ${answer.status}` };
  return { kind: 'inconclusive', error: `the Kubernetes API server answered ${answer.status} to GET /version` };
}

/** The id_token of an OpenID Connect password grant (what the API server's OIDC authenticator takes), or why not. */
async function oidcToken(spec: VimAuthSpec, connection: AuthConnection, signal: AbortSignal): Promise<string | AuthOutcome> {
  const c = spec.credentials;
  const form = new URLSearchParams({ grant_type: 'password', scope: 'openid', client_id: c.clientId ?? '' });
  if (c.clientSecret) form.set('client_secret', c.clientSecret);
  form.set('username', c.username ?? '');
  form.set('password', c.password ?? '');
  const answer = await send(new URL(spec.oidcTokenUrl!.href), connection, signal, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form.toString(),
  });
  let doc: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(answer.body);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) doc = parsed as Record<string, unknown>;
  } catch {
    doc = undefined;
  }
  if (answer.status >= 200 && answer.status < 300) {
    if (typeof doc?.id_token === 'string' && doc.id_token) return doc.id_token;
    return { kind: 'rejected', error: 'the OpenID provider issued no id_token (is "openid" a scope of the client?)' };
  }
  // RFC 6749 5.2: invalid_grant (user, password), invalid_client (client id, secret), unauthorized_client.
  const said = [doc?.error, doc?.error_description].filter((v) => typeof v === 'string').join(': ');
  const text = `the OpenID provider refused the credentials: ${answer.status}${said ? ` ${clip(said)}` : ''}`;
  if (answer.status === 400 || answer.status === 401 || answer.status === 403) return { kind: 'rejected', error: text };
  return { kind: 'inconclusive', error: `the OpenID provider answered ${answer.status}` };
}

interface Answer {
  status: number;
  /** At most maxBodyBytes of it. */
  body: string;
}

const maxBodyBytes = 64 * 1024;

function send(
  url: URL,
  connection: AuthConnection,
  signal: AbortSignal,
  request: { method: string; headers: Record<string, string>; body?: string },
): Promise<Answer> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const range = net.isIP(host) ? connection.deny.match(host) : undefined;
  if (range !== undefined) return Promise.reject(new DeniedAddressError(host, range));
  const headers: Record<string, string> = { 'user-agent': 'vimmon-executor', connection: 'close', ...request.headers };
  if (request.body !== undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
  const options: https.RequestOptions = { method: request.method, agent: false, lookup: connection.lookup, signal, headers };
  // Only the VIM's CAs when it has some; the system's otherwise (never none: this request carries secrets).
  if (url.protocol === 'https:' && connection.trust) (options as tls.ConnectionOptions).secureContext = connection.trust.context;
  return new Promise<Answer>((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      res.on('data', (chunk: Buffer) => {
        if (size >= maxBodyBytes) return;
        chunks.push(chunk.subarray(0, maxBodyBytes - size));
        size += chunk.length;
        // Enough to judge by: a peer that sends more is not read further.
        if (size >= maxBodyBytes) {
          res.destroy();
          done();
        }
      });
      res.on('end', done);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(request.body);
  });
}

function keystoneMessage(body: string): string {
  try {
    const doc = JSON.parse(body) as { error?: { message?: unknown } };
    return typeof doc?.error?.message === 'string' ? clip(doc.error.message) : '';
  } catch {
    return '';
  }
}

/** A peer's text, as a log or an answer may carry it: no control characters, at most 200 characters. */
function clip(text: string): string {
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > 200 ? `${clean.slice(0, 199)}…` : clean;
}
