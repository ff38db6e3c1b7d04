// A real inspector on port 0 for end-to-end tests, on a database of its own and
// (optionally) the OpenStack double, with a gRPC client; a live subscription
// that records each alarm; a Doctor event; waiting for a fault's profile.
import type { ExecutionContext } from 'ava';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import { InspectorServiceDefinition, type Alarm, type InspectorServiceClient } from '../../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector, type InspectorOptions, type RunningInspector } from '../../inspector/main.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { testLogger } from './logger.js';
import { openrcEnv, type OpenStackDouble } from './openstack-double.js';
import { eventually } from './wait.js';

export interface InspectorHarness {
  db: TestDatabase;
  inspector: RunningInspector;
  client: InspectorServiceClient;
  stop(): Promise<void>;
}

/** Starts an inspector (stopped at teardown, or by stop()); with a double, returns once its cache holds every server. */
export async function startInspectorHarness(
  t: ExecutionContext,
  d: OpenStackDouble | undefined,
  options: Partial<InspectorOptions> & { db?: TestDatabase } = {},
): Promise<InspectorHarness> {
  const { db: given, ...rest } = options;
  const db = given ?? (await createTestDatabase(t));
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: d ? openrcEnv(d) : {},
    resyncIntervalMs: 60_000,
    novaRetry: { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 100 },
    ...rest,
  });
  const channel: Channel = createChannel(inspector.address);
  const client = createClient(InspectorServiceDefinition, channel);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      channel.close();
      await inspector.stop();
    })());
  t.teardown(stop);
  if (d) await eventually(async () => (await client.getStatus({})).cachedVms === d.servers().length, 10_000, 'the cache snapshot');
  return { db, inspector, client, stop };
}

/** A live subscription recording every alarm; ends at teardown. Resolves once the inspector counts it. */
export async function subscribeLive(t: ExecutionContext, client: InspectorServiceClient) {
  const before = (await client.getStatus({})).subscribers;
  const controller = new AbortController();
  const got: Alarm[] = [];
  const result: { error?: unknown } = {};
  void (async () => {
    try {
      for await (const alarm of client.subscribeAlarms({ liveOnly: true }, { signal: controller.signal })) got.push(alarm);
    } catch (err) {
      if (!controller.signal.aborted) result.error = err;
    }
  })();
  t.teardown(() => controller.abort());
  await eventually(async () => (await client.getStatus({})).subscribers > before, 5_000, 'the subscriber');
  return { got, result };
}

/** A compute.host.down event as ReportEvents takes it. */
export function hostEvent(hostname: string, status: 'down' | 'up' = 'down') {
  return {
    time: new Date(),
    type: 'compute.host.down',
    hostname,
    status,
    monitor: 'test-monitor',
    monitorEventId: `${hostname}-${Math.random().toString(36).slice(2)}`,
  };
}

/** The fault's profile once its Nova (and Neutron) work is over. */
export async function profileDone(client: InspectorServiceClient, faultId: string, timeoutMs = 30_000) {
  return eventually(
    async () => {
      const { profile } = await client.getFaultProfile({ faultId });
      return profile?.completedAt ? profile : undefined;
    },
    timeoutMs,
    `fault ${faultId} to complete`,
  );
}

/** The most calls of `calls` the double was answering at once. */
export function peakInFlight(calls: Array<{ receivedAt: number; finishedAt?: number }>): number {
  const events = calls
    .flatMap((c) => [[c.receivedAt, 1] as const, [c.finishedAt ?? Number.POSITIVE_INFINITY, -1] as const])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let inFlight = 0;
  let peak = 0;
  for (const [, delta] of events) peak = Math.max(peak, (inFlight += delta));
  return peak;
}
