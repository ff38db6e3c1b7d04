// Configuration from the environment, read once in main.ts and passed down.
// Every bad value fails at start with the variable's name.
import { parseLogLevel, type LogLevel } from './logger.js';
import type { TlsFiles } from './tls.js';

export interface Config {
  serverAddr: string;
  conductorAddr: string;
  executorAddr: string;
  inspectorAddr: string;
  inspectorHttpAddr: string;
  /** Unset: an embedded PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** 32 bytes, base64 or hex. Unset: a key file in dataDir, made on first start. */
  secretKey: string | undefined;
  /** Executors the Tacker server hands actions to (VIMMON_EXECUTORS, default the local one). */
  executors: string[];
  /** Where executors send reports: one address, a comma list (round robin) or a proxy. */
  conductorTarget: string;
  reconcileIntervalMs: number;
  /** Reports a conductor stores in one statement under load; 1 turns grouping off. */
  conductorReportsPerStatement: number;
  /** PEM files; none set: plaintext gRPC. */
  tls: TlsFiles;
  logLevel: LogLevel;
}

export const defaultAddresses = {
  server: '127.0.0.1:50051',
  conductor: '127.0.0.1:50052',
  executor: '127.0.0.1:50053',
  inspector: '127.0.0.1:50054',
  inspectorHttp: '127.0.0.1:12345',
} as const;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const executorAddr = address(env, 'VIMMON_EXECUTOR_ADDR', defaultAddresses.executor);
  const conductorAddr = address(env, 'VIMMON_CONDUCTOR_ADDR', defaultAddresses.conductor);
  return {
    serverAddr: address(env, 'VIMMON_SERVER_ADDR', defaultAddresses.server),
    conductorAddr,
    executorAddr,
    inspectorAddr: address(env, 'VIMMON_INSPECTOR_ADDR', defaultAddresses.inspector),
    inspectorHttpAddr: address(env, 'VIMMON_INSPECTOR_HTTP_ADDR', defaultAddresses.inspectorHttp),
    databaseUrl: nonEmpty(env.DATABASE_URL),
    dataDir: nonEmpty(env.VIMMON_DATA_DIR) ?? '.vimmon',
    secretKey: nonEmpty(env.VIMMON_SECRET_KEY),
    executors: list(env, 'VIMMON_EXECUTORS') ?? [executorAddr],
    conductorTarget: nonEmpty(env.VIMMON_CONDUCTOR_TARGET) ?? conductorAddr,
    reconcileIntervalMs: durationMs(env, 'VIMMON_RECONCILE_INTERVAL', 2_000),
    conductorReportsPerStatement: integer(env, 'VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT', 256, 1, 1_000),
    tls: { certFile: nonEmpty(env.VIMMON_TLS_CERT), keyFile: nonEmpty(env.VIMMON_TLS_KEY), caFile: nonEmpty(env.VIMMON_TLS_CA) },
    logLevel: parseLogLevel(env.VIMMON_LOG_LEVEL),
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

function address(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const v = nonEmpty(env[name]) ?? fallback;
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(v)) throw new Error(`${name}: expected host:port, got ${JSON.stringify(v)}`);
  return v;
}

function list(env: NodeJS.ProcessEnv, name: string): string[] | undefined {
  const v = nonEmpty(env[name]);
  if (!v) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(item)) throw new Error(`${name}: ${JSON.stringify(item)} is not host:port`);
  }
  return items;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const v = nonEmpty(env[name]);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** "250ms", "10s", "5m", "1h". */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

export function durationMs(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const v = nonEmpty(env[name]);
  if (v === undefined) return fallback;
  const ms = parseDurationMs(v);
  if (ms === undefined || ms <= 0) throw new Error(`${name}: expected a duration such as 500ms, 10s or 5m, got ${JSON.stringify(v)}`);
  return ms;
}
