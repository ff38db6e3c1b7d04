import type { CallContext } from 'nice-grpc';
import { ServerError, Status } from 'nice-grpc';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckRequest,
  type HealthServiceImplementation,
} from '../gen/grpc/health/v1/health.js';

export { ServingStatus };

/** grpc.health.v1.Health: "" is the whole server, each full service name its own entry. */
export interface HealthRegistry {
  implementation: HealthServiceImplementation;
  set(service: string, status: ServingStatus): void;
  /** Marks every entry NOT_SERVING (shutdown begins: proxies drain us first). */
  setAllNotServing(): void;
}

export function createHealthRegistry(): HealthRegistry {
  const statuses = new Map<string, ServingStatus>();
  const watchers = new Set<() => void>();
  const changed = () => {
    for (const wake of watchers) wake();
  };
  const implementation: HealthServiceImplementation = {
    async check(request: HealthCheckRequest) {
      const status = statuses.get(request.service);
      if (status === undefined) throw new ServerError(Status.NOT_FOUND, `service ${JSON.stringify(request.service)} is unknown`);
      return { status };
    },
    async *watch(request: HealthCheckRequest, context: CallContext) {
      let last: ServingStatus | undefined;
      while (!context.signal.aborted) {
        const now = statuses.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (now !== last) {
          last = now;
          yield { status: now };
        }
        await new Promise<void>((resolve) => {
          const wake = () => {
            watchers.delete(wake);
            context.signal.removeEventListener('abort', wake);
            resolve();
          };
          watchers.add(wake);
          context.signal.addEventListener('abort', wake, { once: true });
        });
      }
    },
  };
  return {
    implementation,
    set(service, status) {
      statuses.set(service, status);
      changed();
    },
    setAllNotServing() {
      for (const key of statuses.keys()) statuses.set(key, ServingStatus.NOT_SERVING);
      changed();
    },
  };
}
