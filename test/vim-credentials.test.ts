// Every kind of VIM credential Tacker knows: OpenID Connect and the VIM's CA
// certificate register, come back masked as Tacker masks them, replace one
// another the way Tacker's update does, and never reach the database in
// clear; the HTTP probe verifies a VIM's TLS against its CA certificate and
// says so when it does not verify. Real Tacker server and PostgreSQL, real
// HTTPS servers with certificates made by openssl.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status, type Channel } from 'nice-grpc';
import { parseAuthUrl } from '../common/auth-url.js';
import { checkCaCertificates } from '../common/ca-certificates.js';
import { InvalidArgumentError } from '../common/errors.js';
import { registerRequest, vimChange } from '../cli/vim-request.js';
import { httpProbe, probeRound, type ProbeTarget } from '../executor/probe.js';
import { TrustStore } from '../executor/trust.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { ProbeKind, VimServiceDefinition, VimType, type Credentials, type VimServiceClient } from '../gen/vimmon/tacker/v1/vim_service.js';
import { unseal } from '../server/credentials.js';
import { startServer } from '../server/main.js';
import { makeCertificates, type Certificates } from './support/certificates.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { startMesh } from './support/mesh.js';
import { startRecordingExecutor } from './support/recording-executor.js';
import { closedPort } from './support/targets.js';
import { eventually } from './support/wait.js';

const key = Buffer.alloc(32, 9);
const never = new AbortController().signal;

let certs: Certificates;
test.before(() => {
  certs = makeCertificates();
});
test.after.always(() => certs?.remove());

async function setup(t: ExecutionContext) {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const executor = await startRecordingExecutor(logger);
  const server = await startServer({
    logger,
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key,
    reconcileIntervalMs: 60_000,
  });
  const channel: Channel = createChannel(server.address);
  t.teardown(async () => {
    channel.close();
    await server.stop();
    await executor.stop();
  });
  const row = async (id: string) => {
    const [r] = await db.orm.em.fork().getConnection().execute(`select * from vim where id = ?`, [id]);
    return r as Record<string, unknown>;
  };
  return { db, executor, row, client: createClient(VimServiceDefinition, channel) as VimServiceClient };
}

const secrets = { clientSecret: 'oidc-client-s3cret', password: 'end-user-pa55' };

function oidcCredentials(ca = certs.ca.toString()): Credentials {
  return {
    password: undefined,
    token: undefined,
    oidc: {
      oidcTokenUrl: 'https://keycloak.example:8443/realms/oidc/protocol/openid-connect/token',
      clientId: 'tacker',
      clientSecret: secrets.clientSecret,
      username: 'end-user',
      password: secrets.password,
    },
    sslCaCert: ca,
  };
}

const kubernetes = { name: 'k8s-a', type: VimType.VIM_TYPE_KUBERNETES, authUrl: 'https://k8s.example:6443', project: 'default' };

async function grpcError(t: ExecutionContext, p: Promise<unknown>, code: Status, field: string) {
  const err = (await t.throwsAsync(p)) as unknown as { code: Status; details: string };
  t.is(err.code, code, err.details);
  t.true(err.details.startsWith(`${field}:`), `details name ${field}: ${err.details}`);
  return err.details;
}

test('an OIDC VIM with a CA certificate registers; secrets come back "***", the rest as stored, and none is stored in clear', async (t) => {
  const { client, executor, row } = await setup(t);
  const { vim } = await client.registerVim({ ...kubernetes, credentials: oidcCredentials() });
  const expected = {
    oidcTokenUrl: 'https://keycloak.example:8443/realms/oidc/protocol/openid-connect/token',
    clientId: 'tacker',
    clientSecret: '***',
    username: 'end-user',
    password: '***',
  };
  t.deepEqual(vim!.credentials!.oidc, expected);
  t.is(vim!.credentials!.sslCaCert, certs.ca.toString());
  t.is(vim!.credentials!.password, undefined);
  t.is(vim!.credentials!.token, undefined);
  for (const seen of [(await client.getVim({ id: vim!.id })).vim!, (await client.listVims({})).vims[0]!]) {
    t.deepEqual(seen.credentials!.oidc, expected);
    t.is(seen.credentials!.sslCaCert, certs.ca.toString());
  }
  const stored = await row(vim!.id);
  t.is(stored.credentials_kind, 'oidc');
  const text = JSON.stringify(stored);
  t.false(text.includes(secrets.clientSecret));
  t.false(text.includes(secrets.password));
  // The executor is given the CA certificate and nothing secret.
  t.is(executor.starts.length, 1);
  t.is(executor.starts[0]!.sslCaCert, certs.ca.toString());
  t.false(JSON.stringify(executor.starts[0]).includes(secrets.password));
});

