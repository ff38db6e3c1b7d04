// Runs roles in this process: configuration, database, roles, ordered shutdown.
// A role's code (and MikroORM, for the roles that use the database) is loaded
// only when the process runs that role, so an executor does not carry the
// inspector, nor a people command any role.
import { configFrom, type Config } from '../common/config.js';
import { EnvironmentError, openStackVariables, parseEnvironment, type Environment } from '../common/env.js';
import { createLogger, type Logger } from '../common/logger.js';
import { createMetrics, startMetricsEndpoint, type MetricsEndpoint } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import { runUntilSignalled, stopAll } from '../common/runnable.js';
import { prepareSecurity, securitySettingsFrom, type Security } from '../common/auth/setup.js';
import type { Orm } from '../db/connection.js';
import { roleNames, type RoleName } from './roles.js';

/** dataDirChosen: VIMMON_DATA_DIR is set, so the embedded database stays in that folder. */
async function openDb(config: Config, dataDirChosen: boolean, logger: Logger): Promise<{ orm: Orm; url: string; close(): Promise<void> }> {
  let url = config.databaseUrl;
  let embedded: { stop(): Promise<void> } | undefined;
  const watching = new AbortController();
  if (!url) {
    const { startEmbeddedPostgres } = await import('../db/embedded.js');
    const db = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      relocatable: !dataDirChosen,
      onLog: (m) => logger.debug(m.trim(), { source: 'postgres' }),
      // A data folder moved where user postgres can reach it: the operator must know where.
      onNotice: (m) => logger.warn(m, { source: 'postgres' }),
    });
    logger.info('DATABASE_URL is not set: an embedded PostgreSQL is running', { dataDir: db.dataDir });
    url = db.url;
    embedded = db;
    // A PostgreSQL that dies is started again on the same port (the pool reconnects);
    // past 5 restarts in 5 minutes vimmon exits with 1 for its supervisor to restart it.
    void db.watch(watching.signal, {
      onRestart: (e) => logger.warn('embedded PostgreSQL died and was restarted', { pid: e.deadPid, restartsInWindow: e.restartsInWindow }),
      onRestartFailed: (err) => logger.error('embedded PostgreSQL could not be restarted; trying again', { err }),
      onGiveUp: (err) => {
        logger.error('embedded PostgreSQL keeps dying: exiting', { err });
        process.exit(1);
      },
    });
  }
  try {
    const { openDatabase } = await import('../db/connection.js');
    const orm = await openDatabase({ url, log: (m) => logger.debug(m, { source: 'mikro-orm' }) });
    return {
      orm,
      url,
      async close() {
        await orm.close(true);
        watching.abort();
        await embedded?.stop();
      },
    };
  } catch (err) {
    watching.abort();
    await embedded?.stop();
    throw err;
  }
}

