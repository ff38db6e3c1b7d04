// Prometheus metrics: one registry per process (`vimmon all` serves every role
// it runs from one), every metric name defined here, and the /metrics endpoint.
// A role's metrics exist only in a process that runs the role, so that a
// conductor's endpoint never shows, say, zero live executors for an alert to
// read. Values an operator asks about "now" (VIMs by status, actions, cache
// age) are read when Prometheus scrapes, from what the role already holds.
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { splitHostPort, withPort } from './address.js';
import type { CallCredentials } from './auth/authenticator.js';
import { createHttpEndpointServer, httpCredentials } from './auth/http-credentials.js';
import type { Principal } from './auth/principal.js';
import { PermissionDeniedError, UnauthenticatedError, UnavailableError } from './errors.js';
import type { Logger } from './logger.js';
import type { Tls } from './tls.js';

// --- series kept as plain numbers ------------------------------------------------
// prom-client's labelled children hash their label values on every inc() and
// observe(): measured here at 1.6 µs for the five updates of one gRPC call,
// against a few nanoseconds for plain fields. The hot paths (every gRPC call,
// every report, every probe) update a series object found once; the text is
// made only when Prometheus scrapes.

export interface CounterSeries {
  inc(by?: number): void;
}

export interface HistogramSeries {
  observe(value: number): void;
}

class CounterValue implements CounterSeries {
  value = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(by = 1): void {
    this.value += by;
  }
}

/** A counter family: series(labels) once, then inc() costs an addition. */
export class CounterFamily<L extends string> {
  private readonly series = new Map<string, CounterValue>();

  constructor(
    registry: Registry,
    name: string,
    help: string,
    private readonly labelNames: readonly L[],
  ) {
    const family = this.series;
    new Counter<string>({
      name,
      help,
      labelNames: [...labelNames],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of family.values()) this.inc(s.labels, s.value);
      },
    });
  }

  /** The series of these label values, made on first use (its value starts at 0 and is published). */
  of(labels: Record<L, string>): CounterSeries {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new CounterValue({ ...labels })));
    return s;
  }
}

class HistogramValue implements HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/**
 * A histogram family in prom-client's metric shape (name, help, type, get()),
 * registered with the registry like its own Histogram and written out by it.
 */
export class HistogramFamily<L extends string> {
  private readonly series = new Map<string, HistogramValue>();
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    private readonly bounds: readonly number[],
  ) {
    // prom-client writes out any registered object with get(); its Metric type names its own classes only.
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  of(labels: Record<L, string>): HistogramSeries {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new HistogramValue({ ...labels }, this.bounds)));
    return s;
  }

  async get() {
    const values: ExportedValue[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }
}

// --- gauges read at scrape time -----------------------------------------------------

/** Adds one reading (to the series of `labels`, or the gauge's only one). */
export type Put = (value: number, labels?: Record<string, string>) => void;
/** What a role holds now, read at every scrape; may read nothing. */
export type ScrapeReader = (put: Put) => void;

/** A gauge that is, at every scrape, the sum of what its readers put (0 with no reader and no label). */
function scrapedGauge(registry: Registry, name: string, help: string, labelNames: string[] = []) {
  const readers = new Set<ScrapeReader>();
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      // Read first, then reset and set in one synchronous step: two scrapes at once each see a whole set.
      const readings: Array<[number, Record<string, string> | undefined]> = [];
      for (const read of readers) read((value, labels) => readings.push([value, labels]));
      this.reset();
      for (const [value, labels] of readings) {
        if (labels) this.inc(labels, value);
        else this.inc(value);
      }
    },
  });
  return (reader: ScrapeReader) => {
    readers.add(reader);
    return () => void readers.delete(reader);
  };
}

/**
 * A read that scrapes share: one in flight at a time, a scrape waits at most
 * timeoutMs for it, and a failed or late read leaves the last good value.
 */
