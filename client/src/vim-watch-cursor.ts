// Where a resumable WatchVims stream stands. The server's semantics
// (server/vim-watch.ts, proto WatchVimsRequest): send_initial first sends one
// message per VIM with event_id 0 (its current state), then the stored changes
// after after_event_id are replayed, then live changes follow; after_event_id 0
// means "live only". Event ids arrive in commit order, not id order, so the ids
// handed are remembered in a bounded window (delivered-ids.ts).
//
// The initial state: it is complete once the first change (event_id > 0)
// arrives, since the server sends every initial message before any change. Until
// then a new connection asks for it again (an initial message identical to one
// already handed is dropped, so the consumer sees a VIM again only if its state
// moved meanwhile); after it, never again.
import { WatchVimsRequest, type DeepPartial, type WatchVimsResponse } from '../../gen/vimmon/tacker/v1/vim_service.js';
import { DeliveredIds } from './delivered-ids.js';
import type { StreamCursor } from './resumable-stream.js';

/** The trailer of a WatchVims cut for falling behind (server/vim-watch.ts). */
export const watchResumeTrailer = 'vimmon-resume-after-event-id';

/** The trailer of a WatchVims answered OUT_OF_RANGE (retention removed what followed): the oldest event id held. */
export const watchOldestTrailer = 'vimmon-oldest-event-id';

/** Initial states remembered to drop a repeat; past this many VIMs a repeat is handed again. */
const maxInitialStates = 10_000;

export function vimWatchCursor(partial: DeepPartial<WatchVimsRequest> | undefined): StreamCursor<WatchVimsRequest, WatchVimsResponse> {
  const asked = WatchVimsRequest.fromPartial(partial ?? {});
  const ids = new DeliveredIds({ order: 'unordered', after: asked.afterEventId > 0 ? asked.afterEventId : undefined });
  let changeSeen = false;
  const initialStates = new Map<string, string>();
  return {
    resumeTrailer: watchResumeTrailer,
    oldestTrailer: watchOldestTrailer,
    request: () => ({
      vimIds: asked.vimIds,
      sendInitial: asked.sendInitial && !changeSeen,
      afterEventId: ids.connect() ?? 0,
    }),
    accept(m) {
      if (m.eventId > 0) {
        if (!changeSeen) initialStates.clear();
        changeSeen = true;
        return ids.accept(m.eventId);
      }
      const state = `${m.status}/${m.actionId}`;
      if (initialStates.get(m.vimId) === state) return false;
      if (initialStates.has(m.vimId) || initialStates.size < maxInitialStates) initialStates.set(m.vimId, state);
      return true;
    },
    hint: (after) => ids.hint(after),
    resumeAfter: () => ids.resumeAfter() ?? 0,
  };
}
