import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKeystoneSession, KeystoneError, keystoneV3Url } from '../common/keystone.js';
import { createNovaClient, FORCED_DOWN_REASON, NovaError } from '../inspector/nova.js';
import { loadOpenStackConfig, parseCloudsYaml, type OpenStackConfig } from '../common/openstack-config.js';
import { startOpenStackDouble, type OpenStackDouble, type OpenStackDoubleOptions } from './support/openstack-double.js';

async function double(t: ExecutionContext, options?: OpenStackDoubleOptions): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble(options);
  t.teardown(() => d.close());
  return d;
}

function configFor(d: OpenStackDouble, extra: Partial<OpenStackConfig> = {}): OpenStackConfig {
  return { authUrl: d.authUrl, ...d.credentials, interface: 'public', ...extra };
}

function clientFor(d: OpenStackDouble, extra: Partial<OpenStackConfig> = {}) {
  const session = createKeystoneSession(configFor(d, extra));
  return { session, nova: createNovaClient(session) };
}

const pathOf = (p: string) => p.replace(/^\/compute(-[a-z0-9]+)?/, '');

test('keystone: password auth, token from X-Subject-Token, compute endpoint from the catalog', async (t) => {
  const d = await double(t);
  const session = createKeystoneSession(configFor(d));
  const token = await session.token();
  t.regex(token, /^gAAAA/);
  t.is(await session.endpoint('compute'), d.computeUrl);
  t.is(d.tokensIssued, 1, 'the catalog comes with the token');
  const auth = d.calls.find((c) => c.path === '/identity/v3/auth/tokens')!;
  t.is(auth.method, 'POST');
  t.deepEqual(auth.body, {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: 'admin', password: d.credentials.password, domain: { name: 'Default' } } },
      },
      scope: { project: { name: 'admin', domain: { name: 'Default' } } },
    },
  });
  // The token works against Nova.
  d.addServer({ host: 'compute-1' });
  const { nova } = clientFor(d);
  t.is((await nova.listAllServers()).length, 1);
});

test('keystone: interface and region pick the catalog endpoint; none matching is a clear, terminal error', async (t) => {
  const d = await double(t);
  const url = (iface: string, region: string) => d.endpoints.find((e) => e.interface === iface && e.region === region)!.url;
  t.is(await createKeystoneSession(configFor(d, { interface: 'internal' })).endpoint('compute'), url('internal', 'RegionOne'));
  t.is(
    await createKeystoneSession(configFor(d, { interface: 'admin', regionName: 'RegionOne' })).endpoint('compute'),
    url('admin', 'RegionOne'),
  );
  t.is(await createKeystoneSession(configFor(d, { regionName: 'RegionTwo' })).endpoint('compute'), url('public', 'RegionTwo'));
  const err = await t.throwsAsync(
    createKeystoneSession(configFor(d, { interface: 'internal', regionName: 'RegionTwo' })).endpoint('compute'),
    {
      instanceOf: KeystoneError,
    },
  );
  t.false(err!.retryable);
  t.regex(err!.message, /interface internal in region RegionTwo.*public@RegionTwo/);
  // Nova calls go to the chosen endpoint.
  const { nova } = clientFor(d, { interface: 'internal' });
  await nova.listAllServers();
  t.true(d.computeCalls().some((c) => c.path.startsWith('/compute-internal/v2.1/servers/detail')));
});

test('keystone: refused credentials are terminal, Keystone down is retryable', async (t) => {
  const d = await double(t);
  const bad = await t.throwsAsync(createKeystoneSession(configFor(d, { password: 'wrong' })).token(), { instanceOf: KeystoneError });
  t.is(bad!.status, 401);
  t.false(bad!.retryable);
  d.failNext(1, 503, (_m, p) => p.startsWith('/identity'));
  const down = await t.throwsAsync(createKeystoneSession(configFor(d)).token(), { instanceOf: KeystoneError });
  t.is(down!.status, 503);
  t.true(down!.retryable);
  // Seen through Nova, a Keystone failure is a NovaError with the same verdict.
  d.failNext(1, 503, (_m, p) => p.startsWith('/identity'));
  const viaNova = await t.throwsAsync(clientFor(d).nova.listAllServers(), { instanceOf: NovaError });
  t.true(viaNova!.retryable);
  t.is(keystoneV3Url('http://ctl:5000'), 'http://ctl:5000/v3');
  t.is(keystoneV3Url('http://ctl/identity/v3/'), 'http://ctl/identity/v3');
});

