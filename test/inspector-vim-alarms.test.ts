// A new inspector on a mesh with history: VIM alarms describe the present
// (VIMs unreachable now), not every transition ever stored.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { createChannel, createClient } from 'nice-grpc';
import { startConductor } from '../conductor/main.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { AlarmType, InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector } from '../inspector/main.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { eventually } from './support/wait.js';

test('first start: one VIM_UNREACHABLE per VIM unreachable now, no replay of old transitions', async (t) => {
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger: testLogger(), orm: db.orm, address: '127.0.0.1:0' });
  const cch = createChannel(conductor.address);
  t.teardown(async () => {
    cch.close();
    await conductor.stop();
  });
  const reports = createClient(VimMonitorAction2ConductorDefinition, cch);
  const vims: Record<string, { id: string; action: string }> = {};
  for (const name of ['flapped', 'down-now', 'deregistered']) {
    vims[name] = { id: randomUUID(), action: randomUUID() };
    await db.orm.em.fork().execute(
      `insert into vim (id, name, type, auth_url, probe, interval_ms, timeout_ms, probe_count, unreachable_after,
         report_interval_ms, stale_after_ms, status, action_id, action_assigned_at, created_at, updated_at, status_changed_at)
       values (?, ?, 'openstack', 'http://192.0.2.1:5000/v3', 'tcp', 1000, 500, 1, 1, 10000, 30000, 'PENDING', ?, now(), now(), now(), now())`,
      [vims[name]!.id, name, vims[name]!.action],
    );
  }
  const report = (name: string, status: VimStatus) => reports.updateVim({ vimId: vims[name]!.id, actionId: vims[name]!.action, status });
  for (const s of [
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatus.VIM_STATUS_REACHABLE,
    VimStatus.VIM_STATUS_UNREACHABLE,
    VimStatus.VIM_STATUS_REACHABLE,
  ]) {
    await report('flapped', s);
  }
  await report('down-now', VimStatus.VIM_STATUS_REACHABLE);
  await report('down-now', VimStatus.VIM_STATUS_UNREACHABLE);
  await report('deregistered', VimStatus.VIM_STATUS_UNREACHABLE);
  await db.orm.em.fork().execute(`update vim set deleted_at = now() where id = ?`, [vims.deregistered!.id]);

  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    resyncIntervalMs: 60_000,
  });
  const ich = createChannel(inspector.address);
  t.teardown(async () => {
    await inspector.stop();
    ich.close();
  });
  const client = createClient(InspectorServiceDefinition, ich);
  const stored = await eventually(
    async () => {
      const r = await client.listAlarms({ afterAlarmId: 0, pageSize: 100 });
      return r.alarms.length > 0 ? r.alarms : undefined;
    },
    5_000,
    'the VIM alarms of the present',
  );
  await new Promise((r) => setTimeout(r, 300));
  const all = (await client.listAlarms({ afterAlarmId: 0, pageSize: 100 })).alarms;
  t.is(all.length, 1, JSON.stringify(all.map((a) => [a.vimName, AlarmType[a.type]])));
  t.like(stored[0], { type: AlarmType.ALARM_TYPE_VIM_UNREACHABLE, vimId: vims['down-now']!.id, vimName: 'down-now' });

  // From here on transitions raise alarms as usual, once each.
  await report('down-now', VimStatus.VIM_STATUS_REACHABLE);
  await report('flapped', VimStatus.VIM_STATUS_UNREACHABLE);
  const later = await eventually(
    async () => {
      const r = (await client.listAlarms({ afterAlarmId: 0, pageSize: 100 })).alarms;
      return r.length === 3 ? r : undefined;
    },
    5_000,
    'two more alarms',
  );
  t.deepEqual(
    later.slice(1).map((a) => [a.vimName, AlarmType[a.type]]),
    [
      ['down-now', 'ALARM_TYPE_VIM_RECOVERED'],
      ['flapped', 'ALARM_TYPE_VIM_UNREACHABLE'],
    ],
  );
});
