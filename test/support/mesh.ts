// The monitor mesh in one test process: Tacker servers, conductors and
// executors on random ports, each server and conductor with its own ORM (as
// separate processes would have), against one real PostgreSQL database.
import type { ExecutionContext } from 'ava';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import type { RunningRole } from '../../common/role.js';
import { startConductor } from '../../conductor/main.js';
import { startExecutor } from '../../executor/main.js';
import { ExecutorServiceDefinition, type ExecutorServiceClient } from '../../gen/vimmon/executor/v1/executor_service.js';
import { VimServiceDefinition, type VimServiceClient } from '../../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../../server/main.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { testLogger } from './logger.js';

export interface MeshOptions {
  servers?: number;
  conductors?: number;
  executors?: number;
  reconcileIntervalMs?: number;
  startGraceMs?: number;
  lostActionCheckMs?: number;
}

export interface Mesh {
  db: TestDatabase;
  servers: RunningRole[];
  conductors: RunningRole[];
  executors: RunningRole[];
  /** A VimService client of server i (default 0). */
  vims(i?: number): VimServiceClient;
  executorClient(i: number): ExecutorServiceClient;
  startServer(): Promise<RunningRole>;
  /** Stops executor i and starts a new one on the same address (a restart: its actions are gone). */
  restartExecutor(i: number): Promise<void>;
  /** Every executor address the servers were configured with (stopped ones included). */
  executorAddresses: string[];
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

const key = Buffer.alloc(32, 3);

export async function startMesh(t: ExecutionContext, options: MeshOptions = {}): Promise<Mesh> {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const channels: Channel[] = [];
  const roles: RunningRole[] = [];
  t.teardown(async () => {
    for (const c of channels) c.close();
    // Servers first (no new hand-offs), then executors, then conductors.
    const order = ['server', 'executor', 'conductor'];
    for (const r of [...roles].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name))) await r.stop();
  });

  const conductors: RunningRole[] = [];
  for (let i = 0; i < (options.conductors ?? 1); i++) {
    const r = await startConductor({ logger, orm: await db.open(), address: '127.0.0.1:0' });
    conductors.push(r);
    roles.push(r);
  }
  const conductorTarget = conductors.map((c) => c.address).join(',');
  const executors: RunningRole[] = [];
  for (let i = 0; i < (options.executors ?? 1); i++) {
    const r = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget, reportBackoff: { baseDelayMs: 50, maxDelayMs: 500 } });
    executors.push(r);
    roles.push(r);
  }
  const executorAddresses = executors.map((e) => e.address);
  const servers: RunningRole[] = [];
  const launchServer = async () => {
    const r = await startServer({
      logger,
      orm: await db.open(),
      databaseUrl: db.url,
      address: '127.0.0.1:0',
      executors: executorAddresses,
      key,
      reconcileIntervalMs: options.reconcileIntervalMs ?? 200,
      startGraceMs: options.startGraceMs ?? 1_000,
      executorHealthIntervalMs: 100,
      lostActionCheckMs: options.lostActionCheckMs ?? 500,
    });
    servers.push(r);
    roles.push(r);
    return r;
  };
  for (let i = 0; i < (options.servers ?? 1); i++) await launchServer();

  const channel = (address: string) => {
    const c = createChannel(address);
    channels.push(c);
    return c;
  };
  return {
    db,
    servers,
    conductors,
    executors,
    executorAddresses,
    vims: (i = 0) => createClient(VimServiceDefinition, channel(servers[i]!.address)),
    executorClient: (i) => createClient(ExecutorServiceDefinition, channel(executors[i]!.address)),
    startServer: launchServer,
    async restartExecutor(i) {
      const old = executors[i]!;
      await old.stop();
      const r = await startExecutor({ logger, address: old.address, conductorTarget, reportBackoff: { baseDelayMs: 50, maxDelayMs: 500 } });
      executors[i] = r;
      roles.push(r);
    },
    async query(sql, params = []) {
      return (await db.orm.em
        .fork()
        .getConnection()
        .execute(sql, params as unknown[])) as never;
    },
  };
}
