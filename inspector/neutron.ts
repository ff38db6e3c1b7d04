// The Neutron calls the inspector makes, as Doctor's inspector does with
// update_neutron_port_dp_status: the ports bound to a host (GET
// /v2.0/ports?binding:host_id=H, paged with limit/marker through ports_links)
// and one port's data-plane status (PUT /v2.0/ports/{id} with
// {"port": {"data_plane_status": "DOWN"}}; the data_plane_status extension,
// admin only under Neutron's default policy). The endpoint is the catalog's
// "network" service, as keystoneauth finds it. Like nova.ts, this client never
// retries on its own (except with a fresh token after a 401): callers decide,
// from NeutronError.retryable.
import type { KeystoneSession } from '../common/keystone.js';
import type { InspectorMetrics, NeutronOperation } from '../common/metrics.js';
import { createOpenStackApi } from './openstack-api.js';

export type DataPlaneStatus = 'DOWN' | 'ACTIVE';

export interface NeutronPort {
  id: string;
  /** DOWN, ACTIVE, or null: never set (or the extension is not loaded). */
  dataPlaneStatus: string | null;
}

export interface NeutronClient {
  /** Every port whose binding:host_id is the host, through every page. */
  portsOnHost(host: string, signal?: AbortSignal): Promise<NeutronPort[]>;
  setDataPlaneStatus(portId: string, status: DataPlaneStatus, signal?: AbortSignal): Promise<void>;
}

/** status is the HTTP status, 0 when no answer came (network, timeout). 5xx, 429, 408 and no answer are retryable. */
export class NeutronError extends Error {
  override name = 'NeutronError';
  constructor(
    message: string,
    readonly status: number,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export interface NeutronClientOptions {
  fetch?: typeof fetch;
  /** Per HTTP request (default 30 s). */
  timeoutMs?: number;
  /** Ports asked for per page (default 500). */
  pageSize?: number;
  /** Most ports listed for one host before giving up (default 100,000): a bound on what a peer can make us hold. */
  maxPorts?: number;
}

export function createNeutronClient(session: KeystoneSession, options: NeutronClientOptions = {}): NeutronClient {
  const api = createOpenStackApi({
    service: 'neutron',
    session,
    fail: (message, status, retryable) => new NeutronError(message, status, retryable),
    fetch: options.fetch,
    timeoutMs: options.timeoutMs ?? 30_000,
  });
  const { fromKeystone } = api;
  const pageSize = options.pageSize ?? 500;
  const maxPorts = options.maxPorts ?? 100_000;

  /** The versioned API root: catalogs list Neutron without its version (e.g. http://ctl:9696), some with /v2.0. */
  const apiRoot = async (signal?: AbortSignal) => {
    let url: string;
    try {
      url = await session.endpoint('network', signal);
    } catch (err) {
      throw fromKeystone(err);
    }
    return /\/v2\.0$/.test(url) ? url : `${url}/v2.0`;
  };

  const request = async <T>(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<T | undefined> =>
    api.request<T>(method, await apiRoot(signal), path, { body, signal });

  return {
    async portsOnHost(host, signal) {
      const byId = new Map<string, NeutronPort>();
      const query = new URLSearchParams({ 'binding:host_id': host, limit: String(pageSize) });
      for (const field of ['id', 'binding:host_id', 'data_plane_status']) query.append('fields', field);
      const seenMarkers = new Set<string>();
      for (;;) {
        const doc = await request<{ ports?: unknown; ports_links?: Array<{ rel?: string; href?: string }> }>(
          'GET',
          `/ports?${query}`,
          undefined,
          signal,
        );
        const ports = Array.isArray(doc?.ports) ? doc.ports : [];
        for (const p of ports) {
          const port = toPort(p, host);
          if (port) byId.set(port.id, port);
        }
        if (byId.size > maxPorts) throw new NeutronError(`neutron: more than ${maxPorts} ports on host ${host}`, 0, false);
        const next = doc?.ports_links?.find((l) => l.rel === 'next')?.href;
        if (!next || ports.length === 0) break;
        // Only the marker is taken from the link: its host is Neutron's idea of itself.
        const marker = new URL(next, 'http://neutron.invalid/').searchParams.get('marker');
        if (!marker) break;
        if (seenMarkers.has(marker)) throw new NeutronError(`neutron: ports_links repeats marker ${marker}`, 0, false);
        seenMarkers.add(marker);
        query.set('marker', marker);
      }
      return [...byId.values()];
    },

    async setDataPlaneStatus(portId, status, signal) {
      await request('PUT', `/ports/${encodeURIComponent(portId)}`, { port: { data_plane_status: status } }, signal);
    },
  };
}

/**
 * The same client, each call counted and timed by operation (list_ports,
 * port_down, port_up) and outcome; a call cut short by its own signal (a
 * shutdown, a host back up) is not Neutron's doing and is not counted.
 */
export function withNeutronCallMetrics(client: NeutronClient, metrics: InspectorMetrics): NeutronClient {
  const timed = async <T>(operation: NeutronOperation, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const result = await call();
      metrics.neutronCall(operation, 'ok', seconds());
      return result;
    } catch (err) {
      if (!signal?.aborted) metrics.neutronCall(operation, 'error', seconds());
      throw err;
    }
  };
  return {
    portsOnHost: (host, signal) => timed('list_ports', signal, () => client.portsOnHost(host, signal)),
    setDataPlaneStatus: (portId, status, signal) =>
      timed(status === 'DOWN' ? 'port_down' : 'port_up', signal, () => client.setDataPlaneStatus(portId, status, signal)),
  };
}

/** A port of the list; one bound elsewhere (a server ignoring the filter) is left out. */
function toPort(value: unknown, host: string): NeutronPort | undefined {
  const p = value as Record<string, unknown> | undefined;
  if (!p || typeof p.id !== 'string' || !p.id) return undefined;
  const boundTo = p['binding:host_id'];
  if (typeof boundTo === 'string' && boundTo !== host) return undefined;
  const status = p.data_plane_status;
  return { id: p.id, dataPlaneStatus: typeof status === 'string' ? status : null };
}
