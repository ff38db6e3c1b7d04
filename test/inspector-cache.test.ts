import test, { type ExecutionContext } from 'ava';
import { amqpEndpoint, canConnect } from './support/preflight.js';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { createLogger, type Logger } from '../common/logger.js';
import { createKeystoneSession } from '../common/keystone.js';
import { createNovaClient, type NovaClient } from '../inspector/nova.js';
import {
  parseNovaNotification,
  runNotificationConsumer,
  type InstanceNotification,
  type NotificationConsumerOptions,
} from '../inspector/notifications.js';
import { createVmCache, type VmCache, type VmCacheOptions } from '../inspector/vm-cache.js';
import {
  novaNotificationBody,
  startOpenStackDouble,
  type InstanceNotificationFields,
  type OpenStackDouble,
} from './support/openstack-double.js';

const amqpUrl = process.env.VIMMON_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const run = promisify(execFile);

interface Setup {
  d: OpenStackDouble;
  nova: NovaClient;
  cache: VmCache;
  logs: Array<Record<string, unknown>>;
  logger: Logger;
}

async function setup(t: ExecutionContext, options: { pageSize?: number } & Partial<VmCacheOptions> = {}): Promise<Setup> {
  const d = await startOpenStackDouble({ pageSize: options.pageSize ?? 100 });
  t.teardown(() => d.close());
  const nova = createNovaClient(createKeystoneSession({ authUrl: d.authUrl, ...d.credentials, interface: 'public' }));
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line)) });
  const cache = createVmCache({ nova, logger, resyncIntervalMs: 60_000, retryBaseDelayMs: 20, retryMaxDelayMs: 100, ...options });
  return { d, nova, cache, logs, logger };
}

/** Runs a loop for the test and stops it at teardown, failing the test if it does not end. */
function runFor(t: ExecutionContext, loop: (signal: AbortSignal) => Promise<void>): AbortController {
  const controller = new AbortController();
  const done = loop(controller.signal);
  t.teardown(async () => {
    controller.abort();
    const ended = await Promise.race([done.then(() => true), sleep(5_000, undefined, { ref: false }).then(() => false)]);
    if (!ended) throw new Error('loop did not end within 5 s of its signal');
  });
  return controller;
}

async function eventually(t: ExecutionContext, what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > until) {
      t.fail(`timed out waiting for: ${what}`);
      throw new Error(`timed out waiting for: ${what}`);
    }
    await sleep(10);
  }
}

const notification = (eventType: string, f: InstanceNotificationFields): InstanceNotification => {
  const n = parseNovaNotification(novaNotificationBody(eventType, f));
  if (!n) throw new Error(`${eventType} not handled`);
  return n;
};

const ids = (cache: VmCache, host: string) =>
  cache
    .vmsOnHost(host)
    .map((v) => v.id)
    .sort();
const sorted = (xs: string[]) => [...xs].sort();

// --- snapshot and resync ---------------------------------------------------------

test('snapshot: every page of Nova is indexed by host', async (t) => {
  const { d, cache } = await setup(t, { pageSize: 2 });
  const h1 = [0, 1, 2].map((i) => d.addServer({ host: 'compute-1', name: `a${i}` }));
  const h2 = [0, 1].map(() => d.addServer({ host: 'compute-2' }));
  const h3 = d.addServer({ host: 'compute-3', projectId: 'p-3', name: 'lonely' });
  t.is(cache.lastSyncAt, undefined);
  await cache.resync();
  t.deepEqual(ids(cache, 'compute-1'), sorted(h1));
  t.deepEqual(ids(cache, 'compute-2'), sorted(h2));
  t.deepEqual(cache.vmsOnHost('compute-3'), [{ id: h3, name: 'lonely', projectId: 'p-3', host: 'compute-3', state: 'active' }]);
  t.deepEqual(cache.vmsOnHost('compute-9'), []);
  t.is(cache.size, 6);
  t.truthy(cache.lastSyncAt);
  t.is(d.computeCalls().filter((c) => c.path.includes('/servers/detail')).length, 4, '2 + 2 + 2 + empty page');
  // Readers get a copy: changing it changes nothing in the cache.
  cache.vmsOnHost('compute-1').pop();
  t.is(cache.vmsOnHost('compute-1').length, 3);
});

