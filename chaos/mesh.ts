// The mesh under test, each role in a process of its own as `vimmon ROLE` runs
// it (cli/main.ts through tsx, as bench/rolling-restart.ts does): one Tacker
// server, two conductors behind haproxy (deploy/haproxy.cfg), two executors
// (the second inside the suite's network namespace, so it can be cut off) and
// one inspector whose Keystone/Nova is the OpenStack double of this process.
// A role can be killed with SIGKILL and started again on the same address.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { startConductorProxy, type RunningHaproxy } from '../test/support/haproxy.js';
import { openrcEnv, type OpenStackDouble } from '../test/support/openstack-double.js';
import { freePort } from '../test/support/targets.js';
import { hostAddress, namespaceAddress } from './network.js';

const root = fileURLToPath(new URL('..', import.meta.url));

export type RoleKind = 'server' | 'conductor' | 'executor' | 'inspector';

const healthService: Record<RoleKind, string> = {
  server: 'vimmon.tacker.v1.VimService',
  conductor: 'vimmon.conductor.v1.VimMonitorAction2Conductor',
  executor: 'vimmon.executor.v1.ExecutorService',
  inspector: 'vimmon.inspector.v1.InspectorService',
};

export interface RoleProcess {
  readonly name: string;
  readonly kind: RoleKind;
  /** host:port of its gRPC server, the same across restarts. */
  readonly address: string;
  readonly pid: number | undefined;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same address; resolves once its health answers SERVING. */
  start(): Promise<void>;
  /** SIGTERM (SIGKILL after 10 s): the suite's own end. */
  stop(): Promise<void>;
}

export async function serving(address: string, service: string): Promise<boolean> {
  const channel = createChannel(address);
  try {
    const r = await createClient(HealthDefinition, channel).check({ service }, { signal: AbortSignal.timeout(1_000) });
    return r.status === HealthCheckResponse_ServingStatus.SERVING;
  } catch {
    return false;
  } finally {
    channel.close();
  }
}

interface RoleProcessOptions {
  name: string;
  kind: RoleKind;
  address: string;
  env: NodeJS.ProcessEnv;
  /** argv prefix, e.g. `ip netns exec NAME`. */
  wrap?: string[];
  logDir: string;
  startTimeoutMs?: number;
}

