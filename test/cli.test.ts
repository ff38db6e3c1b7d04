// `vimmon all` as a user runs it: a process with an embedded PostgreSQL in its
// data folder, stopped by SIGTERM — streams end with UNAVAILABLE, the process
// exits 0, and PostgreSQL is stopped, nothing left running.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { createChannel, createClient, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { freePort } from './support/targets.js';


test('vimmon all: serves every role, and SIGTERM stops it cleanly with its embedded PostgreSQL', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vimmon-cli-'));
  chmodSync(dataDir, 0o755);
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const [server, conductor, executor, inspector, http] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const env = { ...process.env };
  delete env.DATABASE_URL;
  Object.assign(env, {
    VIMMON_DATA_DIR: path.join(dataDir, 'state'),
    VIMMON_SERVER_ADDR: `127.0.0.1:${server}`,
    VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${conductor}`,
    VIMMON_EXECUTOR_ADDR: `127.0.0.1:${executor}`,
    VIMMON_INSPECTOR_ADDR: `127.0.0.1:${inspector}`,
    VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${http}`,
    VIMMON_AMQP_URL: 'off',
  });
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'all'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));

  const deadline = Date.now() + 60_000;
  while (!log.includes('"vimmon running"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.true(log.includes('"vimmon running"'), log.slice(-2000));

  const channels = [server, conductor, executor, inspector].map((p) => createChannel(`127.0.0.1:${p}`));
  t.teardown(() => channels.forEach((c) => c.close()));
  for (const ch of channels) {
    t.is((await createClient(HealthDefinition, ch).check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
  }
  const pidFile = path.join(dataDir, 'state', 'postgres', 'postmaster.pid');
  t.true(existsSync(pidFile), 'the embedded PostgreSQL runs in the data folder');

  const stream = createClient(VimServiceDefinition, channels[0]!).watchVims({})[Symbol.asyncIterator]();
  const ended = stream.next();
  await new Promise((r) => setTimeout(r, 200));
  child.kill('SIGTERM');
  const err = (await t.throwsAsync(ended)) as unknown as { code: Status };
  t.is(err.code, Status.UNAVAILABLE, 'an open stream ends with UNAVAILABLE');
  t.is(await exited, 0, log.slice(-2000));
  t.true(log.includes('"msg":"stopped"'));
  t.false(existsSync(pidFile), 'PostgreSQL stopped (no postmaster.pid left)');
});
