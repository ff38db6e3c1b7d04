// Domain errors. Services throw these; the gRPC server maps each to one status
// code in one place (grpc-server.ts), so domain code never imports transport types.

export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export class NotFoundError extends Error {
  override name = 'NotFoundError';
}

export class AlreadyExistsError extends Error {
  override name = 'AlreadyExistsError';
}

export class FailedPreconditionError extends Error {
  override name = 'FailedPreconditionError';
}

/** A lock or version conflict: the caller may retry the whole operation. */
export class AbortedError extends Error {
  override name = 'AbortedError';
}

/** A dependency is down or the server is shutting down: retry later. */
export class UnavailableError extends Error {
  override name = 'UnavailableError';
}

/** PostgreSQL unique_violation, from any driver or ORM wrapper. */
export function isUniqueViolation(err: unknown): err is Error & { constraint?: string } {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | undefined;
  return e?.code === '23505' || e?.cause?.code === '23505';
}

export function constraintOf(err: unknown): string | undefined {
  const e = err as { constraint?: string; cause?: { constraint?: string } } | undefined;
  return e?.constraint ?? e?.cause?.constraint;
}

/** A per-caller limit was hit (e.g. a stream consumer too slow); the message says how to resume. */
export class ResourceExhaustedError extends Error {
  override name = 'ResourceExhaustedError';
}

/**
 * A stream's consumer fell too far behind: the one error every server stream
 * ends with then (RESOURCE_EXHAUSTED). `resume`, when the stream has a resume
 * point, is also sent as a trailer (e.g. vimmon-resume-after-alarm-id: 42).
 */
export class StreamBehindError extends ResourceExhaustedError {
  override name = 'StreamBehindError';
  constructor(
    message: string,
    readonly resume?: { trailer: string; value: string },
  ) {
    super(message);
  }
}

/**
 * PostgreSQL refused a value the request carried, from any driver or ORM
 * wrapper: a data exception (SQLSTATE class 22: text that is not valid for the
 * type, an invalid byte sequence such as a NUL, a date or number out of range),
 * a check violation (23514), or 08P01 "invalid message format", which is what
 * PostgreSQL answers when a NUL ends up in SQL text the ORM inlined a value
 * into. Retrying cannot help: the caller must send another value.
 */
export function isUnstorableValue(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.length === 5 && (code.startsWith('22') || code === '23514' || code === '08P01')) return true;
  }
  return false;
}

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * A database that cannot be reached (down, restarting, out of connections), as
 * pg, the pool or the ORM report it, whatever wraps it: the caller should retry.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (isUnstorableValue(err)) return false;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { code?: unknown }).code;
    const code = typeof c === 'string' ? c : undefined;
    // 08 connection exception, 57P01-57P03 shutdown / crash / starting up, 53300 too many connections.
    if (code && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300')) return true;
    if (code && networkCodes.has(code)) return true;
    const message = (e as { message?: unknown }).message;
    if (
      typeof message === 'string' &&
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end/i.test(
        message,
      )
    ) {
      return true;
    }
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

/** No credential, or one that is not valid: the caller must authenticate. */
export class UnauthenticatedError extends Error {
  override name = 'UnauthenticatedError';
}

/** The caller is known but may not do this (or may not know whether the resource exists). */
export class PermissionDeniedError extends Error {
  override name = 'PermissionDeniedError';
}

/**
 * A stream was asked to resume after an id whose successors retention removed
 * (OUT_OF_RANGE): a resume would miss them silently. The message, a
 * google.rpc.ErrorInfo detail (reason RESUME_POINT_REMOVED, metadata
 * oldest_held_id) and the trailer `resume.trailer` carry the oldest id still held.
 */
export class ResumePointRemovedError extends Error {
  override name = 'ResumePointRemovedError';
  constructor(
    readonly field: string,
    readonly afterId: number,
    readonly oldestHeldId: number,
    readonly resume: { trailer: string },
  ) {
    super(
      `${field}: ${afterId} is out of range: retention removed the rows after it; the oldest id still held is ${oldestHeldId}` +
        ` (resume with ${field}=0, or accept the gap with ${field}=${Math.max(oldestHeldId - 1, 0)})`,
    );
  }
}
