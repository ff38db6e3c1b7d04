// OPNFV Doctor's `POST /maintenance`: the body is an Aodh alarm notification
// (Aodh's REST notifier) of an event alarm on Doctor's admin tool's
// `maintenance.host` notification, whose event traits carry the host and the
// state, as [name, type, value] triples:
//   {"alarm_name": "…", "alarm_id": "…", "severity": "low", "previous": "insufficient data",
//    "current": "alarm", "reason": "Event <id=…,event_type=maintenance.host> hits the query …",
//    "reason_data": {"type": "event", "event": {"message_id": "…", "event_type": "maintenance.host",
//      "generated": "2018-08-28T10:00:00.000000", "raw": {},
//      "traits": [["project_id", 1, "…"], ["host", 1, "compute-1"],
//                 ["state", 1, "IN_MAINTENANCE"], ["session_id", 1, "…"]]}}}
// IN_MAINTENANCE turns automatic fault management off for the host,
// MAINTENANCE_COMPLETE on again; Doctor's sample inspector refuses any other state.
import { InvalidArgumentError } from '../common/errors.js';
import { MaintenanceState } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { parseMaintenanceChange, type MaintenanceChange } from './maintenance.js';

/** Traits read from one event: more is refused (Aodh events carry a handful). */
const maxTraits = 256;

const states: Record<string, MaintenanceState> = {
  IN_MAINTENANCE: MaintenanceState.MAINTENANCE_STATE_IN_MAINTENANCE,
  MAINTENANCE_COMPLETE: MaintenanceState.MAINTENANCE_STATE_MAINTENANCE_COMPLETE,
};

/** The maintenance change an Aodh alarm body asks for; throws InvalidArgumentError naming the offending field. */
export function parseMaintenanceAlarm(body: string): MaintenanceChange {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new InvalidArgumentError('body', `not JSON: ${(err as Error).message}`);
  }
  if (!isObject(json)) throw new InvalidArgumentError('body', 'expected an Aodh alarm notification object');
  const reasonData = json.reason_data;
  if (!isObject(reasonData)) throw new InvalidArgumentError('reason_data', 'required: an object with the event');
  const event = reasonData.event;
  if (!isObject(event)) throw new InvalidArgumentError('reason_data.event', 'required: the event that fired the alarm');
  const traits = readTraits(event.traits, 'reason_data.event.traits');
  const field = (name: string) => `reason_data.event.traits.${name}`;
  const text = (name: string, required: boolean): string => {
    const v = traits.get(name);
    if (v === undefined || v === null || v === '') {
      if (required) throw new InvalidArgumentError(field(name), 'required');
      return '';
    }
    if (typeof v !== 'string') throw new InvalidArgumentError(field(name), 'expected a string');
    return v;
  };
  const stateName = text('state', true).trim();
  const state = states[stateName];
  if (state === undefined)
    throw new InvalidArgumentError(
      field('state'),
      `expected IN_MAINTENANCE or MAINTENANCE_COMPLETE, got ${JSON.stringify(stateName.slice(0, 32))}`,
    );
  const alarmName = typeof json.alarm_name === 'string' ? json.alarm_name : '';
  return parseMaintenanceChange(
    {
      host: text('host', true),
      state,
      sessionId: text('session_id', false),
      // The Aodh alarm that carried it, for the alarms' cause.
      reason: alarmName ? `aodh alarm ${alarmName.slice(0, 255)}` : '',
    },
    (name) => (name === 'reason' ? 'alarm_name' : field(name)),
  );
}

/**
 * Traits by name: Aodh gives [name, type, value] triples; the event API's
 * {"name", "type", "value"} objects are read alike. A later trait of the same
 * name wins, as Doctor's sample inspector builds its dict.
 */
function readTraits(value: unknown, field: string): Map<string, unknown> {
  if (!Array.isArray(value)) throw new InvalidArgumentError(field, 'required: a list of [name, type, value]');
  if (value.length > maxTraits) throw new InvalidArgumentError(field, `at most ${maxTraits} traits, got ${value.length}`);
  const out = new Map<string, unknown>();
  value.forEach((t, i) => {
    if (Array.isArray(t) && t.length === 3 && typeof t[0] === 'string') out.set(t[0], t[2]);
    else if (isObject(t) && typeof t.name === 'string') out.set(t.name, t.value);
    else throw new InvalidArgumentError(`${field}[${i}]`, 'expected [name, type, value]');
  });
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