test('a public OIDC client (no secret) comes back with an empty client_secret; a token comes back "***"', async (t) => {
  const { client } = await setup(t);
  const c = oidcCredentials('');
  c.oidc!.clientSecret = '';
  const { vim } = await client.registerVim({ ...kubernetes, credentials: c });
  t.is(vim!.credentials!.oidc!.clientSecret, '');
  t.is(vim!.credentials!.oidc!.password, '***');
  t.is(vim!.credentials!.sslCaCert, '');
  const token = await client.registerVim({
    ...kubernetes,
    name: 'k8s-token',
    credentials: { token: { bearerToken: 'eyJhbGciOi.sa-token' }, sslCaCert: certs.ca.toString() },
  });
  t.deepEqual(token.vim!.credentials!.token, { bearerToken: '***' });
  t.is(token.vim!.credentials!.sslCaCert, certs.ca.toString());
});

test('bad OIDC fields and bad CA certificates get INVALID_ARGUMENT naming the field, and nothing is written', async (t) => {
  const { client, db } = await setup(t);
  const register = (mutate: (c: Credentials) => void, type = VimType.VIM_TYPE_KUBERNETES) => {
    const c = oidcCredentials();
    mutate(c);
    return client.registerVim({ ...kubernetes, type, credentials: c });
  };
  await grpcError(
    t,
    register((c) => (c.oidc!.clientId = '')),
    Status.INVALID_ARGUMENT,
    'credentials.oidc.client_id',
  );
  await grpcError(
    t,
    register((c) => (c.oidc!.username = '')),
    Status.INVALID_ARGUMENT,
    'credentials.oidc.username',
  );
  await grpcError(
    t,
    register((c) => (c.oidc!.password = '')),
    Status.INVALID_ARGUMENT,
    'credentials.oidc.password',
  );
  t.regex(
    await grpcError(
      t,
      register((c) => (c.oidc!.clientSecret = '***')),
      Status.INVALID_ARGUMENT,
      'credentials.oidc.client_secret',
    ),
    /is the mask/,
  );
  await grpcError(
    t,
    register((c) => (c.oidc!.oidcTokenUrl = 'ftp://idp/token')),
    Status.INVALID_ARGUMENT,
    'credentials.oidc.oidc_token_url',
  );
  await grpcError(
    t,
    register((c) => (c.oidc!.oidcTokenUrl = 'http://169.254.169.254/token')),
    Status.INVALID_ARGUMENT,
    'credentials.oidc.oidc_token_url',
  );
  await grpcError(
    t,
    register(() => {}, VimType.VIM_TYPE_OPENSTACK),
    Status.INVALID_ARGUMENT,
    'credentials.oidc',
  );
  await grpcError(
    t,
    register((c) => (c.token = { bearerToken: 'x' })),
    Status.INVALID_ARGUMENT,
    'credentials',
  );
  const pem = certs.ca.toString();
  const badCa: Array<[string, RegExp]> = [
    ['not a certificate at all', /only PEM certificates/],
    [
      `-----BEGIN CERTIFICATE-----\n${pem.split('\n').slice(1, 3).join('\n')}\n-----END CERTIFICATE-----\n`,
      /certificate 1 is not a valid X.509 certificate/,
    ],
    [`${pem}\n${certs.key.toString()}`, /only PEM certificates/],
    [`garbage before\n${pem}`, /only PEM certificates/],
    [Array(17).fill(pem).join(''), /more than 16 certificates/],
    [`${pem}${' '.repeat(64 * 1024)}`, /longer than 65536 bytes/],
  ];
  for (const [text, reason] of badCa) {
    const details = await grpcError(
      t,
      register((c) => (c.sslCaCert = text)),
      Status.INVALID_ARGUMENT,
      'credentials.ssl_ca_cert',
    );
    t.regex(details, reason);
  }
  const [{ n }] = await db.orm.em.fork().getConnection().execute(`select count(*)::int as n from vim`);
  t.is(n, 0);
});

