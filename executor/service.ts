// vimmon.executor.v1.ExecutorService: requests validated at the edge into
// action specs, actions and their events turned back into messages.
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import {
  StopReason,
  type Action,
  type ExecutorServiceImplementation,
  type StartActionRequest,
  type WatchActionsResponse,
} from '../gen/vimmon/executor/v1/executor_service.js';
import { parseAuthUrl } from '../common/auth-url.js';
import { msToDuration } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { uuidField } from '../common/uuid.js';
import type { Logger } from '../common/logger.js';
import { resolveMonitorPolicy, toMonitorPolicy } from '../common/monitor-policy.js';
import { statusFromProto, statusToProto } from '../common/vim-status.js';
import type { ActionSpec, MonitorAction, ReplyRecord, RoundRecord } from './action.js';
import type { ActionEvent, ActionEventHub, StopReasonName } from './action-events.js';
import type { ActionRegistry } from './registry.js';

export interface ExecutorServiceOptions {
  logger: Logger;
  registry: ActionRegistry;
  events: ActionEventHub;
  /** Events a WatchActions stream may fall behind before it is ended. */
  watchQueueLimit: number;
}

export function createExecutorService({ logger, registry, events, watchQueueLimit }: ExecutorServiceOptions): ExecutorServiceImplementation {
  return {
    async startAction(request) {
      const spec = parseStartAction(request);
      const { action, alreadyRunning } = registry.start(spec);
      if (!alreadyRunning) logger.debug('action started', { vimId: spec.vimId, actionId: spec.actionId, authUrl: spec.authUrl.href });
      return { action: toActionMessage(action), alreadyRunning };
    },

    async stopAction(request) {
      const actionId = uuidField('action_id', request.actionId);
      return { stopped: await registry.stop(actionId) };
    },

    async listActions(request) {
      const vimIds = vimIdFilter(request.vimIds);
      return { actions: registry.list(vimIds).map(toActionMessage) };
    },

    async *watchActions(request, context) {
      const vimIds = vimIdFilter(request.vimIds);
      for await (const event of events.watch(vimIds, watchQueueLimit, context.signal)) {
        yield toEventMessage(event);
      }
    },
  };
}


function vimIdFilter(vimIds: string[]): ReadonlySet<string> | undefined {
  if (vimIds.length === 0) return undefined;
  return new Set(vimIds.map((id, i) => uuidField(`vim_ids[${i}]`, id)));
}

export function parseStartAction(request: StartActionRequest): ActionSpec {
  const actionId = uuidField('action_id', request.actionId);
  const vimId = uuidField('vim_id', request.vimId);
  const authUrl = parseAuthUrl(request.authUrl, 'auth_url');
  const settings = resolveMonitorPolicy(request.monitor, 'monitor');
  let knownStatus: ActionSpec['knownStatus'];
  if (request.knownStatus !== VimStatus.VIM_STATUS_UNSPECIFIED) {
    knownStatus = statusFromProto(request.knownStatus);
    if (!knownStatus) throw new InvalidArgumentError('known_status', 'must be unset, VIM_STATUS_PENDING, VIM_STATUS_REACHABLE or VIM_STATUS_UNREACHABLE');
  }
  return { actionId, vimId, authUrl, settings, knownStatus };
}

const stopReasons: Readonly<Record<StopReasonName, StopReason>> = {
  STOPPED: StopReason.STOP_REASON_STOPPED,
  BAD_ACTION: StopReason.STOP_REASON_BAD_ACTION,
  SHUTDOWN: StopReason.STOP_REASON_SHUTDOWN,
};

function storedStatusToProto(status: ReplyRecord['storedStatus']): VimStatus {
  if (status === undefined) return VimStatus.VIM_STATUS_UNSPECIFIED;
  return status === 'BAD_ACTION' ? VimStatus.VIM_STATUS_BAD_ACTION : statusToProto(status);
}

function toRoundMessage(round: RoundRecord) {
  return {
    startedAt: new Date(round.startedAtMs),
    ok: round.ok,
    attempts: round.attempts,
    successes: round.successes,
    latency: msToDuration(Math.round(round.latencyMs * 1000) / 1000),
    error: round.error,
    decidedStatus: statusToProto(round.decidedStatus),
  };
}

function toReplyMessage(reply: ReplyRecord) {
  return {
    reportedStatus: statusToProto(reply.reportedStatus),
    storedStatus: storedStatusToProto(reply.storedStatus),
    error: reply.error,
    heartbeat: reply.heartbeat,
  };
}

export function toActionMessage(action: MonitorAction): Action {
  const { spec } = action;
  return {
    actionId: spec.actionId,
    vimId: spec.vimId,
    authUrl: spec.authUrl.href,
    monitor: toMonitorPolicy(spec.settings),
    startedAt: new Date(action.startedAtMs),
    lastRound: action.lastRound && toRoundMessage(action.lastRound),
    lastReply: action.lastReply && toReplyMessage(action.lastReply),
    decidedStatus: statusToProto(action.decision.status),
    rounds: action.rounds,
    failedRoundsInRow: action.decision.failedRoundsInRow,
  };
}

function toEventMessage(event: ActionEvent): WatchActionsResponse {
  const { spec } = event.action;
  const message: WatchActionsResponse = { actionId: spec.actionId, vimId: spec.vimId, time: new Date(event.atMs) };
  switch (event.type) {
    case 'started':
      message.started = { action: toActionMessage(event.action) };
      break;
    case 'round':
      message.round = toRoundMessage(event.round);
      break;
    case 'reply':
      message.reply = toReplyMessage(event.reply);
      break;
    case 'stopped':
      message.stopped = { reason: stopReasons[event.reason] };
      break;
  }
  return message;
}
