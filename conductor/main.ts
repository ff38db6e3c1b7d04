// The conductor role: the one writer of monitor reports. Stateless, so run as
// many as needed behind a load balancer (deploy/envoy.yaml, deploy/haproxy.cfg).
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { withPort } from '../common/address.js';
import { runDatabaseHealth, type DatabaseHealthSettings } from '../common/database-health.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { Metrics } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { Auth } from '../common/auth/authenticator.js';
import type { Orm } from '../db/connection.js';
import { createFencedStatusWriter } from './fencing.js';
import { createConductorService } from './service.js';

export interface ConductorOptions {
  logger: Logger;
  /** Owned by the caller: stop() leaves it open. */
  orm: Orm;
  /** host:port; port 0 picks a free one. */
  address: string;
  /**
   * Report statements running at once (default 2); reports beyond them are
   * stored together in the next statement. Each uses one pooled connection.
   */
  maxStatementsInFlight?: number;
  /** Reports stored by one statement (default 256); 1 stores every report with a statement of its own. */
  maxReportsPerStatement?: number;
  /** Reports waiting for a statement at most (default 2048); beyond, RESOURCE_EXHAUSTED at once. */
  maxQueuedReports?: number;
  tls?: Tls;
  /** Who may report; unset: development mode. */
  auth?: Auth;
  /** How often the database is checked for the health service (NOT_SERVING while it is down). */
  databaseHealth?: DatabaseHealthSettings;
  /** The process's metrics (the conductor's and the gRPC ones); unset: none recorded. */
  metrics?: Metrics;
}

export async function startConductor(options: ConductorOptions): Promise<RunningRole> {
  const logger = options.logger.child({ role: 'conductor' });
  const metrics = options.metrics?.conductor();
  const service = createConductorService({
    logger,
    writer: createFencedStatusWriter(options.orm, {
      maxStatementsInFlight: options.maxStatementsInFlight,
      maxReportsPerStatement: options.maxReportsPerStatement,
      maxQueuedReports: options.maxQueuedReports,
      reportsPerStatement: metrics?.reportsPerStatement,
    }),
    metrics,
  });
  const server = createGrpcServer({
    logger,
    tls: options.tls,
    auth: options.auth,
    metrics: options.metrics,
    services: [serviceEntry(VimMonitorAction2ConductorDefinition, service)],
  });
  const address = withPort(options.address, await server.listen(options.address));
  logger.info('conductor listening', { address });
  const loops = new AbortController();
  // Raw SQL: a liveness ping touches no table, so there is no entity to query through.
  const check = () => options.orm.em.fork().getConnection().execute('select 1');
  const databaseHealth = runDatabaseHealth({ ...options.databaseHealth, check, health: server.health, logger, signal: loops.signal });
  let stopped: Promise<void> | undefined;
  return {
    name: 'conductor',
    address,
    stop: () =>
      (stopped ??= (async () => {
        await server.shutdown();
        loops.abort();
        await databaseHealth;
      })()),
  };
}
