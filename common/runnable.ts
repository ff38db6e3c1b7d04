// Process lifecycle: run until SIGINT/SIGTERM, then stop in order. A second
// signal exits at once with code 1, for an operator who cannot wait.
import type { Logger } from './logger.js';

export interface Stoppable {
  stop(): Promise<void>;
}

export async function runUntilSignalled(logger: Logger, start: () => Promise<Stoppable>): Promise<void> {
  let stopping = false;
  let running: Stoppable | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('shutting down', { signal });
    void (async () => {
      try {
        await running?.stop();
        logger.info('stopped');
        resolveDone();
      } catch (err) {
        logger.error('shutdown failed', { err });
        process.exit(1);
      }
    })();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    running = await start();
  } catch (err) {
    logger.error('start failed', { err });
    process.exitCode = 1;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    return;
  }
  if (stopping) await running.stop();
  await done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/** Stops in reverse order of start; every step runs even if an earlier one fails. */
export function stopAll(logger: Logger, steps: Array<[string, () => Promise<void>]>): Stoppable {
  return {
    async stop() {
      let firstError: unknown;
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          logger.error('stop step failed', { step: name, err });
          firstError ??= err;
        }
      }
      if (firstError) throw firstError;
    },
  };
}
