// A Kubernetes API server and an OpenID provider for tests, on the wire as
// they answer: GET /version with a bearer token (a service account's, or an
// id_token the provider issued) or basic credentials is 200, with a token or
// credentials it does not know 401 with a Status body, and without any 200 as
// for system:anonymous (the default RBAC lets anyone read /version); anything
// else is 403 for anonymous. The provider's token endpoint does Keycloak's
// password grant: 200 with an id_token for scope openid, 401 invalid_client /
// invalid_grant otherwise. One HTTPS server for both, with the certificate given.
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface KubernetesDouble {
  /** The API server, e.g. https://127.0.0.1:PORT (Tacker's auth_url of a Kubernetes VIM). */
  url: string;
  /** The OpenID provider's token endpoint. */
  oidcTokenUrl: string;
  /** Bearer tokens the API server takes (service account tokens); delete one to revoke it. */
  tokens: Set<string>;
  /** Basic credentials the API server takes: user → password. */
  users: Map<string, string>;
  /** The provider's client and users; an id_token it issues is taken by the API server. */
  oidc: { clientId: string; clientSecret: string; users: Map<string, string> };
  /** Every GET /version: the Authorization header's scheme ('' when none) and the answer. */
  versionCalls: Array<{ scheme: string; status: number }>;
  /** Every token request: its grant type, user and the answer. */
  tokenCalls: Array<{ grantType: string; username: string; status: number }>;
  close(): Promise<void>;
}

const unauthorized = {
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message: 'Unauthorized',
  reason: 'Unauthorized',
  code: 401,
};

export async function startKubernetesDouble(tls: { cert: Buffer; key: Buffer }): Promise<KubernetesDouble> {
  const double: KubernetesDouble = {
    url: '',
    oidcTokenUrl: '',
    tokens: new Set(),
    users: new Map(),
    oidc: { clientId: 'tacker', clientSecret: `client-${randomBytes(4).toString('hex')}`, users: new Map() },
    versionCalls: [],
    tokenCalls: [],
    close: async () => {},
  };
  const issued = new Set<string>();
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const known = (authorization: string | undefined): boolean | undefined => {
    if (!authorization) return undefined;
    const [scheme, value = ''] = authorization.split(' ', 2);
    if (scheme === 'Bearer') return double.tokens.has(value) || issued.has(value);
    if (scheme === 'Basic') {
      const [user, ...rest] = Buffer.from(value, 'base64').toString('utf8').split(':');
      return double.users.get(user ?? '') === rest.join(':');
    }
    return false;
  };
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://double');
      if (req.method === 'POST' && url.pathname === '/realms/oidc/protocol/openid-connect/token') {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        const call = { grantType: form.get('grant_type') ?? '', username: form.get('username') ?? '', status: 200 };
        double.tokenCalls.push(call);
        const answer = (status: number, body: unknown) => {
          call.status = status;
          json(res, status, body);
        };
        if (form.get('client_id') !== double.oidc.clientId || form.get('client_secret') !== double.oidc.clientSecret)
          return answer(401, { error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' });
        if (call.grantType !== 'password')
          return answer(400, { error: 'unsupported_grant_type', error_description: 'Unsupported grant_type' });
        const password = double.oidc.users.get(call.username);
        if (password === undefined || password !== form.get('password'))
          return answer(401, { error: 'invalid_grant', error_description: 'Invalid user credentials' });
        const idToken = `idt-${randomBytes(12).toString('hex')}`;
        issued.add(idToken);
        const scopes = (form.get('scope') ?? '').split(' ');
        return answer(200, {
          access_token: `at-${randomBytes(12).toString('hex')}`,
          expires_in: 300,
          token_type: 'Bearer',
          scope: 'profile email',
          ...(scopes.includes('openid') ? { id_token: idToken } : {}),
        });
      }
      const verdict = known(req.headers.authorization);
      if (req.method === 'GET' && url.pathname === '/version') {
        const status = verdict === false ? 401 : 200;
        double.versionCalls.push({ scheme: req.headers.authorization?.split(' ')[0] ?? '', status });
        return status === 200
          ? json(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0', platform: 'linux/amd64' })
          : json(res, 401, unauthorized);
      }
      if (verdict === false) return json(res, 401, unauthorized);
      json(res, 403, {
        kind: 'Status',
        status: 'Failure',
        message: `forbidden: User "system:anonymous" cannot get path "${url.pathname}"`,
        code: 403,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  double.url = base;
  double.oidcTokenUrl = `${base}/realms/oidc/protocol/openid-connect/token`;
  double.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return double;
}
