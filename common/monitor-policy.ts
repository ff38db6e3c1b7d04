// The monitor policy: defaults, bounds and conversions, shared by the Tacker
// server (which stores it) and the executor (which runs it), so both agree.
import type { MonitorPolicy } from '../gen/vimmon/tacker/v1/vim_service.js';
import { ProbeKind } from '../gen/vimmon/tacker/v1/vim_service.js';
import type { Duration } from '../gen/google/protobuf/duration.js';
import { msToDuration } from './duration.js';
import { InvalidArgumentError } from './errors.js';

export type ProbeName = 'tcp' | 'http' | 'icmp' | 'auth';

export interface MonitorSettings {
  probe: ProbeName;
  intervalMs: number;
  timeoutMs: number;
  count: number;
  unreachableAfter: number;
  reportIntervalMs: number;
  staleAfterMs: number;
}

export const monitorDefaults = {
  probe: 'tcp' as ProbeName,
  intervalMs: 10_000,
  timeoutMs: 1_000,
  count: 1,
  unreachableAfter: 1,
  reportIntervalMs: 30_000,
  /** stale_after = this × report_interval */
  staleAfterReports: 3,
};

const bounds = {
  intervalMs: [100, 3_600_000],
  timeoutMs: [10, 60_000],
  count: [1, 10],
  unreachableAfter: [1, 100],
  reportIntervalMs: [100, 3_600_000],
  staleAfterMs: [200, 86_400_000],
} as const;

export function probeName(kind: ProbeKind, field = 'monitor.probe'): ProbeName {
  switch (kind) {
    case ProbeKind.PROBE_KIND_UNSPECIFIED:
    case ProbeKind.PROBE_KIND_TCP:
      return 'tcp';
    case ProbeKind.PROBE_KIND_HTTP:
      return 'http';
    case ProbeKind.PROBE_KIND_ICMP:
      return 'icmp';
    case ProbeKind.PROBE_KIND_AUTH:
      return 'auth';
    default:
      throw new InvalidArgumentError(field, `unknown probe kind ${kind}`);
  }
}

const probeKinds: Readonly<Record<string, ProbeKind>> = {
  http: ProbeKind.PROBE_KIND_HTTP,
  icmp: ProbeKind.PROBE_KIND_ICMP,
  auth: ProbeKind.PROBE_KIND_AUTH,
};

export function probeKind(name: string): ProbeKind {
  return probeKinds[name] ?? ProbeKind.PROBE_KIND_TCP;
}

function durationField(d: Duration | undefined, field: string): number | undefined {
  if (d === undefined) return undefined;
  if (d.seconds < 0 || d.nanos < 0 || d.nanos > 999_999_999) throw new InvalidArgumentError(field, 'must be a positive duration');
  const ms = d.seconds * 1000 + d.nanos / 1e6;
  if (ms === 0) return undefined; // an explicit zero means "use the default", like an unset field
  if (!Number.isInteger(ms)) throw new InvalidArgumentError(field, 'must be a whole number of milliseconds');
  return ms;
}

function inRange(value: number, [min, max]: readonly [number, number], field: string, unit: string): number {
  if (value < min || value > max)
    throw new InvalidArgumentError(field, `must be between ${min}${unit} and ${max}${unit}, got ${value}${unit}`);
  return value;
}

/**
 * Validates a policy and fills in defaults. `base` supplies the values of unset
 * fields (the stored policy on update); otherwise the documented defaults.
 */
export function resolveMonitorPolicy(policy: MonitorPolicy | undefined, prefix = 'monitor', base?: MonitorSettings): MonitorSettings {
  const p = policy;
  const f = (name: string) => `${prefix}.${name}`;
  const probe = p?.probe ? probeName(p.probe, f('probe')) : (base?.probe ?? monitorDefaults.probe);
  const intervalMs = inRange(
    durationField(p?.interval, f('interval')) ?? base?.intervalMs ?? monitorDefaults.intervalMs,
    bounds.intervalMs,
    f('interval'),
    'ms',
  );
  const timeoutMs = inRange(
    durationField(p?.timeout, f('timeout')) ?? base?.timeoutMs ?? monitorDefaults.timeoutMs,
    bounds.timeoutMs,
    f('timeout'),
    'ms',
  );
  const count = inRange(p?.count || base?.count || monitorDefaults.count, bounds.count, f('count'), '');
  const unreachableAfter = inRange(
    p?.unreachableAfter || base?.unreachableAfter || monitorDefaults.unreachableAfter,
    bounds.unreachableAfter,
    f('unreachable_after'),
    '',
  );
  if (count * timeoutMs > intervalMs) {
    throw new InvalidArgumentError(f('timeout'), `count × timeout (${count} × ${timeoutMs}ms) must fit in interval (${intervalMs}ms)`);
  }
  const explicitReport = durationField(p?.reportInterval, f('report_interval'));
  const reportIntervalMs = inRange(
    explicitReport ?? base?.reportIntervalMs ?? Math.max(monitorDefaults.reportIntervalMs, intervalMs),
    bounds.reportIntervalMs,
    f('report_interval'),
    'ms',
  );
  if (reportIntervalMs < intervalMs) throw new InvalidArgumentError(f('report_interval'), `must be at least interval (${intervalMs}ms)`);
  const explicitStale = durationField(p?.staleAfter, f('stale_after'));
  // A stale limit derived from the old report interval follows a new report interval.
  const derivedStale = explicitReport !== undefined ? undefined : base?.staleAfterMs;
  const staleAfterMs = inRange(
    explicitStale ?? derivedStale ?? reportIntervalMs * monitorDefaults.staleAfterReports,
    bounds.staleAfterMs,
    f('stale_after'),
    'ms',
  );
  if (staleAfterMs <= reportIntervalMs)
    throw new InvalidArgumentError(f('stale_after'), `must be more than report_interval (${reportIntervalMs}ms)`);
  return { probe, intervalMs, timeoutMs, count, unreachableAfter, reportIntervalMs, staleAfterMs };
}

export function toMonitorPolicy(s: MonitorSettings): MonitorPolicy {
  return {
    probe: probeKind(s.probe),
    interval: msToDuration(s.intervalMs),
    timeout: msToDuration(s.timeoutMs),
    count: s.count,
    unreachableAfter: s.unreachableAfter,
    reportInterval: msToDuration(s.reportIntervalMs),
    staleAfter: msToDuration(s.staleAfterMs),
  };
}
