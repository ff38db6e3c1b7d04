// What sharing alarms across inspectors costs (VIMMON_INSPECTOR_SHARED), side
// by side in one run: the first alarm of a host fault at a subscriber, from
// just before ReportEvents is sent, with
//   shortcut       one inspector, alarms sent before they are stored (its own database);
//   shared-same    two inspectors on one database, the subscriber on the one the fault is reported to;
//   shared-other   the same fault, the subscriber on the other inspector.
// Each inspector runs in a child process; this process plays the monitor, the
// subscribers (one each, taking every alarm) and the OpenStack double (every
// Nova call takes NOVA_LATENCY_MS, 250 by default, as bench/doctor-study.ts).
// Faults alternate between the shortcut and the shared pair, one at a time,
// each on a host of its own with VMS VMs (default 10); one warm-up fault per
// inspector is not counted. Prints JSON with p50/p99/max and the shared /
// shortcut ratios.
//
//   npx tsx bench/inspector-shared.ts        (DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
//   QUICK=1 npx tsx bench/inspector-shared.ts   (40 faults per mode instead of 200)
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createChannel, createClient } from 'nice-grpc';
import { createLogger } from '../common/logger.js';
import { openDatabase } from '../db/connection.js';
import { InspectorServiceDefinition, type InspectorServiceClient } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector } from '../inspector/main.js';
import { openrcEnv, startOpenStackDouble } from '../test/support/openstack-double.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';
import { eventually } from '../test/support/wait.js';

const thisFile = fileURLToPath(import.meta.url);

interface ChildConfig {
  databaseUrl: string;
  env: NodeJS.ProcessEnv;
  shared: boolean;
}

async function startChild(config: ChildConfig): Promise<{ child: ChildProcess; client: InspectorServiceClient; close(): void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', thisFile, 'inspector-child'], {
    env: { ...process.env, INSPECTOR_SHARED_CHILD: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`inspector child exited with ${code}`)));
  });
  const channel = createChannel((JSON.parse(line) as { address: string }).address);
  return { child, client: createClient(InspectorServiceDefinition, channel), close: () => channel.close() };
}

