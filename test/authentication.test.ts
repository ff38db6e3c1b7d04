// How callers prove who they are: Keystone tokens validated as keystonemiddleware
// does (cached, re-checked, revocation felt within the re-check period), static
// tokens from a file, SPIFFE certificates; and the start-up rules that keep a
// deployment secure unless told otherwise.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ClientError, Metadata, Status } from 'nice-grpc';
import { createAuth } from '../common/auth/authenticator.js';
import { createPolicy, parsePolicyFile } from '../common/auth/policy.js';
import { loadSecuritySettings, prepareSecurity } from '../common/auth/setup.js';
import { principalOfSpiffeId, spiffeIdOf } from '../common/auth/spiffe.js';
import { createStaticTokens, hashToken, parseStaticTokens } from '../common/auth/static-tokens.js';
import { msToDuration } from '../common/duration.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createClient, projectA, startSecureMesh } from './support/secure-mesh.js';
import { openTcpTarget } from './support/targets.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return Status[(err as ClientError).code];
  }
};

test('Keystone tokens: roles and project from Keystone, cached, and a revoked or expired token refused within the re-check period', async (t) => {
  const mesh = await startSecureMesh(t, { keystoneRevalidateMs: 1_000 });
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const admin = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.admin) },
  });
  const { vim } = await admin.registerVim({ name: 'ks', authUrl: target.url, ownerProject: projectA });
  const vims = (token: string) =>
    createClient(VimServiceDefinition, mesh.channel(mesh.server.address), { '*': { metadata: Metadata({ 'x-auth-token': token }) } });

  const reader = mesh.keystone.issueToken({ userName: 'alice', projectId: projectA, roles: ['reader'] });
  const otherProject = mesh.keystone.issueToken({ userName: 'bob', projectId: 'proj-b', roles: ['member'] });
  const ksAdmin = mesh.keystone.issueToken({ userName: 'carol', projectId: 'admin-project', roles: ['admin'] });
  t.is(await codeOf(vims(reader).getVim({ id: vim!.id })), 'OK');
  t.is(
    await codeOf(vims(reader).updateVim({ vim: { id: vim!.id, description: 'x' }, updateMask: ['description'] })),
    'PERMISSION_DENIED',
    'reader may not write',
  );
  t.is(await codeOf(vims(otherProject).getVim({ id: vim!.id })), 'PERMISSION_DENIED');
  t.is(await codeOf(vims(ksAdmin).getVim({ id: vim!.id })), 'OK');
  // Bearer works as well as X-Auth-Token.
  const bearer = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), { '*': { metadata: mesh.bearer(reader) } });
  t.is(await codeOf(bearer.getVim({ id: vim!.id })), 'OK');

  // Revoked: refused once the re-check period has passed.
  mesh.keystone.revokeToken(reader);
  await eventually(async () => (await codeOf(vims(reader).getVim({ id: vim!.id }))) === 'UNAUTHENTICATED', 3_000, 'revocation felt');

  // Expired.
  const shortLived = mesh.keystone.issueToken({ userName: 'dave', projectId: projectA, roles: ['reader'], ttlMs: 400 });
  t.is(await codeOf(vims(shortLived).getVim({ id: vim!.id })), 'OK');
  await new Promise((r) => setTimeout(r, 500));
  t.is(await codeOf(vims(shortLived).getVim({ id: vim!.id })), 'UNAUTHENTICATED');
  t.is(await codeOf(vims('gAAAA-made-up').getVim({ id: vim!.id })), 'UNAUTHENTICATED');
});

test('Keystone tokens are cached: a burst of calls costs Keystone one validation', async (t) => {
  const mesh = await startSecureMesh(t);
  const inspector = (token: string) =>
    createClient(InspectorServiceDefinition, mesh.channel(mesh.inspector.address), { '*': { metadata: mesh.bearer(token) } });
  const token = mesh.keystone.issueToken({ userName: 'erin', projectId: projectA, roles: ['reader'] });
  const before = mesh.keystone.validations;
  await Promise.all(Array.from({ length: 20 }, () => inspector(token).listAlarms({})));
  for (let i = 0; i < 20; i++) await inspector(token).listAlarms({});
  t.is(mesh.keystone.validations, before + 1, 'one validation for forty calls, concurrent ones included');
});

