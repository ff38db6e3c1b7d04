import type { StoredReason, StoredStatus } from '../db/entities.js';
import { VimStatus, VimStatusReason } from '../gen/vimmon/common/v1/status.js';

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

export function reasonToProto(r: string): VimStatusReason {
  switch (r) {
    case 'CREDENTIALS_REJECTED':
      return VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED;
    case 'CERTIFICATE_REJECTED':
      return VimStatusReason.VIM_STATUS_REASON_CERTIFICATE_REJECTED;
    default:
      return VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED;
  }
}

/** The stored form of a reason ('' for UNSPECIFIED); undefined for an unknown number. */
export function reasonFromProto(r: VimStatusReason): StoredReason | undefined {
  switch (r) {
    case VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED:
      return '';
    case VimStatusReason.VIM_STATUS_REASON_CREDENTIALS_REJECTED:
      return 'CREDENTIALS_REJECTED';
    case VimStatusReason.VIM_STATUS_REASON_CERTIFICATE_REJECTED:
      return 'CERTIFICATE_REJECTED';
    default:
      return undefined;
  }
}
