// Nova's versioned notifications, read from RabbitMQ the way oslo.messaging
// publishes them: exchange `nova` (topic), routing key
// `versioned_notifications.info`, body in the 2.0 envelope
// {"oslo.version": "2.0", "oslo.message": "<json>"}. The inspector binds a
// queue of its own (exclusive, auto-delete) so that it never takes messages
// from another consumer, and reconnects for as long as it runs, declaring its
// queue again each time. While it is disconnected it misses notifications:
// onConnected is the moment to resync.
import { forever } from 'abort-controller-x';
import { connect } from 'amqp-connection-manager';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { backoffDelayMs } from '../common/delay.js';
import type { Logger } from '../common/logger.js';

export interface InstanceNotification {
  eventType: string;
  instanceId: string;
  /** Payload `host` (the compute service), not `host_name` (the guest's hostname). Undefined: on no host. */
  host: string | undefined;
  projectId?: string;
  name?: string;
  /** The vm_state: active, error, building, deleted… */
  state?: string;
  deleted: boolean;
  /**
   * True when `host` is where the instance was, not where it is: the source host's
   * instance.live_migration_post.end is sent after the destination took it over.
   */
  hostStale?: boolean;
  /** Payload updated_at in ms since the epoch, to order notifications against a snapshot. */
  updatedAt?: number;
}

/** How each handled event's payload host relates to the instance. */
const handledEvents = new Map<string, 'current' | 'source' | 'deleted'>([
  ['instance.update', 'current'],
  ['instance.create.end', 'current'],
  ['instance.delete.end', 'deleted'],
  ['instance.soft_delete.end', 'current'],
  ['instance.restore.end', 'current'],
  ['instance.live_migration_post_dest.end', 'current'],
  ['instance.live_migration_post.end', 'source'],
  ['instance.live_migration_rollback.end', 'current'],
  ['instance.live_migration_rollback_dest.end', 'current'],
  ['instance.live_migration_abort.end', 'current'],
  ['instance.evacuate', 'current'],
  ['instance.evacuate.end', 'current'],
  ['instance.rebuild.end', 'current'],
  ['instance.resize_finish.end', 'current'],
  ['instance.resize_revert.end', 'current'],
  ['instance.resize_confirm.end', 'current'],
  ['instance.shelve_offload.end', 'current'],
  ['instance.unshelve.end', 'current'],
]);

export const handledEventTypes: readonly string[] = [...handledEvents.keys()];

/**
 * Parses one AMQP message body: the oslo.messaging 2.0 envelope or a bare
 * notification. Undefined for event types it does not handle and for payloads
 * that are not versioned; throws for a body that is not JSON.
 */
export function parseNovaNotification(body: Buffer | string): InstanceNotification | undefined {
  let message = JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as Record<string, unknown>;
  if (typeof message['oslo.message'] === 'string') message = JSON.parse(message['oslo.message']) as Record<string, unknown>;
  const eventType = message.event_type;
  if (typeof eventType !== 'string') return undefined;
  const kind = handledEvents.get(eventType);
  if (!kind) return undefined;
  let payload = message.payload;
  if (typeof payload === 'string') payload = JSON.parse(payload);
  const data = (payload as Record<string, unknown> | null)?.['nova_object.data'] as Record<string, unknown> | undefined;
  if (!data || typeof data !== 'object' || typeof data.uuid !== 'string') return undefined;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const state = str(data.state);
  const n: InstanceNotification = {
    eventType,
    instanceId: data.uuid,
    host: str(data.host),
    deleted: kind === 'deleted' || state === 'deleted',
  };
  const projectId = str(data.tenant_id);
  if (projectId) n.projectId = projectId;
  const name = str(data.display_name);
  if (name) n.name = name;
  if (state) n.state = state;
  if (kind === 'source') n.hostStale = true;
  const updated = str(data.updated_at);
  if (updated && !Number.isNaN(Date.parse(updated))) n.updatedAt = Date.parse(updated);
  return n;
}

export interface NotificationConsumerOptions {
  amqpUrl: string;
  logger: Logger;
  onNotification(n: InstanceNotification): void;
  /** After every (re)connection, once the queue is bound. */
  onConnected?(): void;
  /** When notifications stop coming: the connection lost, the channel closed or the consumer cancelled. */
  onDisconnected?(): void;
  /** Default 'nova' (oslo.messaging's control_exchange for Nova). */
  exchange?: string;
  /** Default ['versioned_notifications.info']. */
  routingKeys?: string[];
  /** Shown by `rabbitmqctl list_connections client_properties` (default 'vimmon-inspector'). */
  connectionName?: string;
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
}

/**
 * Runs until signal aborts. amqp-connection-manager keeps the connection and
 * runs `setup` on every new channel, so the exchange, the queue, its bindings
 * and the consumer are declared again after each reconnection. Connection
 * failures are logged and retried with jittered backoff.
 */
