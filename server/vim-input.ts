// Validation at the edge: a request becomes domain values or throws an
// InvalidArgumentError naming the field.
import { parseAuthUrl } from '../common/auth-url.js';
import { InvalidArgumentError } from '../common/errors.js';
import { isUuid, uuidField } from '../common/uuid.js';
import { resolveMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import { statusFromProto } from '../common/vim-status.js';
import type { StoredStatus } from '../db/entities.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimType, type RegisterVimRequest } from '../gen/vimmon/tacker/v1/vim_service.js';
import { validateCredentials, type PlainCredentials } from './credentials.js';

export function vimId(value: string, field = 'id'): string {
  return uuidField(field, value);
}

export function vimName(value: string, field = 'name'): string {
  if (!value || !value.trim()) throw new InvalidArgumentError(field, 'required');
  if (value.length > 255) throw new InvalidArgumentError(field, 'longer than 255 characters');
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new InvalidArgumentError(field, 'must not contain control characters');
  return value;
}

export function text(value: string, field: string, max: number): string {
  if (value.length > max) throw new InvalidArgumentError(field, `longer than ${max} characters`);
  return value;
}

export function vimType(value: VimType, field = 'type'): 'openstack' | 'kubernetes' {
  switch (value) {
    case VimType.VIM_TYPE_UNSPECIFIED: // Tacker's default
    case VimType.VIM_TYPE_OPENSTACK:
      return 'openstack';
    case VimType.VIM_TYPE_KUBERNETES:
      return 'kubernetes';
    default:
      throw new InvalidArgumentError(field, `unknown VIM type ${value}`);
  }
}

export function typeToProto(t: string): VimType {
  return t === 'kubernetes' ? VimType.VIM_TYPE_KUBERNETES : VimType.VIM_TYPE_OPENSTACK;
}

export interface NewVim {
  name: string;
  description: string;
  type: 'openstack' | 'kubernetes';
  authUrl: string;
  project: string;
  credentials: PlainCredentials;
  monitor: MonitorSettings;
  isDefault: boolean;
}

export function newVim(r: RegisterVimRequest): NewVim {
  return {
    name: vimName(r.name),
    description: text(r.description, 'description', 1024),
    type: vimType(r.type),
    authUrl: parseAuthUrl(r.authUrl).href,
    project: text(r.project, 'project', 255),
    credentials: validateCredentials(r.credentials),
    monitor: resolveMonitorPolicy(r.monitor),
    isDefault: r.isDefault,
  };
}

export function statusFilter(s: VimStatus): StoredStatus | undefined {
  if (s === VimStatus.VIM_STATUS_UNSPECIFIED) return undefined;
  const stored = statusFromProto(s);
  if (!stored) throw new InvalidArgumentError('status', `cannot filter by ${VimStatus[s] ?? s}`);
  return stored;
}

export const pageSizes = { default: 50, max: 1000 };

export function pageSize(n: number): number {
  if (n < 0) throw new InvalidArgumentError('page_size', 'must not be negative');
  if (n === 0) return pageSizes.default;
  return Math.min(n, pageSizes.max);
}

export interface PageCursor {
  createdAt: string;
  id: string;
  status: string;
}

export function encodePageToken(c: PageCursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export function decodePageToken(token: string, status: string | undefined): PageCursor | undefined {
  if (!token) return undefined;
  let c: PageCursor;
  try {
    c = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as PageCursor;
  } catch {
    throw new InvalidArgumentError('page_token', 'malformed');
  }
  if (typeof c?.createdAt !== 'string' || typeof c.id !== 'string' || !isUuid(c.id) || Number.isNaN(Date.parse(c.createdAt))) {
    throw new InvalidArgumentError('page_token', 'malformed');
  }
  if ((c.status ?? '') !== (status ?? '')) throw new InvalidArgumentError('page_token', 'was issued for another status filter');
  return c;
}

/** Paths UpdateVim may change; `monitor.<field>` changes one policy field. */
export const updatablePaths = new Set([
  'name',
  'description',
  'type',
  'auth_url',
  'project',
  'credentials',
  'monitor',
  'monitor.probe',
  'monitor.interval',
  'monitor.timeout',
  'monitor.count',
  'monitor.unreachable_after',
  'monitor.report_interval',
  'monitor.stale_after',
  'is_default',
]);
const outputOnly = new Set(['id', 'status', 'action_id', 'created_at', 'updated_at', 'status_changed_at', 'last_report_at', 'executor']);

export function updateMask(paths: string[] | undefined): Set<string> {
  if (!paths || paths.length === 0) throw new InvalidArgumentError('update_mask', 'required: name the fields to change');
  const out = new Set<string>();
  for (const raw of paths) {
    // Accept camelCase too (the JSON form of a FieldMask), store snake_case.
    const p = raw.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (outputOnly.has(p)) throw new InvalidArgumentError('update_mask', `${raw} is output only`);
    if (!updatablePaths.has(p)) throw new InvalidArgumentError('update_mask', `unknown path ${JSON.stringify(raw)}`);
    out.add(p);
  }
  if (out.has('monitor') && [...out].some((p) => p.startsWith('monitor.'))) {
    throw new InvalidArgumentError('update_mask', 'name either monitor or monitor.<field>, not both');
  }
  return out;
}
