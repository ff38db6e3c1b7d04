import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

/** Alarm types as stored; the contract's AlarmType names without the ALARM_TYPE_ prefix. */
export const alarmTypes = ['INSTANCE_DOWN', 'HOST_DOWN', 'VIM_UNREACHABLE', 'INSTANCE_RECOVERED', 'HOST_RECOVERED', 'VIM_RECOVERED'] as const;
export type StoredAlarmType = (typeof alarmTypes)[number];

/** Every alarm the inspector raised, in the order subscribers saw them. */
export const AlarmSchema = defineEntity({
  name: 'Alarm',
  tableName: 'alarm',
  properties: {
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
    storedAt: p.datetime(),
  },
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
    instances: p.json<FaultInstance[]>(),
    /** Set when the Nova work of the fault is over; null means it must be driven again. */
    novaDoneAt: p.datetime().nullable(),
  },
});
export type InspectorHost = InferEntity<typeof InspectorHostSchema>;
