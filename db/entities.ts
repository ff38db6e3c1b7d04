// The one description of the schema: columns, defaults, checks, indexes and
// foreign keys are declared here with the names the committed migrations gave
// them, so that MikroORM's schema diff after `migrator.up()` is empty
// (test/schema.test.ts) and its standard commands never drop an invariant.
import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { AlarmQuarantineSchema, AlarmSchema, InspectorHostSchema, InspectorMaintenanceSchema } from './alarm.js';

/** Stored VIM statuses. BAD_ACTION is a conductor reply only and is never stored. */
export const storedStatuses = ['PENDING', 'REACHABLE', 'UNREACHABLE'] as const;
export type StoredStatus = (typeof storedStatuses)[number];

/** Why a VIM is UNREACHABLE when it answered but refused; '' for no reason beyond the status. */
export const storedReasons = ['', 'CREDENTIALS_REJECTED', 'CERTIFICATE_REJECTED'] as const;
export type StoredReason = (typeof storedReasons)[number];

const credentialsKinds = ['none', 'password', 'token', 'oidc'] as const;
const probeKinds = ['tcp', 'http', 'icmp', 'auth'] as const;

/** `column in ('a', 'b')`: MikroORM's diff reads it as equal to the `= any (array[...])` PostgreSQL prints back. */
const oneOf = (column: string, values: readonly string[]) => `${column} in (${values.map((v) => `'${v}'`).join(', ')})`;

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
    /** none | password | token | oidc */
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
    /** Goes with status: why the VIM refused (storedReasons). */
    statusReason: p.text().default(''),
    /** The fencing token: only this action's reports are accepted. */
    actionId: p.uuid(),
    actionAssignedAt: p.datetime(),
    /** True once an executor acknowledged StartAction(actionId). */
    actionStarted: p.boolean().default(false),
    executor: p.text().nullable(),
    /**
     * A hand-over in progress (the VIM's executor drains): this action runs beside the
     * current one, and its first report the conductor accepts makes it the current one
     * (action_id, executor). Until then the current action's reports are accepted as before.
     */
    successorActionId: p.uuid().nullable(),
    successorExecutor: p.text().nullable(),
    successorAssignedAt: p.datetime().nullable(),
    /** The reconciler's starts of this VIM that failed in a row; 0 once one is acknowledged. */
    startAttempts: p.integer().default(0),
    /** The reconciler claims the VIM again no sooner (backoff after a failed start); null: any time. */
    nextAttemptAt: p.datetime().nullable(),
    isDefault: p.boolean().default(false),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    statusChangedAt: p.datetime(),
    lastReportAt: p.datetime().nullable(),
    /** Soft delete: the name becomes reusable, late reports are fenced. */
    deletedAt: p.datetime().nullable(),
    /** The owning project (Tacker's tenant_id); '' for none: admin only. */
    ownerProject: p.text().default(''),
  },
  // Names as PostgreSQL gave them to the migrations' inline checks.
  checks: [
    { name: 'vim_name_check', expression: (c) => `length(${c.name}) >= 1 and length(${c.name}) <= 255` },
    { name: 'vim_credentials_kind_check', expression: (c) => oneOf(c.credentialsKind, credentialsKinds) },
    { name: 'vim_probe_check', expression: (c) => oneOf(c.probe, probeKinds) },
    { name: 'vim_interval_ms_check', expression: (c) => `${c.intervalMs} > 0` },
    { name: 'vim_timeout_ms_check', expression: (c) => `${c.timeoutMs} > 0` },
    { name: 'vim_probe_count_check', expression: (c) => `${c.probeCount} > 0` },
    { name: 'vim_unreachable_after_check', expression: (c) => `${c.unreachableAfter} > 0` },
    { name: 'vim_report_interval_ms_check', expression: (c) => `${c.reportIntervalMs} > 0` },
    { name: 'vim_check', expression: (c) => `${c.staleAfterMs} > ${c.reportIntervalMs}` },
    { name: 'vim_status_check', expression: (c) => oneOf(c.status, storedStatuses) },
    { name: 'vim_status_reason_check', expression: (c) => oneOf(c.statusReason, storedReasons) },
    { name: 'vim_owner_project_check', expression: (c) => `length(${c.ownerProject}) <= 255` },
  ],
  uniques: [
    // Names are unique among live VIMs only, so a name is reusable after deregister.
    { name: 'vim_name_live', properties: ['name'], where: { deletedAt: null } },
    // At most one live default.
    { name: 'vim_default_live', properties: ['isDefault'], where: 'is_default and deleted_at is null' },
  ],
  indexes: [
    { name: 'vim_live_created', properties: ['createdAt', 'id'], where: { deletedAt: null } },
    { name: 'vim_live_owner', properties: ['ownerProject', 'createdAt', 'id'], where: { deletedAt: null } },
    // One executor's live VIMs (the lost-action check, per executor): without it each check read
    // every live row. executor changes only on a hand-over, so heartbeats stay HOT updates.
    { name: 'vim_live_executor', properties: ['executor'], where: { deletedAt: null } },
  ],
});
export type Vim = InferEntity<typeof VimSchema>;

