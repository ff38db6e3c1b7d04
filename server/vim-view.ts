import { toMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import { reasonToProto, statusToProto } from '../common/vim-status.js';
import type { Vim as VimRow, VimEvent as VimEventRow } from '../db/entities.js';
import type { Vim, VimEvent } from '../gen/vimmon/tacker/v1/vim_service.js';
import { inClear, masked, unseal } from './credentials.js';
import type { ActionSpec } from './executors.js';
import { typeToProto } from './vim-input.js';

export function monitorOf(row: VimRow): MonitorSettings {
  return {
    probe: row.probe as MonitorSettings['probe'],
    intervalMs: row.intervalMs,
    timeoutMs: row.timeoutMs,
    count: row.probeCount,
    unreachableAfter: row.unreachableAfter,
    reportIntervalMs: row.reportIntervalMs,
    staleAfterMs: row.staleAfterMs,
  };
}

/**
 * What an executor is given to run the row's action: the CA certificate, and
 * the credentials in clear only when its probe authenticates with them
 * (PROBE_KIND_AUTH); no other probe needs a secret.
 */
export function actionSpecOf(row: VimRow, key: Buffer): ActionSpec {
  const credentials = unseal(row.credentialsSealed, key, row.id);
  const monitor = monitorOf(row);
  return {
    actionId: row.actionId,
    vimId: row.id,
    authUrl: row.authUrl,
    monitor,
    knownStatus: row.status,
    knownReason: row.statusReason,
    sslCaCert: credentials.sslCaCert ?? '',
    auth: monitor.probe === 'auth' ? { type: typeToProto(row.type), project: row.project, credentials: inClear(credentials) } : undefined,
  };
}

/** The caller's view of a row: secrets masked. */
export function toProtoVim(row: VimRow, key: Buffer): Vim {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    type: typeToProto(row.type),
    authUrl: row.authUrl,
    project: row.project,
    credentials: masked(unseal(row.credentialsSealed, key, row.id)),
    monitor: toMonitorPolicy(monitorOf(row)),
    status: statusToProto(row.status),
    statusReason: reasonToProto(row.statusReason),
    actionId: row.actionId,
    isDefault: row.isDefault,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    statusChangedAt: row.statusChangedAt,
    lastReportAt: row.lastReportAt ?? undefined,
    executor: row.executor ?? '',
    ownerProject: row.ownerProject,
  };
}

export function toVimEvent(row: VimEventRow, vimName: string): VimEvent {
  return {
    eventId: row.id,
    vimId: row.vimId,
    vimName,
    previousStatus: statusToProto(row.fromStatus),
    status: statusToProto(row.toStatus),
    actionId: row.actionId,
    changedAt: row.createdAt,
    statusReason: reasonToProto(row.statusReason),
  };
}