test('keystone: the token is renewed before it expires, once for concurrent callers', async (t) => {
  const d = await double(t);
  // Long enough that a machine busy with other tests does not carry a check past the renewal point.
  d.tokenTtlMs = 6_000;
  const session = createKeystoneSession(configFor(d));
  const t0 = performance.now();
  const concurrent = await Promise.all(Array.from({ length: 50 }, () => session.token()));
  t.is(new Set(concurrent).size, 1);
  t.is(d.tokensIssued, 1, '50 concurrent callers share one authentication');
  const first = concurrent[0]!;
  await sleep(Math.max(0, t0 + 500 - performance.now()));
  t.is(await session.token(), first, 'early in its life the token is reused');
  t.is(d.tokensIssued, 1);
  await sleep(Math.max(0, t0 + 5_000 - performance.now())); // past 80% of the life, before expiry
  const renewed = await Promise.all(Array.from({ length: 20 }, () => session.token()));
  t.is(d.tokensIssued, 2, 'renewed once, before the old token expired');
  t.not(renewed[0], first);
  t.is(new Set(renewed).size, 1);
  // Nova calls carry the new token.
  const nova = createNovaClient(session);
  await nova.listAllServers();
  t.is(d.computeCalls().at(-1)!.headers['x-auth-token'], renewed[0]);
});

test('nova: a token revoked by Keystone is replaced once and the call succeeds', async (t) => {
  const d = await double(t);
  d.addServer({ host: 'compute-1' });
  const { nova } = clientFor(d);
  await nova.listAllServers();
  d.revokeTokens();
  t.is((await nova.listAllServers()).length, 1);
  t.is(d.tokensIssued, 2);
  const statuses = d
    .computeCalls()
    .filter((c) => c.path.includes('/servers/detail'))
    .map((c) => c.status);
  t.deepEqual(statuses, [200, 401, 200]);
});

test('nova: listAllServers follows servers_links through every page, with all_tenants and microversion headers', async (t) => {
  const d = await double(t, { pageSize: 3 });
  const ids = Array.from({ length: 10 }, (_, i) => d.addServer({ host: `compute-${i % 3}`, name: `vm-${i}` }));
  const { nova } = clientFor(d);
  const servers = await nova.listAllServers();
  t.deepEqual(servers.map((s) => s.id).sort(), [...ids].sort());
  const byId = new Map(servers.map((s) => [s.id, s]));
  t.is(byId.get(ids[4]!)!.host, 'compute-1', 'host from OS-EXT-SRV-ATTR:host');
  t.is(byId.get(ids[4]!)!.name, 'vm-4');
  t.is(byId.get(ids[4]!)!.status, 'ACTIVE');
  t.regex(byId.get(ids[4]!)!.projectId, /^[0-9a-f]{32}$/);
  t.not(byId.get(ids[4]!)!.projectId, d.projectId, 'servers of other projects are listed (all_tenants)');
  const pages = d.computeCalls().filter((c) => c.path.includes('/servers/detail'));
  t.is(pages.length, 4, '3 + 3 + 3 + 1');
  for (const p of pages) {
    const q = new URL(p.path, 'http://x').searchParams;
    t.is(q.get('all_tenants'), '1');
    t.is(p.headers['x-openstack-nova-api-version'], '2.1');
    t.is(p.headers['openstack-api-version'], 'compute 2.1');
  }
  t.deepEqual(
    pages.map((p) => new URL(p.path, 'http://x').searchParams.get('marker')),
    [null, ids[7], ids[4], ids[1]],
    'each page starts after the last id of the previous one (newest first)',
  );
  // A last page that is exactly full gets a next link to an empty page, as in Nova.
  d.removeServer(ids[0]!);
  const before = d.computeCalls().length;
  t.is((await nova.listAllServers()).length, 9);
  t.is(d.computeCalls().length - before, 4);
});

