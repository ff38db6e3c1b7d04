// vimmon.executor.v1.ExecutorService: requests validated at the edge into
// action specs, actions and their events turned back into messages.
import { randomUUID } from 'node:crypto';
import { maxReplyBytes } from '../common/reply-size.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import {
  StopReason,
  type Action,
  type ExecutorServiceImplementation,
  type StartActionRequest,
  type VimAuth,
  type WatchActionsResponse,
} from '../gen/vimmon/executor/v1/executor_service.js';
import { parseAuthUrl } from '../common/auth-url.js';
import { checkCaCertificates } from '../common/ca-certificates.js';
import { msToDuration } from '../common/duration.js';
import { InvalidArgumentError } from '../common/errors.js';
import { isUuid, uuidField } from '../common/uuid.js';
import { callLogger, type Logger } from '../common/logger.js';
import { resolveMonitorPolicy, toMonitorPolicy, type MonitorSettings } from '../common/monitor-policy.js';
import { reasonFromProto, reasonToProto, statusFromProto, statusToProto } from '../common/vim-status.js';
import { checkCredentialsFitType, credentialsKindOf } from '../common/vim-credentials.js';
import { VimType } from '../gen/vimmon/tacker/v1/vim_service.js';
import type { ActionSpec, MonitorAction, ReplyRecord, RoundRecord } from './action.js';
import type { ActionEvent, ActionEventHub, StopReasonName } from './action-events.js';
import type { ProbeTarget } from './probe.js';
import type { ActionRegistry } from './registry.js';
import { TrustStore } from './trust.js';
import { AuthCheck } from './vim-auth.js';

export interface ExecutorServiceOptions {
  logger: Logger;
  registry: ActionRegistry;
  events: ActionEventHub;
  /** Events a WatchActions stream may fall behind before it is ended. */
  watchQueueLimit: number;
  /** The VIMs' CA certificates as TLS contexts; default a store of this service's own. */
  trust?: TrustStore;
  /** This process's id in ListActions answers; default a new random one. */
  instanceId?: string;
}

export function createExecutorService({
  logger,
  registry,
  events,
  watchQueueLimit,
  trust = new TrustStore(),
  instanceId = randomUUID(),
}: ExecutorServiceOptions): ExecutorServiceImplementation {
  return {
    async startAction(request, context) {
      const spec = parseStartAction(request, trust);
      const { action, alreadyRunning } = registry.start(spec);
      if (!alreadyRunning)
        callLogger(context, logger).debug('action started', { vimId: spec.vimId, actionId: spec.actionId, authUrl: spec.authUrl.href });
      return { action: toActionMessage(action), alreadyRunning };
    },

    async stopAction(request) {
      const actionId = uuidField('action_id', request.actionId);
      return { stopped: await registry.stop(actionId) };
    },

    async listActions(request) {
      const vimIds = vimIdFilter(request.vimIds);
      const size = actionPageSize(request.pageSize);
      const after = decodeActionPageToken(request.pageToken);
      const actions: Action[] = [];
      let bytes = 0;
      let more = false;
      for (const action of registry.ordered(vimIds, after)) {
        if (actions.length === size) {
          more = true;
          break;
        }
        const message = toActionMessage(action);
        const messageBytes = actionMessageBytes(message);
        // Built one by one and cut as it goes: a page of 5,000 is never made whole first.
        if (actions.length > 0 && bytes + messageBytes > maxReplyBytes) {
          more = true;
          break;
        }
        actions.push(message);
        bytes += messageBytes;
      }
      return { actions, nextPageToken: more ? encodeActionPageToken(actions[actions.length - 1]!.actionId) : '', instanceId };
    },

    async *watchActions(request, context) {
      const vimIds = vimIdFilter(request.vimIds);
      for await (const event of events.watch(vimIds, watchQueueLimit, context.signal)) {
        yield toEventMessage(event);
      }
    },
  };
}

export const actionPageSizes = { default: 1_000, max: 5_000 };

function actionPageSize(n: number): number {
  if (n < 0) throw new InvalidArgumentError('page_size', 'must not be negative');
  if (n === 0) return actionPageSizes.default;
  return Math.min(n, actionPageSizes.max);
}

/** The page token is the last action id listed, base64url: opaque to callers. */
function encodeActionPageToken(actionId: string): string {
  return Buffer.from(actionId).toString('base64url');
}

