// One monitor action: probes one VIM every interval and reports what it
// decides through the conductors, until it is stopped or a conductor answers
// BAD_ACTION. A report runs beside the probing, never in its way: a conductor
// that is slow or down delays no round, and every report carries the latest
// decided status (latest wins: nothing queues up).
//
// An executor holds thousands of these, and V8 lets old space grow to a few
// times what survives a collection, so what an action keeps between rounds is
// kept small: one object with one AbortController, one suspended async frame,
// at most one timer and no closures of its own. What actions have in common
// (dependencies, settings, decisions) is shared, not copied.
// Ours: abort-controller-x computes its backoff only inside retry(), and a report is not retried in a loop.
import { backoffDelayMs, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { MonitorSettings } from '../common/monitor-policy.js';
import {
  decide,
  initialDecision,
  sameDecision,
  startingDecision,
  type DecidedStatus,
  type Decision,
  type StatusReason,
} from './decision.js';
import { probeRound, type Probe, type ProbeTarget, type RoundResult } from './probe.js';
import type { ReportOutcome, Reporter } from './report.js';

export interface ActionSpec {
  actionId: string;
  vimId: string;
  /** auth_url, with the VIM's CAs when it has some. */
  authUrl: ProbeTarget;
  settings: MonitorSettings;
  /** The status stored for the VIM when the action was made, when the caller knows it. */
  knownStatus?: DecidedStatus;
  /** The reason stored with knownStatus; unset reads as ''. */
  knownReason?: StatusReason;
  /** Report the first round's decision at once, news or not (a successor takes over with it). */
  reportFirstRound?: boolean;
}

export interface RoundRecord extends RoundResult {
  /** Wall-clock start of the round, ms since the epoch. */
  startedAtMs: number;
  decidedStatus: DecidedStatus;
}

export interface ReplyRecord {
  atMs: number;
  reportedStatus: DecidedStatus;
  reportedReason: StatusReason;
  /** The conductor's answer; undefined when it answered with an error or not at all. */
  storedStatus?: DecidedStatus | 'BAD_ACTION';
  error: string;
  /** Sent because a heartbeat was due, not because the status changed. */
  heartbeat: boolean;
}

/** Told of every round and every reply, synchronously; must not throw or block. */
export interface ActionObserver {
  round(action: MonitorAction, round: RoundRecord): void;
  reply(action: MonitorAction, reply: ReplyRecord): void;
}

/** Totals over every action of an executor. */
export interface ActionCounters {
  rounds: number;
  reports: number;
  /** Reports no conductor answered. */
  unansweredReports: number;
  /** Reports a conductor refused with an error other than BAD_ACTION. */
  rejectedReports: number;
}

export function createActionCounters(): ActionCounters {
  return { rounds: 0, reports: 0, unansweredReports: 0, rejectedReports: 0 };
}

export interface ActionDeps {
  logger: Logger;
  probe: Probe;
  reporter: Reporter;
  /** Retry delays while no conductor answers. */
  backoff: BackoffOptions;
  observer?: ActionObserver;
  counters?: ActionCounters;
  /** Told once, synchronously, when the action has ended, before run()'s promise settles. */
  onEnd?: (action: MonitorAction, reason: StopReasonName) => void;
}

/**
 * Why an action ended: stopped by StopAction, fenced off by a conductor's
 * BAD_ACTION, or ended by the executor's shutdown.
 */
export type StopReasonName = 'STOPPED' | 'BAD_ACTION' | 'SHUTDOWN';

export class MonitorAction {
  readonly startedAtMs = Date.now();
  decision: Decision = initialDecision;
  rounds = 0;
  lastRound: RoundRecord | undefined = undefined;
  lastReply: ReplyRecord | undefined = undefined;

  private readonly counters: ActionCounters;
  // Ends this action's work: stop(), run()'s signal, or BAD_ACTION.
  private readonly own = new AbortController();
  // Set by whoever ends the action first.
  private endReason: StopReasonName | undefined = undefined;
  private running: Promise<StopReasonName> | undefined = undefined;
  // What the conductor holds for this VIM (status and reason), as far as this action knows.
  private storedStatus: DecidedStatus | undefined;
  private storedReason: StatusReason;
  // The status (and reason) of the last report a conductor answered. When its answer
  // differs from what was sent, sending the same again at once would not change it.
  private answeredStatus: DecidedStatus | undefined = undefined;
  private answeredReason: StatusReason = '';
  private nextHeartbeatAt = 0;
  private unansweredInRow = 0;
  private retryNotBefore = 0;
  private rejectedStatus: DecidedStatus | undefined = undefined;
  private rejectedReason: StatusReason = '';
  private rejectedRetryAt = 0;
  private reportInFlight: Promise<void> | undefined = undefined;
  private wakeUp: (() => void) | undefined = undefined;
  private sleepTimer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly spec: ActionSpec,
    private readonly deps: ActionDeps,
  ) {
    this.counters = deps.counters ?? createActionCounters();
    this.storedStatus = spec.knownStatus;
    this.storedReason = spec.knownReason ?? '';
    this.decision = startingDecision(spec.knownStatus, this.storedReason);
  }

  /**
   * Runs the action until stop(), `signal` or a conductor's BAD_ACTION ends it;
   * resolves to why it ended. Runs once: a later call returns the same promise.
   */
  run(signal?: AbortSignal): Promise<StopReasonName> {
    return (this.running ??= this.loop(signal));
  }

  /** Ends the action (its probe and report in flight too); run()'s promise settles soon after. */
  stop(reason: StopReasonName = 'STOPPED'): void {
    this.endReason ??= reason;
    this.own.abort();
    this.wake();
  }

  /** run()'s signal aborted. The action itself is the listener: no closure per action. */
  handleEvent(): void {
    this.stop();
  }

  // One async frame for the whole life of the action: a second one awaiting
  // it would be kept for as long as the action runs.
  private async loop(parent: AbortSignal | undefined): Promise<StopReasonName> {
    const signal = this.own.signal;
    if (parent?.aborted) this.stop();
    else parent?.addEventListener('abort', this, { once: true });
    const { intervalMs, reportIntervalMs } = this.spec.settings;
    let nextRoundAt = performance.now();
    // Due from the start when asked to report the first round: the first round still goes
    // first (the loop probes before it reports), so that report carries its decision.
    this.nextHeartbeatAt = this.spec.reportFirstRound ? nextRoundAt : nextRoundAt + reportIntervalMs;
    try {
      while (!signal.aborted) {
        const now = performance.now();
        if (now >= nextRoundAt) {
          await this.probe(signal);
          // Measured from this round's start: a round that overran is followed at
          // once by the next, with no burst to catch up on the ones it displaced.
          nextRoundAt = now + intervalMs;
          continue;
        }
        let wakeAt = nextRoundAt;
        if (!this.reportInFlight) {
          const dueAt = this.reportDueAt(now);
          if (dueAt <= now) {
            this.reportInFlight = this.report(signal);
            continue;
          }
          wakeAt = Math.min(wakeAt, dueAt);
        }
        await this.sleep(wakeAt - now);
      }
    } catch (err) {
      this.deps.logger.error('action failed', { ...this.ids(), err });
    } finally {
      parent?.removeEventListener('abort', this);
      this.own.abort();
      clearTimeout(this.sleepTimer);
    }
    await this.reportInFlight; // aborted with the loop; settles at once
    const reason = this.endReason ?? 'STOPPED';
    this.deps.onEnd?.(this, reason);
    return reason;
  }

  private async probe(signal: AbortSignal): Promise<void> {
    const { settings } = this.spec;
    const startedAtMs = Date.now();
    const result = await probeRound(this.deps.probe, this.spec.authUrl, settings, signal);
    if (signal.aborted) return;
    const previous = this.decision;
    this.decision = decide(previous, result.ok, settings.unreachableAfter, result.reason);
    this.rounds++;
    this.counters.rounds++;
    // Kept until the next round: made whole in one go, so that it takes one small object.
    const round: RoundRecord = {
      ok: result.ok,
      attempts: result.attempts,
      successes: result.successes,
      latencyMs: result.latencyMs,
      error: result.error,
      reason: result.reason,
      credentialsChecked: result.credentialsChecked,
      startedAtMs,
      decidedStatus: this.decision.status,
    };
    this.lastRound = round;
    this.deps.observer?.round(this, round);
    if (previous.status !== this.decision.status || previous.reason !== this.decision.reason) {
      const fields = {
        vimId: this.spec.vimId,
        actionId: this.spec.actionId,
        from: previous.status,
        to: this.decision.status,
        reason: this.decision.reason || undefined,
        error: result.error || undefined,
      };
      if (previous.status === 'PENDING') this.deps.logger.debug('vim status decided', fields);
      else this.deps.logger.info('vim status decided', fields);
    }
  }

  /** Whether the decided status (with its reason) is news to the conductor. */
  private changed(): boolean {
    const { status, reason = '' } = this.decision;
    return (
      this.rounds > 0 &&
      !sameDecision(status, reason, this.storedStatus, this.storedReason) &&
      !sameDecision(status, reason, this.answeredStatus, this.answeredReason)
    );
  }

  /** When the next report is due (performance.now() time), given what is known now. */
  private reportDueAt(now: number): number {
    let at = this.changed() ? now : this.nextHeartbeatAt;
    // A refused status is offered again at the heartbeat rate, not in a loop;
    // a different status is news and goes at once.
    if (sameDecision(this.decision.status, this.decision.reason ?? '', this.rejectedStatus, this.rejectedReason))
      at = Math.max(at, this.rejectedRetryAt);
    return Math.max(at, this.retryNotBefore);
  }

  private async report(signal: AbortSignal): Promise<void> {
    const { status, reason = '' } = this.decision;
    const heartbeat = !this.changed();
    const sentAt = performance.now();
    this.counters.reports++;
    let outcome: ReportOutcome;
    try {
      outcome = await this.deps.reporter({ vimId: this.spec.vimId, actionId: this.spec.actionId, status, reason, heartbeat }, signal);
    } catch (err) {
      outcome = { kind: 'unavailable', error: (err as Error)?.message ?? String(err) };
    }
    this.reportInFlight = undefined;
    if (signal.aborted) return;
    try {
      this.settle(status, reason, heartbeat, sentAt, outcome);
    } catch (err) {
      // Nothing awaits this promise until the action ends: never let it reject.
      this.deps.logger.error('settling a report failed', { ...this.ids(), err });
    }
    this.wake();
  }

  private settle(status: DecidedStatus, reason: StatusReason, heartbeat: boolean, sentAt: number, outcome: ReportOutcome): void {
    const now = performance.now();
    const reply: ReplyRecord = {
      atMs: Date.now(),
      reportedStatus: status,
      reportedReason: reason,
      storedStatus: undefined,
      error: '',
      heartbeat,
    };
    const { logger } = this.deps;
    switch (outcome.kind) {
      case 'stored':
        if (this.unansweredInRow > 0) logger.info('conductor answered again', { ...this.ids(), unansweredReports: this.unansweredInRow });
        this.storedStatus = outcome.status;
        this.storedReason = outcome.reason;
        this.answeredStatus = status;
        this.answeredReason = reason;
        this.unansweredInRow = 0;
        this.retryNotBefore = 0;
        this.rejectedStatus = undefined;
        this.nextHeartbeatAt = sentAt + this.spec.settings.reportIntervalMs;
        reply.storedStatus = outcome.status;
        break;
      case 'bad-action':
        reply.storedStatus = 'BAD_ACTION';
        logger.info("conductor answered BAD_ACTION: this action is no longer the VIM's; exiting", this.ids());
        this.stop('BAD_ACTION');
        break;
      case 'unavailable':
        this.counters.unansweredReports++;
        if (this.unansweredInRow === 0)
          logger.warn('no conductor answered; retrying with backoff', { ...this.ids(), error: outcome.error });
        this.retryNotBefore = now + backoffDelayMs(this.unansweredInRow, this.deps.backoff);
        this.unansweredInRow++;
        reply.error = outcome.error;
        break;
      case 'rejected':
        this.counters.rejectedReports++;
        // Logged once per refused status, then only counted: this repeats at the heartbeat rate.
        if (!sameDecision(status, reason, this.rejectedStatus, this.rejectedReason))
          logger.warn('conductor refused the report', { ...this.ids(), status, reason: reason || undefined, error: outcome.error });
        this.rejectedStatus = status;
        this.rejectedReason = reason;
        this.rejectedRetryAt = now + this.spec.settings.reportIntervalMs;
        this.unansweredInRow = 0;
        this.retryNotBefore = 0;
        reply.error = outcome.error;
        break;
    }
    this.lastReply = reply;
    this.deps.observer?.reply(this, reply);
  }

  private ids(): Record<string, unknown> {
    return { vimId: this.spec.vimId, actionId: this.spec.actionId };
  }

  /**
   * Waits ms, or less when woken (a report settled, or the action is ending).
   * Not abort-controller-x's delay(): it takes an abort listener and closures
   * per wait, and thousands of actions each keep only this one timer.
   */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wakeUp = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  private wake(): void {
    const wakeUp = this.wakeUp;
    if (!wakeUp) return;
    this.wakeUp = undefined;
    clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    wakeUp();
  }
}
