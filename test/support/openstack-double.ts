// A Keystone + Nova server for tests that speaks the wire API the inspector
// uses: Keystone v3 password tokens (X-Subject-Token, catalog with interfaces
// and regions), token validation as keystonemiddleware does it (GET/HEAD
// /v3/auth/tokens with the service's token in X-Auth-Token and the checked one
// in X-Subject-Token, ?nocatalog) and revocation (DELETE), Nova microversion
// negotiation and headers, servers/detail with limit/marker and servers_links,
// os-services (2.53 by id, 2.11 force-down), os-resetState, host_status in
// server views (2.16+, admins: DOWN once the host's service is forced down)
// and the version documents. Latency and failures are injected per call with timers, so a
// thousand concurrent calls each wait their own latency rather than queueing
// behind one another.
// Neutron too, as the inspector uses it: the catalog's network endpoint
// (unversioned, as devstack lists it), ports filtered by binding:host_id with
// fields, limit/marker and ports_links, PUT of a port's data_plane_status (the
// extension can be turned off, as on a Neutron that does not load it), and
// Neutron's error bodies ({"NeutronError": {"type", "message", "detail"}}).
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

export interface DoublePort {
  id: string;
  host: string;
  deviceId: string;
  projectId: string;
  /** ACTIVE, DOWN or null (never set). */
  dataPlaneStatus: string | null;
  /** DOWN while data_plane_status is DOWN, as Neutron shows it. */
  status: string;
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
  /** Tokens issued through POST /v3/auth/tokens (issueToken does not count). */
  tokensIssued: number;
  /**
   * As Keystone with a password expiry (PCI-DSS settings): while true, the user's
   * right password is answered 401 "The password is expired and needs to be changed".
   */
  passwordExpired: boolean;
  /** As Keystone does on a password change: every issued token stops working. */
  revokeTokens(): void;
  /**
   * A project-scoped token for a made-up user, as if that user had authenticated with a
   * password: validation answers it with those role names (ids stable per name), the
   * project and the catalog. The same user name always has the same user id.
   */
  issueToken(options: IssueTokenOptions): string;
  /** As DELETE /v3/auth/tokens: the token is 404 on validation and 401 on Nova from now on. */
  revokeToken(token: string): void;
  /** GET and HEAD /v3/auth/tokens answered, whatever their status. */
  validations: number;
  /** The catalog's network endpoint, unversioned: e.g. http://127.0.0.1:PORT/networking */
  networkUrl: string;
  /** A port bound to a host (binding:host_id), data_plane_status null unless given. */
  addPort(p: { id?: string; host: string; deviceId?: string; projectId?: string; dataPlaneStatus?: 'ACTIVE' | 'DOWN' | null }): string;
  removePort(id: string): void;
  ports(): DoublePort[];
  /** Neutron calls only. */
  networkCalls(): OpenStackDoubleCall[];
  /** Default true; false: a Neutron without the data_plane_status extension (the attribute is unknown). */
  dataPlaneStatusExtension: boolean;
  close(): Promise<void>;
}

export interface IssueTokenOptions {
  userName: string;
  projectId: string;
  /** Default: project-<first 8 characters of the id>. */
  projectName?: string;
  /** Role names, e.g. ['member', 'reader']. */
  roles: string[];
  /** Default: tokenTtlMs. */
  ttlMs?: number;
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

/** What a server's view shows to the caller. */
interface ServerViewOptions {
  /** host_status (compute microversion 2.16+, admins by Nova's default policy). */
  hostStatus: boolean;
  admin: boolean;
}

class HttpFault extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Neutron's error type (PortNotFound, PolicyNotAuthorized…), for its error body. */
    readonly neutronType?: string,
  ) {
    super(message);
  }
}

const neutronFaultTypes: Record<number, string> = {
  400: 'HTTPBadRequest',
  403: 'HTTPForbidden',
  404: 'HTTPNotFound',
  405: 'HTTPMethodNotAllowed',
  409: 'HTTPConflict',
  413: 'HTTPRequestEntityTooLarge',
  429: 'HTTPTooManyRequests',
  500: 'HTTPInternalServerError',
  503: 'HTTPServiceUnavailable',
};

