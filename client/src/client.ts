// createVimmonClient: one typed nice-grpc client per role, each on its own
// channel, with the defaults a program talking to the mesh wants (deadline,
// retries of reads, bearer token, TLS, round robin), and the two resumable
// streams. A role whose address was not given fails when first called, not here.
import type { Channel } from '@grpc/grpc-js';
import { createClientFactory, type Client, type TsProtoServiceDefinition } from 'nice-grpc';
import { deadlineMiddleware } from 'nice-grpc-client-middleware-deadline';
import { retryMiddleware } from 'nice-grpc-client-middleware-retry';
import { HealthDefinition } from '../../gen/grpc/health/v1/health.js';
import { VimMonitorAction2ConductorDefinition } from '../../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../../gen/vimmon/executor/v1/executor_service.js';
import {
  InspectorServiceDefinition,
  type Alarm,
  type DeepPartial,
  type SubscribeAlarmsRequest,
} from '../../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition, type WatchVimsRequest, type WatchVimsResponse } from '../../gen/vimmon/tacker/v1/vim_service.js';
import { alarmCursor } from './alarm-cursor.js';
import { bearerTokenMiddleware, type TokenSource } from './bearer-token.js';
import { callDefaults, type RetrySettings, type VimmonCallOptions } from './call-defaults.js';
import { createRoleChannel, type TlsOptions } from './channel.js';
import { OptionError } from './option-error.js';
import { resumableStream, type StreamOptions } from './resumable-stream.js';
import { vimWatchCursor } from './vim-watch-cursor.js';

export interface VimmonClientOptions {
  /** Tacker server address(es), host:port; a list is balanced round robin. */
  server?: string | string[];
  inspector?: string | string[];
  executor?: string | string[];
  conductor?: string | string[];
  /** true: TLS with the system's roots; an object: TLS (and mutual TLS with cert and key) from PEM; unset or false: plaintext. */
  tls?: TlsOptions | boolean;
  /** Sent as `authorization: Bearer …` on every call; a function is asked before every call. */
  token?: TokenSource;
  /** Milliseconds for every unary call unless the call passes its own `deadline`. Default 10,000. */
  deadline?: number;
  /** Retries of calls that only read (Get*, List*, health Check); false: none. Default 4 attempts, from 100 ms, at most 2 s apart. */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number } | false;
  /** grpc-js channel options, over the defaults (round_robin, keepalive, reconnect backoff). */
  channelOptions?: Record<string, unknown>;
}

export type VimmonRole = 'server' | 'inspector' | 'executor' | 'conductor';

export interface VimmonClient {
  server: Client<VimServiceDefinition, VimmonCallOptions>;
  inspector: Client<InspectorServiceDefinition, VimmonCallOptions>;
  executor: Client<ExecutorServiceDefinition, VimmonCallOptions>;
  conductor: Client<VimMonitorAction2ConductorDefinition, VimmonCallOptions>;
  /** grpc.health.v1.Health of each role, on the same channel as the role's client. */
  health: Record<VimmonRole, Client<HealthDefinition, VimmonCallOptions>>;
  /** Resumable WatchVims: reconnects after UNAVAILABLE/RESOURCE_EXHAUSTED, resuming after the last event_id delivered. */
  watchVims(request?: DeepPartial<WatchVimsRequest>, options?: StreamOptions): AsyncIterable<WatchVimsResponse>;
  /** Resumable SubscribeAlarms: reconnects and resumes after the last alarm id delivered; each alarm once. */
  subscribeAlarms(request?: DeepPartial<SubscribeAlarmsRequest>, options?: StreamOptions): AsyncIterable<Alarm>;
  /** Closes every channel and ends every resumable stream. */
  close(): void;
}

const roles: readonly VimmonRole[] = ['server', 'inspector', 'executor', 'conductor'];
const maxTimerMs = 2 ** 31 - 1;

