// The inspector role (OPNFV Doctor): InspectorService on gRPC, Doctor's
// PUT /events on HTTP, the host → VMs cache fed by Nova and its notifications,
// VIM alarms from the conductor's NOTIFY. Wiring only. Without OpenStack or
// AMQP settings it still runs (alarms without Nova) and logs what is missing.
import { withPort } from '../common/address.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { runDatabaseHealth, type DatabaseHealthSettings } from '../common/database-health.js';
import { parseEnvironment, type Environment, type RetentionSettings } from '../common/env.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import type { Metrics } from '../common/metrics.js';
import type { RunningRole } from '../common/role.js';
import type { Tls } from '../common/tls.js';
import type { Auth } from '../common/auth/authenticator.js';
import type { Orm } from '../db/connection.js';
import { runRetention } from '../db/retention.js';
import { createAlarmStore } from './alarm-store.js';
import { createAlarmHub } from './alarm-stream.js';
import { createSharedAlarmHub } from './shared-alarm-hub.js';
import { createDoctorHttpServer } from './doctor-http.js';
import { createFaultHandler, type NovaRetryOptions, type ResetStateMode } from './fault.js';
import { createKeystoneSession } from '../common/keystone.js';
import { runNotificationConsumer } from './notifications.js';
import { createNovaClient, withCallMetrics, type NovaClient } from './nova.js';
import { createNeutronClient, withNeutronCallMetrics, type NeutronClient } from './neutron.js';
import { createMaintenance } from './maintenance.js';
import { loadOpenStackConfig } from '../common/openstack-config.js';
import { createHostLeases } from './host-lease.js';
import { createProfiler } from './profiler.js';
import { createTakeover } from './takeover.js';
import { createInspectorService, servedInspectorDefinition } from './service.js';
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
  /** OS_* variables (or OS_CLOUD) for Keystone and Nova (openStackVariables of common/env.ts). */
  env: NodeJS.ProcessEnv;
  resyncIntervalMs: number;
  /** Nova calls in flight at once over all faults (default 64). */
  novaConcurrency?: number;
  /** Per Nova HTTP request (default 30 s). */
  novaTimeoutMs?: number;
  novaRetry?: NovaRetryOptions;
  /** Alarms a subscriber may have waiting before RESOURCE_EXHAUSTED (default 10,000). */
  subscriberQueueSize?: number;
  /** Estimated bytes a subscriber may have waiting before RESOURCE_EXHAUSTED (default 8 MiB). */
  subscriberQueueBytes?: number;
  /** Alarms raised and not yet stored (database down) beyond which ReportEvents answers UNAVAILABLE (default 200,000). */
  maxPendingAlarms?: number;
  /** Hosts known down at once; a "down" for one more is RESOURCE_EXHAUSTED (default 100,000). */
  maxHostsDown?: number;
  /** 'error' (default): force the host down and reset its VMs to error; 'off': force it down only. */
  resetState?: ResetStateMode;
  /** Doctor's update_neutron_port_dp_status: ports of a host down set DOWN, ACTIVE again when it is back (default off). */
  neutron?: boolean;
  /** How often Nova work another inspector on the database left unfinished is looked for, and taken over (default 5 s). */
  takeoverIntervalMs?: number;
  /** How long stop() waits for Nova work before cutting it short (default 10 s). */
  novaShutdownGraceMs?: number;
  /**
   * Several inspectors share the database (VIMMON_INSPECTOR_SHARED): each delivers every alarm,
   * its own and the others', from the table (shared-alarm-hub.ts). Every inspector of a database
   * must say the same. Default false: the shortcut, alarms sent before they are stored (alarm-stream.ts).
   */
  shared?: boolean;
  /** 'after-nova' is Doctor's conservative order, for measurements only. */
  alarmTiming?: 'before-nova' | 'after-nova';
  /** For measurements only: 'per-stream' encodes each alarm once per SubscribeAlarms stream. */
  alarmEncoding?: 'once' | 'per-stream';
  /** TLS for InspectorService and Doctor's HTTP endpoint (HTTPS then). */
  tls?: Tls;
  /** Who may report faults and read alarms, on gRPC and HTTP alike; unset: development mode. */
  auth?: Auth;
  /** How often the database is checked for the health service (NOT_SERVING while it is down). */
  databaseHealth?: DatabaseHealthSettings;
  /** For tests: the fetch Keystone and Nova calls go through. */
  fetch?: typeof fetch;
  /** The process's metrics (the inspector's and the gRPC ones); unset: none recorded. */
  metrics?: Metrics;
  /**
   * Retention (VIMMON_RETENTION_ALARM_AGE and the others): this role removes old alarms and quarantined ones; unset: none removed. Fault profiles
   * need none: they live in memory only, the newest 1,000 (profiler.ts).
   */
  retention?: RetentionSettings;
}

