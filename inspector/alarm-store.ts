// The alarm table and the inspector's host table. Only the alarm log
// (alarm-stream.ts) writes alarms; it calls save() from one writer at a time,
// in id order, so that the rows below the writer's watermark are exactly the
// alarms raised below it.
import type { Orm } from '../db/connection.js';
import { alarmTypes, type FaultInstance, type StoredAlarmType } from '../db/alarm.js';
import { AlarmType, type Alarm, type AlarmFilter } from '../gen/vimmon/inspector/v1/inspector_service.js';

/** The inspector_host row: what the inspector last decided for a compute host. */
export interface HostRecord {
  host: string;
  state: 'down' | 'up';
  faultId: string;
  changedAt: Date;
  monitor: string;
  monitorEventId: string;
  severity: string;
  /** The VMs alarmed when the host went down (kept on "up" for the recovered alarms' record). */
  instances: FaultInstance[];
  /** Nova work for this state is over; undefined: drive it again at start. */
  novaDoneAt: Date | undefined;
}

/**
 * An alarm as the inspector keeps it: the contract's message (sent as is; the
 * encoder writes known fields only) and the vim_event behind a VIM alarm, kept
 * so that a replayed NOTIFY never stores a second alarm for one transition.
 */
export interface AlarmRecord extends Alarm {
  vimEventId?: number;
}

export interface NovaDoneMark {
  host: string;
  faultId: string;
  at: Date;
}

export interface SaveBatch {
  alarms: AlarmRecord[];
  hosts: HostRecord[];
  novaDone: NovaDoneMark[];
}

export interface AlarmStore {
  /** `count` fresh ids from the alarm sequence, ascending. */
  reserveIds(count: number): Promise<number[]>;
  /** The largest stored alarm id, 0 when none. */
  lastAlarmId(): Promise<number>;
  /** One transaction: one multi-row INSERT of the alarms, one upsert of the hosts, the Nova marks. */
  save(batch: SaveBatch): Promise<void>;
  /** Stored alarms with afterId < id < beforeId that match, in id order. */
  read(afterId: number, beforeId: number | undefined, filter: AlarmFilter | undefined, limit: number): Promise<AlarmRecord[]>;
  loadHosts(): Promise<HostRecord[]>;
}

const typeToStored = new Map<AlarmType, StoredAlarmType>(alarmTypes.map((t) => [AlarmType[`ALARM_TYPE_${t}`], t]));
const storedToType = new Map<string, AlarmType>(alarmTypes.map((t) => [t, AlarmType[`ALARM_TYPE_${t}`]]));

export function storedAlarmType(type: AlarmType): StoredAlarmType {
  const t = typeToStored.get(type);
  if (!t) throw new Error(`alarm type ${type} cannot be stored`);
  return t;
}

const columns = `alarm_id, type, host, instance_id, instance_name, project_id, vim_id, vim_name, state, severity,
  cause, monitor, monitor_event_id, fault_id, vim_event_id, event_time, detected_at, raised_at`;