test('nova: force-down with 2.53 — GET os-services by host and binary, then PUT by id; recovery re-enables', async (t) => {
  const d = await double(t);
  d.addServer({ host: 'compute-1' });
  d.addServer({ host: 'compute-2' });
  const { nova } = clientFor(d);
  await nova.setHostForcedDown('compute-1', true);
  const serviceId = d.services().find((s) => s.host === 'compute-1' && s.binary === 'nova-compute')!.id;
  const calls = d
    .computeCalls()
    .map((c) => ({ method: c.method, path: pathOf(c.path), body: c.body, mv: c.headers['openstack-api-version'] }));
  t.deepEqual(calls, [
    { method: 'GET', path: '/v2.1', body: undefined, mv: 'compute 2.1' },
    { method: 'GET', path: '/v2.1/os-services?binary=nova-compute&host=compute-1', body: undefined, mv: 'compute 2.53' },
    {
      method: 'PUT',
      path: `/v2.1/os-services/${serviceId}`,
      body: { forced_down: true, status: 'disabled', disabled_reason: FORCED_DOWN_REASON },
      mv: 'compute 2.53',
    },
  ]);
  const svc = (host: string) => d.services().find((s) => s.host === host && s.binary === 'nova-compute')!;
  t.like(svc('compute-1'), { forcedDown: true, state: 'down', status: 'disabled' });
  t.like(svc('compute-2'), { forcedDown: false, state: 'up', status: 'enabled' }, 'other hosts untouched');

  // Already down: nothing to send.
  const n = d.computeCalls().length;
  await nova.setHostForcedDown('compute-1', true);
  t.deepEqual(
    d
      .computeCalls()
      .slice(n)
      .map((c) => c.method),
    ['GET'],
  );

  await nova.setHostForcedDown('compute-1', false);
  t.deepEqual(d.computeCalls().at(-1)!.body, { forced_down: false, status: 'enabled' });
  t.like(svc('compute-1'), { forcedDown: false, state: 'up', status: 'enabled', disabledReason: null });

  const unknown = await t.throwsAsync(nova.setHostForcedDown('no-such-host', true), { instanceOf: NovaError });
  t.is(unknown!.status, 404);
  t.false(unknown!.retryable);
});

test('nova: below 2.53 the 2.11 force-down call is used; below 2.11 it is a terminal error', async (t) => {
  const d = await double(t);
  d.setMaxMicroversion('2.11');
  d.addServer({ host: 'compute-1' });
  const { nova } = clientFor(d);
  t.is(await nova.maxMicroversion(), '2.11');
  await nova.setHostForcedDown('compute-1', true);
  const puts = d.computeCalls().filter((c) => c.method === 'PUT');
  t.is(puts.length, 1);
  t.is(pathOf(puts[0]!.path), '/v2.1/os-services/force-down');
  t.deepEqual(puts[0]!.body, { host: 'compute-1', binary: 'nova-compute', forced_down: true });
  t.is(puts[0]!.headers['x-openstack-nova-api-version'], '2.11');
  t.is(d.computeCalls().filter((c) => c.path.includes('os-services?')).length, 0, 'no lookup by id');
  t.like(d.services().find((s) => s.host === 'compute-1')!, { forcedDown: true, state: 'down' });

  const old = await double(t);
  old.setMaxMicroversion('2.10');
  old.addServer({ host: 'compute-1' });
  const err = await t.throwsAsync(clientFor(old).nova.setHostForcedDown('compute-1', true), { instanceOf: NovaError });
  t.false(err!.retryable);
  t.regex(err!.message, /2\.11/);
});