function roleProcess(o: RoleProcessOptions): RoleProcess {
  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  let log: WriteStream | undefined;
  const spawnChild = () => {
    const argv = [...(o.wrap ?? []), process.execPath, '--import', 'tsx', 'cli/main.ts', o.kind];
    log ??= createWriteStream(path.join(o.logDir, `${o.name}.log`), { flags: 'a' });
    // A group of its own: a Ctrl-C reaches the suite alone, which then stops every role in order.
    const c = spawn(argv[0]!, argv.slice(1), {
      cwd: root,
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    c.stdout!.pipe(log, { end: false });
    c.stderr!.pipe(log, { end: false });
    child = c;
    exited = new Promise((r) => c.once('exit', () => r()));
  };
  const waitExit = async (signal: NodeJS.Signals, forceAfterMs?: number) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const timer = forceAfterMs === undefined ? undefined : setTimeout(() => c.kill('SIGKILL'), forceAfterMs);
    await exited;
    clearTimeout(timer);
  };
  return {
    name: o.name,
    kind: o.kind,
    address: o.address,
    get pid() {
      return child?.pid;
    },
    kill: () => waitExit('SIGKILL'),
    async start() {
      spawnChild();
      const c = child!;
      const deadline = Date.now() + (o.startTimeoutMs ?? 60_000);
      while (!(await serving(o.address, healthService[o.kind]))) {
        if (c.exitCode !== null) throw new Error(`${o.name} exited with ${c.exitCode} while starting (log ${o.logDir}/${o.name}.log)`);
        if (Date.now() > deadline) throw new Error(`${o.name} not SERVING at ${o.address} after ${o.startTimeoutMs ?? 60_000} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await waitExit('SIGTERM', 10_000);
      log?.end();
      log = undefined;
    },
  };
}

export interface ChaosMeshOptions {
  databaseUrl: string;
  amqpUrl: string | undefined;
  openstack: OpenStackDouble;
  /** argv prefix that runs a command in the suite's network namespace. */
  namespaceExec: string[];
  logDir: string;
  secretKey: string;
  log: (line: string) => void;
}

export interface ChaosMesh {
  server: RoleProcess;
  conductors: [RoleProcess, RoleProcess];
  /** [0] in the root namespace, [1] in the suite's namespace (the one a partition cuts off). */
  executors: [RoleProcess, RoleProcess];
  inspector: RoleProcess;
  haproxy: RunningHaproxy;
  /** Doctor's PUT /events of the inspector. */
  inspectorHttp: string;
  /** Where the conductors serve /metrics (their fenced-report counters). */
  conductorMetrics: string[];
  /** Where the inspector serves /metrics (whether its RabbitMQ consumer is connected). */
  inspectorMetrics: string;
  all(): RoleProcess[];
  stop(): Promise<void>;
}

export async function startChaosMesh(o: ChaosMeshOptions): Promise<ChaosMesh> {
  const common: NodeJS.ProcessEnv = {
    DATABASE_URL: o.databaseUrl,
    VIMMON_LOG_LEVEL: 'warn',
    // Listeners on the test-made veth addresses are beyond loopback; nothing leaves the machine.
    VIMMON_INSECURE: 'true',
    VIMMON_METRICS_ADDR: 'off',
    VIMMON_SERVER_METRICS_ADDR: 'off',
    VIMMON_CONDUCTOR_METRICS_ADDR: 'off',
    VIMMON_EXECUTOR_METRICS_ADDR: 'off',
    VIMMON_INSPECTOR_METRICS_ADDR: 'off',
    // Every transition and alarm of the run stays for the history checker.
    VIMMON_RETENTION_EVENT_AGE: 'off',
    VIMMON_RETENTION_EVENT_ROWS: 'off',
    VIMMON_RETENTION_ALARM_AGE: 'off',
    VIMMON_RETENTION_ALARM_ROWS: 'off',
    VIMMON_RETENTION_QUARANTINE_AGE: 'off',
    VIMMON_RETENTION_QUARANTINE_ROWS: 'off',
  };
  const local = async () => `127.0.0.1:${await freePort()}`;
  const conductorAddresses = [await local(), await local()];
  const conductorMetrics = [await local(), await local()];
  const conductors = conductorAddresses.map((address, i) =>
    roleProcess({
      name: `conductor-${i + 1}`,
      kind: 'conductor',
      address,
      logDir: o.logDir,
      env: { ...common, VIMMON_CONDUCTOR_ADDR: address, VIMMON_CONDUCTOR_METRICS_ADDR: conductorMetrics[i] },
    }),
  ) as [RoleProcess, RoleProcess];
  const started: RoleProcess[] = [];
  let haproxy: RunningHaproxy | undefined;
  const stopStarted = async () => {
    for (const r of started.reverse()) await r.stop().catch(() => {});
    await haproxy?.stop();
  };
  try {
    for (const c of conductors) {
      await c.start();
      started.push(c);
    }
    // On the veth's root end: both namespaces reach it.
    haproxy = await startConductorProxy({ conductors: conductorAddresses as [string, string], host: hostAddress });
    const executorEnv = (address: string) => ({
      ...common,
      VIMMON_EXECUTOR_ADDR: address,
      VIMMON_CONDUCTOR_TARGET: haproxy!.address,
      // The suite's own end: no need to hand VIMs over.
      VIMMON_EXECUTOR_DRAIN_TIMEOUT: '1s',
    });
    const e1 = await local();
    const e2 = `${namespaceAddress}:${await freePort()}`;
    const executors: [RoleProcess, RoleProcess] = [
      roleProcess({ name: 'executor-1', kind: 'executor', address: e1, logDir: o.logDir, env: executorEnv(e1) }),
      roleProcess({ name: 'executor-2', kind: 'executor', address: e2, logDir: o.logDir, env: executorEnv(e2), wrap: o.namespaceExec }),
    ];
    for (const e of executors) {
      await e.start();
      started.push(e);
    }
    const serverAddress = await local();
    const server = roleProcess({
      name: 'server',
      kind: 'server',
      address: serverAddress,
      logDir: o.logDir,
      env: {
        ...common,
        VIMMON_SERVER_ADDR: serverAddress,
        VIMMON_EXECUTORS: executors.map((e) => e.address).join(','),
        VIMMON_SECRET_KEY: o.secretKey,
        VIMMON_RECONCILE_INTERVAL: '1s',
      },
    });
    await server.start();
    started.push(server);
    const inspectorAddress = await local();
    const inspectorHttp = await local();
    const inspectorMetrics = await local();
    const inspector = roleProcess({
      name: 'inspector',
      kind: 'inspector',
      address: inspectorAddress,
      logDir: o.logDir,
      env: {
        ...common,
        ...openrcEnv(o.openstack),
        VIMMON_INSPECTOR_ADDR: inspectorAddress,
        VIMMON_INSPECTOR_HTTP_ADDR: inspectorHttp,
        VIMMON_INSPECTOR_METRICS_ADDR: inspectorMetrics,
        VIMMON_AMQP_URL: o.amqpUrl ?? 'off',
        VIMMON_INSPECTOR_RESYNC: '30s',
      },
    });
    await inspector.start();
    started.push(inspector);
    const all = () => [server, ...conductors, ...executors, inspector];
    return {
      server,
      conductors,
      executors,
      inspector,
      haproxy,
      inspectorHttp: `http://${inspectorHttp}`,
      conductorMetrics: conductorMetrics.map((a) => `http://${a}/metrics`),
      inspectorMetrics: `http://${inspectorMetrics}/metrics`,
      all,
      stop: stopStarted,
    };
  } catch (err) {
    await stopStarted();
    throw err;
  }
}
