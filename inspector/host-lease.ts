// Who drives a host's Nova work when several inspectors share one database: the
// inspector holding the host's lease, a PostgreSQL session advisory lock on a
// connection of its own. The lock lives exactly as long as that connection:
// an inspector that dies (kill -9, lost network) loses its leases with its
// session, and another inspector's takeover pass (takeover.ts) finds the
// host's stored fault not done (inspector_host.nova_done_at null) and drives it.
//
// Leases are counted per host: a "down" and the "up" after it in one inspector
// hold the host's lease together, and it is released when both are over.
// A lease that cannot be asked for (the database unreachable) is answered
// 'unknown': the caller drives the work anyway, since every Nova call is
// idempotent and work done twice is better than work not done.
import pg from 'pg';
import type { Logger } from '../common/logger.js';

/** The advisory lock class of host leases (first key of the two-key form); the host's hash is the second. */
export const hostLeaseClass = 0x76696d6d; // "vimm"

export type LeaseAnswer = 'taken' | 'held-elsewhere' | 'unknown';

export interface HostLeasesOptions {
  databaseUrl: string;
  logger: Logger;
  /** application_name of the lease connection, so that an operator can tell it in pg_stat_activity. */
  applicationName?: string;
}

export interface HostLeases {
  /** Takes (or counts once more) the host's lease; 'held-elsewhere' when another inspector holds it. */
  take(host: string): Promise<LeaseAnswer>;
  /** Counts one holder fewer; the lock is released with the last. */
  release(host: string): Promise<void>;
  /** True while this inspector holds the host's lease. */
  holds(host: string): boolean;
  /** Closes the connection: every lease is released. */
  close(): Promise<void>;
}

export function createHostLeases(options: HostLeasesOptions): HostLeases {
  const { logger } = options;
  const held = new Map<string, number>();
  let client: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;
  // One query at a time on the session, in call order.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn, fn);
    chain = next.catch(() => undefined);
    return next;
  };

  function connection(): Promise<pg.Client> {
    if (client) return Promise.resolve(client);
    connecting ??= (async () => {
      const c = new pg.Client({
        connectionString: options.databaseUrl,
        application_name: options.applicationName ?? 'vimmon inspector leases',
        // Bounded: a lease asked for while the database is away is answered 'unknown', not awaited forever.
        connectionTimeoutMillis: 10_000,
        query_timeout: 10_000,
      });
      const lost = (err?: unknown) => {
        if (client !== c) return;
        client = undefined;
        // The session's locks are gone with it: another inspector may drive these hosts now.
        if (held.size > 0)
          logger.warn('host lease connection lost; its leases are gone', { err: String(err ?? 'ended'), hosts: held.size });
        held.clear();
      };
      c.on('error', lost);
      c.on('end', () => lost());
      try {
        await c.connect();
      } catch (err) {
        await c.end().catch(() => {});
        throw err;
      }
      client = c;
      return c;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  return {
    take(host) {
      return serial(async () => {
        const count = held.get(host);
        if (count !== undefined) {
          held.set(host, count + 1);
          return 'taken';
        }
        if (closed) return 'unknown';
        try {
          const c = await connection();
          const { rows } = await c.query<{ ok: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as ok', [hostLeaseClass, host]);
          if (!rows[0]?.ok) return 'held-elsewhere';
          held.set(host, 1);
          return 'taken';
        } catch (err) {
          logger.warn('cannot ask for a host lease; driving the work without one', { host, err: String(err) });
          return 'unknown';
        }
      });
    },

    release(host) {
      return serial(async () => {
        const count = held.get(host);
        if (count === undefined) return;
        if (count > 1) {
          held.set(host, count - 1);
          return;
        }
        held.delete(host);
        try {
          await client?.query('select pg_advisory_unlock($1, hashtext($2))', [hostLeaseClass, host]);
        } catch (err) {
          logger.warn('cannot release a host lease; it goes with the connection', { host, err: String(err) });
        }
      });
    },

    holds: (host) => held.has(host),

    close() {
      closed = true;
      return serial(async () => {
        const c = client;
        client = undefined;
        held.clear();
        await c?.end().catch(() => {});
      });
    },
  };
}
