// The NOTIFY sent on `vimStatusChannel` with every stored VIM status
// transition. The conductor writes it in the same statement as the transition;
// the Tacker server (WatchVims) and the inspector (VIM alarms) listen.
// Readers must treat it as a hint and re-read the row or event when in doubt:
// NOTIFY is not delivered to a listener that was disconnected.
import type { StoredReason, StoredStatus } from './entities.js';

export { vimStatusChannel } from './entities.js';

export interface VimStatusNotification {
  /** vim_event.id */
  eventId: number;
  vimId: string;
  vimName: string;
  from: StoredStatus;
  to: StoredStatus;
  /** The reason that goes with `to` ('' for none). */
  reason: StoredReason;
  actionId: string;
  /** ISO 8601 */
  changedAt: string;
  /** The VIM's owner project ('' for none), so that watchers are filtered without a query. */
  ownerProject: string;
}

export function parseVimStatusNotification(payload: string): VimStatusNotification | undefined {
  try {
    const v = JSON.parse(payload) as Record<string, unknown>;
    if (typeof v.vimId !== 'string' || typeof v.to !== 'string') return undefined;
    return {
      eventId: Number(v.eventId),
      vimId: v.vimId,
      vimName: String(v.vimName ?? ''),
      from: v.from as StoredStatus,
      to: v.to as StoredStatus,
      reason: (typeof v.reason === 'string' ? v.reason : '') as StoredReason,
      actionId: String(v.actionId ?? ''),
      changedAt: String(v.changedAt ?? ''),
      ownerProject: String(v.ownerProject ?? ''),
    };
  } catch {
    return undefined;
  }
}
