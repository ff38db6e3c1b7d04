// The Keystone double validates tokens over real HTTP as Keystone does for
// keystonemiddleware: GET/HEAD /v3/auth/tokens with the service's token in
// X-Auth-Token and the checked one in X-Subject-Token, DELETE to revoke.
import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';

interface TokenDoc {
  methods: string[];
  user: { id: string; name: string; domain: { id: string; name: string } };
  project?: { id: string; name: string; domain: { id: string; name: string } };
  roles?: Array<{ id: string; name: string }>;
  expires_at: string;
  issued_at: string;
  audit_ids: string[];
  is_domain?: boolean;
  catalog?: Array<{ type: string; endpoints: Array<{ interface: string; url: string }> }>;
}

async function double(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

/** The service's own token, by password, as keystonemiddleware gets it. */
async function serviceToken(d: OpenStackDouble): Promise<string> {
  const res = await fetch(`${d.authUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ['password'],
          password: {
            user: { name: d.credentials.username, password: d.credentials.password, domain: { name: d.credentials.userDomainName } },
          },
        },
        scope: { project: { name: d.credentials.projectName, domain: { name: d.credentials.projectDomainName } } },
      },
    }),
  });
  if (res.status !== 201) throw new Error(`password auth: ${res.status}`);
  return res.headers.get('x-subject-token')!;
}

function check(d: OpenStackDouble, authToken: string | undefined, subject: string, options: { method?: string; query?: string } = {}) {
  const headers: Record<string, string> = { 'X-Subject-Token': subject };
  if (authToken !== undefined) headers['X-Auth-Token'] = authToken;
  return fetch(`${d.authUrl}/auth/tokens${options.query ?? ''}`, { method: options.method ?? 'GET', headers });
}

test('a valid token: 200, X-Subject-Token echoed, the token document with user, project, roles and catalog', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const projectId = 'f'.repeat(32);
  const token = d.issueToken({ userName: 'alice', projectId, projectName: 'tenant-a', roles: ['member', 'reader'] });
  const res = await check(d, service, token);
  t.is(res.status, 200);
  t.is(res.headers.get('x-subject-token'), token);
  t.regex(res.headers.get('content-type') ?? '', /application\/json/);
  const doc = ((await res.json()) as { token: TokenDoc }).token;
  t.deepEqual(doc.methods, ['password']);
  t.is(doc.user.name, 'alice');
  t.regex(doc.user.id, /^[0-9a-f]{32}$/);
  t.deepEqual(doc.user.domain, { id: 'default', name: 'Default' });
  t.deepEqual(doc.project, { id: projectId, name: 'tenant-a', domain: { id: 'default', name: 'Default' } });
  t.deepEqual(
    doc.roles!.map((r) => r.name),
    ['member', 'reader'],
  );
  t.true(doc.roles!.every((r) => /^[0-9a-f]{32}$/.test(r.id)));
  t.is(doc.is_domain, false);
  t.is(doc.audit_ids.length, 1);
  t.true(Date.parse(doc.expires_at) > Date.now() + 50 * 60_000, 'an hour by default');
  t.true(Date.parse(doc.issued_at) <= Date.now());
  t.truthy(doc.catalog!.find((s) => s.type === 'compute')!.endpoints.find((e) => e.url === d.computeUrl));
  t.is(d.validations, 1);

  // The same user has the same id; role ids are stable per name.
  const again = d.issueToken({ userName: 'alice', projectId: 'e'.repeat(32), roles: ['member'] });
  const doc2 = ((await (await check(d, service, again)).json()) as { token: TokenDoc }).token;
  t.is(doc2.user.id, doc.user.id);
  t.is(doc2.project!.name, 'project-eeeeeeee');
  t.deepEqual(doc2.roles, [doc.roles![0]]);

  // A token from POST validates too, with the same shape POST returned.
  const own = await check(d, service, service);
  const ownDoc = ((await own.json()) as { token: TokenDoc }).token;
  t.deepEqual(ownDoc.roles!.map((r) => r.name).sort(), ['admin', 'member']);
  t.is(ownDoc.project!.id, d.projectId);
  t.is(d.validations, 3);
});

test('?nocatalog leaves the catalog out', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'bob', projectId: 'a'.repeat(32), roles: ['reader'] });
  const res = await check(d, service, token, { query: '?nocatalog' });
  t.is(res.status, 200);
  const doc = ((await res.json()) as { token: TokenDoc }).token;
  t.false('catalog' in doc);
  t.deepEqual(
    doc.roles!.map((r) => r.name),
    ['reader'],
  );
});

test("an unknown subject token: 404 with Keystone's error body", async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const res = await check(d, service, 'gAAAAnot-a-token');
  t.is(res.status, 404);
  t.deepEqual(await res.json(), { error: { code: 404, title: 'Not Found', message: 'Could not find token: gAAAAnot-a-token.' } });
  t.is(d.validations, 1);
});

test('a revoked token: 404 on validation and 401 on Nova; revokeTokens() ends them all', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'carol', projectId: 'b'.repeat(32), roles: ['member'] });
  t.is((await check(d, service, token)).status, 200);
  d.revokeToken(token);
  const res = await check(d, service, token);
  t.is(res.status, 404);
  t.regex(((await res.json()) as { error: { message: string } }).error.message, /^Could not find token: /);
  const nova = await fetch(`${d.computeUrl}/servers/detail`, { headers: { 'X-Auth-Token': token } });
  t.is(nova.status, 401);
  await nova.body?.cancel();

  const other = d.issueToken({ userName: 'carol', projectId: 'b'.repeat(32), roles: ['member'] });
  d.revokeTokens();
  t.is((await check(d, service, other)).status, 401, 'the service token is revoked as well');
});

test('DELETE /v3/auth/tokens revokes: 204, then 404', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'dave', projectId: 'c'.repeat(32), roles: ['member'] });
  const del = await fetch(`${d.authUrl}/auth/tokens`, { method: 'DELETE', headers: { 'X-Auth-Token': service, 'X-Subject-Token': token } });
  t.is(del.status, 204);
  t.is(await del.text(), '');
  t.is((await check(d, service, token)).status, 404);
  const again = await fetch(`${d.authUrl}/auth/tokens`, {
    method: 'DELETE',
    headers: { 'X-Auth-Token': service, 'X-Subject-Token': token },
  });
  t.is(again.status, 404);
  await again.body?.cancel();
  const anonymous = await fetch(`${d.authUrl}/auth/tokens`, { method: 'DELETE', headers: { 'X-Subject-Token': service } });
  t.is(anonymous.status, 401);
  await anonymous.body?.cancel();
  t.is(d.validations, 1, 'DELETE is not a validation');
});

test('an expired token is 404, and an expired service token is 401', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'erin', projectId: 'd'.repeat(32), roles: ['member'], ttlMs: 400 });
  const doc = ((await (await check(d, service, token)).json()) as { token: TokenDoc }).token;
  t.true(Date.parse(doc.expires_at) - Date.parse(doc.issued_at) <= 400);
  await sleep(450);
  t.is((await check(d, service, token)).status, 404);

  d.tokenTtlMs = 50;
  const shortService = await serviceToken(d);
  const live = d.issueToken({ userName: 'erin', projectId: 'd'.repeat(32), roles: ['member'], ttlMs: 60_000 });
  await sleep(80);
  t.is((await check(d, shortService, live)).status, 401);
});

test('a missing, unknown or expired X-Auth-Token: 401 with WWW-Authenticate; a caller without admin may check only its own token', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'frank', projectId: 'e'.repeat(32), roles: ['member'] });
  for (const auth of [undefined, 'gAAAAbogus']) {
    const res = await check(d, auth, token);
    t.is(res.status, 401);
    t.regex(res.headers.get('www-authenticate') ?? '', /^Keystone uri="/);
    t.deepEqual(await res.json(), {
      error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' },
    });
  }
  // Policy: a member-only token may validate itself (token_subject) but not another user's token.
  t.is((await check(d, token, token)).status, 200);
  const someoneElse = d.issueToken({ userName: 'grace', projectId: 'e'.repeat(32), roles: ['member'] });
  const forbidden = await check(d, token, someoneElse);
  t.is(forbidden.status, 403);
  await forbidden.body?.cancel();
  // A token with the service role may validate anyone's.
  const svc = d.issueToken({ userName: 'tacker', projectId: 'f'.repeat(32), roles: ['service'] });
  t.is((await check(d, svc, someoneElse)).status, 200);
  t.is((await check(d, service, token)).status, 200);
  t.is(d.validations, 6);
});

test('HEAD: 200 with X-Subject-Token and no body; 404 and 401 likewise without a body', async (t) => {
  const d = await double(t);
  const service = await serviceToken(d);
  const token = d.issueToken({ userName: 'heidi', projectId: 'a'.repeat(32), roles: ['member'] });
  const ok = await check(d, service, token, { method: 'HEAD' });
  t.is(ok.status, 200);
  t.is(ok.headers.get('x-subject-token'), token);
  t.is(await ok.text(), '');
  const missing = await check(d, service, 'gAAAAunknown', { method: 'HEAD' });
  t.is(missing.status, 404);
  t.is(await missing.text(), '');
  const unauthenticated = await check(d, 'gAAAAunknown', token, { method: 'HEAD' });
  t.is(unauthenticated.status, 401);
  t.is(await unauthenticated.text(), '');
  t.is(d.validations, 3);
  const put = await fetch(`${d.authUrl}/auth/tokens`, { method: 'PUT', headers: { 'X-Auth-Token': service } });
  t.is(put.status, 405);
  await put.body?.cancel();
  t.is(d.validations, 3);
});
