// Host faults. A "down" event: find the host's VMs in the cache (never ask
// Nova), raise the alarms, then force the host's nova-compute service down and
// (unless the reset-state setting is off) reset every VM to error, in parallel
// under one bound shared by all faults,
// retrying failed calls with jittered backoff. An "up" event: raise the
// recovered alarms and un-force the host. A host already in the state an event
// reports gets nothing: no alarm, no Nova call. The host's state is stored with
// its alarms, so a restart neither forgets it nor loses Nova work cut short by
// a shutdown: that work is driven again at start (every call is idempotent).
// With Neutron on, the host's ports get data_plane_status DOWN (ACTIVE when it
// is back) under the same bound. A host in maintenance gets its alarms marked
// expected and no call at all; that work is driven when the maintenance ends.
// With several inspectors on one database, a host's work is driven by the one
// holding its lease (host-lease.ts); the others leave it, and take it over when
// the holder dies (takeover.ts).
import { randomUUID } from 'node:crypto';
import { retry } from 'abort-controller-x';
import PQueue from 'p-queue';
import { linkedAbortController } from '../common/delay.js';
import { InvalidArgumentError, ResourceExhaustedError, UnavailableError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { InspectorMetrics } from '../common/metrics.js';
import type { FaultInstance } from '../db/alarm.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { HostRecord } from './alarm-store.js';
import type { HostLeases } from './host-lease.js';
import type { AlarmDraft, AlarmHub } from './alarm-stream.js';
import { sinceReceived, type FaultProfile, type Profiler } from './profiler.js';

export const hostDownEventType = 'compute.host.down';

/** A VM as the cache knows it (the shape of vm-cache.ts's VmRecord). */
export interface HostVm {
  id: string;
  name: string;
  projectId: string;
  /** vm_state when known. */
  state?: string;
}

/**
 * What a "down" does for each VM: 'error' resets it to error (Doctor's sample
 * inspector); 'off' leaves it, the host forced down only, as the Inspector
 * design guideline allows with the shortcut notification: Nova's host_status
 * (microversion 2.16+) then reads DOWN for every VM on the host.
 */
export type ResetStateMode = 'error' | 'off';

/** INSTANCE_DOWN's state when the VM is not reset: its host is down, its own state untouched. */
export const hostDownInstanceState = 'host_down';

/** A host as the fault handler holds it, for answers from memory (ListAffectedInstances). */
export interface HostView {
  record: HostRecord;
  /** When Nova answered the force-down for this record's fault, as this process saw it. */
  forcedDownAt: Date | undefined;
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

/** The Neutron calls a fault makes (the shape of neutron.ts's NeutronClient). */
export interface NeutronActions {
  portsOnHost(host: string, signal?: AbortSignal): Promise<Array<{ id: string; dataPlaneStatus: string | null }>>;
  setDataPlaneStatus(portId: string, status: 'DOWN' | 'ACTIVE', signal?: AbortSignal): Promise<void>;
}

/** Hosts under planned maintenance (maintenance.ts), answered from memory. */
export interface MaintenanceLookup {
  maintenanceOf(host: string): { since: Date; sessionId: string } | undefined;
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

/** The fields of an event, as parseFaultEvent names them (the contract's names). */
export type FaultEventField = 'time' | 'type' | 'hostname' | 'status' | 'monitor' | 'monitor_event_id' | 'source' | 'cause' | 'severity';

/** Longest accepted text per field, in characters: what an event can make the inspector keep. */
export const faultEventLimits = {
  type: 255,
  hostname: 255,
  monitor: 255,
  monitor_event_id: 255,
  source: 255,
  cause: 1_024,
  severity: 64,
} as const;

/** Reset-state calls a fault adds to the Nova queue in one turn of the event loop. */
const resetsPerTurn = 64;

/** 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: a Timestamp's range, and PostgreSQL's comfortably. */
const firstValidTimeMs = -62_135_596_800_000;
const afterValidTimeMs = 253_402_300_800_000;

// C0 and C1 control characters, DEL. A host name, monitor or severity has none; no field has a NUL (PostgreSQL cannot store it).
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;
// One test that clears the usual text at once; a match is then looked at closely.
const suspectStrict = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/;
const suspectLoose = /[\u0000\ud800-\udfff]/;

/**
 * Validates one event; `field` names a field for the caller (e.g.
 * "events[2].hostname"). Every text is bounded (faultEventLimits), holds no
 * NUL and no lone surrogate; the time, when given, is a date in years 0001-9999.
 */
export function parseFaultEvent(e: RawFaultEvent, field: (name: FaultEventField) => string): FaultEventInput {
  const type = e.type.trim();
  if (!type) throw new InvalidArgumentError(field('type'), `required (e.g. "${hostDownEventType}")`);
  checkText(field, 'type', type, true);
  if (type !== hostDownEventType) return { kind: 'ignored', type };
  const host = e.hostname.trim();
  if (!host) throw new InvalidArgumentError(field('hostname'), 'required');
  checkText(field, 'hostname', host, true);
  const status = e.status.trim().toLowerCase();
  if (status !== 'down' && status !== 'up')
    throw new InvalidArgumentError(field('status'), `expected "down" or "up", got ${JSON.stringify(e.status.slice(0, 32))}`);
  const severity = e.severity.trim();
  checkText(field, 'monitor', e.monitor, true);
  checkText(field, 'monitor_event_id', e.monitorEventId, false);
  checkText(field, 'source', e.source, false);
  checkText(field, 'cause', e.cause, false);
  checkText(field, 'severity', severity, true);
  if (e.time !== undefined) {
    const ms = e.time.getTime(); // NaN for an invalid date: refused too
    if (!(ms >= firstValidTimeMs && ms < afterValidTimeMs))
      throw new InvalidArgumentError(field('time'), 'not a time in years 0001 to 9999');
  }
  return { kind: 'host', host, status, time: e.time, monitor: e.monitor, monitorEventId: e.monitorEventId, cause: e.cause, severity };
}

function checkText(field: (name: FaultEventField) => string, name: keyof typeof faultEventLimits, value: string, noControl: boolean) {
  const max = faultEventLimits[name];
  if (value.length > max) throw new InvalidArgumentError(field(name), `at most ${max} characters, got ${value.length}`);
  if (value.length === 0 || !(noControl ? suspectStrict : suspectLoose).test(value)) return;
  if (noControl ? controlCharacter.test(value) : value.includes('\u0000')) {
    throw new InvalidArgumentError(field(name), noControl ? 'no control characters' : 'no NUL character');
  }
  if (!value.isWellFormed()) throw new InvalidArgumentError(field(name), 'not valid Unicode (a lone surrogate)');
}

/** A host name checked as an event's (trimmed, required, bounded, no control character); `field` names it for the caller. */
export function parseHostName(raw: string, field: string): string {
  const host = raw.trim();
  if (!host) throw new InvalidArgumentError(field, 'required');
  checkText(() => field, 'hostname', host, true);
  return host;
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
  /** Nova calls in flight at once, over all faults (Neutron calls share the bound). */
  novaConcurrency: number;
  /** Doctor's update_neutron_port_dp_status: each port of a host down gets data_plane_status DOWN, ACTIVE again when it is back; undefined: off. */
  neutron?: NeutronActions;
  /** Hosts in maintenance: their events raise alarms marked expected and call nothing (held until the maintenance ends). */
  maintenance?: MaintenanceLookup;
  novaRetry?: NovaRetryOptions;
  /** Who drives a host's Nova work among inspectors on one database; unset: this inspector alone. */
  leases?: Pick<HostLeases, 'take' | 'release'>;
  /** Host states as stored (alarm-store loadHosts()). */
  hosts: HostRecord[];
  /** Hosts known down at once; a "down" for one more is RESOURCE_EXHAUSTED (default 100,000). */
  maxHostsDown?: number;
  /** Default 'error'. A restart applies the setting in force to the Nova work it drives again. */
  resetState?: ResetStateMode;
  /**
   * Hosts back up with nothing left to drive, remembered in memory (default
   * 10,000); the oldest beyond are forgotten, which changes nothing: an unknown
   * host is up. Their rows stay in inspector_host.
   */
  maxHostsUpKept?: number;
  /**
   * 'before-nova' (default): Doctor's shortcut, the alarms go out first.
   * 'after-nova': the conservative order, alarms only once every Nova call is
   * over; kept to measure the difference (bench/doctor-study.ts).
   */
  alarmTiming?: 'before-nova' | 'after-nova';
  /** Observes the time from an event's receipt to its alarms queued to the subscribers. */
  metrics?: InspectorMetrics;
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
  /** Host states held in memory (down, up with Nova work to do, the most recent up ones). */
  hostsKnown: number;
}

export interface FaultHandler {
  /** Takes a batch in order. Resolves once the alarms of every accepted event are sent (Nova work goes on). */
  report(events: FaultEventInput[]): Promise<ReportResult>;
  /** Drives Nova work that a previous run left unfinished (held back while a host is in maintenance). */
  resume(): void;
  /**
   * Drives the stored fault of a host whose Nova work another inspector left
   * unfinished (the caller holds its lease). False, changing nothing, when this
   * inspector knows a newer state of the host or is driving it already.
   */
  takeOver(rec: HostRecord): boolean;
  /** The host's maintenance is over: drives the work its events left undone, if any. */
  maintenanceEnded(host: string): void;
  /** Hosts down in host name order (UTF-16 code units), those after `after` only, at most `limit`; and how many are down. */
  hostsDown(options?: { after?: string; limit?: number }): { hosts: HostRecord[]; total: number; more: boolean };
  /** The host's state as last decided; undefined for a host the inspector knows nothing of (up). */
  host(name: string): HostView | undefined;
  /** The host whose current state the fault is; undefined once the host changed state again (or was forgotten). */
  hostOfFault(faultId: string): string | undefined;
  readonly resetState: ResetStateMode;
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
  const { logger, hub, profiler, vms, nova, neutron } = options;
  const novaRetry = options.novaRetry ?? { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 };
  const timing = options.alarmTiming ?? 'before-nova';
  // Shared by every fault; host force-downs (priority 1) go before the queued resets.
  const novaQueue = new PQueue({ concurrency: Math.max(1, options.novaConcurrency) });
  const shutdown = new AbortController();
  const maxHostsDown = options.maxHostsDown ?? 100_000;
  const maxHostsUpKept = options.maxHostsUpKept ?? 10_000;
  const resetMode: ResetStateMode = options.resetState ?? 'error';
  // What the inspector last decided per host. Bounded: hosts down by
  // maxHostsDown (checked before a report is taken), hosts up with nothing left
  // to drive by maxHostsUpKept (the oldest forgotten), the rest by the Nova work
  // in flight.
  const hosts = new Map<string, HostRecord>();
  // Bounded with hosts: the fault id of each record held, and when its force-down was answered.
  const faultHosts = new Map<string, string>();
  const forcedAt = new Map<string, { faultId: string; at: Date }>();
  let downCount = 0;
  let sortedDown: string[] | undefined; // host names down, sorted; rebuilt on read after a change
  const upIdle = new Set<string>(); // hosts up with nothing left to drive, oldest first
  const work = new Map<string, HostWork>();
  // Calls on a host's compute service run one after the other: an "up" must not
  // be overtaken by the "down" before it.
  const hostChain = new Map<string, Promise<void>>();
  // Likewise a host's Neutron ports: the ACTIVE pass of an "up" lists them after the DOWN pass ended.
  const portChain = new Map<string, Promise<void>>();
  // host → the fault whose work a maintenance holds back; bounded by the hosts in maintenance.
  const heldBack = new Map<string, string>();
  const inflight = new Set<Promise<void>>();
  const counters = { eventsReceived: 0, eventsIgnored: 0, eventsDuplicate: 0 };
  let stopping = false;
  const novaMissingNote = `Nova not called: OpenStack is not configured${options.novaMissing?.length ? ` (missing ${options.novaMissing.join(', ')})` : ''}`;

  function setHost(rec: HostRecord) {
    const wasDown = hosts.get(rec.host)?.state === 'down';
    if (wasDown !== (rec.state === 'down')) {
      downCount += wasDown ? -1 : 1;
      sortedDown = undefined;
    }
    const before = hosts.get(rec.host);
    if (before) faultHosts.delete(before.faultId);
    hosts.set(rec.host, rec);
    faultHosts.set(rec.faultId, rec.host);
    upIdle.delete(rec.host);
    // Without Nova nothing is driven for a host coming back up.
    if (rec.state === 'up' && (rec.novaDoneAt || !nova)) idle(rec.host);
  }

  function deleteHost(host: string) {
    if (hosts.get(host)?.state === 'down') {
      downCount--;
      sortedDown = undefined;
    }
    forget(host);
    upIdle.delete(host);
  }

  function forget(host: string) {
    const rec = hosts.get(host);
    if (rec) faultHosts.delete(rec.faultId);
    hosts.delete(host);
    forcedAt.delete(host);
  }

  function idle(host: string) {
    upIdle.add(host);
    while (upIdle.size > maxHostsUpKept) {
      const oldest = upIdle.values().next().value!;
      upIdle.delete(oldest);
      forget(oldest); // up: as good as unknown
    }
  }

  for (const rec of options.hosts) setHost(rec);

  function track(p: Promise<void>) {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }

  function chainHost(host: string, fn: () => Promise<void>, chains = hostChain): Promise<void> {
    const next = (chains.get(host) ?? Promise.resolve()).then(fn);
    chains.set(host, next);
    void next.finally(() => {
      if (chains.get(host) === next) chains.delete(host);
    });
    return next;
  }

  /** One Nova call through the shared bound, retried with jittered backoff while a retry can help. */
  async function call(
    fn: (signal: AbortSignal) => Promise<void>,
    signal: AbortSignal,
    profile: FaultProfile,
    priority: boolean,
  ): Promise<CallResult> {
    let attempts = 0;
    try {
      await retry(
        signal,
        async (s) => {
          attempts++;
          await runBounded(fn, s, priority);
        },
        {
          baseMs: novaRetry.baseDelayMs,
          maxDelayMs: novaRetry.maxDelayMs,
          // abort-controller-x counts the retries, not the attempts.
          maxAttempts: Math.max(0, novaRetry.maxAttempts - 1),
          onError(err) {
            // Thrown from here, an error ends the retries.
            if (signal.aborted || !retryable(err)) throw err;
            profile.retried();
          },
        },
      );
      return { ok: true };
    } catch (err) {
      if (signal.aborted) return { ok: false, gone: false, aborted: true, error: 'cut short' };
      const message = (err as { message?: string })?.message ?? String(err);
      if ((err as { status?: unknown })?.status === 404) return { ok: false, gone: true, aborted: false, error: message };
      return { ok: false, gone: false, aborted: false, error: `${message}${retryable(err) ? ` (after ${attempts} attempts)` : ''}` };
    }
  }

  /**
   * Waits its turn in the queue (force-down before reset-state), unless signal
   * aborts first. Once started, a call keeps its slot until it has ended: p-queue
   * frees the slot of a running task as soon as the task's own signal aborts,
   * which would let one more call reach Nova than the bound allows.
   */
  function runBounded(fn: (signal: AbortSignal) => Promise<void>, signal: AbortSignal, priority: boolean): Promise<void> {
    const whileQueued = new AbortController();
    const drop = () => whileQueued.abort(signal.reason);
    if (signal.aborted) drop();
    else signal.addEventListener('abort', drop, { once: true });
    return novaQueue
      .add(
        () => {
          signal.removeEventListener('abort', drop);
          return fn(signal);
        },
        { signal: whileQueued.signal, priority: priority ? 1 : 0 },
      )
      .finally(() => signal.removeEventListener('abort', drop));
  }

  /** Resolves once the mark is stored (or at shutdown): a lease is released only then, so no other inspector drives the work again. */
  async function markDone(rec: HostRecord): Promise<void> {
    if (shutdown.signal.aborted) return; // cut short: driven again at next start
    const at = new Date();
    if (hosts.get(rec.host)?.faultId === rec.faultId) {
      rec.novaDoneAt = at;
      if (rec.state === 'up') idle(rec.host);
    }
    const stored = hub.record([], [{ host: rec.host, faultId: rec.faultId, at }]);
    if (!options.leases) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        shutdown.signal.removeEventListener('abort', done);
        resolve();
      };
      shutdown.signal.addEventListener('abort', done, { once: true });
      void stored.then(done);
    });
  }

  /** Runs a host's Nova work under its lease; another inspector holding it drives the work instead. */
  async function leased(rec: HostRecord, profile: FaultProfile, fn: () => Promise<void>): Promise<void> {
    const { leases } = options;
    const lease = leases ? await leases.take(rec.host) : 'unknown';
    if (lease === 'held-elsewhere') {
      logger.info('Nova work of the host left to the inspector holding its lease', { host: rec.host, faultId: rec.faultId });
      profile.complete(`Nova not called here: another inspector holds the lease of host ${rec.host} and drives its work`);
      return;
    }
    try {
      await fn();
    } finally {
      if (lease === 'taken') await leases!.release(rec.host);
    }
  }

  /**
   * Doctor's update_neutron_port_dp_status: every port bound to the host set to
   * `status` (a port already so is left; coming back, only those DOWN), each
   * a call under the shared bound, the listing first (priority, as a force-down).
   */
  async function setPorts(host: string, status: 'DOWN' | 'ACTIVE', profile: FaultProfile, signal: AbortSignal): Promise<void> {
    if (!neutron) return;
    let ports: Array<{ id: string; dataPlaneStatus: string | null }> = [];
    const listed = await call(
      async (s) => {
        ports = await neutron.portsOnHost(host, s);
      },
      signal,
      profile,
      true,
    );
    if (!listed.ok) {
      if (!listed.aborted) profile.hostFailed(`list ports of ${host}: ${listed.error}`);
      return;
    }
    profile.portsFound(ports.length);
    const todo = ports.filter((p) => (status === 'DOWN' ? p.dataPlaneStatus !== 'DOWN' : p.dataPlaneStatus === 'DOWN'));
    await Promise.all(
      todo.map(async (port) => {
        const r = await call((s) => neutron.setDataPlaneStatus(port.id, status, s), signal, profile, false);
        if (r.ok) profile.portUpdated();
        else if (!r.gone && !r.aborted) profile.portFailed(`data_plane_status ${status} on port ${port.id}: ${r.error}`);
      }),
    );
  }

  /** A host in maintenance: nothing is called; maintenanceEnded() drives what is still wanted then. */
  async function holdBack(rec: HostRecord, profile: FaultProfile, held: { since: Date; sessionId: string }): Promise<void> {
    profile.expected();
    const session = held.sessionId ? ` (session ${held.sessionId})` : '';
    profile.complete(
      `Nova and Neutron not called: host ${rec.host} in maintenance since ${held.since.toISOString()}${session}; ` +
        'driven when the maintenance ends, if still wanted',
    );
  }

  async function driveDown(rec: HostRecord, profile: FaultProfile): Promise<void> {
    if (!nova) {
      profile.complete(novaMissingNote);
      return;
    }
    await leased(rec, profile, () => forceAndReset(nova, rec, profile));
  }

  async function forceAndReset(nova: NovaActions, rec: HostRecord, profile: FaultProfile): Promise<void> {
    const force = linkedAbortController(shutdown.signal);
    work.set(rec.host, { faultId: rec.faultId, force });
    const forced = chainHost(rec.host, async () => {
      const r = await call((s) => nova.setHostForcedDown(rec.host, true, s), force.signal, profile, true);
      if (r.ok && hosts.get(rec.host)?.faultId === rec.faultId) forcedAt.set(rec.host, { faultId: rec.faultId, at: new Date() });
      if (r.ok) profile.hostForced();
      else if (!r.aborted) profile.hostFailed(`force-down ${rec.host}: ${r.error}`);
    });
    const ports = chainHost(rec.host, () => setPorts(rec.host, 'DOWN', profile, force.signal), portChain);
    const reset = async (vm: FaultInstance) => {
      const r = await call((s) => nova.resetState(vm.id, 'error', s), shutdown.signal, profile, false);
      if (r.ok) profile.vmReset();
      else if (r.gone) profile.vmGone();
      else if (!r.aborted) profile.vmFailed(`reset-state ${vm.id}: ${r.error}`);
    };
    // Asked for in slices, a turn of the event loop apart: a thousand calls prepared in one
    // turn cost milliseconds that would stand before the alarms still being written.
    const resets: Promise<void>[] = [];
    for (let i = 0; resetMode === 'error' && i < rec.instances.length; i++) {
      if (i > 0 && i % resetsPerTurn === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      resets.push(reset(rec.instances[i]!));
    }
    await Promise.all([forced, ports, ...resets]);
    if (work.get(rec.host)?.faultId === rec.faultId) work.delete(rec.host);
    profile.complete(shutdown.signal.aborted ? 'cut short by shutdown; driven again at next start' : undefined);
    await markDone(rec);
  }

  async function driveUp(rec: HostRecord, profile: FaultProfile): Promise<void> {
    if (!nova) {
      profile.complete(novaMissingNote);
      return;
    }
    await leased(rec, profile, () => unforce(nova, rec, profile));
  }

  async function unforce(nova: NovaActions, rec: HostRecord, profile: FaultProfile): Promise<void> {
    const ports = chainHost(rec.host, () => setPorts(rec.host, 'ACTIVE', profile, shutdown.signal), portChain);
    await chainHost(rec.host, async () => {
      const r = await call((s) => nova.setHostForcedDown(rec.host, false, s), shutdown.signal, profile, true);
      if (r.ok) profile.hostUnforced();
      else if (!r.aborted) profile.hostFailed(`un-force ${rec.host}: ${r.error}`);
    });
    await ports;
    profile.complete(shutdown.signal.aborted ? 'cut short by shutdown; driven again at next start' : undefined);
    await markDone(rec);
  }

  function drafts(rec: HostRecord, event: { time: Date | undefined; cause: string }, detectedAt: Date, expected: boolean): AlarmDraft[] {
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
      expected,
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
    const state = down ? (resetMode === 'error' ? 'error' : hostDownInstanceState) : '';
    const out = new Array<AlarmDraft>(rec.instances.length + 1);
    out[0] = hostAlarm;
    for (let i = 0; i < rec.instances.length; i++) {
      const vm = rec.instances[i]!;
      out[i + 1] = { ...base, type, instanceId: vm.id, instanceName: vm.name, projectId: vm.projectId, state };
    }
    return out;
  }

  /** Starts one host state change; returns once its alarms are sent (shortcut) or at once (conservative). */
  function change(
    event: Extract<FaultEventInput, { kind: 'host' }>,
    receivedAt: Date,
    previous: HostRecord | undefined,
  ): { faultId: string; sent: Promise<void> } {
    const faultId = randomUUID();
    const profile = profiler.start({
      faultId,
      host: event.host,
      status: event.status,
      monitor: event.monitor,
      monitorEventId: event.monitorEventId,
      eventTime: event.time,
      receivedAt,
      resetState: event.status === 'down' ? resetMode : '',
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
    setHost(rec); // before any await: the next event for this host sees it
    // In maintenance: planned work, the alarms say so and nothing is called until it ends.
    const held = options.maintenance?.maintenanceOf(event.host);
    if (held) heldBack.set(event.host, faultId);
    else heldBack.delete(event.host);
    const alarms = drafts(rec, event, receivedAt, held !== undefined);
    const drive = () => (held ? holdBack(rec, profile, held) : rec.state === 'down' ? driveDown(rec, profile) : driveUp(rec, profile));
    const raise = () =>
      hub.raise(alarms, [rec]).then(
        (raised) => {
          profile.alarmsSent(raised.length);
          const ms = sinceReceived(profile.data, 'alarmsSent');
          if (ms !== undefined) options.metrics?.eventToAlarm.observe(ms / 1000);
          if (raised.length > 0) void hub.whenStored(raised[raised.length - 1]!.alarmId).then(() => profile.alarmsStored());
        },
        (err: unknown) => {
          if (hosts.get(rec.host) === rec) {
            if (previous) setHost(previous);
            else deleteHost(rec.host);
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

  /** Drives the Nova (and Neutron) work of a host's current record again, in a new profile of its fault. */
  function driveAgain(rec: HostRecord, why: string) {
    const profile = profiler.start({
      faultId: rec.faultId,
      host: rec.host,
      status: rec.state,
      monitor: rec.monitor,
      monitorEventId: rec.monitorEventId,
      eventTime: undefined,
      receivedAt: new Date(),
      resetState: rec.state === 'down' ? resetMode : '',
    });
    profile.vmsFound(rec.instances.length);
    logger.info(why, { host: rec.host, state: rec.state, faultId: rec.faultId, vms: rec.instances.length });
    track(rec.state === 'down' ? driveDown(rec, profile) : driveUp(rec, profile));
  }

  /** The whole batch is checked before any event is taken: a report that would pass the bound changes nothing. */
  function checkHostsDownBound(events: FaultEventInput[]) {
    let down = downCount;
    const projected = new Map<string, 'down' | 'up'>();
    for (const event of events) {
      if (event.kind !== 'host') continue;
      const current = projected.get(event.host) ?? hosts.get(event.host)?.state ?? 'up';
      if (current === event.status) continue;
      projected.set(event.host, event.status);
      if (event.status === 'up') down--;
      else if (++down > maxHostsDown) {
        throw new ResourceExhaustedError(
          `host ${JSON.stringify(event.host)}: ${maxHostsDown} hosts are known down already, the most the inspector keeps ` +
            `(VIMMON_INSPECTOR_MAX_HOSTS_DOWN); nothing of this report was taken`,
        );
      }
    }
  }

  return {
    async report(events) {
      if (stopping) throw new UnavailableError('inspector is shutting down');
      checkHostsDownBound(events);
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
        // A host in maintenance is left as it is until the maintenance ends.
        if (options.maintenance?.maintenanceOf(rec.host)) heldBack.set(rec.host, rec.faultId);
        else driveAgain(rec, 'driving Nova work left unfinished');
      }
    },

    takeOver(rec) {
      if (stopping || !nova) return false;
      const mine = hosts.get(rec.host);
      // A newer state known here (its row not stored yet), or this host's work under way here: nothing to take over.
      if (mine && (mine.changedAt > rec.changedAt || (mine.faultId === rec.faultId && mine.novaDoneAt))) return false;
      if (hostChain.has(rec.host) || work.has(rec.host)) return false;
      // Held back here already, until the host's maintenance ends.
      if (mine?.faultId === rec.faultId && heldBack.get(rec.host) === rec.faultId) return false;
      setHost(rec);
      if (options.maintenance?.maintenanceOf(rec.host)) {
        heldBack.set(rec.host, rec.faultId);
        return true;
      }
      heldBack.delete(rec.host);
      driveAgain(rec, 'taking over Nova work another inspector left unfinished');
      return true;
    },

    maintenanceEnded(host) {
      const faultId = heldBack.get(host);
      heldBack.delete(host);
      const rec = hosts.get(host);
      if (!nova || !rec || rec.faultId !== faultId || rec.novaDoneAt) return;
      driveAgain(rec, 'maintenance over: driving the work its events left undone');
    },

    hostsDown({ after, limit = Infinity } = {}) {
      sortedDown ??= [...hosts.values()]
        .filter((h) => h.state === 'down')
        .map((h) => h.host)
        .sort();
      let start = 0;
      if (after !== undefined) {
        let hi = sortedDown.length;
        while (start < hi) {
          const mid = (start + hi) >>> 1;
          if (sortedDown[mid]! <= after) start = mid + 1;
          else hi = mid;
        }
      }
      const names = sortedDown.slice(start, start + limit);
      return { hosts: names.map((h) => hosts.get(h)!), total: sortedDown.length, more: start + names.length < sortedDown.length };
    },

    host(name) {
      const record = hosts.get(name);
      if (!record) return undefined;
      const forced = forcedAt.get(name);
      return { record, forcedDownAt: forced?.faultId === record.faultId ? forced.at : undefined };
    },

    hostOfFault(faultId) {
      return faultHosts.get(faultId);
    },

    resetState: resetMode,

    stats() {
      return {
        ...counters,
        novaInFlight: novaQueue.pending,
        novaQueued: novaQueue.size,
        faultsInProgress: inflight.size,
        hostsKnown: hosts.size,
      };
    },

    async stop(graceMs) {
      stopping = true;
      if (inflight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), graceMs)));
        const r = await Promise.race([Promise.allSettled([...inflight]).then(() => 'done' as const), timeout]);
        clearTimeout(timer);
        if (r === 'timeout')
          logger.warn('Nova work still running at shutdown; cutting it short', { faults: inflight.size, queuedCalls: novaQueue.size });
      }
      shutdown.abort();
      await Promise.allSettled([...inflight]);
    },
  };
}

/** A NovaError says whether a retry can help; anything else (network, timeout) may be worth one. */
function retryable(err: unknown): boolean {
  const e = err as { status?: unknown; retryable?: unknown } | undefined;
  if (e?.status === 404) return false;
  return typeof e?.retryable === 'boolean' ? e.retryable : true;
}
