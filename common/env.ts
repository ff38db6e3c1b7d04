// Every environment variable vimmon reads, with its type, default and meaning,
// in one zod schema. cli/main.ts parses the environment once at start and hands
// the typed result to the roles; every bad value is reported at once, each line
// naming its variable ("NAME: expected …, got …").
// The OS_* variables are declared here and read here; what they mean together
// (OS_CLOUD and clouds.yaml, what is missing) is common/openstack-config.ts's.
import { z } from 'zod';
import { parseAddressDenyList } from './address-deny.js';
import { parseLogLevel } from './logger.js';
import { decodeSecretKey } from './secret-key.js';

export const defaultAddresses = {
  server: '127.0.0.1:50051',
  conductor: '127.0.0.1:50052',
  executor: '127.0.0.1:50053',
  inspector: '127.0.0.1:50054',
  inspectorHttp: '127.0.0.1:12345',
} as const;

export const defaultAmqpUrl = 'amqp://guest:guest@127.0.0.1:5672';

/** Prometheus /metrics of `vimmon all` and of each role run alone. */
export const defaultMetricsAddresses = {
  all: '127.0.0.1:9460',
  server: '127.0.0.1:9461',
  conductor: '127.0.0.1:9462',
  executor: '127.0.0.1:9463',
  inspector: '127.0.0.1:9464',
} as const;

export function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

/** "250ms", "10s", "5m", "1h". */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

// --- kinds of variable -----------------------------------------------------------
// Each takes the raw text (undefined when unset; blank counts as unset) and
// gives the typed value, or fails with a message that follows "NAME: ".

class Invalid extends Error {}

function fail(message: string): never {
  throw new Invalid(message);
}

function variable<T>(meaning: string, parse: (raw: string | undefined) => T) {
  return z
    .string()
    .optional()
    .transform((raw, ctx): T => {
      try {
        return parse(raw);
      } catch (err) {
        if (!(err instanceof Invalid)) throw err;
        ctx.addIssue({ code: 'custom', message: err.message, input: raw });
        return z.NEVER;
      }
    })
    .describe(meaning);
}

/** The checks of parse functions shared with other modules throw "NAME: message". */
function named<T>(name: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const message = (err as Error).message;
    fail(message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message);
  }
}

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/;

function checkPort(address: string): string {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  if (port > 65_535) fail(`port ${port} is not from 0 to 65535`);
  return address;
}

const text = (meaning: string) => variable(meaning, nonEmpty);

const address = (fallback: string, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw) ?? fallback;
    if (!hostPort.test(v)) fail(`expected host:port, got ${JSON.stringify(v)}`);
    return checkPort(v);
  });

/** host:port, or off: undefined (nothing is bound). */
const metricsAddress = (fallback: string, meaning: string) =>
  variable(`${meaning}; off: none; default ${fallback}`, (raw) => {
    const v = nonEmpty(raw) ?? fallback;
    if (v.toLowerCase() === 'off') return undefined;
    if (!hostPort.test(v)) fail(`expected host:port or off, got ${JSON.stringify(v)}`);
    return checkPort(v);
  });

/** Unset: undefined, for a default that depends on another variable. */
const addressList = (meaning: string) =>
  variable(meaning, (raw): string[] | undefined => {
    const v = nonEmpty(raw);
    if (!v) return undefined;
    const items = v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    // A list of nothing is not "the default".
    if (items.length === 0) fail(`no address in ${JSON.stringify(raw)}; unset it for the default`);
    for (const item of items) {
      if (!hostPort.test(item)) fail(`${JSON.stringify(item)} is not host:port`);
      checkPort(item);
    }
    return items;
  });

const duration = (fallbackMs: number, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw);
    if (v === undefined) return fallbackMs;
    const ms = parseDurationMs(v);
    if (ms === undefined || ms <= 0) fail(`expected a duration such as 500ms, 10s or 5m, got ${JSON.stringify(v)}`);
    return ms;
  });