/** What Keystone keeps of a token: its document without the catalog, which is added when rendered. */
interface TokenRecord {
  expiresAt: number;
  userId: string;
  roles: string[];
  scoped: boolean;
  doc: Record<string, unknown>;
}

const unauthenticated = 'The request you have made requires authentication.';

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
const isNetworkPath = (path: string) => /^\/networking(\/|$|\?)/.test(path);

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
    password: `secret-${randomBytes(4).toString('hex')}`,
    projectName: 'admin',
    userDomainName: 'Default',
    projectDomainName: 'Default',
  };
  const projectId = randomBytes(16).toString('hex');
  const userId = randomBytes(16).toString('hex');
  const tenantProjectId = randomBytes(16).toString('hex');
  const servers = new Map<string, ServerRow>();
  const services = new Map<string, ServiceRow>();
  const ports = new Map<string, DoublePort>();
  const tokens = new Map<string, TokenRecord>();
  const roleIds = new Map<string, string>();
  const userIds = new Map<string, string>([[credentials.username, userId]]);
  const stableId = (ids: Map<string, string>, name: string) => {
    let id = ids.get(name);
    if (id === undefined) ids.set(name, (id = randomBytes(16).toString('hex')));
    return id;
  };
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
  const catalog = [
    {
      type: 'identity',
      name: 'keystone',
      id: randomBytes(16).toString('hex'),
      endpoints: [
        { id: randomBytes(16).toString('hex'), interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: `${base}/identity` },
      ],
    },
    {
      type: 'compute',
      name: 'nova',
      id: randomBytes(16).toString('hex'),
      endpoints: endpoints.map((e) => ({
        id: randomBytes(16).toString('hex'),
        interface: e.interface,
        region_id: e.region,
        region: e.region,
        url: e.url,
      })),
    },
    {
      type: 'network',
      name: 'neutron',
      id: randomBytes(16).toString('hex'),
      endpoints: [
        {
          id: randomBytes(16).toString('hex'),
          interface: 'public',
          region_id: 'RegionOne',
          region: 'RegionOne',
          url: `${base}/networking`,
        },
      ],
    },
  ];

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
    servers: () =>
      [...servers.values()].map(({ id, name, projectId, host, status, vmState }) => ({ id, name, projectId, host, status, vmState })),
    addComputeService: (host) => ensureService(host, 'nova-compute').id,
    services: () =>
      [...services.values()].map(({ id, host, binary, forcedDown, status, state, disabledReason }) => ({
        id,
        host,
        binary,
        forcedDown,
        status,
        state,
        disabledReason,
      })),
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
    passwordExpired: false,
    revokeTokens() {
      tokens.clear();
    },
    issueToken(o) {
      if (!o.userName || !o.projectId) throw new Error('issueToken needs a userName and a projectId');
      return mintToken({
        userId: stableId(userIds, o.userName),
        userName: o.userName,
        project: { id: o.projectId, name: o.projectName ?? `project-${o.projectId.slice(0, 8)}` },
        roles: o.roles,
        ttlMs: o.ttlMs ?? double.tokenTtlMs,
      });
    },
    revokeToken(token) {
      tokens.delete(token);
    },
    validations: 0,
    networkUrl: `${base}/networking`,
    addPort(p) {
      const id = p.id ?? randomUUID();
      if (ports.has(id)) throw new Error(`port ${id} exists`);
      const dataPlaneStatus = p.dataPlaneStatus ?? null;
      ports.set(id, {
        id,
        host: p.host,
        deviceId: p.deviceId ?? '',
        projectId: p.projectId ?? tenantProjectId,
        dataPlaneStatus,
        status: dataPlaneStatus === 'DOWN' ? 'DOWN' : 'ACTIVE',
      });
      return id;
    },
    removePort(id) {
      if (!ports.delete(id)) throw new Error(`no port ${id}`);
    },
    ports: () => [...ports.values()].map((p) => ({ ...p })),
    networkCalls: () => calls.filter((c) => isNetworkPath(c.path)),
    dataPlaneStatusExtension: true,
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
      if ((call.method === 'GET' || call.method === 'HEAD') && /^\/identity\/v3\/auth\/tokens\/?(\?|$)/.test(call.path))
        double.validations++;
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
      if (isNetworkPath(url.pathname)) return network(call, url, raw, respond);
      throw new HttpFault(404, 'The resource could not be found.');
    } catch (err) {
      const status = err instanceof HttpFault ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (isNetworkPath(call.path)) {
        const type = err instanceof HttpFault ? (err.neutronType ?? neutronFaultTypes[status] ?? 'HTTPError') : 'HTTPInternalServerError';
        respond(status, { NeutronError: { type, message, detail: '' } });
      } else if (call.path.startsWith('/identity')) {
        const headers = err instanceof HttpFault ? err.headers : {};
        respond(status, { error: { code: status, title: titleOf(status), message } }, headers);
      } else {
        respond(
          status,
          { [novaFaultKeys[status] ?? 'computeFault']: { code: status, message } },
          versionHeaders(currentMicroversion(call)),
        );
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
    const includeCatalog = !url.searchParams.has('nocatalog');
    switch (call.method) {
      case 'POST':
        return authenticate(raw, includeCatalog, respond);
      case 'GET':
      case 'HEAD':
        return validate(call, includeCatalog, respond);
      case 'DELETE':
        return revoke(call, respond);
      default:
        throw new HttpFault(405, 'The method is not allowed for the requested URL.');
    }
  }

  function authenticate(raw: string, includeCatalog: boolean, respond: Respond) {
    const body = jsonObject(raw);
    const identityDoc = objectField(body, 'auth', 'identity');
    const methods = identityDoc.methods;
    // The token method (rescoping, or a program that holds only a token): the token must be live.
    if (Array.isArray(methods) && methods.includes('token') && !methods.includes('password'))
      return authenticateWithToken(body, identityDoc, includeCatalog, respond);
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
    if (!userOk) throw unauthorized();
    if (double.passwordExpired) throw new HttpFault(401, `The password is expired and needs to be changed for user: ${userId}.`);
    const scope = body.auth && (body.auth as Record<string, unknown>).scope;
    let scoped = false;
    if (scope !== undefined) {
      const project = (scope as Record<string, unknown>)?.project as Record<string, unknown> | undefined;
      if (!project || typeof project !== 'object') throw new HttpFault(400, 'only project scope is supported here');
      if (typeof project.id === 'string') {
        if (project.id !== projectId) throw unauthorized();
      } else {
        const domain = project.domain as Record<string, unknown> | undefined;
        if (typeof project.name !== 'string' || !domain || typeof domain !== 'object') {
          throw new HttpFault(400, 'a project given by name needs a domain');
        }
        const ok = project.name === credentials.projectName && (domain.name === credentials.projectDomainName || domain.id === 'default');
        if (!ok) throw unauthorized();
      }
      scoped = true;
    }
    const token = mintToken({
      userId,
      userName: credentials.username,
      project: scoped ? { id: projectId, name: credentials.projectName } : undefined,
      roles: scoped ? ['admin', 'member'] : [],
      ttlMs: double.tokenTtlMs,
    });
    double.tokensIssued++;
    respond(201, { token: render(tokens.get(token)!, includeCatalog) }, { 'X-Subject-Token': token });
  }

  /** POST /v3/auth/tokens with the token method: a new token of the same user, scoped as asked (the project of the credentials only). */
  function authenticateWithToken(
    body: Record<string, unknown>,
    identityDoc: Record<string, unknown>,
    includeCatalog: boolean,
    respond: Respond,
  ) {
    const given = objectField(identityDoc, 'token');
    if (typeof given.id !== 'string') throw new HttpFault(400, "'id' is a required property");
    const record = liveToken(given.id);
    // What Keystone answers for a token it cannot validate here (expired, revoked, unknown).
    if (!record) throw new HttpFault(404, 'Failed to validate token');
    const scope = (body.auth as Record<string, unknown>).scope as Record<string, unknown> | undefined;
    const project = scope?.project as Record<string, unknown> | undefined;
    if (scope !== undefined) {
      const domain = project?.domain as Record<string, unknown> | undefined;
      const ok =
        project?.id === projectId ||
        (project?.name === credentials.projectName && (domain?.name === credentials.projectDomainName || domain?.id === 'default'));
      if (!ok) throw unauthorized();
    }
    const user = (record.doc.user ?? {}) as { name?: string };
    const token = mintToken({
      userId: record.userId,
      userName: user.name ?? credentials.username,
      project: scope !== undefined ? { id: projectId, name: credentials.projectName } : undefined,
      roles: scope !== undefined ? record.roles : [],
      ttlMs: double.tokenTtlMs,
    });
    double.tokensIssued++;
    respond(201, { token: render(tokens.get(token)!, includeCatalog) }, { 'X-Subject-Token': token });
  }

  /** GET and HEAD /v3/auth/tokens: identity:validate_token and identity:check_token. */
  function validate(call: OpenStackDoubleCall, includeCatalog: boolean, respond: Respond) {
    const subject = authorize(call, 'identity:validate_token');
    const body = call.method === 'HEAD' ? undefined : { token: render(subject.record, includeCatalog) };
    respond(200, body, { 'X-Subject-Token': subject.token });
  }

  /** DELETE /v3/auth/tokens: identity:revoke_token. */
  function revoke(call: OpenStackDoubleCall, respond: Respond) {
    const subject = authorize(call, 'identity:revoke_token');
    tokens.delete(subject.token);
    respond(204);
  }

  /**
   * The caller's X-Auth-Token must be a live token (401 otherwise), and the X-Subject-Token
   * one too (404 otherwise). Keystone's default policy lets a caller with the admin or
   * service role act on any token, and anyone on a token of their own (token_subject).
   */
  function authorize(call: OpenStackDoubleCall, action: string): { token: string; record: TokenRecord } {
    const caller = liveToken(call.headers['x-auth-token']);
    if (!caller) throw unauthorized();
    const token = call.headers['x-subject-token'] ?? '';
    const record = liveToken(token);
    if (!record) throw new HttpFault(404, token ? `Could not find token: ${token}.` : 'No token in the request');
    const privileged = caller.roles.includes('admin') || caller.roles.includes('service');
    if (!privileged && caller.userId !== record.userId) {
      throw new HttpFault(403, `You are not authorized to perform the requested action: ${action}.`);
    }
    return { token, record };
  }

  function liveToken(token: string | undefined): TokenRecord | undefined {
    const record = token ? tokens.get(token) : undefined;
    if (!record) return undefined;
    if (record.expiresAt <= Date.now()) {
      tokens.delete(token!);
      return undefined;
    }
    return record;
  }

  function unauthorized() {
    return new HttpFault(401, unauthenticated, { 'WWW-Authenticate': `Keystone uri="${base}/identity"` });
  }

  function mintToken(t: {
    userId: string;
    userName: string;
    project?: { id: string; name: string };
    roles: string[];
    ttlMs: number;
  }): string {
    const token = `gAAAA${randomBytes(24).toString('base64url')}`;
    const issued = Date.now();
    const expiresAt = issued + t.ttlMs;
    const iso = (ms: number) => new Date(ms).toISOString().replace(/Z$/, '000Z');
    const doc: Record<string, unknown> = {
      methods: ['password'],
      user: { id: t.userId, name: t.userName, domain: { id: 'default', name: credentials.userDomainName }, password_expires_at: null },
      audit_ids: [randomBytes(8).toString('base64url')],
      issued_at: iso(issued),
      expires_at: iso(expiresAt),
    };
    if (t.project) {
      doc.project = { id: t.project.id, name: t.project.name, domain: { id: 'default', name: credentials.projectDomainName } };
      doc.is_domain = false;
      doc.roles = t.roles.map((name) => ({ id: stableId(roleIds, name), name }));
    }
    tokens.set(token, { expiresAt, userId: t.userId, roles: t.project ? [...t.roles] : [], scoped: t.project !== undefined, doc });
    return token;
  }

  /** The token document as POST and GET answer it; a project-scoped token carries the catalog unless ?nocatalog. */
  function render(record: TokenRecord, includeCatalog: boolean): Record<string, unknown> {
    return record.scoped && includeCatalog ? { ...record.doc, catalog } : { ...record.doc };
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
    return {
      'X-OpenStack-Nova-API-Version': v,
      'OpenStack-API-Version': `compute ${v}`,
      Vary: 'OpenStack-API-Version, X-OpenStack-Nova-API-Version',
    };
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
          {
            id: 'v2.0',
            status: 'SUPPORTED',
            version: '',
            min_version: '',
            updated: '2011-01-21T11:33:21Z',
            links: [{ rel: 'self', href: `${base}${prefix}/v2/` }],
          },
          versionDoc,
        ],
      });
    }
    if (call.method === 'GET' && path === '/v2.1') return respond(200, { version: versionDoc });
    if (!path.startsWith('/v2.1/')) throw new HttpFault(404, 'The resource could not be found.');

    const caller = liveToken(call.headers['x-auth-token']);
    if (!caller) {
      return respond(
        401,
        { error: { code: 401, title: 'Unauthorized', message: unauthenticated } },
        { 'WWW-Authenticate': `Keystone uri="${base}/identity"` },
      );
    }
    const requested = currentMicroversion(call);
    if (!/^\d+\.\d+$/.test(requested)) throw new HttpFault(400, `Invalid format for API version: ${requested}`);
    if (cmp(requested, '2.1') < 0 || cmp(requested, maxMicroversion) > 0) {
      return respond(
        406,
        {
          computeFault: {
            code: 406,
            message: `Version ${requested} is not supported by the API. Minimum is 2.1 and maximum is ${maxMicroversion}.`,
          },
        },
        versionHeaders(requested),
      );
    }
    const mv = requested;
    const ok = (status: number, body?: unknown) => respond(status, body, versionHeaders(mv));
    const resource = path.slice('/v2.1'.length);

    // Nova's default policy shows host_status (2.16+) to admins only (os_compute_api:servers:show:host_status).
    const admin = caller.roles.includes('admin');
    const view = { hostStatus: cmp(mv, '2.16') >= 0 && admin, admin };
    if (resource === '/servers/detail' && call.method === 'GET') return ok(200, listServers(url, endpointUrl, view));
    let m = /^\/servers\/([^/]+)$/.exec(resource);
    if (m && call.method === 'GET') {
      const row = servers.get(decodeURIComponent(m[1]!));
      if (!row) throw new HttpFault(404, `Instance ${decodeURIComponent(m[1]!)} could not be found.`);
      return ok(200, { server: serverView(row, endpointUrl, view) });
    }
    m = /^\/servers\/([^/]+)\/action$/.exec(resource);
    if (m) {
      if (call.method !== 'POST') throw new HttpFault(405, 'The method is not allowed.');
      const body = jsonObject(raw);
      const actions = Object.keys(body);
      if (actions.length !== 1) throw new HttpFault(400, 'An action body holds exactly one action.');
      if (actions[0] !== 'os-resetState') throw new HttpFault(400, `There is no such action: ${actions[0]}`);
      const arg = body['os-resetState'] as Record<string, unknown> | null;
      if (!arg || typeof arg !== 'object' || Array.isArray(arg))
        throw new HttpFault(400, 'Invalid input for field/attribute os-resetState: not an object');
      const extra = Object.keys(arg).filter((k) => k !== 'state');
      if (extra.length > 0) throw new HttpFault(400, `Additional properties are not allowed (${extra.join(', ')} was unexpected)`);
      if (arg.state !== 'active' && arg.state !== 'error') {
        throw new HttpFault(
          400,
          `Invalid input for field/attribute state. Value: ${String(arg.state)}. '${String(arg.state)}' is not one of ['active', 'error']`,
        );
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

  function listServers(url: URL, endpointUrl: string, view: ServerViewOptions) {
    const q = url.searchParams;
    const allTenants = q.has('all_tenants') && !['0', 'false', 'False', 'no'].includes(q.get('all_tenants')!);
    let limit = pageSize;
    if (q.has('limit')) {
      const n = Number(q.get('limit'));
      if (!Number.isInteger(n) || n < 0) throw new HttpFault(400, 'limit param must be an integer');
      limit = Math.min(n, pageSize);
    }
    // As Nova: host is an admin-only filter, ignored for anyone else.
    const host = view.admin ? q.get('host') : null;
    // Nova's default order: newest first.
    const visible = [...servers.values()]
      .filter((s) => (allTenants || s.projectId === projectId) && (host === null || s.host === host))
      .sort((a, b) => b.seq - a.seq);
    let start = 0;
    const marker = q.get('marker');
    if (marker !== null) {
      const i = visible.findIndex((s) => s.id === marker);
      if (i < 0) throw new HttpFault(400, `marker [${marker}] not found`);
      start = i + 1;
    }
    const page = visible.slice(start, start + limit);
    const doc: Record<string, unknown> = { servers: page.map((s) => serverView(s, endpointUrl, view)) };
    // As Nova: a full page always carries a next link, even when nothing follows.
    if (page.length === limit && limit > 0) {
      const next = new URLSearchParams(q);
      next.set('marker', page[page.length - 1]!.id);
      if (q.has('limit')) next.set('limit', String(limit));
      doc.servers_links = [{ rel: 'next', href: `${endpointUrl}/servers/detail?${next}` }];
    }
    return doc;
  }

  function serverView(s: ServerRow, endpointUrl: string, view: ServerViewOptions) {
    const doc: Record<string, unknown> = {
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
    if (view.hostStatus) doc.host_status = hostStatusOf(s.host);
    return doc;
  }

  /** Nova's host_status: DOWN when forced down, then MAINTENANCE when disabled, then UP or UNKNOWN; '' without a host or service. */
  function hostStatusOf(host: string): string {
    const service = host ? [...services.values()].find((v) => v.host === host && v.binary === 'nova-compute') : undefined;
    if (!service) return '';
    if (service.forcedDown) return 'DOWN';
    if (service.status === 'disabled') return 'MAINTENANCE';
    return service.state === 'up' ? 'UP' : 'UNKNOWN';
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
    if (Object.keys(body).length === 0)
      throw new HttpFault(400, 'No updates were requested. Fields "status" or "forced_down" should be specified.');
    if (body.status !== undefined && body.status !== 'enabled' && body.status !== 'disabled') {
      throw new HttpFault(400, `Invalid input for field/attribute status. Value: ${String(body.status)}.`);
    }
    if (body.forced_down !== undefined && typeof body.forced_down !== 'boolean') {
      throw new HttpFault(400, `Invalid input for field/attribute forced_down. Value: ${String(body.forced_down)}.`);
    }
    if (body.disabled_reason !== undefined) {
      if (typeof body.disabled_reason !== 'string' || body.disabled_reason.length > 255)
        throw new HttpFault(400, 'Invalid disabled_reason.');
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
    const allowed =
      action === 'force-down'
        ? ['host', 'binary', 'forced_down']
        : action === 'disable-log-reason'
          ? ['host', 'binary', 'disabled_reason']
          : ['host', 'binary'];
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

  // --- Neutron ----------------------------------------------------------------

  function network(call: OpenStackDoubleCall, url: URL, raw: string, respond: Respond) {
    const path = url.pathname.replace(/\/+$/, '');
    // The version list needs no token, as in Neutron.
    if (call.method === 'GET' && path === '/networking') {
      return respond(200, {
        versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ rel: 'self', href: `${base}/networking/v2.0/` }] }],
      });
    }
    const caller = liveToken(call.headers['x-auth-token']);
    if (!caller) {
      return respond(
        401,
        { error: { code: 401, title: 'Unauthorized', message: unauthenticated } },
        { 'WWW-Authenticate': `Keystone uri="${base}/identity"` },
      );
    }
    const admin = caller.roles.includes('admin');
    // Anyone else sees the ports of their token's project only.
    const project = (caller.doc.project as { id?: string } | undefined)?.id ?? '';
    if (path === '/networking/v2.0/ports' && call.method === 'GET') return respond(200, listPorts(url, admin, project));
    const m = /^\/networking\/v2\.0\/ports\/([^/]+)$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      const row = ports.get(id);
      const visible = row && (admin || row.projectId === project);
      if (call.method === 'GET') {
        if (!visible) throw new HttpFault(404, `Port ${id} could not be found.`, {}, 'PortNotFound');
        return respond(200, { port: portView(row) });
      }
      if (call.method === 'PUT') return respond(200, { port: portView(updatePort(id, row && visible ? row : undefined, raw, admin)) });
      throw new HttpFault(405, 'The method is not allowed for the requested URL.');
    }
    throw new HttpFault(404, 'The resource could not be found.');
  }

  /** Filters by any attribute given (binding:host_id, device_id, id…), fields, and limit/marker by id as Neutron pages. */
  function listPorts(url: URL, admin: boolean, project: string) {
    const q = url.searchParams;
    const control = new Set(['fields', 'limit', 'marker', 'page_reverse', 'sort_key', 'sort_dir']);
    let rows = [...ports.values()].filter((p) => admin || p.projectId === project).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const key of new Set(q.keys())) {
      if (control.has(key)) continue;
      const values = q.getAll(key);
      rows = rows.filter((p) => values.includes(String(portView(p)[key] ?? '')));
    }
    let limit: number | undefined;
    if (q.has('limit')) {
      const n = Number(q.get('limit'));
      if (!Number.isInteger(n) || n < 0)
        throw new HttpFault(400, `Bad limit request: Limit must be an integer 0 or greater and not '${q.get('limit')}'.`);
      limit = n === 0 ? undefined : n;
    }
    const marker = q.get('marker');
    if (marker !== null) {
      if (!ports.has(marker)) throw new HttpFault(404, `Port ${marker} could not be found.`, {}, 'PortNotFound');
      rows = rows.filter((p) => p.id > marker);
    }
    const page = limit === undefined ? rows : rows.slice(0, limit);
    const fields = q.getAll('fields');
    const shown = page.map((p) => {
      const view = portView(p);
      return fields.length === 0 ? view : Object.fromEntries(fields.filter((f) => f in view).map((f) => [f, view[f]]));
    });
    const doc: Record<string, unknown> = { ports: shown };
    // As Neutron: a full page carries a next link.
    if (limit !== undefined && page.length === limit) {
      const next = new URLSearchParams(q);
      next.set('marker', page[page.length - 1]!.id);
      doc.ports_links = [{ rel: 'next', href: `${base}/networking/v2.0/ports?${next}` }];
    }
    return doc;
  }

  function updatePort(id: string, row: DoublePort | undefined, raw: string, admin: boolean): DoublePort {
    const body = jsonObject(raw);
    const port = body.port;
    if (!port || typeof port !== 'object' || Array.isArray(port)) throw new HttpFault(400, 'Resource body required');
    const attrs = port as Record<string, unknown>;
    const known = new Set(['name', 'description', 'admin_state_up', ...(double.dataPlaneStatusExtension ? ['data_plane_status'] : [])]);
    const unknown = Object.keys(attrs).filter((k) => !known.has(k));
    if (unknown.length > 0) throw new HttpFault(400, `Unrecognized attribute(s) '${unknown.join(', ')}'`);
    if ('data_plane_status' in attrs) {
      const v = attrs.data_plane_status;
      if (v !== null && v !== 'ACTIVE' && v !== 'DOWN') {
        throw new HttpFault(400, `Invalid input for data_plane_status. Reason: '${String(v)}' is not in ['ACTIVE', 'DOWN', None].`);
      }
    }
    if (!row) throw new HttpFault(404, `Port ${id} could not be found.`, {}, 'PortNotFound');
    // Neutron's default policy: data_plane_status is set by admins only.
    if ('data_plane_status' in attrs && !admin) {
      throw new HttpFault(403, '(rule:update_port:data_plane_status) is disallowed by policy', {}, 'PolicyNotAuthorized');
    }
    if ('data_plane_status' in attrs) {
      row.dataPlaneStatus = attrs.data_plane_status as string | null;
      row.status = row.dataPlaneStatus === 'DOWN' ? 'DOWN' : 'ACTIVE';
    }
    return row;
  }

  function portView(p: DoublePort) {
    const view: Record<string, unknown> = {
      id: p.id,
      name: '',
      network_id: randomBytesFor(`net${p.projectId}`).slice(0, 32),
      tenant_id: p.projectId,
      project_id: p.projectId,
      device_id: p.deviceId,
      device_owner: p.deviceId ? 'compute:nova' : '',
      admin_state_up: true,
      status: p.status,
      'binding:host_id': p.host,
      'binding:vnic_type': 'normal',
      'binding:vif_type': 'ovs',
    };
    if (double.dataPlaneStatusExtension) view.data_plane_status = p.dataPlaneStatus;
    return view;
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
  return (
    { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed' }[status] ??
    'Internal Server Error'
  );
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
    reservation_id: `r-${randomBytes(4).toString('hex')}`,
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
    request_id: `req-${randomUUID()}`,
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
