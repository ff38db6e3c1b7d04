// An executor that drains (SIGTERM in `vimmon executor`) says NOT_SERVING; the servers
// notice through the health they poll and move its VIMs to a live executor at once
// (not after the stale limit, nor the next periodic pass), and its actions end.
import test from 'ava';
import { msToDuration as ms } from '../common/duration.js';
import type { RunningExecutor } from '../executor/main.js';
import type { MonitorPolicy } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startMesh, type Mesh } from './support/mesh.js';
import { openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

// A stale limit of a minute and a reconcile pass every 20 s: neither can explain a move within seconds.
const policy: Partial<MonitorPolicy> = { interval: ms(200), timeout: ms(100), reportInterval: ms(300), staleAfter: ms(60_000) };

type Row = { id: string; action_id: string; executor: string; action_started: boolean; last_report_at: string | null };
const rows = (mesh: Mesh) => mesh.query<Row>(`select id, action_id, executor, action_started, last_report_at from vim order by name`);

async function registerAll(t: import('ava').ExecutionContext, mesh: Mesh, count: number) {
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  for (let i = 0; i < count; i++) await mesh.vims().registerVim({ name: `vim-${i}`, authUrl: target.url, monitor: policy });
  return eventually(
    async () => {
      const r = await rows(mesh);
      return r.length === count && r.every((v) => v.action_started && v.last_report_at !== null) && r;
    },
    20_000,
    'every VIM started and reporting',
  );
}

test('a draining executor hands its VIMs to the live one at once; its actions end and drain() returns', async (t) => {
  const mesh = await startMesh(t, { executors: 2, reconcileIntervalMs: 20_000 });
  const before = await registerAll(t, mesh, 16);
  // Rendezvous hashing spreads 16 VIMs over both executors; drain the one holding more.
  const on = (address: string) => before.filter((v) => v.executor === address);
  const [a, b] = on(mesh.executorAddresses[0]!).length >= on(mesh.executorAddresses[1]!).length ? [0, 1] : [1, 0];
  const moving = on(mesh.executorAddresses[a]!);
  t.true(moving.length > 0);
  // The object behind the mesh's RunningRole is the executor's own.
  const draining = mesh.executors[a] as RunningExecutor;
  t.is(draining.stats().actions, moving.length);

  // Every change of a row's action, as the database saw it.
  await mesh.query(`create table hand_over_log (vim_id uuid, old_action uuid, new_action uuid, old_successor uuid,
                      new_successor uuid, report_stored boolean)`);
  await mesh.query(`create function log_hand_over() returns trigger language plpgsql as $$ begin
      if old.action_id is distinct from new.action_id or old.successor_action_id is distinct from new.successor_action_id then
        insert into hand_over_log values (new.id, old.action_id, new.action_id, old.successor_action_id, new.successor_action_id,
                                          old.last_report_at is distinct from new.last_report_at);
      end if;
      return null; end $$`);
  await mesh.query(`create trigger log_hand_over after update on vim for each row execute function log_hand_over()`);

  const startedAt = Date.now();
  const left = await draining.drain(30_000);
  const tookMs = Date.now() - startedAt;
  t.is(left, 0, 'every action was stopped by the servers');
  t.is(draining.stats().actions, 0);
  // Health poll (100 ms in the mesh) + a pass + StartAction: order of a second; the bound is the reconcile interval.
  t.true(tookMs < 15_000, `drained in ${tookMs} ms`);

  const after = new Map((await rows(mesh)).map((v) => [v.id, v]));
  for (const v of moving) {
    const now = after.get(v.id)!;
    t.is(now.executor, mesh.executorAddresses[b], `VIM ${v.id} moved to the live executor`);
    t.not(now.action_id, v.action_id, 'under a new action id (the old one is fenced)');
    t.true(now.action_started);
  }
  // Make before break: no moved VIM's action was ever replaced without a report of the new
  // one in the same write; the claim only named a successor, whose first report took over.
  type LogRow = {
    vim_id: string;
    old_action: string;
    new_action: string;
    old_successor: string | null;
    new_successor: string | null;
    report_stored: boolean;
  };
  const log = await mesh.query<LogRow>(`select * from hand_over_log`);
  for (const v of moving) {
    const changes = log.filter((r) => r.vim_id === v.id && r.old_action !== r.new_action);
    t.true(changes.length >= 1, `VIM ${v.id} changed action`);
    for (const c of changes) {
      t.true(c.report_stored, `VIM ${v.id}: its action changed with a report stored`);
      t.is<string | null, string | null>(c.new_action, c.old_successor, `VIM ${v.id}: the new action was the named successor`);
    }
    t.true(
      log.some((r) => r.vim_id === v.id && r.old_action === v.action_id && r.new_successor !== null && r.new_action === v.action_id),
      `VIM ${v.id}: a successor was named while its action stayed`,
    );
  }
  for (const v of before.filter((x) => x.executor === mesh.executorAddresses[b]))
    t.is(after.get(v.id)!.action_id, v.action_id, 'others untouched');
  // And monitored there: every moved VIM reports again through its new action.
  await eventually(
    async () => (await rows(mesh)).every((v) => v.last_report_at !== null && new Date(v.last_report_at).getTime() > startedAt),
    10_000,
    'a report from every VIM after the drain began',
  );
  await draining.stop();
});

test('with no other executor live the drain is bounded: it returns with the actions left, still monitoring', async (t) => {
  const mesh = await startMesh(t, { executors: 1, reconcileIntervalMs: 200 });
  const before = await registerAll(t, mesh, 3);
  const executor = mesh.executors[0] as RunningExecutor;
  const left = await executor.drain(1_500);
  t.is(left, 3, 'nowhere to move them: all still here after the timeout');
  const after = await rows(mesh);
  t.deepEqual(
    after.map((v) => v.action_id),
    before.map((v) => v.action_id),
    'no VIM was claimed while no executor was live',
  );
  await executor.stop();
});
