// The whole mesh with authentication on, as a production deployment runs it:
// every role with its own certificate from deploy/make-certs.sh (mutual TLS,
// SPIFFE ids), people with static tokens and Keystone tokens (the OpenStack
// double validates them on Keystone's wire protocol), the default policy.
import type { ExecutionContext } from 'ava';
import { ChannelCredentials, createChannel, createClient, Metadata, type Channel } from 'nice-grpc';
import { createAuth, type Auth } from '../../common/auth/authenticator.js';
import { keystoneTokenValidatorFromEnv, type KeystoneTokenValidator } from '../../common/auth/keystone-tokens.js';
import { createStaticTokens, hashToken, newToken, type StaticTokenEntry } from '../../common/auth/static-tokens.js';
import type { RunningRole } from '../../common/role.js';
import type { Tls } from '../../common/tls.js';
import { startConductor } from '../../conductor/main.js';
import { startExecutor } from '../../executor/main.js';
import { startInspector, type RunningInspector } from '../../inspector/main.js';
import { startServer } from '../../server/main.js';
import { makeRoleCertificates, type KeyPair, type RoleCertificates, type VimmonRole } from './certificates.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { testLogger } from './logger.js';
import { openrcEnv, startOpenStackDouble, type OpenStackDouble } from './openstack-double.js';

export const projectA = 'proj-a';
export const projectB = 'proj-b';

/** Static tokens by name: the people and programs of the matrix. */
export const people = {
  readerA: { roles: ['reader'], projects: [projectA] },
  memberA: { roles: ['member'], projects: [projectA] },
  memberB: { roles: ['member'], projects: [projectB] },
  admin: { roles: ['admin'], projects: [] as string[] },
  monitor: { roles: ['monitor'], projects: [] as string[] },
} as const;
export type Person = keyof typeof people;

export interface SecureMesh {
  db: TestDatabase;
  certs: RoleCertificates;
  keystone: OpenStackDouble;
  validator: KeystoneTokenValidator;
  auth: Auth;
  server: RunningRole;
  conductor: RunningRole;
  executor: RunningRole;
  inspector: RunningInspector;
  tokens: Record<Person, string>;
  /** A channel to a role's address: TLS verifying the mesh CA, with the client certificate if given. */
  channel(address: string, clientCert?: KeyPair): Channel;
  /** Metadata carrying a bearer token. */
  bearer(token: string): Metadata;
}

export interface SecureMeshOptions {
  keystoneRevalidateMs?: number;
  streamsPerPrincipal?: number;
  /** Servers in the double (Nova) before the inspector starts, so its cache knows them. */
  servers?: Array<{ host: string; projectId: string }>;
}

export async function startSecureMesh(t: ExecutionContext, options: SecureMeshOptions = {}): Promise<SecureMesh> {
  const logger = testLogger();
  const certs = makeRoleCertificates();
  const keystone = await startOpenStackDouble();
  for (const server of options.servers ?? []) keystone.addServer(server);
  const db = await createTestDatabase(t);
  const channels: Channel[] = [];
  const roles: RunningRole[] = [];
  t.teardown(async () => {
    for (const c of channels) c.close();
    for (const r of roles) await r.stop();
    await keystone.close();
    certs.remove();
  });

  const tokens = {} as Record<Person, string>;
  const entries: StaticTokenEntry[] = Object.entries(people).map(([name, p]) => {
    const token = newToken();
    tokens[name as Person] = token;
    return { name, sha256: hashToken(token), roles: [...p.roles], projects: [...p.projects] };
  });
  const validator = keystoneTokenValidatorFromEnv(openrcEnv(keystone), { revalidateMs: options.keystoneRevalidateMs ?? 30_000 });
  const auth = createAuth({
    mode: 'enforced',
    trustDomain: certs.trustDomain,
    staticTokens: createStaticTokens(entries),
    keystone: validator,
    streamsPerPrincipal: options.streamsPerPrincipal,
  });
  const tls = (role: VimmonRole): Tls => ({ ...certs.role(role), ca: certs.ca, clientCertificates: 'optional' });

  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0', tls: tls('conductor'), auth });
  roles.push(conductor);
  const executor = await startExecutor({
    logger,
    address: '127.0.0.1:0',
    conductorTarget: conductor.address,
    tls: tls('executor'),
    auth,
    reportBackoff: { baseDelayMs: 50, maxDelayMs: 500 },
  });
  roles.unshift(executor);
  const server = await startServer({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: Buffer.alloc(32, 7),
    reconcileIntervalMs: 300,
    executorHealthIntervalMs: 100,
    tls: tls('server'),
    auth,
  });
  roles.unshift(server);
  const inspector = await startInspector({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: options.servers ? openrcEnv(keystone) : {},
    resyncIntervalMs: 60_000,
    tls: tls('inspector'),
    auth,
  });
  roles.push(inspector);

  return {
    db,
    certs,
    keystone,
    validator,
    auth,
    server,
    conductor,
    executor,
    inspector,
    tokens,
    channel(address, clientCert) {
      const c = createChannel(address, ChannelCredentials.createSsl(certs.ca, clientCert?.key ?? null, clientCert?.cert ?? null));
      channels.push(c);
      return c;
    },
    bearer: (token) => Metadata({ authorization: `Bearer ${token}` }),
  };
}

export { createClient };