test("changing the kind removes the old kind's fields and keeps the CA certificate; `credentials` replaces all; each change restarts the action", async (t) => {
  const { client, executor, row } = await setup(t);
  const { vim } = await client.registerVim({ ...kubernetes, credentials: oidcCredentials() });
  const id = vim!.id;
  const opened = async () => {
    const r = await row(id);
    return { kind: r.credentials_kind, plain: unseal(r.credentials_sealed as string, key, id) };
  };

  // OIDC → token, by its kind path: the OIDC fields go, the CA certificate stays (Tacker's update).
  const token = await client.updateVim({
    vim: { id, credentials: { token: { bearerToken: 'sa-token-1' }, sslCaCert: '' } },
    updateMask: ['credentials.token'],
  });
  t.deepEqual(token.vim!.credentials!.token, { bearerToken: '***' });
  t.is(token.vim!.credentials!.oidc, undefined);
  t.is(token.vim!.credentials!.sslCaCert, certs.ca.toString());
  t.deepEqual(await opened(), { kind: 'token', plain: { kind: 'token', bearerToken: 'sa-token-1', sslCaCert: certs.ca.toString() } });
  t.is(executor.starts.length, 2);
  t.is(executor.starts[1]!.sslCaCert, certs.ca.toString());

  // Token → password, by the camelCase path too.
  await client.updateVim({
    vim: {
      id,
      credentials: { password: { username: 'u', password: 'pw-2', userDomainName: '', projectDomainName: '' }, sslCaCert: '' },
    },
    updateMask: ['credentials.password'],
  });
  const afterPassword = await opened();
  t.is(afterPassword.kind, 'password');
  t.is(afterPassword.plain.bearerToken, undefined);
  t.is(afterPassword.plain.sslCaCert, certs.ca.toString());

  // Only the CA certificate: the kind and its secret stay.
  const other = certs.stranger.cert.toString();
  await client.updateVim({ vim: { id, credentials: { sslCaCert: other } }, updateMask: ['credentials.sslCaCert'] });
  const afterCa = await opened();
  t.is(afterCa.plain.password, 'pw-2');
  t.is(afterCa.plain.sslCaCert, other);
  t.is(executor.starts.at(-1)!.sslCaCert, other);

  // `credentials` replaces the whole message: a token and no CA certificate.
  await client.updateVim({
    vim: { id, credentials: { token: { bearerToken: 'sa-token-2' }, sslCaCert: '' } },
    updateMask: ['credentials'],
  });
  t.deepEqual((await opened()).plain, { kind: 'token', bearerToken: 'sa-token-2' });
  t.is(executor.starts.at(-1)!.sslCaCert, '');

  // The same credentials again change nothing: no new action.
  const starts = executor.starts.length;
  await client.updateVim({
    vim: { id, credentials: { token: { bearerToken: 'sa-token-2' }, sslCaCert: '' } },
    updateMask: ['credentials'],
  });
  t.is(executor.starts.length, starts);

  // Bad combinations are refused before anything changes.
  await grpcError(
    t,
    client.updateVim({ vim: { id, credentials: { sslCaCert: 'nope' } }, updateMask: ['credentials.ssl_ca_cert'] }),
    Status.INVALID_ARGUMENT,
    'vim.credentials.ssl_ca_cert',
  );
  await grpcError(
    t,
    client.updateVim({ vim: { id, credentials: { sslCaCert: '' } }, updateMask: ['credentials.oidc'] }),
    Status.INVALID_ARGUMENT,
    'vim.credentials.oidc',
  );
  await grpcError(
    t,
    client.updateVim({ vim: { id }, updateMask: ['credentials', 'credentials.token'] }),
    Status.INVALID_ARGUMENT,
    'update_mask',
  );
  await client.updateVim({ vim: { id, credentials: oidcCredentials() }, updateMask: ['credentials.oidc'] });
  await grpcError(
    t,
    client.updateVim({ vim: { id, type: VimType.VIM_TYPE_OPENSTACK }, updateMask: ['type'] }),
    Status.INVALID_ARGUMENT,
    'vim.type',
  );
  t.is((await opened()).kind, 'oidc');
});

