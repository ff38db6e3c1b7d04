// The one gRPC server factory every role uses: health, reflection (v1 and
// v1alpha), the domain-error → status mapping, per-call signals linked to
// shutdown, a request id and a logger per call, the grpc_server_* metrics, and
// an ordered shutdown. Roles only hand it their services.
import { randomUUID } from 'node:crypto';
import {
  createServer,
  ServerError,
  Status,
  type CallContext,
  type ServerMiddlewareCall,
  type ServiceDefinition,
  type ServiceImplementation,
  type TsProtoServiceDefinition,
} from 'nice-grpc';
import { HealthDefinition } from '../gen/grpc/health/v1/health.js';
import {
  AbortedError,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  ResumePointRemovedError,
  StreamBehindError,
  UnauthenticatedError,
  UnavailableError,
  isDatabaseUnavailable,
  isUniqueViolation,
  isUnstorableValue,
} from './errors.js';
import type { ChannelOptions } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo, errorDetailsServerMiddleware, RichServerError } from 'nice-grpc-error-details';
import { createAuth, type Auth, type CallCredentials } from './auth/authenticator.js';
import { peerIdentityHeader, peerIdentityInterceptor } from './auth/peer-identity.js';
import { ruleOfMethod } from './auth/policy.js';
import { attachCaller } from './auth/principal.js';
import { createStreamLimiter } from './stream-limit.js';
import { createStreamPacer } from './stream-pacer.js';
import { createHealthRegistry, ServingStatus, type HealthRegistry } from './health.js';
import { createGrpcMetricsMiddleware } from './grpc-metrics.js';
import { attachCallLogger, lazyChild, type Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { createReflectionServices } from './reflection.js';
import { guardDefinition, rejectionOf } from './request-check.js';
import { serverCredentials, type Tls } from './tls.js';

export interface ServiceEntry {
  definition: TsProtoServiceDefinition;
  implementation: object;
  /** Serves the checked definition in nice-grpc's generic form, e.g. with a response encoder of its own. */
  serve?: (checked: TsProtoServiceDefinition) => ServiceDefinition;
}

/** Pairs a definition with its implementation, type-checked against each other. */
export function serviceEntry<S extends TsProtoServiceDefinition>(
  definition: S,
  implementation: ServiceImplementation<S>,
  serve?: (checked: S) => ServiceDefinition,
): ServiceEntry {
  return { definition, implementation, serve: serve as ServiceEntry['serve'] };
}

export interface GrpcServerOptions {
  logger: Logger;
  services: ServiceEntry[];
  /** After this long, calls still open are cancelled. */
  shutdownGraceMs?: number;
  /** Serve TLS (and require client certificates when tls.ca is set); plaintext when unset. */
  tls?: Tls;
  /** Who may call what; unset: development mode (authentication off). */
  auth?: Auth;
  /** Records the grpc_server_* metrics of every call; unset: none. */
  metrics?: Metrics;
}

export interface GrpcServer {
  health: HealthRegistry;
  /** Aborts when shutdown begins; long-lived handlers end on it. */
  shutdownSignal: AbortSignal;
  /** Binds host:port (port 0 picks one); resolves to the bound port. */
  listen(address: string): Promise<number>;
  /** Not serving → streams end with UNAVAILABLE → drain → forced close after the grace period. */
  shutdown(): Promise<void>;
}

/** The request id metadata: taken from the client when well-formed, returned in the response header. */
export const requestIdHeader = 'x-request-id';

const wellFormedRequestId = /^[A-Za-z0-9._-]{1,64}$/;

/** The client's request id when it is 1 to 64 of [A-Za-z0-9._-], else a new one: it goes into every log line of the call. */
export function requestIdOf(sent: string | undefined): string {
  return sent !== undefined && wellFormedRequestId.test(sent) ? sent : randomUUID();
}

/** method: named in the log lines (unset when the logger carries it already). */
export function toServerError(err: unknown, logger: Logger, method?: string): ServerError {
  if (err instanceof ServerError) return err;
  if (err instanceof InvalidArgumentError) {
    // The field in the message for people, and in a google.rpc.BadRequest detail for programs.
    const description = err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
    return new RichServerError(Status.INVALID_ARGUMENT, err.message, [
      BadRequest.fromPartial({ fieldViolations: [{ field: err.field, description }] }),
    ]);
  }
  if (err instanceof ResumePointRemovedError) {
    return new RichServerError(Status.OUT_OF_RANGE, err.message, [
      ErrorInfo.fromPartial({
        reason: 'RESUME_POINT_REMOVED',
        domain: 'vimmon',
        metadata: { field: err.field, after_id: String(err.afterId), oldest_held_id: String(err.oldestHeldId) },
      }),
    ]);
  }
  if (err instanceof UnauthenticatedError) return new ServerError(Status.UNAUTHENTICATED, err.message);
  if (err instanceof PermissionDeniedError) return new ServerError(Status.PERMISSION_DENIED, err.message);
  if (err instanceof NotFoundError) return new ServerError(Status.NOT_FOUND, err.message);
  if (err instanceof AlreadyExistsError) return new ServerError(Status.ALREADY_EXISTS, err.message);
  if (err instanceof FailedPreconditionError) return new ServerError(Status.FAILED_PRECONDITION, err.message);
  if (err instanceof AbortedError) return new ServerError(Status.ABORTED, err.message);
  if (err instanceof UnavailableError) return new ServerError(Status.UNAVAILABLE, err.message);
  if (err instanceof ResourceExhaustedError) return new ServerError(Status.RESOURCE_EXHAUSTED, err.message);
  if (isUniqueViolation(err)) return new ServerError(Status.ALREADY_EXISTS, 'already exists');
  if (isUnstorableValue(err)) {
    logger.warn('the database refused a value of the request', { ...(method && { method }), err: String(err) });
    return new ServerError(Status.INVALID_ARGUMENT, 'request: a value the database cannot store');
  }
  if (isDatabaseUnavailable(err)) {
    logger.warn('database unavailable', { ...(method && { method }), err: String(err) });
    return new ServerError(Status.UNAVAILABLE, 'database unavailable; retry');
  }
  if ((err as { name?: string })?.name === 'AbortError') return new ServerError(Status.CANCELLED, 'cancelled');
  logger.error('internal error', { ...(method && { method }), err });
  return new ServerError(Status.INTERNAL, 'internal error');
}

/** Codes that say what is wrong with the call itself, whatever the server is doing. */
const callerMistakes: ReadonlySet<Status> = new Set([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.ALREADY_EXISTS,
  Status.FAILED_PRECONDITION,
  Status.OUT_OF_RANGE,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.RESOURCE_EXHAUSTED,
]);

function credentialsOf(context: CallContext): CallCredentials {
  return {
    authorization: context.metadata.get('authorization'),
    authToken: context.metadata.get('x-auth-token'),
    peerIdentity: context.metadata.get(peerIdentityHeader),
  };
}

/** "ipv4:127.0.0.1:5555" → "127.0.0.1"; grpc-js peers are "ip:port" or "[ip6]:port". */
function peerHost(peer: string): string {
  return peer.replace(/^ipv[46]:/, '').replace(/:\d+$/, '');
}

export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { logger } = options;
  const auth = options.auth ?? createAuth({ mode: 'development' });
  const streams = createStreamLimiter({ maxPerKey: auth.streamsPerPrincipal });
  const pacer = createStreamPacer();
  const shutdownController = new AbortController();
  const health = createHealthRegistry();

  async function* middleware<Req, Res>(call: ServerMiddlewareCall<Req, Res>, context: CallContext) {
    // The call's signal aborts when the client goes or when we shut down. Listeners are
    // removed at the end rather than aborting: an abort per call costs an exception object.
    const linked = new AbortController();
    const onCancel = () => linked.abort(context.signal.reason);
    const onShutdown = () => linked.abort(new UnavailableError('server is shutting down'));
    if (context.signal.aborted) onCancel();
    else context.signal.addEventListener('abort', onCancel, { once: true });
    shutdownController.signal.addEventListener('abort', onShutdown, { once: true });
    const ctx: CallContext = { ...context, signal: linked.signal };
    const requestId = requestIdOf(context.metadata.get(requestIdHeader));
    context.header.set(requestIdHeader, requestId);
    // Every line a handler logs through callLogger(context) names the call; credentials are never bound here.
    const callLog = lazyChild(logger, { method: call.method.path, requestId });
    attachCallLogger(ctx, callLog);
    let release: (() => void) | undefined;
    try {
      // Who first: a stranger learns nothing, not even what is wrong with the request.
      const principal = await auth.authorize(ruleOfMethod(call.method.path), credentialsOf(context));
      attachCaller(ctx, principal);
      const rejected = rejectionOf(call.request);
      if (rejected) throw rejected;
      if (!call.responseStream) {
        return yield* call.next(call.request as never, ctx);
      }
      // A principal holds a bounded number of streams; callers without an identity of their own
      // (anonymous, or everyone in development mode) are counted by address.
      const byAddress = principal.kind === 'anonymous' || principal.kind === 'development';
      release = streams.acquire(byAddress ? `peer:${peerHost(context.peer)}` : principal.name);
      if (!release)
        throw new ResourceExhaustedError(
          `${principal.name} already holds ${auth.streamsPerPrincipal} streams on this server; close some first`,
        );
      for await (const message of call.next(call.request as never, ctx)) {
        const wait = pacer.take();
        if (wait) await wait;
        yield message;
      }
      // A stream that ended because we are going away is not a normal end:
      // clients must see UNAVAILABLE and reconnect elsewhere.
      if (shutdownController.signal.aborted) throw new ServerError(Status.UNAVAILABLE, 'server is shutting down');
      return;
    } catch (err) {
      if (err instanceof StreamBehindError && err.resume) context.trailer.set(err.resume.trailer, err.resume.value);
      if (err instanceof ResumePointRemovedError) context.trailer.set(err.resume.trailer, String(err.oldestHeldId));
      const mapped = toServerError(err, callLog);
      // What the shutdown may have cut short is UNAVAILABLE (retry elsewhere); a caller's
      // mistake keeps its code, or the client would retry what can never succeed.
      if (shutdownController.signal.aborted && !context.signal.aborted && !callerMistakes.has(mapped.code)) {
        throw new ServerError(Status.UNAVAILABLE, 'server is shutting down');
      }
      throw mapped;
    } finally {
      release?.();
      shutdownController.signal.removeEventListener('abort', onShutdown);
      context.signal.removeEventListener('abort', onCancel);
    }
  }

  const base = createServer({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_connection_age_grace_ms': 30_000,
    // Not a channel option: grpc-js's server takes its interceptors here.
    interceptors: [peerIdentityInterceptor],
  } as ChannelOptions)
    // Outermost: turns a RichServerError's details into the grpc-status-details-bin trailer.
    .use(errorDetailsServerMiddleware);
  // Outside the mapping below, so it counts the code the client gets; with metrics off, not in the chain at all.
  const server = (options.metrics ? base.use(createGrpcMetricsMiddleware(options.metrics.grpc)) : base).use(middleware);
  const names: string[] = [];
  for (const { definition, implementation, serve } of options.services) {
    const checked = guardDefinition(definition);
    server.add(serve ? serve(checked) : checked, implementation as never);
    names.push(definition.fullName);
  }
  // Watch (nice-grpc-server-health) ends when its call's signal aborts: the middleware
  // above aborts every call's signal at shutdown, which is what the library's
  // terminator middleware would do (none is published on the registry we use).
  server.add(guardDefinition(HealthDefinition), health.implementation);
  names.push(HealthDefinition.fullName);
  for (const { definition, implementation } of createReflectionServices(names)) {
    server.add(definition, implementation as never);
  }

  let listening = false;
  return {
    health,
    shutdownSignal: shutdownController.signal,
    async listen(address) {
      const port = await server.listen(address, serverCredentials(options.tls));
      listening = true;
      health.set('', ServingStatus.SERVING);
      for (const name of names) health.set(name, ServingStatus.SERVING);
      return port;
    },
    async shutdown() {
      if (!listening) return;
      listening = false;
      health.setAllNotServing();
      shutdownController.abort();
      const grace = options.shutdownGraceMs ?? 5_000;
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<'forced'>((resolve) => {
        timer = setTimeout(() => resolve('forced'), grace);
      });
      const result = await Promise.race([server.shutdown().then(() => 'done' as const), forced]);
      clearTimeout(timer);
      if (result === 'forced') {
        logger.warn('calls still open after the grace period; cancelling them', { graceMs: grace });
        server.forceShutdown();
      }
    },
  };
}
