// Signal-aware waiting and jittered backoff: every loop waits only through these,
// so that aborting a signal ends any loop promptly.

/** Resolves after ms, or at once (without throwing) when signal aborts. Returns false if aborted. */
export function delay(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Full-jitter exponential backoff: attempt 0 waits up to baseDelayMs. */
export function backoffDelayMs(attempt: number, { baseDelayMs, maxDelayMs }: BackoffOptions, random = Math.random): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** A child controller that aborts when its parent does. */
export function linkedAbortController(parent?: AbortSignal): AbortController {
  const child = new AbortController();
  if (parent) {
    if (parent.aborted) child.abort(parent.reason);
    else {
      const onAbort = () => child.abort(parent.reason);
      parent.addEventListener('abort', onAbort, { once: true });
      child.signal.addEventListener('abort', () => parent.removeEventListener('abort', onAbort), { once: true });
    }
  }
  return child;
}
