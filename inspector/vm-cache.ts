// The host → VMs index the fault path reads, as the Doctor inspector guideline
// asks: a full snapshot from Nova at start, kept current by notifications, and
// re-snapshotted periodically to repair whatever notifications missed. Reading
// is a map lookup; nothing on the fault path ever waits on Nova.
//
// Ordering: a notification that arrives while a snapshot is being fetched may
// be newer than the page that holds its instance, so notifications received
// during a resync are recorded and applied again on top of the new snapshot.
// Nova's updated_at orders a notification against what is already known (an
// older one is ignored), and deleted instances are remembered until the next
// snapshot so that a late update cannot bring them back.
import { delay, forever } from 'abort-controller-x';
import { backoffDelayMs, linkedAbortController } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { NovaClient, NovaServer } from './nova.js';
import type { InstanceNotification } from './notifications.js';

export interface VmRecord {
  id: string;
  name: string;
  projectId: string;
  host: string;
  /** vm_state when known (active, error, stopped…). */
  state?: string;
}

export interface ResyncReport {
  servers: number;
  /** Differences the snapshot repaired (after the notifications of the fetch window were applied again). */
  added: number;
  removed: number;
  moved: number;
  durationMs: number;
}

export interface VmCache {
  /** O(1) map lookup + copy; never waits on Nova. */
  vmsOnHost(host: string): VmRecord[];
  /** Keeps the index host → Map<id, VmRecord> current. */
  apply(n: InstanceNotification): void;
  /**
   * Replaces the whole content from Nova (repairs drift). Notifications that arrive during
   * the fetch are applied again on top of it. A call while one runs waits for one more,
   * started after it, so that its caller sees a snapshot taken after its call.
   */
  resync(signal?: AbortSignal): Promise<void>;
  /** Asks run() for a resync soon, e.g. after the notification consumer reconnected. */
  requestResync(reason: string): void;
  /** Snapshot at start (retried with backoff while Nova is unreachable), then resync every resyncIntervalMs. */
  run(signal: AbortSignal): Promise<void>;
  /** VMs placed on a host. */
  readonly size: number;
  readonly lastSyncAt: Date | undefined;
  readonly lastResync: ResyncReport | undefined;
}

export interface VmCacheOptions {
  nova: NovaClient | undefined;
  logger: Logger;
  resyncIntervalMs: number;
  /** Backoff while a snapshot fails (defaults 500 ms doubling to 30 s). */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
}

/** What a notification or a server lookup says about one instance. */
interface Change {
  id: string;
  deleted: boolean;
  host: string | undefined;
  hostStale?: boolean;
  name?: string;
  projectId?: string;
  state?: string;
  updatedAt?: number;
}

interface Entry {
  id: string;
  name: string;
  projectId: string;
  host: string | undefined;
  state?: string;
  updatedAt?: number;
  /** Frozen, shared with readers; present when the instance is on a host. */
  record?: VmRecord;
}

