// An ExecutorService that records calls and runs nothing: for tests of the
// Tacker server's hand-off logic alone. The real executor is tested in the mesh tests.
import { randomUUID } from 'node:crypto';
import { createGrpcServer, serviceEntry } from '../../common/grpc-server.js';
import type { Logger } from '../../common/logger.js';
import { Action, ExecutorServiceDefinition, type StartActionRequest } from '../../gen/vimmon/executor/v1/executor_service.js';

export interface RecordingExecutor {
  address: string;
  /** This process's instance id in ListActions answers: a new one at each start. */
  instanceId: string;
  starts: StartActionRequest[];
  stops: string[];
  /** Make the next n StartAction calls fail with UNAVAILABLE. */
  failStarts(n: number): void;
  stop(): Promise<void>;
}

/** address: where to listen (default a free port); a fixed one brings an executor back where a server expects it. */
export async function startRecordingExecutor(logger: Logger, address = '127.0.0.1:0'): Promise<RecordingExecutor> {
  const starts: StartActionRequest[] = [];
  const stops: string[] = [];
  const instanceId = randomUUID();
  // What ListActions answers: the actions started and not stopped (nothing runs them).
  const running = new Map<string, StartActionRequest>();
  let failing = 0;
  const server = createGrpcServer({
    logger,
    services: [
      serviceEntry(ExecutorServiceDefinition, {
        async startAction(r) {
          if (failing > 0) {
            failing--;
            const { ServerError, Status } = await import('nice-grpc');
            throw new ServerError(Status.UNAVAILABLE, 'injected');
          }
          starts.push(r);
          running.set(r.actionId, r);
          return { action: undefined, alreadyRunning: false };
        },
        async stopAction(r) {
          stops.push(r.actionId);
          running.delete(r.actionId);
          return { stopped: true };
        },
        async listActions() {
          const actions = [...running.values()].map((r) => ({ ...Action.fromPartial({}), actionId: r.actionId, vimId: r.vimId }));
          return { actions, nextPageToken: '', instanceId };
        },
        async *watchActions() {},
      }),
    ],
  });
  const port = await server.listen(address);
  return { address: `127.0.0.1:${port}`, instanceId, starts, stops, failStarts: (n) => (failing = n), stop: () => server.shutdown() };
}