test('Keystone unreachable: a token due for a check gets UNAVAILABLE, never trusted unchecked', async (t) => {
  const mesh = await startSecureMesh(t, { keystoneRevalidateMs: 200 });
  const reader = mesh.keystone.issueToken({ userName: 'alice', projectId: projectA, roles: ['reader'] });
  const inspector = createClient(InspectorServiceDefinition, mesh.channel(mesh.inspector.address), {
    '*': { metadata: mesh.bearer(reader) },
  });
  t.is(await codeOf(inspector.listAlarms({})), 'OK');
  await mesh.keystone.close();
  await new Promise((r) => setTimeout(r, 300));
  t.is(await codeOf(inspector.listAlarms({})), 'UNAVAILABLE');
});

test('streams per principal are capped; other principals are not affected', async (t) => {
  const mesh = await startSecureMesh(t, { streamsPerPrincipal: 2 });
  const as = (token: string) =>
    createClient(InspectorServiceDefinition, mesh.channel(mesh.inspector.address), { '*': { metadata: mesh.bearer(token) } });
  const admin = as(mesh.tokens.admin);
  const open: AbortController[] = [];
  t.teardown(() => {
    for (const a of open) a.abort();
  });
  /** Opens a stream; resolves to its error code if it ends, never otherwise. */
  const subscribe = (token: string) => {
    const ac = new AbortController();
    open.push(ac);
    const it = as(token).subscribeAlarms({ liveOnly: true }, { signal: ac.signal })[Symbol.asyncIterator]();
    return it.next().then(
      () => 'message',
      (err: unknown) => (err instanceof ClientError ? Status[err.code] : String(err)),
    );
  };
  const subscribers = async () => (await admin.getStatus({})).subscribers;
  void subscribe(mesh.tokens.readerA);
  void subscribe(mesh.tokens.readerA);
  await eventually(async () => (await subscribers()) === 2, 10_000, 'two streams of readerA');
  t.is(await subscribe(mesh.tokens.readerA), 'RESOURCE_EXHAUSTED', 'a third is refused');
  void subscribe(mesh.tokens.admin);
  await eventually(async () => (await subscribers()) === 3, 10_000, 'another principal still may');
  open[0]!.abort();
  await eventually(async () => (await subscribers()) === 2, 10_000, 'a stream ends');
  void subscribe(mesh.tokens.readerA);
  await eventually(async () => (await subscribers()) === 3, 10_000, 'its place is free again');
});

test('static tokens: the file keeps hashes only; bad entries are named', (t) => {
  const entries = parseStaticTokens(
    `tokens:\n  - name: dash\n    sha256: ${hashToken('s3cret')}\n    roles: [reader]\n    projects: [p1]\n`,
    'tokens.yaml',
  );
  const tokens = createStaticTokens(entries);
  t.like(tokens.lookup('s3cret'), { kind: 'token', name: 'token:dash', projects: ['p1'] });
  t.true(tokens.lookup('s3cret')!.roles.has('reader'));
  t.is(tokens.lookup('S3cret'), undefined);
  t.throws(() => parseStaticTokens(`- name: x\n  sha256: abc\n  roles: [reader]\n  projects: [p]\n`, 'f'), {
    message: /^f: tokens\[0\]\.sha256/,
  });
  t.throws(() => parseStaticTokens(`- name: x\n  sha256: ${hashToken('a')}\n  roles: [root]\n`, 'f'), {
    message: /tokens\[0\]\.roles: unknown role "root"/,
  });
  t.throws(() => parseStaticTokens(`- name: x\n  sha256: ${hashToken('a')}\n  roles: [member]\n`, 'f'), {
    message: /tokens\[0\]\.projects/,
  });
});

