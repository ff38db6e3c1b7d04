// The status an action decides from its probe rounds. Pure, so the rule that
// turns rounds into REACHABLE / UNREACHABLE is tested on its own.

/** What an action can report; BAD_ACTION is only ever a conductor's reply. */
export type DecidedStatus = 'PENDING' | 'REACHABLE' | 'UNREACHABLE';

/** Why a VIM that answered is UNREACHABLE all the same; '' for no reason beyond the status. */
export type StatusReason = '' | 'CREDENTIALS_REJECTED' | 'CERTIFICATE_REJECTED';

export interface Decision {
  readonly status: DecidedStatus;
  /** Goes with status: set only when the VIM refused. */
  readonly reason?: StatusReason;
  /** Failed rounds since the last successful one. */
  readonly failedRoundsInRow: number;
}

/** Before the first round: nothing is known yet. */
export const initialDecision: Decision = Object.freeze({ status: 'PENDING', failedRoundsInRow: 0 });

// Every successful round decides this: one object shared by all actions, not one per round.
const reachable: Decision = Object.freeze({ status: 'REACHABLE', failedRoundsInRow: 0 });

const unreachable: Decision = Object.freeze({ status: 'UNREACHABLE', failedRoundsInRow: 0 });

/**
 * Where an action starts from: the status the conductor holds, when it was
 * given one. A replacement action thus rides out a blip in its first rounds
 * as the action before it would have, instead of reporting PENDING (a VIM
 * known REACHABLE is not news, and not unknown, after one failed round).
 */
export function startingDecision(known: DecidedStatus | undefined, reason: StatusReason = ''): Decision {
  if (known === 'REACHABLE') return reachable;
  if (known === 'UNREACHABLE') return reason === '' ? unreachable : { status: 'UNREACHABLE', reason, failedRoundsInRow: 0 };
  return initialDecision;
}

/**
 * REACHABLE on a successful round. A round the VIM refused (`reason`: its
 * credentials, its certificate) decides UNREACHABLE at once with that reason:
 * a refusal is an answer, not a blip to ride out. Otherwise UNREACHABLE once
 * failed rounds in a row reach `unreachableAfter`; until then the previous
 * decision stands (a VIM that was REACHABLE stays so through a blip shorter
 * than `unreachableAfter`, and one never yet decided stays PENDING).
 */
export function decide(previous: Decision, roundOk: boolean, unreachableAfter: number, reason: StatusReason = ''): Decision {
  if (roundOk) return reachable;
  const failedRoundsInRow = previous.failedRoundsInRow + 1;
  if (reason !== '') return { status: 'UNREACHABLE', reason, failedRoundsInRow };
  if (failedRoundsInRow >= unreachableAfter) return { status: 'UNREACHABLE', failedRoundsInRow };
  return previous.reason
    ? { status: previous.status, reason: previous.reason, failedRoundsInRow }
    : { status: previous.status, failedRoundsInRow };
}

/** Whether two (status, reason) pairs are the same news. */
export function sameDecision(
  status: DecidedStatus,
  reason: StatusReason,
  otherStatus: DecidedStatus | undefined,
  otherReason: StatusReason,
): boolean {
  return status === otherStatus && reason === otherReason;
}
