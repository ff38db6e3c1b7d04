// vimmon.conductor.v1.VimMonitorAction2Conductor: validate, store through the
// fence, answer the stored status or BAD_ACTION. No state of its own.
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { VimMonitorAction2ConductorServiceImplementation } from '../gen/vimmon/conductor/v1/conductor.js';
import { ResourceExhaustedError } from '../common/errors.js';
import { callLogger, type Logger } from '../common/logger.js';
import type { ConductorMetrics } from '../common/metrics.js';
import type { FencedStatusWriter, ReportOutcome } from './fencing.js';
import { reasonToProto, statusToProto } from '../common/vim-status.js';
import { parseReport, type Report } from './report.js';

export interface ConductorServiceOptions {
  logger: Logger;
  writer: FencedStatusWriter;
  /** Counts reports by outcome. */
  metrics?: ConductorMetrics;
}

export function createConductorService({
  logger,
  writer,
  metrics,
}: ConductorServiceOptions): VimMonitorAction2ConductorServiceImplementation {
  return {
    async updateVim(request, context) {
      let outcome: ReportOutcome;
      let report: Report;
      try {
        report = parseReport(request);
        outcome = await writer.record(report, context.signal);
      } catch (err) {
        // Shed by a full queue: the executor reports again after a backoff.
        if (err instanceof ResourceExhaustedError) metrics?.reports.busy.inc();
        else metrics?.reports.rejected.inc();
        throw err;
      }
      if (!outcome.accepted) {
        metrics?.reports.fenced.inc();
        callLogger(context, logger).debug('report fenced', { vimId: report.vimId, actionId: report.actionId });
        return { status: VimStatus.VIM_STATUS_BAD_ACTION };
      }
      metrics?.reports.accepted.inc();
      if (outcome.changed)
        callLogger(context, logger).info('vim status changed', {
          vimId: report.vimId,
          actionId: report.actionId,
          status: outcome.status,
          reason: outcome.reason || undefined,
        });
      return { status: statusToProto(outcome.status), statusReason: reasonToProto(outcome.reason) };
    },
  };
}
