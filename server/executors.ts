// The executors this server hands actions to: which are alive (gRPC health,
// polled), which one should run a VIM's action (rendezvous hashing over the live
// ones, so adding or losing an executor moves only its share), and the calls.
import { createHash } from 'node:crypto';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import { delay } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { MonitorSettings } from '../common/monitor-policy.js';
import { channelCredentials, type Tls } from '../common/tls.js';
import { toMonitorPolicy } from '../common/monitor-policy.js';
import { statusToProto } from '../common/vim-status.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition, type HealthClient } from '../gen/grpc/health/v1/health.js';
import { ExecutorServiceDefinition, type ExecutorServiceClient } from '../gen/vimmon/executor/v1/executor_service.js';

export interface ActionSpec {
  actionId: string;
  vimId: string;
  authUrl: string;
  monitor: MonitorSettings;
  knownStatus: string;
}

export interface ExecutorPool {
  /** Live executors for this VIM, best first; all configured ones when none is known live. */
  candidates(vimId: string): string[];
  start(executor: string, spec: ActionSpec, timeoutMs: number): Promise<void>;
  stop(executor: string, actionId: string, timeoutMs: number): Promise<void>;
  /** Executors that answered their last health check. */
  live(): string[];
  /** Action ids running on the executor now. */
  runningActions(executor: string, timeoutMs: number): Promise<Set<string>>;
  /** Health-polls every executor until signal aborts. */
  run(signal: AbortSignal): Promise<void>;
  close(): void;
}

export interface ExecutorPoolOptions {
  executors: string[];
  logger: Logger;
  healthIntervalMs?: number;
  tls?: Tls;
}

const executorService = ExecutorServiceDefinition.fullName;

export function createExecutorPool(options: ExecutorPoolOptions): ExecutorPool {
  const { logger } = options;
  const members = new Map<string, { channel: Channel; client: ExecutorServiceClient; health: HealthClient; live: boolean | undefined }>();
  for (const address of options.executors) {
    const channel = createChannel(address, channelCredentials(options.tls), {
      'grpc.max_reconnect_backoff_ms': 5_000,
      // ListActions of a busy executor (about 250 bytes an action) exceeds the 4 MiB default.
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
    });
    members.set(address, {
      channel,
      client: createClient(ExecutorServiceDefinition, channel),
      health: createClient(HealthDefinition, channel),
      live: undefined,
    });
  }
  const member = (address: string) => {
    const m = members.get(address);
    if (!m) throw new Error(`executor ${address} is not configured (VIMMON_EXECUTORS)`);
    return m;
  };

  async function probe(address: string, signal: AbortSignal) {
    const m = member(address);
    let live = false;
    try {
      const r = await m.health.check({ service: executorService }, { signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)]) });
      live = r.status === HealthCheckResponse_ServingStatus.SERVING;
    } catch {
      live = false;
    }
    if (m.live !== live && !signal.aborted) logger.info(live ? 'executor is live' : 'executor is not live', { executor: address });
    if (!signal.aborted) m.live = live;
  }

  return {
    candidates(vimId) {
      const all = [...members.keys()];
      // Unknown (not yet polled) counts as live: a server must not wait a poll before its first start.
      const live = all.filter((a) => members.get(a)!.live !== false);
      const pool = live.length > 0 ? live : all;
      return pool
        .map((a) => ({ a, w: createHash('sha1').update(`${vimId}\0${a}`).digest().readUInt32BE(0) }))
        .sort((x, y) => y.w - x.w)
        .map((x) => x.a);
    },
    async start(executor, spec, timeoutMs) {
      await member(executor).client.startAction(
        {
          actionId: spec.actionId,
          vimId: spec.vimId,
          authUrl: spec.authUrl,
          monitor: toMonitorPolicy(spec.monitor),
          knownStatus: statusToProto(spec.knownStatus),
        },
        { signal: AbortSignal.timeout(timeoutMs) },
      );
    },
    async stop(executor, actionId, timeoutMs) {
      const m = members.get(executor);
      if (!m) return; // an executor no longer configured: fencing stops its action
      await m.client.stopAction({ actionId }, { signal: AbortSignal.timeout(timeoutMs) });
    },
    live: () => [...members.entries()].filter(([, m]) => m.live === true).map(([a]) => a),
    async runningActions(executor, timeoutMs) {
      const r = await member(executor).client.listActions({}, { signal: AbortSignal.timeout(timeoutMs) });
      return new Set(r.actions.map((a) => a.actionId));
    },
    async run(signal) {
      const intervalMs = options.healthIntervalMs ?? 1_000;
      while (!signal.aborted) {
        await Promise.all([...members.keys()].map((a) => probe(a, signal)));
        await delay(intervalMs, signal);
      }
    },
    close() {
      for (const m of members.values()) m.channel.close();
    },
  };
}