const wholeNumber = (fallback: number, min: number, max: number, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw);
    if (v === undefined) return fallback;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= max)) fail(`expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  });

const positiveInteger = (fallback: number, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw);
    if (v === undefined) return fallback;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER)) fail(`expected a positive integer, got ${JSON.stringify(v)}`);
    return n;
  });

/** "30d", "12h", "90m" (parseDurationMs's units and d for days); 0 or off: undefined (no age limit). */
export function parseRetentionAge(text: string): number | undefined | 'invalid' {
  const v = text.trim().toLowerCase();
  if (v === 'off' || v === '0') return undefined;
  const days = /^(\d+(?:\.\d+)?)d$/.exec(v);
  const ms = days ? Math.round(Number(days[1]) * 86_400_000) : parseDurationMs(v);
  return ms !== undefined && ms > 0 ? ms : 'invalid';
}

const retentionAge = (fallbackMs: number | undefined, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw);
    if (v === undefined) return fallbackMs;
    const ms = parseRetentionAge(v);
    if (ms === 'invalid') fail(`expected an age such as 30d, 12h or 90m, or off (or 0), got ${JSON.stringify(v)}`);
    return ms;
  });

/** A row count; 0 or off: undefined (no count limit). */
const retentionRows = (fallback: number | undefined, meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw)?.toLowerCase();
    if (v === undefined) return fallback;
    if (v === 'off' || v === '0') return undefined;
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER)) fail(`expected a whole number of rows, or off (or 0), got ${JSON.stringify(raw)}`);
    return n;
  });

/** true/false, 1/0, yes/no; unset: false. */
const flag = (meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw)?.toLowerCase();
    if (v === undefined || v === 'false' || v === '0' || v === 'no') return false;
    if (v === 'true' || v === '1' || v === 'yes') return true;
    fail(`expected true or false, got ${JSON.stringify(raw)}`);
  });

/** A URL of one of `protocols`. Only its protocol is echoed: the rest may carry credentials. */
function urlValue(v: string, protocols: readonly string[], alternatives = ''): string {
  const expected = `expected a ${protocols.map((p) => `${p}//`).join(' or ')} URL${alternatives}`;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    fail(`${expected}, got something that is not a URL`);
  }
  if (!protocols.includes(url.protocol)) fail(`${expected}, got a ${JSON.stringify(url.protocol)} URL`);
  return v;
}

const url = (protocols: readonly string[], meaning: string) =>
  variable(meaning, (raw) => {
    const v = nonEmpty(raw);
    return v === undefined ? undefined : urlValue(v, protocols);
  });

// --- the variables -----------------------------------------------------------------

export const environmentSchema = z.object({
  DATABASE_URL: url(
    ['postgres:', 'postgresql:'],
    'PostgreSQL for the server, conductors and inspector; unset: an embedded PostgreSQL in VIMMON_DATA_DIR',
  ),
  // No default here: whether the user chose the folder matters (db/embedded.ts moves only the default one).
  VIMMON_DATA_DIR: text('embedded PostgreSQL data and the generated credentials key; unset: .vimmon'),
  VIMMON_SERVER_ADDR: address(defaultAddresses.server, 'Tacker server listen address'),
  VIMMON_CONDUCTOR_ADDR: address(defaultAddresses.conductor, 'conductor listen address'),
  VIMMON_EXECUTOR_ADDR: address(defaultAddresses.executor, 'executor listen address'),
  VIMMON_INSPECTOR_ADDR: address(defaultAddresses.inspector, 'inspector gRPC listen address'),
  VIMMON_INSPECTOR_HTTP_ADDR: address(defaultAddresses.inspectorHttp, 'inspector Doctor endpoint (PUT /events)'),
  VIMMON_METRICS_ADDR: metricsAddress(defaultMetricsAddresses.all, 'Prometheus /metrics of `vimmon all` (every role it runs)'),
  VIMMON_SERVER_METRICS_ADDR: metricsAddress(defaultMetricsAddresses.server, 'Prometheus /metrics of `vimmon server`'),
  VIMMON_CONDUCTOR_METRICS_ADDR: metricsAddress(defaultMetricsAddresses.conductor, 'Prometheus /metrics of `vimmon conductor`'),
  VIMMON_EXECUTOR_METRICS_ADDR: metricsAddress(defaultMetricsAddresses.executor, 'Prometheus /metrics of `vimmon executor`'),
  VIMMON_INSPECTOR_METRICS_ADDR: metricsAddress(defaultMetricsAddresses.inspector, 'Prometheus /metrics of `vimmon inspector`'),
  VIMMON_EXECUTORS: addressList('executors a Tacker server hands actions to (comma list); unset: VIMMON_EXECUTOR_ADDR'),
  VIMMON_CONDUCTOR_TARGET: text('where executors report: an address, a comma list (round robin) or a proxy; unset: VIMMON_CONDUCTOR_ADDR'),
  VIMMON_SECRET_KEY: variable(
    '32-byte key (base64 or hex) sealing VIM credentials; unset: a key file in VIMMON_DATA_DIR, made on first start',
    (raw) => {
      const v = nonEmpty(raw);
      if (v !== undefined) named('VIMMON_SECRET_KEY', () => decodeSecretKey(v, 'VIMMON_SECRET_KEY'));
      return v;
    },
  ),
  VIMMON_RECONCILE_INTERVAL: duration(2_000, 'how often each Tacker server looks for VIMs whose action stopped reporting'),
  VIMMON_EXECUTOR_DRAIN_TIMEOUT: duration(
    20_000,
    'on SIGTERM `vimmon executor` says NOT_SERVING and waits at most this long for the servers to move its VIMs',
  ),
  VIMMON_EXECUTOR_REPORTS_IN_FLIGHT: wholeNumber(
    128,
    1,
    10_000,
    'UpdateVim calls one `vimmon executor` has out at once; the other reports wait in the executor, status changes first',
  ),
  VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: wholeNumber(
    256,
    1,
    1_000,
    'reports a conductor stores with one statement under load; 1 turns grouping off',
  ),
  VIMMON_CONDUCTOR_QUEUED_REPORTS: wholeNumber(
    2_048,
    1,
    100_000,
    'reports a conductor holds waiting for a statement; one more is answered RESOURCE_EXHAUSTED at once, and executors retry with backoff',
  ),
  // Retention (db/retention.ts): the Tacker servers remove old vim_event and vim_audit rows, the
  // inspectors old alarms and quarantined ones, in small batches, one pass at a time over all of them.
  VIMMON_RETENTION_INTERVAL: duration(5 * 60_000, 'how often a retention pass runs in each Tacker server and inspector'),
  VIMMON_RETENTION_BATCH: wholeNumber(1_000, 1, 100_000, 'rows one retention statement (one short transaction) deletes at most'),
  VIMMON_RETENTION_EVENT_AGE: retentionAge(
    30 * 86_400_000,
    'VIM status transitions (vim_event) older than this are removed; 0 or off: kept; default 30d',
  ),
  VIMMON_RETENTION_EVENT_ROWS: retentionRows(
    10_000_000,
    'only the newest this many vim_event rows are kept; 0 or off: no count limit; default 10000000',
  ),
  VIMMON_RETENTION_ALARM_AGE: retentionAge(30 * 86_400_000, 'alarms older than this are removed; 0 or off: kept; default 30d'),
  VIMMON_RETENTION_ALARM_ROWS: retentionRows(
    10_000_000,
    'only the newest this many alarms are kept; 0 or off: no count limit; default 10000000',
  ),
  VIMMON_RETENTION_QUARANTINE_AGE: retentionAge(
    30 * 86_400_000,
    'alarms the database refused (alarm_quarantine) older than this are removed; 0 or off: kept; default 30d',
  ),
  VIMMON_RETENTION_QUARANTINE_ROWS: retentionRows(
    100_000,
    'only the newest this many alarm_quarantine rows are kept; 0 or off: no count limit; default 100000',
  ),
  VIMMON_RETENTION_AUDIT_AGE: retentionAge(
    365 * 86_400_000,
    'vim_audit rows (who registered, changed, deregistered) older than this are removed; 0 or off: kept; default 365d',
  ),
  VIMMON_RETENTION_AUDIT_ROWS: retentionRows(
    undefined,
    'only the newest this many vim_audit rows are kept; 0 or off: no count limit; default off',
  ),
  VIMMON_TLS_DIR: text('a folder of deploy/make-certs.sh: ca.pem and <role>.pem/.key'),
  VIMMON_TLS_CERT: text('instead of the folder: one PEM certificate for every role of the process'),
  VIMMON_TLS_KEY: text('its PEM key'),
  VIMMON_TLS_CA: text('the PEM CA servers and client certificates are verified against (mutual TLS)'),
  VIMMON_TRUST_DOMAIN: variable('trust domain of the SPIFFE ids that give certificates their role', (raw) => {
    const v = nonEmpty(raw) ?? 'vimmon.local';
    if (!/^[a-z0-9._-]{1,255}$/.test(v))
      fail(`expected lower-case letters, digits, dots, dashes and underscores, got ${JSON.stringify(v)}`);
    return v;
  }),
  VIMMON_AUTH_TOKENS_FILE: text('static bearer tokens (YAML; vimmon token new)'),
  VIMMON_AUTH_KEYSTONE: flag('validate Keystone tokens, as the OS_* / OS_CLOUD service user'),
  VIMMON_AUTH_KEYSTONE_REVALIDATE: duration(30_000, 'a cached Keystone answer is checked again after this long'),
  VIMMON_AUTH_KEYSTONE_CACHE: wholeNumber(10_000, 1, 10_000_000, 'Keystone tokens remembered at once'),
  VIMMON_POLICY_FILE: text('YAML overrides of the policy table, by rule name'),
  VIMMON_SERVICE_TOKEN_FILE: text("the token this process's roles present to other roles when their certificate carries no SPIFFE id"),
  VIMMON_STREAMS_PER_PRINCIPAL: wholeNumber(1_000, 1, 1_000_000, 'server streams one caller may hold open on one role'),
  VIMMON_INSECURE: flag('start beyond loopback without TLS or authentication, warning at every start'),
  VIMMON_PROBE_DENY: variable('address ranges no probe may reach (comma list of CIDRs; none: no range); default 169.254.0.0/16', (raw) =>
    named('VIMMON_PROBE_DENY', () => parseAddressDenyList(raw)),
  ),
  VIMMON_LOG_LEVEL: variable('debug, info, warn, error or silent', (raw) => named('VIMMON_LOG_LEVEL', () => parseLogLevel(nonEmpty(raw)))),

  // The people commands (vimmon vim|alarm|event|fault|host|status): where they call and with what
  // token. cli/target.ts reads and checks them, naming the variable in its errors.
  VIMMON_SERVER: text('Tacker server(s) the people commands call (host:port, comma list); default 127.0.0.1:50051'),
  VIMMON_INSPECTOR: text('inspector the people commands call; default 127.0.0.1:50054'),
  VIMMON_EXECUTOR: text('executor(s) `vimmon status` asks (comma list); default 127.0.0.1:50053'),
  VIMMON_CONDUCTOR: text('conductor(s) `vimmon status` asks (comma list); default 127.0.0.1:50052'),
  VIMMON_TOKEN: text('the bearer token the people commands send'),
  VIMMON_TOKEN_FILE: text('a file holding the bearer token the people commands send'),

  // The inspector.
  VIMMON_AMQP_URL: variable(
    `RabbitMQ carrying Nova's notifications; off: none, the periodic snapshot only; default ${defaultAmqpUrl}`,
    (raw) => {
      const v = nonEmpty(raw);
      if (v === undefined) return defaultAmqpUrl;
      if (v === 'off') return undefined;
      return urlValue(v, ['amqp:', 'amqps:'], ' or off');
    },
  ),
  VIMMON_INSPECTOR_RESYNC: duration(5 * 60_000, 'period of the full Nova snapshot that repairs drift'),
  VIMMON_INSPECTOR_NOVA_CONCURRENCY: positiveInteger(64, 'Nova calls in flight at once, over all faults'),
  VIMMON_INSPECTOR_SUBSCRIBER_QUEUE: positiveInteger(10_000, 'alarms a subscriber may have waiting before RESOURCE_EXHAUSTED'),
  VIMMON_INSPECTOR_SUBSCRIBER_QUEUE_BYTES: positiveInteger(8 * 1024 * 1024, 'the same bound in (estimated) bytes'),
  VIMMON_INSPECTOR_MAX_PENDING_ALARMS: positiveInteger(
    200_000,
    'alarms raised but not yet stored beyond which ReportEvents answers UNAVAILABLE',
  ),
  VIMMON_INSPECTOR_MAX_HOSTS_DOWN: positiveInteger(100_000, 'hosts known down at once; a "down" for one more is RESOURCE_EXHAUSTED'),
  VIMMON_INSPECTOR_NEUTRON: variable(
    "on: on a host fault set data_plane_status DOWN on every Neutron port bound to the host, ACTIVE again on recovery (Doctor's update_neutron_port_dp_status); default off",
    (raw) => {
      const v = nonEmpty(raw)?.toLowerCase() ?? 'off';
      if (v !== 'on' && v !== 'off') fail(`expected on or off, got ${JSON.stringify(raw)}`);
      return v === 'on';
    },
  ),
  VIMMON_INSPECTOR_SHARED: variable(
    'on: several inspectors share the database, each delivering every alarm live (ids drawn at insert, alarms delivered from the table); ' +
      'every inspector of a database must say the same; default off (one inspector, alarms sent before they are stored)',
    (raw) => {
      const v = nonEmpty(raw)?.toLowerCase() ?? 'off';
      if (v !== 'on' && v !== 'off') fail(`expected on or off, got ${JSON.stringify(raw)}`);
      return v === 'on';
    },
  ),
  VIMMON_INSPECTOR_RESET_STATE: variable(
    "on a host fault, error: force the host down and reset each of its VMs to error (Doctor's sample inspector); " +
      "off: force the host down only, Nova's host_status (microversion 2.16+) then reads DOWN for its VMs; default error",
    (raw): 'error' | 'off' => {
      const v = nonEmpty(raw)?.toLowerCase() ?? 'error';
      if (v !== 'error' && v !== 'off') fail(`expected error or off, got ${JSON.stringify(raw)}`);
      return v;
    },
  ),

  // OpenStack: the inspector's Nova and VIMMON_AUTH_KEYSTONE's service user.
  OS_CLOUD: text('an entry of clouds.yaml, instead of the OS_* credentials'),
  OS_CLIENT_CONFIG_FILE: text('the clouds.yaml to read first'),
  OS_AUTH_URL: url(['http:', 'https:'], 'Keystone, with or without /v3'),
  OS_AUTH_TYPE: text('password (v3password); anything else is reported as not supported'),
  OS_USERNAME: text('the service user'),
  OS_PASSWORD: text("the service user's password"),
  OS_PROJECT_NAME: text('project the token is scoped to'),
  OS_PROJECT_ID: text('instead of OS_PROJECT_NAME'),
  OS_TENANT_NAME: text('older name of OS_PROJECT_NAME'),
  OS_TENANT_ID: text('older name of OS_PROJECT_ID'),
  OS_USER_DOMAIN_NAME: text("the user's domain"),
  OS_USER_DOMAIN_ID: text('instead of OS_USER_DOMAIN_NAME'),
  OS_PROJECT_DOMAIN_NAME: text("the project's domain"),
  OS_PROJECT_DOMAIN_ID: text('instead of OS_PROJECT_DOMAIN_NAME'),
  OS_INTERFACE: variable('catalog interface: public, internal or admin (publicURL… too); default public', (raw) => {
    const v = nonEmpty(raw);
    if (v !== undefined && !/^(public|internal|admin)(URL)?$/i.test(v))
      fail(`expected public, internal or admin, got ${JSON.stringify(v)}`);
    return v;
  }),
  OS_REGION_NAME: text('region of the compute endpoint; unset: any'),
  HOME: text('where ~/.config/openstack/clouds.yaml is looked for'),
});