test('CA certificates: one or several PEM blocks pass as given; anything else is refused naming the field', (t) => {
  const two = `${certs.ca.toString()}\n${certs.stranger.cert.toString()}`;
  t.is(checkCaCertificates(two, 'f'), two);
  const err = t.throws(() => checkCaCertificates('', 'x.ssl_ca_cert'));
  t.true(err instanceof InvalidArgumentError);
  t.is((err as InvalidArgumentError).field, 'x.ssl_ca_cert');
});

// --- the HTTP probe against the VIM's CA ----------------------------------------------

async function httpsServer(t: ExecutionContext, cert: Buffer, certKey: Buffer): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = https.createServer({ cert, key: certKey }, (_req, res) => {
    hits++;
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"error":{"code":401}}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/v3`, hits: () => hits };
}

test('http probe: with the VIM CA an https VIM verifies; a certificate of another CA fails as "certificate verify failed", once per round', async (t) => {
  const trust = new TrustStore();
  const good = await httpsServer(t, certs.cert, certs.key);
  const foreign = await httpsServer(t, certs.stranger.cert, certs.stranger.key);
  const target = (url: string, pem?: string): ProbeTarget => ({ ...parseAuthUrl(url), trust: pem ? trust.trust(pem) : undefined });
  const round = (tgt: ProbeTarget) => probeRound(httpProbe, tgt, { count: 3, timeoutMs: 5_000 }, never);

  const verified = await round(target(good.url, certs.ca.toString()));
  t.true(verified.ok, verified.error);
  t.is(good.hits(), 1);

  const rejected = await round(target(foreign.url, certs.ca.toString()));
  t.false(rejected.ok);
  t.regex(rejected.error, /^certificate verify failed: .+ \([A-Z_]+\)$/);
  t.is(rejected.attempts, 1, 'the same certificate comes back: no second attempt');
  t.is(foreign.hits(), 0, 'no request is sent to a VIM that did not verify');

  // A CA that did not sign the server's certificate is refused too.
  const wrongCa = await round(target(good.url, certs.stranger.cert.toString()));
  t.regex(wrongCa.error, /^certificate verify failed: /);

  // Without a CA: today's reachability-only behaviour.
  const unverified = await round(target(foreign.url));
  t.true(unverified.ok, unverified.error);

  // A refused connection stays a refused connection.
  const closed = new URL(good.url);
  closed.port = String(await closedPort());
  const refused = await round(target(closed.href, certs.ca.toString()));
  t.false(refused.ok);
  t.regex(refused.error, /ECONNREFUSED/);
  t.notRegex(refused.error, /certificate/);
  t.is(refused.attempts, 3);

  // Actions with the same CA share one TLS context.
  t.is(trust.trust(certs.ca.toString()), trust.trust(certs.ca.toString()));
});

test('through the mesh: an https VIM with its CA turns REACHABLE, one with a foreign certificate UNREACHABLE with the reason in its round', async (t) => {
  const mesh = await startMesh(t);
  const good = await httpsServer(t, certs.cert, certs.key);
  const foreign = await httpsServer(t, certs.stranger.cert, certs.stranger.key);
  const monitor = {
    probe: ProbeKind.PROBE_KIND_HTTP,
    interval: { seconds: 0, nanos: 500_000_000 },
    timeout: { seconds: 0, nanos: 400_000_000 },
  };
  const credentials = { sslCaCert: certs.ca.toString() };
  const a = await mesh.vims().registerVim({ name: 'trusted', authUrl: good.url, monitor, credentials });
  const b = await mesh.vims().registerVim({ name: 'impostor', authUrl: foreign.url, monitor, credentials });
  t.is(a.vim!.credentials!.sslCaCert, certs.ca.toString());
  t.is(a.vim!.credentials!.password, undefined);
  const status = async (id: string) => (await mesh.vims().getVim({ id })).vim!.status;
  await eventually(async () => (await status(a.vim!.id)) === VimStatus.VIM_STATUS_REACHABLE, 20_000, 'the trusted VIM REACHABLE');
  await eventually(async () => (await status(b.vim!.id)) === VimStatus.VIM_STATUS_UNREACHABLE, 20_000, 'the impostor UNREACHABLE');
  const { actions } = await mesh.executorClient(0).listActions({ vimIds: [b.vim!.id] });
  t.regex(actions[0]!.lastRound!.error, /^certificate verify failed: /);

  // The executor checks what it is given, too.
  const err = (await t.throwsAsync(
    mesh.executorClient(0).startAction({
      actionId: '0b5c6f4e-8d7a-4c1b-9e2f-3a4b5c6d7e8f',
      vimId: a.vim!.id,
      authUrl: good.url,
      sslCaCert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    }),
  )) as unknown as { code: Status; details: string };
  t.is(err.code, Status.INVALID_ARGUMENT);
  t.regex(err.details, /^ssl_ca_cert: /);
});

test("the command line reads Tacker's OIDC vim.yaml with ssl_ca_cert, and --ssl-ca-cert-file on update changes only the CA", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-vimyaml-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'vim.yaml');
  const indented = certs.ca.toString().trimEnd().split('\n').join('\n  ');
  writeFileSync(
    file,
    [
      'auth_url: "https://127.0.0.1:6443"',
      'project_name: "default"',
      'oidc_token_url: "https://127.0.0.1:8443/realms/oidc/protocol/openid-connect/token"',
      'username: "end-user"',
      'password: "end-user"',
      'client_id: "tacker"',
      'client_secret: "K0Zp5dvdOFhZ7W9PVNZn14omW9NmCQvQ"',
      `ssl_ca_cert: |\n  ${indented}`,
      'type: "kubernetes"',
      '',
    ].join('\n'),
  );
  const io = { out() {}, err() {}, env: {}, tty: false };
  const request = await registerRequest(io, 'k8s-oidc', { configFile: file });
  t.is(request.type, VimType.VIM_TYPE_KUBERNETES);
  t.deepEqual(request.credentials!.oidc, {
    oidcTokenUrl: 'https://127.0.0.1:8443/realms/oidc/protocol/openid-connect/token',
    clientId: 'tacker',
    clientSecret: 'K0Zp5dvdOFhZ7W9PVNZn14omW9NmCQvQ',
    username: 'end-user',
    password: 'end-user',
  });
  t.is(request.credentials!.sslCaCert!.trim(), certs.ca.toString().trim());
  checkCaCertificates(request.credentials!.sslCaCert!, 'ssl_ca_cert');

  writeFileSync(path.join(dir, 'ca.pem'), certs.ca);
  const change = await vimChange(io, [], { sslCaCertFile: path.join(dir, 'ca.pem') });
  t.deepEqual(change.paths, ['credentials.ssl_ca_cert']);
  const rotate = await vimChange(io, [], { bearerTokenEnv: 'T' }).catch((e: Error) => e);
  t.regex(String(rotate), /T is not set/);
  const withToken = await vimChange({ ...io, env: { T: 'sa-token' } }, [], { bearerTokenEnv: 'T' });
  t.deepEqual(withToken.paths, ['credentials.token']);
});
