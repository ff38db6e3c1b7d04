// vimmon.inspector.v1.InspectorService: validation at the edge, then the
// fault handler, the alarm log and the profiler do the work.
import { ServerError, Status } from 'nice-grpc';
import { InvalidArgumentError, NotFoundError } from '../common/errors.js';
import { msToDuration } from '../common/duration.js';
import {
  Alarm,
  AlarmType,
  InspectorServiceDefinition,
  type AlarmFilter,
  type FaultProfile,
  type InspectorServiceImplementation,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { SubscriberOverflowError, type AlarmHub } from './alarm-stream.js';
import { parseFaultEvent, type FaultHandler } from './fault.js';
import { sinceReceived, type FaultProfileData, type ProfilePoint, type Profiler } from './profiler.js';

/** Trailer of a RESOURCE_EXHAUSTED SubscribeAlarms: the after_alarm_id to resume with. */
export const resumeAfterTrailer = 'vimmon-resume-after-alarm-id';

export interface InspectorStatusSource {
  cachedVms: number;
  cacheSyncedAt: Date | undefined;
  novaConfigured: boolean;
  notificationsConfigured: boolean;
  missingConfig: string[];
}

export interface InspectorServiceOptions {
  fault: FaultHandler;
  hub: AlarmHub;
  profiler: Profiler;
  status(): InspectorStatusSource;
}

/**
 * InspectorServiceDefinition with each alarm encoded once, however many streams
 * it goes to. The stock path copies every message (fromPartial) and encodes it
 * per stream; alarm objects are complete and shared, so the bytes are too.
 */
export const inspectorServiceDefinition: typeof InspectorServiceDefinition = (() => {
  const encoded = new WeakMap<object, Uint8Array>();
  const bytes = (a: Alarm) => {
    let b = encoded.get(a);
    if (!b) encoded.set(a, (b = Alarm.encode(a).finish()));
    return b;
  };
  const subscribe = InspectorServiceDefinition.methods.subscribeAlarms;
  const responseType = { ...Alarm, fromPartial: undefined, encode: (a: Alarm) => ({ finish: () => bytes(a) }) };
  return {
    ...InspectorServiceDefinition,
    methods: { ...InspectorServiceDefinition.methods, subscribeAlarms: { ...subscribe, responseType } },
  } as unknown as typeof InspectorServiceDefinition;
})();

const maxEventsPerRequest = 10_000;
const knownTypes = new Set<number>(
  Object.values(AlarmType).filter((v): v is AlarmType => typeof v === 'number' && v > AlarmType.ALARM_TYPE_UNSPECIFIED),
);

export function createInspectorService(options: InspectorServiceOptions): InspectorServiceImplementation {
  const { fault, hub, profiler } = options;
  return {
    async reportEvents(request) {
      if (request.events.length === 0) throw new InvalidArgumentError('events', 'at least one event');
      if (request.events.length > maxEventsPerRequest) throw new InvalidArgumentError('events', `at most ${maxEventsPerRequest} per request`);
      // Every event is checked before any is taken: a bad batch changes nothing.
      const events = request.events.map((e, i) => parseFaultEvent(e, (name) => `events[${i}].${name}`));
      return fault.report(events);
    },

    async *subscribeAlarms(request, context) {
      const filter = validateFilter(request.filter, 'filter');
      try {
        yield* hub.subscribe({ filter, afterAlarmId: request.afterAlarmId, liveOnly: request.liveOnly }, context.signal);
      } catch (err) {
        if (err instanceof SubscriberOverflowError) {
          context.trailer.set(resumeAfterTrailer, String(err.lastDeliveredId));
          throw new ServerError(Status.RESOURCE_EXHAUSTED, err.message);
        }
        throw err;
      }
    },

    async listAlarms(request) {
      const filter = validateFilter(request.filter, 'filter');
      const limit = Math.min(request.pageSize || 100, 1_000);
      return hub.list(request.afterAlarmId, filter, limit);
    },

    async listFaultProfiles(request) {
      const limit = Math.min(request.limit || 20, profiler.capacity);
      return { profiles: profiler.list({ host: request.host || undefined, limit }).map(toProfileMessage) };
    },

    async getFaultProfile(request) {
      if (!request.faultId) throw new InvalidArgumentError('fault_id', 'required');
      const p = profiler.get(request.faultId);
      if (!p) throw new NotFoundError(`fault ${request.faultId} is not among the ${profiler.capacity} most recent`);
      return { profile: toProfileMessage(p) };
    },

    async getStatus() {
      const s = options.status();
      const f = fault.stats();
      const h = hub.stats();
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
        hostsDown: fault.hostsDown().map((r) => ({
          host: r.host,
          state: r.state,
          since: r.changedAt,
          faultId: r.faultId,
          vmCount: r.instances.length,
          novaDone: r.novaDoneAt !== undefined,
        })),
      };
    },
  };
}

function validateFilter(filter: AlarmFilter | undefined, field: string): AlarmFilter | undefined {
  if (!filter) return undefined;
  filter.types.forEach((t, i) => {
    if (!knownTypes.has(t)) throw new InvalidArgumentError(`${field}.types[${i}]`, `unknown alarm type ${t}`);
  });
  const nonEmpty = (values: string[], name: string) =>
    values.forEach((v, i) => {
      if (!v) throw new InvalidArgumentError(`${field}.${name}[${i}]`, 'empty');
    });
  nonEmpty(filter.hosts, 'hosts');
  nonEmpty(filter.projectIds, 'project_ids');
  nonEmpty(filter.instanceIds, 'instance_ids');
  nonEmpty(filter.vimIds, 'vim_ids');
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
    vmsFoundAt: p.vmsFoundAt,
    vmCount: p.vmCount,
    alarmsSentAt: p.alarmsSentAt,
    alarmCount: p.alarmCount,
    alarmsStoredAt: p.alarmsStoredAt,
    hostForcedDownAt: p.hostForcedDownAt,
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
    toLastVmReset: since('lastVmReset'),
    toCompleted: since('completed'),
  };
}
