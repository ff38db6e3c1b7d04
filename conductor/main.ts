// The conductor role: the one writer of monitor reports. Stateless, so run as
// many as needed behind a load balancer (deploy/envoy.yaml, deploy/haproxy.cfg).
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { withPort } from '../common/address.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
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
  tls?: Tls;
}

export async function startConductor(options: ConductorOptions): Promise<RunningRole> {
  const logger = options.logger.child({ role: 'conductor' });
  const service = createConductorService({ logger, writer: createFencedStatusWriter(options.orm, {
      maxStatementsInFlight: options.maxStatementsInFlight,
      maxReportsPerStatement: options.maxReportsPerStatement,
    }) });
  const server = createGrpcServer({ logger, tls: options.tls, services: [serviceEntry(VimMonitorAction2ConductorDefinition, service)] });
  const address = withPort(options.address, await server.listen(options.address));
  logger.info('conductor listening', { address });
  let stopped: Promise<void> | undefined;
  return {
    name: 'conductor',
    address,
    stop: () => (stopped ??= server.shutdown()),
  };
}