/** `vimmon all` or `vimmon ROLE`; sets process.exitCode (2: a bad environment). */
export async function runRoles(arg: 'all' | RoleName): Promise<void> {
  const roles: RoleName[] = arg === 'all' ? [...roleNames] : [arg as RoleName];
  // The environment is read here, once; the roles get typed values.
  let env: Environment;
  let config: Config;
  try {
    env = parseEnvironment(process.env);
    config = configFrom(env);
  } catch (err) {
    const problems = err instanceof EnvironmentError ? err.problems : [(err as Error).message];
    process.stderr.write(problems.map((p) => `vimmon: ${p}\n`).join(''));
    process.exitCode = 2;
    return;
  }
  const openStack = openStackVariables(env);
  const logger = createLogger({ level: config.logLevel });
  // One Prometheus endpoint for the process: VIMMON_METRICS_ADDR for `all`, the role's own variable alone.
  const metricsVariable = (
    {
      all: 'VIMMON_METRICS_ADDR',
      server: 'VIMMON_SERVER_METRICS_ADDR',
      conductor: 'VIMMON_CONDUCTOR_METRICS_ADDR',
      executor: 'VIMMON_EXECUTOR_METRICS_ADDR',
      inspector: 'VIMMON_INSPECTOR_METRICS_ADDR',
    } as const
  )[arg === 'all' ? 'all' : roles[0]!];
  const metricsAddr = env[metricsVariable];
  let security: Security;
  try {
    const addresses: Record<string, string> = {};
    if (roles.includes('server')) addresses.VIMMON_SERVER_ADDR = config.serverAddr;
    if (roles.includes('conductor')) addresses.VIMMON_CONDUCTOR_ADDR = config.conductorAddr;
    if (roles.includes('executor')) addresses.VIMMON_EXECUTOR_ADDR = config.executorAddr;
    if (roles.includes('inspector')) {
      addresses.VIMMON_INSPECTOR_ADDR = config.inspectorAddr;
      addresses.VIMMON_INSPECTOR_HTTP_ADDR = config.inspectorHttpAddr;
    }
    if (metricsAddr) addresses[metricsVariable] = metricsAddr;
    security = prepareSecurity({ settings: securitySettingsFrom(env), tlsFiles: config.tls, addresses, env: openStack, logger });
  } catch (err) {
    process.stderr.write(`vimmon: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const { auth } = security;

  await runUntilSignalled(logger, async () => {
    // Off: nothing recorded at all, not only nothing served.
    const metrics = metricsAddr ? createMetrics() : undefined;
    // Bound before anything else starts: a taken address stops the process at once, naming its variable.
    const metricsEndpoint: MetricsEndpoint | undefined =
      metrics &&
      (await startMetricsEndpoint(metricsAddr!, {
        registry: metrics.registry,
        logger,
        variable: metricsVariable,
        // The certificate of the first role the process runs (the server's in `vimmon all`).
        tls: security.tlsFor(roles[0]!),
        authorize: auth.mode === 'enforced' ? (rule, credentials) => auth.authorize(rule, credentials) : undefined,
      }));
    const needsDb = roles.some((r) => r !== 'executor');
    let db: Awaited<ReturnType<typeof openDb>> | undefined;
    try {
      db = needsDb ? await openDb(config, env.VIMMON_DATA_DIR !== undefined, logger) : undefined;
    } catch (err) {
      await metricsEndpoint?.close();
      throw err;
    }
    const started: RunningRole[] = [];
    try {
      // Conductor and executor first, so the server's first hand-off finds them.
      if (roles.includes('conductor'))
        started.push(
          await (await import('../conductor/main.js')).startConductor({
            logger,
            orm: db!.orm,
            address: config.conductorAddr,
            maxReportsPerStatement: config.conductorReportsPerStatement,
            maxQueuedReports: config.conductorQueuedReports,
            tls: security.tlsFor('conductor'),
            auth,
            metrics,
          }),
        );
      if (roles.includes('executor')) {
        const executor = await (await import('../executor/main.js')).startExecutor({
          logger,
          address: config.executorAddr,
          conductorTarget: config.conductorTarget,
          tls: security.tlsFor('executor'),
          auth,
          serviceToken: security.serviceTokenFor('executor'),
          probeDeny: config.probeDeny,
          reportsInFlight: env.VIMMON_EXECUTOR_REPORTS_IN_FLIGHT,
          metrics,
        });
        // Alone, an executor drains on SIGTERM (its VIMs move to the live ones first; a second
        // SIGTERM exits at once); beside a server, the server stops first and none would take them.
        const drainMs = arg === 'executor' ? env.VIMMON_EXECUTOR_DRAIN_TIMEOUT : 0;
        started.push(
          drainMs > 0
            ? {
                ...executor,
                stop: async () => {
                  await executor.drain(drainMs);
                  await executor.stop();
                },
              }
            : executor,
        );
      }
      if (roles.includes('server')) {
        const { startServer } = await import('../server/main.js');
        const { loadSecretKey } = await import('../server/secret-key.js');
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
            retention: config.retention,
            probeDeny: config.probeDeny,
            tls: security.tlsFor('server'),
            auth,
            serviceToken: security.serviceTokenFor('server'),
            metrics,
          }),
        );
      }
      if (roles.includes('inspector')) {
        const { inspectorSettings, startInspector } = await import('../inspector/main.js');
        started.push(
          await startInspector({
            logger,
            orm: db!.orm,
            databaseUrl: db!.url,
            address: config.inspectorAddr,
            httpAddress: config.inspectorHttpAddr,
            env: openStack,
            tls: security.tlsFor('inspector'),
            auth,
            ...inspectorSettings(env),
            retention: config.retention,
            metrics,
          }),
        );
      }
    } catch (err) {
      for (const r of started.reverse()) await r.stop().catch(() => {});
      await db?.close();
      await metricsEndpoint?.close();
      throw err;
    }
    logger.info('vimmon running', { roles: started.map((r) => `${r.name}@${r.address}`) });
    // Stop the server first (no new hand-offs), then executors, conductors, the rest; the database last.
    const order = ['server', 'executor', 'conductor', 'inspector'];
    const sorted = [...started].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    return stopAll(logger, [
      // Scrapes end first: the VIM counts read the database.
      ['metrics', async () => metricsEndpoint?.close()],
      ...sorted.map((r) => [r.name, () => r.stop()] as [string, () => Promise<void>]),
      ['database', async () => db?.close()],
    ]);
  });
}
