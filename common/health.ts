import { HealthServiceImpl, HealthState, type HealthStatus } from 'nice-grpc-server-health';
import { HealthCheckResponse_ServingStatus as ServingStatus, type HealthServiceImplementation } from '../gen/grpc/health/v1/health.js';

export { ServingStatus };

/**
 * grpc.health.v1.Health: "" is the whole server, each full service name its own entry.
 *
 * What a client sees is made of three states kept apart: each entry's own
 * status (`set`), whether the role's dependencies are up (`setServing`, e.g.
 * the database), and whether shutdown has begun (`setAllNotServing`). An entry
 * answers SERVING only when it is set SERVING, the dependencies are up and
 * shutdown has not begun: a database coming back never revives a server that
 * is going away.
 */
export interface HealthRegistry {
  implementation: HealthServiceImplementation;
  set(service: string, status: ServingStatus): void;
  /** Dependency state: false turns every SERVING entry NOT_SERVING until true again. */
  setServing(serving: boolean): void;
  /** Marks every entry NOT_SERVING for good (shutdown begins: proxies drain us first). */
  setAllNotServing(): void;
}

/**
 * Check and Watch are nice-grpc-server-health's; what it is told per entry is
 * the combination of the three states, worked out here on every change.
 */
export function createHealthRegistry(): HealthRegistry {
  const own = new Map<string, ServingStatus>();
  const state = HealthState();
  // Every Watch call listens for changes; there may be many.
  state.setMaxListeners(0);
  // The library starts with "" healthy; here an entry is unknown until it is set.
  state.setStatus('unknown', '');
  let dependenciesUp = true;
  let shuttingDown = false;
  const effective = (status: ServingStatus): HealthStatus =>
    status === ServingStatus.SERVING && dependenciesUp && !shuttingDown ? 'healthy' : 'unhealthy';
  const publishAll = () => {
    for (const [service, status] of own) state.setStatus(effective(status), service);
  };
  return {
    // Generated from the same grpc/health/v1/health.proto as ours: the same messages and values.
    implementation: HealthServiceImpl(state) as unknown as HealthServiceImplementation,
    set(service, status) {
      own.set(service, status);
      state.setStatus(effective(status), service);
    },
    setServing(serving) {
      if (dependenciesUp === serving) return;
      dependenciesUp = serving;
      publishAll();
    },
    setAllNotServing() {
      shuttingDown = true;
      publishAll();
    },
  };
}
