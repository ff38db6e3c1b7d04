// The alarm table and the inspector's host table. Only the alarm log
// (alarm-stream.ts) writes alarms; it calls save() from one writer at a time,
// in id order, so that the rows below the writer's watermark are exactly the
// alarms raised below it.
//
// Shared mode (idsAtInsert, shared-alarm-hub.ts): save() leaves alarm_id to
// the sequence, so ids are drawn inside the storing transaction, under the
// table's insert lock (what db/table-feed.ts's gaps rely on), gives each alarm
// stored its id once the transaction commits, and announces each on
// alarmChannel in the same transaction.
import { recordset, sql, typedSql, type Database, type Orm, type Selectable } from '../db/connection.js';
import { alarmTypes, type FaultInstance, type StoredAlarmType } from '../db/alarm.js';
import { alarmChannel, alarmNotifyMaxBytes } from '../db/alarm-feed.js';
import { checkResumePoint } from '../db/retention.js';
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

/** Narrows loadHosts: one host, or the hosts whose Nova work is not over, the first `limit` by name. */
export type HostQuery = { host: string } | { novaUndone: true; limit: number };

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
  /** The largest id of an alarm stored or quarantined, 0 when none. */
  lastAlarmId(): Promise<number>;
  /**
   * One transaction: one multi-row INSERT of the alarms, one upsert of the hosts, the Nova marks.
   * With idsAtInsert each alarm stored gets its alarmId once committed; one that another
   * inspector stored first (the same VIM transition) keeps alarmId 0.
   */
  save(batch: SaveBatch): Promise<void>;
  /**
   * Puts an alarm the database refused aside in alarm_quarantine, as JSON text
   * with the database's message. False when it was there already (a retried batch).
   */
  quarantine(alarm: AlarmRecord, error: string): Promise<boolean>;
  /** Rows in alarm_quarantine. */
  quarantinedCount(): Promise<number>;
  /** Stored alarms with afterId < id < beforeId that match, in id order. */
  read(afterId: number, beforeId: number | undefined, filter: AlarmFilter | undefined, limit: number): Promise<AlarmRecord[]>;
  /** Hosts down, and hosts whose Nova work is not over; a host back up and done is as good as unknown. */
  loadHosts(only?: HostQuery): Promise<HostRecord[]>;
  /**
   * Throws ResumePointRemovedError when retention removed alarms after afterId; called after
   * read() returned the alarms after it. A store without retention leaves it out.
   */
  checkResumePoint?(afterId: number): Promise<void>;
}

/** The trailer of OUT_OF_RANGE (after_alarm_id below what retention removed): the oldest alarm id still held. */
export const oldestHeldTrailer = 'vimmon-oldest-alarm-id';

const typeToStored = new Map<AlarmType, StoredAlarmType>(alarmTypes.map((t) => [AlarmType[`ALARM_TYPE_${t}`], t]));
const storedToType = new Map<string, AlarmType>(alarmTypes.map((t) => [t, AlarmType[`ALARM_TYPE_${t}`]]));

export function storedAlarmType(type: AlarmType): StoredAlarmType {
  const t = typeToStored.get(type);
  if (!t) throw new Error(`alarm type ${type} cannot be stored`);
  return t;
}

/** The alarm columns the inspector writes and reads, with the SQL types jsonb_to_recordset casts to. */
const alarmColumns = {
  alarm_id: 'bigint',
  type: 'text',
  host: 'text',
  instance_id: 'text',
  instance_name: 'text',
  project_id: 'text',
  vim_id: 'uuid',
  vim_name: 'text',
  state: 'text',
  severity: 'text',
  cause: 'text',
  monitor: 'text',
  monitor_event_id: 'text',
  fault_id: 'uuid',
  vim_event_id: 'bigint',
  event_time: 'timestamptz',
  detected_at: 'timestamptz',
  raised_at: 'timestamptz',
  expected: 'boolean',
} as const satisfies Partial<Record<keyof Database['alarm'], string>>;
type AlarmColumn = keyof typeof alarmColumns;
type AlarmRow = Pick<Selectable<Database['alarm']>, AlarmColumn>;
const alarmColumnNames = Object.keys(alarmColumns) as AlarmColumn[];