test('nova: resetState posts os-resetState; an unknown server is a terminal 404', async (t) => {
  const d = await double(t);
  const id = d.addServer({ host: 'compute-1' });
  const other = d.addServer({ host: 'compute-1' });
  const { nova } = clientFor(d);
  await nova.resetState(id, 'error');
  const post = d.computeCalls().at(-1)!;
  t.is(post.method, 'POST');
  t.is(pathOf(post.path), `/v2.1/servers/${id}/action`);
  t.deepEqual(post.body, { 'os-resetState': { state: 'error' } });
  t.is(post.status, 202);
  t.like(d.servers().find((s) => s.id === id)!, { vmState: 'error', status: 'ERROR' });
  t.like(d.servers().find((s) => s.id === other)!, { vmState: 'active' });
  await nova.resetState(id, 'active');
  t.like(d.servers().find((s) => s.id === id)!, { vmState: 'active', status: 'ACTIVE' });
  const err = await t.throwsAsync(nova.resetState('00000000-0000-0000-0000-000000000000', 'error'), { instanceOf: NovaError });
  t.is(err!.status, 404);
  t.false(err!.retryable);
  t.is(await nova.getServer('00000000-0000-0000-0000-000000000000'), undefined);
  t.like(await nova.getServer(id), { id, host: 'compute-1', vmState: 'active' });
});

test('nova: 5xx, 429, timeouts and refused connections are retryable; 4xx are not; a caller abort is an abort', async (t) => {
  const d = await double(t);
  const id = d.addServer({ host: 'compute-1' });
  const { session, nova } = clientFor(d);
  await nova.listAllServers(); // authenticated; failures below hit Nova only
  for (const [status, retryable] of [
    [500, true],
    [503, true],
    [429, true],
    [400, false],
    [403, false],
    [409, false],
  ] as const) {
    d.failNext(1, status);
    const err = await t.throwsAsync(nova.resetState(id, 'error'), { instanceOf: NovaError });
    t.is(err!.status, status);
    t.is(err!.retryable, retryable, `status ${status}`);
  }
  d.setLatency(2_000, (m) => m === 'POST');
  const impatient = createNovaClient(session, { timeoutMs: 300 });
  const slow = await t.throwsAsync(impatient.resetState(id, 'error'), { instanceOf: NovaError });
  t.is(slow!.status, 0);
  t.true(slow!.retryable);
  t.regex(slow!.message, /within 300 ms/);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('shutting down')), 50);
  const aborted = await t.throwsAsync(nova.resetState(id, 'error', controller.signal));
  t.false(aborted instanceof NovaError);
  t.is(aborted!.message, 'shutting down');

  const gone = await double(t);
  const goneClient = clientFor(gone);
  await goneClient.nova.listAllServers();
  await gone.close();
  const refused = await t.throwsAsync(goneClient.nova.resetState(id, 'error'), { instanceOf: NovaError });
  t.is(refused!.status, 0);
  t.true(refused!.retryable);
});

test('double: malformed bodies get 400, unknown servers 404, unsupported microversions 406, no token 401', async (t) => {
  const d = await double(t);
  const id = d.addServer({ host: 'compute-1' });
  const token = await createKeystoneSession(configFor(d)).token();
  const call = (method: string, p: string, body?: string, headers: Record<string, string> = {}) =>
    fetch(`${d.computeUrl}${p}`, { method, body, headers: { 'X-Auth-Token': token, 'Content-Type': 'application/json', ...headers } });
  t.is((await call('POST', `/servers/${id}/action`, '{not json')).status, 400);
  t.is((await call('POST', `/servers/${id}/action`, JSON.stringify({ 'os-resetState': { state: 'deleted' } }))).status, 400);
  t.is((await call('POST', `/servers/nope/action`, JSON.stringify({ 'os-resetState': { state: 'error' } }))).status, 404);
  const tooNew = await call('GET', '/servers/detail', undefined, { 'OpenStack-API-Version': 'compute 2.97' });
  t.is(tooNew.status, 406);
  const latest = await call('GET', '/servers/detail', undefined, { 'OpenStack-API-Version': 'compute latest' });
  t.is(latest.headers.get('openstack-api-version'), 'compute 2.96');
  t.is(latest.headers.get('x-openstack-nova-api-version'), '2.96');
  t.is((await fetch(`${d.computeUrl}/servers/detail`)).status, 401);
  t.is(
    (
      await call('PUT', `/os-services/${d.services()[0]!.id}`, JSON.stringify({ forced_down: true }), {
        'OpenStack-API-Version': 'compute 2.53',
      })
    ).status,
    400,
    'forced_down on a non-compute service',
  );
});