function decodeActionPageToken(token: string): string {
  if (!token) return '';
  const actionId = Buffer.from(token, 'base64url').toString('utf8');
  if (!isUuid(actionId) || encodeActionPageToken(actionId) !== token) throw new InvalidArgumentError('page_token', 'malformed');
  return actionId.toLowerCase();
}

/**
 * At least the encoded size of an Action message: 300 bytes for its ids,
 * policy, times and counters (about 200 when measured) and the UTF-8 of its
 * texts.
 */
function actionMessageBytes(a: Action): number {
  return 300 + Buffer.byteLength(a.authUrl) + Buffer.byteLength(a.lastRound?.error ?? '') + Buffer.byteLength(a.lastReply?.error ?? '');
}

function vimIdFilter(vimIds: string[]): ReadonlySet<string> | undefined {
  if (vimIds.length === 0) return undefined;
  return new Set(vimIds.map((id, i) => uuidField(`vim_ids[${i}]`, id)));
}

export function parseStartAction(request: StartActionRequest, trust: TrustStore): ActionSpec {
  const actionId = uuidField('action_id', request.actionId);
  const vimId = uuidField('vim_id', request.vimId);
  const url = parseAuthUrl(request.authUrl, 'auth_url');
  const settings = resolveMonitorPolicy(request.monitor, 'monitor');
  const authUrl: ProbeTarget = {
    ...url,
    trust: request.sslCaCert ? trust.trust(checkCaCertificates(request.sslCaCert, 'ssl_ca_cert')) : undefined,
    auth: parseVimAuth(request.auth, settings),
  };
  let knownStatus: ActionSpec['knownStatus'];
  if (request.knownStatus !== VimStatus.VIM_STATUS_UNSPECIFIED) {
    knownStatus = statusFromProto(request.knownStatus);
    if (!knownStatus)
      throw new InvalidArgumentError('known_status', 'must be unset, VIM_STATUS_PENDING, VIM_STATUS_REACHABLE or VIM_STATUS_UNREACHABLE');
  }
  const knownReason = reasonFromProto(request.knownStatusReason);
  if (knownReason === undefined) throw new InvalidArgumentError('known_status_reason', `unknown value ${request.knownStatusReason}`);
  return { actionId, vimId, authUrl, settings, knownStatus, knownReason, reportFirstRound: request.reportFirstRound };
}

/**
 * What PROBE_KIND_AUTH authenticates with, checked as the Tacker server checks
 * it. Refused with any other probe: an executor holds no secret it does not use.
 */
function parseVimAuth(auth: VimAuth | undefined, settings: MonitorSettings): AuthCheck | undefined {
  if (settings.probe !== 'auth') {
    if (auth) throw new InvalidArgumentError('auth', 'only with PROBE_KIND_AUTH');
    return undefined;
  }
  if (!auth) throw new InvalidArgumentError('auth', 'required with PROBE_KIND_AUTH');
  let type: 'openstack' | 'kubernetes';
  if (auth.type === VimType.VIM_TYPE_KUBERNETES) type = 'kubernetes';
  else if (auth.type === VimType.VIM_TYPE_OPENSTACK || auth.type === VimType.VIM_TYPE_UNSPECIFIED) type = 'openstack';
  else throw new InvalidArgumentError('auth.type', `unknown VIM type ${auth.type}`);
  if (auth.project.length > 255) throw new InvalidArgumentError('auth.project', 'longer than 255 characters');
  const credentials = credentialsKindOf(auth.credentials, 'auth.credentials', {});
  if (credentials.kind === 'none') throw new InvalidArgumentError('auth.credentials', 'required with PROBE_KIND_AUTH');
  checkCredentialsFitType(credentials, type, 'auth.credentials.oidc');
  const oidcTokenUrl = credentials.oidcTokenUrl
    ? parseAuthUrl(credentials.oidcTokenUrl, 'auth.credentials.oidc.oidc_token_url')
    : undefined;
  return new AuthCheck({ type, project: auth.project, credentials, oidcTokenUrl }, settings.reportIntervalMs);
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
    statusReason: reasonToProto(round.reason),
    credentialsChecked: round.credentialsChecked,
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
    decidedStatusReason: reasonToProto(action.decision.reason ?? ''),
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
