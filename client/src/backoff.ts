// How long a resumable stream waits before it connects again. The roles use the
// same delay (common/delay.ts re-exports it): it lives here because the client
// package must not depend on server-side code.

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Exponential backoff capped at maxDelayMs, half of it random ("equal jitter"):
 * attempt 0 waits between baseDelayMs / 2 and baseDelayMs, so many clients cut
 * off by one restart do not all come back in the same instant.
 */
export function backoffDelayMs(attempt: number, { baseDelayMs, maxDelayMs }: BackoffOptions, random = Math.random): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
