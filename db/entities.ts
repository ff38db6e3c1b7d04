import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { AlarmSchema, InspectorHostSchema } from './alarm.js';

/** Stored VIM statuses. BAD_ACTION is a conductor reply only and is never stored. */
export const storedStatuses = ['PENDING', 'REACHABLE', 'UNREACHABLE'] as const;
export type StoredStatus = (typeof storedStatuses)[number];

export const VimSchema = defineEntity({
  name: 'Vim',
  tableName: 'vim',
  properties: {
    id: p.uuid().primary(),
    name: p.text(),
    description: p.text().default(''),
    type: p.text(),
    authUrl: p.text(),
    project: p.text().default(''),
    /** none | password | token */
    credentialsKind: p.text().default('none'),
    /** AES-256-GCM sealed JSON of the credentials; never leaves the server in clear. */
    credentialsSealed: p.text().nullable(),
    probe: p.text(),
    intervalMs: p.integer(),
    timeoutMs: p.integer(),
    probeCount: p.integer(),
    unreachableAfter: p.integer(),
    reportIntervalMs: p.integer(),
    staleAfterMs: p.integer(),
    status: p.text(),
    /** The fencing token: only this action's reports are accepted. */
    actionId: p.uuid(),
    actionAssignedAt: p.datetime(),
    /** True once an executor acknowledged StartAction(actionId). */
    actionStarted: p.boolean().default(false),
    executor: p.text().nullable(),
    isDefault: p.boolean().default(false),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    statusChangedAt: p.datetime(),
    lastReportAt: p.datetime().nullable(),
    /** Soft delete: the name becomes reusable, late reports are fenced. */
    deletedAt: p.datetime().nullable(),
  },
});
export type Vim = InferEntity<typeof VimSchema>;

export const VimEventSchema = defineEntity({
  name: 'VimEvent',
  tableName: 'vim_event',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    vimId: p.uuid(),
    fromStatus: p.text(),
    toStatus: p.text(),
    actionId: p.uuid(),
    createdAt: p.datetime(),
  },
});
export type VimEvent = InferEntity<typeof VimEventSchema>;

export const entities = [VimSchema, VimEventSchema, AlarmSchema, InspectorHostSchema];

/** Channel of the NOTIFY sent with every stored status transition (payload: JSON, see conductor). */
export const vimStatusChannel = 'vimmon_vim_status';
