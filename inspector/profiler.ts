// Doctor's profiler points for each fault (one host state change): event
// detected (T00), received (T01), affected VMs found (T02), alarms sent (T03),
// host forced down (T04), last VM reset (T05), and the last Neutron port set.
// Kept in memory for the most recent faults (ListFaultProfiles) and logged
// once the Nova work is over.
import type { Logger } from '../common/logger.js';

export interface FaultProfileData {
  faultId: string;
  host: string;
  status: 'down' | 'up';
  monitor: string;
  monitorEventId: string;
  eventTime: Date | undefined;
  receivedAt: Date;
  /** "down": what each VM was reset to ('error'), or 'off' (none reset: the host forced down only); "up": ''. */
  resetState: string;
  /**
   * Receipt in microseconds since the epoch, with sub-millisecond resolution:
   * performance.timeOrigin + performance.now(), which another process on the
   * same machine reads alike (a consumer timing its alarm from receipt).
   */
  receivedAtEpochUs: number;
  vmsFoundAt: Date | undefined;
  vmCount: number;
  alarmsSentAt: Date | undefined;
  alarmCount: number;
  alarmsStoredAt: Date | undefined;
  hostForcedDownAt: Date | undefined;
  /** "up" faults: the host's compute service un-forced. */
  hostUnforcedAt: Date | undefined;
  lastVmResetAt: Date | undefined;
  vmsReset: number;
  vmsGone: number;
  vmsFailed: number;
  retries: number;
  errors: string[];
  completedAt: Date | undefined;
  /** Neutron: ports bound to the host, those set (DOWN for "down", ACTIVE for "up"), those failed for good; the last set. */
  portCount: number;
  portsUpdated: number;
  portsFailed: number;
  portsUpdatedAt: Date | undefined;
  /** The host was in maintenance: the alarms were marked expected, nothing was called. */
  expected: boolean;
  /** performance.now() at each point, for sub-millisecond durations. */
  hr: Partial<Record<ProfilePoint, number>>;
}

export type ProfilePoint =
  | 'received'
  | 'vmsFound'
  | 'alarmsSent'
  | 'alarmsStored'
  | 'hostForced'
  | 'hostUnforced'
  | 'lastVmReset'
  | 'portsUpdated'
  | 'completed';

/** Milliseconds (fractional) from receipt to a point, if reached. */
export function sinceReceived(d: FaultProfileData, point: ProfilePoint): number | undefined {
  const t = d.hr[point];
  const r = d.hr.received;
  return t === undefined || r === undefined ? undefined : t - r;
}

export interface FaultProfile {
  readonly data: Readonly<FaultProfileData>;
  vmsFound(count: number): void;
  alarmsSent(count: number): void;
  alarmsStored(): void;
  hostForced(): void;
  hostUnforced(): void;
  vmReset(): void;
  vmGone(): void;
  vmFailed(error: string): void;
  hostFailed(error: string): void;
  portsFound(count: number): void;
  portUpdated(): void;
  portFailed(error: string): void;
  /** The host is in maintenance: nothing is called (complete() says why). */
  expected(): void;
  retried(): void;
  /** Nova work over; logs the profile. */
  complete(note?: string): void;
}

export interface Profiler {
  start(
    meta: Pick<FaultProfileData, 'faultId' | 'host' | 'status' | 'monitor' | 'monitorEventId' | 'eventTime' | 'receivedAt'> &
      Partial<Pick<FaultProfileData, 'resetState'>>,
  ): FaultProfile;
  get(faultId: string): FaultProfileData | undefined;
  /** Newest first. */
  list(options?: { host?: string; limit?: number }): FaultProfileData[];
  readonly capacity: number;
}

/**
 * Errors kept per fault: at most maxErrors, each cut to maxErrorLength
 * characters, maxErrorChars in all (the note of complete() is kept beyond),
 * so that a full ListFaultProfiles page (1,000) stays under 3 MiB. The count
 * of failures is kept whole (vmsFailed).
 */
const maxErrors = 20;
const maxErrorLength = 300;
const maxErrorChars = 1_500;

