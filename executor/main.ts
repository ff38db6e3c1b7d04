// The executor role: runs monitor actions and reports through the conductors.
// Holds no database; everything it runs is given to it by StartAction.
import { createClient, ServerError, Status } from 'nice-grpc';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { withPort } from '../common/address.js';
import type { BackoffOptions } from '../common/delay.js';
import { createRoundRobinChannel } from '../common/grpc-client.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { ActionCounters } from './action.js';
import { ActionEventHub, WatcherOverflowError } from './action-events.js';
import { ActionRegistry } from './registry.js';
import { createConductorReporter } from './report.js';
import { createExecutorService } from './service.js';

export interface ExecutorOptions {
  logger: Logger;
  /** host:port; port 0 picks a free one. */
  address: string;
  /** Where reports go: one address, a comma list (round robin) or a proxy. */
  conductorTarget: string;
  /** Deadline of one UpdateVim call. Default 5 s. */
  reportTimeoutMs?: number;
  /** Retry delays while no conductor answers. Default 250 ms doubling up to 10 s, jittered. */
  reportBackoff?: BackoffOptions;
  /** Events a WatchActions stream may fall behind before it gets RESOURCE_EXHAUSTED. Default 4096. */
  watchQueueLimit?: number;
  /** TLS for ExecutorService and for the reports to conductors. */
  tls?: Tls;
}

export interface ExecutorStats extends ActionCounters {
  actions: number;
  watchers: number;
}

export interface RunningExecutor extends RunningRole {
  stats(): ExecutorStats;
}

export async function startExecutor(options: ExecutorOptions): Promise<RunningExecutor> {
  const logger = options.logger.child({ role: 'executor' });
  const channel = createRoundRobinChannel(options.conductorTarget, options.tls);
  const reporter = createConductorReporter({
    client: createClient(VimMonitorAction2ConductorDefinition, channel),
    timeoutMs: options.reportTimeoutMs ?? 5_000,
  });
  const root = new AbortController();
  const events = new ActionEventHub();
  const registry = new ActionRegistry({
    logger,
    reporter,
    backoff: options.reportBackoff ?? { baseDelayMs: 250, maxDelayMs: 10_000 },
    events,
    signal: root.signal,
  });
  const service = createExecutorService({ logger, registry, events, watchQueueLimit: options.watchQueueLimit ?? 4096 });
  const server = createGrpcServer({
    logger,
    tls: options.tls,
    services: [serviceEntry(ExecutorServiceDefinition, service)],
    mapError: (err) => (err instanceof WatcherOverflowError ? new ServerError(Status.RESOURCE_EXHAUSTED, err.message) : undefined),
  });
  let address: string;
  try {
    address = withPort(options.address, await server.listen(options.address));
  } catch (err) {
    root.abort();
    channel.close();
    throw err;
  }
  logger.info('executor listening', { address, conductorTarget: options.conductorTarget });

  let stopped: Promise<void> | undefined;
  return {
    name: 'executor',
    address,
    stats: () => ({ ...registry.counters, actions: registry.size, watchers: events.watcherCount }),
    // Not accepting and streams ended (UNAVAILABLE) first, then every action
    // aborted and awaited, then the conductor channel closed.
    stop: () =>
      (stopped ??= (async () => {
        await server.shutdown();
        root.abort();
        await registry.drained();
        channel.close();
        logger.info('executor stopped');
      })()),
  };
}
