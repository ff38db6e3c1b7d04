// Who changed what: every register, update and deregister writes a vim_audit
// row in the transaction that makes the change, and a log line.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../common/auth/principal.js';
import { VimAuditSchema, type AuditAction, type VimAudit } from '../db/entities.js';
import { VimAuditAction, type VimAuditRecord } from '../gen/vimmon/tacker/v1/vim_service.js';

export function recordAudit(
  em: EntityManager,
  entry: { vimId: string; action: AuditAction; caller: Principal; ownerProject: string; changedFields?: string[] },
): void {
  em.create(VimAuditSchema, {
    vimId: entry.vimId,
    action: entry.action,
    principal: entry.caller.name,
    // A static token may name many projects; the trail keeps the first kilobyte of their list.
    principalProject: entry.caller.projects.join(',').slice(0, 1024),
    ownerProject: entry.ownerProject,
    changedFields: entry.changedFields ?? [],
    createdAt: new Date(),
  });
}

const actions: Record<string, VimAuditAction> = {
  register: VimAuditAction.VIM_AUDIT_ACTION_REGISTER,
  update: VimAuditAction.VIM_AUDIT_ACTION_UPDATE,
  deregister: VimAuditAction.VIM_AUDIT_ACTION_DEREGISTER,
};

export function toAuditRecord(row: VimAudit): VimAuditRecord {
  return {
    id: row.id,
    vimId: row.vimId,
    action: actions[row.action] ?? VimAuditAction.VIM_AUDIT_ACTION_UNSPECIFIED,
    principal: row.principal,
    principalProject: row.principalProject,
    ownerProject: row.ownerProject,
    changedFields: [...(row.changedFields as string[])],
    time: row.createdAt,
  };
}
