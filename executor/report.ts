// Reporting to the conductors: one UpdateVim call, its answer sorted into what
// the action should do next. The only place the action's transport shows.
import { ClientError, Status } from 'nice-grpc';
import PQueue from 'p-queue';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { VimMonitorAction2ConductorClient } from '../gen/vimmon/conductor/v1/conductor.js';
import { reasonFromProto, reasonToProto, statusFromProto, statusToProto } from '../common/vim-status.js';
import type { DecidedStatus, StatusReason } from './decision.js';

export type ReportOutcome =
  /** A conductor stored the report; `status` and `reason` are what it now holds. */
  | { kind: 'stored'; status: DecidedStatus; reason: StatusReason }
  /** This action is not the VIM's current one (or the VIM is gone): exit. */
  | { kind: 'bad-action' }
  /** No conductor answered: retry with backoff, with the latest status. */
  | { kind: 'unavailable'; error: string }
  /** A conductor answered with an error retrying will not fix soon: retry at the heartbeat rate. */
  | { kind: 'rejected'; error: string };

export interface Report {
  vimId: string;
  actionId: string;
  status: DecidedStatus;
  /** Unset or '' unless status is UNREACHABLE and the VIM refused. */
  reason?: StatusReason;
  /** The status the conductor already holds, sent to say the action lives: waits behind news. */
  heartbeat?: boolean;
}

export type Reporter = (report: Report, signal: AbortSignal) => Promise<ReportOutcome>;

// Codes that say "no conductor could take this now", as opposed to a conductor
// that took it and refused it.
const retryableCodes: ReadonlySet<Status> = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
  Status.ABORTED,
  Status.CANCELLED,
]);

// grpc-js's own INTERNAL for a stream that ended with no gRPC status: a proxy
// or a conductor that died mid-call, not an answer. Repeating a report is safe.
const transportFailure = /RST_STREAM|without gRPC status|Received HTTP status code/i;

export interface ConductorReporterOptions {
  client: VimMonitorAction2ConductorClient;
  /** Deadline of one UpdateVim call. */
  timeoutMs: number;
}

export function createConductorReporter({ client, timeoutMs }: ConductorReporterOptions): Reporter {
  return async (report, signal) => {
    if (signal.aborted) return { kind: 'unavailable', error: 'aborted' };
    const call = new AbortController();
    const onAbort = () => call.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      call.abort();
    }, timeoutMs);
    try {
      const response = await client.updateVim(
        {
          vimId: report.vimId,
          actionId: report.actionId,
          status: statusToProto(report.status),
          statusReason: reasonToProto(report.reason ?? ''),
        },
        { signal: call.signal },
      );
      if (response.status === VimStatus.VIM_STATUS_BAD_ACTION) return { kind: 'bad-action' };
      const stored = statusFromProto(response.status);
      if (stored === undefined) return { kind: 'rejected', error: `conductor answered an unexpected status ${response.status}` };
      // A conductor that knows no reasons answers none: it stored the status alone.
      return { kind: 'stored', status: stored, reason: reasonFromProto(response.statusReason) ?? '' };
    } catch (err) {
      if (timedOut) return { kind: 'unavailable', error: `DEADLINE_EXCEEDED: no answer within ${timeoutMs}ms` };
      if (signal.aborted) return { kind: 'unavailable', error: 'aborted' };
      if (err instanceof ClientError) {
        const text = `${Status[err.code]}: ${err.details}`;
        const retryable = retryableCodes.has(err.code) || (err.code === Status.INTERNAL && transportFailure.test(err.details));
        return retryable ? { kind: 'unavailable', error: text } : { kind: 'rejected', error: text };
      }
      // Not a gRPC status at all (a channel that cannot even be used): nobody answered.
      return { kind: 'unavailable', error: (err as Error)?.message ?? String(err) };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  };
}

/**
 * At most maxInFlight UpdateVim calls from this executor at once; the other actions' reports wait
 * here (one per action at most: an action awaits its report), a status change ahead of heartbeats,
 * and a report's deadline starts when it is sent. Without it, an executor that fell behind (at
 * about 97,000 VIMs on 2 cores, SCALING.md) had thousands of calls out, they missed their deadline
 * at the conductors, and every action sent its own again after its backoff: the executors spent
 * their CPU on failing calls instead of probes and reports. With the bound, overload makes
 * heartbeats late instead.
 */
export function limitReportsInFlight(reporter: Reporter, maxInFlight: number): Reporter {
  const queue = new PQueue({ concurrency: maxInFlight });
  return async (report, signal) => {
    try {
      return await queue.add(() => reporter(report, signal), { priority: report.heartbeat ? 0 : 1, signal });
    } catch (err) {
      // Stopped while waiting: p-queue takes it out of the queue and rejects.
      if (signal.aborted) return { kind: 'unavailable', error: 'aborted' };
      throw err;
    }
  };
}
