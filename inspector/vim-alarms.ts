// VIM status transitions (stored by the conductor in vim_event) become
// VIM_UNREACHABLE / VIM_CREDENTIALS_REJECTED / VIM_RECOVERED alarms.
// UNREACHABLE with the reason CREDENTIALS_REJECTED (the VIM answered and
// refused its credentials) has its own type: the fix is another, and
// subscribers filter on types.
//
// The transitions come from db/vim-event-feed.ts: every one stored after the
// starting point exactly once, each VIM's in order, whatever order their
// transactions committed in and however often the connection is lost. Per VIM
// the inspector keeps which alarm is open (unreachable, credentials rejected
// or none), loaded from the alarm table at start: a VIM gets one alarm of
// the kind when it becomes UNREACHABLE (another when the reason changes from
// one kind to the other) and one VIM_RECOVERED when it is REACHABLE again,
// whatever PENDING states come between.
//
// Where a start picks up: `lookback` events below the newest one an alarm was
// stored for, because a previous run may have stopped with transitions below
// it unhandled (committed late, or not yet processed). Those handled already
// are no-ops: older than the VIM's last alarm, or leaving its state as it is.
// A first start (no VIM alarm stored yet) raises alarms for the present state
// only, not for the whole history of transitions.
import { delay } from 'abort-controller-x';
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import { typedSql, type Orm } from '../db/connection.js';
import { createVimEventFeed, type VimEventChange } from '../db/vim-event-feed.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmDraft, AlarmHub } from './alarm-stream.js';

export interface VimAlarmSourceOptions {
  /** For the LISTEN connection (a pooled connection cannot hold a LISTEN). */
  databaseUrl: string;
  orm: Orm;
  hub: AlarmHub;
  logger: Logger;
  /** Events re-read, at a restart, below the newest one an alarm was stored for. Default 100. */
  lookback?: number;
  retry?: BackoffOptions;
}

export interface VimAlarmSource {
  run(signal: AbortSignal): Promise<void>;
}

/** The alarm open for a VIM that is down; undefined: none. */
type OpenAlarm = AlarmType.ALARM_TYPE_VIM_UNREACHABLE | AlarmType.ALARM_TYPE_VIM_CREDENTIALS_REJECTED | undefined;

function openAlarmOf(storedType: string): OpenAlarm {
  if (storedType === 'VIM_UNREACHABLE') return AlarmType.ALARM_TYPE_VIM_UNREACHABLE;
  if (storedType === 'VIM_CREDENTIALS_REJECTED') return AlarmType.ALARM_TYPE_VIM_CREDENTIALS_REJECTED;
  return undefined;
}

/** The alarm a transition to UNREACHABLE raises: its own type when the VIM refused its credentials. */
function downAlarmType(c: VimEventChange): NonNullable<OpenAlarm> {
  return c.reason === 'CREDENTIALS_REJECTED' ? AlarmType.ALARM_TYPE_VIM_CREDENTIALS_REJECTED : AlarmType.ALARM_TYPE_VIM_UNREACHABLE;
}

const reasonText: Readonly<Record<string, string>> = {
  CREDENTIALS_REJECTED: 'credentials rejected',
  CERTIFICATE_REJECTED: 'certificate rejected',
};