test('run: the first snapshot is retried while Nova fails, then resyncs repair drift every interval', async (t) => {
  const { d, cache, logs } = await setup(t, { resyncIntervalMs: 200 });
  const a = d.addServer({ host: 'compute-1' });
  d.failNext(3, 503, (_m, p) => p.includes('/servers/detail'));
  runFor(t, (signal) => cache.run(signal));
  await eventually(t, 'the first snapshot', () => cache.size === 1);
  const failures = logs.filter((l) => l.msg === 'Nova snapshot failed; retrying');
  t.is(failures.length, 3);
  t.like(failures[0], { level: 'error', status: 503, retryable: true });
  // Drift that no notification reported: the next interval repairs it.
  const b = d.addServer({ host: 'compute-2' });
  d.moveServer(a, 'compute-2');
  await eventually(t, 'the periodic resync', () => ids(cache, 'compute-2').length === 2);
  t.deepEqual(ids(cache, 'compute-2'), sorted([a, b]));
  t.deepEqual(cache.vmsOnHost('compute-1'), []);
});

test('resync repairs drift: added, removed and moved VMs, and reports what it changed', async (t) => {
  const { d, cache } = await setup(t);
  const keep = d.addServer({ host: 'compute-1' });
  const gone = d.addServer({ host: 'compute-1' });
  const moved = d.addServer({ host: 'compute-1' });
  await cache.resync();
  t.is(cache.size, 3);
  d.removeServer(gone);
  d.moveServer(moved, 'compute-2');
  const added = d.addServer({ host: 'compute-3' });
  t.deepEqual(ids(cache, 'compute-1'), sorted([keep, gone, moved]), 'nothing changes without a notification or a resync');
  await cache.resync();
  t.deepEqual(ids(cache, 'compute-1'), [keep]);
  t.deepEqual(ids(cache, 'compute-2'), [moved]);
  t.deepEqual(ids(cache, 'compute-3'), [added]);
  t.like(cache.lastResync, { servers: 3, added: 1, removed: 1, moved: 1 });
  await cache.resync();
  t.like(cache.lastResync, { added: 0, removed: 0, moved: 0 }, 'a second pass changes nothing');
});

test('notifications applied during a resync are not lost to the older snapshot', async (t) => {
  const { d, cache, logs } = await setup(t, { pageSize: 2 });
  const s1 = d.addServer({ host: 'compute-1' });
  const s2 = d.addServer({ host: 'compute-1' });
  const s3 = d.addServer({ host: 'compute-1' });
  const s4 = d.addServer({ host: 'compute-1' });
  await cache.resync();
  const pages = () => d.computeCalls().filter((c) => c.path.includes('/servers/detail'));
  const before = pages().length;
  d.setLatency(150, (_m, p) => p.includes('/servers/detail'));
  const resyncing = cache.resync();
  // Page one (s4, s3: newest first) is served; then Nova changes and says so.
  await eventually(t, 'page one served', () => pages()[before]?.finishedAt !== undefined);
  d.removeServer(s4);
  cache.apply(notification('instance.delete.end', { id: s4, host: 'compute-1' }));
  d.moveServer(s3, 'compute-2');
  cache.apply(notification('instance.live_migration_post_dest.end', { id: s3, host: 'compute-2' }));
  const s5 = d.addServer({ host: 'compute-3' });
  cache.apply(notification('instance.create.end', { id: s5, host: 'compute-3' }));
  t.deepEqual(ids(cache, 'compute-2'), [s3], 'applied at once, during the resync');
  await resyncing;
  t.deepEqual(ids(cache, 'compute-1'), sorted([s1, s2]), 'the deleted VM stays deleted');
  t.deepEqual(ids(cache, 'compute-2'), [s3], 'the move is kept');
  t.deepEqual(ids(cache, 'compute-3'), [s5], 'the new VM is kept');
  t.like(
    logs.find((l) => l.msg === 'host → VMs cache resynchronised' && l.replayed === 3),
    { replayed: 3 },
  );
  // A late update about the deleted VM cannot bring it back.
  cache.apply(notification('instance.update', { id: s4, host: 'compute-1' }));
  t.false(ids(cache, 'compute-1').includes(s4));
});

