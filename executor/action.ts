// One monitor action: probes one VIM every interval and reports what it
// decides through the conductors, until it is stopped or a conductor answers
// BAD_ACTION. Probing and reporting are two loops of their own, so a conductor
// that is slow or down never delays a probe round, and a report always carries
// the latest decided status (latest wins: nothing queues up).
import type { AuthUrl } from '../common/auth-url.js';
import { backoffDelayMs, delay, linkedAbortController, type BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { MonitorSettings } from '../common/monitor-policy.js';
import { decide, initialDecision, type DecidedStatus, type Decision } from './decision.js';
import { probeRound, type Probe } from './probe.js';
import type { Reporter } from './report.js';

export interface ActionSpec {
  actionId: string;
  vimId: string;
  authUrl: AuthUrl;
  settings: MonitorSettings;
  /** The status stored for the VIM when the action was made, when the caller knows it. */
  knownStatus?: DecidedStatus;
}

export interface RoundRecord {
  /** Wall-clock start of the round, ms since the epoch. */
  startedAtMs: number;
  ok: boolean;
  attempts: number;
  successes: number;
  latencyMs: number;
  error: string;
  decidedStatus: DecidedStatus;
}

export interface ReplyRecord {
  atMs: number;
  reportedStatus: DecidedStatus;
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
}

/** Why run() returned: a conductor fenced the action off, or its signal aborted. */
export type RunEnd = 'bad-action' | 'aborted';

export class MonitorAction {
  readonly startedAtMs = Date.now();
  decision: Decision = initialDecision;
  rounds = 0;
  lastRound: RoundRecord | undefined;
  lastReply: ReplyRecord | undefined;

  private readonly logger: Logger;
  private readonly counters: ActionCounters;
  // What the conductor holds for this VIM, as far as this action knows.
  private storedStatus: DecidedStatus | undefined;
  // The status of the last report a conductor answered. When its answer differs
  // from what was sent, sending the same again at once would not change it.
  private answeredStatus: DecidedStatus | undefined;
  private unansweredInRow = 0;
  private retryNotBefore = 0;
  private rejected: { status: DecidedStatus; retryAt: number } | undefined;
  private wakeReporter: (() => void) | undefined;

  constructor(
    readonly spec: ActionSpec,
    private readonly deps: ActionDeps,
  ) {
    this.logger = deps.logger.child({ vimId: spec.vimId, actionId: spec.actionId });
    this.counters = deps.counters ?? createActionCounters();
    this.storedStatus = spec.knownStatus;
  }

  async run(signal: AbortSignal): Promise<RunEnd> {
    const own = linkedAbortController(signal);
    let end: RunEnd = 'aborted';
    const fencedOff = () => {
      end = 'bad-action';
      own.abort();
    };
    try {
      await Promise.all([this.probeLoop(own.signal), this.reportLoop(own.signal, fencedOff)]);
    } finally {
      own.abort(); // unlinks from the parent signal
    }
    return end;
  }

  private async probeLoop(signal: AbortSignal): Promise<void> {
    const { settings } = this.spec;
    while (!signal.aborted) {
      const started = performance.now();
      const startedAtMs = Date.now();
      const result = await probeRound(this.deps.probe, this.spec.authUrl, settings, signal);
      if (signal.aborted) return;
      const previous = this.decision;
      this.decision = decide(previous, result.ok, settings.unreachableAfter);
      this.rounds++;
      this.counters.rounds++;
      const round: RoundRecord = { startedAtMs, ...result, decidedStatus: this.decision.status };
      this.lastRound = round;
      this.deps.observer?.round(this, round);
      if (previous.status !== this.decision.status) {
        const fields = { from: previous.status, to: this.decision.status, error: result.error || undefined };
        if (previous.status === 'PENDING') this.logger.debug('vim status decided', fields);
        else this.logger.info('vim status decided', fields);
      }
      if (this.rounds === 1 || previous.status !== this.decision.status) this.wakeReporter?.();
      // Measured from this round's start: a round that overran is followed at
      // once by the next, with no burst to catch up on the ones it displaced.
      await delay(started + settings.intervalMs - performance.now(), signal);
    }
  }

  /** When the next report is due (performance.now() time), given what is known now. */
  private reportDueAt(now: number, nextHeartbeatAt: number): { at: number; heartbeat: boolean } {
    const status = this.decision.status;
    const changed = this.rounds > 0 && status !== this.storedStatus && status !== this.answeredStatus;
    let at = changed ? now : nextHeartbeatAt;
    // A refused status is offered again at the heartbeat rate, not in a loop;
    // a different status is news and goes at once.
    if (this.rejected && this.rejected.status === status) at = Math.max(at, this.rejected.retryAt);
    return { at: Math.max(at, this.retryNotBefore), heartbeat: !changed };
  }

  private async reportLoop(signal: AbortSignal, fencedOff: () => void): Promise<void> {
    const { reportIntervalMs } = this.spec.settings;
    let nextHeartbeatAt = performance.now() + reportIntervalMs;
    while (!signal.aborted) {
      const now = performance.now();
      const due = this.reportDueAt(now, nextHeartbeatAt);
      if (due.at > now) {
        await this.sleepReporter(due.at - now, signal);
        continue;
      }
      const status = this.decision.status;
      this.counters.reports++;
      const outcome = await this.deps.reporter({ vimId: this.spec.vimId, actionId: this.spec.actionId, status }, signal);
      if (signal.aborted) return;
      const at = performance.now();
      const reply: ReplyRecord = { atMs: Date.now(), reportedStatus: status, error: '', heartbeat: due.heartbeat };
      switch (outcome.kind) {
        case 'stored':
          if (this.unansweredInRow > 0) this.logger.info('conductor answered again', { unansweredReports: this.unansweredInRow });
          this.storedStatus = outcome.status;
          this.answeredStatus = status;
          this.unansweredInRow = 0;
          this.retryNotBefore = 0;
          this.rejected = undefined;
          nextHeartbeatAt = now + reportIntervalMs;
          reply.storedStatus = outcome.status;
          break;
        case 'bad-action':
          reply.storedStatus = 'BAD_ACTION';
          this.logger.info('conductor answered BAD_ACTION: this action is no longer the VIM\'s; exiting');
          this.record(reply);
          fencedOff();
          return;
        case 'unavailable':
          this.counters.unansweredReports++;
          if (this.unansweredInRow === 0) this.logger.warn('no conductor answered; retrying with backoff', { error: outcome.error });
          this.retryNotBefore = at + backoffDelayMs(this.unansweredInRow, this.deps.backoff);
          this.unansweredInRow++;
          reply.error = outcome.error;
          break;
        case 'rejected':
          this.counters.rejectedReports++;
          // Logged once per refused status, then only counted: this repeats at the heartbeat rate.
          if (this.rejected?.status !== status) this.logger.warn('conductor refused the report', { status, error: outcome.error });
          this.rejected = { status, retryAt: at + reportIntervalMs };
          this.unansweredInRow = 0;
          this.retryNotBefore = 0;
          reply.error = outcome.error;
          break;
      }
      this.record(reply);
    }
  }

  private record(reply: ReplyRecord): void {
    this.lastReply = reply;
    this.deps.observer?.reply(this, reply);
  }

  /** Waits until ms pass, the decided status changes, or signal aborts. */
  private sleepReporter(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', wake);
        this.wakeReporter = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      signal.addEventListener('abort', wake, { once: true });
      this.wakeReporter = wake;
    });
  }
}