function positiveMs(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > maxTimerMs) {
    throw new OptionError(option, `must be a number of milliseconds above 0 and at most ${maxTimerMs}`);
  }
  return value;
}

function retrySettings(retry: VimmonClientOptions['retry']): RetrySettings | false {
  if (retry === false) return false;
  if (retry !== undefined && (typeof retry !== 'object' || retry === null))
    throw new OptionError('retry', 'must be false or { maxAttempts, baseDelayMs, maxDelayMs }');
  const maxAttempts = retry?.maxAttempts ?? 4;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100)
    throw new OptionError('retry.maxAttempts', 'must be a whole number from 1 to 100');
  const baseDelayMs = positiveMs('retry.baseDelayMs', retry?.baseDelayMs, 100);
  const maxDelayMs = positiveMs('retry.maxDelayMs', retry?.maxDelayMs, 2_000);
  return { maxAttempts, baseDelayMs, maxDelayMs: Math.max(baseDelayMs, maxDelayMs) };
}

/** A client whose every method fails: the role's address was not given. */
function missingRole<D extends TsProtoServiceDefinition>(role: VimmonRole, definition: D): Client<D, VimmonCallOptions> {
  const error = () => new OptionError(role, `no ${role} address given (createVimmonClient({ ${role}: 'host:port' }))`);
  const client: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    client[key] = method.responseStream
      ? () => ({
          [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error()) }),
        })
      : () => Promise.reject(error());
  }
  return client as Client<D, VimmonCallOptions>;
}

export function createVimmonClient(options: VimmonClientOptions): VimmonClient {
  if (typeof options !== 'object' || options === null) throw new OptionError('options', 'must be an object');
  const deadlineMs = positiveMs('deadline', options.deadline, 10_000);
  const retry = retrySettings(options.retry);
  if (options.channelOptions !== undefined && (typeof options.channelOptions !== 'object' || options.channelOptions === null)) {
    throw new OptionError('channelOptions', 'must be an object of grpc-js channel options');
  }
  // The token innermost, so every retry asks a token function again; the deadline outermost,
  // so it also ends a retry's backoff (the order the retry middleware's documentation gives).
  let factory = createClientFactory();
  if (options.token !== undefined) factory = factory.use(bearerTokenMiddleware(options.token));
  const clients = factory.use(retryMiddleware).use(deadlineMiddleware);

  const channels = new Map<VimmonRole, Channel>();
  const closed = new AbortController();
  const settings = { tls: options.tls, channelOptions: options.channelOptions };
  // Checked now, so that a bad address or certificate is reported by createVimmonClient itself.
  for (const role of roles) {
    const addresses = options[role];
    if (addresses !== undefined) channels.set(role, createRoleChannel(role, addresses, settings));
  }

  const make = <D extends TsProtoServiceDefinition>(role: VimmonRole, definition: D): Client<D, VimmonCallOptions> => {
    const channel = channels.get(role);
    if (!channel) return missingRole(role, definition);
    return clients.create(definition, channel, callDefaults(definition, deadlineMs, retry));
  };
  const server = make('server', VimServiceDefinition);
  const inspector = make('inspector', InspectorServiceDefinition);

  return {
    server,
    inspector,
    executor: make('executor', ExecutorServiceDefinition),
    conductor: make('conductor', VimMonitorAction2ConductorDefinition),
    health: {
      server: make('server', HealthDefinition),
      inspector: make('inspector', HealthDefinition),
      executor: make('executor', HealthDefinition),
      conductor: make('conductor', HealthDefinition),
    },
    watchVims: (request, streamOptions = {}) =>
      resumableStream((r, o) => server.watchVims(r, o), vimWatchCursor(request), streamOptions, closed.signal),
    subscribeAlarms: (request, streamOptions = {}) =>
      resumableStream((r, o) => inspector.subscribeAlarms(r, o), alarmCursor(request), streamOptions, closed.signal),
    close() {
      closed.abort();
      for (const channel of channels.values()) channel.close();
    },
  };
}
