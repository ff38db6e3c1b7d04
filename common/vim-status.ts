import type { StoredStatus } from '../db/entities.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';

export function statusToProto(s: string): VimStatus {
  switch (s) {
    case 'PENDING':
      return VimStatus.VIM_STATUS_PENDING;
    case 'REACHABLE':
      return VimStatus.VIM_STATUS_REACHABLE;
    case 'UNREACHABLE':
      return VimStatus.VIM_STATUS_UNREACHABLE;
    default:
      return VimStatus.VIM_STATUS_UNSPECIFIED;
  }
}

/** The stored form of a reportable status; undefined for UNSPECIFIED, BAD_ACTION and unknown numbers. */
export function statusFromProto(s: VimStatus): StoredStatus | undefined {
  switch (s) {
    case VimStatus.VIM_STATUS_PENDING:
      return 'PENDING';
    case VimStatus.VIM_STATUS_REACHABLE:
      return 'REACHABLE';
    case VimStatus.VIM_STATUS_UNREACHABLE:
      return 'UNREACHABLE';
    default:
      return undefined;
  }
}
