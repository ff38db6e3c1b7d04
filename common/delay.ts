// Jittered backoff and linked controllers. Waiting is abort-controller-x's (delay, retry,
// abortable); what it lacks stays ours: a backoff delay to compute on its own
// (its retry() computes the same one only inside its loop) and a child controller
// linked to a parent signal. Beware: abort-controller-x rejects with the signal's
// reason, which after abort(err) is err, for which isAbortError() is false: ask
// signal.aborted instead.

// One backoff for the whole repository: the client package's, which must not
// depend on server-side code, so the roles take it from there.
export { backoffDelayMs, type BackoffOptions } from '../client/src/backoff.js';

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
