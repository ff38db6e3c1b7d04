// Taking over Nova work another inspector left unfinished. Every pass reads the
// hosts whose stored fault is not done (inspector_host.nova_done_at null) and,
// for each whose lease (host-lease.ts) nobody holds, takes the lease, reads
// the host's row again (the holder may have finished between the two reads)
// and, still not done, hands it to the fault handler to drive. A live
// inspector holds the lease of the work it drives, so only a dead one's work,
// or work nobody started, is taken. Level-triggered: a pass that finds
// nothing to take changes nothing.
//
// The inspector that stores a fault takes its lease a moment after the row
// commits (the alarms go first), so a fault is taken only once it has been
// seen not done for a grace: a pass in that moment would otherwise find the
// lease free and take a live inspector's work (or hold the lease as the
// inspector asks for it, which then leaves the work to this pass).
import { delay } from 'abort-controller-x';
import type { Logger } from '../common/logger.js';
import type { AlarmStore, HostRecord } from './alarm-store.js';
import type { HostLeases } from './host-lease.js';

export interface TakeoverOptions {
  store: Pick<AlarmStore, 'loadHosts'>;
  leases: Pick<HostLeases, 'take' | 'release' | 'holds'>;
  /** The fault handler's takeOver: drives the record, or answers false when it knows better. */
  takeOver(rec: HostRecord): boolean;
  logger: Logger;
  /** Time between passes. */
  intervalMs: number;
  /** How long a fault must have been seen not done before it is taken (default the interval, at least 2 s). */
  graceMs?: number;
  /** Hosts looked at per pass (default 1,000): the rest wait for the next. */
  maxHostsPerPass?: number;
}

export interface Takeover {
  /** One pass; resolves with the hosts taken over. */
  pass(): Promise<string[]>;
  run(signal: AbortSignal): Promise<void>;
}

export function createTakeover(options: TakeoverOptions): Takeover {
  const { store, leases, logger } = options;
  const graceMs = options.graceMs ?? Math.max(options.intervalMs, 2_000);
  // host → the fault seen not done there, and since when (this process's clock).
  const seen = new Map<string, { faultId: string; since: number }>();

  async function pass(): Promise<string[]> {
    const taken: string[] = [];
    const undone = await store.loadHosts({ novaUndone: true, limit: options.maxHostsPerPass ?? 1_000 });
    const now = performance.now();
    const hosts = new Set(undone.map((r) => r.host));
    for (const host of seen.keys()) if (!hosts.has(host)) seen.delete(host);
    for (const { host, faultId } of undone) {
      const first = seen.get(host);
      if (first?.faultId !== faultId) seen.set(host, { faultId, since: now });
      if (first?.faultId !== faultId || now - first.since < graceMs) continue; // new: its inspector may be taking the lease
      if (leases.holds(host)) continue; // driven here
      if ((await leases.take(host)) !== 'taken') continue;
      try {
        const [rec] = await store.loadHosts({ host });
        // A newer fault since the list was read is new: it waits its own grace.
        if (rec && !rec.novaDoneAt && rec.faultId === faultId && options.takeOver(rec)) taken.push(host);
      } finally {
        // The drive took the lease once more for itself: it is held until the work is over.
        await leases.release(host);
      }
    }
    if (taken.length > 0) logger.info('took over Nova work left unfinished', { hosts: taken.length });
    return taken;
  }

  return {
    pass,
    async run(signal) {
      while (!signal.aborted) {
        try {
          await pass();
        } catch (err) {
          logger.warn('takeover pass failed; retried at the next', { err: String(err) });
        }
        await delay(signal, options.intervalMs).catch(() => undefined);
      }
    },
  };
}
