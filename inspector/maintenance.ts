// Hosts under planned maintenance, Doctor's IN_MAINTENANCE / MAINTENANCE_COMPLETE:
// while a host is in maintenance its fault events raise alarms marked expected
// and call nothing in Nova or Neutron (fault.ts asks maintenanceOf, from
// memory). A change is stored first (inspector_maintenance), then held in
// memory, then announced to subscribers (HOST_MAINTENANCE_STARTED / _ENDED);
// the rows are read at start, so a restart keeps every host in maintenance.
// Changes are taken one at a time; asking for the state a host is in already
// changes nothing and raises nothing.
import { InvalidArgumentError, ResourceExhaustedError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { typedSql, type Orm } from '../db/connection.js';
import { AlarmType, MaintenanceState } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmHub } from './alarm-stream.js';
import { parseHostName, type MaintenanceLookup } from './fault.js';

export interface MaintenanceRecord {
  host: string;
  since: Date;
  /** Doctor's session_id, '' when none was given. */
  sessionId: string;
  reason: string;
  /** The principal that put the host in maintenance. */
  setBy: string;
}

/** A request to change a host's maintenance, checked (parseMaintenanceChange). */
export interface MaintenanceChange {
  host: string;
  inMaintenance: boolean;
  sessionId: string;
  reason: string;
}

export interface MaintenanceOptions {
  orm: Orm;
  hub: AlarmHub;
  logger: Logger;
  /** A host's maintenance is over (after its row is gone): the fault handler drives what its events left undone. */
  onEnded(host: string): void;
  /** Hosts in maintenance at once; one more is RESOURCE_EXHAUSTED (default 100,000). */
  maxHosts?: number;
}

export interface Maintenance extends MaintenanceLookup {
  /** Reads the hosts in maintenance from the database. */
  load(): Promise<void>;
  /** Stores the change, then raises its alarm; changed is false when the host was in that state already. */
  set(change: MaintenanceChange, setBy: string): Promise<{ changed: boolean; record: MaintenanceRecord | undefined }>;
  /** Hosts in maintenance in host name order, those after `after` only, at most `limit`. */
  list(options: { after?: string; limit: number }): { hosts: MaintenanceRecord[]; more: boolean };
  readonly size: number;
}

const maxSessionIdLength = 255;
const maxReasonLength = 1_024;

/**
 * Checks a change as both edges (gRPC, Doctor's POST /maintenance) give it;
 * `field` names a field for the caller. Texts are bounded, hold no NUL and no
 * lone surrogate; the host is checked as an event's hostname.
 */
export function parseMaintenanceChange(
  raw: { host: string; state: MaintenanceState; sessionId: string; reason: string },
  field: (name: 'host' | 'state' | 'session_id' | 'reason') => string,
): MaintenanceChange {
  const host = parseHostName(raw.host, field('host'));
  if (
    raw.state !== MaintenanceState.MAINTENANCE_STATE_IN_MAINTENANCE &&
    raw.state !== MaintenanceState.MAINTENANCE_STATE_MAINTENANCE_COMPLETE
  )
    throw new InvalidArgumentError(field('state'), 'required: MAINTENANCE_STATE_IN_MAINTENANCE or MAINTENANCE_STATE_MAINTENANCE_COMPLETE');
  return {
    host,
    inMaintenance: raw.state === MaintenanceState.MAINTENANCE_STATE_IN_MAINTENANCE,
    sessionId: boundedText(raw.sessionId.trim(), field('session_id'), maxSessionIdLength),
    reason: boundedText(raw.reason, field('reason'), maxReasonLength),
  };
}

function boundedText(value: string, field: string, max: number): string {
  if (value.length > max) throw new InvalidArgumentError(field, `at most ${max} characters, got ${value.length}`);
  // PostgreSQL stores neither a NUL nor a lone surrogate.
  if (value.includes('\u0000')) throw new InvalidArgumentError(field, 'no NUL character');
  if (!value.isWellFormed()) throw new InvalidArgumentError(field, 'not valid Unicode (a lone surrogate)');
  return value;
}

