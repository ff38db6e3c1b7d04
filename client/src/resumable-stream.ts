// A server stream that outlives its connections: the loop behind watchVims()
// and subscribeAlarms(). What is resumable and what is final:
//
// - UNAVAILABLE (a role restarting or shutting down, a connection lost, a
//   database away) and RESOURCE_EXHAUSTED (the consumer fell behind and was cut,
//   or too many streams for now), and a stream the server ends without an error
//   (these streams never end by themselves: only a server stopping ends them):
//   connect again after a capped, jittered backoff, asking for what comes after
//   the last id the consumer was handed;
// - any other status (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT…)
//   would fail the same way again: the iterable throws it; OUT_OF_RANGE (the
//   server's retention removed what came after the resume point) as a
//   ResumeGapError naming the oldest id still held: reconnecting would loop, and
//   resuming from there is the consumer's choice, since it skips what was removed;
// - the caller's signal, or client.close(), ends the iterable without an error;
//   a consumer that leaves its `for await` cancels the call.
import { delay } from 'abort-controller-x';
import { ClientError, Status, type Metadata } from 'nice-grpc-common';
import { backoffDelayMs } from './backoff.js';
import { OptionError } from './option-error.js';

export interface StreamOptions {
  /** Ends the stream, without an error. */
  signal?: AbortSignal;
  /** Told before every new connection, with the error that ended the last one (undefined: the server ended it). */
  onReconnect?: (info: { attempt: number; error: unknown; resumeAfter: number }) => void;
  /** Longest wait between two connections (ms). Default 5,000. */
  maxReconnectDelayMs?: number;
}

/** What one kind of stream knows of its consumer: what to ask for next and what was handed already. */
export interface StreamCursor<Request, Message> {
  /** The request of the next connection. */
  request(): Request;
  /** False for a message the consumer already has (a replay's repeat); true records it as handed. */
  accept(message: Message): boolean;
  /** The trailer in which the server names a resume point when it cuts a stream. */
  readonly resumeTrailer: string;
  /** The trailer in which the server names the oldest id it holds when it answers OUT_OF_RANGE. */
  readonly oldestTrailer: string;
  /** Takes the server's resume point into account for the next request. */
  hint(resumeAfter: number): void;
  /** For onReconnect: the id the next connection resumes after (0: none). */
  resumeAfter(): number;
}

export type OpenStream<Request, Message> = (
  request: Request,
  options: { signal: AbortSignal; onTrailer: (trailer: Metadata) => void },
) => AsyncIterable<Message>;

/**
 * OUT_OF_RANGE: the server no longer holds what came after resumeAfter (its retention removed it).
 * oldestHeldId is the oldest id it still holds (undefined when the server did not say): a new
 * stream after oldestHeldId - 1 goes on, knowingly past the gap; after 0, from what is held.
 */
export class ResumeGapError extends ClientError {
  override name = 'ResumeGapError';
  constructor(
    error: ClientError,
    readonly resumeAfter: number,
    readonly oldestHeldId: number | undefined,
  ) {
    super(error.path, error.code, error.details);
  }
}

const resumableCodes = new Set([Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED]);
const firstReconnectDelayMs = 100;

export function isResumable(error: unknown): boolean {
  return error instanceof ClientError && resumableCodes.has(error.code);
}

/** A resume point from a trailer, if it is one (a hostile server's text is never trusted further). */
export function trailerId(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

export async function* resumableStream<Request, Message>(
  open: OpenStream<Request, Message>,
  cursor: StreamCursor<Request, Message>,
  options: StreamOptions,
  closed: AbortSignal,
): AsyncGenerator<Message, void, undefined> {
  const maxDelayMs = options.maxReconnectDelayMs ?? 5_000;
  if (typeof maxDelayMs !== 'number' || !(maxDelayMs > 0 && maxDelayMs <= 2 ** 31 - 1)) {
    throw new OptionError('maxReconnectDelayMs', 'must be a number of milliseconds above 0');
  }
  const signal = options.signal ? AbortSignal.any([options.signal, closed]) : closed;
  const backoff = { baseDelayMs: Math.min(firstReconnectDelayMs, maxDelayMs), maxDelayMs };
  let failures = 0;
  while (!signal.aborted) {
    let error: unknown;
    let trailer: string | undefined;
    let oldest: string | undefined;
    try {
      const messages = open(cursor.request(), {
        signal,
        onTrailer: (t) => {
          const value = t.get(cursor.resumeTrailer);
          trailer = typeof value === 'string' ? value : undefined;
          const held = t.get(cursor.oldestTrailer);
          oldest = typeof held === 'string' ? held : undefined;
        },
      });
      for await (const message of messages) {
        if (!cursor.accept(message)) continue;
        // Only something new counts as progress: a server that repeats itself and hangs up is backed off.
        failures = 0;
        yield message;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ClientError && err.code === Status.OUT_OF_RANGE)
        throw new ResumeGapError(err, cursor.resumeAfter(), trailerId(oldest));
      if (!isResumable(err)) throw err;
      error = err;
    }
    if (signal.aborted) return;
    const hinted = trailerId(trailer);
    if (hinted !== undefined) cursor.hint(hinted);
    const wait = backoffDelayMs(failures++, backoff);
    options.onReconnect?.({ attempt: failures, error, resumeAfter: cursor.resumeAfter() });
    try {
      await delay(signal, wait);
    } catch {
      return; // aborted while waiting
    }
  }
}