export function createSharedRead<T>(
  read: () => Promise<T>,
  options: { timeoutMs: number; onError(err: unknown): void },
): () => Promise<T | undefined> {
  let last: T | undefined;
  // late: a scrape gave up on it and counted it already; its failure is not counted again.
  let inFlight: { done: Promise<void>; late: boolean } | undefined;
  return async () => {
    if (!inFlight) {
      const current: { done: Promise<void>; late: boolean } = { done: Promise.resolve(), late: false };
      current.done = read().then(
        (value) => {
          last = value;
          inFlight = undefined;
        },
        (err: unknown) => {
          inFlight = undefined;
          if (!current.late) options.onError(err);
        },
      );
      inFlight = current;
    }
    const current = inFlight;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(resolve, options.timeoutMs, 'late');
    });
    const outcome = await Promise.race([current.done.then(() => 'done' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late' && !current.late) {
      current.late = true;
      options.onError(new Error(`no answer within ${options.timeoutMs} ms`));
    }
    return last;
  };
}

// --- the metrics of each role -------------------------------------------------------

/** The VIMs as the server's database holds them, read at scrape time. */
export interface VimCensus {
  byStatus: { pending: number; reachable: number; unreachable: number };
  /** Live VIMs UNREACHABLE now, longest unreachable first, at most maxUnreachableSeries. */
  unreachable: Array<{ id: string; name: string }>;
}

/** Series of vimmon_vim_unreachable at most: the VIMs unreachable longest are kept. */
export const maxUnreachableSeries = 10_000;

export interface ServerSources {
  /** One bounded database read (the caller's own statement timeout). */
  census(): Promise<VimCensus>;
  liveExecutors(): number;
  watchStreams(): number;
}

export type ReplacementReason = 'stale' | 'unconfirmed' | 'lost' | 'drained';

export interface ServerMetrics {
  readonly reconcilerReplacements: Counter<'reason'>;
  readonly watchStreamsCut: Counter;
  /** Reads these at every scrape until the returned function is called (the role's stop). */
  read(sources: ServerSources): () => void;
}

export type ReportOutcomeLabel = 'accepted' | 'fenced' | 'rejected' | 'busy';

export interface ConductorMetrics {
  readonly reports: Record<ReportOutcomeLabel, CounterSeries>;
  readonly reportsPerStatement: HistogramSeries;
}

export interface ExecutorMetrics {
  /** kind tcp|http|icmp|auth, outcome ok|fail. */
  probeDuration(kind: string, outcome: 'ok' | 'fail'): HistogramSeries;
  /** Reads the executor's action count (labelled with its address) at every scrape, until the returned function is called. */
  read(source: { executor: string; actions(): number }): () => void;
}

export interface InspectorSources {
  alarmSubscribers(): number;
  cachedVms(): number;
  /** When the last complete Nova snapshot was taken; undefined: none yet. */
  lastSnapshotAt(): Date | undefined;
  /** Counted from here while no snapshot was taken. */
  startedAt: Date;
}

export type NovaOperation = 'list_servers' | 'get_server' | 'force_down' | 'force_up' | 'reset_state';

/** list_ports: the ports bound to a host; port_down, port_up: one port's data_plane_status set DOWN or ACTIVE. */
export type NeutronOperation = 'list_ports' | 'port_down' | 'port_up';

export interface InspectorMetrics {
  /** type: the AlarmType without its prefix, lower case (alarmTypeLabel). */
  alarmRaised(type: string): CounterSeries;
  readonly alarmSubscribersCut: CounterSeries;
  readonly eventToAlarm: HistogramSeries;
  novaCall(operation: NovaOperation, outcome: 'ok' | 'error', seconds: number): void;
  neutronCall(operation: NeutronOperation, outcome: 'ok' | 'error', seconds: number): void;
  /** vimmon_rabbitmq_connected, present only once asked for: a process without notifications has none. */
  rabbitmqConnected(): Gauge;
  read(sources: InspectorSources): () => void;
}

export interface GrpcServerMetrics {
  readonly started: CounterFamily<GrpcLabel>;
  readonly handled: CounterFamily<GrpcLabel | 'grpc_code'>;
  readonly handlingSeconds: HistogramFamily<GrpcLabel>;
  readonly received: CounterFamily<GrpcLabel>;
  readonly sent: CounterFamily<GrpcLabel>;
}