test('double: 1,000 concurrent resets with 250 ms latency each finish in about 250 ms, not 250 s', async (t) => {
  const d = await double(t);
  const ids = Array.from({ length: 1_000 }, () => d.addServer({ host: 'compute-1' }));
  const { session, nova } = clientFor(d);
  await session.endpoint('compute');
  d.setLatency(250);
  const started = performance.now();
  await Promise.all(ids.map((id) => nova.resetState(id, 'error')));
  const elapsed = performance.now() - started;
  t.log(`1,000 resets in ${Math.round(elapsed)} ms`);
  t.true(elapsed >= 250);
  t.true(elapsed < 10_000, `${elapsed} ms`);
  t.true(d.servers().every((s) => s.vmState === 'error'));
});

// --- configuration -------------------------------------------------------------

const fullEnv = {
  OS_AUTH_URL: 'http://ctl/identity/v3',
  OS_USERNAME: 'admin',
  OS_PASSWORD: 'pw',
  OS_PROJECT_NAME: 'admin',
  OS_USER_DOMAIN_NAME: 'Default',
  OS_PROJECT_DOMAIN_NAME: 'Default',
};

test('config: from OS_* variables; missing names every absent one', (t) => {
  const r = loadOpenStackConfig({ ...fullEnv, OS_INTERFACE: 'internalURL', OS_REGION_NAME: 'RegionTwo' }, { cloudsYamlPaths: [] });
  t.true('config' in r);
  if (!('config' in r)) return;
  t.like(r.config, {
    authUrl: 'http://ctl/identity/v3',
    username: 'admin',
    password: 'pw',
    projectName: 'admin',
    interface: 'internal',
    regionName: 'RegionTwo',
  });
  const defaults = loadOpenStackConfig(fullEnv);
  t.true('config' in defaults && defaults.config.interface === 'public' && defaults.config.regionName === undefined);

  const none = loadOpenStackConfig({});
  t.deepEqual('missing' in none && none.missing, [
    'OS_AUTH_URL',
    'OS_USERNAME',
    'OS_PASSWORD',
    'OS_PROJECT_NAME (or OS_PROJECT_ID)',
    'OS_USER_DOMAIN_NAME (or OS_USER_DOMAIN_ID)',
    'OS_PROJECT_DOMAIN_NAME (or OS_PROJECT_DOMAIN_ID)',
  ]);
  const some = loadOpenStackConfig({ ...fullEnv, OS_PASSWORD: ' ', OS_USER_DOMAIN_NAME: undefined });
  t.deepEqual('missing' in some && some.missing, ['OS_PASSWORD', 'OS_USER_DOMAIN_NAME (or OS_USER_DOMAIN_ID)']);
  // devstack's openrc names the domains by id.
  const ids = loadOpenStackConfig({
    ...fullEnv,
    OS_USER_DOMAIN_NAME: undefined,
    OS_PROJECT_DOMAIN_NAME: undefined,
    OS_USER_DOMAIN_ID: 'default',
    OS_PROJECT_DOMAIN_ID: 'default',
  });
  t.true('config' in ids && ids.config.userDomainId === 'default' && ids.config.projectDomainId === 'default');
  const appCred = loadOpenStackConfig({ ...fullEnv, OS_AUTH_TYPE: 'v3applicationcredential' });
  t.true('missing' in appCred && /not supported/.test(appCred.missing[0]!));
});

