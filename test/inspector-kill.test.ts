// Two `vimmon inspector` processes sharing one database (VIMMON_INSPECTOR_SHARED=on)
// against the OpenStack double: the one driving a host fault is killed with
// SIGKILL while its resets are under way. The other takes the Nova work over
// and finishes it under the same fault, and a subscriber on the survivor has
// every alarm of the fault exactly once, as the table holds them.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { type Alarm, InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { createTestDatabase } from './support/database.js';
import { hostEvent } from './support/inspector-harness.js';
import { openrcEnv, startOpenStackDouble } from './support/openstack-double.js';
import { freePort } from './support/targets.js';
import { eventually } from './support/wait.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const isReset = (m: string, p: string) => m === 'POST' && /\/servers\/[^/]+\/action$/.test(p);
const resetTarget = (path: string) => /\/servers\/([^/]+)\/action$/.exec(path)![1]!;

interface InspectorProcess {
  address: string;
  child: ChildProcess;
  stderr(): string;
}

async function spawnInspector(t: ExecutionContext, env: NodeJS.ProcessEnv): Promise<InspectorProcess> {
  const address = `127.0.0.1:${await freePort()}`;
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('VIMMON_') && !k.startsWith('OS_')) clean[k] = v;
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'inspector'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...clean,
      ...env,
      VIMMON_INSPECTOR_ADDR: address,
      VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
      VIMMON_INSPECTOR_METRICS_ADDR: 'off',
      VIMMON_AMQP_URL: 'off',
      VIMMON_INSPECTOR_SHARED: 'on',
      VIMMON_LOG_LEVEL: 'warn',
    },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4_000)));
  child.stdout!.on('data', (d) => (stderr = (stderr + d).slice(-4_000)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const channel = createChannel(address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`inspector exited ${child.exitCode}:\n${stderr}`);
      const r = await health.check({ service: '' }, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
      return r?.status === HealthCheckResponse_ServingStatus.SERVING;
    },
    60_000,
    `the inspector on ${address} serving`,
  );
  return { address, child, stderr: () => stderr };
}

test('two inspector processes: the one driving a fault is killed (SIGKILL) mid-fault; the other finishes it, and its subscriber has every alarm once', async (t) => {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  const vms = [0, 1, 2].map((i) => d.addServer({ name: `k${i}`, host: 'compute-k' }));
  // The resets hang: the first inspector is killed while they are under way.
  d.setLatency(15_000, isReset);
  const db = await createTestDatabase(t);
  const env = { DATABASE_URL: db.url, ...openrcEnv(d) };
  const [first, second] = await Promise.all([spawnInspector(t, env), spawnInspector(t, env)]);

  const survivorChannel = createChannel(second.address);
  t.teardown(() => survivorChannel.close());
  const survivor = createClient(InspectorServiceDefinition, survivorChannel);
  const got: Alarm[] = [];
  const subscription = new AbortController();
  t.teardown(() => subscription.abort());
  void (async () => {
    try {
      for await (const a of survivor.subscribeAlarms({ afterAlarmId: 0 }, { signal: subscription.signal })) got.push(a);
    } catch {
      // ended by the test
    }
  })();

  const firstChannel = createChannel(first.address);
  t.teardown(() => firstChannel.close());
  const reply = await createClient(InspectorServiceDefinition, firstChannel).reportEvents({ events: [hostEvent('compute-k')] });
  t.is(reply.accepted, 1);
  await eventually(() => d.services().find((s) => s.host === 'compute-k')?.forcedDown, 20_000, 'the host forced down');
  await eventually(() => d.computeCalls().filter((c) => isReset(c.method, c.path)).length === 3, 20_000, 'the resets asked for');

  const killedAt = performance.now();
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  d.setLatency(0, isReset);

  const stored = async () =>
    (await db.orm.em.fork().getConnection().execute(`select fault_id, nova_done_at from inspector_host where host = 'compute-k'`))[0];
  // The survivor's takeover pass runs every 5 s.
  // (null is a value to eventually(): only a set timestamp ends the wait.)
  await eventually(async () => (await stored())?.nova_done_at ?? undefined, 60_000, 'the surviving inspector to finish the work');
  t.is((await stored())!.fault_id, reply.faultIds[0], 'the same fault, finished');
  const after = d.computeCalls().filter((c) => isReset(c.method, c.path) && c.receivedAt > killedAt);
  t.deepEqual([...new Set(after.map((c) => resetTarget(c.path)))].sort(), [...vms].sort(), 'every VM reset by the survivor');
  t.true(d.servers().every((s) => s.vmState === 'error'));

  // The alarms the killed inspector raised reached the survivor's subscriber: each once, as stored.
  const rows = (await db.orm.em.fork().getConnection().execute(`select alarm_id from alarm order by alarm_id`)) as Array<{
    alarm_id: string | number;
  }>;
  const table = rows.map((r) => Number(r.alarm_id));
  t.is(table.length, 4, 'the host and its three VMs');
  await eventually(() => got.length >= table.length, 10_000, 'the alarms at the subscriber');
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(
    got.map((a) => Number(a.alarmId)),
    table,
  );
  t.is(second.child.exitCode, null, `the survivor still runs:\n${second.stderr()}`);
});
