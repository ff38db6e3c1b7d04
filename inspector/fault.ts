// Host faults. A "down" event: find the host's VMs in the cache (never ask
// Nova), raise the alarms, then force the host's nova-compute service down and
// reset every VM to error, in parallel under one bound shared by all faults,
// retrying failed calls with jittered backoff. An "up" event: raise the
// recovered alarms and un-force the host. A host already in the state an event
// reports gets nothing: no alarm, no Nova call. The host's state is stored with
// its alarms, so a restart neither forgets it nor loses Nova work cut short by
// a shutdown: that work is driven again at start (every call is idempotent).
import { randomUUID } from 'node:crypto';
import { backoffDelayMs, delay, linkedAbortController } from '../common/delay.js';
import { InvalidArgumentError, UnavailableError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { FaultInstance } from '../db/alarm.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { HostRecord } from './alarm-store.js';
import type { AlarmDraft, AlarmHub } from './alarm-stream.js';
import type { FaultProfile, Profiler } from './profiler.js';

export const hostDownEventType = 'compute.host.down';

/** A VM as the cache knows it (the shape of vm-cache.ts's VmRecord). */
export interface HostVm {
  id: string;
  name: string;
  projectId: string;
}

/** Where the VMs of a host are found: the cache, answered from memory. */
export interface HostVmLookup {
  vmsOnHost(host: string): HostVm[];
}

/** The Nova calls a fault makes (the shape of nova.ts's NovaClient). */
export interface NovaActions {
  setHostForcedDown(host: string, down: boolean, signal?: AbortSignal): Promise<void>;
  resetState(serverId: string, state: 'error' | 'active', signal?: AbortSignal): Promise<void>;
}

/** A monitor event as both edges (gRPC, Doctor HTTP) hand it over. */
export interface RawFaultEvent {
  time: Date | undefined;
  type: string;
  hostname: string;
  status: string;
  monitor: string;
  monitorEventId: string;
  source: string;
  cause: string;
  severity: string;
}

export type FaultEventInput =
  | {
      kind: 'host';
      host: string;
      status: 'down' | 'up';
      time: Date | undefined;
      monitor: string;
      monitorEventId: string;
      cause: string;
      severity: string;
    }
  | { kind: 'ignored'; type: string };

/** Validates one event; `field` names a field for the caller (e.g. "events[2].hostname"). */
export function parseFaultEvent(e: RawFaultEvent, field: (name: 'type' | 'hostname' | 'status') => string): FaultEventInput {
  const type = e.type.trim();
  if (!type) throw new InvalidArgumentError(field('type'), `required (e.g. "${hostDownEventType}")`);
  if (type !== hostDownEventType) return { kind: 'ignored', type };
  const host = e.hostname.trim();
  if (!host) throw new InvalidArgumentError(field('hostname'), 'required');
  if (host.length > 255) throw new InvalidArgumentError(field('hostname'), 'at most 255 characters');
  const status = e.status.trim().toLowerCase();
  if (status !== 'down' && status !== 'up') throw new InvalidArgumentError(field('status'), `expected "down" or "up", got ${JSON.stringify(e.status)}`);
  return { kind: 'host', host, status, time: e.time, monitor: e.monitor, monitorEventId: e.monitorEventId, cause: e.cause, severity: e.severity.trim() };
}

export interface NovaRetryOptions {
  /** Attempts per call, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface FaultHandlerOptions {
  logger: Logger;
  hub: AlarmHub;
  profiler: Profiler;
  vms: HostVmLookup;
  /** undefined: OpenStack is not configured; alarms are still raised. */
  nova: NovaActions | undefined;
  /** What is missing to reach Nova, for the log and the profiles. */
  novaMissing?: string[];
  /** Nova calls in flight at once, over all faults. */
  novaConcurrency: number;
  novaRetry?: NovaRetryOptions;
  /** Host states as stored (alarm-store loadHosts()). */
  hosts: HostRecord[];
  /**
   * 'before-nova' (default): Doctor's shortcut, the alarms go out first.
   * 'after-nova': the conservative order, alarms only once every Nova call is
   * over; kept to measure the difference (bench/doctor-study.ts).
   */
  alarmTiming?: 'before-nova' | 'after-nova';
}

export interface ReportResult {
  accepted: number;
  ignored: number;
  duplicates: number;
  faultIds: string[];
}

export interface FaultStats {
  eventsReceived: number;
  eventsIgnored: number;
  eventsDuplicate: number;
  novaInFlight: number;
  novaQueued: number;
  faultsInProgress: number;
}

export interface FaultHandler {
  /** Takes a batch in order. Resolves once the alarms of every accepted event are sent (Nova work goes on). */
  report(events: FaultEventInput[]): Promise<ReportResult>;
  /** Drives Nova work that a previous run left unfinished. */
  resume(): void;
  hostsDown(): HostRecord[];
  stats(): FaultStats;
  /** Refuses new events, waits up to graceMs for Nova work, then cuts it short (it is driven again at next start). */
  stop(graceMs: number): Promise<void>;
}

interface HostWork {
  faultId: string;
  /** Aborted by a later state change of the host: forcing down a host that is back is pointless. */
  force: AbortController;
}

type CallResult = { ok: true } | { ok: false; gone: boolean; aborted: boolean; error: string };

export function createFaultHandler(options: FaultHandlerOptions): FaultHandler {
  const { logger, hub, profiler, vms, nova } = options;
  const retry = options.novaRetry ?? { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 };
  const timing = options.alarmTiming ?? 'before-nova';
  const limiter = createLimiter(Math.max(1, options.novaConcurrency));
  const shutdown = new AbortController();
  const hosts = new Map(options.hosts.map((h) => [h.host, h]));
  const work = new Map<string, HostWork>();
  // Calls on a host's compute service run one after the other: an "up" must not
  // be overtaken by the "down" before it.
  const hostChain = new Map<string, Promise<void>>();
  const inflight = new Set<Promise<void>>();
  const counters = { eventsReceived: 0, eventsIgnored: 0, eventsDuplicate: 0 };
  let stopping = false;
  const novaMissingNote = `Nova not called: OpenStack is not configured${options.novaMissing?.length ? ` (missing ${options.novaMissing.join(', ')})` : ''}`;

  function track(p: Promise<void>) {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }

  function chainHost(host: string, fn: () => Promise<void>): Promise<void> {
    const next = (hostChain.get(host) ?? Promise.resolve()).then(fn);
    hostChain.set(host, next);
    void next.finally(() => {
      if (hostChain.get(host) === next) hostChain.delete(host);
    });
    return next;
  }

  async function call(fn: (signal: AbortSignal) => Promise<void>, signal: AbortSignal, profile: FaultProfile, priority: boolean): Promise<CallResult> {
    for (let attempt = 0; ; attempt++) {
      try {
        await limiter.run(fn, signal, priority);
        return { ok: true };
      } catch (err) {
        if (signal.aborted) return { ok: false, gone: false, aborted: true, error: 'cut short' };
        const e = err as { status?: unknown; retryable?: unknown; message?: string };
        const message = e?.message ?? String(err);
        if (e?.status === 404) return { ok: false, gone: true, aborted: false, error: message };
        // A NovaError says whether a retry can help; anything else (network, timeout) may.
        const retryable = typeof e?.retryable === 'boolean' ? e.retryable : true;
        if (!retryable || attempt + 1 >= retry.maxAttempts) {
          return { ok: false, gone: false, aborted: false, error: `${message}${retryable ? ` (after ${attempt + 1} attempts)` : ''}` };
        }
        profile.retried();
        if (!(await delay(backoffDelayMs(attempt, retry), signal))) return { ok: false, gone: false, aborted: true, error: 'cut short' };
      }
    }
  }

  function markDone(rec: HostRecord) {
    if (shutdown.signal.aborted) return; // cut short: driven again at next start
    const at = new Date();
    if (hosts.get(rec.host)?.faultId === rec.faultId) rec.novaDoneAt = at;
    hub.record([], [{ host: rec.host, faultId: rec.faultId, at }]);
  }

  async function driveDown(rec: HostRecord, profile: FaultProfile): Promise<void> {
    if (!nova) {
      profile.complete(novaMissingNote);
      return;
    }
    const force = linkedAbortController(shutdown.signal);
    work.set(rec.host, { faultId: rec.faultId, force });
    const forced = chainHost(rec.host, async () => {
      const r = await call((s) => nova.setHostForcedDown(rec.host, true, s), force.signal, profile, true);
      if (r.ok) profile.hostForced();
      else if (!r.aborted) profile.hostFailed(`force-down ${rec.host}: ${r.error}`);
    });
    const resets = rec.instances.map(async (vm) => {
      const r = await call((s) => nova.resetState(vm.id, 'error', s), shutdown.signal, profile, false);
      if (r.ok) profile.vmReset();
      else if (r.gone) profile.vmGone();
      else if (!r.aborted) profile.vmFailed(`reset-state ${vm.id}: ${r.error}`);
    });
    await Promise.all([forced, ...resets]);
    if (work.get(rec.host)?.faultId === rec.faultId) work.delete(rec.host);
    profile.complete(shutdown.signal.aborted ? 'cut short by shutdown; driven again at next start' : undefined);
    markDone(rec);
  }

  async function driveUp(rec: HostRecord, profile: FaultProfile): Promise<void> {
    if (!nova) {
      profile.complete(novaMissingNote);
      return;
    }
    await chainHost(rec.host, async () => {
      const r = await call((s) => nova.setHostForcedDown(rec.host, false, s), shutdown.signal, profile, true);
      if (r.ok) profile.hostForced();
      else if (!r.aborted) profile.hostFailed(`un-force ${rec.host}: ${r.error}`);
    });
    profile.complete(shutdown.signal.aborted ? 'cut short by shutdown; driven again at next start' : undefined);
    markDone(rec);
  }

  function drafts(rec: HostRecord, event: { time: Date | undefined; cause: string }, detectedAt: Date): AlarmDraft[] {
    const down = rec.state === 'down';
    const severity = down ? rec.severity || 'critical' : 'low';
    const base = {
      host: rec.host,
      vimId: '',
      vimName: '',
      severity,
      cause: event.cause,
      monitor: rec.monitor,
      monitorEventId: rec.monitorEventId,
      faultId: rec.faultId,
      eventTime: event.time,
      detectedAt,
    };
    const hostAlarm: AlarmDraft = {
      ...base,
      type: down ? AlarmType.ALARM_TYPE_HOST_DOWN : AlarmType.ALARM_TYPE_HOST_RECOVERED,
      instanceId: '',
      instanceName: '',
      projectId: '',
      state: down ? 'down' : 'up',
    };
    const type = down ? AlarmType.ALARM_TYPE_INSTANCE_DOWN : AlarmType.ALARM_TYPE_INSTANCE_RECOVERED;
    const state = down ? 'error' : '';
    const out = new Array<AlarmDraft>(rec.instances.length + 1);
    out[0] = hostAlarm;
    for (let i = 0; i < rec.instances.length; i++) {
      const vm = rec.instances[i]!;
      out[i + 1] = { ...base, type, instanceId: vm.id, instanceName: vm.name, projectId: vm.projectId, state };
    }
    return out;
  }

  /** Starts one host state change; returns once its alarms are sent (shortcut) or at once (conservative). */
  function change(event: Extract<FaultEventInput, { kind: 'host' }>, receivedAt: Date, previous: HostRecord | undefined): { faultId: string; sent: Promise<void> } {
    const faultId = randomUUID();
    const profile = profiler.start({
      faultId,
      host: event.host,
      status: event.status,
      monitor: event.monitor,
      monitorEventId: event.monitorEventId,
      eventTime: event.time,
      receivedAt,
    });
    let instances: FaultInstance[];
    if (event.status === 'down') {
      instances = vms.vmsOnHost(event.host).map((vm) => ({ id: vm.id, name: vm.name, projectId: vm.projectId }));
      profile.vmsFound(instances.length);
    } else {
      // The VMs alarmed when the host went down get their recovered alarm.
      instances = previous?.instances ?? [];
      profile.vmsFound(instances.length);
      work.get(event.host)?.force.abort();
    }
    const rec: HostRecord = {
      host: event.host,
      state: event.status,
      faultId,
      changedAt: receivedAt,
      monitor: event.monitor,
      monitorEventId: event.monitorEventId,
      severity: event.severity,
      instances,
      novaDoneAt: undefined,
    };
    hosts.set(event.host, rec); // before any await: the next event for this host sees it
    const alarms = drafts(rec, event, receivedAt);
    const drive = () => (rec.state === 'down' ? driveDown(rec, profile) : driveUp(rec, profile));
    const raise = () =>
      hub.raise(alarms, [rec]).then(
        (raised) => {
          profile.alarmsSent(raised.length);
          if (raised.length > 0) void hub.whenStored(raised[raised.length - 1]!.alarmId).then(() => profile.alarmsStored());
        },
        (err: unknown) => {
          if (hosts.get(rec.host) === rec) {
            if (previous) hosts.set(rec.host, previous);
            else hosts.delete(rec.host);
          }
          throw err;
        },
      );
    if (timing === 'after-nova') {
      const p = drive().then(raise);
      track(p.catch((err: unknown) => logger.error('alarms not raised', { host: rec.host, faultId, err })));
      return { faultId, sent: Promise.resolve() };
    }
    const sent = raise();
    // Nova work starts on the next turn of the event loop, once the alarms are on
    // their way to the subscribers' sockets: a thousand requests to prepare must
    // not stand between the event and the first alarm.
    track(sent.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(drive, () => {}));
    return { faultId, sent };
  }

  return {
    async report(events) {
      if (stopping) throw new UnavailableError('inspector is shutting down');
      const receivedAt = new Date();
      const result: ReportResult = { accepted: 0, ignored: 0, duplicates: 0, faultIds: [] };
      const sends: Promise<void>[] = [];
      for (const event of events) {
        counters.eventsReceived++;
        if (event.kind === 'ignored') {
          counters.eventsIgnored++;
          result.ignored++;
          logger.debug('event ignored', { type: event.type });
          continue;
        }
        result.accepted++;
        const previous = hosts.get(event.host);
        const current = previous?.state ?? 'up';
        if (current === event.status) {
          counters.eventsDuplicate++;
          result.duplicates++;
          logger.debug('host already in that state', { host: event.host, status: event.status, monitorEventId: event.monitorEventId });
          continue;
        }
        const { faultId, sent } = change(event, receivedAt, previous);
        result.faultIds.push(faultId);
        sends.push(sent);
      }
      await Promise.all(sends);
      return result;
    },

    resume() {
      if (!nova) {
        const pending = [...hosts.values()].filter((h) => !h.novaDoneAt).length;
        if (pending > 0) logger.warn('Nova work left unfinished, not driven: OpenStack is not configured', { hosts: pending });
        return;
      }
      for (const rec of hosts.values()) {
        if (rec.novaDoneAt) continue;
        const profile = profiler.start({
          faultId: rec.faultId,
          host: rec.host,
          status: rec.state,
          monitor: rec.monitor,
          monitorEventId: rec.monitorEventId,
          eventTime: undefined,
          receivedAt: new Date(),
        });
        profile.vmsFound(rec.instances.length);
        logger.info('driving Nova work left unfinished', { host: rec.host, state: rec.state, faultId: rec.faultId, vms: rec.instances.length });
        track(rec.state === 'down' ? driveDown(rec, profile) : driveUp(rec, profile));
      }
    },

    hostsDown() {
      return [...hosts.values()].filter((h) => h.state === 'down');
    },

    stats() {
      return { ...counters, novaInFlight: limiter.active(), novaQueued: limiter.queued(), faultsInProgress: inflight.size };
    },

    async stop(graceMs) {
      stopping = true;
      if (inflight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
        const r = await Promise.race([Promise.allSettled([...inflight]).then(() => 'done' as const), timeout]);
        clearTimeout(timer);
        if (r === 'timeout') logger.warn('Nova work still running at shutdown; cutting it short', { faults: inflight.size, queuedCalls: limiter.queued() });
      }
      shutdown.abort();
      await Promise.allSettled([...inflight]);
    },
  };
}

/** A FIFO bound on concurrent calls; priority calls (host force-down) go to the front. */
function createLimiter(concurrency: number) {
  let active = 0;
  const queue: Array<() => void> = [];
  const next = () => {
    while (active < concurrency && queue.length > 0) queue.shift()!();
  };
  return {
    active: () => active,
    queued: () => queue.length,
    run(fn: (signal: AbortSignal) => Promise<void>, signal: AbortSignal, priority: boolean): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) {
          reject(signal.reason);
          return;
        }
        const start = () => {
          signal.removeEventListener('abort', onAbort);
          active++;
          fn(signal)
            .then(resolve, reject)
            .finally(() => {
              active--;
              next();
            });
        };
        const onAbort = () => {
          const i = queue.indexOf(start);
          if (i >= 0) queue.splice(i, 1);
          reject(signal.reason);
        };
        if (active < concurrency) {
          start();
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
        if (priority) queue.unshift(start);
        else queue.push(start);
      });
    },
  };
}