test('ordering: a notification older than what the cache knows is ignored', async (t) => {
  const { d, cache } = await setup(t);
  const id = d.addServer({ host: 'compute-2' });
  await cache.resync(); // Nova's updated time: now
  cache.apply(notification('instance.update', { id, host: 'compute-1', updatedAt: '2020-01-01T00:00:00Z' }));
  t.deepEqual(ids(cache, 'compute-2'), [id]);
  cache.apply(notification('instance.update', { id, host: 'compute-1', updatedAt: new Date(Date.now() + 60_000).toISOString() }));
  t.deepEqual(ids(cache, 'compute-1'), [id]);
});

test('notifications: create, update keyed on host (not host_name), migrate, evacuate, shelve and delete', async (t) => {
  const { cache } = await setup(t, { nova: undefined });
  const id = randomUUID();
  cache.apply(notification('instance.update', { id, host: null, state: 'building' }));
  t.is(cache.size, 0, 'scheduling: on no host yet');
  cache.apply(notification('instance.create.end', { id, host: 'compute-1', name: 'web', hostName: 'compute-9', projectId: 'p1' }));
  t.deepEqual(cache.vmsOnHost('compute-1'), [{ id, name: 'web', projectId: 'p1', host: 'compute-1', state: 'active' }]);
  t.deepEqual(cache.vmsOnHost('compute-9'), [], 'host_name is the guest name');
  cache.apply(notification('instance.live_migration_post_dest.end', { id, host: 'compute-2' }));
  t.deepEqual(ids(cache, 'compute-2'), [id]);
  t.deepEqual(cache.vmsOnHost('compute-1'), []);
  cache.apply(notification('instance.live_migration_rollback.end', { id, host: 'compute-2' }));
  cache.apply(notification('instance.evacuate', { id, host: 'compute-3' }));
  t.deepEqual(ids(cache, 'compute-3'), [id]);
  cache.apply(notification('instance.shelve_offload.end', { id, host: null, state: 'shelved_offloaded' }));
  t.is(cache.size, 0);
  cache.apply(notification('instance.unshelve.end', { id, host: 'compute-4' }));
  t.deepEqual(ids(cache, 'compute-4'), [id]);
  cache.apply(notification('instance.delete.end', { id, host: 'compute-4' }));
  t.is(cache.size, 0);
  t.deepEqual(cache.vmsOnHost('compute-4'), []);
});

test('a stale live_migration_post.end (sent by the source) does not move the VM back; Nova is asked where it is', async (t) => {
  const { d, cache } = await setup(t);
  const id = d.addServer({ host: 'compute-1' });
  runFor(t, (signal) => cache.run(signal));
  await eventually(t, 'snapshot', () => cache.size === 1);
  // post_dest.end from the destination, then post.end from the source with its old host.
  d.moveServer(id, 'compute-2');
  cache.apply(notification('instance.live_migration_post_dest.end', { id, host: 'compute-2' }));
  cache.apply(notification('instance.live_migration_post.end', { id, host: 'compute-1' }));
  t.deepEqual(ids(cache, 'compute-2'), [id]);
  t.is(d.computeCalls().filter((c) => c.path.endsWith(`/servers/${id}`)).length, 0, 'no lookup needed');
  // The destination's notification was lost: the source's one makes the cache ask Nova.
  d.moveServer(id, 'compute-3');
  cache.apply(notification('instance.live_migration_post.end', { id, host: 'compute-2' }));
  await eventually(t, 'the lookup', () => ids(cache, 'compute-3').length === 1);
  t.is(d.computeCalls().filter((c) => c.path.endsWith(`/servers/${id}`)).length, 1);
});