export type RunningInspector = RunningRole & { httpAddress: string };

export { defaultAmqpUrl } from '../common/env.js';

type InspectorSettings = Pick<
  InspectorOptions,
  | 'amqpUrl'
  | 'resyncIntervalMs'
  | 'novaConcurrency'
  | 'subscriberQueueSize'
  | 'subscriberQueueBytes'
  | 'maxPendingAlarms'
  | 'maxHostsDown'
  | 'resetState'
  | 'neutron'
  | 'shared'
>;

/** The inspector's own settings, from the environment parsed once (common/env.ts); the OS_* ones go in `env`. */
export function inspectorSettings(e: Environment): InspectorSettings {
  return {
    amqpUrl: e.VIMMON_AMQP_URL,
    resyncIntervalMs: e.VIMMON_INSPECTOR_RESYNC,
    novaConcurrency: e.VIMMON_INSPECTOR_NOVA_CONCURRENCY,
    subscriberQueueSize: e.VIMMON_INSPECTOR_SUBSCRIBER_QUEUE,
    subscriberQueueBytes: e.VIMMON_INSPECTOR_SUBSCRIBER_QUEUE_BYTES,
    maxPendingAlarms: e.VIMMON_INSPECTOR_MAX_PENDING_ALARMS,
    maxHostsDown: e.VIMMON_INSPECTOR_MAX_HOSTS_DOWN,
    resetState: e.VIMMON_INSPECTOR_RESET_STATE,
    neutron: e.VIMMON_INSPECTOR_NEUTRON,
    // Only when on: the single-inspector settings stay as they were.
    ...(e.VIMMON_INSPECTOR_SHARED ? { shared: true } : {}),
  };
}

/** Parses the whole environment: a bad value of any variable throws, every one named. */
export function inspectorSettingsFromEnv(env: NodeJS.ProcessEnv): InspectorSettings {
  return inspectorSettings(parseEnvironment(env));
}

