// One JSON object per line on stderr, so that logs from several roles in one
// process stay machine-readable. VIMMON_LOG_LEVEL picks the threshold.
// pino writes the lines: {"level":"info","time":"<ISO>",...fields,"msg":"..."}.
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /** Whether a line of this level would be written. */
  enabled?(level: Exclude<LogLevel, 'silent'>): boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Receives each line without its newline (tests); default: stderr. */
  write?: (line: string) => void;
}

/**
 * Keys whose values never reach a log line, in any case: at the top level of
 * the fields, and one or two levels down (a VIM's credentials, request
 * headers, an error's own properties or its cause's).
 */
const secretKeys: ReadonlySet<string> = new Set([
  'password',
  'os_password',
  'application_credential_secret',
  'secret',
  'secretkey',
  'token',
  'servicetoken',
  'credentials',
  'authorization',
  'proxy-authorization',
  'x-auth-token',
  'x-subject-token',
  'authtoken',
  'auth_token',
  'access_token',
  'refresh_token',
  'client_secret',
  // VIM credentials as they are named in code (keys are compared in lower case).
  'clientsecret',
  'bearertoken',
  'bearer_token',
  'id_token',
  'idtoken',
  'api_key',
  'apikey',
  'private_key',
  'privatekey',
  'cookie',
  'set-cookie',
]);

const redacted = '[Redacted]';

// A credential under a key of any name: an Authorization header's value, or a
// vimmon token (vmt_ static, vmi_ internal) quoted in a message.
const secretInText = /\b(bearer\s+)\S+|\bvm[ti]_[A-Za-z0-9_-]{8,}/gi;
const mayHoldSecret = /bearer\s|vm[ti]_/i;

function redactText(text: string): string {
  // Most text holds neither: a test that allocates nothing before the replace that copies.
  if (!mayHoldSecret.test(text)) return text;
  return text.replace(secretInText, (_m, bearer: string | undefined) => (bearer ? `${bearer}${redacted}` : redacted));
}

// pino's own redact option does this with wildcard paths (*.password, *.*.password),
// at 40 to 140 µs a line for these keys; this walk costs a few µs and copies
// only the objects that hold a secret.
function redactSecrets<T>(value: T, depth: number): T {
  if (typeof value === 'string') return redactText(value) as T;
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    if (depth > 2) return value;
    let out: unknown[] | undefined;
    value.forEach((item, i) => {
      const r = redactSecrets(item, depth + 1);
      if (r !== item) (out ??= [...value])[i] = r;
    });
    return (out ?? value) as T;
  }
  const proto = Object.getPrototypeOf(value);
  // Class instances (Buffer, URL, Map) serialize in their own ways: left as they are.
  if (depth > 2 || (proto !== Object.prototype && proto !== null)) return value;
  const fields = value as Record<string, unknown>;
  let out: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(fields)) {
    const r = secretKeys.has(key.toLowerCase()) ? redacted : redactSecrets(item, depth + 1);
    if (r !== item) (out ??= { ...fields })[key] = r;
  }
  return (out ?? value) as T;
}

type SerializedError = Record<string, unknown>;

/**
 * pino's errWithCause (type, message, stack, own properties, the cause chain,
 * AggregateError's errors) with each error's name too, and a cause that is no
 * Error (a string, a plain object) kept as it is rather than dropped.
 */
function serializeError(err: Error): SerializedError {
  return withNames(pino.stdSerializers.errWithCause(err) as unknown as SerializedError, err);
}

function withNames(serialized: SerializedError, err: Error): SerializedError {
  const out: SerializedError = { name: err.name, ...serialized };
  const cause: unknown = err.cause;
  if (isErrorLike(cause)) {
    // Absent when the chain loops back: errWithCause stops there.
    if (out.cause && typeof out.cause === 'object') out.cause = withNames(out.cause as SerializedError, cause);
  } else if (cause !== undefined && out.cause === undefined) {
    out.cause = cause;
  }
  const errors = (err as Partial<AggregateError>).errors;
  if (Array.isArray(out.aggregateErrors) && Array.isArray(errors)) {
    out.aggregateErrors = out.aggregateErrors.map((s, i) => (isErrorLike(errors[i]) ? withNames(s as SerializedError, errors[i]) : s));
  }
  return out;
}

function isErrorLike(v: unknown): v is Error {
  return typeof v === 'object' && v !== null && typeof (v as Error).message === 'string';
}

/** An Error in any field (by convention `err`) is written with its cause chain; secrets are redacted. */
function prepare(fields: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Error) (out ??= { ...fields })[key] = serializeError(value);
  }
  return redactSecrets(out ?? fields, 0);
}

// One synchronous stream for every logger of the process: no line is lost when it exits.
let stderr: pino.DestinationStream | undefined;

function destination(write: LoggerOptions['write']): pino.DestinationStream {
  if (!write) return (stderr ??= pino.destination({ dest: 2, sync: true }));
  return { write: (chunk: string) => write(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk) };
}

export function createLogger(options: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const root = pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Fields arrive serialized already (prepare); pino's own err serializer would serialize them again.
      serializers: { err: (v: unknown) => v },
    },
    destination(options.write),
  );
  return wrap(Object.keys(base).length > 0 ? root.child(prepare(base)) : root);
}

function wrap(p: pino.Logger): Logger {
  const at = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: string, fields?: Record<string, unknown>) => {
    if (!p.isLevelEnabled(level)) return;
    if (fields) p[level](prepare(fields), redactText(msg));
    else p[level](redactText(msg));
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(p.child(prepare(fields))),
    enabled: (level) => p.isLevelEnabled(level),
  };
}

/** A child made on its first line: most calls never log, and a pino child costs more than this one object. */
class LazyChild implements Logger {
  private made: Logger | undefined;
  constructor(
    private readonly parent: Logger,
    private readonly fields: Record<string, unknown>,
  ) {}
  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.fields));
  }
  debug(msg: string, fields?: Record<string, unknown>): void {
    // Below the threshold (the usual case for debug): no child is made for nothing.
    if (this.made === undefined && this.parent.enabled?.('debug') === false) return;
    this.logger.debug(msg, fields);
  }
  enabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return this.parent.enabled?.(level) ?? true;
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.logger.info(msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.logger.warn(msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.logger.error(msg, fields);
  }
  child(fields: Record<string, unknown>): Logger {
    return this.logger.child(fields);
  }
}

export function lazyChild(parent: Logger, fields: Record<string, unknown>): Logger {
  return new LazyChild(parent, fields);
}

const callLoggers = new WeakMap<object, Logger>();

/** Set by the gRPC server's middleware on the context it hands the service: a logger with the call's method and request id. */
export function attachCallLogger(context: object, logger: Logger): void {
  callLoggers.set(context, logger);
}

/** The logger of a call (method and requestId on every line), or fallback outside one. */
export function callLogger(context: object | undefined, fallback: Logger): Logger {
  return (context && callLoggers.get(context)) ?? fallback;
}

export function parseLogLevel(value: string | undefined): LogLevel {
  const v = (value ?? 'info').toLowerCase();
  // includes(), not `in`: names every object has (constructor, toString) are not levels.
  if ((logLevels as readonly string[]).includes(v)) return v as LogLevel;
  throw new Error(`VIMMON_LOG_LEVEL: expected one of ${logLevels.join(', ')}, got ${JSON.stringify(value)}`);
}