/** Every inspector_host column, with its SQL type. */
const hostColumns = {
  host: 'text',
  state: 'text',
  fault_id: 'uuid',
  changed_at: 'timestamptz',
  monitor: 'text',
  monitor_event_id: 'text',
  severity: 'text',
  instances: 'jsonb',
  nova_done_at: 'timestamptz',
} as const satisfies Record<keyof Database['inspector_host'], string>;
type HostColumn = keyof typeof hostColumns;
type HostRow = Selectable<Database['inspector_host']>;
const hostColumnNames = Object.keys(hostColumns) as HostColumn[];

const novaDoneColumns = { host: 'text', fault_id: 'uuid', at: 'timestamptz' } as const;

export interface AlarmStoreOptions {
  /** Shared mode: alarm ids drawn at insert and each alarm announced on alarmChannel (see above). */
  idsAtInsert?: boolean;
}

/** Where an alarm's row goes in the batch, so that ids are drawn in the batch's order. */
const orderedAlarmColumns = { ...alarmColumns, ord: 'int' } as const;

export function createAlarmStore(orm: Orm, options: AlarmStoreOptions = {}): AlarmStore {
  const db = () => typedSql(orm.em.fork());
  const idsAtInsert = options.idsAtInsert ?? false;

  return {
    async reserveIds(count) {
      // Raw: sequence functions over generate_series read no table; the names passed are checked.
      const table: keyof Database = 'alarm';
      const column: keyof Database['alarm'] = 'alarm_id';
      // One row holding an array: thousands of rows would cost the event loop milliseconds to decode.
      const { rows } = await sql<{ ids: Array<string | number> | string | null }>`
        select array_agg(id order by id) as ids
          from (select nextval(pg_get_serial_sequence(${table}, ${column})) as id from generate_series(1, ${count})) s`.execute(db());
      const ids = rows[0]?.ids ?? [];
      const list = typeof ids === 'string' ? ids.replace(/[{}]/g, '').split(',').filter(Boolean) : ids;
      return list.map(Number);
    },

    async lastAlarmId() {
      // A quarantined alarm was raised too: its id is never handed out again, nor counted down from.
      // An aggregate is not converted: bigint arrives as text.
      const row = await db()
        .selectNoFrom((eb) =>
          eb
            .fn<string | null>('greatest', [
              eb.selectFrom('alarm').select((s) => s.fn.max('alarm_id').as('m')),
              eb.selectFrom('alarm_quarantine').select((s) => s.fn.max('alarm_id').as('m')),
              // Retention may have removed every alarm, and every quarantined one: the ids it removed were raised too.
              eb
                .selectFrom('retention_mark')
                .select((s) => s.fn.max('removed_through').as('m'))
                .where('table_name', 'in', ['alarm', 'alarm_quarantine']),
            ])
            .as('last_id'),
        )
        .executeTakeFirst();
      return Number(row?.last_id ?? 0);
    },

    async save(batch) {
      let drawn: Array<[AlarmRecord, number]> = [];
      // The values travel as one JSON document: a fixed parameter count whatever
      // the number of rows (a host may carry thousands of VMs).
      await orm.em.fork().transactional(async (em) => {
        const tx = typedSql(em);
        if (batch.alarms.length > 0) {
          const rows = batch.alarms.map(
            (a): Record<AlarmColumn, unknown> => ({
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
              expected: a.expected,
            }),
          );
          if (idsAtInsert) drawn = await insertDrawingIds(tx, batch.alarms, rows);
          else
            await tx
              .insertInto('alarm')
              .columns(alarmColumnNames)
              .expression(tx.selectFrom(recordset<AlarmRow>(alarmColumns, rows)).select(alarmColumnNames))
              .onConflict((oc) => oc.doNothing())
              .execute();
        }
        if (batch.hosts.length > 0) {
          // One row per host: ON CONFLICT cannot touch a row twice in one statement.
          const last = new Map(batch.hosts.map((h) => [h.host, h]));
          const rows = [...last.values()].map(
            (h): Record<HostColumn, unknown> => ({
              host: h.host,
              state: h.state,
              fault_id: h.faultId,
              changed_at: h.changedAt.toISOString(),
              monitor: h.monitor,
              monitor_event_id: h.monitorEventId,
              severity: h.severity,
              instances: h.instances,
              nova_done_at: h.novaDoneAt?.toISOString() ?? null,
            }),
          );
          await tx
            .insertInto('inspector_host')
            .columns(hostColumnNames)
            .expression(tx.selectFrom(recordset<HostRow>(hostColumns, rows)).select(hostColumnNames))
            .onConflict((oc) =>
              oc.column('host').doUpdateSet((eb) => ({
                state: eb.ref('excluded.state'),
                fault_id: eb.ref('excluded.fault_id'),
                changed_at: eb.ref('excluded.changed_at'),
                monitor: eb.ref('excluded.monitor'),
                monitor_event_id: eb.ref('excluded.monitor_event_id'),
                severity: eb.ref('excluded.severity'),
                instances: eb.ref('excluded.instances'),
                nova_done_at: eb.ref('excluded.nova_done_at'),
              })),
            )
            .execute();
        }
        if (batch.novaDone.length > 0) {
          // Only for the fault that did the work: a later state change has its own.
          const marks = batch.novaDone.map((m) => ({ host: m.host, fault_id: m.faultId, at: m.at.toISOString() }));
          await tx
            .updateTable('inspector_host as h')
            .from(recordset<{ host: string; fault_id: string; at: Date }>(novaDoneColumns, marks))
            .set((eb) => ({ nova_done_at: eb.ref('r.at') }))
            .whereRef('h.host', '=', 'r.host')
            .whereRef('h.fault_id', '=', 'r.fault_id')
            .execute();
        }
      });
      // Committed: only now are the ids the alarms'.
      for (const [a, id] of drawn) a.alarmId = id;
    },

    async quarantine(alarm, error) {
      // Text, not jsonb (which refuses \u0000), and JSON.stringify escapes every
      // control character and lone surrogate: the payload cannot be refused.
      const rows = await db()
        .insertInto('alarm_quarantine')
        .values({
          // In shared mode a refused alarm never had an id: it gets one, never an alarm's.
          alarm_id: alarm.alarmId || sql<number>`nextval(pg_get_serial_sequence('alarm', 'alarm_id'))`,
          payload: quarantinePayload(alarm),
          error: storableText(error, 2_000),
        })
        .onConflict((oc) => oc.column('alarm_id').doNothing())
        .returning('alarm_id')
        .execute();
      return rows.length > 0;
    },

    async quarantinedCount() {
      const row = await db()
        .selectFrom('alarm_quarantine')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirst();
      return Number(row?.n ?? 0);
    },

    checkResumePoint(afterId) {
      return checkResumePoint(orm, 'alarm', afterId, 'after_alarm_id', oldestHeldTrailer);
    },

    async read(afterId, beforeId, filter, limit) {
      let query = db().selectFrom('alarm').select(alarmColumnNames).where('alarm_id', '>', afterId);
      if (beforeId !== undefined) query = query.where('alarm_id', '<', beforeId);
      if (filter?.hosts?.length) query = query.where('host', 'in', filter.hosts);
      if (filter?.projectIds?.length) query = query.where('project_id', 'in', filter.projectIds);
      if (filter?.instanceIds?.length) query = query.where('instance_id', 'in', filter.instanceIds);
      // As text: a filter id that is not a UUID matches nothing instead of failing the query.
      const vimIds = filter?.vimIds;
      if (vimIds?.length) query = query.where((eb) => eb(eb.cast<string>('vim_id', 'text'), 'in', vimIds));
      if (filter?.types?.length) query = query.where('type', 'in', filter.types.map(storedAlarmType));
      const rows = await query.orderBy('alarm_id').limit(limit).execute();
      return rows.map(rowToAlarm);
    },

    async loadHosts(only) {
      let query = db()
        .selectFrom('inspector_host')
        .select(hostColumnNames)
        .where((eb) => eb.or([eb('state', '=', 'down'), eb('nova_done_at', 'is', null)]));
      if (only && 'host' in only) query = query.where('host', '=', only.host);
      else if (only) query = query.where('nova_done_at', 'is', null).orderBy('host').limit(only.limit);
      const rows = await query.execute();
      return rows.map((r) => ({
        host: r.host,
        state: r.state === 'down' ? 'down' : 'up',
        faultId: r.fault_id,
        changedAt: r.changed_at,
        monitor: r.monitor,
        monitorEventId: r.monitor_event_id,
        severity: r.severity,
        instances: r.instances,
        novaDoneAt: r.nova_done_at ?? undefined,
      }));
    },
  };
}

