// `vimmon [all|server|conductor|executor|inspector]`: runs roles in this process.
// Wiring only: configuration, database, roles, ordered shutdown.
import { loadConfig, type Config } from '../common/config.js';
import { createLogger, type Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import { runUntilSignalled, stopAll } from '../common/runnable.js';
import { loadTls, type Tls } from '../common/tls.js';
import { openDatabase, type Orm } from '../db/connection.js';
import { startEmbeddedPostgres } from '../db/embedded.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { startServer } from '../server/main.js';
import { loadSecretKey } from '../server/secret-key.js';
import { inspectorSettingsFromEnv, startInspector } from '../inspector/main.js';
import { roleNames, type RoleName } from './roles.js';

const usage = `usage: vimmon [${['all', ...roleNames].join('|')}]

  all        every role in one process (the default)
  server     the Tacker server (vimmon.tacker.v1.VimService)
  conductor  a conductor (vimmon.conductor.v1.VimMonitorAction2Conductor)
  executor   an executor (vimmon.executor.v1.ExecutorService)
  inspector  the inspector (vimmon.inspector.v1.InspectorService, Doctor PUT /events)

Configuration is read from the environment; see README.md.`;

async function openDb(config: Config, logger: Logger): Promise<{ orm: Orm; url: string; close(): Promise<void> }> {
  let url = config.databaseUrl;
  let embedded: { stop(): Promise<void> } | undefined;
  if (!url) {
    logger.info('DATABASE_URL is not set: starting an embedded PostgreSQL', { dataDir: config.dataDir });
    const db = await startEmbeddedPostgres({ dataDir: config.dataDir, onLog: (m) => logger.debug(m.trim(), { source: 'postgres' }) });
    url = db.url;
    embedded = db;
  }
  try {
    const orm = await openDatabase({ url, log: (m) => logger.debug(m, { source: 'mikro-orm' }) });
    return {
      orm,
      url,
      async close() {
        await orm.close(true);
        await embedded?.stop();
      },
    };
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
}

async function main(argv: string[]): Promise<void> {
  const arg = argv[0] ?? 'all';
  if (arg === '-h' || arg === '--help' || arg === 'help') {
    process.stdout.write(usage + '\n');
    return;
  }
  if (arg !== 'all' && !(roleNames as readonly string[]).includes(arg)) {
    process.stderr.write(`unknown role ${JSON.stringify(arg)}\n\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  const roles: RoleName[] = arg === 'all' ? [...roleNames] : [arg as RoleName];
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`vimmon: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const logger = createLogger({ level: config.logLevel });
  let tls: Tls | undefined;
  try {
    tls = loadTls(config.tls);
  } catch (err) {
    process.stderr.write(`vimmon: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const loopback = (a: string) => /^(127\.|\[::1\]|localhost:)/.test(a);
  const exposed = [config.serverAddr, config.conductorAddr, config.executorAddr, config.inspectorAddr].some((a) => !loopback(a));
  if (!tls && exposed) logger.warn('gRPC is plaintext on a non-loopback address: set VIMMON_TLS_CERT, VIMMON_TLS_KEY and VIMMON_TLS_CA');

  await runUntilSignalled(logger, async () => {
    const needsDb = roles.some((r) => r !== 'executor');
    const db = needsDb ? await openDb(config, logger) : undefined;
    const started: RunningRole[] = [];
    try {
      // Conductor and executor first, so the server's first hand-off finds them.
      if (roles.includes('conductor')) started.push(
          await startConductor({ logger, orm: db!.orm, address: config.conductorAddr, maxReportsPerStatement: config.conductorReportsPerStatement, tls }),
        );
      if (roles.includes('executor')) {
        started.push(await startExecutor({ logger, address: config.executorAddr, conductorTarget: config.conductorTarget, tls }));
      }
      if (roles.includes('server')) {
        const { key, source } = loadSecretKey({ secretKey: config.secretKey, dataDir: config.dataDir });
        logger.info('credentials key loaded', { source });
        started.push(
          await startServer({
            logger,
            orm: db!.orm,
            databaseUrl: db!.url,
            address: config.serverAddr,
            executors: config.executors,
            key,
            reconcileIntervalMs: config.reconcileIntervalMs,
            tls,
          }),
        );
      }
      if (roles.includes('inspector')) {
        started.push(
          await startInspector({
            logger,
            orm: db!.orm,
            databaseUrl: db!.url,
            address: config.inspectorAddr,
            httpAddress: config.inspectorHttpAddr,
            env: process.env,
            tls,
            ...inspectorSettingsFromEnv(process.env),
          }),
        );
      }
    } catch (err) {
      for (const r of started.reverse()) await r.stop().catch(() => {});
      await db?.close();
      throw err;
    }
    logger.info('vimmon running', { roles: started.map((r) => `${r.name}@${r.address}`) });
    // Stop the server first (no new hand-offs), then executors, conductors, the rest; the database last.
    const order = ['server', 'executor', 'conductor', 'inspector'];
    const sorted = [...started].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    return stopAll(logger, [...sorted.map((r) => [r.name, () => r.stop()] as [string, () => Promise<void>]), ['database', async () => db?.close()]]);
  });
}

await main(process.argv.slice(2));
