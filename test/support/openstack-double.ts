// A Keystone + Nova server for tests that speaks the wire API the inspector
// uses: Keystone v3 password tokens (X-Subject-Token, catalog with interfaces
// and regions), Nova microversion negotiation and headers, servers/detail with
// limit/marker and servers_links, os-services (2.53 by id, 2.11 force-down),
// os-resetState and the version documents. Latency and failures are injected
// per call with timers, so a thousand concurrent calls each wait their own
// latency rather than queueing behind one another.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export interface OpenStackDoubleCall {
  method: string;
  /** Path and query, e.g. /compute/v2.1/servers/detail?all_tenants=1 */
  path: string;
  /** Parsed JSON body, the raw text when not JSON, undefined when empty. */
  body: unknown;
  /** Lower-case names. */
  headers: Record<string, string>;
  /** performance.now() when the request arrived and when its answer was sent. */
  receivedAt: number;
  finishedAt?: number;
  status?: number;
}

export interface DoubleServer {
  id: string;
  name: string;
  projectId: string;
  host: string;
  status: string;
  vmState: string;
}

export interface DoubleService {
  /** The 2.53+ id (a UUID). */
  id: string;
  host: string;
  binary: string;
  forcedDown: boolean;
  status: string;
  state: string;
  disabledReason: string | null;
}

export interface CatalogEndpointInfo {
  interface: string;
  region: string;
  url: string;
}

export type CallMatch = (method: string, path: string) => boolean;

export interface OpenStackDouble {
  /** e.g. http://127.0.0.1:PORT/identity/v3 */
  authUrl: string;
  /** The public RegionOne compute endpoint of the catalog, e.g. http://127.0.0.1:PORT/compute/v2.1 */
  computeUrl: string;
  /** Every compute endpoint of the catalog (public/internal/admin in RegionOne, public in RegionTwo). */
  endpoints: CatalogEndpointInfo[];
  credentials: { username: string; password: string; projectName: string; userDomainName: string; projectDomainName: string };
  /** The id of the project the credentials scope to. */
  projectId: string;
  addServer(s: { id?: string; name?: string; projectId?: string; host: string; status?: string }): string;
  removeServer(id: string): void;
  moveServer(id: string, host: string): void;
  servers(): DoubleServer[];
  /** A nova-compute service appears with the first server on a host; this adds one for an empty host. */
  addComputeService(host: string): string;
  services(): DoubleService[];
  calls: OpenStackDoubleCall[];
  /** Compute calls only (the identity calls filtered out). */
  computeCalls(): OpenStackDoubleCall[];
  /** Latency for every compute call, or (with match) for the matching calls, identity included; the newest matching rule wins. */
  setLatency(ms: number, match?: CallMatch): void;
  /** The next count matching calls (default: compute calls) answer status with a Nova fault body. */
  failNext(count: number, status: number, match?: CallMatch): void;
  /** Default '2.96'; '2.11' forces the force-down fallback. */
  setMaxMicroversion(v: string): void;
  /** Life of tokens issued from now on (default one hour). */
  tokenTtlMs: number;
  tokensIssued: number;
  /** As Keystone does on a password change: every issued token stops working. */
  revokeTokens(): void;
  close(): Promise<void>;
}

export interface OpenStackDoubleOptions {
  /** Nova's osapi_max_limit: the page size of servers/detail (default 100). */
  pageSize?: number;
}

interface ServerRow extends DoubleServer {
  userId: string;
  seq: number;
  created: string;
  updated: string;
}

interface ServiceRow extends DoubleService {
  legacyId: number;
  zone: string;
  updatedAt: string;
}

class HttpFault extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const novaFaultKeys: Record<number, string> = {
  400: 'badRequest',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'itemNotFound',
  405: 'badMethod',
  409: 'conflictingRequest',
  413: 'overLimit',
  415: 'badMediaType',
  429: 'overLimit',
  501: 'notImplemented',
  503: 'serviceUnavailable',
};

