// The mesh the client package is tested against: the monitor mesh of
// support/mesh.ts plus an inspector, where the Tacker server and the inspector
// can be stopped and started again on the same port (a role restarting under a
// client that keeps its channel and its streams).
import type { ExecutionContext } from 'ava';
import type { RunningRole } from '../../common/role.js';
import { startInspector, type InspectorOptions, type RunningInspector } from '../../inspector/main.js';
import { startServer } from '../../server/main.js';
import { testLogger } from './logger.js';
import { startMesh, type Mesh, type MeshOptions } from './mesh.js';

export interface RestartableRole<R extends RunningRole = RunningRole> {
  /** host:port, the same across restarts. */
  readonly address: string;
  readonly running: R | undefined;
  stop(): Promise<void>;
  /** Starts it again on the same address. */
  start(): Promise<void>;
}

export interface SdkMesh {
  mesh: Mesh;
  server: RestartableRole;
  inspector: RestartableRole<RunningInspector>;
}

export interface SdkMeshOptions extends MeshOptions {
  inspector?: Partial<Pick<InspectorOptions, 'subscriberQueueSize' | 'subscriberQueueBytes'>>;
}

/** A port just freed may be taken by another test's listener for a moment: try the same port again for a while. */
async function onSamePort<R>(start: () => Promise<R>, what: string): Promise<R> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await start();
    } catch (err) {
      if (Date.now() > deadline || !/EADDRINUSE|No address added|address already in use/i.test(String((err as Error)?.message ?? err))) {
        throw new Error(`${what} could not start again on its port: ${String(err)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function restartable<R extends RunningRole>(t: ExecutionContext, first: R, startOn: (address: string) => Promise<R>): RestartableRole<R> {
  let running: R | undefined = first;
  const address = first.address;
  t.teardown(async () => {
    await running?.stop();
  });
  return {
    address,
    get running() {
      return running;
    },
    async stop() {
      const r = running;
      running = undefined;
      await r?.stop();
    },
    async start() {
      if (running) throw new Error(`${first.name} is already running`);
      running = await onSamePort(() => startOn(address), first.name);
    },
  };
}

export async function startSdkMesh(t: ExecutionContext, options: SdkMeshOptions = {}): Promise<SdkMesh> {
  const mesh = await startMesh(t, { servers: 0, ...options });
  const logger = testLogger();
  const launchServer = async (address: string) =>
    startServer({
      logger,
      orm: await mesh.db.open(),
      databaseUrl: mesh.db.url,
      address,
      executors: mesh.executorAddresses,
      key: Buffer.alloc(32, 3),
      reconcileIntervalMs: options.reconcileIntervalMs ?? 200,
      startGraceMs: options.startGraceMs ?? 1_000,
      executorHealthIntervalMs: 100,
      lostActionCheckMs: options.lostActionCheckMs ?? 500,
    });
  const launchInspector = async (address: string) =>
    startInspector({
      logger,
      orm: mesh.db.orm,
      databaseUrl: mesh.db.url,
      address,
      httpAddress: '127.0.0.1:0',
      env: {},
      resyncIntervalMs: 60_000,
      ...options.inspector,
    });
  const server = restartable(t, await launchServer('127.0.0.1:0'), launchServer);
  const inspector = restartable(t, await launchInspector('127.0.0.1:0'), launchInspector);
  return { mesh, server, inspector };
}