export type Environment = z.output<typeof environmentSchema>;

/** Every bad value of the environment, one line each, naming its variable. */
export class EnvironmentError extends Error {
  override name = 'EnvironmentError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export function parseEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const result = environmentSchema.safeParse(env);
  if (result.success) return result.data;
  throw new EnvironmentError(result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
}

const openStackNames = [
  'OS_CLOUD',
  'OS_CLIENT_CONFIG_FILE',
  'OS_AUTH_URL',
  'OS_AUTH_TYPE',
  'OS_USERNAME',
  'OS_PASSWORD',
  'OS_PROJECT_NAME',
  'OS_PROJECT_ID',
  'OS_TENANT_NAME',
  'OS_TENANT_ID',
  'OS_USER_DOMAIN_NAME',
  'OS_USER_DOMAIN_ID',
  'OS_PROJECT_DOMAIN_NAME',
  'OS_PROJECT_DOMAIN_ID',
  'OS_INTERFACE',
  'OS_REGION_NAME',
  'HOME',
] as const satisfies ReadonlyArray<keyof Environment>;

/** The OS_* variables (and HOME, for clouds.yaml), as loadOpenStackConfig takes them. */
export function openStackVariables(e: Environment): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const name of openStackNames) if (e[name] !== undefined) out[name] = e[name];
  return out;
}

