import { toMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import { statusToProto } from '../common/vim-status.js';
import type { Vim as VimRow } from '../db/entities.js';
import type { Vim } from '../gen/vimmon/tacker/v1/vim_service.js';
import { masked, unseal } from './credentials.js';
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
    actionId: row.actionId,
    isDefault: row.isDefault,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    statusChangedAt: row.statusChangedAt,
    lastReportAt: row.lastReportAt ?? undefined,
    executor: row.executor ?? '',
  };
}
