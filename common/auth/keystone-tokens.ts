// People's Keystone tokens, validated as keystonemiddleware does for Tacker:
// GET /v3/auth/tokens with this service's own token in X-Auth-Token and the
// caller's in X-Subject-Token; the roles and project come from the answer.
// Answers are cached (bounded LRU, keyed by the token's SHA-256, never the
// token) until the token expires, but re-checked every `revalidateMs`, so a
// revoked token stops working within that period. Concurrent checks of one
// token share one request. When Keystone cannot be reached and a token is due
// for a check, the call fails UNAVAILABLE: a token is never trusted unchecked.
import { LRUCache } from 'lru-cache';
import { UnavailableError } from '../errors.js';
import { createKeystoneSession, keystoneV3Url } from '../keystone.js';
import { loadOpenStackConfig } from '../openstack-config.js';
import { hashToken } from './static-tokens.js';
import { withImpliedRoles, type Principal } from './principal.js';

export interface KeystoneTokenValidatorOptions {
  /** Keystone's URL (with or without /v3). */
  authUrl: string;
  /** This service's own token (a KeystoneSession's token()). */
  serviceToken(signal?: AbortSignal): Promise<string>;
  /** Forgets a service token Keystone refused. */
  invalidateServiceToken?(token: string): void;
  fetch?: typeof fetch;
  /** Tokens remembered at once. Default 10,000. */
  cacheSize?: number;
  /** A cached answer is re-checked after this long. Default 30 s. */
  revalidateMs?: number;
  /** A token Keystone refused is refused without asking again for this long. Default 5 s. */
  negativeTtlMs?: number;
  /** Per validation request. Default 5 s. */
  timeoutMs?: number;
  /** performance.now() by default; tests move it. */
  now?: () => number;
}

export interface KeystoneTokenValidator {
  /** The token's principal, or undefined when Keystone says it is not valid. Throws UnavailableError when Keystone cannot answer. */
  validate(token: string): Promise<Principal | undefined>;
  readonly stats: { validations: number; cacheHits: number };
}

interface Entry {
  principal: Principal | undefined;
  /** now() after which the entry must be checked again. */
  checkAfter: number;
  /** now() after which the token is expired whatever Keystone said. */
  expiresAt: number;
}

interface TokenDocument {
  token?: {
    expires_at?: string;
    user?: { id?: string; name?: string };
    project?: { id?: string; name?: string };
    roles?: Array<{ name?: string }>;
  };
}

export function createKeystoneTokenValidator(options: KeystoneTokenValidatorOptions): KeystoneTokenValidator {
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? (() => performance.now());
  const revalidateMs = options.revalidateMs ?? 30_000;
  const negativeTtlMs = options.negativeTtlMs ?? 5_000;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const url = `${keystoneV3Url(options.authUrl)}/auth/tokens?nocatalog`;
  const cache = new LRUCache<string, Entry>({ max: options.cacheSize ?? 10_000 });
  const inflight = new Map<string, Promise<Entry>>();
  const stats = { validations: 0, cacheHits: 0 };

  async function ask(token: string, retried = false): Promise<Entry> {
    const serviceToken = await options.serviceToken(AbortSignal.timeout(timeoutMs)).catch((err: unknown) => {
      throw new UnavailableError(`cannot validate the token: no service token from Keystone (${(err as Error).message})`);
    });
    stats.validations++;
    const sentAt = now();
    let res: Response;
    try {
      res = await doFetch(url, {
        headers: { 'X-Auth-Token': serviceToken, 'X-Subject-Token': token, Accept: 'application/json' },
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new UnavailableError(`cannot validate the token: Keystone did not answer (${(err as Error).message})`);
    }
    const text = await res.text().catch(() => '');
    if (res.status === 401 && !retried) {
      // Our own token went stale: get a new one once.
      options.invalidateServiceToken?.(serviceToken);
      return ask(token, true);
    }
    if (res.status === 404 || res.status === 401)
      return { principal: undefined, checkAfter: sentAt + negativeTtlMs, expiresAt: sentAt + negativeTtlMs };
    if (!res.ok) throw new UnavailableError(`cannot validate the token: Keystone answered ${res.status}`);
    let doc: TokenDocument;
    try {
      doc = JSON.parse(text) as TokenDocument;
    } catch {
      throw new UnavailableError('cannot validate the token: Keystone answered a body that is not JSON');
    }
    const expires = Date.parse(doc.token?.expires_at ?? '');
    const lifeMs = Number.isNaN(expires) ? 0 : expires - Date.now();
    if (lifeMs <= 0) return { principal: undefined, checkAfter: sentAt + negativeTtlMs, expiresAt: sentAt + negativeTtlMs };
    const user = doc.token?.user?.name || doc.token?.user?.id || 'unknown';
    const projectId = doc.token?.project?.id;
    const roles = (doc.token?.roles ?? []).map((r) => r.name).filter((r): r is string => typeof r === 'string' && r.length > 0);
    const principal: Principal = {
      kind: 'keystone',
      name: `keystone:${user}`,
      roles: withImpliedRoles(roles),
      projects: projectId ? [projectId] : [],
    };
    return { principal, checkAfter: sentAt + Math.min(revalidateMs, lifeMs), expiresAt: sentAt + lifeMs };
  }

  return {
    stats,
    async validate(token) {
      const key = hashToken(token);
      const cached = cache.get(key);
      const t = now();
      if (cached && t < cached.checkAfter && t < cached.expiresAt) {
        stats.cacheHits++;
        return cached.principal;
      }
      let pending = inflight.get(key);
      if (!pending) {
        pending = ask(token).finally(() => inflight.delete(key));
        inflight.set(key, pending);
      }
      const entry = await pending;
      cache.set(key, entry);
      return entry.principal;
    },
  };
}

/**
 * A validator that asks the Keystone of `env`'s OS_* settings (an openrc or
 * clouds.yaml entry: vimmon's own service user), with that user's session as
 * the service token. Throws naming what is missing when the settings are not
 * complete.
 */
export function keystoneTokenValidatorFromEnv(
  env: NodeJS.ProcessEnv,
  options: Omit<KeystoneTokenValidatorOptions, 'authUrl' | 'serviceToken' | 'invalidateServiceToken'> = {},
): KeystoneTokenValidator {
  const openstack = loadOpenStackConfig(env);
  if (!('config' in openstack)) throw new Error(`the service user's credentials are missing: ${openstack.missing.join(', ')}`);
  const session = createKeystoneSession(openstack.config, { fetch: options.fetch });
  return createKeystoneTokenValidator({
    ...options,
    authUrl: openstack.config.authUrl,
    serviceToken: (signal) => session.token(signal),
    invalidateServiceToken: (t) => session.invalidate(t),
  });
}