/** Retention's settings (db/retention.ts), from the VIMMON_RETENTION_INTERVAL, _BATCH, _EVENT_AGE… variables; an undefined limit is off. */
export interface RetentionSettings {
  intervalMs: number;
  batchSize: number;
  limits: Record<'vim_event' | 'vim_audit' | 'alarm' | 'alarm_quarantine', { maxAgeMs?: number; maxRows?: number }>;
}

export function retentionSettings(e: Environment): RetentionSettings {
  return {
    intervalMs: e.VIMMON_RETENTION_INTERVAL,
    batchSize: e.VIMMON_RETENTION_BATCH,
    limits: {
      vim_event: { maxAgeMs: e.VIMMON_RETENTION_EVENT_AGE, maxRows: e.VIMMON_RETENTION_EVENT_ROWS },
      vim_audit: { maxAgeMs: e.VIMMON_RETENTION_AUDIT_AGE, maxRows: e.VIMMON_RETENTION_AUDIT_ROWS },
      alarm: { maxAgeMs: e.VIMMON_RETENTION_ALARM_AGE, maxRows: e.VIMMON_RETENTION_ALARM_ROWS },
      alarm_quarantine: { maxAgeMs: e.VIMMON_RETENTION_QUARANTINE_AGE, maxRows: e.VIMMON_RETENTION_QUARANTINE_ROWS },
    },
  };
}