export type GrpcLabel = 'grpc_type' | 'grpc_service' | 'grpc_method';

/** Retention passes (db/retention.ts), of the Tacker server and the inspector alike. */
export interface RetentionMetrics {
  /** Rows removed, by table. */
  deleted(table: string): CounterSeries;
  /** A pass over one table (its lock taken): how long it took, by table. */
  passSeconds(table: string): HistogramSeries;
}

export interface Metrics {
  readonly registry: Registry;
  readonly grpc: GrpcServerMetrics;
  /** Each defines its role's metrics on first use; later calls return the same. */
  server(): ServerMetrics;
  conductor(): ConductorMetrics;
  executor(): ExecutorMetrics;
  inspector(): InspectorMetrics;
  retention(): RetentionMetrics;
}

export interface MetricsOptions {
  /** Default: a registry of its own. */
  registry?: Registry;
  /** vimmon_build_info's version; default package.json's. */
  version?: string;
  /** process_* and nodejs_* (prom-client's default metrics); default true. */
  processMetrics?: boolean;
  /** How long a scrape waits for the server's database read (default 2 s). */
  censusTimeoutMs?: number;
}

const grpcLabels: GrpcLabel[] = ['grpc_type', 'grpc_service', 'grpc_method'];
const grpcHandlingBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const probeBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const eventToAlarmBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const novaBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const reportsPerStatementBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export const alarmTypeLabels = [
  'instance_down',
  'host_down',
  'vim_unreachable',
  'instance_recovered',
  'host_recovered',
  'vim_recovered',
  'host_maintenance_started',
  'host_maintenance_ended',
  'vim_credentials_rejected',
];

/** "ALARM_TYPE_HOST_DOWN" → "host_down". */
export function alarmTypeLabel(enumName: string | undefined): string {
  return (enumName ?? 'unspecified').replace(/^ALARM_TYPE_/, '').toLowerCase();
}

/** The version in package.json (the project's, found from this module up). */
export function packageVersion(): string {
  let dir = new URL('.', import.meta.url);
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vimmon' && pkg.version) return pkg.version;
    } catch {
      // not here: one folder up
    }
    dir = new URL('..', dir);
  }
  return 'unknown';
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'vimmon_build_info',
    help: 'Always 1; the version of vimmon this process runs.',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: options.version ?? packageVersion() }, 1);

  const grpc: GrpcServerMetrics = {
    started: new CounterFamily(registry, 'grpc_server_started_total', 'Total number of RPCs started on the server.', grpcLabels),
    handled: new CounterFamily(
      registry,
      'grpc_server_handled_total',
      'Total number of RPCs completed on the server, regardless of success or failure.',
      [...grpcLabels, 'grpc_code'],
    ),
    handlingSeconds: new HistogramFamily(
      registry,
      'grpc_server_handling_seconds',
      'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
      grpcLabels,
      grpcHandlingBuckets,
    ),
    received: new CounterFamily(
      registry,
      'grpc_server_msg_received_total',
      'Total number of RPC stream messages received on the server.',
      grpcLabels,
    ),
    sent: new CounterFamily(registry, 'grpc_server_msg_sent_total', 'Total number of gRPC stream messages sent by the server.', grpcLabels),
  };

  let server: ServerMetrics | undefined;
  let conductor: ConductorMetrics | undefined;
  let executor: ExecutorMetrics | undefined;
  let inspector: InspectorMetrics | undefined;
  let retention: RetentionMetrics | undefined;

  return {
    registry,
    grpc,
    server: () => (server ??= defineServerMetrics(registry, options.censusTimeoutMs ?? 2_000)),
    conductor: () => (conductor ??= defineConductorMetrics(registry)),
    executor: () => (executor ??= defineExecutorMetrics(registry)),
    inspector: () => (inspector ??= defineInspectorMetrics(registry)),
    retention: () => (retention ??= defineRetentionMetrics(registry)),
  };
}

