// @vimmon/client: the typed client of the vimmon mesh. Re-exports only.
export { createVimmonClient, type VimmonClient, type VimmonClientOptions, type VimmonRole } from './client.js';
export type { TlsOptions } from './channel.js';
export type { TokenSource } from './bearer-token.js';
export type { RetrySettings, VimmonCallOptions } from './call-defaults.js';
export { OptionError } from './option-error.js';
export { ResumeGapError, type StreamOptions } from './resumable-stream.js';

// Errors and metadata, for handling what a call throws.
export { ClientError, Metadata, Status, type CallOptions, type Client } from 'nice-grpc';
export type { DeadlineOptions } from 'nice-grpc-client-middleware-deadline';
export type { RetryOptions } from 'nice-grpc-client-middleware-retry';

// The contracts (every message is also under '@vimmon/client/<package>/v1').
export { VimStatus, vimStatusFromJSON, vimStatusToJSON } from '../../gen/vimmon/common/v1/status.js';
export {
  Credentials,
  DeregisterVimRequest,
  DeregisterVimResponse,
  GetVimRequest,
  GetVimResponse,
  ListVimAuditRequest,
  ListVimAuditResponse,
  ListVimEventsRequest,
  ListVimEventsResponse,
  ListVimsRequest,
  ListVimsResponse,
  MonitorPolicy,
  PasswordCredentials,
  ProbeKind,
  probeKindFromJSON,
  probeKindToJSON,
  RegisterVimRequest,
  RegisterVimResponse,
  TokenCredentials,
  UpdateVimRequest,
  UpdateVimResponse,
  Vim,
  VimAuditAction,
  VimAuditRecord,
  VimEvent,
  VimServiceDefinition,
  VimType,
  vimTypeFromJSON,
  vimTypeToJSON,
  WatchVimsRequest,
  WatchVimsResponse,
  type DeepPartial,
} from '../../gen/vimmon/tacker/v1/vim_service.js';
export {
  Alarm,
  AlarmFilter,
  AlarmType,
  alarmTypeFromJSON,
  alarmTypeToJSON,
  FaultEvent,
  FaultProfile,
  GetFaultProfileRequest,
  GetFaultProfileResponse,
  GetStatusRequest,
  GetStatusResponse,
  HostState,
  InspectorServiceDefinition,
  AffectedInstance,
  ListAffectedInstancesRequest,
  ListAffectedInstancesResponse,
  ListAlarmsRequest,
  ListAlarmsResponse,
  ListFaultProfilesRequest,
  ListFaultProfilesResponse,
  ListHostsDownRequest,
  ListHostsDownResponse,
  HostMaintenance,
  ListHostsInMaintenanceRequest,
  ListHostsInMaintenanceResponse,
  MaintenanceState,
  maintenanceStateFromJSON,
  maintenanceStateToJSON,
  SetHostMaintenanceRequest,
  SetHostMaintenanceResponse,
  ReportEventsRequest,
  ReportEventsResponse,
  SubscribeAlarmsRequest,
} from '../../gen/vimmon/inspector/v1/inspector_service.js';
export {
  Action,
  ActionStarted,
  ActionStopped,
  ConductorReply,
  ExecutorServiceDefinition,
  ListActionsRequest,
  ListActionsResponse,
  ProbeRound,
  StartActionRequest,
  StartActionResponse,
  StopActionRequest,
  StopActionResponse,
  StopReason,
  stopReasonFromJSON,
  stopReasonToJSON,
  WatchActionsRequest,
  WatchActionsResponse,
} from '../../gen/vimmon/executor/v1/executor_service.js';
// The conductor's UpdateVimRequest/Response share their names with VimService's: import them from '@vimmon/client/conductor/v1'.
export { VimMonitorAction2ConductorDefinition } from '../../gen/vimmon/conductor/v1/conductor.js';
export {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthDefinition,
} from '../../gen/grpc/health/v1/health.js';
export { Duration } from '../../gen/google/protobuf/duration.js';
