// The compute API calls the inspector makes, each with the lowest microversion
// that has what it needs, sent in both the old and the new header so that any
// Nova since Liberty reads it. This client never retries on its own (except a
// fresh token after a 401): callers decide, from NovaError.retryable.
import { abortable, isRetryableStatus, type KeystoneSession } from '../common/keystone.js';
import type { InspectorMetrics, NovaOperation } from '../common/metrics.js';
import { createOpenStackApi } from './openstack-api.js';

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
  constructor(
    message: string,
    readonly status: number,
    readonly retryable: boolean,
  ) {
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
  const api = createOpenStackApi({
    service: 'nova',
    session,
    fail: (message, status, retryable) => new NovaError(message, status, retryable),
    fetch: options.fetch,
    timeoutMs: options.timeoutMs ?? 30_000,
  });
  const { fromKeystone, readText } = api;
  let maxVersion: Promise<string> | undefined;

  const endpoint = async (signal?: AbortSignal) => {
    try {
      return await session.endpoint('compute', signal);
    } catch (err) {
      throw fromKeystone(err);
    }
  };

  /** Both spellings of the microversion header: older Nova reads only the first. */
  const callOf = (opts: RequestOptions) => ({
    body: opts.body,
    signal: opts.signal,
    headers: { 'X-OpenStack-Nova-API-Version': opts.microversion, 'OpenStack-API-Version': `compute ${opts.microversion}` },
  });
  const send = (method: string, url: string, opts: RequestOptions, token: string | undefined) => api.send(method, url, callOf(opts), token);
  const request = async <T>(method: string, path: string, opts: RequestOptions): Promise<T | undefined> =>
    api.request<T>(method, await endpoint(opts.signal), path, callOf(opts));

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

/**
 * The same client, each call counted and timed by operation (list_servers,
 * get_server, force_down, force_up, reset_state) and outcome; a call cut short
 * by its own signal (a shutdown, a host back up) is not Nova's doing and is not counted.
 */
export function withCallMetrics(client: NovaClient, metrics: InspectorMetrics): NovaClient {
  const timed = async <T>(operation: NovaOperation, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const result = await call();
      metrics.novaCall(operation, 'ok', seconds());
      return result;
    } catch (err) {
      if (!signal?.aborted) metrics.novaCall(operation, 'error', seconds());
      throw err;
    }
  };
  return {
    listAllServers: (signal) => timed('list_servers', signal, () => client.listAllServers(signal)),
    getServer: (serverId, signal) => timed('get_server', signal, () => client.getServer(serverId, signal)),
    setHostForcedDown: (host, down, signal) =>
      timed(down ? 'force_down' : 'force_up', signal, () => client.setHostForcedDown(host, down, signal)),
    resetState: (serverId, state, signal) => timed('reset_state', signal, () => client.resetState(serverId, state, signal)),
    maxMicroversion: (signal) => client.maxMicroversion(signal),
  };
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