test('parsing: oslo 2.0 envelope or bare message; unhandled types and unversioned payloads are ignored', (t) => {
  const id = randomUUID();
  const body = novaNotificationBody('instance.update', {
    id,
    host: 'compute-1',
    name: 'n',
    projectId: 'p',
    updatedAt: '2024-05-01T10:00:00Z',
  });
  t.deepEqual(parseNovaNotification(Buffer.from(body)), {
    eventType: 'instance.update',
    instanceId: id,
    host: 'compute-1',
    projectId: 'p',
    name: 'n',
    state: 'active',
    deleted: false,
    updatedAt: Date.parse('2024-05-01T10:00:00Z'),
  });
  const bare = JSON.parse(JSON.parse(body)['oslo.message']);
  t.is(parseNovaNotification(JSON.stringify(bare))?.instanceId, id);
  t.is(parseNovaNotification(novaNotificationBody('instance.power_off.start', { id, host: 'h' })), undefined);
  t.is(
    parseNovaNotification(JSON.stringify({ event_type: 'compute.instance.update', payload: { instance_id: id, host: 'h' } })),
    undefined,
  );
  t.true(parseNovaNotification(novaNotificationBody('instance.delete.end', { id, host: 'h' }))!.deleted);
  t.true(parseNovaNotification(novaNotificationBody('instance.live_migration_post.end', { id, host: 'h' }))!.hostStale);
  t.throws(() => parseNovaNotification('{not json'));
});

// --- real RabbitMQ -----------------------------------------------------------------

// Whether RabbitMQ answers is decided at load time: where it does not and this is
// not CI, its tests are skipped with the reason; in CI they run and fail with it.
const amqpAt = amqpEndpoint(amqpUrl);
const amqpProblem = canConnect(amqpAt.host, amqpAt.port)
  ? undefined
  : `RabbitMQ not reachable at ${amqpUrl.replace(/\/\/[^@]*@/, '//***@')}: set VIMMON_AMQP_URL or start rabbitmq-server`;
const amqpTest = !amqpProblem || process.env.CI ? test : test.skip;
if (amqpProblem && !process.env.CI) console.warn(`inspector-cache: RabbitMQ tests skipped — ${amqpProblem}`);
const haveRabbitmqctl = spawnSync('sh', ['-c', 'command -v rabbitmqctl']).status === 0;

async function publisher(t: ExecutionContext) {
  const connection = await amqp.connect(amqpUrl);
  t.teardown(() => connection.close().catch(() => {}));
  const channel = await connection.createConfirmChannel();
  await channel.assertExchange('nova', 'topic', { durable: false });
  return async (eventType: string, f: InstanceNotificationFields) => {
    channel.publish('nova', 'versioned_notifications.info', Buffer.from(novaNotificationBody(eventType, f)), {
      contentType: 'application/json',
      contentEncoding: 'utf-8',
    });
    await channel.waitForConfirms();
  };
}

function consumer(t: ExecutionContext, s: Setup, connectionName: string, more: Partial<NotificationConsumerOptions> = {}) {
  const state = { connected: 0, received: [] as InstanceNotification[] };
  runFor(t, (signal) =>
    runNotificationConsumer(
      {
        amqpUrl,
        logger: s.logger,
        connectionName,
        reconnectBaseDelayMs: 50,
        reconnectMaxDelayMs: 200,
        onNotification(n) {
          state.received.push(n);
          s.cache.apply(n);
        },
        onConnected() {
          state.connected++;
          s.cache.requestResync('notifications reconnected');
        },
        ...more,
      },
      signal,
    ),
  );
  return state;
}

amqpTest('RabbitMQ: Nova notifications add, move and delete VMs in the cache', async (t) => {
  if (amqpProblem) return t.fail(amqpProblem);
  const s = await setup(t);
  const before = s.d.addServer({ host: 'compute-1' });
  runFor(t, (signal) => s.cache.run(signal));
  const c = consumer(t, s, `vimmon-test-${randomBytes(4).toString('hex')}`);
  await eventually(t, 'consumer connected and snapshot taken', () => c.connected === 1 && s.cache.size === 1);
  const publish = await publisher(t);
  const id = randomUUID();
  await publish('instance.create.end', { id, host: 'compute-1', name: 'db', hostName: 'db.example' });
  await eventually(t, 'the new VM', () => ids(s.cache, 'compute-1').length === 2);
  t.deepEqual(ids(s.cache, 'compute-1'), sorted([before, id]));
  t.is(s.cache.vmsOnHost('compute-1').find((v) => v.id === id)!.name, 'db');
  await publish('instance.live_migration_post_dest.end', { id, host: 'compute-2' });
  await eventually(t, 'the move', () => ids(s.cache, 'compute-2').length === 1);
  t.deepEqual(ids(s.cache, 'compute-1'), [before]);
  await publish('instance.power_off.end', { id, host: 'compute-7' }); // not handled
  await publish('instance.delete.end', { id, host: 'compute-2' });
  await eventually(t, 'the deletion', () => ids(s.cache, 'compute-2').length === 0);
  t.deepEqual(
    c.received.map((n) => n.eventType),
    ['instance.create.end', 'instance.live_migration_post_dest.end', 'instance.delete.end'],
  );
});