test('config: OS_CLOUD reads clouds.yaml (cwd first, secure.yaml merged) and the session works with it', async (t) => {
  const d = await double(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-clouds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    path.join(dir, 'clouds.yaml'),
    `# written by the test
clouds:
  other:
    auth: {auth_url: "http://elsewhere/v3"}
  lab:
    region_name: RegionTwo
    interface: 'public'
    identity_api_version: 3
    auth:
      auth_url: ${d.authUrl}   # devstack style
      username: "${d.credentials.username}"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
`,
  );
  writeFileSync(path.join(dir, 'secure.yaml'), `clouds:\n  lab:\n    auth:\n      password: '${d.credentials.password}'\n`);
  const r = loadOpenStackConfig({ OS_CLOUD: 'lab', HOME: '/nonexistent' }, { cwd: dir });
  t.true('config' in r, JSON.stringify(r));
  if (!('config' in r)) return;
  t.is(r.config.source, path.join(dir, 'clouds.yaml'));
  t.is(r.config.regionName, 'RegionTwo');
  const session = createKeystoneSession(r.config);
  t.is(await session.endpoint('compute'), d.endpoints.find((e) => e.region === 'RegionTwo')!.url);

  // OS_* variables fill what the entry leaves out, never override it.
  const filled = loadOpenStackConfig(
    {
      OS_CLOUD: 'other',
      OS_USERNAME: 'u',
      OS_PASSWORD: 'p',
      OS_PROJECT_NAME: 'p',
      OS_USER_DOMAIN_NAME: 'D',
      OS_PROJECT_DOMAIN_NAME: 'D',
      OS_AUTH_URL: 'http://env/v3',
    },
    { cwd: dir },
  );
  t.true('config' in filled && filled.config.authUrl === 'http://elsewhere/v3' && filled.config.username === 'u');

  const partial = loadOpenStackConfig({ OS_CLOUD: 'other' }, { cwd: dir });
  t.true('missing' in partial);
  if ('missing' in partial) {
    t.is(partial.missing[0], `clouds.other.auth.username in ${path.join(dir, 'clouds.yaml')}`);
    t.is(partial.missing.length, 5);
  }
  const unknown = loadOpenStackConfig({ OS_CLOUD: 'nope' }, { cwd: dir });
  t.deepEqual('missing' in unknown && unknown.missing, [`clouds.nope in ${path.join(dir, 'clouds.yaml')}`]);
  const nowhere = loadOpenStackConfig({ OS_CLOUD: 'lab' }, { cloudsYamlPaths: [path.join(dir, 'absent.yaml')] });
  t.true('missing' in nowhere && nowhere.missing[0]!.startsWith('clouds.yaml for OS_CLOUD=lab (looked in'));
});

test('config: the clouds.yaml reader reads block and flow collections, quotes and comments', (t) => {
  t.deepEqual(
    parseCloudsYaml(`---
clouds:
  a:
    regions:
      - RegionOne
      - name: RegionTwo
        values: {x: 1}
    list: [a, "b, c", 'd''e']
    password: "p#ss\\"word"  # comment
    plain: p#ss
    empty:
    n: 0123
`),
    {
      clouds: {
        a: {
          regions: ['RegionOne', { name: 'RegionTwo', values: { x: '1' } }],
          list: ['a', 'b, c', "d'e"],
          password: 'p#ss"word',
          plain: 'p#ss',
          empty: null,
          n: '0123',
        },
      },
    },
  );
  t.deepEqual(parseCloudsYaml('# nothing but a comment\n'), {});
});