/** The alarm as JSON text; an alarm whose fields cannot be serialised keeps its id and what can be said of it. */
function quarantinePayload(alarm: AlarmRecord): string {
  try {
    // Dates serialise through toJSON, which gives null for an invalid one instead of throwing.
    return JSON.stringify(alarm);
  } catch (err) {
    return JSON.stringify({ alarmId: alarm.alarmId, unserialisable: String(err) });
  }
}

/** Text PostgreSQL accepts: no NUL, no lone surrogate, at most max characters. */
export function storableText(s: string, max: number): string {
  return s
    .slice(0, max)
    .replace(/\u0000/g, '\\u0000')
    .toWellFormed();
}

/**
 * Inserts the alarms with ids drawn from the sequence in the batch's order and
 * announces each on alarmChannel; returns each alarm stored with its id (an
 * alarm whose VIM transition is stored already is left out).
 */
async function insertDrawingIds(
  tx: ReturnType<typeof typedSql>,
  alarms: AlarmRecord[],
  rows: Array<Record<AlarmColumn, unknown>>,
): Promise<Array<[AlarmRecord, number]>> {
  const columns = alarmColumnNames.filter((c) => c !== 'alarm_id');
  const ordered = rows.map((r, ord) => ({ ...r, alarm_id: null, ord }));
  // One statement, one round trip on the live path: the insert, and each row announced as it was stored.
  const { rows: inserted } = await sql<{ alarm_id: string | number; vim_event_id: string | number | null; type: string }>`
    with ins as (
      insert into alarm (${sql.join(columns.map((c) => sql.id(c)))})
      select ${sql.join(columns.map((c) => sql.ref(`r.${c}`)))}
        from ${recordset<AlarmRow & { ord: number }>(orderedAlarmColumns, ordered)}
       order by r.ord
      on conflict do nothing
      returning ${sql.join(alarmColumnNames.map((c) => sql.id(c)))}
    ), announced as (select ins.alarm_id, ins.vim_event_id, ins.type, row_to_json(ins)::text as payload from ins)
    select alarm_id, vim_event_id, type,
           pg_notify(${alarmChannel}, case when octet_length(payload) < ${alarmNotifyMaxBytes} then payload
                                           else json_build_object('alarm_id', alarm_id)::text end)
      from announced order by alarm_id`.execute(tx);
  // Only a VIM alarm can be left out (its transition's alarm stored already): the rest keep their order.
  const stored = new Map<string, number>();
  for (const r of inserted) {
    if (r.vim_event_id === null) continue;
    const key = `${r.vim_event_id}/${r.type}`;
    stored.set(key, (stored.get(key) ?? 0) + 1);
  }
  const drawn: Array<[AlarmRecord, number]> = [];
  let next = 0;
  for (const a of alarms) {
    if (a.vimEventId !== undefined) {
      const key = `${a.vimEventId}/${storedAlarmType(a.type)}`;
      const left = stored.get(key) ?? 0;
      if (left === 0) continue;
      stored.set(key, left - 1);
    }
    drawn.push([a, Number(inserted[next++]!.alarm_id)]);
  }
  return drawn;
}

/** The alarm a stored row holds. */
export function rowToAlarm(r: AlarmRow): AlarmRecord {
  return {
    ...(r.vim_event_id === null ? {} : { vimEventId: r.vim_event_id }),
    alarmId: r.alarm_id,
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
    eventTime: r.event_time ?? undefined,
    detectedAt: r.detected_at,
    raisedAt: r.raised_at,
    expected: r.expected,
  };
}
