// One LISTEN connection per server fans VIM status transitions out to every
// WatchVims stream. After a lost connection it replays the stored events it
// missed, so a watcher sees every transition stored while it was connected.
import pg from 'pg';
import { backoffDelayMs, delay } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import { parseVimStatusNotification, vimStatusChannel, type VimStatusNotification } from '../db/notifications.js';

export type VimChange = VimStatusNotification;

export interface WatchHub {
  subscribe(listener: (change: VimChange) => void): () => void;
  /** Resolves once LISTEN is in force (streams opened before that may miss a change). */
  ready(): Promise<void>;
  run(signal: AbortSignal): Promise<void>;
}

export function createWatchHub(options: { databaseUrl: string; logger: Logger }): WatchHub {
  const { logger } = options;
  const listeners = new Set<(c: VimChange) => void>();
  let lastEventId = 0;
  let markReady!: () => void;
  const readyPromise = new Promise<void>((r) => (markReady = r));

  // Recently delivered event ids: a replay after reconnect must not repeat them.
  const seen = new Set<number>();
  const deliver = (c: VimChange) => {
    if (seen.has(c.eventId)) return;
    seen.add(c.eventId);
    if (seen.size > 20_000) seen.delete(seen.values().next().value!);
    lastEventId = Math.max(lastEventId, c.eventId);
    for (const l of listeners) l(c);
  };

  async function replaySince(client: pg.Client, sinceId: number) {
    const r = await client.query(
      `select e.id, e.vim_id, v.name, e.from_status, e.to_status, e.action_id, e.created_at
         from vim_event e join vim v on v.id = e.vim_id where e.id > $1 order by e.id limit 10000`,
      [sinceId],
    );
    for (const row of r.rows) {
      deliver({
        eventId: Number(row.id),
        vimId: row.vim_id,
        vimName: row.name,
        from: row.from_status,
        to: row.to_status,
        actionId: row.action_id,
        changedAt: new Date(row.created_at).toISOString(),
      });
    }
  }

  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ready: () => readyPromise,
    async run(signal) {
      let failures = 0;
      let connectedBefore = false;
      while (!signal.aborted) {
        const client = new pg.Client({ connectionString: options.databaseUrl });
        const lost = new Promise<void>((resolve) => {
          client.on('error', (err) => {
            logger.warn('status listener lost its connection', { err: String(err) });
            resolve();
          });
          client.on('end', () => resolve());
        });
        try {
          await client.connect();
          client.on('notification', (msg) => {
            const c = msg.payload ? parseVimStatusNotification(msg.payload) : undefined;
            if (c) deliver(c);
          });
          await client.query(`listen ${vimStatusChannel}`);
          if (connectedBefore) await replaySince(client, lastEventId);
          else {
            const r = await client.query(`select coalesce(max(id), 0) as id from vim_event`);
            lastEventId = Math.max(lastEventId, Number(r.rows[0].id));
          }
          connectedBefore = true;
          failures = 0;
          markReady();
          await Promise.race([lost, new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }))]);
        } catch (err) {
          failures++;
          logger.warn('status listener cannot connect', { err: String(err), failures });
        } finally {
          await client.end().catch(() => {});
        }
        if (!signal.aborted) await delay(backoffDelayMs(failures, { baseDelayMs: 200, maxDelayMs: 10_000 }), signal);
      }
    },
  };
}