test('config: the clouds.yaml reader takes what the OpenStack clients take: escapes, folded and literal scalars, anchors and merge keys', (t) => {
  t.deepEqual(
    parseCloudsYaml(`
defaults: &defaults
  interface: internal
  auth: &auth
    auth_url: http://ctl/identity/v3
    user_domain_name: Default
clouds:
  lab:
    <<: *defaults
    region_name: RegionTwo
    auth:
      <<: *auth
      username: "adm\\u00efn\\tx"
      password: >-
        folded
        pass
      project_name: |
        line one
        line two
  copy:
    auth: *auth
`),
    {
      defaults: { interface: 'internal', auth: { auth_url: 'http://ctl/identity/v3', user_domain_name: 'Default' } },
      clouds: {
        lab: {
          interface: 'internal',
          region_name: 'RegionTwo',
          auth: {
            auth_url: 'http://ctl/identity/v3',
            user_domain_name: 'Default',
            username: 'adm\u00efn\tx',
            password: 'folded pass',
            project_name: 'line one\nline two\n',
          },
        },
        copy: { auth: { auth_url: 'http://ctl/identity/v3', user_domain_name: 'Default' } },
      },
    },
  );
});

test('config: every clouds.yaml value stays the string written; only a plain empty, ~ or null is absent', (t) => {
  const doc = parseCloudsYaml(`
a:
  zero: 0123
  yes: yes
  no: off
  true: True
  float: 1e3
  hex: 0x1F
  date: 2024-05-01
  quoted_null: 'null'
  quoted_empty: ""
  null: null
  tilde: ~
  nothing:
`);
  t.deepEqual(doc, {
    a: {
      zero: '0123',
      yes: 'yes',
      no: 'off',
      true: 'True',
      float: '1e3',
      hex: '0x1F',
      date: '2024-05-01',
      quoted_null: 'null',
      quoted_empty: '',
      null: null,
      tilde: null,
      nothing: null,
    },
  });
});

test('config: a password that YAML 1.1 or the core schema would turn into a number or a boolean is taken as written', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-clouds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cloud = (password: string) => `clouds:
  lab:
    auth:
      auth_url: http://ctl/identity/v3
      username: admin
      password: ${password}
      project_name: 0042
      user_domain_name: Default
      project_domain_name: Default
`;
  for (const [written, expected] of [
    ['0123', '0123'],
    ['yes', 'yes'],
    ['1e3', '1e3'],
    ['"p\\u00e4ss\\"word"', 'p\u00e4ss"word'],
    ['>-\n        long\n        secret', 'long secret'],
  ] as const) {
    writeFileSync(path.join(dir, 'clouds.yaml'), cloud(written));
    const r = loadOpenStackConfig({ OS_CLOUD: 'lab' }, { cwd: dir });
    t.true('config' in r, JSON.stringify(r));
    if (!('config' in r)) continue;
    t.is(r.config.password, expected, written);
    t.is(r.config.projectName, '0042');
  }
  writeFileSync(path.join(dir, 'clouds.yaml'), cloud('~'));
  const absent = loadOpenStackConfig({ OS_CLOUD: 'lab' }, { cwd: dir });
  t.deepEqual('missing' in absent && absent.missing, [`clouds.lab.auth.password in ${path.join(dir, 'clouds.yaml')}`]);
});

test('config: what is not YAML, or is several documents, is refused with its line and without quoting the file', (t) => {
  t.throws(() => parseCloudsYaml('a: 1\n---\nb: 2\n'), { message: /^line 2: .*multiple documents/ });
  t.throws(() => parseCloudsYaml('a:\n  b: 1\n c: 2\n'), { message: /^line 3: / });
  const unterminated = t.throws(() => parseCloudsYaml('clouds:\n  password: "s3cret\n'));
  t.regex(unterminated!.message, /^line \d+: /);
  t.false(unterminated!.message.includes('s3cret'), unterminated!.message);
  t.throws(() => parseCloudsYaml('a: *nowhere\n'), { message: /alias/ });
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-clouds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'clouds.yaml'), 'clouds:\n  lab: {auth: [}\n');
  const r = loadOpenStackConfig({ OS_CLOUD: 'lab' }, { cwd: dir });
  t.true(
    'missing' in r && r.missing.length === 1 && r.missing[0]!.startsWith(`a readable ${path.join(dir, 'clouds.yaml')} (line 2: `),
    JSON.stringify(r),
  );
});
