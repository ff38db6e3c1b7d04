// The executors this server hands actions to: which are alive (gRPC health,
// polled), which one should run a VIM's action (rendezvous hashing over the live
// ones, so adding or losing an executor moves only its share), and the calls.
import { createHash } from 'node:crypto';
import { delay } from 'abort-controller-x';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import type { Logger } from '../common/logger.js';
import type { MonitorSettings } from '../common/monitor-policy.js';
import { channelCredentials, type Tls } from '../common/tls.js';
import { bearerMetadata } from '../common/auth/authenticator.js';
import { toMonitorPolicy } from '../common/monitor-policy.js';
import { reasonToProto, statusToProto } from '../common/vim-status.js';
import { VimStatus, VimStatusReason } from '../gen/vimmon/common/v1/status.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition, type HealthClient } from '../gen/grpc/health/v1/health.js';
import { ExecutorServiceDefinition, type ExecutorServiceClient, type VimAuth } from '../gen/vimmon/executor/v1/executor_service.js';

export interface ActionSpec {
  actionId: string;
  vimId: string;
  authUrl: string;
  monitor: MonitorSettings;
  knownStatus: string;
  /** The reason stored with knownStatus. */
  knownReason: string;
  /** The VIM's CA certificates (PEM) for the probe to verify its TLS with; '' for none. */
  sslCaCert: string;
  /** PROBE_KIND_AUTH only: what the probe authenticates with, secrets in clear (for this call only, never logged). */
  auth?: VimAuth;
  /**
   * A take-over (from a stale, lost or draining executor's action): the new action's first
   * report goes after its first round, not one report_interval later, so the VIM's reports
   * have no gap beyond the old action's last heartbeat. Sent as no known status.
   */
  reportAtOnce?: boolean;
  /**
   * A successor (hand-over from a draining executor): it starts from the known status and
   * reports its first round at once, since that report is what makes it the VIM's action.
   */
  reportFirstRound?: boolean;
}

export interface ExecutorPool {
  /** Live executors for this VIM, best first; all configured ones when none is known live. */
  candidates(vimId: string): string[];
  start(executor: string, spec: ActionSpec, timeoutMs: number): Promise<void>;
  stop(executor: string, actionId: string, timeoutMs: number): Promise<void>;
  /** Executors that answered their last health check. */
  live(): string[];
  /** Executors that may take an action: live, or not yet polled. */
  usable(): string[];
  /**
   * Executors that answered their last health check NOT_SERVING: shutting down or
   * draining (an executor has no dependency that could make it say so otherwise).
   * Their VIMs are handed elsewhere at once; an unreachable one waits for the stale limit.
   */
  draining(): string[];
  /** Calls listener when an executor's health changes; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
  /**
   * Action ids running on the executor now, and the executor process's instance id; each page
   * (at most 5,000 actions) within timeoutMs.
   */
  runningActions(executor: string, timeoutMs: number): Promise<{ instanceId: string; actions: Set<string> }>;
  /** The executor process's instance id (ListActions of one action): new at each of its starts. */
  instanceId(executor: string, timeoutMs: number): Promise<string>;
  /** Health-polls every executor until signal aborts. */
  run(signal: AbortSignal): Promise<void>;
  close(): void;
}

export interface ExecutorPoolOptions {
  executors: string[];
  logger: Logger;
  healthIntervalMs?: number;
  tls?: Tls;
  /** Bearer token for the calls (when the certificate does not say who we are). */
  serviceToken?: string;
}

const executorService = ExecutorServiceDefinition.fullName;
/** The largest page ListActions gives. */
const listActionsPageSize = 5_000;

export function createExecutorPool(options: ExecutorPoolOptions): ExecutorPool {
  const { logger } = options;
  // live: undefined until polled; notServing: it answered, and said NOT_SERVING.
  const members = new Map<
    string,
    { channel: Channel; client: ExecutorServiceClient; health: HealthClient; live: boolean | undefined; notServing: boolean }
  >();
  const listeners = new Set<() => void>();
  for (const address of options.executors) {
    const channel = createChannel(address, channelCredentials(options.tls), { 'grpc.max_reconnect_backoff_ms': 5_000 });
    members.set(address, {
      channel,
      client: createClient(ExecutorServiceDefinition, channel, { '*': { metadata: bearerMetadata(options.serviceToken) } }),
      health: createClient(HealthDefinition, channel),
      live: undefined,
      notServing: false,
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
    let notServing = false;
    try {
      const r = await m.health.check({ service: executorService }, { signal: AbortSignal.any([signal, AbortSignal.timeout(1_000)]) });
      live = r.status === HealthCheckResponse_ServingStatus.SERVING;
      notServing = r.status === HealthCheckResponse_ServingStatus.NOT_SERVING;
    } catch {
      live = false;
    }
    if (signal.aborted) return;
    const changed = m.live !== live || m.notServing !== notServing;
    if (m.live !== live || (notServing && !m.notServing))
      logger.info(live ? 'executor is live' : notServing ? 'executor is draining' : 'executor is not live', { executor: address });
    m.live = live;
    m.notServing = notServing;
    if (changed) for (const l of listeners) l();
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
          knownStatus: spec.reportAtOnce ? VimStatus.VIM_STATUS_UNSPECIFIED : statusToProto(spec.knownStatus),
          knownStatusReason: spec.reportAtOnce ? VimStatusReason.VIM_STATUS_REASON_UNSPECIFIED : reasonToProto(spec.knownReason),
          sslCaCert: spec.sslCaCert,
          auth: spec.auth,
          reportFirstRound: spec.reportFirstRound ?? false,
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
    usable: () => [...members.entries()].filter(([, m]) => m.live !== false).map(([a]) => a),
    draining: () => [...members.entries()].filter(([, m]) => m.notServing).map(([a]) => a),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async runningActions(executor, timeoutMs) {
      // Page by page (each fits gRPC's default 4 MiB), each within the deadline: one deadline for
      // the whole listing cut off large executors on a busy machine (10,000 actions, four listed
      // at once, took more than 5 s at 100,000 VIMs on 2 cores), so the listing never completed,
      // the executor's instance id was never trusted, and every check listed it again in full.
      const { client } = member(executor);
      const running = new Set<string>();
      let pageToken = '';
      let instanceId = '';
      do {
        const r = await client.listActions({ pageSize: listActionsPageSize, pageToken }, { signal: AbortSignal.timeout(timeoutMs) });
        for (const a of r.actions) running.add(a.actionId);
        // The first page's: a restart between pages shows as a later page of another id.
        if (instanceId === '') instanceId = r.instanceId;
        else if (r.instanceId !== instanceId) throw new Error(`executor ${executor} restarted during the listing`);
        pageToken = r.nextPageToken;
      } while (pageToken);
      return { instanceId, actions: running };
    },
    async instanceId(executor, timeoutMs) {
      const r = await member(executor).client.listActions({ pageSize: 1 }, { signal: AbortSignal.timeout(timeoutMs) });
      return r.instanceId;
    },
    async run(signal) {
      const intervalMs = options.healthIntervalMs ?? 1_000;
      while (!signal.aborted) {
        await Promise.all([...members.keys()].map((a) => probe(a, signal)));
        await delay(signal, intervalMs).catch(() => {}); // rejects only when signal aborts: the loop ends
      }
    },
    close() {
      for (const m of members.values()) m.channel.close();
    },
  };
}
