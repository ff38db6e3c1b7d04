// The stored alarms as one stream, for inspectors sharing a database
// (VIMMON_INSPECTOR_SHARED): every alarm any of them stores, exactly once and
// in strictly increasing ids (db/table-feed.ts, order 'id'). The storing
// transaction announces each alarm on alarmChannel with its row as JSON; a row
// too big for a NOTIFY is announced by its id alone and read from the table.
import type { Kysely, Selectable } from 'kysely';
import type { Database } from './connection.js';
import { createTableFeed, rangeCondition, type Heard, type Range, type TableFeed, type TableFeedOptions } from './table-feed.js';

/** Channel of the NOTIFY sent with every alarm stored in shared mode (payload: the row as JSON, or {"alarm_id": n}). */
export const alarmChannel = 'vimmon_alarm';

/** A NOTIFY payload is refused from 8,000 bytes on: bigger rows travel by id. */
export const alarmNotifyMaxBytes = 7_900;

/** The alarm columns the feed hands over: those the inspector reads. */
export const alarmFeedColumns = [
  'alarm_id',
  'type',
  'host',
  'instance_id',
  'instance_name',
  'project_id',
  'vim_id',
  'vim_name',
  'state',
  'severity',
  'cause',
  'monitor',
  'monitor_event_id',
  'fault_id',
  'vim_event_id',
  'event_time',
  'detected_at',
  'raised_at',
  'expected',
] as const satisfies ReadonlyArray<keyof Database['alarm']>;

export type AlarmFeedRow = Pick<Selectable<Database['alarm']>, (typeof alarmFeedColumns)[number]>;

export type AlarmFeedOptions = Omit<
  TableFeedOptions<AlarmFeedRow>,
  'table' | 'idColumn' | 'channel' | 'noun' | 'parse' | 'read' | 'idOf' | 'order'
>;

const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
const bigint = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** A row as pg decodes it (bigint as text) or as row_to_json writes it (timestamps as text). */
function toRow(r: Record<string, unknown>): AlarmFeedRow {
  return {
    alarm_id: Number(r.alarm_id),
    type: String(r.type),
    host: String(r.host ?? ''),
    instance_id: String(r.instance_id ?? ''),
    instance_name: String(r.instance_name ?? ''),
    project_id: String(r.project_id ?? ''),
    vim_id: (r.vim_id as string | null) ?? null,
    vim_name: String(r.vim_name ?? ''),
    state: String(r.state ?? ''),
    severity: String(r.severity ?? ''),
    cause: String(r.cause ?? ''),
    monitor: String(r.monitor ?? ''),
    monitor_event_id: String(r.monitor_event_id ?? ''),
    fault_id: (r.fault_id as string | null) ?? null,
    vim_event_id: bigint(r.vim_event_id),
    event_time: r.event_time === null || r.event_time === undefined ? null : date(r.event_time),
    detected_at: date(r.detected_at),
    raised_at: date(r.raised_at),
    expected: r.expected === true,
  };
}

export function parseAlarmNotification(payload: string): Heard<AlarmFeedRow> {
  try {
    const v = JSON.parse(payload) as Record<string, unknown>;
    if (typeof v !== 'object' || v === null || !('alarm_id' in v)) return undefined;
    if (!('type' in v)) return 'in-table';
    return toRow(v);
  } catch {
    return undefined;
  }
}

async function readAlarms(db: Kysely<Database>, after: number, ranges: readonly Range[], limit: number): Promise<AlarmFeedRow[]> {
  const rows = await db
    .selectFrom('alarm')
    .select([...alarmFeedColumns])
    .where(rangeCondition('alarm_id', after, ranges))
    .orderBy('alarm_id')
    .limit(limit)
    .execute();
  return rows.map((r) => toRow(r as unknown as Record<string, unknown>));
}

export function createAlarmFeed(options: AlarmFeedOptions): TableFeed {
  return createTableFeed<AlarmFeedRow>({
    applicationName: 'vimmon alarm feed',
    ...options,
    table: 'alarm',
    idColumn: 'alarm_id',
    channel: alarmChannel,
    noun: 'alarm',
    parse: parseAlarmNotification,
    read: readAlarms,
    idOf: (r) => r.alarm_id,
    order: 'id',
  });
}
