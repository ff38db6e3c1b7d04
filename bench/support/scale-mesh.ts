// The mesh of bench/scale.ts as operators run it: every role a `vimmon <role>`
// child of its own (the CLI from the sources through tsx, or the compiled
// dist/ with ROLE_LOADER=dist), each with its gRPC and metrics address on a
// free loopback port, all on one database. Executors reach the conductors
// through a comma list (grpc-js round robin, README "Conductors behind a load
// balancer"); servers hand actions to every executor.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/grpc/health/v1/health.js';
import { freePort } from '../../test/support/targets.js';
import { eventually } from '../../test/support/wait.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

export type MeshRole = 'server' | 'conductor' | 'executor';

export interface RoleProcess {
  role: MeshRole;
  name: string;
  pid: number;
  address: string;
  metricsAddress: string;
  /** Ends the child: SIGTERM, then SIGKILL after graceMs (0: SIGKILL at once). */
  stop(graceMs: number): Promise<void>;
  exited(): boolean;
}

export interface MeshSize {
  servers: number;
  conductors: number;
  executors: number;
}

export interface MeshOptions extends MeshSize {
  databaseUrl: string;
  /** base64, the same on every server. */
  secretKey: string;
  /** `tsx` (the sources, the default) or `dist` (compiled JavaScript on plain node). */
  loader: 'tsx' | 'dist';
  /** Node flags for the executors only (e.g. --max-semi-space-size=16). */
  executorNodeOptions?: string;
}

export interface Mesh {
  servers: RoleProcess[];
  conductors: RoleProcess[];
  executors: RoleProcess[];
  all(): RoleProcess[];
  /** Servers first (no new hand-offs), executors killed (they hold nothing), conductors last. */
  stop(): Promise<void>;
}

const healthServices: Record<MeshRole, string> = {
  server: 'vimmon.tacker.v1.VimService',
  conductor: 'vimmon.conductor.v1.VimMonitorAction2Conductor',
  executor: 'vimmon.executor.v1.ExecutorService',
};

function command(loader: MeshOptions['loader'], role: MeshRole): string[] {
  if (loader === 'dist') {
    const main = path.join(root, 'dist', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: npm run build first, or ROLE_LOADER=tsx`);
    return [main, role];
  }
  return ['--import=tsx', path.join(root, 'cli', 'main.ts'), role];
}

async function startRole(
  role: MeshRole,
  name: string,
  options: MeshOptions,
  env: Record<string, string>,
  address: string,
): Promise<RoleProcess> {
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const variable = role.toUpperCase();
  // This process's VIMMON_* and NODE_OPTIONS would leak into the child's settings.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VIMMON_') && k !== 'NODE_OPTIONS'));
  const child: ChildProcess = spawn(process.execPath, command(options.loader, role), {
    cwd: root,
    env: {
      ...inherited,
      ...(role === 'executor' && options.executorNodeOptions ? { NODE_OPTIONS: options.executorNodeOptions } : {}),
      [`VIMMON_${variable}_ADDR`]: address,
      [`VIMMON_${variable}_METRICS_ADDR`]: metricsAddress,
      VIMMON_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      resolve();
    }),
  );
  const stop = async (graceMs: number) => {
    if (exitCode !== undefined) return;
    child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
    const timer = graceMs > 0 ? setTimeout(() => child.kill('SIGKILL'), graceMs) : undefined;
    await exited;
    clearTimeout(timer);
  };
  const proc: RoleProcess = { role, name, pid: child.pid!, address, metricsAddress, stop, exited: () => exitCode !== undefined };
  const channel = createChannel(address);
  try {
    const health = createClient(HealthDefinition, channel);
    await eventually(
      async () => {
        if (exitCode !== undefined) throw new Error(`${name} exited with ${exitCode}`);
        const r = await health.check({ service: healthServices[role] }, { signal: AbortSignal.timeout(2_000) });
        return r.status === HealthCheckResponse_ServingStatus.SERVING;
      },
      90_000,
      `${name} SERVING`,
      200,
    );
  } catch (err) {
    await stop(0);
    throw err;
  } finally {
    channel.close();
  }
  return proc;
}

/**
 * Conductors, then executors, then servers (so a server's first hand-off finds
 * its executors), each group started together. On a failure everything started
 * is stopped before the error is thrown.
 */
export async function startMesh(options: MeshOptions, track: (p: RoleProcess) => void): Promise<Mesh> {
  const started: RoleProcess[] = [];
  const group = async (role: MeshRole, count: number, env: Record<string, string>, addresses: string[]) => {
    const settled = await Promise.allSettled(
      addresses.slice(0, count).map((address, i) => startRole(role, `${role}-${i + 1}`, options, env, address)),
    );
    for (const s of settled)
      if (s.status === 'fulfilled') {
        started.push(s.value);
        track(s.value);
      }
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return settled.map((s) => (s as PromiseFulfilledResult<RoleProcess>).value);
  };
  const addresses = async (n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(`127.0.0.1:${await freePort()}`);
    return out;
  };
  const database = { DATABASE_URL: options.databaseUrl };
  try {
    const conductorAddresses = await addresses(options.conductors);
    const conductors = await group('conductor', options.conductors, database, conductorAddresses);
    const executorAddresses = await addresses(options.executors);
    const executors = await group(
      'executor',
      options.executors,
      // Killed at the end, never drained: nothing would take their VIMs.
      { VIMMON_CONDUCTOR_TARGET: conductorAddresses.join(','), VIMMON_EXECUTOR_DRAIN_TIMEOUT: '1s' },
      executorAddresses,
    );
    const servers = await group(
      'server',
      options.servers,
      { ...database, VIMMON_EXECUTORS: executorAddresses.join(','), VIMMON_SECRET_KEY: options.secretKey },
      await addresses(options.servers),
    );
    return {
      servers,
      conductors,
      executors,
      all: () => [...servers, ...conductors, ...executors],
      stop: () => stopAll(started),
    };
  } catch (err) {
    await stopAll(started);
    throw err;
  }
}

export async function stopAll(processes: RoleProcess[]): Promise<void> {
  const of = (role: MeshRole) => processes.filter((p) => p.role === role);
  await Promise.all(of('server').map((p) => p.stop(10_000)));
  await Promise.all(of('executor').map((p) => p.stop(0)));
  await Promise.all(of('conductor').map((p) => p.stop(10_000)));
}