export function createAlarmStore(orm: Orm): AlarmStore {
  const em = () => orm.em.fork();

  return {
    async reserveIds(count) {
      // One row holding an array: thousands of rows would cost the event loop milliseconds to decode.
      const rows = await em().execute<{ ids: Array<string | number> | string }[]>(
        `select array_agg(id order by id) as ids
           from (select nextval(pg_get_serial_sequence('alarm', 'alarm_id')) as id from generate_series(1, ?)) s`,
        [count],
      );
      const ids = rows[0]?.ids ?? [];
      const list = typeof ids === 'string' ? ids.replace(/[{}]/g, '').split(',').filter(Boolean) : ids;
      return list.map(Number);
    },

    async lastAlarmId() {
      const rows = await em().execute<{ id: string | null }[]>(`select max(alarm_id) as id from alarm`);
      return Number(rows[0]?.id ?? 0);
    },

    async save(batch) {
      // The values travel as one JSON document: a fixed parameter count whatever
      // the number of rows (a host may carry thousands of VMs).
      await em().transactional(async (tx) => {
        if (batch.alarms.length > 0) {
          const rows = batch.alarms.map((a) => ({
            alarm_id: a.alarmId,
            type: storedAlarmType(a.type),
            host: a.host,
            instance_id: a.instanceId,
            instance_name: a.instanceName,
            project_id: a.projectId,
            vim_id: a.vimId || null,
            vim_name: a.vimName,
            state: a.state,
            severity: a.severity,
            cause: a.cause,
            monitor: a.monitor,
            monitor_event_id: a.monitorEventId,
            fault_id: a.faultId || null,
            vim_event_id: a.vimEventId ?? null,
            event_time: a.eventTime?.toISOString() ?? null,
            detected_at: (a.detectedAt ?? a.raisedAt)?.toISOString(),
            raised_at: a.raisedAt?.toISOString(),
          }));
          await tx.execute(
            `insert into alarm (${columns})
             select ${columns} from jsonb_to_recordset(?::jsonb) as r(
               alarm_id bigint, type text, host text, instance_id text, instance_name text, project_id text,
               vim_id uuid, vim_name text, state text, severity text, cause text, monitor text,
               monitor_event_id text, fault_id uuid, vim_event_id bigint, event_time timestamptz,
               detected_at timestamptz, raised_at timestamptz)
             on conflict do nothing`,
            [JSON.stringify(rows)],
            'run',
          );
        }
        if (batch.hosts.length > 0) {
          // One row per host: ON CONFLICT cannot touch a row twice in one statement.
          const last = new Map(batch.hosts.map((h) => [h.host, h]));
          const rows = [...last.values()].map((h) => ({
            host: h.host,
            state: h.state,
            fault_id: h.faultId,
            changed_at: h.changedAt.toISOString(),
            monitor: h.monitor,
            monitor_event_id: h.monitorEventId,
            severity: h.severity,
            instances: h.instances,
            nova_done_at: h.novaDoneAt?.toISOString() ?? null,
          }));
          await tx.execute(
            `insert into inspector_host (host, state, fault_id, changed_at, monitor, monitor_event_id, severity, instances, nova_done_at)
             select host, state, fault_id, changed_at, monitor, monitor_event_id, severity, instances, nova_done_at
             from jsonb_to_recordset(?::jsonb) as r(host text, state text, fault_id uuid, changed_at timestamptz,
               monitor text, monitor_event_id text, severity text, instances jsonb, nova_done_at timestamptz)
             on conflict (host) do update set state = excluded.state, fault_id = excluded.fault_id,
               changed_at = excluded.changed_at, monitor = excluded.monitor, monitor_event_id = excluded.monitor_event_id,
               severity = excluded.severity, instances = excluded.instances, nova_done_at = excluded.nova_done_at`,
            [JSON.stringify(rows)],
            'run',
          );
        }
        if (batch.novaDone.length > 0) {
          // Only for the fault that did the work: a later state change has its own.
          await tx.execute(
            `update inspector_host h set nova_done_at = r.at
             from jsonb_to_recordset(?::jsonb) as r(host text, fault_id uuid, at timestamptz)
             where h.host = r.host and h.fault_id = r.fault_id`,
            [JSON.stringify(batch.novaDone.map((m) => ({ host: m.host, fault_id: m.faultId, at: m.at.toISOString() })))],
            'run',
          );
        }
      });
    },

    async read(afterId, beforeId, filter, limit) {
      const where = ['alarm_id > ?'];
      const params: unknown[] = [afterId];
      if (beforeId !== undefined) {
        where.push('alarm_id < ?');
        params.push(beforeId);
      }
      const inList = (column: string, values: readonly unknown[] | undefined) => {
        if (!values || values.length === 0) return;
        where.push(`${column} in (${values.map(() => '?').join(', ')})`);
        params.push(...values);
      };
      inList('host', filter?.hosts);
      inList('project_id', filter?.projectIds);
      inList('instance_id', filter?.instanceIds);
      inList('vim_id::text', filter?.vimIds);
      inList('type', filter?.types.map(storedAlarmType));
      params.push(limit);
      const rows = await em().execute<AlarmRow[]>(
        `select ${columns} from alarm where ${where.join(' and ')} order by alarm_id limit ?`,
        params,
      );
      return rows.map(rowToAlarm);
    },

    async loadHosts() {
      const rows = await em().execute<HostRow[]>(
        `select host, state, fault_id, changed_at, monitor, monitor_event_id, severity, instances, nova_done_at from inspector_host`,
      );
      return rows.map((r) => ({
        host: r.host,
        state: r.state === 'down' ? 'down' : 'up',
        faultId: r.fault_id,
        changedAt: new Date(r.changed_at),
        monitor: r.monitor,
        monitorEventId: r.monitor_event_id,
        severity: r.severity,
        instances: (typeof r.instances === 'string' ? JSON.parse(r.instances) : r.instances) as FaultInstance[],
        novaDoneAt: r.nova_done_at ? new Date(r.nova_done_at) : undefined,
      }));
    },
  };
}

interface AlarmRow {
  alarm_id: string | number;
  type: string;
  host: string;
  instance_id: string;
  instance_name: string;
  project_id: string;
  vim_id: string | null;
  vim_name: string;
  state: string;
  severity: string;
  cause: string;
  monitor: string;
  monitor_event_id: string;
  fault_id: string | null;
  vim_event_id: string | number | null;
  event_time: Date | string | null;
  detected_at: Date | string;
  raised_at: Date | string;
}

interface HostRow {
  host: string;
  state: string;
  fault_id: string;
  changed_at: Date | string;
  monitor: string;
  monitor_event_id: string;
  severity: string;
  instances: unknown;
  nova_done_at: Date | string | null;
}

function rowToAlarm(r: AlarmRow): AlarmRecord {
  return {
    ...(r.vim_event_id === null ? {} : { vimEventId: Number(r.vim_event_id) }),
    alarmId: Number(r.alarm_id),
    type: storedToType.get(r.type) ?? AlarmType.UNRECOGNIZED,
    host: r.host,
    instanceId: r.instance_id,
    instanceName: r.instance_name,
    projectId: r.project_id,
    vimId: r.vim_id ?? '',
    vimName: r.vim_name,
    state: r.state,
    severity: r.severity,
    cause: r.cause,
    monitor: r.monitor,
    monitorEventId: r.monitor_event_id,
    faultId: r.fault_id ?? '',
    eventTime: r.event_time ? new Date(r.event_time) : undefined,
    detectedAt: new Date(r.detected_at),
    raisedAt: new Date(r.raised_at),
  };
}