export async function runNotificationConsumer(options: NotificationConsumerOptions, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const exchange = options.exchange ?? 'nova';
  const routingKeys = options.routingKeys ?? ['versioned_notifications.info'];
  const backoff = { baseDelayMs: options.reconnectBaseDelayMs ?? 250, maxDelayMs: options.reconnectMaxDelayMs ?? 15_000 };
  const log = options.logger.child({ component: 'nova-notifications', amqp: redactUrl(options.amqpUrl) });
  let attempt = 0;
  const manager = connect(options.amqpUrl, {
    // 0: the broker's heartbeat (or the URL's ?heartbeat=), as amqplib alone negotiates it.
    heartbeatIntervalInSeconds: 0,
    reconnectTimeInSeconds: backoffDelayMs(0, backoff) / 1_000,
    connectionOptions: { clientProperties: { connection_name: options.connectionName ?? 'vimmon-inspector' }, timeout: 10_000 },
  });
  // The manager waits reconnectTimeInSeconds after every failure or loss, read
  // right after it emits the event: setting it here makes that wait a jittered backoff.
  const nextWait = () => {
    const waitMs = backoffDelayMs(attempt++, backoff);
    manager.reconnectTimeInSeconds = waitMs / 1_000;
    return waitMs;
  };
  manager.on('connectFailed', ({ err }) => {
    if (!signal.aborted) log.warn('AMQP connection failed; retrying', { err, attempt, retryInMs: nextWait() });
  });
  manager.on('disconnect', ({ err }) => {
    options.onDisconnected?.();
    if (!signal.aborted)
      log.warn('AMQP connection lost; reconnecting (notifications meanwhile are missed until the next resync)', {
        err,
        retryInMs: nextWait(),
      });
  });

  // The manager replays setup on a new channel, but a channel that closes while
  // its connection stays up (the queue deleted, a refused declaration) is not
  // replaced, and a consumer the broker cancels is not declared again: both
  // are repaired here by reconnecting, after a backoff.
  let generation = 0;
  let repairTimer: NodeJS.Timeout | undefined;
  const repair = (of: number, why: string) => {
    // Without a connection, the manager is reconnecting already.
    if (signal.aborted || repairTimer || of !== generation || !manager.isConnected()) return;
    options.onDisconnected?.();
    const waitMs = backoffDelayMs(attempt++, backoff);
    log.warn(`${why}; reconnecting`, { retryInMs: waitMs });
    repairTimer = setTimeout(() => {
      repairTimer = undefined;
      // A reconnection that happened meanwhile has set everything up again.
      if (!signal.aborted && of === generation && manager.isConnected()) manager.reconnect();
    }, waitMs);
  };

  const setup = async (channel: ConfirmChannel | Channel) => {
    const mine = ++generation;
    if (signal.aborted) return;
    channel.on('close', () => setImmediate(() => repair(mine, 'AMQP channel closed')));
    await declareExchange(manager.connection, channel, exchange);
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    for (const key of routingKeys) await channel.bindQueue(queue, exchange, key);
    await channel.consume(
      queue,
      (msg) => {
        if (!msg) return repair(mine, 'the broker cancelled the consumer'); // e.g. the queue was deleted
        let n: InstanceNotification | undefined;
        try {
          n = parseNovaNotification(msg.content);
        } catch (err) {
          log.warn('unreadable notification skipped', { err, routingKey: msg.fields.routingKey });
          return;
        }
        if (!n) return;
        try {
          options.onNotification(n);
        } catch (err) {
          log.error('notification handler failed', { err, eventType: n.eventType, instanceId: n.instanceId });
        }
      },
      { noAck: true },
    );
    if (signal.aborted || mine !== generation) return;
    attempt = 0;
    log.info('consuming Nova notifications', { exchange, routingKeys, queue });
    try {
      options.onConnected?.();
    } catch (err) {
      log.error('onConnected failed', { err });
    }
  };
  const wrapper = manager.createChannel({ name: 'nova-notifications', confirm: false, setup });
  // A setup that failed leaves the channel without a consumer: start over.
  wrapper.on('error', (err: unknown) => {
    if (signal.aborted) return;
    log.warn('setting up the AMQP channel failed', { err });
    repair(generation, 'AMQP channel not set up');
  });

  await forever(signal).catch(() => {}); // settles only when signal aborts
  clearTimeout(repairTimer);
  // A connection still being opened is closed once it is open, without waiting for it here.
  const closing = manager.close().catch(() => {});
  if (manager.isConnected()) await closing;
}

/**
 * oslo.messaging declares the exchange non-durable by default; a broker that has
 * it durable keeps its own. Declared on a channel of its own, since the broker
 * closes the channel that asks with other properties (406).
 */
async function declareExchange(connection: ChannelModel | undefined, channel: ConfirmChannel | Channel, exchange: string): Promise<void> {
  if (!connection) {
    await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
    return;
  }
  const own = await connection.createChannel();
  own.on('error', () => {});
  try {
    await own.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  } catch (err) {
    if ((err as { code?: number }).code !== 406) throw err;
    await channel.checkExchange(exchange);
    return;
  }
  await own.close().catch(() => {});
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable AMQP URL)';
  }
}
