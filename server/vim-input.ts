// Validation at the edge: a request becomes domain values or throws an
// InvalidArgumentError naming the field.
import { parseAuthUrl, type AuthUrlOptions } from '../common/auth-url.js';
import { InvalidArgumentError } from '../common/errors.js';
import { isUuid, uuidField } from '../common/uuid.js';
import { resolveMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import { statusFromProto } from '../common/vim-status.js';
import type { StoredStatus } from '../db/entities.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimType, type RegisterVimRequest, type UpdateVimRequest } from '../gen/vimmon/tacker/v1/vim_service.js';
import { checkCredentialsFitType, credentialsUpdate, kindNames, validateCredentials, type PlainCredentials } from './credentials.js';

export function vimId(value: string, field = 'id'): string {
  return uuidField(field, value);
}

export function vimName(value: string, field = 'name'): string {
  if (!value?.trim()) throw new InvalidArgumentError(field, 'required');
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

/** `authUrl` carries the address ranges a VIM's auth_url may not name (VIMMON_PROBE_DENY). */
/** PROBE_KIND_AUTH authenticates with the VIM's credentials: a VIM without any cannot have it. */
export function checkProbeCredentials(monitor: MonitorSettings, credentials: PlainCredentials, field: string): void {
  if (monitor.probe === 'auth' && credentials.kind === 'none')
    throw new InvalidArgumentError(field, "PROBE_KIND_AUTH authenticates with the VIM's credentials; the VIM has none");
}

export function newVim(r: RegisterVimRequest, authUrl: AuthUrlOptions = {}): NewVim {
  const type = vimType(r.type);
  const credentials = validateCredentials(r.credentials, 'credentials', authUrl);
  checkCredentialsFitType(credentials, type, 'credentials.oidc');
  const monitor = resolveMonitorPolicy(r.monitor);
  checkProbeCredentials(monitor, credentials, 'monitor.probe');
  return {
    name: vimName(r.name),
    description: text(r.description, 'description', 1024),
    type,
    authUrl: parseAuthUrl(r.authUrl, 'auth_url', authUrl).href,
    project: text(r.project, 'project', 255),
    credentials,
    monitor,
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
  if (typeof c?.createdAt !== 'string' || typeof c.id !== 'string' || !isUuid(c.id) || !isCursorTime(c.createdAt)) {
    throw new InvalidArgumentError('page_token', 'malformed');
  }
  if ((c.status ?? '') !== (status ?? '')) throw new InvalidArgumentError('page_token', 'was issued for another status filter');
  return c;
}

/** As encodePageToken writes it (toISOString), a real date in years 0001-9999: nothing else reaches PostgreSQL. */
function isCursorTime(s: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(s) || s.startsWith('0000')) return false;
  const d = new Date(s);
  return !Number.isNaN(d.getTime()) && d.toISOString() === s;
}

/** Paths UpdateVim may change; `monitor.<field>` changes one policy field. */
export const updatablePaths = new Set([
  'name',
  'description',
  'type',
  'auth_url',
  'project',
  'credentials',
  ...kindNames.map((k) => `credentials.${k}`),
  'credentials.ssl_ca_cert',
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
  if (out.has('credentials') && [...out].some((p) => p.startsWith('credentials.'))) {
    throw new InvalidArgumentError('update_mask', 'name either credentials or credentials.<field>, not both');
  }
  return out;
}

/** An UpdateVim request, checked: the fields its mask names, each valid; the others undefined. */
export interface VimUpdate {
  id: string;
  /** The mask's paths, snake_case. */
  paths: Set<string>;
  name?: string;
  description?: string;
  type?: 'openstack' | 'kubernetes';
  authUrl?: string;
  project?: string;
  /** The credentials after the update, from the stored ones; undefined when no path names them. */
  credentials?: (current: PlainCredentials) => PlainCredentials;
  isDefault?: boolean;
  /**
   * The monitor settings after the update, from the VIM's current ones:
   * `monitor` replaces them, `monitor.<field>` changes that field, no monitor
   * path leaves them. Throws InvalidArgumentError naming the field.
   */
  monitor(current: MonitorSettings): MonitorSettings;
}

/** Everything but the monitor is checked here, before the row is touched: nothing half-written. */
export function vimUpdate(request: UpdateVimRequest, authUrl: AuthUrlOptions = {}): VimUpdate {
  const v = request.vim;
  if (!v) throw new InvalidArgumentError('vim', 'required');
  const id = vimId(v.id, 'vim.id');
  const paths = updateMask(request.updateMask);
  return {
    id,
    paths,
    name: paths.has('name') ? vimName(v.name, 'vim.name') : undefined,
    description: paths.has('description') ? text(v.description, 'vim.description', 1024) : undefined,
    type: paths.has('type') ? vimType(v.type, 'vim.type') : undefined,
    authUrl: paths.has('auth_url') ? parseAuthUrl(v.authUrl, 'vim.auth_url', authUrl).href : undefined,
    project: paths.has('project') ? text(v.project, 'vim.project', 255) : undefined,
    credentials: credentialsUpdate(v.credentials, paths, 'vim.credentials', authUrl),
    isDefault: paths.has('is_default') ? v.isDefault : undefined,
    monitor(current) {
      if (paths.has('monitor')) return resolveMonitorPolicy(v.monitor, 'vim.monitor');
      if (![...paths].some((p) => p.startsWith('monitor.'))) return current;
      // Unnamed fields read as unset, so that they keep their current value.
      const m = v.monitor;
      const partial = {
        probe: paths.has('monitor.probe') ? (m?.probe ?? 0) : 0,
        interval: paths.has('monitor.interval') ? m?.interval : undefined,
        timeout: paths.has('monitor.timeout') ? m?.timeout : undefined,
        count: paths.has('monitor.count') ? (m?.count ?? 0) : 0,
        unreachableAfter: paths.has('monitor.unreachable_after') ? (m?.unreachableAfter ?? 0) : 0,
        reportInterval: paths.has('monitor.report_interval') ? m?.reportInterval : undefined,
        staleAfter: paths.has('monitor.stale_after') ? m?.staleAfter : undefined,
      };
      return resolveMonitorPolicy(partial, 'vim.monitor', current);
    },
  };
}