export async function startInspector(options: InspectorOptions): Promise<RunningInspector> {
  const logger = options.logger.child({ role: 'inspector' });
  const startedAt = new Date();
  const metrics = options.metrics?.inspector();
  const openstack = loadOpenStackConfig(options.env);
  let nova: NovaClient | undefined;
  const missing: string[] = [];
  let neutron: NeutronClient | undefined;
  if ('config' in openstack) {
    const session = createKeystoneSession(openstack.config, { fetch: options.fetch });
    nova = createNovaClient(session, { fetch: options.fetch, timeoutMs: options.novaTimeoutMs });
    if (metrics) nova = withCallMetrics(nova, metrics);
    if (options.neutron) {
      neutron = createNeutronClient(session, { fetch: options.fetch, timeoutMs: options.novaTimeoutMs });
      if (metrics) neutron = withNeutronCallMetrics(neutron, metrics);
    }
  } else {
    if (options.neutron) logger.warn('VIMMON_INSPECTOR_NEUTRON=on, but OpenStack is not configured: no port is touched');
    missing.push(...openstack.missing);
    logger.warn('OpenStack is not configured: no VM cache, no force-down, no reset-state; host alarms are still raised', {
      missing: openstack.missing,
    });
  }
  if (!options.amqpUrl) {
    missing.push('VIMMON_AMQP_URL');
    logger.warn('no AMQP URL: Nova notifications are not consumed; the cache is repaired by the periodic resync only');
  }

  const store = createAlarmStore(options.orm, { idsAtInsert: options.shared });
  const hubOptions = {
    store,
    logger,
    subscriberQueueSize: options.subscriberQueueSize,
    subscriberQueueBytes: options.subscriberQueueBytes,
    maxPendingAlarms: options.maxPendingAlarms,
    metrics,
  };
  const hub = options.shared ? createSharedAlarmHub({ ...hubOptions, databaseUrl: options.databaseUrl }) : createAlarmHub(hubOptions);
  await hub.start();
  const cache = createVmCache({ nova, logger, resyncIntervalMs: options.resyncIntervalMs });
  const profiler = createProfiler({ logger });
  // Read before the fault handler resumes: work held back for a host in maintenance stays held.
  const maintenance = createMaintenance({ orm: options.orm, hub, logger, onEnded: (host) => fault.maintenanceEnded(host) });
  await maintenance.load();
  // Several inspectors may share the database: a host's Nova work is driven by the holder of its lease.
  const leases = createHostLeases({ databaseUrl: options.databaseUrl, logger });
  const fault = createFaultHandler({
    leases,
    logger,
    hub,
    profiler,
    vms: cache,
    nova,
    novaMissing: 'missing' in openstack ? openstack.missing : [],
    novaConcurrency: options.novaConcurrency ?? 64,
    neutron,
    maintenance,
    novaRetry: options.novaRetry,
    hosts: await store.loadHosts(),
    maxHostsDown: options.maxHostsDown,
    resetState: options.resetState,
    alarmTiming: options.alarmTiming,
    metrics,
  });
  const service = createInspectorService({
    fault,
    vms: cache,
    hub,
    profiler,
    status: () => ({
      cachedVms: cache.size,
      cacheSyncedAt: cache.lastSyncAt,
      novaConfigured: nova !== undefined,
      notificationsConfigured: options.amqpUrl !== undefined,
      missingConfig: missing,
      neutronConfigured: neutron !== undefined,
    }),
    maintenance,
  });
  const grpc = createGrpcServer({
    logger,
    tls: options.tls,
    auth: options.auth,
    metrics: options.metrics,
    services: [
      serviceEntry(InspectorServiceDefinition, service, options.alarmEncoding === 'per-stream' ? undefined : servedInspectorDefinition),
    ],
  });
  const http = createDoctorHttpServer({
    logger,
    report: (events) => fault.report(events),
    maintenance: (change, caller) => maintenance.set(change, caller.name),
    tls: options.tls,
    authorize: options.auth && ((rule, credentials) => options.auth!.authorize(rule, credentials)),
  });

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
    await leases.close();
    throw err;
  }
  running.push(
    cache.run(loops.signal),
    createVimAlarmSource({ databaseUrl: options.databaseUrl, orm: options.orm, hub, logger }).run(loops.signal),
  );
  // Raw SQL: a liveness ping touches no table, so there is no entity to query through.
  const check = () => options.orm.em.fork().getConnection().execute('select 1');
  running.push(runDatabaseHealth({ ...options.databaseHealth, check, health: grpc.health, logger, signal: loops.signal }));
  if (options.retention) {
    const settings = {
      ...options.retention,
      limits: { alarm: options.retention.limits.alarm, alarm_quarantine: options.retention.limits.alarm_quarantine },
    };
    running.push(runRetention({ ...settings, orm: options.orm, logger, metrics: options.metrics?.retention() }, loops.signal));
  }
  if (options.amqpUrl) {
    let connectedBefore = false;
    const connected = metrics?.rabbitmqConnected();
    connected?.set(0);
    const onConnected = () => {
      connected?.set(1);
      // Notifications sent while disconnected are lost: a snapshot repairs the gap.
      if (connectedBefore) cache.requestResync('notifications reconnected');
      connectedBefore = true;
    };
    const onDisconnected = () => connected?.set(0);
    running.push(
      runNotificationConsumer(
        { amqpUrl: options.amqpUrl, logger, onNotification: (n) => cache.apply(n), onConnected, onDisconnected },
        loops.signal,
      ).finally(onDisconnected),
    );
  }
  const stopReading = metrics?.read({
    alarmSubscribers: () => hub.stats().subscribers,
    cachedVms: () => cache.size,
    lastSnapshotAt: () => cache.lastSyncAt,
    startedAt,
  });
  fault.resume();
  const takeover = createTakeover({
    store,
    leases,
    takeOver: (rec) => fault.takeOver(rec),
    logger,
    intervalMs: options.takeoverIntervalMs ?? 5_000,
  });
  // Without Nova there is no work to take over.
  if (nova) running.push(takeover.run(loops.signal));
  logger.info('inspector listening', { address, httpAddress, nova: nova !== undefined, notifications: options.amqpUrl !== undefined });

  let stopped: Promise<void> | undefined;
  return {
    name: 'inspector',
    address,
    httpAddress,
    stop: () =>
      (stopped ??= (async () => {
        stopReading?.();
        await http.close();
        await grpc.shutdown();
        loops.abort();
        await fault.stop(options.novaShutdownGraceMs ?? 10_000);
        storing.abort();
        await Promise.allSettled(running);
        // Last: the leases of work cut short go with the connection, for another inspector to take over.
        await leases.close();
      })()),
  };
}