(haveRabbitmqctl || process.env.CI ? amqpTest : test.skip)(
  'RabbitMQ: the consumer reconnects after the broker closes its connection, and a resync follows',
  async (t) => {
    if (amqpProblem) return t.fail(amqpProblem);
    const s = await setup(t);
    const name = `vimmon-test-${randomBytes(4).toString('hex')}`;
    runFor(t, (signal) => s.cache.run(signal));
    const c = consumer(t, s, name);
    await eventually(t, 'connected', () => c.connected === 1 && s.cache.lastSyncAt !== undefined);
    const publish = await publisher(t);

    // While the consumer is away, a VM appears; its notification is lost with the connection.
    let pid: string | undefined;
    try {
      const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties', '--no-table-headers']);
      pid = stdout
        .split('\n')
        .find((l) => l.includes(`"${name}"`))
        ?.split('\t')[0];
    } catch (err) {
      return t.fail(`rabbitmqctl unavailable (${(err as Error).message.split('\n')[0]}): cannot close the connection from the broker side`);
    }
    t.truthy(pid, 'the consumer connection is listed under its name');
    const detailsBefore = s.d.computeCalls().filter((x) => x.path.includes('/servers/detail')).length;
    const missed = s.d.addServer({ host: 'compute-5' });
    await run('rabbitmqctl', ['-q', 'close_connection', pid!, 'test: broker-side close']);
    await eventually(t, 'reconnected', () => c.connected === 2, 10_000);
    t.true(s.logs.some((l) => String(l.msg).startsWith('AMQP connection lost')));
    // The resync asked for at reconnection finds what the lost notifications would have said.
    await eventually(t, 'resync after reconnection', () => ids(s.cache, 'compute-5').length === 1);
    t.deepEqual(ids(s.cache, 'compute-5'), [missed]);
    t.true(s.d.computeCalls().filter((x) => x.path.includes('/servers/detail')).length > detailsBefore);
    // And notifications flow again.
    const id = randomUUID();
    await publish('instance.create.end', { id, host: 'compute-6' });
    await eventually(t, 'a notification after reconnection', () => ids(s.cache, 'compute-6').length === 1);
  },
);

