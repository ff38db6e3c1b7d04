import { withPort } from '../common/address.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { Orm } from '../db/connection.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createExecutorPool } from './executors.js';
import { createHandoff } from './handoff.js';
import { createReconciler } from './reconciler.js';
import { createVimService } from './service.js';
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
}

export async function startServer(options: ServerOptions): Promise<RunningRole> {
  const logger = options.logger.child({ role: 'server' });
  const pool = createExecutorPool({ executors: options.executors, logger, healthIntervalMs: options.executorHealthIntervalMs, tls: options.tls });
  const handoff = createHandoff({ orm: options.orm, pool, logger });
  const hub = createWatchHub({ databaseUrl: options.databaseUrl, logger });
  const reconciler = createReconciler({
    orm: options.orm,
    pool,
    handoff,
    logger,
    intervalMs: options.reconcileIntervalMs,
    startGraceMs: options.startGraceMs,
    lostActionCheckMs: options.lostActionCheckMs,
  });
  const service = createVimService({ orm: options.orm, key: options.key, pool, handoff, hub, logger });
  const grpc = createGrpcServer({ logger, tls: options.tls, services: [serviceEntry(VimServiceDefinition, service)] });

  const loops = new AbortController();
  const running = [pool.run(loops.signal), hub.run(loops.signal), reconciler.run(loops.signal)];
  const port = await grpc.listen(options.address);
  const address = withPort(options.address, port);
  logger.info('Tacker server listening', { address, executors: options.executors });
  let stopped: Promise<void> | undefined;
  return {
    name: 'server',
    address,
    stop: () =>
      (stopped ??= (async () => {
        await grpc.shutdown();
        loops.abort();
        await Promise.allSettled(running);
        pool.close();
      })()),
  };
}
