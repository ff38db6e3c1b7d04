// VIM status transitions (stored by the conductor, announced by NOTIFY on
// vimStatusChannel) become VIM_UNREACHABLE / VIM_RECOVERED alarms.
//
// The NOTIFY is only a wake-up: each scan re-reads vim_event after the last
// transition handled (and a short look-back, for transactions of different
// VIMs that commit out of id order), so a notification lost while
// disconnected is caught up on reconnect. Per VIM the inspector keeps whether
// an unreachable alarm is open, loaded from the alarm table at start: a VIM
// gets one VIM_UNREACHABLE when it becomes UNREACHABLE and one VIM_RECOVERED
// when it is REACHABLE again, whatever PENDING states come between. A first
// start (no VIM alarm stored yet) raises alarms for the present state only,
// not for the whole history of transitions.
import pg from 'pg';
import { backoffDelayMs, delay } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { Orm } from '../db/connection.js';
import { vimStatusChannel } from '../db/notifications.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmDraft, AlarmHub } from './alarm-stream.js';

export interface VimAlarmSourceOptions {
  /** For the LISTEN connection (a pooled connection cannot hold a LISTEN). */
  databaseUrl: string;
  orm: Orm;
  hub: AlarmHub;
  logger: Logger;
  /** Events re-read behind the last one handled. */
  lookback?: number;
}

export interface VimAlarmSource {
  run(signal: AbortSignal): Promise<void>;
}

interface EventRow {
  id: string | number;
  vim_id: string;
  from_status: string;
  to_status: string;
  created_at: Date | string;
  name: string;
}

const pageSize = 1_000;

