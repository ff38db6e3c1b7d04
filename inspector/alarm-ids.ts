// Alarm ids, reserved ahead from the alarm table's sequence, so that raising an
// alarm never waits on the database. Ids are handed out in the order asked
// for: a raise that finds the pool short waits, and every raise after it
// waits behind it, so ids still follow raise order.
import { delay } from 'abort-controller-x';
import { UnavailableError } from '../common/errors.js';
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { AlarmStore } from './alarm-store.js';

export interface AlarmIdPoolOptions {
  store: Pick<AlarmStore, 'reserveIds'>;
  logger: Logger;
  /** Ids reserved ahead; the pool is topped up once fewer than half are left. */
  reserve: number;
  retry: BackoffOptions;
}

export interface AlarmIdPool {
  /** Reserves the first ids. */
  start(): Promise<void>;
  /**
   * Calls use with n fresh ids and returns what it returns: in the same
   * synchronous step when the pool holds them and no one waits, else (a
   * promise) once a refill brought them, after every take that came before.
   */
  take<T>(n: number, use: (ids: number[]) => T): T | Promise<T>;
  /** Ids asked for by takes still waiting. */
  readonly waiting: number;
  /** No more refills; takes still waiting reject with UnavailableError. */
  stop(): void;
}

interface Waiting {
  n: number;
  use(ids: number[]): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

export function createAlarmIdPool(options: AlarmIdPoolOptions): AlarmIdPool {
  const { store, logger, reserve, retry } = options;
  const pool: number[] = [];
  let poolHead = 0;
  const queue: Waiting[] = [];
  let waiting = 0; // ids asked for in `queue`
  let refilling: Promise<void> | undefined;
  const stopping = new AbortController();

  const available = () => pool.length - poolHead;

  function takeIds(n: number): number[] {
    const ids = pool.slice(poolHead, poolHead + n);
    poolHead += n;
    if (poolHead > 4_096 && poolHead * 2 > pool.length) {
      pool.splice(0, poolHead);
      poolHead = 0;
    }
    return ids;
  }

  function hand<T>(n: number, use: (ids: number[]) => T): T {
    const result = use(takeIds(n));
    // Topping up the pool is a query whose answer is thousands of rows: it waits
    // for the next turn, once what use() sent (the alarms) is on its sockets.
    if (available() < reserve / 2) setImmediate(() => void refill());
    return result;
  }

  function refill(): Promise<void> {
    // Cleared in a promise reaction, which always runs after this assignment: an
    // async body that finishes without awaiting would otherwise clear `refilling`
    // before it is set, leaving a settled promise there and every later take
    // waiting for ids that no refill is fetching.
    refilling ??= (async () => {
      let attempt = 0;
      while (!stopping.signal.aborted) {
        while (queue.length > 0 && available() >= queue[0]!.n) {
          const w = queue.shift()!;
          waiting -= w.n;
          w.resolve(hand(w.n, w.use));
        }
        if (queue.length === 0 && available() >= reserve / 2) return;
        try {
          const ids = await store.reserveIds(Math.max(reserve, waiting + reserve / 2));
          attempt = 0;
          for (const id of ids) pool.push(id);
        } catch (err) {
          logger.warn('cannot reserve alarm ids; retrying', { err, waitingRaises: queue.length });
          // Rejects only when stopped (with the signal's reason): the loop then ends.
          await delay(stopping.signal, backoffDelayMs(attempt++, retry)).catch(() => undefined);
        }
      }
      waiting = 0;
      for (const w of queue.splice(0)) w.reject(new UnavailableError('inspector is shutting down'));
    })().finally(() => {
      refilling = undefined;
    });
    return refilling;
  }

  return {
    async start() {
      for (const id of await store.reserveIds(reserve)) pool.push(id);
    },

    take(n, use) {
      if (queue.length === 0 && available() >= n) return hand(n, use);
      return new Promise((resolve, reject) => {
        queue.push({ n, use, resolve: resolve as (value: unknown) => void, reject });
        waiting += n;
        void refill();
      });
    },

    get waiting() {
      return waiting;
    },

    stop() {
      stopping.abort();
      void refill(); // rejects the takes still waiting
    },
  };
}
