// The process-wide configuration: what every role shares, from the environment
// parsed once (common/env.ts) in main.ts and passed down.
import type { AddressDenyList } from './address-deny.js';
import { parseEnvironment, retentionSettings, type Environment, type RetentionSettings } from './env.js';
import type { LogLevel } from './logger.js';
import type { TlsFiles } from './tls.js';

export { defaultAddresses, nonEmpty, parseDurationMs } from './env.js';

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
  /** Reports a conductor holds waiting for a statement; one more is answered RESOURCE_EXHAUSTED. */
  conductorQueuedReports: number;
  /** PEM files; none set: plaintext gRPC. */
  tls: TlsFiles;
  /** Addresses no probe may reach (VIMMON_PROBE_DENY, default link-local 169.254.0.0/16; "none": empty). */
  probeDeny: AddressDenyList;
  logLevel: LogLevel;
  /** The retention variables (VIMMON_RETENTION_INTERVAL and the others): the Tacker server's share is vim_event and vim_audit, the inspector's alarm and alarm_quarantine. */
  retention: RetentionSettings;
}

export function configFrom(e: Environment): Config {
  return {
    serverAddr: e.VIMMON_SERVER_ADDR,
    conductorAddr: e.VIMMON_CONDUCTOR_ADDR,
    executorAddr: e.VIMMON_EXECUTOR_ADDR,
    inspectorAddr: e.VIMMON_INSPECTOR_ADDR,
    inspectorHttpAddr: e.VIMMON_INSPECTOR_HTTP_ADDR,
    databaseUrl: e.DATABASE_URL,
    dataDir: e.VIMMON_DATA_DIR ?? '.vimmon',
    secretKey: e.VIMMON_SECRET_KEY,
    executors: e.VIMMON_EXECUTORS ?? [e.VIMMON_EXECUTOR_ADDR],
    conductorTarget: e.VIMMON_CONDUCTOR_TARGET ?? e.VIMMON_CONDUCTOR_ADDR,
    reconcileIntervalMs: e.VIMMON_RECONCILE_INTERVAL,
    conductorReportsPerStatement: e.VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT,
    conductorQueuedReports: e.VIMMON_CONDUCTOR_QUEUED_REPORTS,
    tls: { certFile: e.VIMMON_TLS_CERT, keyFile: e.VIMMON_TLS_KEY, caFile: e.VIMMON_TLS_CA },
    probeDeny: e.VIMMON_PROBE_DENY,
    logLevel: e.VIMMON_LOG_LEVEL,
    retention: retentionSettings(e),
  };
}

/** Parses the whole environment: a bad value of any variable throws, every one named (EnvironmentError). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return configFrom(parseEnvironment(env));
}
