// Validation at the edge: an UpdateVim request becomes a Report or throws
// InvalidArgumentError naming the field, before anything reaches PostgreSQL
// (a malformed uuid must never come back as a cast error, i.e. INTERNAL).
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { UpdateVimRequest } from '../gen/vimmon/conductor/v1/conductor.js';
import type { StoredReason, StoredStatus } from '../db/entities.js';
import { InvalidArgumentError } from '../common/errors.js';
import { uuidField } from '../common/uuid.js';
import { reasonFromProto, statusFromProto } from '../common/vim-status.js';

export interface Report {
  vimId: string;
  actionId: string;
  status: StoredStatus;
  /** '' unless status is UNREACHABLE; unset reads as ''. */
  reason?: StoredReason;
}

export function parseReport(request: UpdateVimRequest): Report {
  const vimId = uuidField('vim_id', request.vimId);
  const actionId = uuidField('action_id', request.actionId);
  const status = statusFromProto(request.status);
  if (status === undefined) {
    throw new InvalidArgumentError(
      'status',
      `must be VIM_STATUS_PENDING, VIM_STATUS_REACHABLE or VIM_STATUS_UNREACHABLE, got ${describeStatus(request.status)}`,
    );
  }
  const reason = reasonFromProto(request.statusReason);
  if (reason === undefined) throw new InvalidArgumentError('status_reason', `unknown value ${request.statusReason}`);
  if (reason !== '' && status !== 'UNREACHABLE')
    throw new InvalidArgumentError('status_reason', `goes with VIM_STATUS_UNREACHABLE only, not ${describeStatus(request.status)}`);
  return { vimId, actionId, status, reason };
}

function describeStatus(status: number): string {
  const name = VimStatus[status];
  return name && status !== VimStatus.UNRECOGNIZED ? name : `unknown value ${status}`;
}
