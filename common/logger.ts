// One JSON object per line on stderr, so that logs from several roles in one
// process stay machine-readable. VIMMON_LOG_LEVEL picks the threshold.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
}

export function createLogger(options: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const threshold = rank[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
    if (rank[level] < threshold) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, ...base, msg };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        record[k] = v instanceof Error ? { name: v.name, message: v.message, stack: v.stack } : v;
      }
    }
    write(JSON.stringify(record));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

export function parseLogLevel(value: string | undefined): LogLevel {
  const v = (value ?? 'info').toLowerCase();
  if (v in rank) return v as LogLevel;
  throw new Error(`VIMMON_LOG_LEVEL: expected one of ${Object.keys(rank).join(', ')}, got ${JSON.stringify(value)}`);
}