export function createVimAlarmSource(options: VimAlarmSourceOptions): VimAlarmSource {
  const { orm, hub, logger } = options;
  const lookback = options.lookback ?? 100;
  const retry = { baseDelayMs: 200, maxDelayMs: 10_000 };
  const unreachable = new Map<string, boolean>(); // vim id → an unreachable alarm is open
  const lastEventOfVim = new Map<string, number>();
  const handled = new Set<number>();
  let cursor = 0;
  let loaded = false;

  async function load() {
    const em = orm.em.fork();
    const open = await em.execute<{ vim_id: string; type: string; vim_event_id: string | null }[]>(
      `select distinct on (vim_id) vim_id, type, vim_event_id from alarm where vim_id is not null order by vim_id, alarm_id desc`,
    );
    for (const r of open) {
      unreachable.set(r.vim_id, r.type === 'VIM_UNREACHABLE');
      if (r.vim_event_id !== null) lastEventOfVim.set(r.vim_id, Number(r.vim_event_id));
    }
    if (open.length === 0) {
      await firstStart();
      return;
    }
    const max = await em.execute<{ id: string | null }[]>(`select max(vim_event_id) as id from alarm where vim_event_id is not null`);
    cursor = Number(max[0]?.id ?? 0);
    const recent = await em.execute<{ id: string }[]>(`select vim_event_id as id from alarm where vim_event_id > ?`, [Math.max(0, cursor - lookback)]);
    for (const r of recent) handled.add(Number(r.id));
  }

  /**
   * No VIM alarm was ever stored (a new inspector on an existing mesh): the
   * history of transitions is not replayed as alarms raised now. What matters is
   * the present: one VIM_UNREACHABLE for each live VIM that is UNREACHABLE now.
   */
  async function firstStart() {
    const em = orm.em.fork();
    const max = await em.execute<{ id: string | null }[]>(`select max(id) as id from vim_event`);
    cursor = Number(max[0]?.id ?? 0);
    // The history up to here counts as seen, the look-back window included.
    const window = await em.execute<{ id: string }[]>(`select id from vim_event where id > ? and id <= ?`, [Math.max(0, cursor - lookback), cursor]);
    for (const r of window) handled.add(Number(r.id));
    const down = await em.execute<EventRow[]>(
      `select distinct on (e.vim_id) e.id, e.vim_id, e.from_status, e.to_status, e.created_at, v.name
         from vim v join vim_event e on e.vim_id = v.id
        where v.deleted_at is null and v.status = 'UNREACHABLE' and e.to_status = 'UNREACHABLE' and e.id <= ?
        order by e.vim_id, e.id desc`,
      [cursor],
    );
    const detectedAt = new Date();
    const drafts = down.map((r) => {
      const id = Number(r.id);
      handled.add(id);
      lastEventOfVim.set(r.vim_id, id);
      unreachable.set(r.vim_id, true);
      return draftOf(r, AlarmType.ALARM_TYPE_VIM_UNREACHABLE, detectedAt);
    });
    if (drafts.length > 0) {
      await hub.raise(drafts);
      logger.info('VIMs unreachable at start', { alarms: drafts.length });
    }
  }

  function draftOf(r: EventRow, type: AlarmType, detectedAt: Date): AlarmDraft {
    const id = Number(r.id);
    return {
      type,
      host: '',
      instanceId: '',
      instanceName: '',
      projectId: '',
      vimId: r.vim_id,
      vimName: r.name,
      state: r.to_status,
      severity: type === AlarmType.ALARM_TYPE_VIM_UNREACHABLE ? 'critical' : 'low',
      cause: `VIM status ${r.from_status} → ${r.to_status}`,
      monitor: 'vimmon',
      monitorEventId: String(id),
      faultId: '',
      eventTime: new Date(r.created_at),
      detectedAt,
      vimEventId: id,
    };
  }

  async function scan() {
    while (true) {
      const rows = await orm.em.fork().execute<EventRow[]>(
        `select e.id, e.vim_id, e.from_status, e.to_status, e.created_at, v.name
         from vim_event e join vim v on v.id = e.vim_id
         where e.id > ? order by e.id limit ?`,
        [Math.max(0, cursor - lookback), pageSize],
      );
      const detectedAt = new Date();
      const drafts: AlarmDraft[] = [];
      for (const r of rows) {
        const id = Number(r.id);
        if (handled.has(id)) continue;
        handled.add(id);
        cursor = Math.max(cursor, id);
        if (id < (lastEventOfVim.get(r.vim_id) ?? 0)) continue; // older than a transition already handled
        lastEventOfVim.set(r.vim_id, id);
        const open = unreachable.get(r.vim_id) ?? false;
        let type: AlarmType | undefined;
        if (r.to_status === 'UNREACHABLE' && !open) type = AlarmType.ALARM_TYPE_VIM_UNREACHABLE;
        else if (r.to_status === 'REACHABLE' && open) type = AlarmType.ALARM_TYPE_VIM_RECOVERED;
        if (type === undefined) continue;
        unreachable.set(r.vim_id, type === AlarmType.ALARM_TYPE_VIM_UNREACHABLE);
        drafts.push(draftOf(r, type, detectedAt));
      }
      for (const id of handled) if (id <= cursor - lookback) handled.delete(id);
      if (drafts.length > 0) {
        await hub.raise(drafts);
        logger.info('VIM alarms raised', { alarms: drafts.length });
      }
      if (rows.length < pageSize) return;
    }
  }

  return {
    async run(signal) {
      let attempt = 0;
      while (!signal.aborted) {
        const client = new pg.Client({ connectionString: options.databaseUrl });
        let wake: (() => void) | undefined;
        let dirty = true;
        let broken: unknown;
        const poke = () => {
          dirty = true;
          wake?.();
        };
        client.on('notification', poke);
        client.on('error', (err) => {
          broken = err;
          poke();
        });
        try {
          await client.connect();
          await client.query(`listen ${vimStatusChannel}`);
          if (!loaded) {
            await load();
            loaded = true;
          }
          attempt = 0;
          while (!signal.aborted && !broken) {
            if (dirty) {
              dirty = false;
              await scan();
              continue;
            }
            await new Promise<void>((resolve) => {
              const done = () => {
                signal.removeEventListener('abort', done);
                if (wake === done) wake = undefined;
                resolve();
              };
              wake = done;
              signal.addEventListener('abort', done, { once: true });
            });
          }
          if (broken) throw broken;
        } catch (err) {
          if (signal.aborted) break;
          logger.warn('VIM status listener failed; reconnecting', { err });
          await delay(backoffDelayMs(attempt++, retry), signal);
        } finally {
          client.removeAllListeners('notification');
          await client.end().catch(() => {});
        }
      }
    },
  };
}
