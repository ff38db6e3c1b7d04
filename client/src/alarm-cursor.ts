// Where a resumable SubscribeAlarms stream stands. The server's semantics
// (inspector/alarm-stream.ts, proto SubscribeAlarmsRequest): alarm ids strictly
// increase; after_alarm_id N replays the stored alarms after N (0: all of them)
// and goes live with no gap and no duplicate; live_only skips the replay and
// ignores after_alarm_id. So the resume point is the last alarm id handed, and
// once there is one the stream never asks for live_only again.
//
// A live_only stream cut before its first alarm has no resume point of its own:
// the server's trailer gives one when it cut the stream for falling behind;
// after a restart it asks for live_only again, and alarms raised while it was
// away are not replayed.
import { SubscribeAlarmsRequest, type Alarm, type DeepPartial } from '../../gen/vimmon/inspector/v1/inspector_service.js';
import { DeliveredIds } from './delivered-ids.js';
import type { StreamCursor } from './resumable-stream.js';

/** The trailer of a SubscribeAlarms cut for falling behind (inspector/alarm-stream.ts). */
export const alarmResumeTrailer = 'vimmon-resume-after-alarm-id';

/** The trailer of a SubscribeAlarms answered OUT_OF_RANGE (retention removed what followed): the oldest alarm id held. */
export const alarmOldestTrailer = 'vimmon-oldest-alarm-id';

export function alarmCursor(partial: DeepPartial<SubscribeAlarmsRequest> | undefined): StreamCursor<SubscribeAlarmsRequest, Alarm> {
  const asked = SubscribeAlarmsRequest.fromPartial(partial ?? {});
  const ids = new DeliveredIds({ order: 'ordered', after: asked.liveOnly ? undefined : asked.afterAlarmId });
  return {
    resumeTrailer: alarmResumeTrailer,
    oldestTrailer: alarmOldestTrailer,
    request() {
      const after = ids.resumeAfter();
      return after === undefined
        ? { filter: asked.filter, afterAlarmId: 0, liveOnly: true }
        : { filter: asked.filter, afterAlarmId: after, liveOnly: false };
    },
    accept: (alarm) => ids.accept(alarm.alarmId),
    hint: (after) => ids.hint(after),
    resumeAfter: () => ids.resumeAfter() ?? 0,
  };
}
