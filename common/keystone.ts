// Keystone v3 password authentication, as keystoneauth does it: one scoped
// token (POST /v3/auth/tokens, token in X-Subject-Token), its service catalog
// for endpoints, and a renewal before the token expires. Concurrent callers
// share one request, so a burst of Nova calls at expiry authenticates once.
import type { OpenStackConfig } from './openstack-config.js';

export interface KeystoneSession {
  token(signal?: AbortSignal): Promise<string>;
  /** The catalog URL for a service type, for the configured interface and region (no trailing slash). */
  endpoint(type: 'compute' | 'network', signal?: AbortSignal): Promise<string>;
  /** Forgets a token a service refused (401), so that the next call authenticates anew. */
  invalidate(token: string): void;
}

export interface KeystoneSessionOptions {
  fetch?: typeof fetch;
  /** Per authentication request (default 30 s). */
  timeoutMs?: number;
}

/** status is the HTTP status, 0 when no answer came; retryable says whether trying later may help. */
export class KeystoneError extends Error {
  override name = 'KeystoneError';
  constructor(
    message: string,
    readonly status: number,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

interface CatalogEndpoint {
  interface?: string;
  region_id?: string;
  region?: string;
  url?: string;
}

interface CatalogEntry {
  type?: string;
  endpoints?: CatalogEndpoint[];
}

interface Auth {
  token: string;
  catalog: CatalogEntry[];
  /** performance.now() times: renew from renewAt, unusable from expiresAt. */
  renewAt: number;
  expiresAt: number;
}

/** Renew 5 minutes before expiry, or at 80% of the life of a short-lived token. */
const renewMarginMs = (lifeMs: number) => Math.min(5 * 60_000, lifeMs * 0.2);

export function keystoneV3Url(authUrl: string): string {
  const base = authUrl.replace(/\/+$/, '');
  if (/\/v3$/.test(base)) return base;
  if (/\/v2\.0$/.test(base)) return base.replace(/\/v2\.0$/, '/v3');
  return `${base}/v3`;
}

export function createKeystoneSession(config: OpenStackConfig, options: KeystoneSessionOptions = {}): KeystoneSession {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const tokensUrl = `${keystoneV3Url(config.authUrl)}/auth/tokens`;
  let current: Auth | undefined;
  let inflight: Promise<Auth> | undefined;
  // After a failed renewal, a still-valid token is used a while before trying again,
  // so that Keystone being down does not turn every Nova call into a Keystone call.
  let renewRetryAt = 0;

  const authenticate = async (): Promise<Auth> => {
    const user: Record<string, unknown> = {
      name: config.username,
      password: config.password,
      domain: config.userDomainId ? { id: config.userDomainId } : { name: config.userDomainName },
    };
    const project: Record<string, unknown> = config.projectId
      ? { id: config.projectId }
      : { name: config.projectName, domain: config.projectDomainId ? { id: config.projectDomainId } : { name: config.projectDomainName } };
    const body = { auth: { identity: { methods: ['password'], password: { user } }, scope: { project } } };
    const sentAt = performance.now();
    let res: Response;
    try {
      res = await doFetch(tokensUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const timedOut = (err as Error).name === 'TimeoutError';
      throw new KeystoneError(
        timedOut ? `keystone: no answer from ${tokensUrl} within ${timeoutMs} ms` : `keystone: ${tokensUrl}: ${causeOf(err)}`,
        0,
        true,
      );
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      const reason = errorMessage(text) ?? res.statusText;
      const hint = res.status === 401 ? ' (check the user, password, domains and project)' : '';
      throw new KeystoneError(
        `keystone: POST ${tokensUrl} answered ${res.status}: ${reason}${hint}`,
        res.status,
        isRetryableStatus(res.status),
      );
    }
    const token = res.headers.get('x-subject-token');
    if (!token) throw new KeystoneError(`keystone: ${tokensUrl} answered ${res.status} without X-Subject-Token`, res.status, false);
    let doc: { token?: { expires_at?: string; issued_at?: string; catalog?: CatalogEntry[] } };
    try {
      doc = JSON.parse(text);
    } catch {
      throw new KeystoneError(`keystone: ${tokensUrl} answered a body that is not JSON`, res.status, false);
    }
    const expires = Date.parse(doc.token?.expires_at ?? '');
    if (Number.isNaN(expires)) throw new KeystoneError('keystone: token without a valid expires_at', res.status, false);
    // Keystone's own issued_at measures the life, so a skewed local clock does not matter.
    const issued = Date.parse(doc.token?.issued_at ?? '');
    const lifeMs = Math.max(0, expires - (Number.isNaN(issued) ? Date.now() : issued));
    const expiresAt = sentAt + lifeMs;
    return { token, catalog: doc.token?.catalog ?? [], expiresAt, renewAt: expiresAt - renewMarginMs(lifeMs) };
  };

  const auth = async (signal?: AbortSignal): Promise<Auth> => {
    signal?.throwIfAborted();
    const now = performance.now();
    if (current && (now < current.renewAt || (now < renewRetryAt && now < current.expiresAt - 1_000))) return current;
    if (!inflight) {
      inflight = authenticate().then(
        (a) => {
          current = a;
          inflight = undefined;
          return a;
        },
        (err) => {
          inflight = undefined;
          renewRetryAt = performance.now() + 5_000;
          throw err;
        },
      );
    }
    try {
      return await abortable(inflight, signal);
    } catch (err) {
      // A failed renewal is no reason to stop using a token that still works.
      if (!signal?.aborted && current && performance.now() < current.expiresAt - 1_000) return current;
      throw err;
    }
  };

  return {
    async token(signal) {
      return (await auth(signal)).token;
    },
    async endpoint(type, signal) {
      const { catalog } = await auth(signal);
      const wantedInterface = config.interface || 'public';
      const candidates = catalog.filter((e) => e.type === type).flatMap((e) => e.endpoints ?? []);
      const match = candidates.find(
        (e) =>
          e.interface === wantedInterface && (!config.regionName || e.region_id === config.regionName || e.region === config.regionName),
      );
      if (!match?.url) {
        const offered = candidates.map((e) => `${e.interface}@${e.region_id ?? e.region ?? '?'}`).join(', ') || 'none';
        throw new KeystoneError(
          `keystone: no ${type} endpoint for interface ${wantedInterface}${config.regionName ? ` in region ${config.regionName}` : ''} (catalog offers: ${offered})`,
          0,
          false,
        );
      }
      return match.url.replace(/\/+$/, '');
    },
    invalidate(token) {
      if (current?.token === token) current = undefined;
    },
  };
}

export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** Waits for a shared promise; one caller giving up does not cancel it for the others. */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** OpenStack error bodies: Keystone {"error": {"message"}}, Nova {"itemNotFound": {"message"}}. */
export function errorMessage(text: string): string | undefined {
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    for (const v of Object.values(doc)) {
      const m = (v as { message?: unknown } | null)?.message;
      if (typeof m === 'string') return m;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  const t = text.trim();
  return t ? t.slice(0, 300) : undefined;
}

export function causeOf(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}
