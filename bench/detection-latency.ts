// Detection latency: from a VIM's endpoint closing to UNREACHABLE stored by a
// conductor. One executor, one conductor, one Tacker server in this process,
// against a real PostgreSQL; each VIM has its own real TCP listener, and the
// listeners are closed at random moments. Prints JSON.
//
//   npm run bench:detection            (DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
//   VIMS=300 npm run bench:detection
//   FAULTS=dropped-tcp,dropped-http npm run bench:detection   (only those rows)
//
// The dropped-* rows (root only) put the listeners in a network namespace behind
// a veth pair and drop their packets with nftables (bench/support/packet-drop.ts),
// so probes get no answer at all instead of a refusal.
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { createChannel, createClient } from 'nice-grpc';
import { createLogger } from '../common/logger.js';
import { startConductor } from '../conductor/main.js';
import { openDatabase } from '../db/connection.js';
import { startExecutor } from '../executor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { ProbeKind, VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../server/main.js';
import { msToDuration as ms } from '../common/duration.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';
import { stageDroppableTargets } from './support/packet-drop.js';

const vims = Number(process.env.VIMS ?? 200);
// refused: the listener closes (connect refused at once). hang: an HTTP endpoint
// stops answering (each attempt runs into its timeout) — the slow path.
// dropped-tcp / dropped-http: every packet to the listener is dropped mid-run,
// open connections and new connects alike (no RST). dropped-icmp: all VIMs ping
// one namespace address and its ICMP is dropped at one moment; the VIMs' rounds
// are at every phase because they were registered one after another.
type Fault = 'refused' | 'hang' | 'dropped-tcp' | 'dropped-http' | 'dropped-icmp';
const allConfigs: Array<{ intervalMs: number; timeoutMs: number; fault: Fault }> = [
  { intervalMs: 1_000, timeoutMs: 200, fault: 'refused' },
  { intervalMs: 500, timeoutMs: 100, fault: 'refused' },
  { intervalMs: 1_000, timeoutMs: 200, fault: 'hang' },
  { intervalMs: 1_000, timeoutMs: 200, fault: 'dropped-tcp' },
  { intervalMs: 1_000, timeoutMs: 200, fault: 'dropped-http' },
  { intervalMs: 1_000, timeoutMs: 200, fault: 'dropped-icmp' },
];
const faultNames = new Set<string>(allConfigs.map((c) => c.fault));
const wanted = (process.env.FAULTS ?? [...faultNames].join(',')).split(',').map((f) => f.trim());
for (const f of wanted) if (!faultNames.has(f)) throw new Error(`FAULTS: unknown fault "${f}" (one of ${[...faultNames].join(', ')})`);
const configs = allConfigs.filter((c) => wanted.includes(c.fault));
const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function listen(fault: 'refused' | 'hang'): Promise<{ server: Server; port: number; fail(): void }> {
  let hanging = false;
  const server =
    fault === 'refused'
      ? createServer((s) => {
          s.on('error', () => {});
          s.end();
        })
      : createHttpServer((_req, res) => {
          if (hanging) return; // accept, never answer
          res.end('{}');
        });
  const fail = () => {
    if (fault === 'refused') server.close();
    else hanging = true;
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, fail };
}

interface Target {
  server?: Server;
  port: number;
  fail(): void | Promise<void>;
}

async function run(config: (typeof configs)[number]) {
  let dropped: Awaited<ReturnType<typeof stageDroppableTargets>> | undefined;
  if (config.fault.startsWith('dropped-')) {
    try {
      dropped = await stageDroppableTargets(
        vims,
        config.fault === 'dropped-tcp' ? 'tcp' : config.fault === 'dropped-http' ? 'http' : 'icmp',
      );
    } catch (error) {
      // Without root or nftables the other rows still stand; say why this one is missing.
      return {
        fault: config.fault,
        intervalMs: config.intervalMs,
        timeoutMs: config.timeoutMs,
        skipped: `cannot stage: ${(error as Error).message}`,
      };
    }
  }
  try {
    return await measure(config, dropped);
  } finally {
    await dropped?.close();
  }
}

