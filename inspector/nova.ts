// The compute API calls the inspector makes, each with the lowest microversion
// that has what it needs, sent in both the old and the new header so that any
// Nova since Liberty reads it. This client never retries on its own (except a
// fresh token after a 401): callers decide, from NovaError.retryable.
import { KeystoneError, abortable, causeOf, errorMessage, isRetryableStatus, type KeystoneSession } from './keystone.js';

export interface NovaServer {
  id: string;
  name: string;
  projectId: string;
  host: string | undefined;
  status: string;
  /** OS-EXT-STS:vm_state (active, error, stopped…), when Nova shows it. */
  vmState?: string;
  /** Nova's `updated` time in ms since the epoch, to order it against notifications. */
  updatedAt?: number;
}

export interface NovaClient {
  /** GET /servers/detail?all_tenants=1, following servers_links "next" through every page; host from OS-EXT-SRV-ATTR:host. */
  listAllServers(signal?: AbortSignal): Promise<NovaServer[]>;
  /** GET /servers/{id}; undefined when Nova no longer knows it (404). */
  getServer(serverId: string, signal?: AbortSignal): Promise<NovaServer | undefined>;
  /**
   * 2.53+: GET /os-services?binary=nova-compute&host=H, then PUT /os-services/{id} with
   * {"forced_down"} and, going down, {"status":"disabled","disabled_reason"} (coming up,
   * "enabled" only if the inspector disabled it). Nothing is sent when the service is
   * already as wanted. Below 2.53, 2.11's PUT /os-services/force-down {"host","binary","forced_down"}.
   */
  setHostForcedDown(host: string, down: boolean, signal?: AbortSignal): Promise<void>;
  /** POST /servers/{id}/action {"os-resetState": {"state": state}} */
  resetState(serverId: string, state: 'error' | 'active', signal?: AbortSignal): Promise<void>;
  /** The server's maximum microversion, from its version document (cached once known). */
  maxMicroversion(signal?: AbortSignal): Promise<string>;
}

/** status is the HTTP status, 0 when no answer came (network, timeout). 5xx, 429, 408 and no answer are retryable. */
export class NovaError extends Error {
  override name = 'NovaError';
  constructor(message: string, readonly status: number, readonly retryable: boolean) {
    super(message);
  }
}

export interface NovaClientOptions {
  fetch?: typeof fetch;
  /** Per HTTP request (default 30 s). */
  timeoutMs?: number;
}

/** Marks a service disabled by the inspector, so that recovery re-enables only those. */
export const FORCED_DOWN_REASON = 'vimmon inspector: host reported down';

interface RequestOptions {
  microversion: string;
  body?: unknown;
  signal?: AbortSignal;
}

interface ServiceDoc {
  id?: string | number;
  binary?: string;
  host?: string;
  status?: string;
  forced_down?: boolean;
  disabled_reason?: string | null;
}