test('SPIFFE ids: one vimmon role in our trust domain, nothing for anything else', (t) => {
  t.is(
    spiffeIdOf('DNS:localhost, URI:spiffe://vimmon.local/vimmon/executor, IP Address:127.0.0.1'),
    'spiffe://vimmon.local/vimmon/executor',
  );
  t.is(spiffeIdOf('URI:spiffe://a/vimmon/server, URI:spiffe://a/vimmon/executor'), undefined, 'two ids: none');
  t.true(principalOfSpiffeId('spiffe://vimmon.local/vimmon/executor', 'vimmon.local').roles.has('service:executor'));
  t.is(principalOfSpiffeId('spiffe://elsewhere/vimmon/executor', 'vimmon.local').roles.size, 0);
  t.is(principalOfSpiffeId('spiffe://vimmon.local/vimmon/root', 'vimmon.local').roles.size, 0);
  t.true(principalOfSpiffeId('spiffe://vimmon.local/vimmon/monitor', 'vimmon.local').roles.has('monitor'));
});

test('policy file: rules overridden by name, typos refused', async (t) => {
  const policy = createPolicy(
    parsePolicyFile(`grpc.health.v1.Health/*: authenticated\nvimmon.inspector.v1.InspectorService/GetStatus: [admin, reader]\n`, 'p.yaml'),
  );
  t.false(policy.isOpen('grpc.health.v1.Health/Check'));
  const auth = createAuth({
    mode: 'enforced',
    policy,
    staticTokens: createStaticTokens([{ name: 'r', sha256: hashToken('t'), roles: ['reader'], projects: ['p'] }]),
  });
  t.like(await auth.authorize('vimmon.inspector.v1.InspectorService/GetStatus', { authorization: 'Bearer t' }), { name: 'token:r' });
  await t.throwsAsync(auth.authorize('grpc.health.v1.Health/Check', {}), { name: 'UnauthenticatedError' });
  t.throws(() => parsePolicyFile(`vimmon.tacker.v1.VimService/GetVm: [admin]\n`, 'p.yaml'), {
    message: /unknown rule "vimmon.tacker.v1.VimService\/GetVm"/,
  });
  t.throws(() => parsePolicyFile(`vimmon.tacker.v1.VimService/GetVim: [root]\n`, 'p.yaml'), { message: /unknown grant "root"/ });
  // A method the table does not know is refused to everyone but development mode.
  await t.throwsAsync(createAuth({ mode: 'enforced' }).authorize('vimmon.x.v1.New/Call', { authorization: 'Bearer t' }), {
    name: 'UnauthenticatedError',
  });
});

test('secure unless told otherwise: beyond loopback without TLS and authentication a role refuses to start, naming the variable', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-sec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const logger = {
    ...testLogger(),
    warn: (m: string) => void lines.push(m),
    info: () => {},
    debug: () => {},
    error: () => {},
    child: () => logger,
  } as never;
  const prepare = (env: NodeJS.ProcessEnv, addresses: Record<string, string>) =>
    prepareSecurity({ settings: loadSecuritySettings(env), tlsFiles: {}, addresses, env, logger });

  const dev = prepare({}, { VIMMON_SERVER_ADDR: '127.0.0.1:50051', VIMMON_INSPECTOR_HTTP_ADDR: 'localhost:12345' });
  t.is(dev.auth.mode, 'development');
  t.true(
    lines.some((l) => /development mode/.test(l)),
    'says so in its log',
  );

  t.throws(() => prepare({}, { VIMMON_CONDUCTOR_ADDR: '0.0.0.0:50052' }), {
    message: /VIMMON_CONDUCTOR_ADDR=0\.0\.0\.0:50052 is not a loopback address.*VIMMON_INSECURE=true/,
  });
  const tokens = path.join(dir, 'tokens.yaml');
  writeFileSync(tokens, `- name: a\n  sha256: ${hashToken('x')}\n  roles: [admin]\n`);
  t.throws(
    () => prepare({ VIMMON_AUTH_TOKENS_FILE: tokens }, { VIMMON_SERVER_ADDR: '10.0.0.5:50051' }),
    { message: /TLS \(VIMMON_TLS_DIR/ },
    'tokens in clear on a network: refused',
  );
  lines.length = 0;
  const insecure = prepare({ VIMMON_INSECURE: 'true' }, { VIMMON_SERVER_ADDR: '0.0.0.0:50051' });
  t.is(insecure.auth.mode, 'development');
  t.true(
    lines.some((l) => /VIMMON_INSECURE=true/.test(l)),
    'warns at every start',
  );
  t.throws(() => loadSecuritySettings({ VIMMON_INSECURE: 'maybe' }), { message: /^VIMMON_INSECURE: expected true or false/ });
  const enforced = prepare({ VIMMON_AUTH_TOKENS_FILE: tokens }, { VIMMON_SERVER_ADDR: '127.0.0.1:50051' });
  t.is(enforced.auth.mode, 'enforced');
  t.truthy(enforced.serviceTokenFor('server'), 'roles of one process reach each other with a token of the process');
});