function defineRetentionMetrics(registry: Registry): RetentionMetrics {
  const deleted = new CounterFamily(registry, 'vimmon_retention_deleted_total', 'Rows removed by retention, by table.', ['table']);
  const passSeconds = new HistogramFamily(
    registry,
    'vimmon_retention_pass_seconds',
    'Duration of a retention pass over one table (in small batches, each its own transaction), by table.',
    ['table'],
    [0.01, 0.1, 1, 10, 60, 300],
  );
  return {
    deleted: (table) => deleted.of({ table }),
    passSeconds: (table) => passSeconds.of({ table }),
  };
}

function defineServerMetrics(registry: Registry, censusTimeoutMs: number): ServerMetrics {
  const readErrors = new Counter({
    name: 'vimmon_vims_read_errors_total',
    help: 'Scrapes whose read of the VIMs from PostgreSQL failed or took too long; vimmon_vims and vimmon_vim_unreachable kept their last values.',
    registers: [registry],
  });
  // The latest server to start is read (one database per process: every server would answer alike).
  const censuses: Array<() => Promise<VimCensus | undefined>> = [];
  const census = () => censuses.at(-1)?.() ?? Promise.resolve(undefined);
  new Gauge({
    name: 'vimmon_vims',
    help: 'Live (registered, not deregistered) VIMs by status: pending, reachable, unreachable. Read from PostgreSQL at scrape time.',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const c = await census();
      this.reset();
      if (!c) return;
      for (const [status, count] of Object.entries(c.byStatus)) this.set({ status }, count);
    },
  });
  new Gauge({
    name: 'vimmon_vim_unreachable',
    help: `1 for each live VIM that is UNREACHABLE now (no series for the others); at most ${maxUnreachableSeries} series, those unreachable longest.`,
    labelNames: ['vim_id', 'vim_name'],
    registers: [registry],
    async collect() {
      const c = await census();
      this.reset();
      for (const v of c?.unreachable ?? []) this.set({ vim_id: v.id, vim_name: v.name }, 1);
    },
  });
  const liveExecutors = scrapedGauge(
    registry,
    'vimmon_server_live_executors',
    'Executors this Tacker server sees alive (SERVING health) now.',
  );
  const watchStreams = scrapedGauge(registry, 'vimmon_watch_streams', 'WatchVims streams open now.');
  const reconcilerReplacements = new Counter({
    name: 'vimmon_reconciler_replacements_total',
    help: 'VIMs the reconciler gave a new action, by reason: stale (no report within the stale limit), unconfirmed (no executor acknowledged the action), lost (a live executor no longer ran it), drained (its executor was draining).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ['stale', 'unconfirmed', 'lost', 'drained']) reconcilerReplacements.inc({ reason }, 0);
  const watchStreamsCut = new Counter({
    name: 'vimmon_watch_streams_cut_total',
    help: 'WatchVims streams cut (RESOURCE_EXHAUSTED) for falling behind.',
    registers: [registry],
  });
  return {
    reconcilerReplacements,
    watchStreamsCut,
    read(sources) {
      const read = createSharedRead(() => sources.census(), { timeoutMs: censusTimeoutMs, onError: () => readErrors.inc() });
      censuses.push(read);
      const stops = [liveExecutors((put) => put(sources.liveExecutors())), watchStreams((put) => put(sources.watchStreams()))];
      return () => {
        censuses.splice(censuses.indexOf(read), 1);
        for (const stop of stops) stop();
      };
    },
  };
}

function defineConductorMetrics(registry: Registry): ConductorMetrics {
  const reports = new CounterFamily(
    registry,
    'vimmon_conductor_reports_total',
    'UpdateVim reports by outcome: accepted (stored, or a heartbeat), fenced (answered BAD_ACTION: not the VIM action), rejected (answered an error status), busy (answered RESOURCE_EXHAUSTED: the conductor queue was full).',
    ['outcome'],
  );
  const perStatement = new HistogramFamily(
    registry,
    'vimmon_conductor_reports_per_statement',
    'Reports one SQL statement of the conductor carried (group commit).',
    [],
    reportsPerStatementBuckets,
  );
  return {
    reports: {
      accepted: reports.of({ outcome: 'accepted' }),
      fenced: reports.of({ outcome: 'fenced' }),
      rejected: reports.of({ outcome: 'rejected' }),
      busy: reports.of({ outcome: 'busy' }),
    },
    reportsPerStatement: perStatement.of({}),
  };
}

function defineExecutorMetrics(registry: Registry): ExecutorMetrics {
  const actions = scrapedGauge(
    registry,
    'vimmon_executor_actions',
    'Monitor actions running in this executor now; executor: its address.',
    ['executor'],
  );
  const probes = new HistogramFamily(
    registry,
    'vimmon_probe_duration_seconds',
    'Duration of one probe attempt against a VIM auth_url, by kind (tcp, http, icmp, auth) and outcome (ok, fail).',
    ['kind', 'outcome'],
    probeBuckets,
  );
  return {
    probeDuration: (kind, outcome) => probes.of({ kind, outcome }),
    read: (source) => actions((put) => put(source.actions(), { executor: source.executor })),
  };
}

function defineInspectorMetrics(registry: Registry): InspectorMetrics {
  const raised = new CounterFamily(
    registry,
    'vimmon_alarms_raised_total',
    'Alarms raised, by type (host_down, instance_down, vim_unreachable, …).',
    ['type'],
  );
  for (const type of alarmTypeLabels) raised.of({ type });
  const subscribers = scrapedGauge(registry, 'vimmon_alarm_subscribers', 'SubscribeAlarms streams receiving live alarms now.');
  const cut = new CounterFamily(
    registry,
    'vimmon_alarm_subscribers_cut_total',
    'SubscribeAlarms streams cut with RESOURCE_EXHAUSTED: the subscriber fell more than its queue behind.',
    [],
  );
  const eventToAlarm = new HistogramFamily(
    registry,
    'vimmon_event_to_alarm_seconds',
    "From a fault event's receipt by the inspector to its alarms queued to every matching subscriber.",
    [],
    eventToAlarmBuckets,
  );
  const novaCalls = new Counter({
    name: 'vimmon_nova_calls_total',
    help: 'Nova API calls, by operation (force_down, force_up, reset_state, list_servers, get_server) and outcome (ok, error); each retry is a call.',
    labelNames: ['operation', 'outcome'],
    registers: [registry],
  });
  const novaDuration = new Histogram({
    name: 'vimmon_nova_call_duration_seconds',
    help: 'Duration of Nova API calls (Keystone token included when one was fetched), by operation and outcome.',
    labelNames: ['operation', 'outcome'],
    buckets: novaBuckets,
    registers: [registry],
  });
  for (const operation of ['force_down', 'force_up', 'reset_state', 'list_servers', 'get_server'])
    for (const outcome of ['ok', 'error']) novaCalls.inc({ operation, outcome }, 0);
  const neutronCalls = new Counter({
    name: 'vimmon_neutron_calls_total',
    help: 'Neutron API calls, by operation (list_ports, port_down, port_up) and outcome (ok, error); each retry is a call.',
    labelNames: ['operation', 'outcome'],
    registers: [registry],
  });
  const neutronDuration = new Histogram({
    name: 'vimmon_neutron_call_duration_seconds',
    help: 'Duration of Neutron API calls (Keystone token included when one was fetched), by operation and outcome.',
    labelNames: ['operation', 'outcome'],
    buckets: novaBuckets,
    registers: [registry],
  });
  for (const operation of ['list_ports', 'port_down', 'port_up'])
    for (const outcome of ['ok', 'error']) neutronCalls.inc({ operation, outcome }, 0);
  const cacheVms = scrapedGauge(registry, 'vimmon_vm_cache_vms', "VMs in the inspector's host → VMs cache now.");
  const snapshotAge = scrapedGauge(
    registry,
    'vimmon_vm_cache_snapshot_age_seconds',
    'Seconds since the last complete Nova snapshot of the VM cache; before the first, seconds since the inspector started.',
  );
  let rabbit: Gauge | undefined;
  return {
    alarmRaised: (type) => raised.of({ type }),
    alarmSubscribersCut: cut.of({}),
    eventToAlarm: eventToAlarm.of({}),
    novaCall(operation, outcome, seconds) {
      // A few calls a second at most: prom-client's own series are cheap enough here.
      novaCalls.inc({ operation, outcome });
      novaDuration.observe({ operation, outcome }, seconds);
    },
    neutronCall(operation, outcome, seconds) {
      neutronCalls.inc({ operation, outcome });
      neutronDuration.observe({ operation, outcome }, seconds);
    },
    rabbitmqConnected: () =>
      (rabbit ??= new Gauge({
        name: 'vimmon_rabbitmq_connected',
        help: "1 while the inspector's consumer of Nova notifications is connected to RabbitMQ and bound, else 0.",
        registers: [registry],
      })),
    read(sources) {
      const stops = [
        subscribers((put) => put(sources.alarmSubscribers())),
        cacheVms((put) => put(sources.cachedVms())),
        snapshotAge((put) => put((Date.now() - (sources.lastSnapshotAt() ?? sources.startedAt).getTime()) / 1000)),
      ];
      return () => {
        for (const stop of stops) stop();
      };
    },
  };
}

// --- the /metrics endpoint ------------------------------------------------------

/** The policy rule a scrape is authorized against (common/auth/policy.ts). */
export const metricsRule = 'metrics';

export interface MetricsEndpointOptions {
  registry: Registry;
  logger: Logger;
  /** The variable that set the address, named in errors (VIMMON_METRICS_ADDR, VIMMON_SERVER_METRICS_ADDR, …). */
  variable: string;
  /** HTTPS with this certificate, client certificates verified when presented; unset: plain HTTP. */
  tls?: Tls;
  /** The caller of the `metrics` rule, authorized; unset: anyone (development mode). */
  authorize?(rule: string, credentials: CallCredentials): Promise<Principal>;
}

export interface MetricsEndpoint {
  /** host:port bound (port 0 resolved). */
  readonly address: string;
  close(): Promise<void>;
}

function answer(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : `${text}\n`);
}

