// Validation at the edge: an UpdateVim request becomes a Report or throws
// InvalidArgumentError naming the field, before anything reaches PostgreSQL
// (a malformed uuid must never come back as a cast error, i.e. INTERNAL).
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { UpdateVimRequest } from '../gen/vimmon/conductor/v1/conductor.js';
import type { StoredStatus } from '../db/entities.js';
import { InvalidArgumentError } from '../common/errors.js';
import { statusFromProto } from '../common/vim-status.js';

export interface Report {
  vimId: string;
  actionId: string;
  status: StoredStatus;
}

// The textual form PostgreSQL prints; other spellings it would accept (braces,
// no hyphens) are refused so that a VIM id has one form on the wire.
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
  return { vimId, actionId, status };
}

function uuidField(field: string, value: string): string {
  if (value === '') throw new InvalidArgumentError(field, 'required');
  if (!uuidPattern.test(value)) throw new InvalidArgumentError(field, `must be a UUID such as 123e4567-e89b-12d3-a456-426614174000, got ${JSON.stringify(value.slice(0, 64))}`);
  return value.toLowerCase();
}

function describeStatus(status: number): string {
  const name = VimStatus[status];
  return name && status !== VimStatus.UNRECOGNIZED ? name : `unknown value ${status}`;
}
