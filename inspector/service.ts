// vimmon.inspector.v1.InspectorService: validation at the edge, then the
// fault handler, the alarm log and the profiler do the work.
import type { NormalizedServiceDefinition, ServiceDefinition, TsProtoServiceDefinition } from 'nice-grpc';
import { callerOf, readableProjects, type Principal } from '../common/auth/principal.js';
import { withinReplyBytes } from '../common/reply-size.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from '../common/errors.js';
import { msToDuration } from '../common/duration.js';
import {
  AffectedInstance,
  Alarm,
  AlarmType,
  FaultProfile,
  type InspectorServiceDefinition,
  type AlarmFilter,
  type HostMaintenance,
  type HostState,
  type InspectorServiceImplementation,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import type { AlarmHub } from './alarm-stream.js';
import type { HostRecord } from './alarm-store.js';
import { listAffectedInstances, type AffectedInstancesTarget } from './affected-instances.js';
import { faultEventLimits, parseFaultEvent, type FaultHandler, type HostVmLookup } from './fault.js';
import { parseMaintenanceChange, type Maintenance, type MaintenanceRecord } from './maintenance.js';
import { sinceReceived, type FaultProfileData, type ProfilePoint, type Profiler } from './profiler.js';

export { resumeAfterTrailer } from './alarm-stream.js';

export interface InspectorStatusSource {
  cachedVms: number;
  cacheSyncedAt: Date | undefined;
  novaConfigured: boolean;
  notificationsConfigured: boolean;
  missingConfig: string[];
  /** Ports' data-plane status is set on faults. */
  neutronConfigured?: boolean;
}

export interface InspectorServiceOptions {
  fault: FaultHandler;
  /** The host → VMs cache, for ListAffectedInstances; unset: no cache (no VM listed). */
  vms?: HostVmLookup;
  hub: AlarmHub;
  profiler: Profiler;
  status(): InspectorStatusSource;
  /** Hosts in maintenance (SetHostMaintenance); unset: SetHostMaintenance answers FAILED_PRECONDITION. */
  maintenance?: Maintenance;
}

/** An alarm's bytes, encoded for its first stream and shared by the others: a raised alarm is complete and never changes. */
const encodedAlarms = new WeakMap<Alarm, Uint8Array>();

function alarmBytes(a: Alarm): Uint8Array {
  let b = encodedAlarms.get(a);
  if (!b) encodedAlarms.set(a, (b = Alarm.encode(a).finish()));
  return b;
}

/**
 * The inspector's service as served, in nice-grpc's generic form, built from
 * the ts-proto definition once its requests are checked (guardDefinition):
 * every method as nice-grpc serves a ts-proto one (fromPartial, then encode),
 * but SubscribeAlarms encodes each alarm once however many streams it goes to.
 */
export function servedInspectorDefinition(
  checked: typeof InspectorServiceDefinition,
): NormalizedServiceDefinition<typeof InspectorServiceDefinition> {
  const served: ServiceDefinition = {};
  for (const [key, method] of Object.entries(checked.methods as TsProtoServiceDefinition['methods'])) {
    const { requestType, responseType } = method;
    served[key] = {
      path: `/${checked.fullName}/${method.name}`,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: (value) => requestType.encode(requestType.fromPartial ? requestType.fromPartial(value) : value).finish(),
      requestDeserialize: (bytes) => requestType.decode(bytes),
      responseSerialize: (value) => responseType.encode(responseType.fromPartial ? responseType.fromPartial(value) : value).finish(),
      responseDeserialize: (bytes) => responseType.decode(bytes),
      options: method.options,
    };
  }
  served.subscribeAlarms = { ...served.subscribeAlarms!, responseSerialize: alarmBytes };
  return served as NormalizedServiceDefinition<typeof InspectorServiceDefinition>;
}

const noVms: HostVmLookup = { vmsOnHost: () => [] };
const maxEventsPerRequest = 10_000;
/** GetStatus names this many hosts down (the first by host name); ListHostsDown pages through all. */
const statusHostsDown = 1_000;
const maxFilterValues = 1_000;
const maxFilterValueLength = 255;
const knownTypes = new Set<number>(
  Object.values(AlarmType).filter((v): v is AlarmType => typeof v === 'number' && v > AlarmType.ALARM_TYPE_UNSPECIFIED),
);

export function createInspectorService(options: InspectorServiceOptions): InspectorServiceImplementation {
  const { fault, hub, profiler } = options;
  return {
    async reportEvents(request) {
      if (request.events.length === 0) throw new InvalidArgumentError('events', 'at least one event');
      if (request.events.length > maxEventsPerRequest)
        throw new InvalidArgumentError('events', `at most ${maxEventsPerRequest} per request`);
      // Every event is checked before any is taken: a bad batch changes nothing.
      const events = request.events.map((e, i) => parseFaultEvent(e, (name) => `events[${i}].${name}`));
      return fault.report(events);
    },

    async *subscribeAlarms(request, context) {
      const filter = scopedFilter(validateFilter(request.filter, 'filter'), callerOf(context));
      // Too slow: SubscriberOverflowError, RESOURCE_EXHAUSTED with the resume trailer (common/grpc-server.ts).
      yield* hub.subscribe({ filter, afterAlarmId: request.afterAlarmId, liveOnly: request.liveOnly }, context.signal);
    },

    async listAlarms(request, context) {
      const filter = scopedFilter(validateFilter(request.filter, 'filter'), callerOf(context));
      const limit = Math.min(request.pageSize || 100, 1_000);
      const page = await hub.list(request.afterAlarmId, filter, limit);
      const kept = withinReplyBytes(page.alarms, (a) => Alarm.encode(a).finish().length);
      if (kept === page.alarms.length) return page;
      // Cut short by size: the next page starts right after the last alarm returned.
      const alarms = page.alarms.slice(0, kept);
      return { alarms, nextAfterAlarmId: alarms[alarms.length - 1]!.alarmId };
    },

    async listFaultProfiles(request) {
      const limit = Math.min(request.limit || 20, profiler.capacity);
      const profiles = profiler.list({ host: request.host || undefined, limit }).map(toProfileMessage);
      // Newest first, as many as fit (with the profiler's caps a full page of 1,000 does).
      return {
        profiles: profiles.slice(
          0,
          withinReplyBytes(profiles, (p) => FaultProfile.encode(p).finish().length),
        ),
      };
    },

    async getFaultProfile(request) {
      if (!request.faultId) throw new InvalidArgumentError('fault_id', 'required');
      const p = profiler.get(request.faultId);
      if (!p) throw new NotFoundError(`fault ${request.faultId} is not among the ${profiler.capacity} most recent`);
      return { profile: toProfileMessage(p) };
    },

    async listHostsDown(request) {
      const limit = Math.min(request.pageSize || 100, 1_000);
      const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
      const page = fault.hostsDown({ after, limit });
      const last = page.hosts[page.hosts.length - 1];
      return {
        hosts: page.hosts.map((r) => toHostState(r, fault.host(r.host)?.forcedDownAt)),
        nextPageToken: page.more && last ? Buffer.from(last.host, 'utf8').toString('base64url') : '',
      };
    },

    async listAffectedInstances(request, context) {
      const target = affectedTarget(request.host, request.faultId);
      const limit = Math.min(request.pageSize || 100, 1_000);
      const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
      const caller = callerOf(context);
      const page = listAffectedInstances(fault, options.vms ?? noVms, {
        target,
        after,
        limit,
        projects: readableProjects(caller),
        callerName: caller.name,
      });
      const instances: AffectedInstance[] = page.instances.map((vm) => ({
        instanceId: vm.id,
        instanceName: vm.name,
        projectId: vm.projectId,
        vmState: vm.state ?? '',
      }));
      const kept = withinReplyBytes(instances, (i) => AffectedInstance.encode(i).finish().length);
      const last = instances[kept - 1];
      const host: HostState = page.record
        ? { ...toHostState(page.record, page.forcedDownAt), vmCount: page.faultVmCount }
        : { host: page.host, state: 'up', since: undefined, faultId: '', vmCount: 0, novaDone: false, forcedDownAt: undefined };
      return {
        host,
        instances: instances.slice(0, kept),
        nextPageToken: (page.more || kept < instances.length) && last ? Buffer.from(last.instanceId, 'utf8').toString('base64url') : '',
      };
    },

    async setHostMaintenance(request, context) {
      const change = parseMaintenanceChange(request, (name) => name);
      if (!options.maintenance) throw new FailedPreconditionError('this inspector keeps no maintenance state');
      const { changed, record } = await options.maintenance.set(change, callerOf(context).name);
      return { maintenance: record && toHostMaintenance(record), changed };
    },

    async listHostsInMaintenance(request) {
      const limit = Math.min(request.pageSize || 100, 1_000);
      const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
      const page = options.maintenance?.list({ after, limit }) ?? { hosts: [], more: false };
      const last = page.hosts.at(-1);
      return {
        hosts: page.hosts.map(toHostMaintenance),
        nextPageToken: page.more && last ? Buffer.from(last.host, 'utf8').toString('base64url') : '',
      };
    },

    async getStatus() {
      const s = options.status();
      const f = fault.stats();
      const h = hub.stats();
      const down = fault.hostsDown({ limit: statusHostsDown });
      return {
        eventsReceived: f.eventsReceived,
        eventsIgnored: f.eventsIgnored,
        eventsDuplicate: f.eventsDuplicate,
        lastAlarmId: h.lastAlarmId,
        alarmsPendingStore: h.pendingStore,
        subscribers: h.subscribers,
        cachedVms: s.cachedVms,
        cacheSyncedAt: s.cacheSyncedAt,
        novaConfigured: s.novaConfigured,
        notificationsConfigured: s.notificationsConfigured,
        missingConfig: s.missingConfig,
        novaCallsInFlight: f.novaInFlight,
        novaCallsQueued: f.novaQueued,
        hostsDownTotal: down.total,
        // Refused by the database: put aside, or (if even that failed) dropped; both logged.
        alarmsQuarantined: h.quarantined + h.dropped,
        hostsDown: down.hosts.map((r) => toHostState(r, fault.host(r.host)?.forcedDownAt)),
        resetState: fault.resetState,
        neutronConfigured: s.neutronConfigured ?? false,
        hostsInMaintenance: options.maintenance?.size ?? 0,
      };
    },
  };
}

function toHostMaintenance(r: MaintenanceRecord): HostMaintenance {
  return { host: r.host, since: r.since, sessionId: r.sessionId, reason: r.reason, setBy: r.setBy };
}

function toHostState(r: HostRecord, forcedDownAt: Date | undefined): HostState {
  return {
    host: r.host,
    state: r.state,
    since: r.changedAt,
    faultId: r.faultId,
    vmCount: r.instances.length,
    novaDone: r.novaDoneAt !== undefined,
    forcedDownAt,
  };
}

/** ListAffectedInstances asks by host or by fault id, one of them. */
function affectedTarget(host: string, faultId: string): AffectedInstancesTarget {
  if (host && faultId) throw new InvalidArgumentError('fault_id', 'give host or fault_id, not both');
  if (!host && !faultId) throw new InvalidArgumentError('host', 'required (or fault_id)');
  const max = faultEventLimits.hostname;
  if (host.length > max) throw new InvalidArgumentError('host', `at most ${max} characters, got ${host.length}`);
  if (faultId.length > max) throw new InvalidArgumentError('fault_id', `at most ${max} characters, got ${faultId.length}`);
  return host ? { host } : { faultId };
}

/** How many of the items, from the first, fit in one reply (at least one, so that paging always moves on). */

/** The host name a ListHostsDown token stands for (base64url of it); anything else is refused. */
function decodePageToken(token: string): string {
  const bad = () => new InvalidArgumentError('page_token', 'not a token this service gave: pass next_page_token as it was received');
  if (token.length > 1_400 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const host = Buffer.from(token, 'base64url').toString('utf8');
  // Canonical only: the same bytes encode back to the same token (no invalid UTF-8, no stray bits).
  if (!host || host.length > 255 || Buffer.from(host, 'utf8').toString('base64url') !== token) throw bad();
  return host;
}

/**
 * What a caller may see: an admin every alarm; anyone else the alarms of the
 * projects they read (an instance's project, a VIM alarm's owner project).
 * Host alarms carry no project, so they stay with admins.
 */
function scopedFilter(filter: AlarmFilter | undefined, caller: Principal): AlarmFilter | undefined {
  const projects = readableProjects(caller);
  if (!projects) return filter;
  const asked = filter?.projectIds ?? [];
  const allowed = asked.length > 0 ? asked.filter((p) => projects.has(p)) : [...projects];
  if (allowed.length === 0) {
    throw new PermissionDeniedError(
      asked.length > 0 ? `filter.project_ids: ${caller.name} reads none of these projects` : `${caller.name} reads no project`,
    );
  }
  return { hosts: [], instanceIds: [], types: [], vimIds: [], ...filter, projectIds: allowed };
}

function validateFilter(filter: AlarmFilter | undefined, field: string): AlarmFilter | undefined {
  if (!filter) return undefined;
  const bounded = (values: readonly unknown[], name: string) => {
    if (values.length > maxFilterValues)
      throw new InvalidArgumentError(`${field}.${name}`, `at most ${maxFilterValues} values, got ${values.length}`);
  };
  bounded(filter.types, 'types');
  filter.types.forEach((t, i) => {
    if (!knownTypes.has(t)) throw new InvalidArgumentError(`${field}.types[${i}]`, `unknown alarm type ${t}`);
  });
  const texts = (values: string[], name: string) => {
    bounded(values, name);
    values.forEach((v, i) => {
      if (!v) throw new InvalidArgumentError(`${field}.${name}[${i}]`, 'empty');
      if (v.length > maxFilterValueLength)
        throw new InvalidArgumentError(`${field}.${name}[${i}]`, `at most ${maxFilterValueLength} characters`);
    });
  };
  texts(filter.hosts, 'hosts');
  texts(filter.projectIds, 'project_ids');
  texts(filter.instanceIds, 'instance_ids');
  texts(filter.vimIds, 'vim_ids');
  return filter;
}

function toProfileMessage(p: FaultProfileData): FaultProfile {
  const since = (point: ProfilePoint) => {
    const ms = sinceReceived(p, point);
    return ms === undefined ? undefined : msToDuration(ms);
  };
  return {
    faultId: p.faultId,
    host: p.host,
    status: p.status,
    monitor: p.monitor,
    monitorEventId: p.monitorEventId,
    eventTime: p.eventTime,
    receivedAt: p.receivedAt,
    receivedAtEpochUs: p.receivedAtEpochUs,
    resetState: p.resetState,
    vmsFoundAt: p.vmsFoundAt,
    vmCount: p.vmCount,
    alarmsSentAt: p.alarmsSentAt,
    alarmCount: p.alarmCount,
    alarmsStoredAt: p.alarmsStoredAt,
    hostForcedDownAt: p.hostForcedDownAt,
    hostUnforcedAt: p.hostUnforcedAt,
    lastVmResetAt: p.lastVmResetAt,
    vmsReset: p.vmsReset,
    vmsGone: p.vmsGone,
    vmsFailed: p.vmsFailed,
    retries: p.retries,
    errors: [...p.errors],
    completedAt: p.completedAt,
    toVmsFound: since('vmsFound'),
    toAlarmsSent: since('alarmsSent'),
    toHostForcedDown: since('hostForced'),
    toHostUnforced: since('hostUnforced'),
    toLastVmReset: since('lastVmReset'),
    toCompleted: since('completed'),
    portCount: p.portCount,
    portsUpdated: p.portsUpdated,
    portsFailed: p.portsFailed,
    portsUpdatedAt: p.portsUpdatedAt,
    toPortsUpdated: since('portsUpdated'),
    expected: p.expected,
  };
}