export function createNovaClient(session: KeystoneSession, options: NovaClientOptions = {}): NovaClient {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 30_000;
  let maxVersion: Promise<string> | undefined;

  const endpoint = async (signal?: AbortSignal) => {
    try {
      return await session.endpoint('compute', signal);
    } catch (err) {
      throw fromKeystone(err);
    }
  };

  const send = async (method: string, url: string, opts: RequestOptions, token: string | undefined): Promise<Response> => {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'X-OpenStack-Nova-API-Version': opts.microversion,
      'OpenStack-API-Version': `compute ${opts.microversion}`,
    };
    if (token) headers['X-Auth-Token'] = token;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    try {
      return await doFetch(url, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal });
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (timeout.aborted) throw new NovaError(`nova: ${method} ${url}: no answer within ${timeoutMs} ms`, 0, true);
      throw new NovaError(`nova: ${method} ${url}: ${causeOf(err)}`, 0, true);
    }
  };

  /** One authenticated call; a 401 gets one more try with a fresh token (Keystone may have revoked it). */
  const request = async <T>(method: string, path: string, opts: RequestOptions): Promise<T | undefined> => {
    const url = `${await endpoint(opts.signal)}${path}`;
    for (let attempt = 0; ; attempt++) {
      let token: string;
      try {
        token = await session.token(opts.signal);
      } catch (err) {
        throw fromKeystone(err);
      }
      const res = await send(method, url, opts, token);
      const text = await readText(res, opts.signal);
      if (res.status === 401 && attempt === 0) {
        session.invalidate(token);
        continue;
      }
      if (!res.ok) {
        throw new NovaError(
          `nova: ${method} ${path} answered ${res.status}: ${errorMessage(text) ?? res.statusText}`,
          res.status,
          isRetryableStatus(res.status),
        );
      }
      if (!text) return undefined;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new NovaError(`nova: ${method} ${path} answered ${res.status} with a body that is not JSON`, res.status, false);
      }
    }
  };

  const discoverMaxVersion = async (signal?: AbortSignal): Promise<string> => {
    const base = await endpoint(signal);
    // The versioned endpoint answers its version document; a catalog URL with a project
    // id after /v2.1 may not, so the bare /v2.1 is tried next.
    const candidates = [base];
    const m = /^(.*\/v2(?:\.1)?)\/.+$/.exec(base);
    if (m) candidates.push(m[1]!);
    let lastError: unknown;
    for (const url of candidates) {
      const res = await send('GET', url, { microversion: '2.1', signal }, await session.token(signal).catch(() => undefined));
      const text = await readText(res, signal);
      if (!res.ok) {
        lastError = new NovaError(`nova: GET ${url} (version document) answered ${res.status}`, res.status, isRetryableStatus(res.status));
        if (res.status === 404) continue;
        throw lastError;
      }
      const version = parseVersionDocument(text);
      if (version) return version;
      lastError = new NovaError(`nova: GET ${url} did not answer a version document`, res.status, false);
    }
    throw lastError;
  };

  const maxMicroversion = (signal?: AbortSignal): Promise<string> => {
    if (!maxVersion) {
      const p = discoverMaxVersion();
      maxVersion = p;
      // Only a known answer is kept; a failure is asked again next time.
      p.catch(() => {
        if (maxVersion === p) maxVersion = undefined;
      });
    }
    return abortable(maxVersion, signal);
  };

  return {
    async listAllServers(signal) {
      const byId = new Map<string, NovaServer>();
      let query = new URLSearchParams({ all_tenants: '1' });
      const seenMarkers = new Set<string>();
      for (;;) {
        const doc = await request<{ servers?: unknown[]; servers_links?: Array<{ rel?: string; href?: string }> }>(
          'GET',
          `/servers/detail?${query}`,
          { microversion: '2.1', signal },
        );
        const servers = doc?.servers ?? [];
        for (const s of servers) {
          const server = toServer(s);
          if (server) byId.set(server.id, server);
        }
        const next = doc?.servers_links?.find((l) => l.rel === 'next')?.href;
        if (!next || servers.length === 0) break;
        // Only the query is taken from the link: its host is Nova's idea of itself,
        // which behind a proxy need not be the catalog's.
        query = new URL(next, 'http://nova.invalid/').searchParams;
        if (!query.has('all_tenants')) query.set('all_tenants', '1');
        const marker = query.get('marker') ?? '';
        if (seenMarkers.has(marker)) throw new NovaError(`nova: servers_links repeats marker ${marker}`, 0, false);
        seenMarkers.add(marker);
      }
      return [...byId.values()];
    },

    async getServer(serverId, signal) {
      try {
        const doc = await request<{ server?: unknown }>('GET', `/servers/${encodeURIComponent(serverId)}`, { microversion: '2.1', signal });
        return toServer(doc?.server);
      } catch (err) {
        if (err instanceof NovaError && err.status === 404) return undefined;
        throw err;
      }
    },

    async setHostForcedDown(host, down, signal) {
      const max = await maxMicroversion(signal);
      if (compareMicroversions(max, '2.53') >= 0) {
        const query = new URLSearchParams({ binary: 'nova-compute', host });
        const doc = await request<{ services?: ServiceDoc[] }>('GET', `/os-services?${query}`, { microversion: '2.53', signal });
        const services = (doc?.services ?? []).filter((s) => s.binary === 'nova-compute' && s.host === host);
        if (services.length === 0) throw new NovaError(`nova: no nova-compute service on host ${host}`, 404, false);
        for (const service of services) {
          const body: Record<string, unknown> = { forced_down: down };
          if (down && service.status !== 'disabled') {
            body.status = 'disabled';
            body.disabled_reason = FORCED_DOWN_REASON;
          }
          // A service an operator disabled for a reason of their own stays disabled.
          if (!down && service.status === 'disabled' && service.disabled_reason === FORCED_DOWN_REASON) body.status = 'enabled';
          if (service.forced_down === down && body.status === undefined) continue;
          await request('PUT', `/os-services/${encodeURIComponent(String(service.id))}`, { microversion: '2.53', body, signal });
        }
        return;
      }
      if (compareMicroversions(max, '2.11') >= 0) {
        await request('PUT', '/os-services/force-down', {
          microversion: '2.11',
          body: { host, binary: 'nova-compute', forced_down: down },
          signal,
        });
        return;
      }
      throw new NovaError(`nova: compute API ${max} cannot force a service down (needs microversion 2.11)`, 0, false);
    },

    async resetState(serverId, state, signal) {
      await request('POST', `/servers/${encodeURIComponent(serverId)}/action`, {
        microversion: '2.1',
        body: { 'os-resetState': { state } },
        signal,
      });
    },

    maxMicroversion,
  };
}

