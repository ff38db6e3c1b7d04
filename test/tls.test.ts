// Mutual TLS across the mesh: the Tacker server, a conductor and an executor
// with certificates from one CA monitor a VIM; a plaintext client, a client
// without a certificate and one from another CA are refused.
import test from 'ava';
import { ChannelCredentials, createChannel, createClient, Status } from 'nice-grpc';
import { loadTls } from '../common/tls.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../server/main.js';
import { makeCertificates } from './support/certificates.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';
import { openTcpTarget } from './support/targets.js';
import { msToDuration as ms } from '../common/duration.js';

test('mutual TLS: the mesh works with certificates from its CA and refuses everyone else', async (t) => {
  const certs = makeCertificates();
  t.teardown(() => certs.remove());
  const tls = loadTls({ certFile: certs.files.cert, keyFile: certs.files.key, caFile: certs.files.ca })!;
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0', tls });
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: conductor.address, tls });
  const server = await startServer({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: Buffer.alloc(32, 5),
    reconcileIntervalMs: 200,
    tls,
  });
  const target = await openTcpTarget();
  const channels: Array<ReturnType<typeof createChannel>> = [];
  const client = (credentials?: ChannelCredentials) => {
    const ch = createChannel(server.address, credentials);
    channels.push(ch);
    return createClient(VimServiceDefinition, ch);
  };
  t.teardown(async () => {
    for (const c of channels) c.close();
    await server.stop();
    await executor.stop();
    await conductor.stop();
    await target.close();
  });

  const trusted = client(ChannelCredentials.createSsl(certs.ca, certs.key, certs.cert));
  const { vim } = await trusted.registerVim({
    name: 'tls',
    authUrl: target.url,
    credentials: { password: { username: 'u', password: 'secret-over-tls' } },
    monitor: { interval: ms(200), timeout: ms(100), reportInterval: ms(300) },
  });
  // REACHABLE proves server → executor and executor → conductor both spoke TLS with client certificates.
  await eventually(
    async () => (await trusted.getVim({ id: vim!.id })).vim!.status === VimStatus.VIM_STATUS_REACHABLE,
    5_000,
    'REACHABLE over TLS',
  );

  for (const [what, credentials] of [
    ['plaintext', undefined],
    ['TLS without a client certificate', ChannelCredentials.createSsl(certs.ca)],
    ['a client certificate from another CA', ChannelCredentials.createSsl(certs.ca, certs.stranger.key, certs.stranger.cert)],
  ] as const) {
    const err = (await t.throwsAsync(client(credentials).listVims({}, { signal: AbortSignal.timeout(3_000) }))) as unknown as {
      code: Status;
      name: string;
    };
    t.true(err.code === Status.UNAVAILABLE || err.name === 'AbortError', `${what}: refused (${err.code ?? err.name})`);
  }
});

test('TLS settings: a certificate goes with its key; unreadable files are named', (t) => {
  t.is(loadTls({}), undefined);
  t.throws(() => loadTls({ certFile: '/x.pem' }), { message: /VIMMON_TLS_CERT and VIMMON_TLS_KEY go together/ });
  t.throws(() => loadTls({ caFile: '/no/such/ca.pem' }), { message: /^VIMMON_TLS_CA: cannot read \/no\/such\/ca.pem/ });
});