export function createVmCache(options: VmCacheOptions): VmCache {
  const { nova, resyncIntervalMs } = options;
  const log = options.logger.child({ component: 'vm-cache' });
  const retry = { baseDelayMs: options.retryBaseDelayMs ?? 500, maxDelayMs: options.retryMaxDelayMs ?? 30_000 };

  let byId = new Map<string, Entry>();
  let byHost = new Map<string, Map<string, VmRecord>>();
  let placed = 0;
  /** Deleted ids, until a snapshot taken after the deletion. */
  let tombstones = new Set<string>();
  /** Changes seen while a snapshot is fetched; undefined when none is. */
  let recording: Change[] | undefined;
  let lastSyncAt: Date | undefined;
  let lastResync: ResyncReport | undefined;
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  /** Instances whose host a notification left in doubt, looked up by run(). */
  const toRefresh = new Set<string>();
  let resyncRequested: string | undefined;
  let wake: (() => void) | undefined;

  const unindex = (entry: Entry) => {
    if (!entry.host) return;
    const onHost = byHost.get(entry.host);
    if (onHost?.delete(entry.id)) {
      placed--;
      if (onHost.size === 0) byHost.delete(entry.host);
    }
  };

  const index = (entry: Entry) => {
    byId.set(entry.id, entry);
    if (!entry.host) return;
    const record: VmRecord = { id: entry.id, name: entry.name, projectId: entry.projectId, host: entry.host };
    if (entry.state !== undefined) record.state = entry.state;
    entry.record = Object.freeze(record);
    let onHost = byHost.get(entry.host);
    if (!onHost) byHost.set(entry.host, (onHost = new Map()));
    if (!onHost.has(entry.id)) placed++;
    onHost.set(entry.id, entry.record);
  };

  const applyChange = (c: Change, replaying = false) => {
    if (!replaying) recording?.push(c);
    if (tombstones.has(c.id)) return;
    const prev = byId.get(c.id);
    if (prev?.updatedAt !== undefined && c.updatedAt !== undefined && c.updatedAt < prev.updatedAt) return;
    if (c.deleted) {
      if (prev) {
        unindex(prev);
        byId.delete(c.id);
      }
      tombstones.add(c.id);
      return;
    }
    if (c.hostStale) {
      // The sender had an old view of the instance; if ours agrees with it, ask Nova.
      if (!prev || prev.host === c.host) scheduleRefresh(c.id);
      return;
    }
    const entry: Entry = {
      id: c.id,
      name: c.name ?? prev?.name ?? '',
      projectId: c.projectId ?? prev?.projectId ?? '',
      host: c.host,
      state: c.state ?? prev?.state,
      updatedAt: Math.max(c.updatedAt ?? -Infinity, prev?.updatedAt ?? -Infinity),
    };
    if (entry.updatedAt === -Infinity) delete entry.updatedAt;
    if (entry.state === undefined) delete entry.state;
    if (prev) unindex(prev);
    index(entry);
  };

  const changeFromServer = (s: NovaServer): Change => {
    const c: Change = { id: s.id, deleted: false, host: s.host, name: s.name, projectId: s.projectId };
    const state = s.vmState ?? (s.status ? s.status.toLowerCase() : undefined);
    if (state) c.state = state;
    if (s.updatedAt !== undefined) c.updatedAt = s.updatedAt;
    return c;
  };

  const scheduleRefresh = (id: string) => {
    if (!nova) return;
    toRefresh.add(id);
    wake?.();
  };

  const doResync = async (signal?: AbortSignal): Promise<void> => {
    if (!nova) return;
    const started = performance.now();
    const window: Change[] = [];
    recording = window;
    let servers: NovaServer[];
    try {
      servers = await nova.listAllServers(signal);
    } finally {
      recording = undefined;
    }
    // From here to the end nothing awaits: no notification can interleave.
    const old = byId;
    byId = new Map();
    byHost = new Map();
    placed = 0;
    tombstones = new Set();
    for (const s of servers) index(entryFrom(changeFromServer(s)));
    for (const c of window) applyChange(c, true);
    let added = 0;
    let moved = 0;
    for (const [id, entry] of byId) {
      const before = old.get(id);
      if (!before) {
        if (entry.host) added++;
      } else if (before.host !== entry.host) moved++;
    }
    let removed = 0;
    for (const [id, before] of old) if (before.host && !byId.has(id)) removed++;
    lastSyncAt = new Date();
    lastResync = { servers: servers.length, added, removed, moved, durationMs: Math.round(performance.now() - started) };
    const level = added + removed + moved > 0 ? 'info' : 'debug';
    log[level]('host → VMs cache resynchronised', { ...lastResync, replayed: window.length, vmsOnHosts: placed, hosts: byHost.size });
  };

  const resync = (signal?: AbortSignal): Promise<void> => {
    if (!running) {
      const p = doResync(signal).finally(() => {
        if (running === p) running = undefined;
      });
      running = p;
      return p;
    }
    // One follow-up at most, shared by every caller that arrives meanwhile.
    queued ??= running
      .catch(() => {})
      .then(() => {
        queued = undefined;
        return resync(signal);
      });
    return queued;
  };

  const refreshPending = async (signal: AbortSignal): Promise<boolean> => {
    const ids = [...toRefresh];
    toRefresh.clear();
    for (const id of ids) {
      if (signal.aborted) return true;
      try {
        const server = await nova!.getServer(id, signal);
        applyChange(server ? changeFromServer(server) : { id, deleted: true, host: undefined });
      } catch (err) {
        if (signal.aborted) return true;
        log.warn('looking up an instance failed; a resync will repair it', { err, instanceId: id });
        return false;
      }
    }
    return true;
  };

  /** Waits ms, or less if something wakes the loop. */
  const sleep = async (ms: number, signal: AbortSignal) => {
    const child = linkedAbortController(signal);
    wake = () => child.abort();
    try {
      // Rejects only when woken or stopped: both end the wait.
      await delay(child.signal, Math.max(0, ms)).catch(() => {});
    } finally {
      wake = undefined;
      child.abort();
    }
  };

  return {
    vmsOnHost(host) {
      const onHost = byHost.get(host);
      return onHost ? [...onHost.values()] : [];
    },

    apply(n) {
      const c: Change = { id: n.instanceId, deleted: n.deleted, host: n.host };
      if (n.hostStale) c.hostStale = true;
      if (n.name !== undefined) c.name = n.name;
      if (n.projectId !== undefined) c.projectId = n.projectId;
      if (n.state !== undefined) c.state = n.state;
      if (n.updatedAt !== undefined) c.updatedAt = n.updatedAt;
      applyChange(c);
    },

    resync,

    requestResync(reason) {
      if (!nova) return;
      resyncRequested = reason;
      wake?.();
    },

    async run(signal) {
      if (!nova) {
        log.warn('no Nova client: the host → VMs cache is fed by notifications only');
        await forever(signal).catch(() => {}); // settles only when signal aborts
        return;
      }
      let attempt = 0;
      let nextResyncAt = performance.now();
      while (!signal.aborted) {
        if (toRefresh.size > 0 && !(await refreshPending(signal))) {
          nextResyncAt = Math.min(nextResyncAt, performance.now() + backoffDelayMs(0, retry));
        }
        const due = resyncRequested !== undefined || performance.now() >= nextResyncAt;
        if (!due) {
          await sleep(nextResyncAt - performance.now(), signal);
          continue;
        }
        const reason = resyncRequested ?? (lastSyncAt ? 'interval' : 'start');
        resyncRequested = undefined;
        try {
          await resync(signal);
          attempt = 0;
          nextResyncAt = performance.now() + resyncIntervalMs;
        } catch (err) {
          if (signal.aborted) break;
          const waitMs = backoffDelayMs(attempt++, retry);
          const e = err as { retryable?: boolean; status?: number };
          log[lastSyncAt ? 'warn' : 'error']('Nova snapshot failed; retrying', {
            err,
            reason,
            status: e.status,
            retryable: e.retryable,
            retryInMs: waitMs,
          });
          nextResyncAt = performance.now() + waitMs;
        }
      }
      // Let a resync still in flight settle before returning, so that nothing outlives run().
      await running?.catch(() => {});
    },

    get size() {
      return placed;
    },
    get lastSyncAt() {
      return lastSyncAt;
    },
    get lastResync() {
      return lastResync;
    },
  };
}

function entryFrom(c: Change): Entry {
  const entry: Entry = { id: c.id, name: c.name ?? '', projectId: c.projectId ?? '', host: c.host };
  if (c.state !== undefined) entry.state = c.state;
  if (c.updatedAt !== undefined) entry.updatedAt = c.updatedAt;
  return entry;
}