async function readText(res: Response, signal?: AbortSignal): Promise<string> {
  try {
    return await res.text();
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new NovaError(`nova: reading the answer: ${causeOf(err)}`, 0, true);
  }
}

function fromKeystone(err: unknown): unknown {
  if (err instanceof KeystoneError) return new NovaError(err.message, err.status, err.retryable);
  return err;
}

function toServer(value: unknown): NovaServer | undefined {
  const s = value as Record<string, unknown> | undefined;
  if (!s || typeof s.id !== 'string') return undefined;
  const host = s['OS-EXT-SRV-ATTR:host'];
  const vmState = s['OS-EXT-STS:vm_state'];
  const updated = typeof s.updated === 'string' ? Date.parse(s.updated) : NaN;
  const server: NovaServer = {
    id: s.id,
    name: typeof s.name === 'string' ? s.name : '',
    projectId: typeof s.tenant_id === 'string' ? s.tenant_id : '',
    host: typeof host === 'string' && host ? host : undefined,
    status: typeof s.status === 'string' ? s.status : '',
  };
  if (typeof vmState === 'string') server.vmState = vmState;
  if (!Number.isNaN(updated)) server.updatedAt = updated;
  return server;
}

/** {"version": {...}} from /v2.1, or {"versions": [...]} from the root; '' means no microversions (2.1). */
export function parseVersionDocument(text: string): string | undefined {
  let doc: { version?: { id?: string; version?: string }; versions?: Array<{ id?: string; version?: string; status?: string }> };
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const v = doc.version ?? doc.versions?.find((x) => x.id === 'v2.1') ?? doc.versions?.find((x) => x.status === 'CURRENT');
  if (!v) return undefined;
  return v.version ? v.version : '2.1';
}

export function compareMicroversions(a: string, b: string): number {
  const [aMaj = 0, aMin = 0] = a.split('.').map(Number);
  const [bMaj = 0, bMin = 0] = b.split('.').map(Number);
  return aMaj - bMaj || aMin - bMin;
}
