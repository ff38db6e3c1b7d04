// The inspector role (OPNFV Doctor): InspectorService on gRPC, Doctor's
// PUT /events on HTTP, the host → VMs cache fed by Nova and its notifications,
// VIM alarms from the conductor's NOTIFY. Wiring only. Without OpenStack or
// AMQP settings it still runs (alarms without Nova) and logs what is missing.
import { withPort } from '../common/address.js';
import { durationMs } from '../common/config.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { Orm } from '../db/connection.js';
import { createAlarmStore } from './alarm-store.js';
import { createAlarmHub } from './alarm-stream.js';
import { createDoctorHttpServer } from './doctor-http.js';
import { createFaultHandler, type NovaRetryOptions } from './fault.js';
import { createKeystoneSession } from './keystone.js';
import { runNotificationConsumer } from './notifications.js';
import { createNovaClient, type NovaClient } from './nova.js';
import { loadOpenStackConfig } from './openstack-config.js';
import { createProfiler } from './profiler.js';
import { createInspectorService, inspectorServiceDefinition } from './service.js';
import { createVimAlarmSource } from './vim-alarms.js';
import { createVmCache } from './vm-cache.js';

export interface InspectorOptions {
  logger: Logger;
  /** Owned by the caller: stop() leaves it open. */
  orm: Orm;
  /** For the LISTEN connection of the VIM alarms. */
  databaseUrl: string;
  /** gRPC host:port; port 0 picks a free one. */
  address: string;
  /** Doctor's HTTP endpoint host:port; port 0 picks a free one. */
  httpAddress: string;
  /** RabbitMQ carrying Nova's versioned notifications; unset: no notifications (the periodic resync only). */
  amqpUrl?: string;
  /** OS_* variables (or OS_CLOUD) for Keystone and Nova. */
  env: NodeJS.ProcessEnv;
  resyncIntervalMs: number;
  /** Nova calls in flight at once over all faults (default 64). */
  novaConcurrency?: number;
  /** Per Nova HTTP request (default 30 s). */
  novaTimeoutMs?: number;
  novaRetry?: NovaRetryOptions;
  /** Alarms a subscriber may have waiting before RESOURCE_EXHAUSTED (default 10,000). */
  subscriberQueueSize?: number;
  /** How long stop() waits for Nova work before cutting it short (default 10 s). */
  novaShutdownGraceMs?: number;
  /** 'after-nova' is Doctor's conservative order, for measurements only. */
  alarmTiming?: 'before-nova' | 'after-nova';
  /** TLS for InspectorService (the Doctor HTTP endpoint stays plain HTTP). */
  tls?: Tls;
  /** For tests: the fetch Keystone and Nova calls go through. */
  fetch?: typeof fetch;
}

export type RunningInspector = RunningRole & { httpAddress: string };

export const defaultAmqpUrl = 'amqp://guest:guest@127.0.0.1:5672';

/** The inspector's own settings from the environment (the OS_* ones are read by startInspector). */
export function inspectorSettingsFromEnv(env: NodeJS.ProcessEnv): Pick<InspectorOptions, 'amqpUrl' | 'resyncIntervalMs' | 'novaConcurrency' | 'subscriberQueueSize'> {
  const amqp = env.VIMMON_AMQP_URL?.trim();
  return {
    amqpUrl: amqp === 'off' ? undefined : amqp || defaultAmqpUrl,
    resyncIntervalMs: durationMs(env, 'VIMMON_INSPECTOR_RESYNC', 5 * 60_000),
    novaConcurrency: positiveInt(env, 'VIMMON_INSPECTOR_NOVA_CONCURRENCY', 64),
    subscriberQueueSize: positiveInt(env, 'VIMMON_INSPECTOR_SUBSCRIBER_QUEUE', 10_000),
  };
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const v = env[name]?.trim();
  if (!v) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

export async function startInspector(options: InspectorOptions): Promise<RunningInspector> {
  const logger = options.logger.child({ role: 'inspector' });
  const openstack = loadOpenStackConfig(options.env);
  let nova: NovaClient | undefined;
  const missing: string[] = [];
  if ('config' in openstack) {
    nova = createNovaClient(createKeystoneSession(openstack.config, { fetch: options.fetch }), { fetch: options.fetch, timeoutMs: options.novaTimeoutMs });
  } else {
    missing.push(...openstack.missing);
    logger.warn('OpenStack is not configured: no VM cache, no force-down, no reset-state; host alarms are still raised', { missing: openstack.missing });
  }
  if (!options.amqpUrl) {
    missing.push('VIMMON_AMQP_URL');
    logger.warn('no AMQP URL: Nova notifications are not consumed; the cache is repaired by the periodic resync only');
  }

  const store = createAlarmStore(options.orm);
  const hub = createAlarmHub({ store, logger, subscriberQueueSize: options.subscriberQueueSize });
  await hub.start();
  const cache = createVmCache({ nova, logger, resyncIntervalMs: options.resyncIntervalMs });
  const profiler = createProfiler({ logger });
  const fault = createFaultHandler({
    logger,
    hub,
    profiler,
    vms: cache,
    nova,
    novaMissing: 'missing' in openstack ? openstack.missing : [],
    novaConcurrency: options.novaConcurrency ?? 64,
    novaRetry: options.novaRetry,
    hosts: await store.loadHosts(),
    alarmTiming: options.alarmTiming,
  });
  const service = createInspectorService({
    fault,
    hub,
    profiler,
    status: () => ({
      cachedVms: cache.size,
      cacheSyncedAt: cache.lastSyncAt,
      novaConfigured: nova !== undefined,
      notificationsConfigured: options.amqpUrl !== undefined,
      missingConfig: missing,
    }),
  });
  const grpc = createGrpcServer({ logger, tls: options.tls, services: [serviceEntry(inspectorServiceDefinition, service)] });
  const http = createDoctorHttpServer({ logger, report: (events) => fault.report(events) });

  const storing = new AbortController(); // stopped last: the Nova marks of the last faults are stored too
  const loops = new AbortController();
  const running: Promise<void>[] = [hub.run(storing.signal)];
  let address: string;
  let httpAddress: string;
  try {
    address = withPort(options.address, await grpc.listen(options.address));
    httpAddress = await http.listen(options.httpAddress);
  } catch (err) {
    await grpc.shutdown();
    storing.abort();
    await Promise.allSettled(running);
    throw err;
  }
  running.push(cache.run(loops.signal), createVimAlarmSource({ databaseUrl: options.databaseUrl, orm: options.orm, hub, logger }).run(loops.signal));
  if (options.amqpUrl) {
    let connectedBefore = false;
    const onConnected = () => {
      // Notifications sent while disconnected are lost: a snapshot repairs the gap.
      if (connectedBefore) cache.requestResync('notifications reconnected');
      connectedBefore = true;
    };
    running.push(runNotificationConsumer({ amqpUrl: options.amqpUrl, logger, onNotification: (n) => cache.apply(n), onConnected }, loops.signal));
  }
  fault.resume();
  logger.info('inspector listening', { address, httpAddress, nova: nova !== undefined, notifications: options.amqpUrl !== undefined });

  let stopped: Promise<void> | undefined;
  return {
    name: 'inspector',
    address,
    httpAddress,
    stop: () =>
      (stopped ??= (async () => {
        await http.close();
        await grpc.shutdown();
        loops.abort();
        await fault.stop(options.novaShutdownGraceMs ?? 10_000);
        storing.abort();
        await Promise.allSettled(running);
      })()),
  };
}