test('regressions: a stranger cannot forge a report, stop an action, fake a host fault or read action ids', async (t) => {
  const mesh = await startSecureMesh(t);
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const admin = createClient(VimServiceDefinition, mesh.channel(mesh.server.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.admin) },
  });
  const { vim } = await admin.registerVim({
    name: 'real',
    authUrl: target.url,
    ownerProject: projectA,
    monitor: { interval: msToDuration(200), timeout: msToDuration(100), reportInterval: msToDuration(300) },
  });
  await eventually(async () => (await admin.getVim({ id: vim!.id })).vim!.status === 2, 5_000, 'REACHABLE');
  const { actionId } = (await admin.getVim({ id: vim!.id })).vim!;
  const { VimMonitorAction2ConductorDefinition } = await import('../gen/vimmon/conductor/v1/conductor.js');
  const { ExecutorServiceDefinition } = await import('../gen/vimmon/executor/v1/executor_service.js');
  for (const cert of [undefined, mesh.certs.noRole, mesh.certs.role('server'), mesh.certs.otherTrustDomain]) {
    const conductor = createClient(VimMonitorAction2ConductorDefinition, mesh.channel(mesh.conductor.address, cert));
    t.not(await codeOf(conductor.updateVim({ vimId: vim!.id, actionId, status: 3 })), 'OK', 'only an executor may report');
  }
  for (const cert of [undefined, mesh.certs.noRole, mesh.certs.role('executor'), mesh.certs.otherTrustDomain]) {
    const executor = createClient(ExecutorServiceDefinition, mesh.channel(mesh.executor.address, cert));
    t.not(await codeOf(executor.stopAction({ actionId })), 'OK', 'only the server may stop an action');
    t.not(await codeOf(executor.listActions({})), 'OK', 'nor read the action ids');
  }
  await new Promise((r) => setTimeout(r, 400));
  t.is((await admin.getVim({ id: vim!.id })).vim!.status, 2, 'still REACHABLE: no lie was stored');
  const running = await createClient(ExecutorServiceDefinition, mesh.channel(mesh.executor.address, mesh.certs.role('server'))).listActions(
    {},
  );
  t.true(
    running.actions.some((a) => a.actionId === actionId),
    'the real action runs on',
  );
  // Doctor's endpoint: a fake host-down without a monitor's credential is refused before its body is read.
  const inspector = createClient(InspectorServiceDefinition, mesh.channel(mesh.inspector.address), {
    '*': { metadata: mesh.bearer(mesh.tokens.admin) },
  });
  t.is((await inspector.getStatus({})).eventsReceived, 0);
  const status = await new Promise<number>((resolve, reject) => {
    const [host, port] = mesh.inspector.httpAddress.split(':');
    import('node:https').then(({ request }) => {
      const req = request({ host, port: Number(port), path: '/events', method: 'PUT', ca: mesh.certs.ca }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(JSON.stringify([{ type: 'compute.host.down', details: { hostname: 'compute-1', status: 'down' } }]));
    }, reject);
  });
  t.is(status, 401);
  t.is((await inspector.getStatus({})).eventsReceived, 0, 'nothing reached the fault handler');
});