/** A virtual host of the test's own, so that closing all its connections touches nothing else on the broker. */
async function virtualHost(t: ExecutionContext): Promise<{ name: string; url: string }> {
  const name = `vimmon-test-${randomBytes(4).toString('hex')}`;
  await run('rabbitmqctl', ['-q', 'add_vhost', name]);
  t.teardown(() =>
    run('rabbitmqctl', ['-q', 'delete_vhost', name]).then(
      () => {},
      () => {},
    ),
  );
  await run('rabbitmqctl', ['-q', 'set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  const url = new URL(amqpUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  return { name, url: url.toString() };
}

/** Publishes to an exchange it does not declare: what arrives went through the consumer's own topology. */
async function publisherWithoutTopology(t: ExecutionContext, url: string, exchange = 'nova') {
  const connection = await amqp.connect(url);
  t.teardown(() => connection.close().catch(() => {}));
  const channel = await connection.createConfirmChannel();
  await channel.checkExchange(exchange);
  return async (eventType: string, f: InstanceNotificationFields) => {
    channel.publish(exchange, 'versioned_notifications.info', Buffer.from(novaNotificationBody(eventType, f)));
    await channel.waitForConfirms();
  };
}

const queuesConsumed = (s: Setup) => s.logs.filter((l) => l.msg === 'consuming Nova notifications').map((l) => String(l.queue));

(haveRabbitmqctl || process.env.CI ? amqpTest : test.skip)(
  'RabbitMQ: after close_all_connections the consumer declares its exchange, queue and binding again',
  async (t) => {
    if (amqpProblem) return t.fail(amqpProblem);
    const vhost = await virtualHost(t);
    const s = await setup(t, { nova: undefined });
    const c = consumer(t, s, `vimmon-test-${randomBytes(4).toString('hex')}`, { amqpUrl: vhost.url });
    await eventually(t, 'connected', () => c.connected === 1, 10_000);
    // The exchange goes (and every binding with it) while the consumer is connected:
    // only a consumer that declares its topology again on reconnection has it back.
    const admin = await amqp.connect(vhost.url);
    await (await admin.createChannel()).deleteExchange('nova');
    await admin.close();
    await run('rabbitmqctl', ['-q', 'close_all_connections', '-p', vhost.name, 'test: every connection of the virtual host closed']);
    await eventually(t, 'reconnected', () => c.connected === 2, 10_000);
    t.true(s.logs.some((l) => String(l.msg).startsWith('AMQP connection lost')));
    const [first, second] = queuesConsumed(s);
    t.not(second, first, 'a new exclusive queue: the old one went with its connection');
    const publish = await publisherWithoutTopology(t, vhost.url);
    const id = randomUUID();
    await publish('instance.create.end', { id, host: 'compute-1' });
    await eventually(t, 'a notification through the declared-again topology', () => ids(s.cache, 'compute-1').length === 1);
    t.deepEqual(ids(s.cache, 'compute-1'), [id]);
  },
);

(haveRabbitmqctl || process.env.CI ? amqpTest : test.skip)(
  'RabbitMQ: a queue deleted under a live connection is declared again and consumed',
  async (t) => {
    if (amqpProblem) return t.fail(amqpProblem);
    const s = await setup(t, { nova: undefined });
    const c = consumer(t, s, `vimmon-test-${randomBytes(4).toString('hex')}`);
    await eventually(t, 'connected', () => c.connected === 1, 10_000);
    const [first] = queuesConsumed(s);
    // The broker cancels the consumer; the connection stays up, so only the consumer can notice.
    await run('rabbitmqctl', ['-q', 'delete_queue', first!]);
    await eventually(t, 'consuming again', () => c.connected === 2, 10_000);
    t.true(s.logs.some((l) => String(l.msg).startsWith('the broker cancelled the consumer')));
    t.not(queuesConsumed(s)[1], first);
    const publish = await publisher(t);
    const id = randomUUID();
    await publish('instance.create.end', { id, host: 'compute-2' });
    await eventually(t, 'a notification on the new queue', () => ids(s.cache, 'compute-2').length === 1);
  },
);

amqpTest('RabbitMQ: an exchange the broker already has as durable is used as it is', async (t) => {
  if (amqpProblem) return t.fail(amqpProblem);
  const exchange = `vimmon-test-durable-${randomBytes(4).toString('hex')}`;
  const admin = await amqp.connect(amqpUrl);
  t.teardown(() => admin.close().catch(() => {}));
  const adminChannel = await admin.createChannel();
  await adminChannel.assertExchange(exchange, 'topic', { durable: true });
  t.teardown(() =>
    adminChannel.deleteExchange(exchange).then(
      () => {},
      () => {},
    ),
  );
  const s = await setup(t, { nova: undefined });
  const c = consumer(t, s, `vimmon-test-${randomBytes(4).toString('hex')}`, { exchange });
  await eventually(t, 'connected', () => c.connected === 1, 10_000);
  const publish = await publisherWithoutTopology(t, amqpUrl, exchange);
  const id = randomUUID();
  await publish('instance.create.end', { id, host: 'compute-3' });
  await eventually(t, 'a notification through the durable exchange', () => ids(s.cache, 'compute-3').length === 1);
  // Asserting it durable again would fail (406) had the consumer made it non-durable.
  await adminChannel.assertExchange(exchange, 'topic', { durable: true });
  t.false(
    s.logs.some((l) => /not set up|channel closed/.test(String(l.msg))),
    'no failed setup on the way',
  );
});
