// Domain errors. Services throw these; the gRPC server maps each to one status
// code in one place (grpc-server.ts), so domain code never imports transport types.

export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
  constructor(readonly field: string, reason: string) {
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

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * A database that cannot be reached (down, restarting, out of connections), as
 * pg, the pool or the ORM report it, whatever wraps it: the caller should retry.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { code?: unknown }).code;
    const code = typeof c === 'string' ? c : undefined;
    // 08 connection exception, 57P01-57P03 shutdown / crash / starting up, 53300 too many connections.
    if (code && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300')) return true;
    if (code && networkCodes.has(code)) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end/i.test(message)) {
      return true;
    }
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}
