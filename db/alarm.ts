import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

/** Alarm types as stored; the contract's AlarmType names without the ALARM_TYPE_ prefix. */
export const alarmTypes = [
  'INSTANCE_DOWN',
  'HOST_DOWN',
  'VIM_UNREACHABLE',
  'INSTANCE_RECOVERED',
  'HOST_RECOVERED',
  'VIM_RECOVERED',
  'HOST_MAINTENANCE_STARTED',
  'HOST_MAINTENANCE_ENDED',
  'VIM_CREDENTIALS_REJECTED',
] as const;
export type StoredAlarmType = (typeof alarmTypes)[number];

export const hostStates = ['down', 'up'] as const;

/** `column in ('a', 'b')`, as in entities.ts (which imports this file, so this file does not import it back). */
const oneOf = (column: string, values: readonly string[]) => `${column} in (${values.map((v) => `'${v}'`).join(', ')})`;

/** Every alarm the inspector raised, in the order subscribers saw them. */
export const AlarmSchema = defineEntity({
  name: 'Alarm',
  tableName: 'alarm',
  properties: {
    // The inspector reserves ids from this column's sequence before it raises alarms,
    // so alarm_id is the order subscribers saw, across restarts too.
    alarmId: p.bigint('number').primary().autoincrement(),
    type: p.text(),
    host: p.text().default(''),
    instanceId: p.text().default(''),
    instanceName: p.text().default(''),
    projectId: p.text().default(''),
    vimId: p.uuid().nullable(),
    vimName: p.text().default(''),
    state: p.text().default(''),
    severity: p.text(),
    cause: p.text().default(''),
    monitor: p.text().default(''),
    monitorEventId: p.text().default(''),
    /** The host state change this alarm belongs to. */
    faultId: p.uuid().nullable(),
    /** vim_event.id for VIM alarms. */
    vimEventId: p.bigint('number').nullable(),
    eventTime: p.datetime().nullable(),
    detectedAt: p.datetime(),
    raisedAt: p.datetime(),
    storedAt: p.datetime().defaultRaw('now()'),
    /** Raised for a fault of a host in maintenance: planned, nothing called in Nova or Neutron. */
    expected: p.boolean().default(false),
  },
  checks: [{ name: 'alarm_type_check', expression: (c) => oneOf(c.type, alarmTypes) }],
  indexes: [
    { name: 'alarm_host', properties: ['host', 'alarmId'], where: { host: { $ne: '' } } },
    { name: 'alarm_project', properties: ['projectId', 'alarmId'], where: { projectId: { $ne: '' } } },
    { name: 'alarm_fault', properties: ['faultId'], where: { faultId: { $ne: null } } },
  ],
  uniques: [
    // One alarm per VIM status transition, however often the NOTIFY is replayed.
    { name: 'alarm_vim_event', properties: ['vimEventId', 'type'], where: { vimEventId: { $ne: null } } },
  ],
});
export type Alarm = InferEntity<typeof AlarmSchema>;

/** A VM as it was on a host when the host went down. */
export interface FaultInstance {
  id: string;
  name: string;
  projectId: string;
}

/** The inspector's view of a compute host, kept so that a restart forgets nothing. */
export const InspectorHostSchema = defineEntity({
  name: 'InspectorHost',
  tableName: 'inspector_host',
  properties: {
    host: p.text().primary(),
    /** down | up */
    state: p.text(),
    faultId: p.uuid(),
    changedAt: p.datetime(),
    monitor: p.text().default(''),
    monitorEventId: p.text().default(''),
    severity: p.text().default(''),
    instances: p.json<FaultInstance[]>().defaultRaw(`'[]'`),
    /** Set when the Nova work of the fault is over; null means it must be driven again. */
    novaDoneAt: p.datetime().nullable(),
  },
  checks: [{ name: 'inspector_host_state_check', expression: (c) => oneOf(c.state, hostStates) }],
});
export type InspectorHost = InferEntity<typeof InspectorHostSchema>;

/** An alarm the database refused to store, put aside so that the alarms after it are stored. */
export const AlarmQuarantineSchema = defineEntity({
  name: 'AlarmQuarantine',
  tableName: 'alarm_quarantine',
  properties: {
    // The id the alarm was given from alarm's sequence: never generated here.
    alarmId: p.bigint('number').primary().autoincrement(false),
    /** The alarm as JSON text (not jsonb: it refuses \u0000). */
    payload: p.text(),
    /** The database's message. */
    error: p.text(),
    quarantinedAt: p.datetime().defaultRaw('now()'),
  },
});
export type AlarmQuarantine = InferEntity<typeof AlarmQuarantineSchema>;

/** A host under planned maintenance (Doctor's IN_MAINTENANCE): its faults raise expected alarms and call nothing. */
export const InspectorMaintenanceSchema = defineEntity({
  name: 'InspectorMaintenance',
  tableName: 'inspector_maintenance',
  properties: {
    host: p.text().primary(),
    since: p.datetime(),
    sessionId: p.text().default(''),
    reason: p.text().default(''),
    /** The principal that put the host in maintenance. */
    setBy: p.text().default(''),
  },
});
export type InspectorMaintenance = InferEntity<typeof InspectorMaintenanceSchema>;