/** The column vim(id) as a foreign key that reads as the plain id, named as PostgreSQL named the migration's. */
const vimReference = (foreignKeyName: string) =>
  p.manyToOne(VimSchema).mapToPk().fieldName('vim_id').foreignKeyName(foreignKeyName).updateRule('no action').deleteRule('no action');

export const VimEventSchema = defineEntity({
  name: 'VimEvent',
  tableName: 'vim_event',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    vimId: vimReference('vim_event_vim_id_fkey'),
    fromStatus: p.text(),
    toStatus: p.text(),
    /** The reason that goes with toStatus. */
    statusReason: p.text().default(''),
    actionId: p.uuid(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'vim_event_status_reason_check', expression: (c) => oneOf(c.statusReason, storedReasons) }],
  indexes: [{ name: 'vim_event_vim', properties: ['vimId', 'id'] }],
});
export type VimEvent = InferEntity<typeof VimEventSchema>;

export const auditActions = ['register', 'update', 'deregister'] as const;
export type AuditAction = (typeof auditActions)[number];

/** Who registered, changed or deregistered a VIM. */
export const VimAuditSchema = defineEntity({
  name: 'VimAudit',
  tableName: 'vim_audit',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    vimId: vimReference('vim_audit_vim_id_fkey'),
    action: p.text(),
    principal: p.text(),
    principalProject: p.text().default(''),
    ownerProject: p.text().default(''),
    changedFields: p.array().default([]),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'vim_audit_action_check', expression: (c) => oneOf(c.action, auditActions) }],
  indexes: [{ name: 'vim_audit_vim', properties: ['vimId', 'id'] }],
});
export type VimAudit = InferEntity<typeof VimAuditSchema>;

/**
 * How far retention (db/retention.ts) has removed each table's oldest rows: every id at or below
 * removedThrough that was ever stored is gone. A stream resuming below it is told so (OUT_OF_RANGE).
 */
export const RetentionMarkSchema = defineEntity({
  name: 'RetentionMark',
  tableName: 'retention_mark',
  properties: {
    tableName: p.text().primary(),
    removedThrough: p.bigint('number'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
});
export type RetentionMark = InferEntity<typeof RetentionMarkSchema>;

export const entities = [
  VimSchema,
  VimEventSchema,
  VimAuditSchema,
  AlarmSchema,
  InspectorHostSchema,
  AlarmQuarantineSchema,
  InspectorMaintenanceSchema,
  RetentionMarkSchema,
];

/** Channel of the NOTIFY sent with every stored status transition (payload: JSON, see conductor). */
export const vimStatusChannel = 'vimmon_vim_status';
