// The status an action decides from its probe rounds. Pure, so the rule that
// turns rounds into REACHABLE / UNREACHABLE is tested on its own.

/** What an action can report; BAD_ACTION is only ever a conductor's reply. */
export type DecidedStatus = 'PENDING' | 'REACHABLE' | 'UNREACHABLE';

export interface Decision {
  readonly status: DecidedStatus;
  /** Failed rounds since the last successful one. */
  readonly failedRoundsInRow: number;
}

/** Before the first round: nothing is known yet. */
export const initialDecision: Decision = Object.freeze({ status: 'PENDING', failedRoundsInRow: 0 });

// Every successful round decides this: one object shared by all actions, not one per round.
const reachable: Decision = Object.freeze({ status: 'REACHABLE', failedRoundsInRow: 0 });

/**
 * REACHABLE on a successful round; UNREACHABLE once failed rounds in a row
 * reach `unreachableAfter`; otherwise the previous decision stands (a VIM
 * that was REACHABLE stays so through a blip shorter than `unreachableAfter`,
 * and one never yet decided stays PENDING).
 */
export function decide(previous: Decision, roundOk: boolean, unreachableAfter: number): Decision {
  if (roundOk) return reachable;
  const failedRoundsInRow = previous.failedRoundsInRow + 1;
  const status = failedRoundsInRow >= unreachableAfter ? 'UNREACHABLE' : previous.status;
  return { status, failedRoundsInRow };
}
