import { withPort } from '../common/address.js';
import { createAddressDenyList, defaultProbeDenyRanges, type AddressDenyList } from '../common/address-deny.js';
import { runDatabaseHealth, type DatabaseHealthSettings } from '../common/database-health.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { RetentionSettings } from '../common/env.js';
import type { Metrics } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { Auth } from '../common/auth/authenticator.js';
import type { Orm } from '../db/connection.js';
import { runRetention } from '../db/retention.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createExecutorPool } from './executors.js';
import { createHandoff } from './handoff.js';
import { createReconciler } from './reconciler.js';
import { createVimService } from './service.js';
import { readVimCensus } from './vim-census.js';
import { createWatchHub } from './watch-hub.js';

export interface ServerOptions {
  logger: Logger;
  orm: Orm;
  /** For the LISTEN connection behind WatchVims. */
  databaseUrl: string;
  address: string;
  executors: string[];
  /** Seals credentials at rest (server/secret-key.ts). */
  key: Buffer;
  reconcileIntervalMs: number;
  startGraceMs?: number;
  executorHealthIntervalMs?: number;
  /** How often live executors are asked for their actions, to replace those a restart lost. */
  lostActionCheckMs?: number;
  /** TLS for VimService and for the calls to executors. */
  tls?: Tls;
  /** Who may call VimService; unset: development mode. */
  auth?: Auth;
  /** Bearer token presented to executors (when the certificate does not say who we are). */
  serviceToken?: string;
  /** How often the database is checked for the health service (NOT_SERVING while it is down). */
  databaseHealth?: DatabaseHealthSettings;
  /** auth_url addresses refused at RegisterVim/UpdateVim (VIMMON_PROBE_DENY); default link-local. */
  probeDeny?: AddressDenyList;
  /** The process's metrics (the server's and the gRPC ones); unset: none recorded. */
  metrics?: Metrics;
  /** Retention (VIMMON_RETENTION_EVENT_AGE and the others): this role removes old vim_event and vim_audit rows; unset: none removed. */
  retention?: RetentionSettings;
}

export async function startServer(options: ServerOptions): Promise<RunningRole> {
  const logger = options.logger.child({ role: 'server' });
  const pool = createExecutorPool({
    executors: options.executors,
    logger,
    healthIntervalMs: options.executorHealthIntervalMs,
    tls: options.tls,
    serviceToken: options.serviceToken,
  });
  const handoff = createHandoff({ orm: options.orm, pool, logger });
  const hub = createWatchHub({ databaseUrl: options.databaseUrl, logger });
  const reconciler = createReconciler({
    orm: options.orm,
    pool,
    handoff,
    logger,
    key: options.key,
    intervalMs: options.reconcileIntervalMs,
    startGraceMs: options.startGraceMs,
    lostActionCheckMs: options.lostActionCheckMs,
    metrics: options.metrics?.server(),
  });
  const probeDeny = options.probeDeny ?? createAddressDenyList(defaultProbeDenyRanges);
  const service = createVimService({
    orm: options.orm,
    key: options.key,
    pool,
    handoff,
    hub,
    logger,
    probeDeny,
    metrics: options.metrics?.server(),
  });
  const grpc = createGrpcServer({
    logger,
    tls: options.tls,
    auth: options.auth,
    metrics: options.metrics,
    services: [serviceEntry(VimServiceDefinition, service)],
  });

  const loops = new AbortController();
  const running = [pool.run(loops.signal), hub.run(loops.signal), reconciler.run(loops.signal)];
  const port = await grpc.listen(options.address);
  // Raw SQL: a liveness ping touches no table, so there is no entity to query through.
  const check = () => options.orm.em.fork().getConnection().execute('select 1');
  running.push(runDatabaseHealth({ ...options.databaseHealth, check, health: grpc.health, logger, signal: loops.signal }));
  if (options.retention) {
    const { vim_event, vim_audit } = options.retention.limits;
    const settings = { ...options.retention, limits: { vim_event, vim_audit } };
    running.push(runRetention({ ...settings, orm: options.orm, logger, metrics: options.metrics?.retention() }, loops.signal));
  }
  const address = withPort(options.address, port);
  const stopReading = options.metrics?.server().read({
    census: () => readVimCensus(options.orm),
    liveExecutors: () => pool.live().length,
    watchStreams: () => hub.listenerCount,
  });
  logger.info('Tacker server listening', { address, executors: options.executors });
  let stopped: Promise<void> | undefined;
  return {
    name: 'server',
    address,
    stop: () =>
      (stopped ??= (async () => {
        stopReading?.();
        await grpc.shutdown();
        loops.abort();
        await Promise.allSettled(running);
        pool.close();
      })()),
  };
}
