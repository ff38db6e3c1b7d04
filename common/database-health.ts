// The database behind a role, as its gRPC health tells it: NOT_SERVING while
// PostgreSQL cannot be reached, so that a load balancer (deploy/haproxy.cfg,
// deploy/envoy.yaml) takes such a conductor out, and SERVING again when it is
// back. Level-triggered: every interval it asks again, whatever it saw before;
// it only logs on a change.
import { delay, isAbortError } from 'abort-controller-x';
import type { HealthRegistry } from './health.js';
import type { Logger } from './logger.js';

export interface DatabaseHealthSettings {
  /** Between the start of one check and the next. Default 2 s. */
  intervalMs?: number;
  /** A check that has not answered by then has failed. Default 2 s. */
  timeoutMs?: number;
  /** Failed checks in a row before the role turns NOT_SERVING. Default 2. */
  failuresBeforeDown?: number;
}

export interface DatabaseHealthOptions extends DatabaseHealthSettings {
  /** Resolves when the database answers (e.g. `select 1`); its signal aborts at the timeout. */
  check: (signal: AbortSignal) => Promise<unknown>;
  health: HealthRegistry;
  logger: Logger;
  /** Ends the loop. */
  signal: AbortSignal;
}

/** Runs until signal aborts; never throws. */
export async function runDatabaseHealth(options: DatabaseHealthOptions): Promise<void> {
  const { health, logger, signal } = options;
  const intervalMs = options.intervalMs ?? 2_000;
  const timeoutMs = options.timeoutMs ?? 2_000;
  const failuresBeforeDown = options.failuresBeforeDown ?? 2;
  let failures = 0;
  let up = true; // the role opened its ORM (and ran migrations) before it started serving
  while (!signal.aborted) {
    const started = performance.now();
    const error = await attempt(options.check, timeoutMs, signal);
    if (signal.aborted) break;
    if (error === undefined) {
      failures = 0;
      if (!up) {
        up = true;
        health.setServing(true);
        logger.info('database reachable again: serving');
      }
    } else {
      failures++;
      if (up && failures >= failuresBeforeDown) {
        up = false;
        health.setServing(false);
        logger.warn('database unreachable: not serving until it answers again', { failures, err: String(error) });
      } else {
        logger.debug('database check failed', { failures, err: String(error) });
      }
    }
    // delay rejects on abort, which ends the loop: this function still never throws.
    await delay(signal, Math.max(0, intervalMs - (performance.now() - started))).catch((err: unknown) => {
      if (!isAbortError(err)) throw err;
    });
  }
}

/** One check, bounded by timeoutMs (and by signal): undefined when it succeeded, else why it failed. */
async function attempt(check: DatabaseHealthOptions['check'], timeoutMs: number, signal: AbortSignal): Promise<unknown> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const cutShort = new Promise<Error>((resolve) => {
    timer = setTimeout(() => {
      const err = new Error(`no answer within ${timeoutMs}ms`);
      controller.abort(err);
      resolve(err);
    }, timeoutMs);
    onAbort = () => {
      controller.abort(signal.reason);
      resolve(new Error('stopped'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
  // A check that ignores its signal may settle later: its outcome is dropped.
  const checked = Promise.resolve()
    .then(() => check(controller.signal))
    .then(
      () => undefined,
      (err: unknown) => err ?? new Error('check failed'),
    );
  try {
    return await Promise.race([checked, cutShort]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort!);
  }
}
