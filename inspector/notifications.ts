// Nova's versioned notifications, read from RabbitMQ the way oslo.messaging
// publishes them: exchange `nova` (topic), routing key
// `versioned_notifications.info`, body in the 2.0 envelope
// {"oslo.version": "2.0", "oslo.message": "<json>"}. The inspector binds a
// queue of its own (exclusive, auto-delete) so that it never takes messages
// from another consumer, and reconnects for as long as it runs. While it is
// disconnected it misses notifications: onConnected is the moment to resync.
import amqp from 'amqplib';
import { backoffDelayMs, delay } from '../common/delay.js';
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
  /** Default 'nova' (oslo.messaging's control_exchange for Nova). */
  exchange?: string;
  /** Default ['versioned_notifications.info']. */
  routingKeys?: string[];
  /** Shown by `rabbitmqctl list_connections client_properties` (default 'vimmon-inspector'). */
  connectionName?: string;
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
}

/** Runs until signal aborts; connection failures are logged and retried with jittered backoff. */
export async function runNotificationConsumer(options: NotificationConsumerOptions, signal: AbortSignal): Promise<void> {
  const exchange = options.exchange ?? 'nova';
  const routingKeys = options.routingKeys ?? ['versioned_notifications.info'];
  const backoff = { baseDelayMs: options.reconnectBaseDelayMs ?? 250, maxDelayMs: options.reconnectMaxDelayMs ?? 15_000 };
  const log = options.logger.child({ component: 'nova-notifications', amqp: redactUrl(options.amqpUrl) });
  let attempt = 0;
  while (!signal.aborted) {
    let connection: amqp.ChannelModel | undefined;
    try {
      connection = await connectUnlessAborted(options.amqpUrl, options.connectionName ?? 'vimmon-inspector', signal);
      if (!connection) return;
      const closed = new Promise<Error | undefined>((resolve) => {
        connection!.on('close', (err?: Error) => resolve(err));
      });
      // Errors also arrive as 'close'; a listener keeps them from being thrown.
      connection.on('error', () => {});
      const channel = await openChannelWithExchange(connection, exchange);
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      for (const key of routingKeys) await channel.bindQueue(queue, exchange, key);
      let cancelled!: () => void;
      const consumerGone = new Promise<void>((resolve) => (cancelled = resolve));
      channel.on('close', () => cancelled());
      await channel.consume(
        queue,
        (msg) => {
          if (!msg) return cancelled(); // the broker cancelled the consumer (queue deleted)
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
      attempt = 0;
      log.info('consuming Nova notifications', { exchange, routingKeys, queue });
      try {
        options.onConnected?.();
      } catch (err) {
        log.error('onConnected failed', { err });
      }
      let stopWaiting!: () => void;
      const aborted = new Promise<void>((resolve) => {
        stopWaiting = resolve;
        signal.addEventListener('abort', stopWaiting, { once: true });
      });
      try {
        await Promise.race([closed, consumerGone, aborted]);
      } finally {
        signal.removeEventListener('abort', stopWaiting);
      }
      if (signal.aborted) {
        await connection.close().catch(() => {});
        return;
      }
      log.warn('AMQP connection lost; reconnecting (notifications meanwhile are missed until the next resync)');
      await connection.close().catch(() => {});
    } catch (err) {
      await connection?.close().catch(() => {});
      if (signal.aborted) return;
      const waitMs = backoffDelayMs(attempt, backoff);
      log.warn('AMQP connection failed; retrying', { err, attempt, retryInMs: waitMs });
      attempt++;
      await delay(waitMs, signal);
      continue;
    }
    await delay(backoffDelayMs(attempt++, backoff), signal);
  }
}

/** Undefined when signal aborts first; a connection that completes after that is closed. */
async function connectUnlessAborted(url: string, connectionName: string, signal: AbortSignal): Promise<amqp.ChannelModel | undefined> {
  const connecting = amqp.connect(url, { clientProperties: { connection_name: connectionName }, timeout: 10_000 });
  let onAbort!: () => void;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const first = await Promise.race([connecting, aborted]);
    if (!first) connecting.then((c) => c.close()).catch(() => {});
    return first;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** oslo.messaging declares the exchange non-durable by default; a broker that has it durable keeps its own. */
async function openChannelWithExchange(connection: amqp.ChannelModel, exchange: string): Promise<amqp.Channel> {
  const channel = await connection.createChannel();
  channel.on('error', () => {});
  try {
    await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
    return channel;
  } catch (err) {
    if ((err as { code?: number }).code !== 406) throw err;
    const again = await connection.createChannel();
    again.on('error', () => {});
    await again.checkExchange(exchange);
    return again;
  }
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
