// The one gRPC server factory every role uses: health, reflection (v1 and
// v1alpha), the domain-error → status mapping, per-call signals linked to
// shutdown, and an ordered shutdown. Roles only hand it their services.
import {
  createServer,
  ServerError,
  Status,
  type CallContext,
  type ServerMiddlewareCall,
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
  ResourceExhaustedError,
  UnavailableError,
  isDatabaseUnavailable,
  isUniqueViolation,
} from './errors.js';
import { createHealthRegistry, ServingStatus, type HealthRegistry } from './health.js';
import type { Logger } from './logger.js';
import { createReflectionServices } from './reflection.js';
import { serverCredentials, type Tls } from './tls.js';

export interface ServiceEntry {
  definition: TsProtoServiceDefinition;
  implementation: object;
}

/** Pairs a definition with its implementation, type-checked against each other. */
export function serviceEntry<S extends TsProtoServiceDefinition>(definition: S, implementation: ServiceImplementation<S>): ServiceEntry {
  return { definition, implementation };
}

export interface GrpcServerOptions {
  logger: Logger;
  services: ServiceEntry[];
  /** After this long, calls still open are cancelled. */
  shutdownGraceMs?: number;
  /** Serve TLS (and require client certificates when tls.ca is set); plaintext when unset. */
  tls?: Tls;
  /** Maps a domain error this factory does not know to a ServerError, or undefined. */
  mapError?: (err: unknown) => ServerError | undefined;
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

export function toServerError(err: unknown, logger: Logger, method: string, extra?: GrpcServerOptions['mapError']): ServerError {
  if (err instanceof ServerError) return err;
  const mapped = extra?.(err);
  if (mapped) return mapped;
  if (err instanceof InvalidArgumentError) return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof NotFoundError) return new ServerError(Status.NOT_FOUND, err.message);
  if (err instanceof AlreadyExistsError) return new ServerError(Status.ALREADY_EXISTS, err.message);
  if (err instanceof FailedPreconditionError) return new ServerError(Status.FAILED_PRECONDITION, err.message);
  if (err instanceof AbortedError) return new ServerError(Status.ABORTED, err.message);
  if (err instanceof UnavailableError) return new ServerError(Status.UNAVAILABLE, err.message);
  if (err instanceof ResourceExhaustedError) return new ServerError(Status.RESOURCE_EXHAUSTED, err.message);
  if (isUniqueViolation(err)) return new ServerError(Status.ALREADY_EXISTS, 'already exists');
  if (isDatabaseUnavailable(err)) {
    logger.warn('database unavailable', { method, err: String(err) });
    return new ServerError(Status.UNAVAILABLE, 'database unavailable; retry');
  }
  if ((err as { name?: string })?.name === 'AbortError') return new ServerError(Status.CANCELLED, 'cancelled');
  logger.error('internal error', { method, err });
  return new ServerError(Status.INTERNAL, 'internal error');
}

export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { logger } = options;
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
    try {
      if (!call.responseStream) {
        return yield* call.next(call.request as never, ctx);
      }
      yield* call.next(call.request as never, ctx);
      // A stream that ended because we are going away is not a normal end:
      // clients must see UNAVAILABLE and reconnect elsewhere.
      if (shutdownController.signal.aborted) throw new ServerError(Status.UNAVAILABLE, 'server is shutting down');
      return;
    } catch (err) {
      if (shutdownController.signal.aborted && !context.signal.aborted) {
        throw new ServerError(Status.UNAVAILABLE, 'server is shutting down');
      }
      throw toServerError(err, logger, call.method.path, options.mapError);
    } finally {
      shutdownController.signal.removeEventListener('abort', onShutdown);
      context.signal.removeEventListener('abort', onCancel);
    }
  }

  const server = createServer({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_connection_age_grace_ms': 30_000,
  }).use(middleware);
  const names: string[] = [];
  for (const { definition, implementation } of options.services) {
    server.add(definition, implementation as never);
    names.push(definition.fullName);
  }
  server.add(HealthDefinition, health.implementation);
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