/** Binds address and serves GET /metrics until close(); a taken address fails naming options.variable. */
export async function startMetricsEndpoint(address: string, options: MetricsEndpointOptions): Promise<MetricsEndpoint> {
  const { registry, logger, tls } = options;

  async function handle(req: IncomingMessage, res: ServerResponse) {
    // No request body is ever read: whatever a client sends after its headers is dropped.
    req.resume();
    // Who first: a stranger learns nothing, not even which paths and methods there are.
    if (options.authorize) {
      try {
        await options.authorize(metricsRule, httpCredentials(req));
      } catch (err) {
        if (err instanceof UnauthenticatedError) return answer(res, 401, err.message, { 'WWW-Authenticate': 'Bearer' });
        if (err instanceof PermissionDeniedError) return answer(res, 403, err.message);
        if (err instanceof UnavailableError) return answer(res, 503, err.message);
        throw err;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'use GET', { Allow: 'GET, HEAD' });
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/') return answer(res, 200, 'vimmon: Prometheus metrics at /metrics');
    if (path !== '/metrics') return answer(res, 404, 'not found; Prometheus metrics are at /metrics');
    const body = await registry.metrics();
    res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      logger.error('metrics endpoint failed', { err });
      if (!res.headersSent) answer(res, 500, 'internal error');
      else res.destroy();
    });
  };
  const server: Server = createHttpEndpointServer(tls, onRequest);
  // Bounded: a scraper sends a few headers and reads one answer.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 64;
  server.maxConnections = 64;

  const { host, port } = splitHostPort(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? `${address} is already in use; choose another address, or off`
          : `cannot listen on ${address}: ${err.message}`;
      reject(new Error(`${options.variable}: ${why}`, { cause: err }));
    });
    server.listen(port, host, () => resolve());
  });
  server.removeAllListeners('error');
  server.on('error', (err) => logger.warn('metrics endpoint error', { err }));
  const bound = withPort(address, (server.address() as { port: number }).port);
  logger.info('metrics listening', { address: bound, path: '/metrics', https: Boolean(tls?.cert && tls.key) });
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
