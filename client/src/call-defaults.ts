// The default options of every method of a service: a deadline for each unary
// call, retries for the calls that only read. The contracts mark each read
// `idempotency_level = NO_SIDE_EFFECTS`, and that mark alone makes a method
// retryable; everything that changes state is set not retryable, so that a
// lost reply never registers a VIM twice or starts a second action.
import type { TsProtoServiceDefinition } from 'nice-grpc';
import type { DeadlineOptions } from 'nice-grpc-client-middleware-deadline';
import type { RetryOptions } from 'nice-grpc-client-middleware-retry';
import { Status } from 'nice-grpc-common';

export interface RetrySettings {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export type VimmonCallOptions = DeadlineOptions & RetryOptions;

type MethodOptions = { idempotencyLevel?: string } | undefined;

/**
 * A method the contract marks as changing nothing (or idempotent), and the
 * standard health Check, whose vendored proto carries no mark: safe to send again.
 */
export function isReadMethod(method: { name: string; options?: MethodOptions | object }, service?: string): boolean {
  const level = (method.options as MethodOptions)?.idempotencyLevel;
  if (level === 'NO_SIDE_EFFECTS' || level === 'IDEMPOTENT') return true;
  return service === 'grpc.health.v1.Health' && method.name === 'Check';
}

// Only what says "try again" is retried: a server shutting down or a database away
// answers UNAVAILABLE, and a connection lost under a call ends it UNAVAILABLE too.
// CANCELLED is a server that was stopping (a cancel of our own ends as an AbortError).
const retryableStatuses = [Status.UNAVAILABLE, Status.CANCELLED];

export function callDefaults(
  definition: TsProtoServiceDefinition,
  deadlineMs: number,
  retry: RetrySettings | false,
): Record<string, VimmonCallOptions> {
  const defaults: Record<string, VimmonCallOptions> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    // A stream gets no deadline: a watch is meant to last.
    if (method.responseStream || method.requestStream) continue;
    const options: VimmonCallOptions = { deadline: deadlineMs, retry: false };
    if (retry && retry.maxAttempts > 1 && isReadMethod(method, definition.fullName)) {
      options.retry = true;
      // The middleware counts retries after the first attempt.
      options.retryMaxAttempts = retry.maxAttempts - 1;
      options.retryBaseDelayMs = retry.baseDelayMs;
      options.retryMaxDelayMs = retry.maxDelayMs;
      options.retryableStatuses = retryableStatuses;
    }
    defaults[key] = options;
  }
  return defaults;
}