export function createMaintenance(options: MaintenanceOptions): Maintenance {
  const { orm, hub, logger } = options;
  const maxHosts = options.maxHosts ?? 100_000;
  const records = new Map<string, MaintenanceRecord>();
  let sorted: string[] | undefined; // host names, sorted; rebuilt on read after a change
  let turn: Promise<unknown> = Promise.resolve();
  const db = () => typedSql(orm.em.fork());

  /** One change at a time: a start and an end of the same host cannot cross. */
  function serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = turn.then(fn, fn);
    turn = next.catch(() => undefined);
    return next;
  }

  async function announce(rec: MaintenanceRecord, started: boolean) {
    try {
      await hub.raise([
        {
          type: started ? AlarmType.ALARM_TYPE_HOST_MAINTENANCE_STARTED : AlarmType.ALARM_TYPE_HOST_MAINTENANCE_ENDED,
          host: rec.host,
          instanceId: '',
          instanceName: '',
          projectId: '',
          vimId: '',
          vimName: '',
          state: started ? 'IN_MAINTENANCE' : 'MAINTENANCE_COMPLETE',
          severity: 'low',
          cause: rec.reason,
          monitor: rec.setBy,
          monitorEventId: rec.sessionId,
          faultId: '',
          eventTime: undefined,
          detectedAt: new Date(),
        },
      ]);
    } catch (err) {
      // The change is stored and in force; only its announcement is lost (the alarm store is far behind).
      logger.error('maintenance alarm not raised', { host: rec.host, started, err });
    }
  }

  return {
    async load() {
      const rows = await db().selectFrom('inspector_maintenance').selectAll().execute();
      records.clear();
      sorted = undefined;
      for (const r of rows) {
        records.set(r.host, { host: r.host, since: r.since, sessionId: r.session_id, reason: r.reason, setBy: r.set_by });
      }
      if (records.size > 0) logger.info('hosts in maintenance', { hosts: records.size });
    },

    set(change, setBy) {
      return serially(async () => {
        const current = records.get(change.host);
        if (change.inMaintenance) {
          if (current) return { changed: false, record: current };
          if (records.size >= maxHosts)
            throw new ResourceExhaustedError(`${maxHosts} hosts are in maintenance already, the most the inspector keeps`);
          const rec: MaintenanceRecord = {
            host: change.host,
            since: new Date(),
            sessionId: change.sessionId,
            reason: change.reason,
            setBy,
          };
          await db()
            .insertInto('inspector_maintenance')
            .values({ host: rec.host, since: rec.since, session_id: rec.sessionId, reason: rec.reason, set_by: rec.setBy })
            .onConflict((oc) => oc.column('host').doNothing())
            .execute();
          records.set(rec.host, rec);
          sorted = undefined;
          logger.info('host in maintenance: its faults call nothing', { host: rec.host, sessionId: rec.sessionId, setBy });
          await announce(rec, true);
          return { changed: true, record: rec };
        }
        if (!current) return { changed: false, record: undefined };
        await db().deleteFrom('inspector_maintenance').where('host', '=', current.host).execute();
        records.delete(current.host);
        sorted = undefined;
        logger.info('host maintenance over', { host: current.host, sessionId: change.sessionId || current.sessionId, setBy });
        await announce(
          { ...current, sessionId: change.sessionId || current.sessionId, reason: change.reason || current.reason, setBy },
          false,
        );
        options.onEnded(current.host);
        return { changed: true, record: undefined };
      });
    },

    maintenanceOf(host) {
      return records.get(host);
    },

    list({ after, limit }) {
      sorted ??= [...records.keys()].sort();
      let start = 0;
      if (after !== undefined) {
        let hi = sorted.length;
        while (start < hi) {
          const mid = (start + hi) >>> 1;
          if (sorted[mid]! <= after) start = mid + 1;
          else hi = mid;
        }
      }
      const names = sorted.slice(start, start + limit);
      return { hosts: names.map((h) => records.get(h)!), more: start + names.length < sorted.length };
    },

    get size() {
      return records.size;
    },
  };
}