export function createVimAlarmSource(options: VimAlarmSourceOptions): VimAlarmSource {
  const { orm, hub, logger } = options;
  const lookback = options.lookback ?? 100;
  const retry = options.retry ?? { baseDelayMs: 200, maxDelayMs: 10_000 };
  const openAlarm = new Map<string, OpenAlarm>(); // vim id → the alarm open for it
  const lastEventOfVim = new Map<string, number>();

  /** The state of every VIM from the alarm table; returns the event id to start after. */
  async function load(newest: number): Promise<number> {
    openAlarm.clear();
    lastEventOfVim.clear();
    const db = typedSql(orm.em.fork());
    const latest = await db
      .selectFrom('alarm')
      .select(['vim_id', 'type', 'vim_event_id'])
      .distinctOn('vim_id')
      .where('vim_id', 'is not', null)
      .orderBy('vim_id')
      .orderBy('alarm_id', 'desc')
      .execute();
    let cursor = 0;
    for (const r of latest) {
      openAlarm.set(r.vim_id!, openAlarmOf(r.type));
      if (r.vim_event_id !== null) {
        const id = Number(r.vim_event_id);
        lastEventOfVim.set(r.vim_id!, id);
        cursor = Math.max(cursor, id);
      }
    }
    if (latest.length === 0) return firstStart(newest);
    return Math.max(0, cursor - lookback);
  }

  /**
   * No VIM alarm was ever stored (a new inspector on an existing mesh): the
   * history of transitions is not replayed as alarms raised now. What matters is
   * the present: one VIM_UNREACHABLE for each live VIM that is UNREACHABLE now.
   */
  async function firstStart(newest: number): Promise<number> {
    const db = typedSql(orm.em.fork());
    const down = await db
      .selectFrom('vim as v')
      .innerJoin('vim_event as e', 'e.vim_id', 'v.id')
      .select(['e.id', 'e.vim_id', 'e.from_status', 'e.to_status', 'e.status_reason', 'e.created_at', 'v.name', 'v.owner_project'])
      .distinctOn('e.vim_id')
      .where('v.deleted_at', 'is', null)
      .where('v.status', '=', 'UNREACHABLE')
      .where('e.to_status', '=', 'UNREACHABLE')
      .where('e.id', '<=', newest)
      .orderBy('e.vim_id')
      .orderBy('e.id', 'desc')
      .execute();
    const detectedAt = new Date();
    const drafts = down.map((r) => {
      const id = Number(r.id);
      const change: VimEventChange = {
        eventId: id,
        vimId: r.vim_id,
        vimName: r.name,
        from: r.from_status as VimEventChange['from'],
        to: r.to_status as VimEventChange['to'],
        reason: r.status_reason as VimEventChange['reason'],
        actionId: '',
        changedAt: new Date(r.created_at).toISOString(),
        ownerProject: r.owner_project,
      };
      const type = downAlarmType(change);
      lastEventOfVim.set(r.vim_id, id);
      openAlarm.set(r.vim_id, type);
      return draftOf(change, type, detectedAt);
    });
    if (drafts.length > 0) {
      await hub.raise(drafts);
      logger.info('VIMs unreachable at start', { alarms: drafts.length });
    }
    return newest;
  }

  function draftOf(c: VimEventChange, type: AlarmType, detectedAt: Date): AlarmDraft {
    return {
      type,
      host: '',
      instanceId: '',
      instanceName: '',
      // The VIM's owner: its readers get the alarm.
      projectId: c.ownerProject,
      vimId: c.vimId,
      vimName: c.vimName,
      state: c.to,
      severity: type === AlarmType.ALARM_TYPE_VIM_RECOVERED ? 'low' : 'critical',
      cause: `VIM status ${c.from} → ${c.to}${c.reason ? ` (${reasonText[c.reason]})` : ''}`,
      monitor: 'vimmon',
      monitorEventId: String(c.eventId),
      faultId: '',
      eventTime: new Date(c.changedAt),
      detectedAt,
      vimEventId: c.eventId,
    };
  }

  /** The alarms of a batch; the state changes only once they are raised. */
  async function handle(changes: VimEventChange[], signal: AbortSignal) {
    const detectedAt = new Date();
    const open = new Map<string, OpenAlarm>();
    const last = new Map<string, number>();
    const drafts: AlarmDraft[] = [];
    for (const c of changes) {
      if (c.eventId < (last.get(c.vimId) ?? lastEventOfVim.get(c.vimId) ?? 0)) continue; // older than a transition already handled
      last.set(c.vimId, c.eventId);
      const wasOpen = open.has(c.vimId) ? open.get(c.vimId) : openAlarm.get(c.vimId);
      let type: AlarmType | undefined;
      if (c.to === 'UNREACHABLE' && wasOpen !== downAlarmType(c)) type = downAlarmType(c);
      else if (c.to === 'REACHABLE' && wasOpen !== undefined) type = AlarmType.ALARM_TYPE_VIM_RECOVERED;
      if (type === undefined) continue;
      open.set(c.vimId, type === AlarmType.ALARM_TYPE_VIM_RECOVERED ? undefined : (type as OpenAlarm));
      drafts.push(draftOf(c, type, detectedAt));
    }
    // raise() refuses only while too many alarms wait for the database: wait and try again,
    // holding the feed (which reads the table once this returns, if notifications piled up).
    for (let attempt = 0; drafts.length > 0; attempt++) {
      try {
        await hub.raise(drafts);
        logger.info('VIM alarms raised', { alarms: drafts.length });
        break;
      } catch (err) {
        logger.warn('VIM alarms not raised yet; retrying', { err: String(err), attempt });
        await delay(signal, backoffDelayMs(attempt, retry));
      }
    }
    for (const [vimId, id] of last) lastEventOfVim.set(vimId, id);
    for (const [vimId, alarm] of open) openAlarm.set(vimId, alarm);
  }

  return {
    async run(signal) {
      const feed = createVimEventFeed({
        databaseUrl: options.databaseUrl,
        logger,
        applicationName: 'vimmon vim alarms',
        retry,
        startAfter: load,
        onChanges: handle,
      });
      await feed.run(signal);
    },
  };
}