async function measure(config: (typeof configs)[number], dropped: Awaited<ReturnType<typeof stageDroppableTargets>> | undefined) {
  const host = dropped?.address ?? '127.0.0.1';
  const scratch = await createScratchDatabase(baseUrl, 'vimmon_bench');
  const url = scratch.url;
  const logger = createLogger({ level: 'warn' });
  const orm = await openDatabase({ url });
  const conductor = await startConductor({ logger, orm, address: '127.0.0.1:0' });
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: conductor.address });
  const server = await startServer({
    logger,
    orm,
    databaseUrl: url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: randomBytes(32),
    reconcileIntervalMs: 5_000,
  });
  const channel = createChannel(server.address);
  const client = createClient(VimServiceDefinition, channel);
  const targets: Array<Target & { id: string; closedAt?: number }> = [];
  const icmp = config.fault === 'dropped-icmp';
  let icmpDrop: Promise<void> | undefined;
  for (let i = 0; i < vims; i++) {
    const t: Target = icmp
      ? { port: 5000, fail: () => (icmpDrop ??= dropped!.dropIcmp()) }
      : dropped
        ? { port: dropped.ports[i]!, fail: () => dropped.drop(dropped.ports[i]!) }
        : await listen(config.fault === 'hang' ? 'hang' : 'refused');
    const { vim } = await client.registerVim({
      name: `bench-${i}`,
      authUrl: `http://${host}:${t.port}/v3`,
      monitor: {
        probe: icmp
          ? ProbeKind.PROBE_KIND_ICMP
          : config.fault === 'hang' || config.fault === 'dropped-http'
            ? ProbeKind.PROBE_KIND_HTTP
            : ProbeKind.PROBE_KIND_TCP,
        interval: ms(config.intervalMs),
        timeout: ms(config.timeoutMs),
        unreachableAfter: 1,
        reportInterval: ms(30_000),
      },
    });
    targets.push({ id: vim!.id, ...t });
  }
  // Wait until every VIM is REACHABLE.
  let reachableBefore = 0;
  for (let tries = 0; tries < 100; tries++) {
    const r = await orm.em.fork().getConnection().execute(`select count(*)::int as n from vim where status = 'REACHABLE'`);
    reachableBefore = r[0].n;
    if (r[0].n === vims) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  // Close each listener at a random moment over two intervals, so closes fall at every phase of the rounds.
  // One ICMP drop serves every VIM: all of them fail at the same moment.
  const spreadMs = icmp ? 0 : config.intervalMs * 2;
  await Promise.all(
    targets.map(
      (t) =>
        new Promise<void>((resolve, reject) =>
          setTimeout(() => {
            // Taken before the fault is applied: a drop rule (an nft run) counts from its start.
            t.closedAt = Date.now();
            Promise.resolve(t.fail()).then(resolve, reject);
          }, Math.random() * spreadMs),
        ),
    ),
  );
  const deadline = Date.now() + config.intervalMs * 3 + 5_000;
  let rows: Array<{ vim_id: string; at: Date }> = [];
  while (Date.now() < deadline) {
    rows = await orm.em
      .fork()
      .getConnection()
      .execute(`select vim_id, min(created_at) as at from vim_event where to_status = 'UNREACHABLE' group by vim_id`);
    if (rows.length === vims) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const byId = new Map(targets.map((t) => [t.id, t.closedAt!]));
  const latencies = rows.map((r) => new Date(r.at).getTime() - byId.get(r.vim_id)!).sort((a, b) => a - b);
  channel.close();
  for (const t of targets) {
    if (!t.server) continue;
    t.server.close();
    (t.server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  }
  await server.stop();
  await executor.stop();
  await conductor.stop();
  await orm.close(true);
  await scratch.drop();
  const budget = config.intervalMs + config.timeoutMs + 100;
  return {
    fault: config.fault,
    intervalMs: config.intervalMs,
    timeoutMs: config.timeoutMs,
    vims,
    reachableBefore,
    detected: latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1),
    targetP99Ms: budget,
    meetsTarget: latencies.length === vims && percentile(latencies, 99) <= budget,
  };
}

const results = [];
for (const c of configs) results.push(await run(c));
process.stdout.write(
  `${JSON.stringify({ bench: 'detection-latency', status: VimStatus[VimStatus.VIM_STATUS_UNREACHABLE], results }, null, 2)}\n`,
);