const computePrefixes: Record<string, { interface: string; region: string }> = {
  '/compute': { interface: 'public', region: 'RegionOne' },
  '/compute-internal': { interface: 'internal', region: 'RegionOne' },
  '/compute-admin': { interface: 'admin', region: 'RegionOne' },
  '/compute-r2': { interface: 'public', region: 'RegionTwo' },
};

const isComputePath = (path: string) => /^\/compute(-[a-z0-9]+)?(\/|$|\?)/.test(path);

/** The OS_* variables (an openrc) that point a client at the double. */
export function openrcEnv(d: OpenStackDouble): NodeJS.ProcessEnv {
  return {
    OS_AUTH_URL: d.authUrl,
    OS_USERNAME: d.credentials.username,
    OS_PASSWORD: d.credentials.password,
    OS_PROJECT_NAME: d.credentials.projectName,
    OS_USER_DOMAIN_NAME: d.credentials.userDomainName,
    OS_PROJECT_DOMAIN_NAME: d.credentials.projectDomainName,
  };
}

export async function startOpenStackDouble(options: OpenStackDoubleOptions = {}): Promise<OpenStackDouble> {
  const pageSize = options.pageSize ?? 100;
  const credentials = {
    username: 'admin',
    password: 'secret-' + randomBytes(4).toString('hex'),
    projectName: 'admin',
    userDomainName: 'Default',
    projectDomainName: 'Default',
  };
  const projectId = randomBytes(16).toString('hex');
  const userId = randomBytes(16).toString('hex');
  const tenantProjectId = randomBytes(16).toString('hex');
  const servers = new Map<string, ServerRow>();
  const services = new Map<string, ServiceRow>();
  const tokens = new Map<string, number>();
  const calls: OpenStackDoubleCall[] = [];
  let latencyRules: Array<{ ms: number; match: CallMatch }> = [];
  const failRules: Array<{ remaining: number; status: number; match: CallMatch }> = [];
  let maxMicroversion = '2.96';
  let seq = 0;
  let legacyServiceId = 0;

  const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

  const ensureService = (host: string, binary: string): ServiceRow => {
    for (const s of services.values()) if (s.host === host && s.binary === binary) return s;
    const row: ServiceRow = {
      id: randomUUID(),
      legacyId: ++legacyServiceId,
      host,
      binary,
      forcedDown: false,
      status: 'enabled',
      state: 'up',
      disabledReason: null,
      zone: binary === 'nova-compute' ? 'nova' : 'internal',
      updatedAt: nowIso(),
    };
    services.set(row.id, row);
    return row;
  };
  ensureService('controller', 'nova-scheduler');
  ensureService('controller', 'nova-conductor');

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const endpoints: CatalogEndpointInfo[] = Object.entries(computePrefixes).map(([prefix, e]) => ({ ...e, url: `${base}${prefix}/v2.1` }));

  const double: OpenStackDouble = {
    authUrl: `${base}/identity/v3`,
    computeUrl: `${base}/compute/v2.1`,
    endpoints,
    credentials,
    projectId,
    addServer(s) {
      const id = s.id ?? randomUUID();
      if (servers.has(id)) throw new Error(`server ${id} exists`);
      const status = (s.status ?? 'ACTIVE').toUpperCase();
      const t = nowIso();
      servers.set(id, {
        id,
        name: s.name ?? `vm-${id.slice(0, 8)}`,
        projectId: s.projectId ?? tenantProjectId,
        host: s.host,
        status,
        vmState: status.toLowerCase(),
        userId,
        seq: ++seq,
        created: t,
        updated: t,
      });
      ensureService(s.host, 'nova-compute');
      return id;
    },
    removeServer(id) {
      if (!servers.delete(id)) throw new Error(`no server ${id}`);
    },
    moveServer(id, host) {
      const row = servers.get(id);
      if (!row) throw new Error(`no server ${id}`);
      row.host = host;
      row.updated = nowIso();
      ensureService(host, 'nova-compute');
    },
    servers: () => [...servers.values()].map(({ id, name, projectId, host, status, vmState }) => ({ id, name, projectId, host, status, vmState })),
    addComputeService: (host) => ensureService(host, 'nova-compute').id,
    services: () =>
      [...services.values()].map(({ id, host, binary, forcedDown, status, state, disabledReason }) => ({ id, host, binary, forcedDown, status, state, disabledReason })),
    calls,
    computeCalls: () => calls.filter((c) => isComputePath(c.path)),
    setLatency(ms, match) {
      if (match) latencyRules.push({ ms, match });
      else latencyRules = [{ ms, match: (_m, p) => isComputePath(p) }];
    },
    failNext(count, status, match) {
      failRules.push({ remaining: count, status, match: match ?? ((_m, p) => isComputePath(p)) });
    },
    setMaxMicroversion(v) {
      if (!/^2\.\d+$/.test(v)) throw new Error(`not a compute microversion: ${v}`);
      maxMicroversion = v;
    },
    tokenTtlMs: 3_600_000,
    tokensIssued: 0,
    revokeTokens() {
      tokens.clear();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const call: OpenStackDoubleCall = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      body: undefined,
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')])),
      receivedAt: performance.now(),
    };
    calls.push(call);
    const respond = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      call.status = status;
      call.finishedAt = performance.now();
    };
    try {
      const raw = await readBody(req);
      if (raw) {
        try {
          call.body = JSON.parse(raw);
        } catch {
          call.body = raw;
        }
      }
      const latency = [...latencyRules].reverse().find((r) => r.match(call.method, call.path));
      if (latency && latency.ms > 0) await sleep(latency.ms);
      const fail = failRules.find((r) => r.remaining > 0 && r.match(call.method, call.path));
      if (fail) {
        fail.remaining--;
        throw new HttpFault(fail.status, 'injected failure');
      }
      const url = new URL(call.path, base);
      if (url.pathname.startsWith('/identity')) return identity(call, url, raw, respond);
      const m = /^(\/compute(?:-[a-z0-9]+)?)(\/.*)?$/.exec(url.pathname);
      if (m && computePrefixes[m[1]!]) return compute(call, url, m[1]!, m[2] ?? '', raw, respond);
      throw new HttpFault(404, 'The resource could not be found.');
    } catch (err) {
      const status = err instanceof HttpFault ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (call.path.startsWith('/identity')) {
        respond(status, { error: { code: status, title: titleOf(status), message } });
      } else {
        respond(status, { [novaFaultKeys[status] ?? 'computeFault']: { code: status, message } }, versionHeaders(currentMicroversion(call)));
      }
    }
  }

  type Respond = (status: number, body?: unknown, headers?: Record<string, string>) => void;

  // --- Keystone ---------------------------------------------------------------

  function identity(call: OpenStackDoubleCall, url: URL, raw: string, respond: Respond) {
    const path = url.pathname.replace(/\/+$/, '');
    if (path === '/identity/v3' && call.method === 'GET') {
      return respond(200, {
        version: { id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z', links: [{ rel: 'self', href: `${base}/identity/v3/` }] },
      });
    }
    if (path !== '/identity/v3/auth/tokens') throw new HttpFault(404, 'Could not find the requested resource.');
    if (call.method !== 'POST') throw new HttpFault(405, 'The method is not allowed for the requested URL.');
    const body = jsonObject(raw);
    const identityDoc = objectField(body, 'auth', 'identity');
    const methods = identityDoc.methods;
    if (!Array.isArray(methods) || !methods.includes('password')) throw new HttpFault(400, "'methods' must include 'password'");
    const user = objectField(identityDoc, 'password', 'user');
    if (typeof user.password !== 'string') throw new HttpFault(400, "'password' is a required property");
    if (typeof user.name !== 'string' && typeof user.id !== 'string') throw new HttpFault(400, "user needs 'name' or 'id'");
    let domainOk = true;
    if (typeof user.name === 'string') {
      const domain = user.domain as Record<string, unknown> | undefined;
      if (!domain || typeof domain !== 'object') throw new HttpFault(400, 'a user given by name needs a domain');
      domainOk = domain.name === credentials.userDomainName || domain.id === 'default';
    }
    const userOk = (user.name === credentials.username || user.id === userId) && domainOk && user.password === credentials.password;
    if (!userOk) throw new HttpFault(401, 'The request you have made requires authentication.');
    const scope = body.auth && (body.auth as Record<string, unknown>).scope;
    let scoped = false;
    if (scope !== undefined) {
      const project = (scope as Record<string, unknown>)?.project as Record<string, unknown> | undefined;
      if (!project || typeof project !== 'object') throw new HttpFault(400, 'only project scope is supported here');
      if (typeof project.id === 'string') {
        if (project.id !== projectId) throw new HttpFault(401, 'The request you have made requires authentication.');
      } else {
        const domain = project.domain as Record<string, unknown> | undefined;
        if (typeof project.name !== 'string' || !domain || typeof domain !== 'object') {
          throw new HttpFault(400, 'a project given by name needs a domain');
        }
        const ok = project.name === credentials.projectName && (domain.name === credentials.projectDomainName || domain.id === 'default');
        if (!ok) throw new HttpFault(401, 'The request you have made requires authentication.');
      }
      scoped = true;
    }
    const token = 'gAAAA' + randomBytes(24).toString('base64url');
    const issued = Date.now();
    const expires = issued + double.tokenTtlMs;
    tokens.set(token, expires);
    double.tokensIssued++;
    const iso = (ms: number) => new Date(ms).toISOString().replace(/Z$/, '000Z');
    const tokenDoc: Record<string, unknown> = {
      methods: ['password'],
      user: { id: userId, name: credentials.username, domain: { id: 'default', name: credentials.userDomainName }, password_expires_at: null },
      audit_ids: [randomBytes(8).toString('base64url')],
      issued_at: iso(issued),
      expires_at: iso(expires),
    };
    if (scoped) {
      tokenDoc.project = { id: projectId, name: credentials.projectName, domain: { id: 'default', name: credentials.projectDomainName } };
      tokenDoc.is_domain = false;
      tokenDoc.roles = [{ id: randomBytes(16).toString('hex'), name: 'admin' }, { id: randomBytes(16).toString('hex'), name: 'member' }];
      tokenDoc.catalog = [
        {
          type: 'identity',
          name: 'keystone',
          id: randomBytes(16).toString('hex'),
          endpoints: [{ id: randomBytes(16).toString('hex'), interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: `${base}/identity` }],
        },
        {
          type: 'compute',
          name: 'nova',
          id: randomBytes(16).toString('hex'),
          endpoints: endpoints.map((e) => ({ id: randomBytes(16).toString('hex'), interface: e.interface, region_id: e.region, region: e.region, url: e.url })),
        },
      ];
    }
    respond(201, { token: tokenDoc }, { 'X-Subject-Token': token });
  }

  // --- Nova -------------------------------------------------------------------

  function currentMicroversion(call: OpenStackDoubleCall): string {
    const generic = call.headers['openstack-api-version'];
    if (generic) {
      for (const part of generic.split(',')) {
        const [service, version] = part.trim().split(/\s+/);
        if (service?.toLowerCase() === 'compute' && version) return version === 'latest' ? maxMicroversion : version;
      }
    }
    const legacy = call.headers['x-openstack-nova-api-version'];
    if (legacy) return legacy.trim() === 'latest' ? maxMicroversion : legacy.trim();
    return '2.1';
  }

  function versionHeaders(v: string): Record<string, string> {
    return { 'X-OpenStack-Nova-API-Version': v, 'OpenStack-API-Version': `compute ${v}`, Vary: 'OpenStack-API-Version, X-OpenStack-Nova-API-Version' };
  }

  function compute(call: OpenStackDoubleCall, url: URL, prefix: string, rest: string, raw: string, respond: Respond) {
    const path = rest.replace(/\/+$/, '');
    const endpointUrl = `${base}${prefix}/v2.1`;
    const versionDoc = {
      id: 'v2.1',
      status: 'CURRENT',
      version: maxMicroversion,
      min_version: '2.1',
      updated: '2013-07-23T11:33:21Z',
      links: [{ rel: 'self', href: `${endpointUrl}/` }],
      'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
    };
    // The version documents need no token, as in Nova.
    if (call.method === 'GET' && path === '') {
      return respond(200, {
        versions: [
          { id: 'v2.0', status: 'SUPPORTED', version: '', min_version: '', updated: '2011-01-21T11:33:21Z', links: [{ rel: 'self', href: `${base}${prefix}/v2/` }] },
          versionDoc,
        ],
      });
    }
    if (call.method === 'GET' && path === '/v2.1') return respond(200, { version: versionDoc });
    if (!path.startsWith('/v2.1/')) throw new HttpFault(404, 'The resource could not be found.');

    const token = call.headers['x-auth-token'];
    const expires = token ? tokens.get(token) : undefined;
    if (expires === undefined || expires <= Date.now()) {
      return respond(
        401,
        { error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' } },
        { 'WWW-Authenticate': `Keystone uri="${base}/identity"` },
      );
    }
    const requested = currentMicroversion(call);
    if (!/^\d+\.\d+$/.test(requested)) throw new HttpFault(400, `Invalid format for API version: ${requested}`);
    if (cmp(requested, '2.1') < 0 || cmp(requested, maxMicroversion) > 0) {
      return respond(
        406,
        { computeFault: { code: 406, message: `Version ${requested} is not supported by the API. Minimum is 2.1 and maximum is ${maxMicroversion}.` } },
        versionHeaders(requested),
      );
    }
    const mv = requested;
    const ok = (status: number, body?: unknown) => respond(status, body, versionHeaders(mv));
    const resource = path.slice('/v2.1'.length);

    if (resource === '/servers/detail' && call.method === 'GET') return ok(200, listServers(url, endpointUrl));
    let m = /^\/servers\/([^/]+)$/.exec(resource);
    if (m && call.method === 'GET') {
      const row = servers.get(decodeURIComponent(m[1]!));
      if (!row) throw new HttpFault(404, `Instance ${decodeURIComponent(m[1]!)} could not be found.`);
      return ok(200, { server: serverView(row, endpointUrl) });
    }
    m = /^\/servers\/([^/]+)\/action$/.exec(resource);
    if (m) {
      if (call.method !== 'POST') throw new HttpFault(405, 'The method is not allowed.');
      const body = jsonObject(raw);
      const actions = Object.keys(body);
      if (actions.length !== 1) throw new HttpFault(400, 'An action body holds exactly one action.');
      if (actions[0] !== 'os-resetState') throw new HttpFault(400, `There is no such action: ${actions[0]}`);
      const arg = body['os-resetState'] as Record<string, unknown> | null;
      if (!arg || typeof arg !== 'object' || Array.isArray(arg)) throw new HttpFault(400, "Invalid input for field/attribute os-resetState: not an object");
      const extra = Object.keys(arg).filter((k) => k !== 'state');
      if (extra.length > 0) throw new HttpFault(400, `Additional properties are not allowed (${extra.join(', ')} was unexpected)`);
      if (arg.state !== 'active' && arg.state !== 'error') {
        throw new HttpFault(400, `Invalid input for field/attribute state. Value: ${String(arg.state)}. '${String(arg.state)}' is not one of ['active', 'error']`);
      }
      const id = decodeURIComponent(m[1]!);
      const row = servers.get(id);
      if (!row) throw new HttpFault(404, `Instance ${id} could not be found.`);
      row.vmState = arg.state;
      row.status = arg.state === 'error' ? 'ERROR' : 'ACTIVE';
      row.updated = nowIso();
      return ok(202);
    }
    if (resource === '/os-services' && call.method === 'GET') {
      const binary = url.searchParams.get('binary');
      const host = url.searchParams.get('host');
      const list = [...services.values()].filter((s) => (!binary || s.binary === binary) && (!host || s.host === host));
      return ok(200, { services: list.map((s) => serviceView(s, mv)) });
    }
    m = /^\/os-services\/([^/]+)$/.exec(resource);
    if (m && call.method === 'PUT') {
      const key = decodeURIComponent(m[1]!);
      const body = jsonObject(raw);
      if (cmp(mv, '2.53') >= 0) return ok(200, { service: updateService253(key, body, mv) });
      return ok(200, { service: updateServiceLegacy(key, body, mv) });
    }
    throw new HttpFault(404, 'The resource could not be found.');
  }

  function listServers(url: URL, endpointUrl: string) {
    const q = url.searchParams;
    const allTenants = q.has('all_tenants') && !['0', 'false', 'False', 'no'].includes(q.get('all_tenants')!);
    let limit = pageSize;
    if (q.has('limit')) {
      const n = Number(q.get('limit'));
      if (!Number.isInteger(n) || n < 0) throw new HttpFault(400, 'limit param must be an integer');
      limit = Math.min(n, pageSize);
    }
    // Nova's default order: newest first.
    const visible = [...servers.values()].filter((s) => allTenants || s.projectId === projectId).sort((a, b) => b.seq - a.seq);
    let start = 0;
    const marker = q.get('marker');
    if (marker !== null) {
      const i = visible.findIndex((s) => s.id === marker);
      if (i < 0) throw new HttpFault(400, `marker [${marker}] not found`);
      start = i + 1;
    }
    const page = visible.slice(start, start + limit);
    const doc: Record<string, unknown> = { servers: page.map((s) => serverView(s, endpointUrl)) };
    // As Nova: a full page always carries a next link, even when nothing follows.
    if (page.length === limit && limit > 0) {
      const next = new URLSearchParams(q);
      next.set('marker', page[page.length - 1]!.id);
      if (q.has('limit')) next.set('limit', String(limit));
      doc.servers_links = [{ rel: 'next', href: `${endpointUrl}/servers/detail?${next}` }];
    }
    return doc;
  }

  function serverView(s: ServerRow, endpointUrl: string) {
    return {
      id: s.id,
      name: s.name,
      status: s.status,
      tenant_id: s.projectId,
      user_id: s.userId,
      hostId: s.host ? randomBytesFor(s.host + s.projectId) : '',
      created: s.created,
      updated: s.updated,
      metadata: {},
      addresses: {},
      links: [
        { rel: 'self', href: `${endpointUrl}/servers/${s.id}` },
        { rel: 'bookmark', href: `${endpointUrl.replace(/\/v2\.1$/, '')}/servers/${s.id}` },
      ],
      'OS-EXT-SRV-ATTR:host': s.host,
      'OS-EXT-SRV-ATTR:hypervisor_hostname': s.host,
      'OS-EXT-SRV-ATTR:instance_name': `instance-${s.seq.toString(16).padStart(8, '0')}`,
      'OS-EXT-STS:vm_state': s.vmState,
      'OS-EXT-STS:task_state': null,
      'OS-EXT-STS:power_state': s.vmState === 'active' ? 1 : 0,
      'OS-EXT-AZ:availability_zone': 'nova',
    };
  }

  function serviceView(s: ServiceRow, mv: string) {
    const view: Record<string, unknown> = {
      id: cmp(mv, '2.53') >= 0 ? s.id : s.legacyId,
      binary: s.binary,
      disabled_reason: s.disabledReason,
      host: s.host,
      state: s.state,
      status: s.status,
      updated_at: s.updatedAt,
      zone: s.zone,
    };
    if (cmp(mv, '2.11') >= 0) view.forced_down = s.forcedDown;
    return view;
  }

  function updateService253(id: string, body: Record<string, unknown>, mv: string) {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new HttpFault(400, `Invalid uuid ${id}`);
    const extra = Object.keys(body).filter((k) => !['status', 'disabled_reason', 'forced_down'].includes(k));
    if (extra.length > 0) throw new HttpFault(400, `Additional properties are not allowed (${extra.join(', ')} was unexpected)`);
    if (Object.keys(body).length === 0) throw new HttpFault(400, 'No updates were requested. Fields "status" or "forced_down" should be specified.');
    if (body.status !== undefined && body.status !== 'enabled' && body.status !== 'disabled') {
      throw new HttpFault(400, `Invalid input for field/attribute status. Value: ${String(body.status)}.`);
    }
    if (body.forced_down !== undefined && typeof body.forced_down !== 'boolean') {
      throw new HttpFault(400, `Invalid input for field/attribute forced_down. Value: ${String(body.forced_down)}.`);
    }
    if (body.disabled_reason !== undefined) {
      if (typeof body.disabled_reason !== 'string' || body.disabled_reason.length > 255) throw new HttpFault(400, 'Invalid disabled_reason.');
      if (body.status !== 'disabled') throw new HttpFault(400, 'Specifying a disabled reason is not supported when the status is enabled.');
    }
    const row = services.get(id);
    if (!row) throw new HttpFault(404, `Service ${id} could not be found.`);
    if (body.forced_down !== undefined && row.binary !== 'nova-compute') {
      throw new HttpFault(400, `Updating a ${row.binary} service is not supported. Only nova-compute services can be updated.`);
    }
    if (body.status === 'disabled') {
      row.status = 'disabled';
      row.disabledReason = (body.disabled_reason as string | undefined) ?? null;
    } else if (body.status === 'enabled') {
      row.status = 'enabled';
      row.disabledReason = null;
    }
    if (typeof body.forced_down === 'boolean') {
      row.forcedDown = body.forced_down;
      row.state = body.forced_down ? 'down' : 'up';
    }
    row.updatedAt = nowIso();
    return serviceView(row, mv);
  }

  function updateServiceLegacy(action: string, body: Record<string, unknown>, mv: string) {
    const known = ['enable', 'disable', 'disable-log-reason', 'force-down'];
    if (!known.includes(action) || (action === 'force-down' && cmp(mv, '2.11') < 0)) throw new HttpFault(404, `Unknown action: ${action}`);
    const allowed = action === 'force-down' ? ['host', 'binary', 'forced_down'] : action === 'disable-log-reason' ? ['host', 'binary', 'disabled_reason'] : ['host', 'binary'];
    const extra = Object.keys(body).filter((k) => !allowed.includes(k));
    if (extra.length > 0) throw new HttpFault(400, `Additional properties are not allowed (${extra.join(', ')} was unexpected)`);
    for (const field of allowed) {
      if (body[field] === undefined) throw new HttpFault(400, `'${field}' is a required property`);
    }
    if (typeof body.host !== 'string' || typeof body.binary !== 'string') throw new HttpFault(400, 'host and binary must be strings');
    if (action === 'force-down' && typeof body.forced_down !== 'boolean') {
      throw new HttpFault(400, `Invalid input for field/attribute forced_down. Value: ${String(body.forced_down)}.`);
    }
    const row = [...services.values()].find((s) => s.host === body.host && s.binary === body.binary);
    if (!row) throw new HttpFault(404, `Host '${body.host}' is not found.`);
    row.updatedAt = nowIso();
    if (action === 'force-down') {
      row.forcedDown = body.forced_down as boolean;
      row.state = row.forcedDown ? 'down' : 'up';
      return { host: row.host, binary: row.binary, forced_down: row.forcedDown };
    }
    if (action === 'enable') {
      row.status = 'enabled';
      row.disabledReason = null;
    } else {
      row.status = 'disabled';
      row.disabledReason = typeof body.disabled_reason === 'string' ? body.disabled_reason : null;
    }
    const out: Record<string, unknown> = { host: row.host, binary: row.binary, status: row.status };
    if (action === 'disable-log-reason') out.disabled_reason = row.disabledReason;
    return out;
  }

  return double;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new HttpFault(413, 'Request body too large.'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function jsonObject(raw: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new HttpFault(400, 'Malformed request body');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpFault(400, 'The request body must be a JSON object');
  return body as Record<string, unknown>;
}

function objectField(doc: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  let cur: unknown = doc;
  for (const k of keys) {
    cur = (cur as Record<string, unknown> | undefined)?.[k];
    if (!cur || typeof cur !== 'object' || Array.isArray(cur)) throw new HttpFault(400, `'${k}' is a required property`);
  }
  return cur as Record<string, unknown>;
}

function titleOf(status: number): string {
  return { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed' }[status] ?? 'Internal Server Error';
}

function cmp(a: string, b: string): number {
  const [aMaj = 0, aMin = 0] = a.split('.').map(Number);
  const [bMaj = 0, bMin = 0] = b.split('.').map(Number);
  return aMaj - bMaj || aMin - bMin;
}

function randomBytesFor(seed: string): string {
  let h = 0;
  for (const c of seed) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h.toString(16).padStart(8, '0').repeat(7);
}

// --- Nova notifications ------------------------------------------------------

export interface InstanceNotificationFields {
  id: string;
  host: string | null;
  name?: string;
  projectId?: string;
  state?: string;
  /** ISO time; defaults to now. */
  updatedAt?: string;
  /** The guest's hostname (payload host_name), which is not where it runs. */
  hostName?: string;
}

/**
 * An AMQP body as Nova sends it with oslo.messaging's messagingv2 driver: the 2.0
 * envelope around a versioned notification (shape of Nova's notification samples).
 */
export function novaNotificationBody(eventType: string, f: InstanceNotificationFields): string {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const data: Record<string, unknown> = {
    uuid: f.id,
    user_id: 'fake',
    tenant_id: f.projectId ?? '6f70656e737461636b20342065766572',
    reservation_id: 'r-' + randomBytes(4).toString('hex'),
    display_name: f.name ?? 'some-server',
    display_description: f.name ?? 'some-server',
    host_name: f.hostName ?? f.name ?? 'some-server',
    host: f.host,
    node: f.host,
    os_type: null,
    architecture: 'x86_64',
    availability_zone: 'nova',
    image_uuid: '155d900f-4e14-4e4c-a73d-069cbf4541e6',
    key_name: 'my-key',
    kernel_id: '',
    ramdisk_id: '',
    created_at: '2012-10-29T13:42:11Z',
    launched_at: '2012-10-29T13:42:11Z',
    terminated_at: eventType === 'instance.delete.end' ? now : null,
    deleted_at: eventType === 'instance.delete.end' ? now : null,
    updated_at: f.updatedAt ?? now,
    state: f.state ?? (eventType === 'instance.delete.end' ? 'deleted' : 'active'),
    power_state: 'running',
    task_state: null,
    progress: 0,
    ip_addresses: [],
    block_devices: [],
    metadata: {},
    locked: false,
    auto_disk_config: 'MANUAL',
    flavor: {
      'nova_object.name': 'FlavorPayload',
      'nova_object.namespace': 'nova',
      'nova_object.version': '1.4',
      'nova_object.data': { flavorid: 'a22d5517-147c-4147-a0d1-e698df5cd4e3', name: 'test_flavor', vcpus: 1, memory_mb: 512, root_gb: 1 },
    },
    request_id: 'req-' + randomUUID(),
    action_initiator_user: 'admin',
    action_initiator_project: '6f70656e737461636b20342065766572',
  };
  let payloadName = 'InstanceActionPayload';
  if (eventType === 'instance.update') {
    payloadName = 'InstanceUpdatePayload';
    data.state_update = {
      'nova_object.name': 'InstanceStateUpdatePayload',
      'nova_object.namespace': 'nova',
      'nova_object.version': '1.0',
      'nova_object.data': { old_state: data.state, state: data.state, old_task_state: null, new_task_state: null },
    };
    data.old_display_name = null;
    data.tags = [];
    data.bandwidth = [];
    data.audit_period = {
      'nova_object.name': 'AuditPeriodPayload',
      'nova_object.namespace': 'nova',
      'nova_object.version': '1.0',
      'nova_object.data': { audit_period_beginning: '2012-10-01T00:00:00Z', audit_period_ending: now },
    };
  } else {
    data.fault = null;
  }
  if (eventType === 'instance.create.end') {
    payloadName = 'InstanceCreatePayload';
    data.keypairs = [];
    data.tags = [];
    data.trusted_image_certificates = null;
    data.instance_name = 'instance-00000001';
  }
  const message = {
    message_id: randomUUID(),
    publisher_id: `nova-compute:${f.host ?? 'controller'}`,
    event_type: eventType,
    priority: 'INFO',
    payload: { 'nova_object.name': payloadName, 'nova_object.namespace': 'nova', 'nova_object.version': '1.8', 'nova_object.data': data },
    timestamp: new Date().toISOString().replace('T', ' ').replace('Z', ''),
  };
  return JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) });
}
