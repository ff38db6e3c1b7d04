// The executor role: runs monitor actions and reports through the conductors.
// Holds no database; everything it runs is given to it by StartAction.
import { delay } from 'abort-controller-x';
import { createClient } from 'nice-grpc';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { withPort } from '../common/address.js';
import type { BackoffOptions } from '../common/delay.js';
import { createRoundRobinChannel } from '../common/grpc-client.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { ServingStatus } from '../common/health.js';
import type { AddressDenyList } from '../common/address-deny.js';
import type { Logger } from '../common/logger.js';
import type { Metrics } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import { bearerMetadata, type Auth } from '../common/auth/authenticator.js';
import type { ActionCounters } from './action.js';
import { ActionEventHub } from './action-events.js';
import { createProbes, timedProbes } from './probe.js';
import { ActionRegistry } from './registry.js';
import { createConductorReporter, limitReportsInFlight } from './report.js';
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
  /** UpdateVim calls this executor has out at once at most (default 128); other reports wait, news first. */
  reportsInFlight?: number;
  /** Events a WatchActions stream may fall behind before it gets RESOURCE_EXHAUSTED. Default 4096. */
  watchQueueLimit?: number;
  /** TLS for ExecutorService and for the reports to conductors. */
  tls?: Tls;
  /** Addresses no probe may reach, checked after DNS (VIMMON_PROBE_DENY); default link-local. */
  probeDeny?: AddressDenyList;
  /** Who may start, stop and look at actions; unset: development mode. */
  auth?: Auth;
  /** Bearer token presented to conductors (when the certificate does not say who we are). */
  serviceToken?: string;
  /** The process's metrics (the executor's and the gRPC ones); unset: none recorded. */
  metrics?: Metrics;
}

export interface ExecutorStats extends ActionCounters {
  actions: number;
  watchers: number;
}

export interface RunningExecutor extends RunningRole {
  stats(): ExecutorStats;
  /**
   * Before stop() on SIGTERM: health NOT_SERVING, so the servers move this executor's VIMs
   * to live executors and stop its actions here; resolves when none is left or after
   * timeoutMs, to the number left. It keeps serving calls meanwhile.
   */
  drain(timeoutMs: number): Promise<number>;
}

export async function startExecutor(options: ExecutorOptions): Promise<RunningExecutor> {
  const logger = options.logger.child({ role: 'executor' });
  const channel = createRoundRobinChannel(options.conductorTarget, options.tls);
  const reporter = limitReportsInFlight(
    createConductorReporter({
      client: createClient(VimMonitorAction2ConductorDefinition, channel, { '*': { metadata: bearerMetadata(options.serviceToken) } }),
      timeoutMs: options.reportTimeoutMs ?? 5_000,
    }),
    options.reportsInFlight ?? 128,
  );
  const root = new AbortController();
  const events = new ActionEventHub();
  const registry = new ActionRegistry({
    logger,
    reporter,
    backoff: options.reportBackoff ?? { baseDelayMs: 250, maxDelayMs: 10_000 },
    events,
    signal: root.signal,
    probes: options.metrics
      ? timedProbes(createProbes({ deny: options.probeDeny }), options.metrics.executor())
      : createProbes({ deny: options.probeDeny }),
  });
  const service = createExecutorService({ logger, registry, events, watchQueueLimit: options.watchQueueLimit ?? 4096 });
  const server = createGrpcServer({
    logger,
    tls: options.tls,
    auth: options.auth,
    metrics: options.metrics,
    services: [serviceEntry(ExecutorServiceDefinition, service)],
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
  const stopReading = options.metrics?.executor().read({ executor: address, actions: () => registry.size });

  /** Resolves once every action has been stopped (handed elsewhere by the servers) or timeoutMs passed. */
  async function drain(timeoutMs: number): Promise<number> {
    if (registry.size === 0) return 0;
    const started = performance.now();
    const before = registry.size;
    server.health.set('', ServingStatus.NOT_SERVING);
    server.health.set(ExecutorServiceDefinition.fullName, ServingStatus.NOT_SERVING);
    logger.info("draining: waiting for the servers to move this executor's VIMs", { actions: before, timeoutMs });
    // Polled: the actions end one by one through StopAction or BAD_ACTION, and the
    // registry has no "empty" event to wait on.
    const deadline = AbortSignal.timeout(timeoutMs);
    while (registry.size > 0 && !deadline.aborted) await delay(deadline, 50).catch(() => {});
    const left = registry.size;
    const ms = Math.round(performance.now() - started);
    if (left > 0) logger.warn('drain timed out; stopping the actions left', { left, of: before, ms });
    else logger.info('drained', { actions: before, ms });
    return left;
  }

  let stopped: Promise<void> | undefined;
  return {
    name: 'executor',
    address,
    stats: () => ({ ...registry.counters, actions: registry.size, watchers: events.watcherCount }),
    drain,
    // Not accepting and streams ended (UNAVAILABLE) first, then every action
    // aborted and awaited, then the conductor channel closed.
    stop: () =>
      (stopped ??= (async () => {
        stopReading?.();
        await server.shutdown();
        root.abort();
        await registry.drained();
        channel.close();
        logger.info('executor stopped');
      })()),
  };
}
