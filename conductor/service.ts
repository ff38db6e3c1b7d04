// vimmon.conductor.v1.VimMonitorAction2Conductor: validate, store through the
// fence, answer the stored status or BAD_ACTION. No state of its own.
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { VimMonitorAction2ConductorServiceImplementation } from '../gen/vimmon/conductor/v1/conductor.js';
import type { Logger } from '../common/logger.js';
import type { FencedStatusWriter } from './fencing.js';
import { statusToProto } from '../common/vim-status.js';
import { parseReport } from './report.js';

export interface ConductorServiceOptions {
  logger: Logger;
  writer: FencedStatusWriter;
}

export function createConductorService({ logger, writer }: ConductorServiceOptions): VimMonitorAction2ConductorServiceImplementation {
  return {
    async updateVim(request) {
      const report = parseReport(request);
      const outcome = await writer.record(report);
      if (!outcome.accepted) {
        logger.debug('report fenced', { vimId: report.vimId, actionId: report.actionId });
        return { status: VimStatus.VIM_STATUS_BAD_ACTION };
      }
      if (outcome.changed) logger.info('vim status changed', { vimId: report.vimId, actionId: report.actionId, status: outcome.status });
      return { status: statusToProto(outcome.status) };
    },
  };
}