async function stopChild(child: ChildProcess) {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin!.end();
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** A subscriber taking every alarm: the first arrival per host. */
function firstArrivals(client: InspectorServiceClient, signal: AbortSignal) {
  const first = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  void (async () => {
    try {
      for await (const alarm of client.subscribeAlarms({ liveOnly: true }, { signal })) {
        if (first.has(alarm.host)) continue;
        first.set(alarm.host, performance.now());
        waiters.get(alarm.host)?.();
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  })();
  return {
    /** Resolves with the arrival time of the host's first alarm. */
    when: (host: string) =>
      new Promise<number>((resolve) => {
        const at = first.get(host);
        if (at !== undefined) return resolve(at);
        waiters.set(host, () => resolve(first.get(host)!));
      }),
  };
}

function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const round = (v: number | undefined) => (v === undefined ? undefined : Math.round(v * 100) / 100);
const summary = (values: number[]) => ({
  p50: round(percentile(values, 50)),
  p99: round(percentile(values, 99)),
  max: round(percentile(values, 100)),
  n: values.length,
});
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || !b ? undefined : Math.round((a / b) * 100) / 100);

async function main() {
  const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const faults = process.env.QUICK ? 40 : 200;
  const vms = Number(process.env.VMS ?? 10);
  const novaLatencyMs = Number(process.env.NOVA_LATENCY_MS ?? 250);
  const d = await startOpenStackDouble();
  const shortcutDb = await createScratchDatabase(serverUrl, 'vimmon_bench_shortcut');
  const sharedDb = await createScratchDatabase(serverUrl, 'vimmon_bench_shared');
  const children: Array<Awaited<ReturnType<typeof startChild>>> = [];
  const stop = new AbortController();
  try {
    const hostsOf = (mode: string) => Array.from({ length: faults + 1 }, (_, i) => `${mode}-${i}`);
    for (const host of [...hostsOf('s'), ...hostsOf('h')]) for (let v = 0; v < vms; v++) d.addServer({ name: `${host}-vm${v}`, host });
    d.setLatency(novaLatencyMs);
    const env = openrcEnv(d);
    const shortcut = await startChild({ databaseUrl: shortcutDb.url, env, shared: false });
    children.push(shortcut);
    const sharedA = await startChild({ databaseUrl: sharedDb.url, env, shared: true });
    children.push(sharedA);
    const sharedB = await startChild({ databaseUrl: sharedDb.url, env, shared: true });
    children.push(sharedB);
    for (const c of children) {
      await eventually(async () => (await c.client.getStatus({})).cachedVms === d.servers().length, 120_000, 'the cache snapshot');
    }
    const onShortcut = firstArrivals(shortcut.client, stop.signal);
    const onSame = firstArrivals(sharedA.client, stop.signal);
    const onOther = firstArrivals(sharedB.client, stop.signal);
    for (const c of children) await eventually(async () => (await c.client.getStatus({})).subscribers === 1, 5_000, 'the subscriber');

    const event = (host: string) => ({
      time: new Date(),
      type: 'compute.host.down',
      hostname: host,
      status: 'down',
      monitor: 'bench',
      monitorEventId: host,
    });
    const samples = { shortcut: [] as number[], sharedSame: [] as number[], sharedOther: [] as number[] };
    const runShortcut = async (i: number) => {
      const host = `s-${i}`;
      const t0 = performance.now();
      await shortcut.client.reportEvents({ events: [event(host)] });
      const at = await onShortcut.when(host);
      if (i > 0) samples.shortcut.push(at - t0);
    };
    const runShared = async (i: number) => {
      const host = `h-${i}`;
      const t0 = performance.now();
      await sharedA.client.reportEvents({ events: [event(host)] });
      const [same, other] = await Promise.all([onSame.when(host), onOther.when(host)]);
      if (i > 0) {
        samples.sharedSame.push(same - t0);
        samples.sharedOther.push(other - t0);
      }
    };
    for (let i = 0; i <= faults; i++) {
      // Alternating which goes first, so that neither always follows the other's Nova work.
      if (i % 2 === 0) {
        await runShortcut(i);
        await runShared(i);
      } else {
        await runShared(i);
        await runShortcut(i);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const shortcutMs = summary(samples.shortcut);
    const sameMs = summary(samples.sharedSame);
    const otherMs = summary(samples.sharedOther);
    console.log(
      JSON.stringify(
        {
          benchmark: 'inspector-shared',
          machine: { cpus: cpus().length },
          faultsPerMode: faults,
          vmsPerHost: vms,
          novaLatencyMs,
          firstAlarmAtSubscriberMs: { shortcut: shortcutMs, sharedSame: sameMs, sharedOther: otherMs },
          ratioToShortcut: {
            sharedSame: { p50: ratio(sameMs.p50, shortcutMs.p50), p99: ratio(sameMs.p99, shortcutMs.p99) },
            sharedOther: { p50: ratio(otherMs.p50, shortcutMs.p50), p99: ratio(otherMs.p99, shortcutMs.p99) },
          },
        },
        null,
        2,
      ),
    );
  } finally {
    stop.abort();
    for (const c of children) c.close();
    await Promise.all(children.map((c) => stopChild(c.child)));
    await d.close();
    await shortcutDb.drop();
    await sharedDb.drop();
  }
}

/** The inspector alone in its process. */
async function runChild() {
  const config = JSON.parse(process.env.INSPECTOR_SHARED_CHILD!) as ChildConfig;
  const orm = await openDatabase({ url: config.databaseUrl, poolMax: 4 });
  const inspector = await startInspector({
    logger: createLogger({ level: 'error' }),
    orm,
    databaseUrl: config.databaseUrl,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: config.env,
    resyncIntervalMs: 3_600_000,
    shared: config.shared,
    novaShutdownGraceMs: 200,
  });
  process.stdout.write(`${JSON.stringify({ address: inspector.address })}\n`);
  const stop = async () => {
    await inspector.stop();
    await orm.close(true);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  createInterface({ input: process.stdin }).on('close', () => void stop());
}

if (process.argv[2] === 'inspector-child') await runChild();
else await main();