export function createProfiler(options: { logger: Logger; capacity?: number }): Profiler {
  const capacity = options.capacity ?? 1_000;
  const profiles = new Map<string, FaultProfileData>(); // insertion order = age

  return {
    capacity,
    start(meta) {
      const received = performance.now();
      const d: FaultProfileData = {
        ...meta,
        resetState: meta.resetState ?? '',
        receivedAtEpochUs: Math.round((performance.timeOrigin + received) * 1000),
        vmsFoundAt: undefined,
        vmCount: 0,
        alarmsSentAt: undefined,
        alarmCount: 0,
        alarmsStoredAt: undefined,
        hostForcedDownAt: undefined,
        hostUnforcedAt: undefined,
        lastVmResetAt: undefined,
        vmsReset: 0,
        vmsGone: 0,
        vmsFailed: 0,
        retries: 0,
        errors: [],
        completedAt: undefined,
        portCount: 0,
        portsUpdated: 0,
        portsFailed: 0,
        portsUpdatedAt: undefined,
        expected: false,
        hr: { received },
      };
      profiles.set(d.faultId, d);
      if (profiles.size > capacity) profiles.delete(profiles.keys().next().value!);
      let errorChars = 0;
      const cut = (e: string, max: number) => (e.length > max ? `${e.slice(0, max - 1).toWellFormed()}…` : e);
      const addError = (e: string) => {
        const room = Math.min(maxErrorLength, maxErrorChars - errorChars);
        if (d.errors.length >= maxErrors || room <= 0) return;
        const kept = cut(e, room);
        errorChars += kept.length;
        d.errors.push(kept);
      };
      return {
        data: d,
        vmsFound(count) {
          d.vmsFoundAt = new Date();
          d.hr.vmsFound = performance.now();
          d.vmCount = count;
        },
        alarmsSent(count) {
          d.alarmsSentAt = new Date();
          d.hr.alarmsSent = performance.now();
          d.alarmCount = count;
        },
        alarmsStored() {
          d.alarmsStoredAt = new Date();
          d.hr.alarmsStored = performance.now();
        },
        hostUnforced() {
          d.hostUnforcedAt = new Date();
          d.hr.hostUnforced = performance.now();
          // As the contract has always said for "up": T04 is when the host was un-forced.
          d.hostForcedDownAt = d.hostUnforcedAt;
          d.hr.hostForced = d.hr.hostUnforced;
        },
        hostForced() {
          d.hostForcedDownAt = new Date();
          d.hr.hostForced = performance.now();
        },
        vmReset() {
          d.vmsReset++;
          d.lastVmResetAt = new Date();
          d.hr.lastVmReset = performance.now();
        },
        vmGone() {
          d.vmsGone++;
        },
        vmFailed(error) {
          d.vmsFailed++;
          addError(error);
        },
        hostFailed(error) {
          addError(error);
        },
        portsFound(count) {
          d.portCount = count;
        },
        portUpdated() {
          d.portsUpdated++;
          d.portsUpdatedAt = new Date();
          d.hr.portsUpdated = performance.now();
        },
        portFailed(error) {
          d.portsFailed++;
          addError(error);
        },
        expected() {
          d.expected = true;
        },
        retried() {
          d.retries++;
        },
        complete(note) {
          d.completedAt = new Date();
          d.hr.completed = performance.now();
          if (note) d.errors.push(cut(note, maxErrorLength));
          const since = (point: ProfilePoint) => {
            const ms = sinceReceived(d, point);
            return ms === undefined ? undefined : Math.round(ms * 1000) / 1000;
          };
          options.logger.info('fault handled', {
            faultId: d.faultId,
            host: d.host,
            status: d.status,
            vms: d.vmCount,
            alarms: d.alarmCount,
            detectedToReceivedMs: d.eventTime ? d.receivedAt.getTime() - d.eventTime.getTime() : undefined,
            vmsFoundMs: since('vmsFound'),
            alarmsSentMs: since('alarmsSent'),
            alarmsStoredMs: since('alarmsStored'),
            hostForcedMs: since('hostForced'),
            lastVmResetMs: since('lastVmReset'),
            portsUpdatedMs: since('portsUpdated'),
            completedMs: since('completed'),
            vmsReset: d.vmsReset,
            vmsGone: d.vmsGone,
            vmsFailed: d.vmsFailed,
            retries: d.retries,
            ports: d.portCount || undefined,
            portsUpdated: d.portsUpdated || undefined,
            portsFailed: d.portsFailed || undefined,
            expected: d.expected || undefined,
            errors: d.errors.length > 0 ? d.errors : undefined,
          });
        },
      };
    },
    get(faultId) {
      return profiles.get(faultId);
    },
    list({ host, limit } = {}) {
      const out: FaultProfileData[] = [];
      const all = [...profiles.values()];
      for (let i = all.length - 1; i >= 0 && out.length < (limit ?? capacity); i--) {
        if (!host || all[i]!.host === host) out.push(all[i]!);
      }
      return out;
    },
  };
}
